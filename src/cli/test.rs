//! `trellis test`: runs the `tests:` of policy files against a real database (a fresh
//! in-memory SQLite per test unless told otherwise), through the same store
//! operations the HTTP API uses, and prints each outcome.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use serde_json::{Map, Value};
use trellis::engine::access::Principal;
use trellis::engine::input::{Input, Mode, parse_body};
use trellis::engine::query::{GetRequest, list_request};
use trellis::engine::{Engine, Entity};
use trellis::spec::Spec;
use trellis::spec::policy::{Caller, PolicyTest};
use trellis::store::{self, Store};
use uuid::Uuid;

use super::project::{load_all, render, require_project, summary};

/// The result of one policy test.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub file: String,
    pub line: u32,
    pub name: String,
    /// Empty when the test passed.
    pub failures: Vec<String>,
}

/// Replaces `$handle` strings by the ids of the rows they name.
fn resolve(v: &Value, handles: &HashMap<String, String>) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) if s.starts_with('$') => {
            let name = &s[1..];
            Value::String(handles.get(name).cloned().ok_or_else(|| {
                format!("unknown handle `{s}` (name a setup row with `$id: {name}`)")
            })?)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| resolve(i, handles))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), resolve(v, handles)?)))
                .collect::<Result<Map<_, _>, String>>()?,
        ),
        other => other.clone(),
    })
}

fn input_of(e: &Entity, body: &Value) -> Result<Input, String> {
    parse_body(e, body, Mode::Seed).map_err(|errors| {
        let parts: Vec<String> = errors
            .iter()
            .map(|x| format!("{} {}", x.pointer, x.detail))
            .collect();
        format!(
            "the {} does not fit its model: {}",
            e.name,
            parts.join("; ")
        )
    })
}

