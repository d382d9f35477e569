//! Abuse limits (docs/limits.md), played as an attacker would: request rates per
//! address and per principal, spoofed forwarding headers, login guessing, signup
//! floods, event stream caps, running out of file descriptors, tokens without
//! `iss`/`aud`, `/_/status`, guard reasons, slow bodies and batch texts. On SQLite
//! and PostgreSQL.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::response::Response;
use common::process::{Server, free_port, http, wait_healthy};
use common::{Db, TestApp, TestDb};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// A small project with accounts, one open entity and the given `limits`.
fn files(limits: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "trellis.yaml",
            format!(
                "name: Limits\nauth:\n  jwt: {{ algorithm: HS256, secret_env: LIMITS_SECRET }}\n  users: {{ entity: user }}\n{limits}"
            ),
        ),
        (
            "models/note.yaml",
            "entity: note\nfields:\n  body: { type: text }\n".into(),
        ),
        (
            "models/user.yaml",
            "entity: user\nfields:\n  email: { type: email, required: true, unique: true }\n"
                .into(),
        ),
        (
            "policies/note.yaml",
            "entity: note\nrules:\n  - roles: [anonymous, authenticated]\n    allow: [\"*\"]\n"
                .into(),
        ),
        (
            "policies/user.yaml",
            "entity: user\nrules:\n  - roles: [admin]\n    allow: [\"*\"]\n".into(),
        ),
    ]
}

async fn app_with(db: Db, limits: &str) -> TestApp {
    let owned = files(limits);
    let refs: Vec<(&str, &str)> = owned.iter().map(|(p, t)| (*p, t.as_str())).collect();
    TestApp::with_files(db, &refs).await
}

