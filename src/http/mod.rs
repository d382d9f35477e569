//! `http`: axum routes, generic over entity names. `/api/{plural}` looks the entity up
//! in the current engine, so a reload swaps definitions without rebuilding the router.

mod access;
mod batch;
pub mod conventions;
mod deadline;
mod events;
pub mod explain;
mod extract;
mod files;
mod layer;
pub mod limits;
pub mod metrics;
mod probes;
pub mod problem;
pub mod server;
pub mod users;
mod workflow;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tower_http::cors::{AllowOrigin, CorsLayer};
use uuid::Uuid;

use crate::engine::access::Principal;
use crate::engine::input::{Mode, parse_body};
use crate::engine::query::{self, ParamError};
use crate::engine::{Engine, Entity, FieldError};
pub use crate::runtime::Auth;
use crate::runtime::{Reloader, Runtime};
use crate::store::{Record, Store};
use deadline::Deadline;
pub use deadline::REQUEST_TIMEOUT;
pub(crate) use extract::record_id;
use extract::{Caller, Target};
use layer::Layered;
pub use problem::Problem;

/// The future of the service a tower layer here wraps around the router.
type ResponseFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Response, std::convert::Infallible>> + Send>,
>;

/// Request bodies larger than this answer 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What every handler shares: one pointer, so that handing it to a handler is a
/// single reference-count increment (axum clones the state for every request).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The fields of [`AppState`]: what the runtime publishes (read through `Deref`:
/// `state.engine`, `state.store`, …) and this process's abuse limits.
#[derive(Clone)]
pub struct Shared {
    /// The engine and authentication now serving, the store, the change feed, the
    /// reload status: written by the runtime, only read here.
    pub runtime: Runtime,
    /// Abuse limits of this process: request rates, signups, password hashes,
    /// event streams, failed sign-ins (`limits` in trellis.yaml, read at start).
    pub limits: Arc<limits::Limits>,
    /// Request metrics and the readiness probe's state (`/metrics`, `/_/ready`).
    pub ops: Arc<metrics::Ops>,
    /// The `ETag` of the OpenAPI document now served, hashed once per engine.
    openapi_tag: Arc<conventions::DocumentTag>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl std::ops::Deref for Shared {
    type Target = Runtime;
    fn deref(&self) -> &Runtime {
        &self.runtime
    }
}

impl AppState {
    /// Without authentication: every caller is anonymous.
    pub fn new(engine: Engine, store: Store) -> AppState {
        AppState::with_auth(engine, store, Auth::none())
    }

    pub fn with_auth(engine: Engine, store: Store, auth: Auth) -> AppState {
        let limits = Arc::new(limits::Limits::new(&engine.limits));
        AppState(Arc::new(Shared {
            runtime: Runtime::new(engine, store, auth),
            limits,
            ops: Arc::default(),
            openapi_tag: Arc::default(),
        }))
    }

    /// Reloads on demand (`POST /_/reload`) and on SIGHUP from this folder.
    pub fn set_reloader(&mut self, reloader: Reloader) {
        Arc::make_mut(&mut self.0).runtime.reloader = Some(reloader);
    }

    /// Replaces the change feed (before serving; tests use one with a long interval).
    pub fn set_feed(&mut self, feed: crate::runtime::Feed) {
        Arc::make_mut(&mut self.0).runtime.feed = feed;
    }

    /// File storage (`serve` sets it from trellis.yaml).
    pub fn set_files(&mut self, files: Arc<crate::runtime::files::Files>) {
        Arc::make_mut(&mut self.0).runtime.files = Some(files);
    }

