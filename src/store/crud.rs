//! Reads and writes of records.

use std::collections::HashMap;

use sea_query::{
    Asterisk, Expr, ExprTrait, JoinType, NullOrdering, Order, PostgresQueryBuilder, Query,
    SelectStatement, SqliteQueryBuilder,
};
use sea_query_sqlx::SqlxBinder;
use serde_json::{Map, Value};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::filter::Compiler;
use super::values::{DecodeJson, cell_value, datetime_value, uuid_value, write_value};
use super::{Dialect, Error, Holder, MissingTarget, Pool, Store, ddl};
use crate::engine::access::{Action, Decision, Principal};
use crate::engine::cond::check::{Ctx, Typed};
use crate::engine::query::{Cursor, GetRequest, ListRequest, SortKey, select_fields};
use crate::engine::{Cell, Engine, Entity, Input, input};
use crate::spec::{FieldType, OnDelete};

/// A record as the API returns it: system fields, then fields in declaration order.
pub type Record = Map<String, Value>;

/// A page of a list.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Record>,
    /// The cursor of the next page.
    pub next: Option<String>,
    /// The number of records matching the filter, when asked for.
    pub total: Option<i64>,
}

/// A page of a list with its records as the JSON array the API answers with.
#[derive(Debug)]
pub struct JsonPage {
    /// A JSON array, written by serde_json (not checked again).
    pub items: Vec<u8>,
    pub next: Option<String>,
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

/// Rows strictly after the cursor in the order of `sort` (NULLs last in both
/// directions, as the ORDER BY puts them).
fn keyset(dialect: Dialect, sort: &[SortKey], after: &[Cell]) -> Expr {
    let col = |k: &SortKey| Expr::col(("t0".to_string(), k.column.name.clone()));
    let mut alternatives: Vec<Expr> = Vec::new();
    let mut equal: Vec<Expr> = Vec::new();
    for (k, cell) in sort.iter().zip(after) {
        let c = col(k);
        if *cell != Cell::Null {
            let v = Expr::val(cell_value(dialect, k.column.ty, k.column.scale, cell));
            let beyond = if k.desc {
                c.clone().lt(v.clone())
            } else {
                c.clone().gt(v.clone())
            };
            let beyond = if k.column.name == "id" {
                beyond
            } else {
                beyond.or(c.clone().is_null())
            };
            let mut term = equal.clone();
            term.push(beyond);
            alternatives.push(all(term));
            equal.push(c.eq(v));
        } else {
            equal.push(c.is_null());
        }
    }
    alternatives
        .into_iter()
        .reduce(|a, b| a.or(b))
        .unwrap_or_else(|| Expr::cust("1 = 0"))
}

/// At most this many search fields visible only where a condition holds
/// (`read.where`) take part in a caller's `q`, in declaration order; the others count
/// as hidden (fail closed). Each adds a term per subset of them.
pub const MAX_CONDITIONAL_SEARCH_FIELDS: usize = 3;

/// Full-text search as one caller may use it.
struct Search {
    /// The condition that a record matches the words through fields the caller may
    /// read on that record (for the count, and for the page when there is no join).
    matches: Expr,
    /// SQLite's relevance order: the full-text index joined once (`rowid`,
    /// `rank`), aliased `s`; the page then needs `extra` in its WHERE as well.
    join: Option<(SelectStatement, Option<Expr>)>,
    /// PostgreSQL's relevance order (best first, ascending).
    rank: Option<Expr>,
}

/// The search fields of `e` as `who` may search them: those visible on every
/// record, and those visible only where a condition holds (with the condition).
fn searchable(engine: &Engine, e: &Entity, who: &Principal) -> (Vec<String>, Vec<(String, Typed)>) {
    if !engine.access.enforced || who.system {
        return (e.search.clone(), Vec::new());
    }
    let hidden = engine.access.hidden(&e.name, who);
    let conditional = engine.access.conditional(&e.name, who);
    let mut visible = Vec::new();
    let mut some = Vec::new();
    for f in &e.search {
        if hidden.contains(f) {
            continue;
        }
        match conditional.iter().find(|(c, _)| c == f) {
            Some((_, cond)) => {
                if some.len() < MAX_CONDITIONAL_SEARCH_FIELDS {
                    some.push((f.clone(), cond.clone()));
                }
            }
            None => visible.push(f.clone()),
        }
    }
    (visible, some)
}

/// The FTS5 query that every word of `words` occurs in the columns `cols` (all of the
/// index's columns when `cols` is every search field). Each word is a quoted string,
/// so FTS5 operators and column names in the input are read as text.
fn fts_query(e: &Entity, cols: &[String], words: &str) -> String {
    // A "word" without letters or digits has no token: it is left out, as
    // PostgreSQL's `plainto_tsquery` leaves it out (nothing left matches nothing).
    let words: Vec<String> = words
        .split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    let words = match words.is_empty() {
        true => "\"\"".to_string(),
        false => words.join(" "),
    };
    if cols.len() == e.search.len() {
        words
    } else {
        // Column names come from the validated model; quoted all the same.
        let cols: Vec<String> = cols.iter().map(|c| super::quote(c)).collect();
        format!("{{{}}} : ({words})", cols.join(" "))
    }
}

/// Full-text search for `who`: `words` match only through the search fields the
/// caller may read (on each record, for fields visible under a condition), and the
/// relevance comes from the fields every record shows this caller.
fn search_terms(
    dialect: Dialect,
    engine: &Engine,
    e: &Entity,
    words: &str,
    who: &Principal,
    compiler: &mut Compiler<'_>,
) -> Search {
    let (visible, conditional) = searchable(engine, e, who);
    // Every subset of the conditional fields: the record matches through the
    // visible fields plus those of the subset whose conditions all hold on it.
    let mut alternatives: Vec<(Vec<String>, Vec<Typed>)> = Vec::new();
    for mask in 0u32..(1 << conditional.len()) {
        let mut cols = Vec::new();
        let mut conds = Vec::new();
        for f in &e.search {
            if visible.contains(f) {
                cols.push(f.clone());
            } else if let Some(n) = conditional.iter().position(|(c, _)| c == f)
                && mask & (1 << n) != 0
            {
                cols.push(f.clone());
                conds.push(conditional[n].1.clone());
            }
        }
        if !cols.is_empty() {
            alternatives.push((cols, conds));
        }
    }
    if alternatives.is_empty() {
        // Nothing this caller may search: no record matches.
        return Search {
            matches: Expr::cust("1 = 0"),
            join: None,
            rank: None,
        };
    }
    let guarded = |compiler: &mut Compiler<'_>, conds: &[Typed], m: Expr| {
        let mut terms: Vec<Expr> = conds.iter().map(|c| compiler.compile(c, "t0")).collect();
        terms.push(m);
        all(terms)
    };
    match dialect {
        Dialect::Sqlite => {
            let table = ddl::fts_table(&e.name);
            let fts = super::quote(&table);
            let mut matches = Vec::new();
            for (cols, conds) in &alternatives {
                let m = Expr::cust_with_values(
                    format!("\"t0\".rowid IN (SELECT rowid FROM {fts} WHERE {fts} MATCH ?)"),
                    [fts_query(e, cols, words)],
                );
                matches.push(guarded(compiler, conds, m));
            }
            let matches = any(matches);
            // The widest match (every field the caller may read somewhere) joins the
            // index once; the rank weighs only the fields visible on every record.
            let widest = alternatives
                .last()
                .map(|(c, _)| c.clone())
                .unwrap_or_default();
            let weights: Vec<&str> = e
                .search
                .iter()
                .map(|f| if visible.contains(f) { "1.0" } else { "0.0" })
                .collect();
            let mut sub = Query::select();
            sub.expr_as(Expr::cust("rowid"), "rowid")
                .expr_as(
                    Expr::cust(format!("bm25({fts}, {})", weights.join(", "))),
                    "rank",
                )
                .from(table)
                .and_where(Expr::cust_with_values(
                    format!("{fts} MATCH ?"),
                    [fts_query(e, &widest, words)],
                ));
            // With one alternative the join is the whole match.
            let extra = (alternatives.len() > 1).then(|| matches.clone());
            Search {
                matches,
                join: Some((sub, extra)),
                rank: None,
            }
        }
        Dialect::Postgres => {
            // The whole document's match is what the GIN index serves; the match on
            // the fields the caller may read narrows it down.
            let indexed = Expr::cust_with_values(
                format!(
                    "{} @@ plainto_tsquery('simple', $1)",
                    ddl::pg_document(e, Some("t0"))
                ),
                [words.to_string()],
            );
            let everything = visible.len() == e.search.len();
            let mut narrowed = Vec::new();
            if !everything {
                for (cols, conds) in &alternatives {
                    let m = Expr::cust_with_values(
                        format!(
                            "{} @@ plainto_tsquery('simple', $1)",
                            ddl::pg_document_of(cols, Some("t0"))
                        ),
                        [words.to_string()],
                    );
                    narrowed.push(guarded(compiler, conds, m));
                }
            }
            let matches = match narrowed.is_empty() {
                true => indexed,
                false => indexed.and(any(narrowed)),
            };
            let rank = Expr::cust_with_values(
                format!(
                    "-ts_rank({}, plainto_tsquery('simple', $1))",
                    ddl::pg_document_of(&visible, Some("t0"))
                ),
                [words.to_string()],
            );
            Search {
                matches,
                join: None,
                rank: Some(rank),
            }
        }
    }
}

