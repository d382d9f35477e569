//! Operations: the access log (real processes, `--log-format json`), `/metrics`
//! (who may read it, what it counts, bounded labels), the probes `/_/live`,
//! `/_/ready` and `/_/health`, and the drain on SIGTERM and SIGINT (a real process:
//! the request in flight is answered, event streams end with `retry:`, new
//! connections are refused, the due webhook is delivered, exit code 0).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use common::process::{OwnPostgres, free_port, trellis, wait_healthy};
use common::{Db, TestApp, TestDb};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const TICKET: &str = "entity: ticket\nfields:\n  title: { type: string, required: true }\n  status: { type: enum, values: [open, done] }\n  note: text\n";

fn workflow(endpoint: &str) -> String {
    format!(
        r#"entity: ticket
field: status
initial: open
states:
  open: {{}}
  done: {{ final: true }}
transitions:
  finish:
    from: open
    to: done
    input: {{ note: {{ type: text, required: true }} }}
    set: {{ note: input.note }}
    after_commit:
      - webhook:
          endpoint: {endpoint}
          body: '{{"ticket": {{{{ record.id | tojson }}}}, "note": {{{{ input.note | tojson }}}}}}'
"#
    )
}

/// A sample of the exposition: `name{k="v",…} value`, labels in the order given.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let key = if labels.is_empty() {
        name.to_string()
    } else {
        let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        format!("{name}{{{}}}", inner.join(","))
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&key)?.strip_prefix(' ')?.parse().ok())
}

fn requests(text: &str, method: &str, route: &str, status: &str) -> f64 {
    sample(
        text,
        "trellis_http_requests_total",
        &[("method", method), ("route", route), ("status", status)],
    )
    .unwrap_or(0.0)
}

async fn scrape(app: &TestApp) -> String {
    let res = app.get("/metrics").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    res.body.as_str().expect("text").to_string()
}

/// On a project with authentication and policies, `/metrics` follows the rule of
/// `/_/status`: administrators only; 403 for other users, 401 for anonymous
/// callers and bad tokens.
async fn metrics_are_for_administrators(db: Db) {
    let app = TestApp::root(db).await;
    let res = app.get("/metrics").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(
        res.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = res.body.as_str().unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        text.contains("# TYPE trellis_db_pool_connections gauge"),
        "{text}"
    );

    let contractor = app.token("u-contractor", &["contractor"]);
    let res = app.as_user(&contractor).get("/metrics").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    assert!(!res.raw.starts_with(b"# "), "no metrics in a refusal");
    let res = app.anonymous().get("/metrics").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.body);
    let res = app
        .anonymous()
        .call(
            Method::GET,
            "/metrics",
            None,
            &[("authorization", "Bearer not-a-token")],
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.body);
    // The refusals are counted like any request, under the route template.
    let text = scrape(&app).await;
    assert_eq!(requests(&text, "GET", "/metrics", "403"), 1.0, "{text}");
    assert_eq!(requests(&text, "GET", "/metrics", "401"), 2.0, "{text}");
}

