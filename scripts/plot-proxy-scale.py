#!/usr/bin/env python3
"""Plots `weft-bench --scenario proxy-scale --json FILE` as an SVG.

    scripts/plot-proxy-scale.py FILE.json OUT.svg

Two panels against the cluster's endpoint count (log scales): one endpoint
change's p99 latency (API answer -> kernel), and the cold start (process
start -> every Service in the kernel), one line per proxy and mode, with
the kernel floor (weft's ruleset loaded in one transaction) dashed.
Python's standard library only.
"""
import json
import math
import sys

COLORS = {"weft": "#1b7837", "kube-proxy": "#b2182b", "floor": "#555555"}
W, H, PAD = 460, 320, 60


def series(rows, key):
    """{(proxy, mode): [(endpoints, value)]} from the size rows."""
    out = {}
    for row in rows:
        for who, label in (("weft", "weft"), ("kube_proxy", "kube-proxy")):
            v = (row.get(who) or {}).get(key)
            if isinstance(v, (int, float)) and v > 0:
                out.setdefault((label, row["mode"]), []).append((row["endpoints"], v))
        if key == "cold_start_ms" and isinstance(row.get("floor_ms"), (int, float)):
            out.setdefault(("floor", row["mode"]), []).append((row["endpoints"], row["floor_ms"]))
    return {k: sorted(v) for k, v in out.items()}


def panel(x0, title, data):
    xs = [p[0] for s in data.values() for p in s] or [1]
    ys = [p[1] for s in data.values() for p in s] or [1]
    lx = (math.log10(min(xs)) - 0.1, math.log10(max(xs)) + 0.1)
    ly = (math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys))) or 1)

    def px(x):
        return x0 + PAD + (math.log10(x) - lx[0]) / (lx[1] - lx[0]) * (W - 2 * PAD)

    def py(y):
        return H - PAD - (math.log10(y) - ly[0]) / (ly[1] - ly[0]) * (H - 2 * PAD)

    out = [f'<text x="{x0 + W / 2}" y="20" text-anchor="middle" font-weight="bold">{title}</text>']
    out.append(f'<rect x="{x0 + PAD}" y="{PAD}" width="{W - 2 * PAD}" height="{H - 2 * PAD}" fill="none" stroke="#999"/>')
    for e in range(int(ly[0]), int(ly[1]) + 1):
        y = py(10 ** e)
        out.append(f'<line x1="{x0 + PAD}" x2="{x0 + W - PAD}" y1="{y}" y2="{y}" stroke="#eee"/>')
        out.append(f'<text x="{x0 + PAD - 5}" y="{y + 4}" text-anchor="end" font-size="11">{10 ** e:g} ms</text>')
    for x in sorted(set(xs)):
        out.append(f'<text x="{px(x)}" y="{H - PAD + 15}" text-anchor="middle" font-size="11">{x // 1000}k</text>')
    out.append(f'<text x="{x0 + W / 2}" y="{H - 20}" text-anchor="middle" font-size="11">endpoints in the cluster</text>')
    legend_y = PAD + 12
    for (who, mode), pts in sorted(data.items()):
        color = COLORS.get(who, "#333")
        dash = ' stroke-dasharray="2,3"' if mode == "iptables" else ""
        dash = ' stroke-dasharray="6,3"' if who == "floor" else dash
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for x, y in pts:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>')
        out.append(f'<text x="{x0 + PAD + 8}" y="{legend_y}" font-size="11" fill="{color}">{who} {mode}</text>')
        legend_y += 13
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        report = json.load(f)
    rows = [r for group in report["proxy_scale"]["size"] for r in group]
    body = panel(0, "endpoint change, p99", series(rows, "change_p99_ms"))
    body += panel(W, "cold start (dashed: kernel floor)", series(rows, "cold_start_ms"))
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * W}" height="{H}" '
        f'font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>'
        + "".join(body)
        + "</svg>\n"
    )
    with open(sys.argv[2], "w") as f:
        f.write(svg)


if __name__ == "__main__":
    main()
