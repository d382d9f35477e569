//! The architecture's rules, checked on the source text (docs/decisions.md explains why
//! one crate with this test rather than a workspace of crates):
//!
//! - every module belongs to a layer, and imports only from its own layer or earlier
//!   ones: spec → engine → store → runtime → http → cli;
//! - sibling modules never import each other both ways (no import cycles);
//! - the frameworks stay in their layer: SQL (sqlx, sea-query) in the store, HTTP (axum,
//!   hyper, tower) in http, `anyhow` and the process environment in the CLI, no I/O
//!   framework in spec.
//!
//! A failure names the file, the import and the rule, so a newcomer knows what to move.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers in dependency order: a module may import from its own layer and the
/// layers before it. Every top-level module of `src/` must be listed here.
const LAYERS: &[(&str, &[&str])] = &[
    ("spec", &["spec"]),
    ("engine", &["engine"]),
    ("store", &["store"]),
    ("runtime", &["runtime"]),
    ("http", &["http"]),
    ("cli", &["cli", "main"]),
];

/// External crates and the layers that may name them.
const FRAMEWORKS: &[(&str, &[&str])] = &[
    ("sqlx", &["store"]),
    ("sea_query", &["store"]),
    ("sea_query_sqlx", &["store"]),
    ("axum", &["http"]),
    ("hyper", &["http"]),
    ("hyper_util", &["http"]),
    ("tower", &["http"]),
    ("tower_http", &["http"]),
    ("governor", &["http"]),
    // The /metrics exposition (http/metrics.rs). Lower layers keep plain counters
    // (runtime::outbox::Stats, reload Status, store::PoolStats) that http reads
    // when scraped, so no metrics crate reaches below http.
    ("prometheus_client", &["http"]),
    ("anyhow", &["cli"]),
    ("notify", &["runtime"]),
    ("notify_debouncer_full", &["runtime"]),
    ("reqwest", &["runtime"]),
    // File storage, sniffing and thumbnails (runtime/files): the routes stream
    // through runtime::files and never name the storage crate.
    ("object_store", &["runtime"]),
    ("infer", &["runtime"]),
    ("image", &["runtime"]),
    ("tokio", &["store", "runtime", "http", "cli"]),
];

/// Reading the process environment: only the CLI does, and passes values down.
const ENVIRONMENT: &[&str] = &["std::env::var", "env::var(", "env::var_os", "env::vars("];

