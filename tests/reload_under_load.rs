//! Hot reload under a steady load: requests keep succeeding through valid edits,
//! broken edits and fixes, and each new field or endpoint is usable as soon as its
//! reload returns. On SQLite and PostgreSQL.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::http::StatusCode;
use common::{Db, TestApp};
use serde_json::json;

const BASE: &str = "entity: task\nfields:\n  title: { type: string, required: true }\n";

fn task_with(fields: usize) -> String {
    let mut s = BASE.to_string();
    for i in 0..fields {
        s.push_str(&format!("  extra_{i}: {{ type: integer, default: {i} }}\n"));
    }
    s
}

async fn requests_never_fail_while_reloading(db: Db) {
    let dir = common::project(&[("models/task.yaml", BASE)]);
    let app = TestApp::for_dir(db, dir.path()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..4 {
        let client = app.client.clone();
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let res = if n.is_multiple_of(3) {
                    client
                        .post("/api/tasks", json!({ "title": format!("client {c} #{n}") }))
                        .await
                } else {
                    client.get("/api/tasks?limit=5&sort=-created_at").await
                };
                if res.status.is_success() {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!("failed: {} {}", res.status, res.body);
                }
            }
        }));
    }

    let path = dir.path().join("models/task.yaml");
    let mut reloads = 0;
    for round in 1..=8 {
        // A valid edit: one more field; usable at once.
        std::fs::write(&path, task_with(round)).unwrap();
        let res = app.post("/_/reload", json!({})).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        reloads += 1;
        let field = format!("extra_{}", round - 1);
        let res = app
            .post(
                "/api/tasks",
                json!({ "title": "new field", field.as_str(): 42 }),
            )
            .await;
        assert_eq!(
            res.status,
            StatusCode::CREATED,
            "round {round}: {}",
            res.body
        );
        assert_eq!(res.body[&field], 42);
        // A new endpoint, usable at once.
        std::fs::write(
            dir.path().join(format!("models/note_{round}.yaml")),
            format!("entity: note_{round}\nfields:\n  body: text\n"),
        )
        .unwrap();
        // A broken edit: the previous definitions keep serving.
        std::fs::write(
            &path,
            format!("{}  broken: {{ type: strng }}\n", task_with(round)),
        )
        .unwrap();
        let res = app.post("/_/reload", json!({})).await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
        assert_eq!(res.body["diagnostics"][0]["file"], "models/task.yaml");
        reloads += 1;
        assert_eq!(
            app.get(&format!("/api/note_{round}s")).await.status,
            StatusCode::NOT_FOUND,
            "a failed reload swaps nothing in"
        );
        // The fix.
        std::fs::write(&path, task_with(round)).unwrap();
        let res = app.post("/_/reload", json!({})).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        reloads += 1;
        let res = app.get(&format!("/api/note_{round}s")).await;
        assert_eq!(res.status, StatusCode::OK, "round {round}: {}", res.body);
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("{db:?}: {reloads} reloads under load: {ok} requests succeeded, {failed} failed");
    assert!(reloads >= 20);
    assert!(ok > 100, "the load was real: {ok} requests");
    assert_eq!(failed, 0);
    let status = app.get("/_/status").await;
    assert_eq!(status.body["generation"], 1 + 16, "{}", status.body);
}

/// In a project with authentication, only administrators reload.
async fn only_administrators_reload(db: Db) {
    let app = TestApp::root(db).await;
    assert_eq!(
        app.post("/_/reload", json!({})).await.status,
        StatusCode::OK
    );
    let token = app.token("someone", &["client"]);
    assert_eq!(
        app.as_user(&token)
            .post("/_/reload", json!({}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.anonymous().post("/_/reload", json!({})).await.status,
        StatusCode::UNAUTHORIZED
    );
}

both!(
    requests_never_fail_while_reloading,
    only_administrators_reload
);
