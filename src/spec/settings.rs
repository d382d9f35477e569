//! `trellis.yaml`: project settings. Every key is optional.

use super::diag::{Sink, suggest};
use super::walk::{Named, get, map_with_keys, name_list, opt_string, whole_number};
use super::yaml::{Node, Pos, Value};

#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Shown as the API's title.
    pub name: Option<String>,
    pub description: Option<String>,
    /// As written: may contain `${VAR}`, expanded when the server starts.
    pub database_url: Option<String>,
    /// Browser origins allowed to call the API.
    pub cors_origins: Vec<String>,
    pub auth: AuthSettings,
    /// Webhook endpoints that workflow effects may call, by name.
    pub webhooks: Vec<WebhookDef>,
    /// `mode: production`: `serve` never changes the schema.
    pub production: bool,
    /// Abuse limits (`limits`): rates, concurrent password hashes, event streams.
    pub limits: LimitSettings,
    /// Where file fields keep their content (`files`), and the limits of uploads.
    pub files: FileSettings,
}

/// `files`: where uploaded files are stored and how long their links and pending
/// uploads live (docs/files.md).
#[derive(Debug, Clone, PartialEq)]
pub struct FileSettings {
    pub storage: FileStorage,
    /// The local folder (`storage: local`), relative to the project folder.
    pub dir: String,
    /// The bucket (`storage: s3`); present when `storage` is `s3`.
    pub s3: Option<S3Settings>,
    /// The largest upload in bytes; no file field's `max_size` may exceed it.
    pub max_upload: u64,
    /// Seconds a signed download link lasts.
    pub url_ttl: u64,
    /// Seconds after which an upload no record claimed is removed.
    pub pending_ttl: u64,
    /// Seconds an upload request may last in all (while its bytes keep coming; a
    /// pause longer than the request deadline cuts it). Less than `pending_ttl`.
    pub upload_timeout: u64,
    /// The environment variable holding the secret that signs download links;
    /// without it, the HS256 secret of `auth.jwt`.
    pub signing_secret_env: Option<String>,
}

