//! Hot reload: when a definition file changes, load and check the project again,
//! bring the database along (additive changes only), and swap the engine in one
//! step. Anything wrong keeps the last good engine serving, and `/_/status` says why.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::{Value, json};

use super::{Auth, Runtime};
use crate::engine::Engine;
use crate::spec::{self, Diagnostic, Severity};

/// What the server is running, and how the last reload went.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Status {
    /// Incremented by every successful load.
    pub generation: u64,
    /// When the engine now serving was loaded (RFC 3339).
    pub loaded_at: String,
    pub last_attempt_at: String,
    /// `ok`, or `failed` (the previous definitions keep serving).
    pub last_result: String,
    /// The problems of the last attempt (errors and warnings).
    pub diagnostics: Vec<Diagnostic>,
    /// Schema changes the last successful reload applied.
    pub applied: Vec<String>,
    /// Reloads refused since the process started (`/metrics`; not in `/_/status`).
    #[serde(skip)]
    pub failures: u64,
}

impl Status {
    pub fn started(diagnostics: Vec<Diagnostic>) -> Status {
        let now = crate::engine::input::format_datetime(&crate::engine::input::now());
        Status {
            generation: 1,
            loaded_at: now.clone(),
            last_attempt_at: now,
            last_result: "ok".into(),
            diagnostics,
            applied: Vec::new(),
            failures: 0,
        }
    }

    pub fn to_json(&self, engine: &Engine) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        v["entities"] = json!(
            engine
                .entities()
                .iter()
                .map(|e| json!({ "name": e.name, "route": format!("/api/{}", e.plural) }))
                .collect::<Vec<_>>()
        );
        v["policies"] = json!(engine.access.enforced);
        v
    }
}

/// Shared reload status.
pub type StatusCell = Arc<ArcSwap<Status>>;

/// Reads a secret by the name of its environment variable.
pub type SecretLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Loads the project in `dir` again and, if it is sound and the database can follow,
/// swaps it in. Returns whether the new definitions now serve.
pub async fn reload(
    dir: &Path,
    state: &Runtime,
    secret: &(dyn Fn(&str) -> Option<String> + Sync),
) -> bool {
    let now = crate::engine::input::format_datetime(&crate::engine::input::now());
    let previous = state.status.load_full();
    let fail = |diagnostics: Vec<Diagnostic>| {
        let mut s = (*previous).clone();
        s.last_attempt_at = now.clone();
        s.last_result = "failed".into();
        s.diagnostics = diagnostics;
        s.failures += 1;
        state.status.store(Arc::new(s));
        false
    };
    let note = |code: &'static str, message: String| Diagnostic {
        severity: Severity::Error,
        code,
        file: dir.display().to_string(),
        line: 1,
        column: 1,
        message,
        hint: None,
    };
    let mut loaded = spec::load(dir);
    if loaded.has_errors() {
        tracing::warn!(
            errors = loaded.errors().count(),
            "reload refused: the definitions have errors; still serving the previous ones"
        );
        return fail(loaded.diagnostics);
    }
    let engine = match Engine::build(&loaded) {
        Ok(e) => e,
        Err(crate::engine::Error::Diagnostics(more)) => {
            loaded.diagnostics.extend(more);
            return fail(loaded.diagnostics);
        }
        Err(other) => return fail(vec![note("internal", other.to_string())]),
    };
    let lost = lost_enforcement(&state.engine.load(), &engine);
    if !lost.is_empty() {
        tracing::warn!(
            "reload refused: the new definitions would enforce fewer policies; still serving the previous ones"
        );
        loaded.diagnostics.extend(lost);
        return fail(loaded.diagnostics);
    }
    let auth = match Auth::from_engine(&engine, dir, secret) {
        Ok(a) => a,
        Err(err) => return fail(vec![note("auth-setup", err.to_string())]),
    };
    let report = match state.store.sync_schema(&engine).await {
        Ok(r) => r,
        Err(crate::store::Error::NeedsMigration(problems)) => {
            return fail(
                problems
                    .into_iter()
                    .map(|p| note("needs-migration", p))
                    .collect(),
            );
        }
        Err(err) => return fail(vec![note("database", err.to_string())]),
    };
    let mut applied = Vec::new();
    applied.extend(
        report
            .created_tables
            .iter()
            .map(|t| format!("created table {t}")),
    );
    applied.extend(
        report
            .added_columns
            .iter()
            .map(|c| format!("added column {c}")),
    );
    applied.extend(
        report
            .renamed_columns
            .iter()
            .map(|c| format!("renamed column {c}")),
    );
    // The engine and its authentication change together.
    state.auth.store(Arc::new(auth));
    state.engine.store(Arc::new(engine));
    state.status.store(Arc::new(Status {
        generation: previous.generation + 1,
        loaded_at: now.clone(),
        last_attempt_at: now,
        last_result: "ok".into(),
        diagnostics: loaded.diagnostics,
        applied: applied.clone(),
        failures: previous.failures,
    }));
    tracing::info!(
        generation = previous.generation + 1,
        ?applied,
        "reloaded the definitions"
    );
    true
}

