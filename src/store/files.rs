//! The database side of file storage: uploads no record has claimed yet
//! (`_trellis_file_pending`) and objects to remove after a commit
//! (`_trellis_file_removals`). The objects themselves live in the runtime's file
//! store; these two tables make sure none is left behind:
//!
//! - before streaming an upload, the HTTP path records its key as pending in its own
//!   short transaction ([`Store::record_pending`]);
//! - the record write that references the upload claims it in the write's own
//!   transaction ([`FileRows::claim_pending`]): from then on the record owns it;
//! - a write that failed gives its uploads up at once ([`Store::discard_pending`]);
//! - a write that replaces or removes files queues their keys for removal in its own
//!   transaction ([`FileRows::enqueue_removals`]), so nothing is removed before the
//!   commit and nothing committed is forgotten;
//! - the runtime's sweeper moves pending rows older than `files.pending_ttl` (an
//!   upload whose request died) to the removal queue ([`Store::expire_pending`]);
//! - the runtime's worker removes queued objects under a lease, with retries
//!   ([`Store::due_removals`], [`Store::removal_done`], [`Store::removal_failed`]).
//!
//! Keys are the object keys of `spec::file_keys`; a removal of a file's key also
//! removes its thumbnails (the worker's part).

use sqlx::AssertSqlSafe;

use super::kernel::on_pool;
use super::{Dialect, Error, Store};
use crate::engine::{Engine, Entity};
use crate::spec::{FieldType, OnDelete};

pub(crate) const PENDING: &str = "_trellis_file_pending";
pub(crate) const REMOVALS: &str = "_trellis_file_removals";

pub(crate) fn ddl(_dialect: Dialect) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {PENDING} (key TEXT PRIMARY KEY NOT NULL, created_ms BIGINT NOT NULL)"
        ),
        format!("CREATE INDEX IF NOT EXISTS ix_trellis_file_pending_age ON {PENDING} (created_ms)"),
        format!(
            "CREATE TABLE IF NOT EXISTS {REMOVALS} (key TEXT PRIMARY KEY NOT NULL, created_ms BIGINT NOT NULL, due_ms BIGINT NOT NULL, attempts BIGINT NOT NULL, last_error TEXT)"
        ),
        format!("CREATE INDEX IF NOT EXISTS ix_trellis_file_removals_due ON {REMOVALS} (due_ms)"),
    ]
}

const PENDING_INSERT: &str = "INSERT INTO _trellis_file_pending (key, created_ms) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";
const PENDING_DELETE: &str = "DELETE FROM _trellis_file_pending WHERE key = $1";
const REMOVAL_INSERT: &str = "INSERT INTO _trellis_file_removals (key, created_ms, due_ms, attempts) VALUES ($1, $2, $2, 0) ON CONFLICT (key) DO NOTHING";

/// An object waiting to be removed, taken by the worker under a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub key: String,
    /// Failed attempts so far.
    pub attempts: i64,
}

/// The file rows of a record write, run on the write's own transaction (SQLite or
/// PostgreSQL connection): `tx.claim_pending(&keys)`, `tx.enqueue_removals(&keys)`.
pub(crate) trait FileRows {
    /// Takes the pending uploads `keys` for the record being written. Returns the
    /// keys that were not pending (never recorded, already claimed, or expired and
    /// being removed): the write must fail when there is one, since the record
    /// would name an object that is not (or will not stay) there.
    async fn claim_pending(&mut self, keys: &[String]) -> Result<Vec<String>, sqlx::Error>;
    /// Queues `keys` for removal once this transaction commits (the worker removes
    /// them, and their thumbnails). A key already queued stays queued once.
    async fn enqueue_removals(&mut self, keys: &[String]) -> Result<(), sqlx::Error>;
}

macro_rules! file_rows {
    ($conn:ty) => {
        impl FileRows for $conn {
            async fn claim_pending(&mut self, keys: &[String]) -> Result<Vec<String>, sqlx::Error> {
                let mut missing = Vec::new();
                for key in keys {
                    let done = sqlx::query(PENDING_DELETE)
                        .bind(key)
                        .execute(&mut *self)
                        .await?;
                    if done.rows_affected() == 0 {
                        missing.push(key.clone());
                    }
                }
                Ok(missing)
            }

            async fn enqueue_removals(&mut self, keys: &[String]) -> Result<(), sqlx::Error> {
                let now = chrono::Utc::now().timestamp_millis();
                for key in keys {
                    sqlx::query(REMOVAL_INSERT)
                        .bind(key)
                        .bind(now)
                        .execute(&mut *self)
                        .await?;
                }
                Ok(())
            }
        }
    };
}
file_rows!(sqlx::SqliteConnection);
file_rows!(sqlx::PgConnection);

