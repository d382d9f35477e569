//! The live side of the change log: one poller per process reads new log rows and
//! hands them to every subscriber through a bounded broadcast channel. Several
//! instances on one database each poll the same log, so a change made through any of
//! them reaches subscribers on all of them.
//!
//! Polling (rather than PostgreSQL's LISTEN/NOTIFY) works the same on SQLite, survives
//! reconnections without losing anything, and costs one indexed query per interval
//! while somebody listens.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, OnceCell, broadcast};

use crate::engine::Engine;
use crate::store::{self, Change, Store};

/// How often each instance looks for new changes while somebody listens, at the
/// latest: a write answered by this process wakes the poller at once
/// ([`Feed::wake`]), so the interval bounds only the delay of changes made through
/// another instance, beside Trellis, or by the database itself.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// The shortest time between two reads of the log: the writes answered within it
/// are read together (one query and one wake-up of every subscriber, not one each).
pub const MIN_GAP: Duration = Duration::from_millis(10);
/// Changes buffered for all subscribers of an instance; a subscriber further behind is
/// dropped (it can reconnect with `Last-Event-ID`).
pub const CAPACITY: usize = 1024;
/// Log rows read per query.
pub const PAGE: i64 = 500;
/// How many of the newest changes keep their evaluated events (see [`Feed::shared`]);
/// a subscriber further behind evaluates its own.
pub const SHARED_WINDOW: i64 = 256;