    /// The caller of a request: anonymous without a token, 401 for a bad one.
    fn principal(&self, headers: &HeaderMap) -> Result<Arc<Principal>, Problem> {
        extract::principal(&self.auth.load(), headers)
    }
}

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    let cors = cors_layer(&state.engine.load());
    let api = Router::new()
        // Operations (http/probes.rs, http/metrics.rs).
        .route("/_/live", get(probes::live))
        .route("/_/ready", get(probes::ready))
        .route("/_/health", get(probes::ready))
        .route("/metrics", get(metrics::metrics))
        .route("/openapi.json", get(openapi))
        .route("/_/explain", get(explain))
        .route("/_/status", get(status))
        .route("/_/reload", post(reload_now))
        .route("/auth/signup", post(users::signup))
        .route("/auth/login", post(users::login))
        .route("/auth/refresh", post(users::refresh))
        .route("/auth/logout", post(users::logout))
        .route("/api/batch", post(batch::batch))
        .route("/api/{plural}", get(list).post(create))
        .route("/api/{plural}/aggregate", get(aggregate))
        .route("/api/{plural}/events", get(events::events))
        .route("/api/{plural}/{id}", get(read).patch(update).delete(remove))
        .route("/api/{plural}/{id}/transitions", get(workflow::options))
        .route(
            "/api/{plural}/{id}/transitions/{name}",
            post(workflow::fire),
        )
        .route("/api/{plural}/{id}/history", get(workflow::history))
        // Files (http/files.rs, docs/files.md).
        .route("/api/{plural}/{id}/files/{field}", post(files::add))
        .route(
            "/api/{plural}/{id}/files/{field}/{file}",
            get(files::download).delete(files::remove),
        )
        .route(
            "/api/{plural}/{id}/files/{field}/{file}/link",
            get(files::link),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(Layered(Deadline {
            limit: state.store.deadline(),
            // Uploads run for as long as their bytes keep coming, up to this.
            upload: state.files.as_ref().map_or(state.store.deadline(), |f| {
                std::time::Duration::from_secs(f.settings.upload_timeout)
            }),
        }))
        .layer(Layered(limits::RateLimit(state.clone())))
        // The access log and request metrics (http/access.rs): outside the rate
        // limit and the deadline, so that their answers are logged and counted too;
        // a layer that sets the request id must wrap this one. It is a route layer,
        // so the matched route template is known.
        .layer(Layered(access::AccessLog(state.clone())))
        .with_state(state);
    let api = match cors {
        Some(cors) => api.layer(cors),
        None => api,
    };
    // HTTP conventions (docs/http.md), outermost, so that they apply to every
    // answer, the layers' own included (CORS preflights, 413, 429, timeouts,
    // fallbacks). From the outside in: compression of JSON answers; then the
    // request id, set on the request (header and `RequestId` extension) before
    // any layer added above (inside) runs, so logs read it there, and put on every answer and in
    // problem bodies (which must still be uncompressed there), with `Retry-After`
    // on every 429 and 503. Layers that log go inside (above), never outside.
    api.layer(Layered(conventions::RequestIds))
        .layer(conventions::compression())
}

/// How long a browser may keep the answer to a CORS preflight (browsers cap it:
/// Chromium at 2 hours, Firefox at 24 hours).
pub const CORS_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(2 * 60 * 60);

fn cors_layer(engine: &Engine) -> Option<CorsLayer> {
    if engine.cors_origins.is_empty() {
        return None;
    }
    let methods = [
        Method::GET,
        Method::POST,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ];
    let layer = CorsLayer::new()
        .allow_methods(methods)
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            conventions::X_REQUEST_ID.clone(),
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            header::ETAG,
            header::LOCATION,
            header::RETRY_AFTER,
            conventions::X_REQUEST_ID.clone(),
            HeaderName::from_static("ratelimit"),
            HeaderName::from_static("ratelimit-policy"),
        ])
        .max_age(CORS_MAX_AGE);
    if engine.cors_origins.iter().any(|o| o == "*") {
        return Some(layer.allow_origin(AllowOrigin::any()));
    }
    let origins: Vec<HeaderValue> = engine
        .cors_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(layer.allow_origin(origins))
}

/// The OpenAPI document, the same for every caller (a shared cache may keep it),
/// with its `ETag`: 304 while unchanged.
async fn openapi(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let engine = state.engine.load_full();
    // The first request after a load builds the document (see `Engine::openapi_json`):
    // off the async workers, as it takes a while on a project of many entities.
    let engine = tokio::task::spawn_blocking(move || {
        engine.openapi_json();
        engine
    })
    .await
    .unwrap_or_else(|_| state.engine.load_full());
    let etag = state.openapi_tag.of(&engine);
    conventions::conditional(&headers, etag, false, || {
        let mut res = (StatusCode::OK, engine.openapi_json().clone()).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        res
    })
}

/// Refuses callers without the role `admin` (401 for anonymous ones).
fn admin_only(who: &Principal, what: &str) -> Result<(), Problem> {
    if who.roles.iter().any(|r| r == "admin") {
        return Ok(());
    }
    Err(if who.is_anonymous() {
        problem::unauthorized(format!("{what} is for administrators; sign in"))
    } else {
        Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            format!("{what} is for callers with the role `admin`"),
        )
    })
}

