//! Tables from entities. `sync_schema` creates what is missing and refuses changes
//! that would need a real migration (those come with `trellis migrate`).
//!
//! The last applied shape of every entity is kept in `_trellis_schema`, so a change of
//! type, of `required` or of a reference target is noticed and refused with a clear
//! message instead of being applied half-way.

use std::collections::{BTreeMap, HashMap};

use sea_query::{
    ColumnDef, ForeignKey, ForeignKeyAction, Index, PostgresQueryBuilder, SqliteQueryBuilder,
    Table, TableAlterStatement, TableCreateStatement,
};
use serde::{Deserialize, Serialize};

use super::values::{cell_value, column_type};
use super::{Dialect, Error, Pool, Store};
use crate::engine::{Engine, Entity, Field, input};
use crate::spec::model::Default as SpecDefault;
use crate::spec::{FieldType, OnDelete};

/// The stored shape of one entity.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct Snapshot {
    /// Column name -> signature (SQL type, NOT NULL, reference).
    columns: BTreeMap<String, String>,
    /// Many field -> target entity.
    links: BTreeMap<String, String>,
    /// Full-text search fields.
    #[serde(default)]
    search: Vec<String>,
    /// Column name -> logical type (`decimal(18,2)`, `enum`, …): SQLite stores several
    /// types alike, and a decimal's scale changes what its stored integers mean.
    #[serde(default)]
    types: BTreeMap<String, String>,
    /// Enum field -> its values.
    #[serde(default)]
    values: BTreeMap<String, Vec<String>>,
}

fn logical_type(f: &Field) -> String {
    match f.ty {
        FieldType::Decimal => format!("decimal({},{})", f.precision, f.scale),
        ty => ty.name().to_string(),
    }
}

/// What `sync_schema` did.
#[derive(Debug, Default, Clone)]
pub struct SyncReport {
    pub created_tables: Vec<String>,
    pub added_columns: Vec<String>,
    pub renamed_columns: Vec<String>,
    /// Things left in place (columns and tables of removed definitions).
    pub kept: Vec<String>,
    /// Columns whose type, `required` or reference a migration changed.
    pub changed_columns: Vec<String>,
    /// Entities and fields a migration dropped.
    pub dropped: Vec<String>,
}

impl SyncReport {
    pub fn is_empty(&self) -> bool {
        self.created_tables.is_empty()
            && self.added_columns.is_empty()
            && self.renamed_columns.is_empty()
            && self.changed_columns.is_empty()
            && self.dropped.is_empty()
    }
}

fn on_delete_sql(o: OnDelete) -> &'static str {
    match o {
        OnDelete::Restrict => "RESTRICT",
        OnDelete::Cascade => "CASCADE",
        OnDelete::SetNull => "SET NULL",
    }
}

fn fk_action(o: OnDelete) -> ForeignKeyAction {
    match o {
        OnDelete::Restrict => ForeignKeyAction::Restrict,
        OnDelete::Cascade => ForeignKeyAction::Cascade,
        OnDelete::SetNull => ForeignKeyAction::SetNull,
    }
}

fn signature(dialect: Dialect, f: &Field) -> String {
    let mut s = column_type(dialect, f.ty, f.scale, f.precision);
    if f.required {
        s.push_str(" NOT NULL");
    }
    if let Some(t) = &f.target
        && f.ty == FieldType::Ref
    {
        s.push_str(&format!(
            " REFERENCES {t} ON DELETE {}",
            on_delete_sql(f.on_delete)
        ));
    }
    s
}

fn snapshot(dialect: Dialect, e: &Entity) -> Snapshot {
    Snapshot {
        columns: e
            .column_fields()
            .map(|f| (f.name.clone(), signature(dialect, f)))
            .collect(),
        links: e
            .many_fields()
            .map(|f| (f.name.clone(), f.target.clone().unwrap_or_default()))
            .collect(),
        search: e.search.clone(),
        types: e
            .column_fields()
            .map(|f| (f.name.clone(), logical_type(f)))
            .collect(),
        values: e
            .column_fields()
            .filter(|f| f.ty == FieldType::Enum)
            .map(|f| (f.name.clone(), f.values.clone()))
            .collect(),
    }
}

/// The full-text index table of an entity in SQLite (`__` cannot occur in model names).
pub(crate) fn fts_table(entity: &str) -> String {
    super::dialect::fts_table(entity)
}

/// The text PostgreSQL indexes and searches: the search fields joined by spaces.
pub(crate) fn pg_document(e: &Entity, alias: Option<&str>) -> String {
    super::dialect::search_document(&e.search, alias)
}

