//! What a caller may see: the policy's condition for an action, whether a record is
//! within reach, and the removal of fields the caller may not read.

use sea_query::{ExprTrait, Query, SelectStatement};
use serde_json::Value;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::filter::Compiler;
use super::kernel::{MAIN, Record, main_col, on_pool, record_id};
use super::values::DecodeJson;
use super::{Dialect, Error, Store};
use crate::engine::access::{Action, Decision, Principal};
use crate::engine::cond::check::{Ctx, Typed};
use crate::engine::query::EXPAND_MEMBER;
use crate::engine::{Engine, Entity};

impl Store {
    /// The record without the fields this caller may not read.
    pub(crate) async fn as_seen_by(
        &self,
        engine: &Engine,
        e: &Entity,
        mut rec: Record,
        who: &Principal,
    ) -> Result<Record, Error> {
        redact(engine, e, &mut rec, who);
        let mut items = vec![rec];
        self.redact_conditional(engine, e, &mut items, who).await?;
        items.pop().ok_or(Error::NotFound)
    }

    /// Removes the fields this caller sees only under a condition from the records
    /// where it does not hold: one query per such field, whatever the number of records.
    pub(crate) async fn redact_conditional(
        &self,
        engine: &Engine,
        e: &Entity,
        items: &mut [Record],
        who: &Principal,
    ) -> Result<(), Error> {
        let conditional = engine.access.conditional(&e.name, who);
        if conditional.is_empty() || items.is_empty() {
            return Ok(());
        }
        let dialect = self.dialect();
        let ctx = who.ctx();
        let ids: Vec<Uuid> = items.iter().filter_map(record_id).collect();
        for (field, cond) in conditional {
            let mut q = Query::select();
            q.from_as(e.name.clone(), MAIN)
                .column((MAIN.to_string(), "id".to_string()))
                .and_where(main_col("id").is_in(ids.iter().map(|id| dialect.uuid(*id))))
                .and_where(Compiler::new(dialect, &ctx).compile(&cond, MAIN));
            let visible: Vec<String> = on_pool!(self, pool => {
                let (sql, values) = dialect.build(&q);
                let rows = sqlx::query_with(AssertSqlSafe(sql), values).fetch_all(pool).await?;
                rows.iter().map(|r| r.uuid_text(0)).collect::<Result<Vec<_>, _>>()?
            });
            for item in items.iter_mut() {
                let id = item.get("id").and_then(Value::as_str).unwrap_or_default();
                if !visible.iter().any(|v| v == id) {
                    remove_field(item, &field);
                }
            }
        }
        Ok(())
    }
}

/// `SELECT t0.id FROM e AS t0 WHERE t0.id = ? AND cond`: is the record within reach?
pub(crate) fn visible(
    dialect: Dialect,
    e: &Entity,
    id: Uuid,
    cond: &Typed,
    ctx: &Ctx,
) -> SelectStatement {
    let mut q = Query::select();
    q.from_as(e.name.clone(), MAIN)
        .column((MAIN.to_string(), "id".to_string()))
        .and_where(main_col("id").eq(dialect.uuid(id)));
    if *cond != Typed::Const(true) {
        q.and_where(Compiler::new(dialect, ctx).compile(cond, MAIN));
    }
    q
}

/// The caller's condition for `action` on the collection, or why it may not.
pub fn permitted(
    engine: &Engine,
    e: &Entity,
    action: &Action,
    who: &Principal,
) -> Result<Typed, Error> {
    match engine.access.decide(&e.name, action, who) {
        Decision::Deny => Err(Error::forbidden(format!(
            "you may not {action} {} records",
            e.name
        ))),
        Decision::Allow(cond) => Ok(cond),
    }
}

/// Removes a field and its expansion (the related records under `expand`).
fn remove_field(rec: &mut Record, name: &str) {
    rec.shift_remove(name);
    if let Some(Value::Object(expanded)) = rec.get_mut(EXPAND_MEMBER) {
        expanded.shift_remove(name);
        if expanded.is_empty() {
            rec.shift_remove(EXPAND_MEMBER);
        }
    }
}

/// Removes the fields this caller may not read, here and in expanded records.
pub(crate) fn redact(engine: &Engine, e: &Entity, rec: &mut Record, who: &Principal) {
    if !engine.access.enforced {
        return;
    }
    for f in engine.access.hidden(&e.name, who) {
        remove_field(rec, &f);
    }
    let Some(Value::Object(expanded)) = rec.get_mut(EXPAND_MEMBER) else {
        return;
    };
    for f in &e.fields {
        let Some(target) = f.target.as_deref().and_then(|t| engine.entity(t)) else {
            continue;
        };
        match expanded.get_mut(&f.name) {
            Some(Value::Object(inner)) => redact(engine, target, inner, who),
            Some(Value::Array(items)) => {
                for item in items {
                    if let Value::Object(inner) = item {
                        redact(engine, target, inner, who);
                    }
                }
            }
            _ => {}
        }
    }
}
