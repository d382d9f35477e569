//! The live side of the change log: one poller per process reads new log rows and
//! hands them to every subscriber through a bounded broadcast channel. Several
//! instances on one database each poll the same log, so a change made through any of
//! them reaches subscribers on all of them.
//!
//! Polling (rather than PostgreSQL's LISTEN/NOTIFY) works the same on SQLite, survives
//! reconnections without losing anything, and costs one indexed query per interval
//! while somebody listens.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::broadcast;

use crate::store::{self, Change, Store};

/// How often each instance looks for new changes while somebody listens.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Changes buffered for all subscribers of an instance; a subscriber further behind is
/// dropped (it can reconnect with `Last-Event-ID`).
pub const CAPACITY: usize = 1024;
/// Log rows read per query.
pub const PAGE: i64 = 500;

/// The change feed of one process.
#[derive(Clone)]
pub struct Feed {
    store: Store,
    sender: broadcast::Sender<Arc<Change>>,
    polling: Arc<AtomicBool>,
}

impl Feed {
    pub fn new(store: Store) -> Feed {
        let (sender, _) = broadcast::channel(CAPACITY);
        Feed {
            store,
            sender,
            polling: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Changes committed from now on. Starts the poller on first use.
    pub async fn subscribe(&self) -> Result<broadcast::Receiver<Arc<Change>>, store::Error> {
        let receiver = self.sender.subscribe();
        if !self.polling.load(Ordering::Acquire) {
            let start = self.store.last_change().await?;
            if !self.polling.swap(true, Ordering::AcqRel) {
                tokio::spawn(poll(self.store.clone(), self.sender.clone(), start));
            }
        }
        Ok(receiver)
    }

    /// Removes changes older than `retention`, now and then, for as long as the
    /// process runs.
    pub fn prune_every(&self, every: Duration, retention: Duration) {
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let cutoff = chrono::Utc::now().timestamp_millis()
                    - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
                match store.prune_changes(cutoff).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "change log pruned"),
                    Err(err) => tracing::warn!(%err, "cannot prune the change log"),
                }
            }
        });
    }
}

async fn poll(store: Store, sender: broadcast::Sender<Arc<Change>>, mut last: i64) {
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        loop {
            match store.changes_after(last, None, PAGE).await {
                Ok(changes) => {
                    let full = changes.len() as i64 == PAGE;
                    for c in changes {
                        last = c.seq;
                        // No receiver right now is fine.
                        let _ = sender.send(Arc::new(c));
                    }
                    if !full {
                        break;
                    }
                }
                Err(err) => {
                    tracing::warn!(%err, "cannot read the change log");
                    break;
                }
            }
        }
    }
}
