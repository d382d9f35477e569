//! Applying reviewed migrations: each in one transaction (one applier at a time on
//! PostgreSQL, by advisory lock), recorded with its checksum in `_trellis_migrations`.
//! What a migration would lose is counted first; losses are refused unless allowed,
//! and some (a required field with records lacking a value) are refused always.

use super::ddl::{
    Loss, PlanMode, SCHEMA_TABLE, UPSERT_SNAPSHOT, plan, read_schema_in_tx, read_snapshots,
};
use super::{Error, Pool, Store, SyncReport};
use crate::engine::Engine;
use crate::engine::schema_diff::{Schema, SchemaChange, diff};

pub(crate) const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS _trellis_migrations (name TEXT PRIMARY KEY NOT NULL, checksum TEXT NOT NULL, applied_at TEXT NOT NULL)";
/// Taken by schema sync and by migrations alike.
const SCHEMA_LOCK: &str = "SELECT pg_advisory_xact_lock(7204113)";

/// A migration recorded as applied.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AppliedMigration {
    pub name: String,
    pub checksum: String,
    pub applied_at: String,
}

/// A possible loss, counted in the database.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CountedLoss {
    /// In plain words, with the count filled in.
    pub what: String,
    pub count: i64,
    /// Refused even with `--allow-destructive` while `count` is above zero.
    pub blocking: bool,
}

/// What applying one migration did.
#[derive(Debug)]
pub enum Applied {
    Now {
        report: SyncReport,
        losses: Vec<CountedLoss>,
    },
    /// Another process applied it first (it waited for that one's lock).
    Already,
}

fn counted(losses: &[Loss], counts: &[i64]) -> Vec<CountedLoss> {
    losses
        .iter()
        .zip(counts)
        .filter(|(_, n)| **n > 0)
        .map(|(l, n)| CountedLoss {
            what: l.what.replace("{n}", &n.to_string()),
            count: *n,
            blocking: l.blocking,
        })
        .collect()
}

/// Refuses losses that are not allowed; returns the ones that are.
fn judge(losses: Vec<CountedLoss>, allow: bool) -> Result<Vec<CountedLoss>, Error> {
    if losses.iter().any(|l| l.blocking) || (!losses.is_empty() && !allow) {
        return Err(Error::Destructive(losses));
    }
    Ok(losses)
}

macro_rules! run_migration {
    ($tx:ident, $dialect:expr, $name:expr, $checksum:expr, $engine:expr, $allow:expr) => {{
        sqlx::query(SCHEMA_TABLE).execute(&mut *$tx).await?;
        sqlx::query(MIGRATIONS_TABLE).execute(&mut *$tx).await?;
        let done: Option<(String,)> =
            sqlx::query_as("SELECT name FROM _trellis_migrations WHERE name = $1")
                .bind($name)
                .fetch_optional(&mut *$tx)
                .await?;
        if done.is_some() {
            $tx.commit().await?;
            return Ok(Applied::Already);
        }
        let old = read_schema_in_tx!($tx, $dialect, $engine);
        let planned = plan($dialect, $engine, &old, PlanMode::Migrate)?;
        let mut counts = Vec::with_capacity(planned.losses.len());
        for l in &planned.losses {
            let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(l.count_sql.as_str()))
                .fetch_one(&mut *$tx)
                .await?;
            counts.push(n);
        }
        let losses = match judge(counted(&planned.losses, &counts), $allow) {
            Ok(l) => l,
            Err(err) => {
                $tx.rollback().await?;
                return Err(err);
            }
        };
        // SQLite's triggers name the columns: none may stand in the way of a rebuild.
        super::changes::LogTriggers::log_triggers(&mut *$tx, $engine, true).await?;
        // PostgreSQL's log triggers are deferred to the commit, and an ALTER TABLE
        // refuses a table with pending trigger events: here they fire at once.
        if $dialect.defers_log_triggers() {
            sqlx::query("SET CONSTRAINTS ALL IMMEDIATE")
                .execute(&mut *$tx)
                .await?;
        }
        for s in &planned.statements {
            if let Err(err) = sqlx::query(sqlx::AssertSqlSafe(s.as_str()))
                .execute(&mut *$tx)
                .await
            {
                return Err(Error::MigrationFailed {
                    statement: s.clone(),
                    error: err.to_string(),
                });
            }
        }
        super::changes::LogTriggers::log_triggers(&mut *$tx, $engine, false).await?;
        for (name, def) in &planned.snapshots {
            sqlx::query(UPSERT_SNAPSHOT)
                .bind(name)
                .bind(def)
                .execute(&mut *$tx)
                .await?;
        }
        for name in &planned.dropped {
            sqlx::query("DELETE FROM _trellis_schema WHERE name = $1")
                .bind(name)
                .execute(&mut *$tx)
                .await?;
        }
        if $dialect.checks_foreign_keys_after_rebuild() {
            let broken: Vec<(String,)> =
                sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
                    .fetch_all(&mut *$tx)
                    .await?;
            if !broken.is_empty() {
                let tables: Vec<String> = broken.into_iter().map(|(t,)| t).collect();
                return Err(Error::MigrationFailed {
                    statement: "PRAGMA foreign_key_check".into(),
                    error: format!(
                        "records of {} point to records that no longer exist",
                        tables.join(", ")
                    ),
                });
            }
        }
        sqlx::query(
            "INSERT INTO _trellis_migrations (name, checksum, applied_at) VALUES ($1, $2, $3)",
        )
        .bind($name)
        .bind($checksum)
        .bind(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .execute(&mut *$tx)
        .await?;
        $tx.commit().await?;
        Ok(Applied::Now {
            report: planned.report,
            losses,
        })
    }};
}

