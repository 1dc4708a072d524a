//! The shape of `node/src` that docs/code-map.md promises: no file a
//! newcomer has to scroll through for long, and no two modules importing each
//! other (directly or around a circle), so each can be read and changed from
//! the bottom up.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The most lines a source file in node/src may have.
const MAX_LINES: usize = 500;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`proxy` for src/proxy/route.rs),
/// `None` for the crate roots.
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => None,
        Some(name) => Some(name.to_owned()),
        None => Some(first),
    }
}

/// The top-level modules `text` names through `crate::`, outside comments:
/// `crate::a::b`, and each item of `use crate::{a, b::c}`.
fn crate_references(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names only: the first segment of each path in the
            // group (nested braces belong to a module already named).
            let mut depth = 0;
            let mut start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && depth == 0 && !c.is_whitespace() => {
                        found.insert(ident(&group[j..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(ident(rest));
        }
    }
    found
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(file) else {
            continue;
        };
        let text = fs::read_to_string(file).unwrap();
        let targets = edges.entry(module.clone()).or_default();
        for name in crate_references(&text) {
            if name != module && modules.contains(&name) {
                targets.insert(name);
            }
        }
    }
    edges
}

/// A circle through `from`, as the list of modules around it, if any.
fn circle(
    edges: &BTreeMap<String, BTreeSet<String>>,
    from: &str,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    for next in edges.get(path.last()?).into_iter().flatten() {
        if next == from {
            let mut found = path.clone();
            found.push(next.clone());
            return Some(found);
        }
        if path.contains(next) {
            continue;
        }
        path.push(next.clone());
        if let Some(found) = circle(edges, from, path) {
            return Some(found);
        }
        path.pop();
    }
    None
}

#[test]
fn no_module_of_node_src_imports_one_that_imports_it_back() {
    let edges = graph();
    assert!(
        edges.len() > 10,
        "the module graph is too small to be real: {edges:?}"
    );
    for module in edges.keys() {
        let mut path = vec![module.clone()];
        if let Some(found) = circle(&edges, module, &mut path) {
            panic!("an import circle in node/src: {}", found.join(" -> "));
        }
    }
}

#[test]
fn no_file_of_node_src_is_over_the_limit() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = fs::read_to_string(f).unwrap().lines().count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these by concern: {long:?}");
}

#[test]
fn references_are_read_from_paths_and_use_groups_but_not_comments() {
    let text = "use crate::health::{self, Live};\n\
                use crate::{routing::{Route, Target}, select, server::Limits};\n\
                // crate::admin is only mentioned\n\
                let x = crate::metrics::render(&y);\n";
    let found: Vec<String> = crate_references(text).into_iter().collect();
    assert_eq!(found, ["health", "metrics", "routing", "select", "server"]);
}

#[test]
fn a_circle_is_found_and_named() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut edge = |a: &str, b: &str| {
        edges.entry(a.into()).or_default().insert(b.into());
    };
    edge("a", "b");
    edge("b", "c");
    edge("c", "a");
    edge("d", "a");
    let mut path = vec!["a".to_owned()];
    assert_eq!(
        circle(&edges, "a", &mut path).unwrap(),
        ["a", "b", "c", "a"]
    );
    let mut path = vec!["d".to_owned()];
    assert_eq!(circle(&edges, "d", &mut path), None);
}
