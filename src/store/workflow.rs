//! The database side of workflows: the transition as one compare-and-set, its history
//! row, its change-log row and its outbox rows, all in the transaction that changes
//! the state; the history and "what may I fire now" reads.

use sea_query::{Asterisk, CommonTableExpression, Expr, ExprTrait, Order, Query, WithClause};
use sea_query_sqlx::SqlxBinder;
use serde_json::{Map, Value, json};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::access::visible;
use super::changes::pg_mark_transition;
use super::kernel::{Record, Tx, in_tx, on_pool, record_from_row, select, select_columns};
use super::values::{DecodeJson, cell_value, datetime_value, uuid_value};
use super::{Dialect, Error, Store};
use crate::engine::access::{Decision, Principal};
use crate::engine::cond::check::Typed;
use crate::engine::workflow::{AssignValue, Context, Guard, Transition, Workflow};
use crate::engine::{Cell, Engine, Entity, FieldError, input};

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
    if dialect == Dialect::Sqlite {
        statements.push(super::changes::SQLITE_HISTORY_MARKS.to_string());
    }
    statements
}

/// One transition request.
#[derive(Debug, Clone)]
pub struct Fire<'a> {
    pub id: Uuid,
    /// The validated input body.
    pub input: &'a Map<String, Value>,
    pub if_match: Option<i64>,
    pub request_id: Option<String>,
}

/// One row of a record's history.
#[derive(Debug, Clone, serde::Serialize)]
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

/// Values of `set:` assignments, as cells for the update.
#[allow(clippy::too_many_arguments)]
fn assignments<'a>(
    wf: &Workflow,
    e: &Entity,
    t: &Transition,
    ctx: impl Fn() -> &'a Context,
    before: &Record,
    given: &Map<String, Value>,
    who: &Principal,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<(usize, Cell)>, Error> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for a in &t.set {
        let field = &e.fields[a.field];
        let value = match &a.value {
            AssignValue::Literal(cell) => {
                out.push((a.field, cell.clone()));
                continue;
            }
            AssignValue::Now => {
                // The same instant as the record's `updated_at` and the history's `at`.
                let cell = if field.ty == crate::spec::FieldType::Date {
                    Cell::Date(now.date_naive())
                } else {
                    Cell::DateTime(now)
                };
                out.push((a.field, cell));
                continue;
            }
            AssignValue::Claim(c) => who.claims.get(c).cloned().unwrap_or(Value::Null),
            // As sent (the context has decimals as floats, which could round).
            AssignValue::Input(i) => given.get(i).cloned().unwrap_or(Value::Null),
            AssignValue::Record(r) => before.get(r).cloned().unwrap_or(Value::Null),
            AssignValue::Expr(expr) => match wf.eval(expr, ctx()) {
                Ok(v) => v,
                Err(err) => {
                    errors.push(FieldError::new(
                        format!("/{}", field.name),
                        format!("the workflow could not compute this field: {err}"),
                    ));
                    continue;
                }
            },
        };
        let value = match (&value, field.ty) {
            // Numbers for decimal fields arrive as floats from expressions.
            (Value::Number(n), crate::spec::FieldType::Decimal) => Value::String(n.to_string()),
            _ => value,
        };
        match input::convert(field, &value) {
            Ok(cell) => out.push((a.field, cell)),
            Err(detail) => errors.push(FieldError::new(
                format!("/{}", field.name),
                format!(
                    "the workflow sets `{}` to {value}, which does not fit: {detail}",
                    field.name
                ),
            )),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(Error::Invalid(errors))
    }
}

