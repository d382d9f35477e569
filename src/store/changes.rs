//! The change log. Every create, update and delete adds a row to `_trellis_changes`
//! in the transaction that makes the change, so the log and the data never disagree.
//! The change feed (`GET /api/{plural}/events`) reads it back: live, by polling, and
//! on reconnection, from the `Last-Event-ID` on.
//!
//! On PostgreSQL, sequence numbers are handed out in commit order: the log row is
//! written last in its transaction, under a transaction-level advisory lock, so a
//! reader that has seen number N will never later find a smaller one commit.

use sea_query::extension::postgres::PgExpr;
use sea_query::{Expr, ExprTrait, Func, Query};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use std::collections::HashMap;

use super::filter::Compiler;
use super::kernel::{MAIN, Record, main_col, record_from_row, select_columns};
use super::{Dialect, Error, Store};
use crate::engine::access::{Action, Principal};
use crate::engine::cond::check::Typed;
use crate::engine::{Engine, Entity};

pub(crate) const CHANGES: &str = "_trellis_changes";
pub(crate) const PRUNED: &str = "_trellis_changes_pruned";
/// The name of the PostgreSQL function and of each table's trigger that write the log.
const PG_LOG: &str = "_trellis_log";
/// The prefix of the SQLite triggers that write the log.
const SQLITE_LOG_PREFIX: &str = "_trellis_log_";

/// The PostgreSQL trigger function. It runs at commit (the triggers are deferred
/// constraint triggers), takes the log lock there and holds it to the end of the
/// commit, so sequence numbers follow commit order. `before` is the old row as
/// PostgreSQL writes it in JSON; [`Store::feed_was_visible`] reads it back with
/// `json_populate_record`, so no value is rounded on the way.
const PG_LOG_FUNCTION: &str = r#"CREATE OR REPLACE FUNCTION _trellis_log() RETURNS trigger LANGUAGE plpgsql AS $trellis$
DECLARE
  at BIGINT;
