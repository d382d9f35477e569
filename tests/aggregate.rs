//! Aggregates: groups, buckets, metrics, filters and policies, with fixed data, on
//! SQLite and PostgreSQL (the same answers from both).

mod common;

use axum::http::StatusCode;
use common::{Db, TestApp};
use serde_json::{Value, json};

fn enc(s: &str) -> String {
    serde_urlencoded::to_string([("x", s)]).unwrap()[2..].to_string()
}

async fn data(app: &TestApp) -> (String, String) {
    let rust = app.create("skills", json!({ "name": "Rust" })).await;
    let sql = app.create("skills", json!({ "name": "SQL" })).await;
    let acme = app
        .create("organizations", json!({ "name": "Acme", "slug": "acme" }))
        .await;
    let globex = app
        .create(
            "organizations",
            json!({ "name": "Globex", "slug": "globex" }),
        )
        .await;
    for p in [
        json!({ "title": "Proj 1", "client": acme, "status": "open", "budget": "100.50", "published_at": "2026-01-31T23:30:00Z", "deadline": "2026-02-01", "skills": [rust, sql] }),
        json!({ "title": "Proj 2", "client": acme, "status": "open", "budget": "200.25", "published_at": "2026-02-01T00:30:00Z", "deadline": "2026-02-28", "skills": [rust] }),
        json!({ "title": "Proj 3", "client": globex, "status": "draft", "budget": 1000, "published_at": "2026-02-15T12:00:00+05:00", "skills": [sql] }),
        json!({ "title": "Proj 4", "client": globex, "status": "closed", "deadline": "2026-03-02" }),
    ] {
        // Fixtures in given workflow states: seeded, as transitions alone move them.
        app.seed("projects", p).await;
    }
    (acme, globex)
}

async fn groups(app: &TestApp, query: &str) -> Value {
    let res = app.get(&format!("/api/projects/aggregate?{query}")).await;
    assert_eq!(res.status, StatusCode::OK, "{query}: {}", res.body);
    res.body["groups"].clone()
}

async fn groups_and_metrics(db: Db) {
    let app = TestApp::root(db).await;
    let (acme, globex) = data(&app).await;
    assert_eq!(
        groups(&app, "group_by=status&count=true&sum=budget&avg=budget").await,
        json!([
            { "status": "closed", "count": 1, "sum_budget": null, "avg_budget": null },
            { "status": "draft", "count": 1, "sum_budget": "1000.00", "avg_budget": 1000.0 },
            { "status": "open", "count": 2, "sum_budget": "300.75", "avg_budget": 150.375 }
        ])
    );
    // Month buckets are UTC: 23:30 on 31 January and 00:30 on 1 February differ;
    // 12:00+05:00 on 15 February is February; missing values come last.
    assert_eq!(
        groups(&app, "group_by=published_at:month").await,
        json!([
            { "published_at:month": "2026-01-01", "count": 1 },
            { "published_at:month": "2026-02-01", "count": 2 },
            { "published_at:month": null, "count": 1 }
        ])
    );
    assert_eq!(
        groups(
            &app,
            "group_by=published_at:day&sort=-count,published_at:day"
        )
        .await,
        json!([
            { "published_at:day": "2026-01-31", "count": 1 },
            { "published_at:day": "2026-02-01", "count": 1 },
            { "published_at:day": "2026-02-15", "count": 1 },
            { "published_at:day": null, "count": 1 }
        ])
    );
    // Weeks start on Monday: Sunday 1 Feb is in the week of 26 Jan.
    assert_eq!(
        groups(&app, "group_by=deadline:week&filter=deadline%20is%20set").await,
        json!([
            { "deadline:week": "2026-01-26", "count": 1 },
            { "deadline:week": "2026-02-23", "count": 1 },
            { "deadline:week": "2026-03-02", "count": 1 }
        ])
    );
    assert_eq!(
        groups(&app, "group_by=deadline:year").await,
        json!([{ "deadline:year": "2026-01-01", "count": 3 }, { "deadline:year": null, "count": 1 }])
    );
    // By a reference, sorted by a metric, limited.
    let by_client = groups(
        &app,
        "group_by=client&count=true&sort=-count,client&limit=1",
    )
    .await;
    assert_eq!(by_client.as_array().unwrap().len(), 1);
    assert_eq!(by_client[0]["count"], 2);
    assert!(by_client[0]["client"] == json!(acme) || by_client[0]["client"] == json!(globex));
    // No groups: one row over everything; min and max keep their types.
    assert_eq!(
        groups(
            &app,
            "min=deadline,budget&max=budget,published_at&count=true"
        )
        .await,
        json!([{
            "count": 4, "min_deadline": "2026-02-01", "min_budget": "100.50",
            "max_budget": "1000.00", "max_published_at": "2026-02-15T07:00:00Z"
        }])
    );
    // With a filter, and a filter nobody matches.
    assert_eq!(
        groups(
            &app,
            &format!(
                "group_by=status&sum=budget&filter={}",
                enc("client.name = 'Acme'")
            )
        )
        .await,
        json!([{ "status": "open", "sum_budget": "300.75" }])
    );
    assert_eq!(
        groups(&app, "group_by=status&filter=budget%20%3E%20999999").await,
        json!([])
    );
    // Per linked skill (a project counts once per skill; none: null), with sums.
    let per_skill = groups(&app, "group_by=skills&count=true&sum=budget").await;
    let names = app.get("/api/skills").await.body["items"].clone();
    let name_of = |id: &Value| {
        names
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == *id)
            .map(|s| s["name"].clone())
            .unwrap_or(Value::Null)
    };
    let mut got: Vec<(Value, Value, Value)> = per_skill
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                name_of(&g["skills"]),
                g["count"].clone(),
                g["sum_budget"].clone(),
            )
        })
        .collect();
    got.sort_by_key(|(n, _, _)| n.to_string());
    assert_eq!(
        got,
        vec![
            (json!("Rust"), json!(2), json!("300.75")),
            (json!("SQL"), json!(2), json!("1100.50")),
            (Value::Null, json!(1), Value::Null),
        ]
    );
    let res = app
        .get("/api/projects/aggregate?group_by=skills,skills")
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    // Other entities, other types: integers sum as integers.
    let res = app
        .get("/api/organizations/aggregate?count=true&sum=headcount")
        .await;
    assert_eq!(
        res.body["groups"],
        json!([{ "count": 2, "sum_headcount": null }])
    );
}

