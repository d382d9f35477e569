//! `trellis serve`: load the project, bring the database along (or, in production,
//! refuse to start while it is behind), start the runtime's tasks (reload, change
//! feed, webhook sender, WAL checkpoints) and serve HTTP until SIGTERM or SIGINT
//! (Ctrl-C), which drain the same way (docs/operations.md): `/_/ready` answers 503,
//! the listener closes, event streams end with a `retry:` hint, requests in flight
//! finish, the webhook sender delivers what is due, and the process exits 0; all
//! within `--shutdown-timeout` (a second signal stops waiting).

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use trellis::engine::Engine;
use trellis::http::{AppState, Auth, router};
use trellis::runtime::{Env, Reloader, SecretLookup, Status};
use trellis::store::{self, Store};

use super::RunMode;
use super::migrate::pending_work;
use super::project::{
    database_url, load_all, load_engine_with_diagnostics, redact, require_project, summary,
};
use trellis::http::server::Drained;

#[allow(clippy::too_many_arguments)]
pub(super) fn serve(
    dir: &Path,
    host: &str,
    port: u16,
    database_url_flag: Option<String>,
    watch: bool,
    events_retention: Duration,
    mode_flag: Option<RunMode>,
    ops: &OpsArgs,
    env: &Env,
) -> Result<ExitCode> {
    init_logging(ops.log_format);
    let (engine, warnings) = match ops.log_format {
        LogFormat::Text => load_engine_with_diagnostics(dir)?,
        LogFormat::Json => load_engine_logging_diagnostics(dir)?,
    };
    let url = database_url(dir, database_url_flag, &engine, env)?;
    let production = match mode_flag {
        Some(m) => m == RunMode::Production,
        None => engine.production,
    };
    let watch = watch && !production;
    if production
        && let Some(var) = engine.auth.jwt.as_ref().and_then(|j| j.secret_env.clone())
        && env.get(&var).is_none()
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
    let drain_within = Duration::from_secs(ops.shutdown_timeout);
    let metrics_addr = ops.metrics_addr;
    let result = runtime.block_on(async move {
        // Before the database: a storage configured wrong stops the start at once.
        let files = match file_storage(dir, &engine, env, production) {
            Ok(files) => files.map(std::sync::Arc::new),
            Err(why) => {
                eprintln!("{why}");
                return Ok(ExitCode::FAILURE);
            }
        };
        let store = Store::connect(&url).await?;
        if !bring_database_along(dir, &engine, &store, production).await? {
            return Ok(ExitCode::FAILURE);
        }
        let entities = engine.entities().len();
        let secret = jwt_secrets(&engine, env);
        let auth = Auth::from_engine(&engine, dir, secret.as_ref())?;
        let mut state = AppState::with_auth(engine, store.clone(), auth);
        if let Some(files) = &files {
            tracing::info!("files in {}", files.store);
            state.set_files(files.clone());
        }
        if !production {
            state.set_reloader(Reloader {
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
        let sender = trellis::runtime::outbox::spawn(&state.runtime, env.clone());
        let file_worker = files.map(|f| trellis::runtime::files::worker::spawn(store.clone(), f));
        store.checkpoint_every(Duration::from_secs(2));
        state
            .status
            .store(std::sync::Arc::new(Status::started(warnings)));
        let _watcher = if watch {
            match trellis::runtime::watch(dir.to_path_buf(), state.runtime.clone(), secret.clone()) {
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
        // Signals are taken over before serving, so that none is lost.
        let signals = Signals::new()?;
        if let Some(addr) = metrics_addr {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for --metrics-addr"))?;
            tracing::info!("metrics (no authentication) on http://{addr}/metrics");
            tokio::spawn(trellis::http::metrics::serve_metrics(listener, state.clone()));
        }
        let shutdown = state.shutdown.clone();
        let app = router(state);
        let addr: SocketAddr = format!("{host}:{port}")
            .parse()
            .with_context(|| format!("`{host}:{port}` is not an address to listen on"))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (is another server using the port? try --port)"))?;
        let shown = redact(&url);
        tracing::info!("serving {entities} entities on http://{addr} (database {shown}); OpenAPI at http://{addr}/openapi.json");
        // A second signal: stop waiting (a flag like the drain's own).
        let again = trellis::runtime::Shutdown::default();
        let drain_started = {
            let (shutdown, again) = (shutdown.clone(), again.clone());
            tokio::spawn(async move {
                let mut signals = signals;
                let first = signals.next().await;
                let started = tokio::time::Instant::now();
                tracing::info!(
                    "{first}: draining (at most {} s; send it again to stop at once)",
                    drain_within.as_secs()
                );
                shutdown.begin();
                tokio::spawn(async move {
                    let second = signals.next().await;
                    tracing::warn!("{second} again: stopping without waiting");
                    again.begin();
                });
                started
            })
        };
        let drained = trellis::http::server::serve(
            listener,
            app,
            limits,
            shutdown.draining(),
            async {
                tokio::select! {
                    () = tokio::time::sleep(drain_within) => {}
                    () = again.draining() => {}
                }
            },
        )
        .await
        .context("serving HTTP")?;
        let started = drain_started.await.unwrap_or_else(|_| tokio::time::Instant::now());
        let left = drain_within.saturating_sub(started.elapsed());
        match drained {
            Drained::Completely => tracing::info!("every request in flight was answered"),
            Drained::GaveUp => tracing::warn!(
                "stopped waiting for requests in flight after {} s (--shutdown-timeout)",
                started.elapsed().as_secs()
            ),
        }
        if let Some(sender) = sender {
            let finished = tokio::select! {
                done = sender.finish(left) => done,
                () = again.draining() => false,
            };
            if !finished {
                tracing::warn!("webhooks still due stay in the outbox for the next start");
            }
        }
        if let Some(worker) = file_worker {
            let left = drain_within.saturating_sub(started.elapsed());
            let finished = tokio::select! {
                done = worker.finish(left) => done,
                () = again.draining() => false,
            };
            if !finished {
                tracing::warn!("file removals still due stay queued for the next start");
            }
        }
        if tokio::time::timeout(Duration::from_secs(2), store.close())
            .await
            .is_err()
        {
            tracing::warn!("closed the database without waiting for the last connections");
        }
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    });
    // Blocking tasks (password hashes) that are still running are not waited for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// The log format on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum LogFormat {
    /// Lines for people.
    Text,
    /// One JSON object per line (fields at the top level), for log collectors.
    Json,
}

/// The operational flags of `serve` (logs, metrics, drain).
#[derive(clap::Args, Debug)]
pub(super) struct OpsArgs {
    /// Log format on stderr: `text`, or `json` (one object per line). Which lines:
    /// RUST_LOG (default `info,sqlx=warn`; the access log is the target `access`).
    #[arg(long, env = "TRELLIS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Also serve GET /metrics, without authentication, on this address (e.g.
    /// 0.0.0.0:9090) for a scraper inside your network. On the main port
    /// /metrics is for administrators.
    #[arg(long, env = "TRELLIS_METRICS_ADDR", value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Seconds that SIGTERM or SIGINT waits for requests in flight and for due
    /// webhooks before the process exits.
    #[arg(
        long,
        env = "TRELLIS_SHUTDOWN_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 25
    )]
    pub shutdown_timeout: u64,
}

/// With `--log-format json`, the diagnostics of loading the project are log lines
/// too (one per diagnostic, its position and code as fields), not miette's text.
fn load_engine_logging_diagnostics(dir: &Path) -> Result<(Engine, Vec<trellis::spec::Diagnostic>)> {
    let (loaded, engine) = load_all(dir);
    require_project(dir, &loaded)?;
    for d in &loaded.diagnostics {
        let (file, line, column, code, hint) =
            (&d.file, d.line, d.column, d.code, d.hint.as_deref());
        match d.severity {
            trellis::spec::Severity::Error => {
                tracing::error!(target: "check", file, line, column, code, hint, "{}", d.message)
            }
            _ => tracing::warn!(target: "check", file, line, column, code, hint, "{}", d.message),
        }
    }
    match engine {
        Some(engine) => Ok((engine, loaded.diagnostics)),
        None => anyhow::bail!(
            "the project in {} has problems ({}); fix them and try again",
            dir.display(),
            summary(&loaded.diagnostics)
        ),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn,tower_http=info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(super::project::color()).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

/// SIGTERM and SIGINT, which drain the same way.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                term: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
                int: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal's name.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// Makes the database ready for the engine: in development, creates what is
/// missing (and refuses changes that need a migration); in production, refuses a
/// database that is behind and only installs the change-log triggers. `false`
/// when it printed why the server cannot start.
async fn bring_database_along(
    dir: &Path,
    engine: &Engine,
    store: &Store,
    production: bool,
) -> Result<bool> {
    if production {
        let pending = pending_work(dir, engine, store).await?;
        if !pending.is_empty() {
            eprintln!(
                "Production mode never changes the schema, and the database is not up to date:"
            );
            for p in &pending {
                eprintln!("  - {p}");
            }
            eprintln!(
                "Review and apply the migrations first: `trellis migrate apply {}` (with the same database URL).",
                dir.display()
            );
            eprintln!(
                "If development-mode `serve` created these tables, `trellis migrate status {}` says whether `trellis migrate baseline` can adopt them.",
                dir.display()
            );
            return Ok(false);
        }
    }
    let synced = if production {
        store
            .ensure_log_triggers(engine)
            .await
            .map(|()| store::SyncReport::default())
    } else {
        store.sync_schema(engine).await
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
            Ok(true)
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
            Ok(false)
        }
        Err(err) => Err(err.into()),
    }
}

/// The secrets authentication reads, by variable name: the environment's, and in
/// development a random JWT secret for this run when `auth.jwt.secret_env` is not
/// set (tokens then die with the process; each instance has its own; the same one
/// is used across reloads). Production refused to start without it already.
fn jwt_secrets(engine: &Engine, env: &Env) -> SecretLookup {
    let fallback = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    if let Some(var) = engine.auth.jwt.as_ref().and_then(|j| j.secret_env.clone())
        && env.get(&var).is_none()
    {
        tracing::warn!(
            "{var} is not set: using a random JWT secret for this run only (tokens will not survive a restart; set {var} for anything real)"
        );
    }
    let env = env.clone();
    std::sync::Arc::new(move |var: &str| {
        env.get(var)
            .map(str::to_string)
            .or_else(|| Some(fallback.clone()))
    })
}

/// The file storage of `files` in trellis.yaml: S3 credentials from the
/// environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`),
/// links signed with `files.signing_secret_env`, else the HS256 JWT secret, else (in
/// development, or without one configured) a random secret for this run. `None`
/// when the local folder cannot be made (a read-only project folder): the server
/// runs, and file routes answer that storage is unavailable; a bucket that is
/// configured wrong stops it.
fn file_storage(
    dir: &Path,
    engine: &Engine,
    env: &Env,
    production: bool,
) -> std::result::Result<Option<trellis::runtime::files::Files>, String> {
    use trellis::runtime::files::{FileStore, Files, S3Credentials, Signer};
    let settings = engine.files.clone();
    let credentials = match (
        env.get("AWS_ACCESS_KEY_ID"),
        env.get("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Some(id), Some(key)) => Some(S3Credentials {
            access_key_id: id.to_string(),
            secret_access_key: key.to_string(),
            session_token: env.get("AWS_SESSION_TOKEN").map(str::to_string),
        }),
        _ => None,
    };
    let store = match FileStore::from_settings(&settings, dir, credentials.as_ref()) {
        Ok(store) => store,
        Err(err) if settings.storage == trellis::spec::settings::FileStorage::Local => {
            tracing::error!(%err, "files cannot be stored: file uploads and downloads are unavailable");
            return Ok(None);
        }
        Err(err) => return Err(err.to_string()),
    };
    let jwt_var = engine
        .auth
        .jwt
        .as_ref()
        .filter(|j| j.algorithm == trellis::spec::settings::JwtAlgorithm::Hs256)
        .and_then(|j| j.secret_env.clone());
    let signer = match (&settings.signing_secret_env, &jwt_var) {
        (Some(var), _) => match env.get(var) {
            Some(secret) => Signer::new(secret.as_bytes()),
            None if production => {
                return Err(format!(
                    "{var} (files.signing_secret_env) is not set. In production mode Trellis does not make up the secret of download links: set {var} (the same on every instance)."
                ));
            }
            None => {
                tracing::warn!(
                    "{var} is not set: download links are signed with a random secret for this run only"
                );
                Signer::random()
            }
        },
        (None, Some(var)) => match env.get(var) {
            Some(secret) => Signer::new(secret.as_bytes()),
            // Production refused to start without it already.
            None => Signer::random(),
        },
        (None, None) => Signer::random(),
    };
    Ok(Some(Files::new(store, signer, settings)))
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
