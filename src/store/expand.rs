//! `expand`: related records embedded in the answer, under the record's `expand`
//! member (`{"client": "…id…", "expand": {"client": {…}}}`). One query per expanded
//! relation (plus one per `many` field of the records it reads), whatever the number
//! of rows: never one query per row.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;

use sea_query::{Expr, ExprTrait, Order, Query};
use serde_json::Value;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::filter::Compiler;
use super::kernel::{MAIN, Record, main_col, on_pool, record_from_row, select, select_columns};
use super::{Error, Store, quote};
use crate::engine::access::{Action, Decision, Principal};
use crate::engine::cond::check::{Ctx, Typed};
use crate::engine::query::{EXPAND_CAP, EXPAND_MEMBER, Expand};
use crate::engine::{Engine, Entity};
use crate::spec::FieldType;

type Boxed<'a> = Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;

fn id_strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .take(EXPAND_CAP)
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// Puts an expanded relation under the record's `expand` member: the field itself
/// keeps its id (or ids), so its type never depends on the request.
fn put_expanded(item: &mut Record, name: &str, value: Value) {
    let member = item
        .entry(EXPAND_MEMBER)
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if let Value::Object(m) = member {
        m.insert(name.to_string(), value);
    }
}

impl Store {
    /// Records of `e` by id, with their links.
    async fn fetch_by_ids(
        &self,
        e: &Entity,
        ids: &[Uuid],
        cond: &Typed,
        ctx: &Ctx,
    ) -> Result<Vec<Record>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let dialect = self.dialect();
        let mut q = select(e);
        if *cond != Typed::Const(true) {
            q.and_where(Compiler::new(dialect, ctx).compile(cond, MAIN));
        }
        q.and_where(main_col("id").is_in(ids.iter().map(|id| dialect.uuid(*id))));
        let mut items = on_pool!(self, pool => {
            let (sql, values) = dialect.build(&q);
            let rows = sqlx::query_with(AssertSqlSafe(sql), values).fetch_all(pool).await?;
            rows.iter().map(|r| record_from_row(e, r)).collect::<Result<Vec<_>, _>>()?
        });
        self.load_links(e, &mut items).await?;
        Ok(items)
    }

    /// The first [`EXPAND_CAP`] records of `child` (by id) whose `via` is each parent.
    async fn fetch_children(
        &self,
        child: &Entity,
        via: &str,
        parents: &[Uuid],
        cond: &Typed,
        ctx: &Ctx,
    ) -> Result<Vec<Record>, Error> {
        if parents.is_empty() {
            return Ok(Vec::new());
        }
        let dialect = self.dialect();
        let mut inner = select(child);
        if *cond != Typed::Const(true) {
            inner.and_where(Compiler::new(dialect, ctx).compile(cond, MAIN));
        }
        inner
            .expr_as(
                Expr::cust(format!(
                    "ROW_NUMBER() OVER (PARTITION BY {} ORDER BY {})",
                    quote(via),
                    quote("id")
                )),
                "_rn",
            )
            .and_where(main_col(via.to_string()).is_in(parents.iter().map(|id| dialect.uuid(*id))));
        let mut q = Query::select();
        for c in select_columns(child) {
            q.column(c);
        }
        q.from_subquery(inner, "s")
            .and_where(Expr::col("_rn").lte(EXPAND_CAP as i64))
            .order_by(via.to_string(), Order::Asc)
            .order_by("id", Order::Asc);
        let mut items = on_pool!(self, pool => {
            let (sql, values) = dialect.build(&q);
            let rows = sqlx::query_with(AssertSqlSafe(sql), values).fetch_all(pool).await?;
            rows.iter().map(|r| record_from_row(child, r)).collect::<Result<Vec<_>, _>>()?
        });
        self.load_links(child, &mut items).await?;
        Ok(items)
    }

    /// Embeds the relations named in `tree` into `items`, recursively.
    pub(crate) fn expand<'a>(
        &'a self,
        engine: &'a Engine,
        e: &'a Entity,
        items: &'a mut [Record],
        tree: &'a Expand,
        who: &'a Principal,
    ) -> Boxed<'a> {
        if items.is_empty() || tree.children.is_empty() {
            return Box::pin(std::future::ready(Ok(())));
        }
        Box::pin(async move {
            let ctx = who.ctx();
            for (name, sub) in &tree.children {
                let Some(field) = e.field(name) else { continue };
                let Some(target) = field.target.as_deref().and_then(|t| engine.entity(t)) else {
                    continue;
                };
                // Related records are filtered by their own entity's read policy.
                let cond = match engine.access.decide(&target.name, &Action::Read, who) {
                    Decision::Deny => Typed::Const(false),
                    Decision::Allow(c) => c,
                };
                match field.ty {
                    FieldType::Ref | FieldType::Many => {
                        let mut seen = HashSet::new();
                        let ids: Vec<Uuid> = items
                            .iter()
                            .flat_map(|r| id_strings(r.get(name)))
                            .filter(|id| seen.insert(id.clone()))
                            .filter_map(|id| Uuid::parse_str(&id).ok())
                            .collect();
                        let mut related = if cond == Typed::Const(false) {
                            Vec::new()
                        } else {
                            self.fetch_by_ids(target, &ids, &cond, &ctx).await?
                        };
                        self.expand(engine, target, &mut related, sub, who).await?;
                        self.redact_conditional(engine, target, &mut related, who)
                            .await?;
                        let by_id: HashMap<String, Record> = related
                            .into_iter()
                            .filter_map(|r| {
                                let id = r.get("id")?.as_str()?.to_string();
                                Some((id, r))
                            })
                            .collect();
                        for item in items.iter_mut() {
                            let ids = id_strings(item.get(name));
                            let value = if field.ty == FieldType::Ref {
                                ids.first()
                                    .and_then(|id| by_id.get(id))
                                    .map(|r| Value::Object(r.clone()))
                                    .unwrap_or(Value::Null)
                            } else {
                                Value::Array(
                                    ids.iter()
                                        .filter_map(|id| by_id.get(id))
                                        .map(|r| Value::Object(r.clone()))
                                        .collect(),
                                )
                            };
                            put_expanded(item, name, value);
                        }
                    }
                    FieldType::Inverse => {
                        let via = field.via.as_deref().unwrap_or_default();
                        let parents: Vec<Uuid> = items
                            .iter()
                            .filter_map(|r| r.get("id").and_then(Value::as_str))
                            .filter_map(|id| Uuid::parse_str(id).ok())
                            .collect();
                        let mut children = if cond == Typed::Const(false) {
                            Vec::new()
                        } else {
                            self.fetch_children(target, via, &parents, &cond, &ctx)
                                .await?
                        };
                        self.expand(engine, target, &mut children, sub, who).await?;
                        self.redact_conditional(engine, target, &mut children, who)
                            .await?;
                        let mut by_parent: HashMap<String, Vec<Value>> = HashMap::new();
                        for c in children {
                            // A ref stays its id, expanded or not.
                            let Some(parent) = c.get(via).and_then(Value::as_str) else {
                                continue;
                            };
                            let parent = parent.to_string();
                            by_parent.entry(parent).or_default().push(Value::Object(c));
                        }
                        for item in items.iter_mut() {
                            let id = item
                                .get("id")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string();
                            let list = by_parent.remove(&id).unwrap_or_default();
                            put_expanded(item, name, Value::Array(list));
                        }
                    }
                    _ => {}
                }
            }
            Ok(())
        })
    }
}
