//! Reads of records: pages of a list (filtered, searched, sorted, after a cursor),
//! one record, and the `many` links of records.

use std::collections::HashMap;

use sea_query::{Asterisk, Expr, ExprTrait, JoinType, NullOrdering, Order, Query};
use serde_json::Value;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::access::{permitted, redact};
use super::filter::Compiler;
use super::json::{JsonPage, not_json, write_record};
use super::kernel::{MAIN, Record, main_col, on_pool, record_from_row, record_id, select};
use super::search::{Search, search_terms};
use super::values::{DecodeJson, storage};
use super::{Dialect, Error, Store};
use crate::engine::access::{Action, Decision, Principal};
use crate::engine::cond::check::{Ctx, Typed};
use crate::engine::query::{Cursor, GetRequest, ListRequest, SortKey, select_fields};
use crate::engine::{Cell, Engine, Entity};

/// A page of a list.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Record>,
    /// The cursor of the next page.
    pub next: Option<String>,
    /// The number of records matching the filter, when asked for.
    pub total: Option<i64>,
}

/// The records of a page as read: as maps, or written straight to JSON.
enum Rows {
    Records(Vec<Record>),
    Json {
        /// A JSON array of at most `limit` records.
        array: Vec<u8>,
        /// The last record of the page, when more follow (for the cursor).
        last: Option<Record>,
    },
}

/// Rows strictly after a cursor, as the database can seek them in an index on the
/// sort keys: `seek` bounds the first key with a range at its top level (`price <=
/// 12.5 AND (price < 12.5 OR id > …)`), so the page is read from the cursor's place
/// in the index whatever the page's number (an `OR` of alternatives at the top level
/// made SQLite merge three index searches and sort everything past the cursor, and
/// PostgreSQL walk the index from the start of the list). NULLs come last in both
/// directions, as the ORDER BY puts them: when the cursor's first key is set but the
/// field may be missing, the records without it follow those with a value, and are
/// the second, separate read `nulls` (done only when the first one falls short).
struct Keyset {
    seek: Expr,
    nulls: Option<Expr>,
}

fn keyset(dialect: Dialect, e: &Entity, sort: &[SortKey], after: &[Cell]) -> Keyset {
    let keys: Vec<(&SortKey, &Cell)> = sort.iter().zip(after).collect();
    let first_may_be_null = keys
        .first()
        .is_some_and(|(k, cell)| **cell != Cell::Null && may_be_null(e, &k.column.name));
    Keyset {
        seek: beyond(dialect, e, &keys, true),
        nulls: first_may_be_null.then(|| main_col(keys[0].0.column.name.clone()).is_null()),
    }
}

/// A column that can hold NULL: a field that is not required (the system fields and
/// required fields are `NOT NULL` columns).
fn may_be_null(e: &Entity, column: &str) -> bool {
    let field = e
        .field(column)
        .or_else(|| crate::engine::system_field(column));
    !field.is_some_and(|f| f.required)
}

/// The rows after `keys`' values in their order. `top`: the caller reads the rows
/// without a first key separately (see [`Keyset`]).
fn beyond(dialect: Dialect, e: &Entity, keys: &[(&SortKey, &Cell)], top: bool) -> Expr {
    let Some(((k, cell), rest)) = keys.split_first() else {
        // Past every key: the cursor's own row, which is not after itself.
        return Expr::cust("1 = 0");
    };
    let c = main_col(k.column.name.clone());
    if **cell == Cell::Null {
        // NULLs come last: only rows without this key, after the cursor on the others.
        return c.is_null().and(beyond(dialect, e, rest, false));
    }
    let v = Expr::val(dialect.value(storage(k.column.ty, k.column.scale), cell));
    let (strictly, up_to) = match k.desc {
        true => (c.clone().lt(v.clone()), c.clone().lte(v)),
        false => (c.clone().gt(v.clone()), c.clone().gte(v)),
    };
    let here = match rest.is_empty() {
        true => strictly,
        false => up_to.and(strictly.or(beyond(dialect, e, rest, false))),
    };
    match !top && may_be_null(e, &k.column.name) {
        true => here.or(c.is_null()),
        false => here,
    }
}

