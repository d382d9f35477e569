//! `store`: the one place that speaks SQL. Two dialects (SQLite, PostgreSQL), each with
//! its own sqlx pool; statements are built with sea-query, values are always bound.

mod access;
mod accounts;
mod aggregate;
mod batch;
mod changes;
mod ddl;
pub mod deadline;
mod dialect;
mod expand;
mod explain;
pub(crate) mod files;
pub mod filter;
mod json;
mod kernel;
mod migrate;
mod read;
mod search;
mod values;
mod workflow;
mod write;

use std::time::Duration;

pub use access::permitted;
pub use accounts::Refresh;
pub use batch::Batch;
pub use changes::{Change, ChangeKind};
pub use ddl::SyncReport;
pub use explain::{Explanation, Visibility};
pub use files::Removal;
pub use kernel::{Pool, PoolStats, Record};
pub use migrate::{Applied, AppliedMigration, Baselined, CountedLoss};
pub use read::Page;
pub use workflow::{Delivery, Fired, HistoryEntry, OutboxRow, RecordOptions};

pub use dialect::Dialect;

/// A database connection pool for one project.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    /// Statements run so far (tests check that expansion does not issue one per row).
    queries: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Woken when this process commits webhook deliveries to the outbox.
    outbox_wake: std::sync::Arc<tokio::sync::Notify>,
    /// How long a request may take ([`deadline`]); PostgreSQL's `statement_timeout`.
    deadline: Duration,
    /// Connections that expensive reads may hold at once (see [`Store::heavy_slot`]).
    heavy: std::sync::Arc<tokio::sync::Semaphore>,
}

/// What went wrong in the store: storage failures. The HTTP layer maps each kind to a
/// status. Refusals of the project's rules are the engine's type
/// ([`crate::engine::Refusal`]): a transition's are returned beside these
/// (`Result<Result<_, Refusal>, Error>`, decided by the engine's planner); a CRUD
/// statement whose policy or write-rule condition did not hold on the stored row
/// reports it as [`Error::Refused`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the database: {0}")]
    Connect(String),
    #[error("no such record")]
    NotFound,
    #[error("the record has changed: its version is now {current}")]
    Stale { current: i64 },
    #[error("the value of {} is already taken", fields.join(", "))]
    Unique { fields: Vec<String> },
    #[error("some references point to records that do not exist")]
    MissingTargets(Vec<MissingTarget>),
    #[error("{total} record(s) still reference this one")]
    Restricted { total: i64, holders: Vec<Holder> },
    #[error("the database schema cannot follow these changes by itself:\n{}", .0.join("\n"))]
    NeedsMigration(Vec<String>),
    /// Lost a race: the record changed between reading and writing it.
    #[error("{0}")]
    Conflict(String),
    /// The rules refused the write or read, as the database judged them on the stored
    /// row: the caller may see the record (or collection) but not do this
    /// (`Refusal::Forbidden`), or a field's write rule refuses the values of a create
    /// or update (`Refusal::Invalid`, by field). The outcome is the engine's type;
    /// the store only reports that its statement found the rule not met.
    #[error("{0}")]
    Refused(crate::engine::Refusal),
    /// A migration would lose data (or cannot be applied while records lack values).
    #[error("the migration would lose data")]
    Destructive(Vec<CountedLoss>),
    /// A statement of a migration failed; nothing was applied.
    #[error("`{statement}` failed: {error}")]
    MigrationFailed { statement: String, error: String },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl Error {
    /// The caller may see the record (or collection) but not do this.
    pub fn forbidden(why: impl Into<String>) -> Error {
        Error::Refused(crate::engine::Refusal::Forbidden(why.into()))
    }

    /// A field's write rule refuses the values, by field.
    pub fn invalid(errors: Vec<crate::engine::FieldError>) -> Error {
        Error::Refused(crate::engine::Refusal::Invalid(errors))
    }

    pub fn is_forbidden(&self) -> bool {
        matches!(self, Error::Refused(crate::engine::Refusal::Forbidden(_)))
    }
}

/// A ref or many field whose value names records that do not exist.
#[derive(Debug, Clone)]
pub struct MissingTarget {
    pub field: String,
    pub target: String,
    pub ids: Vec<String>,
}

/// Records of one entity that hold a restricting reference.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Holder {
    pub entity: String,
    pub field: String,
    pub count: i64,
    /// A few of their ids.
    pub ids: Vec<String>,
}

/// How long a request waits for a free database connection before it is answered
/// 503 (a database that is down makes every connection attempt wait this long).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
pub use deadline::REQUEST_DEADLINE;

/// Connections of a PostgreSQL pool.
pub const PG_CONNECTIONS: u32 = 16;
/// Connections of a SQLite pool (on a file; an in-memory database has one).
pub const SQLITE_CONNECTIONS: u32 = 8;

/// Half of a pool's connections (at least one) for expensive reads.
fn heavy_slots(connections: u32) -> std::sync::Arc<tokio::sync::Semaphore> {
    std::sync::Arc::new(tokio::sync::Semaphore::new(
        (connections as usize / 2).max(1),
    ))
}

impl Error {
    /// Was a statement stopped because its request's deadline passed (SQLite's
    /// progress handler: `SQLITE_INTERRUPT`; PostgreSQL's `statement_timeout`)?
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Database(sqlx::Error::Database(db)) => {
                matches!(db.code().as_deref(), Some("9") | Some("57014"))
            }
            _ => false,
        }
    }

    /// Is the database unreachable, or too slow (as opposed to refusing a request)?
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Connect(_) => true,
            Error::Database(e) => match e {
                sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::WorkerCrashed => true,
                // A connection cut mid-conversation (the server went away).
                sqlx::Error::Protocol(msg) => {
                    msg.contains("communicating with database") || msg.contains("EOF")
                }
                sqlx::Error::Database(db) => {
                    // 57014 query_canceled (statement_timeout), 57P01..57P03 shutdown,
                    // 08xxx connection exceptions; SQLite: busy / locked.
                    let code = db.code().unwrap_or_default();
                    code == "57014"
                        || code.starts_with("57P")
                        || code.starts_with("08")
                        || code == "5"
                        || code == "6"
                        || code == "517"
                }
                _ => false,
            },
            _ => false,
        }
    }
}

/// The WAL's file is cut back to this size after a checkpoint resets it (SQLite).
pub const WAL_LIMIT_BYTES: i64 = 64 * 1024 * 1024;
/// A log of more frames than this (about 40 MiB of 4 KiB pages) is restarted by
/// [`Store::checkpoint_wal`] rather than left to SQLite's passive checkpoints.
pub const WAL_RESTART_FRAMES: i64 = 10_000;

/// Quotes an identifier that comes from the validated model.
pub(crate) fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// `sql` (a whole SELECT) with its LIMIT and OFFSET written as numbers, not bound.
///
/// They are integers Trellis computed (a validated page size), so nothing a caller
/// sends reaches the text. PostgreSQL needs them as literals: with `LIMIT $n` its
/// generic plan must assume a tenth of the table is wanted, costs more than the
/// custom one, and so a cached statement is planned again at every execution (the
/// plan cache's `custom_plans` counter keeps growing). With a literal limit, the
/// generic plan wins from the sixth execution on a connection (tests/statements.rs).
pub(crate) fn paged(mut sql: String, limit: u64, offset: Option<u64>) -> String {
    use std::fmt::Write;
    let _ = write!(sql, " LIMIT {limit}");
    if let Some(offset) = offset.filter(|o| *o > 0) {
        let _ = write!(sql, " OFFSET {offset}");
    }
    sql
}
