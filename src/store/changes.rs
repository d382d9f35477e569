//! The change log. Every create, update and delete adds a row to `_trellis_changes`
//! in the transaction that makes the change, so the log and the data never disagree.
//! The change feed (`GET /api/{plural}/events`) reads it back: live, by polling, and
//! on reconnection, from the `Last-Event-ID` on.
//!
//! On PostgreSQL, sequence numbers are handed out in commit order: the log row is
//! written last in its transaction, under a transaction-level advisory lock, so a
//! reader that has seen number N will never later find a smaller one commit.

use sea_query::{Expr, ExprTrait, PostgresQueryBuilder, Query, SqliteQueryBuilder};
use sea_query_sqlx::SqlxBinder;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::crud::{Record, record_from_row, select_columns};
use super::filter::Compiler;
use super::values::cell_value;
use super::{Dialect, Error, Pool, Store};
use crate::engine::access::Principal;
use crate::engine::cond::check::Typed;
use crate::engine::query::cell_from_output;
use crate::engine::{Engine, Entity, system_field};

pub(crate) const CHANGES: &str = "_trellis_changes";
pub(crate) const PRUNED: &str = "_trellis_changes_pruned";
/// Held from the log insert to the commit (PostgreSQL).
pub(crate) const LOG_LOCK: &str = "SELECT pg_advisory_xact_lock(7204114)";
pub(crate) const LOG_INSERT: &str = "INSERT INTO _trellis_changes (entity, record_id, kind, before, at_ms) VALUES ($1, $2, $3, $4, $5)";

/// What happened to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
    /// A workflow transition changed the record's state (and maybe other fields).
    Transitioned,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Updated => "updated",
            ChangeKind::Deleted => "deleted",
            ChangeKind::Transitioned => "transitioned",
        }
    }

    fn parse(s: &str) -> Option<ChangeKind> {
        match s {
            "created" => Some(ChangeKind::Created),
            "updated" => Some(ChangeKind::Updated),
            "deleted" => Some(ChangeKind::Deleted),
            "transitioned" => Some(ChangeKind::Transitioned),
            _ => None,
        }
    }
}

/// One row of the change log.
#[derive(Debug, Clone)]
pub struct Change {
    /// Increases with commit order; the event id of the feed.
    pub seq: i64,
    pub entity: String,
    pub record_id: Uuid,
    pub kind: ChangeKind,
    /// The stored columns before an update or delete, as the API writes them.
    pub before: Option<Record>,
    /// When the change was committed, in milliseconds since 1970 (UTC).
    pub at_ms: i64,
}

pub(crate) fn ddl(dialect: Dialect) -> Vec<String> {
    let seq = match dialect {
        Dialect::Sqlite => "seq INTEGER PRIMARY KEY AUTOINCREMENT",
        Dialect::Postgres => "seq BIGSERIAL PRIMARY KEY",
    };
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {CHANGES} ({seq}, entity TEXT NOT NULL, record_id TEXT NOT NULL, kind TEXT NOT NULL, before TEXT, at_ms BIGINT NOT NULL)"
        ),
        format!("CREATE INDEX IF NOT EXISTS ix_trellis_changes_at ON {CHANGES} (at_ms)"),
        format!(
            "CREATE TABLE IF NOT EXISTS {PRUNED} (id INTEGER PRIMARY KEY NOT NULL, seq BIGINT NOT NULL)"
        ),
    ]
}

/// The log row's values: entity, record id, kind, before (JSON), time.
pub(crate) fn log_values(
    e: &Entity,
    id: Uuid,
    kind: ChangeKind,
    before: Option<&Record>,
) -> (String, String, &'static str, Option<String>, i64) {
    (
        e.name.clone(),
        id.hyphenated().to_string(),
        kind.as_str(),
        before.map(|b| serde_json::Value::Object(b.clone()).to_string()),
        chrono::Utc::now().timestamp_millis(),
    )
}

/// Writes a change log row inside the transaction `$tx`.
macro_rules! log_change {
    ($dialect:expr, $tx:ident, $values:expr) => {{
        let (entity, record_id, kind, before, at_ms) = $values;
        if $dialect == Dialect::Postgres {
            sqlx::query(super::changes::LOG_LOCK)
                .execute(&mut *$tx)
                .await?;
        }
        sqlx::query(super::changes::LOG_INSERT)
            .bind(entity)
            .bind(record_id)
            .bind(kind)
            .bind(before)
            .bind(at_ms)
            .execute(&mut *$tx)
            .await?;
    }};
}
pub(crate) use log_change;

type Row = (i64, String, String, String, Option<String>, i64);

fn change_from_row(row: Row) -> Option<Change> {
    let (seq, entity, record_id, kind, before, at_ms) = row;
    Some(Change {
        seq,
        entity,
        record_id: Uuid::parse_str(&record_id).ok()?,
        kind: ChangeKind::parse(&kind)?,
        before: before.and_then(|b| match serde_json::from_str(&b) {
            Ok(serde_json::Value::Object(m)) => Some(m),
            _ => None,
        }),
        at_ms,
    })
}

