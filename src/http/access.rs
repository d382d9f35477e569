//! The access log: one line per request at INFO (target `access`), and the span
//! every other line of the request is written in, so that each carries the
//! request id. The same layer counts the request for `/metrics`.
//!
//! A line holds the method, the route template, the status, the duration, the
//! request id and the caller's user id. Never the raw path (ids, and whatever a
//! client put there), the query string (filters may hold personal data), headers
//! or bodies (tokens, passwords). The route template names an entity or a
//! transition only when the current definitions have it, so labels stay bounded.
//!
//! The caller is not resolved here: the extractors that resolve it anyway
//! (`Caller`, `Target`) note it in the request's `PrincipalSlot`, which this
//! layer put there, and on the span.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::MatchedPath;
use axum::http::Method;
use tracing::Instrument;

use super::AppState;
use super::extract::PrincipalSlot;
use super::metrics::RequestLabels;
use crate::engine::Engine;

/// The request id of a request: its `X-Request-Id` (the outer `RequestIds` layer,
/// http/conventions.rs, has put a well-formed one there); checked again (1–128 of
/// `[A-Za-z0-9._:-]`), as the router may be used without that layer, and else a
/// new UUID v7 for this log only.
pub fn request_id(headers: &axum::http::HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=128).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// The method as a label: those the API answers, anything else `OTHER`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The route of a request as logged and labelled: the matched template with
/// `{plural}` and `{name}` filled in when they name an entity and one of its
/// transitions in `engine` (as the OpenAPI document lists the routes), and
/// `unmatched` for requests no route took.
pub fn route_label(template: Option<&str>, path: &str, engine: &Engine) -> Arc<str> {
    let Some(template) = template else {
        return Arc::from("unmatched");
    };
    if !template.contains("{plural}") {
        return Arc::from(template);
    }
    let mut out = String::with_capacity(template.len() + 16);
    let mut entity = None;
    for (i, (t, p)) in template.split('/').zip(path.split('/')).enumerate() {
        if i > 0 {
            out.push('/');
        }
        let known = match t {
            "{plural}" => {
                entity = engine.entity_by_plural(p).map(|e| e.name.clone());
                entity.is_some()
            }
            "{name}" => entity
                .as_deref()
                .and_then(|e| engine.workflow(e))
                .is_some_and(|wf| wf.transitions.iter().any(|t| t.name == p)),
            _ => false,
        };
        out.push_str(if known { p } else { t });
    }
    Arc::from(out)
}

/// The layer (outside the rate limit and the deadline, inside the request-id
/// layer).
#[derive(Clone)]
pub(super) struct AccessLog(pub AppState);

impl super::layer::Around for AccessLog {
    fn around<S: super::layer::Inner>(
        &self,
        inner: &mut S,
        mut req: axum::extract::Request,
    ) -> super::ResponseFuture {
        let started = Instant::now();
        let method = method_label(req.method());
        let route = route_label(
            req.extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str),
            req.uri().path(),
            &self.0.engine.load(),
        );
        let id = request_id(req.headers());
        let slot = PrincipalSlot::default();
        req.extensions_mut().insert(slot.clone());
        let span = tracing::info_span!(
            "request",
            request_id = %id,
            method,
            route = %route,
            principal = tracing::field::Empty,
        );
        let answer = {
            let _entered = span.enter();
            inner.call(req)
        };
        let state = self.0.clone();
        Box::pin(async move {
            let res = answer.instrument(span).await?;
            let took = started.elapsed();
            let status = res.status().as_u16();
            if res.status().is_success() && !matches!(method, "GET" | "HEAD" | "OPTIONS") {
                // A write may have committed changes: subscribers hear of it now.
                state.feed.wake();
            }
            state.ops.observe(
                &RequestLabels {
                    method,
                    route: route.clone(),
                    status,
                },
                took.as_secs_f64(),
            );
            let principal = slot.get();
            tracing::info!(
                target: "access",
                method = %method,
                route = %route,
                status,
                duration_ms = (took.as_secs_f64() * 1e6).round() / 1e3,
                request_id = %id,
                principal,
            );
            Ok(res)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    #[test]
    fn request_ids_are_taken_only_when_well_formed() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc-1.2:3_4"));
        assert_eq!(request_id(&h), "abc-1.2:3_4");
        for bad in ["a b", "x\"y", &"a".repeat(129), "ü"] {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(bad) {
                h.insert("x-request-id", v);
            }
            let got = request_id(&h);
            assert_ne!(got, bad);
            assert!(uuid::Uuid::parse_str(&got).is_ok(), "{got}");
        }
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
    }
}
