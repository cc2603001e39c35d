//! Every flag the pinned flanneld (v0.28.10) has, weft's agent has: the
//! list flanneld prints for `--help` against `weft agent --help`, so a
//! flag a new upstream release adds shows up here as a failing test, not
//! as a silent gap.

use std::collections::BTreeSet;
use std::process::Command;

fn output(program: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Go's flag package: `  -name type` lines.
fn flanneld_flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .filter_map(|l| l.strip_prefix("  -"))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// clap: `  --name <VALUE>` / `  -x, --name` lines.
fn weft_flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .map(str::trim_start)
        .filter_map(|l| {
            l.strip_prefix("--")
                .or_else(|| l.split_once(", --").map(|(_, rest)| rest))
        })
        .filter_map(|rest| rest.split([' ', '[', '=', '<']).next())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn weft_agent_has_every_flag_of_flanneld_v0_28() {
    let flanneld = weft_lab::upstream_flanneld()
        .expect("upstream flanneld v0.28.10 (scripts/upstream.sh flannel)");
    let version = output(&flanneld, &["--version"]);
    assert!(
        version.contains("v0.28.10"),
        "the pinned flanneld: {version}"
    );
    let theirs = flanneld_flags(&output(&flanneld, &["--help"]));
    assert!(theirs.len() > 25, "flanneld --help: {theirs:?}");
    let ours = weft_flags(&output(
        std::path::Path::new(env!("CARGO_BIN_EXE_weft")),
        &["agent", "--help"],
    ));
    let missing: Vec<&String> = theirs.difference(&ours).collect();
    assert!(
        missing.is_empty(),
        "flags flanneld v0.28.10 has and weft agent lacks: {missing:?}"
    );
}
