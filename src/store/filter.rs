//! Typed conditions → SQL expressions. Relation hops become correlated `EXISTS`
//! subqueries; every value is bound.

use sea_query::{Expr, ExprTrait, Func, Query};

use super::Dialect;
use super::values::cell_value;
use crate::engine::cond::Op;
use crate::engine::cond::check::{
    Arg, Column, Ctx, FileAttr, FileColumn, Hop, Pred, Typed, resolve,
};
use crate::engine::input::Cell;
use crate::spec::FieldType;

/// Compiles conditions, numbering the table aliases of subqueries.
pub struct Compiler<'c> {
    pub dialect: Dialect,
    pub ctx: &'c Ctx,
    next_alias: usize,
    /// The aliases of the records being compiled, outermost first: what
    /// `record.<field>` (`Arg::Outer`) refers to, `up` steps out.
    scopes: Vec<String>,
}

fn col(alias: &str, name: &str) -> Expr {
    Expr::col((alias.to_string(), name.to_string()))
}

/// A custom SQL template written with `$1`, `$2`… (each once, in order) in the
/// placeholders of `dialect`'s query builder (SQLite's are `?`).
fn placeholders(dialect: Dialect, template: &str) -> String {
    match dialect {
        Dialect::Postgres => template.to_string(),
        Dialect::Sqlite => template.replace("$1", "?").replace("$2", "?"),
    }
}

fn truth(b: bool) -> Expr {
    Expr::cust(if b { "1 = 1" } else { "1 = 0" })
}

