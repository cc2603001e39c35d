//! weft's own x_tables writer against `iptables-legacy-restore`: the same
//! restore text applied by the tool in one network namespace and by
//! `weft_firewall::xtables` in another leaves byte-identical tables
//! (kernel-kept fields aside), over rules of every kind the proxy writes,
//! both families, a partial change, and other programs' rules that must
//! survive untouched with their counters.

use std::collections::BTreeMap;
use std::path::Path;

use weft_firewall::apply::{native_writer, restore_noflush, run, Writer};
use weft_firewall::backend::detect;
use weft_firewall::xtables::{self, Family};
use weft_firewall::{Backend, BackendChoice};
use weft_lab::{in_netns, sh, Lab};
use weft_proxy::plan::catalog::Catalog;
use weft_proxy::render::iptables::{self, IptablesRenderer, PortRules, HOOKS};
use weft_proxy::spec::parse_documents;

const CASES: &str = include_str!("golden/cases.yaml");
const ARTICLE: &str = include_str!("golden/article.yaml");

fn family(v6: bool) -> Family {
    if v6 {
        Family::V6
    } else {
        Family::V4
    }
}

fn tool(v6: bool) -> &'static str {
    if v6 {
        "ip6tables-legacy"
    } else {
        "iptables-legacy"
    }
}

/// The tables as laid out from what the kernel holds (counters and other
/// kernel-kept fields cleared), with `iptables-legacy-save` for messages.
fn tables(ns: &str, v6: bool) -> Vec<(String, Vec<u8>)> {
    ["filter", "nat"]
        .iter()
        .map(|t| {
            let table = in_netns(ns, || xtables::read_table(family(v6), t))
                .expect("in netns")
                .unwrap_or_else(|e| panic!("reading {t}: {e}"));
            let blob = table.layout(0).expect("layout");
            (t.to_string(), blob.buf)
        })
        .collect()
}

fn save(ns: &str, v6: bool) -> String {
    let out = sh("ip", &["netns", "exec", ns, &format!("{}-save", tool(v6))]).expect("save");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn assert_same(a: &str, b: &str, v6: bool, what: &str) {
    let (sa, sb) = (save(a, v6), save(b, v6));
    assert_eq!(sa, sb, "{what}: iptables-save differs");
    for ((t, x), (_, y)) in tables(a, v6).iter().zip(tables(b, v6).iter()) {
        if x != y {
            let at = x
                .iter()
                .zip(y.iter())
                .position(|(p, q)| p != q)
                .unwrap_or(0);
            // the entry holding the first difference
            let es = if v6 { 168 } else { 112 };
            let next_at = if v6 { 142 } else { 90 };
            let mut start = 0;
            loop {
                let next =
                    u16::from_ne_bytes([x[start + next_at], x[start + next_at + 1]]) as usize;
                if start + next > at {
                    break;
                }
                start += next;
            }
            let around = |v: &[u8]| {
                let next =
                    u16::from_ne_bytes([v[start + next_at], v[start + next_at + 1]]) as usize;
                format!(
                    "entry at {start}, {} bytes after the header: {:02x?}",
                    next - es,
                    &v[start + es..start + next]
                )
            };
            panic!(
                "{what}: table {t} differs in bytes (tool {} bytes, weft {}; first difference at {at}: tool {} weft {})\n{sa}",
                x.len(),
                y.len(),
                around(x),
                around(y)
            );
        }
    }
}

fn ports(r: &IptablesRenderer, texts: &[&str]) -> BTreeMap<weft_proxy::plan::PortKey, PortRules> {
    let mut c = Catalog::default();
    for t in texts {
        for o in parse_documents(t, "test").expect("valid") {
            c.put(o);
        }
    }
    c.plan_all("host1")
        .iter()
        .filter(|p| p.v6() == r.v6)
        .map(|p| (p.key.clone(), r.port(p)))
        .collect()
}

fn counted(v6: bool) -> &'static str {
    if v6 {
        "2001:db8::1/128"
    } else {
        "192.0.2.1/32"
    }
}

/// Rules other programs put there first (docker-like, with a target weft
/// does not model), which both writers must keep as they were.
fn foreign(ns: &str, v6: bool) {
    let t = tool(v6);
    let net = if v6 { "fd00:17::/64" } else { "172.17.0.0/16" };
    for rule in [
        vec!["-t", "nat", "-N", "DOCKER"],
        vec![
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-m",
            "addrtype",
            "--dst-type",
            "LOCAL",
            "-j",
            "DOCKER",
        ],
        vec![
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            net,
            "!",
            "-o",
            "docker0",
            "-j",
            "MASQUERADE",
        ],
        vec!["-t", "nat", "-A", "DOCKER", "-i", "docker0", "-j", "RETURN"],
        vec![
            "-t",
            "filter",
            "-A",
            "FORWARD",
            "-o",
            "docker0",
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-j",
            "ACCEPT",
        ],
        vec![
            "-t",
            "filter",
            "-A",
            "INPUT",
            "-p",
            "tcp",
            "--dport",
            "22",
            "-j",
            "LOG",
            "--log-prefix",
            "ssh: ",
        ],
        vec!["-t", "filter", "-P", "FORWARD", "DROP"],
        vec![
            "-t",
            "filter",
            "-A",
            "OUTPUT",
            "-s",
            counted(v6),
            "-c",
            "7",
            "700",
            "-j",
            "ACCEPT",
        ],
    ] {
        let mut a = vec!["netns", "exec", ns, t, "-w"];
        a.extend(rule);
        sh("ip", &a).expect("foreign rule");
    }
}

