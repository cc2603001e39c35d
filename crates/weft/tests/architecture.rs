//! The shape of the code, checked like behaviour: no module cycles, no
//! source file a newcomer cannot read in one sitting, no function that
//! does not fit on a screen. Reads the workspace's sources as text (no
//! root, no build of its own).
//!
//! - **Cycles.** Within a crate, module A depending on module B (a path
//!   `crate::…` or `super::…` naming B, outside comments and tests) is an
//!   edge between the two siblings under their lowest common ancestor
//!   (a module and its own submodules or ancestors are not an edge). A
//!   cycle among siblings anywhere is refused.
//! - **Files** of production code over [`MAX_FILE_LINES`] lines, and
//!   **functions** over [`MAX_FN_LINES`], are refused.
//!
//! `cargo test -p weft --test architecture -- --nocapture` prints the
//! report.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 800;
/// Functions over this many lines are listed (aim: none).
const MAX_FN_LINES: usize = 80;
/// Functions over this many lines fail the test.
const HARD_FN_LINES: usize = 150;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// A crate's production source files: `src/` without test modules.
struct Source {
    krate: String,
    /// Module path inside the crate (`["source", "etcd"]`).
    module: Vec<String>,
    path: PathBuf,
    /// The text with comments and `#[cfg(test)] mod … { }` blocks removed.
    code: String,
    lines: usize,
}

fn is_test_file(rel: &Path) -> bool {
    rel.file_name().is_some_and(|n| n == "tests.rs")
        || rel
            .components()
            .any(|c| c.as_os_str() == "tests" || c.as_os_str() == "testdata")
}

/// The module path of `src/a/b.rs` (`a::b`), `src/a/mod.rs` (`a`),
/// `src/lib.rs` (root); binaries under `src/bin/` are their own roots.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.first().is_some_and(|p| p == "bin") {
        return vec![format!("bin:{}", parts.get(1).cloned().unwrap_or_default())];
    }
    if parts
        .last()
        .is_some_and(|l| l == "mod" || l == "lib" || l == "main")
    {
        parts.pop();
    }
    parts
}

/// `text` without `//` comments (line and doc comments), `/* */`
/// comments and string literals' contents (kept as `""`).
fn strip_comments(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                if b[i] == b'\n' {
                    out.push('\n');
                }
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' && (i == 0 || b[i - 1] != b'\'') {
            // a string: skipped to its end (escapes honoured)
            out.push('"');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                if i < b.len() && b[i] == b'\n' {
                    out.push('\n');
                }
                i += 1;
            }
            out.push('"');
            i += 1;
        } else {
            let c = text[i..].chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The index just past the brace block that opens at or after `from`.
fn block_end(code: &str, from: usize) -> Option<usize> {
    let open = from + code[from..].find('{')?;
    let mut depth = 0usize;
    for (i, c) in code[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// `code` without `#[cfg(test)]` items (their blocks blanked, lines kept).
fn strip_tests(code: &str) -> String {
    let mut out = code.to_string();
    let mut at = 0;
    while let Some(i) = out[at..].find("#[cfg(test)]") {
        let start = at + i;
        let after = start + "#[cfg(test)]".len();
        let rest = out[after..].trim_start();
        let next_is_block =
            rest.starts_with("mod ") && !rest.split('\n').next().unwrap_or("").contains(';');
        let end = if next_is_block {
            block_end(&out, after).unwrap_or(out.len())
        } else {
            // one item: to the end of its line
            out[after..].find(';').map_or(out.len(), |e| after + e + 1)
        };
        let blank: String = out[start..end]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        out.replace_range(start..end, &blank);
        at = start + blank.len();
    }
    out
}

fn sources() -> Vec<Source> {
    let mut out = Vec::new();
    let crates = workspace().join("crates");
    let mut dirs: Vec<_> = std::fs::read_dir(&crates)
        .expect("crates/")
        .flatten()
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for dir in dirs {
        let krate = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let src = dir.join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        for path in files {
            let rel = path.strip_prefix(&src).expect("under src").to_path_buf();
            if is_test_file(&rel) {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source");
            let code = strip_tests(&strip_comments(&text));
            out.push(Source {
                krate: krate.clone(),
                module: module_of(&rel),
                lines: text.lines().count(),
                path,
                code,
            });
        }
    }
    out
}

/// Module paths `code` names: `crate::a::b` and `super::x` (relative to
/// `module`), with `use` groups (`a::{b, c::d}`) expanded one level.
fn referenced(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    for (start, prefix) in [("crate::", 0usize), ("super::", 1)] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            if at > 0 && code[..at].ends_with(|c: char| ident(c) || c == ':') {
                continue;
            }
            // the base: crate root, or the parent (of a mod.rs/lib.rs: its own parent)
            let mut base: Vec<String> = if prefix == 0 {
                Vec::new()
            } else {
                module[..module.len().saturating_sub(1)].to_vec()
            };
            let rest = &code[from..];
            // more `super::`
            let mut rest = rest;
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let path: Vec<String> = item
                        .trim()
                        .split("::")
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty() && s.chars().all(ident))
                        .collect();
                    let mut p = base.clone();
                    p.extend(path);
                    out.push(p);
                }
                continue;
            }
            let path: String = rest
                .chars()
                .take_while(|c| ident(*c) || *c == ':')
                .collect();
            let mut p = base.clone();
            p.extend(path.split("::").filter(|s| !s.is_empty()).map(String::from));
            out.push(p);
        }
    }
    out
}

