//! The probes of load balancers and orchestrators: `GET /_/live` (the process
//! answers) and `GET /_/ready` (it can serve: the database answers, definitions
//! are loaded, it is not draining), with `GET /_/health` kept as ready's alias.
//! They are exempt from the request rate (http/limits.rs), so ready asks the
//! database one question at a time, shares each answer with the probes that
//! waited for it, and lets a yes stand for [`FRESH`]: a flood of probes cannot take
//! the pool's connections. A no is not reused by later probes, so ready says yes
//! again as soon as the database answers.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{AppState, Problem, json_response, problem};

/// How long a yes of the database stands for every probe.
pub const FRESH: Duration = Duration::from_secs(1);
/// How long the probe waits for the database (a pool that cannot connect would
/// otherwise wait the acquire timeout, longer than most probes' own timeout).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// What a 503 of ready asks clients to wait, in seconds.
const RETRY_SECS: u64 = 5;

/// The routes exempt from the request rate.
pub fn is_probe(path: &str) -> bool {
    matches!(path, "/_/live" | "/_/ready" | "/_/health")
}

/// The last answer of the database (shared by the probes of one router).
#[derive(Debug, Default)]
pub struct Readiness {
    last: tokio::sync::Mutex<Option<(Instant, bool)>>,
    /// Questions actually sent to the database (`/metrics`).
    pub probes: std::sync::atomic::AtomicU64,
}

impl Readiness {
    /// Does the database answer? One question at a time: an answer given while
    /// this caller waited for its turn is its answer too, and a yes younger than
    /// [`FRESH`] stands.
    async fn database(&self, state: &AppState) -> bool {
        let asked = Instant::now();
        let mut last = self.last.lock().await;
        if let Some((at, ok)) = *last
            && (at >= asked || (ok && at.elapsed() < FRESH))
        {
            return ok;
        }
        self.probes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ok = match tokio::time::timeout(PROBE_TIMEOUT, state.store.ping()).await {
            Ok(Ok(())) => true,
            Ok(Err(err)) => {
                tracing::warn!(%err, "ready: the database does not answer");
                false
            }
            Err(_) => {
                tracing::warn!(
                    "ready: the database did not answer within {} s",
                    PROBE_TIMEOUT.as_secs()
                );
                false
            }
        };
        *last = Some((Instant::now(), ok));
        ok
    }
}

/// `GET /_/live`: 200 while the process runs (draining included: a liveness
/// failure gets a process restarted, which a drain must not provoke).
pub(super) async fn live() -> Response {
    json_response(StatusCode::OK, &json!({ "status": "ok" }))
}

/// `GET /_/ready` and `GET /_/health`: `{"status": "ok"}`, or 503 with
/// `Retry-After` and a problem saying why (draining, definitions not loaded, the
/// database not answering).
pub(super) async fn ready(State(state): State<AppState>) -> Response {
    if state.shutdown.is_draining() {
        let mut p = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting-down",
            "Shutting down",
            "this instance is finishing its requests before it stops; send new ones to another instance",
        );
        p.retry_after(RETRY_SECS);
        return p.into_response();
    }
    if state.status.load().generation == 0 {
        let mut p = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-loaded",
            "Definitions not loaded",
            "the project's definitions are not loaded yet",
        );
        p.retry_after(RETRY_SECS);
        return p.into_response();
    }
    if !state.ops.readiness.database(&state).await {
        let mut p = problem::unavailable();
        p.retry_after(RETRY_SECS);
        return p.into_response();
    }
    json_response(StatusCode::OK, &json!({ "status": "ok" }))
}