fn writes_as_the_tool_does(v6: bool) {
    let mut lab = Lab::new(if v6 { "wx6" } else { "wx4" }, Path::new("/bin/false"))
        .expect("lab (needs root)");
    let a = lab.netns("tool").expect("netns");
    let b = lab.netns("weft").expect("netns");
    for ns in [&a, &b] {
        foreign(ns, v6);
    }
    let cidr = if v6 { "fd00:30::/56" } else { "172.30.0.0/16" };
    let mut r = IptablesRenderer::new(v6, Some(cidr.parse().expect("cidr")), false);
    // node ports on localhost, with their nfacct counters
    r.localhost_node_ports = !v6;
    r.nfacct = true;
    for ns in [&a, &b] {
        for name in [iptables::NFACCT_INVALID, iptables::NFACCT_LOCALHOST] {
            in_netns(ns, || weft_kernel::ensure_nfacct(name))
                .expect("in netns")
                .expect("nfacct counter");
        }
    }
    let restore = format!("{}-restore", tool(v6));
    let apply = |text: &str, what: &str| {
        run(
            "ip",
            &["netns", "exec", &a, &restore, "-w", "--noflush"],
            Some(text),
        )
        .unwrap_or_else(|e| panic!("{what} with the tool: {e}"));
        in_netns(&b, || xtables::restore(family(v6), text))
            .expect("in netns")
            .unwrap_or_else(|e| panic!("{what} natively: {e}"));
        assert_same(&a, &b, v6, what);
    };

    let all = ports(&r, &[CASES, ARTICLE]);
    let none = Default::default();
    apply(&r.restore(&all, &none, &HOOKS, false), "full sync");
    // again: chains flushed and refilled, hooks already there
    apply(&r.restore(&all, &none, &[], true), "second full sync");

    // partial changes: every second port goes (its chains deleted), then
    // comes back (its shared rules inserted at the top)
    let gone: BTreeMap<_, _> = all.iter().step_by(2).collect();
    let changes: Vec<(Option<&PortRules>, Option<&PortRules>)> =
        gone.values().map(|p| (Some(*p), None)).collect();
    let delete = gone
        .values()
        .flat_map(|p| p.chains.iter().map(|c| c.to_string()))
        .collect();
    apply(
        &r.partial_restore(&changes, &delete),
        "partial sync removing ports",
    );
    let changes: Vec<(Option<&PortRules>, Option<&PortRules>)> =
        gone.values().map(|p| (None, Some(*p))).collect();
    apply(
        &r.partial_restore(&changes, &Default::default()),
        "partial sync adding ports",
    );

    // the other program's rule kept its counters through every replace
    let out = sh(
        "ip",
        &[
            "netns",
            "exec",
            &b,
            &format!("{}-save", tool(v6)),
            "-c",
            "-t",
            "filter",
        ],
    )
    .expect("save");
    let want = format!("[7:700] -A OUTPUT -s {} -j ACCEPT", counted(v6));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&want),
        "{want}"
    );
}

#[test]
fn ipv4_tables_written_natively_equal_the_tools() {
    writes_as_the_tool_does(false);
}

#[test]
fn ipv6_tables_written_natively_equal_the_tools() {
    writes_as_the_tool_does(true);
}

/// What weft's writer does not take goes to `iptables-legacy-restore`,
/// whose answer is final: a rule it does not model is applied by the tool;
/// text the kernel refuses is refused by the tool too, and is an error
/// that leaves the writer on.
#[test]
fn what_the_writer_does_not_take_goes_to_the_tool() {
    let mut lab = Lab::new("wxf", Path::new("/bin/false")).expect("lab (needs root)");
    let ns = lab.netns("n").expect("netns");
    let ipt = detect(BackendChoice::Only(Backend::Legacy)).expect("legacy programs");
    in_netns(&ns, || {
        use weft_firewall::fallback::{count, FastPath};
        let log =
            "*filter\n-A INPUT -p tcp -m tcp --dport 22 -j LOG --log-prefix \"ssh: \"\nCOMMIT\n";
        let before = count(FastPath::XtablesWriter);
        assert_eq!(
            restore_noflush(&ipt, false, log).expect("applied"),
            Writer::Tool
        );
        // the tool applied what the writer could not: a fallback, counted
        assert_eq!(count(FastPath::XtablesWriter), before + 1);
        // TCP resets only for tcp: the kernel says EINVAL to both writers
        let bad = "*filter\n-A INPUT -j REJECT --reject-with tcp-reset\nCOMMIT\n";
        let e = restore_noflush(&ipt, false, bad).expect_err("refused");
        assert!(e.to_string().contains("iptables-legacy-restore"), "{e}");
        assert!(native_writer(&ipt, false));
        let good = "*filter\n:WEFT-T - [0:0]\n-A WEFT-T -j ACCEPT\nCOMMIT\n";
        assert_eq!(
            restore_noflush(&ipt, false, good).expect("applied"),
            Writer::Native
        );
        // neither the refused text nor the native write counted
        assert_eq!(count(FastPath::XtablesWriter), before + 1);
    })
    .expect("in netns");
    let saved = save(&ns, false);
    assert!(saved.contains("--log-prefix \"ssh: \""), "{saved}");
    assert!(saved.contains("-A WEFT-T -j ACCEPT"), "{saved}");
    assert!(!saved.contains("tcp-reset"), "{saved}");
}