/// `POST /_/reload`: for administrators, load the definition files again now (as a
/// file change or SIGHUP would). Answers the status: 200 when the new definitions
/// serve, 422 with the diagnostics when the previous ones keep serving.
async fn reload_now(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Response, Problem> {
    // A project without authentication and policies is open to its callers (and
    // `serve` binds to loopback by default); otherwise only administrators reload.
    let engine = state.engine.load_full();
    if engine.auth.jwt.is_some() || engine.access.enforced {
        admin_only(&who, "reload")?;
    }
    let Some(reloader) = state.reloader.clone() else {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no-reload",
            "Reload unavailable",
            "this server was not started from a project folder",
        ));
    };
    let ok = reloader.reload(&state).await;
    drop(engine);
    let engine = state.engine.load_full();
    let body = state.status.load().to_json(&engine);
    Ok(json_response(
        if ok {
            StatusCode::OK
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        },
        &body,
    ))
}

/// `GET /_/explain?entity=&id=&action=&as=&roles=`: for administrators, why a user
/// may or may not do an action on a record.
async fn explain(
    State(state): State<AppState>,
    Caller(who): Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    admin_only(&who, "explain")?;
    let pairs = query_pairs(query.as_deref())?;
    let param = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let engine = state.engine.load_full();
    let missing = |name: &str| Problem::bad_request(format!("`{name}` is required"));
    let entity_name = param("entity").ok_or_else(|| missing("entity"))?;
    let e = engine
        .entity(&entity_name)
        .cloned()
        .ok_or_else(|| Problem::bad_request(format!("there is no entity `{entity_name}`")))?;
    let id = param("id")
        .and_then(|s| Uuid::parse_str(&s).ok())
        .ok_or_else(|| Problem::bad_request("`id` must be the id of a record"))?;
    let action = param("action").ok_or_else(|| missing("action"))?;
    let action = explain::parse_action(&action).map_err(Problem::bad_request)?;
    let subject = match param("as") {
        None => Principal::anonymous(),
        Some(uid) => {
            let roles = param("roles").unwrap_or_default();
            let roles: Vec<&str> = roles
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .collect();
            Principal::user(&uid, &roles, serde_json::Map::new())
        }
    };
    let report = state
        .store
        .explain(&engine, &e, id, &action, &subject)
        .await
        .map_err(|err| problem::from_store(err, &e.name))?;
    Ok(json_response(
        StatusCode::OK,
        &explain::explain_json(&report),
    ))
}

/// `GET /_/status`: the loaded definitions, and the last reload's result and problems.
/// With authentication or policies, only administrators (the role `admin`) see
/// more than `{"status": "ok" | "failed"}`: diagnostics name files and lines, and
/// the entity list and webhook backlog are nobody else's business.
async fn status(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, Problem> {
    let engine = state.engine.load_full();
    let current = state.status.load_full();
    if engine.auth.jwt.is_some() || engine.access.enforced {
        let who = state.principal(&headers)?;
        if !who.roles.iter().any(|r| r == "admin") {
            return Ok(json_response(
                StatusCode::OK,
                &json!({ "status": current.last_result }),
            ));
        }
    }
    let mut body = current.to_json(&engine);
    body["status"] = json!(current.last_result);
    // Webhook deliveries by state, so that operators see a backlog or failures.
    if let Ok(counts) = state.store.outbox_counts().await {
        body["webhooks"] = json!(counts);
    }
    Ok(json_response(StatusCode::OK, &body))
}

async fn no_route() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "no-route",
        "Not found",
        "there is no such route; GET /openapi.json lists every route",
    )
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this route does not answer this method; GET /openapi.json lists every route",
    )
}

fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
    json_text_response(status, serde_json::to_vec(value).unwrap_or_default())
}

/// JSON text already written.
fn json_text_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut res = (status, body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

fn record_response(status: StatusCode, rec: &Record) -> Response {
    let mut res = json_response(status, rec);
    if let Some(v) = rec.get("version").and_then(Value::as_i64)
        && let Ok(etag) = HeaderValue::from_str(&format!("\"{v}\""))
    {
        res.headers_mut().insert(header::ETAG, etag);
    }
    res
}

fn query_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, Problem> {
    serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| Problem::bad_request(format!("the query string cannot be read: {e}")))
}

/// A query parameter problem as a 400, naming the parameter (and the column in a filter).
fn param_problem(err: ParamError) -> Problem {
    let mut detail = match err.column {
        Some(col) => format!("`{}`, at column {col}: {}", err.param, err.message),
        None => err.message,
    };
    if let Some(hint) = &err.hint {
        detail.push_str(&format!(" ({hint})"));
    }
    let mut p = Problem::new(
        StatusCode::BAD_REQUEST,
        "bad-parameter",
        "Invalid query parameter",
        detail,
    );
    p.extra.push(("parameter".into(), json!(err.param)));
    if let Some(col) = err.column {
        p.extra.push(("column".into(), json!(col)));
    }
    if let Some(hint) = err.hint {
        p.extra.push(("hint".into(), json!(hint)));
    }
    p
}

