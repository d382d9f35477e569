//! `GET /metrics`: the Prometheus (OpenMetrics text) exposition of this process.
//! Requests are counted as they are answered ([`Ops::observe`], called by the
//! access log, http/access.rs); everything else is read when scraped: the pool,
//! open event streams, the outbox, the reload status, the limits' refusals.
//!
//! On the main port the same rule as `/_/status` applies (administrators only when
//! the project has authentication or policies); `serve --metrics-addr` serves it
//! without authentication on a listener of its own ([`metrics_router`]), for
//! scrapers inside the network.
//!
//! Labels stay bounded whatever callers send: `route` is a served route template
//! (entity and transition names only when they exist, http/access.rs), `method`
//! one of the methods the API answers or `OTHER`, `status` a status code.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::extract::Caller;
use super::probes::Readiness;
use super::{AppState, Problem, admin_only};

/// The exposition's media type.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the latency histogram, in seconds (the request deadline is 30 s).
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The labels of a request's count and latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    pub route: Arc<str>,
    pub status: u16,
}

type Labeled<M> = Family<Vec<(&'static str, &'static str)>, M>;

fn latency() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// What the operations routes keep per server: request counts and latencies,
/// and the readiness probe's last answer.
#[derive(Debug)]
pub struct Ops {
    requests: Family<RequestLabels, Counter>,
    durations: Family<RequestLabels, Histogram, fn() -> Histogram>,
    pub readiness: Readiness,
}

impl Default for Ops {
    fn default() -> Ops {
        Ops {
            requests: Family::default(),
            durations: Family::new_with_constructor(latency as fn() -> Histogram),
            readiness: Readiness::default(),
        }
    }
}

impl Ops {
    /// Counts one answered request.
    pub fn observe(&self, labels: &RequestLabels, seconds: f64) {
        self.requests.get_or_create(labels).inc();
        self.durations.get_or_create(labels).observe(seconds);
    }

    /// Requests answered so far with these labels (tests).
    pub fn requests(&self, labels: &RequestLabels) -> u64 {
        self.requests.get_or_create(labels).get()
    }
}

/// A gauge family with one label, filled now.
fn labeled_gauge(label: &'static str, values: &[(&'static str, i64)]) -> Labeled<Gauge> {
    let family = Labeled::<Gauge>::default();
    for (value, n) in values {
        family.get_or_create(&vec![(label, *value)]).set(*n);
    }
    family
}

/// A counter family with one label, from counts kept elsewhere.
fn labeled_counter(label: &'static str, values: &[(&'static str, u64)]) -> Labeled<Counter> {
    let family = Labeled::<Counter>::default();
    for (value, n) in values {
        family.get_or_create(&vec![(label, *value)]).inc_by(*n);
    }
    family
}

