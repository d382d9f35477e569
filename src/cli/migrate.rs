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
use super::project::{database_url, load_all, load_engine, redact, render};

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
        } => runtime.block_on(migrate_plan(&dir, name, flag, env)),
        MigrateAction::Apply {
            dir,
            allow_destructive,
            database_url: flag,
        } => runtime.block_on(migrate_apply(&dir, allow_destructive, flag, env)),
        MigrateAction::Status {
            dir,
            database_url: flag,
        } => runtime.block_on(migrate_status(&dir, flag, env)),
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
    // Count what the destructive steps would lose, where the database is reachable.
    let mut notes = Vec::new();
    let url = database_url(dir, flag, &engine, env)?;
    match Store::connect(&url).await {
        Ok(store) => match store.migration_losses(&engine).await {
            Ok(losses) if losses.is_empty() => notes.push(format!(
                "Counted in {}: nothing would be lost.",
                redact(&url)
            )),
            Ok(losses) => {
                notes.push(format!("Counted in {} as it is now:", redact(&url)));
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
                notes.push("`migrate apply` refuses steps that lose data unless given --allow-destructive.".into());
            }
            Err(err) => notes.push(format!("Could not count what would be lost: {err}")),
        },
        Err(err) => notes.push(format!("Could not count what would be lost ({err}).")),
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
    let store = Store::connect(&url).await?;
    let applied = store.applied_migrations().await?;
    println!("Database: {}", redact(&url));
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
    let pending = pending_work(dir, &current, &store).await?;
    if pending.is_empty() {
        println!("Up to date.");
    } else {
        for p in &pending {
            println!("  - {p}");
        }
    }
    Ok(ExitCode::SUCCESS)
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
