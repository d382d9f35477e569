//! The database side of workflows: the transition as one compare-and-set, its history
//! row, its change-log row and its outbox rows, all in the transaction that changes
//! the state; the history and "what may I fire now" reads.

use sea_query::{Asterisk, CommonTableExpression, Expr, ExprTrait, Order, Query, WithClause};
use serde_json::Value;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::access::visible;
use super::changes::pg_mark_transition;
use super::kernel::{MAIN, Record, Tx, in_tx, on_pool, record_from_row, select, select_columns};
use super::values::DecodeJson;
use super::{Dialect, Error, Store};
use crate::engine::access::{Action, Decision, Principal};
use crate::engine::cond::check::Typed;
use crate::engine::transition::{self, Refusal, Request};
use crate::engine::workflow::Workflow;
use crate::engine::{Cell, Engine, Entity, input};
use crate::spec::Storage;

pub(crate) const HISTORY: &str = "_trellis_history";
pub(crate) const OUTBOX: &str = "_trellis_outbox";

const HISTORY_INSERT: &str = "INSERT INTO _trellis_history (id, entity, record_id, transition, from_state, to_state, actor, input, at, request_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
/// The columns of [`HISTORY_INSERT`], for the PostgreSQL transition statement.
const HISTORY_COLUMNS: [&str; 10] = [
    "id",
    "entity",
    "record_id",
    "transition",
    "from_state",
    "to_state",
    "actor",
    "input",
    "at",
    "request_id",
];
const OUTBOX_INSERT: &str = "INSERT INTO _trellis_outbox (id, endpoint, event, body, created_ms, next_attempt_ms, attempts, status) VALUES ($1, $2, $3, $4, $5, $5, 0, 'pending')";

pub(crate) fn ddl(dialect: Dialect) -> Vec<String> {
    let mut statements = vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {HISTORY} (id TEXT PRIMARY KEY NOT NULL, entity TEXT NOT NULL, record_id TEXT NOT NULL, transition TEXT NOT NULL, from_state TEXT NOT NULL, to_state TEXT NOT NULL, actor TEXT, input TEXT NOT NULL, at TEXT NOT NULL, request_id TEXT)"
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS ix_trellis_history_record ON {HISTORY} (entity, record_id, id)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {OUTBOX} (id TEXT PRIMARY KEY NOT NULL, endpoint TEXT NOT NULL, event TEXT NOT NULL, body TEXT NOT NULL, created_ms BIGINT NOT NULL, next_attempt_ms BIGINT NOT NULL, attempts BIGINT NOT NULL, status TEXT NOT NULL, delivered_ms BIGINT, last_error TEXT)"
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS ix_trellis_outbox_due ON {OUTBOX} (status, next_attempt_ms)"
        ),
    ];
    if !dialect.transition_in_one_statement() {
        statements.push(super::changes::SQLITE_HISTORY_MARKS.to_string());
    }
    statements
}

/// One row of a record's history.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub id: String,
    pub transition: String,
    pub from: String,
    pub to: String,
    pub actor: Option<String>,
    pub input: Value,
    pub at: String,
    pub request_id: Option<String>,
}

/// What a caller could fire on a record now ([`Store::transition_options`]).
#[derive(Debug, Clone)]
pub struct RecordOptions<'w> {
    pub id: Uuid,
    pub version: Option<i64>,
    pub options: transition::TransitionOptions<'w>,
}

/// A transition's outcome: the record as the caller sees it after, or the workflow's
/// refusal. Failures of the storage are the outer `Error`.
pub type Fired = Result<Record, Refusal>;

impl Store {
    /// Fires a transition: the engine decides ([`transition::admit`],
    /// [`transition::plan`]); this runs its decision as one compare-and-set (state,
    /// version, permission and `where:` guards), with the history row, the change log
    /// and the outbox rows in the same transaction.
    pub async fn transition(
        &self,
        engine: &Engine,
        req: &Request<'_>,
        if_match: Option<i64>,
    ) -> Result<Fired, Error> {
        let result = self.transition_in(None, engine, req, if_match).await;
        // Only deliveries wake the sender: each wake costs it a query. Woken on an
        // error too: it may come after the commit (reading the record back).
        if !req.transition.effects.is_empty() {
            self.wake_outbox();
        }
        result
    }

