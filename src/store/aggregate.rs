//! Aggregates: one grouped SQL query, with the caller's `aggregate` policy and the
//! filter in its WHERE.

use sea_query::{Alias, Expr, ExprTrait, NullOrdering, Order, Query};
use sea_query_sqlx::SqlxBinder;
use serde_json::{Map, Value};
use sqlx::AssertSqlSafe;

use super::crud::on_pool;
use super::filter::Compiler;
use super::values::DecodeJson;
use super::{Dialect, Error, Pool, Store, quote};
use crate::engine::access::{Action, Principal};
use crate::engine::aggregate::{AggregateRequest, Bucket, Group, Measure, Metric};
use crate::engine::cond::check::Typed;
use crate::engine::{Engine, Entity};
use crate::spec::FieldType;
use sea_query::{PostgresQueryBuilder, SqliteQueryBuilder};

fn col(name: &str) -> String {
    format!("{}.{}", quote("t0"), quote(name))
}

fn group_sql(dialect: Dialect, g: &Group) -> String {
    if g.link.is_some() {
        return format!("{}.{}", quote("l0"), quote("target_id"));
    }
    let c = col(&g.column.name);
    match (g.bucket, dialect) {
        (None, _) => c,
        (Some(Bucket::Day), Dialect::Sqlite) => format!("substr({c}, 1, 10)"),
        (Some(Bucket::Month), Dialect::Sqlite) => format!("substr({c}, 1, 7) || '-01'"),
        (Some(Bucket::Year), Dialect::Sqlite) => format!("substr({c}, 1, 4) || '-01-01'"),
        (Some(Bucket::Week), Dialect::Sqlite) => {
            format!("date(substr({c}, 1, 10), '-6 days', 'weekday 1')")
        }
        (Some(b), Dialect::Postgres) => {
            let value = if g.column.ty == FieldType::Datetime {
                format!("{c} AT TIME ZONE 'UTC'")
            } else {
                c
            };
            format!("to_char(date_trunc('{}', {value}), 'YYYY-MM-DD')", b.name())
        }
    }
}

fn measure_sql(dialect: Dialect, m: &Measure) -> String {
    let Some(column) = &m.column else {
        return "COUNT(*)".to_string();
    };
    let c = col(&column.name);
    let decimal_units = dialect == Dialect::Sqlite && column.ty == FieldType::Decimal;
    match m.metric {
        Metric::Count => "COUNT(*)".to_string(),
        Metric::Sum if dialect == Dialect::Postgres && column.ty == FieldType::Integer => {
            format!("CAST(SUM({c}) AS BIGINT)")
        }
        Metric::Sum => format!("SUM({c})"),
        Metric::Avg if decimal_units => format!("AVG({c}) / {}.0", 10i64.pow(column.scale)),
        Metric::Avg => match dialect {
            Dialect::Sqlite => format!("AVG({c})"),
            Dialect::Postgres => format!("CAST(AVG({c}) AS DOUBLE PRECISION)"),
        },
        Metric::Min => format!("MIN({c})"),
        Metric::Max => format!("MAX({c})"),
    }
}

/// The type a measure's value is read as.
fn measure_type(m: &Measure) -> (FieldType, u32) {
    match (&m.column, m.metric) {
        (None, _) | (_, Metric::Count) => (FieldType::Integer, 0),
        (Some(_), Metric::Avg) => (FieldType::Number, 0),
        (Some(c), _) => (c.ty, c.scale),
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
            row.json(i, FieldType::String, 0)?
        } else {
            row.json(i, g.column.ty, g.column.scale)?
        };
        out.insert(g.key.clone(), v);
    }
    for (j, m) in req.measures.iter().enumerate() {
        let (ty, scale) = measure_type(m);
        let mut v = row.json(req.groups.len() + j, ty, scale)?;
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
        let policy = super::crud::permitted(engine, e, &Action::Aggregate, who)?;
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
        q.from_as(e.name.clone(), "t0");
        if let Some(g) = req.groups.iter().find(|g| g.link.is_some())
            && let Some(link) = &g.link
        {
            // Per linked id: a record counts once in each of its links' groups (and
            // once under null when it has none it may see).
            let mut on = Expr::col(("l0".to_string(), "source_id".to_string()))
                .equals(("t0".to_string(), "id".to_string()));
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
            q.and_where(Compiler::new(dialect, &ctx).compile(&cond, "t0"));
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
        let groups = on_pool!(self, pool, qb => {
            let (sql, values) = q.build_sqlx(qb());
            let sql = super::paged(sql, u64::from(req.limit), None);
            let rows = sqlx::query_with(AssertSqlSafe(sql), values).fetch_all(pool).await?;
            rows.iter().map(|r| read_row(req, r)).collect::<Result<Vec<_>, _>>()?
        });
        Ok(groups)
    }
}
