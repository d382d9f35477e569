//! `POST /api/batch`: several writes in one transaction, all or nothing. Each
//! operation is checked as if it were sent alone; a later one can use an earlier
//! one's result: `"$0.id"` is the id of the record operation 0 wrote.
//!
//! Only a string that is exactly `$<digits>.<field>` is a reference; every other
//! string is data (`"$5 off"`, `"$5"`, `"$0.id and more"`). To send the text of a
//! reference itself, double the dollar: `"$$0.id"` is the text `$0.id` (each
//! extra `$` in front of a reference's shape is one `$` of text).

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::extract::Caller;
use super::workflow::{Via, fired, transition_input, transition_of, workflow_of};
use super::{AppState, Problem, checked_input, json_body, json_response, problem};
use crate::engine::input::Mode;
use crate::engine::transition::Request;

/// Most operations in one batch.
pub const MAX_OPERATIONS: usize = 100;

/// What a string in an operation means.
#[derive(Debug, PartialEq)]
enum Text<'a> {
    /// `$N.field`: that field of operation N's result.
    Reference(usize, &'a str),
    /// `$$N.field` (and more dollars): the text with one `$` fewer.
    Escaped(&'a str),
    /// Anything else: the text as written.
    Plain,
}

fn classify(s: &str) -> Result<Text<'_>, String> {
    let dollars = s.len() - s.trim_start_matches('$').len();
    let rest = &s[dollars..];
    let Some((digits, field)) = rest.split_once('.') else {
        return Ok(Text::Plain);
    };
    let is_field = field.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if dollars == 0 || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || !is_field
    {
        return Ok(Text::Plain);
    }
    if dollars > 1 {
        return Ok(Text::Escaped(&s[1..]));
    }
    let n = digits
        .parse()
        .map_err(|_| format!("`{s}` refers to an operation that cannot exist"))?;
    Ok(Text::Reference(n, field))
}

/// Replaces `"$N.field"` strings by that field of operation N's result, and
/// `"$$N.field"` by the text `$N.field`.
fn resolve(v: &Value, results: &[Value], at: usize) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => match classify(s)? {
            Text::Plain => v.clone(),
            Text::Escaped(text) => Value::String(text.to_string()),
            Text::Reference(n, field) => {
                if n >= at {
                    return Err(format!(
                        "`{s}` refers to operation {n}, which has not run yet (operations run in order; write \"$${}\" for the text itself)",
                        &s[1..]
                    ));
                }
                match results.get(n).and_then(|r| r.get(field)) {
                    Some(v) if !v.is_null() || results[n].is_object() => v.clone(),
                    _ => return Err(format!("`{s}`: operation {n} has no `{field}` to use")),
                }
            }
        },
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| resolve(i, results, at))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), resolve(v, results, at)?)))
                .collect::<Result<Map<_, _>, String>>()?,
        ),
        other => other.clone(),
    })
}

/// The problem of a failed operation, naming its index.
fn failed(index: usize, mut p: Problem) -> Problem {
    p.detail = format!("operation {index} failed: {}", p.detail);
    p.extra.push(("operation".into(), json!(index)));
    p
}

const OP_KEYS: [&str; 6] = ["op", "entity", "id", "data", "if_match", "name"];