struct Source {
    /// `store::kernel`, `http`, `main`, …
    module: Vec<String>,
    /// Does the file declare child modules (`mod.rs`, `lib.rs`, `main.rs`)?
    is_dir_module: bool,
    path: PathBuf,
    /// The text without comments, string literals and `#[cfg(test)]` items.
    code: String,
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&root).expect("under src/");
            let mut module: Vec<String> = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let last = module.last().cloned().unwrap_or_default();
            let is_dir_module = matches!(last.as_str(), "mod" | "lib" | "main");
            if last == "mod" || last == "lib" {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).expect("a readable source file");
            out.push(Source {
                module,
                is_dir_module,
                path: rel.to_path_buf(),
                code: without_tests(&strip(&text)),
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Comments and the contents of string and char literals blanked out, so that prose
/// and messages that mention `crate::x` or `sqlx` are not taken for imports.
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'r' if matches!(b.get(i + 1), Some(b'"' | b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                // A raw string: r"…", r#"…"#, …
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                loop {
                    if j >= b.len() {
                        break;
                    }
                    if b[j] == b'"' && b[j + 1..].iter().take(hashes).all(|&c| c == b'#') {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                out.push_str("\"\"");
                i = j;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                out.push_str("\"\"");
            }
            b'\'' => {
                // A char literal ('x', '\n', '\u{1F600}', 'é') or a lifetime ('a).
                if b.get(i + 1) == Some(&b'\\') {
                    let mut j = i + 3;
                    while j < b.len() && b[j] != b'\'' {
                        j += 1;
                    }
                    out.push_str("' '");
                    i = j + 1;
                } else if b.get(i + 2) == Some(&b'\'') {
                    out.push_str("' '");
                    i += 3;
                } else if b.get(i + 1).is_some_and(|&c| c >= 0x80) {
                    let close = b[i + 1..].iter().take(5).position(|&c| c == b'\'');
                    out.push_str("' '");
                    i += close.map_or(1, |p| p + 2);
                } else {
                    out.push('\'');
                    i += 1;
                }
            }
            _ => {
                let start = i;
                i += 1;
                while i < b.len() && !matches!(b[i], b'/' | b'"' | b'\'' | b'r') {
                    i += 1;
                }
                out.push_str(&text[start..i]);
            }
        }
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The code before the first `#[cfg(test)]`: unit tests may reach anywhere.
fn without_tests(code: &str) -> String {
    match code.find("#[cfg(test)]") {
        Some(at) => code[..at].to_string(),
        None => code.to_string(),
    }
}

/// Every path the code names from the crate root: `crate::a::b`, `super::c`,
/// `self::d`, including each member of a `{…}` group.
fn paths(src: &Source) -> Vec<Vec<String>> {
    let code = src.code.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < code.len() {
        if i > 0 && (is_ident(code[i - 1]) || code[i - 1] == b':') {
            i += 1;
            continue;
        }
        let rest = &src.code[i..];
        let base: Option<(usize, Vec<String>)> = if rest.starts_with("crate::") {
            Some((7, Vec::new()))
        } else if rest.starts_with("super::") {
            let mut base = parent_of(src);
            let mut len = 7;
            while src.code[i + len..].starts_with("super::") {
                base.pop();
                len += 7;
            }
            Some((len, base))
        } else if rest.starts_with("self::") {
            let base = if src.is_dir_module {
                src.module.clone()
            } else {
                parent_of(src)
            };
            Some((6, base))
        } else {
            None
        };
        match base {
            Some((len, base)) => {
                let (next, mut items) = tree(&src.code, i + len);
                for item in items.iter_mut() {
                    let mut full = base.clone();
                    full.append(item);
                    found.push(full);
                }
                i = next.max(i + 1);
            }
            None => i += 1,
        }
    }
    found
}

/// The module a `super::` in this file starts from.
fn parent_of(src: &Source) -> Vec<String> {
    let mut m = src.module.clone();
    if !src.is_dir_module {
        m.pop();
    } else if m.last().is_some_and(|l| l == "main") {
        m.clear();
    }
    m
}

/// A use tree at `at`: `a::b::c`, `a::{b, c::d}`, `{a, b}`; returns where it ends and
/// its paths.
fn tree(code: &str, at: usize) -> (usize, Vec<Vec<String>>) {
    let b = code.as_bytes();
    let mut i = at;
    let mut prefix = Vec::new();
    loop {
        if b.get(i) == Some(&b'{') {
            let (end, items) = group(code, i + 1);
            let out = items
                .into_iter()
                .map(|mut item| {
                    let mut full = prefix.clone();
                    full.append(&mut item);
                    full
                })
                .collect();
            return (end, out);
        }
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        if i > start {
            prefix.push(code[start..i].to_string());
        }
        if code[i..].starts_with("::") {
            i += 2;
            continue;
        }
        return (i, vec![prefix]);
    }
}

/// The members of a `{…}` group starting after its `{`.
fn group(code: &str, at: usize) -> (usize, Vec<Vec<String>>) {
    let b = code.as_bytes();
    let mut i = at;
    let mut out = Vec::new();
    loop {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
            i += 1;
        }
        if i >= b.len() || b[i] == b'}' {
            return (i + 1, out);
        }
        let (next, items) = tree(code, i);
        out.extend(items);
        // Skip an `as name` up to the next separator.
        i = next.max(i + 1);
        while i < b.len() && b[i] != b',' && b[i] != b'}' {
            i += 1;
        }
    }
}

fn layer_of(top: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&top))
}

fn layer_name(top: &str) -> &'static str {
    layer_of(top).map(|l| LAYERS[l].0).unwrap_or("?")
}