impl Store {
    /// The newest sequence number in the log (0 when empty).
    pub async fn last_change(&self) -> Result<i64, Error> {
        let sql = format!("SELECT COALESCE(MAX(seq), 0) FROM {CHANGES}");
        Ok(super::crud::on_pool!(self, pool, _qb => {
            sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql)).fetch_one(pool).await?
        }))
    }

    /// Up to `limit` changes after `after`, oldest first; of one entity if given.
    pub async fn changes_after(
        &self,
        after: i64,
        entity: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Change>, Error> {
        let cols = "seq, entity, record_id, kind, before, at_ms";
        let rows: Vec<Row> = match entity {
            Some(name) => {
                let sql = format!(
                    "SELECT {cols} FROM {CHANGES} WHERE seq > $1 AND entity = $2 ORDER BY seq LIMIT $3"
                );
                super::crud::on_pool!(self, pool, _qb => {
                    sqlx::query_as(AssertSqlSafe(sql)).bind(after).bind(name).bind(limit).fetch_all(pool).await?
                })
            }
            None => {
                let sql =
                    format!("SELECT {cols} FROM {CHANGES} WHERE seq > $1 ORDER BY seq LIMIT $2");
                super::crud::on_pool!(self, pool, _qb => {
                    sqlx::query_as(AssertSqlSafe(sql)).bind(after).bind(limit).fetch_all(pool).await?
                })
            }
        };
        Ok(rows.into_iter().filter_map(change_from_row).collect())
    }

    /// The newest sequence number removed by retention (0 if none).
    pub async fn pruned_through(&self) -> Result<i64, Error> {
        let sql = format!("SELECT COALESCE(MAX(seq), 0) FROM {PRUNED}");
        Ok(super::crud::on_pool!(self, pool, _qb => {
            sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql)).fetch_one(pool).await?
        }))
    }

    /// Removes log rows older than `cutoff_ms`; remembers how far it went, so that a
    /// client asking for an older event learns that it has missed some.
    pub async fn prune_changes(&self, cutoff_ms: i64) -> Result<u64, Error> {
        let upto = format!("SELECT COALESCE(MAX(seq), 0) FROM {CHANGES} WHERE at_ms < $1");
        let delete = format!("DELETE FROM {CHANGES} WHERE seq <= $1");
        let mark = format!(
            "INSERT INTO {PRUNED} (id, seq) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq WHERE excluded.seq > {PRUNED}.seq"
        );
        Ok(super::crud::on_pool!(self, pool, _qb => {
            let mut tx = pool.begin().await?;
            let seq: i64 = sqlx::query_scalar(AssertSqlSafe(upto)).bind(cutoff_ms).fetch_one(&mut *tx).await?;
            if seq == 0 {
                tx.rollback().await?;
                0
            } else {
                let done = sqlx::query(AssertSqlSafe(delete)).bind(seq).execute(&mut *tx).await?;
                sqlx::query(AssertSqlSafe(mark)).bind(seq).execute(&mut *tx).await?;
                tx.commit().await?;
                done.rows_affected()
            }
        }))
    }

    /// The record as the caller would list it now with `filter`; `None` if it is gone
    /// or out of the caller's view.
    pub async fn feed_view(
        &self,
        engine: &Engine,
        e: &Entity,
        id: Uuid,
        filter: Option<&Typed>,
        who: &Principal,
    ) -> Result<Option<Record>, Error> {
        let Some(cond) = feed_condition(engine, e, filter, who) else {
            return Ok(None);
        };
        let dialect = self.dialect();
        let ctx = who.ctx();
        let mut q = super::crud::select(e);
        q.and_where(
            Expr::col(("t0".to_string(), "id".to_string()))
                .eq(super::values::uuid_value(dialect, id)),
        );
        if cond != Typed::Const(true) {
            q.and_where(Compiler::new(dialect, &ctx).compile(&cond, "t0"));
        }
        let rec = super::crud::on_pool!(self, pool, qb => {
            let (sql, values) = q.build_sqlx(qb());
            match sqlx::query_with(AssertSqlSafe(sql), values).fetch_optional(pool).await? {
                Some(row) => record_from_row(e, &row)?,
                None => return Ok(None),
            }
        });
        let mut items = vec![rec];
        self.load_links(e, &mut items).await?;
        let rec = items.pop().ok_or(Error::NotFound)?;
        Ok(Some(self.as_seen_by(engine, e, rec, who).await?))
    }

    /// Whether the caller would have listed the record as it was (`before`), with
    /// `filter`. The stored columns come from the log; related records are read as
    /// they are now.
    pub async fn feed_was_visible(
        &self,
        engine: &Engine,
        e: &Entity,
        before: &Record,
        filter: Option<&Typed>,
        who: &Principal,
    ) -> Result<bool, Error> {
        let Some(cond) = feed_condition(engine, e, filter, who) else {
            return Ok(false);
        };
        if cond == Typed::Const(true) {
            return Ok(true);
        }
        let dialect = self.dialect();
        let ctx = who.ctx();
        // The old row as a one-row table named like the real one.
        let mut row = Query::select();
        for name in select_columns(e) {
            let Some(field) = system_field(&name).or_else(|| e.field(&name)) else {
                continue;
            };
            let value = before
                .get(&name)
                .unwrap_or(&serde_json::Value::Null)
                .clone();
            let Some(cell) = cell_from_output(field.ty, field.scale, &value) else {
                return Ok(false);
            };
            row.expr_as(
                Expr::val(cell_value(dialect, field.ty, field.scale, &cell)),
                name,
            );
        }
        let mut q = Query::select();
        q.expr(Expr::val(1i64))
            .from_subquery(row, "t0")
            .and_where(Compiler::new(dialect, &ctx).compile(&cond, "t0"));
        Ok(super::crud::on_pool!(self, pool, qb => {
            let (sql, values) = q.build_sqlx(qb());
            sqlx::query_with(AssertSqlSafe(sql), values).fetch_optional(pool).await?.is_some()
        }))
    }
}

/// The caller's `list` rule and the subscriber's filter; `None` when denied.
fn feed_condition(
    engine: &Engine,
    e: &Entity,
    filter: Option<&Typed>,
    who: &Principal,
) -> Option<Typed> {
    let policy = super::crud::permitted(engine, e, "list", who).ok()?;
    Some(match filter {
        Some(f) => Typed::And(Box::new(policy), Box::new(f.clone())),
        None => policy,
    })
}
