//! No client input may produce a 5xx: random bodies for every field of the root
//! project's entities, and random full-text searches (`q`), on SQLite and PostgreSQL.

mod common;

use std::sync::Arc;

use axum::http::Method;
use common::{Db, TestApp};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};

/// Any JSON value, nested a little, with awkward strings and numbers.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => any::<i64>().prop_map(Value::from),
        1 => prop_oneof![Just(0.5f64), Just(-1e300), Just(1e30), Just(12.345), Just(-0.0)].prop_map(Value::from),
        4 => prop_oneof![
            Just(String::new()),
            Just("\u{0}".to_string()),
            Just("before\u{0}after".to_string()),
            Just("2026-02-30".to_string()),
            Just("2026-11-27T10:00:00Z".to_string()),
            Just("99999999999999999999.99".to_string()),
            Just("01a21b3c-d9f0-71ce-a998-351f8f8d22f1".to_string()),
            Just("a@b.co".to_string()),
            Just("https://x.example".to_string()),
            Just("draft".to_string()),
            Just("x".repeat(300)),
            "\\PC{0,20}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z_]{1,8}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

async fn random_bodies_never_fail_the_server(db: Db) {
    let app = Arc::new(TestApp::root(db).await);
    let org = app
        .create("organizations", json!({ "name": "Acme", "slug": "acme" }))
        .await;
    let project = app
        .create("projects", json!({ "title": "Base", "client": org }))
        .await;
    let user = app
        .create(
            "users",
            json!({ "email": "base@example.com", "display_name": "Base" }),
        )
        .await;
    // A valid body per entity: random values then replace one to three of its fields,
    // so that most requests get past validation and reach the database.
    let bases = [
        ("organizations", json!({ "name": "Org", "slug": "org" })),
        ("skills", json!({ "name": "Skill" })),
        (
            "users",
            json!({ "email": "u@example.com", "display_name": "U" }),
        ),
        ("projects", json!({ "title": "Title", "client": org })),
        (
            "applications",
            json!({ "project": project, "applicant": user }),
        ),
        (
            "reviews",
            json!({ "project": project, "author": user, "subject": user, "rating": 3 }),
        ),
    ];
    let engine = app.state.engine.load_full();
    let mut targets = Vec::new();
    for (plural, base) in bases {
        let e = engine.entity_by_plural(plural).expect("entity");
        let fields: Vec<String> = e.fields.iter().map(|f| f.name.clone()).collect();
        targets.push((plural.to_string(), fields, base));
    }
    let handle = tokio::runtime::Handle::current();
    let app2 = app.clone();
    let project_id = project.clone();
    tokio::task::spawn_blocking(move || {
        let mut runner = TestRunner::new(Config {
            cases: 256,
            failure_persistence: None,
            ..Config::default()
        });
        let strategy = (
            0..targets.len(),
            prop::collection::vec((any::<prop::sample::Index>(), any_json()), 1..4),
            any::<bool>(),
        );
        runner
            .run(&strategy, |(t, values, as_patch)| {
                let (plural, fields, base) = &targets[t];
                let mut body = base.as_object().cloned().unwrap_or_default();
                for (index, value) in values {
                    body.insert(index.get(fields).clone(), value);
                }
                let (method, path) = if as_patch && plural == "projects" {
                    (Method::PATCH, format!("/api/projects/{project_id}"))
                } else {
                    (Method::POST, format!("/api/{plural}"))
                };
                let res = handle.block_on(app2.call(
                    method.clone(),
                    &path,
                    Some(Value::Object(body.clone()).to_string().into_bytes()),
                    &[],
                ));
                if std::env::var("TRELLIS_DEBUG_PROPTEST").is_ok() {
                    eprintln!("{} {}", res.status, Value::Object(body.clone()));
                }
                prop_assert!(
                    res.status.as_u16() < 500,
                    "{method} {path} {} -> {} {}",
                    Value::Object(body),
                    res.status,
                    res.body
                );
                Ok(())
            })
            .unwrap();
    })
    .await
    .unwrap();
    // The server is still healthy and consistent afterwards.
    assert_eq!(app.get("/_/health").await.status, 200);
    assert_eq!(
        app.get(&format!("/api/projects/{project}")).await.status,
        200
    );
}

/// `q` text full of full-text syntax (FTS5 and tsquery operators, quotes, column
/// filters, NUL and other control characters), for an administrator and a
/// contractor, ranked and sorted, with and without a count.
async fn random_searches_never_fail_the_server(db: Db) {
    let app = Arc::new(TestApp::root(db).await);
    let org = app
        .create("organizations", json!({ "name": "Acme", "slug": "acme" }))
        .await;
    for title in ["Rust backend", "Design \"system\" (v2)", "NEAR OR AND: *x*"] {
        app.seed(
            "projects",
            json!({ "title": title, "summary": "lorem ipsum {title} : x", "client": org, "status": "open" }),
        )
        .await;
    }
    let contractor = app.token(&uuid::Uuid::now_v7().to_string(), &["contractor"]);
    let handle = tokio::runtime::Handle::current();
    let app2 = app.clone();
    tokio::task::spawn_blocking(move || {
        let mut runner = TestRunner::new(Config {
            cases: 256,
            failure_persistence: None,
            ..Config::default()
        });
        let word = prop_oneof![
            4 => "[a-zA-Z0-9éß]{1,8}",
            4 => r#"[\"*^:(){}+\-'\\%_.,;!&|<>@\[\]~]{1,4}"#,
            1 => Just("\u{0}".to_string()),
            1 => Just("\u{1}\u{7f}".to_string()),
            2 => prop_oneof![
                Just("NEAR".to_string()), Just("OR".to_string()), Just("AND".to_string()),
                Just("NOT".to_string()), Just("title".to_string()), Just("summary".to_string()),
                Just("rank".to_string()), Just("rowid".to_string()),
            ],
        ];
        let strategy = (
            prop::collection::vec(word, 1..6),
            prop::collection::vec(
                prop_oneof![Just(" "), Just(""), Just("\t"), Just(":")],
                1..6,
            ),
            0..4usize,
            any::<bool>(),
        );
        runner
            .run(&strategy, |(words, glue, shape, as_contractor)| {
                let mut q = String::new();
                for (n, w) in words.iter().enumerate() {
                    q.push_str(w);
                    q.push_str(glue[n % glue.len()]);
                }
                let encoded: String = q
                    .bytes()
                    .map(|b| match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
                        _ => format!("%{b:02X}"),
                    })
                    .collect();
                let rest = [
                    "",
                    "&sort=-title",
                    "&count=true",
                    "&limit=1&count=true&sort=title",
                ][shape];
                let path = format!("/api/projects?q={encoded}{rest}");
                let client = match as_contractor {
                    true => app2.as_user(&contractor),
                    false => app2.client.clone(),
                };
                let res = handle.block_on(client.get(&path));
                prop_assert!(
                    res.status.as_u16() < 500,
                    "GET {path} ({q:?}) -> {} {}",
                    res.status,
                    res.body
                );
                Ok(())
            })
            .unwrap();
    })
    .await
    .unwrap();
    assert_eq!(app.get("/_/health").await.status, 200);
}

both!(
    random_bodies_never_fail_the_server,
    random_searches_never_fail_the_server
);