fn any(terms: Vec<Expr>) -> Expr {
    terms
        .into_iter()
        .reduce(|a, b| a.or(b))
        .unwrap_or_else(|| Expr::cust("1 = 0"))
}

fn all(terms: Vec<Expr>) -> Expr {
    terms
        .into_iter()
        .reduce(|a, b| a.and(b))
        .unwrap_or_else(|| Expr::cust("1 = 1"))
}

macro_rules! on_pool {
    ($store:expr, $pool:ident, $qb:ident => $body:expr) => {{
        $store.counted();
        match &$store.pool {
            Pool::Sqlite($pool) => {
                let $qb = || SqliteQueryBuilder;
                $body
            }
            Pool::Postgres($pool) => {
                let $qb = || PostgresQueryBuilder;
                $body
            }
        }
    }};
}
pub(crate) use on_pool;

/// A batch's open transaction.
pub(crate) enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// Runs `$body` in a transaction `$tx`: a new one on the pool, or a savepoint of a
/// batch's transaction (so that a failed operation can be inspected, and the batch
/// still rolls back as a whole).
macro_rules! in_tx {
    ($store:expr, $batch:expr, $tx:ident, $qb:ident => $body:expr) => {{
        $store.counted();
        match $batch {
            None => match &$store.pool {
                Pool::Sqlite(pool) => {
                    let $qb = || SqliteQueryBuilder;
                    let mut $tx = $crate::store::crud::begin_immediate(pool).await?;
                    $body
                }
                Pool::Postgres(pool) => {
                    let $qb = || PostgresQueryBuilder;
                    let mut $tx = pool.begin_with(AssertSqlSafe("BEGIN")).await?;
                    $body
                }
            },
            Some(Tx::Sqlite(outer)) => {
                let $qb = || SqliteQueryBuilder;
                let mut $tx = sqlx::Acquire::begin(&mut *outer).await?;
                $body
            }
            Some(Tx::Postgres(outer)) => {
                let $qb = || PostgresQueryBuilder;
                let mut $tx = sqlx::Acquire::begin(&mut *outer).await?;
                $body
            }
        }
    }};
}
pub(crate) use in_tx;

const SYSTEM_COLUMNS: [&str; 4] = ["id", "created_at", "updated_at", "version"];

/// The columns a record is read from, in the order [`record_from_row`] expects.
pub(crate) fn select_columns(e: &Entity) -> Vec<String> {
    SYSTEM_COLUMNS
        .iter()
        .map(|s| s.to_string())
        .chain(e.column_fields().map(|f| f.name.clone()))
        .collect()
}

pub(crate) fn select(e: &Entity) -> SelectStatement {
    let mut q = Query::select();
    q.from_as(e.name.clone(), "t0");
    for c in select_columns(e) {
        q.column(c);
    }
    q
}

