//! RFC 9457 problem details, and the mapping of every lower-layer error to a status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::engine::FieldError;
use crate::engine::access::Principal;
use crate::engine::transition::Refusal;
use crate::store;

/// An error answer: `application/problem+json`.
#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    /// A short, stable slug; the `type` member is `https://trellis.dev/problems/<kind>`.
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    /// Extension members (RFC 9457 §3.2).
    pub extra: Vec<(String, Value)>,
    /// For 401: the `WWW-Authenticate` challenge.
    pub www_authenticate: Option<Box<HeaderValue>>,
    /// Seconds for `Retry-After` (429, 503; a 503 without it says 5), sent as the
    /// header and as the member `retry_after`. Four bytes, so that a `Problem`
    /// stays small enough to return by value.
    pub retry_after: Option<std::num::NonZeroU32>,
    /// For a 415 about `Content-Encoding`: `Accept-Encoding: identity` (RFC 7694).
    pub accept_encoding: bool,
}

/// Seconds a 503 asks to wait when its producer did not say.
const UNAVAILABLE_RETRY: u32 = 5;

impl Problem {
    /// Sets `Retry-After` (whole seconds, at least 1).
    pub fn retry_after(&mut self, secs: u64) {
        let secs = u32::try_from(secs.max(1)).unwrap_or(u32::MAX);
        self.retry_after = std::num::NonZeroU32::new(secs);
    }

    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Problem {
        Problem {
            status,
            kind,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            extra: Vec::new(),
            www_authenticate: None,
            retry_after: None,
            accept_encoding: false,
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        )
    }

    pub fn invalid(errors: Vec<FieldError>) -> Problem {
        let n = errors.len();
        let mut p = Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "Invalid content",
            if n == 1 {
                "1 field is invalid; see `errors`".to_string()
            } else {
                format!("{n} fields are invalid; see `errors`")
            },
        );
        p.errors = errors;
        p
    }

    pub fn internal() -> Problem {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the server could not complete the request; the error is in its log",
        )
    }

    /// Seconds to wait before trying again, if this answer asks for it.
    fn wait(&self) -> Option<u32> {
        self.retry_after
            .map(|s| s.get())
            .or((self.status == StatusCode::SERVICE_UNAVAILABLE
                || self.status == StatusCode::TOO_MANY_REQUESTS)
                .then_some(UNAVAILABLE_RETRY))
    }

    /// The body; the member `request_id` is added on the way out, by the layer
    /// that gives every request its id (`conventions::RequestIds`).
    pub fn body(&self) -> Value {
        let mut body = json!({
            "type": format!("https://trellis.dev/problems/{}", self.kind),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if !self.errors.is_empty() {
            body["errors"] = json!(self.errors);
        }
        if let Some(obj) = body.as_object_mut() {
            for (k, v) in &self.extra {
                obj.insert(k.clone(), v.clone());
            }
            if let Some(secs) = self.wait() {
                obj.insert("retry_after".into(), json!(secs));
            }
        }
        body
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut res = (self.status, body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.wait() {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.accept_encoding {
            res.headers_mut().insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            );
        }
        if let Some(challenge) = self.www_authenticate {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, *challenge);
        }
        res
    }
}

/// A 401 problem with the header RFC 6750 asks for.
pub fn unauthorized(detail: impl Into<String>) -> Problem {
    let mut p = Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Unauthorized",
        detail,
    );
    p.www_authenticate = Some(Box::new(HeaderValue::from_static(
        "Bearer error=\"invalid_token\"",
    )));
    p
}

/// What a store error means to this caller: a refusal is 401 for an anonymous caller
/// (who might sign in) and 403 for a signed-in one.
pub fn for_caller(err: store::Error, entity: &str, who: &Principal) -> Problem {
    match err {
        store::Error::Refused(r) => refusal(r, entity, who),
        other => from_store(other, entity),
    }
}

/// The database is down or too slow: 503, try again shortly.
pub fn unavailable() -> Problem {
    let mut p = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "database-unavailable",
        "Service unavailable",
        "the database is not answering right now; try again in a few seconds",
    );
    p.retry_after(u64::from(UNAVAILABLE_RETRY));
    p
}

/// A statement stopped because its request's deadline passed.
pub fn too_slow() -> Problem {
    let mut p = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "timeout",
        "Took too long",
        "the request took too long and was stopped; ask for less (a narrower filter or \
         search, fewer relation paths, a smaller page) or try again later",
    );
    p.retry_after(u64::from(UNAVAILABLE_RETRY));
    p
}

