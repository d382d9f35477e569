//! The module structure of `src/`, checked from the source text (no database): no
//! two modules import each other, directly or around a loop, and every import goes
//! along the layer order spec → engine → store → runtime → http (the binary's
//! `cli` uses the library as `trellis::`, so it is above all of them).
//!
//! A module's imports are the `crate::…` and `super::…` paths in its file (outside
//! comments and its `#[cfg(test)]` module), resolved to the longest module path
//! that exists. A child using its parent's items, and a parent declaring its
//! children, is how Rust modules work and is not counted as a loop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers of the library, in dependency order.
const LAYERS: &[&str] = &["spec", "engine", "store", "runtime", "http"];

/// Modules in a loop that the store kernel work (issue 16) is taking apart: a loop
/// among these alone is tolerated until then. Remove them from here as it lands.
const KNOWN_TANGLE: &[&str] = &[
    "store::accounts",
    "store::changes",
    "store::crud",
    "store::ddl",
    "store::workflow",
];

/// Module path (`http::limits`) → source text without comments and tests.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read src")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))
                    .expect("under src");
                let mut parts: Vec<String> = rel
                    .with_extension("")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if matches!(
                    parts.last().map(String::as_str),
                    Some("mod" | "lib" | "main")
                ) {
                    parts.pop();
                }
                let text = std::fs::read_to_string(&path).expect("read file");
                out.insert(parts.join("::"), code_of(&text));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")),
        &mut out,
    );
    out
}

/// The text without line comments and without the `#[cfg(test)] mod tests` block
/// (always last in a file here).
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            // Not inside a string literal such as "sqlite://…".
            Some(at) if !l[..at].contains('"') => &l[..at],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a module names: `crate::a::b`, `super::a`, and the first level of
/// `crate::a::{b, c::d}` groups, as absolute module paths (unresolved).
fn named_paths(module: &str, code: &str) -> Vec<Vec<String>> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        let starts = (rest.starts_with("crate::") || rest.starts_with("super::"))
            && (i == 0 || !ident(bytes[i - 1] as char));
        if !starts {
            i += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        }
        // The base: the crate root, or an ancestor of this module (`super` is
        // the parent, in a mod.rs too).
        let mut base: Vec<String> = Vec::new();
        let mut j = i;
        if rest.starts_with("crate::") {
            j += "crate::".len();
        } else {
            base = module.split("::").map(str::to_string).collect();
            while code[j..].starts_with("super::") {
                j += "super::".len();
                base.pop();
            }
        }
        let mut path = base.clone();
        loop {
            let seg: String = code[j..].chars().take_while(|c| ident(*c)).collect();
            if seg.is_empty() {
                break;
            }
            j += seg.len();
            path.push(seg);
            if code[j..].starts_with("::") {
                j += 2;
            } else {
                break;
            }
        }
        if code[j..].starts_with('{') {
            let end = code[j..].find('}').map_or(code.len(), |e| j + e);
            for item in code[j + 1..end].split(',') {
                let mut p = path.clone();
                p.extend(
                    item.trim()
                        .split("::")
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty() && s.chars().all(ident)),
                );
                out.push(p);
            }
            j = end;
        }
        out.push(path);
        i = j.max(i + 1);
    }
    out
}

/// Module → the modules it imports (other than itself, its ancestors and its
/// descendants).
fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules();
    let related = |a: &str, b: &str| {
        a == b
            || a.is_empty()
            || b.is_empty()
            || a.starts_with(&format!("{b}::"))
            || b.starts_with(&format!("{a}::"))
    };
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, code) in &mods {
        for mut path in named_paths(m, code) {
            while !path.is_empty() && !mods.contains_key(&path.join("::")) {
                path.pop();
            }
            let target = path.join("::");
            if !related(m, &target) {
                out.entry(m.clone()).or_default().insert(target);
            }
        }
    }
    out
}

/// The strongly connected components with more than one module.
fn loops(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    let nodes: BTreeSet<&String> = edges
        .keys()
        .chain(edges.values().flat_map(|v| v.iter()))
        .collect();
    let reach = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for next in edges.get(&n).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&String, BTreeSet<String>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for n in &nodes {
        let component: BTreeSet<String> = nodes
            .iter()
            .filter(|o| reachable[*n].contains(**o) && reachable[**o].contains(*n))
            .map(|o| (*o).clone())
            .collect();
        if component.len() > 1 && !out.contains(&component) {
            out.push(component);
        }
    }
    out
}

/// The edges, and each also between the two siblings that contain its ends
/// (`http::events` → `runtime::feed` is also `http` → `runtime`), so that two
/// folders importing each other count as a loop.
fn with_sibling_edges(
    edges: BTreeMap<String, BTreeSet<String>>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = edges.clone();
    for (from, targets) in edges {
        for to in targets {
            let a: Vec<&str> = from.split("::").collect();
            let b: Vec<&str> = to.split("::").collect();
            let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
            if common < a.len() && common < b.len() {
                out.entry(a[..=common].join("::"))
                    .or_default()
                    .insert(b[..=common].join("::"));
            }
        }
    }
    out
}

#[test]
fn no_module_imports_another_that_imports_it_back() {
    let found = loops(&with_sibling_edges(edges()));
    let unexpected: Vec<&BTreeSet<String>> = found
        .iter()
        .filter(|c| !c.iter().all(|m| KNOWN_TANGLE.contains(&m.as_str())))
        .collect();
    assert!(
        unexpected.is_empty(),
        "modules that import each other (directly or around a loop): {unexpected:?}"
    );
}

#[test]
fn imports_follow_the_layer_order() {
    let rank = |m: &str| {
        let top = m.split("::").next().unwrap_or("");
        LAYERS.iter().position(|l| *l == top)
    };
    let mut wrong = Vec::new();
    for (from, targets) in edges() {
        for to in targets {
            if let (Some(a), Some(b)) = (rank(&from), rank(&to))
                && b > a
            {
                wrong.push(format!("{from} imports {to}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layer order: {wrong:#?}"
    );
}

#[test]
fn the_checker_sees_imports() {
    let e = edges();
    // A plain `use`, a `super::` path and a group.
    assert!(e["runtime::reload"].contains("engine"), "{e:#?}");
    assert!(e["http::users"].contains("http::limits"), "{e:#?}");
    assert!(e["http::events"].contains("http::extract"), "{e:#?}");
    assert!(e["engine::openapi"].contains("engine::query"), "{e:#?}");
    assert!(!e.contains_key("spec::yaml") || !e["spec::yaml"].contains("spec::model"));
}

/// `cargo test --test architecture print_edges -- --ignored --nocapture` lists
/// every module's imports.
#[test]
#[ignore]
fn print_edges() {
    for (m, t) in edges() {
        println!("{m} -> {t:?}");
    }
}