/// The sibling edges of one crate: (parent, from child, to child).
fn sibling_edges(files: &[&Source]) -> BTreeSet<(Vec<String>, String, String)> {
    let modules: BTreeSet<Vec<String>> = files.iter().map(|s| s.module.clone()).collect();
    let mut edges = BTreeSet::new();
    for s in files {
        for path in referenced(&s.code, &s.module) {
            // the longest prefix that is a module
            let target = (0..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| modules.contains(p));
            let Some(target) = target else { continue };
            let from = &s.module;
            let common = from.iter().zip(&target).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == target.len() {
                continue; // ancestor or descendant
            }
            edges.insert((
                from[..common].to_vec(),
                from[common].clone(),
                target[common].clone(),
            ));
        }
    }
    edges
}

/// Cycles among siblings: each strongly connected set of more than one.
fn cycles(edges: &BTreeSet<(Vec<String>, String, String)>) -> Vec<String> {
    let mut by_parent: BTreeMap<&Vec<String>, BTreeMap<&String, BTreeSet<&String>>> =
        BTreeMap::new();
    for (p, a, b) in edges {
        by_parent
            .entry(p)
            .or_default()
            .entry(a)
            .or_default()
            .insert(b);
    }
    let mut out = Vec::new();
    for (parent, graph) in by_parent {
        let nodes: BTreeSet<&String> = graph
            .iter()
            .flat_map(|(a, bs)| std::iter::once(*a).chain(bs.iter().copied()))
            .collect();
        let reach = |from: &String| {
            let mut seen = BTreeSet::new();
            let mut todo = vec![from];
            while let Some(n) = todo.pop() {
                for m in graph.get(n).into_iter().flatten() {
                    if seen.insert(*m) {
                        todo.push(m);
                    }
                }
            }
            seen
        };
        let mut done = BTreeSet::new();
        for n in &nodes {
            if done.contains(n) {
                continue;
            }
            let r = reach(n);
            let scc: Vec<&String> = nodes
                .iter()
                .copied()
                .filter(|m| m == n || (r.contains(m) && reach(m).contains(n)))
                .collect();
            if scc.len() > 1 {
                done.extend(scc.iter().copied());
                let at = if parent.is_empty() {
                    String::new()
                } else {
                    format!("{}::", parent.join("::"))
                };
                out.push(
                    scc.iter()
                        .map(|m| format!("{at}{m}"))
                        .collect::<Vec<_>>()
                        .join(" <-> "),
                );
            }
        }
    }
    out
}

/// (name, first line, lines) of each function with a body in `code`.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = code[from..].find("fn ") {
        let at = from + i;
        from = at + 3;
        if at > 0 && code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = code[at + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            continue;
        }
        // a body, not a declaration (`fn x(…);`) or a type (`fn(u8) -> u8`)
        let Some(brace) = code[at..].find('{') else {
            continue;
        };
        if code[at..at + brace].contains(';') {
            continue;
        }
        let Some(end) = block_end(code, at) else {
            continue;
        };
        let first = code[..at].matches('\n').count() + 1;
        let last = code[..end].matches('\n').count() + 1;
        out.push((name, first, last - first + 1));
    }
    out
}

