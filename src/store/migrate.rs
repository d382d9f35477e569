//! Applying reviewed migrations: each in one transaction (one applier at a time on
//! PostgreSQL, by advisory lock), recorded with its checksum in `_trellis_migrations`.
//! What a migration would lose is counted first; losses are refused unless allowed,
//! and some (a required field with records lacking a value) are refused always.

use super::ddl::{
    Loss, PlanMode, SCHEMA_TABLE, UPSERT_SNAPSHOT, plan, read_schema_in_tx, read_snapshots,
};
use super::{Error, Pool, Store, SyncReport};
use crate::engine::Engine;

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

impl Store {
    /// The migrations applied to this database, oldest first.
    pub async fn applied_migrations(&self) -> Result<Vec<AppliedMigration>, Error> {
        let sql = "SELECT name, checksum, applied_at FROM _trellis_migrations ORDER BY name";
        let rows: Vec<(String, String, String)> = match &self.pool {
            Pool::Sqlite(p) => {
                sqlx::query(MIGRATIONS_TABLE).execute(p).await?;
                sqlx::query_as(sql).fetch_all(p).await?
            }
            Pool::Postgres(p) => {
                // `CREATE TABLE IF NOT EXISTS` is not safe against a concurrent one
                // (two appliers starting at once): take the schema lock for it.
                let mut tx = p.begin().await?;
                sqlx::query(SCHEMA_LOCK).execute(&mut *tx).await?;
                sqlx::query(MIGRATIONS_TABLE).execute(&mut *tx).await?;
                let rows = sqlx::query_as(sql).fetch_all(&mut *tx).await?;
                tx.commit().await?;
                rows
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
    /// (for `migrate plan`); nothing is changed.
    pub async fn migration_losses(&self, engine: &Engine) -> Result<Vec<CountedLoss>, Error> {
        let dialect = self.dialect();
        macro_rules! losses_on {
            ($p:expr) => {{
                sqlx::query(SCHEMA_TABLE).execute($p).await?;
                let rows: Vec<(String, String)> =
                    sqlx::query_as("SELECT name, definition FROM _trellis_schema")
                        .fetch_all($p)
                        .await?;
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
            Pool::Postgres(p) => {
                // Create the shapes table under the schema lock (a concurrent
                // `CREATE TABLE IF NOT EXISTS` can fail), then count on the pool.
                let mut tx = p.begin().await?;
                sqlx::query(SCHEMA_LOCK).execute(&mut *tx).await?;
                sqlx::query(SCHEMA_TABLE).execute(&mut *tx).await?;
                tx.commit().await?;
                losses_on!(p)
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
