//! The request deadline: every request is answered within its time, a 503
//! problem otherwise (408 when the client had not sent its whole body), and the
//! store's statements stop when it passes.

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
#[derive(Clone, Copy)]
pub(super) struct Deadline(pub(super) std::time::Duration);

impl super::layer::Around for Deadline {
    fn around<S: super::layer::Inner>(
        &self,
        inner: &mut S,
        req: axum::extract::Request,
    ) -> super::ResponseFuture {
        let (req, body_done) = limits::watch_body(req);
        let limit = self.0;
        let until = std::time::Instant::now() + limit;
        let answer = crate::store::deadline::scope(until, inner.call(req));
        Box::pin(async move {
            match tokio::time::timeout(limit, answer).await {
                Ok(res) => res,
                // The client had not sent its whole body: its delay, not ours.
                Err(_) if !body_done.load(std::sync::atomic::Ordering::Relaxed) => {
                    Ok(limits::body_timeout(limit))
                }
                Err(_) => Ok(Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "timeout",
                    "Request timeout",
                    format!(
                        "the request took longer than {} ms and was abandoned",
                        limit.as_millis()
                    ),
                )
                .into_response()),
            }
        })
    }
}
