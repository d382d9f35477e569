//! Records with their expansions as JSON built by the database: one SQL expression per
//! record, evaluated in the statement that reads the page (or the record), whose text
//! is the record as the API answers it — `expand` member, field read rules, caps and
//! `fields=` included. No map per record and no round trip per expanded relation.
//!
//! The reference is the record path (`Store::list` / `Store::get_with`: rows decoded
//! into maps, one query per expanded relation, then [`super::access::redact`] and
//! [`select_fields`](crate::engine::query::select_fields)); this path answers the
//! same bytes (`tests/json_pages.rs` compares them for every field type and several
//! callers, on both databases). Where it cannot, [`record_path_reason`] says so and
//! the caller takes the record path: that predicate is the one place to extend.
//!
//! How the text is made, per dialect:
//!
//! - objects are concatenations (`concat(...)`) of literal keys and values, compact
//!   and in the record path's key order: `id`, `created_at`, `updated_at`, `version`,
//!   the fields in declaration order, then `expand` with the relations in the
//!   order of their names. PostgreSQL's `json_build_object` and `json_agg` write
//!   `"a" : 1` and `[1, 2]` (spaces), and jsonb reorders keys, so neither is used;
//! - strings are quoted by the database (`json_quote` on SQLite, `to_json(text)` on
//!   PostgreSQL): both escape exactly as serde_json does (`\"`, `\\`, `\n`, `\t`,
//!   `\r`, `\b`, `\f`, `\u00XX` in lower case for the other control characters);
//! - decimals, booleans, dates and datetimes are formatted in SQL as the record path
//!   formats them (trailing groups of zeros dropped from fractions of seconds);
//! - arrays are `group_concat` / `string_agg` with an explicit `ORDER BY`;
//! - two kinds of values are finished in Rust ([`finish`]), because no SQL function
//!   writes them as serde_json does: `number` fields (the database writes the exact
//!   value, between `\x01` bytes; Rust prints the shortest form, `100.0`, `1e21`) and
//!   `json` fields (the stored text between `\x02` and `\x03`, parsed and written
//!   compact, as the record path does). A SQLite datetime not in Trellis's fixed-width
//!   form (written beside Trellis) comes between `\x04` bytes and is parsed there too;
//!   a PostgreSQL datetime comes between `\x05` bytes with all six digits of its
//!   microseconds, which Rust trims (one `to_char` per value rather than four).
//!   Those bytes never occur otherwise: the databases escape control characters in
//!   strings, and valid JSON has none outside them.

use sea_query::{Expr, ExprTrait, Func, JoinType, Query, SelectStatement};
use serde_json::Value;

use super::Dialect;
use super::filter::Compiler;
use crate::engine::access::{Action, Decision, Principal};
use crate::engine::cond::check::Typed;
use crate::engine::input::format_datetime;
use crate::engine::query::{EXPAND_CAP, EXPAND_MEMBER, Expand, Fields};
use crate::engine::{Engine, Entity, Field};
use crate::spec::{FieldType, Storage};

/// Why a request must take the record path instead of JSON built by the database,
/// or `None` when this path answers it. The one place that decides it: a new field
/// type the SQL below cannot write adds its case here.
pub(crate) fn record_path_reason(
    engine: &Engine,
    dialect: Dialect,
    e: &Entity,
    expand: &Expand,
    fields: Option<&Fields>,
) -> Option<String> {
    for f in e.fields.iter().filter(|f| selected(fields, &f.name)) {
        // A file field's metadata becomes urls, without its hash, in Rust.
        if f.ty == FieldType::File {
            return Some(format!("{}.{}: a file field", e.name, f.name));
        }
        if let Some(Storage::Decimal { scale, .. }) = f.storage()
            && !dialect.decimal_json_in_sql(scale)
        {
            return Some(format!(
                "{}.{}: a decimal scale above {}",
                e.name,
                f.name,
                super::dialect::MAX_SQL_SCALE
            ));
        }
    }
    for (name, sub) in &expand.children {
        let Some((_, target)) = relation(engine, e, name) else {
            continue;
        };
        if !selected(fields, name) {
            continue;
        }
        if let Some(reason) = record_path_reason(engine, dialect, target, sub, inner(fields, name))
        {
            return Some(reason);
        }
    }
    None
}

/// Is `name` kept by `fields=` (always, without it)?
fn selected(fields: Option<&Fields>, name: &str) -> bool {
    fields.is_none_or(|f| name == "id" || f.names.contains_key(name))
}

