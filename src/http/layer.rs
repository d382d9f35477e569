//! The one shape of this crate's tower middleware. A middleware says only what it
//! does around the inner service ([`Around::around`]); [`Layered`] and [`Wrapped`]
//! are the `Layer` and `Service` plumbing every one of them shares. Plain services
//! rather than `axum::middleware::from_fn`, which clones the whole inner router
//! service for every request.

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;

use super::ResponseFuture;

/// The service inside a middleware: the router, or another middleware around it.
pub(super) trait Inner:
    tower::Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
{
}

impl<S> Inner for S where
    S: tower::Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
{
}

/// What a middleware does with a request and the service inside it.
pub(super) trait Around: Clone + Send + Sync + 'static {
    /// Answers `req`, calling `inner` (which is ready) at most once.
    fn around<S: Inner>(&self, inner: &mut S, req: Request) -> ResponseFuture;
}

/// The layer of a middleware: `router.layer(Layered(Deadline(limit)))`.
#[derive(Clone)]
pub(super) struct Layered<A>(pub A);

impl<S, A: Around> tower::Layer<S> for Layered<A> {
    type Service = Wrapped<S, A>;
    fn layer(&self, inner: S) -> Wrapped<S, A> {
        Wrapped {
            inner,
            around: self.0.clone(),
        }
    }
}

/// A service wrapped in a middleware.
#[derive(Clone)]
pub(super) struct Wrapped<S, A> {
    inner: S,
    around: A,
}

impl<S: Inner, A: Around> tower::Service<Request> for Wrapped<S, A> {
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> ResponseFuture {
        self.around.around(&mut self.inner, req)
    }
}