/// A deterministic index name within PostgreSQL's 63-byte limit.
pub(crate) fn index_name(prefix: &str, table: &str, cols: &[String]) -> String {
    let cols: Vec<String> = cols
        .iter()
        .map(|c| match c.strip_prefix('-') {
            Some(desc) => format!("{desc}_desc"),
            None => c.clone(),
        })
        .collect();
    let name = format!("{prefix}_{table}_{}", cols.join("_"));
    if name.len() <= 60 {
        return name;
    }
    let mut hash: u32 = 2166136261;
    for b in name.bytes() {
        hash = (hash ^ u32::from(b)).wrapping_mul(16777619);
    }
    format!("{}_{hash:08x}", &name[..50])
}

struct Builder {
    dialect: Dialect,
}

impl Builder {
    fn table(&self, t: &TableCreateStatement) -> String {
        match self.dialect {
            Dialect::Sqlite => t.to_string(SqliteQueryBuilder),
            Dialect::Postgres => t.to_string(PostgresQueryBuilder),
        }
    }

    fn alter(&self, t: &TableAlterStatement) -> String {
        match self.dialect {
            Dialect::Sqlite => t.to_string(SqliteQueryBuilder),
            Dialect::Postgres => t.to_string(PostgresQueryBuilder),
        }
    }

    fn column(&self, f: &Field, with_default: bool) -> ColumnDef {
        let mut c = ColumnDef::new(f.name.clone());
        c.custom(column_type(self.dialect, f.ty, f.scale, f.precision));
        if f.required {
            c.not_null();
        }
        if with_default
            && let Some(SpecDefault::Value(v)) = &f.default
            && let Ok(cell) = input::convert(f, v)
        {
            c.default(cell_value(self.dialect, f.ty, f.scale, &cell));
        }
        if self.dialect == Dialect::Sqlite
            && f.ty == FieldType::Ref
            && let Some(t) = &f.target
        {
            // SQLite takes references only inside the column definition.
            c.extra(format!(
                "REFERENCES {}(\"id\") ON DELETE {}",
                super::quote(t),
                on_delete_sql(f.on_delete)
            ));
        }
        c
    }

    fn system_columns(&self, t: &mut TableCreateStatement) {
        let (id_type, time_type) = match self.dialect {
            Dialect::Sqlite => ("TEXT", "TEXT"),
            Dialect::Postgres => ("UUID", "TIMESTAMPTZ"),
        };
        t.col(
            ColumnDef::new("id")
                .custom(id_type)
                .not_null()
                .primary_key(),
        )
        .col(ColumnDef::new("created_at").custom(time_type).not_null())
        .col(ColumnDef::new("updated_at").custom(time_type).not_null())
        .col(
            ColumnDef::new("version")
                .custom(if self.dialect == Dialect::Sqlite {
                    "INTEGER"
                } else {
                    "BIGINT"
                })
                .not_null()
                .default(1),
        );
    }

    fn create_entity(&self, e: &Entity) -> String {
        let mut t = Table::create();
        t.table(e.name.clone());
        self.system_columns(&mut t);
        for f in e.column_fields() {
            t.col(self.column(f, false));
        }
        self.table(&t)
    }

    /// PostgreSQL: references are added once every table exists.
    fn foreign_key(&self, e: &Entity, f: &Field) -> Option<String> {
        let target = f.target.as_ref()?;
        if self.dialect != Dialect::Postgres {
            return None;
        }
        Some(
            ForeignKey::create()
                .name(format!("fk_{}_{}", e.name, f.name))
                .from(e.name.clone(), f.name.clone())
                .to(target.clone(), "id")
                .on_delete(fk_action(f.on_delete))
                .to_string(PostgresQueryBuilder),
        )
    }

    fn create_join(&self, e: &Entity, f: &Field) -> Vec<String> {
        let table = e.join_table(f);
        let target = f.target.clone().unwrap_or_default();
        let id_type = match self.dialect {
            Dialect::Sqlite => "TEXT",
            Dialect::Postgres => "UUID",
        };
        let mut t = Table::create();
        t.table(table.clone())
            .col(ColumnDef::new("source_id").custom(id_type).not_null())
            .col(ColumnDef::new("target_id").custom(id_type).not_null())
            .primary_key(Index::create().col("source_id").col("target_id"))
            .foreign_key(
                ForeignKey::create()
                    .name(format!("fk_{table}_source"))
                    .from(table.clone(), "source_id")
                    .to(e.name.clone(), "id")
                    .on_delete(ForeignKeyAction::Cascade),
            )
            .foreign_key(
                ForeignKey::create()
                    .name(format!("fk_{table}_target"))
                    .from(table.clone(), "target_id")
                    .to(target, "id")
                    .on_delete(ForeignKeyAction::Cascade),
            );
        let mut out = vec![self.table(&t)];
        out.push(self.index(&table, &["target_id".to_string()], false));
        out
    }