/// Whether the database has a table of this name (in the schema it creates tables in).
macro_rules! table_exists {
    ($pool:expr, $executor:expr, $name:expr) => {{
        let sql = match $pool {
            Pool::Sqlite(_) => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1"
            }
            Pool::Postgres(_) => {
                "SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = $1"
            }
        };
        let (n,): (i64,) = sqlx::query_as(sql).bind($name).fetch_one($executor).await?;
        n > 0
    }};
}

/// What `migrate baseline` recorded.
#[derive(Debug, Clone)]
pub enum Baselined {
    /// These migrations are now recorded as applied.
    Recorded(Vec<String>),
    /// The database already has migrations recorded: nothing was changed.
    HasHistory(Vec<String>),
    /// The stored tables do not match the definitions: nothing was changed.
    Differs(Vec<String>),
    /// Nothing was ever synced here (no stored shapes): nothing was changed.
    Empty,
}

/// The entities whose stored shapes differ from `engine`'s definitions (the
/// tables of built-in accounts are created along with any migration, so they do
/// not count).
fn differing(stored: &Schema, engine: &Engine) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in diff(stored, &Schema::of(engine)) {
        if !matches!(c, SchemaChange::Accounts { .. }) && !out.iter().any(|e| e == c.entity()) {
            out.push(c.entity().to_string());
        }
    }
    out
}

impl Store {
    /// The migrations applied to this database, oldest first. Changes nothing: a
    /// database without the migrations table has none.
    pub async fn applied_migrations(&self) -> Result<Vec<AppliedMigration>, Error> {
        let sql = "SELECT name, checksum, applied_at FROM _trellis_migrations ORDER BY name";
        let rows: Vec<(String, String, String)> = match &self.pool {
            Pool::Sqlite(p) => {
                if !table_exists!(&self.pool, p, "_trellis_migrations") {
                    return Ok(Vec::new());
                }
                sqlx::query_as(sql).fetch_all(p).await?
            }
            Pool::Postgres(p) => {
                if !table_exists!(&self.pool, p, "_trellis_migrations") {
                    return Ok(Vec::new());
                }
                sqlx::query_as(sql).fetch_all(p).await?
            }
        };
        Ok(rows
            .into_iter()
            .map(|(name, checksum, applied_at)| AppliedMigration {
                name,
                checksum,
                applied_at,
            })
            .collect())
    }

    /// What bringing this database to `engine`'s definitions would lose, counted
    /// (for `migrate plan`); nothing is changed, not even a missing table created.
    pub async fn migration_losses(&self, engine: &Engine) -> Result<Vec<CountedLoss>, Error> {
        let dialect = self.dialect();
        macro_rules! losses_on {
            ($p:expr) => {{
                let rows: Vec<(String, String)> =
                    if table_exists!(&self.pool, $p, "_trellis_schema") {
                        sqlx::query_as("SELECT name, definition FROM _trellis_schema")
                            .fetch_all($p)
                            .await?
                    } else {
                        Vec::new()
                    };
                let old = read_snapshots(dialect, engine, rows).schema;
                let planned = plan(dialect, engine, &old, PlanMode::Migrate)?;
                let mut counts = Vec::new();
                for l in &planned.losses {
                    // A table that does not exist yet holds nothing.
                    let n: i64 =
                        sqlx::query_as::<_, (i64,)>(sqlx::AssertSqlSafe(l.count_sql.as_str()))
                            .fetch_one($p)
                            .await
                            .map(|(n,)| n)
                            .unwrap_or(0);
                    counts.push(n);
                }
                Ok(counted(&planned.losses, &counts))
            }};
        }
        match &self.pool {
            Pool::Sqlite(p) => losses_on!(p),
            Pool::Postgres(p) => losses_on!(p),
        }
    }