/// The longest prefix of `path` that is a module of the crate.
fn module_of(path: &[String], modules: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| modules.contains(p))
}

#[test]
fn every_module_has_a_layer() {
    let missing: BTreeSet<String> = sources()
        .iter()
        .filter_map(|s| s.module.first().cloned())
        .filter(|top| layer_of(top).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "top-level modules without a layer: {missing:?}; add each to LAYERS in tests/layering.rs \
         (and to the code map in ARCHITECTURE.md)"
    );
}

#[test]
fn modules_import_only_earlier_layers() {
    let all = sources();
    let modules: BTreeSet<Vec<String>> = all.iter().map(|s| s.module.clone()).collect();
    let mut wrong = Vec::new();
    for src in &all {
        let Some(from) = src.module.first().and_then(|t| layer_of(t)) else {
            continue;
        };
        for path in paths(src) {
            let Some(target) = module_of(&path, &modules) else {
                continue;
            };
            let Some(to) = target.first().and_then(|t| layer_of(t)) else {
                continue;
            };
            if to > from {
                wrong.push(format!(
                    "{} ({}) imports {} ({}): move the code down or pass it in",
                    src.path.display(),
                    LAYERS[from].0,
                    path.join("::"),
                    LAYERS[to].0
                ));
            }
        }
    }
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "imports against the layer order {}:\n{}",
        LAYERS.iter().map(|l| l.0).collect::<Vec<_>>().join(" → "),
        wrong.join("\n")
    );
}

#[test]
fn sibling_modules_do_not_import_each_other_both_ways() {
    let all = sources();
    let modules: BTreeSet<Vec<String>> = all.iter().map(|s| s.module.clone()).collect();
    // Edges between siblings: a reference from a::b::… to a::c::… is an edge b → c under
    // a. A module using its parent's or its children's items is not an edge.
    let mut edges: BTreeMap<Vec<String>, Siblings> = BTreeMap::new();
    for src in &all {
        for path in paths(src) {
            let Some(target) = module_of(&path, &modules) else {
                continue;
            };
            let common = src
                .module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common == src.module.len() || common == target.len() {
                continue;
            }
            edges
                .entry(src.module[..common].to_vec())
                .or_default()
                .entry(src.module[common].clone())
                .or_default()
                .insert((target[common].clone(), src.path.display().to_string()));
        }
    }
    let mut cycles = Vec::new();
    for (parent, graph) in &edges {
        for cycle in cycles_in(graph) {
            let place = if parent.is_empty() {
                "crate".to_string()
            } else {
                parent.join("::")
            };
            cycles.push(format!("in {place}: {}", cycle.join(" → ")));
        }
    }
    assert!(
        cycles.is_empty(),
        "modules that import each other (move the shared part into one of them, or into a \
         module both import):\n{}",
        cycles.join("\n")
    );
}

/// Per module, the siblings it imports, each with the file that imports it.
type Siblings = BTreeMap<String, BTreeSet<(String, String)>>;

/// The strongly connected components with more than one module, each as a path.
fn cycles_in(graph: &Siblings) -> Vec<Vec<String>> {
    let next = |n: &str| -> Vec<String> {
        graph
            .get(n)
            .map(|s| s.iter().map(|(t, _)| t.clone()).collect())
            .unwrap_or_default()
    };
    let nodes: Vec<String> = graph.keys().cloned().collect();
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = next(from);
        while let Some(n) = todo.pop() {
            if seen.insert(n.clone()) {
                todo.extend(next(&n));
            }
        }
        seen
    };
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for n in &nodes {
        if done.contains(n) {
            continue;
        }
        let from_n = reach(n);
        if !from_n.contains(n) {
            continue;
        }
        let mut members: Vec<String> = nodes
            .iter()
            .filter(|m| from_n.contains(*m) && reach(m).contains(n))
            .cloned()
            .collect();
        members.sort();
        for m in &members {
            done.insert(m.clone());
        }
        let with_files: Vec<String> = members
            .iter()
            .map(|m| {
                let via: BTreeSet<String> = graph
                    .get(m)
                    .into_iter()
                    .flatten()
                    .filter(|(t, _)| members.contains(t))
                    .map(|(t, file)| format!("{t} in {file}"))
                    .collect();
                format!(
                    "{m} (imports {})",
                    via.into_iter().collect::<Vec<_>>().join(", ")
                )
            })
            .collect();
        out.push(with_files);
    }
    out
}

