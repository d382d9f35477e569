//! Workflow routes: fire a transition, list what the caller may fire now, and read a
//! record's history.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};
use std::sync::Arc;

use super::extract::Target;
use super::{
    AppState, Problem, if_match, json_body, json_response, problem, query_pairs, record_id,
    record_response,
};
use crate::engine::access::Principal;
use crate::engine::transition::{Request, TransitionInput};
use crate::engine::workflow::{Transition, Workflow};
use crate::engine::{Engine, Entity};
use crate::store::{self, Fired, HistoryEntry, Record, RecordOptions};

/// Most history entries in one page.
pub const MAX_HISTORY_PAGE: usize = 500;

/// Where a workflow is asked for: a route of its own, or an operation of a batch.
/// Both look it up the same way; only their words differ (a route that does not
/// exist is a 404, an operation that names nothing a 400), here and only here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Via {
    Route,
    Batch,
}

/// The workflow of `e`.
pub(super) fn workflow_of(engine: &Engine, e: &Entity, via: Via) -> Result<Arc<Workflow>, Problem> {
    engine.workflow(&e.name).cloned().ok_or_else(|| match via {
        Via::Route => Problem::new(
            StatusCode::NOT_FOUND,
            "no-route",
            "Not found",
            format!(
                "`{}` has no workflow, so it has no transitions or history",
                e.name
            ),
        ),
        Via::Batch => Problem::bad_request(format!(
            "`{}` has no workflow, so it has no transitions",
            e.name
        )),
    })
}

/// The transition `name` of `wf`.
pub(super) fn transition_of<'w>(
    wf: &'w Workflow,
    e: &Entity,
    name: &str,
    via: Via,
) -> Result<&'w Transition, Problem> {
    wf.transition(name).ok_or_else(|| {
        let names: Vec<&str> = wf.transitions.iter().map(|t| t.name.as_str()).collect();
        match via {
            Via::Route => {
                let hint = match crate::spec::diag::did_you_mean(name, names.iter().copied()) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!("its transitions: {}", names.join(", ")),
                };
                Problem::new(
                    StatusCode::NOT_FOUND,
                    "no-route",
                    "Not found",
                    format!(
                        "the workflow of `{}` has no transition `{name}`; {hint}",
                        e.name
                    ),
                )
            }
            Via::Batch => Problem::bad_request(format!(
                "`name` must be a transition of `{}`: {}",
                e.name,
                names.join(", ")
            )),
        }
    })
}

/// Validates a transition's input (`{}` for none), once: it stays typed from here on.
pub(super) fn transition_input(t: &Transition, body: &Value) -> Result<TransitionInput, Problem> {
    TransitionInput::parse(t, body).map_err(Problem::invalid)
}

/// What the store's answer to a transition means to the caller: the record, or the
/// problem of a refusal (the workflow's) or of a failure (the store's).
pub(super) fn fired(
    result: Result<Fired, store::Error>,
    e: &Entity,
    who: &Principal,
) -> Result<Record, Problem> {
    match result {
        Ok(Ok(rec)) => Ok(rec),
        Ok(Err(refusal)) => Err(problem::refusal(refusal, &e.name, who)),
        Err(err) => Err(problem::for_caller(err, &e.name, who)),
    }
}

/// The request's id, as the router's `RequestIds` layer set it (the caller's
/// `X-Request-Id` when acceptable, else a new one); the same layer puts it on the
/// response.
fn request_id(headers: &HeaderMap) -> String {
    super::conventions::request_id(headers)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// `POST /api/{plural}/{id}/transitions/{name}`
pub(super) async fn fire(
    State(state): State<AppState>,
    Target(who, engine, e, ..): Target,
    Path((_, id, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let wf = workflow_of(&engine, &e, Via::Route)?;
    let t = transition_of(&wf, &e, &name, Via::Route)?;
    let id = record_id(&e, &id)?;
    let expected = if_match(&headers)?;
    let empty = matches!(&body, Ok(b) if b.iter().all(u8::is_ascii_whitespace));
    let value = if empty {
        Value::Object(Map::new())
    } else {
        match json_body(&headers, body)? {
            Value::Null => Value::Object(Map::new()),
            v => v,
        }
    };
    let input = transition_input(t, &value)?;
    let rid = request_id(&headers);
    let req = Request {
        entity: &e,
        workflow: &wf,
        transition: t,
        who: &who,
        id,
        input: &input,
        request_id: Some(&rid),
    };
    let result = state.store.transition(&engine, &req, expected).await;
    let rec = fired(result, &e, &who)?;
    Ok(record_response(StatusCode::OK, &rec))
}

/// `GET /api/{plural}/{id}/transitions`
pub(super) async fn options(
    State(state): State<AppState>,
    Target(who, engine, e, ..): Target,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let wf = workflow_of(&engine, &e, Via::Route)?;
    let id = record_id(&e, &id)?;
    let found = state
        .store
        .transition_options(&engine, &e, &wf, id, &who)
        .await
        .map_err(|err| problem::for_caller(err, &e.name, &who))?;
    Ok(json_response(StatusCode::OK, &options_json(&found)))
}

/// The body of `GET /api/{plural}/{id}/transitions`.
fn options_json(found: &RecordOptions<'_>) -> Value {
    let o = &found.options;
    let transitions: Vec<Value> = o
        .transitions
        .iter()
        .map(|c| {
            let t = c.transition;
            let mut item = json!({
                "name": t.name,
                "label": t.label,
                "to": t.to,
                "allowed": c.reasons.is_empty(),
                "reasons": c.reasons,
            });
            if c.depends_on_input {
                item["depends_on_input"] = json!(true);
            }
            if !t.input.fields.is_empty() {
                item["input"] = t.input.schemas.create.clone();
            }
            item
        })
        .collect();
    json!({
        "id": found.id,
        "state": o.state,
        "state_label": o.state_label,
        "final": o.is_final,
        "version": found.version,
        "transitions": transitions,
    })
}

/// `GET /api/{plural}/{id}/history?limit=&after=`
pub(super) async fn history(
    State(state): State<AppState>,
    Target(who, engine, e, ..): Target,
    Path((_, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    workflow_of(&engine, &e, Via::Route)?;
    let id = record_id(&e, &id)?;
    let mut limit = 100usize;
    let mut after = None;
    for (k, v) in query_pairs(query.as_deref())? {
        match k.as_str() {
            "limit" => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_HISTORY_PAGE).contains(n))
                    .ok_or_else(|| {
                        Problem::bad_request(format!(
                            "`limit` must be a whole number from 1 to {MAX_HISTORY_PAGE}, not `{v}`"
                        ))
                    })?
            }
            "after" => {
                if uuid::Uuid::parse_str(&v).is_err() {
                    return Err(Problem::bad_request(
                        "`after` must be the `next` value of a previous page",
                    ));
                }
                after = Some(v)
            }
            other => {
                return Err(Problem::bad_request(format!(
                    "unknown parameter `{other}`; history takes `limit` and `after`"
                )));
            }
        }
    }
    let (items, next) = state
        .store
        .history(&engine, &e, id, &who, limit, after.as_deref())
        .await
        .map_err(|err| problem::for_caller(err, &e.name, &who))?;
    let items: Vec<Value> = items.iter().map(history_json).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "items": items, "next": next }),
    ))
}

/// One entry of `GET …/history`.
fn history_json(h: &HistoryEntry) -> Value {
    json!({
        "id": h.id,
        "transition": h.transition,
        "from": h.from,
        "to": h.to,
        "actor": h.actor,
        "input": h.input,
        "at": h.at,
        "request_id": h.request_id,
    })
}
