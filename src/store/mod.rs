//! `store`: the one place that speaks SQL. Two dialects (SQLite, PostgreSQL), each with
//! its own sqlx pool; statements are built with sea-query, values are always bound.

mod accounts;
mod aggregate;
mod changes;
mod crud;
mod ddl;
pub mod deadline;
mod dialect;
mod expand;
mod explain;
pub mod filter;
mod migrate;
mod values;
mod workflow;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use accounts::Refresh;
pub use changes::{Change, ChangeKind};
pub use crud::{Batch, Page, Record, permitted};
pub use ddl::SyncReport;
pub use explain::{Explanation, Visibility};
pub use migrate::{Applied, AppliedMigration, CountedLoss};
pub use workflow::{Delivery, Fired, HistoryEntry, OutboxRow, RecordOptions};

pub use dialect::Dialect;

#[derive(Debug, Clone)]
pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

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

/// What went wrong in the store. The HTTP layer maps each kind to a status. A
/// workflow's refusals are not here: they are the engine's
/// ([`crate::engine::transition::Refusal`]), returned beside these.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the database: {0}")]
    Connect(String),
    #[error("no such record")]
    NotFound,
    /// The caller may see the record (or collection) but not do this.
    #[error("{0}")]
    Forbidden(String),
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
    /// A field's write rule refuses the values of a create or update (its `where`
    /// does not hold), by field.
    #[error("invalid values")]
    Invalid(Vec<crate::engine::FieldError>),
    /// A migration would lose data (or cannot be applied while records lack values).
    #[error("the migration would lose data")]
    Destructive(Vec<CountedLoss>),
    /// A statement of a migration failed; nothing was applied.
    #[error("`{statement}` failed: {error}")]
    MigrationFailed { statement: String, error: String },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
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

impl Store {
    /// Is the database answering? (`GET /_/health`)
    pub async fn ping(&self) -> Result<(), Error> {
        let probe = async {
            match &self.pool {
                Pool::Sqlite(p) => sqlx::query("SELECT 1").execute(p).await.map(|_| ()),
                Pool::Postgres(p) => sqlx::query("SELECT 1").execute(p).await.map(|_| ()),
            }
        };
        match tokio::time::timeout(ACQUIRE_TIMEOUT, probe).await {
            Ok(r) => r.map_err(Error::Database),
            Err(_) => Err(Error::Database(sqlx::Error::PoolTimedOut)),
        }
    }

    /// Opens `url`: `sqlite://path` (created if missing) or `postgres://…`, with the
    /// default request deadline ([`REQUEST_DEADLINE`]).
    pub async fn connect(url: &str) -> Result<Store, Error> {
        Store::connect_with_deadline(url, REQUEST_DEADLINE).await
    }

