//! Built-in accounts: `POST /auth/signup` and `POST /auth/login`.

use std::time::Duration;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::limits::{ADDRESS_FAILURES, ClientAddr, PAIR_FAILURES};
use super::problem::unauthorized;
use super::{AppState, Problem, json_body, json_response, problem};
use crate::engine::access::Principal;
use crate::engine::input::{Mode, parse_body};
use crate::engine::{Engine, FieldError};

const MIN_PASSWORD: usize = 8;
const MAX_PASSWORD: usize = 256;
/// Refresh tokens live 30 days; each use replaces it.
const REFRESH_TTL: i64 = 30 * 24 * 3600;
fn too_many(retry: Duration, what: &str) -> Problem {
    super::limits::too_many(
        retry,
        format!(
            "too many {what}; try again in {} seconds",
            retry.as_secs().max(1)
        ),
    )
}

/// Runs argon2 on the blocking pool under one of the process's hash permits, so
/// that at most `limits.password_hashes` hashes (~19 MiB each) run at once. The
/// permit goes with the work: a request abandoned meanwhile does not free it
/// before the hash is done.
async fn hashing<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let permit = state.limits.hashes.clone().acquire_owned().await.ok()?;
    tokio::task::spawn_blocking(move || {
        let out = work();
        drop(permit);
        out
    })
    .await
    .ok()
}

fn not_enabled() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "no-route",
        "Not found",
        "built-in accounts are not enabled (`auth.users` in trellis.yaml)",
    )
}

/// The accounts settings and entity, or 404 when built-in accounts are off.
fn accounts(
    engine: &Engine,
) -> Result<
    (
        crate::spec::settings::UsersSettings,
        std::sync::Arc<crate::engine::Entity>,
    ),
    Problem,
> {
    let users = engine.auth.users.clone().ok_or_else(not_enabled)?;
    let e = engine
        .entity(&users.entity.name)
        .cloned()
        .ok_or_else(not_enabled)?;
    Ok((users, e))
}

fn hash(password: &str) -> Option<String> {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .ok()
        .map(|h| h.to_string())
}

fn verify(password: &str, stored: &str) -> bool {
    use argon2::password_hash::PasswordVerifier;
    use argon2::password_hash::phc::PasswordHash;
    PasswordHash::new(stored).ok().is_some_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// The role a new account gets: its role field's default, if any.
fn default_role<'e>(
    users: &crate::spec::settings::UsersSettings,
    e: &'e crate::engine::Entity,
) -> Vec<&'e str> {
    users
        .role_field
        .as_ref()
        .and_then(|rf| e.field(&rf.name))
        .and_then(|f| match &f.default {
            Some(crate::spec::model::Default::Value(Value::String(r))) => Some(r.as_str()),
            _ => None,
        })
        .into_iter()
        .collect()
}

/// The role claim of an account, from its role field.
fn roles_of(engine: &Engine, rec: &Map<String, Value>) -> Vec<String> {
    engine
        .auth
        .users
        .as_ref()
        .and_then(|u| u.role_field.as_ref())
        .and_then(|rf| rec.get(&rf.name))
        .and_then(Value::as_str)
        .map(|r| vec![r.to_string()])
        .unwrap_or_default()
}

async fn token_response(
    state: &AppState,
    engine: &Engine,
    status: StatusCode,
    rec: &Map<String, Value>,
) -> Result<Response, Problem> {
    let id = rec
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let roles = roles_of(engine, rec);
    let mut extra = Map::new();
    if let Some(email) = rec.get("email") {
        extra.insert("email".into(), email.clone());
    }
    let (token, ttl) = state
        .auth
        .load()
        .issue(&id, &roles, extra.clone())
        .ok_or_else(Problem::internal)?;
    let role_refs: Vec<&str> = roles.iter().map(String::as_str).collect();
    let who = Principal::user(&id, &role_refs, extra);
    let mut user = rec.clone();
    if let Some(users) = engine
        .auth
        .users
        .as_ref()
        .and_then(|u| engine.entity(&u.entity.name))
    {
        for f in engine.access.hidden(&users.name, &who) {
            user.shift_remove(&f);
        }
    }
    let refresh = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let uid = uuid::Uuid::parse_str(&id).map_err(|_| Problem::internal())?;
    state
        .store
        .add_refresh_token(uid, &refresh, REFRESH_TTL)
        .await
        .map_err(|err| problem::from_store(err, "session"))?;
    Ok(json_response(
        status,
        &json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": ttl,
            "refresh_token": refresh,
            "user": user
        }),
    ))
}

