//! Every difference between SQLite and PostgreSQL, in one place.
//!
//! The rest of the store asks [`Dialect`] instead of matching on the database:
//! column types, id and time types, query builders, full-text search, upserts,
//! locking and row decoding. A third database means implementing this type (and
//! its tests), not editing every store file.

use chrono::{DateTime, Utc};
use sea_query::Value as SqlValue;
use sea_query::{
    Expr, Func, PostgresQueryBuilder, Query, SchemaStatementBuilder, SelectStatement,
    SqliteQueryBuilder,
};
use sea_query_sqlx::{SqlxBinder, SqlxValues};
use uuid::Uuid;

use crate::engine::aggregate::Bucket;
use crate::engine::schema_diff::ColumnShape;
use crate::engine::{Cell, Entity};
use crate::spec::{FieldType, OnDelete, Storage};

/// The SQL dialect of a store's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

// Schema (DDL): column types, the table statements, references, search indexes and
// how a table's shape is changed (PostgreSQL alters, SQLite rebuilds).
impl Dialect {
    /// A custom SQL template written with `$1`, `$2`… (each once, in order) in this
    /// dialect's placeholders for custom expressions (SQLite's are `?`).
    pub fn custom_template(self, template: &str) -> String {
        match self {
            Dialect::Postgres => template.to_string(),
            Dialect::Sqlite => template.replace("$1", "?").replace("$2", "?"),
        }
    }