BEGIN
  PERFORM pg_advisory_xact_lock(7204114);
  at := (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
  IF TG_OP = 'INSERT' THEN
    INSERT INTO _trellis_changes (entity, record_id, kind, before, at_ms)
      VALUES (TG_TABLE_NAME, NEW.id::text, 'created', NULL, at);
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO _trellis_changes (entity, record_id, kind, before, at_ms)
      VALUES (TG_TABLE_NAME, OLD.id::text,
        CASE WHEN strpos(coalesce(current_setting('trellis.transitioned', true), ''), OLD.id::text) > 0
          THEN 'transitioned' ELSE 'updated' END,
        row_to_json(OLD)::text, at);
  ELSE
    INSERT INTO _trellis_changes (entity, record_id, kind, before, at_ms)
      VALUES (TG_TABLE_NAME, OLD.id::text, 'deleted', row_to_json(OLD)::text, at);
  END IF;
  RETURN NULL;
END
$trellis$"#;

/// A condition, always true, added to a transition's `UPDATE`: it marks the record
/// for this transaction, and the log trigger, at commit, logs the update as a
/// transition (PostgreSQL):
/// `set_config('trellis.transitioned', coalesce(current_setting(…, true), '') || $id, true) IS NOT NULL`
/// (built from parts: a custom expression with values is tokenized at every use).
pub(crate) fn pg_mark_transition(id: Uuid) -> Expr {
    let marks = Expr::cust("coalesce(current_setting('trellis.transitioned', true), '')")
        .concat(Expr::val(format!("{} ", id.hyphenated())));
    Expr::from(
        Func::cust("set_config")
            .arg(Expr::val("trellis.transitioned"))
            .arg(marks)
            .arg(Expr::val(true)),
    )
    .is_not_null()
}
/// On SQLite the transition's history row re-kinds the log row its `UPDATE` has
/// just written (the newest one; SQLite has one writer at a time).
pub(crate) const SQLITE_HISTORY_MARKS: &str = "CREATE TRIGGER IF NOT EXISTS _trellis_history_marks AFTER INSERT ON _trellis_history FOR EACH ROW BEGIN UPDATE _trellis_changes SET kind = 'transitioned' WHERE seq = (SELECT MAX(seq) FROM _trellis_changes) AND entity = NEW.entity AND record_id = NEW.record_id; END";

/// Milliseconds since 1970 in SQLite.
const SQLITE_NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";

/// The three SQLite triggers of an entity, by name. The old row is written with
/// `json_object`, whose values keep their storage class, so that
/// [`Store::feed_was_visible`] reads back exactly what was stored.
fn sqlite_triggers(e: &Entity) -> Vec<(String, String)> {
    let table = super::quote(&e.name);
    let entity = e.name.replace('\'', "''");
    let columns = select_columns(e);
    // json_object takes at most 127 arguments in older SQLite builds: 60 pairs per call.
    let parts: Vec<String> = columns
        .chunks(60)
        .map(|chunk| {
            let pairs: Vec<String> = chunk
                .iter()
                .map(|c| format!("'{}', OLD.{}", c.replace('\'', "''"), super::quote(c)))
                .collect();
            format!("json_object({})", pairs.join(", "))
        })
        .collect();
    let old = parts
        .into_iter()
        .reduce(|a, b| format!("json_patch({a}, {b})"))
        .unwrap_or_else(|| "NULL".into());
    let insert = |kind: &str, id: &str, before: &str| {
        format!(
            "INSERT INTO {CHANGES} (entity, record_id, kind, before, at_ms) VALUES ('{entity}', {id}, '{kind}', {before}, {SQLITE_NOW_MS})"
        )
    };
    [
        ("i", "INSERT", insert("created", "NEW.\"id\"", "NULL")),
        ("u", "UPDATE", insert("updated", "OLD.\"id\"", &old)),
        ("d", "DELETE", insert("deleted", "OLD.\"id\"", &old)),
    ]
    .into_iter()
    .map(|(tag, event, body)| {
        let name = format!("{SQLITE_LOG_PREFIX}{tag}_{}", e.name);
        let sql = format!(
            "CREATE TRIGGER {} AFTER {event} ON {table} FOR EACH ROW BEGIN {body}; END",
            super::quote(&name)
        );
        (name, sql)
    })
    .collect()
}

/// Installs the triggers that write the change log, on every entity's table, and
/// replaces those that no longer match the definitions. With `drop_all` (before a
/// migration rebuilds tables on SQLite) every log trigger is dropped first and the
/// caller calls again with `false` afterwards.
pub(crate) trait LogTriggers {
    async fn log_triggers(&mut self, engine: &Engine, drop_all: bool) -> Result<(), sqlx::Error>;
}

impl LogTriggers for sqlx::SqliteConnection {
    async fn log_triggers(&mut self, engine: &Engine, drop_all: bool) -> Result<(), sqlx::Error> {
        let existing: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND substr(name, 1, 13) = '_trellis_log_'",
        )
        .fetch_all(&mut *self)
        .await?;
        let wanted: HashMap<String, String> = if drop_all {
            HashMap::new()
        } else {
            engine
                .entities()
                .iter()
                .flat_map(|e| sqlite_triggers(e))
                .collect()
        };
        for (name, sql) in &existing {
            if wanted.get(name) != Some(sql) {
                let drop = format!("DROP TRIGGER IF EXISTS {}", super::quote(name));
                sqlx::query(AssertSqlSafe(drop)).execute(&mut *self).await?;
            }
        }
        let have: HashMap<&String, &String> = existing.iter().map(|(n, s)| (n, s)).collect();
        for (name, sql) in &wanted {
            if have.get(name) != Some(&sql) {
                sqlx::query(AssertSqlSafe(sql.as_str()))
                    .execute(&mut *self)
                    .await?;
            }
        }
        Ok(())
    }
}

impl LogTriggers for sqlx::PgConnection {
    async fn log_triggers(&mut self, engine: &Engine, drop_all: bool) -> Result<(), sqlx::Error> {
        if drop_all {
            // The PostgreSQL trigger names no column: nothing to drop before a migration.
            return Ok(());
        }
        sqlx::query(PG_LOG_FUNCTION).execute(&mut *self).await?;
        let have: Vec<(String,)> = sqlx::query_as(
            "SELECT c.relname::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE t.tgname = $1 AND c.relnamespace = current_schema()::regnamespace",
        )
        .bind(PG_LOG)
        .fetch_all(&mut *self)
        .await?;
        for e in engine.entities() {
            if have.iter().any(|(t,)| *t == e.name) {
                continue;
            }
            let sql = format!(
                "CREATE CONSTRAINT TRIGGER {PG_LOG} AFTER INSERT OR UPDATE OR DELETE ON {} DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {PG_LOG}()",
                super::quote(&e.name)
            );
            sqlx::query(AssertSqlSafe(sql)).execute(&mut *self).await?;
        }
        Ok(())
    }
}

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
    /// The stored row before an update or delete, as the database wrote it in JSON
    /// (read with [`Change::before_field`] and [`Store::feed_was_visible`]).
    pub before: Option<String>,
    /// When the change was committed, in milliseconds since 1970 (UTC).
    pub at_ms: i64,
}

