//! `trellis migrate plan | apply | status`: reviewed schema migrations; and what
//! keeps a production server from starting on a database that is behind.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use trellis::engine::Engine;
use trellis::runtime::Env;
use trellis::spec;
use trellis::store::{self, Store};

use super::MigrateAction;
use super::project::{
    database_url, load_all, load_engine, missing_sqlite_file, redact, render, require_project,
};

pub(super) fn migrate(action: MigrateAction, env: &Env) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match action {
        MigrateAction::Plan {
            dir,
            name,
            database_url: flag,
        } => runtime.block_on(migrate_plan(&dir.resolve()?, name, flag, env)),
        MigrateAction::Apply {
            dir,
            allow_destructive,
            database_url: flag,
        } => runtime.block_on(migrate_apply(&dir.resolve()?, allow_destructive, flag, env)),
        MigrateAction::Status {
            dir,
            database_url: flag,
        } => runtime.block_on(migrate_status(&dir.resolve()?, flag, env)),
        MigrateAction::Baseline {
            dir,
            database_url: flag,
        } => runtime.block_on(migrate_baseline(&dir.resolve()?, flag, env)),
    }
}

fn slug(words: &str) -> String {
    let s: String = words
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let s = s
        .split('_')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    if s.is_empty() {
        "changes".to_string()
    } else {
        s.chars().take(48).collect()
    }
}

