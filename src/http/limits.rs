//! Abuse limits (docs/limits.md): a token bucket per client address and per
//! principal for the whole API, signups per address, a process-wide cap on password
//! hashes at once, and caps on open event streams. The client address is the TCP
//! peer, or what a trusted proxy says in `Forwarded` / `X-Forwarded-For`.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::{AppState, Problem};
use crate::spec::settings::LimitSettings;

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// How often idle buckets are forgotten (a bucket that has filled up again is
/// the same as a new one, so forgetting it changes nothing).
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// How long a caller refused an event stream is asked to wait.
const STREAM_RETRY: Duration = Duration::from_secs(5);

/// The client of a request as the limits see it: the TCP peer, or the address a
/// trusted proxy forwarded. `None` for requests handed to the router in-process
/// (no connection: tests, embedding), which are not limited per address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub Option<IpAddr>);

impl ClientAddr {
    /// The key of per-address limits: IPv6 clients by their /64 (one host usually
    /// holds a whole /64), IPv4 by the address.
    pub fn key(&self) -> Option<IpAddr> {
        self.0.map(|ip| match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let bits = u128::from(v6) & (u128::MAX << 64);
                    IpAddr::V6(Ipv6Addr::from(bits))
                }
            },
            v4 => v4,
        })
    }

    /// As text, for the login limiter's keys (`local` without an address).
    pub fn text(&self) -> String {
        self.key()
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| "local".into())
    }
}

/// The limits of one server process, built from `limits` in trellis.yaml when the
/// state is made (a reload does not change them: restart to apply new ones).
pub struct Limits {
    pub settings: LimitSettings,
    by_address: Keyed<IpAddr>,
    by_principal: Keyed<Box<str>>,
    signups: Keyed<IpAddr>,
    /// Permits for argon2 hashes and verifications at once.
    pub hashes: Arc<tokio::sync::Semaphore>,
    streams: Mutex<StreamCounts>,
    /// Open connections per peer address (the accept loop, http/server.rs).
    connections: Mutex<HashMap<IpAddr, u32>>,
    /// `RateLimit-Policy`, the same on every answer.
    policy: HeaderValue,
    /// Milliseconds since `started` of the last sweep of idle buckets.
    swept: AtomicU64,
    started: Instant,
    /// Failed sign-ins (http/users.rs).
    pub login: LoginLimits,
    /// What the limits refused since the process started (`/metrics`).
    pub refused: Refusals,
}

/// Refusals by limit, counted for `/metrics` (failed sign-ins are counted by their
/// [`Limiter`]s).
#[derive(Debug, Default)]
pub struct Refusals {
    /// Requests over the rate (429).
    pub requests: AtomicU64,
    /// Signups over the per-address rate (429).
    pub signups: AtomicU64,
    /// Event streams over a cap (429, or 503 for the process's total).
    pub streams: AtomicU64,
    /// Connections closed at once: their address had too many open.
    pub connections: AtomicU64,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("settings", &self.settings)
            .finish()
    }
}

#[derive(Default)]
struct StreamCounts {
    total: u32,
    by_principal: HashMap<String, u32>,
    by_address: HashMap<IpAddr, u32>,
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

impl Limits {
    pub fn new(settings: &LimitSettings) -> Limits {
        let per_minute = nonzero(settings.requests_per_minute);
        let burst = nonzero(settings.requests_burst);
        let requests = Quota::per_minute(per_minute).allow_burst(burst);
        let signups = Quota::per_minute(nonzero(settings.signup_per_minute));
        // The draft's quota over a window: a full bucket, and the seconds it takes
        // to fill again from empty.
        let window = (u64::from(burst.get()) * 60)
            .div_ceil(u64::from(per_minute.get()))
            .max(1);
        let policy = HeaderValue::from_str(&format!("\"default\";q={burst};w={window}"))
            .unwrap_or_else(|_| HeaderValue::from_static("\"default\""));
        Limits {
            settings: settings.clone(),
            by_address: RateLimiter::dashmap(requests).with_middleware(),
            by_principal: RateLimiter::dashmap(requests).with_middleware(),
            signups: RateLimiter::dashmap(signups).with_middleware(),
            hashes: Arc::new(tokio::sync::Semaphore::new(
                settings.password_hashes.max(1) as usize
            )),
            streams: Mutex::new(StreamCounts::default()),
            connections: Mutex::new(HashMap::new()),
            policy,
            swept: AtomicU64::new(0),
            started: Instant::now(),
            login: LoginLimits::default(),
            refused: Refusals::default(),
        }
    }

