//! Commands for callers: `trellis token` (sign a token for trying the API) and
//! `trellis add-user` (create a built-in account).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use trellis::http::Auth;
use trellis::runtime::Env;
use trellis::store::Store;

use super::project::{database_url, load_engine};

/// The longest lifetime `trellis token --ttl` gives a token: 30 days.
pub(super) const MAX_TOKEN_TTL: u64 = 30 * 24 * 3600;

/// A token lifetime: whole seconds (`900`) or a whole number with a unit
/// (`90s`, `15m`, `24h`, `7d`), from 1 second to [`MAX_TOKEN_TTL`].
pub(super) fn parse_ttl(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => t.split_at(at),
        None => (t, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "`{text}` is not a duration: give seconds (`900`) or a whole number with s, m, h or d (`15m`, `24h`)"
            ));
        }
    };
    let n: u64 = number.parse().map_err(|_| {
        format!("`{text}` is not a duration: give seconds (`900`) or a whole number with s, m, h or d (`15m`, `24h`)")
    })?;
    match n.checked_mul(scale) {
        Some(0) => Err("a token must last at least 1 second".to_string()),
        Some(secs) if secs <= MAX_TOKEN_TTL => Ok(secs),
        _ => Err(format!(
            "`{text}` is longer than the maximum of 30 days (`30d`, {MAX_TOKEN_TTL} seconds)"
        )),
    }
}

pub(super) fn token(
    dir: &Path,
    sub: &str,
    roles: &str,
    ttl: Option<u64>,
    env: &Env,
) -> Result<ExitCode> {
    let engine = load_engine(dir)?;
    let Some(jwt) = &engine.auth.jwt else {
        bail!("this project has no `auth.jwt` in trellis.yaml");
    };
    let auth = Auth::from_engine(&engine, dir, &|var| env.get(var).map(str::to_string))?;
    let roles: Vec<String> = roles
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect();
    let (token, ttl) = auth
        .issue_for(sub, &roles, serde_json::Map::new(), ttl)
        .with_context(|| {
            format!(
                "only HS256 projects can sign tokens here (this one uses {:?})",
                jwt.algorithm
            )
        })?;
    eprintln!("valid for {ttl} s");
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

pub(super) fn add_user(
    dir: &Path,
    email: &str,
    role: Option<String>,
    name: Option<String>,
    password_env: Option<String>,
    database_url_flag: Option<String>,
    env: &Env,
) -> Result<ExitCode> {
    let engine = load_engine(dir)?;
    let Some(users) = engine.auth.users.clone() else {
        bail!("this project has no built-in accounts (`auth.users` in trellis.yaml)");
    };
    let Some(e) = engine.entity(&users.entity.name).cloned() else {
        bail!("the accounts entity `{}` does not exist", users.entity.name);
    };
    let password = match password_env {
        Some(var) => env
            .get(&var)
            .map(str::to_string)
            .ok_or(std::env::VarError::NotPresent)
            .with_context(|| format!("{var} is not set"))?,
        None => format!("{}", uuid::Uuid::new_v4().simple())[..20].to_string(),
    };
    if password.chars().count() < 8 {
        bail!("the password must have at least 8 characters");
    }
    let mut body = serde_json::Map::new();
    body.insert("email".into(), serde_json::json!(email));
    for key in ["display_name", "name"] {
        if e.field(key).is_some_and(|f| f.required) {
            body.insert(
                key.into(),
                serde_json::json!(name.clone().unwrap_or_else(|| email.to_string())),
            );
        }
    }
    if let (Some(role), Some(rf)) = (&role, &users.role_field) {
        body.insert(rf.name.clone(), serde_json::json!(role));
    }
    let input = trellis::engine::input::parse_body(
        &e,
        &serde_json::Value::Object(body),
        trellis::engine::input::Mode::Create,
    )
    .map_err(|errors| {
        let lines: Vec<String> = errors
            .iter()
            .map(|x| format!("{}: {}", x.pointer, x.detail))
            .collect();
        anyhow::anyhow!(
            "the account does not fit the `{}` entity:\n  {}",
            e.name,
            lines.join("\n  ")
        )
    })?;
    let url = database_url(dir, database_url_flag, &engine, env)?;
    let hashed = {
        use argon2::password_hash::PasswordHasher;
        argon2::Argon2::default()
            .hash_password(password.as_bytes())
            .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?
            .to_string()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = Store::connect(&url).await?;
        store.sync_schema(&engine).await?;
        let rec = store
            .create(
                &engine,
                &e,
                &input,
                &trellis::engine::access::Principal::system(),
            )
            .await?;
        let id = rec
            .get("id")
            .and_then(|v| v.as_str())
            .and_then(|s| uuid::Uuid::parse_str(s).ok())
            .context("the new account has no id")?;
        store.set_password(id, &hashed).await?;
        store.close().await;
        println!("created {} {email} (id {id})", e.name);
        println!("password: {password}");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::{MAX_TOKEN_TTL, parse_ttl};

    #[test]
    fn ttls_are_seconds_or_a_number_with_a_unit() {
        assert_eq!(parse_ttl("900"), Ok(900));
        assert_eq!(parse_ttl("90s"), Ok(90));
        assert_eq!(parse_ttl("15m"), Ok(900));
        assert_eq!(parse_ttl("24h"), Ok(86_400));
        assert_eq!(parse_ttl("30d"), Ok(MAX_TOKEN_TTL));
        assert!(parse_ttl("31d").unwrap_err().contains("maximum of 30 days"));
        assert!(parse_ttl("0").unwrap_err().contains("at least 1 second"));
        for bad in ["", "15 minutes", "1.5h", "-5", "h", "99999999999999999999"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