impl Store {
    /// A page of records: filtered, sorted (ties broken by id), after a cursor.
    pub async fn list(
        &self,
        engine: &Engine,
        e: &Entity,
        req: &ListRequest,
        who: &Principal,
    ) -> Result<Page, Error> {
        let expensive = req.filter.is_some() || req.search.is_some();
        let (rows, next, total) =
            super::deadline::armed(expensive, self.list_rows(engine, e, req, who, None)).await?;
        let Rows::Records(mut items) = rows else {
            unreachable!("records were asked for")
        };
        self.load_links(e, &mut items).await?;
        self.expand(engine, e, &mut items, &req.expand, who).await?;
        self.redact_conditional(engine, e, &mut items, who).await?;
        for item in &mut items {
            redact(engine, e, item, who);
            if let Some(fields) = &req.fields {
                select_fields(item, fields);
            }
        }
        Ok(Page { items, next, total })
    }

    /// [`Store::list`] as the JSON the API answers with. When nothing is added to or
    /// taken from the records but hidden fields (no `many` fields, `expand`, `fields=`
    /// or fields visible only on some records), rows are written straight to JSON,
    /// without a map per record.
    pub async fn list_json(
        &self,
        engine: &Engine,
        e: &Entity,
        req: &ListRequest,
        who: &Principal,
    ) -> Result<JsonPage, Error> {
        let direct = e.many_fields().next().is_none()
            && req.expand.children.is_empty()
            && req.fields.is_none()
            && engine.access.conditional(&e.name, who).is_empty();
        if !direct {
            let page = self.list(engine, e, req, who).await?;
            return Ok(JsonPage {
                items: serde_json::to_vec(&page.items).map_err(not_json)?,
                next: page.next,
                total: page.total,
            });
        }
        let hidden = if engine.access.enforced {
            engine.access.hidden(&e.name, who)
        } else {
            Vec::new()
        };
        let expensive = req.filter.is_some() || req.search.is_some();
        let (rows, next, total) = super::deadline::armed(
            expensive,
            self.list_rows(engine, e, req, who, Some(&hidden)),
        )
        .await?;
        let Rows::Json { array, .. } = rows else {
            unreachable!("JSON was asked for")
        };
        Ok(JsonPage {
            items: array,
            next,
            total,
        })
    }