impl Store {
    /// Records uploads about to be streamed to storage, in a transaction of its own
    /// (committed before the first byte is stored, so a crash mid-upload leaves a
    /// row the sweeper finds).
    pub async fn record_pending(&self, keys: &[String]) -> Result<(), Error> {
        let now = chrono::Utc::now().timestamp_millis();
        self.counted();
        match self.pool() {
            super::Pool::Sqlite(p) => {
                let mut tx = super::kernel::begin_immediate(p).await?;
                for key in keys {
                    sqlx::query(PENDING_INSERT)
                        .bind(key)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
            super::Pool::Postgres(p) => {
                let mut tx = p.begin().await?;
                for key in keys {
                    sqlx::query(PENDING_INSERT)
                        .bind(key)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Claims pending uploads in a transaction of its own (a write path that has no
    /// record transaction, and tests). See [`FileRows::claim_pending`].
    pub async fn claim_pending(&self, keys: &[String]) -> Result<Vec<String>, Error> {
        self.counted();
        let missing = match self.pool() {
            super::Pool::Sqlite(p) => {
                let mut tx = super::kernel::begin_immediate(p).await?;
                let missing = (*tx).claim_pending(keys).await?;
                tx.commit().await?;
                missing
            }
            super::Pool::Postgres(p) => {
                let mut tx = p.begin().await?;
                let missing = (*tx).claim_pending(keys).await?;
                tx.commit().await?;
                missing
            }
        };
        Ok(missing)
    }

    /// Queues objects for removal in a transaction of its own (e.g. after a
    /// delete that did not go through a record write). See
    /// [`FileRows::enqueue_removals`].
    pub async fn enqueue_removals(&self, keys: &[String]) -> Result<(), Error> {
        self.counted();
        match self.pool() {
            super::Pool::Sqlite(p) => {
                let mut tx = super::kernel::begin_immediate(p).await?;
                (*tx).enqueue_removals(keys).await?;
                tx.commit().await?;
            }
            super::Pool::Postgres(p) => {
                let mut tx = p.begin().await?;
                (*tx).enqueue_removals(keys).await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Gives up pending uploads whose write failed: their rows move to the removal
    /// queue (due now) in one transaction, so the objects go even if this process
    /// dies before removing them. A key no longer pending (claimed by a write that
    /// committed) is left alone. Returns the keys moved.
    pub async fn discard_pending(&self, keys: &[String]) -> Result<Vec<String>, Error> {
        self.counted();
        macro_rules! run {
            ($tx:ident) => {{
                let missing = (*$tx).claim_pending(keys).await?;
                let moved: Vec<String> = keys
                    .iter()
                    .filter(|k| !missing.contains(k))
                    .cloned()
                    .collect();
                (*$tx).enqueue_removals(&moved).await?;
                $tx.commit().await?;
                moved
            }};
        }
        let moved = match self.pool() {
            super::Pool::Sqlite(p) => {
                let mut tx = super::kernel::begin_immediate(p).await?;
                run!(tx)
            }
            super::Pool::Postgres(p) => {
                let mut tx = p.begin().await?;
                run!(tx)
            }
        };
        Ok(moved)
    }

    /// The sweeper's step: moves up to `limit` pending uploads recorded before
    /// `older_than_ms` (unix milliseconds) to the removal queue, in one
    /// transaction. A write claiming one of them at the same time either commits
    /// first (the row is gone; nothing moves) or finds it missing and fails.
    /// Returns the keys moved.
    pub async fn expire_pending(
        &self,
        older_than_ms: i64,
        limit: i64,
    ) -> Result<Vec<String>, Error> {
        let lock = self.dialect().skip_locked();
        let select = format!(
            "SELECT key FROM {PENDING} WHERE created_ms < $1 ORDER BY created_ms, key LIMIT $2{lock}"
        );
        self.counted();
        macro_rules! run {
            ($tx:ident) => {{
                let rows: Vec<(String,)> = sqlx::query_as(AssertSqlSafe(select))
                    .bind(older_than_ms)
                    .bind(limit)
                    .fetch_all(&mut *$tx)
                    .await?;
                let keys: Vec<String> = rows.into_iter().map(|(k,)| k).collect();
                let missing = (*$tx).claim_pending(&keys).await?;
                let moved: Vec<String> =
                    keys.into_iter().filter(|k| !missing.contains(k)).collect();
                (*$tx).enqueue_removals(&moved).await?;
                $tx.commit().await?;
                moved
            }};
        }
        let moved = match self.pool() {
            super::Pool::Sqlite(p) => {
                let mut tx = super::kernel::begin_immediate(p).await?;
                run!(tx)
            }
            super::Pool::Postgres(p) => {
                let mut tx = p.begin().await?;
                run!(tx)
            }
        };
        Ok(moved)
    }

    /// Takes up to `limit` removals that are due, under a lease of `lease_ms`: no
    /// other worker (this process or another) takes them until it runs out, and a
    /// worker that dies leaves them due again when it does.
    pub async fn due_removals(&self, limit: i64, lease_ms: i64) -> Result<Vec<Removal>, Error> {
        let now = chrono::Utc::now().timestamp_millis();
        let lock = self.dialect().skip_locked();
        let sql = format!(
            "UPDATE {REMOVALS} SET due_ms = $1 WHERE key IN (SELECT key FROM {REMOVALS} WHERE due_ms <= $2 ORDER BY due_ms, key LIMIT $3{lock}) RETURNING key, attempts"
        );
        let rows: Vec<(String, i64)> = on_pool!(self, pool => {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(now + lease_ms)
                .bind(now)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|(key, attempts)| Removal { key, attempts })
            .collect())
    }

    /// The object is gone: its removal leaves the queue.
    pub async fn removal_done(&self, key: &str) -> Result<(), Error> {
        let sql = format!("DELETE FROM {REMOVALS} WHERE key = $1");
        on_pool!(self, pool => {
            sqlx::query(AssertSqlSafe(sql)).bind(key).execute(pool).await?;
        });
        Ok(())
    }

    /// A removal failed: it is tried again at `retry_at_ms`.
    pub async fn removal_failed(
        &self,
        key: &str,
        error: &str,
        retry_at_ms: i64,
    ) -> Result<(), Error> {
        let sql = format!(
            "UPDATE {REMOVALS} SET due_ms = $1, attempts = attempts + 1, last_error = $2 WHERE key = $3"
        );
        on_pool!(self, pool => {
            sqlx::query(AssertSqlSafe(sql)).bind(retry_at_ms).bind(error).bind(key).execute(pool).await?;
        });
        Ok(())
    }

    /// The keys of pending uploads, oldest first (operations and tests).
    pub async fn pending_uploads(&self) -> Result<Vec<(String, i64)>, Error> {
        let sql = format!("SELECT key, created_ms FROM {PENDING} ORDER BY created_ms, key");
        let rows: Vec<(String, i64)> = on_pool!(self, pool => {
            sqlx::query_as(AssertSqlSafe(sql)).fetch_all(pool).await?
        });
        Ok(rows)
    }

    /// The removal queue: key, failed attempts, last error (operations and tests).
    pub async fn queued_removals(&self) -> Result<Vec<(String, i64, Option<String>)>, Error> {
        let sql =
            format!("SELECT key, attempts, last_error FROM {REMOVALS} ORDER BY created_ms, key");
        let rows: Vec<(String, i64, Option<String>)> = on_pool!(self, pool => {
            sqlx::query_as(AssertSqlSafe(sql)).fetch_all(pool).await?
        });
        Ok(rows)
    }
}

/// The file columns of records that deleting one record of an entity deletes along
/// with it through `on_delete: cascade` refs: one `SELECT` per entity reached, whose
/// only bound value (`$1`) is the deleted record's id.
#[derive(Debug, Clone)]
pub(crate) struct CascadedFiles {
    /// The entity whose rows the statement reads.
    pub entity: String,
    /// Its file fields, in the statement's column order; none for a statement that
    /// only locks rows on the way (PostgreSQL).
    pub fields: Vec<String>,
    pub sql: String,
}

/// What [`cascaded_files`] reads when a record of `root` is deleted. The walk follows
/// the model's cascading refs down from `root` and keeps the paths that end at an
/// entity with file fields. A ref from an entity to itself (a tree) is followed in the
/// data with a recursive query; a longer cycle of entities is cut where it would come
/// back to an entity of the path, and a path has at most as many entities as the
/// model. The root's own files are the DELETE's business, except those of its own
/// descendants through a ref to itself.
pub(crate) fn cascaded_files(
    engine: &Engine,
    root: &Entity,
    dialect: Dialect,
) -> Vec<CascadedFiles> {
    let mut out = Vec::new();
    let mut path = vec![root.name.clone()];
    let root_ids = doomed(engine, root, "$1".to_string(), 0);
    if root_ids != "$1" {
        // The root has cascading refs to itself: its descendants go too.
        push_files(&mut out, root, &root_ids, dialect);
    }
    walk(engine, root, &root_ids, &mut path, dialect, &mut out);
    if !out.is_empty() && out[0].entity != root.name {
        let mut first = Vec::new();
        push_lock(&mut first, root, &root_ids, dialect);
        out.splice(0..0, first);
    }
    out
}

fn walk(
    engine: &Engine,
    parent: &Entity,
    parent_ids: &str,
    path: &mut Vec<String>,
    dialect: Dialect,
    out: &mut Vec<CascadedFiles>,
) {
    for r in engine.referrers(&parent.name) {
        if r.on_delete != OnDelete::Cascade || r.entity == parent.name || path.contains(&r.entity) {
            continue;
        }
        let Some(child) = engine.entity(&r.entity) else {
            continue;
        };
        let entered = format!(
            "SELECT {} FROM {} WHERE {} IN ({parent_ids})",
            ident("id"),
            ident(&child.name),
            ident(&r.field)
        );
        let ids = doomed(engine, child, entered, path.len());
        let mut below = Vec::new();
        push_files(&mut below, child, &ids, dialect);
        path.push(child.name.clone());
        walk(engine, child, &ids, path, dialect, &mut below);
        path.pop();
        if below.first().is_some_and(|c| c.entity != child.name) {
            push_lock(out, child, &ids, dialect);
        }
        out.extend(below);
    }
}

/// On PostgreSQL, locks the rows of an entity on the way to files (the deleted
/// record, or a record between it and those with files), parents before children:
/// no write can then attach a new record under them (its foreign key check waits for
/// this transaction, and fails once the rows are gone) between these reads and the
/// cascade. SQLite's write transaction already holds the database.
fn push_lock(out: &mut Vec<CascadedFiles>, e: &Entity, ids: &str, dialect: Dialect) {
    if dialect.locks_selected_rows() {
        out.push(CascadedFiles {
            entity: e.name.clone(),
            fields: Vec::new(),
            sql: format!(
                "SELECT {id} FROM {} WHERE {id} IN ({ids}) FOR UPDATE",
                ident(&e.name),
                id = ident("id")
            ),
        });
    }
}

/// The ids of `e` that go when the rows `entered` go: with their descendants when `e`
/// has cascading refs to itself.
fn doomed(engine: &Engine, e: &Entity, entered: String, depth: usize) -> String {
    let own: Vec<&str> = engine
        .referrers(&e.name)
        .iter()
        .filter(|r| r.entity == e.name && r.on_delete == OnDelete::Cascade)
        .map(|r| r.field.as_str())
        .collect();
    if own.is_empty() {
        return entered;
    }
    let cte = format!("trellis_doomed_{depth}");
    let table = ident(&e.name);
    let on = own
        .iter()
        .map(|f| format!("{table}.{} = {cte}.id", ident(f)))
        .collect::<Vec<_>>()
        .join(" OR ");
    // UNION (not UNION ALL): rows that point at each other end the recursion.
    format!(
        "WITH RECURSIVE {cte}(id) AS (SELECT {id} FROM {table} WHERE {id} IN ({entered}) UNION SELECT {table}.{id} FROM {table} JOIN {cte} ON {on}) SELECT id FROM {cte}",
        id = ident("id"),
    )
}

fn push_files(out: &mut Vec<CascadedFiles>, e: &Entity, ids: &str, dialect: Dialect) {
    let fields: Vec<String> = e
        .fields
        .iter()
        .filter(|f| f.ty == FieldType::File)
        .map(|f| f.name.clone())
        .collect();
    if fields.is_empty() {
        return;
    }
    let columns = fields
        .iter()
        .map(|f| ident(f))
        .collect::<Vec<_>>()
        .join(", ");
    // Locked on PostgreSQL, so a concurrent write cannot replace a file, or attach a
    // record below, between this read and the cascade.
    let lock = if dialect.locks_selected_rows() {
        " FOR UPDATE"
    } else {
        ""
    };
    out.push(CascadedFiles {
        entity: e.name.clone(),
        fields,
        sql: format!(
            "SELECT {columns} FROM {} WHERE {} IN ({ids}){lock}",
            ident(&e.name),
            ident("id")
        ),
    });
}

/// A name of the model as an SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
