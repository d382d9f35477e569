//! `cli`: the `trellis` command: the clap definitions and the dispatch here, one
//! module per command group. The only layer that uses `anyhow`, prints for people,
//! and reads the environment (once, into an [`Env`] handed to the commands that
//! need it).

mod accounts;
mod check;
mod documents;
mod explain;
mod migrate;
mod project;
mod serve;
mod test;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use trellis::runtime::Env;

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
        #[command(flatten)]
        ops: serve::OpsArgs,
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
    // The one read of the environment (variables that are not UTF-8 count as unset).
    let env =
        Env::new(std::env::vars_os().filter_map(|(name, value)| {
            Some((name.into_string().ok()?, value.into_string().ok()?))
        }));
    let result = match cli.command {
        Command::Serve {
            dir,
            port,
            host,
            database_url,
            no_watch,
            events_retention_hours,
            mode,
            ops,
        } => serve::serve(
            &dir,
            &host,
            port,
            database_url,
            !no_watch,
            Duration::from_secs(events_retention_hours.saturating_mul(3600)),
            mode,
            &ops,
            &env,
        ),
        Command::Migrate { action } => migrate::migrate(action, &env),
        Command::Check { dir, format } => check::check(&dir, format),
        Command::Openapi { dir } => documents::openapi(&dir),
        Command::Diagram { targets, format } => documents::diagram(&targets, format),
        Command::Schema { kind, out } => documents::schema(kind, out.as_deref()),
        Command::Test { dir, database_url } => test::policy_tests(&dir, database_url),
        Command::Token { sub, roles, dir } => accounts::token(&dir, &sub, &roles, &env),
        Command::Explain {
            entity,
            id,
            action,
            as_user,
            roles,
            dir,
            database_url,
        } => explain::explain(
            &dir,
            &entity,
            &id,
            &action,
            as_user,
            &roles,
            database_url,
            &env,
        ),
        Command::AddUser {
            email,
            dir,
            role,
            name,
            password_env,
            database_url,
        } => accounts::add_user(&dir, &email, role, name, password_env, database_url, &env),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
