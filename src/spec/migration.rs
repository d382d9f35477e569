//! Migration files (`migrations/NNNN_name.yaml`): the reviewed steps from one set of
//! definitions to the next, and the definitions after them (the model files and
//! `trellis.yaml`, verbatim), so that applying needs nothing but the file.
//!
//! The operations are dialect-neutral: `migrate apply` renders them for the
//! database it runs against, so one file serves SQLite in development and
//! PostgreSQL in production.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::diag::Sink;
use super::walk::get;
use super::{Diagnostic, Loaded, Severity, Spec};

/// One file of `migrations/`.
#[derive(Debug, Clone)]
pub struct MigrationFile {
    /// `0002_add_close_reason` (the file name without `.yaml`).
    pub name: String,
    pub number: u32,
    pub path: PathBuf,
    /// Hex SHA-256 of the file's bytes.
    pub checksum: String,
    pub steps: Vec<String>,
    /// Path (`models/project.yaml`, `trellis.yaml`) -> text.
    pub definitions: BTreeMap<String, String>,
}

/// Hex SHA-256.
pub fn checksum(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The first line of a migration file that `migrate plan` writes: it points editors to
/// the migration schema.
pub const SCHEMA_LINE: &str = "# yaml-language-server: $schema=../schemas/migration.schema.json";

/// The bytes a migration's checksum covers: the file without a first line that points
/// editors to a schema, so that adding or changing that comment is not an edit (files
/// planned before it existed keep their recorded checksums).
/// Only the comment is left out: it ends at the first line break of any kind (YAML
/// also breaks lines at a lone `\r`, which must not hide a line from the checksum).
pub fn without_schema_line(bytes: &[u8]) -> &[u8] {
    if !bytes.starts_with(b"# yaml-language-server:") {
        return bytes;
    }
    match bytes.iter().position(|b| matches!(b, b'\n' | b'\r')) {
        Some(end) if bytes[end..].starts_with(b"\r\n") => &bytes[end + 2..],
        Some(end) => &bytes[end + 1..],
        None => &[],
    }
}

/// `0002_add_close_reason.yaml` -> (2, `0002_add_close_reason`).
fn numbered(file_name: &str) -> Option<(u32, String)> {
    let stem = file_name
        .strip_suffix(".yaml")
        .or_else(|| file_name.strip_suffix(".yml"))?;
    let (digits, rest) = stem.split_once('_')?;
    if digits.len() != 4 || rest.is_empty() {
        return None;
    }
    Some((digits.parse().ok()?, stem.to_string()))
}

/// Every migration file of a project, in order; problems as diagnostics.
pub fn read_all(root: &Path) -> (Vec<MigrationFile>, Vec<Diagnostic>) {
    let mut out = Vec::new();
    let mut diags = Vec::new();
    let dir = root.join("migrations");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return (out, diags);
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if file_name.starts_with('.') || !path.is_file() || file_name.ends_with(".md") {
            continue;
        }
        let rel = format!("migrations/{file_name}");
        let problem = |message: String, hint: &str| Diagnostic {
            severity: Severity::Error,
            code: "invalid-migration",
            file: rel.clone(),
            line: 1,
            column: 1,
            message,
            hint: Some(hint.to_string()),
        };
        let Some((number, name)) = numbered(&file_name) else {
            diags.push(problem(
                "migration files are named `NNNN_name.yaml` (four digits, an underscore, a name)"
                    .into(),
                "files in migrations/ are written by `trellis migrate plan`",
            ));
            continue;
        };
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                diags.push(problem(
                    format!("cannot read it: {e}"),
                    "check its permissions",
                ));
                continue;
            }
        };
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let node = match super::yaml::parse(&text) {
            Ok(n) => n,
            Err(e) => {
                diags.push(Diagnostic {
                    line: e.pos.line,
                    column: e.pos.col,
                    ..problem(e.message, "restore the file as `migrate plan` wrote it")
                });
                continue;
            }
        };
        let mut sink = Sink {
            file: &rel,
            out: &mut diags,
        };
        let Some(map) = super::walk::map_with_keys(
            &mut sink,
            &node,
            "a migration file",
            &["migration", "steps", "definitions"],
        ) else {
            continue;
        };
        match get(map, "migration") {
            Some(n) if n.as_str() == Some(name.as_str()) => {}
            Some(n) => diags.push(Diagnostic {
                line: n.pos.line,
                column: n.pos.col,
                ..problem(
                    format!("`migration` must be the file's name, `{name}`"),
                    "restore the file as `migrate plan` wrote it",
                )
            }),
            None => diags.push(problem(
                "the migration has no `migration:` name".into(),
                "restore the file as `migrate plan` wrote it",
            )),
        }
        let mut steps = Vec::new();
        match get(map, "steps").map(|n| (n, n.as_seq())) {
            Some((_, Some(items))) => {
                for item in items {
                    match item.as_str() {
                        Some(s) => steps.push(s.to_string()),
                        None => diags.push(Diagnostic {
                            line: item.pos.line,
                            column: item.pos.col,
                            ..problem(
                                "each step is a line of text".into(),
                                "restore the file as `migrate plan` wrote it",
                            )
                        }),
                    }
                }
            }
            Some((n, None)) => diags.push(Diagnostic {
                line: n.pos.line,
                column: n.pos.col,
                ..problem(
                    "`steps` must be a list of lines of text".into(),
                    "restore the file as `migrate plan` wrote it",
                )
            }),
            None => diags.push(problem(
                "the migration has no `steps:`".into(),
                "restore the file as `migrate plan` wrote it",
            )),
        }
        let mut definitions = BTreeMap::new();
        match get(map, "definitions").and_then(|n| n.as_map()) {
            Some(entries) => {
                for (k, v) in entries {
                    match v.as_str() {
                        Some(t) => {
                            definitions.insert(k.name.clone(), t.to_string());
                        }
                        None => diags.push(Diagnostic {
                            line: v.pos.line,
                            column: v.pos.col,
                            ..problem(
                                format!("the definition of `{}` must be the file's text", k.name),
                                "restore the file as `migrate plan` wrote it",
                            )
                        }),
                    }
                }
            }
            None => {
                diags.push(problem(
                    "the migration has no `definitions`".into(),
                    "restore the file as `migrate plan` wrote it",
                ));
                continue;
            }
        }
        if out.iter().any(|m: &MigrationFile| m.number == number) {
            diags.push(problem(
                format!("two migrations have the number {number:04}"),
                "renumber the newer one (only if it has not been applied anywhere)",
            ));
            continue;
        }
        out.push(MigrationFile {
            name,
            number,
            path,
            checksum: checksum(without_schema_line(&bytes)),
            steps,
            definitions,
        });
    }
    (out, diags)
}