pub(crate) fn record_from_row<R: DecodeJson>(e: &Entity, row: &R) -> Result<Record, sqlx::Error> {
    let mut rec = Map::with_capacity(4 + e.fields.len());
    rec.insert("id".into(), Value::String(row.uuid_text(0)?));
    rec.insert("created_at".into(), Value::String(row.datetime_text(1)?));
    rec.insert("updated_at".into(), Value::String(row.datetime_text(2)?));
    rec.insert("version".into(), Value::from(row.int(3)?));
    let mut col = 4;
    for f in &e.fields {
        match f.ty {
            FieldType::Inverse => {}
            FieldType::Many => {
                rec.insert(f.name.clone(), Value::Array(Vec::new()));
            }
            _ => {
                rec.insert(f.name.clone(), row.json(col, f.ty, f.scale)?);
                col += 1;
            }
        }
    }
    Ok(rec)
}

/// Writes the record of `row` as a JSON object, without the `hidden` fields: the
/// same JSON as [`record_from_row`] (for an entity without `many` fields), without
/// building the map.
pub(crate) fn write_record<R: DecodeJson>(
    e: &Entity,
    row: &R,
    hidden: &[String],
    out: &mut Vec<u8>,
) -> Result<(), sqlx::Error> {
    let mut first = true;
    let mut key = |out: &mut Vec<u8>, name: &str| -> Result<bool, sqlx::Error> {
        if hidden.iter().any(|h| h == name) {
            return Ok(false);
        }
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        write_value(out, name)?;
        out.push(b':');
        Ok(true)
    };
    out.push(b'{');
    if key(out, "id")? {
        write_value(out, &row.uuid_text(0)?)?;
    }
    if key(out, "created_at")? {
        write_value(out, &row.datetime_text(1)?)?;
    }
    if key(out, "updated_at")? {
        write_value(out, &row.datetime_text(2)?)?;
    }
    if key(out, "version")? {
        write_value(out, &row.int(3)?)?;
    }
    for (col, f) in (4..).zip(e.column_fields()) {
        if key(out, &f.name)? {
            row.write_json(col, f.ty, f.scale, out)?;
        }
    }
    out.push(b'}');
    Ok(())
}

/// A page that could not be written as JSON (it cannot happen: every value comes
/// from a JSON value or a string).
fn not_json(err: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Database(sqlx::Error::Decode(Box::new(err)))
}

/// How often a one-statement write is retried after SQLite's `SQLITE_BUSY_SNAPSHOT`.
const SNAPSHOT_RETRIES: u32 = 20;

/// SQLite's `SQLITE_BUSY_SNAPSHOT` (517): an autocommit write began on a snapshot
/// that another connection's commit made stale, so it could not take the write
/// lock, and changed nothing. The busy timeout does not cover it; running the
/// statement again, on a fresh snapshot, is safe.
fn stale_snapshot(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| code == "517")
}

/// SQLite's plain `SQLITE_BUSY` (5) or `SQLITE_BUSY_SNAPSHOT` (517), returned in
/// less time than the busy timeout would have waited: SQLite did not wait for the
/// lock (it does not when the connection already reads, or the snapshot is stale),
/// and the write changed nothing. CI's contract tests met it a few times, right
/// after a reload, from `BEGIN IMMEDIATE` and from one-statement writes; the cause
/// is not found yet. Trying again a moment later, maybe on another connection,
/// is safe.
fn busy_at_once(err: &sqlx::Error, took: std::time::Duration) -> bool {
    took < std::time::Duration::from_secs(1)
        && err
            .as_database_error()
            .and_then(|db| db.code())
            .is_some_and(|code| code == "5" || code == "517")
}

/// A pause before trying a busy SQLite write again: 1 ms, then 2, … (at most
/// [`SNAPSHOT_RETRIES`] tries, about 0.2 s in all).
async fn busy_pause(tries: u32) {
    tokio::time::sleep(std::time::Duration::from_millis(u64::from(tries))).await;
}

/// `BEGIN IMMEDIATE` on a pool connection, again after [`busy_at_once`].
pub(crate) async fn begin_immediate(
    pool: &sqlx::SqlitePool,
) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
    let mut tries = 0;
    loop {
        let started = std::time::Instant::now();
        match pool.begin_with(AssertSqlSafe("BEGIN IMMEDIATE")).await {
            Err(err) if busy_at_once(&err, started.elapsed()) && tries < SNAPSHOT_RETRIES => {
                tries += 1;
                busy_pause(tries).await;
            }
            other => return other,
        }
    }
}

/// Runs statement `$q` once on `$pool` with sqlx's `$run` (`fetch_one`, `execute`…),
/// again after a stale SQLite snapshot or [`busy_at_once`] (up to
/// [`SNAPSHOT_RETRIES`] times).
macro_rules! one_statement {
    ($q:expr, $qb:ident, $pool:expr, $run:ident) => {{
        let mut tries = 0;
        loop {
            let (sql, vals) = $q.build_sqlx($qb());
            let started = std::time::Instant::now();
            match sqlx::query_with(AssertSqlSafe(sql), vals).$run($pool).await {
                Err(err) if stale_snapshot(&err) && tries < SNAPSHOT_RETRIES => tries += 1,
                Err(err) if busy_at_once(&err, started.elapsed()) && tries < SNAPSHOT_RETRIES => {
                    tries += 1;
                    busy_pause(tries).await;
                }
                other => break other,
            }
        }
    }};
}