    /// A template: is the JSON array `$1` (a file field's column) non-empty?
    pub fn json_array_nonempty(self) -> &'static str {
        match self {
            Dialect::Sqlite => "COALESCE(json_array_length($1), 0) > 0",
            Dialect::Postgres => "COALESCE(jsonb_array_length($1), 0) > 0",
        }
    }

    /// A template: the member `key` of the JSON object `$1` as SQL text, or as an
    /// integer (`integer`). `key` is a constant of the caller's.
    pub fn json_member(self, key: &str, integer: bool) -> String {
        match (self, integer) {
            (Dialect::Postgres, true) => format!("(($1) ->> '{key}')::BIGINT"),
            _ => format!("($1) ->> '{key}'"),
        }
    }

    /// The elements of the JSON array `$1` as a table aliased `alias` (a template
    /// for `FROM`), and the expression of one element.
    pub fn json_elements(self, alias: &str) -> (String, String) {
        match self {
            Dialect::Sqlite => (
                format!("json_each($1) AS {alias}"),
                format!("{alias}.value"),
            ),
            Dialect::Postgres => (
                format!("jsonb_array_elements($1) AS {alias}(v)"),
                format!("{alias}.v"),
            ),
        }
    }

    /// Does `SELECT … FOR UPDATE` lock the rows read (SQLite's write transaction
    /// already holds the database)?
    pub fn locks_selected_rows(self) -> bool {
        self == Dialect::Postgres
    }

    /// The SQL type of a column that keeps values of a storage kind.
    pub(crate) fn ddl_column_type(self, storage: Storage) -> String {
        match self {
            Dialect::Sqlite => match storage {
                Storage::Integer | Storage::Boolean | Storage::Decimal { .. } => "INTEGER",
                Storage::Real => "REAL",
                _ => "TEXT",
            }
            .to_string(),
            Dialect::Postgres => match storage {
                Storage::Integer => "BIGINT".to_string(),
                Storage::Real => "DOUBLE PRECISION".to_string(),
                Storage::Decimal { precision, scale } => format!("NUMERIC({precision}, {scale})"),
                Storage::Boolean => "BOOLEAN".to_string(),
                Storage::Date => "DATE".to_string(),
                Storage::Timestamp => "TIMESTAMPTZ".to_string(),
                Storage::Uuid => "UUID".to_string(),
                Storage::Json => "JSONB".to_string(),
                Storage::Text => "TEXT".to_string(),
            },
        }
    }

    /// The column type of ids (`id`, link tables, accounts).
    pub(crate) fn ddl_id_type(self) -> &'static str {
        match self {
            Dialect::Sqlite => "TEXT",
            Dialect::Postgres => "UUID",
        }
    }

    /// The column type of system instants (`created_at`, `expires_at`).
    pub(crate) fn ddl_time_type(self) -> &'static str {
        match self {
            Dialect::Sqlite => "TEXT",
            Dialect::Postgres => "TIMESTAMPTZ",
        }
    }

    /// The column type of `version`.
    pub(crate) fn ddl_version_type(self) -> &'static str {
        match self {
            Dialect::Sqlite => "INTEGER",
            Dialect::Postgres => "BIGINT",
        }
    }

    /// A column in a few words, as refusals quote it: `TEXT NOT NULL REFERENCES x ON
    /// DELETE RESTRICT`.
    pub(crate) fn ddl_signature(self, c: &ColumnShape) -> String {
        let mut s = self.ddl_column_type(c.storage());
        if c.required {
            s.push_str(" NOT NULL");
        }
        if let Some(r) = &c.reference {
            s.push_str(&format!(
                " REFERENCES {} ON DELETE {}",
                r.target,
                on_delete_sql(r.on_delete)
            ));
        }
        s
    }

    /// A schema statement (CREATE TABLE, ALTER TABLE, CREATE INDEX, …) in this dialect.
    pub(crate) fn ddl_sql(self, statement: &impl SchemaStatementBuilder) -> String {
        match self {
            Dialect::Sqlite => statement.to_string(SqliteQueryBuilder),
            Dialect::Postgres => statement.to_string(PostgresQueryBuilder),
        }
    }

    /// A value as an SQL literal (for a column default or a fill).
    pub(crate) fn ddl_literal(self, v: &sea_query::Value) -> String {
        let select = sea_query::Query::select()
            .expr(sea_query::Expr::val(v.clone()))
            .to_owned();
        let sql = match self {
            Dialect::Sqlite => select.to_string(SqliteQueryBuilder),
            Dialect::Postgres => select.to_string(PostgresQueryBuilder),
        };
        sql.trim_start_matches("SELECT ").to_string()
    }

    /// SQLite takes a reference only inside its column's definition; PostgreSQL adds
    /// it as a constraint once every table exists.
    pub(crate) fn ddl_inline_references(self) -> bool {
        self == Dialect::Sqlite
    }

    /// SQLite changes a column (type, NOT NULL, reference) or drops one by rebuilding
    /// its table; PostgreSQL alters it in place.
    pub(crate) fn ddl_alters_by_rebuild(self) -> bool {
        self == Dialect::Sqlite
    }

    /// What an `ON DELETE` of a reference is written as.
    pub(crate) fn ddl_on_delete(self, o: OnDelete) -> &'static str {
        on_delete_sql(o)
    }

    /// Drops an entity's table (and SQLite's full-text table `fts`).
    pub(crate) fn ddl_drop_entity(self, table: &str, fts: &str) -> Vec<String> {
        let q = super::quote;
        match self {
            Dialect::Sqlite => vec![
                format!("DROP TABLE IF EXISTS {}", q(fts)),
                format!("DROP TABLE IF EXISTS {}", q(table)),
            ],
            Dialect::Postgres => vec![format!("DROP TABLE IF EXISTS {} CASCADE", q(table))],
        }
    }

    /// A descending column of an index, with nulls last as lists sort them (SQLite's
    /// descending order already puts them last).
    pub(crate) fn ddl_desc_column(self, quoted: &str) -> String {
        match self {
            Dialect::Sqlite => format!("{quoted} DESC"),
            Dialect::Postgres => format!("{quoted} DESC NULLS LAST"),
        }
    }

    /// (Re)creates the full-text index of `table` over `fields`: an FTS5 table `fts`
    /// kept in sync by triggers in SQLite, a GIN expression index over `document` in
    /// PostgreSQL. No fields: only drops the old one.
    pub(crate) fn ddl_search(
        self,
        table: &str,
        fields: &[String],
        fts: &str,
        document: &str,
    ) -> Vec<String> {
        let q = super::quote;
        let mut out = Vec::new();
        match self {
            Dialect::Sqlite => {
                for suffix in ["ai", "ad", "au"] {
                    out.push(format!(
                        "DROP TRIGGER IF EXISTS {}",
                        q(&format!("{fts}_{suffix}"))
                    ));
                }
                out.push(format!("DROP TABLE IF EXISTS {}", q(fts)));
                if fields.is_empty() {
                    return out;
                }
                let cols: Vec<String> = fields.iter().map(|c| q(c)).collect();
                let cols = cols.join(", ");
                let new_vals: Vec<String> =
                    fields.iter().map(|c| format!("new.{}", q(c))).collect();
                let old_vals: Vec<String> =
                    fields.iter().map(|c| format!("old.{}", q(c))).collect();
                let (new_vals, old_vals) = (new_vals.join(", "), old_vals.join(", "));
                let (t, f) = (q(table), q(fts));
                out.push(format!(
                    "CREATE VIRTUAL TABLE {f} USING fts5({cols}, content={t}, content_rowid='rowid')"
                ));
                out.push(format!(
                    "CREATE TRIGGER {} AFTER INSERT ON {t} BEGIN INSERT INTO {f}(rowid, {cols}) VALUES (new.rowid, {new_vals}); END",
                    q(&format!("{fts}_ai"))
                ));
                out.push(format!(
                    "CREATE TRIGGER {} AFTER DELETE ON {t} BEGIN INSERT INTO {f}({f}, rowid, {cols}) VALUES ('delete', old.rowid, {old_vals}); END",
                    q(&format!("{fts}_ad"))
                ));
                out.push(format!(
                    "CREATE TRIGGER {} AFTER UPDATE ON {t} BEGIN INSERT INTO {f}({f}, rowid, {cols}) VALUES ('delete', old.rowid, {old_vals}); INSERT INTO {f}(rowid, {cols}) VALUES (new.rowid, {new_vals}); END",
                    q(&format!("{fts}_au"))
                ));
                out.push(format!("INSERT INTO {f}({f}) VALUES ('rebuild')"));
            }
            Dialect::Postgres => {
                let name = q(&format!("fts_{table}"));
                out.push(format!("DROP INDEX IF EXISTS {name}"));
                if !fields.is_empty() {
                    out.push(format!(
                        "CREATE INDEX {name} ON {} USING GIN (({document}))",
                        q(table)
                    ));
                }
            }
        }
        out
    }

    /// How SQLite's rebuild copies a column whose type changed (`col`: the quoted old
    /// column): decimals are integers of their smallest unit. Other dialects convert
    /// in `ALTER COLUMN … TYPE` and copy nothing.
    pub(crate) fn ddl_copy_converted(
        self,
        col: &str,
        from: &ColumnShape,
        to: &ColumnShape,
    ) -> String {
        let pow = |n: u32| 10i64.saturating_pow(n);
        let old_scale = (from.ty == FieldType::Decimal).then_some(from.scale);
        match (old_scale, to.ty) {
            (Some(os), FieldType::Decimal) if to.scale >= os => {
                format!("{col} * {}", pow(to.scale - os))
            }
            (Some(os), FieldType::Decimal) => {
                format!(
                    "CAST(ROUND({col} * 1.0 / {}) AS INTEGER)",
                    pow(os - to.scale)
                )
            }
            (Some(os), FieldType::Number) => format!("{col} * 1.0 / {}", pow(os)),
            (Some(os), FieldType::Integer) => {
                format!("CAST(ROUND({col} * 1.0 / {}) AS INTEGER)", pow(os))
            }
            (Some(os), _) => format!("CAST({col} * 1.0 / {} AS TEXT)", pow(os)),
            (None, FieldType::Decimal)
                if matches!(from.ty, FieldType::Integer | FieldType::Number) =>
            {
                format!("CAST(ROUND({col} * {}) AS INTEGER)", pow(to.scale))
            }
            (None, FieldType::Decimal) => {
                format!(
                    "CAST(ROUND(CAST({col} AS REAL) * {}) AS INTEGER)",
                    pow(to.scale)
                )
            }
            (None, FieldType::Integer | FieldType::Boolean) => format!("CAST({col} AS INTEGER)"),
            (None, FieldType::Number) => format!("CAST({col} AS REAL)"),
            (None, _)
                if self.ddl_column_type(to.storage()) == "TEXT"
                    && matches!(
                        from.ty,
                        FieldType::Integer | FieldType::Number | FieldType::Boolean
                    ) =>
            {
                format!("CAST({col} AS TEXT)")
            }
            _ => col.to_string(),
        }
    }
}