fn password_of(obj: &mut Map<String, Value>) -> Result<String, FieldError> {
    match obj.remove("password") {
        Some(Value::String(p)) if p.chars().count() >= MIN_PASSWORD && p.len() <= MAX_PASSWORD => {
            Ok(p)
        }
        Some(Value::String(_)) => Err(FieldError::new(
            "/password",
            format!("must be {MIN_PASSWORD} to {MAX_PASSWORD} characters"),
        )),
        Some(_) => Err(FieldError::new("/password", "must be text")),
        None => Err(FieldError::new("/password", "is required")),
    }
}

pub(super) async fn signup(
    State(state): State<AppState>,
    addr: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let engine = state.engine.load_full();
    let (users, e) = accounts(&engine)?;
    let addr = addr.map(|Extension(a)| a).unwrap_or(ClientAddr(None));
    state.limits.signup(addr)?;
    let mut value = json_body(&headers, body)?;
    let Some(obj) = value.as_object_mut() else {
        return Err(Problem::invalid(vec![FieldError::new(
            "",
            "the body must be a JSON object",
        )]));
    };
    let mut errors = Vec::new();
    let password = password_of(obj).map_err(|e| errors.push(e)).ok();
    if let Some(rf) = &users.role_field
        && obj.contains_key(&rf.name)
    {
        errors.push(FieldError::new(
            format!("/{}", rf.name),
            "is given by an administrator, not chosen at signup",
        ));
        obj.remove(&rf.name);
    }
    // Trellis creates the account itself, so the entity's field rules are checked
    // here, as for the new account (signed in, with the role field's default): a
    // field it may not write (`write: never`, a role it lacks, a field hidden from
    // it) is refused at signup as it would be in its first PATCH. The email is the
    // account's own to give.
    let newcomer = Principal::user("", &default_role(&users, &e), Map::new());
    errors.extend(
        engine
            .access
            .check_write(&e, &value, Mode::Create, &newcomer)
            .into_iter()
            .filter(|err| err.pointer != "/email"),
    );
    let input = match parse_body(&e, &value, Mode::Create) {
        Ok(input) if errors.is_empty() => input,
        Ok(_) => return Err(Problem::invalid(errors)),
        Err(mut more) => {
            more.extend(errors);
            more.sort_by(|a, b| a.pointer.cmp(&b.pointer));
            return Err(Problem::invalid(more));
        }
    };
    let password = password.unwrap_or_default();
    let hashed = hashing(&state, move || hash(&password))
        .await
        .flatten()
        .ok_or_else(Problem::internal)?;
    let system = Principal::system();
    let rec = state
        .store
        .create(&engine, &e, &input, &system)
        .await
        .map_err(|err| problem::from_store(err, &e.name))?;
    let id = rec
        .get("id")
        .and_then(Value::as_str)
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
        .ok_or_else(Problem::internal)?;
    if let Err(err) = state.store.set_password(id, &hashed).await {
        // Do not leave an account without a password behind.
        let _ = state.store.delete(&engine, &e, id, &system).await;
        return Err(problem::from_store(err, &e.name));
    }
    token_response(&state, &engine, StatusCode::CREATED, &rec).await
}