    fn index(&self, table: &str, cols: &[String], unique: bool) -> String {
        let name = index_name(if unique { "uq" } else { "ix" }, table, cols);
        if cols.iter().any(|c| c.starts_with('-')) {
            // A descending column, for a sort (`-price`): nulls last, as lists sort
            // them; SQLite's descending order already puts them last.
            let q = super::quote;
            let rendered: Vec<String> = cols
                .iter()
                .map(|c| match (c.strip_prefix('-'), self.dialect) {
                    (Some(d), Dialect::Postgres) => format!("{} DESC NULLS LAST", q(d)),
                    (Some(d), Dialect::Sqlite) => format!("{} DESC", q(d)),
                    (None, _) => q(c),
                })
                .collect();
            return format!(
                "CREATE {}INDEX IF NOT EXISTS {} ON {} ({})",
                if unique { "UNIQUE " } else { "" },
                q(&name),
                q(table),
                rendered.join(", ")
            );
        }
        let mut i = Index::create();
        i.if_not_exists().name(name).table(table.to_string());
        for c in cols {
            i.col(c.clone());
        }
        if unique {
            i.unique();
        }
        match self.dialect {
            Dialect::Sqlite => i.to_string(SqliteQueryBuilder),
            Dialect::Postgres => i.to_string(PostgresQueryBuilder),
        }
    }

    /// (Re)creates the full-text index of an entity: an FTS5 table kept in sync by
    /// triggers in SQLite, a GIN expression index in PostgreSQL.
    fn search(&self, e: &Entity) -> Vec<String> {
        let q = super::quote;
        let mut out = Vec::new();
        match self.dialect {
            Dialect::Sqlite => {
                let fts = fts_table(&e.name);
                for suffix in ["ai", "ad", "au"] {
                    out.push(format!(
                        "DROP TRIGGER IF EXISTS {}",
                        q(&format!("{fts}_{suffix}"))
                    ));
                }
                out.push(format!("DROP TABLE IF EXISTS {}", q(&fts)));
                if e.search.is_empty() {
                    return out;
                }
                let cols: Vec<String> = e.search.iter().map(|c| q(c)).collect();
                let cols = cols.join(", ");
                let new_vals: Vec<String> =
                    e.search.iter().map(|c| format!("new.{}", q(c))).collect();
                let old_vals: Vec<String> =
                    e.search.iter().map(|c| format!("old.{}", q(c))).collect();
                let (new_vals, old_vals) = (new_vals.join(", "), old_vals.join(", "));
                let (t, f) = (q(&e.name), q(&fts));
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
                let name = q(&format!("fts_{}", e.name));
                out.push(format!("DROP INDEX IF EXISTS {name}"));
                if !e.search.is_empty() {
                    out.push(format!(
                        "CREATE INDEX {name} ON {} USING GIN (({}))",
                        q(&e.name),
                        pg_document(e, None)
                    ));
                }
            }
        }
        out
    }

    /// SQLite's way to change a table beyond ALTER: a new table of the new shape,
    /// filled from the old one (`copy`: column -> expression over the old row), which
    /// then takes its place. Run with foreign keys off (see `apply_migration`).
    fn rebuild(&self, e: &Entity, copy: &[(String, String)]) -> Vec<String> {
        let q = super::quote;
        let temp = format!("{}__rebuild", e.name);
        let mut t = Table::create();
        t.table(temp.clone());
        self.system_columns(&mut t);
        for f in e.column_fields() {
            t.col(self.column(f, false));
        }
        let mut cols = vec!["id", "created_at", "updated_at", "version"]
            .into_iter()
            .map(q)
            .collect::<Vec<_>>();
        let mut exprs = cols.clone();
        for (col, expr) in copy {
            cols.push(q(col));
            exprs.push(expr.clone());
        }
        vec![
            self.table(&t),
            format!(
                "INSERT INTO {} ({}) SELECT {} FROM {}",
                q(&temp),
                cols.join(", "),
                exprs.join(", "),
                q(&e.name)
            ),
            format!("DROP TABLE {}", q(&e.name)),
            format!("ALTER TABLE {} RENAME TO {}", q(&temp), q(&e.name)),
        ]
    }

    fn indexes(&self, e: &Entity) -> Vec<String> {
        let mut out = Vec::new();
        for f in e.column_fields() {
            if f.unique {
                out.push(self.index(&e.name, std::slice::from_ref(&f.name), true));
            } else if f.ty == FieldType::Ref {
                out.push(self.index(&e.name, std::slice::from_ref(&f.name), false));
            }
        }
        for cols in &e.unique {
            out.push(self.index(&e.name, cols, true));
        }
        for cols in &e.indexes {
            out.push(self.index(&e.name, cols, false));
        }
        out
    }
}

/// The fields whose values must be unique together, by index name (for error messages).
pub fn unique_groups(e: &Entity) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = e
        .column_fields()
        .filter(|f| f.unique)
        .map(|f| {
            (
                index_name("uq", &e.name, std::slice::from_ref(&f.name)),
                vec![f.name.clone()],
            )
        })
        .collect();
    for cols in &e.unique {
        out.push((index_name("uq", &e.name, cols), cols.clone()));
    }
    out
}