#[test]
fn frameworks_stay_in_their_layer() {
    let mut wrong = Vec::new();
    for src in sources() {
        let Some(top) = src.module.first() else {
            continue;
        };
        let layer = layer_name(top);
        for (krate, layers) in FRAMEWORKS {
            if layers.contains(&layer) {
                continue;
            }
            if names_crate(&src.code, krate) {
                wrong.push(format!(
                    "{} ({layer}) uses `{krate}`, which belongs to {}",
                    src.path.display(),
                    layers.join(", ")
                ));
            }
        }
        if layer != "cli" {
            for needle in ENVIRONMENT {
                if src.code.contains(needle) {
                    wrong.push(format!(
                        "{} ({layer}) reads the environment (`{needle}`): only the CLI does; \
                         pass the value in",
                        src.path.display()
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_store_asks_its_dialect() {
    // Every SQLite/PostgreSQL difference is a question to `Dialect` (store/dialect.rs),
    // so that a reader learns them in one file and a third database means one type.
    // A branch is a comparison with a dialect or a match arm on one.
    let mut wrong = Vec::new();
    for src in sources() {
        if src.module.first().is_none_or(|m| m != "store") || src.path.ends_with("dialect.rs") {
            continue;
        }
        for line in src.code.lines() {
            let names = line.contains("Dialect::Sqlite") || line.contains("Dialect::Postgres");
            let arm = line
                .trim_start()
                .trim_start_matches("super::")
                .starts_with("Dialect::")
                && line.contains("=>");
            let branch = line.contains("==") || line.contains("!=") || line.contains("matches!(");
            if names && (arm || branch) {
                wrong.push(format!(
                    "{} branches on the database (`{}`): ask `Dialect` a question instead",
                    src.path.display(),
                    line.trim()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Does the code name the crate as a path root (`sqlx::`, `use sqlx`)?
fn names_crate(code: &str, krate: &str) -> bool {
    let b = code.as_bytes();
    code.match_indices(krate).any(|(at, _)| {
        let before_ok = at == 0 || !(is_ident(b[at - 1]) || b[at - 1] == b':');
        let after = &code[at + krate.len()..];
        before_ok && (after.starts_with("::") || after.starts_with(';'))
    })
}

#[test]
fn the_checks_see_what_they_should() {
    // The rules above are only as good as the parser: known shapes must be found.
    let src = Source {
        module: vec!["store".into(), "kernel".into()],
        is_dir_module: false,
        path: PathBuf::from("store/kernel.rs"),
        code: without_tests(&strip(
            "use crate::{engine::{Engine, query::ListRequest}, spec::FieldType as T};\n\
             use super::dialect::Dialect; // crate::http::nothing\n\
             let s = \"crate::http::in_a_string\"; let c = '\"'; fn f<'a>(x: &'a str) {}\n\
             let x = crate::http::problem::Problem::new();\n\
             #[cfg(test)] mod tests { use crate::cli::x; }",
        )),
    };
    let found: Vec<String> = paths(&src).iter().map(|p| p.join("::")).collect();
    assert_eq!(
        found,
        [
            "engine::Engine",
            "engine::query::ListRequest",
            "spec::FieldType",
            "store::dialect::Dialect",
            "http::problem::Problem::new",
        ]
    );
    assert!(names_crate("use sqlx::Row;", "sqlx"));
    assert!(!names_crate("use sea_query_sqlx::X;", "sqlx"));
    assert!(!names_crate("let my_sqlx = 1;", "sqlx"));
}