async fn migrate_plan(
    dir: &Path,
    name: Option<String>,
    flag: Option<String>,
    env: &Env,
) -> Result<ExitCode> {
    let (loaded, engine) = load_all(dir);
    require_project(dir, &loaded)?;
    let Some(engine) = engine else {
        render(&loaded);
        anyhow::bail!("fix the errors above before planning a migration");
    };
    let (files, problems) = spec::migration::read_all(dir);
    if let Some(p) = problems.first() {
        anyhow::bail!("{p}");
    }
    let base = match files.last() {
        Some(f) => Some(engine_of(f)?),
        None => None,
    };
    let steps = trellis::engine::migration::steps(base.as_ref(), &engine);
    if steps.is_empty() {
        println!(
            "Nothing changed since {}; no migration written.",
            files.last().map(|f| f.name.as_str()).unwrap_or("the start")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let number = files.last().map(|f| f.number + 1).unwrap_or(1);
    let file_name = format!(
        "{number:04}_{}",
        slug(
            name.as_deref()
                .unwrap_or(if number == 1 { "initial" } else { "changes" })
        )
    );
    // Count what the destructive steps would lose, where the database is reachable;
    // a plan changes no database (a SQLite file that is missing stays missing).
    let mut notes = Vec::new();
    let url = database_url(dir, flag, &engine, env)?;
    if let Some(path) = missing_sqlite_file(&url) {
        notes.push(format!(
            "No database at {} yet: nothing to count (as for an empty database), and none was created.",
            path.display()
        ));
    } else {
        count_losses(&url, &engine, &mut notes).await;
    }
    let planned_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let text = spec::migration::render(
        &file_name,
        &planned_at,
        &steps,
        &notes,
        &spec::migration::schema_files(&loaded.spec),
    );
    let folder = dir.join("migrations");
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    let path = folder.join(format!("{file_name}.yaml"));
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    println!("Wrote {}:", path.display());
    for s in &steps {
        println!("  - {s}");
    }
    for n in &notes {
        println!("{n}");
    }
    println!("Review it, then run `trellis migrate apply`.");
    Ok(ExitCode::SUCCESS)
}

/// Notes on what bringing the database at `url` to `engine` would lose, counted there.
async fn count_losses(url: &str, engine: &Engine, notes: &mut Vec<String>) {
    let store = match Store::connect(url).await {
        Ok(store) => store,
        Err(err) => {
            notes.push(format!("Could not count what would be lost ({err})."));
            return;
        }
    };
    match store.migration_losses(engine).await {
        Ok(losses) if losses.is_empty() => notes.push(format!(
            "Counted in {}: nothing would be lost.",
            redact(url)
        )),
        Ok(losses) => {
            notes.push(format!("Counted in {} as it is now:", redact(url)));
            for l in &losses {
                notes.push(format!(
                    "  {} {}",
                    if l.blocking {
                        "CANNOT APPLY:"
                    } else {
                        "LOSES DATA:"
                    },
                    l.what
                ));
            }
            notes.push(
                "`migrate apply` refuses steps that lose data unless given --allow-destructive."
                    .into(),
            );
        }
        Err(err) => notes.push(format!("Could not count what would be lost: {err}")),
    }
    store.close().await;
}

async fn migrate_apply(
    dir: &Path,
    allow: bool,
    flag: Option<String>,
    env: &Env,
) -> Result<ExitCode> {
    let (files, problems) = spec::migration::read_all(dir);
    if let Some(p) = problems.first() {
        anyhow::bail!("{p}");
    }
    let current = load_engine(dir)?;
    let url = database_url(dir, flag, &current, env)?;
    let store = Store::connect(&url).await?;
    let applied = store.applied_migrations().await?;
    let mut edited = Vec::new();
    for a in &applied {
        if let Some(f) = files.iter().find(|f| f.name == a.name)
            && f.checksum != a.checksum
        {
            edited.push(format!(
                "{} was applied on {} with checksum {}, but the file now has {}",
                a.name, a.applied_at, a.checksum, f.checksum
            ));
        }
    }
    if !edited.is_empty() {
        eprintln!("Refusing to apply anything: applied migrations were edited.");
        for e in &edited {
            eprintln!("  - {e}");
        }
        eprintln!(
            "Restore them (e.g. from version control); changes go into a new migration (`trellis migrate plan`)."
        );
        return Ok(ExitCode::FAILURE);
    }
    let mut count = 0;
    for f in files
        .iter()
        .filter(|f| !applied.iter().any(|a| a.name == f.name))
    {
        let engine = engine_of(f)?;
        match store
            .apply_migration(&f.name, &f.checksum, &engine, allow)
            .await
        {
            Ok(store::Applied::Now { report, losses }) => {
                count += 1;
                println!("applied {}", f.name);
                for s in &f.steps {
                    println!("  - {s}");
                }
                for l in &losses {
                    println!("  lost: {}", l.what);
                }
                let _ = report;
            }
            Ok(store::Applied::Already) => {
                println!("{}: already applied (by another process)", f.name);
            }
            Err(store::Error::Destructive(losses)) => {
                eprintln!("Not applied: {} would lose data.", f.name);
                for l in &losses {
                    eprintln!(
                        "  - {}{}",
                        l.what,
                        if l.blocking {
                            " (cannot be allowed)"
                        } else {
                            ""
                        }
                    );
                }
                if losses.iter().all(|l| !l.blocking) {
                    eprintln!("If that is intended, run again with --allow-destructive.");
                }
                if count > 0 {
                    eprintln!("({count} earlier migration(s) were applied.)");
                }
                return Ok(ExitCode::FAILURE);
            }
            Err(err) => {
                eprintln!("Not applied: {}: {err}", f.name);
                eprintln!("Nothing of it was changed (it ran in one transaction).");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    if count == 0 {
        println!(
            "Nothing to apply: the database has every migration ({}).",
            files.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn migrate_status(dir: &Path, flag: Option<String>, env: &Env) -> Result<ExitCode> {
    let (files, problems) = spec::migration::read_all(dir);
    for p in &problems {
        eprintln!("{p}");
    }
    let current = load_engine(dir)?;
    let url = database_url(dir, flag, &current, env)?;
    println!("Database: {}", redact(&url));
    if let Some(path) = missing_sqlite_file(&url) {
        println!("  (no database at {} yet)", path.display());
        for f in &files {
            println!("  pending  {}", f.name);
        }
        if files.is_empty() {
            println!(
                "No migrations yet: `trellis migrate plan` writes the first one, `trellis migrate apply` creates the tables."
            );
        } else {
            println!("`trellis migrate apply` creates the database and applies them.");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let store = Store::connect(&url).await?;
    let applied = store.applied_migrations().await?;
    for f in &files {
        match applied.iter().find(|a| a.name == f.name) {
            Some(a) if a.checksum == f.checksum => {
                println!("  applied  {}  ({})", f.name, a.applied_at)
            }
            Some(a) => println!(
                "  EDITED   {}  (applied {} with another checksum)",
                f.name, a.applied_at
            ),
            None => println!("  pending  {}", f.name),
        }
    }
    for a in applied
        .iter()
        .filter(|a| !files.iter().any(|f| f.name == a.name))
    {
        println!(
            "  applied  {}  ({}; its file is missing)",
            a.name, a.applied_at
        );
    }
    if applied.is_empty()
        && let Some(note) = synced_without_history(&store, &files).await?
    {
        println!("{note}");
        store.close().await;
        return Ok(ExitCode::SUCCESS);
    }
    let pending = pending_work(dir, &current, &store).await?;
    if pending.is_empty() {
        println!("Up to date.");
    } else {
        for p in &pending {
            println!("  - {p}");
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// The newest migration whose definitions the database's tables match, when the
/// database has tables but no migration recorded (development-mode `serve` made
/// them): `Ok(Some(index))`; `Ok(None)` when it matches none.
async fn baseline_candidate(
    store: &Store,
    files: &[spec::migration::MigrationFile],
) -> Result<Option<usize>> {
    for (i, f) in files.iter().enumerate().rev() {
        if let Some(differs) = store.schema_differs_from(&engine_of(f)?).await?
            && differs.is_empty()
        {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// What `migrate status` says about a database without migration history whose
/// tables were created by schema sync; `None` for an empty database.
async fn synced_without_history(
    store: &Store,
    files: &[spec::migration::MigrationFile],
) -> Result<Option<String>> {
    let Some(last) = files.last() else {
        return Ok(None);
    };
    // Anything stored at all? (Compared with the last file only to find out.)
    if store
        .schema_differs_from(&engine_of(last)?)
        .await?
        .is_none()
    {
        return Ok(None);
    }
    Ok(Some(match baseline_candidate(store, files).await? {
        Some(i) => format!(
            "Baseline: the tables match the definitions of {} but no migration is recorded              (development-mode `serve` created them).\n\
             Adopt them with `trellis migrate baseline`: it checks them again and records {} as applied{}.",
            files[i].name,
            if i == 0 {
                files[0].name.clone()
            } else {
                format!("{} to {}", files[0].name, files[i].name)
            },
            if i + 1 < files.len() {
                format!("; then `trellis migrate apply` applies {}", files[i + 1..].iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", "))
            } else {
                String::new()
            }
        ),
        None => "The database has tables (created by development-mode `serve`) but no migration is recorded,              and they match no migration's definitions, so they cannot be adopted as they are.              Bring them to a migration's definitions first (e.g. serve the definitions of the last migration once),              or start from an empty database."
            .to_string(),
    }))
}

async fn migrate_baseline(dir: &Path, flag: Option<String>, env: &Env) -> Result<ExitCode> {
    let (files, problems) = spec::migration::read_all(dir);
    if let Some(p) = problems.first() {
        anyhow::bail!("{p}");
    }
    let current = load_engine(dir)?;
    let url = database_url(dir, flag, &current, env)?;
    if let Some(path) = missing_sqlite_file(&url) {
        anyhow::bail!(
            "there is no database at {}: nothing to adopt (`trellis migrate apply` creates it)",
            path.display()
        );
    }
    if files.is_empty() {
        anyhow::bail!(
            "there are no migrations to record yet: write the first with `trellis migrate plan`, then run `trellis migrate baseline` again"
        );
    }
    let store = Store::connect(&url).await?;
    let Some(i) = baseline_candidate(&store, &files).await? else {
        let differs = store
            .schema_differs_from(&engine_of(&files[files.len() - 1])?)
            .await?;
        store.close().await;
        match differs {
            None => anyhow::bail!(
                "the database {} has no tables of this project: nothing to adopt (`trellis migrate apply` creates them)",
                redact(&url)
            ),
            Some(entities) => anyhow::bail!(
                "the tables of {} in {} do not match the definitions of any migration, so they are not recorded as migrated (nothing was changed)",
                entities.join(", "),
                redact(&url)
            ),
        }
    };
    let chosen: Vec<(String, String)> = files[..=i]
        .iter()
        .map(|f| (f.name.clone(), f.checksum.clone()))
        .collect();
    let outcome = store.baseline(&chosen, &engine_of(&files[i])?).await?;
    store.close().await;
    match outcome {
        store::Baselined::Recorded(names) => {
            println!(
                "Checked: the tables of {} match the definitions of {}.",
                redact(&url),
                files[i].name
            );
            for n in &names {
                println!("  recorded as applied  {n}");
            }
            if i + 1 < files.len() {
                println!("Run `trellis migrate apply` for the newer migrations.");
            }
            Ok(ExitCode::SUCCESS)
        }
        store::Baselined::HasHistory(names) => {
            eprintln!(
                "Nothing recorded: the database already has migration history ({}); `trellis migrate status` shows it.",
                names.join(", ")
            );
            Ok(ExitCode::FAILURE)
        }
        store::Baselined::Differs(entities) => {
            eprintln!(
                "Nothing recorded: the tables of {} changed while checking.",
                entities.join(", ")
            );
            Ok(ExitCode::FAILURE)
        }
        store::Baselined::Empty => {
            eprintln!("Nothing recorded: the database has no tables of this project.");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Why a production server may not start on this database: migration files not
/// applied (or edited after applying), or definitions that no migration covers.
pub(super) async fn pending_work(
    dir: &Path,
    engine: &Engine,
    store: &Store,
) -> Result<Vec<String>> {
    let (files, problems) = spec::migration::read_all(dir);
    let mut out: Vec<String> = problems.iter().map(|d| d.to_string()).collect();
    let applied = store.applied_migrations().await?;
    for f in &files {
        match applied.iter().find(|a| a.name == f.name) {
            None => out.push(format!("{} is not applied", f.name)),
            Some(a) if a.checksum != f.checksum => out.push(format!(
                "{} was edited after it was applied (its checksum differs)",
                f.name
            )),
            Some(_) => {}
        }
    }
    let last = match files.last() {
        Some(f) => Some(engine_of(f)?),
        None => None,
    };
    if !trellis::engine::migration::steps(last.as_ref(), engine).is_empty() {
        out.push(format!(
            "the definitions changed since {}: run `trellis migrate plan` and review the new file",
            files
                .last()
                .map(|f| f.name.as_str())
                .unwrap_or("the first migration (there is none yet)")
        ));
    }
    Ok(out)
}

/// The engine of a migration's definitions.
fn engine_of(file: &spec::migration::MigrationFile) -> Result<Engine> {
    let loaded = spec::migration::load_texts(&file.definitions);
    if loaded.has_errors() {
        let lines: Vec<String> = loaded.errors().map(|d| d.to_string()).collect();
        anyhow::bail!(
            "the definitions kept in {} do not load:\n{}",
            file.path.display(),
            lines.join("\n")
        );
    }
    Engine::build(&loaded)
        .map_err(|e| anyhow::anyhow!("the definitions kept in {}: {e}", file.path.display()))
}

#[cfg(test)]
mod tests {
    use super::slug;

    #[test]
    fn slug_is_snake_case_words() {
        assert_eq!(slug("Add close reason"), "add_close_reason");
        assert_eq!(slug("  --  "), "changes");
        assert_eq!(slug("ünïcode & co"), "n_code_co");
        assert_eq!(slug(&"x".repeat(60)).len(), 48);
    }
}
