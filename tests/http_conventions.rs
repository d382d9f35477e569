//! The HTTP conventions of every answer (docs/http.md), on SQLite and PostgreSQL:
//! response compression, `ETag` / `If-None-Match` → 304, `If-Match` on DELETE,
//! `X-Request-Id`, CORS, `Retry-After`; and what a caller cannot do with them.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Method, Request, StatusCode};
use common::{Db, Resp, TestApp, TestAppRouter};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const FILES: &[(&str, &str)] = &[
    (
        "trellis.yaml",
        "name: Conventions\ncors: { origins: [\"https://app.example\"] }\nauth:\n  jwt: { algorithm: HS256, secret_env: S }\nlimits:\n  requests: { per_minute: 60, burst: 2 }\n  streams: { total: 1 }\n",
    ),
    (
        "models/task.yaml",
        "entity: task\nfields:\n  title: { type: string, required: true }\n  owner: string\n  secret: string\n  status: { type: enum, values: [open, done] }\n  board: { type: ref, to: board }\n",
    ),
    (
        "models/board.yaml",
        "entity: board\nfields:\n  name: string\n",
    ),
    (
        "policies/board.yaml",
        "entity: board\nrules:\n  - roles: [admin]\n    allow: [\"*\"]\n",
    ),
    (
        "policies/task.yaml",
        "entity: task\nrules:\n  - roles: [admin]\n    allow: [\"*\"]\n  - roles: [member]\n    allow: [list, read, transition.finish]\n    where: owner = user.id\nfields:\n  secret: { read: { roles: [admin] } }\n",
    ),
    (
        "workflows/task.yaml",
        "entity: task\nfield: status\ninitial: open\nstates:\n  open: { label: Open }\n  done: { label: Done, final: true }\ntransitions:\n  finish: { label: Finish, from: open, to: done }\n",
    ),
];

async fn app(db: Db) -> TestApp {
    TestApp::with_files(db, FILES).await
}

/// `n` tasks of `owner`, with enough text that a page of them is over a kilobyte.
async fn tasks(app: &TestApp, owner: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            app.create(
                "tasks",
                json!({ "title": format!("Task {i} of {owner}: {}", "words ".repeat(20)), "owner": owner, "secret": format!("s{i}") }),
            )
            .await,
        );
    }
    ids
}

fn decode(coding: &str, raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => {
            flate2::read::GzDecoder::new(raw)
                .read_to_end(&mut out)
                .expect("gzip");
        }
        "br" => {
            brotli::Decompressor::new(raw, 4096)
                .read_to_end(&mut out)
                .expect("br");
        }
        "zstd" => out = zstd::stream::decode_all(raw).expect("zstd"),
        other => panic!("no decoder for {other}"),
    }
    out
}

async fn get_with(client: &TestAppRouter, path: &str, headers: &[(&str, &str)]) -> Resp {
    client.call(Method::GET, path, None, headers).await
}

/// A request as it arrives over a connection from `peer` (the rate limits count
/// only those).
fn from_peer(peer: &str, method: Method, path: &str, token: Option<&str>) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let mut req = req.body(Body::empty()).unwrap();
    let addr: SocketAddr = format!("{peer}:40000").parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

async fn send(app: &TestApp, req: Request<Body>) -> (axum::http::Response<Body>, Option<String>) {
    let res = app.client.router.clone().oneshot(req).await.unwrap();
    let id = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (res, id)
}

