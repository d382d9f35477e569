//! The store's execution kernel: the pools, transactions (and a batch's open one),
//! SQLite's busy retries, and a record read from a row. Every other store module
//! runs its statements through here; the kernel imports none of them.

use sea_query::{Expr, ExprTrait, Query, SelectStatement};
use serde_json::{Map, Value};
use sqlx::{AssertSqlSafe, PgPool, SqlitePool};
use uuid::Uuid;

use super::values::DecodeJson;
use crate::engine::Entity;
use crate::spec::FieldType;

/// The alias of an entity's own table in the statements the store builds (`FROM
/// tickets AS t0`); the condition compiler names its subqueries `t1`, `t2`, …
pub(crate) const MAIN: &str = "t0";

/// A column of the main table ([`MAIN`]).
pub(crate) fn main_col(column: impl Into<String>) -> Expr {
    Expr::col((MAIN.to_string(), column.into()))
}

/// A database connection pool of one dialect.
#[derive(Debug, Clone)]
pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A record as the API returns it: system fields, then fields in declaration order.
pub type Record = Map<String, Value>;

pub(crate) fn any(terms: Vec<Expr>) -> Expr {
    terms
        .into_iter()
        .reduce(|a, b| a.or(b))
        .unwrap_or_else(|| Expr::cust("1 = 0"))
}

pub(crate) fn all(terms: Vec<Expr>) -> Expr {
    terms
        .into_iter()
        .reduce(|a, b| a.and(b))
        .unwrap_or_else(|| Expr::cust("1 = 1"))
}

macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {{
        $store.counted();
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
        }
    }};
    ($store:expr, $pool:ident, $qb:ident => $body:expr) => {{
        $store.counted();
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => {
                let $qb = || ::sea_query::SqliteQueryBuilder;
                $body
            }
            $crate::store::Pool::Postgres($pool) => {
                let $qb = || ::sea_query::PostgresQueryBuilder;
                $body
            }
        }
    }};
}
pub(crate) use on_pool;

/// A batch's open transaction.
pub(crate) enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// Runs `$body` in a transaction `$tx`: a new one on the pool, or a savepoint of a
/// batch's transaction (so that a failed operation can be inspected, and the batch
/// still rolls back as a whole).
macro_rules! in_tx {
    ($store:expr, $batch:expr, $tx:ident => $body:expr) => {{
        $store.counted();
        match $batch {
            None => match &$store.pool {
                $crate::store::Pool::Sqlite(pool) => {
                    let mut $tx = $crate::store::kernel::begin_immediate(pool).await?;
                    $body
                }
                $crate::store::Pool::Postgres(pool) => {
                    let mut $tx = pool.begin_with(::sqlx::AssertSqlSafe("BEGIN")).await?;
                    $body
                }
            },
            Some($crate::store::kernel::Tx::Sqlite(outer)) => {
                let mut $tx = sqlx::Acquire::begin(&mut *outer).await?;
                $body
            }
            Some($crate::store::kernel::Tx::Postgres(outer)) => {
                let mut $tx = sqlx::Acquire::begin(&mut *outer).await?;
                $body
            }
        }
    }};
    ($store:expr, $batch:expr, $tx:ident, $qb:ident => $body:expr) => {{
        $store.counted();
        match $batch {
            None => match &$store.pool {
                $crate::store::Pool::Sqlite(pool) => {
                    let $qb = || ::sea_query::SqliteQueryBuilder;
                    let mut $tx = $crate::store::kernel::begin_immediate(pool).await?;
                    $body
                }
                $crate::store::Pool::Postgres(pool) => {
                    let $qb = || ::sea_query::PostgresQueryBuilder;
                    let mut $tx = pool.begin_with(::sqlx::AssertSqlSafe("BEGIN")).await?;
                    $body
                }
            },
            Some($crate::store::kernel::Tx::Sqlite(outer)) => {
                let $qb = || ::sea_query::SqliteQueryBuilder;
                let mut $tx = sqlx::Acquire::begin(&mut *outer).await?;
                $body
            }
            Some($crate::store::kernel::Tx::Postgres(outer)) => {
                let $qb = || ::sea_query::PostgresQueryBuilder;
                let mut $tx = sqlx::Acquire::begin(&mut *outer).await?;
                $body
            }
        }
    }};
}
pub(crate) use in_tx;

pub(crate) const SYSTEM_COLUMNS: [&str; 4] = ["id", "created_at", "updated_at", "version"];

/// The columns a record is read from, in the order [`record_from_row`] expects.
pub(crate) fn select_columns(e: &Entity) -> Vec<String> {
    SYSTEM_COLUMNS
        .iter()
        .map(|s| s.to_string())
        .chain(e.column_fields().map(|f| f.name.clone()))
        .collect()
}