    /// The entities whose stored shapes (what schema sync or a migration left in
    /// `_trellis_schema`) differ from `engine`'s definitions; `None` when nothing is
    /// stored (an empty database). Changes nothing.
    pub async fn schema_differs_from(&self, engine: &Engine) -> Result<Option<Vec<String>>, Error> {
        let dialect = self.dialect();
        macro_rules! on {
            ($p:expr) => {{
                if !table_exists!(&self.pool, $p, "_trellis_schema") {
                    return Ok(None);
                }
                let rows: Vec<(String, String)> =
                    sqlx::query_as("SELECT name, definition FROM _trellis_schema")
                        .fetch_all($p)
                        .await?;
                if rows.is_empty() {
                    return Ok(None);
                }
                let stored = read_snapshots(dialect, engine, rows).schema;
                Ok(Some(differing(&stored, engine)))
            }};
        }
        match &self.pool {
            Pool::Sqlite(p) => on!(p),
            Pool::Postgres(p) => on!(p),
        }
    }

    /// Records `migrations` (name, checksum; oldest first) as applied without
    /// running them, after checking in the same transaction that no migration is
    /// recorded yet and that the stored shapes match `engine` (the definitions of
    /// the last of them). For a database that development-mode sync created.
    pub async fn baseline(
        &self,
        migrations: &[(String, String)],
        engine: &Engine,
    ) -> Result<Baselined, Error> {
        let dialect = self.dialect();
        macro_rules! in_tx {
            ($tx:ident) => {{
                sqlx::query(MIGRATIONS_TABLE).execute(&mut *$tx).await?;
                let recorded: Vec<(String,)> =
                    sqlx::query_as("SELECT name FROM _trellis_migrations ORDER BY name")
                        .fetch_all(&mut *$tx)
                        .await?;
                let outcome = if !recorded.is_empty() {
                    Baselined::HasHistory(recorded.into_iter().map(|(n,)| n).collect())
                } else {
                    sqlx::query(SCHEMA_TABLE).execute(&mut *$tx).await?;
                    let rows: Vec<(String, String)> =
                        sqlx::query_as("SELECT name, definition FROM _trellis_schema")
                            .fetch_all(&mut *$tx)
                            .await?;
                    if rows.is_empty() {
                        Baselined::Empty
                    } else {
                        let stored = read_snapshots(dialect, engine, rows).schema;
                        let differs = differing(&stored, engine);
                        if differs.is_empty() {
                            let at = chrono::Utc::now()
                                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                            for (name, checksum) in migrations {
                                sqlx::query("INSERT INTO _trellis_migrations (name, checksum, applied_at) VALUES ($1, $2, $3)")
                                    .bind(name)
                                    .bind(checksum)
                                    .bind(&at)
                                    .execute(&mut *$tx)
                                    .await?;
                            }
                            Baselined::Recorded(migrations.iter().map(|(n, _)| n.clone()).collect())
                        } else {
                            Baselined::Differs(differs)
                        }
                    }
                };
                if matches!(outcome, Baselined::Recorded(_)) {
                    $tx.commit().await?;
                } else {
                    $tx.rollback().await?;
                }
                Ok(outcome)
            }};
        }
        match &self.pool {
            Pool::Postgres(p) => {
                let mut tx = p.begin().await?;
                sqlx::query(SCHEMA_LOCK).execute(&mut *tx).await?;
                in_tx!(tx)
            }
            Pool::Sqlite(p) => {
                let mut tx = p.begin_with(sqlx::AssertSqlSafe("BEGIN IMMEDIATE")).await?;
                in_tx!(tx)
            }
        }
    }

    /// Applies one migration whose definitions are `engine`, unless it is recorded
    /// as applied. One transaction; PostgreSQL applies one migration at a time across
    /// processes (advisory lock), and SQLite rebuilds tables with foreign keys off.
    pub async fn apply_migration(
        &self,
        name: &str,
        checksum: &str,
        engine: &Engine,
        allow_destructive: bool,
    ) -> Result<Applied, Error> {
        let dialect = self.dialect();
        match &self.pool {
            Pool::Postgres(p) => {
                let mut tx = p.begin().await?;
                sqlx::query(SCHEMA_LOCK).execute(&mut *tx).await?;
                run_migration!(tx, dialect, name, checksum, engine, allow_destructive)
            }
            Pool::Sqlite(p) => {
                let mut conn = p.acquire().await?;
                // Only outside a transaction does this take effect.
                sqlx::query("PRAGMA foreign_keys = OFF")
                    .execute(&mut *conn)
                    .await?;
                let outcome: Result<Applied, Error> = async {
                    let mut tx = sqlx::Connection::begin_with(
                        &mut *conn,
                        sqlx::AssertSqlSafe("BEGIN IMMEDIATE"),
                    )
                    .await?;
                    run_migration!(tx, dialect, name, checksum, engine, allow_destructive)
                }
                .await;
                if sqlx::query("PRAGMA foreign_keys = ON")
                    .execute(&mut *conn)
                    .await
                    .is_err()
                {
                    // Never hand a connection without foreign keys back to the pool.
                    conn.detach();
                }
                outcome
            }
        }
    }
}