    pub(crate) async fn transition_in(
        &self,
        batch: Option<&mut Tx>,
        engine: &Engine,
        req: &Request<'_>,
        if_match: Option<i64>,
    ) -> Result<Fired, Error> {
        let (e, wf, who) = (req.entity, req.workflow, req.who);
        let dialect = self.dialect();
        let ctx_sql = who.ctx();
        let id = req.id;
        let read = match engine.access.decide(&e.name, &Action::Read, who) {
            Decision::Deny => return Err(Error::NotFound),
            Decision::Allow(c) => c,
        };
        let mut current = select(e);
        current.and_where(Expr::col((MAIN.to_string(), "id".to_string())).eq(dialect.uuid(id)));
        if read != Typed::Const(true) {
            current.and_where(super::filter::Compiler::new(dialect, &ctx_sql).compile(&read, MAIN));
        }
        let links: Vec<(String, sea_query::SelectStatement)> = e
            .many_fields()
            .map(|f| {
                let mut q = Query::select();
                q.from(e.join_table(f))
                    .column("target_id")
                    .and_where(Expr::col("source_id").eq(dialect.uuid(id)))
                    .order_by("target_id", Order::Asc);
                (f.name.clone(), q)
            })
            .collect();
        let state_field = e.field(&wf.field).ok_or(Error::NotFound)?;
        let now = input::now();
        // What `set:` writes, to explain a constraint the update breaks.
        let mut written = input::Input::default();

        let result: Result<Result<Fired, Error>, sqlx::Error> = async { in_tx!(self, batch, tx => {
            let (sql, vals) = dialect.build(&current);
            let Some(row) = sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(&mut *tx).await? else {
                tx.rollback().await?;
                return Ok(Err(Error::NotFound));
            };
            let mut before = record_from_row(e, &row)?;
            for (name, q) in &links {
                let (sql, vals) = dialect.build(q);
                let rows = sqlx::query_with(AssertSqlSafe(sql), vals).fetch_all(&mut *tx).await?;
                let ids = rows.iter().map(|r| r.uuid_text(0).map(Value::String)).collect::<Result<Vec<_>, _>>()?;
                before.insert(name.clone(), Value::Array(ids));
            }
            let admitted = match transition::admit(req, &engine.access, &before) {
                Ok(a) => a,
                Err(refusal) => {
                    tx.rollback().await?;
                    return Ok(Ok(Err(refusal)));
                }
            };
            let version = before.get("version").and_then(Value::as_i64).unwrap_or(0);
            if let Some(v) = if_match && v != version {
                tx.rollback().await?;
                return Ok(Err(Error::Stale { current: version }));
            }
            // The conditions only SQL can judge, each on the stored record.
            let conditions = admitted.conditions();
            let mut holds = Vec::with_capacity(conditions.len());
            for c in &conditions {
                let (sql, vals) = dialect.build(&visible(dialect, e, id, c, &ctx_sql));
                let held = sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(&mut *tx).await?.is_some();
                holds.push(held);
                if !held && holds.len() == 1 && admitted.permission_first() {
                    // `plan` refuses on the policy alone.
                    break;
                }
            }
            let plan = match transition::plan(req, &admitted, &before, &holds, now) {
                Ok(p) => p,
                Err(refusal) => {
                    tx.rollback().await?;
                    return Ok(Ok(Err(refusal)));
                }
            };
            written.values = plan.assigned.clone();
            // The compare-and-set: state, version, permission and guards in one statement.
            let mut q = Query::update();
            q.table(e.name.clone())
                .value(wf.field.clone(), dialect.value(state_field.storage().unwrap_or(Storage::Text), &Cell::Text(plan.to.clone())))
                .value("updated_at", dialect.datetime(plan.now))
                .value("version", Expr::col("version").add(1i64));
            for (index, cell) in &plan.assigned {
                let f = &e.fields[*index];
                q.value(f.name.clone(), dialect.value(f.storage().unwrap_or(Storage::Text), cell));
            }
            q.and_where(Expr::col("id").eq(dialect.uuid(id)))
                .and_where(Expr::col(wf.field.clone()).eq(plan.from.clone()))
                .and_where(Expr::col("version").eq(version));
            for c in conditions {
                q.and_where(Expr::col("id").in_subquery(visible(dialect, e, id, c, &ctx_sql)));
            }
            q.returning(Query::returning().columns(select_columns(e)));
            // The log trigger writes this update as a transition: on PostgreSQL it
            // reads a mark at commit, set by the statement itself; on SQLite the
            // history row's trigger re-kinds the log row.
            let h = &plan.history;
            let (sql, vals) = if dialect.transition_in_one_statement() {
                q.and_where(pg_mark_transition(id));
                // One round trip: the history row is inserted by the same statement,
                // from the updated row (so only when the compare-and-set matched).
                let mut from_u = Query::select();
                from_u
                    .exprs([&h.id, &h.entity, &h.record_id, &h.transition, &h.from, &h.to].map(|v| Expr::val(v.as_str())))
                    .expr(Expr::val(h.actor.clone()))
                    .expr(Expr::val(h.input.as_str()))
                    .expr(Expr::val(h.at.as_str()))
                    .expr(Expr::val(h.request_id.clone()))
                    .from("u");
                let mut insert = Query::insert();
                insert
                    .into_table(HISTORY)
                    .columns(HISTORY_COLUMNS)
                    .select_from(from_u)
                    .map_err(|err| sqlx::Error::Protocol(err.to_string()))?;
                let (mut update, mut history_row) = (CommonTableExpression::new(), CommonTableExpression::new());
                update.query(q).table_name("u");
                history_row.query(insert).table_name("h");
                let mut with = WithClause::new();
                with.cte(update).cte(history_row);
                let mut updated = Query::select();
                updated.column(Asterisk).from("u");
                dialect.build(&with.query(updated))
            } else {
                dialect.build(&q)
            };
            let Some(row) = sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(&mut *tx).await? else {
                tx.rollback().await?;
                return Ok(Err(Error::Conflict(format!(
                    "the {} changed while `{}` was being fired; reload it and try again", e.name, h.transition
                ))));
            };
            let mut after = record_from_row(e, &row)?;
            for (name, _) in &links {
                after.insert(name.clone(), before.get(name).cloned().unwrap_or(Value::Array(Vec::new())));
            }
            if !dialect.transition_in_one_statement() {
                sqlx::query(HISTORY_INSERT)
                    .bind(&h.id)
                    .bind(&h.entity)
                    .bind(&h.record_id)
                    .bind(&h.transition)
                    .bind(&h.from)
                    .bind(&h.to)
                    .bind(h.actor.clone())
                    .bind(h.input.as_str())
                    .bind(h.at.as_str())
                    .bind(h.request_id.clone())
                    .execute(&mut *tx)
                    .await?;
            }
            let deliveries = match plan.deliveries(req, &after, chrono::Utc::now()) {
                Ok(d) => d,
                Err(refusal) => {
                    tx.rollback().await?;
                    return Ok(Ok(Err(refusal)));
                }
            };
            for d in deliveries {
                sqlx::query(OUTBOX_INSERT)
                    .bind(d.id)
                    .bind(d.endpoint)
                    .bind(d.event)
                    .bind(d.body)
                    .bind(d.created_ms)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(Ok(Ok(after)))
        })}.await;
        let rec = match result {
            Ok(Ok(Ok(rec))) => rec,
            Ok(Ok(Err(refusal))) => return Ok(Err(refusal)),
            Ok(Err(err)) => return Err(err),
            // A `set:` value that breaks a unique or reference constraint: 409 / 422 as
            // for an update, not a 500.
            Err(err) if err.as_database_error().is_some() => {
                return Err(self.explain_write_error(engine, e, &written, err).await);
            }
            Err(err) => return Err(err.into()),
        };
        self.as_seen_by(engine, e, rec, who).await.map(Ok)
    }

    /// What the caller could fire on a record now, and why not: the engine decides
    /// ([`transition::choices`]); this reads the record and judges its conditions,
    /// the policy's first, then the guards of what the caller may fire.
    pub async fn transition_options<'w>(
        &self,
        engine: &Engine,
        e: &Entity,
        wf: &'w Workflow,
        id: Uuid,
        who: &Principal,
    ) -> Result<RecordOptions<'w>, Error> {
        let ctx_sql = who.ctx();
        let read = match engine.access.decide(&e.name, &Action::Read, who) {
            Decision::Deny => return Err(Error::NotFound),
            Decision::Allow(c) => c,
        };
        let rec = self.get_where(e, id, &read, &ctx_sql).await?;
        let choices = transition::choices(&engine.access, e, wf, &rec, who);
        let mut permitted = Vec::new();
        for c in choices.permissions() {
            permitted.push(self.holds(e, id, c, &ctx_sql).await?);
        }
        let mut guards = Vec::new();
        for c in choices.guards(e, who, &permitted) {
            guards.push(self.holds(e, id, c, &ctx_sql).await?);
        }
        Ok(RecordOptions {
            id,
            version: rec.get("version").and_then(Value::as_i64),
            options: choices.options(e, wf, &rec, who, &permitted, &guards),
        })
    }

    /// A record's transitions, oldest first, after `after` (a history id).
    pub async fn history(
        &self,
        engine: &Engine,
        e: &Entity,
        id: Uuid,
        who: &Principal,
        limit: usize,
        after: Option<&str>,
    ) -> Result<(Vec<HistoryEntry>, Option<String>), Error> {
        let read = match engine.access.decide(&e.name, &Action::Read, who) {
            Decision::Deny => return Err(Error::NotFound),
            Decision::Allow(c) => c,
        };
        self.get_where(e, id, &read, &who.ctx()).await?;
        let mut q = Query::select();
        q.from(HISTORY)
            // Every column but the two the WHERE fixes.
            .columns(
                HISTORY_COLUMNS
                    .into_iter()
                    .filter(|c| !matches!(*c, "entity" | "record_id")),
            )
            .and_where(Expr::col("entity").eq(e.name.clone()))
            .and_where(Expr::col("record_id").eq(id.hyphenated().to_string()))
            .order_by("id", Order::Asc);
        if let Some(a) = after {
            q.and_where(Expr::col("id").gt(a.to_string()));
        }
        type Row = (
            String,
            String,
            String,
            String,
            Option<String>,
            String,
            String,
            Option<String>,
        );
        let rows: Vec<Row> = on_pool!(self, pool => {
            let (sql, vals) = self.dialect().build(&q);
            let sql = super::paged(sql, limit as u64 + 1, None);
            sqlx::query_as_with(AssertSqlSafe(sql), vals).fetch_all(pool).await?
        });
        let more = rows.len() > limit;
        let items: Vec<HistoryEntry> = rows
            .into_iter()
            .take(limit)
            .map(
                |(id, transition, from, to, actor, input, at, request_id)| HistoryEntry {
                    id,
                    transition,
                    from,
                    to,
                    actor,
                    input: serde_json::from_str(&input).unwrap_or(Value::Null),
                    at,
                    request_id,
                },
            )
            .collect();
        let next = if more {
            items.last().map(|i| i.id.clone())
        } else {
            None
        };
        Ok((items, next))
    }
}