fn on_delete_sql(o: OnDelete) -> &'static str {
    match o {
        OnDelete::Restrict => "RESTRICT",
        OnDelete::Cascade => "CASCADE",
        OnDelete::SetNull => "SET NULL",
    }
}

// Values: bound values and how values come back from a row.

/// How a dialect's driver hands back the values of a storage kind: what a decoder
/// reads from a row ([`Dialect::kept`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// Text, returned as it is (strings; SQLite's dates and UUIDs).
    Text,
    Integer,
    Real,
    /// Integer units of `10^-scale` (SQLite's decimals).
    Units {
        scale: u32,
    },
    /// An exact decimal, written with `scale` digits (PostgreSQL's NUMERIC).
    Numeric {
        scale: u32,
    },
    /// 0 or 1 (SQLite's booleans).
    IntegerBool,
    Bool,
    Date,
    /// Fixed-width UTC text (SQLite's datetimes, see [`Dialect::datetime`]).
    TimestampText,
    Timestamp,
    Uuid,
    /// JSON kept as its text (SQLite).
    JsonText,
    Json,
}

impl Dialect {
    /// How values of `storage` come back from a row.
    pub fn kept(self, storage: Storage) -> Kept {
        match self {
            Dialect::Sqlite => match storage {
                Storage::Text | Storage::Date | Storage::Uuid => Kept::Text,
                Storage::Integer => Kept::Integer,
                Storage::Real => Kept::Real,
                Storage::Decimal { scale, .. } => Kept::Units { scale },
                Storage::Boolean => Kept::IntegerBool,
                Storage::Timestamp => Kept::TimestampText,
                Storage::Json => Kept::JsonText,
            },
            Dialect::Postgres => match storage {
                Storage::Text => Kept::Text,
                Storage::Integer => Kept::Integer,
                Storage::Real => Kept::Real,
                Storage::Decimal { scale, .. } => Kept::Numeric { scale },
                Storage::Boolean => Kept::Bool,
                Storage::Date => Kept::Date,
                Storage::Timestamp => Kept::Timestamp,
                Storage::Uuid => Kept::Uuid,
                Storage::Json => Kept::Json,
            },
        }
    }

    /// A typed NULL for a column of `storage` (PostgreSQL needs the type of every
    /// parameter).
    pub fn null(self, storage: Storage) -> SqlValue {
        match self.kept(storage) {
            Kept::Integer | Kept::Units { .. } | Kept::IntegerBool => SqlValue::BigInt(None),
            Kept::Real => SqlValue::Double(None),
            Kept::Numeric { .. } => SqlValue::Decimal(None),
            Kept::Bool => SqlValue::Bool(None),
            Kept::Date => SqlValue::ChronoDate(None),
            Kept::Timestamp => SqlValue::ChronoDateTimeUtc(None),
            Kept::Uuid => SqlValue::Uuid(None),
            Kept::Json => SqlValue::Json(None),
            Kept::Text | Kept::TimestampText | Kept::JsonText => SqlValue::String(None),
        }
    }

    /// An id (or any UUID) as bound: lower-case hyphenated text on SQLite.
    pub fn uuid(self, id: Uuid) -> SqlValue {
        match self {
            Dialect::Sqlite => SqlValue::String(Some(id.hyphenated().to_string())),
            Dialect::Postgres => SqlValue::Uuid(Some(id)),
        }
    }

    /// An instant as bound: on SQLite, fixed-width UTC text
    /// (`YYYY-MM-DDTHH:MM:SS.ffffffZ`), so that text order is time order.
    pub fn datetime(self, dt: DateTime<Utc>) -> SqlValue {
        match self {
            Dialect::Sqlite => SqlValue::String(Some(sqlite_datetime(&dt))),
            Dialect::Postgres => SqlValue::ChronoDateTimeUtc(Some(dt)),
        }
    }