/// The selection inside the expanded relation `name` (`client.name` → `name`); all
/// of its fields when the relation is selected as a whole.
fn inner<'f>(fields: Option<&'f Fields>, name: &str) -> Option<&'f Fields> {
    fields
        .and_then(|f| f.names.get(name))
        .filter(|sub| !sub.names.is_empty())
}

/// The relation field `name` of `e` and its target, if it has both.
fn relation<'e>(engine: &'e Engine, e: &'e Entity, name: &str) -> Option<(&'e Field, &'e Entity)> {
    let field = e.field(name)?;
    let target = engine.entity(field.target.as_deref()?)?;
    matches!(
        field.ty,
        FieldType::Ref | FieldType::Many | FieldType::Inverse
    )
    .then_some((field, target))
}

/// An SQL string literal of a validated model name's JSON key text (`,"name":`).
fn lit(text: &str) -> Expr {
    Expr::cust(format!("'{}'", text.replace('\'', "''")))
}

/// A column of the table aliased `alias`.
fn col(alias: &str, name: &str) -> Expr {
    Expr::col((alias.to_string(), name.to_string()))
}

/// One piece of an object: `,"key":value`, present only where `when` holds.
struct Member {
    key: String,
    value: Expr,
    when: Option<Expr>,
}

/// The builder of one statement's JSON expressions.
pub(crate) struct JsonTree<'a> {
    engine: &'a Engine,
    who: &'a Principal,
    dialect: Dialect,
    compiler: Compiler<'a>,
    aliases: usize,
    /// Some value needs [`finish`] (a `number` or `json` field, or a SQLite datetime).
    pub(crate) needs_finish: bool,
}