pub(crate) fn ddl(dialect: Dialect) -> Vec<String> {
    let seq = dialect.serial_key("seq");
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

type Row = (i64, String, String, String, Option<String>, i64);

fn change_from_row(row: Row) -> Option<Change> {
    let (seq, entity, record_id, kind, before, at_ms) = row;
    Some(Change {
        seq,
        entity,
        record_id: Uuid::parse_str(&record_id).ok()?,
        kind: ChangeKind::parse(&kind)?,
        before,
        at_ms,
    })
}

impl Change {
    /// A text field of the stored row before the change (e.g. the old state).
    pub fn before_text(&self, name: &str) -> Option<String> {
        let before: serde_json::Value = serde_json::from_str(self.before.as_deref()?).ok()?;
        before.get(name)?.as_str().map(str::to_string)
    }
}

impl Store {
    /// The newest sequence number in the log (0 when empty).
    pub async fn last_change(&self) -> Result<i64, Error> {
        let sql = format!("SELECT COALESCE(MAX(seq), 0) FROM {CHANGES}");
        Ok(super::kernel::on_pool!(self, pool => {
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
                super::kernel::on_pool!(self, pool => {
                    sqlx::query_as(AssertSqlSafe(sql)).bind(after).bind(name).bind(limit).fetch_all(pool).await?
                })
            }
            None => {
                let sql =
                    format!("SELECT {cols} FROM {CHANGES} WHERE seq > $1 ORDER BY seq LIMIT $2");
                super::kernel::on_pool!(self, pool => {
                    sqlx::query_as(AssertSqlSafe(sql)).bind(after).bind(limit).fetch_all(pool).await?
                })
            }
        };
        Ok(rows.into_iter().filter_map(change_from_row).collect())
    }

    /// The newest sequence number removed by retention (0 if none).
    pub async fn pruned_through(&self) -> Result<i64, Error> {
        let sql = format!("SELECT COALESCE(MAX(seq), 0) FROM {PRUNED}");
        Ok(super::kernel::on_pool!(self, pool => {
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
        Ok(super::kernel::on_pool!(self, pool => {
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
        let mut q = super::kernel::select(e);
        q.and_where(main_col("id").eq(dialect.uuid(id)));
        if cond != Typed::Const(true) {
            q.and_where(Compiler::new(dialect, &ctx).compile(&cond, MAIN));
        }
        let rec = super::kernel::on_pool!(self, pool => {
            let (sql, values) = dialect.build(&q);
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

    /// Whether the caller would have listed the record as it was (`before`, the
    /// stored row from the log), with `filter`. Related records are read as they are
    /// now.
    pub async fn feed_was_visible(
        &self,
        engine: &Engine,
        e: &Entity,
        before: &str,
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
        // The old row as a one-row table named like the real one, with the stored
        // types: the database reads its own JSON back.
        let row = dialect.row_from_json(&e.name, &select_columns(e), before.to_string());
        let mut q = Query::select();
        q.expr(Expr::val(1i64))
            .from_subquery(row, MAIN)
            .and_where(Compiler::new(dialect, &ctx).compile(&cond, MAIN));
        Ok(super::kernel::on_pool!(self, pool => {
            let (sql, values) = dialect.build(&q);
            sqlx::query_with(AssertSqlSafe(sql), values).fetch_optional(pool).await?.is_some()
        }))
    }
}

impl Store {
    /// What the events of `e`'s feed depend on besides the change and the data: the
    /// caller's `list` rule and filter, and its conditional field rules, as the SQL
    /// they compile to with its values, and the fields hidden from it. Callers with
    /// the same key get the same events (the feed evaluates a change once per key);
    /// the user's claims count only where a rule uses them.
    pub fn feed_key(
        &self,
        engine: &Engine,
        e: &Entity,
        filter: Option<&Typed>,
        who: &Principal,
    ) -> String {
        let Some(cond) = feed_condition(engine, e, filter, who) else {
            return "denied".into();
        };
        let dialect = self.dialect();
        let ctx = who.ctx();
        let compiled = |cond: &Typed| {
            let mut q = Query::select();
            q.expr(Expr::val(1i64)).from_as(e.name.clone(), MAIN);
            if *cond != Typed::Const(true) {
                q.and_where(Compiler::new(dialect, &ctx).compile(cond, MAIN));
            }
            let (sql, values) = dialect.build(&q);
            format!("{sql} {:?}", values.0)
        };
        let mut key = compiled(&cond);
        for f in engine.access.hidden(&e.name, who) {
            key.push_str("\nhidden ");
            key.push_str(&f);
        }
        for (f, cond) in engine.access.conditional(&e.name, who) {
            key.push_str(&format!("\nread {f} where {}", compiled(&cond)));
        }
        key
    }
}

/// The caller's `list` rule and the subscriber's filter; `None` when denied.
fn feed_condition(
    engine: &Engine,
    e: &Entity,
    filter: Option<&Typed>,
    who: &Principal,
) -> Option<Typed> {
    let policy = super::access::permitted(engine, e, &Action::List, who).ok()?;
    Some(match filter {
        Some(f) => Typed::And(Box::new(policy), Box::new(f.clone())),
        None => policy,
    })
}