    /// The client's address: the peer, unless the peer is a trusted proxy; then the
    /// nearest address in `Forwarded` (or, without it, `X-Forwarded-For`) that is
    /// not itself a trusted proxy, read from the right (the end the proxies append
    /// to; what a client wrote at the left cannot push it out).
    pub fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> ClientAddr {
        let Some(peer) = peer else {
            return ClientAddr(None);
        };
        let trusted = |ip: IpAddr| self.settings.trusted_proxies.iter().any(|r| r.contains(ip));
        if !trusted(peer) {
            return ClientAddr(Some(peer));
        }
        let chain = forwarded_chain(headers);
        let mut client = peer;
        for hop in chain.iter().rev() {
            match hop {
                Some(ip) => {
                    client = *ip;
                    if !trusted(*ip) {
                        break;
                    }
                }
                // `unknown`, an obfuscated name or garbage: the hop before it is
                // the last one known.
                None => break,
            }
        }
        ClientAddr(Some(client))
    }

    /// Takes one request from the caller's buckets (address and principal). `Ok`
    /// with the `RateLimit` header's value; `Err` with the time to wait.
    fn take(&self, addr: Option<IpAddr>, principal: Option<&str>) -> Result<HeaderValue, Duration> {
        self.sweep();
        let mut remaining = u32::MAX;
        if let Some(ip) = addr {
            match self.by_address.check_key(&ip) {
                Ok(snap) => remaining = remaining.min(snap.remaining_burst_capacity()),
                Err(not_until) => {
                    return Err(not_until.wait_time_from(self.by_address.clock().now()));
                }
            }
        }
        if let Some(id) = principal {
            let key: Box<str> = id.into();
            match self.by_principal.check_key(&key) {
                Ok(snap) => remaining = remaining.min(snap.remaining_burst_capacity()),
                Err(not_until) => {
                    return Err(not_until.wait_time_from(self.by_principal.clock().now()));
                }
            }
        }
        let burst = self.settings.requests_burst.max(1);
        let remaining = remaining.min(burst);
        let per_minute = u64::from(self.settings.requests_per_minute.max(1));
        let reset = (u64::from(burst - remaining) * 60).div_ceil(per_minute);
        Ok(
            HeaderValue::from_str(&format!("\"default\";r={remaining};t={reset}"))
                .unwrap_or_else(|_| HeaderValue::from_static("\"default\"")),
        )
    }

    /// Forgets buckets that have filled up again, at most every [`SWEEP_EVERY`], so
    /// that memory follows the callers of the last seconds, not of all time.
    fn sweep(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.swept.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SWEEP_EVERY.as_millis() as u64
            || self
                .swept
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.sweep_all();
    }

    /// Buckets held now (per address, per principal, signups): for tests.
    pub fn tracked(&self) -> usize {
        self.by_address.len() + self.by_principal.len() + self.signups.len()
    }

    /// Sweeps at once (tests; the server sweeps by itself every few seconds).
    pub fn sweep_now(&self) {
        self.sweep_all();
    }

    fn sweep_all(&self) {
        self.by_address.retain_recent();
        self.by_address.shrink_to_fit();
        self.by_principal.retain_recent();
        self.by_principal.shrink_to_fit();
        self.signups.retain_recent();
        self.signups.shrink_to_fit();
    }