/// Requests are counted per method, route template and status, with a latency
/// histogram; whatever a caller puts in the path or method, labels stay the
/// served route templates (ids, unknown collections and query strings never
/// become labels). Pool, streams, reload and outbox numbers are there.
async fn metrics_count_requests_with_bounded_labels(db: Db) {
    let app = TestApp::with_files(
        db,
        &[
            ("models/ticket.yaml", TICKET),
            ("workflows/ticket.yaml", &workflow("ops")),
            (
                "trellis.yaml",
                "webhooks:\n  ops:\n    url: \"http://127.0.0.1:9/hook\"\n",
            ),
        ],
    )
    .await;
    let before = scrape(&app).await;
    assert_eq!(requests(&before, "GET", "/api/tickets", "200"), 0.0);
    for _ in 0..3 {
        assert_eq!(app.get("/api/tickets").await.status, StatusCode::OK);
    }
    let id = app
        .create("tickets", json!({ "title": "t", "note": "n" }))
        .await;
    let secret_id = uuid::Uuid::now_v7().to_string();
    let res = app.get(&format!("/api/tickets/{secret_id}")).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let res = app.get("/api/tickets?filter=title%3D%27hunter2%27").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(
        app.get("/api/secret_things").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/no/such/secret/route").await.status,
        StatusCode::NOT_FOUND
    );
    let brew = app
        .call(
            Method::from_bytes(b"BREW").unwrap(),
            "/api/tickets",
            None,
            &[],
        )
        .await;
    assert_eq!(brew.status, StatusCode::METHOD_NOT_ALLOWED);
    let res = app
        .fire(
            &format!("/api/tickets/{id}"),
            "finish",
            json!({ "note": "done" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let res = app
        .fire(&format!("/api/tickets/{id}"), "nonsense", json!({}))
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.body);

    let text = scrape(&app).await;
    assert_eq!(requests(&text, "GET", "/api/tickets", "200"), 4.0, "{text}");
    assert_eq!(
        requests(&text, "POST", "/api/tickets", "201"),
        1.0,
        "{text}"
    );
    assert_eq!(
        requests(&text, "GET", "/api/tickets/{id}", "404"),
        1.0,
        "{text}"
    );
    assert_eq!(
        requests(&text, "GET", "/api/{plural}", "404"),
        1.0,
        "{text}"
    );
    assert_eq!(requests(&text, "GET", "unmatched", "404"), 1.0, "{text}");
    assert_eq!(
        requests(&text, "OTHER", "/api/tickets", "405"),
        1.0,
        "{text}"
    );
    assert_eq!(
        requests(&text, "POST", "/api/tickets/{id}/transitions/finish", "200"),
        1.0,
        "{text}"
    );
    assert_eq!(
        requests(&text, "POST", "/api/tickets/{id}/transitions/{name}", "404"),
        1.0,
        "{text}"
    );
    for leaked in [
        secret_id.as_str(),
        id.as_str(),
        "hunter2",
        "secret",
        "BREW",
        "nonsense",
    ] {
        assert!(!text.contains(leaked), "`{leaked}` became a label:\n{text}");
    }
    let count = sample(
        &text,
        "trellis_http_request_duration_seconds_count",
        &[
            ("method", "GET"),
            ("route", "/api/tickets"),
            ("status", "200"),
        ],
    );
    assert_eq!(count, Some(4.0), "{text}");
    let inf = sample(
        &text,
        "trellis_http_request_duration_seconds_bucket",
        &[
            ("le", "+Inf"),
            ("method", "GET"),
            ("route", "/api/tickets"),
            ("status", "200"),
        ],
    )
    .or_else(|| {
        sample(
            &text,
            "trellis_http_request_duration_seconds_bucket",
            &[
                ("method", "GET"),
                ("route", "/api/tickets"),
                ("status", "200"),
                ("le", "+Inf"),
            ],
        )
    });
    assert_eq!(inf, Some(4.0), "{text}");

    // The pool: at least the one connection this scrape used, never more than the most.
    let in_use = sample(&text, "trellis_db_pool_connections", &[("state", "in_use")]).unwrap();
    let idle = sample(&text, "trellis_db_pool_connections", &[("state", "idle")]).unwrap();
    let max = sample(&text, "trellis_db_pool_max_connections", &[]).unwrap();
    assert!(in_use + idle >= 1.0 && in_use + idle <= max, "{text}");
    assert_eq!(sample(&text, "trellis_event_streams_open", &[]), Some(0.0));
    // The transition's webhook waits in the outbox (no sender runs in this test).
    assert_eq!(
        sample(&text, "trellis_outbox_deliveries", &[("state", "pending")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, "trellis_reload_generation", &[]), Some(1.0));
    assert_eq!(sample(&text, "trellis_reload_last_success", &[]), Some(1.0));
    assert_eq!(
        sample(&text, "trellis_reload_failures_total", &[]),
        Some(0.0)
    );
    assert_eq!(sample(&text, "trellis_draining", &[]), Some(0.0));

    // And the counters move.
    app.get("/api/tickets").await;
    app.get("/api/tickets").await;
    let after = scrape(&app).await;
    assert_eq!(requests(&after, "GET", "/api/tickets", "200"), 6.0);
}

/// Reloads: the generation, the last result and the refusals.
async fn metrics_follow_reloads(db: Db) {
    let app = TestApp::with_files(db, &[("models/ticket.yaml", TICKET)]).await;
    let dir = app.state.reloader.as_ref().expect("a reloader").dir.clone();
    std::fs::write(
        dir.join("models/ticket.yaml"),
        "entity: ticket\nfields: 5\n",
    )
    .unwrap();
    let res = app.post("/_/reload", json!({})).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    let text = scrape(&app).await;
    assert_eq!(sample(&text, "trellis_reload_generation", &[]), Some(1.0));
    assert_eq!(sample(&text, "trellis_reload_last_success", &[]), Some(0.0));
    assert_eq!(
        sample(&text, "trellis_reload_failures_total", &[]),
        Some(1.0)
    );
    // `/_/status` does not grow a member for it.
    let status = app.get("/_/status").await;
    assert!(status.body.get("failures").is_none(), "{}", status.body);

    std::fs::write(
        dir.join("models/ticket.yaml"),
        format!("{TICKET}  extra: integer\n"),
    )
    .unwrap();
    let res = app.post("/_/reload", json!({})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let text = scrape(&app).await;
    assert_eq!(sample(&text, "trellis_reload_generation", &[]), Some(2.0));
    assert_eq!(sample(&text, "trellis_reload_last_success", &[]), Some(1.0));
    assert_eq!(
        sample(&text, "trellis_reload_failures_total", &[]),
        Some(1.0)
    );
}

/// A request from a TCP peer (the rate limit applies only to those).
async fn from_peer(app: &TestApp, path: &str) -> StatusCode {
    let mut req = Request::builder().uri(path).body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(std::net::SocketAddr::from((
            [192, 0, 2, 7],
            4711,
        ))));
    app.client
        .router
        .clone()
        .oneshot(req)
        .await
        .unwrap()
        .status()
}

/// Rate-limit refusals are counted by limit; the probes are never limited.
async fn metrics_count_rate_limit_refusals(db: Db) {
    let app = TestApp::with_files(
        db,
        &[
            ("models/ticket.yaml", TICKET),
            (
                "trellis.yaml",
                "limits:\n  requests: { per_minute: 1, burst: 2 }\n",
            ),
        ],
    )
    .await;
    assert_eq!(from_peer(&app, "/api/tickets").await, StatusCode::OK);
    assert_eq!(from_peer(&app, "/api/tickets").await, StatusCode::OK);
    assert_eq!(
        from_peer(&app, "/api/tickets").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        from_peer(&app, "/api/tickets").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    for probe in ["/_/live", "/_/ready", "/_/health", "/_/ready"] {
        assert_eq!(from_peer(&app, probe).await, StatusCode::OK, "{probe}");
    }
    let text = scrape(&app).await;
    assert_eq!(
        sample(
            &text,
            "trellis_rate_limit_refusals_total",
            &[("limit", "requests")]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "trellis_rate_limit_refusals_total",
            &[("limit", "signups")]
        ),
        Some(0.0)
    );
    assert_eq!(requests(&text, "GET", "/api/tickets", "429"), 2.0, "{text}");
}

/// An open event stream is counted while it is open; when the process drains it
/// ends with a `shutdown` event carrying `retry:`, and new streams are refused.
async fn streams_are_counted_and_end_with_a_retry_hint(db: Db) {
    let app = TestApp::with_files(db, &[("models/ticket.yaml", TICKET)]).await;
    let req = Request::builder()
        .uri("/api/tickets/events")
        .body(Body::empty())
        .unwrap();
    let res = app.client.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = scrape(&app).await;
    assert_eq!(
        sample(&text, "trellis_event_streams_open", &[]),
        Some(1.0),
        "{text}"
    );

    app.state.shutdown.begin();
    let body = tokio::time::timeout(Duration::from_secs(30), res.into_body().collect())
        .await
        .expect("the stream ends when the process drains")
        .unwrap()
        .to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("event: shutdown\n"), "{body}");
    let retry: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("retry:"))
        .unwrap_or_else(|| panic!("no retry: line in {body}"))
        .trim()
        .parse()
        .unwrap();
    assert!((1000..=3000).contains(&retry), "{retry}");
    let late = app.get("/api/tickets/events").await;
    assert_eq!(
        late.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        late.body
    );
    assert_eq!(
        late.body["type"],
        "https://trellis.dev/problems/shutting-down"
    );
    assert!(late.header("retry-after").is_some());
    let start = Instant::now();
    loop {
        let text = scrape(&app).await;
        if sample(&text, "trellis_event_streams_open", &[]) == Some(0.0) {
            assert_eq!(sample(&text, "trellis_draining", &[]), Some(1.0));
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `/_/live` always answers 200; `/_/ready` (and `/_/health`) 200 while it can
/// serve, 503 with `Retry-After` and a problem while draining or when the
/// database does not answer. Neither looks at tokens. A flood of probes asks the
/// database far fewer times than it is probed.
async fn probes_answer_live_and_ready(db: Db) {
    let app = TestApp::root(db).await;
    for path in ["/_/live", "/_/ready", "/_/health"] {
        for client in [app.client.clone(), app.anonymous()] {
            let res = client.get(path).await;
            assert_eq!(res.status, StatusCode::OK, "{path}: {}", res.body);
            assert_eq!(res.body, json!({ "status": "ok" }), "{path}");
        }
        let res = app
            .anonymous()
            .call(Method::GET, path, None, &[("authorization", "Bearer junk")])
            .await;
        assert_eq!(res.status, StatusCode::OK, "{path}: a probe ignores tokens");
    }

    let probes = || {
        app.state
            .ops
            .readiness
            .probes
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = probes();
    let flood: Vec<_> = (0..100)
        .map(|_| {
            let client = app.anonymous();
            tokio::spawn(async move { client.get("/_/ready").await.status })
        })
        .collect();
    for f in flood {
        assert_eq!(f.await.unwrap(), StatusCode::OK);
    }
    let asked = probes() - before;
    assert!(asked < 50, "100 probes asked the database {asked} times");

    // Draining: not ready, still alive.
    app.state.shutdown.begin();
    let res = app.get("/_/ready").await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        res.body["type"],
        "https://trellis.dev/problems/shutting-down"
    );
    assert_eq!(res.header("retry-after"), Some("5"));
    assert_eq!(
        app.get("/_/health").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(app.get("/_/live").await.status, StatusCode::OK);
}

/// The database gone (here: its pool closed): ready answers 503
/// `database-unavailable` with `Retry-After`; live still 200.
async fn ready_is_503_without_a_database(db: Db) {
    let app = TestApp::with_files(db, &[("models/ticket.yaml", TICKET)]).await;
    assert_eq!(app.get("/_/ready").await.status, StatusCode::OK);
    app.store.close().await;
    let start = Instant::now();
    let res = loop {
        let res = app.get("/_/ready").await;
        // An answer stands for a second.
        if res.status != StatusCode::OK {
            break res;
        }
        assert!(start.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.body);
    assert_eq!(
        res.body["type"],
        "https://trellis.dev/problems/database-unavailable"
    );
    assert_eq!(res.header("retry-after"), Some("5"));
    assert_eq!(
        app.get("/_/health").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(app.get("/_/live").await.status, StatusCode::OK);
}

both!(
    metrics_are_for_administrators,
    metrics_count_requests_with_bounded_labels,
    metrics_follow_reloads,
    metrics_count_rate_limit_refusals,
    streams_are_counted_and_end_with_a_retry_hint,
    probes_answer_live_and_ready,
    ready_is_503_without_a_database,
);

// ---------------------------------------------------------------------------
// Real processes.

/// An answer read off a socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read the answer");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {raw:?}"));
    Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s
}

/// One request with these headers (and a JSON body), `Connection: close`.
fn call(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Answer {
    let mut s = connect(port);
    let payload = body.map(Value::to_string).unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if body.is_some() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!(
        "Content-Length: {}\r\n\r\n{payload}",
        payload.len()
    ));
    s.write_all(req.as_bytes()).unwrap();
    read_answer(&mut s)
}

fn signal(child: &std::process::Child, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name}");
}

/// A token of the project in `dir`, signed with [`common::TEST_SECRET`].
fn token(dir: &std::path::Path, sub: &str, roles: &[&str]) -> String {
    let loaded = trellis::spec::load(dir);
    let engine = trellis::engine::Engine::build(&loaded).expect("engine");
    let auth = trellis::runtime::Auth::from_engine(&engine, dir, &|_| {
        Some(common::TEST_SECRET.to_string())
    })
    .expect("auth");
    let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
    auth.issue(sub, &roles, Default::default())
        .expect("a token")
        .0
}

/// The database URL a spawned server of this test uses.
fn url_for(db: Db, test_db: &TestDb, dir: &std::path::Path) -> String {
    match db {
        Db::Postgres => test_db.url.clone(),
        Db::Sqlite => format!("sqlite://{}", dir.join("data.db").display()),
    }
}

/// `serve --log-format json`: one access line per request (method, route
/// template, status, duration, request id, principal), every line of a request
/// carries its request id, and neither the token nor the query string nor the
/// record id in the path is ever written.
async fn the_access_log_has_a_line_per_request(db: Db) {
    let project = common::project(&[
        ("models/ticket.yaml", TICKET),
        (
            "trellis.yaml",
            "auth:\n  jwt: { algorithm: HS256, secret_env: OPS_JWT_SECRET }\n  open_without_policies: true\n",
        ),
    ]);
    let dir = project.path();
    let test_db = TestDb::new(db).await;
    let port = free_port();
    let metrics_port = free_port();
    let mut cmd = trellis();
    cmd.args(["serve", dir.to_str().unwrap(), "--port", &port.to_string()])
        .args(["--database-url", &url_for(db, &test_db, dir)])
        .args(["--log-format", "json"])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .env("OPS_JWT_SECRET", common::TEST_SECRET)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut server = common::process::Server(cmd.spawn().expect("spawn serve"));
    wait_healthy(&mut server, port);

    let admin = token(dir, "alice", &["admin"]);
    let bearer = format!("Bearer {admin}");
    let res = call(
        port,
        "POST",
        "/api/tickets",
        &[("authorization", &bearer), ("x-request-id", "create-1")],
        Some(&json!({ "title": "first" })),
    );
    assert_eq!(res.status, 201, "{}", res.body);
    let id = res.json()["id"].as_str().unwrap().to_string();
    let res = call(
        port,
        "GET",
        &format!("/api/tickets/{id}?filter=title%3D%27hunter2%27"),
        &[("authorization", &bearer), ("x-request-id", "read-1")],
        None,
    );
    assert_eq!(res.status, 400, "{}", res.body);
    let res = call(
        port,
        "GET",
        "/api/tickets?filter=title%3D%27hunter2%27",
        &[("x-request-id", "bad id with spaces")],
        None,
    );
    assert_eq!(res.status, 200);
    let generated = res
        .header("x-request-id")
        .expect("every answer has a request id")
        .to_string();
    let res = call(
        port,
        "POST",
        "/_/reload",
        &[("authorization", &bearer), ("x-request-id", "reload-1")],
        None,
    );
    assert_eq!(res.status, 200, "{}", res.body);

    // `--metrics-addr`: /metrics without a token on its own listener, and only
    // that; on the main port this project wants an administrator.
    let res = call(metrics_port, "GET", "/metrics", &[], None);
    assert_eq!(res.status, 200, "{}", res.body);
    assert!(
        res.body.contains(
            "trellis_http_requests_total{method=\"POST\",route=\"/api/tickets\",status=\"201\"} 1"
        ),
        "{}",
        res.body
    );
    assert_eq!(
        call(metrics_port, "GET", "/api/tickets", &[], None).status,
        404
    );
    assert_eq!(
        call(metrics_port, "GET", "/_/status", &[], None).status,
        404
    );
    assert_eq!(call(port, "GET", "/metrics", &[], None).status, 401);

    signal(&server.0, "TERM");
    let status = server.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut log = String::new();
    server
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON line: {l}")))
        .collect();
    let access: Vec<&Value> = lines.iter().filter(|l| l["target"] == "access").collect();
    let by_id = |rid: &str| {
        access
            .iter()
            .find(|l| l["request_id"] == rid)
            .unwrap_or_else(|| panic!("no access line for {rid}:\n{log}"))
    };
    let create = by_id("create-1");
    assert_eq!(create["level"], "INFO");
    assert_eq!(create["method"], "POST");
    assert_eq!(create["route"], "/api/tickets");
    assert_eq!(create["status"], 201);
    assert_eq!(create["principal"], "alice");
    assert!(create["duration_ms"].as_f64().unwrap() >= 0.0, "{create}");
    assert!(create["timestamp"].is_string());
    let read = by_id("read-1");
    assert_eq!(read["route"], "/api/tickets/{id}");
    assert_eq!(read["status"], 400);
    // A malformed request id is not logged; the line gets one of its own.
    let anonymous = access
        .iter()
        .find(|l| l["method"] == "GET" && l["route"] == "/api/tickets")
        .unwrap_or_else(|| panic!("no anonymous list line:\n{log}"));
    assert!(anonymous.get("principal").is_none(), "{anonymous}");
    // The id the answer carries is the one logged.
    assert_eq!(anonymous["request_id"], generated.as_str(), "{anonymous}");
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
    // One line per request: the health probes, the four calls, and the refused
    // /metrics (the metrics listener's requests are not logged).
    let probes = access.iter().filter(|l| l["route"] == "/_/health").count();
    assert_eq!(access.len(), probes + 5, "{log}");
    // A line written while handling a request carries the request's span.
    let reloaded = lines
        .iter()
        .find(|l| l["message"] == "reloaded the definitions")
        .unwrap_or_else(|| panic!("no reload line:\n{log}"));
    assert_eq!(reloaded["span"]["request_id"], "reload-1", "{reloaded}");
    assert_eq!(reloaded["span"]["principal"], "alice", "{reloaded}");
    assert_eq!(reloaded["span"]["route"], "/_/reload", "{reloaded}");
    for secret in [admin.as_str(), "hunter2", id.as_str(), "bad id with spaces"] {
        assert!(!log.contains(secret), "`{secret}` is in the log:\n{log}");
    }
}

/// SIGTERM and SIGINT drain the same way, on a real process: an event stream
/// ends with `retry:`, new connections are refused, the request in flight (a
/// transition whose body is still arriving) is answered 200, the webhook it
/// commits is delivered before the process ends, and the exit code is 0.
async fn a_signal_drains_the_server(db: Db) {
    for sig in ["TERM", "INT"] {
        drain_once(db, sig).await;
    }
}

/// A webhook receiver that records the bodies it gets and answers 204.
fn receiver() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head, then Content-Length bytes of body.
            let body = loop {
                let Ok(n) = s.read(&mut chunk) else {
                    break None;
                };
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break Some(body.to_string());
                    }
                }
            };
            if let Some(body) = body {
                log.lock().unwrap().push(body);
            }
            let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        }
    });
    (port, seen)
}