impl<'c> Compiler<'c> {
    pub fn new(dialect: Dialect, ctx: &'c Ctx) -> Compiler<'c> {
        Compiler {
            dialect,
            ctx,
            next_alias: 1,
            scopes: Vec::new(),
        }
    }

    /// The column `record.<field>` names, `up` relation steps out of the current one.
    fn outer(&self, up: usize, column: &Column) -> Expr {
        match self.scopes.len().checked_sub(up + 1) {
            Some(i) => col(&self.scopes[i], &column.name),
            // Not produced by the checker (a condition used beyond its record).
            None => Expr::cust("NULL"),
        }
    }

    fn alias(&mut self, prefix: &str) -> String {
        let a = format!("{prefix}{}", self.next_alias);
        self.next_alias += 1;
        a
    }

    /// `t` as an SQL condition on the table aliased `alias`.
    pub fn compile(&mut self, t: &Typed, alias: &str) -> Expr {
        // A new alias is a step into related records (or a new top-level condition).
        let entered = self.scopes.last().map(String::as_str) != Some(alias);
        if entered {
            self.scopes.push(alias.to_string());
        }
        let out = self.compile_in(t, alias);
        if entered {
            self.scopes.pop();
        }
        out
    }

    fn compile_in(&mut self, t: &Typed, alias: &str) -> Expr {
        match t {
            Typed::Const(b) => truth(*b),
            Typed::And(a, b) => {
                let a = self.compile(a, alias);
                let b = self.compile(b, alias);
                a.and(b)
            }
            Typed::Or(a, b) => {
                let a = self.compile(a, alias);
                let b = self.compile(b, alias);
                a.or(b)
            }
            Typed::Not(a) => self.compile(a, alias).not(),
            Typed::Hop { hop, inner } => {
                let mut q = Query::select();
                q.expr(Expr::val(1));
                match hop {
                    Hop::Ref { field, target } => {
                        let t = self.alias("t");
                        q.from_as(target.clone(), t.clone())
                            .and_where(col(&t, "id").equals((alias.to_string(), field.clone())));
                        let inner = self.compile(inner, &t);
                        q.and_where(inner);
                    }
                    Hop::Many { join, target, .. } => {
                        let j = self.alias("j");
                        let t = self.alias("t");
                        q.from_as(join.clone(), j.clone())
                            .join_as(
                                sea_query::JoinType::InnerJoin,
                                target.clone(),
                                t.clone(),
                                col(&t, "id").equals((j.clone(), "target_id".to_string())),
                            )
                            .and_where(
                                col(&j, "source_id").equals((alias.to_string(), "id".to_string())),
                            );
                        let inner = self.compile(inner, &t);
                        q.and_where(inner);
                    }
                    Hop::Inverse { child, via } => {
                        let t = self.alias("t");
                        q.from_as(child.clone(), t.clone())
                            .and_where(col(&t, via).equals((alias.to_string(), "id".to_string())));
                        let inner = self.compile(inner, &t);
                        q.and_where(inner);
                    }
                }
                Expr::exists(q)
            }
            Typed::Links { hop, id } => {
                let wanted = match id {
                    None => None,
                    Some(Arg::Outer { up, column }) => Some(self.outer(*up, column)),
                    Some(arg) => match resolve(arg, FieldType::Uuid, self.ctx) {
                        Some(Cell::Uuid(u)) => Some(Expr::val(self.dialect.uuid(u))),
                        _ => return truth(false),
                    },
                };
                let mut q = Query::select();
                q.expr(Expr::val(1));
                match hop {
                    Hop::Many { join, .. } => {
                        let j = self.alias("j");
                        q.from_as(join.clone(), j.clone()).and_where(
                            col(&j, "source_id").equals((alias.to_string(), "id".to_string())),
                        );
                        if let Some(u) = wanted {
                            q.and_where(col(&j, "target_id").eq(u));
                        }
                    }
                    Hop::Inverse { child, via } => {
                        let t = self.alias("t");
                        q.from_as(child.clone(), t.clone())
                            .and_where(col(&t, via).equals((alias.to_string(), "id".to_string())));
                        if let Some(u) = wanted {
                            q.and_where(col(&t, "id").eq(u));
                        }
                    }
                    Hop::Ref { field, .. } => {
                        // Not produced by the checker; a ref "link" is the column itself.
                        return match wanted {
                            None => col(alias, field).is_not_null(),
                            Some(u) => col(alias, field).eq(u),
                        };
                    }
                }
                Expr::exists(q)
            }
            Typed::Pred { column, pred } => self.pred(column, pred, alias),
        }
    }

    fn bind(&self, column: &Column, cell: &Cell) -> Expr {
        Expr::val(cell_value(self.dialect, column.ty, column.scale, cell))
    }

    fn pred(&mut self, column: &Column, pred: &Pred, alias: &str) -> Expr {
        if let Some(file) = column.file {
            return self.file_pred(column, file, pred, alias);
        }
        // An integer column compared with a fraction: compare as doubles, with a cast
        // that also gives the statement its own text. PostgreSQL statements are
        // prepared and cached by their text with the parameter types of their first
        // use; the same text bound later with another type would be misread.
        let fractional = column.ty == FieldType::Integer
            && match pred {
                Pred::Cmp(_, Arg::Cell(Cell::Float(_))) => true,
                Pred::In(args) => args.iter().any(|a| matches!(a, Arg::Cell(Cell::Float(_)))),
                _ => false,
            };
        if fractional {
            let as_double = Column::plain(&column.name, FieldType::Number, 0);
            let c = col(alias, &column.name).cast_as("DOUBLE PRECISION");
            let to_float = |a: &Arg| match a {
                Arg::Cell(Cell::Int(i)) => Arg::Cell(Cell::Float(*i as f64)),
                other => other.clone(),
            };
            let pred = match pred {
                Pred::Cmp(op, a) => Pred::Cmp(*op, to_float(a)),
                Pred::In(args) => Pred::In(args.iter().map(to_float).collect()),
                other => other.clone(),
            };
            return self.pred_on(c, &as_double, &pred);
        }
        let c = col(alias, &column.name);
        self.pred_on(c, column, pred)
    }

    /// A test on a file field's JSON column: `is set` (a multiple field: at least one
    /// file), or on a metadata value (`size`, `type`, `name`) of its file, or of any of
    /// its files. Keys are constants; compared values are bound.
    fn file_pred(&mut self, column: &Column, file: FileColumn, pred: &Pred, alias: &str) -> Expr {
        let c = col(alias, &column.name);
        let Some(attr) = file.attr else {
            let set = match pred {
                Pred::IsSet(set) => *set,
                // The checker lets nothing else reach a file field itself.
                _ => return truth(false),
            };
            if !file.multiple {
                return if set { c.is_not_null() } else { c.is_null() };
            }
            let length = match self.dialect {
                Dialect::Sqlite => "COALESCE(json_array_length($1), 0) > 0",
                Dialect::Postgres => "COALESCE(jsonb_array_length($1), 0) > 0",
            };
            let some = Expr::cust_with_exprs(self.placeholders(length), [c]);
            return if set { some } else { some.not() };
        };
        let plain = Column::plain(&column.name, column.ty, 0);
        let value = |json: Expr, dialect: Dialect| -> Expr {
            let text = match (dialect, attr) {
                (Dialect::Postgres, FileAttr::Size) => "(($1) ->> 'size')::BIGINT",
                (_, FileAttr::Size) => "($1) ->> 'size'",
                (_, FileAttr::Type) => "($1) ->> 'type'",
                (_, FileAttr::Name) => "($1) ->> 'name'",
            };
            Expr::cust_with_exprs(placeholders(dialect, text), [json])
        };
        if !file.multiple {
            let v = value(c, self.dialect);
            return self.pred_on(v, &plain, pred);
        }
        // Any of the files: a correlated EXISTS over the array's elements.
        let each = self.alias("f");
        let (from, element) = match self.dialect {
            Dialect::Sqlite => (
                format!("json_each($1) AS {each}"),
                Expr::cust(format!("{each}.value")),
            ),
            Dialect::Postgres => (
                format!("jsonb_array_elements($1) AS {each}(v)"),
                Expr::cust(format!("{each}.v")),
            ),
        };
        let inner = value(element, self.dialect);
        let test = self.pred_on(inner, &plain, pred);
        let text = format!("EXISTS (SELECT 1 FROM {from} WHERE $2)");
        Expr::cust_with_exprs(self.placeholders(&text), [c, test])
    }

    fn placeholders(&self, template: &str) -> String {
        placeholders(self.dialect, template)
    }

    fn pred_on(&mut self, c: Expr, column: &Column, pred: &Pred) -> Expr {
        match pred {
            Pred::IsSet(true) => c.is_not_null(),
            Pred::IsSet(false) => c.is_null(),
            Pred::In(args) => {
                if args.is_empty() {
                    return truth(false);
                }
                let values: Vec<Expr> = args
                    .iter()
                    .map(|a| match a {
                        Arg::Outer { up, column } => self.outer(*up, column),
                        _ => match resolve(a, column.ty, self.ctx) {
                            Some(cell) => self.bind(column, &cell),
                            None => self.bind(column, &Cell::Null),
                        },
                    })
                    .collect();
                c.is_in(values)
            }
            Pred::Cmp(op, arg) => {
                let v = match arg {
                    Arg::Outer { up, column } => self.outer(*up, column),
                    _ => {
                        let cell = resolve(arg, column.ty, self.ctx).unwrap_or(Cell::Null);
                        self.bind(column, &cell)
                    }
                };
                match op {
                    Op::Eq => c.eq(v),
                    Op::Ne => c.ne(v),
                    Op::Lt => c.lt(v),
                    Op::Le => c.lte(v),
                    Op::Gt => c.gt(v),
                    Op::Ge => c.gte(v),
                    Op::Contains => {
                        let find = self.dialect.position_function();
                        Expr::from(
                            Func::cust(find.to_string())
                                .arg(Func::lower(c))
                                .arg(Func::lower(v)),
                        )
                        .gt(0)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sea_query::Value as SqlValue;

    use super::*;
    use crate::engine::cond::check::{Scope, check};
    use crate::engine::cond::parse;
    use crate::engine::{Engine, Entity};
    use crate::store::kernel::MAIN;

    const USER: &str = "0190a000-0000-7000-8000-00000000000a";

    fn engine() -> Engine {
        let files: BTreeMap<String, String> = [
            ("models/client.yaml", "entity: client\nfields:\n  name: string\n"),
            ("models/tag.yaml", "entity: tag\nfields:\n  label: string\n"),
            (
                "models/project.yaml",
                "entity: project\nfields:\n  title: string\n  points: integer\n  price: { type: decimal, precision: 10, scale: 2 }\n  starts: datetime\n  client: { type: ref, to: client }\n  tags: { type: many, of: tag }\n  logo: { type: file }\n  docs: { type: file, multiple: true }\n",
            ),
        ]
        .iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect();
        Engine::build(&crate::spec::migration::load_texts(&files)).expect("engine")
    }

    /// A fixed time and a caller with an id.
    fn ctx() -> Ctx {
        let mut user = serde_json::Map::new();
        user.insert("id".into(), serde_json::json!(USER));
        Ctx {
            now: time("2026-03-04T05:06:07Z"),
            user: std::sync::Arc::new(user),
        }
    }

    /// A condition on projects, checked as the project's author writes one
    /// (`user.id` available).
    fn typed(engine: &Engine, text: &str) -> Typed {
        let e: &Entity = engine.entity("project").expect("the project entity");
        let cond = parse(text).unwrap_or_else(|err| panic!("{text}: {err:?}"));
        let scope = Scope {
            claims: Some(vec!["id".into()]),
            ..Scope::default()
        };
        check(engine, e, &cond, &scope).unwrap_or_else(|err| panic!("{text}: {err:?}"))
    }

    /// The condition's statement's `WHERE` clause and bound values in `dialect`.
    fn render(dialect: Dialect, text: &str) -> (String, Vec<SqlValue>) {
        let engine = engine();
        let t = typed(&engine, text);
        let ctx = ctx();
        let mut q = Query::select();
        q.column((MAIN.to_string(), "id".to_string()))
            .from_as("project", MAIN)
            .and_where(Compiler::new(dialect, &ctx).compile(&t, MAIN));
        let (sql, values) = dialect.build(&q);
        let prefix = r#"SELECT "t0"."id" FROM "project" AS "t0" WHERE "#;
        let clause = sql
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{sql}"))
            .to_string();
        (clause, values.0.0)
    }

    fn text(s: &str) -> SqlValue {
        SqlValue::String(Some(s.to_string()))
    }

    fn uuid(s: &str) -> uuid::Uuid {
        s.parse().expect("a uuid")
    }

    fn time(s: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(s)
            .expect("a time")
            .to_utc()
    }

    /// The condition compiles to `sqlite` in SQLite and `postgres` in PostgreSQL, each
    /// with its bound values.
    fn compiles_to(text: &str, sqlite: (&str, Vec<SqlValue>), postgres: (&str, Vec<SqlValue>)) {
        let (sql, values) = render(Dialect::Sqlite, text);
        assert_eq!((sql.as_str(), values), sqlite, "SQLite: {text}");
        let (sql, values) = render(Dialect::Postgres, text);
        assert_eq!((sql.as_str(), values), postgres, "PostgreSQL: {text}");
    }

    #[test]
    fn a_comparison_binds_its_value() {
        compiles_to(
            "title = 'a'",
            (r#""t0"."title" = ?"#, vec![text("a")]),
            (r#""t0"."title" = $1"#, vec![text("a")]),
        );
        // An integer column against a fraction is compared as doubles.
        compiles_to(
            "points > 2.5",
            (
                r#"CAST("t0"."points" AS DOUBLE PRECISION) > ?"#,
                vec![SqlValue::Double(Some(2.5))],
            ),
            (
                r#"CAST("t0"."points" AS DOUBLE PRECISION) > $1"#,
                vec![SqlValue::Double(Some(2.5))],
            ),
        );
    }

    #[test]
    fn file_conditions_read_the_json_column_with_bound_values() {
        compiles_to(
            "logo is set",
            (r#""t0"."logo" IS NOT NULL"#, vec![]),
            (r#""t0"."logo" IS NOT NULL"#, vec![]),
        );
        compiles_to(
            "docs is not set",
            (
                r#"NOT (COALESCE(json_array_length("t0"."docs"), 0) > 0)"#,
                vec![],
            ),
            (
                r#"NOT (COALESCE(jsonb_array_length("t0"."docs"), 0) > 0)"#,
                vec![],
            ),
        );
        compiles_to(
            "logo.size > 1000",
            (
                r#"(("t0"."logo") ->> 'size') > ?"#,
                vec![SqlValue::BigInt(Some(1000))],
            ),
            (
                r#"((("t0"."logo") ->> 'size')::BIGINT) > $1"#,
                vec![SqlValue::BigInt(Some(1000))],
            ),
        );
        compiles_to(
            "docs.type = 'application/pdf'",
            (
                r#"EXISTS (SELECT 1 FROM json_each("t0"."docs") AS f1 WHERE ((f1.value) ->> 'type') = ?)"#,
                vec![text("application/pdf")],
            ),
            (
                r#"EXISTS (SELECT 1 FROM jsonb_array_elements("t0"."docs") AS f1(v) WHERE ((f1.v) ->> 'type') = $1)"#,
                vec![text("application/pdf")],
            ),
        );
        // A quote in the value stays a bound value.
        compiles_to(
            "logo.name = \"x') OR 1=1 --\"",
            (
                r#"(("t0"."logo") ->> 'name') = ?"#,
                vec![text("x') OR 1=1 --")],
            ),
            (
                r#"(("t0"."logo") ->> 'name') = $1"#,
                vec![text("x') OR 1=1 --")],
            ),
        );
    }

    #[test]
    fn and_or_not_keep_their_grouping() {
        let values = vec![
            SqlValue::BigInt(Some(3)),
            text("b"),
            SqlValue::BigInt(Some(1)),
        ];
        compiles_to(
            "points > 3 and (title != 'b' or not points <= 1)",
            (
                r#""t0"."points" > ? AND ("t0"."title" <> ? OR (NOT "t0"."points" <= ?))"#,
                values.clone(),
            ),
            (
                r#""t0"."points" > $1 AND ("t0"."title" <> $2 OR (NOT "t0"."points" <= $3))"#,
                values,
            ),
        );
    }

    #[test]
    fn is_set_tests_for_null() {
        let sql = r#""t0"."title" IS NOT NULL AND "t0"."points" IS NULL"#;
        compiles_to(
            "title is set and points is not set",
            (sql, vec![]),
            (sql, vec![]),
        );
    }

    #[test]
    fn in_binds_every_value_of_the_list() {
        let values = vec![
            text("a"),
            text("b"),
            SqlValue::Double(Some(1.0)),
            SqlValue::Double(Some(2.5)),
        ];
        compiles_to(
            "title in ['a', 'b'] or points in [1, 2.5]",
            (
                r#""t0"."title" IN (?, ?) OR CAST("t0"."points" AS DOUBLE PRECISION) IN (?, ?)"#,
                values.clone(),
            ),
            (
                r#""t0"."title" IN ($1, $2) OR CAST("t0"."points" AS DOUBLE PRECISION) IN ($3, $4)"#,
                values,
            ),
        );
    }

    #[test]
    fn contains_ignores_case_with_each_dialects_position_function() {
        let values = vec![text("Rust"), SqlValue::Int(Some(0))];
        compiles_to(
            "title ~ 'Rust'",
            (
                r#"instr(LOWER("t0"."title"), LOWER(?)) > ?"#,
                values.clone(),
            ),
            (r#"strpos(LOWER("t0"."title"), LOWER($1)) > $2"#, values),
        );
    }

    #[test]
    fn a_relation_path_is_an_exists_with_numbered_aliases() {
        let values = vec![SqlValue::Int(Some(1)), text("acme")];
        compiles_to(
            "client.name = 'acme'",
            (
                r#"EXISTS(SELECT ? FROM "client" AS "t1" WHERE "t1"."id" = "t0"."client" AND "t1"."name" = ?)"#,
                values.clone(),
            ),
            (
                r#"EXISTS(SELECT $1 FROM "client" AS "t1" WHERE "t1"."id" = "t0"."client" AND "t1"."name" = $2)"#,
                values,
            ),
        );
        // Through a `many` field: its link table, then the target; each subquery
        // gets aliases of its own.
        let values = vec![
            SqlValue::Int(Some(1)),
            text("x"),
            SqlValue::Int(Some(1)),
            text("y"),
        ];
        compiles_to(
            "tags.label = 'x' and client.name = 'y'",
            (
                r#"EXISTS(SELECT ? FROM "project_tags" AS "j1" INNER JOIN "tag" AS "t2" ON "t2"."id" = "j1"."target_id" WHERE "j1"."source_id" = "t0"."id" AND "t2"."label" = ?) AND EXISTS(SELECT ? FROM "client" AS "t3" WHERE "t3"."id" = "t0"."client" AND "t3"."name" = ?)"#,
                values.clone(),
            ),
            (
                r#"EXISTS(SELECT $1 FROM "project_tags" AS "j1" INNER JOIN "tag" AS "t2" ON "t2"."id" = "j1"."target_id" WHERE "j1"."source_id" = "t0"."id" AND "t2"."label" = $2) AND EXISTS(SELECT $3 FROM "client" AS "t3" WHERE "t3"."id" = "t0"."client" AND "t3"."name" = $4)"#,
                values,
            ),
        );
    }

    #[test]
    fn a_many_field_has_a_link_in_its_link_table() {
        let id = "0190a000-0000-7000-8000-000000000001";
        compiles_to(
            &format!("tags has '{id}'"),
            (
                r#"EXISTS(SELECT ? FROM "project_tags" AS "j1" WHERE "j1"."source_id" = "t0"."id" AND "j1"."target_id" = ?)"#,
                vec![SqlValue::Int(Some(1)), text(id)],
            ),
            (
                r#"EXISTS(SELECT $1 FROM "project_tags" AS "j1" WHERE "j1"."source_id" = "t0"."id" AND "j1"."target_id" = $2)"#,
                vec![SqlValue::Int(Some(1)), SqlValue::Uuid(Some(uuid(id)))],
            ),
        );
    }

    #[test]
    fn a_decimal_binds_as_units_in_sqlite_and_as_numeric_in_postgres() {
        compiles_to(
            "price >= 12.5",
            (r#""t0"."price" >= ?"#, vec![SqlValue::BigInt(Some(1250))]),
            (
                r#""t0"."price" >= $1"#,
                vec![SqlValue::Decimal(Some(rust_decimal::Decimal::new(1250, 2)))],
            ),
        );
    }

    #[test]
    fn a_datetime_binds_as_fixed_width_text_in_sqlite_and_as_a_timestamp_in_postgres() {
        compiles_to(
            "starts < 2025-01-31T10:00:00Z",
            (
                r#""t0"."starts" < ?"#,
                vec![text("2025-01-31T10:00:00.000000Z")],
            ),
            (
                r#""t0"."starts" < $1"#,
                vec![SqlValue::ChronoDateTimeUtc(Some(time(
                    "2025-01-31T10:00:00Z",
                )))],
            ),
        );
    }

    #[test]
    fn now_and_user_claims_are_bound_from_the_context() {
        compiles_to(
            "starts < now",
            (
                r#""t0"."starts" < ?"#,
                vec![text("2026-03-04T05:06:07.000000Z")],
            ),
            (
                r#""t0"."starts" < $1"#,
                vec![SqlValue::ChronoDateTimeUtc(Some(time(
                    "2026-03-04T05:06:07Z",
                )))],
            ),
        );
        compiles_to(
            "client = user.id",
            (r#""t0"."client" = ?"#, vec![text(USER)]),
            (
                r#""t0"."client" = $1"#,
                vec![SqlValue::Uuid(Some(uuid(USER)))],
            ),
        );
        compiles_to(
            "tags has user.id",
            (
                r#"EXISTS(SELECT ? FROM "project_tags" AS "j1" WHERE "j1"."source_id" = "t0"."id" AND "j1"."target_id" = ?)"#,
                vec![SqlValue::Int(Some(1)), text(USER)],
            ),
            (
                r#"EXISTS(SELECT $1 FROM "project_tags" AS "j1" WHERE "j1"."source_id" = "t0"."id" AND "j1"."target_id" = $2)"#,
                vec![SqlValue::Int(Some(1)), SqlValue::Uuid(Some(uuid(USER)))],
            ),
        );
    }
}