    /// A cell as bound to a column of `storage`.
    pub fn value(self, storage: Storage, cell: &Cell) -> SqlValue {
        match cell {
            Cell::Null | Cell::Ids(_) => self.null(storage),
            Cell::Bool(b) => match self {
                Dialect::Sqlite => SqlValue::BigInt(Some(i64::from(*b))),
                Dialect::Postgres => SqlValue::Bool(Some(*b)),
            },
            Cell::Int(i) => SqlValue::BigInt(Some(*i)),
            Cell::Float(f) => SqlValue::Double(Some(*f)),
            Cell::Text(s) => SqlValue::String(Some(s.clone())),
            Cell::Decimal(d) => match self {
                Dialect::Sqlite => {
                    let scale = match storage {
                        Storage::Decimal { scale, .. } => scale,
                        _ => 0,
                    };
                    let mut scaled = *d;
                    scaled.rescale(scale);
                    let units = i64::try_from(scaled.mantissa()).unwrap_or(i64::MAX);
                    SqlValue::BigInt(Some(units))
                }
                Dialect::Postgres => SqlValue::Decimal(Some(*d)),
            },
            Cell::Date(d) => match self {
                Dialect::Sqlite => SqlValue::String(Some(d.format("%Y-%m-%d").to_string())),
                Dialect::Postgres => SqlValue::ChronoDate(Some(*d)),
            },
            Cell::DateTime(dt) => self.datetime(*dt),
            Cell::Uuid(id) => self.uuid(*id),
            Cell::Json(v) => match self {
                Dialect::Sqlite => SqlValue::String(Some(v.to_string())),
                Dialect::Postgres => SqlValue::Json(Some(Box::new(v.clone()))),
            },
        }
    }

    /// A statement as this dialect's SQL text and its bound values.
    pub fn build<S: SqlxBinder + ?Sized>(self, statement: &S) -> (String, SqlxValues) {
        match self {
            Dialect::Sqlite => statement.build_sqlx(SqliteQueryBuilder),
            Dialect::Postgres => statement.build_sqlx(PostgresQueryBuilder),
        }
    }
}

/// The stored text of a datetime in SQLite.
pub fn sqlite_datetime(dt: &DateTime<Utc>) -> String {
    dt.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

// Queries: functions and clauses whose spelling differs.

impl Dialect {
    /// The function that finds text in text (1-based position, 0 when absent).
    pub fn position_function(self) -> &'static str {
        match self {
            Dialect::Sqlite => "instr",
            Dialect::Postgres => "strpos",
        }
    }

    /// The day (`YYYY-MM-DD` text) that starts the `bucket` of the date or datetime
    /// SQL expression `c` (datetimes bucketed in UTC; weeks start on Monday).
    pub fn bucket_start(self, bucket: Bucket, c: &str, timestamp: bool) -> String {
        match self {
            // Dates and datetimes are fixed-width texts.
            Dialect::Sqlite => match bucket {
                Bucket::Day => format!("substr({c}, 1, 10)"),
                Bucket::Month => format!("substr({c}, 1, 7) || '-01'"),
                Bucket::Year => format!("substr({c}, 1, 4) || '-01-01'"),
                Bucket::Week => format!("date(substr({c}, 1, 10), '-6 days', 'weekday 1')"),
            },
            Dialect::Postgres => {
                let value = match timestamp {
                    true => format!("{c} AT TIME ZONE 'UTC'"),
                    false => c.to_string(),
                };
                format!(
                    "to_char(date_trunc('{}', {value}), 'YYYY-MM-DD')",
                    bucket.name()
                )
            }
        }
    }

    /// The sum of the SQL expression `c`, a column of `storage`, read back as that
    /// storage (PostgreSQL sums BIGINTs as NUMERIC).
    pub fn sum(self, c: &str, storage: Storage) -> String {
        match (self, storage) {
            (Dialect::Postgres, Storage::Integer) => format!("CAST(SUM({c}) AS BIGINT)"),
            _ => format!("SUM({c})"),
        }
    }

    /// The average of the SQL expression `c`, a column of `storage`, as a double.
    pub fn average(self, c: &str, storage: Storage) -> String {
        match (self.kept(storage), self) {
            (Kept::Units { scale }, _) => format!("AVG({c}) / {}.0", 10i64.pow(scale)),
            (_, Dialect::Sqlite) => format!("AVG({c})"),
            (_, Dialect::Postgres) => format!("CAST(AVG({c}) AS DOUBLE PRECISION)"),
        }
    }

    /// How a transaction that reads and then writes begins. SQLite's must take the
    /// write lock at once (`IMMEDIATE`): a deferred one cannot take it once another
    /// connection has written (WAL).
    pub fn begin_writing(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        }
    }

    /// Are the log triggers deferred to the commit (PostgreSQL), so that a schema
    /// change must make pending trigger events fire first (`SET CONSTRAINTS ALL
    /// IMMEDIATE`: an ALTER TABLE refuses a table with pending events)?
    pub fn defers_log_triggers(self) -> bool {
        match self {
            Dialect::Postgres => true,
            Dialect::Sqlite => false,
        }
    }

    /// Does a migration switch foreign keys off and check them itself before the
    /// commit (SQLite, whose table rebuilds would otherwise break references)?
    pub fn checks_foreign_keys_after_rebuild(self) -> bool {
        self.ddl_alters_by_rebuild()
    }

    /// Does a transition's compare-and-set also mark itself for the change log and
    /// insert its history row, in one statement? PostgreSQL does, with
    /// data-modifying CTEs (`WITH u AS (UPDATE …), h AS (INSERT …)`); SQLite, which
    /// has none, inserts the history row next in the same transaction, and a trigger
    /// on that row re-kinds the log row as a transition.
    pub fn transition_in_one_statement(self) -> bool {
        match self {
            Dialect::Postgres => true,
            Dialect::Sqlite => false,
        }
    }

    /// The clause that makes a `SELECT … FOR UPDATE` skip rows other transactions
    /// hold (nothing on SQLite, where one writer runs at a time).
    pub fn skip_locked(self) -> &'static str {
        match self {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        }
    }

    /// The column definition of an increasing sequence number key named `name`.
    pub fn serial_key(self, name: &str) -> String {
        match self {
            Dialect::Sqlite => format!("{name} INTEGER PRIMARY KEY AUTOINCREMENT"),
            Dialect::Postgres => format!("{name} BIGSERIAL PRIMARY KEY"),
        }
    }

    /// A one-row table of the `columns` of `table` read from `json`, a row the
    /// database wrote as a JSON object (with the stored types: the database reads its
    /// own JSON back).
    pub fn row_from_json(self, table: &str, columns: &[String], json: String) -> SelectStatement {
        let mut row = Query::select();
        match self {
            Dialect::Sqlite => {
                let mut object = Query::select();
                object.expr_as(Expr::val(json), "j");
                for name in columns {
                    let path = format!("$.\"{}\"", name.replace('\'', "''"));
                    row.expr_as(
                        Expr::cust(format!("json_extract(j, '{path}')")),
                        name.clone(),
                    );
                }
                row.from_subquery(object, "j");
            }
            Dialect::Postgres => {
                row.expr(Expr::cust_with_values(
                    format!(
                        "(json_populate_record(NULL::{}, CAST($1 AS json))).*",
                        super::quote(table)
                    ),
                    [json],
                ));
            }
        }
        row
    }
}

