//! The engine crate's shape, kept as `src/lib.rs` draws it: no import circle
//! between its rooms (`engine/`, `workflow/`, ...) or between its files, no
//! source file over 600 lines, and a `main.rs` that only parses and
//! dispatches.
//!
//! Edges are read from the source: `use` trees and inline paths that start
//! with `crate::`, `super::` or `self::`, and `use` of a child module by its
//! bare name. A file using its own ancestors (a child reaching its parent's
//! items) is not an edge: the parent declares the child, so that link is the
//! tree itself. The library and the binary (`main.rs`, `cli/`) are separate
//! crates and separate graphs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A source file's module path (`["engine", "plan"]`) and text.
struct Module {
    path: Vec<String>,
    text: String,
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Every file of one crate: the library (rooted at lib.rs) or the binary
/// (main.rs and `cli/`).
fn modules(binary: bool) -> Vec<Module> {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&root).unwrap();
        let mut path: Vec<String> = rel
            .iter()
            .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        let is_binary = path[0] == "main" || path[0] == "cli";
        if is_binary != binary {
            continue;
        }
        if matches!(
            path.last().map(String::as_str),
            Some("mod" | "lib" | "main")
        ) {
            path.pop();
        }
        let text = std::fs::read_to_string(&file).unwrap();
        out.push(Module { path, text });
    }
    out
}

/// The code of a file without its comment lines (doc links are no imports).
fn code(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str, prefix: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    match tree.find('{') {
        None => {
            let item = tree.split(" as ").next().unwrap().trim();
            if !item.is_empty() {
                out.push(format!("{prefix}{item}"));
            }
        }
        Some(open) => {
            let head = &tree[..open];
            let inner = &tree[open + 1..tree.rfind('}').unwrap()];
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand(&inner[start..i], &format!("{prefix}{head}"), out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            expand(&inner[start..], &format!("{prefix}{head}"), out);
        }
    }
}

/// Every path a file names: its `use` trees and inline `crate::`/`super::`/
/// `self::` paths, as written.
fn named_paths(text: &str) -> Vec<String> {
    let code = code(text);
    let mut out = Vec::new();
    // `use` items as rustfmt writes them: at the start of a line.
    let lines: Vec<&str> = code.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let l = line.trim_start();
        let l = ["pub ", "pub(crate) ", "pub(super) "]
            .iter()
            .find_map(|p| l.strip_prefix(p))
            .unwrap_or(l);
        let Some(tree) = l.strip_prefix("use ") else {
            continue;
        };
        let mut item = tree.to_string();
        for next in &lines[i + 1..] {
            if item.contains(';') {
                break;
            }
            item.push(' ');
            item.push_str(next.trim());
        }
        if let Some(end) = item.find(';') {
            expand(&item[..end], "", &mut out);
        }
    }
    for anchor in ["crate::", "super::", "self::"] {
        let mut rest = code.as_str();
        while let Some(at) = rest.find(anchor) {
            let before = rest[..at].chars().last();
            let tail = &rest[at..];
            rest = &rest[at + anchor.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            out.push(tail[..end].trim_end_matches(':').to_string());
        }
    }
    out
}

/// The module a path names from `from`, if it is one of `known` (the
/// longest module prefix of the path).
fn target(from: &[String], path: &str, known: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    let mut segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Vec<String> = match segs.first().copied() {
        Some("crate") => {
            segs.remove(0);
            Vec::new()
        }
        Some("self") => {
            segs.remove(0);
            from.to_vec()
        }
        Some("super") => {
            let mut b = from.to_vec();
            while segs.first() == Some(&"super") {
                segs.remove(0);
                b.pop();
            }
            b
        }
        Some(first) => {
            // A bare name is a child module when `from` declares one so named.
            let mut child = from.to_vec();
            child.push(first.to_string());
            if !known.contains(&child) {
                return None;
            }
            from.to_vec()
        }
        None => return None,
    };
    let mut best = None;
    for s in segs {
        base.push(s.to_string());
        if known.contains(&base) {
            best = Some(base.clone());
        }
    }
    best
}

/// Edges between modules: `from` names something inside `to`, `to` not one
/// of `from`'s ancestors.
fn edges(mods: &[Module]) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let known: BTreeSet<Vec<String>> = mods.iter().map(|m| m.path.clone()).collect();
    let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for m in mods {
        let node = graph.entry(m.path.clone()).or_default();
        for p in named_paths(&m.text) {
            let Some(to) = target(&m.path, &p, &known) else {
                continue;
            };
            if to.is_empty() || m.path.starts_with(&to) {
                continue;
            }
            node.insert(to);
        }
    }
    graph
}