pub(super) async fn login(
    State(state): State<AppState>,
    addr: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let engine = state.engine.load_full();
    let (_, e) = accounts(&engine)?;
    let value = json_body(&headers, body)?;
    let email = value
        .get("email")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_string();
    let password = value
        .get("password")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if email.is_empty() || password.is_empty() {
        let mut errors = Vec::new();
        if email.is_empty() {
            errors.push(FieldError::new("/email", "is required"));
        }
        if password.is_empty() {
            errors.push(FieldError::new("/password", "is required"));
        }
        return Err(Problem::invalid(errors));
    }
    // The real client (through trusted proxies), `local` for in-process calls.
    let address = addr
        .map(|Extension(a)| a)
        .unwrap_or(ClientAddr(None))
        .text();
    let pair = format!("{}\n{address}", email.to_lowercase());
    let limits = &state.limits.login;
    let address_slot = limits
        .addresses
        .reserve(&address, ADDRESS_FAILURES)
        .map_err(|retry| too_many(retry, "failed sign-ins from this address"))?;
    let pair_slot = match limits.pairs.reserve(&pair, PAIR_FAILURES) {
        Ok(slot) => slot,
        Err(retry) => {
            limits.addresses.release(&address, address_slot);
            return Err(too_many(
                retry,
                "failed sign-ins for this account from this address",
            ));
        }
    };
    // Not a wrong password: the slots go back.
    let give_back = || {
        limits.addresses.release(&address, address_slot);
        limits.pairs.release(&pair, pair_slot);
    };
    let found = match state.store.credentials(&e, &email).await {
        Ok(found) => found,
        Err(err) => {
            give_back();
            return Err(problem::from_store(err, &e.name));
        }
    };
    // Verify against a real hash even for unknown emails, so that timing does not
    // tell which emails have accounts.
    const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$6Zl8S0yBVbLLKqdxUqoEEQnFJtVQJWZpA0qcPaQUjlQ";
    let (id, stored) = found
        .clone()
        .unwrap_or_else(|| (String::new(), DECOY.to_string()));
    let ok = match hashing(&state, move || verify(&password, &stored)).await {
        Some(ok) => ok,
        None => {
            give_back();
            return Err(Problem::internal());
        }
    };
    if !ok || found.is_none() {
        // Both slots stay taken: they are this failure.
        return Err(unauthorized("wrong email or password"));
    }
    limits.addresses.release(&address, address_slot);
    limits.pairs.clear(&pair);
    let uid = uuid::Uuid::parse_str(&id).map_err(|_| Problem::internal())?;
    let rec = state
        .store
        .get(&e, uid)
        .await
        .map_err(|err| problem::from_store(err, &e.name))?;
    token_response(&state, &engine, StatusCode::OK, &rec).await
}

fn refresh_token_of(value: &Value) -> Result<String, Problem> {
    match value.get("refresh_token").and_then(Value::as_str) {
        Some(t) if !t.is_empty() && t.len() <= 256 => Ok(t.to_string()),
        _ => Err(Problem::invalid(vec![FieldError::new(
            "/refresh_token",
            "is required",
        )])),
    }
}

/// `POST /auth/refresh`: a new access token and a new refresh token for a live one.
pub(super) async fn refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let engine = state.engine.load_full();
    let (_, e) = accounts(&engine)?;
    let token = refresh_token_of(&json_body(&headers, body)?)?;
    let outcome = state
        .store
        .use_refresh_token(&token)
        .await
        .map_err(|err| problem::from_store(err, "session"))?;
    let user_id = match outcome {
        crate::store::Refresh::Rotated { user_id } => user_id,
        crate::store::Refresh::Reused => {
            return Err(unauthorized(
                "this refresh token was already used; every session of the account was closed, sign in again",
            ));
        }
        crate::store::Refresh::Invalid => {
            return Err(unauthorized("the refresh token is unknown or expired"));
        }
    };
    let uid = uuid::Uuid::parse_str(&user_id).map_err(|_| Problem::internal())?;
    let rec = match state.store.get(&e, uid).await {
        Ok(rec) => rec,
        Err(crate::store::Error::NotFound) => {
            return Err(unauthorized("the account no longer exists"));
        }
        Err(err) => return Err(problem::from_store(err, &e.name)),
    };
    token_response(&state, &engine, StatusCode::OK, &rec).await
}

/// `POST /auth/logout`: revokes a refresh token. Access tokens expire by themselves.
pub(super) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let engine = state.engine.load_full();
    if engine.auth.users.is_none() {
        return Err(not_enabled());
    }
    let token = refresh_token_of(&json_body(&headers, body)?)?;
    state
        .store
        .revoke_refresh_token(&token)
        .await
        .map_err(|err| problem::from_store(err, "session"))?;
    Ok(axum::response::IntoResponse::into_response(
        StatusCode::NO_CONTENT,
    ))
}
