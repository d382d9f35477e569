//! Hot reload: new definitions are swapped in; broken ones keep the last good
//! definitions serving, and `/_/status` says why. On SQLite and PostgreSQL.

mod common;

use axum::http::StatusCode;
use common::{Db, TEST_SECRET, TestApp};
use serde_json::json;
use trellis::runtime::reload;

const TASK: &str = "entity: task\nfields:\n  title: { type: string, required: true }\n";

async fn reloads_follow_the_files(db: Db) {
    let dir = common::project(&[("models/task.yaml", TASK)]);
    let app = TestApp::for_dir(db, dir.path()).await;
    let secret = |_: &str| Some(TEST_SECRET.to_string());
    app.create("tasks", json!({ "title": "Before" })).await;
    assert_eq!(app.get("/api/notes").await.status, StatusCode::NOT_FOUND);
    // The document is built on first use, once per engine: asked for before the
    // reload, it must not be what the new engine serves.
    let before = app.get("/openapi.json").await;
    assert!(before.body["paths"]["/api/notes"].is_null());
    let tag_before = before.header("etag").unwrap().to_string();

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
    assert!(doc.body["components"]["schemas"]["Task"]["properties"]["done"].is_object());
    assert_ne!(doc.header("etag").unwrap(), tag_before);
    assert_eq!(
        app.get("/openapi.json").await.raw,
        doc.raw,
        "later requests get the same bytes"
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

const STATUS_TASK: &str = "entity: task\nfields:\n  title: { type: string, required: true }\n  status: { type: enum, values: [todo, doing, done], default: todo }\n";

const TASK_WORKFLOW: &str = "entity: task\nfield: status\ninitial: todo\nstates:\n  todo: {}\n  doing: {}\n  done: { final: true }\ntransitions:\n  start:\n    from: todo\n    to: doing\n  finish:\n    from: doing\n    to: done\n";

async fn workflows_come_and_go_with_their_files(db: Db) {
    let dir = common::project(&[("models/task.yaml", STATUS_TASK)]);
    let app = TestApp::for_dir(db, dir.path()).await;
    let secret = |_: &str| Some(TEST_SECRET.to_string());
    let id = app.create("tasks", json!({ "title": "Write docs" })).await;
    let path = format!("/api/tasks/{id}");

    // Without a workflow, `status` is an ordinary field and there are no transitions.
    let res = app.patch(&path, json!({ "status": "doing" }), &[]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let res = app.patch(&path, json!({ "status": "todo" }), &[]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let res = app
        .post(&format!("{path}/transitions/start"), json!({}))
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.body);

    // The workflow appears: transitions work, the state field is the workflow's.
    std::fs::create_dir_all(dir.path().join("workflows")).unwrap();
    std::fs::write(dir.path().join("workflows/task.yaml"), TASK_WORKFLOW).unwrap();
    assert!(reload(dir.path(), &app.state, &secret).await);
    let status = app.get("/_/status").await;
    assert_eq!(status.body["last_result"], "ok");
    assert_eq!(status.body["generation"], 2);
    let res = app
        .post(&format!("{path}/transitions/start"), json!({}))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["status"], "doing");
    let res = app.patch(&path, json!({ "status": "done" }), &[]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert!(
        res.error_for("/status").contains("kept by the workflow"),
        "{}",
        res.body
    );
    let res = app
        .post("/api/tasks", json!({ "title": "New", "status": "done" }))
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    let fresh = app.create("tasks", json!({ "title": "New" })).await;
    assert_eq!(
        app.get(&format!("/api/tasks/{fresh}")).await.body["status"],
        "todo"
    );
    let options = app.get(&format!("{path}/transitions")).await;
    assert_eq!(options.status, StatusCode::OK, "{}", options.body);
    assert_eq!(options.body["state"], "doing");
    let names: Vec<&str> = options.body["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["finish"]);

    // A broken workflow (a state that does not exist): refused, the last good
    // definitions keep serving, and the status says where.
    std::fs::write(
        dir.path().join("workflows/task.yaml"),
        TASK_WORKFLOW.replace("    to: done\n", "    to: dnoe\n"),
    )
    .unwrap();
    assert!(!reload(dir.path(), &app.state, &secret).await);
    let status = app.get("/_/status").await;
    assert_eq!(status.body["last_result"], "failed");
    assert_eq!(status.body["generation"], 2);
    let problems = status.body["diagnostics"].as_array().unwrap();
    let d = problems
        .iter()
        .find(|d| d["severity"] == "error")
        .unwrap_or_else(|| panic!("no error in {problems:?}"));
    assert_eq!(d["code"], "unknown-state");
    assert_eq!(d["file"], "workflows/task.yaml");
    assert_eq!(d["line"], 14);
    assert_eq!(d["column"], 9);
    assert_eq!(d["hint"], "did you mean `done`?");
    let res = app.patch(&path, json!({ "status": "done" }), &[]).await;
    assert_eq!(
        res.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the workflow still guards the field: {}",
        res.body
    );
    let res = app
        .post(&format!("{path}/transitions/finish"), json!({}))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["status"], "done");

    // Fixed (and `done` may now be reopened): served again.
    std::fs::write(
        dir.path().join("workflows/task.yaml"),
        TASK_WORKFLOW.replace("  done: { final: true }\n", "  done: {}\n")
            + "  reopen:\n    from: done\n    to: todo\n",
    )
    .unwrap();
    assert!(reload(dir.path(), &app.state, &secret).await);
    let status = app.get("/_/status").await;
    assert_eq!(status.body["last_result"], "ok");
    assert_eq!(status.body["generation"], 3);
    let res = app
        .post(&format!("{path}/transitions/reopen"), json!({}))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["status"], "todo");
    let history = app.get(&format!("{path}/history")).await;
    let moves: Vec<(&str, &str, &str)> = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["transition"].as_str().unwrap(),
                h["from"].as_str().unwrap(),
                h["to"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            ("start", "todo", "doing"),
            ("finish", "doing", "done"),
            ("reopen", "done", "todo")
        ]
    );
}

both!(workflows_come_and_go_with_their_files);

// ---- fail closed: a reload never takes enforcement away ----

const AUTH: &str = "auth:\n  jwt: { algorithm: HS256, secret_env: S }\n";
const NOTE: &str = "entity: note\nfields:\n  body: text\n";
const TASK_POLICY: &str = "entity: task\nrules:\n  - { roles: [admin], allow: [\"*\"] }\n";
const NOTE_POLICY: &str = "entity: note\nrules:\n  - { roles: [admin], allow: [\"*\"] }\n";

/// The code of the last failed reload's first error (read from the server's state:
/// over HTTP, `/_/status` shows details only to administrators).
async fn refused_because(app: &TestApp) -> String {
    let status = app.state.status.load();
    assert_eq!(status.last_result, "failed", "{status:?}");
    status
        .diagnostics
        .iter()
        .find(|d| d.severity == trellis::spec::Severity::Error)
        .map(|d| d.code.to_string())
        .unwrap_or_default()
}

async fn reloads_never_drop_policies(db: Db) {
    let dir = common::project(&[
        ("trellis.yaml", AUTH),
        ("models/task.yaml", TASK),
        ("models/note.yaml", NOTE),
        ("policies/task.yaml", TASK_POLICY),
        ("policies/note.yaml", NOTE_POLICY),
    ]);
    let app = TestApp::for_dir(db, dir.path()).await;
    let secret = |_: &str| Some(TEST_SECRET.to_string());
    let task = app.create("tasks", json!({ "title": "Kept" })).await;
    let anonymous = app.anonymous();
    // Anonymous callers may not even read a task: a change is a 404.
    let closed = |status: StatusCode| assert_eq!(status, StatusCode::NOT_FOUND);
    closed(
        anonymous
            .patch(&format!("/api/tasks/{task}"), json!({ "title": "x" }), &[])
            .await
            .status,
    );
    let policies = dir.path().join("policies");
    let away = dir.path().join("policies-away");

    // The folder moved away.
    std::fs::rename(&policies, &away).unwrap();
    assert!(!reload(dir.path(), &app.state, &secret).await);
    assert_eq!(refused_because(&app).await, "no-policies");
    closed(
        anonymous
            .patch(&format!("/api/tasks/{task}"), json!({ "title": "x" }), &[])
            .await
            .status,
    );
    // An empty folder.
    std::fs::create_dir(&policies).unwrap();
    assert!(!reload(dir.path(), &app.state, &secret).await);
    assert_eq!(refused_because(&app).await, "no-policies");
    assert_eq!(
        anonymous.get("/api/tasks").await.status,
        StatusCode::UNAUTHORIZED
    );
    std::fs::remove_dir(&policies).unwrap();
    std::fs::rename(&away, &policies).unwrap();
    assert!(reload(dir.path(), &app.state, &secret).await);

    // One entity's file deleted while the entity stays.
    std::fs::remove_file(policies.join("note.yaml")).unwrap();
    assert!(!reload(dir.path(), &app.state, &secret).await);
    assert_eq!(refused_because(&app).await, "policy-removed");
    assert_eq!(app.get("/api/notes").await.status, StatusCode::OK);
    assert_eq!(
        anonymous.get("/api/notes").await.status,
        StatusCode::UNAUTHORIZED
    );
    // Removed together with its model: a real change, accepted.
    std::fs::remove_file(dir.path().join("models/note.yaml")).unwrap();
    assert!(reload(dir.path(), &app.state, &secret).await);
    assert_eq!(app.get("/api/notes").await.status, StatusCode::NOT_FOUND);

    // Saying so explicitly serves an open API.
    std::fs::write(
        dir.path().join("trellis.yaml"),
        format!("{AUTH}  open_without_policies: true\n"),
    )
    .unwrap();
    std::fs::rename(&policies, &away).unwrap();
    assert!(reload(dir.path(), &app.state, &secret).await);
    assert_eq!(
        anonymous
            .patch(
                &format!("/api/tasks/{task}"),
                json!({ "title": "Open" }),
                &[]
            )
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.get(&format!("/api/tasks/{task}")).await.body["title"],
        "Open"
    );
}

/// Without `auth`, policies can still restrict anonymous callers: removing them all
/// is refused the same way.
async fn reloads_keep_policies_without_auth(db: Db) {
    let dir = common::project(&[
        ("models/task.yaml", TASK),
        (
            "policies/task.yaml",
            "entity: task\nrules:\n  - { roles: [anonymous], allow: [list, read] }\n",
        ),
    ]);
    let app = TestApp::for_dir(db, dir.path()).await;
    let secret = |_: &str| Some(TEST_SECRET.to_string());
    std::fs::remove_file(dir.path().join("policies/task.yaml")).unwrap();
    assert!(!reload(dir.path(), &app.state, &secret).await);
    assert_eq!(refused_because(&app).await, "policies-removed");
    // Over HTTP, with policies, callers other than admins see only the result.
    let status = app.anonymous().get("/_/status").await;
    assert_eq!(status.body, json!({ "status": "failed" }));
    let res = app
        .anonymous()
        .post("/api/tasks", json!({ "title": "x" }))
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.body);
    assert_eq!(app.rows("task").await, 0);
}

both!(
    reloads_never_drop_policies,
    reloads_keep_policies_without_auth
);