impl Default for FileSettings {
    fn default() -> FileSettings {
        FileSettings {
            storage: FileStorage::Local,
            dir: DEFAULT_FILES_DIR.to_string(),
            s3: None,
            max_upload: GIB,
            url_ttl: 300,
            pending_ttl: 3600,
            upload_timeout: 1800,
            signing_secret_env: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStorage {
    Local,
    S3,
}

/// `files.s3`: an S3-compatible bucket. Credentials come from the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optional `AWS_SESSION_TOKEN`).
#[derive(Debug, Clone, PartialEq)]
pub struct S3Settings {
    pub bucket: String,
    pub region: String,
    /// Another S3-compatible server than AWS (`http://127.0.0.1:9000`).
    pub endpoint: Option<String>,
    /// Prepended to every key (`trellis/`), to share a bucket.
    pub prefix: Option<String>,
    /// Allow a plain-http `endpoint` (a local server).
    pub allow_http: bool,
}

/// The default `files.dir`.
pub const DEFAULT_FILES_DIR: &str = ".trellis/files";
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
/// `files.max_upload`: from 1 byte to this (64 GiB).
pub const MAX_UPLOAD_LIMIT: u64 = 64 * GIB;
/// `files.url_ttl`: seconds, from 1 to a day.
pub const MAX_URL_TTL: u64 = 86_400;
/// `files.pending_ttl`: seconds, from 1 to a week.
pub const MAX_PENDING_TTL: u64 = 7 * 86_400;

/// A size: a number of bytes, or a number with a unit: `B`, `KiB`, `MiB`, `GiB`,
/// `TiB` (powers of 1024) or `KB`, `MB`, `GB`, `TB` (powers of 1000), with an
/// optional space; a decimal fraction is allowed (`1.5GiB`, rounded to the byte).
/// The same syntax as a file field's `max_size`. `None` when the text is not such
/// a size or it overflows.
pub fn parse_byte_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let factor: u128 = match unit.trim_start() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (number.contains('.') && !digits(fraction)) {
        return None;
    }
    let whole: u128 = whole.parse().ok()?;
    let scale = 10u128.pow(fraction.len() as u32);
    let fraction: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().ok()?
    };
    let bytes = whole * factor + (fraction * factor + scale / 2) / scale;
    u64::try_from(bytes).ok()
}

/// A size (see [`parse_byte_size`]) from 1 to `max` bytes, or an error with a hint.
pub fn byte_size(sink: &mut Sink<'_>, node: &Node, what: &str, max: u64) -> Option<u64> {
    let value = match &node.value {
        Value::Str(s) => parse_byte_size(s),
        _ => whole_number(sink, node, what).and_then(|v| u64::try_from(v).ok()),
    };
    match value {
        Some(v) if (1..=max).contains(&v) => Some(v),
        Some(v) => {
            sink.error_hint(
                node.pos,
                "out-of-range",
                format!("{what} must be from 1 byte to {max} bytes, not {v}"),
                "write a size like `25MiB` or `1GiB`",
            );
            None
        }
        None => {
            sink.error_hint(
                node.pos,
                "invalid-size",
                format!("{what} is not a size"),
                "write a number of bytes, or one with a unit: B, KiB, MiB, GiB, TiB (1024-based) or KB, MB, GB, TB (1000-based), e.g. `25MiB`",
            );
            None
        }
    }
}

/// `limits`: what one caller may use of the server (docs/limits.md).
#[derive(Debug, Clone, PartialEq)]
pub struct LimitSettings {
    /// Requests per minute per principal and per client address (token bucket);
    /// written as `per_second` or `per_minute`.
    pub requests_per_minute: u32,
    /// Requests a caller may make at once before the rate applies.
    pub requests_burst: u32,
    /// Peers whose `X-Forwarded-For` / `Forwarded` headers name the client.
    pub trusted_proxies: Vec<IpRange>,
    /// Signups per client address per minute.
    pub signup_per_minute: u32,
    /// Password hashes computed at once in this process (argon2 uses ~19 MiB each).
    pub password_hashes: u32,
    /// Event streams open at once per principal, per client address, in total.
    pub streams_per_principal: u32,
    pub streams_per_address: u32,
    pub streams_total: u32,
    /// Connections open at once per client address (trusted proxies exempt).
    pub connections_per_address: u32,
}

impl Default for LimitSettings {
    fn default() -> LimitSettings {
        LimitSettings {
            requests_per_minute: 200 * 60,
            requests_burst: 400,
            trusted_proxies: Vec::new(),
            signup_per_minute: 10,
            password_hashes: 4,
            streams_per_principal: 10,
            streams_per_address: 30,
            streams_total: 1000,
            connections_per_address: 256,
        }
    }
}

/// An address or a CIDR block (`10.0.0.0/8`, `::1`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl IpRange {
    /// `None` unless `text` is an IP address, optionally with `/prefix`.
    pub fn parse(text: &str) -> Option<IpRange> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: std::net::IpAddr = addr.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
        };
        Some(IpRange { addr, prefix })
    }

    /// Whether `ip` is in this range (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// `webhooks.<name>`: where an `after_commit` effect posts to.
#[derive(Debug, Clone)]
pub struct WebhookDef {
    pub name: Named,
    pub url: String,
    /// The environment variable holding the HMAC-SHA256 signing secret.
    pub secret_env: Option<String>,
    /// Extra headers; values may contain `${VAR}`, read from the environment at delivery.
    pub headers: Vec<(String, String)>,
    /// Seconds before one delivery attempt is abandoned.
    pub timeout_secs: u64,
}

/// How callers prove who they are.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    pub jwt: Option<JwtSettings>,
    pub users: Option<UsersSettings>,
    /// Claims besides `id` and `roles` that conditions may use as `user.<claim>`.
    pub claims: Vec<String>,
    /// `open_without_policies: true`: with authentication configured and no policy
    /// files, serve an open API on purpose (otherwise `check` refuses it).
    pub open_without_policies: bool,
}