pub(crate) fn select(e: &Entity) -> SelectStatement {
    let mut q = Query::select();
    q.from_as(e.name.clone(), MAIN);
    for c in select_columns(e) {
        q.column(c);
    }
    q
}

pub(crate) fn record_from_row<R: DecodeJson>(e: &Entity, row: &R) -> Result<Record, sqlx::Error> {
    let mut rec = Map::with_capacity(4 + e.fields.len());
    rec.insert("id".into(), Value::String(row.uuid_text(0)?));
    rec.insert("created_at".into(), Value::String(row.datetime_text(1)?));
    rec.insert("updated_at".into(), Value::String(row.datetime_text(2)?));
    rec.insert("version".into(), Value::from(row.int(3)?));
    let mut col = 4;
    for f in &e.fields {
        match f.storage() {
            Some(storage) => {
                rec.insert(f.name.clone(), row.json(col, storage)?);
                col += 1;
            }
            None if f.ty == FieldType::Many => {
                rec.insert(f.name.clone(), Value::Array(Vec::new()));
            }
            None => {}
        }
    }
    Ok(rec)
}

/// How often a one-statement write is retried after SQLite's `SQLITE_BUSY_SNAPSHOT`.
pub(crate) const SNAPSHOT_RETRIES: u32 = 20;

/// SQLite's `SQLITE_BUSY_SNAPSHOT` (517): an autocommit write began on a snapshot
/// that another connection's commit made stale, so it could not take the write
/// lock, and changed nothing. The busy timeout does not cover it; running the
/// statement again, on a fresh snapshot, is safe.
pub(crate) fn stale_snapshot(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| code == "517")
}

/// SQLite's plain `SQLITE_BUSY` (5) or `SQLITE_BUSY_SNAPSHOT` (517), returned in
/// less time than the busy timeout would have waited: SQLite did not wait for the
/// lock (it does not when the connection already reads, or the snapshot is stale),
/// and the write changed nothing. CI's contract tests met it a few times, right
/// after a reload, from `BEGIN IMMEDIATE` and from one-statement writes; the cause
/// is not found yet. Trying again a moment later, maybe on another connection,
/// is safe.
pub(crate) fn busy_at_once(err: &sqlx::Error, took: std::time::Duration) -> bool {
    took < std::time::Duration::from_secs(1)
        && err
            .as_database_error()
            .and_then(|db| db.code())
            .is_some_and(|code| code == "5" || code == "517")
}

/// A pause before trying a busy SQLite write again: 1 ms, then 2, … (at most
/// [`SNAPSHOT_RETRIES`] tries, about 0.2 s in all).
pub(crate) async fn busy_pause(tries: u32) {
    tokio::time::sleep(std::time::Duration::from_millis(u64::from(tries))).await;
}

/// `BEGIN IMMEDIATE` on a pool connection, again after [`busy_at_once`].
pub(crate) async fn begin_immediate(
    pool: &sqlx::SqlitePool,
) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
    let mut tries = 0;
    loop {
        let started = std::time::Instant::now();
        match pool.begin_with(AssertSqlSafe("BEGIN IMMEDIATE")).await {
            Err(err) if busy_at_once(&err, started.elapsed()) && tries < SNAPSHOT_RETRIES => {
                tries += 1;
                busy_pause(tries).await;
            }
            other => return other,
        }
    }
}

/// Runs statement `$q` (built for `$dialect`) once on `$pool` with sqlx's `$run` (`fetch_one`, `execute`…),
/// again after a stale SQLite snapshot or [`busy_at_once`] (up to
/// [`SNAPSHOT_RETRIES`] times).
macro_rules! one_statement {
    ($q:expr, $dialect:expr, $pool:expr, $run:ident) => {{
        let mut tries = 0;
        loop {
            let (sql, vals) = $dialect.build(&$q);
            let started = std::time::Instant::now();
            match ::sqlx::query_with(::sqlx::AssertSqlSafe(sql), vals)
                .$run($pool)
                .await
            {
                Err(err)
                    if $crate::store::kernel::stale_snapshot(&err)
                        && tries < $crate::store::kernel::SNAPSHOT_RETRIES =>
                {
                    tries += 1
                }
                Err(err)
                    if $crate::store::kernel::busy_at_once(&err, started.elapsed())
                        && tries < $crate::store::kernel::SNAPSHOT_RETRIES =>
                {
                    tries += 1;
                    $crate::store::kernel::busy_pause(tries).await;
                }
                other => break other,
            }
        }
    }};
}
pub(crate) use one_statement;

/// The id of a record read by [`record_from_row`].
pub(crate) fn record_id(rec: &Record) -> Option<Uuid> {
    rec.get("id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
}