async fn list(
    State(state): State<AppState>,
    Target(who, engine, e, ..): Target,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let pairs = query_pairs(query.as_deref())?;
    let hidden = engine.access.hidden_everywhere(&who);
    let req = query::list_request(&engine, &e, &pairs, &hidden, &who).map_err(param_problem)?;
    let page = state
        .store
        .list_json(&engine, &e, &req, &who)
        .await
        .map_err(|err| problem::for_caller(err, &e.name, &who))?;
    // `{"items": [...], "next": ..., "total": ...}` around the array the store wrote.
    let mut body = Vec::with_capacity(page.items.len() + 128);
    body.extend_from_slice(b"{\"items\":");
    body.extend_from_slice(&page.items);
    body.extend_from_slice(b",\"next\":");
    body.extend(serde_json::to_vec(&page.next).unwrap_or_default());
    if let Some(total) = page.total {
        body.extend_from_slice(format!(",\"total\":{total}").as_bytes());
    }
    body.push(b'}');
    // The validator is the hash of this caller's own page: 304 only when what this
    // caller would get now is byte for byte what it holds.
    let etag = conventions::body_etag(&body);
    Ok(conventions::conditional(&headers, etag, true, || {
        json_text_response(StatusCode::OK, body)
    }))
}

async fn aggregate(
    State(state): State<AppState>,
    Target(who, engine, e, ..): Target,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let pairs = query_pairs(query.as_deref())?;
    let hidden = engine.access.hidden_everywhere(&who);
    let req = crate::engine::aggregate::aggregate_request(&engine, &e, &pairs, &hidden, &who)
        .map_err(param_problem)?;
    let groups = state
        .store
        .aggregate(&engine, &e, &req, &who)
        .await
        .map_err(|err| problem::for_caller(err, &e.name, &who))?;
    let body = serde_json::to_vec(&json!({ "groups": groups })).unwrap_or_default();
    let etag = conventions::body_etag(&body);
    Ok(conventions::conditional(&headers, etag, true, || {
        json_text_response(StatusCode::OK, body)
    }))
}

async fn read(
    State(state): State<AppState>,
    Target(who, engine, e, id): Target<Uuid>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let pairs = query_pairs(query.as_deref())?;
    let hidden = engine.access.hidden_everywhere(&who);
    let req = query::get_request(&engine, &e, &pairs, &hidden).map_err(param_problem)?;
    let (body, version) = state
        .store
        .get_json(&engine, &e, id, &req, &who)
        .await
        .map_err(|err| problem::for_caller(err, &e.name, &who))?;
    // The record's ETag is its version (what `If-Match` takes). Read first, under
    // the caller's read rule: a record this caller may not see is a 404, never a
    // 304. With `expand`, the answer holds other records that change on their own,
    // so the version does not vouch for it: always 200.
    let mut res = json_text_response(StatusCode::OK, body);
    if let Some(etag) = version.and_then(|v| HeaderValue::from_str(&format!("\"{v}\"")).ok()) {
        res.headers_mut().insert(header::ETAG, etag);
    }
    let expanded = pairs.iter().any(|(k, _)| k == "expand");
    match res.headers().get(header::ETAG).cloned() {
        Some(etag) if !expanded && conventions::none_match(&headers, &etag) => {
            Ok(conventions::not_modified(etag, true))
        }
        _ => {
            conventions::cache_headers(res.headers_mut(), true);
            Ok(res)
        }
    }
}

