//! The removal worker and the sweeper, one task per process. Removals are queued
//! in the database by the writes that replace or remove files, in their own
//! transaction (`store::files`); this task takes due removals under a lease,
//! removes the objects (a file's thumbnails with it) and records the outcome: a
//! failure is retried with exponential backoff, for as long as it takes. A process
//! killed mid-removal leaves the removal queued; the lease runs out and the next
//! worker (this process after a restart, or another instance) takes it.
//!
//! The sweeper, in the same task, moves uploads that stayed pending longer than
//! `files.pending_ttl` (their request died, or the process did, mid-upload) to the
//! removal queue.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Files;
use crate::store::{Removal, Store};

/// How often the worker looks for due removals when nothing wakes it.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long a removal taken by a worker is its own. Removing is idempotent, so a
/// lease that runs out while its worker is still at it costs a second delete at
/// worst; short, so that removals taken by a process that was killed are soon due
/// again.
pub const LEASE: Duration = Duration::from_secs(10);
/// Removals (and expired uploads) taken at once.
const BATCH: i64 = 16;

/// A failed removal waits as a failed webhook delivery does: 1 s, 2 s, 4 s, … up to
/// an hour.
pub use crate::runtime::outbox::{MAX_BACKOFF, backoff};

/// How often the sweeper looks for expired uploads: half the pending TTL, from
/// half a second to a minute.
pub fn sweep_interval(pending_ttl_secs: u64) -> Duration {
    Duration::from_millis(pending_ttl_secs.saturating_mul(500).clamp(500, 60_000))
}

/// The running worker: [`Worker::finish`] removes what is due and stops it.
pub struct Worker {
    finish: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Worker {
    /// The end of a drain: remove what is due now, then stop, waiting at most
    /// `within`. `false` when it had to stop before; what is left stays queued
    /// for the next process.
    pub async fn finish(self, within: Duration) -> bool {
        self.finish.send_replace(true);
        let mut task = self.task;
        match tokio::time::timeout(within, &mut task).await {
            Ok(_) => true,
            Err(_) => {
                task.abort();
                false
            }
        }
    }
}

/// Starts the worker of this process; it runs until [`Worker::finish`].
pub fn spawn(store: Store, files: Arc<Files>) -> Worker {
    let (finish, mut finishing) = watch::channel(false);
    let task = tokio::spawn(async move {
        let sweep_every = sweep_interval(files.settings.pending_ttl);
        let mut next_sweep = tokio::time::Instant::now();
        loop {
            let last_round = *finishing.borrow_and_update();
            if tokio::time::Instant::now() >= next_sweep {
                sweep(&store, &files).await;
                next_sweep = tokio::time::Instant::now() + sweep_every;
            }
            match store.due_removals(BATCH, LEASE.as_millis() as i64).await {
                Ok(batch) if !batch.is_empty() => {
                    for r in batch {
                        remove(&store, &files, r).await;
                    }
                    continue;
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(%err, "files: cannot read the removal queue"),
            }
            if last_round {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(POLL_INTERVAL.min(sweep_every)) => {}
                () = files.wake.notified() => {}
                _ = finishing.changed() => {}
            }
        }
    });
    Worker { finish, task }
}

/// Moves expired pending uploads to the removal queue.
async fn sweep(store: &Store, files: &Files) {
    let ttl_ms = i64::try_from(files.settings.pending_ttl.saturating_mul(1000)).unwrap_or(i64::MAX);
    let cutoff = chrono::Utc::now().timestamp_millis().saturating_sub(ttl_ms);
    loop {
        match store.expire_pending(cutoff, BATCH).await {
            Ok(moved) => {
                for key in &moved {
                    tracing::info!(
                        key,
                        "files: an upload no record claimed expired; removing it"
                    );
                }
                if (moved.len() as i64) < BATCH {
                    return;
                }
            }
            Err(err) => {
                tracing::warn!(%err, "files: cannot sweep expired uploads");
                return;
            }
        }
    }
}

async fn remove(store: &Store, files: &Files, r: Removal) {
    let recorded = match files.store.delete_with_thumbs(&r.key).await {
        Ok(()) => {
            tracing::debug!(key = %r.key, "files: removed");
            store.removal_done(&r.key).await
        }
        Err(err) => {
            let attempts = r.attempts + 1;
            let wait = backoff(attempts - 1);
            tracing::warn!(key = %r.key, attempts, error = %err, retry_in_secs = wait.as_secs(), "files: cannot remove an object; it will be retried");
            let at = chrono::Utc::now().timestamp_millis() + wait.as_millis() as i64;
            store.removal_failed(&r.key, &err.to_string(), at).await
        }
    };
    if let Err(err) = recorded {
        tracing::warn!(%err, key = %r.key, "files: cannot record a removal's outcome; it will be retried");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(16));
        assert_eq!(backoff(100), MAX_BACKOFF);
    }

    #[test]
    fn sweeps_at_half_the_ttl_within_bounds() {
        assert_eq!(sweep_interval(1), Duration::from_millis(500));
        assert_eq!(sweep_interval(60), Duration::from_secs(30));
        assert_eq!(sweep_interval(3600), Duration::from_secs(60));
    }
}
