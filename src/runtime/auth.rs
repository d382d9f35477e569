//! Authentication: a JWT in, a [`Principal`] out; and the signing of tokens for
//! built-in accounts. Built from the engine's `auth` settings (with secrets the CLI
//! read from the environment) at start and on every reload, so it changes together
//! with the engine. No HTTP here: `http` reads the `Authorization` header and turns
//! a [`Refused`] token into a 401.

use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde_json::{Map, Value, json};

use crate::engine::Engine;
use crate::engine::access::Principal;
use crate::spec::settings::{JwtAlgorithm, JwtSettings, UsersSettings};

/// Why authentication could not be set up (at start or reload).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("the environment variable {0} (auth.jwt.secret_env) is not set")]
    MissingSecret(String),
    #[error("the JWT secret in {0} is shorter than 32 bytes; use a long random value")]
    WeakSecret(String),
    #[error("cannot read the public key {path}: {reason}")]
    Key { path: String, reason: String },
}

struct Verifier {
    /// One key, or keys by `kid` (from a JWKS file).
    keys: Keys,
    validation: Validation,
    settings: JwtSettings,
    /// Tokens already verified, by their text: a client sends the same token with
    /// every request until it expires, and checking its signature and reading its
    /// claims again is most of the cost of a small read. A new [`Auth`] (after a
    /// reload, e.g. with a new key) starts with an empty cache.
    verified: TokenCache,
}

/// Verified tokens: the caller each one stands for, and when it expires.
struct TokenCache(quick_cache::sync::Cache<Box<str>, Verified, TokenWeight>);

#[derive(Clone)]
struct Verified {
    who: Arc<Principal>,
    /// The token's `exp`, in seconds since the epoch.
    exp: i64,
}

/// A cached token weighs its length: the claims it carries are of the same size.
#[derive(Clone)]
struct TokenWeight;

impl quick_cache::Weighter<Box<str>, Verified> for TokenWeight {
    fn weight(&self, key: &Box<str>, _: &Verified) -> u64 {
        key.len() as u64
    }
}

/// Tokens longer than this are verified every time (they are not cached).
const CACHED_TOKEN_MAX: usize = 4096;
/// The total length of the cached tokens (a few MiB with their principals).
const TOKEN_CACHE_BYTES: u64 = 2 * 1024 * 1024;

impl TokenCache {
    fn new() -> TokenCache {
        TokenCache(quick_cache::sync::Cache::with_weighter(
            4096,
            TOKEN_CACHE_BYTES,
            TokenWeight,
        ))
    }

    /// The caller of a token verified before, while it has not expired (with the
    /// same leeway the verification allows).
    fn get(&self, token: &str, leeway: u64) -> Option<Arc<Principal>> {
        let hit = self.0.get(token)?;
        if chrono::Utc::now().timestamp() > hit.exp.saturating_add(leeway as i64) {
            self.0.remove(token);
            return None;
        }
        Some(hit.who)
    }

    fn insert(&self, token: &str, who: &Arc<Principal>, exp: Option<f64>) {
        let Some(exp) = exp else {
            return;
        };
        if token.len() <= CACHED_TOKEN_MAX && exp.is_finite() {
            let verified = Verified {
                who: who.clone(),
                exp: exp.floor() as i64,
            };
            self.0.insert(token.into(), verified);
        }
    }
}

/// Why a token was refused: said to the caller in the 401's `detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

fn refused(why: impl Into<String>) -> Refused {
    Refused(why.into())
}

enum Keys {
    One(DecodingKey),
    ById(Vec<(String, DecodingKey)>),
}

/// Checks tokens and, with built-in accounts, issues them.
pub struct Auth {
    verifier: Option<Verifier>,
    anonymous: Arc<Principal>,
    signer: Option<(EncodingKey, JwtSettings)>,
    pub users: Option<UsersSettings>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("jwt", &self.verifier.is_some())
            .field("users", &self.users.is_some())
            .finish()
    }
}

fn algorithm(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::Hs256 => Algorithm::HS256,
        JwtAlgorithm::Rs256 => Algorithm::RS256,
        JwtAlgorithm::Es256 => Algorithm::ES256,
    }
}