async fn body_json(res: axum::http::Response<Body>) -> Value {
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

fn is_uuid_v7(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok_and(|u| u.get_version_num() == 7)
}

async fn json_answers_are_compressed_as_asked(db: Db) {
    let root = TestApp::root(db).await;
    let plain = root.get("/openapi.json").await;
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(plain.header("content-encoding"), None);
    let mut sizes = vec![("identity", plain.raw.len())];
    for coding in ["gzip", "br", "zstd"] {
        let res = get_with(&root, "/openapi.json", &[("accept-encoding", coding)]).await;
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(res.header("content-encoding"), Some(coding));
        assert!(
            res.headers
                .get_all("vary")
                .iter()
                .any(|v| v.to_str().unwrap().contains("accept-encoding")),
            "{:?}",
            res.headers
        );
        assert!(res.raw.len() * 4 < plain.raw.len(), "{coding} compresses");
        assert_eq!(decode(coding, &res.raw), plain.raw, "{coding} round-trips");
        sizes.push((coding, res.raw.len()));
    }
    eprintln!("/openapi.json bytes: {sizes:?}");
    // q-values: a coding the client refuses is not used; none acceptable, none used.
    let res = get_with(
        &root,
        "/openapi.json",
        &[("accept-encoding", "gzip;q=0, zstd")],
    )
    .await;
    assert_eq!(res.header("content-encoding"), Some("zstd"));
    let res = get_with(&root, "/openapi.json", &[("accept-encoding", "identity")]).await;
    assert_eq!(res.header("content-encoding"), None);
    assert_eq!(res.raw, plain.raw);

    // Answers that hold tokens are never compressed (their size must not leak a
    // token beside text the client chose) nor kept by caches.
    let res = root
        .anonymous()
        .call(
            Method::POST,
            "/auth/signup",
            Some(
                json!({ "email": "zip@example.com", "password": "correct horse", "display_name": "Zip", "bio": "guess ".repeat(400) })
                    .to_string()
                    .into_bytes(),
            ),
            &[("accept-encoding", "gzip, br, zstd")],
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert!(
        res.raw.len() > 2048,
        "large enough to be compressed otherwise"
    );
    assert!(res.body["access_token"].is_string(), "{}", res.body);
    assert_eq!(res.header("content-encoding"), None);
    assert_eq!(res.header("cache-control"), Some("no-store"));
    let res = root
        .anonymous()
        .call(
            Method::POST,
            "/auth/login",
            Some(
                json!({ "email": "zip@example.com", "password": "correct horse" })
                    .to_string()
                    .into_bytes(),
            ),
            &[("accept-encoding", "gzip")],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.header("content-encoding"), None);
    assert_eq!(res.header("cache-control"), Some("no-store"));

    // A list over a kilobyte is compressed; a small answer is not.
    let app = app(db).await;
    tasks(&app, "u1", 8).await;
    let plain = app.get("/api/tasks").await;
    assert!(plain.raw.len() > 1024);
    let res = get_with(&app, "/api/tasks", &[("accept-encoding", "br")]).await;
    assert_eq!(res.header("content-encoding"), Some("br"));
    assert_eq!(decode("br", &res.raw), plain.raw);
    let res = get_with(&app, "/api/tasks?limit=1", &[("accept-encoding", "gzip")]).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.raw.len() < 1024);
    assert_eq!(
        res.header("content-encoding"),
        None,
        "small answers stay plain"
    );

    // An event stream is never compressed, and its events arrive one by one.
    let req = Request::get("/api/tasks/events")
        .header(
            "authorization",
            format!("Bearer {}", app.client.token.as_deref().unwrap()),
        )
        .header("accept-encoding", "gzip, br, zstd")
        .body(Body::empty())
        .unwrap();
    let res = app.client.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert!(res.headers().get("content-encoding").is_none());
    assert!(res.headers().get("x-request-id").is_some());
    let mut body = res.into_body();
    app.create("tasks", json!({ "title": "streamed", "owner": "u1" }))
        .await;
    let mut text = String::new();
    while !text.contains("streamed") {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("the event arrives while the stream stays open")
            .expect("open")
            .expect("a frame");
        if let Ok(data) = frame.into_data() {
            text.push_str(std::str::from_utf8(&data).expect("plain text, not compressed"));
        }
    }
}

async fn conditional_gets_answer_304(db: Db) {
    let app = app(db).await;
    let ids = tasks(&app, "u1", 3).await;
    let path = format!("/api/tasks/{}", ids[0]);

    // A record: its ETag is its version.
    let res = app.get(&path).await;
    assert_eq!(res.header("etag"), Some("\"1\""));
    assert_eq!(res.header("cache-control"), Some("private, no-cache"));
    for tag in ["\"1\"", "W/\"1\"", "\"7\", \"1\"", "*"] {
        let res = get_with(&app, &path, &[("if-none-match", tag)]).await;
        assert_eq!(res.status, StatusCode::NOT_MODIFIED, "{tag}");
        assert!(res.raw.is_empty(), "a 304 has no body");
        assert_eq!(res.header("etag"), Some("\"1\""));
        assert!(res.header("x-request-id").is_some());
    }
    let res = app.patch(&path, json!({ "title": "changed" }), &[]).await;
    assert_eq!(res.status, StatusCode::OK);
    let res = get_with(&app, &path, &[("if-none-match", "\"1\"")]).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("etag"), Some("\"2\""));
    assert_eq!(res.body["title"], "changed");

    // A list: a weak hash of the page; 304 until the page changes.
    let res = app.get("/api/tasks").await;
    let etag = res.header("etag").expect("a list has an ETag").to_string();
    assert!(etag.starts_with("W/\""), "{etag}");
    let res = get_with(&app, "/api/tasks", &[("if-none-match", &etag)]).await;
    assert_eq!(res.status, StatusCode::NOT_MODIFIED);
    assert!(res.raw.is_empty());
    assert_eq!(res.header("etag"), Some(etag.as_str()));
    // Another query is another page.
    let res = get_with(&app, "/api/tasks?limit=1", &[("if-none-match", &etag)]).await;
    assert_eq!(res.status, StatusCode::OK);
    app.create("tasks", json!({ "title": "new", "owner": "u1" }))
        .await;
    let res = get_with(&app, "/api/tasks", &[("if-none-match", &etag)]).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_ne!(res.header("etag"), Some(etag.as_str()));

    // A compressed answer has the same validator as the plain one.
    let plain = app.get("/api/tasks").await;
    let zipped = get_with(&app, "/api/tasks", &[("accept-encoding", "gzip")]).await;
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert_eq!(zipped.header("etag"), plain.header("etag"));
    let res = get_with(
        &app,
        "/api/tasks",
        &[
            ("accept-encoding", "gzip"),
            ("if-none-match", plain.header("etag").unwrap()),
        ],
    )
    .await;
    assert_eq!(res.status, StatusCode::NOT_MODIFIED);
    assert!(res.raw.is_empty());

    // Aggregates and the OpenAPI document too.
    let res = app.get("/api/tasks/aggregate?count=true").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let tag = res.header("etag").unwrap().to_string();
    let res = get_with(
        &app,
        "/api/tasks/aggregate?count=true",
        &[("if-none-match", &tag)],
    )
    .await;
    assert_eq!(res.status, StatusCode::NOT_MODIFIED);
    let res = app.get("/openapi.json").await;
    let tag = res.header("etag").unwrap().to_string();
    assert_eq!(res.header("cache-control"), Some("no-cache"));
    let res = get_with(&app, "/openapi.json", &[("if-none-match", &tag)]).await;
    assert_eq!(res.status, StatusCode::NOT_MODIFIED);
    assert!(res.raw.is_empty());

    // `fields` picks from the same version: 304 (when the version is among them;
    // without it the answer has no validator at all).
    let res = get_with(
        &app,
        &format!("{path}?fields=title,version"),
        &[("if-none-match", "\"2\"")],
    )
    .await;
    assert_eq!(res.status, StatusCode::NOT_MODIFIED);
    let res = get_with(
        &app,
        &format!("{path}?fields=title"),
        &[("if-none-match", "\"2\"")],
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("etag"), None);
    // With `expand`, the version does not vouch for the related records, which
    // change on their own: always 200.
    let board = app.create("boards", json!({ "name": "Before" })).await;
    app.patch(&path, json!({ "board": board }), &[]).await;
    let expanded = format!("{path}?expand=board");
    let res = app.get(&expanded).await;
    assert_eq!(res.header("etag"), Some("\"3\""));
    app.patch(
        &format!("/api/boards/{board}"),
        json!({ "name": "After" }),
        &[],
    )
    .await;
    let res = get_with(&app, &expanded, &[("if-none-match", "\"3\"")]).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.body.to_string().contains("After"), "{}", res.body);
}

