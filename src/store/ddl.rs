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
struct Snapshot {
    /// Column name -> signature (SQL type, NOT NULL, reference).
    columns: BTreeMap<String, String>,
    /// Many field -> target entity.
    links: BTreeMap<String, String>,
    /// Full-text search fields.
    #[serde(default)]
    search: Vec<String>,
}

/// What `sync_schema` did.
#[derive(Debug, Default, Clone)]
pub struct SyncReport {
    pub created_tables: Vec<String>,
    pub added_columns: Vec<String>,
    pub renamed_columns: Vec<String>,
    /// Things left in place (columns and tables of removed definitions).
    pub kept: Vec<String>,
}

impl SyncReport {
    pub fn is_empty(&self) -> bool {
        self.created_tables.is_empty()
            && self.added_columns.is_empty()
            && self.renamed_columns.is_empty()
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
    }
}

/// The full-text index table of an entity in SQLite (`__` cannot occur in model names).
pub(crate) fn fts_table(entity: &str) -> String {
    format!("{entity}__fts")
}

/// The text PostgreSQL indexes and searches: the search fields joined by spaces.
pub(crate) fn pg_document(e: &Entity, alias: Option<&str>) -> String {
    let prefix = alias
        .map(|a| format!("{}.", super::quote(a)))
        .unwrap_or_default();
    let parts: Vec<String> = e
        .search
        .iter()
        .map(|f| format!("coalesce({prefix}{}, '')", super::quote(f)))
        .collect();
    format!("to_tsvector('simple', {})", parts.join(" || ' ' || "))
}

/// A deterministic index name within PostgreSQL's 63-byte limit.
pub(crate) fn index_name(prefix: &str, table: &str, cols: &[String]) -> String {
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

/// Statements to run, snapshots to store, and what they do.
type Plan = (Vec<String>, Vec<(String, String)>, SyncReport);

/// The statements that bring a database from `old` to the engine's definitions.
fn plan(dialect: Dialect, engine: &Engine, old: &HashMap<String, Snapshot>) -> Result<Plan, Error> {
    let b = Builder { dialect };
    let mut report = SyncReport::default();
    let mut problems = Vec::new();
    let mut statements: Vec<String> = Vec::new();
    let mut late: Vec<String> = Vec::new();
    let mut snapshots: Vec<(String, String)> = Vec::new();

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
                for f in e.column_fields() {
                    let sig = &new.columns[&f.name];
                    match prev.columns.get(&f.name) {
                        Some(old_sig) if old_sig == sig => {}
                        Some(old_sig) => problems.push(format!(
                            "{}.{}: changed from `{old_sig}` to `{sig}`; a changed type, `required` or reference needs a migration",
                            e.name, f.name
                        )),
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
                                report
                                    .renamed_columns
                                    .push(format!("{}.{old_name} -> {}", e.name, f.name));
                            } else if f.required
                                && !matches!(f.default, Some(SpecDefault::Value(_)))
                            {
                                problems.push(format!(
                                    "{}.{}: a new required field needs a fixed `default` for the records that already exist (or make it optional first)",
                                    e.name, f.name
                                ));
                            } else {
                                let mut t = Table::alter();
                                t.table(e.name.clone()).add_column(b.column(f, true));
                                statements.push(b.alter(&t));
                                late.extend(b.foreign_key(e, f));
                                report.added_columns.push(format!("{}.{}", e.name, f.name));
                            }
                        }
                    }
                }
                for (col, sig) in &prev.columns {
                    let renamed_away = e
                        .column_fields()
                        .any(|f| f.renamed_from.as_deref() == Some(col.as_str()));
                    if new.columns.contains_key(col) || renamed_away {
                        continue;
                    }
                    if sig.contains("NOT NULL") {
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
                if prev.search != new.search {
                    late.extend(b.search(e));
                }
                for f in e.many_fields() {
                    match prev.links.get(&f.name) {
                        None => late.extend(b.create_join(e, f)),
                        Some(t) if Some(t) != f.target.as_ref() => problems.push(format!(
                            "{}.{}: now links to `{}` instead of `{t}`; that needs a migration",
                            e.name,
                            f.name,
                            f.target.as_deref().unwrap_or_default()
                        )),
                        Some(_) => {}
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
    for name in old.keys() {
        if engine.entity(name).is_none() {
            report.kept.push(format!(
                "{name} (the entity was removed; its table and data are kept)"
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
    statements.extend(super::workflow::ddl());
    Ok((statements, snapshots, report))
}

macro_rules! sync_in_tx {
    ($pool:expr, $dialect:expr, $engine:expr, $lock:expr) => {{
        let mut tx = $pool.begin().await?;
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
        let (statements, snapshots, report) = plan($dialect, $engine, &old)?;
        for s in &statements {
            sqlx::query(sqlx::AssertSqlSafe(s.as_str())).execute(&mut *tx).await?;
        }
        let upsert = "INSERT INTO _trellis_schema (name, definition) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET definition = excluded.definition";
        for (name, def) in &snapshots {
            sqlx::query(upsert).bind(name).bind(def).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(report)
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
}
