//! `POST /api/batch`: all or nothing, references between operations, each operation
//! checked as if alone. On SQLite and PostgreSQL.

mod common;

use axum::http::StatusCode;
use common::{Db, TestApp};
use serde_json::{Value, json};

async fn writes_all_or_nothing(db: Db) {
    let app = TestApp::root(db).await;
    let rust = app.create("skills", json!({ "name": "Rust" })).await;
    let res = app
        .post(
            "/api/batch",
            json!({ "operations": [
                { "op": "create", "entity": "organization", "data": { "name": "Acme", "slug": "acme" } },
                { "op": "create", "entity": "project", "data": { "title": "Launch", "client": "$0.id", "skills": [rust] } },
                { "op": "update", "entity": "projects", "id": "$1.id", "data": { "budget": "250" }, "if_match": 1 },
                { "op": "create", "entity": "skill", "data": { "name": "Temporary" } },
                { "op": "delete", "entity": "skill", "id": "$3.id" }
            ] }),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let results = res.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    assert_eq!(
        results[1]["client"], results[0]["id"],
        "a reference to an earlier result"
    );
    assert_eq!(results[1]["skills"], json!([rust]));
    assert_eq!(results[2]["budget"], "250.00");
    assert_eq!(
        results[2]["status"], "draft",
        "a new project starts in its initial state"
    );
    assert_eq!(results[2]["version"], 2);
    assert_eq!(results[4]["deleted"], true);
    assert_eq!(app.rows("organization").await, 1);
    assert_eq!(app.rows("project").await, 1);
    assert_eq!(
        app.rows("skill").await,
        1,
        "created and deleted within the batch"
    );

    // A failure in the middle: nothing of the batch stays, and the problem names it.
    let res = app
        .post(
            "/api/batch",
            json!({ "operations": [
                { "op": "create", "entity": "organization", "data": { "name": "Globex", "slug": "globex" } },
                { "op": "create", "entity": "project", "data": { "title": "Fine project", "client": "$0.id" } },
                { "op": "create", "entity": "project", "data": { "title": "x", "client": "$0.id", "statuss": "open" } }
            ] }),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(res.body["operation"], 2);
    assert!(
        res.body["detail"]
            .as_str()
            .unwrap()
            .starts_with("operation 2 failed")
    );
    assert!(res.body["errors"].as_array().unwrap().len() >= 2);
    assert_eq!(
        app.rows("organization").await,
        1,
        "the first operations were rolled back"
    );
    assert_eq!(app.rows("project").await, 1);

    // A database-level failure (a unique value) in a later operation rolls back too.
    let res = app
        .post(
            "/api/batch",
            json!({ "operations": [
                { "op": "create", "entity": "skill", "data": { "name": "Go" } },
                { "op": "create", "entity": "organization", "data": { "name": "Acme", "slug": "acme-2" } }
            ] }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    assert_eq!(res.body["operation"], 1);
    assert_eq!(app.rows("skill").await, 1);
    // And the store is still usable afterwards.
    assert_eq!(
        app.create("skills", json!({ "name": "After" })).await.len(),
        36
    );
}

async fn mistakes_and_limits(db: Db) {
    let app = TestApp::root(db).await;
    let cases: Vec<(Value, StatusCode, Option<i64>)> = vec![
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY, None),
        (
            json!({ "operations": [{ "op": "create", "entity": "nothing", "data": {} }] }),
            StatusCode::BAD_REQUEST,
            Some(0),
        ),
        (
            json!({ "operations": [{ "op": "upsert", "entity": "skill", "data": {} }] }),
            StatusCode::BAD_REQUEST,
            Some(0),
        ),
        (
            json!({ "operations": [{ "op": "create", "entity": "skill", "data": { "name": "A", "parent": "$1.id" } }] }),
            StatusCode::BAD_REQUEST,
            Some(0),
        ),
        (
            json!({ "operations": [{ "op": "update", "entity": "skill", "id": "nope", "data": {} }] }),
            StatusCode::BAD_REQUEST,
            Some(0),
        ),
        (
            json!({ "operations": [{ "op": "delete", "entity": "skill", "id": uuid::Uuid::now_v7() }] }),
            StatusCode::NOT_FOUND,
            Some(0),
        ),
        (
            json!({ "operations": [{ "op": "create", "entity": "skill", "data": {}, "extra": 1 }] }),
            StatusCode::BAD_REQUEST,
            Some(0),
        ),
    ];
    for (body, status, operation) in cases {
        let res = app.post("/api/batch", body.clone()).await;
        assert_eq!(res.status, status, "{body}: {}", res.body);
        if let Some(i) = operation {
            assert_eq!(res.body["operation"], i, "{body}");
        }
    }
    let many: Vec<Value> = (0..101)
        .map(|i| json!({ "op": "create", "entity": "skill", "data": { "name": format!("s{i}") } }))
        .collect();
    let res = app.post("/api/batch", json!({ "operations": many })).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(app.rows("skill").await, 0);
}

async fn each_operation_is_checked_like_alone(db: Db) {
    let app = TestApp::root(db).await;
    let org = app
        .create("organizations", json!({ "name": "Acme", "slug": "acme" }))
        .await;
    let dev = app.as_user(&app.token(&uuid::Uuid::now_v7().to_string(), &["contractor"]));
    // Skills are read-only for contractors; projects are not theirs to create.
    let res = dev
        .post(
            "/api/batch",
            json!({ "operations": [
                { "op": "create", "entity": "project", "data": { "title": "Mine", "client": org } }
            ] }),
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    assert_eq!(res.body["operation"], 0);
    assert_eq!(app.rows("project").await, 0);
    // Field rules too: a contractor may not choose their application's applicant.
    let project = app
        .seed(
            "projects",
            json!({ "title": "Open work", "client": org, "status": "open" }),
        )
        .await;
    let someone = uuid::Uuid::now_v7().to_string();
    let res = dev
        .post(
            "/api/batch",
            json!({ "operations": [
                { "op": "create", "entity": "application", "data": { "project": project, "applicant": someone } }
            ] }),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(res.body["operation"], 0);
    assert_eq!(res.body["errors"][0]["pointer"], "/applicant");
    // Nor its status, which the workflow keeps.
    let res = dev
        .post(
            "/api/batch",
            json!({ "operations": [
                { "op": "create", "entity": "application", "data": { "project": project, "status": "accepted" } }
            ] }),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(res.body["operation"], 0);
    assert_eq!(res.body["errors"][0]["pointer"], "/status");
    assert!(
        res.body["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("kept by the workflow")
    );
    assert_eq!(app.rows("application").await, 0);
    let res = app
        .anonymous()
        .post(
            "/api/batch",
            json!({ "operations": [
        { "op": "create", "entity": "skill", "data": { "name": "X" } }
    ] }),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

both!(
    writes_all_or_nothing,
    mistakes_and_limits,
    each_operation_is_checked_like_alone
);