impl AuthSettings {
    /// Callers prove who they are (JWTs or built-in accounts).
    pub fn configured(&self) -> bool {
        self.jwt.is_some() || self.users.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    Hs256,
    Rs256,
    Es256,
}

#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub algorithm: JwtAlgorithm,
    /// The environment variable holding the HS256 secret.
    pub secret_env: Option<String>,
    /// A PEM public key (RS256, ES256), relative to the project folder.
    pub public_key_file: Option<String>,
    /// A JWKS file (RS256, ES256): the token's `kid` picks the key.
    pub jwks_file: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Seconds of clock skew tolerated for `exp` and `nbf`.
    pub leeway: u64,
    pub user_id_claim: String,
    pub roles_claim: String,
    pub pos: Pos,
}

/// Built-in accounts on an entity of the model.
#[derive(Debug, Clone)]
pub struct UsersSettings {
    pub entity: Named,
    /// A field of that entity whose value is the user's role.
    pub role_field: Option<Named>,
    /// Lifetime of access tokens, in seconds.
    pub access_ttl: u64,
    pub pos: Pos,
}

/// The largest value of a limit under `limits` (except `password_hashes`).
pub const LIMIT_MAX: u64 = 1_000_000;
/// `auth.jwt.leeway`: seconds, from 0 to this.
pub const MAX_LEEWAY: u64 = 3600;
/// `auth.users.access_ttl`: seconds, from [`MIN_ACCESS_TTL`] to [`MAX_ACCESS_TTL`].
pub const MIN_ACCESS_TTL: u64 = 30;
pub const MAX_ACCESS_TTL: u64 = 86_400;
/// `webhooks.<name>.timeout`: seconds, from 1 to this.
pub const MAX_WEBHOOK_TIMEOUT: u64 = 120;

/// A whole number from `min` to `max`, or an error with the range and `hint`.
fn in_range(
    sink: &mut Sink<'_>,
    node: &Node,
    what: &str,
    (min, max): (u64, u64),
    hint: &str,
) -> Option<u64> {
    let v = whole_number(sink, node, what)?;
    match u64::try_from(v) {
        Ok(v) if (min..=max).contains(&v) => Some(v),
        _ => {
            sink.error_hint(
                node.pos,
                "out-of-range",
                format!("{what} must be from {min} to {max}, not {v}"),
                hint,
            );
            None
        }
    }
}

pub const SETTINGS_KEYS: [&str; 9] = [
    "name",
    "description",
    "database",
    "cors",
    "auth",
    "webhooks",
    "mode",
    "limits",
    "files",
];
const FILES_KEYS: [&str; 8] = [
    "storage",
    "dir",
    "s3",
    "max_upload",
    "url_ttl",
    "pending_ttl",
    "upload_timeout",
    "signing_secret_env",
];
const S3_KEYS: [&str; 5] = ["bucket", "region", "endpoint", "prefix", "allow_http"];
const LIMITS_KEYS: [&str; 6] = [
    "requests",
    "trusted_proxies",
    "signup",
    "password_hashes",
    "streams",
    "connections",
];
const WEBHOOK_KEYS: [&str; 4] = ["url", "secret_env", "headers", "timeout"];
const AUTH_KEYS: [&str; 4] = ["jwt", "users", "claims", "open_without_policies"];
const JWT_KEYS: [&str; 9] = [
    "algorithm",
    "secret_env",
    "public_key_file",
    "issuer",
    "audience",
    "leeway",
    "user_id_claim",
    "roles_claim",
    "jwks_file",
];
const USERS_KEYS: [&str; 3] = ["entity", "role_field", "access_ttl"];