/// A validator is only ever compared with what this caller would get now: another
/// caller's ETag reveals nothing, and a record the caller may not see is a 404.
async fn validators_are_per_caller(db: Db) {
    let app = app(db).await;
    let alice = app.token("u1", &["member"]);
    let bob = app.token("u2", &["member"]);
    let a = tasks(&app, "u1", 2).await;
    tasks(&app, "u2", 2).await;

    // The administrator sees the hidden field, alice does not: her page of the
    // same rows has another validator, and the administrator's is no use to her.
    let admin_page = app.get("/api/tasks?filter=owner%20%3D%20'u1'").await;
    let admin_tag = admin_page.header("etag").unwrap().to_string();
    let hers = get_with(
        &app.as_user(&alice),
        "/api/tasks?filter=owner%20%3D%20'u1'",
        &[("if-none-match", &admin_tag)],
    )
    .await;
    assert_eq!(hers.status, StatusCode::OK);
    assert_eq!(hers.body["items"].as_array().unwrap().len(), 2);
    assert!(hers.body["items"][0].get("secret").is_none());
    assert_ne!(hers.header("etag"), Some(admin_tag.as_str()));
    let alice_tag = hers.header("etag").unwrap().to_string();

    // Bob sends alice's validator: he gets his own page, never a 304.
    let his = get_with(
        &app.as_user(&bob),
        "/api/tasks",
        &[("if-none-match", &alice_tag)],
    )
    .await;
    assert_eq!(his.status, StatusCode::OK);
    assert!(
        his.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["owner"] == "u2")
    );
    // An empty page is not a wildcard: an anonymous caller gets a 401, not a 304.
    let res = get_with(&app.anonymous(), "/api/tasks", &[("if-none-match", "*")]).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);

    // Alice's record: bob cannot learn its version by probing with If-None-Match.
    let path = format!("/api/tasks/{}", a[0]);
    for tag in ["\"1\"", "\"2\"", "*"] {
        let res = get_with(&app.as_user(&bob), &path, &[("if-none-match", tag)]).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{tag}");
        assert_eq!(res.header("etag"), None);
    }
    let res = get_with(&app.as_user(&alice), &path, &[("if-none-match", "\"1\"")]).await;
    assert_eq!(res.status, StatusCode::NOT_MODIFIED);
    assert!(
        res.headers
            .get_all("vary")
            .iter()
            .any(|v| v.to_str().unwrap().contains("authorization"))
    );
}