/// A cycle of the graph, if it has one, as the nodes around it.
fn find_cycle<N: Ord + Clone>(graph: &BTreeMap<N, BTreeSet<N>>) -> Option<Vec<N>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit<N: Ord + Clone>(
        n: &N,
        graph: &BTreeMap<N, BTreeSet<N>>,
        marks: &mut BTreeMap<N, Mark>,
        stack: &mut Vec<N>,
    ) -> Option<Vec<N>> {
        match marks.get(n) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let at = stack.iter().position(|s| s == n).unwrap();
                let mut cycle = stack[at..].to_vec();
                cycle.push(n.clone());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(n.clone(), Mark::Open);
        stack.push(n.clone());
        for next in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, graph, marks, stack) {
                return Some(c);
            }
        }
        stack.pop();
        marks.insert(n.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut marks, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

fn show(path: &[String]) -> String {
    if path.is_empty() {
        "crate".into()
    } else {
        path.join("::")
    }
}

fn assert_no_circle(binary: bool) {
    let mods = modules(binary);
    assert!(mods.len() > 3, "found only {} files under src/", mods.len());
    let graph = edges(&mods);
    if let Some(c) = find_cycle(&graph) {
        let c: Vec<String> = c.iter().map(|p| show(p)).collect();
        panic!("import circle between files: {}", c.join(" -> "));
    }
    // The rooms: the crate root's own modules, each file folded into its room.
    let mut rooms: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in &graph {
        let Some(r) = from.first() else { continue };
        let entry = rooms.entry(r.clone()).or_default();
        for to in tos {
            if let Some(t) = to.first().filter(|t| *t != r) {
                entry.insert(t.clone());
            }
        }
    }
    if let Some(c) = find_cycle(&rooms) {
        panic!("import circle between rooms: {}", c.join(" -> "));
    }
}

#[test]
fn the_library_has_no_import_circle() {
    assert_no_circle(false);
}

#[test]
fn the_binary_has_no_import_circle() {
    assert_no_circle(true);
}

#[test]
fn no_source_file_is_over_600_lines_and_main_only_dispatches() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > 600).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "over 600 lines: {long:?}");
    let main = std::fs::read_to_string(src().join("main.rs")).unwrap();
    assert!(
        main.lines().count() < 150,
        "main.rs: {} lines",
        main.lines().count()
    );
}

/// The check itself finds what it is for: a circle through `use` trees,
/// `super::` and bare child names, and none through a child's use of its
/// parent.
#[test]
fn the_check_finds_a_circle_and_ignores_the_tree() {
    let m = |path: &[&str], text: &str| Module {
        path: path.iter().map(|s| s.to_string()).collect(),
        text: text.into(),
    };
    let mods = vec![
        m(&[], "pub mod a;\npub mod b;"),
        m(
            &["a"],
            "mod inner;\nuse inner::X;\nuse crate::{b::{Y, Z as W}};",
        ),
        m(&["a", "inner"], "use super::*;\npub struct X;"),
        m(&["b"], "pub struct Y;\nfn f() { super::a::inner::go(); }"),
    ];
    let graph = edges(&mods);
    let a = vec!["a".to_string()];
    let inner = vec!["a".to_string(), "inner".to_string()];
    let b = vec!["b".to_string()];
    assert_eq!(graph[&a], BTreeSet::from([inner.clone(), b.clone()]));
    assert!(graph[&inner].is_empty(), "{:?}", graph[&inner]);
    assert_eq!(graph[&b], BTreeSet::from([inner.clone()]));
    assert!(find_cycle(&graph).is_none());
    let mut with_circle = mods;
    with_circle.push(m(&["a", "inner", "deep"], "use crate::b::Y;"));
    with_circle[2].text.push_str("\nmod deep;\nuse deep::Q;");
    let graph = edges(&with_circle);
    let c = find_cycle(&graph).expect("a circle: b -> a::inner -> a::inner::deep -> b");
    assert!(c.contains(&b) && c.contains(&inner), "{c:?}");
}
