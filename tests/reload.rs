//! Hot reload: new definitions are swapped in; broken ones keep the last good
//! definitions serving, and `/_/status` says why. On SQLite and PostgreSQL.

mod common;

use axum::http::StatusCode;
use common::{Db, TEST_SECRET, TestApp};
use serde_json::json;
use trellis::reload::reload;

const TASK: &str = "entity: task\nfields:\n  title: { type: string, required: true }\n";

async fn reloads_follow_the_files(db: Db) {
    let dir = common::project(&[("models/task.yaml", TASK)]);
    let app = TestApp::for_dir(db, dir.path()).await;
    let secret = |_: &str| Some(TEST_SECRET.to_string());
    app.create("tasks", json!({ "title": "Before" })).await;
    assert_eq!(app.get("/api/notes").await.status, StatusCode::NOT_FOUND);

    // A new entity and a new field appear without a restart; data stays.
    std::fs::write(
        dir.path().join("models/note.yaml"),
        "entity: note\nfields:\n  body: text\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("models/task.yaml"),
        format!("{TASK}  done: {{ type: boolean, default: false }}\n"),
    )
    .unwrap();
    assert!(reload(dir.path(), &app.state, &secret).await);
    assert_eq!(app.get("/api/notes").await.status, StatusCode::OK);
    let tasks = app.get("/api/tasks").await;
    assert_eq!(tasks.body["items"][0]["title"], "Before");
    assert_eq!(
        tasks.body["items"][0]["done"], false,
        "the new column got its default"
    );
    let status = app.get("/_/status").await;
    assert_eq!(status.status, StatusCode::OK);
    assert_eq!(status.body["generation"], 2);
    assert_eq!(status.body["last_result"], "ok");
    let applied: Vec<String> = serde_json::from_value(status.body["applied"].clone()).unwrap();
    assert!(
        applied.contains(&"created table note".to_string()),
        "{applied:?}"
    );
    assert!(
        applied.contains(&"added column task.done".to_string()),
        "{applied:?}"
    );
    let doc = app.get("/openapi.json").await;
    assert!(
        doc.body["paths"]["/api/notes"].is_object(),
        "the document follows"
    );

    // A broken file: refused, the previous definitions keep serving, status says why.
    std::fs::write(
        dir.path().join("models/note.yaml"),
        "entity: note\nfields:\n  body: { type: txt }\n",
    )
    .unwrap();
    assert!(!reload(dir.path(), &app.state, &secret).await);
    assert_eq!(app.get("/api/notes").await.status, StatusCode::OK);
    let status = app.get("/_/status").await;
    assert_eq!(status.body["last_result"], "failed");
    assert_eq!(status.body["generation"], 2);
    let d = &status.body["diagnostics"][0];
    assert_eq!(d["file"], "models/note.yaml");
    assert_eq!(d["line"], 3);
    assert_eq!(d["code"], "unknown-type");
    assert!(d["hint"].as_str().unwrap().contains("did you mean `text`?"));

    // A change the database cannot follow by itself: refused the same way.
    std::fs::write(
        dir.path().join("models/note.yaml"),
        "entity: note\nfields:\n  body: integer\n",
    )
    .unwrap();
    assert!(!reload(dir.path(), &app.state, &secret).await);
    let status = app.get("/_/status").await;
    assert_eq!(status.body["diagnostics"][0]["code"], "needs-migration");
    let res = app
        .post("/api/notes", json!({ "body": "still text" }))
        .await;
    assert_eq!(
        res.status,
        StatusCode::CREATED,
        "the old definitions still serve"
    );

    // Fixed: back in business.
    std::fs::write(
        dir.path().join("models/note.yaml"),
        "entity: note\nfields:\n  body: text\n  pinned: boolean\n",
    )
    .unwrap();
    assert!(reload(dir.path(), &app.state, &secret).await);
    let status = app.get("/_/status").await;
    assert_eq!(status.body["generation"], 3);
    assert_eq!(status.body["last_result"], "ok");
    assert_eq!(
        app.get("/api/notes").await.body["items"][0]["pinned"],
        serde_json::Value::Null
    );
}

both!(reloads_follow_the_files);