pub fn parse_settings(sink: &mut Sink<'_>, root: &Node) -> Settings {
    let mut settings = Settings::default();
    if matches!(root.value, Value::Null) {
        return settings;
    }
    let Some(map) = map_with_keys(sink, root, "trellis.yaml", &SETTINGS_KEYS) else {
        return settings;
    };
    settings.name = opt_string(sink, map, "name", "`name`").map(|n| n.name);
    settings.description = opt_string(sink, map, "description", "`description`").map(|n| n.name);
    if let Some(db) = get(map, "database")
        && let Some(db_map) = map_with_keys(sink, db, "`database`", &["url"])
    {
        settings.database_url = opt_string(sink, db_map, "url", "`database.url`").map(|n| n.name);
    }
    if let Some(cors) = get(map, "cors")
        && let Some(cors_map) = map_with_keys(sink, cors, "`cors`", &["origins"])
        && let Some(origins) = get(cors_map, "origins")
    {
        for origin in name_list(sink, origins, "`cors.origins`") {
            let host = origin
                .name
                .strip_prefix("http://")
                .or_else(|| origin.name.strip_prefix("https://"));
            let ok = origin.name == "*" || host.is_some_and(|h| !h.is_empty() && !h.contains('/'));
            if ok {
                settings.cors_origins.push(origin.name);
            } else {
                sink.error_hint(
                    origin.pos,
                    "invalid-origin",
                    format!("`{}` is not a browser origin", origin.name),
                    "write it like `http://localhost:5173` (scheme, host, optional port, no path)",
                );
            }
        }
    }
    if let Some(auth) = get(map, "auth")
        && let Some(am) = map_with_keys(sink, auth, "`auth`", &AUTH_KEYS)
    {
        settings.auth = parse_auth(sink, am);
    }
    if let Some(mode) = opt_string(sink, map, "mode", "`mode`") {
        match mode.name.as_str() {
            "development" => {}
            "production" => settings.production = true,
            other => sink.error_hint(
                mode.pos,
                "unknown-value",
                format!("`{other}` is not a mode"),
                suggest(other, &["development", "production"]),
            ),
        }
    }
    if let Some(hooks) = get(map, "webhooks") {
        settings.webhooks = parse_webhooks(sink, hooks);
    }
    if let Some(limits) = get(map, "limits")
        && let Some(lm) = map_with_keys(sink, limits, "`limits`", &LIMITS_KEYS)
    {
        settings.limits = parse_limits(sink, lm);
    }
    if let Some(files) = get(map, "files")
        && let Some(fm) = map_with_keys(sink, files, "`files`", &FILES_KEYS)
    {
        settings.files = parse_files(sink, files, fm);
    }
    settings
}

