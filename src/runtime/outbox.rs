//! Webhook delivery from the outbox. A transition writes its deliveries to the
//! `_trellis_outbox` table in its own transaction, so nothing is sent before the commit
//! and nothing committed is lost; this sender, one per process, takes due rows under a
//! lease, posts them, and records the outcome. A delivery that fails is retried with
//! exponential backoff; one that still fails after [`MAX_ATTEMPTS`] is marked failed.
//!
//! Delivery is at least once: a process killed after posting but before recording the
//! success posts again when the lease runs out. Receivers deduplicate on the
//! `X-Trellis-Delivery` header.
//!
//! Every request is signed when the endpoint has a `secret_env`:
//! `X-Trellis-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::watch;

use super::Runtime;
use super::env::{Env, ExpandError};
use crate::engine::Engine;
use crate::spec::settings::WebhookDef;
use crate::store::{Delivery, Store};

/// Attempts before a delivery is given up.
pub const MAX_ATTEMPTS: i64 = 12;
/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How often the sender looks for due deliveries when nothing wakes it.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Deliveries taken at once.
const BATCH: i64 = 16;

/// The wait after the `attempts`-th failure: 1 s, 2 s, 4 s, … up to an hour.
pub fn backoff(attempts: i64) -> Duration {
    let secs = 1u64 << attempts.clamp(0, 12);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

/// The signature header's value for `body` at `t` (seconds since 1970).
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(format!("{t}.").as_bytes());
    mac.update(body.as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// `${VAR}` in an endpoint's URL or header replaced from the environment.
fn expand(env: &Env, text: &str) -> Result<String, String> {
    env.expand(text).map_err(|err| match err {
        ExpandError::Unclosed => format!("`{text}` has a `${{` without its `}}`"),
        ExpandError::Unset(name) => format!("the environment variable {name} is not set"),
    })
}

/// What the sender of this process did since it started, for `/metrics` (the
/// outbox table holds the durable counts).
#[derive(Debug, Default)]
pub struct Stats {
    /// Deliveries posted and acknowledged with a 2xx.
    pub delivered: AtomicU64,
    /// Attempts that failed (each retried later, or given up).
    pub failed_attempts: AtomicU64,
    /// Deliveries marked failed after [`MAX_ATTEMPTS`].
    pub given_up: AtomicU64,
}

/// The running sender: [`Sender::finish`] delivers what is due and stops it.
pub struct Sender {
    finish: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sender {
    /// The end of a drain: deliver every delivery that is due now (what the
    /// finished requests committed included), then stop, waiting at most
    /// `within`. `false` when it had to stop before: what it had not delivered
    /// stays in the outbox (a delivery taken under a lease becomes due again when
    /// the lease runs out) for the next process, at least once as always.
    pub async fn finish(self, within: Duration) -> bool {
        self.finish.send_replace(true);
        let mut task = self.task;
        match tokio::time::timeout(within, &mut task).await {
            Ok(_) => true,
            Err(_) => {
                task.abort();
                false
            }
        }
    }
}

/// Starts the sender of this process. It runs until [`Sender::finish`]. `env`
/// gives `${VAR}` in endpoints and the signing secrets (`secret_env`); what it
/// does is counted in `runtime.outbox`.
pub fn spawn(runtime: &Runtime, env: Env) -> Option<Sender> {
    // reqwest is built without a default TLS provider; this process uses ring's.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest::Client::builder()
        .user_agent(concat!("trellis/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(err) => {
            tracing::error!(%err, "webhooks: cannot build the HTTP client; deliveries wait in the outbox");
            return None;
        }
    };
    let (finish, mut finishing) = watch::channel(false);
    let store = runtime.store.clone();
    let engine = runtime.engine.clone();
    let stats = runtime.outbox.clone();
    let task = tokio::spawn(async move {
        loop {
            // Read before claiming: a claim that comes back empty after the finish
            // was asked for has seen every commit of the drained requests.
            let last_round = *finishing.borrow_and_update();
            match store.claim_deliveries(BATCH, lease_ms(&engine)).await {
                Ok(batch) if !batch.is_empty() => {
                    for d in batch {
                        deliver(&store, &client, &engine, &env, &stats, d).await;
                    }
                    continue;
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(%err, "webhooks: cannot read the outbox"),
            }
            if last_round {
                tracing::info!("webhooks: nothing more is due; the sender stops");
                return;
            }
            tokio::select! {
                () = store.outbox_woken(POLL_INTERVAL) => {}
                _ = finishing.changed() => {}
            }
        }
    });
    Some(Sender { finish, task })
}

/// Long enough for the slowest endpoint's timeout, so a delivery in progress is not
/// taken by another instance.
fn lease_ms(engine: &ArcSwap<Engine>) -> i64 {
    let longest = engine
        .load()
        .webhooks
        .iter()
        .map(|w| w.timeout_secs)
        .max()
        .unwrap_or(10);
    (longest as i64 + 30) * 1000
}

async fn deliver(
    store: &Store,
    client: &reqwest::Client,
    engine: &ArcSwap<Engine>,
    env: &Env,
    stats: &Stats,
    d: Delivery,
) {
    let endpoint = engine
        .load()
        .webhooks
        .iter()
        .find(|w| w.name.name == d.endpoint)
        .cloned();
    let outcome = match endpoint {
        None => Err(format!(
            "there is no webhook endpoint `{}` in trellis.yaml any more",
            d.endpoint
        )),
        Some(w) => post(client, env, &w, &d).await,
    };
    let recorded = match outcome {
        Ok(()) => {
            stats.delivered.fetch_add(1, Ordering::Relaxed);
            tracing::info!(delivery = %d.id, event = %d.event, endpoint = %d.endpoint, "webhook delivered");
            store.delivered(&d.id).await
        }
        Err(why) => {
            let attempts = d.attempts + 1;
            let retry = (attempts < MAX_ATTEMPTS).then(|| {
                chrono::Utc::now().timestamp_millis() + backoff(attempts - 1).as_millis() as i64
            });
            stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
            if retry.is_none() {
                stats.given_up.fetch_add(1, Ordering::Relaxed);
            }
            tracing::warn!(delivery = %d.id, event = %d.event, endpoint = %d.endpoint, attempts, error = %why,
                "webhook not delivered{}", if retry.is_some() { "; it will be retried" } else { "; giving up" });
            store.delivery_failed(&d.id, &why, retry).await
        }
    };
    if let Err(err) = recorded {
        tracing::warn!(%err, delivery = %d.id, "webhooks: cannot record the outcome; the delivery will be retried");
    }
}

async fn post(
    client: &reqwest::Client,
    env: &Env,
    w: &WebhookDef,
    d: &Delivery,
) -> Result<(), String> {
    let url = expand(env, &w.url)?;
    let content_type = if serde_json::from_str::<serde_json::Value>(&d.body).is_ok() {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut req = client
        .post(&url)
        .timeout(Duration::from_secs(w.timeout_secs))
        .header("content-type", content_type)
        .header("x-trellis-event", &d.event)
        .header("x-trellis-delivery", &d.id);
    for (name, value) in &w.headers {
        req = req.header(name.as_str(), expand(env, value)?);
    }
    if let Some(var) = &w.secret_env {
        let secret = env
            .get(var)
            .ok_or_else(|| format!("the signing secret's environment variable {var} is not set"))?;
        let t = chrono::Utc::now().timestamp();
        req = req.header("x-trellis-signature", signature(secret, t, &d.body));
    }
    let res = req
        .body(d.body.clone())
        .send()
        .await
        .map_err(|e| format!("cannot reach {}: {e}", redact(&url)))?;
    if res.status().is_success() {
        Ok(())
    } else {
        Err(format!("{} answered {}", redact(&url), res.status()))
    }
}

/// The URL without its query (which may carry a token).
fn redact(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }

    #[test]
    fn signature_is_hmac_sha256_of_time_and_body() {
        // The expected value was computed independently with Python: hmac.new(b"secret", b"1700000000.{}", hashlib.sha256).
        assert_eq!(
            signature("secret", 1700000000, "{}"),
            "t=1700000000,v1=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
    }

    #[test]
    fn expands_environment_variables() {
        let env = Env::new([("TEAM".to_string(), "ops".to_string())]);
        assert_eq!(expand(&env, "plain").as_deref(), Ok("plain"));
        assert_eq!(expand(&env, "x-${TEAM}").as_deref(), Ok("x-ops"));
        assert_eq!(
            expand(&env, "${TRELLIS_SURELY_UNSET_VAR}"),
            Err("the environment variable TRELLIS_SURELY_UNSET_VAR is not set".to_string())
        );
        assert_eq!(
            expand(&env, "${UNCLOSED"),
            Err("`${UNCLOSED` has a `${` without its `}`".to_string())
        );
    }
}