struct Report {
    cycles: Vec<String>,
    long_files: Vec<(String, usize)>,
    long_fns: Vec<(String, usize)>,
}

fn report() -> Report {
    let all = sources();
    let mut by_crate: BTreeMap<&str, Vec<&Source>> = BTreeMap::new();
    for s in &all {
        by_crate.entry(&s.krate).or_default().push(s);
    }
    let mut cycles_found = Vec::new();
    for (krate, files) in &by_crate {
        for c in cycles(&sibling_edges(files)) {
            cycles_found.push(format!("{krate}: {c}"));
        }
    }
    let root = workspace();
    let rel = |p: &Path| {
        p.canonicalize()
            .ok()
            .and_then(|c| {
                c.strip_prefix(root.canonicalize().ok()?)
                    .ok()
                    .map(Path::to_path_buf)
            })
            .unwrap_or_else(|| p.to_path_buf())
            .display()
            .to_string()
    };
    let mut long_files: Vec<(String, usize)> = all
        .iter()
        .filter(|s| s.lines > MAX_FILE_LINES)
        .map(|s| (rel(&s.path), s.lines))
        .collect();
    long_files.sort_by_key(|f| std::cmp::Reverse(f.1));
    let mut long_fns: Vec<(String, usize)> = all
        .iter()
        .flat_map(|s| {
            functions(&s.code)
                .into_iter()
                .filter(|(_, _, n)| *n > MAX_FN_LINES)
                .map(move |(name, line, n)| (format!("{}:{line} {name}", rel(&s.path)), n))
        })
        .collect();
    long_fns.sort_by_key(|f| std::cmp::Reverse(f.1));
    Report {
        cycles: cycles_found,
        long_files,
        long_fns,
    }
}

fn print(r: &Report) {
    println!("module cycles: {}", r.cycles.len());
    for c in &r.cycles {
        println!("  {c}");
    }
    println!("files over {MAX_FILE_LINES} lines: {}", r.long_files.len());
    for (f, n) in &r.long_files {
        println!("  {n:>5} {f}");
    }
    println!("functions over {MAX_FN_LINES} lines: {}", r.long_fns.len());
    for (f, n) in &r.long_fns {
        println!("  {n:>5} {f}");
    }
}

#[test]
fn the_reference_graph_finds_a_planted_cycle() {
    let make = |module: &[&str], code: &str| Source {
        krate: "x".into(),
        module: module.iter().map(|s| s.to_string()).collect(),
        path: PathBuf::from(format!("{}.rs", module.join("/"))),
        code: strip_tests(&strip_comments(code)),
        lines: 1,
    };
    let a = make(
        &["a"],
        "use crate::b::Thing;\n// crate::c is only a comment\n",
    );
    let b = make(
        &["b"],
        "fn f() { super::a::g() }\n#[cfg(test)]\nmod tests { use crate::c::X; }\n",
    );
    let c = make(&["c"], "use crate::{a, b::inner};\n");
    let inner = make(&["b", "inner"], "use super::super::c;\n");
    let files = [&a, &b, &c, &inner];
    let edges = sibling_edges(&files);
    assert!(
        edges.contains(&(vec![], "a".into(), "b".into())),
        "{edges:?}"
    );
    assert!(
        edges.contains(&(vec![], "b".into(), "a".into())),
        "{edges:?}"
    );
    assert!(
        edges.contains(&(vec![], "b".into(), "c".into())),
        "{edges:?}"
    );
    assert_eq!(cycles(&edges), vec!["a <-> b <-> c".to_string()]);
    assert_eq!(
        functions("fn f() {\n x();\n}\nfn g(x: fn(u8) -> u8);\n"),
        vec![("f".to_string(), 1, 3)]
    );
}

#[test]
fn no_module_cycles_long_files_or_long_functions() {
    let r = report();
    print(&r);
    assert!(r.cycles.is_empty(), "module cycles: {:#?}", r.cycles);
    assert!(
        r.long_files.is_empty(),
        "files over {MAX_FILE_LINES} lines: {:#?}",
        r.long_files
    );
    let too_long: Vec<_> = r
        .long_fns
        .iter()
        .filter(|(_, n)| *n > HARD_FN_LINES)
        .collect();
    assert!(
        too_long.is_empty(),
        "functions over {HARD_FN_LINES} lines: {too_long:#?}"
    );
}