fn parse_files(sink: &mut Sink<'_>, node: &Node, fm: &[(super::yaml::Key, Node)]) -> FileSettings {
    let mut out = FileSettings::default();
    if let Some(storage) = opt_string(sink, fm, "storage", "`files.storage`") {
        match storage.name.as_str() {
            "local" => out.storage = FileStorage::Local,
            "s3" => out.storage = FileStorage::S3,
            other => sink.error_hint(
                storage.pos,
                "unknown-value",
                format!("`{other}` is not a file storage"),
                suggest(other, &["local", "s3"]),
            ),
        }
    }
    if let Some(dir) = opt_string(sink, fm, "dir", "`files.dir`") {
        if dir.name.trim().is_empty() {
            sink.error_hint(
                dir.pos,
                "invalid-value",
                "`files.dir` is empty",
                "leave it out for `.trellis/files`, or name a folder",
            );
        } else {
            out.dir = dir.name;
        }
    }
    if let Some(s3) = get(fm, "s3")
        && let Some(sm) = map_with_keys(sink, s3, "`files.s3`", &S3_KEYS)
    {
        let bucket = opt_string(sink, sm, "bucket", "`files.s3.bucket`");
        if bucket.is_none() && get(sm, "bucket").is_none() {
            sink.error_hint(
                s3.pos,
                "missing-key",
                "`files.s3` needs `bucket`",
                "add e.g. `bucket: my-app-files`",
            );
        }
        let endpoint = opt_string(sink, sm, "endpoint", "`files.s3.endpoint`");
        let allow_http = super::walk::bool_key(sink, sm, "allow_http");
        if let Some(e) = &endpoint {
            let http = e.name.starts_with("http://");
            if !(http || e.name.starts_with("https://")) || e.name.contains(char::is_whitespace) {
                sink.error_hint(
                    e.pos,
                    "invalid-url",
                    format!("`{}` is not an http or https address", e.name),
                    "write it like `https://s3.example.com` or `http://127.0.0.1:9000`",
                );
            } else if http && !allow_http {
                sink.error_hint(
                    e.pos,
                    "insecure-endpoint",
                    format!("`{}` is plain http", e.name),
                    "use https, or add `allow_http: true` for a server on this machine or a private network",
                );
            }
        }
        let prefix = opt_string(sink, sm, "prefix", "`files.s3.prefix`").map(|p| p.name);
        if let Some(p) = &prefix
            && (p.starts_with('/') || p.split('/').any(|part| part == ".." || part == "."))
        {
            sink.error_hint(
                key_pos_or(sm, "prefix", s3.pos),
                "invalid-value",
                format!("`{p}` is not a key prefix"),
                "write a relative prefix like `trellis/` (no leading `/`, no `.` or `..`)",
            );
        }
        if let Some(bucket) = bucket {
            out.s3 = Some(S3Settings {
                bucket: bucket.name,
                region: opt_string(sink, sm, "region", "`files.s3.region`")
                    .map(|r| r.name)
                    .unwrap_or_else(|| "us-east-1".to_string()),
                endpoint: endpoint.map(|e| e.name),
                prefix: prefix
                    .map(|p| p.trim_end_matches('/').to_string())
                    .filter(|p| !p.is_empty()),
                allow_http,
            });
        }
    }
    if out.storage == FileStorage::S3 && out.s3.is_none() && get(fm, "s3").is_none() {
        sink.error_hint(
            get(fm, "storage").map_or(node.pos, |n| n.pos),
            "missing-key",
            "`files.storage: s3` needs `files.s3` with the bucket",
            "add e.g. `s3: { bucket: my-app-files, region: eu-west-1 }`",
        );
    }
    if let Some(n) = get(fm, "max_upload") {
        out.max_upload =
            byte_size(sink, n, "`files.max_upload`", MAX_UPLOAD_LIMIT).unwrap_or(out.max_upload);
    }
    if let Some(n) = get(fm, "url_ttl") {
        out.url_ttl = in_range(
            sink,
            n,
            "`files.url_ttl` (seconds)",
            (1, MAX_URL_TTL),
            "leave it out for 300 seconds; a signed link should be short-lived",
        )
        .unwrap_or(out.url_ttl);
    }
    if let Some(n) = get(fm, "pending_ttl") {
        out.pending_ttl = in_range(
            sink,
            n,
            "`files.pending_ttl` (seconds)",
            (1, MAX_PENDING_TTL),
            "leave it out for 3600 seconds; it must be longer than the slowest upload",
        )
        .unwrap_or(out.pending_ttl);
    }
    if let Some(n) = get(fm, "upload_timeout") {
        out.upload_timeout = in_range(
            sink,
            n,
            "`files.upload_timeout` (seconds)",
            (1, MAX_URL_TTL),
            "leave it out for 1800 seconds (half an hour)",
        )
        .unwrap_or(out.upload_timeout);
        if out.upload_timeout >= out.pending_ttl {
            sink.error_hint(
                n.pos,
                "out-of-range",
                format!(
                    "`files.upload_timeout` ({} s) must be less than `files.pending_ttl` ({} s)",
                    out.upload_timeout, out.pending_ttl
                ),
                "an upload still running when its pending time ends would lose its file; raise `pending_ttl` or lower `upload_timeout`",
            );
        }
    } else {
        // Left out: half an hour, or half of a shorter `pending_ttl`.
        out.upload_timeout = out.upload_timeout.min((out.pending_ttl / 2).max(1));
    }
    out.signing_secret_env =
        opt_string(sink, fm, "signing_secret_env", "`files.signing_secret_env`").map(|n| n.name);
    out
}

fn key_pos_or(map: &[(super::yaml::Key, Node)], key: &str, or: Pos) -> Pos {
    super::walk::key_pos(map, key).unwrap_or(or)
}