impl<'a> JsonTree<'a> {
    pub(crate) fn new(
        engine: &'a Engine,
        who: &'a Principal,
        dialect: Dialect,
        ctx: &'a crate::engine::cond::check::Ctx,
    ) -> JsonTree<'a> {
        JsonTree {
            engine,
            who,
            dialect,
            compiler: Compiler::new(dialect, ctx),
            aliases: 0,
            needs_finish: false,
        }
    }

    fn alias(&mut self) -> String {
        self.aliases += 1;
        format!("x{}", self.aliases)
    }

    /// `concat(parts…)`, in chunks under PostgreSQL's 100 arguments, with adjacent
    /// literals merged.
    fn concat(&self, parts: Vec<Part>) -> Expr {
        let mut merged: Vec<Expr> = Vec::new();
        let mut text = String::new();
        for p in parts {
            match p {
                Part::Lit(s) => text.push_str(&s),
                Part::Sql(e) => {
                    if !text.is_empty() {
                        merged.push(lit(&std::mem::take(&mut text)));
                    }
                    merged.push(e);
                }
            }
        }
        if !text.is_empty() {
            merged.push(lit(&text));
        }
        while merged.len() > 90 {
            let rest = merged.split_off(90);
            let head = Func::cust("concat").args(merged).into();
            merged = std::iter::once(head).chain(rest).collect();
        }
        match merged.len() {
            // A single piece is text already.
            0 | 1 => merged.pop().unwrap_or_else(|| lit("")),
            _ => Func::cust("concat").args(merged).into(),
        }
    }

    /// `group_concat(x, ',' ORDER BY k)` / `string_agg(x, ',' ORDER BY k)`.
    fn agg(&self, x: Expr, order: Expr) -> Expr {
        self.dialect.text_agg(x, order)
    }

    /// `COALESCE(x, 'text')`.
    fn or_text(&self, x: Expr, text: &str) -> Expr {
        Func::coalesce([x, lit(text)]).into()
    }

    /// A value the database quotes as JSON itself (text, integers, ids, dates).
    fn quoted(&self, c: Expr) -> Expr {
        self.dialect.json_quote(c)
    }

    /// The JSON text of column `name` of `alias`, stored as `storage`.
    fn value(&mut self, alias: &str, name: &str, storage: Storage) -> Expr {
        let (text, finish) =
            self.dialect
                .json_text(col(alias, name), &quote_sql(alias, name), storage);
        self.needs_finish |= finish;
        text
    }

    /// The ids of a `many` field of the record aliased `alias`, in target order.
    fn link_ids(&mut self, e: &Entity, f: &Field, alias: &str) -> Expr {
        let l = self.alias();
        let mut q = Query::select();
        let id = self.quoted(col(&l, "target_id"));
        q.expr(self.agg(id, col(&l, "target_id")))
            .from_as(e.join_table(f), l.clone())
            .and_where(col(&l, "source_id").equals((alias.to_string(), "id".to_string())));
        self.array(q)
    }

    /// `'[' || COALESCE((q), '') || ']'`.
    fn array(&self, q: SelectStatement) -> Expr {
        self.concat(vec![
            Part::Lit("[".into()),
            Part::Sql(self.or_text(Expr::SubQuery(None, Box::new(q.into())), "")),
            Part::Lit("]".into()),
        ])
    }

    /// The read condition of `target` for the caller, compiled on `alias`; `None`
    /// when the caller may read none of its records.
    fn readable(&mut self, target: &Entity, alias: &str) -> Option<Option<Expr>> {
        match self
            .engine
            .access
            .decide(&target.name, &Action::Read, self.who)
        {
            Decision::Deny => None,
            Decision::Allow(Typed::Const(true)) => Some(None),
            Decision::Allow(c) => Some(Some(self.compiler.compile(&c, alias))),
        }
    }

    /// The JSON text of the record of `e` aliased `alias`, as the caller sees it,
    /// with the relations of `tree` under `expand` and only the `fields` selected.
    pub(crate) fn record(
        &mut self,
        e: &Entity,
        alias: &str,
        tree: &Expand,
        fields: Option<&Fields>,
    ) -> Expr {
        let hidden = self.engine.access.hidden(&e.name, self.who);
        let conditional = self.engine.access.conditional(&e.name, self.who);
        let when_of = |me: &mut Self, name: &str| -> Option<Expr> {
            conditional
                .iter()
                .find(|(f, _)| f == name)
                .map(|(_, c)| me.compiler.compile(c, alias))
        };
        let visible = |name: &str| selected(fields, name) && !hidden.iter().any(|h| h == name);
        let mut members: Vec<Member> = Vec::new();
        for (name, storage) in [
            ("id", Storage::Uuid),
            ("created_at", Storage::Timestamp),
            ("updated_at", Storage::Timestamp),
            ("version", Storage::Integer),
        ] {
            if visible(name) {
                let value = self.value(alias, name, storage);
                let when = when_of(self, name);
                members.push(Member {
                    key: name.into(),
                    value,
                    when,
                });
            }
        }
        for f in &e.fields {
            if !visible(&f.name) {
                continue;
            }
            let value = match f.storage() {
                Some(storage) => self.value(alias, &f.name, storage),
                None if f.ty == FieldType::Many => self.link_ids(e, f, alias),
                None => continue,
            };
            let when = when_of(self, &f.name);
            members.push(Member {
                key: f.name.clone(),
                value,
                when,
            });
        }
        let mut expanded: Vec<Member> = Vec::new();
        for (name, sub) in &tree.children {
            let Some((field, target)) = relation(self.engine, e, name) else {
                continue;
            };
            if !visible(name) {
                continue;
            }
            let value = self.expansion(e, field, target, alias, sub, inner(fields, name));
            let when = when_of(self, name);
            expanded.push(Member {
                key: name.clone(),
                value,
                when,
            });
        }
        if !expanded.is_empty() {
            // Present when one of its relations is.
            let when = match expanded.iter().any(|m| m.when.is_none()) {
                true => None,
                false => expanded
                    .iter()
                    .filter_map(|m| m.when.clone())
                    .reduce(|a, b| a.or(b)),
            };
            let value = self.object(expanded);
            members.push(Member {
                key: EXPAND_MEMBER.into(),
                value,
                when,
            });
        }
        self.object(members)
    }

    /// `{"k":v,…}` of members, those with a condition only where it holds.
    fn object(&self, members: Vec<Member>) -> Expr {
        let first_always = members.first().is_some_and(|m| m.when.is_none());
        let mut parts = Vec::new();
        for (n, m) in members.into_iter().enumerate() {
            let sep = if n == 0 && first_always { "" } else { "," };
            let key = format!(
                "{sep}{}:",
                serde_json::to_string(&m.key).unwrap_or_default()
            );
            match m.when {
                None => {
                    parts.push(Part::Lit(key));
                    parts.push(Part::Sql(m.value));
                }
                Some(cond) => {
                    let piece = self.concat(vec![Part::Lit(key), Part::Sql(m.value)]);
                    parts.push(Part::Sql(Expr::case(cond, piece).finally(lit("")).into()));
                }
            }
        }
        let body = self.concat(parts);
        if first_always {
            self.concat(vec![
                Part::Lit("{".into()),
                Part::Sql(body),
                Part::Lit("}".into()),
            ])
        } else {
            // Drop the leading comma of whichever member comes first.
            let trimmed =
                Expr::cust_with_exprs(self.dialect.custom_template("substr($1, 2)"), [body]);
            self.concat(vec![
                Part::Lit("{".into()),
                Part::Sql(trimmed),
                Part::Lit("}".into()),
            ])
        }
    }

    /// The expanded value of relation `field` (to `target`) of the record `alias`:
    /// the related record or `null` (`ref`), or an array of at most [`EXPAND_CAP`]
    /// records (`many`, `inverse`), each as its own read rules let the caller see it.
    fn expansion(
        &mut self,
        e: &Entity,
        field: &Field,
        target: &Entity,
        alias: &str,
        tree: &Expand,
        fields: Option<&Fields>,
    ) -> Expr {
        let x = self.alias();
        let object = self.record(target, &x, tree, fields);
        // The cap is a literal, as a list's LIMIT is ([`super::paged`]): a bound one
        // makes PostgreSQL plan every execution again.
        let within_cap = |s: &str| col(s, "rn").lte(Expr::cust(EXPAND_CAP.to_string()));
        let dialect = self.dialect;
        let numbered = |by: Expr| {
            Expr::cust_with_exprs(
                dialect.custom_template("ROW_NUMBER() OVER (ORDER BY $1)"),
                [by],
            )
        };
        match field.ty {
            FieldType::Ref => {
                let Some(cond) = self.readable(target, &x) else {
                    return lit("null");
                };
                let mut q = Query::select();
                q.expr(object)
                    .from_as(target.name.clone(), x.clone())
                    .and_where(col(&x, "id").equals((alias.to_string(), field.name.clone())));
                if let Some(c) = cond {
                    q.and_where(c);
                }
                self.or_text(Expr::SubQuery(None, Box::new(q.into())), "null")
            }
            FieldType::Many => {
                // The first EXPAND_CAP links by target id, then those the caller may
                // read (as the record path takes them).
                let Some(cond) = self.readable(target, &x) else {
                    return lit("[]");
                };
                let l = self.alias();
                let mut links = Query::select();
                links
                    .column((l.clone(), "target_id".to_string()))
                    .expr_as(numbered(col(&l, "target_id")), "rn")
                    .from_as(e.join_table(field), l.clone())
                    .and_where(col(&l, "source_id").equals((alias.to_string(), "id".to_string())));
                let s = self.alias();
                let mut q = Query::select();
                q.expr(self.agg(object, col(&x, "id")))
                    .from_subquery(links, s.clone())
                    .join_as(
                        JoinType::InnerJoin,
                        target.name.clone(),
                        x.clone(),
                        col(&x, "id").equals((s.clone(), "target_id".to_string())),
                    )
                    .and_where(within_cap(&s));
                if let Some(c) = cond {
                    q.and_where(c);
                }
                self.array(q)
            }
            _ => {
                // inverse: the first EXPAND_CAP readable children by id; a child whose
                // `via` the caller sees only under a condition that fails is left out
                // (the record path groups children by that field).
                let via = field.via.as_deref().unwrap_or_default();
                let y = self.alias();
                let Some(cond) = self.readable(target, &y) else {
                    return lit("[]");
                };
                let keep = self
                    .engine
                    .access
                    .conditional(&target.name, self.who)
                    .into_iter()
                    .find(|(f, _)| f == via)
                    .map(|(_, c)| self.compiler.compile(&c, &x));
                let mut children = Query::select();
                children
                    .column((y.clone(), "id".to_string()))
                    .expr_as(numbered(col(&y, "id")), "rn")
                    .from_as(target.name.clone(), y.clone())
                    .and_where(col(&y, via).equals((alias.to_string(), "id".to_string())));
                if let Some(c) = cond {
                    children.and_where(c);
                }
                let s = self.alias();
                let mut q = Query::select();
                q.expr(self.agg(object, col(&x, "id")))
                    .from_subquery(children, s.clone())
                    .join_as(
                        JoinType::InnerJoin,
                        target.name.clone(),
                        x.clone(),
                        col(&x, "id").equals((s.clone(), "id".to_string())),
                    )
                    .and_where(within_cap(&s));
                if let Some(k) = keep {
                    q.and_where(k);
                }
                self.array(q)
            }
        }
    }
}