/// A webhook delivery taken from the outbox.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub endpoint: String,
    pub event: String,
    pub body: String,
    /// Attempts made before this one.
    pub attempts: i64,
}

/// The state of one outbox row (tests, status pages).
#[derive(Debug, Clone, serde::Serialize)]
pub struct OutboxRow {
    pub id: String,
    pub endpoint: String,
    pub event: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
}

impl Store {
    /// Takes up to `limit` due deliveries, leasing each for `lease_ms`: another
    /// instance (or this one after a crash) retries it only when the lease runs out.
    pub async fn claim_deliveries(
        &self,
        limit: i64,
        lease_ms: i64,
    ) -> Result<Vec<Delivery>, Error> {
        let now = chrono::Utc::now().timestamp_millis();
        let lock = self.dialect().skip_locked();
        let sql = format!(
            "UPDATE {OUTBOX} SET next_attempt_ms = $1 WHERE id IN (SELECT id FROM {OUTBOX} WHERE status = 'pending' AND next_attempt_ms <= $2 ORDER BY next_attempt_ms, id LIMIT $3{lock}) RETURNING id, endpoint, event, body, attempts"
        );
        type Row = (String, String, String, String, i64);
        let rows: Vec<Row> = on_pool!(self, pool => {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(now + lease_ms)
                .bind(now)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, endpoint, event, body, attempts)| Delivery {
                id,
                endpoint,
                event,
                body,
                attempts,
            })
            .collect())
    }

    pub async fn delivered(&self, id: &str) -> Result<(), Error> {
        let now = chrono::Utc::now().timestamp_millis();
        let sql = format!(
            "UPDATE {OUTBOX} SET status = 'delivered', delivered_ms = $1, attempts = attempts + 1, last_error = NULL WHERE id = $2"
        );
        on_pool!(self, pool => {
            sqlx::query(AssertSqlSafe(sql)).bind(now).bind(id).execute(pool).await?;
        });
        Ok(())
    }

    /// Records a failed attempt: retried at `retry_at_ms`, or given up (`None`).
    pub async fn delivery_failed(
        &self,
        id: &str,
        error: &str,
        retry_at_ms: Option<i64>,
    ) -> Result<(), Error> {
        let (status, at) = match retry_at_ms {
            Some(at) => ("pending", at),
            None => ("failed", chrono::Utc::now().timestamp_millis()),
        };
        let sql = format!(
            "UPDATE {OUTBOX} SET status = $1, next_attempt_ms = $2, attempts = attempts + 1, last_error = $3 WHERE id = $4"
        );
        on_pool!(self, pool => {
            sqlx::query(AssertSqlSafe(sql)).bind(status).bind(at).bind(error).bind(id).execute(pool).await?;
        });
        Ok(())
    }

    /// Every outbox row, oldest first.
    pub async fn outbox(&self) -> Result<Vec<OutboxRow>, Error> {
        let sql = format!(
            "SELECT id, endpoint, event, status, attempts, last_error FROM {OUTBOX} ORDER BY id"
        );
        type Row = (String, String, String, String, i64, Option<String>);
        let rows: Vec<Row> = on_pool!(self, pool => {
            sqlx::query_as(AssertSqlSafe(sql)).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(id, endpoint, event, status, attempts, last_error)| OutboxRow {
                    id,
                    endpoint,
                    event,
                    status,
                    attempts,
                    last_error,
                },
            )
            .collect())
    }

    /// How many webhook deliveries are pending, delivered and failed.
    pub async fn outbox_counts(&self) -> Result<std::collections::BTreeMap<String, i64>, Error> {
        let sql = format!("SELECT status, COUNT(*) FROM {OUTBOX} GROUP BY status");
        let rows: Vec<(String, i64)> = on_pool!(self, pool => {
            sqlx::query_as(AssertSqlSafe(sql)).fetch_all(pool).await?
        });
        let mut out: std::collections::BTreeMap<String, i64> = ["pending", "delivered", "failed"]
            .into_iter()
            .map(|s| (s.to_string(), 0))
            .collect();
        out.extend(rows);
        Ok(out)
    }

    /// Wakes the webhook sender of this process (after a commit that added deliveries).
    pub fn wake_outbox(&self) {
        self.outbox_wake.notify_one();
    }

    /// Waits until a commit of this process adds deliveries, or `timeout` passes.
    pub async fn outbox_woken(&self, timeout: std::time::Duration) {
        let _ = tokio::time::timeout(timeout, self.outbox_wake.notified()).await;
    }
}