/// A whole number from 1 to `max`, or an error naming the key.
fn positive(sink: &mut Sink<'_>, node: &Node, what: &str, max: u32) -> Option<u32> {
    let v = whole_number(sink, node, what)?;
    if v < 1 || v > i64::from(max) {
        sink.error_hint(
            node.pos,
            "out-of-range",
            format!("{what} must be from 1 to {max}, not {v}"),
            "limits cannot be turned off; set a large value to make one generous",
        );
        return None;
    }
    Some(v as u32)
}

fn parse_limits(sink: &mut Sink<'_>, lm: &[(super::yaml::Key, Node)]) -> LimitSettings {
    let mut out = LimitSettings::default();
    const MAX: u32 = LIMIT_MAX as u32;
    if let Some(req) = get(lm, "requests")
        && let Some(rm) = map_with_keys(
            sink,
            req,
            "`limits.requests`",
            &["per_second", "per_minute", "burst"],
        )
    {
        match (get(rm, "per_second"), get(rm, "per_minute")) {
            (Some(_), Some(n)) => sink.error_hint(
                n.pos,
                "conflicting-keys",
                "`limits.requests` takes `per_second` or `per_minute`, not both",
                "keep one of them",
            ),
            (Some(n), None) => {
                if let Some(v) = positive(sink, n, "`limits.requests.per_second`", MAX) {
                    out.requests_per_minute = v.saturating_mul(60);
                }
            }
            (None, Some(n)) => {
                if let Some(v) = positive(sink, n, "`limits.requests.per_minute`", MAX) {
                    out.requests_per_minute = v;
                }
            }
            (None, None) => {}
        }
        match get(rm, "burst") {
            Some(n) => {
                out.requests_burst =
                    positive(sink, n, "`limits.requests.burst`", MAX).unwrap_or(out.requests_burst)
            }
            // Without a burst: two seconds' worth, at least one request.
            None => out.requests_burst = (out.requests_per_minute / 30).clamp(1, MAX),
        }
    }
    if let Some(tp) = get(lm, "trusted_proxies") {
        for entry in name_list(sink, tp, "`limits.trusted_proxies`") {
            match IpRange::parse(&entry.name) {
                Some(range) => out.trusted_proxies.push(range),
                None => sink.error_hint(
                    entry.pos,
                    "invalid-address",
                    format!("`{}` is not an IP address or CIDR block", entry.name),
                    "write an address like `127.0.0.1` or `::1`, or a block like `10.0.0.0/8`",
                ),
            }
        }
    }
    if let Some(signup) = get(lm, "signup")
        && let Some(sm) = map_with_keys(sink, signup, "`limits.signup`", &["per_minute"])
        && let Some(n) = get(sm, "per_minute")
    {
        out.signup_per_minute =
            positive(sink, n, "`limits.signup.per_minute`", MAX).unwrap_or(out.signup_per_minute);
    }
    if let Some(c) = get(lm, "connections")
        && let Some(cm) = map_with_keys(sink, c, "`limits.connections`", &["per_address"])
        && let Some(n) = get(cm, "per_address")
    {
        out.connections_per_address = positive(sink, n, "`limits.connections.per_address`", MAX)
            .unwrap_or(out.connections_per_address);
    }
    if let Some(n) = get(lm, "password_hashes") {
        out.password_hashes =
            positive(sink, n, "`limits.password_hashes`", 1024).unwrap_or(out.password_hashes);
    }
    if let Some(streams) = get(lm, "streams")
        && let Some(sm) = map_with_keys(
            sink,
            streams,
            "`limits.streams`",
            &["per_principal", "per_address", "total"],
        )
    {
        if let Some(n) = get(sm, "per_principal") {
            out.streams_per_principal = positive(sink, n, "`limits.streams.per_principal`", MAX)
                .unwrap_or(out.streams_per_principal);
        }
        if let Some(n) = get(sm, "per_address") {
            out.streams_per_address = positive(sink, n, "`limits.streams.per_address`", MAX)
                .unwrap_or(out.streams_per_address);
        }
        if let Some(n) = get(sm, "total") {
            out.streams_total =
                positive(sink, n, "`limits.streams.total`", MAX).unwrap_or(out.streams_total);
        }
    }
    out
}