async fn mistakes_are_400(db: Db) {
    let app = TestApp::root(db).await;
    for (query, param) in [
        ("", "group_by"),
        ("group_by=statuss", "group_by"),
        ("group_by=title:month", "group_by"),
        ("group_by=published_at:fortnight", "group_by"),
        ("group_by=summary", "group_by"),
        ("group_by=applications", "group_by"),
        ("sum=title", "sum"),
        ("avg=deadline", "avg"),
        ("group_by=status&sort=budget", "sort"),
        ("group_by=status&limit=0", "limit"),
        ("group_by=status&filter=statuss%20%3D%201", "filter"),
        ("group_by=status&counts=true", "counts"),
    ] {
        let res = app.get(&format!("/api/projects/aggregate?{query}")).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{query}: {}", res.body);
        assert_eq!(res.body["parameter"], param, "{query}");
    }
}

async fn aggregates_follow_the_policies(db: Db) {
    let app = TestApp::root(db).await;
    data(&app).await;
    let dev = app.as_user(&app.token(&uuid::Uuid::now_v7().to_string(), &["contractor"]));
    // Contractors count published projects only: not the draft.
    let res = dev.get("/api/projects/aggregate?group_by=status").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(
        res.body["groups"],
        json!([{ "status": "closed", "count": 1 }, { "status": "open", "count": 2 }])
    );
    // Hidden and conditionally visible fields cannot be aggregated or grouped.
    for query in [
        "sum=budget",
        "group_by=internal_notes",
        "max=budget",
        "group_by=status&filter=budget%20%3E%201",
    ] {
        let res = dev.get(&format!("/api/projects/aggregate?{query}")).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{query}: {}", res.body);
    }
    // Contractors may not aggregate applications at all; anonymous callers nothing.
    let res = dev.get("/api/applications/aggregate?count=true").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    let res = app
        .anonymous()
        .get("/api/projects/aggregate?count=true")
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

/// Groups by a `many` field count only the links to records the caller may read: a
/// hidden record's id never appears as a group, and its links count as none.
async fn link_groups_see_only_readable_targets(db: Db) {
    let app = TestApp::with_files(
        db,
        &[
            ("trellis.yaml", "auth:\n  jwt: { algorithm: HS256, secret_env: S }\n"),
            ("models/note.yaml", "entity: note\nfields:\n  title: string\n  tags: { type: many, of: tag }\n"),
            ("models/tag.yaml", "entity: tag\nfields:\n  label: string\n  shared: { type: boolean, default: false }\n"),
            ("policies/note.yaml", "entity: note\nrules:\n  - { roles: [admin], allow: [\"*\"] }\n  - { roles: [member], allow: [list, read, aggregate] }\n"),
            ("policies/tag.yaml", "entity: tag\nrules:\n  - { roles: [admin], allow: [\"*\"] }\n  - { roles: [member], allow: [list, read], where: shared }\n"),
        ],
    )
    .await;
    let shared = app
        .create("tags", json!({ "label": "s", "shared": true }))
        .await;
    let hidden = app.create("tags", json!({ "label": "h" })).await;
    app.create(
        "notes",
        json!({ "title": "both", "tags": [shared, hidden] }),
    )
    .await;
    app.create("notes", json!({ "title": "hidden only", "tags": [hidden] }))
        .await;
    app.create("notes", json!({ "title": "none", "tags": [] }))
        .await;
    let count = |body: &Value, tag: Value| {
        body["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["tags"] == tag)
            .map(|g| g["count"].clone())
    };
    let admin = app
        .get("/api/notes/aggregate?group_by=tags&count=true")
        .await;
    assert_eq!(admin.status, StatusCode::OK, "{}", admin.body);
    assert_eq!(count(&admin.body, json!(hidden)), Some(json!(2)));
    assert_eq!(count(&admin.body, json!(shared)), Some(json!(1)));
    assert_eq!(count(&admin.body, Value::Null), Some(json!(1)));
    let member = app.as_user(&app.token("u1", &["member"]));
    let res = member
        .get("/api/notes/aggregate?group_by=tags&count=true")
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(
        res.body["groups"].as_array().unwrap().len(),
        2,
        "{}",
        res.body
    );
    assert_eq!(count(&res.body, json!(shared)), Some(json!(1)));
    assert_eq!(count(&res.body, Value::Null), Some(json!(2)));
    assert_eq!(count(&res.body, json!(hidden)), None);
}

both!(
    groups_and_metrics,
    mistakes_are_400,
    aggregates_follow_the_policies,
    link_groups_see_only_readable_targets
);
