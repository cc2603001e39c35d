//! The README keeps its promises: the two set-up commands come first, and
//! every `weft …` command it shows (in code blocks and inline code) names
//! subcommands that exist (`weft <subcommands> --help` succeeds), every
//! script it names is there and executable, and every local link resolves.

use std::path::{Path, PathBuf};
use std::process::Command;

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn readme() -> String {
    std::fs::read_to_string(repo().join("README.md")).expect("README.md")
}

/// Lines of fenced code blocks and inline code spans, in order.
fn code(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            out.push(line.trim().to_string());
        } else {
            out.extend(
                line.split('`')
                    .skip(1)
                    .step_by(2)
                    .map(|s| s.trim().to_string()),
            );
        }
    }
    out
}

/// The subcommand words of a `weft …` command: the words after `weft` up
/// to the first flag, placeholder, path or comment.
fn subcommands(command: &str) -> Option<Vec<&str>> {
    let mut words = command.split_whitespace();
    if words.next() != Some("weft") {
        return None;
    }
    Some(
        words
            .take_while(|w| {
                w.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !w.starts_with('-')
            })
            .collect(),
    )
}

#[test]
fn the_two_commands_come_first() {
    let text = readme();
    let first_heading = text
        .lines()
        .position(|l| l.starts_with("## "))
        .expect("a section heading");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[first_heading].to_lowercase().contains("two commands"),
        "the first section is the set-up: {}",
        lines[first_heading]
    );
    let block: Vec<&str> = lines[first_heading + 1..]
        .iter()
        .skip_while(|l| !l.starts_with("```"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .copied()
        .collect();
    let commands: Vec<&str> = block
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        commands,
        ["./scripts/demo.sh", "./scripts/test.sh"],
        "{block:?}"
    );
    assert!(block[0].contains("demo") && block[1].contains("test suite"));
}

#[test]
fn every_weft_command_shown_exists() {
    let text = readme();
    let mut checked = std::collections::BTreeSet::new();
    for line in code(&text) {
        let Some(words) = subcommands(&line) else {
            continue;
        };
        if !checked.insert(words.join(" ")) {
            continue;
        }
        let out = Command::new(WEFT)
            .args(&words)
            .arg("--help")
            .output()
            .expect("running weft");
        assert!(
            out.status.success(),
            "README shows `{line}`, but `weft {} --help` fails: {}",
            words.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // the commands the README is about are among them
    for c in [
        "agent",
        "proxy",
        "service",
        "status",
        "doctor",
        "docker-opts",
        "demo",
    ] {
        assert!(
            checked.iter().any(|w| w.split(' ').next() == Some(c)),
            "README shows no `weft {c}` command: {checked:?}"
        );
    }
}

#[test]
fn scripts_and_links_it_names_exist() {
    let text = readme();
    for line in code(&text) {
        for word in line.split_whitespace() {
            if let Some(script) = word.strip_prefix("./scripts/") {
                let path = repo().join("scripts").join(script);
                let meta = std::fs::metadata(&path)
                    .unwrap_or_else(|_| panic!("README names {word}, which is missing"));
                use std::os::unix::fs::PermissionsExt;
                assert!(
                    meta.permissions().mode() & 0o111 != 0,
                    "{word} is not executable"
                );
            }
        }
    }
    for target in text.split("](").skip(1).filter_map(|s| s.split(')').next()) {
        if target.starts_with("http") || target.starts_with('#') {
            continue;
        }
        let path = target.split('#').next().unwrap_or(target);
        assert!(
            repo().join(path).exists(),
            "README links {target}, which is missing"
        );
    }
}
