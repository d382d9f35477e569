//! The HTTP server loop: axum's router on hyper, with the timeouts `axum::serve`
//! does not set. A client that sends its request headers too slowly (slowloris) is
//! disconnected after [`HEADER_READ_TIMEOUT`], so idle or trickling connections
//! cannot pile up; the rest of a request is bounded by the router's request
//! timeout.
//!
//! The drain (SIGTERM, SIGINT): the listener closes (new connections are refused),
//! idle kept-alive connections close, requests in flight finish and their
//! connections close after the answer; event streams end by themselves (they watch
//! the runtime's `Shutdown`). `serve` returns when every connection is done or
//! when `give_up` completes (the CLI's `--shutdown-timeout`, or a second signal).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// How long a client may take to send a request's headers, on a new connection or
/// between two requests on a kept-alive one.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every connection finished.
    Completely,
    /// `give_up` came first: connections were still open.
    GaveUp,
}

/// Serves `app` on `listener` until `shutdown` completes, then lets the requests in
/// flight finish until they are done or `give_up` completes (polled only from
/// then on, so a timer in it starts with the drain). A peer address with
/// `limits.connections.per_address` connections open has its next one closed at
/// once, so that one client cannot take every file descriptor.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: std::sync::Arc<super::limits::Limits>,
    shutdown: impl Future<Output = ()>,
    give_up: impl Future<Output = ()>,
) -> std::io::Result<Drained> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(%err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = limits.open_connection(peer.ip()) else {
            tracing::debug!(%peer, "too many connections from this address; closed");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = app
            .clone()
            .map_request(move |req: hyper::Request<Incoming>| {
                let mut req = req.map(Body::new);
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                req
            });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(%err, %peer, "connection closed with an error");
            }
            drop(slot);
        });
    }
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    drop(listener);
    tracing::info!(
        connections = graceful.count(),
        %addr,
        "stopped accepting connections; finishing the requests in flight"
    );
    tokio::select! {
        () = graceful.shutdown() => Ok(Drained::Completely),
        () = give_up => Ok(Drained::GaveUp),
    }
}
