//! What most commands start from: the project loaded and compiled, its
//! diagnostics rendered for people, and the database URL to use.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, anyhow, bail};
use trellis::engine::Engine;
use trellis::runtime::env::{Env, ExpandError};
use trellis::spec::{self, Diagnostic, Loaded, Severity};

static COLOR: AtomicBool = AtomicBool::new(false);

/// Decided once by `main` from `--color` and `NO_COLOR`.
pub(super) fn set_color(on: bool) {
    COLOR.store(on, Ordering::Relaxed);
}

/// Whether output for people on stderr (diagnostics, logs) is coloured.
pub(super) fn color() -> bool {
    COLOR.load(Ordering::Relaxed)
}

/// Prints diagnostics with a snippet of the file and an arrow under the problem.
pub(super) fn render(loaded: &Loaded) {
    use miette::{
        GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, NamedSource,
    };
    let theme = if color() {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme).with_context_lines(1);
    for d in &loaded.diagnostics {
        let source = loaded.spec.sources.get(&d.file);
        let mut diag = MietteDiagnostic::new(d.message.clone())
            .with_code(d.code)
            .with_severity(match d.severity {
                Severity::Error => miette::Severity::Error,
                Severity::Warning => miette::Severity::Warning,
            });
        if let Some(hint) = &d.hint {
            diag = diag.with_help(hint.clone());
        }
        let mut out = String::new();
        let rendered = match source {
            Some(text) => {
                let (offset, len) = span(text, d.line, d.column);
                diag = diag.with_label(LabeledSpan::at(offset..offset + len, "here"));
                let report = miette::Report::new(diag).with_source_code(
                    NamedSource::new(d.file.clone(), text.clone()).with_language("yaml"),
                );
                handler.render_report(&mut out, report.as_ref())
            }
            None => {
                let report = miette::Report::new(diag);
                out.push_str(&format!("{}:{}:{}\n", d.file, d.line, d.column));
                handler.render_report(&mut out, report.as_ref())
            }
        };
        if rendered.is_ok() {
            eprintln!("{out}");
        } else {
            eprintln!("{d}");
        }
    }
}

/// The byte offset of a 1-based line and (character) column, and the length of the word there.
fn span(text: &str, line: u32, column: u32) -> (usize, usize) {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line as usize {
            let col_bytes: usize = l
                .chars()
                .take(column.saturating_sub(1) as usize)
                .map(char::len_utf8)
                .sum();
            let start = offset + col_bytes.min(l.len());
            let rest = &text[start..];
            let len = rest
                .find(|c: char| c.is_whitespace() || matches!(c, ',' | ':' | '}' | ']'))
                .unwrap_or(rest.len())
                .max(usize::from(!rest.is_empty()));
            return (start, len);
        }
        offset += l.len();
    }
    (text.len(), 0)
}

pub(super) fn summary(diagnostics: &[Diagnostic]) -> String {
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diagnostics.len() - errors;
    format!(
        "{errors} error{}, {warnings} warning{}",
        if errors == 1 { "" } else { "s" },
        if warnings == 1 { "" } else { "s" }
    )
}

/// Refuses a folder that holds no project (missing, or no model files): what was
/// expected, where it looked, and how to start one. Nothing is created there.
pub(super) fn require_project(dir: &Path, loaded: &Loaded) -> Result<()> {
    // Where it looked, as an absolute path when the folder exists (`.` says little).
    let shown_dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let models = shown_dir.join("models");
    let found = if !dir.is_dir() {
        format!("the folder {} does not exist", dir.display())
    } else if loaded.diagnostics.iter().any(|d| d.code == "no-models") {
        if models.is_dir() {
            format!("{} holds no .yaml files", models.display())
        } else {
            format!("there is no {} folder", models.display())
        }
    } else {
        return Ok(());
    };
    let shown = if dir == Path::new(".") {
        String::new()
    } else {
        format!(" {}", dir.display())
    };
    bail!(
        "no Trellis project here: expected model files (models/*.yaml), but {found}.\n\
         A project is a folder with model files in models/ (policies/, workflows/ and \
         trellis.yaml beside them are optional). Nothing was created.\n\
         Start one with `trellis init{shown}`, or name the project's folder: \
         `trellis <command> DIR`."
    )
}

