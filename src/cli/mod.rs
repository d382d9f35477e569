//! `cli`: the `trellis` command: the clap definitions and the dispatch here, one
//! module per command group. The only layer that uses `anyhow`, prints for people,
//! and reads the environment (once, into an [`Env`] handed to the commands that
//! need it).

mod accounts;
mod check;
mod documents;
mod explain;
mod init;
mod migrate;
mod project;
mod serve;
mod test;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use trellis::runtime::Env;

#[derive(Parser)]
#[command(
    name = "trellis",
    version,
    about = "YAML models in, database tables and a REST API out."
)]
struct Cli {
    /// Colours in diagnostics, logs and help: auto (a terminal, unless NO_COLOR is
    /// set), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorWhen::Auto)]
    color: ColorWhen,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ColorWhen {
    Auto,
    Always,
    Never,
}

/// The project folder of a command: an optional positional `[DIR]` (default `.`),
/// and `--dir DIR`, a hidden alias kept for scripts written before.
#[derive(Args, Clone, Debug)]
struct ProjectDir {
    /// The project folder (default: the current folder).
    #[arg(value_name = "DIR")]
    dir: Option<PathBuf>,
    #[arg(long = "dir", value_name = "DIR", hide = true)]
    dir_flag: Option<PathBuf>,
}

impl ProjectDir {
    fn resolve(self) -> anyhow::Result<PathBuf> {
        one_dir(self.dir, self.dir_flag)
    }
}

/// The folder given as `[DIR]` or `--dir` (the same one, if both), else `.`.
fn one_dir(positional: Option<PathBuf>, flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match (positional, flag) {
        (Some(a), Some(b)) if a != b => anyhow::bail!(
            "two project folders were given ({} and --dir {}); give one, as `[DIR]`",
            a.display(),
            b.display()
        ),
        (Some(d), _) | (None, Some(d)) => Ok(d),
        (None, None) => Ok(PathBuf::from(".")),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Start a new project: a small working example (two entities, a policy with
    /// tests, a workflow, trellis.yaml with accounts, editor schemas, a README).
    Init {
        /// The folder to write it to (created if missing; default: the current folder).
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Write into a folder that already holds files (never over existing ones).
        #[arg(long)]
        force: bool,
    },
    /// Serve the project's REST API (creates missing tables first).
    Serve {
        #[command(flatten)]
        dir: ProjectDir,
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
    /// Reviewed schema migrations: plan a file, apply pending ones, list them, adopt
    /// a database that development mode created.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Check every file of the project and print every problem.
    Check {
        #[command(flatten)]
        dir: ProjectDir,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Print the OpenAPI 3.1 document of the project.
    Openapi {
        #[command(flatten)]
        dir: ProjectDir,
    },
    /// Run the `tests:` of the policy files against a real database.
    Test {
        #[command(flatten)]
        dir: ProjectDir,
        /// Run against this database (each test starts from its own empty schema
        /// only with the default, an in-memory SQLite per test).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Sign a token for trying the API (HS256 projects; the secret comes from the environment).
    Token {
        #[command(flatten)]
        dir: ProjectDir,
        /// The user id (the `sub` claim, or the configured user id claim).
        #[arg(long)]
        sub: String,
        /// Roles, comma-separated.
        #[arg(long, default_value = "")]
        roles: String,
        /// How long the token lasts: seconds (`900`) or a number with s, m, h or d
        /// (`15m`, `24h`, `7d`); at most 30 days. Default: `auth.users.access_ttl`,
        /// else 15 minutes.
        #[arg(long, value_parser = accounts::parse_ttl)]
        ttl: Option<u64>,
    },
    /// Draw an entity's workflow: states, transitions, who may fire them, guards.
    #[command(override_usage = "trellis diagram [OPTIONS] [DIR] <ENTITY>")]
    Diagram {
        /// `[DIR] ENTITY`: the project folder (default `.`) and the entity.
        #[arg(num_args = 1..=2, value_names = ["DIR", "ENTITY"], required = true)]
        targets: Vec<String>,
        #[arg(long = "dir", value_name = "DIR", hide = true)]
        dir_flag: Option<PathBuf>,
        /// mermaid (for Markdown) or dot (Graphviz).
        #[arg(long, value_enum, default_value_t = DiagramFormat::Mermaid)]
        format: DiagramFormat,
    },
    /// Explain why a user may or may not do an action on a record.
    #[command(override_usage = "trellis explain [OPTIONS] [DIR] <ENTITY> <ID> <ACTION>")]
    Explain {
        /// `[DIR] ENTITY ID ACTION`: the project folder (default `.`), the entity
        /// (e.g. `project`), the record's id, and the action: list, read, create,
        /// update, delete, aggregate or transition.<name>.
        #[arg(num_args = 3..=4, value_names = ["DIR", "ENTITY", "ID", "ACTION"], required = true)]
        targets: Vec<String>,
        /// The user id (absent: an anonymous caller).
        #[arg(long = "as")]
        as_user: Option<String>,
        /// That user's roles, comma-separated.
        #[arg(long, default_value = "")]
        roles: String,
        /// human (the answer in words) or json (for tools).
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[arg(long = "dir", value_name = "DIR", hide = true)]
        dir_flag: Option<PathBuf>,
        #[arg(long, env = "DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Create a built-in account (e.g. the first admin) and print its password.
    #[command(
        name = "add-user",
        override_usage = "trellis add-user [OPTIONS] [DIR] <EMAIL>"
    )]
    AddUser {
        /// `[DIR] EMAIL`: the project folder (default `.`) and the account's email.
        #[arg(num_args = 1..=2, value_names = ["DIR", "EMAIL"], required = true)]
        targets: Vec<String>,
        #[arg(long = "dir", value_name = "DIR", hide = true)]
        dir_flag: Option<PathBuf>,
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
        /// Write all of them (`model`, `trellis`, `policy`, `workflow` and `migration.schema.json`) into this folder instead.
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
        #[command(flatten)]
        dir: ProjectDir,
        /// A few words for the file name, e.g. `add close reason`.
        #[arg(long)]
        name: Option<String>,
        /// The database to count what destructive steps would lose (optional).
        #[arg(long, env = "DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Apply pending migrations in order, each in one transaction.
    Apply {
        #[command(flatten)]
        dir: ProjectDir,
        /// Apply steps that lose data (dropped entities or fields, narrowing types).
        #[arg(long)]
        allow_destructive: bool,
        #[arg(long, env = "DATABASE_URL")]
        database_url: Option<String>,
    },
    /// List applied and pending migrations.
    Status {
        #[command(flatten)]
        dir: ProjectDir,
        #[arg(long, env = "DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Adopt a database that development-mode `serve` created: after checking that
    /// its tables match a migration's definitions, record that migration and the
    /// ones before it as applied (nothing else is changed).
    Baseline {
        #[command(flatten)]
        dir: ProjectDir,
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
    Migration,
}

pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    // The one read of the environment (variables that are not UTF-8 count as unset).
    let env =
        Env::new(std::env::vars_os().filter_map(|(name, value)| {
            Some((name.into_string().ok()?, value.into_string().ok()?))
        }));
    // Colour is decided before parsing, so that clap's own help and errors follow it.
    let when = color_flag(&args).unwrap_or(ColorWhen::Auto);
    project::set_color(colored(when, &env));
    let command = Cli::command().color(match when {
        ColorWhen::Auto if no_color(&env) => clap::ColorChoice::Never,
        ColorWhen::Auto => clap::ColorChoice::Auto,
        ColorWhen::Always => clap::ColorChoice::Always,
        ColorWhen::Never => clap::ColorChoice::Never,
    });
    let cli = match Cli::from_arg_matches(&command.get_matches_from(args)) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    match run(cli.command, &env) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `NO_COLOR` set to anything but the empty text (https://no-color.org).
fn no_color(env: &Env) -> bool {
    env.get("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Whether what Trellis writes to stderr (diagnostics, logs) is coloured.
fn colored(when: ColorWhen, env: &Env) -> bool {
    match when {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => !no_color(env) && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    }
}

/// The last `--color WHEN` / `--color=WHEN` of the arguments, read before clap
/// parses them (an invalid value is left for clap to refuse).
fn color_flag(args: &[OsString]) -> Option<ColorWhen> {
    let mut found = None;
    let mut args = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        let value = if arg == "--color" {
            args.next().map(|v| v.into_owned())
        } else {
            arg.strip_prefix("--color=").map(str::to_string)
        };
        match value.as_deref() {
            Some("auto") => found = Some(ColorWhen::Auto),
            Some("always") => found = Some(ColorWhen::Always),
            Some("never") => found = Some(ColorWhen::Never),
            _ => {}
        }
    }
    found
}

fn run(command: Command, env: &Env) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve {
            dir,
            port,
            host,
            database_url,
            no_watch,
            events_retention_hours,
            mode,
        } => serve::serve(
            &dir.resolve()?,
            &host,
            port,
            database_url,
            !no_watch,
            Duration::from_secs(events_retention_hours.saturating_mul(3600)),
            mode,
            env,
        ),
        Command::Migrate { action } => migrate::migrate(action, env),
        Command::Check { dir, format } => check::check(&dir.resolve()?, format),
        Command::Openapi { dir } => documents::openapi(&dir.resolve()?),
        Command::Diagram {
            targets,
            dir_flag,
            format,
        } => {
            let (dir, rest) = split_dir(targets, dir_flag, 1)?;
            documents::diagram(&dir, &rest[0], format)
        }
        Command::Schema { kind, out } => documents::schema(kind, out.as_deref()),
        Command::Init { dir, force } => init::init(&dir.unwrap_or_else(|| ".".into()), force),
        Command::Test { dir, database_url } => test::policy_tests(&dir.resolve()?, database_url),
        Command::Token {
            dir,
            sub,
            roles,
            ttl,
        } => accounts::token(&dir.resolve()?, &sub, &roles, ttl, env),
        Command::Explain {
            targets,
            dir_flag,
            as_user,
            roles,
            format,
            database_url,
        } => {
            let (dir, rest) = split_dir(targets, dir_flag, 3)?;
            explain::explain(
                &dir,
                explain::Question {
                    entity: &rest[0],
                    id: &rest[1],
                    action: &rest[2],
                    as_user,
                    roles: &roles,
                },
                format,
                database_url,
                env,
            )
        }
        Command::AddUser {
            targets,
            dir_flag,
            role,
            name,
            password_env,
            database_url,
        } => {
            let (dir, rest) = split_dir(targets, dir_flag, 1)?;
            accounts::add_user(&dir, &rest[0], role, name, password_env, database_url, env)
        }
    }
}

/// `[DIR] ARGS…` of a command whose folder comes before `n` other positional
/// arguments: the folder (or `--dir`, or `.`) and the rest.
fn split_dir(
    mut targets: Vec<String>,
    flag: Option<PathBuf>,
    n: usize,
) -> anyhow::Result<(PathBuf, Vec<String>)> {
    let positional = if targets.len() > n {
        Some(PathBuf::from(targets.remove(0)))
    } else {
        None
    };
    if targets.len() != n {
        anyhow::bail!("expected {n} argument(s) after the project folder");
    }
    Ok((one_dir(positional, flag)?, targets))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_color_flag_is_read_before_parsing() {
        assert!(color_flag(&os(&["trellis", "check"])).is_none());
        assert!(
            color_flag(&os(&["trellis", "check", "--color", "never"])) == Some(ColorWhen::Never)
        );
        assert!(
            color_flag(&os(&["trellis", "--color=always", "check"])) == Some(ColorWhen::Always)
        );
        assert!(color_flag(&os(&["trellis", "check", "--", "--color=always"])).is_none());
        let env = Env::new([("NO_COLOR".to_string(), "1".to_string())]);
        assert!(!colored(ColorWhen::Auto, &env));
        assert!(colored(ColorWhen::Always, &env));
        let empty = Env::new([("NO_COLOR".to_string(), String::new())]);
        assert!(!no_color(&empty));
    }

    #[test]
    fn one_folder_from_the_argument_or_the_alias() {
        assert_eq!(one_dir(None, None).unwrap(), PathBuf::from("."));
        assert_eq!(one_dir(Some("a".into()), None).unwrap(), PathBuf::from("a"));
        assert_eq!(one_dir(None, Some("b".into())).unwrap(), PathBuf::from("b"));
        assert_eq!(
            one_dir(Some("a".into()), Some("a".into())).unwrap(),
            PathBuf::from("a")
        );
        assert!(one_dir(Some("a".into()), Some("b".into())).is_err());
        let (dir, rest) = split_dir(vec!["p".into(), "task".into()], None, 1).unwrap();
        assert_eq!((dir, rest), (PathBuf::from("p"), vec!["task".to_string()]));
        let (dir, rest) = split_dir(vec!["task".into()], Some("q".into()), 1).unwrap();
        assert_eq!((dir, rest), (PathBuf::from("q"), vec!["task".to_string()]));
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
