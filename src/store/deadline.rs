//! The request's deadline, as the store sees it: a task-local instant that the HTTP
//! layer sets around each request ([`scope`]). Every SQLite connection is armed with
//! it when a task running statements whose cost a caller controls ([`armed`]) takes
//! the connection from the pool (a progress handler that interrupts the running
//! statement once the instant has passed), so that a slow statement gives its
//! connection back when its request is abandoned, not when the statement ends. PostgreSQL connections have a `statement_timeout` of the same
//! length instead (see [`super::Store::connect_with_deadline`]).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::SqliteConnection;

tokio::task_local! {
    static DEADLINE: Instant;
    /// Set while the task runs statements whose cost a caller controls (see [`armed`]).
    static ARMED: Arc<AtomicBool>;
}

/// How long a request may take by default (`http` answers 503 after it).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// Statements stop this long before their request's deadline, so that the request
/// can still answer with what happened (503 "took too long") rather than be cut
/// off by the HTTP layer.
pub const ANSWER_MARGIN: Duration = Duration::from_millis(250);

/// When statements of a request with this `deadline` (its length) must stop.
pub(crate) fn statement_limit(deadline: Duration) -> Duration {
    deadline
        .checked_sub(ANSWER_MARGIN)
        .filter(|d| !d.is_zero())
        .unwrap_or(deadline)
}

/// SQLite virtual-machine steps between two looks at the clock (a few hundred
/// microseconds of work: an abandoned statement stops within about a millisecond).
const PROGRESS_STEPS: i32 = 10_000;

/// Runs `fut` with `until` as the deadline of every statement it runs.
pub async fn scope<F: Future>(until: Instant, fut: F) -> F::Output {
    DEADLINE.scope(until, fut).await
}

/// The deadline of the current task, if a request set one.
pub fn current() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok()
}

/// Runs `fut` with its SQLite statements armed against the request's deadline when
/// `expensive` (reads whose cost a caller controls: filters, `q`, aggregates).
/// Arming a connection costs a round trip to its worker thread, which the cheap
/// requests (a get by id, a plain page, a write) are spared; their cost is bounded
/// by indexes and page limits. When `fut` ends the handler goes quiet (its flag is
/// cleared), so a connection armed for one request never stops another's statement.
pub async fn armed<F: Future>(expensive: bool, fut: F) -> F::Output {
    if !expensive || current().is_none() {
        return fut.await;
    }
    let flag = Arc::new(AtomicBool::new(true));
    let _quiet = Quiet(flag.clone());
    ARMED.scope(flag, fut).await
}

/// Clears a request's arming flag when the request's statements are done (or dropped).
struct Quiet(Arc<AtomicBool>);

impl Drop for Quiet {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// Arms a SQLite connection taken by an [`armed`] task: a progress handler that
/// interrupts the statement (`SQLITE_INTERRUPT`) once the deadline, less
/// [`ANSWER_MARGIN`], has passed, as long as that task's statements run. Other tasks
/// leave the connection as it is: a handler left from an earlier request is quiet.
pub(crate) async fn arm(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let Some(flag) = ARMED.try_with(Arc::clone).ok() else {
        return Ok(());
    };
    let Some(until) = current().map(|d| d.checked_sub(ANSWER_MARGIN).unwrap_or(d)) else {
        return Ok(());
    };
    let mut handle = conn.lock_handle().await?;
    handle.set_progress_handler(PROGRESS_STEPS, move || {
        !flag.load(Ordering::Relaxed) || Instant::now() < until
    });
    Ok(())
}
