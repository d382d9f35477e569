//! The CRUD API over the root project, on SQLite and PostgreSQL.

mod common;

use axum::http::{Method, StatusCode};
use common::{Db, TestApp};
use serde_json::{Value, json};

async fn org(app: &TestApp, name: &str) -> String {
    app.create(
        "organizations",
        json!({ "name": name, "slug": name.to_lowercase().replace(' ', "-") }),
    )
    .await
}

async fn create_applies_defaults_and_returns_location(db: Db) {
    let app = TestApp::root(db).await;
    let client = org(&app, "Acme").await;
    let res = app
        .post(
            "/api/projects",
            json!({ "title": "Build an API", "client": client, "budget": "1250.5", "deadline": "2026-12-31" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let id = res.id();
    assert_eq!(
        res.header("location"),
        Some(format!("/api/projects/{id}").as_str())
    );
    assert_eq!(res.header("etag"), Some("\"1\""));
    assert_eq!(res.header("content-type"), Some("application/json"));
    let b = &res.body;
    assert_eq!(b["version"], 1);
    assert_eq!(b["status"], "draft", "the workflow's initial state applied");
    assert_eq!(b["remote"], true, "boolean default applied");
    assert_eq!(b["budget"], "1250.50", "decimal as a string with its scale");
    assert_eq!(b["deadline"], "2026-12-31");
    assert_eq!(b["summary"], serde_json::Value::Null);
    assert_eq!(b["skills"], json!([]));
    assert!(
        b.get("applications").is_none(),
        "inverse fields are not columns"
    );
    // System fields first, in order.
    let keys: Vec<&String> = b.as_object().unwrap().keys().take(5).collect();
    assert_eq!(keys, ["id", "created_at", "updated_at", "version", "title"]);
    assert_eq!(app.rows("project").await, 1);

    let got = app.get(&format!("/api/projects/{id}")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, res.body, "GET returns what POST returned");
    assert_eq!(got.header("etag"), Some("\"1\""));
}

async fn every_field_type_round_trips(db: Db) {
    let app = TestApp::root(db).await;
    let rust = app.create("skills", json!({ "name": "Rust" })).await;
    let sql = app.create("skills", json!({ "name": "SQL" })).await;
    let res = app
        .post(
            "/api/users",
            json!({
                "email": "ada@example.com",
                "display_name": "Ada",
                "bio": "Writes engines.\nLine two.",
                "website": "https://ada.example.com",
                "hourly_rate": "95.5",
                "available": false,
                "last_seen_at": "2026-03-01T09:30:15.123456+01:00",
                "preferences": { "theme": "dark", "langs": ["en", "fr"], "n": 3 },
                "skills": [sql, rust, rust]
            }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let b = &res.body;
    assert_eq!(b["email"], "ada@example.com");
    assert_eq!(b["bio"], "Writes engines.\nLine two.");
    assert_eq!(b["hourly_rate"], "95.50");
    assert_eq!(b["available"], false);
    assert_eq!(
        b["last_seen_at"], "2026-03-01T08:30:15.123456Z",
        "UTC, microseconds kept"
    );
    assert_eq!(
        b["preferences"],
        json!({ "theme": "dark", "langs": ["en", "fr"], "n": 3 })
    );
    // File fields: empty until something is uploaded (`null`, or `[]` for several).
    assert_eq!((&b["avatar"], &b["cv"]), (&Value::Null, &Value::Null));
    let mut expected = vec![rust.clone(), sql.clone()];
    expected.sort();
    assert_eq!(
        b["skills"],
        json!(expected),
        "many: deduplicated, sorted ids"
    );
    let got = app.get(&format!("/api/users/{}", res.id())).await;
    assert_eq!(got.body, res.body);

    let client = org(&app, "Acme").await;
    // `published_at` is written only by the `publish` transition (`write: never`),
    // so the record is seeded, then read back through the API.
    let id = app
        .seed(
            "projects",
            json!({
                "title": "Typed", "client": client, "external_ref": "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
                "published_at": "2026-01-31T23:59:59Z", "contact": "ops@acme.example", "budget": "0"
            }),
        )
        .await;
    let p = app.get(&format!("/api/projects/{id}")).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert_eq!(
        p.body["external_ref"],
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    );
    assert_eq!(p.body["published_at"], "2026-01-31T23:59:59Z");
    assert_eq!(p.body["budget"], "0.00");
    assert_eq!(p.body["attachments"], json!([]));

    let a = app
        .post(
            "/api/applications",
            json!({ "project": p.id(), "applicant": res.id(), "estimated_hours": 12.25, "proposed_rate": "80" }),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body["estimated_hours"], 12.25);
    assert_eq!(a.body["proposed_rate"], "80.00");
    assert_eq!(a.body["status"], "submitted");
    assert!(
        a.body["submitted_at"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z')),
        "default now"
    );

    let r = app
        .post(
            "/api/reviews",
            json!({ "project": p.id(), "author": res.id(), "subject": res.id(), "rating": 5 }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["rating"], 5);
    assert_eq!(r.body["public"], true);
}

async fn validation_reports_every_field(db: Db) {
    let app = TestApp::root(db).await;
    let res = app
        .post(
            "/api/projects",
            json!({
                "title": "ab",
                "budget": "12.345",
                "status": "open",
                "client": "not-a-uuid",
                "remote": "yes",
                "deadline": "2026-02-30",
                "contact": "nobody",
                "statuss": "open",
                "id": "x",
                "applications": []
            }),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(res.header("content-type"), Some("application/problem+json"));
    assert_eq!(res.body["status"], 422);
    assert!(res.body["type"].as_str().unwrap().starts_with("https://"));
    let mut pointers = res.pointers();
    pointers.sort();
    assert_eq!(
        pointers,
        [
            "/applications",
            "/budget",
            "/client",
            "/contact",
            "/deadline",
            "/id",
            "/remote",
            "/status",
            "/statuss",
            "/title"
        ]
    );
    assert!(res.error_for("/statuss").contains("did you mean `status`"));
    assert!(res.error_for("/id").contains("set by the server"));
    assert!(res.error_for("/applications").contains("read-only"));
    assert!(res.error_for("/title").contains("at least 3"));
    assert!(
        res.error_for("/budget")
            .contains("2 digits after the decimal point")
    );
    // The workflow's state field is refused even with an allowed value.
    assert!(
        res.error_for("/status")
            .contains("`status` is kept by the workflow")
    );
    assert!(res.error_for("/remote").contains("true or false"));
    assert!(res.error_for("/deadline").contains("calendar date"));
    assert!(res.error_for("/contact").contains("email"));
    assert_eq!(app.rows("project").await, 0, "nothing written");

    // An enum value outside the list (on an ordinary enum field) names the values.
    let res = app
        .post(
            "/api/users",
            json!({ "email": "eve@example.com", "display_name": "Eve", "role": "boss" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(res.pointers(), ["/role"]);
    assert!(res.error_for("/role").contains("contractor, client, admin"));
    assert_eq!(app.rows("user").await, 0, "nothing written");

    // Required fields, and null for a required field.
    let res = app.post("/api/projects", json!({ "title": null })).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.error_for("/client"), "is required");
    assert!(res.error_for("/title").contains("required"));

    // Ranges, lengths and patterns.
    let res = app
        .post(
            "/api/organizations",
            json!({ "name": "x".repeat(201), "slug": "Not A Slug", "headcount": 0 }),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.error_for("/name").contains("at most 200"));
    assert!(res.error_for("/slug").contains("pattern"));
    assert!(res.error_for("/headcount").contains("at least 1"));
    let res = app
        .post(
            "/api/reviews",
            json!({ "project": uuid::Uuid::now_v7(), "author": uuid::Uuid::now_v7(), "subject": uuid::Uuid::now_v7(), "rating": 6 }),
        )
        .await;
    assert!(res.error_for("/rating").contains("at most 5"));
    let res = app
        .post(
            "/api/users",
            json!({ "email": "a@b.co", "display_name": "A", "hourly_rate": "-1", "website": "ftp://x" }),
        )
        .await;
    assert!(res.error_for("/hourly_rate").contains("at least 0"));
    assert!(res.error_for("/website").contains("http"));
}

async fn malformed_bodies(db: Db) {
    let app = TestApp::root(db).await;
    let res = app
        .call(
            Method::POST,
            "/api/skills",
            Some(b"{\"name\": ".to_vec()),
            &[],
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.header("content-type"), Some("application/problem+json"));
    assert!(
        res.body["detail"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );

    let res = app.post("/api/skills", json!(["Rust"])).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.body["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("JSON object")
    );

    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(1024 * 1024 + 10));
    let res = app
        .call(Method::POST, "/api/skills", Some(big.into_bytes()), &[])
        .await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.header("content-type"), Some("application/problem+json"));

    let res = app
        .call(
            Method::POST,
            "/api/skills",
            Some(b"name=Rust".to_vec()),
            &[("content-type", "application/x-www-form-urlencoded")],
        )
        .await;
    assert_eq!(res.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(app.rows("skill").await, 0);
}

async fn nul_characters_are_refused_not_crashed(db: Db) {
    let app = TestApp::root(db).await;
    let res = app.post("/api/skills", json!({ "name": "a\u{0}b" })).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert!(res.error_for("/name").contains("NUL"));
    let res = app
        .post(
            "/api/users",
            json!({ "email": "n@example.com", "display_name": "N", "preferences": { "k": ["\u{0}"] } }),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert!(res.error_for("/preferences").contains("NUL"));
    assert_eq!(app.rows("user").await, 0);
}

async fn unknown_routes_entities_and_ids(db: Db) {
    let app = TestApp::root(db).await;
    let res = app.get("/api/projets").await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert!(
        res.body["detail"]
            .as_str()
            .unwrap()
            .contains("/api/projects")
    );
    let res = app.get("/api/projects/not-an-id").await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let res = app
        .get(&format!("/api/projects/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.header("content-type"), Some("application/problem+json"));
    let res = app.get("/nowhere").await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let res = app.call(Method::PUT, "/api/projects", None, &[]).await;
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.header("content-type"), Some("application/problem+json"));
    let res = app
        .patch(
            &format!("/api/skills/{}", uuid::Uuid::now_v7()),
            json!({ "name": "x" }),
            &[],
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let res = app
        .delete(&format!("/api/skills/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

async fn patch_with_versions(db: Db) {
    let app = TestApp::root(db).await;
    let client = org(&app, "Acme").await;
    let id = app
        .create(
            "projects",
            json!({ "title": "Versioned", "client": client, "budget": "10" }),
        )
        .await;
    let path = format!("/api/projects/{id}");

    let res = app
        .patch(
            &path,
            json!({ "summary": "First draft", "budget": null }),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["version"], 2);
    assert_eq!(res.body["summary"], "First draft");
    assert_eq!(res.body["budget"], serde_json::Value::Null);
    assert_eq!(res.body["title"], "Versioned", "untouched fields stay");
    assert_eq!(res.header("etag"), Some("\"2\""));
    assert_ne!(res.body["updated_at"], res.body["created_at"]);

    // A stale version is refused and changes nothing.
    let res = app
        .patch(&path, json!({ "summary": "Stale" }), &[("if-match", "1")])
        .await;
    assert_eq!(res.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(res.body["current_version"], 2);
    assert_eq!(app.get(&path).await.body["summary"], "First draft");

    // Bare numbers, weak tags and `*` are accepted; garbage is 400.
    let res = app
        .patch(&path, json!({ "summary": "s" }), &[("if-match", "W/\"2\"")])
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let res = app
        .patch(&path, json!({ "summary": "t" }), &[("if-match", "*")])
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["version"], 4);
    let res = app
        .patch(&path, json!({ "summary": "u" }), &[("if-match", "abc")])
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);

    // Validation on PATCH: required fields cannot be nulled, unknown fields refused.
    let res = app
        .patch(&path, json!({ "title": null, "titel": "x" }), &[])
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.error_for("/title").contains("required"));
    assert!(res.error_for("/titel").contains("did you mean `title`"));
    assert_eq!(app.get(&path).await.body["version"], 4);
}

async fn many_fields_are_written_as_id_lists(db: Db) {
    let app = TestApp::root(db).await;
    let client = org(&app, "Acme").await;
    let a = app.create("skills", json!({ "name": "A" })).await;
    let b = app.create("skills", json!({ "name": "B" })).await;
    let id = app
        .create(
            "projects",
            json!({ "title": "Linked", "client": client, "skills": [a] }),
        )
        .await;
    let path = format!("/api/projects/{id}");
    assert_eq!(app.rows("project_skills").await, 1);

    // PATCH without the field keeps the links; with it replaces them.
    let res = app.patch(&path, json!({ "summary": "x" }), &[]).await;
    assert_eq!(res.body["skills"], json!([a]));
    let res = app.patch(&path, json!({ "skills": [b, a] }), &[]).await;
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    assert_eq!(res.body["skills"], json!(both));
    assert_eq!(app.get(&path).await.body["skills"], json!(both));
    assert_eq!(app.rows("project_skills").await, 2);

    // Unknown ids are named, and nothing changes.
    let ghost = uuid::Uuid::now_v7().to_string();
    let res = app.patch(&path, json!({ "skills": [a, ghost] }), &[]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert!(res.error_for("/skills").contains(&ghost));
    assert_eq!(app.get(&path).await.body["skills"], json!(both));

    // Deleting a linked skill removes the link, not the project.
    assert_eq!(
        app.delete(&format!("/api/skills/{a}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.get(&path).await.body["skills"], json!([b]));
    let res = app.patch(&path, json!({ "skills": [] }), &[]).await;
    assert_eq!(res.body["skills"], json!([]));
    assert_eq!(app.rows("project_skills").await, 0);
}

async fn references_are_checked(db: Db) {
    let app = TestApp::root(db).await;
    let ghost = uuid::Uuid::now_v7().to_string();
    let res = app
        .post(
            "/api/projects",
            json!({ "title": "Orphan", "client": ghost, "skills": [ghost] }),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert!(
        res.error_for("/client")
            .contains(&format!("no organization with id {ghost}"))
    );
    assert!(res.error_for("/skills").contains("no skill"));
    assert_eq!(app.rows("project").await, 0);
}

async fn unique_violations_name_the_fields(db: Db) {
    let app = TestApp::root(db).await;
    let client = org(&app, "Acme").await;
    let res = app
        .post(
            "/api/organizations",
            json!({ "name": "Acme", "slug": "other" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    assert_eq!(res.pointers(), ["/name"]);
    app.create("projects", json!({ "title": "Same", "client": client }))
        .await;
    let res = app
        .post(
            "/api/projects",
            json!({ "title": "Same", "client": client }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert_eq!(res.pointers(), ["/client", "/title"]);
    assert!(
        res.body["detail"]
            .as_str()
            .unwrap()
            .contains("client and title")
    );
    // Also on PATCH.
    let other = app
        .create("projects", json!({ "title": "Other", "client": client }))
        .await;
    let res = app
        .patch(
            &format!("/api/projects/{other}"),
            json!({ "title": "Same" }),
            &[],
        )
        .await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert_eq!(app.rows("project").await, 2);
}

async fn delete_restrict_cascade_and_set_null(db: Db) {
    let app = TestApp::root(db).await;
    let client = org(&app, "Acme").await;
    let p1 = app
        .create("projects", json!({ "title": "One", "client": client }))
        .await;
    let p2 = app
        .create("projects", json!({ "title": "Two", "client": client }))
        .await;

    // restrict: the organization is held by two projects.
    let res = app.delete(&format!("/api/organizations/{client}")).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    assert_eq!(res.body["referenced_by"][0]["entity"], "project");
    assert_eq!(res.body["referenced_by"][0]["field"], "client");
    assert_eq!(res.body["referenced_by"][0]["count"], 2);
    let mut ids: Vec<String> = res.body["referenced_by"][0]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    ids.sort();
    let mut expected = vec![p1.clone(), p2.clone()];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(app.rows("organization").await, 1);

    // cascade: deleting a project deletes its applications.
    let user = app
        .create(
            "users",
            json!({ "email": "u@example.com", "display_name": "U" }),
        )
        .await;
    app.create("applications", json!({ "project": p1, "applicant": user }))
        .await;
    assert_eq!(app.rows("application").await, 1);
    assert_eq!(
        app.delete(&format!("/api/projects/{p1}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.rows("application").await, 0);
    assert_eq!(
        app.delete(&format!("/api/projects/{p2}")).await.status,
        StatusCode::NO_CONTENT
    );
    let res = app.delete(&format!("/api/organizations/{client}")).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert_eq!(res.raw.len(), 0);
    assert_eq!(app.rows("organization").await, 0);
    assert_eq!(
        app.get(&format!("/api/organizations/{client}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // cascade through a self-reference: deleting a parent skill deletes its children.
    let parent = app.create("skills", json!({ "name": "Programming" })).await;
    app.create("skills", json!({ "name": "Rust", "parent": parent }))
        .await;
    assert_eq!(
        app.delete(&format!("/api/skills/{parent}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.rows("skill").await, 0);
}

async fn list_pages_in_creation_order(db: Db) {
    let app = TestApp::root(db).await;
    let mut ids = Vec::new();
    for i in 0..45 {
        ids.push(
            app.create("skills", json!({ "name": format!("skill {i:02}") }))
                .await,
        );
    }
    let res = app.get("/api/skills").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        res.body["items"].as_array().unwrap().len(),
        20,
        "default limit"
    );

    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &next {
            Some(c) => format!("/api/skills?limit=10&after={c}"),
            None => "/api/skills?limit=10".to_string(),
        };
        let res = app.get(&path).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        for item in res.body["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_string());
        }
        pages += 1;
        match res.body["next"].as_str() {
            Some(c) => next = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 5);
    assert_eq!(seen, ids, "every record once, in creation order");

    for bad in ["limit=0", "limit=201", "limit=abc", "after=zzz", "limt=5"] {
        let res = app.get(&format!("/api/skills?{bad}")).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(res.header("content-type"), Some("application/problem+json"));
    }
    let res = app.get("/api/skills?limt=5").await;
    assert!(
        res.body["detail"]
            .as_str()
            .unwrap()
            .contains("did you mean `limit`")
    );
    let res = app.get("/api/skills?limit=200").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["items"].as_array().unwrap().len(), 45);
}

async fn health_and_openapi(db: Db) {
    let app = TestApp::root(db).await;
    let res = app.get("/_/health").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body, json!({ "status": "ok" }));
    let res = app.get("/openapi.json").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert_eq!(res.body["openapi"], "3.1.0");
    assert!(res.body["paths"]["/api/projects/{id}"]["patch"].is_object());
}

both!(
    create_applies_defaults_and_returns_location,
    every_field_type_round_trips,
    validation_reports_every_field,
    malformed_bodies,
    nul_characters_are_refused_not_crashed,
    unknown_routes_entities_and_ids,
    patch_with_versions,
    many_fields_are_written_as_id_lists,
    references_are_checked,
    unique_violations_name_the_fields,
    delete_restrict_cascade_and_set_null,
    list_pages_in_creation_order,
    health_and_openapi,
);
