//! HTTP conventions every answer follows (docs/http.md): the request id, response
//! compression, conditional GETs (`ETag` / `If-None-Match` → 304) and the
//! `Retry-After` of 429 and 503 answers.

use std::sync::{Arc, Mutex, Weak};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tower_http::compression::predicate::{Predicate, SizeAbove};
use tower_http::compression::{CompressionLayer, CompressionLevel};
use tower_http::request_id::RequestId;

use crate::engine::Engine;

/// The request id's header, on requests and on every response.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id taken from a client.
pub const MAX_REQUEST_ID: usize = 128;

/// Responses smaller than this are sent as they are: below about a kilobyte the
/// saving is a few hundred bytes at most, less than a TCP segment.
pub const COMPRESS_MIN_BYTES: u64 = 1024;

/// Seconds a 503 asks the client to wait when its producer did not say.
const DEFAULT_RETRY_AFTER: u32 = 5;

/// A request id a client may choose: 1–128 characters of `[A-Za-z0-9._:-]`. Anything
/// else (spaces, control characters, quotes, too long) is replaced, never echoed,
/// so that it cannot forge log lines or headers.
pub fn acceptable_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The request's id: its own `X-Request-Id` when acceptable, a new UUID v7
/// otherwise.
fn request_id_of(headers: &HeaderMap) -> HeaderValue {
    let mut given = headers.get_all(&X_REQUEST_ID).iter();
    match (given.next(), given.next()) {
        (Some(id), None) if acceptable_request_id(id.as_bytes()) => id.clone(),
        _ => HeaderValue::from_str(&uuid::Uuid::now_v7().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("-")),
    }
}

/// The id of a request the [`RequestIds`] layer has seen (its `x-request-id`
/// header, set before the router runs); `None` only for a request that did not
/// pass through the router's layers.
pub fn request_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(&X_REQUEST_ID)
        .filter(|v| acceptable_request_id(v.as_bytes()))
        .and_then(|v| v.to_str().ok())
}

/// The outermost layer of the router but compression. On the way in: gives the
/// request its id (the client's when acceptable, else a new UUID v7), as the
/// `x-request-id` header and as tower-http's [`RequestId`] extension, which every
/// later layer and handler (logs, transitions) reads. On the way out, for every
/// answer, the router's and its layers' (CORS preflights, 413, 429, timeouts,
/// 404/405 fallbacks) alike: the `X-Request-Id` header, the member `request_id` in
/// a problem body, and `Retry-After` on a 429 or 503 that lacks it.
///
/// tower-http's `SetRequestIdLayer` keeps a client's header as it is, so the
/// validation needs a layer of its own; doing the rest here too keeps one place.
#[derive(Clone, Copy)]
pub(super) struct RequestIds;

impl super::layer::Around for RequestIds {
    fn around<S: super::layer::Inner>(
        &self,
        inner: &mut S,
        mut req: Request,
    ) -> super::ResponseFuture {
        let id = request_id_of(req.headers());
        req.headers_mut().insert(X_REQUEST_ID.clone(), id.clone());
        req.extensions_mut().insert(RequestId::new(id.clone()));
        let secret = req.uri().path().starts_with("/auth/");
        let answer = inner.call(req);
        Box::pin(async move {
            let mut res = answer.await?;
            if secret {
                keep_secret(&mut res);
            }
            Ok(finish(res, id).await)
        })
    }
}

/// Marks an answer that must stay uncompressed (see [`keep_secret`]).
#[derive(Clone, Copy)]
struct Uncompressed;

/// The answers of `/auth/*` hold tokens: no cache keeps them (`no-store`, as
/// RFC 6749 §5.1 asks of token answers), and they are never compressed, so that
/// their size cannot leak a token next to text the client chose (BREACH). They are
/// small anyway.
fn keep_secret(res: &mut Response) {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.extensions_mut().insert(Uncompressed);
}

/// The answer with its request id, and `Retry-After` where it belongs.
async fn finish(mut res: Response, id: HeaderValue) -> Response {
    let status = res.status();
    if (status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE)
        && !res.headers().contains_key(header::RETRY_AFTER)
    {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(DEFAULT_RETRY_AFTER));
    }
    res.headers_mut().insert(X_REQUEST_ID.clone(), id.clone());
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/problem+json"));
    if !is_problem || res.headers().contains_key(header::CONTENT_ENCODING) {
        return res;
    }
    // Problem bodies are small and written whole by `Problem::into_response`.
    let (mut parts, body) = res.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(err) => {
            tracing::error!(%err, "a problem body could not be read");
            return super::Problem::internal().into_response();
        }
    };
    let filled = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut obj)) => {
            let text = String::from_utf8_lossy(id.as_bytes()).into_owned();
            obj.insert("request_id".into(), serde_json::Value::String(text));
            serde_json::to_vec(&obj).unwrap_or_else(|_| bytes.to_vec())
        }
        _ => bytes.to_vec(),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(filled))
}