impl Store {
    /// Fires `t` on record `fire.id`: permission, state, version, guards and
    /// assignments in one compare-and-set; history, change log and outbox in the
    /// same transaction.
    pub async fn transition(
        &self,
        engine: &Engine,
        e: &Entity,
        wf: &Workflow,
        t: &Transition,
        fire: &Fire<'_>,
        who: &Principal,
    ) -> Result<Record, Error> {
        let result = self.transition_in(None, engine, e, wf, t, fire, who).await;
        // Only deliveries wake the sender: each wake costs it a query. Woken on an
        // error too: it may come after the commit (reading the record back).
        if !t.effects.is_empty() {
            self.wake_outbox();
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn transition_in(
        &self,
        batch: Option<&mut Tx>,
        engine: &Engine,
        e: &Entity,
        wf: &Workflow,
        t: &Transition,
        fire: &Fire<'_>,
        who: &Principal,
    ) -> Result<Record, Error> {
        let dialect = self.dialect();
        let ctx_sql = who.ctx();
        let id = fire.id;
        let read = match engine.access.decide(&e.name, "read", who) {
            Decision::Deny => return Err(Error::NotFound),
            Decision::Allow(c) => c,
        };
        let may_fire = engine.access.decide(&e.name, &t.action(), who);
        let mut current = select(e);
        current
            .and_where(Expr::col(("t0".to_string(), "id".to_string())).eq(uuid_value(dialect, id)));
        if read != Typed::Const(true) {
            current.and_where(super::filter::Compiler::new(dialect, &ctx_sql).compile(&read, "t0"));
        }
        let links: Vec<(String, sea_query::SelectStatement)> = e
            .many_fields()
            .map(|f| {
                let mut q = Query::select();
                q.from(e.join_table(f))
                    .column("target_id")
                    .and_where(Expr::col("source_id").eq(uuid_value(dialect, id)))
                    .order_by("target_id", Order::Asc);
                (f.name.clone(), q)
            })
            .collect();
        let state_field = e.field(&wf.field).ok_or(Error::NotFound)?;
        let now = input::now();
        let input_json = Value::Object(fire.input.clone()).to_string();
        let actor = who.id.clone();
        // What `set:` writes, to explain a constraint the update breaks.
        let mut written = input::Input { values: Vec::new() };

        let result: Result<Result<Record, Error>, sqlx::Error> = async { in_tx!(self, batch, tx, qb => {
            let (sql, vals) = current.build_sqlx(qb());
            let Some(row) = sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(&mut *tx).await? else {
                tx.rollback().await?;
                return Ok(Err(Error::NotFound));
            };
            let mut before = record_from_row(e, &row)?;
            for (name, q) in &links {
                let (sql, vals) = q.build_sqlx(qb());
                let rows = sqlx::query_with(AssertSqlSafe(sql), vals).fetch_all(&mut *tx).await?;
                let ids = rows.iter().map(|r| r.uuid_text(0).map(Value::String)).collect::<Result<Vec<_>, _>>()?;
                before.insert(name.clone(), Value::Array(ids));
            }
            let fire_cond = match &may_fire {
                Decision::Deny => {
                    tx.rollback().await?;
                    return Ok(Err(Error::Forbidden(format!("you may not `{}` this {}", t.name, e.name))));
                }
                Decision::Allow(c) => c,
            };
            let state = before.get(&wf.field).and_then(Value::as_str).unwrap_or_default().to_string();
            if !t.from.contains(&state) {
                tx.rollback().await?;
                return Ok(Err(Error::WrongState {
                    state: state.clone(),
                    transition: t.name.clone(),
                    from: t.from.clone(),
                    possible: wf.from_state(&state).map(|t| t.name.clone()).collect(),
                }));
            }
            let version = before.get("version").and_then(Value::as_i64).unwrap_or(0);
            if let Some(v) = fire.if_match && v != version {
                tx.rollback().await?;
                return Ok(Err(Error::Stale { current: version }));
            }
            if *fire_cond != Typed::Const(true) {
                let (sql, vals) = visible(dialect, e, id, fire_cond, &ctx_sql).build_sqlx(qb());
                if sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(&mut *tx).await?.is_none() {
                    tx.rollback().await?;
                    return Ok(Err(Error::Forbidden(format!("your policy does not let you `{}` this {}", t.name, e.name))));
                }
            }
            // The template context copies the record: built only for a transition
            // whose `check:` guards or `set:` expressions read it.
            let ctx = std::sync::OnceLock::new();
            let ctx = || ctx.get_or_init(|| Workflow::context(e, &before, who, &t.input, fire.input));
            let mut failed = Vec::new();
            for g in &t.guards {
                let holds = match g {
                    Guard::Check { expr, .. } => match wf.check(expr, ctx()) {
                        Ok(b) => b,
                        Err(err) => {
                            tracing::warn!(entity = %e.name, transition = %t.name, error = %err, "a guard could not be evaluated; it counts as failed");
                            false
                        }
                    },
                    Guard::Where { cond, .. } => {
                        let (sql, vals) = visible(dialect, e, id, cond, &ctx_sql).build_sqlx(qb());
                        sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(&mut *tx).await?.is_some()
                    }
                };
                if !holds {
                    failed.push(match g { Guard::Check { message, .. } | Guard::Where { message, .. } => message.clone() });
                }
            }
            if !failed.is_empty() {
                tx.rollback().await?;
                return Ok(Err(Error::Guards(failed)));
            }
            let cells = match assignments(wf, e, t, ctx, &before, fire.input, who, now) {
                Ok(c) => c,
                Err(err) => {
                    tx.rollback().await?;
                    return Ok(Err(err));
                }
            };
            written.values = cells.clone();
            // The compare-and-set: state, version, permission and guards in one statement.
            let mut q = Query::update();
            q.table(e.name.clone())
                .value(wf.field.clone(), cell_value(dialect, state_field.ty, 0, &Cell::Text(t.to.clone())))
                .value("updated_at", datetime_value(dialect, now))
                .value("version", Expr::col("version").add(1i64));
            for (index, cell) in &cells {
                let f = &e.fields[*index];
                q.value(f.name.clone(), cell_value(dialect, f.ty, f.scale, cell));
            }
            q.and_where(Expr::col("id").eq(uuid_value(dialect, id)))
                .and_where(Expr::col(wf.field.clone()).eq(state.clone()))
                .and_where(Expr::col("version").eq(version));
            let mut conds: Vec<&Typed> = Vec::new();
            if *fire_cond != Typed::Const(true) {
                conds.push(fire_cond);
            }
            for g in &t.guards {
                if let Guard::Where { cond, .. } = g {
                    conds.push(cond);
                }
            }
            for c in conds {
                q.and_where(Expr::col("id").in_subquery(visible(dialect, e, id, c, &ctx_sql)));
            }
            q.returning(Query::returning().columns(select_columns(e)));
            // The log trigger writes this update as a transition: on PostgreSQL it
            // reads a mark at commit, set by the statement itself; on SQLite the
            // history row's trigger re-kinds the log row.
            let history = [
                Uuid::now_v7().hyphenated().to_string(),
                e.name.clone(),
                id.hyphenated().to_string(),
                t.name.clone(),
                state.clone(),
                t.to.clone(),
            ];
            let at = input::format_datetime(&now);
            let (sql, vals) = if dialect == Dialect::Postgres {
                q.and_where(pg_mark_transition(id));
                // One round trip: the history row is inserted by the same statement,
                // from the updated row (so only when the compare-and-set matched).
                let mut from_u = Query::select();
                from_u
                    .exprs(history.iter().map(|v| Expr::val(v.as_str())))
                    .expr(Expr::val(actor.clone()))
                    .expr(Expr::val(input_json.as_str()))
                    .expr(Expr::val(at.as_str()))
                    .expr(Expr::val(fire.request_id.clone()))
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
                with.query(updated).build_sqlx(qb())
            } else {
                q.build_sqlx(qb())
            };
            let Some(row) = sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(&mut *tx).await? else {
                tx.rollback().await?;
                return Ok(Err(Error::Conflict(format!(
                    "the {} changed while `{}` was being fired; reload it and try again", e.name, t.name
                ))));
            };
            let mut after = record_from_row(e, &row)?;
            for (name, _) in &links {
                after.insert(name.clone(), before.get(name).cloned().unwrap_or(Value::Array(Vec::new())));
            }
            if dialect == Dialect::Sqlite {
                let [history_id, entity, record, transition, from, to] = &history;
                sqlx::query(HISTORY_INSERT)
                    .bind(history_id)
                    .bind(entity)
                    .bind(record)
                    .bind(transition)
                    .bind(from)
                    .bind(to)
                    .bind(actor.clone())
                    .bind(input_json.as_str())
                    .bind(at.as_str())
                    .bind(fire.request_id.clone())
                    .execute(&mut *tx)
                    .await?;
            }
            if !t.effects.is_empty() {
                let after_ctx = Workflow::context(e, &after, who, &t.input, fire.input);
                let at_ms = chrono::Utc::now().timestamp_millis();
                for effect in &t.effects {
                    let body = match wf.render_body(effect, t, &state, &after_ctx) {
                        Ok(b) => b,
                        Err(err) => {
                            tx.rollback().await?;
                            return Ok(Err(Error::Effect(format!(
                                "the body of the webhook to `{}` could not be rendered: {err}", effect.endpoint
                            ))));
                        }
                    };
                    sqlx::query(OUTBOX_INSERT)
                        .bind(Uuid::now_v7().hyphenated().to_string())
                        .bind(effect.endpoint.clone())
                        .bind(format!("{}.{}", e.name, t.name))
                        .bind(body)
                        .bind(at_ms)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
            Ok(Ok(after))
        })}.await;
        let rec = match result {
            Ok(inner) => inner?,
            // A `set:` value that breaks a unique or reference constraint: 409 / 422 as
            // for an update, not a 500.
            Err(err) if err.as_database_error().is_some() => {
                return Err(self.explain_write_error(engine, e, &written, err).await);
            }
            Err(err) => return Err(err.into()),
        };
        self.as_seen_by(engine, e, rec, who).await
    }

    /// What the caller could fire on a record now, and why not.
    pub async fn transition_options(
        &self,
        engine: &Engine,
        e: &Entity,
        wf: &Workflow,
        id: Uuid,
        who: &Principal,
    ) -> Result<Value, Error> {
        let ctx_sql = who.ctx();
        let read = match engine.access.decide(&e.name, "read", who) {
            Decision::Deny => return Err(Error::NotFound),
            Decision::Allow(c) => c,
        };
        let rec = self.get_where(e, id, &read, &ctx_sql).await?;
        let state = rec
            .get(&wf.field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let empty = Map::new();
        let mut out = Vec::new();
        for t in wf.from_state(&state) {
            let mut reasons: Vec<String> = Vec::new();
            let mut needs_input = false;
            match engine.access.decide(&e.name, &t.action(), who) {
                Decision::Deny if who.is_anonymous() => {
                    reasons.push(format!("sign in to `{}` a {}", t.name, e.name))
                }
                Decision::Deny => reasons.push(format!("you may not `{}` this {}", t.name, e.name)),
                Decision::Allow(c) if c != Typed::Const(true) => {
                    if !self.holds(e, id, &c, &ctx_sql).await? {
                        reasons.push(format!(
                            "your policy does not let you `{}` this {}",
                            t.name, e.name
                        ));
                    }
                }
                Decision::Allow(_) => {}
            }
            // Guards are evaluated, and their reasons told, only for transitions the
            // caller may fire: otherwise they would reveal the state of the record
            // (and of related ones) to callers the policy keeps out.
            let permitted = reasons.is_empty();
            let ctx = Workflow::context(e, &rec, who, &t.input, &empty);
            for g in t.guards.iter().filter(|_| permitted) {
                match g {
                    Guard::Check {
                        uses_input: true, ..
                    } => needs_input = true,
                    Guard::Check { expr, message, .. } => {
                        if !wf.check(expr, &ctx).unwrap_or(false) {
                            reasons.push(message.clone());
                        }
                    }
                    Guard::Where { cond, message } => {
                        if !self.holds(e, id, cond, &ctx_sql).await? {
                            reasons.push(message.clone());
                        }
                    }
                }
            }
            let mut item = json!({
                "name": t.name,
                "label": t.label,
                "to": t.to,
                "allowed": reasons.is_empty(),
                "reasons": reasons,
            });
            if needs_input {
                item["depends_on_input"] = json!(true);
            }
            if !t.input.fields.is_empty() {
                item["input"] = t.input.schemas.create.clone();
            }
            out.push(item);
        }
        Ok(json!({
            "id": id,
            "state": state,
            "state_label": wf.state(&state).map(|s| s.label.clone()),
            "final": wf.state(&state).is_some_and(|s| s.is_final),
            "version": rec.get("version"),
            "transitions": out,
        }))
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
        let read = match engine.access.decide(&e.name, "read", who) {
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
        let rows: Vec<Row> = on_pool!(self, pool, qb => {
            let (sql, vals) = q.build_sqlx(qb());
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
        let lock = match self.dialect() {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let sql = format!(
            "UPDATE {OUTBOX} SET next_attempt_ms = $1 WHERE id IN (SELECT id FROM {OUTBOX} WHERE status = 'pending' AND next_attempt_ms <= $2 ORDER BY next_attempt_ms, id LIMIT $3{lock}) RETURNING id, endpoint, event, body, attempts"
        );
        type Row = (String, String, String, String, i64);
        let rows: Vec<Row> = on_pool!(self, pool, _qb => {
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
        on_pool!(self, pool, _qb => {
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
        on_pool!(self, pool, _qb => {
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
        let rows: Vec<Row> = on_pool!(self, pool, _qb => {
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
        let rows: Vec<(String, i64)> = on_pool!(self, pool, _qb => {
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