/// A response as the tests read it.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn read(res: Response) -> Answer {
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// A request as it arrives from `peer` over a connection (the server puts the peer
/// into `ConnectInfo`).
fn request(
    peer: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let mut req = req
        .body(body.map(|b| Body::from(b.to_string())).unwrap_or_default())
        .unwrap();
    let addr: SocketAddr = format!("{peer}:40000")
        .parse()
        .or_else(|_| format!("[{peer}]:40000").parse())
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

async fn send(router: &Router, req: Request<Body>) -> Answer {
    read(router.clone().oneshot(req).await.unwrap()).await
}

async fn get_from(router: &Router, peer: &str, path: &str, token: Option<&str>) -> Answer {
    send(router, request(peer, Method::GET, path, token, &[], None)).await
}

fn assert_limited(a: &Answer, what: &str) {
    assert_eq!(
        a.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{what}: {}",
        a.body
    );
    assert_eq!(
        a.header("content-type"),
        "application/problem+json",
        "{what}"
    );
    assert_eq!(
        a.body["type"], "https://trellis.dev/problems/rate-limited",
        "{what}"
    );
    let retry: u64 = a
        .header("retry-after")
        .parse()
        .expect("Retry-After seconds");
    assert!(retry >= 1, "{what}");
    assert_eq!(a.body["retry_after"], retry, "{what}");
}

async fn requests_are_limited_per_address_and_principal(db: Db) {
    let app = app_with(
        db,
        "limits:\n  requests: { per_minute: 1, burst: 3 }\n  trusted_proxies: [\"10.0.0.1\", \"fd00::/8\"]\n",
    )
    .await;
    let r = &app.client.router;

    // Three at once, then the fourth waits; the headers say so.
    for left in [2, 1, 0] {
        let a = get_from(r, "203.0.113.5", "/api/notes", None).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(a.header("ratelimit-policy"), "\"default\";q=3;w=180");
        assert!(
            a.header("ratelimit")
                .starts_with(&format!("\"default\";r={left};t=")),
            "{}",
            a.header("ratelimit")
        );
    }
    let a = get_from(r, "203.0.113.5", "/api/notes", None).await;
    assert_limited(&a, "the fourth request");
    assert_eq!(a.header("ratelimit-policy"), "\"default\";q=3;w=180");
    assert!(a.header("ratelimit").starts_with("\"default\";r=0;t="));
    assert!(a.body["detail"].as_str().unwrap().contains("try again in"));
    // Every route counts, writes and unknown ones too; health checks never do.
    let a = send(
        r,
        request(
            "203.0.113.5",
            Method::POST,
            "/api/notes",
            None,
            &[],
            Some(json!({ "body": "x" })),
        ),
    )
    .await;
    assert_limited(&a, "a write");
    assert_limited(
        &get_from(r, "203.0.113.5", "/nowhere", None).await,
        "an unknown route",
    );
    let a = get_from(r, "203.0.113.5", "/_/health", None).await;
    assert_eq!(a.status, StatusCode::OK, "health is never limited");

    // Another address has its own bucket.
    let a = get_from(r, "203.0.113.6", "/api/notes", None).await;
    assert_eq!(a.status, StatusCode::OK);

    // A forwarding header from a peer that is not a trusted proxy changes nothing.
    for spoof in [
        ("x-forwarded-for", "198.51.100.1"),
        ("forwarded", "for=198.51.100.1"),
    ] {
        let a = send(
            r,
            request(
                "203.0.113.5",
                Method::GET,
                "/api/notes",
                None,
                &[spoof],
                None,
            ),
        )
        .await;
        assert_limited(&a, "spoofed forwarding header");
    }

    // Through the trusted proxy, each forwarded client has its own bucket, and what
    // a client writes at the left of the header cannot move it to another one.
    let via = |xff: &'static str| {
        request(
            "10.0.0.1",
            Method::GET,
            "/api/notes",
            None,
            &[("x-forwarded-for", xff)],
            None,
        )
    };
    for _ in 0..3 {
        assert_eq!(send(r, via("198.51.100.1")).await.status, StatusCode::OK);
    }
    assert_limited(&send(r, via("198.51.100.1")).await, "forwarded client");
    assert_limited(
        &send(r, via("6.6.6.6, 198.51.100.1")).await,
        "forwarded client with a made-up address in front",
    );
    assert_eq!(
        send(r, via("198.51.100.2")).await.status,
        StatusCode::OK,
        "another client behind the same proxy"
    );
    // IPv6 clients count by their /64: a host cannot walk its own /64.
    for i in 1..=3 {
        let peer = format!("2001:db8:1:2::{i}");
        assert_eq!(
            get_from(r, &peer, "/api/notes", None).await.status,
            StatusCode::OK
        );
    }
    assert_limited(
        &get_from(r, "2001:db8:1:2::99", "/api/notes", None).await,
        "the same /64",
    );

    // A principal has one bucket wherever it comes from.
    let token = app.token(&uuid::Uuid::now_v7().to_string(), &["member"]);
    for i in 0..3 {
        let a = get_from(
            r,
            &format!("192.0.2.{}", 10 + i),
            "/api/notes",
            Some(&token),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
    assert_limited(
        &get_from(r, "192.0.2.50", "/api/notes", Some(&token)).await,
        "the same principal from a fresh address",
    );
    // Many principals from one address share the address's bucket.
    let mut answers = Vec::new();
    for _ in 0..6 {
        let t = app.token(&uuid::Uuid::now_v7().to_string(), &["member"]);
        answers.push(
            get_from(r, "192.0.2.99", "/api/notes", Some(&t))
                .await
                .status,
        );
    }
    assert_eq!(
        answers.iter().filter(|s| **s == StatusCode::OK).count(),
        3,
        "{answers:?}"
    );
    // Bad tokens are limited by address too.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            get_from(r, "192.0.2.77", "/api/notes", Some("not.a.token"))
                .await
                .status,
        );
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
}

async fn defaults_do_not_limit_normal_use(db: Db) {
    let app = TestApp::root(db).await;
    let r = &app.client.router;
    let token = app.client.token.clone().unwrap();
    // 150 requests at once from one address and one principal: all answered.
    let mut tasks = Vec::new();
    for _ in 0..150 {
        let r = r.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            get_from(&r, "198.51.100.20", "/api/skills", Some(&token))
                .await
                .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    let a = get_from(r, "198.51.100.20", "/api/skills", Some(&token)).await;
    assert_eq!(a.header("ratelimit-policy"), "\"default\";q=400;w=2");

    // The buckets are in memory, and forgotten once they are full again.
    let limits = app.state.limits.clone();
    assert_eq!(limits.tracked(), 2, "one address, one principal");
    let start = Instant::now();
    loop {
        limits.sweep_now();
        if limits.tracked() == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "buckets were never forgotten: {}",
            limits.tracked()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn account(app: &TestApp, email: &str) {
    app.signup(email).await;
}

fn login(peer: &str, email: &str, password: &str) -> Request<Body> {
    request(
        peer,
        Method::POST,
        "/auth/login",
        None,
        &[],
        Some(json!({ "email": email, "password": password })),
    )
}

async fn login_guesses_are_counted_before_the_hash(db: Db) {
    let app = TestApp::root(db).await;
    account(&app, "victim@example.com").await;
    let r = app.client.router.clone();

    // 15 wrong passwords at once from one address: at most 5 are checked.
    let mut tasks = Vec::new();
    for _ in 0..15 {
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            send(
                &r,
                login("203.0.113.66", "victim@example.com", "wrong horse"),
            )
            .await
        }));
    }
    let mut checked = 0;
    for t in tasks {
        let a = t.await.unwrap();
        match a.status {
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => assert_limited(&a, "a guess over the limit"),
            other => panic!("unexpected {other}: {}", a.body),
        }
    }
    assert_eq!(checked, 5, "exactly five guesses were checked");
    // The attacker's address stays refused for this account, right password or not.
    let a = send(
        &r,
        login("203.0.113.66", "victim@example.com", "correct horse"),
    )
    .await;
    assert_limited(&a, "the attacker's address");
    // The owner, elsewhere, is not locked out.
    let a = send(
        &r,
        login("198.51.100.3", "victim@example.com", "correct horse"),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);

    // Successful sign-ins do not use up an address's budget (an office behind one
    // address signs in all day).
    account(&app, "office@example.com").await;
    for i in 0..31 {
        let a = send(
            &r,
            login("198.51.100.4", "office@example.com", "correct horse"),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "sign-in {i}: {}", a.body);
    }
    // One address guessing many accounts is stopped after 30 failures.
    let mut statuses = Vec::new();
    for i in 0..31 {
        let a = send(
            &r,
            login(
                "198.51.100.5",
                &format!("nobody{i}@example.com"),
                "wrong horse",
            ),
        )
        .await;
        statuses.push(a.status);
    }
    assert!(
        statuses[..30]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert!(
        statuses[30..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
}

async fn signups_are_limited_per_address(db: Db) {
    let app = app_with(
        db,
        "limits:\n  signup: { per_minute: 2 }\n  password_hashes: 1\n",
    )
    .await;
    let r = &app.client.router;
    let signup = |peer: &str, email: &str| {
        request(
            peer,
            Method::POST,
            "/auth/signup",
            None,
            &[],
            Some(json!({ "email": email, "password": "correct horse" })),
        )
    };
    // Three at once under a cap of one hash at a time: all hashed, one by one.
    let mut tasks = Vec::new();
    for i in 0..2 {
        let r = r.clone();
        let req = signup("203.0.113.80", &format!("a{i}@example.com"));
        tasks.push(tokio::spawn(async move { send(&r, req).await }));
    }
    let r2 = r.clone();
    let other = signup("203.0.113.81", "b@example.com");
    tasks.push(tokio::spawn(async move { send(&r2, other).await }));
    for t in tasks {
        let a = t.await.unwrap();
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    }
    assert_eq!(
        app.state.limits.hashes.available_permits(),
        1,
        "every hash permit came back"
    );
    let a = send(r, signup("203.0.113.80", "a3@example.com")).await;
    assert_limited(&a, "the third signup from one address in a minute");
    assert!(
        a.body["detail"]
            .as_str()
            .unwrap()
            .contains("2 signups per minute")
    );
    // Refused before anything was written.
    assert_eq!(app.rows("user").await, 3);
    let a = send(r, signup("203.0.113.82", "c@example.com")).await;
    assert_eq!(a.status, StatusCode::CREATED, "another address: {}", a.body);
}

/// Opens an event stream; `Ok` keeps the response (and so the stream) alive.
async fn stream(router: &Router, peer: &str, token: Option<&str>) -> Result<Response, Answer> {
    let res = router
        .clone()
        .oneshot(request(
            peer,
            Method::GET,
            "/api/notes/events",
            token,
            &[],
            None,
        ))
        .await
        .unwrap();
    if res.status() == StatusCode::OK {
        Ok(res)
    } else {
        Err(read(res).await)
    }
}

async fn event_streams_are_capped(db: Db) {
    let app = app_with(
        db,
        "limits:\n  streams: { per_principal: 2, per_address: 3, total: 4 }\n",
    )
    .await;
    let r = &app.client.router;
    let alice = app.token(&uuid::Uuid::now_v7().to_string(), &["member"]);

    let mut open = Vec::new();
    open.push(stream(r, "203.0.113.1", Some(&alice)).await.ok().unwrap());
    open.push(stream(r, "203.0.113.2", Some(&alice)).await.ok().unwrap());
    let a = stream(r, "203.0.113.3", Some(&alice)).await.unwrap_err();
    assert_limited(&a, "a third stream of one principal");
    assert!(
        a.body["detail"]
            .as_str()
            .unwrap()
            .contains("2 event streams")
    );

    // Anonymous callers are counted by address.
    open.push(stream(r, "198.51.100.9", None).await.ok().unwrap());
    open.push(stream(r, "198.51.100.9", None).await.ok().unwrap());
    assert_eq!(app.state.limits.open_streams(), 4);
    // The server's total is reached: 503 for everyone.
    let a = stream(r, "192.0.2.1", None).await.unwrap_err();
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert_eq!(a.header("content-type"), "application/problem+json");
    assert_eq!(a.header("retry-after"), "5");
    assert_eq!(
        a.body["type"],
        "https://trellis.dev/problems/too-many-streams"
    );

    // Closing a stream frees its place.
    drop(open.pop());
    let start = Instant::now();
    let third = loop {
        match stream(r, "198.51.100.9", None).await {
            Ok(s) => break s,
            Err(a) => {
                assert!(a.status.as_u16() == 503 || a.status.as_u16() == 429);
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "the closed stream's place never came back"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    open.push(third);
    drop(open);
    let start = Instant::now();
    while app.state.limits.open_streams() > 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "streams leaked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Per address: three from one address, not four.
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(stream(r, "198.51.100.10", None).await.ok().unwrap());
    }
    let a = stream(r, "198.51.100.10", None).await.unwrap_err();
    assert_limited(&a, "a fourth stream from one address");
    assert!(a.body["detail"].as_str().unwrap().contains("your address"));
}

/// `trellis serve` under `ulimit -n`, so that file descriptors run out.
fn serve_with_few_files(dir: &str, port: u16, db_url: Option<&str>, files: u32) -> Server {
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -n {files} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_trellis"))
        .args(["serve", dir, "--port", &port.to_string(), "--no-watch"])
        .env_remove("DATABASE_URL")
        .env_remove("TRELLIS_PORT")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if let Some(url) = db_url {
        cmd.args(["--database-url", url]);
    }
    Server(cmd.spawn().expect("spawn serve under ulimit"))
}

async fn running_out_of_file_descriptors_does_not_stop_the_server(db: Db) {
    use std::io::Write;
    let project = common::project(&[
        (
            "trellis.yaml",
            "name: Files\nlimits:\n  streams: { per_address: 1000, total: 1000 }\n  connections: { per_address: 1000 }\n",
        ),
        ("models/note.yaml", "entity: note\nfields:\n  body: text\n"),
    ]);
    let dir = project.path().to_str().unwrap().to_string();
    let test_db = TestDb::new(db).await;
    let url = (db == Db::Postgres).then_some(test_db.url.as_str());
    let port = free_port();
    let mut server = serve_with_few_files(&dir, port, url, 128);
    wait_healthy(&mut server, port);

    // Event streams and idle connections, far past what the process may open.
    // Once the server stops accepting, its listen queue fills and then a connect
    // waits for a place: stop there.
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut held = Vec::new();
    for i in 0..400 {
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        else {
            break;
        };
        if i % 2 == 0 {
            let _ = s.write_all(
                b"GET /api/notes/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n",
            );
        }
        held.push(s);
    }
    // Let the server try to accept them all.
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(held);

    // Still running, and serving again.
    let start = Instant::now();
    loop {
        if let Some((200, body)) = http(port, "GET", "/_/health", None) {
            assert_eq!(body, json!({ "status": "ok" }));
            break;
        }
        assert!(
            server.0.try_wait().unwrap().is_none(),
            "the server exited when it ran out of file descriptors"
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the server never answered again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        http(
            port,
            "POST",
            "/api/notes",
            Some(&json!({ "body": "after" }))
        )
        .unwrap()
        .0,
        201
    );
    // It did run out (the test tested something), and said so.
    let _ = server.0.kill();
    let _ = server.0.wait();
    let mut err = String::new();
    if let Some(mut e) = server.0.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(
        err.contains("cannot accept a connection"),
        "the descriptors never ran out: {err}"
    );
}

/// Found while playing the attacker: requests are rate limited, but connections
/// were not; one address opening connections faster than the header timeout
/// closes them could take every file descriptor. Now each address may hold
/// `limits.connections.per_address` at once.
async fn one_address_cannot_hold_every_connection(db: Db) {
    let project = common::project(&[
        (
            "trellis.yaml",
            "name: Connections\nlimits:\n  connections: { per_address: 5 }\n",
        ),
        ("models/note.yaml", "entity: note\nfields:\n  body: text\n"),
    ]);
    let dir = project.path().to_str().unwrap().to_string();
    let test_db = TestDb::new(db).await;
    let url = (db == Db::Postgres).then_some(test_db.url.as_str());
    let port = free_port();
    let mut server = common::process::serve(&dir, port, url);
    wait_healthy(&mut server, port);
    // Five idle connections are the address's share; the server accepts in order,
    // so the sixth is closed at once, without an answer.
    let held: Vec<std::net::TcpStream> = (0..5)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    assert_eq!(
        http(port, "GET", "/_/health", None),
        None,
        "a sixth connection from the same address"
    );
    drop(held);
    let start = Instant::now();
    loop {
        if let Some((200, _)) = http(port, "GET", "/_/health", None) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "closed connections never gave their places back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(server);
}

async fn status_details_are_for_admins(db: Db) {
    let app = TestApp::root(db).await;
    let minimal = json!({ "status": "ok" });
    let anon = app.anonymous().get("/_/status").await;
    assert_eq!(anon.status, StatusCode::OK);
    assert_eq!(anon.body, minimal, "anonymous callers");
    let dev = app.token(&uuid::Uuid::now_v7().to_string(), &["contractor"]);
    let res = app.as_user(&dev).get("/_/status").await;
    assert_eq!(res.body, minimal, "a signed-up contractor");
    let res = app.get("/_/status").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["status"], "ok");
    assert!(
        res.body["entities"].as_array().unwrap().len() > 3,
        "{}",
        res.body
    );
    assert!(res.body["diagnostics"].is_array());
    assert!(res.body["webhooks"].is_object());
    // A bad token is refused, not treated as anonymous.
    let res = app.as_user("not.a.token").get("/_/status").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);

    // Without authentication or policies, everything as before.
    let open = TestApp::with_files(
        db,
        &[("models/note.yaml", "entity: note\nfields:\n  body: text\n")],
    )
    .await;
    let res = open.anonymous().get("/_/status").await;
    assert_eq!(res.body["entities"][0]["name"], "note", "{}", res.body);
}

async fn guards_are_told_only_to_callers_who_may_fire(db: Db) {
    let app = TestApp::root(db).await;
    let ann = app
        .seed(
            "users",
            json!({ "email": "ann@acme.example", "display_name": "Ann", "role": "client" }),
        )
        .await;
    let dev = app
        .seed(
            "users",
            json!({ "email": "dev@example.com", "display_name": "Dev" }),
        )
        .await;
    let org = app
        .seed(
            "organizations",
            json!({ "name": "Acme", "slug": "acme", "members": [ann] }),
        )
        .await;
    let project = app
        .seed(
            "projects",
            json!({ "title": "Open work", "client": org, "status": "open" }),
        )
        .await;
    let application = app
        .seed(
            "applications",
            json!({ "project": project, "applicant": dev }),
        )
        .await;
    let path = format!("/api/applications/{application}/transitions");
    let find = |body: &Value, name: &str| {
        body["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
            .unwrap()
    };
    // The applicant may not accept: told only that, not the project's state that
    // `accept`'s guard reads.
    let res = app
        .as_user(&app.token(&dev, &["contractor"]))
        .get(&path)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let accept = find(&res.body, "accept");
    assert_eq!(accept["allowed"], false);
    assert_eq!(
        accept["reasons"],
        json!(["you may not `accept` this application"])
    );
    assert_eq!(find(&res.body, "withdraw")["allowed"], true);
    // The client may: the guard's reason is theirs to see.
    let res = app.as_user(&app.token(&ann, &["client"])).get(&path).await;
    let accept = find(&res.body, "accept");
    assert_eq!(accept["allowed"], false);
    assert_eq!(
        accept["reasons"],
        json!(["Applications are accepted only while their project is in review"])
    );
}

async fn batch_texts_that_look_like_references(db: Db) {
    let app = TestApp::root(db).await;
    let res = app
        .post(
            "/api/batch",
            json!({ "operations": [
                { "op": "create", "entity": "skill", "data": { "name": "$5 off" } },
                { "op": "create", "entity": "skill", "data": { "name": "$$0.id" } },
                { "op": "create", "entity": "skill", "data": { "name": "$5" } },
                { "op": "create", "entity": "skill", "data": { "name": "$0.id and more" } },
                { "op": "create", "entity": "skill", "data": { "name": "Child", "parent": "$0.id" } },
            ] }),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let results = res.body["results"].as_array().unwrap();
    assert_eq!(results[0]["name"], "$5 off");
    assert_eq!(results[1]["name"], "$0.id", "the escape is one `$` fewer");
    assert_eq!(results[2]["name"], "$5");
    assert_eq!(results[3]["name"], "$0.id and more");
    assert_eq!(
        results[4]["parent"], results[0]["id"],
        "references still work"
    );
    // A reference to an operation that has not run is still refused, with the escape.
    let res = app
        .post(
            "/api/batch",
            json!({ "operations": [
                { "op": "create", "entity": "skill", "data": { "name": "$1.id" } },
                { "op": "create", "entity": "skill", "data": { "name": "x" } },
            ] }),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert_eq!(res.body["operation"], 0);
    assert!(
        res.body["detail"].as_str().unwrap().contains("$$1.id"),
        "{}",
        res.body
    );
}

both!(
    requests_are_limited_per_address_and_principal,
    defaults_do_not_limit_normal_use,
    login_guesses_are_counted_before_the_hash,
    signups_are_limited_per_address,
    event_streams_are_capped,
    running_out_of_file_descriptors_does_not_stop_the_server,
    one_address_cannot_hold_every_connection,
    status_details_are_for_admins,
    guards_are_told_only_to_callers_who_may_fire,
    batch_texts_that_look_like_references,
);

/// A client that sends its headers and part of its body, then nothing: after the
/// request deadline (30 s) it is told 408, not 503. Against the real server, so
/// the body is hyper's.
async fn a_slow_body_gets_408(db: Db) {
    use std::io::{Read, Write};
    let project = common::project(&[("models/note.yaml", "entity: note\nfields:\n  body: text\n")]);
    let dir = project.path().to_str().unwrap().to_string();
    let test_db = TestDb::new(db).await;
    let url = (db == Db::Postgres).then_some(test_db.url.as_str());
    let port = free_port();
    let mut server = common::process::serve(&dir, port, url);
    wait_healthy(&mut server, port);
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
        s.write_all(
            b"POST /api/notes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"body\": ",
        )
        .unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{answer}"
    );
    assert!(
        answer.contains("https://trellis.dev/problems/body-timeout"),
        "{answer}"
    );
    assert!(answer.contains("did not arrive within 30 s"), "{answer}");
    drop(server);
}
both!(a_slow_body_gets_408);