fn validation(jwt: &JwtSettings, alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    validation.leeway = jwt.leeway;
    validation.validate_nbf = true;
    // A configured issuer or audience must be in the token: without these, a token
    // lacking the claim would pass (jsonwebtoken checks only claims present).
    let mut required = vec!["exp"];
    if jwt.issuer.is_some() {
        required.push("iss");
    }
    if jwt.audience.is_some() {
        required.push("aud");
    }
    validation.set_required_spec_claims(&required);
    match &jwt.audience {
        Some(aud) => validation.set_audience(&[aud]),
        None => validation.validate_aud = false,
    }
    if let Some(iss) = &jwt.issuer {
        validation.set_issuer(&[iss]);
    }
    validation
}

impl Auth {
    /// No authentication: every caller is anonymous.
    pub fn none() -> Auth {
        Auth {
            verifier: None,
            anonymous: Arc::new(Principal::anonymous()),
            signer: None,
            users: None,
        }
    }

    /// Sets up what `trellis.yaml` asks for. `secret` reads a secret by the name of
    /// its environment variable; key files are read relative to `project`.
    pub fn from_engine(
        engine: &Engine,
        project: &Path,
        secret: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Auth, SetupError> {
        let Some(jwt) = &engine.auth.jwt else {
            return Ok(Auth::none());
        };
        let alg = algorithm(jwt.algorithm);
        let (key, signer) = match jwt.algorithm {
            JwtAlgorithm::Hs256 => {
                let var = jwt.secret_env.clone().unwrap_or_default();
                let value = secret(&var).ok_or_else(|| SetupError::MissingSecret(var.clone()))?;
                if value.len() < 32 {
                    return Err(SetupError::WeakSecret(var));
                }
                (
                    DecodingKey::from_secret(value.as_bytes()),
                    Some((EncodingKey::from_secret(value.as_bytes()), jwt.clone())),
                )
            }
            JwtAlgorithm::Rs256 | JwtAlgorithm::Es256 => {
                let read = |file: &str| {
                    let path = project.join(file);
                    std::fs::read(&path).map_err(|e| SetupError::Key {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })
                };
                let keys = match (&jwt.public_key_file, &jwt.jwks_file) {
                    (Some(file), _) => {
                        let pem = read(file)?;
                        let key = if jwt.algorithm == JwtAlgorithm::Rs256 {
                            DecodingKey::from_rsa_pem(&pem)
                        } else {
                            DecodingKey::from_ec_pem(&pem)
                        }
                        .map_err(|e| SetupError::Key {
                            path: file.clone(),
                            reason: e.to_string(),
                        })?;
                        Keys::One(key)
                    }
                    (None, Some(file)) => {
                        let bad = |reason: String| SetupError::Key {
                            path: file.clone(),
                            reason,
                        };
                        let set: jsonwebtoken::jwk::JwkSet =
                            serde_json::from_slice(&read(file)?).map_err(|e| bad(e.to_string()))?;
                        let mut keys = Vec::new();
                        for jwk in &set.keys {
                            let kid = jwk.common.key_id.clone().unwrap_or_default();
                            let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(e.to_string()))?;
                            keys.push((kid, key));
                        }
                        if keys.is_empty() {
                            return Err(bad("the JWKS holds no keys".to_string()));
                        }
                        Keys::ById(keys)
                    }
                    (None, None) => {
                        return Err(SetupError::Key {
                            path: String::new(),
                            reason: "no public_key_file or jwks_file".to_string(),
                        });
                    }
                };
                return Ok(Auth {
                    verifier: Some(Verifier {
                        keys,
                        validation: validation(jwt, alg),
                        settings: jwt.clone(),
                        verified: TokenCache::new(),
                    }),
                    anonymous: Arc::new(Principal::anonymous()),
                    signer: None,
                    users: engine.auth.users.clone(),
                });
            }
        };
        Ok(Auth {
            verifier: Some(Verifier {
                keys: Keys::One(key),
                validation: validation(jwt, alg),
                settings: jwt.clone(),
                verified: TokenCache::new(),
            }),
            anonymous: Arc::new(Principal::anonymous()),
            signer,
            users: engine.auth.users.clone(),
        })
    }