    /// Opens `url` for requests that may take at most `deadline`: SQLite statements
    /// stop when the deadline of their request ([`deadline::scope`]) passes;
    /// PostgreSQL statements have a `statement_timeout` of `deadline` (both less
    /// [`deadline::ANSWER_MARGIN`], to answer in time).
    pub async fn connect_with_deadline(url: &str, deadline: Duration) -> Result<Store, Error> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)
                .map_err(|e| Error::Connect(e.to_string()))?
                .options([(
                    "statement_timeout",
                    format!(
                        "{}ms",
                        deadline::statement_limit(deadline).as_millis().max(1)
                    ),
                )]);
            let pool = PgPoolOptions::new()
                .max_connections(PG_CONNECTIONS)
                .min_connections(1)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .test_before_acquire(false)
                .connect_with(options)
                .await
                .map_err(|e| Error::Connect(e.to_string()))?;
            Ok(Store {
                pool: Pool::Postgres(pool),
                queries: Default::default(),
                outbox_wake: Default::default(),
                deadline,
                heavy: heavy_slots(PG_CONNECTIONS),
            })
        } else if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.trim_start_matches("//");
            let options = if path == ":memory:" || path.is_empty() {
                SqliteConnectOptions::from_str("sqlite::memory:")
                    .map_err(|e| Error::Connect(e.to_string()))?
            } else {
                if let Some(parent) = Path::new(path).parent()
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        Error::Connect(format!("cannot create {}: {e}", parent.display()))
                    })?;
                }
                SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
            };
            let options = options
                .foreign_keys(true)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                // Once a checkpoint resets the WAL, its file shrinks back to this.
                .pragma("journal_size_limit", WAL_LIMIT_BYTES.to_string());
            let in_memory = path == ":memory:" || path.is_empty();
            if !in_memory {
                // Switching a new file to WAL needs the file to itself: do it on one
                // connection before the pool opens several at once ("database is locked").
                use sqlx::{ConnectOptions, Connection};
                let first = options
                    .connect()
                    .await
                    .map_err(|e| Error::Connect(e.to_string()))?;
                let _ = first.close().await;
            }
            // One in-memory database exists per connection: keep exactly one.
            let connections = if in_memory { 1 } else { SQLITE_CONNECTIONS };
            let pool = SqlitePoolOptions::new()
                .max_connections(connections)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .test_before_acquire(false)
                // Each task that takes a connection arms it with its own deadline.
                .after_connect(|conn, _| Box::pin(deadline::arm(conn)))
                .before_acquire(|conn, _| {
                    Box::pin(async move { deadline::arm(conn).await.map(|()| true) })
                })
                .connect_with(options)
                .await
                .map_err(|e| Error::Connect(e.to_string()))?;
            Ok(Store {
                pool: Pool::Sqlite(pool),
                queries: Default::default(),
                outbox_wake: Default::default(),
                deadline,
                heavy: heavy_slots(connections),
            })
        } else {
            Err(Error::Connect(format!(
                "`{url}` is not a database URL; use sqlite://path/to/file.db or postgres://user:password@host/db"
            )))
        }
    }

    /// A turn for an expensive read (a full-text search, a caller's filter through
    /// relations): at most half of the pool's connections run such reads at once, so
    /// that the other half stays free for everything else however many expensive
    /// requests arrive together. Waiting for a turn ends with the request's deadline.
    pub(crate) async fn heavy_slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        // `None` only if the semaphore were closed, which it never is.
        self.heavy.acquire().await.ok()
    }

    /// How long a request on this store may take.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    pub fn dialect(&self) -> Dialect {
        match self.pool {
            Pool::Sqlite(_) => Dialect::Sqlite,
            Pool::Postgres(_) => Dialect::Postgres,
        }
    }

    /// How many statements the store has run (reads and writes).
    pub fn query_count(&self) -> u64 {
        self.queries.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn counted(&self) {
        self.queries
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Keeps SQLite's write-ahead log bounded. Under steady overlapping reads and
    /// writes SQLite's own (passive) checkpoints never find a moment without
    /// readers, so the WAL, and the memory that indexes it, grow without end
    /// ("checkpoint starvation"). This checkpoints passively and, once the log
    /// passes [`WAL_RESTART_FRAMES`], restarts it: new writers wait (at most 250 ms)
    /// while the readers of old frames finish; if they do not, the next call tries
    /// again. Returns the log's frames
    /// after the call; always 0 on PostgreSQL.
    pub async fn checkpoint_wal(&self) -> Result<i64, Error> {
        let Pool::Sqlite(pool) = &self.pool else {
            return Ok(0);
        };
        let (_, log, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(pool)
            .await?;
        if log < WAL_RESTART_FRAMES {
            return Ok(log.max(0));
        }
        // Writers wait while this waits for readers: never longer than a moment.
        let mut conn = pool.acquire().await?;
        sqlx::query("PRAGMA busy_timeout = 250")
            .execute(&mut *conn)
            .await?;
        let done: Result<(i64, i64, i64), sqlx::Error> =
            sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&mut *conn)
                .await;
        sqlx::query("PRAGMA busy_timeout = 10000")
            .execute(&mut *conn)
            .await?;
        let (_, log, _) = done?;
        Ok(log.max(0))
    }

    /// Runs [`Store::checkpoint_wal`] every `every` (SQLite files; nothing to do on
    /// PostgreSQL).
    pub fn checkpoint_every(&self, every: Duration) {
        if !matches!(self.pool, Pool::Sqlite(_)) {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(err) = store.checkpoint_wal().await {
                    tracing::debug!(%err, "WAL checkpoint");
                }
            }
        });
    }

    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }

    /// PostgreSQL: a new empty schema and a URL whose connections use it (for
    /// `trellis test`, so that each policy test starts empty). Drop it with
    /// [`Store::drop_schema`].
    pub async fn scratch_schema(url: &str) -> Result<(String, String), Error> {
        let admin = Store::connect(url).await?;
        let schema = format!("trellis_test_{}", uuid::Uuid::new_v4().simple());
        if let Pool::Postgres(p) = &admin.pool {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE SCHEMA {}",
                quote(&schema)
            )))
            .execute(p)
            .await?;
        }
        admin.close().await;
        let sep = if url.contains('?') { '&' } else { '?' };
        Ok((
            format!("{url}{sep}options=-c%20search_path%3D{schema}"),
            schema,
        ))
    }

    pub async fn drop_schema(url: &str, schema: &str) -> Result<(), Error> {
        let admin = Store::connect(url).await?;
        if let Pool::Postgres(p) = &admin.pool {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA {} CASCADE",
                quote(schema)
            )))
            .execute(p)
            .await?;
        }
        admin.close().await;
        Ok(())
    }

    /// Runs a raw read-only count; for tests and diagnostics.
    pub async fn count_rows(&self, table: &str) -> Result<i64, Error> {
        let sql = match self.dialect() {
            Dialect::Sqlite => format!("SELECT COUNT(*) FROM {}", quote(table)),
            Dialect::Postgres => format!("SELECT COUNT(*) FROM {}", quote(table)),
        };
        Ok(match &self.pool {
            Pool::Sqlite(p) => {
                sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.as_str()))
                    .fetch_one(p)
                    .await?
            }
            Pool::Postgres(p) => {
                sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.as_str()))
                    .fetch_one(p)
                    .await?
            }
        })
    }
}

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
