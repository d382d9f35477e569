//! The request deadline: every request is answered within its time, a 503
//! problem otherwise (408 when the client had not sent its whole body), and the
//! store's statements stop when it passes.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::IntoResponse;

use super::{Problem, limits};

/// Every request is answered within this time (a 503 problem otherwise). Streams
/// (`/events`) are not cut: their response starts at once.
/// The store's deadline ([`crate::store::Store::connect_with_deadline`]) replaces it when shorter
/// or longer.
pub const REQUEST_TIMEOUT: std::time::Duration = crate::store::REQUEST_DEADLINE;

/// Abandons a request after its deadline (the store's, [`REQUEST_TIMEOUT`] by
/// default) with a 503 problem, and gives the deadline to the store, whose
/// statements stop when it passes. A plain layer rather than `middleware::from_fn`,
/// which clones the whole router service for every request.
///
/// An upload (`multipart/form-data`) may take longer: its deadline moves on while
/// its bytes keep coming — it is cut (408) only when no byte arrived for a whole
/// deadline, or when it has run for `upload` (`files.upload_timeout`) in all — and
/// once its body is complete, the server has the usual deadline to answer.
#[derive(Clone, Copy)]
pub(super) struct Deadline {
    pub(super) limit: Duration,
    pub(super) upload: Duration,
}

impl super::layer::Around for Deadline {
    fn around<S: super::layer::Inner>(
        &self,
        inner: &mut S,
        req: axum::extract::Request,
    ) -> super::ResponseFuture {
        let upload = super::files::is_multipart(req.headers());
        let (req, body) = limits::watch_body(req);
        let Deadline {
            limit,
            upload: most,
        } = *self;
        let start = Instant::now();
        // The store's statements may run until the latest moment the request can last.
        let until = match upload {
            true => start + most.max(limit) + limit,
            false => start + limit,
        };
        let answer = crate::store::deadline::scope(until, inner.call(req));
        Box::pin(async move {
            tokio::pin!(answer);
            loop {
                // The moment this request is due, from what its body has done so far.
                let due = match upload {
                    true => upload_due(&body, start, limit, most),
                    false => start + limit,
                };
                match tokio::time::timeout_at(due.into(), &mut answer).await {
                    Ok(res) => return res,
                    // The body moved (or ended) meanwhile: the request is due later.
                    Err(_) if upload && Instant::now() < upload_due(&body, start, limit, most) => {
                        continue;
                    }
                    Err(_) if upload && !body.done() => {
                        return Ok(limits::upload_timeout(limit, most.max(limit)));
                    }
                    // The client had not sent its whole body: its delay, not ours.
                    Err(_) if !body.done() => return Ok(limits::body_timeout(limit)),
                    Err(_) => {
                        return Ok(Problem::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "timeout",
                            "Request timeout",
                            format!(
                                "the request took longer than {} ms and was abandoned",
                                limit.as_millis()
                            ),
                        )
                        .into_response());
                    }
                }
            }
        })
    }
}

/// When an upload is due, from what its body has done so far: a deadline after its
/// last bytes, and while it is still coming, no later than `most` after its start.
fn upload_due(
    body: &limits::BodyWatch,
    start: Instant,
    limit: Duration,
    most: Duration,
) -> Instant {
    match body.done() {
        false => (body.last_progress() + limit).min(start + most.max(limit)),
        true => body.last_progress() + limit,
    }
}