    /// One signup from this address: `Err` with the time to wait.
    pub fn signup(&self, addr: ClientAddr) -> Result<(), Problem> {
        let Some(ip) = addr.key() else {
            return Ok(());
        };
        self.signups
            .check_key(&ip)
            .map(|_| ())
            .map_err(|not_until| {
                self.refused.signups.fetch_add(1, Ordering::Relaxed);
                let wait = not_until.wait_time_from(self.signups.clock().now());
                too_many(
                    wait,
                    format!(
                        "at most {} signups per minute come from one address; try again in {} s",
                        self.settings.signup_per_minute,
                        secs(wait)
                    ),
                )
            })
    }

    /// A place for one more event stream, held until the slot is dropped.
    pub fn open_stream(
        self: &Arc<Self>,
        principal: Option<&str>,
        addr: ClientAddr,
    ) -> Result<StreamSlot, Problem> {
        let mut counts = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let s = &self.settings;
        let refuse = |p: Problem| {
            self.refused.streams.fetch_add(1, Ordering::Relaxed);
            Err(p)
        };
        if counts.total >= s.streams_total {
            let mut p = Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too-many-streams",
                "Too many event streams",
                format!(
                    "this server has {} event streams open, its limit; try again in {} s",
                    counts.total,
                    STREAM_RETRY.as_secs()
                ),
            );
            p.retry_after(secs(STREAM_RETRY));
            return refuse(p);
        }
        if let Some(id) = principal
            && counts.by_principal.get(id).copied().unwrap_or(0) >= s.streams_per_principal
        {
            return refuse(too_many(
                STREAM_RETRY,
                format!(
                    "you have {} event streams open, the most one caller may; close one (one stream per collection is enough) and try again",
                    s.streams_per_principal
                ),
            ));
        }
        let ip = addr.key();
        if let Some(ip) = ip
            && counts.by_address.get(&ip).copied().unwrap_or(0) >= s.streams_per_address
        {
            return refuse(too_many(
                STREAM_RETRY,
                format!(
                    "{} event streams are open from your address, the most one address may; close one and try again",
                    s.streams_per_address
                ),
            ));
        }
        counts.total += 1;
        if let Some(id) = principal {
            *counts.by_principal.entry(id.to_string()).or_default() += 1;
        }
        if let Some(ip) = ip {
            *counts.by_address.entry(ip).or_default() += 1;
        }
        Ok(StreamSlot {
            limits: self.clone(),
            principal: principal.map(str::to_string),
            ip,
        })
    }

    /// A place for one more connection from `peer`, held until the slot is
    /// dropped; `None` when the address has `connections.per_address` open.
    /// Trusted proxies carry everybody's connections and are not counted.
    pub fn open_connection(self: &Arc<Self>, peer: IpAddr) -> Option<ConnectionSlot> {
        if self
            .settings
            .trusted_proxies
            .iter()
            .any(|r| r.contains(peer))
        {
            return Some(ConnectionSlot {
                limits: self.clone(),
                ip: None,
            });
        }
        let ip = ClientAddr(Some(peer)).key()?;
        let mut open = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_default();
        if *n >= self.settings.connections_per_address {
            self.refused.connections.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *n += 1;
        Some(ConnectionSlot {
            limits: self.clone(),
            ip: Some(ip),
        })
    }

    /// Event streams open now.
    pub fn open_streams(&self) -> u32 {
        self.streams.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

/// An open event stream's place in the counts; dropping it frees the place.
pub struct StreamSlot {
    limits: Arc<Limits>,
    principal: Option<String>,
    ip: Option<IpAddr>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut counts = self
            .limits
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(id) = &self.principal
            && let Some(n) = counts.by_principal.get_mut(id)
        {
            *n -= 1;
            if *n == 0 {
                counts.by_principal.remove(id);
            }
        }
        if let Some(ip) = &self.ip
            && let Some(n) = counts.by_address.get_mut(ip)
        {
            *n -= 1;
            if *n == 0 {
                counts.by_address.remove(ip);
            }
        }
    }
}

/// An open connection's place in the per-address counts.
pub struct ConnectionSlot {
    limits: Arc<Limits>,
    ip: Option<IpAddr>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let Some(ip) = self.ip else {
            return;
        };
        let mut open = self
            .limits
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&ip);
            }
        }
    }
}