/// gzip, br and zstd (`Accept-Encoding` decides, with its q-values) for JSON
/// answers of at least [`COMPRESS_MIN_BYTES`]; never for event streams, which are
/// not JSON (they must reach the client event by event, unbuffered).
pub(super) fn compression() -> CompressionLayer<impl Predicate> {
    CompressionLayer::new()
        .gzip(true)
        .br(true)
        .zstd(true)
        .no_deflate()
        .quality(CompressionLevel::Default)
        .compress_when(SizeAbove::new(COMPRESS_MIN_BYTES).and(is_json as JsonOnly))
}

type JsonOnly = fn(StatusCode, axum::http::Version, &HeaderMap, &axum::http::Extensions) -> bool;

/// `application/json` and `application/*+json` (problems), nothing else, and
/// not the answers that hold tokens.
fn is_json(
    _: StatusCode,
    _: axum::http::Version,
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
) -> bool {
    if extensions.get::<Uncompressed>().is_some() {
        return false;
    }
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// A weak validator over the exact bytes of a body: `W/"<128 bits of SHA-256>"`.
/// Weak, because the same bytes compressed are another representation (a strong
/// validator would have to differ per content coding), and `If-None-Match`
/// compares weakly anyway. Each caller's body is hashed as that caller gets it, so
/// two callers who see different things never share a validator.
pub fn body_etag(body: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(body);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&format!("W/\"{hex}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("W/\"\""))
}

/// Whether `If-None-Match` names `etag` (weak comparison: `W/` ignored on both
/// sides) or is `*`.
pub fn none_match(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = opaque(etag.to_str().unwrap_or(""));
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || (!ours.is_empty() && opaque(tag) == ours))
}

/// The opaque tag of an entity tag: `W/"x"` and `"x"` are both `x`.
fn opaque(tag: &str) -> &str {
    let tag = tag.trim();
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    tag.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or("")
}

/// 304: the validator and the cache headers of the 200 it stands for, no body.
pub fn not_modified(etag: HeaderValue, private: bool) -> Response {
    let mut res = StatusCode::NOT_MODIFIED.into_response();
    res.headers_mut().insert(header::ETAG, etag);
    cache_headers(res.headers_mut(), private);
    res
}

/// What caches may do with an answer that has a validator: keep it, but ask again
/// before each use (`no-cache`, answered 304 while unchanged). `private`: the
/// answer depends on the caller, so shared caches must not keep it, and a browser
/// keeps it per `Authorization`.
pub fn cache_headers(headers: &mut HeaderMap, private: bool) {
    if private {
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-cache"),
        );
        headers.append(header::VARY, HeaderValue::from_static("authorization"));
    } else {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
}

/// The answer `make` builds, with `etag` and the cache headers; or 304 when
/// `If-None-Match` already names `etag` (`make` is then not called).
pub fn conditional(
    request: &HeaderMap,
    etag: HeaderValue,
    private: bool,
    make: impl FnOnce() -> Response,
) -> Response {
    if none_match(request, &etag) {
        return not_modified(etag, private);
    }
    let mut res = make();
    res.headers_mut().insert(header::ETAG, etag);
    cache_headers(res.headers_mut(), private);
    res
}

/// The validator of the OpenAPI document of the engine serving now, hashed once
/// per engine (a reload makes a new engine; the `Weak` keeps the old one's address
/// from being reused while it is remembered).
#[derive(Default)]
pub struct DocumentTag(Mutex<Option<(Weak<Engine>, HeaderValue)>>);

impl DocumentTag {
    pub fn of(&self, engine: &Arc<Engine>) -> HeaderValue {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((weak, tag)) = kept.as_ref()
            && std::ptr::eq(weak.as_ptr(), Arc::as_ptr(engine))
        {
            return tag.clone();
        }
        let tag = body_etag(engine.openapi_json());
        *kept = Some((Arc::downgrade(engine), tag.clone()));
        tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_clients_are_checked() {
        assert!(acceptable_request_id(b"req-1"));
        assert!(acceptable_request_id(
            b"01a21bd1-2174-72c7-a832-02eb80ce5abc"
        ));
        assert!(acceptable_request_id(b"a.b_c:d-e"));
        assert!(acceptable_request_id(&[b'a'; 128]));
        assert!(!acceptable_request_id(&[b'a'; 129]));
        assert!(!acceptable_request_id(b""));
        assert!(!acceptable_request_id(b"two words"));
        assert!(!acceptable_request_id(b"x\r\ny"));
        assert!(!acceptable_request_id(b"\"quoted\""));
        assert!(!acceptable_request_id("é".as_bytes()));
    }

    #[test]
    fn if_none_match_compares_weakly() {
        let tag = HeaderValue::from_static("W/\"abc\"");
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_static(v));
            none_match(&h, &tag)
        };
        assert!(with("W/\"abc\""));
        assert!(with("\"abc\""));
        assert!(with("\"x\", W/\"abc\""));
        assert!(with("*"));
        assert!(!with("\"abcd\""));
        assert!(!with("abc"));
        assert!(!with("\"\""));
        assert!(!none_match(&HeaderMap::new(), &tag));
    }
}
