//! Tables from entities. `sync_schema` creates what is missing and refuses changes
//! that would need a real migration (those come with `trellis migrate`).
//!
//! The last applied shape of every entity is kept in `_trellis_schema` (an
//! [`EntityShape`], typed), so a change of type, of `required` or of a reference
//! target is noticed and refused with a clear message instead of being applied
//! half-way. The difference itself is the engine's (`schema_diff::diff`); `plan`
//! renders it as statements, refusals and losses, `sql` builds the statements,
//! `legacy` reads shapes stored in the old form (SQL signatures).

mod legacy;
mod plan;
mod sql;

use std::collections::BTreeMap;

use super::{Dialect, Error, Pool, Store};
use crate::engine::schema_diff::{EntityShape, Schema};
use crate::engine::{Engine, Entity};

pub use plan::SyncReport;
pub(crate) use plan::{Loss, PlanMode, plan};
pub(crate) use sql::index_name;

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

pub(crate) const UPSERT_SNAPSHOT: &str = "INSERT INTO _trellis_schema (name, definition) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET definition = excluded.definition";
pub(crate) const SCHEMA_TABLE: &str = "CREATE TABLE IF NOT EXISTS _trellis_schema (name TEXT PRIMARY KEY NOT NULL, definition TEXT NOT NULL)";

/// A stored shape read back: typed, or of the old form and converted (then the
/// text to write back in its place).
pub(crate) struct Stored {
    pub schema: Schema,
    pub converted: Vec<(String, String)>,
}

/// The stored shapes (`_trellis_schema` rows), by entity name; shapes of the old form
/// are converted with the help of the current definitions.
pub(crate) fn read_snapshots(
    dialect: Dialect,
    engine: &Engine,
    rows: Vec<(String, String)>,
) -> Stored {
    let current = Schema::of(engine);
    let rows: BTreeMap<String, String> = rows.into_iter().collect();
    let mut stored = Stored {
        schema: Schema::default(),
        converted: Vec::new(),
    };
    for (name, text) in rows {
        let shape = match serde_json::from_str::<EntityShape>(&text) {
            Ok(shape) => shape,
            Err(_) => {
                let old: legacy::LegacySnapshot = serde_json::from_str(&text).unwrap_or_default();
                let shape = old.convert(dialect, current.entity(&name));
                stored.converted.push((
                    name.clone(),
                    serde_json::to_string(&shape).unwrap_or_default(),
                ));
                shape
            }
        };
        stored.schema.entities.push((name, shape));
    }
    stored
}

/// Reads the stored shapes in a transaction, writing converted old-form ones back.
macro_rules! read_schema_in_tx {
    ($tx:ident, $dialect:expr, $engine:expr) => {{
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT name, definition FROM _trellis_schema")
                .fetch_all(&mut *$tx)
                .await?;
        let stored = $crate::store::ddl::read_snapshots($dialect, $engine, rows);
        for (name, def) in &stored.converted {
            sqlx::query($crate::store::ddl::UPSERT_SNAPSHOT)
                .bind(name)
                .bind(def)
                .execute(&mut *$tx)
                .await?;
        }
        stored.schema
    }};
}
pub(crate) use read_schema_in_tx;

macro_rules! sync_in_tx {
    ($pool:expr, $dialect:expr, $engine:expr, $lock:expr) => {{
        // IMMEDIATE on SQLite: a read-then-write transaction that starts deferred
        // cannot take the write lock once another connection has written (WAL).
        let mut tx = $pool
            .begin_with(sqlx::AssertSqlSafe($dialect.begin_writing()))
            .await?;
        if let Some(lock) = $lock {
            sqlx::query(lock).execute(&mut *tx).await?;
        }
        sqlx::query(SCHEMA_TABLE).execute(&mut *tx).await?;
        let old = read_schema_in_tx!(tx, $dialect, $engine);
        let planned = plan($dialect, $engine, &old, PlanMode::Sync)?;
        for s in &planned.statements {
            sqlx::query(sqlx::AssertSqlSafe(s.as_str()))
                .execute(&mut *tx)
                .await?;
        }
        super::changes::LogTriggers::log_triggers(&mut *tx, $engine, false).await?;
        for (name, def) in &planned.snapshots {
            sqlx::query(UPSERT_SNAPSHOT)
                .bind(name)
                .bind(def)
                .execute(&mut *tx)
                .await?;
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
                    .chain(super::files::ddl(Dialect::Sqlite))
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
                    .chain(super::files::ddl(Dialect::Postgres))
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