fn parse_webhooks(sink: &mut Sink<'_>, node: &Node) -> Vec<WebhookDef> {
    let Some(entries) = node.as_map() else {
        sink.error_hint(
            node.pos,
            "wrong-value-type",
            "`webhooks` must be a mapping of endpoint names to their settings",
            "write e.g. `webhooks: { crm: { url: \"https://crm.example.com/hook\", secret_env: CRM_SECRET } }`",
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, value) in entries {
        let name = Named {
            name: key.name.clone(),
            pos: key.pos,
        };
        super::walk::check_identifier(sink, &name, "webhook endpoint");
        let Some(wm) = map_with_keys(sink, value, "a webhook endpoint", &WEBHOOK_KEYS) else {
            continue;
        };
        let Some(url) = opt_string(sink, wm, "url", "`url`") else {
            if get(wm, "url").is_none() {
                sink.error_hint(
                    value.pos,
                    "missing-key",
                    format!("the webhook endpoint `{}` has no `url`", name.name),
                    "add e.g. `url: \"https://example.com/hooks/trellis\"`",
                );
            }
            continue;
        };
        if !(url.name.starts_with("http://")
            || url.name.starts_with("https://")
            || url.name.starts_with("${"))
            || url.name.contains(char::is_whitespace)
        {
            sink.error_hint(
                url.pos,
                "invalid-url",
                format!("`{}` is not an http or https address", url.name),
                "write it like `https://example.com/hooks/trellis`, or `${HOOK_URL}` to read it from the environment",
            );
            continue;
        }
        let secret_env = opt_string(sink, wm, "secret_env", "`secret_env`").map(|n| n.name);
        let mut headers = Vec::new();
        if let Some(h) = get(wm, "headers") {
            match h.as_map() {
                Some(hm) => {
                    for (hk, hv) in hm {
                        let valid_name = !hk.name.is_empty()
                            && hk.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                        if !valid_name {
                            sink.error(
                                hk.pos,
                                "invalid-header",
                                format!("`{}` is not a valid header name", hk.name),
                            );
                            continue;
                        }
                        if let Some(v) = super::walk::string(sink, hv, "a header value") {
                            headers.push((hk.name.clone(), v.name));
                        }
                    }
                }
                None => sink.error_hint(
                    h.pos,
                    "wrong-value-type",
                    "`headers` must be a mapping of header names to values",
                    "write e.g. `headers: { Authorization: \"Bearer ${CRM_TOKEN}\" }` (secrets come from the environment)",
                ),
            }
        }
        let timeout_secs = get(wm, "timeout")
            .and_then(|n| {
                in_range(
                    sink,
                    n,
                    "`timeout` (seconds)",
                    (1, MAX_WEBHOOK_TIMEOUT),
                    "leave it out for 10 seconds; a slow receiver should answer at once and work later",
                )
            })
            .unwrap_or(10);
        out.push(WebhookDef {
            name,
            url: url.name,
            secret_env,
            headers,
            timeout_secs,
        });
    }
    out
}

fn parse_auth(sink: &mut Sink<'_>, am: &[(super::yaml::Key, Node)]) -> AuthSettings {
    let mut auth = AuthSettings {
        open_without_policies: super::walk::bool_key(sink, am, "open_without_policies"),
        ..AuthSettings::default()
    };
    if let Some(c) = get(am, "claims") {
        auth.claims = name_list(sink, c, "`auth.claims`")
            .into_iter()
            .map(|n| n.name)
            .collect();
    }
    if let Some(jwt) = get(am, "jwt")
        && let Some(jm) = map_with_keys(sink, jwt, "`auth.jwt`", &JWT_KEYS)
    {
        let algorithm = match opt_string(sink, jm, "algorithm", "`algorithm`") {
            None => JwtAlgorithm::Hs256,
            Some(a) => match a.name.as_str() {
                "HS256" => JwtAlgorithm::Hs256,
                "RS256" => JwtAlgorithm::Rs256,
                "ES256" => JwtAlgorithm::Es256,
                other => {
                    sink.error_hint(
                        a.pos,
                        "unknown-value",
                        format!("`{other}` is not a supported algorithm"),
                        suggest(other, &["HS256", "RS256", "ES256"]),
                    );
                    JwtAlgorithm::Hs256
                }
            },
        };

        let secret_env = opt_string(sink, jm, "secret_env", "`secret_env`").map(|n| n.name);
        let public_key_file =
            opt_string(sink, jm, "public_key_file", "`public_key_file`").map(|n| n.name);
        let jwks_file = opt_string(sink, jm, "jwks_file", "`jwks_file`").map(|n| n.name);
        match algorithm {
            JwtAlgorithm::Hs256 if secret_env.is_none() => sink.error_hint(
                jwt.pos,
                "missing-key",
                "HS256 needs `secret_env`: the environment variable that holds the secret",
                "add e.g. `secret_env: TRELLIS_JWT_SECRET` (secrets never go in files)",
            ),
            JwtAlgorithm::Rs256 | JwtAlgorithm::Es256
                if public_key_file.is_none() && jwks_file.is_none() =>
            {
                sink.error_hint(
                    jwt.pos,
                    "missing-key",
                    "RS256 and ES256 need `public_key_file` (a PEM public key) or `jwks_file`",
                    "add e.g. `public_key_file: keys/auth.pub.pem`",
                )
            }
            _ => {}
        }
        let leeway = get(jm, "leeway")
            .and_then(|n| {
                in_range(
                    sink,
                    n,
                    "`leeway` (seconds)",
                    (0, MAX_LEEWAY),
                    "leave it out for 30 seconds of tolerated clock difference",
                )
            })
            .unwrap_or(30);
        auth.jwt = Some(JwtSettings {
            algorithm,
            secret_env,
            public_key_file,
            jwks_file,
            issuer: opt_string(sink, jm, "issuer", "`issuer`").map(|n| n.name),
            audience: opt_string(sink, jm, "audience", "`audience`").map(|n| n.name),
            leeway,
            user_id_claim: opt_string(sink, jm, "user_id_claim", "`user_id_claim`")
                .map(|n| n.name)
                .unwrap_or_else(|| "sub".to_string()),
            roles_claim: opt_string(sink, jm, "roles_claim", "`roles_claim`")
                .map(|n| n.name)
                .unwrap_or_else(|| "roles".to_string()),
            pos: jwt.pos,
        });
    }
    if let Some(users) = get(am, "users")
        && let Some(um) = map_with_keys(sink, users, "`auth.users`", &USERS_KEYS)
    {
        match get(um, "entity").and_then(|n| super::walk::string(sink, n, "`entity`")) {
            Some(entity) => {
                let access_ttl = get(um, "access_ttl")
                    .and_then(|n| {
                        in_range(
                            sink,
                            n,
                            "`access_ttl` (seconds)",
                            (MIN_ACCESS_TTL, MAX_ACCESS_TTL),
                            "write e.g. `access_ttl: 900` (15 minutes, the default); a login gives a new token",
                        )
                    })
                    .unwrap_or(900);
                auth.users = Some(UsersSettings {
                    entity,
                    role_field: opt_string(sink, um, "role_field", "`role_field`"),
                    access_ttl,
                    pos: users.pos,
                });
                if !auth
                    .jwt
                    .as_ref()
                    .is_some_and(|j| j.algorithm == JwtAlgorithm::Hs256)
                {
                    sink.error_hint(
                        users.pos,
                        "users-need-hs256",
                        "built-in users need `auth.jwt` with `algorithm: HS256`: Trellis signs their tokens with that secret",
                        "add `jwt: { algorithm: HS256, secret_env: TRELLIS_JWT_SECRET }` under `auth`",
                    );
                }
            }
            None => sink.error_hint(
                users.pos,
                "missing-key",
                "`auth.users` needs `entity`: the entity whose records are the accounts",
                "add e.g. `entity: user` (it needs an `email` field)",
            ),
        }
    }
    auth
}