/// What one change is for the subscribers of one view: the event's name and data, or
/// nothing (the change is not theirs to see).
pub type Outcome = Option<(&'static str, Arc<str>)>;

/// The change feed of one process.
#[derive(Clone)]
pub struct Feed {
    store: Store,
    sender: broadcast::Sender<Arc<Change>>,
    polling: Arc<AtomicBool>,
    shared: Arc<SharedEvents>,
    /// Woken by this process's own writes; wakes that arrive while the poller reads
    /// are one (a burst of writes costs one more read, not one each).
    wake: Arc<Notify>,
    interval: Duration,
}

/// The events evaluated for the newest changes, by (change, engine, view key): with a
/// thousand subscribers in a few dozen views (roles, claims the rules use, filters),
/// each change costs a few dozen evaluations (queries, a serialization), not a
/// thousand.
#[derive(Default)]
pub struct SharedEvents(Mutex<Shared>);

#[derive(Default)]
struct Shared {
    newest: i64,
    swept: i64,
    slots: HashMap<(i64, usize, Arc<str>), Slot>,
}

struct Slot {
    /// Held so that the engine's address (in the key) is not reused while the slot
    /// lives.
    _engine: Arc<Engine>,
    outcome: Arc<OnceCell<Outcome>>,
}

impl Feed {
    pub fn new(store: Store) -> Feed {
        Feed::with_interval(store, POLL_INTERVAL)
    }

    /// A feed that looks for changes every `interval` when nothing wakes it (tests
    /// use a long one to show that this process's writes arrive without it).
    pub fn with_interval(store: Store, interval: Duration) -> Feed {
        let (sender, _) = broadcast::channel(CAPACITY);
        Feed {
            store,
            sender,
            polling: Arc::new(AtomicBool::new(false)),
            shared: Arc::default(),
            wake: Arc::default(),
            interval,
        }
    }

    /// Tells the poller that this process has just committed a write, so that its
    /// subscribers hear of it now rather than at the next interval. Cheap when nobody
    /// listens (the poller has not started; the wake is kept for its first read).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The event that change `seq` is for the view `key`, evaluated once for every
    /// subscriber with that view (see [`SharedEvents::get`]).
    pub async fn shared<E, F, Fut>(
        &self,
        seq: i64,
        engine: &Arc<Engine>,
        key: &Arc<str>,
        evaluate: F,
    ) -> Result<Outcome, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Outcome, E>>,
    {
        self.shared.get(seq, engine, key, evaluate).await
    }

    /// Changes committed from now on. Starts the poller on first use.
    pub async fn subscribe(&self) -> Result<broadcast::Receiver<Arc<Change>>, store::Error> {
        let receiver = self.sender.subscribe();
        if !self.polling.load(Ordering::Acquire) {
            let start = self.store.last_change().await?;
            if !self.polling.swap(true, Ordering::AcqRel) {
                tokio::spawn(poll(
                    self.store.clone(),
                    self.sender.clone(),
                    start,
                    self.wake.clone(),
                    self.interval,
                ));
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

impl SharedEvents {
    /// The event that change `seq` is for the view `key` (see
    /// `Store::feed_key`) under `engine`, evaluated by `evaluate` once for every subscriber with
    /// that view: the first one evaluates, the others wait for its outcome. A failed
    /// evaluation is not kept (the next subscriber tries again). Only the newest
    /// [`SHARED_WINDOW`] changes are kept; an older one is evaluated on its own.
    pub async fn get<E, F, Fut>(
        &self,
        seq: i64,
        engine: &Arc<Engine>,
        key: &Arc<str>,
        evaluate: F,
    ) -> Result<Outcome, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Outcome, E>>,
    {
        let cell = {
            let mut shared = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            if seq > shared.newest {
                shared.newest = seq;
            }
            let oldest = shared.newest - SHARED_WINDOW;
            if seq <= oldest {
                None
            } else {
                if shared.newest - shared.swept >= SHARED_WINDOW / 4 {
                    shared.slots.retain(|(s, ..), _| *s > oldest);
                    shared.swept = shared.newest;
                }
                let slot = shared
                    .slots
                    .entry((seq, Arc::as_ptr(engine) as usize, key.clone()))
                    .or_insert_with(|| Slot {
                        _engine: engine.clone(),
                        outcome: Arc::default(),
                    });
                Some(slot.outcome.clone())
            }
        };
        match cell {
            // Most subscribers of a view find the event ready.
            Some(cell) => match cell.get() {
                Some(ready) => Ok(ready.clone()),
                None => cell.get_or_try_init(evaluate).await.cloned(),
            },
            None => evaluate().await,
        }
    }

    /// How many evaluations are kept (for tests).
    pub fn kept(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .slots
            .len()
    }
}

async fn poll(
    store: Store,
    sender: broadcast::Sender<Arc<Change>>,
    mut last: i64,
    wake: Arc<Notify>,
    interval: Duration,
) {
    loop {
        // Whichever comes first: a write of this process, or the interval (for
        // everybody else's writes).
        let _ = tokio::time::timeout(interval, wake.notified()).await;
        let read_at = tokio::time::Instant::now();
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
        tokio::time::sleep_until(read_at + MIN_GAP.min(interval)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn engine() -> Arc<Engine> {
        Arc::new(crate::engine::engine_from_texts(&[(
            "models/task.yaml",
            "entity: task\nfields:\n  title: string\n",
        )]))
    }

    fn event(data: &str) -> Outcome {
        Some(("created", data.into()))
    }

    #[tokio::test]
    async fn a_view_evaluates_each_change_once() {
        let shared = SharedEvents::default();
        let engine = engine();
        let (admin, member): (Arc<str>, Arc<str>) = ("admin".into(), "member".into());
        let runs = AtomicUsize::new(0);
        let evaluate = |data: &'static str| {
            let runs = &runs;
            move || async move {
                runs.fetch_add(1, Ordering::SeqCst);
                // Slow enough that the other subscribers of the view arrive meanwhile.
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, ()>(event(data))
            }
        };
        // Three subscribers of one view at once, and one of another view.
        let (a, b, c, d) = tokio::join!(
            shared.get(7, &engine, &admin, evaluate("a")),
            shared.get(7, &engine, &admin, evaluate("b")),
            shared.get(7, &engine, &admin, evaluate("c")),
            shared.get(7, &engine, &member, evaluate("m")),
        );
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        let first = a.unwrap();
        assert_eq!(b.unwrap(), first);
        assert_eq!(c.unwrap(), first);
        assert_eq!(d.unwrap(), event("m"));
        // The next change, and the same change under new definitions, are their own.
        shared.get(8, &engine, &admin, evaluate("x")).await.unwrap();
        let reloaded = self::engine();
        let got = shared.get(7, &reloaded, &admin, evaluate("r")).await;
        assert_eq!(got.unwrap(), event("r"));
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        // Nothing to see is kept as well.
        let nothing = || async { Ok::<Outcome, ()>(None) };
        assert_eq!(shared.get(9, &engine, &member, nothing).await, Ok(None));
        let again = shared.get(9, &engine, &member, evaluate("late")).await;
        assert_eq!(again, Ok(None));
    }

    #[tokio::test]
    async fn a_failed_evaluation_is_not_kept() {
        let shared = SharedEvents::default();
        let engine = engine();
        let key: Arc<str> = "admin".into();
        let failed = shared
            .get(1, &engine, &key, || async {
                Err::<Outcome, _>("database down")
            })
            .await;
        assert_eq!(failed, Err("database down"));
        let ok = shared
            .get(1, &engine, &key, || async { Ok::<_, &str>(event("ok")) })
            .await;
        assert_eq!(ok, Ok(event("ok")));
    }

    #[tokio::test]
    async fn only_the_newest_changes_are_kept() {
        let shared = SharedEvents::default();
        let engine = engine();
        let key: Arc<str> = "admin".into();
        let ok = || async { Ok::<_, ()>(event("e")) };
        for seq in 1..=(SHARED_WINDOW * 4) {
            shared.get(seq, &engine, &key, ok).await.unwrap();
        }
        let kept = shared.kept();
        assert!(
            kept <= (SHARED_WINDOW + SHARED_WINDOW / 4) as usize,
            "{kept} kept"
        );
        // A change older than the window is evaluated, not kept.
        let runs = AtomicUsize::new(0);
        for _ in 0..2 {
            shared
                .get(3, &engine, &key, || async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, ()>(event("old"))
                })
                .await
                .unwrap();
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(shared.kept(), kept);
    }
}