/// Reads a JSON body: 413 over the limit, 415 for another media type, 400 when malformed.
fn json_body(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Value, Problem> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Body too large",
                format!("the body may be at most {MAX_BODY_BYTES} bytes"),
            )
        } else {
            Problem::bad_request(format!("the body could not be read: {rejection}"))
        }
    })?;
    // Bodies are read as they come (and at most MAX_BODY_BYTES of them); a
    // compressed one is refused rather than inflated (RFC 7694: 415 naming the
    // codings accepted, none).
    if let Some(coding) = headers.get(header::CONTENT_ENCODING) {
        let coding = coding.to_str().unwrap_or("?").trim().to_ascii_lowercase();
        if coding != "identity" {
            let mut p = Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-content-encoding",
                "Unsupported content encoding",
                format!("send the body uncompressed, not `{coding}`"),
            );
            p.accept_encoding = true;
            return Err(p);
        }
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let media = ct.split(';').next().unwrap_or("").trim();
        if media == "multipart/form-data" {
            // Reached only where files are not taken: the batch, transitions, auth.
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "this route takes application/json, not multipart/form-data: files are \
                 uploaded with POST /api/{plural}, PATCH /api/{plural}/{id} or \
                 POST /api/{plural}/{id}/files/{field}, one request each (a batch takes none)",
            ));
        }
        if media != "application/json" && !media.ends_with("+json") {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                format!("send the body as application/json, not `{media}`"),
            ));
        }
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        Problem::bad_request(format!(
            "the body is not valid JSON: {e} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

async fn create(
    State(state): State<AppState>,
    Target(who, engine, e, ..): Target,
    req: Request,
) -> Result<Response, Problem> {
    let headers = req.headers().clone();
    if files::is_multipart(&headers) {
        return files::multipart_write(&state, &engine, &e, &who, None, &headers, req.into_body())
            .await;
    }
    let body = Bytes::from_request(req, &state).await;
    let value = json_body(&headers, body)?;
    let input = checked_input(&engine, &e, &value, Mode::Create, &who)?;
    let rec = state
        .store
        .create(&engine, &e, &input, &who)
        .await
        .map_err(|err| problem::for_caller(err, &e.name, &who))?;
    let mut res = record_response(StatusCode::CREATED, &rec);
    if let Some(id) = rec.get("id").and_then(Value::as_str)
        && let Ok(loc) = HeaderValue::from_str(&format!("/api/{}/{id}", e.plural))
    {
        res.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(res)
}

/// Validates a body, then applies the caller's field write rules and presets.
fn checked_input(
    engine: &Engine,
    e: &Entity,
    value: &Value,
    mode: Mode,
    who: &Principal,
) -> Result<crate::engine::Input, Problem> {
    let rule_errors = engine.access.check_write(e, value, mode, who);
    let mut body = value.clone();
    if mode == Mode::Create {
        engine
            .access
            .apply_presets(e, who, &mut body)
            .map_err(|err| Problem::invalid(vec![err]))?;
    }
    match parse_body(e, &body, mode) {
        Ok(input) if rule_errors.is_empty() => Ok(input),
        Ok(_) => Err(Problem::invalid(rule_errors)),
        Err(mut errors) => {
            // Both kinds at once, one entry per field.
            for r in rule_errors {
                if !errors.iter().any(|x| x.pointer == r.pointer) {
                    errors.push(r);
                }
            }
            errors.sort_by(|a, b| a.pointer.cmp(&b.pointer));
            Err(Problem::invalid(errors))
        }
    }
}

/// `If-Match: "3"`, `W/"3"` or `3`; `*` matches any version.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, Problem> {
    let Some(raw) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = raw.to_str().unwrap_or("").trim();
    if text == "*" {
        return Ok(None);
    }
    let unquoted = text.trim_start_matches("W/").trim_matches('"');
    unquoted.parse::<i64>().map(Some).map_err(|_| {
        Problem::bad_request(format!(
            "If-Match must be the record's version as given in its ETag, like \"3\"; got `{text}`"
        ))
    })
}

async fn update(
    State(state): State<AppState>,
    Target(who, engine, e, id): Target<Uuid>,
    req: Request,
) -> Result<Response, Problem> {
    let headers = req.headers().clone();
    let expected = if_match(&headers)?;
    if files::is_multipart(&headers) {
        let target = Some((id, expected));
        return files::multipart_write(
            &state,
            &engine,
            &e,
            &who,
            target,
            &headers,
            req.into_body(),
        )
        .await;
    }
    let body = Bytes::from_request(req, &state).await;
    let value = json_body(&headers, body)?;
    let input = checked_input(&engine, &e, &value, Mode::Update, &who)?;
    let rec = state
        .store
        .update(&engine, &e, id, &input, expected, &who)
        .await
        .map_err(|err| problem::for_caller(err, &e.name, &who))?;
    Ok(record_response(StatusCode::OK, &rec))
}

/// `DELETE`, with `If-Match`: only while the record is at that version (412 with
/// `current_version` otherwise, the record kept).
async fn remove(
    State(state): State<AppState>,
    Target(who, engine, e, id): Target<Uuid>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let expected = if_match(&headers)?;
    state
        .store
        .delete_if(&engine, &e, id, expected, &who)
        .await
        .map_err(|err| problem::for_caller(err, &e.name, &who))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Field errors as a 422 problem (used by tests and callers that validate themselves).
pub fn invalid(errors: Vec<FieldError>) -> Problem {
    Problem::invalid(errors)
}