/// A piece of a concatenation.
enum Part {
    Lit(String),
    Sql(Expr),
}

fn quote_sql(alias: &str, name: &str) -> String {
    format!("{}.{}", super::quote(alias), super::quote(name))
}

/// Writes the JSON text the database built into `out`, finishing the values it
/// marked (see the module's documentation): numbers, `json` values, and SQLite
/// datetimes not in Trellis's form.
pub(crate) fn finish(text: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let Some(at) = bytes[i..].iter().position(|b| matches!(b, 1..=5)) else {
            out.extend_from_slice(&bytes[i..]);
            break;
        };
        out.extend_from_slice(&bytes[i..i + at]);
        let start = i + at;
        let mark = bytes[start];
        let close = if mark == 2 { 3 } else { mark };
        let end = bytes[start + 1..]
            .iter()
            .position(|b| *b == close)
            .map(|p| start + 1 + p)
            .ok_or("an unterminated value")?;
        let inside = &text[start + 1..end];
        match mark {
            1 => {
                let n = inside
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number);
                serde_json::to_writer(&mut *out, &n).map_err(|e| e.to_string())?;
            }
            2 => {
                let v: Value = serde_json::from_str(inside).map_err(|e| e.to_string())?;
                serde_json::to_writer(&mut *out, &v).map_err(|e| e.to_string())?;
            }
            4 => {
                let s: String = serde_json::from_str(inside).map_err(|e| e.to_string())?;
                let t = chrono::DateTime::parse_from_rfc3339(&s).map_err(|e| e.to_string())?;
                let t = format_datetime(&t.with_timezone(&chrono::Utc));
                serde_json::to_writer(&mut *out, &t).map_err(|e| e.to_string())?;
            }
            5 => {
                let t = chrono::NaiveDateTime::parse_from_str(inside, "%Y-%m-%dT%H:%M:%S%.f")
                    .map_err(|e| e.to_string())?;
                let t = format_datetime(&t.and_utc());
                serde_json::to_writer(&mut *out, &t).map_err(|e| e.to_string())?;
            }
            _ => return Err("a stray mark".into()),
        }
        i = end + 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::finish;

    fn done(s: &str) -> String {
        let mut out = Vec::new();
        finish(s, &mut out).unwrap_or_else(|e| panic!("{e}"));
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn marked_values_are_written_as_serde_json_writes_them() {
        assert_eq!(done("{\"a\":\u{1}100\u{1}}"), "{\"a\":100.0}");
        // However this build of serde_json spells a large float (`1e21`, or `1e+21`
        // where a dependency turns on another float formatter), both paths agree.
        let big = serde_json::to_string(&1e21f64).unwrap_or_default();
        assert_eq!(
            done("[\u{1}1e+21\u{1},\u{1}1.0e+21\u{1}]"),
            format!("[{big},{big}]")
        );
        assert_eq!(
            done("\u{1}0.33333333333333331\u{1}"),
            serde_json::to_string(&(1.0f64 / 3.0)).unwrap_or_default()
        );
        assert_eq!(done("[\u{1}Inf\u{1},\u{1}NaN\u{1}]"), "[null,null]");
        assert_eq!(
            done("\u{2}{\"b\": [1, 2.50], \"a\": null}\u{3}"),
            "{\"b\":[1,2.5],\"a\":null}"
        );
        assert_eq!(
            done("\u{4}\"2026-11-27T12:00:00+02:00\"\u{4}"),
            "\"2026-11-27T10:00:00Z\""
        );
        // PostgreSQL's six digits, trimmed as the record path trims them.
        assert_eq!(
            done(
                "[\u{5}2026-11-27T12:00:00.000000\u{5},\u{5}2026-11-27T12:00:00.120000\u{5},\u{5}2026-11-27T12:00:00.123456\u{5}]"
            ),
            "[\"2026-11-27T12:00:00Z\",\"2026-11-27T12:00:00.120Z\",\"2026-11-27T12:00:00.123456Z\"]"
        );
        assert!(finish("\u{5}12:00\u{5}", &mut Vec::new()).is_err());
        assert_eq!(done("plain \"é\""), "plain \"é\"");
        assert!(finish("\u{1}12", &mut Vec::new()).is_err());
        assert!(finish("\u{4}\"not a time\"\u{4}", &mut Vec::new()).is_err());
    }
}
