//! Resource limits: each oversized request is a 4xx problem naming the limit, never
//! exhausted memory or a hang. On SQLite and PostgreSQL.

mod common;

use axum::http::{Method, StatusCode};
use common::{Db, TestApp};
use serde_json::json;
use trellis::engine::cond::parse::{MAX_DEPTH, MAX_LENGTH};
use trellis::engine::query::MAX_EXPAND_DEPTH;

fn enc(s: &str) -> String {
    serde_urlencoded::to_string([("x", s)]).unwrap()[2..].to_string()
}

async fn oversized_requests_are_refused(db: Db) {
    let app = TestApp::root(db).await;

    // A body over 1 MiB: 413, before it is parsed.
    let big = format!(
        "{{\"name\": \"{}\"}}",
        "x".repeat(trellis::http::MAX_BODY_BYTES + 1)
    );
    let res = app
        .call(Method::POST, "/api/skills", Some(big.into_bytes()), &[])
        .await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", res.body);
    assert_eq!(res.header("content-type"), Some("application/problem+json"));

    // A page larger than the maximum.
    let res = app.get("/api/skills?limit=201").await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.body["parameter"], "limit");

    // Expansion deeper than the limit.
    let deep = "client.projects.client.projects";
    assert!(deep.split('.').count() > MAX_EXPAND_DEPTH);
    let res = app.get(&format!("/api/projects?expand={deep}")).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert_eq!(res.body["parameter"], "expand");
    assert!(
        res.body["detail"].as_str().unwrap().contains("deeper than"),
        "{}",
        res.body
    );

    // A filter longer than the limit, and one nested deeper than the limit.
    let long = format!("title = '{}'", "a".repeat(MAX_LENGTH));
    let res = app
        .get(&format!("/api/projects?filter={}", enc(&long)))
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert_eq!(res.body["parameter"], "filter");
    let nested = format!(
        "{}remote{}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    let res = app
        .get(&format!("/api/projects?filter={}", enc(&nested)))
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert_eq!(res.body["parameter"], "filter");

    // Too many operations in one batch; nothing is written.
    let ops: Vec<_> = (0..101)
        .map(|i| json!({ "op": "create", "entity": "skill", "data": { "name": format!("s{i}") } }))
        .collect();
    let res = app.post("/api/batch", json!({ "operations": ops })).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", res.body);
    assert_eq!(app.rows("skill").await, 0);

    // A history page larger than the maximum.
    let org = app
        .seed("organizations", json!({ "name": "Acme", "slug": "acme" }))
        .await;
    let p = app
        .seed("projects", json!({ "title": "Limits", "client": org }))
        .await;
    let res = app
        .get(&format!("/api/projects/{p}/history?limit=501"))
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
}

both!(oversized_requests_are_refused);