fn record_id(rec: &Record) -> Option<Uuid> {
    rec.get("id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
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
        let filter = (combined != Typed::Const(true)).then(|| compiler.compile(&combined, "t0"));
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
                        .equals(("t0".to_string(), "rowid".to_string())),
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
        if let Some(after) = &req.after {
            q.and_where(keyset(dialect, &req.sort, after));
        }
        let offset = (req.relevance && search.is_some()).then_some(req.offset);
        for k in &req.sort {
            let order = if k.desc { Order::Desc } else { Order::Asc };
            let col = ("t0".to_string(), k.column.name.clone());
            if k.column.name == "id" {
                // Never null: a plain order, which an index ending in `id` serves.
                q.order_by(col, order);
            } else {
                q.order_by_with_nulls(col, order, NullOrdering::Last);
            }
        }
        let limit = req.limit as usize;
        let mut rows = on_pool!(self, pool, qb => {
            let (sql, values) = q.build_sqlx(qb());
            let sql = super::paged(sql, u64::from(req.limit) + 1, offset);
            let rows = sqlx::query_with(AssertSqlSafe(sql), values).fetch_all(pool).await?;
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
            c.from_as(e.name.clone(), "t0")
                .expr(Expr::col(Asterisk).count());
            if let Some(f) = filter {
                c.and_where(f);
            }
            if let Some(search) = search {
                c.and_where(search.matches);
            }
            Some(on_pool!(self, pool, qb => {
                let (sql, values) = c.build_sqlx(qb());
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
        q.and_where(Expr::col(("t0".to_string(), "id".to_string())).eq(uuid_value(dialect, id)));
        if *cond != Typed::Const(true) {
            q.and_where(Compiler::new(dialect, ctx).compile(cond, "t0"));
        }
        let rec = on_pool!(self, pool, qb => {
            let (sql, values) = q.build_sqlx(qb());
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
            q.from_as(e.name.clone(), "t0")
                .column(("t0".to_string(), "id".to_string()))
                .and_where(
                    Expr::col(("t0".to_string(), "id".to_string()))
                        .is_in(ids.iter().map(|id| uuid_value(dialect, *id))),
                )
                .and_where(Compiler::new(dialect, &ctx).compile(&cond, "t0"));
            let visible: Vec<String> = on_pool!(self, pool, qb => {
                let (sql, values) = q.build_sqlx(qb());
                let rows = sqlx::query_with(AssertSqlSafe(sql), values).fetch_all(pool).await?;
                rows.iter().map(|r| r.uuid_text(0)).collect::<Result<Vec<_>, _>>()?
            });
            for item in items.iter_mut() {
                let id = item.get("id").and_then(Value::as_str).unwrap_or_default();
                if !visible.iter().any(|v| v == id) {
                    item.shift_remove(&field);
                }
            }
        }
        Ok(())
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
                .and_where(
                    Expr::col("source_id").is_in(ids.iter().map(|id| uuid_value(dialect, *id))),
                )
                .order_by("source_id", Order::Asc)
                .order_by("target_id", Order::Asc);
            let pairs: Vec<(String, String)> = on_pool!(self, pool, qb => {
                let (sql, values) = q.build_sqlx(qb());
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

    /// Inserts a record (and its links) in one transaction.
    pub async fn create(
        &self,
        engine: &Engine,
        e: &Entity,
        input: &Input,
        who: &Principal,
    ) -> Result<Record, Error> {
        self.create_in(None, engine, e, input, who).await
    }

    pub(crate) async fn create_in(
        &self,
        batch: Option<&mut Tx>,
        engine: &Engine,
        e: &Entity,
        input: &Input,
        who: &Principal,
    ) -> Result<Record, Error> {
        let dialect = self.dialect();
        let ctx = who.ctx();
        let allowed = permitted(engine, e, &Action::Create, who)?;
        let id = Uuid::now_v7();
        let check =
            (allowed != Typed::Const(true)).then(|| visible(dialect, e, id, &allowed, &ctx));
        let now = input::now();
        let mut columns: Vec<String> = SYSTEM_COLUMNS.iter().map(|s| s.to_string()).collect();
        let mut values = vec![
            uuid_value(dialect, id).into(),
            datetime_value(dialect, now).into(),
            datetime_value(dialect, now).into(),
            Expr::val(1i64),
        ];
        for (index, cell) in &input.values {
            let f = &e.fields[*index];
            if f.has_column() {
                columns.push(f.name.clone());
                values.push(Expr::val(cell_value(dialect, f.ty, f.scale, cell)));
            }
        }
        let mut q = Query::insert();
        q.into_table(e.name.clone()).columns(columns);
        q.values(values)
            .map_err(|err| Error::Database(sqlx::Error::Protocol(err.to_string())))?;
        q.returning(Query::returning().columns(select_columns(e)));
        let links = link_statements(dialect, e, id, input, false);
        // Fields this caller writes only where a condition holds: on create, the
        // condition must hold for the new record, checked in the same transaction.
        let write_conds = engine.access.write_conditions(
            e,
            input.values.iter().map(|(i, _)| e.fields[*i].name.as_str()),
            who,
        );
        let write_checks: Vec<(&str, &str, SelectStatement)> = write_conds
            .iter()
            .map(|w| {
                (
                    w.field.as_str(),
                    w.text.as_str(),
                    visible(dialect, e, id, &w.cond, &ctx),
                )
            })
            .collect();

        // One statement when nothing else is written or checked: the database's
        // trigger writes the change log in the same statement.
        let result: Result<Result<Record, Error>, sqlx::Error> = if batch.is_none()
            && links.is_empty()
            && check.is_none()
            && write_checks.is_empty()
        {
            async {
                on_pool!(self, pool, qb => {
                    let row = one_statement!(q, qb, pool, fetch_one)?;
                    Ok(Ok(record_from_row(e, &row)?))
                })
            }
            .await
        } else {
            async { in_tx!(self, batch, tx, qb => {
            let (sql, vals) = q.build_sqlx(qb());
            let row = match sqlx::query_with(AssertSqlSafe(sql), vals).fetch_one(&mut *tx).await {
                Ok(row) => row,
                Err(err) => {
                    tx.rollback().await?;
                    return Err(err);
                }
            };
            let rec = record_from_row(e, &row)?;
            for stmt in &links {
                let (sql, vals) = stmt.build_sqlx(qb());
                sqlx::query_with(AssertSqlSafe(sql), vals).execute(&mut *tx).await?;
            }
            if let Some(check) = &check {
                let (sql, vals) = check.build_sqlx(qb());
                if sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(&mut *tx).await?.is_none() {
                    tx.rollback().await?;
                    return Ok(Err(Error::Forbidden(format!(
                        "your policy does not let you create this {}", e.name
                    ))));
                }
            }
            for (field, text, check) in &write_checks {
                let (sql, vals) = check.build_sqlx(qb());
                if sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(&mut *tx).await?.is_none() {
                    tx.rollback().await?;
                    return Ok(Err(Error::Invalid(vec![input::FieldError::new(
                        format!("/{field}"),
                        format!(
                            "you may not set `{field}` on this {}: your policy lets you write it only where `{text}` (for a new record: where it holds for the record as created)",
                            e.name
                        ),
                    )])));
                }
            }
            tx.commit().await?;
            Ok(Ok(rec))
        })}.await
        };
        let mut rec = match result {
            Ok(inner) => inner?,
            Err(err) => {
                let err = self.explain_write_error(engine, e, input, err).await;
                // The database refuses a duplicate before the create rule is checked.
                // A caller whose create rule has a condition learns of the duplicate
                // only when they may read the record it duplicates; otherwise the
                // answer is the create rule's refusal, so that a create the policy
                // would refuse cannot ask whether a hidden record holds these values.
                if let (Error::Unique { fields }, Some(_)) = (&err, &check)
                    && !self
                        .duplicate_readable(engine, e, input, fields, who)
                        .await?
                {
                    return Err(Error::Forbidden(format!(
                        "your policy does not let you create this {}",
                        e.name
                    )));
                }
                return Err(err);
            }
        };
        fill_links_from_input(e, input, &mut rec);
        self.as_seen_by(engine, e, rec, who).await
    }

    /// Whether `who` may read a stored record with the values `input` gives to the
    /// unique `fields` (the record a refused create would have duplicated), and
    /// those fields of it.
    async fn duplicate_readable(
        &self,
        engine: &Engine,
        e: &Entity,
        input: &Input,
        fields: &[String],
        who: &Principal,
    ) -> Result<bool, Error> {
        let Decision::Allow(read) = engine.access.decide(&e.name, &Action::Read, who) else {
            return Ok(false);
        };
        // A duplicate in a field the caller may not see would tell them its value.
        let hidden = engine.access.hidden_everywhere(who);
        if fields.is_empty()
            || fields
                .iter()
                .any(|f| hidden.iter().any(|(he, hf)| *he == e.name && hf == f))
        {
            return Ok(false);
        }
        let dialect = self.dialect();
        let ctx = who.ctx();
        let mut q = Query::select();
        q.expr(Expr::val(1i64)).from_as(e.name.clone(), "t0");
        for name in fields {
            let given = input
                .values
                .iter()
                .find(|(i, _)| e.fields[*i].name == *name);
            let Some((i, cell)) = given else {
                return Ok(false);
            };
            let f = &e.fields[*i];
            q.and_where(
                Expr::col(("t0".to_string(), name.clone()))
                    .eq(Expr::val(cell_value(dialect, f.ty, f.scale, cell))),
            );
        }
        if read != Typed::Const(true) {
            q.and_where(Compiler::new(dialect, &ctx).compile(&read, "t0"));
        }
        Ok(on_pool!(self, pool, qb => {
            let (sql, values) = q.build_sqlx(qb());
            sqlx::query_with(AssertSqlSafe(sql), values).fetch_optional(pool).await?.is_some()
        }))
    }

    /// Changes the given fields; with `if_match`, only if the version is still that.
    pub async fn update(
        &self,
        engine: &Engine,
        e: &Entity,
        id: Uuid,
        input: &Input,
        if_match: Option<i64>,
        who: &Principal,
    ) -> Result<Record, Error> {
        self.update_in(None, engine, e, id, input, if_match, who)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn update_in(
        &self,
        batch: Option<&mut Tx>,
        engine: &Engine,
        e: &Entity,
        id: Uuid,
        input: &Input,
        if_match: Option<i64>,
        who: &Principal,
    ) -> Result<Record, Error> {
        let dialect = self.dialect();
        let ctx = who.ctx();
        let read = match engine.access.decide(&e.name, &Action::Read, who) {
            Decision::Deny => return Err(Error::NotFound),
            Decision::Allow(c) => c,
        };
        let allowed = match engine.access.decide(&e.name, &Action::Update, who) {
            Decision::Deny => Typed::Const(false),
            Decision::Allow(c) => c,
        };
        let now = input::now();
        let mut q = Query::update();
        q.table(e.name.clone())
            .value("updated_at", datetime_value(dialect, now))
            .value("version", Expr::col("version").add(1i64));
        for (index, cell) in &input.values {
            let f = &e.fields[*index];
            if f.has_column() {
                q.value(f.name.clone(), cell_value(dialect, f.ty, f.scale, cell));
            }
        }
        q.and_where(Expr::col("id").eq(uuid_value(dialect, id)));
        if let Some(v) = if_match {
            q.and_where(Expr::col("version").eq(v));
        }
        // Fields this caller writes only where a condition holds: the conditions join
        // the update rule's, compiled on the UPDATE's own row (qualified by the table's
        // name), so they read the stored row before the change, and PostgreSQL checks
        // them again on the newest version of a row that a concurrent write changed
        // while this one waited for its lock (a subquery would keep its older snapshot).
        let write_conds = engine.access.write_conditions(
            e,
            input.values.iter().map(|(i, _)| e.fields[*i].name.as_str()),
            who,
        );
        let guard = write_conds
            .iter()
            .fold(allowed.clone(), |acc, w| match acc {
                Typed::Const(true) => w.cond.clone(),
                acc => Typed::And(Box::new(acc), Box::new(w.cond.clone())),
            });
        if guard != Typed::Const(true) {
            q.and_where(on_own_row(dialect, e, id, &guard, &ctx));
        }
        // Which write condition refused the change (asked only after a refusal).
        // The update rule first: when it refuses, the answer stays the general one.
        let mut write_checks: Vec<(Option<(&str, &str)>, SelectStatement)> = Vec::new();
        if !write_conds.is_empty() {
            write_checks.push((None, visible(dialect, e, id, &allowed, &ctx)));
        }
        write_checks.extend(write_conds.iter().map(|w| {
            (
                Some((w.field.as_str(), w.text.as_str())),
                visible(dialect, e, id, &w.cond, &ctx),
            )
        }));
        let refused = |field: &str, text: &str| {
            Error::Invalid(vec![input::FieldError::new(
                format!("/{field}"),
                format!(
                    "you may not change `{field}` of this {} now: your policy lets you write it only where `{text}`",
                    e.name
                ),
            )])
        };
        q.returning(Query::returning().columns(select_columns(e)));
        let links = link_statements(dialect, e, id, input, true);
        // Why nothing was updated: invisible (404), stale (412) or not allowed (403).
        let mut current = visible(dialect, e, id, &read, &ctx);
        current.column(("t0".to_string(), "version".to_string()));
        // The row after the change must still be within reach.
        let after =
            (allowed != Typed::Const(true)).then(|| visible(dialect, e, id, &allowed, &ctx));

        // Why nothing was updated, asked after the fact.
        let explain = |version: Option<i64>| match version {
            None => Error::NotFound,
            Some(current) if if_match.is_some_and(|v| v != current) => Error::Stale { current },
            Some(_) => Error::Forbidden(format!("you may not change this {}", e.name)),
        };
        // One statement when nothing else is written or checked: the database's
        // trigger writes the change log, with the old row, in the same statement.
        let result: Result<Result<Record, Error>, sqlx::Error> = if batch.is_none()
            && links.is_empty()
            && after.is_none()
        {
            async {
                on_pool!(self, pool, qb => {
                    let updated = one_statement!(q, qb, pool, fetch_optional)?;
                    match updated {
                        Some(row) => Ok(Ok(record_from_row(e, &row)?)),
                        None => {
                            let (sql, vals) = current.build_sqlx(qb());
                            let found = sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(pool).await?;
                            let version: Option<i64> = match found {
                                Some(row) => Some(row.int(1)?),
                                None => None,
                            };
                            let err = explain(version);
                            if matches!(err, Error::Forbidden(_)) {
                                for (which, check) in &write_checks {
                                    let (sql, vals) = check.build_sqlx(qb());
                                    if sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(pool).await?.is_none() {
                                        return Ok(Err(match which {
                                            Some((field, text)) => refused(field, text),
                                            None => err,
                                        }));
                                    }
                                }
                            }
                            Ok(Err(err))
                        }
                    }
                })
            }
            .await
        } else {
            async { in_tx!(self, batch, tx, qb => {
            let (sql, vals) = q.build_sqlx(qb());
            let updated = match sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(&mut *tx).await {
                Ok(row) => row,
                Err(err) => {
                    tx.rollback().await?;
                    return Err(err);
                }
            };
            let Some(row) = updated else {
                let (sql, vals) = current.build_sqlx(qb());
                let found = sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(&mut *tx).await?;
                let version: Option<i64> = match found {
                    Some(row) => Some(row.int(1)?),
                    None => None,
                };
                let mut err = explain(version);
                if matches!(err, Error::Forbidden(_)) {
                    for (which, check) in &write_checks {
                        let (sql, vals) = check.build_sqlx(qb());
                        if sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(&mut *tx).await?.is_none() {
                            if let Some((field, text)) = which {
                                err = refused(field, text);
                            }
                            break;
                        }
                    }
                }
                tx.rollback().await?;
                return Ok(Err(err));
            };
            let rec = record_from_row(e, &row)?;
            for stmt in &links {
                let (sql, vals) = stmt.build_sqlx(qb());
                sqlx::query_with(AssertSqlSafe(sql), vals).execute(&mut *tx).await?;
            }
            if let Some(after) = &after {
                let (sql, vals) = after.build_sqlx(qb());
                if sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(&mut *tx).await?.is_none() {
                    tx.rollback().await?;
                    return Ok(Err(Error::Forbidden(format!(
                        "this change would take the {} out of your reach", e.name
                    ))));
                }
            }
            tx.commit().await?;
            Ok(Ok(rec))
        })}.await
        };
        let mut rec = match result {
            Ok(inner) => inner?,
            Err(err) => return Err(self.explain_write_error(engine, e, input, err).await),
        };
        // Links not written by this change are read back.
        let given: Vec<&str> = input
            .values
            .iter()
            .filter(|(i, _)| e.fields[*i].ty == FieldType::Many)
            .map(|(i, _)| e.fields[*i].name.as_str())
            .collect();
        if e.many_fields().any(|f| !given.contains(&f.name.as_str())) {
            let mut items = vec![rec];
            self.load_links(e, &mut items).await?;
            rec = items.pop().ok_or(Error::NotFound)?;
        }
        fill_links_from_input(e, input, &mut rec);
        self.as_seen_by(engine, e, rec, who).await
    }

    /// Deletes a record. Restricting references answer [`Error::Restricted`].
    pub async fn delete(
        &self,
        engine: &Engine,
        e: &Entity,
        id: Uuid,
        who: &Principal,
    ) -> Result<(), Error> {
        self.delete_in(None, engine, e, id, who).await
    }

    pub(crate) async fn delete_in(
        &self,
        batch: Option<&mut Tx>,
        engine: &Engine,
        e: &Entity,
        id: Uuid,
        who: &Principal,
    ) -> Result<(), Error> {
        let dialect = self.dialect();
        let ctx = who.ctx();
        let read = match engine.access.decide(&e.name, &Action::Read, who) {
            Decision::Deny => return Err(Error::NotFound),
            Decision::Allow(c) => c,
        };
        let allowed = match engine.access.decide(&e.name, &Action::Delete, who) {
            Decision::Deny => Typed::Const(false),
            Decision::Allow(c) => c,
        };
        let mut q = Query::delete();
        q.from_table(e.name.clone())
            .and_where(Expr::col("id").eq(uuid_value(dialect, id)));
        // On the DELETE's own row (not `id IN (subquery)`), so PostgreSQL checks it
        // again on the newest version of a row that a concurrent write changed.
        if allowed != Typed::Const(true) {
            q.and_where(on_own_row(dialect, e, id, &allowed, &ctx));
        }
        // The database's triggers log the deletion, and what its foreign keys delete
        // or clear along with the record.
        let result: Result<u64, sqlx::Error> = if batch.is_none() {
            async {
                on_pool!(self, pool, qb => {
                    Ok(one_statement!(q, qb, pool, execute)?.rows_affected())
                })
            }
            .await
        } else {
            async {
                in_tx!(self, batch, tx, qb => {
                    let (sql, vals) = q.build_sqlx(qb());
                    match sqlx::query_with(AssertSqlSafe(sql), vals).execute(&mut *tx).await {
                        Ok(done) => {
                            tx.commit().await?;
                            Ok(done.rows_affected())
                        }
                        Err(err) => {
                            tx.rollback().await?;
                            Err(err)
                        }
                    }
                })
            }
            .await
        };
        match result {
            Ok(0) => match self.get_where(e, id, &read, &ctx).await {
                Ok(_) => Err(Error::Forbidden(format!(
                    "you may not delete this {}",
                    e.name
                ))),
                Err(_) => Err(Error::NotFound),
            },
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(db)) if is_fk_violation(db.as_ref()) => {
                Err(self.restricting_holders(engine, e, id).await)
            }
            Err(err) => Err(Error::Database(err)),
        }
    }

    /// Which records keep `id` from being deleted.
    async fn restricting_holders(&self, engine: &Engine, e: &Entity, id: Uuid) -> Error {
        let dialect = self.dialect();
        let mut holders = Vec::new();
        let mut total = 0;
        for r in engine.referrers(&e.name) {
            if r.on_delete != OnDelete::Restrict {
                continue;
            }
            let mut count_q = Query::select();
            count_q
                .from(r.entity.clone())
                .expr(Expr::col(Asterisk).count())
                .and_where(Expr::col(r.field.clone()).eq(uuid_value(dialect, id)));
            let mut ids_q = Query::select();
            ids_q
                .from(r.entity.clone())
                .column("id")
                .and_where(Expr::col(r.field.clone()).eq(uuid_value(dialect, id)))
                .order_by("id", Order::Asc)
                .limit(5);
            let found: Result<(i64, Vec<String>), sqlx::Error> = on_pool!(self, pool, qb => async {
                let (sql, vals) = count_q.build_sqlx(qb());
                let count: i64 = sqlx::query_scalar_with(AssertSqlSafe(sql), vals).fetch_one(pool).await?;
                let (sql, vals) = ids_q.build_sqlx(qb());
                let rows = sqlx::query_with(AssertSqlSafe(sql), vals).fetch_all(pool).await?;
                let ids = rows.iter().map(|r| r.uuid_text(0)).collect::<Result<Vec<_>, _>>()?;
                Ok((count, ids))
            }.await);
            match found {
                Ok((count, ids)) if count > 0 => {
                    total += count;
                    holders.push(Holder {
                        entity: r.entity.clone(),
                        field: r.field.clone(),
                        count,
                        ids,
                    });
                }
                Ok(_) => {}
                Err(err) => return Error::Database(err),
            }
        }
        Error::Restricted { total, holders }
    }

    /// Turns a failed write into a precise error: which unique fields, which missing targets.
    pub(crate) async fn explain_write_error(
        &self,
        _engine: &Engine,
        e: &Entity,
        input: &Input,
        err: sqlx::Error,
    ) -> Error {
        let Some(db) = err.as_database_error() else {
            // Not a constraint: kept as it is (a lost connection must stay one).
            return Error::Database(err);
        };
        if db.is_unique_violation() {
            let groups = ddl::unique_groups(e);
            let fields = db
                .constraint()
                .and_then(|c| groups.iter().find(|(name, _)| name == c))
                .map(|(_, cols)| cols.clone())
                .or_else(|| {
                    // SQLite: "UNIQUE constraint failed: project.client, project.title"
                    let msg = db.message();
                    msg.split_once("failed: ").map(|(_, cols)| {
                        cols.split(", ")
                            .map(|c| c.rsplit('.').next().unwrap_or(c).to_string())
                            .collect()
                    })
                })
                .unwrap_or_default();
            return Error::Unique { fields };
        }
        if is_fk_violation(db) {
            // Find which referenced records are missing.
            let mut missing_all = Vec::new();
            for (index, cell) in &input.values {
                let f = &e.fields[*index];
                let Some(target) = &f.target else { continue };
                let wanted: Vec<Uuid> = match cell {
                    Cell::Uuid(id) if f.ty == FieldType::Ref => vec![*id],
                    Cell::Ids(ids) => ids.clone(),
                    _ => continue,
                };
                match self.missing_ids(target, &wanted).await {
                    Ok(missing) if !missing.is_empty() => missing_all.push(MissingTarget {
                        field: f.name.clone(),
                        target: target.clone(),
                        ids: missing,
                    }),
                    Ok(_) => {}
                    Err(err) => return err,
                }
            }
            if !missing_all.is_empty() {
                return Error::MissingTargets(missing_all);
            }
        }
        Error::Database(err)
    }

    async fn missing_ids(&self, table: &str, wanted: &[Uuid]) -> Result<Vec<String>, Error> {
        let dialect = self.dialect();
        let mut q = Query::select();
        q.from(table.to_string())
            .column("id")
            .and_where(Expr::col("id").is_in(wanted.iter().map(|id| uuid_value(dialect, *id))));
        let found: Vec<String> = on_pool!(self, pool, qb => {
            let (sql, vals) = q.build_sqlx(qb());
            let rows = sqlx::query_with(AssertSqlSafe(sql), vals).fetch_all(pool).await?;
            rows.iter().map(|r| r.uuid_text(0)).collect::<Result<Vec<_>, _>>()?
        });
        Ok(wanted
            .iter()
            .map(|id| id.hyphenated().to_string())
            .filter(|id| !found.contains(id))
            .collect())
    }
}

/// SQLite reports a RESTRICT action with the trigger code (1811), not the
/// foreign-key one, so the message is checked too.
fn is_fk_violation(db: &dyn sqlx::error::DatabaseError) -> bool {
    db.is_foreign_key_violation() || db.message().contains("FOREIGN KEY constraint failed")
}

/// Statements that write the `many` fields given in `input`.
fn link_statements(
    dialect: Dialect,
    e: &Entity,
    id: Uuid,
    input: &Input,
    replace: bool,
) -> Vec<LinkStatement> {
    let mut out = Vec::new();
    for (index, cell) in &input.values {
        let f = &e.fields[*index];
        let Cell::Ids(ids) = cell else { continue };
        if f.ty != FieldType::Many {
            continue;
        }
        let table = e.join_table(f);
        if replace {
            let mut d = Query::delete();
            d.from_table(table.clone())
                .and_where(Expr::col("source_id").eq(uuid_value(dialect, id)));
            out.push(LinkStatement::Delete(d));
        }
        if !ids.is_empty() {
            let mut ins = Query::insert();
            ins.into_table(table).columns(["source_id", "target_id"]);
            for t in ids {
                let _ = ins.values([
                    uuid_value(dialect, id).into(),
                    uuid_value(dialect, *t).into(),
                ]);
            }
            out.push(LinkStatement::Insert(ins));
        }
    }
    out
}

/// `cond` on the row an UPDATE or DELETE of `e` writes, its columns qualified by the
/// table's name: PostgreSQL checks it again on the newest version of a row that a
/// concurrent write changed while this one waited for its lock. (A table named like
/// the compiler's subquery aliases, `t1` or `j2`, would be shadowed by them: it gets
/// the `id IN (SELECT …)` form.)
fn on_own_row(dialect: Dialect, e: &Entity, id: Uuid, cond: &Typed, ctx: &Ctx) -> Expr {
    let clashes = e.name.len() > 1
        && (e.name.starts_with('t') || e.name.starts_with('j'))
        && e.name[1..].bytes().all(|b| b.is_ascii_digit());
    if clashes {
        Expr::col("id").in_subquery(visible(dialect, e, id, cond, ctx))
    } else {
        Compiler::new(dialect, ctx).compile(cond, &e.name)
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
    q.from_as(e.name.clone(), "t0")
        .column(("t0".to_string(), "id".to_string()))
        .and_where(Expr::col(("t0".to_string(), "id".to_string())).eq(uuid_value(dialect, id)));
    if *cond != Typed::Const(true) {
        q.and_where(Compiler::new(dialect, ctx).compile(cond, "t0"));
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
        Decision::Deny => Err(Error::Forbidden(format!(
            "you may not {action} {} records",
            e.name
        ))),
        Decision::Allow(cond) => Ok(cond),
    }
}

/// Whether deleting a record of `entity` makes the database delete or change others.
/// Removes the fields this caller may not read, here and in embedded records.
pub(crate) fn redact(engine: &Engine, e: &Entity, rec: &mut Record, who: &Principal) {
    if !engine.access.enforced {
        return;
    }
    for f in engine.access.hidden(&e.name, who) {
        rec.shift_remove(&f);
    }
    for f in &e.fields {
        let Some(target) = f.target.as_deref().and_then(|t| engine.entity(t)) else {
            continue;
        };
        match rec.get_mut(&f.name) {
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

/// A statement on a link table.
enum LinkStatement {
    Delete(sea_query::DeleteStatement),
    Insert(sea_query::InsertStatement),
}

impl LinkStatement {
    fn build_sqlx<T: sea_query::QueryBuilder>(
        &self,
        qb: T,
    ) -> (String, sea_query_sqlx::SqlxValues) {
        match self {
            LinkStatement::Delete(d) => d.build_sqlx(qb),
            LinkStatement::Insert(i) => i.build_sqlx(qb),
        }
    }
}

fn fill_links_from_input(e: &Entity, input: &Input, rec: &mut Record) {
    for (index, cell) in &input.values {
        let f = &e.fields[*index];
        if let (FieldType::Many, Cell::Ids(ids)) = (f.ty, cell) {
            let mut sorted: Vec<String> = ids.iter().map(|i| i.hyphenated().to_string()).collect();
            sorted.sort();
            rec.insert(
                f.name.clone(),
                Value::Array(sorted.into_iter().map(Value::String).collect()),
            );
        }
    }
}

/// Several writes in one transaction: all of them, or none (`POST /api/batch`). Each
/// operation runs in a savepoint and is checked exactly as if it were sent alone.
/// Dropping a batch without [`Batch::commit`] rolls everything back.
pub struct Batch<'s> {
    store: &'s Store,
    tx: Tx,
    /// A transition of the batch queued webhook deliveries.
    queued: bool,
}

impl Store {
    pub async fn begin_batch(&self) -> Result<Batch<'_>, Error> {
        let tx = match &self.pool {
            Pool::Sqlite(p) => Tx::Sqlite(begin_immediate(p).await?),
            Pool::Postgres(p) => Tx::Postgres(p.begin().await?),
        };
        Ok(Batch {
            store: self,
            tx,
            queued: false,
        })
    }
}

impl Batch<'_> {
    pub async fn create(
        &mut self,
        engine: &Engine,
        e: &Entity,
        input: &Input,
        who: &Principal,
    ) -> Result<Record, Error> {
        self.store
            .create_in(Some(&mut self.tx), engine, e, input, who)
            .await
    }

    pub async fn update(
        &mut self,
        engine: &Engine,
        e: &Entity,
        id: Uuid,
        input: &Input,
        if_match: Option<i64>,
        who: &Principal,
    ) -> Result<Record, Error> {
        self.store
            .update_in(Some(&mut self.tx), engine, e, id, input, if_match, who)
            .await
    }

    pub async fn delete(
        &mut self,
        engine: &Engine,
        e: &Entity,
        id: Uuid,
        who: &Principal,
    ) -> Result<(), Error> {
        self.store
            .delete_in(Some(&mut self.tx), engine, e, id, who)
            .await
    }

    pub async fn transition(
        &mut self,
        engine: &Engine,
        req: &crate::engine::transition::Request<'_>,
        if_match: Option<i64>,
    ) -> Result<super::Fired, Error> {
        let fired = self
            .store
            .transition_in(Some(&mut self.tx), engine, req, if_match)
            .await?;
        self.queued |= fired.is_ok() && !req.transition.effects.is_empty();
        Ok(fired)
    }

    pub async fn commit(self) -> Result<(), Error> {
        match self.tx {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        if self.queued {
            self.store.wake_outbox();
        }
        Ok(())
    }
}