/// Whole seconds to wait, at least 1.
fn secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0).max(u64::from(d.is_zero()))
}

/// A 429 problem with `Retry-After`.
pub fn too_many(wait: Duration, detail: impl Into<String>) -> Problem {
    let mut p = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
        "Too many requests",
        detail,
    );
    p.retry_after(secs(wait));
    p
}

/// The addresses in `Forwarded` (its `for=` parameters), or else in
/// `X-Forwarded-For`, in order; `None` for an entry that is not an address.
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<&str> = headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !forwarded.is_empty() {
        let mut out = Vec::new();
        for element in forwarded.iter().flat_map(|v| v.split(',')) {
            let value = element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then_some(v.trim())
            });
            if let Some(v) = value {
                out.push(parse_node(v.trim_matches('"')));
            }
        }
        return out;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| parse_node(s.trim()))
        .collect()
}

/// `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]:4711`, `2001:db8::1`.
fn parse_node(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sock) = text.parse::<SocketAddr>() {
        return Some(sock.ip());
    }
    let inner = text.strip_prefix('[')?.split(']').next()?;
    inner.parse().ok()
}

/// The layer that applies the request rate to every route but the probes
/// (`/_/live`, `/_/ready`, `/_/health`), and
/// puts the [`ClientAddr`] into the request for the handlers.
#[derive(Clone)]
pub(super) struct RateLimit(pub AppState);

impl super::layer::Around for RateLimit {
    fn around<S: super::layer::Inner>(
        &self,
        inner: &mut S,
        mut req: axum::extract::Request,
    ) -> super::ResponseFuture {
        let limits = &self.0.limits;
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let addr = limits.client(peer, req.headers());
        req.extensions_mut().insert(addr);
        // Health checks come from load balancers, often many at once; and requests
        // without a connection (in-process) have nobody to limit.
        if peer.is_none() || super::probes::is_probe(req.uri().path()) {
            return Box::pin(inner.call(req));
        }
        // The principal of a valid token (cached after its first use); a bad
        // token is answered 401 by the handler, limited by address meanwhile.
        let principal = if req
            .headers()
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            self.0
                .principal(req.headers())
                .ok()
                .and_then(|p| p.id.clone())
        } else {
            None
        };
        let policy = limits.policy.clone();
        match limits.take(addr.key(), principal.as_deref()) {
            Ok(current) => {
                let answer = inner.call(req);
                Box::pin(async move {
                    let mut res = answer.await?;
                    let h = res.headers_mut();
                    h.insert("ratelimit-policy", policy);
                    h.insert("ratelimit", current);
                    Ok(res)
                })
            }
            Err(wait) => {
                limits.refused.requests.fetch_add(1, Ordering::Relaxed);
                let s = &limits.settings;
                let rate = if s.requests_per_minute.is_multiple_of(60) {
                    format!("{} a second", s.requests_per_minute / 60)
                } else {
                    format!("{} a minute", s.requests_per_minute)
                };
                let mut res = too_many(
                    wait,
                    format!(
                        "too many requests: at most {rate} (bursts of {}) per caller and per address; try again in {} s",
                        s.requests_burst,
                        secs(wait)
                    ),
                )
                .into_response();
                let h = res.headers_mut();
                h.insert("ratelimit-policy", policy);
                if let Ok(v) = HeaderValue::from_str(&format!("\"default\";r=0;t={}", secs(wait))) {
                    h.insert("ratelimit", v);
                }
                Box::pin(async move { Ok(res) })
            }
        }
    }
}