async fn delete_honours_if_match(db: Db) {
    let app = app(db).await;
    let ids = tasks(&app, "u1", 3).await;
    let path = format!("/api/tasks/{}", ids[0]);
    app.patch(&path, json!({ "title": "v2" }), &[]).await;

    // Stale: 412 with the current version; the record stays.
    let res = app
        .call(Method::DELETE, &path, None, &[("if-match", "\"1\"")])
        .await;
    assert_eq!(res.status, StatusCode::PRECONDITION_FAILED, "{}", res.body);
    assert_eq!(res.header("content-type"), Some("application/problem+json"));
    assert_eq!(
        res.body["type"],
        "https://trellis.dev/problems/stale-version"
    );
    assert_eq!(res.body["current_version"], 2);
    assert_eq!(res.body["request_id"], res.header("x-request-id").unwrap());
    assert_eq!(app.get(&path).await.status, StatusCode::OK);
    assert_eq!(app.rows("task").await, 3);

    // Malformed: 400, the record stays.
    let res = app
        .call(Method::DELETE, &path, None, &[("if-match", "yesterday")])
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.rows("task").await, 3);

    // Current (any form), or `*`, or none: deleted.
    let res = app
        .call(Method::DELETE, &path, None, &[("if-match", "W/\"2\"")])
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.body);
    assert_eq!(app.get(&path).await.status, StatusCode::NOT_FOUND);
    let res = app
        .call(
            Method::DELETE,
            &format!("/api/tasks/{}", ids[1]),
            None,
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    let res = app.delete(&format!("/api/tasks/{}", ids[2])).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert_eq!(app.rows("task").await, 0);

    // In a batch, `if_match` of a delete holds the same way: stale, the whole
    // batch is refused and rolled back.
    let keep = tasks(&app, "u1", 1).await.remove(0);
    app.patch(&format!("/api/tasks/{keep}"), json!({ "title": "v2" }), &[])
        .await;
    let res = app
        .post(
            "/api/batch",
            json!({ "operations": [
                { "op": "create", "entity": "task", "data": { "title": "made in the batch" } },
                { "op": "delete", "entity": "task", "id": keep, "if_match": 1 }
            ] }),
        )
        .await;
    assert_eq!(res.status, StatusCode::PRECONDITION_FAILED, "{}", res.body);
    assert_eq!(res.body["current_version"], 2);
    assert_eq!(res.body["operation"], 1);
    assert_eq!(app.rows("task").await, 1);
    let res = app
        .post(
            "/api/batch",
            json!({ "operations": [{ "op": "delete", "entity": "task", "id": keep, "if_match": 2 }] }),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(app.rows("task").await, 0);

    // A caller who may not see the record learns nothing from If-Match: 404; one
    // who may read but not delete it: 403 at the right version.
    let t = tasks(&app, "u1", 1).await.remove(0);
    let path = format!("/api/tasks/{t}");
    let bob = app.as_user(&app.token("u2", &["member"]));
    let res = bob
        .call(Method::DELETE, &path, None, &[("if-match", "\"5\"")])
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let alice = app.as_user(&app.token("u1", &["member"]));
    let res = alice
        .call(Method::DELETE, &path, None, &[("if-match", "\"1\"")])
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    assert_eq!(app.rows("task").await, 1);
}

async fn every_answer_has_a_request_id(db: Db) {
    let app = app(db).await;
    let ids = tasks(&app, "u1", 1).await;

    // None given: a new UUID v7, different each time.
    let a = app.get("/api/tasks").await;
    let b = app.get("/api/tasks").await;
    let (a, b) = (
        a.header("x-request-id").unwrap(),
        b.header("x-request-id").unwrap(),
    );
    assert!(is_uuid_v7(a) && is_uuid_v7(b), "{a} {b}");
    assert_ne!(a, b);

    // A well-formed one is kept.
    for good in ["req-1", "a.b_c:d-e", &"x".repeat(128)] {
        let res = get_with(&app, "/api/tasks", &[("x-request-id", good)]).await;
        assert_eq!(res.header("x-request-id"), Some(good));
    }

    // A malformed one is replaced, never echoed, in the header or a problem.
    let huge = "x".repeat(8 * 1024);
    for bad in [
        "two words",
        "tab\there",
        "\"quoted\"",
        "<script>",
        "x".repeat(129).as_str(),
        &huge,
        "a/b",
    ] {
        let res = get_with(&app, "/api/nothing-here", &[("x-request-id", bad)]).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND);
        let id = res.header("x-request-id").unwrap();
        assert!(is_uuid_v7(id), "{bad:?} replaced by {id}");
        assert_eq!(res.body["request_id"], id);
        assert!(!String::from_utf8_lossy(&res.raw).contains(bad));
    }
    // Bytes that are not text, and two ids at once: replaced.
    let req = Request::get("/api/tasks")
        .header(
            "x-request-id",
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        )
        .body(Body::empty())
        .unwrap();
    let (_, id) = send(&app, req).await;
    assert!(is_uuid_v7(&id.unwrap()));
    let req = Request::get("/api/tasks")
        .header("x-request-id", "one")
        .header("x-request-id", "two")
        .body(Body::empty())
        .unwrap();
    let (_, id) = send(&app, req).await;
    assert!(is_uuid_v7(&id.unwrap()));

    // Answers made by the router's layers and fallbacks carry it, and problems
    // carry the same id in `request_id`.
    let given = [("x-request-id", "trace-42")];
    let res = get_with(&app, "/nowhere", &given).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.header("x-request-id"), Some("trace-42"));
    assert_eq!(res.body["request_id"], "trace-42");
    let res = app.call(Method::PUT, "/api/tasks", None, &given).await;
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.body["request_id"], "trace-42");
    let big = vec![b' '; trellis::http::MAX_BODY_BYTES + 1];
    let res = app
        .call(Method::POST, "/api/tasks", Some(big), &given)
        .await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.body["request_id"], "trace-42");
    let res = app
        .anonymous()
        .call(
            Method::GET,
            "/api/tasks",
            None,
            &[("x-request-id", "anon-1"), ("authorization", "Bearer nope")],
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.header("x-request-id"), Some("anon-1"));
    assert_eq!(res.body["request_id"], "anon-1");
    // A 422 with field errors: still one object, with every member.
    let res = app
        .call(Method::POST, "/api/tasks", Some(b"{}".to_vec()), &given)
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.body["request_id"], "trace-42");
    assert_eq!(res.pointers(), ["/title"]);

    // A transition keeps the request's id in its history: the given one, or the
    // one that replaced a malformed one.
    let path = format!("/api/tasks/{}", ids[0]);
    let res = app
        .call(
            Method::POST,
            &format!("{path}/transitions/finish"),
            None,
            &[("x-request-id", "bad id")],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let id = res.header("x-request-id").unwrap().to_string();
    assert!(is_uuid_v7(&id));
    let history = app.get(&format!("{path}/history")).await;
    assert_eq!(history.body["items"][0]["request_id"], id.as_str());
}