    /// The caller of a request, from the text of its `Authorization` header
    /// (`None` without one): anonymous without a token, refused for a bad one.
    pub fn caller(&self, authorization: Option<&str>) -> Result<Arc<Principal>, Refused> {
        let Some(text) = authorization else {
            return Ok(self.anonymous.clone());
        };
        let Some(verifier) = &self.verifier else {
            return Err(refused(
                "this server does not accept tokens (no `auth.jwt` in trellis.yaml)",
            ));
        };
        let text = text.trim();
        let token = match text.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(refused("the Authorization header must be `Bearer <token>`"));
            }
        };
        if let Some(who) = verifier.verified.get(token, verifier.validation.leeway) {
            return Ok(who);
        }
        let key = match &verifier.keys {
            Keys::One(key) => key,
            Keys::ById(keys) => {
                let kid = jsonwebtoken::decode_header(token)
                    .ok()
                    .and_then(|h| h.kid)
                    .unwrap_or_default();
                match keys.iter().find(|(id, _)| *id == kid) {
                    Some((_, key)) => key,
                    None if keys.len() == 1 && kid.is_empty() => &keys[0].1,
                    None => {
                        return Err(refused("the token's key id (`kid`) is not in the key set"));
                    }
                }
            }
        };
        let data = decode::<Map<String, Value>>(token, key, &verifier.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            let why = match e.kind() {
                ErrorKind::MissingRequiredClaim(c) if c == "iss" => {
                    "the token has no issuer (`iss`); this server requires one"
                }
                ErrorKind::MissingRequiredClaim(c) if c == "aud" => {
                    "the token has no audience (`aud`); this server requires one"
                }
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::ImmatureSignature => "the token is not valid yet",
                ErrorKind::InvalidIssuer => "the token was issued by another issuer",
                ErrorKind::InvalidAudience => "the token is meant for another audience",
                ErrorKind::InvalidSignature => "the token's signature is wrong",
                ErrorKind::InvalidAlgorithm => "the token uses another algorithm",
                ErrorKind::MissingRequiredClaim(_) => "the token has no expiry (`exp`)",
                _ => "the token cannot be read",
            };
            refused(why)
        })?;
        let mut claims = data.claims;
        let s = &verifier.settings;
        let id = match claims.get(&s.user_id_claim) {
            Some(Value::String(v)) if !v.is_empty() => v.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(refused(format!(
                    "the token has no user id claim `{}`",
                    s.user_id_claim
                )));
            }
        };
        let roles: Vec<String> = match claims.get(&s.roles_claim) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(Value::String(r)) => vec![r.clone()],
            _ => Vec::new(),
        };
        let mut all = vec!["authenticated".to_string()];
        all.extend(roles.into_iter().filter(|r| r != "anonymous"));
        claims.insert("id".into(), json!(id));
        claims.insert("roles".into(), json!(all));
        let exp = claims.get("exp").and_then(Value::as_f64);
        let who = Arc::new(Principal {
            id: Some(id),
            roles: all,
            claims: Arc::new(claims),
            system: false,
        });
        verifier.verified.insert(token, &who, exp);
        Ok(who)
    }

    /// Signs an access token for a built-in account. Returns it and its lifetime.
    pub fn issue(
        &self,
        user_id: &str,
        roles: &[String],
        extra: Map<String, Value>,
    ) -> Option<(String, u64)> {
        self.issue_for(user_id, roles, extra, None)
    }

    /// [`Auth::issue`] with a lifetime in seconds of the caller's choice (`None`:
    /// `auth.users.access_ttl`, else 900).
    pub fn issue_for(
        &self,
        user_id: &str,
        roles: &[String],
        extra: Map<String, Value>,
        ttl: Option<u64>,
    ) -> Option<(String, u64)> {
        let (key, settings) = self.signer.as_ref()?;
        let ttl = ttl.unwrap_or_else(|| self.users.as_ref().map(|u| u.access_ttl).unwrap_or(900));
        let now = chrono::Utc::now().timestamp();
        let mut claims = extra;
        claims.insert(settings.user_id_claim.clone(), json!(user_id));
        claims.insert(settings.roles_claim.clone(), json!(roles));
        claims.insert("iat".into(), json!(now));
        claims.insert("exp".into(), json!(now + ttl as i64));
        if let Some(iss) = &settings.issuer {
            claims.insert("iss".into(), json!(iss));
        }
        if let Some(aud) = &settings.audience {
            claims.insert("aud".into(), json!(aud));
        }
        let token = encode(&Header::new(Algorithm::HS256), &claims, key).ok()?;
        Some((token, ttl))
    }
}