/// Why definitions must not replace the running ones because they would enforce
/// less: every policy gone (the folder moved away or emptied), or the policy of an
/// entity that is still there. A running server never opens up by accident; a
/// project that wants an open API says so (`auth.open_without_policies`) and a
/// restart serves what the files say.
fn lost_enforcement(before: &Engine, after: &Engine) -> Vec<Diagnostic> {
    let error = |code: &'static str, file: String, message: String, hint: &str| Diagnostic {
        severity: Severity::Error,
        code,
        file,
        line: 1,
        column: 1,
        message,
        hint: Some(hint.to_string()),
    };
    if !before.access.enforced {
        return Vec::new();
    }
    if !after.access.enforced {
        if after.auth.open_without_policies {
            return Vec::new();
        }
        return vec![error(
            "policies-removed",
            "policies".into(),
            "the policy files are gone, so every route would be open to every caller; the previous definitions keep serving".into(),
            "put policies/ back; to serve an open API on purpose, set `open_without_policies: true` under `auth` in trellis.yaml",
        )];
    }
    after
        .entities()
        .iter()
        .filter(|e| {
            before.access.policy(&e.name).is_some() && after.access.policy(&e.name).is_none()
        })
        .map(|e| {
            error(
                "policy-removed",
                format!("policies/{}.yaml", e.name),
                format!(
                    "the policy of `{}` is gone while the entity stays; the previous definitions keep serving",
                    e.name
                ),
                "put the file back (a policy whose rules allow nothing closes the entity), or remove the entity's model with it",
            )
        })
        .collect()
}

/// Is this event a change of content or of names (not a read, not metadata)?
fn changes(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    use notify::event::ModifyKind;
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        _ => false,
    }
}

/// Does a change to this path concern the definitions (not the database files)?
fn relevant(dir: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(dir) else {
        return false;
    };
    let first = rel
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().to_string());
    matches!(
        first.as_deref(),
        Some("models" | "policies" | "workflows" | "trellis.yaml" | "trellis.yml")
    )
}

/// How long the file watcher waits for a burst of changes (an editor's
/// write-and-rename, a `git checkout`) to settle before reloading.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// What it takes to reload on demand (`POST /_/reload`, SIGHUP): the project folder
/// and the secrets.
#[derive(Clone)]
pub struct Reloader {
    pub dir: PathBuf,
    pub secret: SecretLookup,
}

impl Reloader {
    pub async fn reload(&self, state: &Runtime) -> bool {
        reload(&self.dir, state, self.secret.as_ref()).await
    }
}

/// Watches `dir` and reloads after changes settle ([`DEBOUNCE`]). Runs until the
/// process ends; the returned guard must be kept alive.
pub fn watch(
    dir: PathBuf,
    state: Runtime,
    secret: SecretLookup,
) -> Result<impl Drop, notify::Error> {
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let watched = dir.clone();
    let mut debouncer = notify_debouncer_full::new_debouncer(
        DEBOUNCE,
        None,
        move |result: notify_debouncer_full::DebounceEventResult| {
            // Only real changes: reading the files (which every reload does) raises
            // access and metadata events that must not trigger another reload.
            if let Ok(events) = result
                && events.iter().any(|e| {
                    changes(&e.event.kind) && e.paths.iter().any(|p| relevant(&watched, p))
                })
            {
                let _ = tx.send(());
            }
        },
    )?;
    debouncer.watch(&dir, notify::RecursiveMode::Recursive)?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Coalesce a burst of changes into one reload.
            while rx.try_recv().is_ok() {}
            reload(&dir, &state, secret.as_ref()).await;
        }
    });
    Ok(debouncer)
}