fn id_of(rec: &Map<String, Value>) -> Result<Uuid, String> {
    rec.get("id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| "a created row has no id".to_string())
}

/// Runs one test in its own database.
async fn run_one(
    engine: &Engine,
    entity: &Entity,
    test: &PolicyTest,
    url: &str,
) -> Result<Vec<String>, String> {
    let store = Store::connect(url).await.map_err(|e| e.to_string())?;
    store.sync_schema(engine).await.map_err(|e| e.to_string())?;
    let system = Principal::system();
    let mut handles: HashMap<String, String> = HashMap::new();
    for (entity_name, row) in &test.setup {
        let e = engine
            .entity(&entity_name.name)
            .ok_or_else(|| format!("setup names `{}`, which is not an entity", entity_name.name))?;
        let mut row = row.clone();
        let handle = row
            .remove("$id")
            .and_then(|v| v.as_str().map(str::to_string));
        let body = resolve(&Value::Object(row), &handles)?;
        let rec = store
            .create(engine, e, &input_of(e, &body)?, &system)
            .await
            .map_err(|err| format!("setup of a {} failed: {err}", e.name))?;
        if let Some(h) = handle {
            handles.insert(h, id_of(&rec)?.to_string());
        }
    }
    let who = match &test.caller {
        Caller::Anonymous => Principal::anonymous(),
        Caller::User { id, roles, claims } => {
            let id = match resolve(&Value::String(id.clone()), &handles)? {
                Value::String(s) => s,
                _ => id.clone(),
            };
            let claims = match resolve(&Value::Object(claims.clone()), &handles)? {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
            Principal::user(&id, &roles, claims)
        }
    };
    let body = resolve(&Value::Object(test.record.clone()), &handles)?;
    let mut failures = Vec::new();
    let word = |b: bool| if b { "allow" } else { "deny" };
    // `create` first: the record the caller creates (if they may) is the one the other
    // actions are tried on; otherwise Trellis creates it.
    let mut created = None;
    if let Some((_, expected)) = test.expect.iter().find(|(a, _)| a.name == "create") {
        let rule_errors = engine.access.check_write(entity, &body, Mode::Create, &who);
        let mut b = body.clone();
        let attempt = if !rule_errors.is_empty() {
            Err(store::Error::forbidden("field rules"))
        } else if engine.access.apply_presets(entity, &who, &mut b).is_err() {
            Err(store::Error::forbidden("presets"))
        } else {
            store
                .create(engine, entity, &input_of(entity, &b)?, &who)
                .await
        };
        let allowed = match attempt {
            Ok(rec) => {
                created = Some(rec);
                true
            }
            // Refused by the policy, or by a field's `write.where` on the new record.
            Err(store::Error::Refused(_)) => false,
            Err(other) => return Err(format!("create failed for another reason: {other}")),
        };
        if allowed != *expected {
            failures.push(format!(
                "create: expected {}, got {}",
                word(*expected),
                word(allowed)
            ));
        }
    }
    let rec = match created {
        Some(rec) => rec,
        None => {
            // As the caller would have created it: their `on_create` presets filled in
            // (an `author` set to the caller), unless the record gives them.
            let mut b = body.clone();
            if engine.access.apply_presets(entity, &who, &mut b).is_err() {
                b = body.clone();
            }
            store
                .create(engine, entity, &input_of(entity, &b)?, &system)
                .await
                .map_err(|err| format!("creating the record failed: {err}"))?
        }
    };
    let id = id_of(&rec)?;

    // Deletion last: it removes the record the others look at.
    let mut expectations = test.expect.clone();
    expectations.sort_by_key(|(a, _)| a.name == "delete");
    for (action, expected) in expectations {
        let allowed = match action.name.as_str() {
            "create" => continue,
            "read" => store
                .get_with(engine, entity, id, &GetRequest::default(), &who)
                .await
                .is_ok(),
            "list" => {
                let req =
                    list_request(engine, entity, &[("limit".into(), "200".into())], &[], &who)
                        .map_err(|e| e.message)?;
                match store.list(engine, entity, &req, &who).await {
                    Ok(page) => page.items.iter().any(|r| {
                        r.get("id").and_then(Value::as_str) == Some(id.to_string().as_str())
                    }),
                    Err(_) => false,
                }
            }
            "update" => {
                let change = match &test.change {
                    Some(c) => resolve(&Value::Object(c.clone()), &handles)?,
                    None => Value::Object(Map::new()),
                };
                let rule_errors = engine
                    .access
                    .check_write(entity, &change, Mode::Update, &who);
                if rule_errors.is_empty() {
                    let change = trellis::engine::input::decimals_as_text(entity, &change);
                    let input = parse_body(entity, &change, Mode::Update).map_err(|errors| {
                        let parts: Vec<String> = errors
                            .iter()
                            .map(|x| format!("{} {}", x.pointer, x.detail))
                            .collect();
                        format!("`change` does not fit the model: {}", parts.join("; "))
                    })?;
                    store
                        .update(engine, entity, id, &input, None, &who)
                        .await
                        .is_ok()
                } else {
                    false
                }
            }
            field if field.starts_with("read.") => {
                let name = &field["read.".len()..];
                if entity.field(name).is_none() {
                    return Err(format!("`{field}`: {} has no field `{name}`", entity.name));
                }
                store
                    .get_with(engine, entity, id, &GetRequest::default(), &who)
                    .await
                    .is_ok_and(|rec| rec.contains_key(name))
            }
            "delete" => store.delete(engine, entity, id, &who).await.is_ok(),
            other => return Err(format!("`{other}` cannot be tested")),
        };
        if allowed != expected {
            failures.push(format!(
                "{}: expected {}, got {}",
                action.name,
                word(expected),
                word(allowed)
            ));
        }
    }
    store.close().await;
    Ok(failures)
}

/// Runs every policy test of the project. `url` is the database to use for each
/// test (default: a fresh in-memory SQLite each time).
pub async fn run(
    engine: &Engine,
    spec: &Spec,
    url: Option<&str>,
) -> Result<Vec<Outcome>, store::Error> {
    let mut out = Vec::new();
    for policy in &spec.policies {
        let Some(entity) = engine.entity(&policy.entity.name) else {
            continue;
        };
        for test in &policy.tests {
            // Every test starts from an empty database: a fresh in-memory SQLite, or a
            // scratch schema on the given PostgreSQL.
            let result = match url {
                Some(u) if u.starts_with("postgres") => {
                    let (scoped, schema) = Store::scratch_schema(u).await?;
                    let r = run_one(engine, entity, test, &scoped).await;
                    Store::drop_schema(u, &schema).await?;
                    r
                }
                Some(u) => run_one(engine, entity, test, u).await,
                None => run_one(engine, entity, test, "sqlite::memory:").await,
            };
            let failures = match result {
                Ok(f) => f,
                Err(problem) => vec![problem],
            };
            out.push(Outcome {
                file: policy.file.clone(),
                line: test.pos.line,
                name: test.name.clone(),
                failures,
            });
        }
    }
    Ok(out)
}

pub(super) fn policy_tests(dir: &Path, database_url: Option<String>) -> anyhow::Result<ExitCode> {
    let (loaded, engine) = load_all(dir);
    require_project(dir, &loaded)?;
    let Some(engine) = engine else {
        render(&loaded);
        bail!(
            "the project has problems ({}); fix them first",
            summary(&loaded.diagnostics)
        );
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcomes = runtime.block_on(run(&engine, &loaded.spec, database_url.as_deref()))?;
    let mut failed = 0;
    for o in &outcomes {
        if o.failures.is_empty() {
            println!("ok      {}:{}  {}", o.file, o.line, o.name);
        } else {
            failed += 1;
            println!("FAILED  {}:{}  {}", o.file, o.line, o.name);
            for f in &o.failures {
                println!("          {f}");
            }
        }
    }
    if outcomes.is_empty() {
        println!("no policy tests: add `tests:` to the files in policies/");
    }
    println!(
        "policy tests: {} passed, {failed} failed",
        outcomes.len() - failed
    );
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