    /// The rows of a page (as records, or as JSON without the fields in `json`), the
    /// cursor of the next page and the count.
    async fn list_rows(
        &self,
        engine: &Engine,
        e: &Entity,
        req: &ListRequest,
        who: &Principal,
        json: Option<&[String]>,
    ) -> Result<(Rows, Option<String>, Option<i64>), Error> {
        let dialect = self.dialect();
        let ctx = who.ctx();
        let policy = permitted(engine, e, &Action::List, who)?;
        let heavy = req.search.is_some()
            || req
                .filter
                .as_ref()
                .is_some_and(crate::engine::cond::cost::steps_through_relations);
        let _turn = match heavy {
            true => self.heavy_slot().await,
            false => None,
        };
        let mut q = select(e);
        let mut compiler = Compiler::new(dialect, &ctx);
        let combined = match &req.filter {
            Some(f) => Typed::And(Box::new(policy), Box::new(f.clone())),
            None => policy,
        };
        let filter = (combined != Typed::Const(true)).then(|| compiler.compile(&combined, MAIN));
        if let Some(f) = &filter {
            q.and_where(f.clone());
        }
        let search = req
            .search
            .as_ref()
            .map(|words| search_terms(dialect, engine, e, words, who, &mut compiler));
        match &search {
            // Ranked on SQLite: the index is joined once, and the join matches.
            Some(Search {
                join: Some((sub, extra)),
                ..
            }) if req.relevance => {
                q.join_subquery(
                    JoinType::InnerJoin,
                    sub.clone(),
                    "s",
                    Expr::col(("s".to_string(), "rowid".to_string()))
                        .equals((MAIN.to_string(), "rowid".to_string())),
                );
                if let Some(extra) = extra {
                    q.and_where(extra.clone());
                }
                q.order_by(("s".to_string(), "rank".to_string()), Order::Asc);
            }
            Some(s) => {
                q.and_where(s.matches.clone());
                if req.relevance
                    && let Some(rank) = &s.rank
                {
                    q.order_by_expr(rank.clone(), Order::Asc);
                }
            }
            None => {}
        }
        let offset = (req.relevance && search.is_some()).then_some(req.offset);
        for k in &req.sort {
            let order = if k.desc { Order::Desc } else { Order::Asc };
            let col = (MAIN.to_string(), k.column.name.clone());
            if k.column.name == "id" {
                // Never null: a plain order, which an index ending in `id` serves.
                q.order_by(col, order);
            } else {
                q.order_by_with_nulls(col, order, NullOrdering::Last);
            }
        }
        // After a cursor: the rows past it, then (if those fall short of a page) the
        // rows without the first sort key, which come last.
        let mut nulls = None;
        if let Some(after) = &req.after {
            let keyset = keyset(dialect, e, &req.sort, after);
            if let Some(cond) = keyset.nulls {
                let mut n = q.clone();
                n.and_where(cond);
                nulls = Some(n);
            }
            q.and_where(keyset.seek);
        }
        let limit = req.limit as usize;
        let mut rows = on_pool!(self, pool => {
            let (sql, values) = dialect.build(&q);
            let sql = super::paged(sql, u64::from(req.limit) + 1, offset);
            let mut rows = sqlx::query_with(AssertSqlSafe(sql), values).fetch_all(pool).await?;
            if let Some(n) = &nulls
                && rows.len() <= limit
            {
                self.counted();
                let (sql, values) = dialect.build(n);
                // The same literal limit as the first read (one cached statement).
                let sql = super::paged(sql, u64::from(req.limit) + 1, None);
                rows.extend(sqlx::query_with(AssertSqlSafe(sql), values).fetch_all(pool).await?);
                rows.truncate(limit + 1);
            }
            match json {
                None => Rows::Records(rows.iter().map(|r| record_from_row(e, r)).collect::<Result<Vec<_>, _>>()?),
                Some(hidden) => {
                    let mut array = Vec::with_capacity(64 + 256 * rows.len().min(limit));
                    array.push(b'[');
                    for (n, row) in rows.iter().take(limit).enumerate() {
                        if n > 0 {
                            array.push(b',');
                        }
                        write_record(e, row, hidden, &mut array)?;
                    }
                    array.push(b']');
                    let last = match rows.len() > limit {
                        true => rows.get(limit.saturating_sub(1)).map(|r| record_from_row(e, r)).transpose()?,
                        false => None,
                    };
                    Rows::Json { array, last }
                }
            }
        });
        let more = match &mut rows {
            Rows::Records(items) => {
                let more = items.len() > limit;
                items.truncate(limit);
                more
            }
            // `limit` is at least 1: the last record of the page is there.
            Rows::Json { last, .. } => last.is_some(),
        };
        let last = match &rows {
            Rows::Records(items) => items.last(),
            Rows::Json { last, .. } => last.as_ref(),
        };
        let next = if more {
            if req.relevance {
                Some(
                    Cursor {
                        sort: req.cursor_key(),
                        keys: Vec::new(),
                        offset: Some(req.offset + u64::from(req.limit)),
                    }
                    .encode(),
                )
            } else {
                last.map(|r| Cursor::after(r, &req.cursor_key(), &req.sort).encode())
            }
        } else {
            None
        };
        let total = if req.count {
            let mut c = Query::select();
            c.from_as(e.name.clone(), MAIN)
                .expr(Expr::col(Asterisk).count());
            if let Some(f) = filter {
                c.and_where(f);
            }
            if let Some(search) = search {
                c.and_where(search.matches);
            }
            Some(on_pool!(self, pool => {
                let (sql, values) = dialect.build(&c);
                sqlx::query_scalar_with::<_, i64, _>(AssertSqlSafe(sql), values).fetch_one(pool).await?
            }))
        } else {
            None
        };
        Ok((rows, next, total))
    }