async fn cors_allows_and_exposes_what_browsers_need(db: Db) {
    let app = app(db).await;
    let res = app
        .anonymous()
        .call(
            Method::OPTIONS,
            "/api/tasks/0190b3a4-0000-7000-8000-000000000000",
            None,
            &[
                ("origin", "https://app.example"),
                ("access-control-request-method", "DELETE"),
                (
                    "access-control-request-headers",
                    "authorization, content-type, if-match, if-none-match, x-request-id",
                ),
                ("x-request-id", "preflight-1"),
            ],
        )
        .await;
    assert!(res.status.is_success(), "{}", res.status);
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(res.header("access-control-max-age"), Some("7200"));
    let allowed = res.header("access-control-allow-headers").unwrap();
    for h in [
        "authorization",
        "content-type",
        "if-match",
        "if-none-match",
        "x-request-id",
    ] {
        assert!(allowed.contains(h), "{h} not in {allowed}");
    }
    assert!(
        res.header("access-control-allow-methods")
            .unwrap()
            .contains("DELETE")
    );
    assert_eq!(res.header("x-request-id"), Some("preflight-1"));

    let res = get_with(&app, "/api/tasks", &[("origin", "https://app.example")]).await;
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let exposed = res.header("access-control-expose-headers").unwrap();
    for h in [
        "x-request-id",
        "etag",
        "retry-after",
        "ratelimit",
        "ratelimit-policy",
        "location",
    ] {
        assert!(exposed.contains(h), "{h} not in {exposed}");
    }
    // Another origin is not allowed.
    let res = get_with(&app, "/api/tasks", &[("origin", "https://evil.example")]).await;
    assert_eq!(res.header("access-control-allow-origin"), None);
}

