//! `trellis explain`: why a user may or may not do an action on a record, rule by
//! rule, with the conditions checked by the database. In words by default; the
//! JSON of `GET /_/explain` with `--format json`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use trellis::engine::access::Decided;
use trellis::runtime::Env;
use trellis::spec::Spec;
use trellis::store::{Explanation, Store, Visibility};

use super::Format;
use super::project::{database_url, load_all, load_engine, missing_sqlite_file};

/// What is asked: may this caller do this action on this record?
pub(super) struct Question<'a> {
    pub entity: &'a str,
    pub id: &'a str,
    pub action: &'a str,
    pub as_user: Option<String>,
    pub roles: &'a str,
}

pub(super) fn explain(
    dir: &Path,
    q: Question<'_>,
    format: Format,
    database_url_flag: Option<String>,
    env: &Env,
) -> Result<ExitCode> {
    let engine = load_engine(dir)?;
    let Some(e) = engine.entity(q.entity).cloned() else {
        let names: Vec<&str> = engine.entities().iter().map(|e| e.name.as_str()).collect();
        bail!(
            "there is no entity `{}` (entities: {})",
            q.entity,
            names.join(", ")
        );
    };
    let id =
        uuid::Uuid::parse_str(q.id).with_context(|| format!("`{}` is not a record id", q.id))?;
    let action = trellis::http::explain::parse_action(q.action).map_err(anyhow::Error::msg)?;
    let who = match &q.as_user {
        None => trellis::engine::access::Principal::anonymous(),
        Some(uid) => {
            let roles: Vec<&str> = q
                .roles
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .collect();
            trellis::engine::access::Principal::user(uid, &roles, serde_json::Map::new())
        }
    };
    let url = database_url(dir, database_url_flag, &engine, env)?;
    if let Some(path) = missing_sqlite_file(&url) {
        bail!(
            "there is no database at {} yet, so no record {id} to explain (`trellis serve` creates it; `--database-url` names another)",
            path.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let store = Store::connect(&url).await?;
        let report = store.explain(&engine, &e, id, &action, &who).await?;
        store.close().await;
        Ok::<_, anyhow::Error>(report)
    })?;
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&trellis::http::explain::explain_json(&report))?
        ),
        Format::Human => {
            // The spec again, for the policy's file and its named conditions.
            let (loaded, _) = load_all(dir);
            print!("{}", in_words(&report, &loaded.spec));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The answer for people: the decision and why, each rule of the policy with
/// whether it applies and whether its condition holds on the record (named
/// conditions spelled out), and the fields the caller does not always see.
fn in_words(x: &Explanation, spec: &Spec) -> String {
    let mut out = String::new();
    let caller = match &x.caller_id {
        None => "An anonymous caller".to_string(),
        Some(id) if x.caller_roles.is_empty() => format!("User `{id}` (no roles)"),
        Some(id) => format!("User `{id}` (roles: {})", x.caller_roles.join(", ")),
    };
    let verdict = match x.decision {
        Decided::Allow => "ALLOWED",
        Decided::Deny => "DENIED",
    };
    let may = match x.decision {
        Decided::Allow => "may",
        Decided::Deny => "may not",
    };
    let _ = writeln!(
        out,
        "{verdict}: {caller} {may} {} {} {}.",
        x.action, x.entity, x.id
    );
    let _ = writeln!(out, "Why: {}.", x.reason);
    let policy = spec.policies.iter().find(|p| p.entity.name == x.entity);
    if !x.rules.is_empty() {
        let file = policy.map(|p| p.file.as_str()).unwrap_or("the policy");
        let _ = writeln!(out, "\nRules of {file}:");
    }
    for (trace, holds) in &x.rules {
        let mark = match (trace.skipped, holds) {
            (Some(_), _) => "-",
            (None, Some(true)) => "+",
            (None, _) => "x",
        };
        let _ = writeln!(
            out,
            "  {mark} {} \u{201c}{}\u{201d}",
            trace.effect, trace.name
        );
        let status = match (trace.skipped, holds, &trace.condition) {
            (Some("role"), _, _) => "does not apply: not for the caller's roles".to_string(),
            (Some(_), _, _) => format!("does not apply: not for {}", x.action),
            (None, Some(true), Some(c)) => format!("applies: `{c}` holds on this record"),
            (None, Some(false), Some(c)) => {
                format!("does not apply: `{c}` does not hold on this record")
            }
            (None, _, _) => "applies (no condition)".to_string(),
        };
        let _ = writeln!(out, "      {status}");
        if let (None, Some(text), Some(p)) = (trace.skipped, &trace.condition, policy) {
            for (name, cond) in &p.conditions {
                if mentions(text, &name.name) {
                    let _ = writeln!(out, "      where {} means `{}`", name.name, cond.text);
                }
            }
        }
    }
    if let Some(fields) = &x.fields
        && !fields.is_empty()
    {
        let _ = writeln!(out, "\nFields this caller does not always see:");
        for (field, v) in fields {
            let word = match v {
                Visibility::Hidden => "hidden",
                Visibility::ShownHere => "shown on this record",
                Visibility::HiddenHere => "hidden on this record",
            };
            let _ = writeln!(out, "  {field}: {word}");
        }
    }
    out
}

/// Whether `name` appears in a condition as a word of its own.
fn mentions(text: &str, name: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .any(|word| word == name)
}

#[cfg(test)]
mod tests {
    use super::mentions;

    #[test]
    fn named_conditions_are_found_as_words() {
        assert!(mentions("mine", "mine"));
        assert!(mentions("published or mine", "mine"));
        assert!(!mentions("client.mine = 1", "mine"));
        assert!(!mentions("mineral = 1", "mine"));
    }
}