/// How far a plan may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlanMode {
    /// `serve` and reload: additive changes only; anything else is refused.
    Sync,
    /// `trellis migrate apply`: also drops, type and `required` changes, relinks;
    /// what they may lose is reported as [`Loss`]es, counted before anything runs.
    Migrate,
}

/// A change that may lose data, with the query that counts what.
#[derive(Debug, Clone)]
pub struct Loss {
    /// In plain words, with `{n}` for the count.
    pub what: String,
    /// `SELECT COUNT(*) …`: how many records or values are affected.
    pub count_sql: String,
    /// Cannot be applied at all while the count is above zero (even when allowed).
    pub blocking: bool,
}

/// Statements to run, snapshots to store or drop, what they do, and what they may lose.
pub(crate) struct Planned {
    pub statements: Vec<String>,
    pub snapshots: Vec<(String, String)>,
    pub dropped: Vec<String>,
    pub report: SyncReport,
    pub losses: Vec<Loss>,
}

/// The base SQL type of a stored signature (`TEXT NOT NULL REFERENCES …` -> `TEXT`).
fn sig_type(sig: &str) -> &str {
    let end = [" NOT NULL", " REFERENCES"]
        .iter()
        .filter_map(|m| sig.find(m))
        .min()
        .unwrap_or(sig.len());
    &sig[..end]
}

fn sig_target(sig: &str) -> Option<&str> {
    sig.split(" REFERENCES ").nth(1)?.split(' ').next()
}

/// How SQLite's rebuild copies a column whose type changed (`c` is the quoted
/// old column): decimals are integers of their smallest unit.
fn sqlite_copy(col: &str, old_type: Option<&str>, f: &Field) -> String {
    let old = old_type.unwrap_or("");
    let old_scale = old
        .strip_prefix("decimal(")
        .and_then(|r| r.trim_end_matches(')').split(',').nth(1))
        .and_then(|s| s.parse::<u32>().ok());
    let pow = |n: u32| 10i64.saturating_pow(n);
    match (old_scale, f.ty) {
        (Some(os), FieldType::Decimal) if f.scale >= os => {
            format!("{col} * {}", pow(f.scale - os))
        }
        (Some(os), FieldType::Decimal) => {
            format!(
                "CAST(ROUND({col} * 1.0 / {}) AS INTEGER)",
                pow(os - f.scale)
            )
        }
        (Some(os), FieldType::Number) => format!("{col} * 1.0 / {}", pow(os)),
        (Some(os), FieldType::Integer) => {
            format!("CAST(ROUND({col} * 1.0 / {}) AS INTEGER)", pow(os))
        }
        (Some(os), _) => format!("CAST({col} * 1.0 / {} AS TEXT)", pow(os)),
        (None, FieldType::Decimal) if old == "integer" || old == "number" => {
            format!("CAST(ROUND({col} * {}) AS INTEGER)", pow(f.scale))
        }
        (None, FieldType::Decimal) => {
            format!(
                "CAST(ROUND(CAST({col} AS REAL) * {}) AS INTEGER)",
                pow(f.scale)
            )
        }
        (None, FieldType::Integer | FieldType::Boolean) => format!("CAST({col} AS INTEGER)"),
        (None, FieldType::Number) => format!("CAST({col} AS REAL)"),
        (None, _) if old.is_empty() || column_type(Dialect::Sqlite, f.ty, 0, 0) == "TEXT" => {
            if matches!(old, "integer" | "number" | "boolean") {
                format!("CAST({col} AS TEXT)")
            } else {
                col.to_string()
            }
        }
        _ => col.to_string(),
    }
}

/// Widening conversions keep every value; the others may not.
fn widening(old_type: &str, f: &Field) -> bool {
    let new = logical_type(f);
    old_type == new
        || matches!(f.ty, FieldType::Text | FieldType::String | FieldType::Json)
            && !matches!(old_type, "json")
        || (old_type == "integer" && matches!(f.ty, FieldType::Number | FieldType::Decimal))
        || old_type
            .strip_prefix("decimal(")
            .and_then(|r| r.trim_end_matches(')').split_once(','))
            .and_then(|(p, sc)| Some((p.parse::<u32>().ok()?, sc.parse::<u32>().ok()?)))
            .is_some_and(|(p, sc)| {
                f.ty == FieldType::Decimal && f.scale >= sc && f.precision - f.scale >= p - sc
            })
}

