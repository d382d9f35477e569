//! `trellis serve`: load the project, bring the database along (or, in production,
//! refuse to start while it is behind), start the runtime's tasks (reload, change
//! feed, webhook sender, WAL checkpoints) and serve HTTP until Ctrl-C.

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
use super::project::{database_url, load_engine_with_diagnostics, redact};

#[allow(clippy::too_many_arguments)]
pub(super) fn serve(
    dir: &Path,
    host: &str,
    port: u16,
    database_url_flag: Option<String>,
    watch: bool,
    events_retention: Duration,
    mode_flag: Option<RunMode>,
    env: &Env,
) -> Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,tower_http=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(super::project::color())
        .init();
    let (engine, warnings) = load_engine_with_diagnostics(dir)?;
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
    runtime.block_on(async move {
        let store = Store::connect(&url).await?;
        if !bring_database_along(dir, &engine, &store, production).await? {
            return Ok(ExitCode::FAILURE);
        }
        let entities = engine.entities().len();
        let secret = jwt_secrets(&engine, env);
        let auth = Auth::from_engine(&engine, dir, secret.as_ref())?;
        let mut state = AppState::with_auth(engine, store.clone(), auth);
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
        trellis::runtime::outbox::spawn(store.clone(), state.engine.clone(), env.clone());
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
