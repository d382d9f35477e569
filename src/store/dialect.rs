//! Every difference between SQLite and PostgreSQL, in one place.
//!
//! The rest of the store asks [`Dialect`] instead of matching on the database:
//! column types, id and time types, query builders, full-text search, upserts,
//! locking and row decoding. A third database means implementing this type (and
//! its tests), not editing every store file.

use sea_query::{PostgresQueryBuilder, SchemaStatementBuilder, SqliteQueryBuilder};

use crate::engine::schema_diff::ColumnShape;
use crate::spec::{FieldType, OnDelete, Storage};

/// The SQL dialect of a store's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {}

// Schema (DDL): column types, the table statements, references, search indexes and
// how a table's shape is changed (PostgreSQL alters, SQLite rebuilds).
impl Dialect {
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