/// The statements that bring a database from `old` to the engine's definitions.
pub(crate) fn plan(
    dialect: Dialect,
    engine: &Engine,
    old: &HashMap<String, Snapshot>,
    mode: PlanMode,
) -> Result<Planned, Error> {
    let b = Builder { dialect };
    let q = super::quote;
    let mut report = SyncReport::default();
    let mut problems = Vec::new();
    let mut statements: Vec<String> = Vec::new();
    let mut late: Vec<String> = Vec::new();
    let mut snapshots: Vec<(String, String)> = Vec::new();
    let mut dropped: Vec<String> = Vec::new();
    let mut losses: Vec<Loss> = Vec::new();
    let migrate = mode == PlanMode::Migrate;
    let count = |table: &str, cond: &str| format!("SELECT COUNT(*) FROM {}{cond}", q(table));

    // Entities removed from the model: kept by `serve`, dropped by a migration.
    for (name, prev) in old {
        if engine.entity(name).is_some() {
            continue;
        }
        if !migrate {
            report.kept.push(format!(
                "{name} (the entity was removed; its table and data are kept)"
            ));
            continue;
        }
        losses.push(Loss {
            what: format!("drop the entity `{name}`: {{n}} record(s) are deleted"),
            count_sql: count(name, ""),
            blocking: false,
        });
        for field in prev.links.keys() {
            statements.push(format!(
                "DROP TABLE IF EXISTS {}",
                q(&crate::spec::join_table(name, field))
            ));
        }
        if dialect == Dialect::Sqlite {
            statements.push(format!("DROP TABLE IF EXISTS {}", q(&fts_table(name))));
            statements.push(format!("DROP TABLE IF EXISTS {}", q(name)));
        } else {
            statements.push(format!("DROP TABLE IF EXISTS {} CASCADE", q(name)));
        }
        dropped.push(name.clone());
        report.dropped.push(format!("entity {name}"));
    }

    for e in engine.entities() {
        let new = snapshot(dialect, e);
        match old.get(&e.name) {
            None => {
                statements.push(b.create_entity(e));
                for f in e.column_fields().filter(|f| f.ty == FieldType::Ref) {
                    late.extend(b.foreign_key(e, f));
                }
                for f in e.many_fields() {
                    late.extend(b.create_join(e, f));
                }
                if !e.search.is_empty() {
                    late.extend(b.search(e));
                }
                report.created_tables.push(e.name.clone());
            }
            Some(prev) => {
                // Columns SQLite must rebuild the table for, and how to fill them.
                let mut rebuild = false;
                let mut copy: Vec<(String, String)> = Vec::new();
                for f in e.column_fields() {
                    let sig = &new.columns[&f.name];
                    let old_type = prev.types.get(&f.name).map(String::as_str);
                    let new_type = logical_type(f);
                    let type_changed = old_type.is_some_and(|t| t != new_type);
                    match prev.columns.get(&f.name) {
                        Some(old_sig) if old_sig == sig && !type_changed => {
                            copy.push((f.name.clone(), q(&f.name)));
                        }
                        Some(old_sig) if !migrate => problems.push(if type_changed {
                            format!(
                                "{}.{}: changed from {} to {new_type}; a changed type needs a migration",
                                e.name,
                                f.name,
                                old_type.unwrap_or_default()
                            )
                        } else {
                            format!(
                                "{}.{}: changed from `{old_sig}` to `{sig}`; a changed type, `required` or reference needs a migration",
                                e.name, f.name
                            )
                        }),
                        Some(old_sig) => {
                            let col = q(&f.name);
                            let table = &e.name;
                            let base_changed = sig_type(old_sig) != sig_type(sig) || type_changed;
                            if base_changed {
                                let lossless = old_type.is_some_and(|t| widening(t, f));
                                losses.push(Loss {
                                    what: format!(
                                        "convert `{table}.{}` from {} to {new_type}: {{n}} value(s) are converted{}",
                                        f.name,
                                        old_type.unwrap_or(sig_type(old_sig)),
                                        if lossless { "" } else { "; values that do not fit fail the migration (PostgreSQL) or are cast (SQLite)" }
                                    ),
                                    count_sql: if lossless {
                                        "SELECT CAST(0 AS BIGINT)".to_string()
                                    } else {
                                        count(table, &format!(" WHERE {col} IS NOT NULL"))
                                    },
                                    blocking: false,
                                });
                            }
                            let now_required = f.required && !old_sig.contains("NOT NULL");
                            let fill = match &f.default {
                                Some(SpecDefault::Value(v)) => input::convert(f, v)
                                    .ok()
                                    .map(|cell| cell_value(dialect, f.ty, f.scale, &cell)),
                                _ => None,
                            };
                            if now_required && fill.is_none() {
                                losses.push(Loss {
                                    what: format!(
                                        "make `{table}.{}` required: {{n}} record(s) have no value; give the field a `default:` (it fills them) or fill them first",
                                        f.name
                                    ),
                                    count_sql: count(table, &format!(" WHERE {col} IS NULL")),
                                    blocking: true,
                                });
                            }
                            let target_changed = sig_target(old_sig) != sig_target(sig);
                            if target_changed && sig_target(sig).is_some() {
                                losses.push(Loss {
                                    what: format!(
                                        "point `{table}.{}` at `{}`: {{n}} record(s) hold an id of the old target, which must exist in the new one",
                                        f.name,
                                        f.target.as_deref().unwrap_or_default()
                                    ),
                                    count_sql: count(table, &format!(" WHERE {col} IS NOT NULL")),
                                    blocking: false,
                                });
                            }
                            let fill_sql = |v: &sea_query::Value| match dialect {
                                Dialect::Sqlite => sea_query::Query::select()
                                    .expr(sea_query::Expr::val(v.clone()))
                                    .to_string(SqliteQueryBuilder),
                                Dialect::Postgres => sea_query::Query::select()
                                    .expr(sea_query::Expr::val(v.clone()))
                                    .to_string(PostgresQueryBuilder),
                            };
                            let literal = fill.as_ref().map(|v| {
                                fill_sql(v).trim_start_matches("SELECT ").to_string()
                            });
                            match dialect {
                                Dialect::Sqlite => {
                                    rebuild = true;
                                    let mut expr = if base_changed {
                                        sqlite_copy(&col, old_type, f)
                                    } else {
                                        col.clone()
                                    };
                                    if let Some(l) = &literal {
                                        expr = format!("COALESCE({expr}, {l})");
                                    }
                                    copy.push((f.name.clone(), expr));
                                }
                                Dialect::Postgres => {
                                    if base_changed {
                                        let ty = column_type(dialect, f.ty, f.scale, f.precision);
                                        statements.push(format!(
                                            "ALTER TABLE {} ALTER COLUMN {col} TYPE {ty} USING {col}::{ty}",
                                            q(table)
                                        ));
                                    }
                                    if let (true, Some(l)) = (now_required, &literal) {
                                        statements.push(format!(
                                            "UPDATE {} SET {col} = {l} WHERE {col} IS NULL",
                                            q(table)
                                        ));
                                    }
                                    if f.required != old_sig.contains("NOT NULL") {
                                        statements.push(format!(
                                            "ALTER TABLE {} ALTER COLUMN {col} {} NOT NULL",
                                            q(table),
                                            if f.required { "SET" } else { "DROP" }
                                        ));
                                    }
                                    if sig_target(old_sig).is_some() || target_changed {
                                        statements.push(format!(
                                            "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
                                            q(table),
                                            q(&format!("fk_{table}_{}", f.name))
                                        ));
                                        late.extend(b.foreign_key(e, f));
                                    }
                                }
                            }
                            report.changed_columns.push(format!("{table}.{}", f.name));
                        }
                        None => {
                            let renamed = f.renamed_from.as_deref().filter(|old_name| {
                                prev.columns.get(*old_name) == Some(sig)
                                    && !new.columns.contains_key(*old_name)
                            });
                            if let Some(old_name) = renamed {
                                let mut t = Table::alter();
                                t.table(e.name.clone())
                                    .rename_column(old_name.to_string(), f.name.clone());
                                statements.push(b.alter(&t));
                                copy.push((f.name.clone(), q(&f.name)));
                                report
                                    .renamed_columns
                                    .push(format!("{}.{old_name} -> {}", e.name, f.name));
                            } else if f.required
                                && !matches!(f.default, Some(SpecDefault::Value(_)))
                            {
                                if migrate {
                                    losses.push(Loss {
                                        what: format!(
                                            "add the required field `{}.{}` without a default: {{n}} existing record(s) would have no value; give it a `default:` or add it as optional first",
                                            e.name, f.name
                                        ),
                                        count_sql: count(&e.name, ""),
                                        blocking: true,
                                    });
                                    if dialect == Dialect::Sqlite {
                                        rebuild = true;
                                    } else {
                                        let mut t = Table::alter();
                                        t.table(e.name.clone()).add_column(b.column(f, false));
                                        statements.push(b.alter(&t));
                                        late.extend(b.foreign_key(e, f));
                                    }
                                    report.added_columns.push(format!("{}.{}", e.name, f.name));
                                } else {
                                    problems.push(format!(
                                        "{}.{}: a new required field needs a fixed `default` for the records that already exist (or make it optional first)",
                                        e.name, f.name
                                    ));
                                }
                            } else {
                                let mut t = Table::alter();
                                t.table(e.name.clone()).add_column(b.column(f, true));
                                statements.push(b.alter(&t));
                                late.extend(b.foreign_key(e, f));
                                copy.push((f.name.clone(), q(&f.name)));
                                report.added_columns.push(format!("{}.{}", e.name, f.name));
                            }
                        }
                    }
                }
                // Enum values removed while records hold them: those records lose the value.
                for f in e.column_fields().filter(|f| f.ty == FieldType::Enum) {
                    let Some(before) = prev.values.get(&f.name) else {
                        continue;
                    };
                    let gone: Vec<&String> =
                        before.iter().filter(|v| !f.values.contains(v)).collect();
                    if gone.is_empty() || !migrate {
                        continue;
                    }
                    let list = gone
                        .iter()
                        .map(|v| format!("'{}'", v.replace('\'', "''")))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let col = q(&f.name);
                    let names = gone
                        .iter()
                        .map(|v| format!("`{v}`"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    losses.push(Loss {
                        what: if f.required {
                            format!(
                                "remove {names} from `{}.{}`: {{n}} record(s) hold them, and the field is required; change them first",
                                e.name, f.name
                            )
                        } else {
                            format!(
                                "remove {names} from `{}.{}`: {{n}} record(s) hold them and become empty",
                                e.name, f.name
                            )
                        },
                        count_sql: count(&e.name, &format!(" WHERE {col} IN ({list})")),
                        blocking: f.required,
                    });
                    statements.push(format!(
                        "UPDATE {} SET {col} = NULL WHERE {col} IN ({list})",
                        q(&e.name)
                    ));
                }
                for (col, sig) in &prev.columns {
                    let renamed_away = e
                        .column_fields()
                        .any(|f| f.renamed_from.as_deref() == Some(col.as_str()));
                    if new.columns.contains_key(col) || renamed_away {
                        continue;
                    }
                    if migrate {
                        losses.push(Loss {
                            what: format!(
                                "drop the field `{}.{col}`: the values of {{n}} record(s) are lost",
                                e.name
                            ),
                            count_sql: count(&e.name, &format!(" WHERE {} IS NOT NULL", q(col))),
                            blocking: false,
                        });
                        if dialect == Dialect::Sqlite {
                            rebuild = true;
                        } else {
                            statements.push(format!(
                                "ALTER TABLE {} DROP COLUMN IF EXISTS {}",
                                q(&e.name),
                                q(col)
                            ));
                        }
                        report.dropped.push(format!("field {}.{col}", e.name));
                    } else if sig.contains("NOT NULL") {
                        problems.push(format!(
                            "{}.{col}: the field was removed but its column is required, so new records could not be saved; put the field back, or make it optional first and remove it later",
                            e.name
                        ));
                    } else {
                        report.kept.push(format!(
                            "{}.{col} (removed from the model; its column and data are kept)",
                            e.name
                        ));
                    }
                }
                if rebuild {
                    statements.extend(b.rebuild(e, &copy));
                    // The new table has no full-text triggers yet.
                    late.extend(b.search(e));
                } else if prev.search != new.search {
                    late.extend(b.search(e));
                }
                for f in e.many_fields() {
                    let table = e.join_table(f);
                    match prev.links.get(&f.name) {
                        None => late.extend(b.create_join(e, f)),
                        Some(t) if Some(t) != f.target.as_ref() => {
                            if migrate {
                                losses.push(Loss {
                                    what: format!(
                                        "relink `{}.{}` from `{t}` to `{}`: {{n}} link(s) are deleted",
                                        e.name,
                                        f.name,
                                        f.target.as_deref().unwrap_or_default()
                                    ),
                                    count_sql: count(&table, ""),
                                    blocking: false,
                                });
                                statements.push(format!("DROP TABLE IF EXISTS {}", q(&table)));
                                late.extend(b.create_join(e, f));
                            } else {
                                problems.push(format!(
                                    "{}.{}: now links to `{}` instead of `{t}`; that needs a migration",
                                    e.name,
                                    f.name,
                                    f.target.as_deref().unwrap_or_default()
                                ));
                            }
                        }
                        Some(_) => {}
                    }
                }
                if migrate {
                    for field in prev.links.keys() {
                        if e.field(field).is_some_and(|f| f.ty == FieldType::Many) {
                            continue;
                        }
                        let table = crate::spec::join_table(&e.name, field);
                        losses.push(Loss {
                            what: format!(
                                "drop the field `{}.{field}`: {{n}} link(s) are deleted",
                                e.name
                            ),
                            count_sql: count(&table, ""),
                            blocking: false,
                        });
                        statements.push(format!("DROP TABLE IF EXISTS {}", q(&table)));
                        report.dropped.push(format!("field {}.{field}", e.name));
                    }
                }
            }
        }
        late.extend(b.indexes(e));
        if old.get(&e.name) != Some(&new) {
            snapshots.push((
                e.name.clone(),
                serde_json::to_string(&new).unwrap_or_default(),
            ));
        }
    }
    if !problems.is_empty() {
        return Err(Error::NeedsMigration(problems));
    }
    if let Some(users) = &engine.auth.users {
        let id_type = match dialect {
            Dialect::Sqlite => "TEXT",
            Dialect::Postgres => "UUID",
        };
        late.push(format!(
            "CREATE TABLE IF NOT EXISTS {} (user_id {id_type} PRIMARY KEY NOT NULL REFERENCES {}(\"id\") ON DELETE CASCADE, password_hash TEXT NOT NULL)",
            super::accounts::CREDENTIALS,
            super::quote(&users.entity.name)
        ));
        let time_type = match dialect {
            Dialect::Sqlite => "TEXT",
            Dialect::Postgres => "TIMESTAMPTZ",
        };
        late.push(format!(
            "CREATE TABLE IF NOT EXISTS {} (token_hash TEXT PRIMARY KEY NOT NULL, user_id {id_type} NOT NULL REFERENCES {}(\"id\") ON DELETE CASCADE, expires_at {time_type} NOT NULL, revoked BIGINT NOT NULL DEFAULT 0)",
            super::accounts::REFRESH,
            super::quote(&users.entity.name)
        ));
        late.push(format!(
            "CREATE INDEX IF NOT EXISTS ix_trellis_refresh_user ON {} (user_id)",
            super::accounts::REFRESH
        ));
    }
    statements.extend(late);
    statements.extend(super::changes::ddl(dialect));
    statements.extend(super::workflow::ddl(dialect));
    Ok(Planned {
        statements,
        snapshots,
        dropped,
        report,
        losses,
    })
}

pub(crate) const UPSERT_SNAPSHOT: &str = "INSERT INTO _trellis_schema (name, definition) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET definition = excluded.definition";
pub(crate) const SCHEMA_TABLE: &str = "CREATE TABLE IF NOT EXISTS _trellis_schema (name TEXT PRIMARY KEY NOT NULL, definition TEXT NOT NULL)";

/// The stored shapes, by entity.
pub(crate) fn parse_snapshots(rows: Vec<(String, String)>) -> HashMap<String, Snapshot> {
    rows.into_iter()
        .map(|(n, d)| (n, serde_json::from_str(&d).unwrap_or_default()))
        .collect()
}

macro_rules! sync_in_tx {
    ($pool:expr, $dialect:expr, $engine:expr, $lock:expr) => {{
        // IMMEDIATE on SQLite: a read-then-write transaction that starts deferred
        // cannot take the write lock once another connection has written (WAL).
        let mut tx = $pool
            .begin_with(sqlx::AssertSqlSafe(if $dialect == Dialect::Sqlite {
                "BEGIN IMMEDIATE"
            } else {
                "BEGIN"
            }))
            .await?;
        if let Some(lock) = $lock {
            sqlx::query(lock).execute(&mut *tx).await?;
        }
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS _trellis_schema (name TEXT PRIMARY KEY NOT NULL, definition TEXT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT name, definition FROM _trellis_schema")
                .fetch_all(&mut *tx)
                .await?;
        let old: HashMap<String, Snapshot> = rows
            .into_iter()
            .map(|(n, d)| (n, serde_json::from_str(&d).unwrap_or_default()))
            .collect();
        let planned = plan($dialect, $engine, &old, PlanMode::Sync)?;
        for s in &planned.statements {
            sqlx::query(sqlx::AssertSqlSafe(s.as_str())).execute(&mut *tx).await?;
        }
        super::changes::LogTriggers::log_triggers(&mut *tx, $engine, false).await?;
        for (name, def) in &planned.snapshots {
            sqlx::query(UPSERT_SNAPSHOT).bind(name).bind(def).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(planned.report)
    }};
}

impl Store {
    /// Creates missing tables, columns, link tables and indexes; refuses anything else.
    /// Runs in one transaction; on PostgreSQL one instance at a time (advisory lock).
    pub async fn sync_schema(&self, engine: &Engine) -> Result<SyncReport, Error> {
        let dialect = self.dialect();
        match &self.pool {
            Pool::Sqlite(p) => sync_in_tx!(p, dialect, engine, None::<&str>),
            Pool::Postgres(p) => sync_in_tx!(
                p,
                dialect,
                engine,
                Some("SELECT pg_advisory_xact_lock(7204113)")
            ),
        }
    }

    /// Installs the triggers that write the change log where they are missing or out
    /// of date, and nothing else (production mode, which never changes the schema:
    /// the triggers are Trellis's own, like its `_trellis_*` tables).
    pub async fn ensure_log_triggers(&self, engine: &Engine) -> Result<(), Error> {
        use super::changes::LogTriggers;
        match &self.pool {
            Pool::Sqlite(p) => {
                let mut tx = p.begin_with(sqlx::AssertSqlSafe("BEGIN IMMEDIATE")).await?;
                for s in super::changes::ddl(Dialect::Sqlite)
                    .into_iter()
                    .chain(super::workflow::ddl(Dialect::Sqlite))
                {
                    sqlx::query(sqlx::AssertSqlSafe(s))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.log_triggers(engine, false).await?;
                tx.commit().await?;
            }
            Pool::Postgres(p) => {
                let mut tx = p.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(7204113)")
                    .execute(&mut *tx)
                    .await?;
                for s in super::changes::ddl(Dialect::Postgres)
                    .into_iter()
                    .chain(super::workflow::ddl(Dialect::Postgres))
                {
                    sqlx::query(sqlx::AssertSqlSafe(s))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.log_triggers(engine, false).await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }
}
