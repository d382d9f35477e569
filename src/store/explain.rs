//! `explain`: which rules of a policy matched a caller, a record and an action, and
//! why the answer is allow or deny. Conditions are checked by the database itself;
//! the answer is the engine's ([`access::verdict`]).

use sea_query::{ExprTrait, Query};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::filter::Compiler;
use super::kernel::{MAIN, main_col, on_pool};
use super::{Error, Store};
use crate::engine::access::{self, Action, Decided, Principal, RuleTrace};
use crate::engine::cond::check::{Ctx, Typed};
use crate::engine::{Engine, Entity};

/// The reasoning behind the answer to a caller doing an action on a record.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub entity: String,
    pub id: Uuid,
    pub action: Action,
    pub caller_id: Option<String>,
    pub caller_roles: Vec<String>,
    pub decision: Decided,
    pub reason: String,
    /// Every rule of the policy, and whether its condition holds on the record
    /// (`None`: the rule does not apply to this caller or action).
    pub rules: Vec<(RuleTrace, Option<bool>)>,
    /// What the caller sees of each field it does not always see; `None` when the
    /// answer needed no policy (none at all, or none for the entity).
    pub fields: Option<Vec<(String, Visibility)>>,
}

/// How a field shows to the caller on the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    Hidden,
    ShownHere,
    HiddenHere,
}

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
        action: &Action,
        who: &Principal,
    ) -> Result<Explanation, Error> {
        self.get(e, id).await?;
        let ctx = who.ctx();
        let mut out = Explanation {
            entity: e.name.clone(),
            id,
            action: action.clone(),
            caller_id: who.id.clone(),
            caller_roles: who.roles.clone(),
            decision: Decided::Deny,
            reason: String::new(),
            rules: Vec::new(),
            fields: None,
        };
        if !engine.access.enforced {
            out.decision = Decided::Allow;
            out.reason = "the project has no policy files, so everything is open".to_string();
            return Ok(out);
        }
        let Some(policy) = engine.access.policy(&e.name) else {
            out.reason = format!("{} has no policy, so nothing is allowed", e.name);
            return Ok(out);
        };
        for t in policy.trace(action, who) {
            let holds = match (&t.skipped, &t.cond) {
                (Some(_), _) => None,
                (None, None) => Some(true),
                (None, Some(c)) => Some(self.holds(e, id, c, &ctx).await?),
            };
            out.rules.push((t, holds));
        }
        (out.decision, out.reason) = access::verdict(&out.rules);
        let mut fields = Vec::new();
        for f in engine.access.hidden(&e.name, who) {
            fields.push((f, Visibility::Hidden));
        }
        for (f, cond) in engine.access.conditional(&e.name, who) {
            let shown = self.holds(e, id, &cond, &ctx).await?;
            let v = if shown {
                Visibility::ShownHere
            } else {
                Visibility::HiddenHere
            };
            fields.push((f, v));
        }
        out.fields = Some(fields);
        Ok(out)
    }
}
