//! `runtime`: what a running server holds and the tasks that keep it current, with
//! no HTTP in it. Layers: spec → engine → store → **runtime** → http → cli. The
//! runtime publishes the current engine and its authentication ([`Runtime`]);
//! `http` reads them per request and never writes them; `reload` is the one writer.
//!
//! - [`auth`]: JWT verification and signing, built with each engine.
//! - [`reload`]: hot reload (file watcher, `POST /_/reload`, SIGHUP) and the
//!   [`Status`] of the last attempt.
//! - [`feed`]: the live change feed (one poller per process).
//! - [`outbox`]: webhook delivery (one sender per process).
//! - [`files`]: file storage (local folder or S3), streaming uploads, signed links,
//!   thumbnails, and the removal worker (one per process).
//! - [`env`]: the environment as a value, read once by the CLI, and `${VAR}`
//!   expansion.
//! - [`shutdown`]: the drain on SIGTERM / SIGINT, which every long-lived task sees.

pub mod auth;
pub mod env;
pub mod feed;
pub mod files;
pub mod outbox;
pub mod reload;
pub mod shutdown;

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::engine::Engine;
use crate::store::Store;
pub use auth::Auth;
pub use env::{Env, expand_vars};
pub use feed::Feed;
pub use reload::{Reloader, SecretLookup, Status, StatusCell, reload, watch};
pub use shutdown::Shutdown;

/// The state of a running server: the engine and authentication now serving
/// (swapped together by a reload), the store, the change feed, and how the last
/// reload went. Cloning it clones handles: every clone sees the same state.
#[derive(Clone)]
pub struct Runtime {
    /// The engine now serving. A request takes one snapshot (`load_full`) and uses
    /// it throughout.
    pub engine: Arc<ArcSwap<Engine>>,
    /// The authentication of that engine.
    pub auth: Arc<ArcSwap<Auth>>,
    pub store: Store,
    /// What is loaded, and how the last reload went (`GET /_/status`).
    pub status: StatusCell,
    /// The change feed of this process.
    pub feed: Feed,
    /// Reloads on demand (`POST /_/reload`, SIGHUP); absent when not serving a folder.
    pub reloader: Option<Reloader>,
    /// Set when the process drains (SIGTERM, SIGINT).
    pub shutdown: Shutdown,
    /// What this process's webhook sender did (`/metrics`).
    pub outbox: Arc<outbox::Stats>,
    /// File storage (`files` in trellis.yaml); set by `serve`, absent in a
    /// runtime built without it.
    pub files: Option<Arc<files::Files>>,
}

impl Runtime {
    pub fn new(engine: Engine, store: Store, auth: Auth) -> Runtime {
        Runtime {
            engine: Arc::new(ArcSwap::from_pointee(engine)),
            auth: Arc::new(ArcSwap::from_pointee(auth)),
            feed: Feed::new(store.clone()),
            store,
            status: Arc::new(ArcSwap::from_pointee(Status::started(Vec::new()))),
            reloader: None,
            shutdown: Shutdown::default(),
            outbox: Arc::default(),
            files: None,
        }
    }
}