async fn retry_after_on_429_and_503(db: Db) {
    let app = app(db).await;
    let token = app.client.token.clone();

    // 429: the request rate of one address (bursts of 2).
    let mut limited = None;
    for _ in 0..5 {
        let (res, id) = send(
            &app,
            from_peer("203.0.113.7", Method::GET, "/api/tasks", token.as_deref()),
        )
        .await;
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((res, id));
            break;
        }
    }
    let (res, id) = limited.expect("the third request in a burst of two is refused");
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert!(res.headers().get("ratelimit").is_some());
    let body = body_json(res).await;
    assert_eq!(body["retry_after"], retry);
    assert_eq!(body["request_id"], id.unwrap().as_str());

    // 503: the server's event streams are all taken (one). Other callers, from
    // other addresses, within their rates.
    let first = app.token("u8", &["admin"]);
    let second = app.token("u9", &["admin"]);
    let open = send(
        &app,
        from_peer(
            "198.51.100.1",
            Method::GET,
            "/api/tasks/events",
            Some(&first),
        ),
    )
    .await;
    assert_eq!(open.0.status(), StatusCode::OK);
    let (res, id) = send(
        &app,
        from_peer(
            "198.51.100.2",
            Method::GET,
            "/api/tasks/events",
            Some(&second),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "5");
    let body = body_json(res).await;
    assert_eq!(body["retry_after"], 5);
    assert_eq!(body["request_id"], id.unwrap().as_str());
    drop(open);
}

/// A request body is never inflated: a compressed one is refused (415, naming the
/// one coding accepted) and, large, refused at the body limit before any reading.
async fn compressed_request_bodies_are_refused(db: Db) {
    let app = app(db).await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, br#"{"title":"zipped"}"#).unwrap();
    let zipped = gz.finish().unwrap();
    let res = app
        .call(
            Method::POST,
            "/api/tasks",
            Some(zipped),
            &[("content-encoding", "gzip")],
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        res.body
    );
    assert_eq!(res.header("accept-encoding"), Some("identity"));
    assert_eq!(
        res.body["type"],
        "https://trellis.dev/problems/unsupported-content-encoding"
    );
    // A bomb: a few kilobytes that would inflate to gigabytes are never inflated;
    // over the body limit, the bytes themselves are refused.
    let big = vec![0u8; trellis::http::MAX_BODY_BYTES + 1];
    let res = app
        .call(
            Method::POST,
            "/api/tasks",
            Some(big),
            &[("content-encoding", "gzip")],
        )
        .await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    let res = app
        .call(
            Method::PATCH,
            "/api/tasks/0190b3a4-0000-7000-8000-000000000000",
            Some(b"{}".to_vec()),
            &[("content-encoding", "br")],
        )
        .await;
    assert_eq!(res.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // `identity` is no coding at all.
    let res = app
        .call(
            Method::POST,
            "/api/tasks",
            Some(br#"{"title":"plain"}"#.to_vec()),
            &[("content-encoding", "identity")],
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    assert_eq!(app.rows("task").await, 1);
}

both!(
    json_answers_are_compressed_as_asked,
    conditional_gets_answer_304,
    validators_are_per_caller,
    delete_honours_if_match,
    every_answer_has_a_request_id,
    cors_allows_and_exposes_what_browsers_need,
    retry_after_on_429_and_503,
    compressed_request_bodies_are_refused,
);