// Full-text search: where each dialect keeps an entity's index, and how words
// match and rank through it.

/// How a page is ordered by relevance.
pub enum Relevance {
    /// Joined once with this subquery (its `rowid` and `rank`, best first ascending).
    Join(Box<SelectStatement>),
    /// Ordered by this expression (best first, ascending).
    Order(Expr),
}

/// SQLite: the FTS5 table that indexes the search fields of `entity`.
pub(crate) fn fts_table(entity: &str) -> String {
    format!("{entity}__fts")
}

/// PostgreSQL: the text searched in `fields` (of the table aliased `alias`): the
/// fields joined by spaces. For all of an entity's search fields it is the text its
/// GIN index is built on, so that the index serves it.
pub(crate) fn search_document(fields: &[String], alias: Option<&str>) -> String {
    if fields.is_empty() {
        return "to_tsvector('simple', '')".to_string();
    }
    let prefix = alias
        .map(|a| format!("{}.", super::quote(a)))
        .unwrap_or_default();
    let parts: Vec<String> = fields
        .iter()
        .map(|f| format!("coalesce({prefix}{}, '')", super::quote(f)))
        .collect();
    format!("to_tsvector('simple', {})", parts.join(" || ' ' || "))
}

/// The FTS5 query that every word of `words` occurs in the columns `cols` (all of the
/// index's columns when `every` search field is one). Each word is a quoted string,
/// so FTS5 operators and column names in the input are read as text.
fn fts_query(cols: &[String], every: bool, words: &str) -> String {
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
    if every {
        words
    } else {
        // Column names come from the validated model; quoted all the same.
        let cols: Vec<String> = cols.iter().map(|c| super::quote(c)).collect();
        format!("{{{}}} : ({words})", cols.join(" "))
    }
}

impl Dialect {
    /// The condition that every word of `words` occurs in the search fields `cols` of
    /// the row of `e` aliased `alias`.
    pub fn text_match(self, e: &Entity, alias: &str, cols: &[String], words: &str) -> Expr {
        match self {
            Dialect::Sqlite => {
                let fts = super::quote(&fts_table(&e.name));
                Expr::cust_with_values(
                    format!(
                        "{}.rowid IN (SELECT rowid FROM {fts} WHERE {fts} MATCH ?)",
                        super::quote(alias)
                    ),
                    [fts_query(cols, cols.len() == e.search.len(), words)],
                )
            }
            Dialect::Postgres => Expr::cust_with_values(
                format!(
                    "{} @@ plainto_tsquery('simple', $1)",
                    search_document(cols, Some(alias))
                ),
                [words.to_string()],
            ),
        }
    }

    /// The match through every search field that the index serves by itself, when a
    /// narrower match needs it to use the index (PostgreSQL's GIN index on the whole
    /// document); `None` where every match uses the index (SQLite's `MATCH`).
    pub fn text_prefilter(self, e: &Entity, alias: &str, words: &str) -> Option<Expr> {
        match self {
            Dialect::Sqlite => None,
            Dialect::Postgres => Some(self.text_match(e, alias, &e.search, words)),
        }
    }