/// The text of a new migration file.
pub fn render(
    name: &str,
    planned_at: &str,
    steps: &[String],
    notes: &[String],
    definitions: &BTreeMap<String, String>,
) -> String {
    let mut out = format!(
        "{SCHEMA_LINE}\n# Trellis migration {name}, planned {planned_at} by `trellis migrate plan`.\n\
         # Review it, commit it, then run `trellis migrate apply`. Never edit it once applied:\n\
         # its checksum is recorded, and an edited migration is refused.\n#\n"
    );
    for n in notes {
        out.push_str(&format!("# {n}\n"));
    }
    out.push_str(&format!("migration: {name}\nsteps:\n"));
    for s in steps {
        out.push_str(&format!("  - {}\n", serde_json::Value::String(s.clone())));
    }
    out.push_str(
        "# The definitions after this migration, as they were when it was planned.\ndefinitions:\n",
    );
    for (path, text) in definitions {
        out.push_str(&format!("  {path}: |\n"));
        for line in text.lines() {
            if line.is_empty() {
                out.push('\n');
            } else {
                out.push_str(&format!("    {line}\n"));
            }
        }
    }
    out
}

/// The files whose contents define the database: `trellis.yaml` and `models/`.
pub fn schema_files(spec: &Spec) -> BTreeMap<String, String> {
    spec.sources
        .iter()
        .filter(|(path, _)| {
            path.starts_with("models/")
                || path.as_str() == "trellis.yaml"
                || path.as_str() == "trellis.yml"
        })
        .map(|(p, t)| (p.clone(), t.clone()))
        .collect()
}

/// Loads definitions held in memory (a migration's), as `load` would from files.
pub fn load_texts(files: &BTreeMap<String, String>) -> Loaded {
    let mut diagnostics = Vec::new();
    let mut spec = Spec::default();
    for (path, text) in files {
        let node = match super::yaml::parse(text) {
            Ok(n) => n,
            Err(e) => {
                diagnostics.push(Diagnostic {
                    severity: Severity::Error,
                    code: e.code,
                    file: path.clone(),
                    line: e.pos.line,
                    column: e.pos.col,
                    message: e.message,
                    hint: None,
                });
                continue;
            }
        };
        let mut sink = Sink {
            file: path,
            out: &mut diagnostics,
        };
        if path.starts_with("trellis.") {
            spec.settings = super::settings::parse_settings(&mut sink, &node);
        } else {
            let stem = Path::new(path)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            if let Some(m) = super::model::parse_model(&mut sink, &stem, &node) {
                spec.models.push(m);
            }
        }
        spec.sources.insert(path.clone(), text.clone());
    }
    super::check_project(&spec, &mut diagnostics);
    Loaded { spec, diagnostics }
}