async fn drain_once(db: Db, sig: &str) {
    let (hook_port, received) = receiver();
    let project = common::project(&[
        ("models/ticket.yaml", TICKET),
        ("workflows/ticket.yaml", &workflow("ops")),
        (
            "trellis.yaml",
            &format!(
                "webhooks:\n  ops:\n    url: \"http://127.0.0.1:{hook_port}/hook\"\nlimits:\n  requests: {{ per_second: 1000000, burst: 1000000 }}\n"
            ),
        ),
    ]);
    let dir = project.path();
    let test_db = TestDb::new(db).await;
    let port = free_port();
    let mut cmd = trellis();
    cmd.args(["serve", dir.to_str().unwrap(), "--port", &port.to_string()])
        .args(["--database-url", &url_for(db, &test_db, dir)])
        .args(["--shutdown-timeout", "60", "--no-watch"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut server = common::process::Server(cmd.spawn().expect("spawn serve"));
    wait_healthy(&mut server, port);
    let res = call(
        port,
        "POST",
        "/api/tickets",
        &[],
        Some(&json!({ "title": "slow" })),
    );
    assert_eq!(res.status, 201, "{}", res.body);
    let id = res.json()["id"].as_str().unwrap().to_string();

    // An event stream, open (its head has arrived).
    let mut stream = connect(port);
    stream
        .write_all(b"GET /api/tickets/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "the stream's head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/event-stream"), "{head}");

    // A transition in flight: its head sent with `Expect: 100-continue`; the
    // server's `100 Continue` says the handler has started reading the body,
    // which is sent only after the signal.
    let body = json!({ "note": "finished while draining" }).to_string();
    let mut slow = connect(port);
    slow.write_all(
        format!(
            "POST /api/tickets/{id}/transitions/finish HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        assert_eq!(slow.read(&mut byte).unwrap(), 1, "the interim answer");
        interim.push(byte[0]);
    }
    let interim = String::from_utf8_lossy(&interim).to_string();
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");

    signal(&server.0, sig);
    // New connections are refused once the listener is closed.
    let start = Instant::now();
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            // Refused, or reset when the attempt met the listener as it closed
            // (a SYN already queued when the socket went away): either way the
            // connection was not taken.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                break;
            }
            Err(e) => panic!("connecting during the drain: {e}"),
            Ok(_) => {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "SIG{sig}: still accepting connections"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    // The stream ends with a retry hint.
    let mut streamed = String::new();
    stream
        .read_to_string(&mut streamed)
        .expect("the stream ends");
    assert!(streamed.contains("event: shutdown"), "SIG{sig}: {streamed}");
    assert!(
        streamed.lines().any(|l| l.starts_with("retry:")),
        "SIG{sig}: {streamed}"
    );
    // The request in flight completes.
    slow.write_all(body.as_bytes()).unwrap();
    let answer = read_answer(&mut slow);
    assert_eq!(answer.status, 200, "SIG{sig}: {}", answer.body);
    assert_eq!(answer.json()["status"], "done", "{}", answer.body);
    assert_eq!(answer.json()["note"], "finished while draining");

    let status = server.0.wait().unwrap();
    let mut log = String::new();
    server
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert_eq!(status.code(), Some(0), "SIG{sig}: {status}\n{log}");
    // The webhook the drained transition committed went out before the exit.
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "SIG{sig}: {got:?}\n{log}");
    assert!(got[0].contains("finished while draining"), "{}", got[0]);
    assert!(log.contains(&format!("SIG{sig}: draining")), "{log}");
}

both!(
    the_access_log_has_a_line_per_request,
    a_signal_drains_the_server
);

/// PostgreSQL stops under a running server: `/_/ready` answers 503 with
/// `Retry-After` (live stays 200), and 200 again once PostgreSQL is back.
#[test]
fn ready_follows_a_postgres_outage() {
    let pg = OwnPostgres::start_new();
    let project = common::project(&[("models/ticket.yaml", TICKET)]);
    let dir = project.path().to_str().unwrap().to_string();
    let port = free_port();
    let mut server = common::process::serve(&dir, port, Some(&pg.url()));
    wait_healthy(&mut server, port);
    assert_eq!(call(port, "GET", "/_/ready", &[], None).status, 200);
    pg.stop();
    let until = |want: u16| {
        let start = Instant::now();
        loop {
            let res = call(port, "GET", "/_/ready", &[], None);
            if res.status == want {
                return res;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "ready never answered {want}: {res:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let down = until(503);
    assert_eq!(
        down.json()["type"],
        "https://trellis.dev/problems/database-unavailable"
    );
    assert_eq!(down.header("retry-after"), Some("5"));
    assert_eq!(call(port, "GET", "/_/live", &[], None).status, 200);
    pg.start();
    let up = until(200);
    assert_eq!(up.json(), json!({ "status": "ok" }));
}
