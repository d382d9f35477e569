//! `cli`: the `trellis` command. The only layer that uses `anyhow`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use trellis::engine::Engine;
use trellis::http::{AppState, Auth, router};
use trellis::spec::{self, Diagnostic, Loaded, Severity};
use trellis::store::{self, Store};

#[derive(Parser)]
#[command(
    name = "trellis",
    version,
    about = "YAML models in, database tables and a REST API out."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the project's REST API (creates missing tables first).
    Serve {
        /// The project folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// TCP port.
        #[arg(long, env = "TRELLIS_PORT", default_value_t = 8080)]
        port: u16,
        /// Address to listen on.
        #[arg(long, env = "TRELLIS_HOST", default_value = "127.0.0.1")]
        host: String,
        /// Database URL: sqlite://path or postgres://user:password@host/db.
        /// Default: trellis.yaml's database.url, else DIR/.trellis/data.db.
        #[arg(long, env = "DATABASE_URL")]
        database_url: Option<String>,
        /// Do not reload when definition files change.
        #[arg(long)]
        no_watch: bool,
        /// How long the change log keeps events for reconnecting clients, in hours.
        #[arg(long, env = "TRELLIS_EVENTS_RETENTION_HOURS", default_value_t = 24)]
        events_retention_hours: u64,
        /// development: create missing tables and follow file changes; production:
        /// never change the schema (refuse to start while migrations are pending),
        /// no file watching, no made-up JWT secret. Default: trellis.yaml's `mode`.
        #[arg(long, env = "TRELLIS_MODE", value_enum)]
        mode: Option<RunMode>,
    },
    /// Reviewed schema migrations: plan a file, apply pending ones, list them.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Check every file of the project and print every problem.
    Check {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Print the OpenAPI 3.1 document of the project.
    Openapi {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Run the `tests:` of the policy files against a real database.
    Test {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Run against this database (each test starts from its own empty schema
        /// only with the default, an in-memory SQLite per test).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Sign a token for trying the API (HS256 projects; the secret comes from the environment).
    Token {
        /// The user id (the `sub` claim, or the configured user id claim).
        #[arg(long)]
        sub: String,
        /// Roles, comma-separated.
        #[arg(long, default_value = "")]
        roles: String,
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Draw an entity's workflow: states, transitions, who may fire them, guards.
    Diagram {
        /// `[DIR] ENTITY`: the project folder (default `.`) and the entity.
        #[arg(num_args = 1..=2, value_names = ["DIR", "ENTITY"], required = true)]
        targets: Vec<String>,
        /// mermaid (for Markdown) or dot (Graphviz).
        #[arg(long, value_enum, default_value_t = DiagramFormat::Mermaid)]
        format: DiagramFormat,
    },
    /// Explain why a user may or may not do an action on a record.
    Explain {
        /// The entity, e.g. `project`.
        entity: String,
        /// The record's id.
        id: String,
        /// list, read, create, update, delete, aggregate or transition.<name>.
        action: String,
        /// The user id (absent: an anonymous caller).
        #[arg(long = "as")]
        as_user: Option<String>,
        /// That user's roles, comma-separated.
        #[arg(long, default_value = "")]
        roles: String,
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long, env = "DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Create a built-in account (e.g. the first admin) and print its password.
    #[command(name = "add-user")]
    AddUser {
        /// The account's email.
        email: String,
        /// The project folder.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The role (the value of `auth.users.role_field`).
        #[arg(long)]
        role: Option<String>,
        /// The display name, if the entity has a required `display_name` or `name`.
        #[arg(long)]
        name: Option<String>,
        /// Read the password from this environment variable instead of generating one.
        #[arg(long)]
        password_env: Option<String>,
        #[arg(long, env = "DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Print the JSON Schema of the model file format (or write all schemas with --out).
    Schema {
        /// Which file format.
        #[arg(long, value_enum, default_value_t = SchemaKind::Model)]
        kind: SchemaKind,
        /// Write `model.schema.json`, `trellis.schema.json`, `policy.schema.json` and `workflow.schema.json` into this folder instead.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Human,
    Json,
}

#[derive(Subcommand)]
enum MigrateAction {
    /// Compare the definitions with the last migration and write the next one to
    /// migrations/ (nothing when nothing changed).
    Plan {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// A few words for the file name, e.g. `add close reason`.
        #[arg(long)]
        name: Option<String>,
        /// The database to count what destructive steps would lose (optional).
        #[arg(long, env = "DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Apply pending migrations in order, each in one transaction.
    Apply {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Apply steps that lose data (dropped entities or fields, narrowing types).
        #[arg(long)]
        allow_destructive: bool,
        #[arg(long, env = "DATABASE_URL")]
        database_url: Option<String>,
    },
    /// List applied and pending migrations.
    Status {
        #[arg(default_value = ".")]
        dir: PathBuf,
        #[arg(long, env = "DATABASE_URL")]
        database_url: Option<String>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RunMode {
    Development,
    Production,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DiagramFormat {
    Mermaid,
    Dot,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SchemaKind {
    Model,
    Settings,
    Policy,
    Workflow,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve {
            dir,
            port,
            host,
            database_url,
            no_watch,
            events_retention_hours,
            mode,
        } => serve(
            &dir,
            &host,
            port,
            database_url,
            !no_watch,
            Duration::from_secs(events_retention_hours.saturating_mul(3600)),
            mode,
        ),
        Command::Migrate { action } => migrate(action),
        Command::Check { dir, format } => check(&dir, format),
        Command::Openapi { dir } => openapi(&dir),
        Command::Diagram { targets, format } => diagram(&targets, format),
        Command::Schema { kind, out } => schema(kind, out.as_deref()),
        Command::Test { dir, database_url } => policy_tests(&dir, database_url),
        Command::Token { sub, roles, dir } => token(&dir, &sub, &roles),
        Command::Explain {
            entity,
            id,
            action,
            as_user,
            roles,
            dir,
            database_url,
        } => explain(&dir, &entity, &id, &action, as_user, &roles, database_url),
        Command::AddUser {
            email,
            dir,
            role,
            name,
            password_env,
            database_url,
        } => add_user(&dir, &email, role, name, password_env, database_url),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints diagnostics with a snippet of the file and an arrow under the problem.
fn render(loaded: &Loaded) {
    use miette::{
        GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, NamedSource,
    };
    let color = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let theme = if color {
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

fn summary(diagnostics: &[Diagnostic]) -> String {
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

fn check(dir: &Path, format: Format) -> Result<ExitCode> {
    let (loaded, _) = load_all(dir);
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&loaded.diagnostics)?),
        Format::Human => {
            render(&loaded);
            let entities = loaded.spec.models.len();
            eprintln!(
                "checked {} ({entities} entit{}): {}",
                dir.display(),
                if entities == 1 { "y" } else { "ies" },
                summary(&loaded.diagnostics)
            );
        }
    }
    Ok(if loaded.has_errors() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Loads and compiles a project: the spec's diagnostics, then the compiled
/// policies' (which need the whole model).
fn load_all(dir: &Path) -> (Loaded, Option<Engine>) {
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

fn load_engine(dir: &Path) -> Result<Engine> {
    load_engine_with_diagnostics(dir).map(|(engine, _)| engine)
}

/// The engine, and the (warning) diagnostics of loading it, rendered once.
fn load_engine_with_diagnostics(dir: &Path) -> Result<(Engine, Vec<Diagnostic>)> {
    let (loaded, engine) = load_all(dir);
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

fn diagram(targets: &[String], format: DiagramFormat) -> Result<ExitCode> {
    let (dir, entity) = match targets {
        [entity] => (Path::new("."), entity.as_str()),
        [dir, entity] => (Path::new(dir.as_str()), entity.as_str()),
        _ => anyhow::bail!(
            "give the entity, optionally after the project folder: `trellis diagram [DIR] ENTITY`"
        ),
    };
    let engine = load_engine(dir)?;
    let Some(wf) = engine.workflow(entity) else {
        let with: Vec<&str> = engine.workflows.keys().map(String::as_str).collect();
        anyhow::bail!(
            "`{entity}` has no workflow{}",
            if with.is_empty() {
                " (this project has none)".to_string()
            } else {
                format!("; entities with one: {}", with.join(", "))
            }
        );
    };
    let format = match format {
        DiagramFormat::Mermaid => trellis::engine::diagram::Format::Mermaid,
        DiagramFormat::Dot => trellis::engine::diagram::Format::Dot,
    };
    print!("{}", trellis::engine::diagram::render(&engine, wf, format));
    Ok(ExitCode::SUCCESS)
}

fn openapi(dir: &Path) -> Result<ExitCode> {
    let engine = load_engine(dir)?;
    println!("{}", String::from_utf8_lossy(&engine.openapi_json));
    Ok(ExitCode::SUCCESS)
}

fn schema(kind: SchemaKind, out: Option<&Path>) -> Result<ExitCode> {
    let model = serde_json::to_string_pretty(&spec::schema::model_schema())?;
    let settings = serde_json::to_string_pretty(&spec::schema::settings_schema())?;
    let policy = serde_json::to_string_pretty(&spec::schema::policy_schema())?;
    let workflow = serde_json::to_string_pretty(&spec::schema::workflow_schema())?;
    match out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::write(dir.join("model.schema.json"), model + "\n")?;
            std::fs::write(dir.join("trellis.schema.json"), settings + "\n")?;
            std::fs::write(dir.join("policy.schema.json"), policy + "\n")?;
            std::fs::write(dir.join("workflow.schema.json"), workflow + "\n")?;
            eprintln!(
                "wrote model.schema.json, trellis.schema.json, policy.schema.json and workflow.schema.json to {}",
                dir.display()
            );
        }
        None => println!(
            "{}",
            match kind {
                SchemaKind::Model => model,
                SchemaKind::Settings => settings,
                SchemaKind::Policy => policy,
                SchemaKind::Workflow => workflow,
            }
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `${VAR}` in a configured value reads the environment.
fn expand_env(raw: &str) -> Result<String> {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .with_context(|| format!("`{raw}` has an unclosed `${{`"))?;
        let name = &after[..end];
        let value = std::env::var(name).with_context(|| {
            format!("trellis.yaml uses the environment variable {name}, which is not set")
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Why a production server may not start on this database: migration files not
/// applied (or edited after applying), or definitions that no migration covers.
async fn pending_work(dir: &Path, engine: &Engine, store: &Store) -> Result<Vec<String>> {
    let (files, problems) = spec::migration::read_all(dir);
    let mut out: Vec<String> = problems.iter().map(|d| d.to_string()).collect();
    let applied = store.applied_migrations().await?;
    for f in &files {
        match applied.iter().find(|a| a.name == f.name) {
            None => out.push(format!("{} is not applied", f.name)),
            Some(a) if a.checksum != f.checksum => out.push(format!(
                "{} was edited after it was applied (its checksum differs)",
                f.name
            )),
            Some(_) => {}
        }
    }
    let last = match files.last() {
        Some(f) => Some(engine_of(f)?),
        None => None,
    };
    if !trellis::engine::migration::steps(last.as_ref(), engine).is_empty() {
        out.push(format!(
            "the definitions changed since {}: run `trellis migrate plan` and review the new file",
            files
                .last()
                .map(|f| f.name.as_str())
                .unwrap_or("the first migration (there is none yet)")
        ));
    }
    Ok(out)
}

/// The engine of a migration's definitions.
fn engine_of(file: &spec::migration::MigrationFile) -> Result<Engine> {
    let loaded = spec::migration::load_texts(&file.definitions);
    if loaded.has_errors() {
        let lines: Vec<String> = loaded.errors().map(|d| d.to_string()).collect();
        anyhow::bail!(
            "the definitions kept in {} do not load:\n{}",
            file.path.display(),
            lines.join("\n")
        );
    }
    Engine::build(&loaded)
        .map_err(|e| anyhow::anyhow!("the definitions kept in {}: {e}", file.path.display()))
}

fn migrate(action: MigrateAction) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match action {
        MigrateAction::Plan {
            dir,
            name,
            database_url: flag,
        } => runtime.block_on(migrate_plan(&dir, name, flag)),
        MigrateAction::Apply {
            dir,
            allow_destructive,
            database_url: flag,
        } => runtime.block_on(migrate_apply(&dir, allow_destructive, flag)),
        MigrateAction::Status {
            dir,
            database_url: flag,
        } => runtime.block_on(migrate_status(&dir, flag)),
    }
}

fn slug(words: &str) -> String {
    let s: String = words
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let s = s
        .split('_')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    if s.is_empty() {
        "changes".to_string()
    } else {
        s.chars().take(48).collect()
    }
}

async fn migrate_plan(dir: &Path, name: Option<String>, flag: Option<String>) -> Result<ExitCode> {
    let (loaded, engine) = load_all(dir);
    let Some(engine) = engine else {
        render(&loaded);
        anyhow::bail!("fix the errors above before planning a migration");
    };
    let (files, problems) = spec::migration::read_all(dir);
    if let Some(p) = problems.first() {
        anyhow::bail!("{p}");
    }
    let base = match files.last() {
        Some(f) => Some(engine_of(f)?),
        None => None,
    };
    let steps = trellis::engine::migration::steps(base.as_ref(), &engine);
    if steps.is_empty() {
        println!(
            "Nothing changed since {}; no migration written.",
            files.last().map(|f| f.name.as_str()).unwrap_or("the start")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let number = files.last().map(|f| f.number + 1).unwrap_or(1);
    let file_name = format!(
        "{number:04}_{}",
        slug(
            name.as_deref()
                .unwrap_or(if number == 1 { "initial" } else { "changes" })
        )
    );
    // Count what the destructive steps would lose, where the database is reachable.
    let mut notes = Vec::new();
    let url = database_url(dir, flag, &engine)?;
    match Store::connect(&url).await {
        Ok(store) => match store.migration_losses(&engine).await {
            Ok(losses) if losses.is_empty() => notes.push(format!(
                "Counted in {}: nothing would be lost.",
                redact(&url)
            )),
            Ok(losses) => {
                notes.push(format!("Counted in {} as it is now:", redact(&url)));
                for l in &losses {
                    notes.push(format!(
                        "  {} {}",
                        if l.blocking {
                            "CANNOT APPLY:"
                        } else {
                            "LOSES DATA:"
                        },
                        l.what
                    ));
                }
                notes.push("`migrate apply` refuses steps that lose data unless given --allow-destructive.".into());
            }
            Err(err) => notes.push(format!("Could not count what would be lost: {err}")),
        },
        Err(err) => notes.push(format!("Could not count what would be lost ({err}).")),
    }
    let planned_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let text = spec::migration::render(
        &file_name,
        &planned_at,
        &steps,
        &notes,
        &spec::migration::schema_files(&loaded.spec),
    );
    let folder = dir.join("migrations");
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    let path = folder.join(format!("{file_name}.yaml"));
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    println!("Wrote {}:", path.display());
    for s in &steps {
        println!("  - {s}");
    }
    for n in &notes {
        println!("{n}");
    }
    println!("Review it, then run `trellis migrate apply`.");
    Ok(ExitCode::SUCCESS)
}

async fn migrate_apply(dir: &Path, allow: bool, flag: Option<String>) -> Result<ExitCode> {
    let (files, problems) = spec::migration::read_all(dir);
    if let Some(p) = problems.first() {
        anyhow::bail!("{p}");
    }
    let current = load_engine(dir)?;
    let url = database_url(dir, flag, &current)?;
    let store = Store::connect(&url).await?;
    let applied = store.applied_migrations().await?;
    let mut edited = Vec::new();
    for a in &applied {
        if let Some(f) = files.iter().find(|f| f.name == a.name)
            && f.checksum != a.checksum
        {
            edited.push(format!(
                "{} was applied on {} with checksum {}, but the file now has {}",
                a.name, a.applied_at, a.checksum, f.checksum
            ));
        }
    }
    if !edited.is_empty() {
        eprintln!("Refusing to apply anything: applied migrations were edited.");
        for e in &edited {
            eprintln!("  - {e}");
        }
        eprintln!(
            "Restore them (e.g. from version control); changes go into a new migration (`trellis migrate plan`)."
        );
        return Ok(ExitCode::FAILURE);
    }
    let mut count = 0;
    for f in files
        .iter()
        .filter(|f| !applied.iter().any(|a| a.name == f.name))
    {
        let engine = engine_of(f)?;
        match store
            .apply_migration(&f.name, &f.checksum, &engine, allow)
            .await
        {
            Ok(store::Applied::Now { report, losses }) => {
                count += 1;
                println!("applied {}", f.name);
                for s in &f.steps {
                    println!("  - {s}");
                }
                for l in &losses {
                    println!("  lost: {}", l.what);
                }
                let _ = report;
            }
            Ok(store::Applied::Already) => {
                println!("{}: already applied (by another process)", f.name);
            }
            Err(store::Error::Destructive(losses)) => {
                eprintln!("Not applied: {} would lose data.", f.name);
                for l in &losses {
                    eprintln!(
                        "  - {}{}",
                        l.what,
                        if l.blocking {
                            " (cannot be allowed)"
                        } else {
                            ""
                        }
                    );
                }
                if losses.iter().all(|l| !l.blocking) {
                    eprintln!("If that is intended, run again with --allow-destructive.");
                }
                if count > 0 {
                    eprintln!("({count} earlier migration(s) were applied.)");
                }
                return Ok(ExitCode::FAILURE);
            }
            Err(err) => {
                eprintln!("Not applied: {}: {err}", f.name);
                eprintln!("Nothing of it was changed (it ran in one transaction).");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    if count == 0 {
        println!(
            "Nothing to apply: the database has every migration ({}).",
            files.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn migrate_status(dir: &Path, flag: Option<String>) -> Result<ExitCode> {
    let (files, problems) = spec::migration::read_all(dir);
    for p in &problems {
        eprintln!("{p}");
    }
    let current = load_engine(dir)?;
    let url = database_url(dir, flag, &current)?;
    let store = Store::connect(&url).await?;
    let applied = store.applied_migrations().await?;
    println!("Database: {}", redact(&url));
    for f in &files {
        match applied.iter().find(|a| a.name == f.name) {
            Some(a) if a.checksum == f.checksum => {
                println!("  applied  {}  ({})", f.name, a.applied_at)
            }
            Some(a) => println!(
                "  EDITED   {}  (applied {} with another checksum)",
                f.name, a.applied_at
            ),
            None => println!("  pending  {}", f.name),
        }
    }
    for a in applied
        .iter()
        .filter(|a| !files.iter().any(|f| f.name == a.name))
    {
        println!(
            "  applied  {}  ({}; its file is missing)",
            a.name, a.applied_at
        );
    }
    let pending = pending_work(dir, &current, &store).await?;
    if pending.is_empty() {
        println!("Up to date.");
    } else {
        for p in &pending {
            println!("  - {p}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn database_url(dir: &Path, flag: Option<String>, engine: &Engine) -> Result<String> {
    if let Some(url) = flag.filter(|u| !u.is_empty()) {
        return Ok(url);
    }
    if let Some(raw) = &engine.database_url {
        return expand_env(raw);
    }
    let path = dir.join(".trellis").join("data.db");
    Ok(format!("sqlite://{}", path.display()))
}

fn serve(
    dir: &Path,
    host: &str,
    port: u16,
    database_url_flag: Option<String>,
    watch: bool,
    events_retention: Duration,
    mode_flag: Option<RunMode>,
) -> Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,tower_http=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let (engine, warnings) = load_engine_with_diagnostics(dir)?;
    let url = database_url(dir, database_url_flag, &engine)?;
    let production = match mode_flag {
        Some(m) => m == RunMode::Production,
        None => engine.production,
    };
    let watch = watch && !production;
    if production
        && let Some(var) = engine.auth.jwt.as_ref().and_then(|j| j.secret_env.clone())
        && std::env::var(&var).is_err()
    {
        eprintln!(
            "{var} is not set. In production mode Trellis does not make up a JWT secret: set {var} (the same on every instance)."
        );
        return Ok(ExitCode::FAILURE);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let store = Store::connect(&url).await?;
        if production {
            let pending = pending_work(dir, &engine, &store).await?;
            if !pending.is_empty() {
                eprintln!("Production mode never changes the schema, and the database is not up to date:");
                for p in &pending {
                    eprintln!("  - {p}");
                }
                eprintln!("Review and apply the migrations first: `trellis migrate apply {}` (with the same database URL).", dir.display());
                return Ok(ExitCode::FAILURE);
            }
        }
        let synced = if production {
            store
                .ensure_log_triggers(&engine)
                .await
                .map(|()| store::SyncReport::default())
        } else {
            store.sync_schema(&engine).await
        };
        match synced {
            Ok(report) => {
                for t in &report.created_tables {
                    tracing::info!("created table {t}");
                }
                for c in &report.added_columns {
                    tracing::info!("added column {c}");
                }
                for c in &report.renamed_columns {
                    tracing::info!("renamed column {c}");
                }
                for k in &report.kept {
                    tracing::warn!("kept {k}");
                }
            }
            Err(store::Error::NeedsMigration(problems)) => {
                eprintln!("The database cannot follow these model changes by itself:");
                for p in &problems {
                    eprintln!("  - {p}");
                }
                eprintln!(
                    "Nothing was changed. Undo the change, or (in development) start from an empty database by deleting {}.",
                    dir.join(".trellis").display()
                );
                return Ok(ExitCode::FAILURE);
            }
            Err(err) => return Err(err.into()),
        }
        let entities = engine.entities().len();
        // Development convenience: without the secret in the environment, a random
        // one for this run (tokens then die with the process; each instance has its
        // own). The same one is used across reloads.
        let fallback = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let secret: trellis::reload::SecretLookup = std::sync::Arc::new(move |var: &str| {
                std::env::var(var).ok().or_else(|| Some(fallback.clone()))
            });
        if let Some(var) = engine.auth.jwt.as_ref().and_then(|j| j.secret_env.clone())
            && std::env::var(&var).is_err()
        {
            tracing::warn!(
                "{var} is not set: using a random JWT secret for this run only (tokens will not survive a restart; set {var} for anything real)"
            );
        }
        let auth = Auth::from_engine(&engine, dir, secret.as_ref())?;
        let mut state = AppState::with_auth(engine, store.clone(), auth);
        if !production {
            state.set_reloader(trellis::reload::Reloader {
                dir: dir.to_path_buf(),
                secret: secret.clone(),
            });
        }
        #[cfg(unix)]
        if let Some(reloader) = state.reloader.clone() {
            let state = state.clone();
            let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .context("listening for SIGHUP")?;
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    tracing::info!("SIGHUP: reloading the definitions");
                    reloader.reload(&state).await;
                }
            });
        }
        state
            .feed
            .prune_every(Duration::from_secs(600), events_retention);
        trellis::outbox::spawn(store.clone(), state.engine.clone());
        store.checkpoint_every(Duration::from_secs(2));
        state
            .status
            .store(std::sync::Arc::new(trellis::reload::Status::started(warnings)));
        let _watcher = if watch {
            match trellis::reload::watch(dir.to_path_buf(), state.clone(), secret.clone()) {
                Ok(w) => {
                    tracing::info!("watching {} for changes", dir.display());
                    Some(w)
                }
                Err(err) => {
                    tracing::warn!("cannot watch {} for changes ({err}); reload by restarting", dir.display());
                    None
                }
            }
        } else {
            None
        };
        let limits = state.limits.clone();
        warn_about_descriptors(&limits.settings);
        let app = router(state);
        let addr: SocketAddr = format!("{host}:{port}")
            .parse()
            .with_context(|| format!("`{host}:{port}` is not an address to listen on"))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (is another server using the port? try --port)"))?;
        let shown = redact(&url);
        tracing::info!("serving {entities} entities on http://{addr} (database {shown}); OpenAPI at http://{addr}/openapi.json");
        trellis::http::server::serve(listener, app, limits, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving HTTP")?;
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Event streams hold a file descriptor each: say so when `limits.streams.total`
/// leaves the process too few for everything else (docs/limits.md).
fn warn_about_descriptors(limits: &trellis::spec::settings::LimitSettings) {
    // Linux: "Max open files  <soft>  <hard>  files".
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse::<u64>().ok()
        });
    if let Some(soft) = soft
        && u64::from(limits.streams_total) + 64 > soft
    {
        tracing::warn!(
            "limits.streams.total ({}) leaves too few of the process's {soft} file descriptors (ulimit -n) for other connections and the database; raise `ulimit -n` or lower limits.streams.total",
            limits.streams_total
        );
    }
}

fn token(dir: &Path, sub: &str, roles: &str) -> Result<ExitCode> {
    let engine = load_engine(dir)?;
    let Some(jwt) = &engine.auth.jwt else {
        bail!("this project has no `auth.jwt` in trellis.yaml");
    };
    let auth = Auth::from_engine(&engine, dir, &|var| std::env::var(var).ok())?;
    let roles: Vec<String> = roles
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect();
    let (token, ttl) = auth
        .issue(sub, &roles, serde_json::Map::new())
        .with_context(|| {
            format!(
                "only HS256 projects can sign tokens here (this one uses {:?})",
                jwt.algorithm
            )
        })?;
    eprintln!("valid for {ttl} s");
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

fn explain(
    dir: &Path,
    entity: &str,
    id: &str,
    action: &str,
    as_user: Option<String>,
    roles: &str,
    database_url_flag: Option<String>,
) -> Result<ExitCode> {
    let engine = load_engine(dir)?;
    let Some(e) = engine.entity(entity).cloned() else {
        bail!("there is no entity `{entity}`");
    };
    let id = uuid::Uuid::parse_str(id).with_context(|| format!("`{id}` is not a record id"))?;
    let action = trellis::http::explain::parse_action(action).map_err(anyhow::Error::msg)?;
    let who = match as_user {
        None => trellis::engine::access::Principal::anonymous(),
        Some(uid) => {
            let roles: Vec<&str> = roles
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .collect();
            trellis::engine::access::Principal::user(&uid, &roles, serde_json::Map::new())
        }
    };
    let url = database_url(dir, database_url_flag, &engine)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let store = Store::connect(&url).await?;
        let report = store.explain(&engine, &e, id, &action, &who).await?;
        store.close().await;
        Ok::<_, anyhow::Error>(report)
    })?;
    println!(
        "{}",
        serde_json::to_string_pretty(&trellis::http::explain::explain_json(&report))?
    );
    Ok(ExitCode::SUCCESS)
}

fn policy_tests(dir: &Path, database_url: Option<String>) -> Result<ExitCode> {
    let (loaded, engine) = load_all(dir);
    let Some(engine) = engine else {
        render(&loaded);
        bail!(
            "the project has problems ({}); fix them first",
            summary(&loaded.diagnostics)
        );
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcomes = runtime.block_on(trellis::verify::run(
        &engine,
        &loaded.spec,
        database_url.as_deref(),
    ))?;
    let mut failed = 0;
    for o in &outcomes {
        if o.failures.is_empty() {
            println!("ok      {}:{}  {}", o.file, o.line, o.name);
        } else {
            failed += 1;
            println!("FAILED  {}:{}  {}", o.file, o.line, o.name);
            for f in &o.failures {
                println!("          {f}");
            }
        }
    }
    if outcomes.is_empty() {
        println!("no policy tests: add `tests:` to the files in policies/");
    }
    println!(
        "policy tests: {} passed, {failed} failed",
        outcomes.len() - failed
    );
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn add_user(
    dir: &Path,
    email: &str,
    role: Option<String>,
    name: Option<String>,
    password_env: Option<String>,
    database_url_flag: Option<String>,
) -> Result<ExitCode> {
    let engine = load_engine(dir)?;
    let Some(users) = engine.auth.users.clone() else {
        bail!("this project has no built-in accounts (`auth.users` in trellis.yaml)");
    };
    let Some(e) = engine.entity(&users.entity.name).cloned() else {
        bail!("the accounts entity `{}` does not exist", users.entity.name);
    };
    let password = match password_env {
        Some(var) => std::env::var(&var).with_context(|| format!("{var} is not set"))?,
        None => format!("{}", uuid::Uuid::new_v4().simple())[..20].to_string(),
    };
    if password.chars().count() < 8 {
        bail!("the password must have at least 8 characters");
    }
    let mut body = serde_json::Map::new();
    body.insert("email".into(), serde_json::json!(email));
    for key in ["display_name", "name"] {
        if e.field(key).is_some_and(|f| f.required) {
            body.insert(
                key.into(),
                serde_json::json!(name.clone().unwrap_or_else(|| email.to_string())),
            );
        }
    }
    if let (Some(role), Some(rf)) = (&role, &users.role_field) {
        body.insert(rf.name.clone(), serde_json::json!(role));
    }
    let input = trellis::engine::input::parse_body(
        &e,
        &serde_json::Value::Object(body),
        trellis::engine::input::Mode::Create,
    )
    .map_err(|errors| {
        let lines: Vec<String> = errors
            .iter()
            .map(|x| format!("{}: {}", x.pointer, x.detail))
            .collect();
        anyhow::anyhow!(
            "the account does not fit the `{}` entity:\n  {}",
            e.name,
            lines.join("\n  ")
        )
    })?;
    let url = database_url(dir, database_url_flag, &engine)?;
    let hashed = {
        use argon2::password_hash::PasswordHasher;
        argon2::Argon2::default()
            .hash_password(password.as_bytes())
            .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?
            .to_string()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = Store::connect(&url).await?;
        store.sync_schema(&engine).await?;
        let rec = store
            .create(
                &engine,
                &e,
                &input,
                &trellis::engine::access::Principal::system(),
            )
            .await?;
        let id = rec
            .get("id")
            .and_then(|v| v.as_str())
            .and_then(|s| uuid::Uuid::parse_str(s).ok())
            .context("the new account has no id")?;
        store.set_password(id, &hashed).await?;
        store.close().await;
        println!("created {} {email} (id {id})", e.name);
        println!("password: {password}");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Hides a password in a database URL.
fn redact(url: &str) -> String {
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