/// What the deadline knows of a request's body: whether it has all arrived (at once
/// for requests without one), and when its last bytes came. The deadline uses it to
/// tell a client that was too slow to send its body (408) from a request the server
/// did not finish in time (503), and to let an upload run for as long as its bytes
/// keep coming.
pub(super) struct BodyWatch {
    start: Instant,
    done: AtomicBool,
    /// Milliseconds from `start` to the last frame (or the end) of the body.
    last: AtomicU64,
}

impl BodyWatch {
    pub(super) fn done(&self) -> bool {
        self.done.load(Ordering::Relaxed)
    }

    /// When the body last moved: its last frame, or its end.
    pub(super) fn last_progress(&self) -> Instant {
        self.start + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }

    fn moved(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

/// Wraps a request's body so that a [`BodyWatch`] follows it.
pub(super) fn watch_body(req: axum::extract::Request) -> (axum::extract::Request, Arc<BodyWatch>) {
    use axum::body::HttpBody;
    let watch = Arc::new(BodyWatch {
        start: Instant::now(),
        done: AtomicBool::new(req.body().is_end_stream()),
        last: AtomicU64::new(0),
    });
    if watch.done() {
        return (req, watch);
    }
    let w = watch.clone();
    let req = req.map(|inner| axum::body::Body::new(WatchedBody { inner, watch: w }));
    (req, watch)
}

struct WatchedBody {
    inner: axum::body::Body,
    watch: Arc<BodyWatch>,
}

impl axum::body::HttpBody for WatchedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_ready() {
            self.watch.moved();
            if matches!(&polled, std::task::Poll::Ready(None)) || self.inner.is_end_stream() {
                self.watch.done.store(true, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The answer to a request whose body had not arrived by the deadline.
pub(super) fn body_timeout(limit: Duration) -> Response {
    Problem::new(
        StatusCode::REQUEST_TIMEOUT,
        "body-timeout",
        "Request body too slow",
        format!(
            "the request body did not arrive within {} s; send it at once, then try again",
            limit.as_secs()
        ),
    )
    .into_response()
}

/// An upload cut off: no bytes for a whole deadline, or longer than
/// `files.upload_timeout` in all.
pub(super) fn upload_timeout(idle: Duration, most: Duration) -> Response {
    Problem::new(
        StatusCode::REQUEST_TIMEOUT,
        "body-timeout",
        "Request body too slow",
        format!(
            "the upload stopped: no bytes arrived for {} s, or it took more than {} s in all; try again",
            idle.as_secs(),
            most.as_secs()
        ),
    )
    .into_response()
}

/// Failed sign-ins per account and address pair, and per address (any account), in
/// a window. A slot is taken before the password is checked and given back when
/// it was right, so concurrent guesses count each, and successes count nothing.
pub(super) const PAIR_FAILURES: usize = 5;
pub(super) const ADDRESS_FAILURES: usize = 30;
const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Keys tracked at most (oldest forgotten first), so memory stays bounded.
const MAX_KEYS: usize = 100_000;

/// Counts events per key in a sliding window (per server instance).
#[derive(Debug, Default)]
pub struct Limiter {
    events: Mutex<HashMap<String, VecDeque<Instant>>>,
    /// Reservations refused since the process started (`/metrics`).
    refused: AtomicU64,
}

impl Limiter {
    /// Takes a slot for `key`, or `Err(retry_after)` when it already has `limit`
    /// events in the window. Checking and taking are one step, so concurrent
    /// callers cannot all pass the check before any of them counts.
    pub(super) fn reserve(&self, key: &str, limit: usize) -> Result<Instant, Duration> {
        let mut map = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some(q) = map.get_mut(key) {
            while q.front().is_some_and(|t| now.duration_since(*t) > WINDOW) {
                q.pop_front();
            }
            if q.len() >= limit {
                self.refused.fetch_add(1, Ordering::Relaxed);
                let oldest = q.front().copied().unwrap_or(now);
                return Err(WINDOW.saturating_sub(now.duration_since(oldest)));
            }
        }
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) <= WINDOW));
            if map.len() >= MAX_KEYS {
                map.clear();
            }
        }
        map.entry(key.to_string()).or_default().push_back(now);
        Ok(now)
    }

    /// Gives back a slot taken by [`Limiter::reserve`].
    pub(super) fn release(&self, key: &str, slot: Instant) {
        let mut map = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(q) = map.get_mut(key) {
            if let Some(i) = q.iter().rposition(|t| *t == slot) {
                q.remove(i);
            }
            if q.is_empty() {
                map.remove(key);
            }
        }
    }

    pub(super) fn clear(&self, key: &str) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// Failed sign-ins of one server instance (`POST /auth/login`, http/users.rs).
#[derive(Debug, Default)]
pub struct LoginLimits {
    /// By account and client address together: a stranger's guesses never lock
    /// the owner out from the owner's own address.
    pub(super) pairs: Limiter,
    /// By client address, whatever the account: one address guessing many accounts.
    pub(super) addresses: Limiter,
}

impl LoginLimits {
    /// Sign-ins refused for too many failures since the process started.
    pub fn refused(&self) -> u64 {
        self.pairs.refused.load(Ordering::Relaxed) + self.addresses.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::settings::IpRange;

    fn limits(trusted: &[&str]) -> Limits {
        let settings = LimitSettings {
            trusted_proxies: trusted.iter().filter_map(|t| IpRange::parse(t)).collect(),
            ..LimitSettings::default()
        };
        Limits::new(&settings)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let l = limits(&["10.0.0.0/8", "127.0.0.1"]);
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4")]);
        // An untrusted peer's header is ignored.
        assert_eq!(l.client(ip("203.0.113.9"), &spoofed).0, ip("203.0.113.9"));
        // A trusted peer: the rightmost untrusted address.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.2.3")]);
        assert_eq!(l.client(ip("10.0.0.1"), &h).0, ip("198.51.100.7"));
        // Forwarded wins over X-Forwarded-For; quoted IPv6 with a port.
        let h = headers(&[
            (
                "forwarded",
                "for=192.0.2.60;proto=http, for=\"[2001:db8:cafe::17]:4711\"",
            ),
            ("x-forwarded-for", "9.9.9.9"),
        ]);
        assert_eq!(l.client(ip("127.0.0.1"), &h).0, ip("2001:db8:cafe::17"));
        // Garbage stops the walk at the last known hop.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, unknown")]);
        assert_eq!(l.client(ip("10.0.0.1"), &h).0, ip("10.0.0.1"));
        // No header from a trusted proxy: the proxy itself.
        assert_eq!(
            l.client(ip("10.0.0.1"), &HeaderMap::new()).0,
            ip("10.0.0.1")
        );
        // No peer: no address.
        assert_eq!(l.client(None, &spoofed).0, None);
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let a = ClientAddr(ip("2001:db8:1:2:aaaa::1")).key();
        let b = ClientAddr(ip("2001:db8:1:2:bbbb::2")).key();
        assert_eq!(a, b);
        assert_eq!(
            ClientAddr(ip("::ffff:192.0.2.1")).key(),
            ip("192.0.2.1"),
            "IPv4-mapped addresses are IPv4"
        );
    }

    #[test]
    fn whole_seconds_round_up() {
        assert_eq!(secs(Duration::from_millis(1)), 1);
        assert_eq!(secs(Duration::from_millis(1500)), 2);
        assert_eq!(secs(Duration::from_secs(3)), 3);
        assert_eq!(secs(Duration::ZERO), 1);
    }
}
