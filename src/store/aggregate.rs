//! Aggregates: one grouped SQL query, with the caller's `aggregate` policy and the
//! filter in its WHERE.

use sea_query::{Alias, Expr, ExprTrait, NullOrdering, Order, Query};
use serde_json::{Map, Value};
use sqlx::AssertSqlSafe;

use super::filter::Compiler;
use super::kernel::{MAIN, on_pool};
use super::values::{DecodeJson, storage};
use super::{Dialect, Error, Store, quote};
use crate::engine::access::{Action, Principal};
use crate::engine::aggregate::{AggregateRequest, Group, Measure, Metric};
use crate::engine::cond::check::Typed;
use crate::engine::{Engine, Entity};
use crate::spec::Storage;

fn col(name: &str) -> String {
    format!("{}.{}", quote(MAIN), quote(name))
}

fn group_sql(dialect: Dialect, g: &Group) -> String {
    if g.link.is_some() {
        return format!("{}.{}", quote("l0"), quote("target_id"));
    }
    let c = col(&g.column.name);
    match g.bucket {
        None => c,
        Some(b) => dialect.bucket_start(
            b,
            &c,
            storage(g.column.ty, g.column.scale) == Storage::Timestamp,
        ),
    }
}

fn measure_sql(dialect: Dialect, m: &Measure) -> String {
    let Some(column) = &m.column else {
        return "COUNT(*)".to_string();
    };
    let c = col(&column.name);
    let kind = storage(column.ty, column.scale);
    match m.metric {
        Metric::Count => "COUNT(*)".to_string(),
        Metric::Sum => dialect.sum(&c, kind),
        Metric::Avg => dialect.average(&c, kind),
        Metric::Min => format!("MIN({c})"),
        Metric::Max => format!("MAX({c})"),
    }
}

/// How a measure's value is read.
fn measure_storage(m: &Measure) -> Storage {
    match (&m.column, m.metric) {
        (None, _) | (_, Metric::Count) => Storage::Integer,
        (Some(_), Metric::Avg) => Storage::Real,
        (Some(c), _) => storage(c.ty, c.scale),
    }
}

fn round6(v: Value) -> Value {
    match v.as_f64() {
        Some(x) => serde_json::Number::from_f64((x * 1e6).round() / 1e6)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        None => v,
    }
}

fn read_row<R: DecodeJson>(
    req: &AggregateRequest,
    row: &R,
) -> Result<Map<String, Value>, sqlx::Error> {
    let mut out = Map::new();
    for (i, g) in req.groups.iter().enumerate() {
        let v = if g.bucket.is_some() {
            row.json(i, Storage::Text)?
        } else {
            row.json(i, storage(g.column.ty, g.column.scale))?
        };
        out.insert(g.key.clone(), v);
    }
    for (j, m) in req.measures.iter().enumerate() {
        let mut v = row.json(req.groups.len() + j, measure_storage(m))?;
        if m.metric == Metric::Avg {
            v = round6(v);
        }
        out.insert(m.key.clone(), v);
    }
    Ok(out)
}

impl Store {
    /// Groups and metrics over the records the caller may aggregate (statements
    /// armed against the request's deadline: grouping reads every matching row).
    pub async fn aggregate(
        &self,
        engine: &Engine,
        e: &Entity,
        req: &AggregateRequest,
        who: &Principal,
    ) -> Result<Vec<Map<String, Value>>, Error> {
        super::deadline::armed(true, self.aggregate_rows(engine, e, req, who)).await
    }

    async fn aggregate_rows(
        &self,
        engine: &Engine,
        e: &Entity,
        req: &AggregateRequest,
        who: &Principal,
    ) -> Result<Vec<Map<String, Value>>, Error> {
        let dialect = self.dialect();
        let policy = super::access::permitted(engine, e, &Action::Aggregate, who)?;
        let _turn = match &req.filter {
            Some(f) if crate::engine::cond::cost::steps_through_relations(f) => {
                self.heavy_slot().await
            }
            _ => None,
        };
        let cond = match &req.filter {
            Some(f) => Typed::And(Box::new(policy), Box::new(f.clone())),
            None => policy,
        };
        let ctx = who.ctx();
        let mut q = Query::select();
        q.from_as(e.name.clone(), MAIN);
        if let Some(g) = req.groups.iter().find(|g| g.link.is_some())
            && let Some(link) = &g.link
        {
            // Per linked id: a record counts once in each of its links' groups (and
            // once under null when it has none it may see).
            let mut on = Expr::col(("l0".to_string(), "source_id".to_string()))
                .equals((MAIN.to_string(), "id".to_string()));
            if let Some((target, rows)) = &g.link_rows {
                // Only links to records the caller may read.
                let mut visible = Query::select();
                visible
                    .expr(Expr::val(1))
                    .from_as(target.clone(), "lt")
                    .and_where(
                        Expr::col(("lt".to_string(), "id".to_string()))
                            .equals(("l0".to_string(), "target_id".to_string())),
                    )
                    .and_where(Compiler::new(dialect, &ctx).compile(rows, "lt"));
                on = on.and(Expr::exists(visible));
            }
            q.join_as(sea_query::JoinType::LeftJoin, link.clone(), "l0", on);
        }
        for (i, g) in req.groups.iter().enumerate() {
            q.expr_as(
                Expr::cust(group_sql(dialect, g)),
                Alias::new(format!("g{i}")),
            );
        }
        for (j, m) in req.measures.iter().enumerate() {
            q.expr_as(
                Expr::cust(measure_sql(dialect, m)),
                Alias::new(format!("m{j}")),
            );
        }
        if cond != Typed::Const(true) {
            q.and_where(Compiler::new(dialect, &ctx).compile(&cond, MAIN));
        }
        for g in &req.groups {
            q.add_group_by([Expr::cust(group_sql(dialect, g))]);
        }
        for (key, desc) in &req.sort {
            let alias = req
                .groups
                .iter()
                .position(|g| g.key == *key)
                .map(|i| format!("g{i}"))
                .or_else(|| {
                    req.measures
                        .iter()
                        .position(|m| m.key == *key)
                        .map(|j| format!("m{j}"))
                });
            if let Some(alias) = alias {
                q.order_by_with_nulls(
                    Alias::new(alias),
                    if *desc { Order::Desc } else { Order::Asc },
                    NullOrdering::Last,
                );
            }
        }
        let groups = on_pool!(self, pool => {
            let (sql, values) = dialect.build(&q);
            let sql = super::paged(sql, u64::from(req.limit), None);
            let rows = sqlx::query_with(AssertSqlSafe(sql), values).fetch_all(pool).await?;
            rows.iter().map(|r| read_row(req, r)).collect::<Result<Vec<_>, _>>()?
        });
        Ok(groups)
    }
}