    /// The relevance order of matches of `words`, weighing the fields `weighted`;
    /// `widest` are all the fields a match may go through.
    pub fn relevance(
        self,
        e: &Entity,
        alias: &str,
        weighted: &[String],
        widest: &[String],
        words: &str,
    ) -> Relevance {
        match self {
            Dialect::Sqlite => {
                let table = fts_table(&e.name);
                let fts = super::quote(&table);
                let weights: Vec<&str> = e
                    .search
                    .iter()
                    .map(|f| match weighted.contains(f) {
                        true => "1.0",
                        false => "0.0",
                    })
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
                        [fts_query(widest, widest.len() == e.search.len(), words)],
                    ));
                Relevance::Join(Box::new(sub))
            }
            Dialect::Postgres => Relevance::Order(Expr::cust_with_values(
                format!(
                    "-ts_rank({}, plainto_tsquery('simple', $1))",
                    search_document(weighted, Some(alias))
                ),
                [words.to_string()],
            )),
        }
    }
}

// JSON text built by the database (store/json_tree.rs): the same bytes the record
// path writes, from SQL.
impl Dialect {
    /// `x` joined with commas in the order of `order` (`group_concat` / `string_agg`).
    pub(crate) fn text_agg(self, x: Expr, order: Expr) -> Expr {
        match self {
            Dialect::Sqlite => Expr::cust_with_exprs("group_concat(?, ',' ORDER BY ?)", [x, order]),
            Dialect::Postgres => {
                Expr::cust_with_exprs("string_agg($1, ',' ORDER BY $2)", [x, order])
            }
        }
    }

    /// A value quoted as JSON by the database itself (text, integers, ids, dates);
    /// `null` for NULL.
    pub(crate) fn json_quote(self, c: Expr) -> Expr {
        match self {
            Dialect::Sqlite => Func::cust("json_quote").arg(c).into(),
            Dialect::Postgres => Func::coalesce([
                Expr::cust_with_exprs("to_json($1)::text", [c]),
                Expr::cust("'null'"),
            ])
            .into(),
        }
    }

    /// Can SQL write a decimal of this scale as JSON? SQLite keeps integer units of
    /// `10^-scale`, formatted in SQL up to [`MAX_SQL_SCALE`] (`10^scale` fits an
    /// INTEGER).
    pub(crate) fn decimal_json_in_sql(self, scale: u32) -> bool {
        self == Dialect::Postgres || scale <= MAX_SQL_SCALE
    }

    /// The JSON text of a column (`c`, written `q` in SQL) stored as `storage`, as
    /// the record path writes it — and whether `json_tree::finish` must rewrite
    /// marked parts of it (floats, JSON, SQLite's non-standard datetimes).
    pub(crate) fn json_text(self, c: Expr, q: &str, storage: Storage) -> (Expr, bool) {
        let pg = self == Dialect::Postgres;
        let mut finish = false;
        let text = match storage {
            Storage::Text | Storage::Integer => self.json_quote(c),
            Storage::Uuid | Storage::Date => self.json_quote(c),
            Storage::Real => {
                finish = true;
                let exact = if pg {
                    format!("{q}::text")
                } else {
                    format!("printf('%!.17g', {q})")
                };
                let mark = if pg { "chr(1)" } else { "char(1)" };
                Expr::cust(format!(
                    "CASE WHEN {q} IS NULL THEN 'null' ELSE {mark} || {exact} || {mark} END"
                ))
            }
            Storage::Decimal { scale, .. } => {
                if pg {
                    Expr::cust(format!(
                        "COALESCE('\"' || round({q}, {scale})::text || '\"', 'null')"
                    ))
                } else if scale == 0 {
                    Expr::cust(format!("COALESCE('\"' || {q} || '\"', 'null')"))
                } else {
                    let unit = 10i64.pow(Ord::min(scale, MAX_SQL_SCALE));
                    let zeros = "0".repeat(scale as usize);
                    Expr::cust(format!(
                        "CASE WHEN {q} IS NULL THEN 'null' ELSE '\"' || CASE WHEN {q} < 0 THEN '-' ELSE '' END || (abs({q}) / {unit}) || '.' || substr('{zeros}' || (abs({q}) % {unit}), -{scale}) || '\"' END"
                    ))
                }
            }
            Storage::Boolean => {
                let truth = if pg {
                    q.to_string()
                } else {
                    format!("{q} <> 0")
                };
                Expr::cust(format!(
                    "CASE WHEN {q} IS NULL THEN 'null' WHEN {truth} THEN 'true' ELSE 'false' END"
                ))
            }
            Storage::Timestamp => {
                if pg {
                    // One `to_char` with every microsecond digit, trimmed in Rust:
                    // choosing the digits in SQL took four calls per value, and
                    // timestamps were most of the statement's cost.
                    finish = true;
                    Expr::cust(format!(
                        "CASE WHEN {q} IS NULL THEN 'null' ELSE chr(5) || to_char(({q} AT TIME ZONE 'UTC'), 'YYYY-MM-DD\"T\"HH24:MI:SS.US') || chr(5) END"
                    ))
                } else {
                    // Trellis's fixed-width text, trimmed as the record path trims it;
                    // any other text is parsed in `finish`.
                    finish = true;
                    Expr::cust(format!(
                        "CASE WHEN {q} IS NULL THEN 'null' WHEN {q} GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z' THEN '\"' || CASE WHEN substr({q}, 21, 6) = '000000' THEN substr({q}, 1, 19) WHEN substr({q}, 24, 3) = '000' THEN substr({q}, 1, 23) ELSE substr({q}, 1, 26) END || 'Z\"' ELSE char(4) || json_quote({q}) || char(4) END"
                    ))
                }
            }
            Storage::Json => {
                finish = true;
                if pg {
                    Expr::cust(format!(
                        "CASE WHEN {q} IS NULL THEN 'null' ELSE chr(2) || {q}::text || chr(3) END"
                    ))
                } else {
                    Expr::cust(format!(
                        "CASE WHEN {q} IS NULL THEN 'null' ELSE char(2) || {q} || char(3) END"
                    ))
                }
            }
        };
        (text, finish)
    }
}

