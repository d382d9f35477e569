//! `trellis explain`: why a user may or may not do an action on a record, rule by
//! rule, with the conditions checked by the database.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use trellis::runtime::Env;
use trellis::store::Store;

use super::project::{database_url, load_engine};

#[allow(clippy::too_many_arguments)]
pub(super) fn explain(
    dir: &Path,
    entity: &str,
    id: &str,
    action: &str,
    as_user: Option<String>,
    roles: &str,
    database_url_flag: Option<String>,
    env: &Env,
) -> Result<ExitCode> {
    let engine = load_engine(dir)?;
    let Some(e) = engine.entity(entity).cloned() else {
        bail!("there is no entity `{entity}`");
    };
    let id = uuid::Uuid::parse_str(id).with_context(|| format!("`{id}` is not a record id"))?;
    let action = trellis::http::explain::parse_action(action).map_err(anyhow::Error::msg)?;
    let who = match as_user {
        None => trellis::engine::access::Principal::anonymous(),
        Some(uid) => {
            let roles: Vec<&str> = roles
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .collect();
            trellis::engine::access::Principal::user(&uid, &roles, serde_json::Map::new())
        }
    };
    let url = database_url(dir, database_url_flag, &engine, env)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let store = Store::connect(&url).await?;
        let report = store.explain(&engine, &e, id, &action, &who).await?;
        store.close().await;
        Ok::<_, anyhow::Error>(report)
    })?;
    println!(
        "{}",
        serde_json::to_string_pretty(&trellis::http::explain::explain_json(&report))?
    );
    Ok(ExitCode::SUCCESS)
}