    /// One record, as stored.
    pub async fn get(&self, e: &Entity, id: Uuid) -> Result<Record, Error> {
        self.get_where(e, id, &Typed::Const(true), &Ctx::now())
            .await
    }

    /// One record, if it satisfies `cond`.
    pub(crate) async fn get_where(
        &self,
        e: &Entity,
        id: Uuid,
        cond: &Typed,
        ctx: &Ctx,
    ) -> Result<Record, Error> {
        let dialect = self.dialect();
        let mut q = select(e);
        q.and_where(main_col("id").eq(dialect.uuid(id)));
        if *cond != Typed::Const(true) {
            q.and_where(Compiler::new(dialect, ctx).compile(cond, MAIN));
        }
        let rec = on_pool!(self, pool => {
            let (sql, values) = dialect.build(&q);
            match sqlx::query_with(AssertSqlSafe(sql), values).fetch_optional(pool).await? {
                Some(row) => record_from_row(e, &row)?,
                None => return Err(Error::NotFound),
            }
        });
        let mut items = vec![rec];
        self.load_links(e, &mut items).await?;
        items.pop().ok_or(Error::NotFound)
    }

    /// One record with `expand` and `fields` applied.
    pub async fn get_with(
        &self,
        engine: &Engine,
        e: &Entity,
        id: Uuid,
        req: &GetRequest,
        who: &Principal,
    ) -> Result<Record, Error> {
        let cond = match engine.access.decide(&e.name, &Action::Read, who) {
            Decision::Deny => return Err(Error::NotFound),
            Decision::Allow(c) => c,
        };
        let rec = self.get_where(e, id, &cond, &who.ctx()).await?;
        let mut items = vec![rec];
        self.expand(engine, e, &mut items, &req.expand, who).await?;
        self.redact_conditional(engine, e, &mut items, who).await?;
        let mut rec = items.pop().ok_or(Error::NotFound)?;
        redact(engine, e, &mut rec, who);
        if let Some(fields) = &req.fields {
            select_fields(&mut rec, fields);
        }
        Ok(rec)
    }

    /// Fills the `many` fields of records: one query per field, whatever the number of records.
    pub(crate) async fn load_links(&self, e: &Entity, items: &mut [Record]) -> Result<(), Error> {
        if items.is_empty() {
            return Ok(());
        }
        let dialect = self.dialect();
        let ids: Vec<Uuid> = items.iter().filter_map(record_id).collect();
        for f in e.many_fields() {
            let mut q = Query::select();
            q.from(e.join_table(f))
                .column("source_id")
                .column("target_id")
                .and_where(Expr::col("source_id").is_in(ids.iter().map(|id| dialect.uuid(*id))))
                .order_by("source_id", Order::Asc)
                .order_by("target_id", Order::Asc);
            let pairs: Vec<(String, String)> = on_pool!(self, pool => {
                let (sql, values) = dialect.build(&q);
                let rows = sqlx::query_with(AssertSqlSafe(sql), values).fetch_all(pool).await?;
                rows.iter()
                    .map(|r| Ok((r.uuid_text(0)?, r.uuid_text(1)?)))
                    .collect::<Result<Vec<_>, sqlx::Error>>()?
            });
            let mut by_source: HashMap<String, Vec<Value>> = HashMap::new();
            for (s, t) in pairs {
                by_source.entry(s).or_default().push(Value::String(t));
            }
            for rec in items.iter_mut() {
                let key = rec
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let links = by_source.remove(&key).unwrap_or_default();
                rec.insert(f.name.clone(), Value::Array(links));
            }
        }
        Ok(())
    }
}