/// Loads and compiles a project: the spec's diagnostics, then the compiled
/// policies' (which need the whole model).
pub(super) fn load_all(dir: &Path) -> (Loaded, Option<Engine>) {
    let mut loaded = spec::load(dir);
    if loaded.has_errors() {
        return (loaded, None);
    }
    match Engine::build(&loaded) {
        Ok(engine) => (loaded, Some(engine)),
        Err(trellis::engine::Error::Diagnostics(more)) => {
            loaded.diagnostics.extend(more);
            (loaded, None)
        }
        Err(other) => {
            loaded.diagnostics.push(Diagnostic {
                severity: Severity::Error,
                code: "internal",
                file: dir.display().to_string(),
                line: 1,
                column: 1,
                message: other.to_string(),
                hint: None,
            });
            (loaded, None)
        }
    }
}

pub(super) fn load_engine(dir: &Path) -> Result<Engine> {
    load_engine_with_diagnostics(dir).map(|(engine, _)| engine)
}

/// The engine, and the (warning) diagnostics of loading it, rendered once.
pub(super) fn load_engine_with_diagnostics(dir: &Path) -> Result<(Engine, Vec<Diagnostic>)> {
    let (loaded, engine) = load_all(dir);
    require_project(dir, &loaded)?;
    if !loaded.diagnostics.is_empty() {
        render(&loaded);
    }
    match engine {
        Some(engine) => Ok((engine, loaded.diagnostics)),
        None => bail!(
            "the project in {} has problems ({}); fix them and try again",
            dir.display(),
            summary(&loaded.diagnostics)
        ),
    }
}

/// The database of a command: the flag (or `DATABASE_URL`), else trellis.yaml's
/// `database.url` with `${VAR}` from the environment, else `DIR/.trellis/data.db`.
pub(super) fn database_url(
    dir: &Path,
    flag: Option<String>,
    engine: &Engine,
    env: &Env,
) -> Result<String> {
    if let Some(url) = flag.filter(|u| !u.is_empty()) {
        return Ok(url);
    }
    if let Some(raw) = &engine.database_url {
        return expand(env, raw);
    }
    let path = dir.join(".trellis").join("data.db");
    Ok(format!("sqlite://{}", path.display()))
}

/// The file of a SQLite URL when it does not exist yet (connecting would create it).
pub(super) fn missing_sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let path = rest.trim_start_matches("//");
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    let path = Path::new(path);
    (!path.exists()).then(|| path.to_path_buf())
}

/// `${VAR}` in a value of trellis.yaml, from the environment.
fn expand(env: &Env, raw: &str) -> Result<String> {
    env.expand(raw).map_err(|err| match err {
        ExpandError::Unclosed => anyhow!("`{raw}` has an unclosed `${{`"),
        ExpandError::Unset(name) => anyhow::Error::new(std::env::VarError::NotPresent).context(
            format!("trellis.yaml uses the environment variable {name}, which is not set"),
        ),
    })
}

/// Hides a password in a database URL.
pub(super) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_the_password_only() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redact("sqlite://data.db"), "sqlite://data.db");
    }

    #[test]
    fn span_points_at_the_word_of_a_line_and_column() {
        let text = "entity: task\nfields:\n  title: strng\n";
        let (offset, len) = span(text, 3, 10);
        assert_eq!(&text[offset..offset + len], "strng");
        assert_eq!(span(text, 9, 1), (text.len(), 0));
    }

    #[test]
    fn database_url_expands_trellis_yaml() {
        let env = Env::new([("PW".to_string(), "pw".to_string())]);
        assert_eq!(
            expand(&env, "postgres://u:${PW}@h/d").unwrap(),
            "postgres://u:pw@h/d"
        );
        assert_eq!(
            format!("{:#}", expand(&env, "${NOPE}").unwrap_err()),
            "trellis.yaml uses the environment variable NOPE, which is not set: environment variable not found"
        );
        assert_eq!(
            format!("{:#}", expand(&env, "x${PW").unwrap_err()),
            "`x${PW` has an unclosed `${`"
        );
    }
}