/// A refusal of the policy to a signed-in caller.
fn forbidden(why: String) -> Problem {
    Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", why)
}

/// What a store error means to a client.
pub fn from_store(err: store::Error, entity: &str) -> Problem {
    match err {
        store::Error::Refused(r) => refused(r, entity, false),
        store::Error::NotFound => Problem::not_found(format!("there is no {entity} with this id")),
        store::Error::Stale { current } => {
            let mut p = Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "stale-version",
                "Version mismatch",
                format!(
                    "the {entity} was changed by someone else: it is now at version {current}; reload it and apply your change again"
                ),
            );
            p.extra.push(("current_version".into(), json!(current)));
            p
        }
        store::Error::Unique { fields } => {
            let mut p = Problem::new(
                StatusCode::CONFLICT,
                "unique",
                "Already taken",
                if fields.len() > 1 {
                    format!(
                        "another {entity} already has the same {}",
                        fields.join(" and ")
                    )
                } else {
                    format!(
                        "another {entity} already has this {}",
                        fields.first().map(String::as_str).unwrap_or("value")
                    )
                },
            );
            p.errors = fields
                .iter()
                .map(|f| FieldError::new(format!("/{f}"), "is already taken"))
                .collect();
            p
        }
        store::Error::MissingTargets(missing) => Problem::invalid(
            missing
                .into_iter()
                .map(|m| {
                    FieldError::new(
                        format!("/{}", m.field),
                        format!("there is no {} with id {}", m.target, m.ids.join(", ")),
                    )
                })
                .collect(),
        ),
        store::Error::Restricted { total, holders } => {
            let parts: Vec<String> = holders
                .iter()
                .map(|h| format!("{} {} record(s) (field `{}`)", h.count, h.entity, h.field))
                .collect();
            let mut p = Problem::new(
                StatusCode::CONFLICT,
                "still-referenced",
                "Still referenced",
                format!(
                    "this {entity} cannot be deleted: {total} record(s) still reference it: {}; delete or change them first",
                    parts.join(", ")
                ),
            );
            p.extra.push(("referenced_by".into(), json!(holders)));
            p
        }
        store::Error::Conflict(why) => {
            Problem::new(StatusCode::CONFLICT, "conflict", "Conflict", why)
        }
        other if other.is_timeout() => {
            tracing::warn!(error = %other, "statement stopped at the request's deadline");
            too_slow()
        }
        other if other.is_unavailable() => {
            tracing::warn!(error = %other, "database unavailable");
            unavailable()
        }
        other => {
            tracing::error!(error = %other, "store error");
            Problem::internal()
        }
    }
}

/// What a workflow's refusal means to this caller: as for the store's errors, a
/// refusal of the policy is 401 for an anonymous caller and 403 for a signed-in one.
pub fn refusal(refusal: Refusal, entity: &str, who: &Principal) -> Problem {
    refused(refusal, entity, who.is_anonymous())
}

/// A refusal as a problem; `anonymous`: the caller might sign in (401, not 403).
fn refused(refusal: Refusal, entity: &str, anonymous: bool) -> Problem {
    match refusal {
        Refusal::Forbidden(why) if anonymous => unauthorized(format!("{why}; sign in first")),
        Refusal::Forbidden(why) => forbidden(why),
        Refusal::WrongState {
            state,
            transition,
            from,
            possible,
        } => {
            let mut p = Problem::new(
                StatusCode::CONFLICT,
                "wrong-state",
                "Wrong state",
                format!(
                    "cannot `{transition}` this {entity}: it is `{state}`, and `{transition}` leaves only from {}; {}",
                    from.join(", "),
                    if possible.is_empty() {
                        format!("no transition leaves `{state}`")
                    } else {
                        format!("from `{state}` you can: {}", possible.join(", "))
                    }
                ),
            );
            p.extra.push(("state".into(), json!(state)));
            p.extra.push(("possible".into(), json!(possible)));
            p
        }
        Refusal::Guards(reasons) => {
            let mut p = Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "guard-failed",
                "Transition not possible now",
                reasons.join("; "),
            );
            p.extra.push(("reasons".into(), json!(reasons)));
            p
        }
        Refusal::Invalid(errors) => Problem::invalid(errors),
        Refusal::Effect(why) => {
            tracing::error!(error = %why, "workflow effect");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "effect-failed",
                "Workflow effect failed",
                why,
            )
        }
    }
}
