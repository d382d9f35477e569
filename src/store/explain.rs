//! `explain`: which rules of a policy matched a caller, a record and an action, and
//! why the answer is allow or deny. Conditions are checked by the database itself.

use sea_query::{ExprTrait, Query};
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::filter::Compiler;
use super::kernel::{MAIN, main_col, on_pool};
use super::{Error, Store};
use crate::engine::access::Principal;
use crate::engine::cond::check::{Ctx, Typed};
use crate::engine::{Engine, Entity};

impl Store {
    /// Does the record satisfy `cond` for this caller?
    pub(crate) async fn holds(
        &self,
        e: &Entity,
        id: Uuid,
        cond: &Typed,
        ctx: &Ctx,
    ) -> Result<bool, Error> {
        let dialect = self.dialect();
        let mut q = Query::select();
        q.from_as(e.name.clone(), MAIN)
            .column((MAIN.to_string(), "id".to_string()))
            .and_where(main_col("id").eq(dialect.uuid(id)))
            .and_where(Compiler::new(dialect, ctx).compile(cond, MAIN));
        Ok(on_pool!(self, pool => {
            let (sql, vals) = dialect.build(&q);
            sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(pool).await?.is_some()
        }))
    }

    /// The reasoning behind the answer to `who` doing `action` on a record.
    pub async fn explain(
        &self,
        engine: &Engine,
        e: &Entity,
        id: Uuid,
        action: &str,
        who: &Principal,
    ) -> Result<Value, Error> {
        self.get(e, id).await?;
        let ctx = who.ctx();
        let caller = json!({ "id": who.id, "roles": who.roles });
        if !engine.access.enforced {
            return Ok(json!({
                "entity": e.name, "id": id, "action": action, "caller": caller,
                "decision": "allow",
                "reason": "the project has no policy files, so everything is open",
                "rules": []
            }));
        }
        let Some(policy) = engine.access.policy(&e.name) else {
            return Ok(json!({
                "entity": e.name, "id": id, "action": action, "caller": caller,
                "decision": "deny",
                "reason": format!("{} has no policy, so nothing is allowed", e.name),
                "rules": []
            }));
        };
        let mut rules = Vec::new();
        let mut allowed_by = None;
        let mut denied_by = None;
        for t in policy.trace(action, who) {
            let mut entry = serde_json::to_value(&t).unwrap_or_default();
            if t.skipped.is_none() {
                let holds = match &t.cond {
                    None => true,
                    Some(c) => self.holds(e, id, c, &ctx).await?,
                };
                entry["condition_holds"] = json!(holds);
                if holds {
                    match t.effect {
                        "deny" if denied_by.is_none() => denied_by = Some(t.name.clone()),
                        "allow" if allowed_by.is_none() => allowed_by = Some(t.name.clone()),
                        _ => {}
                    }
                }
            }
            rules.push(entry);
        }
        let (decision, reason) = match (denied_by, allowed_by) {
            (Some(d), _) => (
                "deny",
                format!("the deny rule “{d}” applies, and deny wins"),
            ),
            (None, Some(a)) => ("allow", format!("the rule “{a}” allows it")),
            (None, None) => (
                "deny",
                "no allow rule applies to this caller, action and record (default deny)"
                    .to_string(),
            ),
        };
        let mut fields = serde_json::Map::new();
        for f in engine.access.hidden(&e.name, who) {
            fields.insert(f, json!("hidden"));
        }
        for (f, cond) in engine.access.conditional(&e.name, who) {
            let shown = self.holds(e, id, &cond, &ctx).await?;
            fields.insert(
                f,
                json!(if shown {
                    "shown on this record"
                } else {
                    "hidden on this record"
                }),
            );
        }
        Ok(json!({
            "entity": e.name, "id": id, "action": action, "caller": caller,
            "decision": decision, "reason": reason, "rules": rules, "fields": fields
        }))
    }
}