/// The largest decimal scale SQLite's units are formatted for in SQL.
pub(crate) const MAX_SQL_SCALE: u32 = 18;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::FieldType;
    use rust_decimal::Decimal;
    use sea_query::ExprTrait;

    const BOTH: [Dialect; 2] = [Dialect::Sqlite, Dialect::Postgres];

    fn kind(ty: FieldType) -> Storage {
        ty.storage(10, 2).unwrap_or(Storage::Text)
    }

    #[test]
    fn column_types_by_field_type() {
        let expected = [
            (FieldType::String, "TEXT", "TEXT"),
            (FieldType::Text, "TEXT", "TEXT"),
            (FieldType::Email, "TEXT", "TEXT"),
            (FieldType::Url, "TEXT", "TEXT"),
            (FieldType::Enum, "TEXT", "TEXT"),
            (FieldType::Integer, "INTEGER", "BIGINT"),
            (FieldType::Number, "REAL", "DOUBLE PRECISION"),
            (FieldType::Decimal, "INTEGER", "NUMERIC(10, 2)"),
            (FieldType::Boolean, "INTEGER", "BOOLEAN"),
            (FieldType::Date, "TEXT", "DATE"),
            (FieldType::Datetime, "TEXT", "TIMESTAMPTZ"),
            (FieldType::Uuid, "TEXT", "UUID"),
            (FieldType::Ref, "TEXT", "UUID"),
            (FieldType::Json, "TEXT", "JSONB"),
        ];
        for (ty, sqlite, pg) in expected {
            assert_eq!(Dialect::Sqlite.ddl_column_type(kind(ty)), sqlite, "{ty:?}");
            assert_eq!(Dialect::Postgres.ddl_column_type(kind(ty)), pg, "{ty:?}");
        }
    }

    #[test]
    fn typed_nulls_follow_the_column() {
        let d = Storage::Decimal {
            precision: 10,
            scale: 2,
        };
        assert_eq!(Dialect::Sqlite.null(d), SqlValue::BigInt(None));
        assert_eq!(Dialect::Postgres.null(d), SqlValue::Decimal(None));
        assert_eq!(
            Dialect::Sqlite.null(Storage::Boolean),
            SqlValue::BigInt(None)
        );
        assert_eq!(
            Dialect::Postgres.null(Storage::Boolean),
            SqlValue::Bool(None)
        );
        assert_eq!(Dialect::Sqlite.null(Storage::Uuid), SqlValue::String(None));
        assert_eq!(Dialect::Postgres.null(Storage::Uuid), SqlValue::Uuid(None));
        assert_eq!(
            Dialect::Postgres.null(Storage::Timestamp),
            SqlValue::ChronoDateTimeUtc(None)
        );
        for d in BOTH {
            assert_eq!(d.null(Storage::Real), SqlValue::Double(None));
            assert_eq!(d.null(Storage::Text), SqlValue::String(None));
        }
    }

    #[test]
    fn every_null_binds_as_its_column_type() {
        // A NULL of a kind is bound with the type a non-NULL value of it gets.
        let samples = [
            (Storage::Integer, Cell::Int(1)),
            (Storage::Real, Cell::Float(1.5)),
            (Storage::Boolean, Cell::Bool(true)),
            (Storage::Text, Cell::Text("a".into())),
            (Storage::Uuid, Cell::Uuid(Uuid::nil())),
            (
                Storage::Timestamp,
                Cell::DateTime(DateTime::<Utc>::UNIX_EPOCH),
            ),
            (Storage::Json, Cell::Json(serde_json::json!({"a": 1}))),
        ];
        for d in BOTH {
            for (storage, cell) in &samples {
                let value = d.value(*storage, cell);
                let null = d.value(*storage, &Cell::Null);
                assert_eq!(
                    std::mem::discriminant(&value),
                    std::mem::discriminant(&null),
                    "{d:?} {storage:?}"
                );
            }
        }
    }

    #[test]
    fn sqlite_keeps_decimals_as_units_and_booleans_as_integers() {
        let price = Storage::Decimal {
            precision: 10,
            scale: 2,
        };
        let d = Cell::Decimal(Decimal::new(125, 1)); // 12.5
        assert_eq!(
            Dialect::Sqlite.value(price, &d),
            SqlValue::BigInt(Some(1250))
        );
        assert_eq!(
            Dialect::Postgres.value(price, &d),
            SqlValue::Decimal(Some(Decimal::new(125, 1)))
        );
        assert_eq!(Dialect::Sqlite.kept(price), Kept::Units { scale: 2 });
        assert_eq!(Dialect::Postgres.kept(price), Kept::Numeric { scale: 2 });
        assert_eq!(
            Dialect::Sqlite.value(Storage::Boolean, &Cell::Bool(true)),
            SqlValue::BigInt(Some(1))
        );
        assert_eq!(Dialect::Sqlite.kept(Storage::Boolean), Kept::IntegerBool);
        assert_eq!(Dialect::Postgres.kept(Storage::Boolean), Kept::Bool);
    }

    #[test]
    fn sqlite_keeps_times_and_ids_as_fixed_width_text() {
        let at = DateTime::<Utc>::from_timestamp(1_700_000_000, 120_000_000).unwrap_or_default();
        assert_eq!(
            Dialect::Sqlite.datetime(at),
            SqlValue::String(Some("2023-11-14T22:13:20.120000Z".into()))
        );
        assert_eq!(
            Dialect::Postgres.datetime(at),
            SqlValue::ChronoDateTimeUtc(Some(at))
        );
        let id = Uuid::from_u128(0xA1);
        assert_eq!(
            Dialect::Sqlite.uuid(id),
            SqlValue::String(Some("00000000-0000-0000-0000-0000000000a1".into()))
        );
        assert_eq!(Dialect::Postgres.uuid(id), SqlValue::Uuid(Some(id)));
        assert_eq!(
            Dialect::Sqlite.kept(Storage::Timestamp),
            Kept::TimestampText
        );
        assert_eq!(Dialect::Sqlite.kept(Storage::Uuid), Kept::Text);
        assert_eq!(Dialect::Sqlite.kept(Storage::Json), Kept::JsonText);
    }

    #[test]
    fn statements_render_with_each_dialects_placeholders() {
        let mut q = Query::select();
        q.column("id")
            .from("tickets")
            .and_where(Expr::col("id").eq(Dialect::Sqlite.uuid(Uuid::nil())));
        let (sql, values) = Dialect::Sqlite.build(&q);
        assert_eq!(sql, r#"SELECT "id" FROM "tickets" WHERE "id" = ?"#);
        assert_eq!(values.0.0.len(), 1);
        let (sql, _) = Dialect::Postgres.build(&q);
        assert_eq!(sql, r#"SELECT "id" FROM "tickets" WHERE "id" = $1"#);
    }

    #[test]
    fn query_spellings() {
        assert_eq!(Dialect::Sqlite.position_function(), "instr");
        assert_eq!(Dialect::Postgres.position_function(), "strpos");
        assert_eq!(
            Dialect::Sqlite.bucket_start(Bucket::Month, "c", true),
            "substr(c, 1, 7) || '-01'"
        );
        assert_eq!(
            Dialect::Sqlite.bucket_start(Bucket::Week, "c", false),
            "date(substr(c, 1, 10), '-6 days', 'weekday 1')"
        );
        assert_eq!(
            Dialect::Postgres.bucket_start(Bucket::Year, "c", true),
            "to_char(date_trunc('year', c AT TIME ZONE 'UTC'), 'YYYY-MM-DD')"
        );
        assert_eq!(
            Dialect::Postgres.bucket_start(Bucket::Day, "c", false),
            "to_char(date_trunc('day', c), 'YYYY-MM-DD')"
        );
        assert_eq!(Dialect::Sqlite.sum("c", Storage::Integer), "SUM(c)");
        assert_eq!(
            Dialect::Postgres.sum("c", Storage::Integer),
            "CAST(SUM(c) AS BIGINT)"
        );
        let price = Storage::Decimal {
            precision: 10,
            scale: 2,
        };
        assert_eq!(Dialect::Sqlite.average("c", price), "AVG(c) / 100.0");
        assert_eq!(Dialect::Sqlite.average("c", Storage::Real), "AVG(c)");
        assert_eq!(
            Dialect::Postgres.average("c", price),
            "CAST(AVG(c) AS DOUBLE PRECISION)"
        );
        assert_eq!(Dialect::Sqlite.skip_locked(), "");
        assert_eq!(Dialect::Postgres.skip_locked(), " FOR UPDATE SKIP LOCKED");
        assert_eq!(
            Dialect::Postgres.serial_key("seq"),
            "seq BIGSERIAL PRIMARY KEY"
        );
    }

    #[test]
    fn fts5_queries_quote_every_word() {
        let cols = vec!["title".to_string(), "body".to_string()];
        assert_eq!(fts_query(&cols, true, "plain words"), r#""plain" "words""#);
        assert_eq!(
            fts_query(&cols, false, r#"a"b title:x"#),
            r#"{"title" "body"} : ("a""b" "title:x")"#
        );
        assert_eq!(
            fts_query(&cols, true, "-- !!"),
            r#""""#,
            "no token: matches nothing"
        );
    }

    #[test]
    fn search_documents() {
        let cols = vec!["title".to_string(), "body".to_string()];
        assert_eq!(
            search_document(&cols, Some("t0")),
            r#"to_tsvector('simple', coalesce("t0"."title", '') || ' ' || coalesce("t0"."body", ''))"#
        );
        assert_eq!(search_document(&[], None), "to_tsvector('simple', '')");
        assert_eq!(fts_table("tickets"), "tickets__fts");
    }

    #[test]
    fn rows_read_back_from_json() {
        let cols = vec!["id".to_string(), "it's".to_string()];
        let (sql, values) =
            Dialect::Sqlite.build(&Dialect::Sqlite.row_from_json("t", &cols, "{}".into()));
        assert_eq!(
            sql,
            r#"SELECT json_extract(j, '$."id"') AS "id", json_extract(j, '$."it''s"') AS "it's" FROM (SELECT ? AS "j") AS "j""#
        );
        assert_eq!(values.0.0.len(), 1);
        let (sql, _) =
            Dialect::Postgres.build(&Dialect::Postgres.row_from_json("t", &cols, "{}".into()));
        assert_eq!(
            sql,
            r#"SELECT (json_populate_record(NULL::"t", CAST($1 AS json))).*"#
        );
    }
}