/// The exposition now.
pub async fn render(state: &AppState) -> String {
    let mut r = Registry::default();
    let ops = &state.ops;
    r.register(
        "trellis_http_requests",
        "HTTP requests answered, by method, route template and status",
        ops.requests.clone(),
    );
    r.register_with_unit(
        "trellis_http_request_duration",
        "Time to answer an HTTP request (to its response head; an event stream's length is not included)",
        Unit::Seconds,
        ops.durations.clone(),
    );
    let pool = state.store.pool_stats();
    r.register(
        "trellis_db_pool_connections",
        "Database connections of the pool, in use and idle (sqlx does not tell how many requests wait for one)",
        labeled_gauge(
            "state",
            &[
                ("in_use", i64::from(pool.open.saturating_sub(pool.idle))),
                ("idle", i64::from(pool.idle)),
            ],
        ),
    );
    r.register(
        "trellis_db_pool_max_connections",
        "The most connections the pool opens",
        ConstGauge::new(i64::from(pool.max)),
    );
    r.register(
        "trellis_event_streams_open",
        "Event streams (server-sent events) open now",
        ConstGauge::new(i64::from(state.limits.open_streams())),
    );
    match state.store.outbox_counts().await {
        Ok(counts) => {
            let n = |s: &str| counts.get(s).copied().unwrap_or(0);
            r.register(
                "trellis_outbox_deliveries",
                "Webhook deliveries in the outbox by state (pending: waiting or being retried; failed: given up)",
                labeled_gauge(
                    "state",
                    &[
                        ("pending", n("pending")),
                        ("delivered", n("delivered")),
                        ("failed", n("failed")),
                    ],
                ),
            );
        }
        Err(err) => tracing::debug!(%err, "metrics: the outbox cannot be counted"),
    }
    let sent = &state.outbox;
    r.register(
        "trellis_webhook_attempts",
        "Webhook delivery attempts of this process by outcome (given_up: the last attempt failed too)",
        labeled_counter(
            "outcome",
            &[
                ("delivered", sent.delivered.load(Ordering::Relaxed)),
                ("failed", sent.failed_attempts.load(Ordering::Relaxed)),
                ("given_up", sent.given_up.load(Ordering::Relaxed)),
            ],
        ),
    );
    let status = state.status.load();
    r.register(
        "trellis_reload_generation",
        "Definitions loaded so far (1 at start, +1 per successful reload)",
        ConstGauge::new(i64::try_from(status.generation).unwrap_or(i64::MAX)),
    );
    r.register(
        "trellis_reload_last_success",
        "1 when the last load or reload succeeded, 0 when it was refused (the previous definitions serve)",
        ConstGauge::new(i64::from(status.last_result == "ok")),
    );
    r.register(
        "trellis_reload_failures",
        "Reloads refused since the process started",
        ConstCounter::new(status.failures),
    );
    let refused = &state.limits.refused;
    r.register(
        "trellis_rate_limit_refusals",
        "Requests refused by the abuse limits since the process started, by limit",
        labeled_counter(
            "limit",
            &[
                ("requests", refused.requests.load(Ordering::Relaxed)),
                ("signups", refused.signups.load(Ordering::Relaxed)),
                ("streams", refused.streams.load(Ordering::Relaxed)),
                ("logins", state.limits.login.refused()),
                ("connections", refused.connections.load(Ordering::Relaxed)),
            ],
        ),
    );
    r.register(
        "trellis_readiness_probes",
        "Questions the readiness probe sent to the database (one at a time; a success stands for a second)",
        ConstCounter::new(ops.readiness.probes.load(Ordering::Relaxed)),
    );
    r.register(
        "trellis_draining",
        "1 while the process drains (SIGTERM or SIGINT received)",
        ConstGauge::new(i64::from(state.shutdown.is_draining())),
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &r);
    out
}

fn exposition(text: String) -> Response {
    let mut res = (StatusCode::OK, text).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    res
}

/// `GET /metrics` on the main port: the rule of `/_/status` (administrators only
/// on a project with authentication or policies; 401 for anonymous callers).
pub(super) async fn metrics(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Response, Problem> {
    let engine = state.engine.load_full();
    if engine.auth.jwt.is_some() || engine.access.enforced {
        admin_only(&who, "/metrics")?;
    }
    drop(engine);
    Ok(exposition(render(&state).await))
}

/// The router of `serve --metrics-addr`: `/metrics` without authentication, and
/// nothing else.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(state): State<AppState>| async move { exposition(render(&state).await) }),
        )
        .with_state(state)
}

/// Serves [`metrics_router`] on `listener` until the process drains, with the
/// main port's protections: the header-read timeout, the per-address connection
/// cap and the request rate (each scrape counts the outbox in the database).
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    state: AppState,
) -> std::io::Result<()> {
    let shutdown = state.shutdown.clone();
    let limits = state.limits.clone();
    let app =
        metrics_router(state.clone()).layer(super::layer::Layered(super::limits::RateLimit(state)));
    // A scrape in progress when the process drains is not waited for.
    super::server::serve(
        listener,
        app,
        limits,
        async move { shutdown.draining().await },
        std::future::ready(()),
    )
    .await
    .map(|_| ())
}
