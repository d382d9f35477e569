//! The opening every entity route shares (http/extract.rs): who calls, then which
//! collection, then which record, each refusal with its own problem and before
//! anything the handler reads itself (query, `If-Match`, body).

mod common;

use axum::http::{Method, StatusCode};
use common::{Db, TestApp};
use serde_json::json;

async fn refusals_come_in_order(db: Db) {
    let app = TestApp::root(db).await;

    // An unknown collection, with the nearest name.
    let res = app.get("/api/projets").await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.header("content-type"), Some("application/problem+json"));
    assert_eq!(res.body["type"], "https://trellis.dev/problems/no-route");
    assert_eq!(
        res.body["detail"],
        "there is no collection `/api/projets`; did you mean /api/projects?"
    );
    for path in ["/api/projets/aggregate", "/api/projets/events"] {
        let res = app.get(path).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            res.body["detail"],
            "there is no collection `/api/projets`; did you mean /api/projects?"
        );
    }

    // A malformed id is an unknown record.
    let res = app.get("/api/projects/not-an-id").await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(
        res.body["detail"],
        "there is no project with id `not-an-id`"
    );
    let res = app.delete("/api/projects/not-an-id").await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(
        res.body["detail"],
        "there is no project with id `not-an-id`"
    );

    // The caller first: a bad token is a 401 whatever the path names.
    let basic = [("authorization", "Basic YTpi")];
    for (method, path) in [
        (Method::GET, "/api/projets"),
        (Method::GET, "/api/projects/not-an-id"),
        (Method::POST, "/api/projets"),
        (Method::GET, "/api/projets/events"),
    ] {
        let res = app.call(method.clone(), path, None, &basic).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(
            res.body["detail"],
            "the Authorization header must be `Bearer <token>`"
        );
        assert_eq!(
            res.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\"")
        );
    }
    let res = app
        .call(
            Method::GET,
            "/api/projects",
            None,
            &[("authorization", "Bearer not.a.token")],
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.body["detail"], "the token cannot be read");

    // The collection and the record before the body and `If-Match`.
    let res = app
        .call(
            Method::POST,
            "/api/projets",
            Some(b"{not json".to_vec()),
            &[],
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let res = app
        .patch(
            "/api/projects/not-an-id",
            json!({ "name": "x" }),
            &[("if-match", "not a version")],
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(
        res.body["detail"],
        "there is no project with id `not-an-id`"
    );

    // A path that is not UTF-8 is refused before anything else.
    let res = app.get("/api/%FF").await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
}

both!(refusals_come_in_order);