pub(super) async fn batch(
    State(state): State<AppState>,
    Caller(who): Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let engine = state.engine.load_full();
    let value = json_body(&headers, body)?;
    let Some(ops) = value.get("operations").and_then(Value::as_array) else {
        return Err(Problem::invalid(vec![crate::engine::FieldError::new(
            "/operations",
            "is required: a list of { op, entity, id?, data? }",
        )]));
    };
    if ops.len() > MAX_OPERATIONS {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "Too many operations",
            format!(
                "a batch may hold at most {MAX_OPERATIONS} operations, not {}",
                ops.len()
            ),
        ));
    }
    let mut batch = state
        .store
        .begin_batch()
        .await
        .map_err(|err| problem::from_store(err, "batch"))?;
    let mut results: Vec<Value> = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let bad = |detail: String| failed(i, Problem::bad_request(detail));
        let Some(obj) = op.as_object() else {
            return Err(bad("an operation must be an object like {\"op\": \"create\", \"entity\": …, \"data\": {…}}".into()));
        };
        if let Some(k) = obj.keys().find(|k| !OP_KEYS.contains(&k.as_str())) {
            return Err(bad(format!(
                "unknown key `{k}` in an operation; keys: {}",
                OP_KEYS.join(", ")
            )));
        }
        let entity_name = obj
            .get("entity")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let e = engine
            .entity(entity_name)
            .or_else(|| engine.entity_by_plural(entity_name))
            .cloned()
            .ok_or_else(|| bad(format!("there is no entity `{entity_name}`")))?;
        let data = resolve(obj.get("data").unwrap_or(&Value::Null), &results, i).map_err(bad)?;
        let id = || -> Result<Uuid, Problem> {
            let raw = resolve(obj.get("id").unwrap_or(&Value::Null), &results, i).map_err(bad)?;
            raw.as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| {
                    bad("`id` must be the id of a record (or a reference like \"$0.id\")".into())
                })
        };
        let store_error = |err| failed(i, problem::for_caller(err, &e.name, &who));
        let result = match obj.get("op").and_then(Value::as_str) {
            Some("create") => {
                let input = checked_input(&engine, &e, &data, Mode::Create, &who)
                    .map_err(|p| failed(i, p))?;
                batch
                    .create(&engine, &e, &input, &who)
                    .await
                    .map(Value::Object)
                    .map_err(store_error)?
            }
            Some("update") => {
                let id = id()?;
                let input = checked_input(&engine, &e, &data, Mode::Update, &who)
                    .map_err(|p| failed(i, p))?;
                let if_match = obj.get("if_match").and_then(Value::as_i64);
                batch
                    .update(&engine, &e, id, &input, if_match, &who)
                    .await
                    .map(Value::Object)
                    .map_err(store_error)?
            }
            Some("delete") => {
                let id = id()?;
                let if_match = obj.get("if_match").and_then(Value::as_i64);
                batch
                    .delete(&engine, &e, id, if_match, &who)
                    .await
                    .map(|()| json!({ "id": id, "deleted": true }))
                    .map_err(store_error)?
            }
            Some("transition") => {
                let id = id()?;
                let wf = workflow_of(&engine, &e, Via::Batch).map_err(|p| failed(i, p))?;
                let name = obj.get("name").and_then(Value::as_str).unwrap_or_default();
                let t = transition_of(&wf, &e, name, Via::Batch).map_err(|p| failed(i, p))?;
                let data = if data.is_null() { json!({}) } else { data };
                let input = transition_input(t, &data).map_err(|p| failed(i, p))?;
                let req = Request {
                    entity: &e,
                    workflow: &wf,
                    transition: t,
                    who: &who,
                    id,
                    input: &input,
                    request_id: super::conventions::request_id(&headers),
                };
                let if_match = obj.get("if_match").and_then(Value::as_i64);
                let result = batch.transition(&engine, &req, if_match).await;
                fired(result, &e, &who)
                    .map(Value::Object)
                    .map_err(|p| failed(i, p))?
            }
            Some(other) => {
                return Err(bad(format!(
                    "`{other}` is not an operation; use create, update, delete or transition"
                )));
            }
            None => {
                return Err(bad(
                    "`op` is required: create, update, delete or transition".into(),
                ));
            }
        };
        // An error above returns, and dropping the batch rolls back every earlier
        // operation.
        results.push(result);
    }
    batch
        .commit()
        .await
        .map_err(|err| problem::from_store(err, "batch"))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "results": results }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_references_are_references() {
        assert_eq!(classify("$0.id"), Ok(Text::Reference(0, "id")));
        assert_eq!(
            classify("$12.client_id"),
            Ok(Text::Reference(12, "client_id"))
        );
        for plain in [
            "$5 off",
            "$5",
            "$",
            "$$",
            "$.id",
            "$0.",
            "$0.id and more",
            "$0.1",
            "a$0.id",
            "$x.id",
            "price: $5.00",
            "$$5 off",
        ] {
            assert_eq!(classify(plain), Ok(Text::Plain), "{plain}");
        }
        assert_eq!(classify("$$0.id"), Ok(Text::Escaped("$0.id")));
        assert_eq!(classify("$$$0.id"), Ok(Text::Escaped("$$0.id")));
    }
}
