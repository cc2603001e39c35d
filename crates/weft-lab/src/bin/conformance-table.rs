//! `conformance-table`: the conformance runs' JUnit reports (e2e.test's
//! `junit_01.xml`, one folder per network) as one Markdown table, spec by
//! spec, side by side: what scripts/conformance.sh prints and writes into
//! docs/conformance.md.
//!
//!   conformance-table --run weft=DIR --run upstream=DIR [--date D]
//!                     [--nodes N] [--proxy-mode M] [--focus RE] [--skip RE]
//!                     [--into FILE] [--section NAME]
//!
//! With `--into` the table replaces what lies between the
//! `<!-- NAME-table:begin -->` and `<!-- NAME-table:end -->` lines of FILE
//! (NAME defaults to `conformance`); otherwise it goes to stdout.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// One spec's outcome in one run.
#[derive(Debug, Clone)]
struct Outcome {
    status: String,
    seconds: f64,
}

/// One network's run: its spec outcomes and wall time.
struct Run {
    network: String,
    specs: BTreeMap<String, Outcome>,
    wall_seconds: Option<u64>,
}

#[derive(Default)]
struct Args {
    runs: Vec<(String, PathBuf)>,
    date: String,
    nodes: String,
    proxy_mode: String,
    focus: String,
    skip: String,
    into: Option<PathBuf>,
    section: String,
}

fn parse_args() -> Result<Args> {
    let mut a = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--run" => {
                let (name, dir) = value
                    .split_once('=')
                    .context("--run: NETWORK=FOLDER, e.g. weft=target/conformance/weft")?;
                a.runs.push((name.to_string(), PathBuf::from(dir)));
            }
            "--date" => a.date = value,
            "--nodes" => a.nodes = value,
            "--proxy-mode" => a.proxy_mode = value,
            "--focus" => a.focus = value,
            "--skip" => a.skip = value,
            "--into" => a.into = Some(PathBuf::from(value)),
            "--section" => a.section = value,
            other => bail!("unknown flag {other} (see the top of conformance-table.rs)"),
        }
    }
    if a.runs.is_empty() {
        bail!("--run: at least one NETWORK=FOLDER");
    }
    if a.section.is_empty() {
        a.section = "conformance".into();
    }
    Ok(a)
}

/// The spec outcomes of a ginkgo JUnit report.
fn read_junit(file: &Path) -> Result<BTreeMap<String, Outcome>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let doc = roxmltree::Document::parse(&text)
        .with_context(|| format!("{}: not a JUnit report", file.display()))?;
    let mut specs = BTreeMap::new();
    for case in doc.descendants().filter(|n| n.has_tag_name("testcase")) {
        let Some(name) = case.attribute("name") else {
            continue;
        };
        // ginkgo names a spec "[It] <text> [labels]"; the text is the key
        let name = name.strip_prefix("[It] ").unwrap_or(name);
        // the suite's own set-up and report nodes are no specs
        if !name.starts_with("[sig-") {
            continue;
        }
        let status = case.attribute("status").unwrap_or("unknown").to_string();
        let seconds = case
            .attribute("time")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0.0);
        specs.insert(name.to_string(), Outcome { status, seconds });
    }
    Ok(specs)
}

fn read_run(network: &str, dir: &Path) -> Result<Run> {
    let specs = read_junit(&dir.join("junit_01.xml"))?;
    let wall_seconds = std::fs::read_to_string(dir.join("seconds"))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    Ok(Run {
        network: network.to_string(),
        specs,
        wall_seconds,
    })
}

fn cell(o: Option<&Outcome>) -> String {
    match o {
        None => "—".into(),
        Some(o) if o.status == "skipped" => "skip".into(),
        Some(o) => format!("{} {:.0} s", short(&o.status), o.seconds),
    }
}

fn short(status: &str) -> &str {
    match status {
        "passed" => "pass",
        "failed" => "**fail**",
        "timedout" => "**timeout**",
        "interrupted" => "interrupted",
        "panicked" => "**panic**",
        other => other,
    }
}

fn count(run: &Run, status: &str) -> usize {
    run.specs.values().filter(|o| o.status == status).count()
}

fn table(a: &Args, runs: &[Run]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Run of {}: {} nodes, proxy mode {}.\n\nFocus `{}`, skip `{}`.\n",
        a.date, a.nodes, a.proxy_mode, a.focus, a.skip
    );
    let names: Vec<&str> = runs.iter().map(|r| r.network.as_str()).collect();
    let _ = writeln!(out, "| | {} |", names.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(runs.len()));
    for status in ["passed", "failed", "timedout", "interrupted"] {
        let counts: Vec<String> = runs.iter().map(|r| count(r, status).to_string()).collect();
        let _ = writeln!(out, "| {status} | {} |", counts.join(" | "));
    }
    let walls: Vec<String> = runs
        .iter()
        .map(|r| r.wall_seconds.map_or("?".into(), |s| format!("{s} s")))
        .collect();
    let _ = writeln!(out, "| wall time | {} |\n", walls.join(" | "));

    // every spec some run ran (ginkgo lists the others as skipped)
    let ran: BTreeSet<&str> = runs
        .iter()
        .flat_map(|r| r.specs.iter())
        .filter(|(_, o)| o.status != "skipped")
        .map(|(n, _)| n.as_str())
        .collect();
    let _ = writeln!(out, "| spec | {} |", names.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(runs.len()));
    for spec in ran {
        let cells: Vec<String> = runs.iter().map(|r| cell(r.specs.get(spec))).collect();
        let _ = writeln!(
            out,
            "| {} | {} |",
            spec.replace('|', "\\|"),
            cells.join(" | ")
        );
    }
    out
}

/// Replaces the text between section's markers in `file` with `table`.
fn write_into(file: &Path, section: &str, table: &str) -> Result<()> {
    let begin = format!("<!-- {section}-table:begin -->");
    let end = format!("<!-- {section}-table:end -->");
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let (Some(b), Some(e)) = (text.find(&begin), text.find(&end)) else {
        bail!("{}: no {begin} … {end} lines", file.display());
    };
    if e < b {
        bail!("{}: {end} comes before {begin}", file.display());
    }
    let new = format!("{}{begin}\n{table}{}", &text[..b], &text[e..]);
    std::fs::write(file, new).with_context(|| format!("writing {}", file.display()))
}

fn run() -> Result<()> {
    let a = parse_args()?;
    let runs = a
        .runs
        .iter()
        .map(|(n, d)| read_run(n, d))
        .collect::<Result<Vec<_>>>()?;
    let t = table(&a, &runs);
    match &a.into {
        Some(f) => write_into(f, &a.section, &t),
        None => {
            print!("{t}");
            Ok(())
        }
    }
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conformance-table: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
