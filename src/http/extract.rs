//! What a handler starts from, as axum extractors: the caller ([`Caller`]), and for
//! the entity routes the caller, the engine snapshot and the entity `/api/{plural}`
//! names ([`Target`]), with the record id of `/api/{plural}/{id}` (`Target<Uuid>`).
//! Each refusal is the problem the handlers answered before: 401 for a bad token,
//! 404 for an unknown collection or a malformed id, in that order.

use std::sync::{Arc, OnceLock};

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::AppState;
use super::problem::{Problem, unauthorized};
use crate::engine::access::Principal;
use crate::engine::{Engine, Entity};
use crate::runtime::Auth;

/// The caller of a request: anonymous without a token, 401 for a bad one.
pub fn principal(auth: &Auth, headers: &HeaderMap) -> Result<Arc<Principal>, Problem> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    auth.caller(authorization)
        .map_err(|refused| unauthorized(refused.0))
}

/// The caller of a request, once an extractor has resolved it.
#[derive(Clone, Default)]
pub(super) struct PrincipalSlot(Arc<OnceLock<Arc<str>>>);

impl PrincipalSlot {
    pub(super) fn get(&self) -> Option<&str> {
        self.0.get().map(|p| &**p)
    }
}

/// Notes the caller of the request whose extensions these are: for its access log
/// line and on its span (for the lines written after this). Anonymous callers
/// leave nothing.
pub(super) fn note_principal(extensions: &Extensions, who: &Principal) {
    let Some(id) = who.id.as_deref() else {
        return;
    };
    if let Some(slot) = extensions.get::<PrincipalSlot>() {
        let _ = slot.0.set(Arc::from(id));
    }
    tracing::Span::current().record("principal", id);
}

/// The caller of the request (see [`principal`]).
pub struct Caller(pub Arc<Principal>);

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, Problem> {
        let who = state.principal(&parts.headers)?;
        note_principal(&parts.extensions, &who);
        Ok(Caller(who))
    }
}

/// The opening of an entity route: `Target(who, engine, entity, id)`: who calls,
/// the engine snapshot the request is served with (taken once, used throughout),
/// the entity of `{plural}`, and the record id of `{id}` when `I` is [`Uuid`]
/// (handlers write `Target(who, engine, e, ..)` or `Target(who, engine, e, id)`).
pub struct Target<I = ()>(pub Arc<Principal>, pub Arc<Engine>, pub Arc<Entity>, pub I);

/// The path parameters by name (`plural`, `id`, …), percent-decoded.
async fn path_params(
    parts: &mut Parts,
    state: &AppState,
) -> Result<Vec<(String, String)>, Response> {
    Path::<Vec<(String, String)>>::from_request_parts(parts, state)
        .await
        .map(|Path(params)| params)
        .map_err(IntoResponse::into_response)
}

fn param<'p>(params: &'p [(String, String)], name: &str) -> &'p str {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

impl Target {
    async fn open(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<(Target, Vec<(String, String)>), Response> {
        let params = path_params(parts, state).await?;
        let who = state
            .principal(&parts.headers)
            .map_err(IntoResponse::into_response)?;
        note_principal(&parts.extensions, &who);
        let engine = state.engine.load_full();
        let entity =
            entity(&engine, param(&params, "plural")).map_err(IntoResponse::into_response)?;
        Ok((Target(who, engine, entity, ()), params))
    }
}

impl FromRequestParts<AppState> for Target {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Target, Response> {
        Target::open(parts, state).await.map(|(target, _)| target)
    }
}

impl FromRequestParts<AppState> for Target<Uuid> {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Target<Uuid>, Response> {
        let (Target(who, engine, entity, ()), params) = Target::open(parts, state).await?;
        let id = record_id(&entity, param(&params, "id")).map_err(IntoResponse::into_response)?;
        Ok(Target(who, engine, entity, id))
    }
}

/// The entity whose collection is `/api/{plural}`; 404 (with the nearest name)
/// otherwise.
fn entity(engine: &Engine, plural: &str) -> Result<Arc<Entity>, Problem> {
    engine.entity_by_plural(plural).cloned().ok_or_else(|| {
        let names: Vec<&str> = engine
            .entities()
            .iter()
            .map(|e| e.plural.as_str())
            .collect();
        let hint = match crate::spec::diag::did_you_mean(plural, names.iter().copied()) {
            Some(best) => format!("; did you mean /api/{best}?"),
            None => String::new(),
        };
        Problem::new(
            StatusCode::NOT_FOUND,
            "no-route",
            "Not found",
            format!("there is no collection `/api/{plural}`{hint}"),
        )
    })
}

/// A record id from the path; 404 when it is not one.
pub fn record_id(e: &Entity, raw: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(raw)
        .map_err(|_| Problem::not_found(format!("there is no {} with id `{raw}`", e.name)))
}
