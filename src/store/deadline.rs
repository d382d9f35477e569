//! The request's deadline, as the store sees it: a task-local instant that the HTTP
//! layer sets around each request ([`scope`]). Every SQLite connection is armed with
//! it when a task takes the connection from the pool (a progress handler that
//! interrupts the running statement once the instant has passed), so that a slow
//! statement gives its connection back when its request is abandoned, not when the
//! statement ends. PostgreSQL connections have a `statement_timeout` of the same
//! length instead (see [`super::Store::connect_with_deadline`]).

use std::future::Future;
use std::time::{Duration, Instant};

use sqlx::SqliteConnection;

tokio::task_local! {
    static DEADLINE: Instant;
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

/// Arms a SQLite connection with the deadline of the task that takes it: a
/// progress handler that interrupts the statement (`SQLITE_INTERRUPT`) once the
/// deadline, less [`ANSWER_MARGIN`], has passed. Without a deadline (background work, the CLI) the handler
/// is removed, so nothing left from an earlier request stops it.
pub(crate) async fn arm(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let until = current().map(|d| d.checked_sub(ANSWER_MARGIN).unwrap_or(d));
    let mut handle = conn.lock_handle().await?;
    match until {
        Some(until) => handle.set_progress_handler(PROGRESS_STEPS, move || Instant::now() < until),
        None => handle.remove_progress_handler(),
    }
    Ok(())
}
