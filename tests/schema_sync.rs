//! `serve` on an existing database: additive changes are applied, data is kept, and
//! anything else is refused with a clear message, on SQLite and PostgreSQL.

mod common;

use axum::http::StatusCode;
use common::{Db, TestApp, TestDb};
use serde_json::json;
use trellis::engine::Engine;
use trellis::http::{AppState, router};
use trellis::spec;
use trellis::store::{self, Store};

const SCHEMA_LINE: &str = "";

fn engine_for(files: &[(&str, &str)]) -> (Engine, tempfile::TempDir) {
    let dir = common::project(files);
    let loaded = spec::load(dir.path());
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    (Engine::build(&loaded).expect("engine"), dir)
}

fn task(fields: &str) -> (&'static str, String) {
    (
        "models/task.yaml",
        format!("{SCHEMA_LINE}entity: task\nfields:\n{fields}"),
    )
}

async fn sync(store: &Store, fields: &str) -> Result<store::SyncReport, store::Error> {
    let (name, text) = task(fields);
    let (engine, _dir) = engine_for(&[(name, &text)]);
    store.sync_schema(&engine).await
}

async fn app_on(store: &Store, fields: &str) -> (TestAppLite, tempfile::TempDir) {
    let (name, text) = task(fields);
    let (engine, dir) = engine_for(&[(name, &text)]);
    store.sync_schema(&engine).await.expect("sync");
    let state = AppState::new(engine, store.clone());
    (
        TestAppLite {
            inner: common::TestAppRouter::new(router(state)),
        },
        dir,
    )
}

struct TestAppLite {
    inner: common::TestAppRouter,
}

async fn additive_changes_keep_data(db: Db) {
    let test_db = TestDb::new(db).await;
    let store = Store::connect(&test_db.url).await.unwrap();

    let v1 = "  title: { type: string, required: true }\n  old_note: text\n";
    let report = sync(&store, v1).await.unwrap();
    assert_eq!(report.created_tables, ["task"]);
    let (app, _d) = app_on(&store, v1).await;
    let id = app
        .inner
        .create("tasks", json!({ "title": "Keep me", "old_note": "hello" }))
        .await;

    // Same definitions again: nothing to do.
    let again = sync(&store, v1).await.unwrap();
    assert!(again.is_empty(), "{again:?}");

    // New optional field, new required field with a default, a rename, an index.
    let v2 = "  title: { type: string, required: true }\n  note: { type: text, renamed_from: old_note }\n  \
              priority: { type: integer, required: true, default: 3 }\n  due: date\n  \
              tags: { type: many, of: task }\nindexes:\n  - [due]\n";
    let report = sync(&store, v2).await.unwrap();
    assert_eq!(report.renamed_columns, ["task.old_note -> note"]);
    let mut added = report.added_columns.clone();
    added.sort();
    assert_eq!(added, ["task.due", "task.priority"]);

    let (app, _d) = app_on(&store, v2).await;
    let res = app.inner.get(&format!("/api/tasks/{id}")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["title"], "Keep me");
    assert_eq!(res.body["note"], "hello", "renamed_from kept the data");
    assert_eq!(res.body["priority"], 3, "existing rows got the default");
    assert_eq!(res.body["due"], serde_json::Value::Null);
    assert_eq!(res.body["tags"], json!([]));
    let res = app
        .inner
        .patch(&format!("/api/tasks/{id}"), json!({ "tags": [id] }), &[])
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(store.count_rows("task_tags").await.unwrap(), 1);

    // Removing an optional field keeps its column and data; the API stops showing it.
    let v3 = "  title: { type: string, required: true }\n  priority: { type: integer, required: true, default: 3 }\n";
    let report = sync(&store, v3).await.unwrap();
    assert!(
        report.kept.iter().any(|k| k.starts_with("task.note")),
        "{report:?}"
    );
    let (app, _d) = app_on(&store, v3).await;
    let res = app.inner.get(&format!("/api/tasks/{id}")).await;
    assert!(res.body.get("note").is_none());
    assert_eq!(store.count_rows("task").await.unwrap(), 1);
}

async fn other_changes_are_refused_and_nothing_changes(db: Db) {
    let test_db = TestDb::new(db).await;
    let store = Store::connect(&test_db.url).await.unwrap();
    let v1 = "  title: { type: string, required: true }\n  size: integer\n";
    sync(&store, v1).await.unwrap();

    let refused = [
        (
            "  title: { type: string, required: true }\n  size: text\n",
            "task.size",
        ),
        ("  title: { type: string }\n  size: integer\n", "task.title"),
        ("  size: integer\n", "task.title"),
        (
            "  title: { type: string, required: true }\n  size: integer\n  owner: { type: string, required: true }\n",
            "task.owner",
        ),
    ];
    for (fields, culprit) in refused {
        match sync(&store, fields).await {
            Err(store::Error::NeedsMigration(problems)) => {
                assert_eq!(problems.len(), 1, "{problems:?}");
                assert!(problems[0].starts_with(culprit), "{problems:?}");
            }
            other => panic!("expected a refusal for {fields:?}, got {other:?}"),
        }
    }
    // The original definitions still fit: nothing was applied.
    let again = sync(&store, v1).await.unwrap();
    assert!(again.is_empty(), "{again:?}");
}

async fn a_new_entity_referencing_an_old_one(db: Db) {
    let test_db = TestDb::new(db).await;
    let store = Store::connect(&test_db.url).await.unwrap();
    let task_v1 = (
        "models/task.yaml",
        "entity: task\nfields:\n  title: string\n",
    );
    let (engine, _d) = engine_for(&[task_v1]);
    store.sync_schema(&engine).await.unwrap();
    let (engine, _d) = engine_for(&[
        task_v1,
        (
            "models/comment.yaml",
            "entity: comment\nfields:\n  task: { type: ref, to: task, required: true }\n  body: text\n",
        ),
    ]);
    let report = store.sync_schema(&engine).await.unwrap();
    assert_eq!(report.created_tables, ["comment"]);
    let state = AppState::new(engine, store.clone());
    let app = common::TestAppRouter::new(router(state));
    let t = app.create("tasks", json!({ "title": "t" })).await;
    let c = app
        .post("/api/comments", json!({ "task": t, "body": "b" }))
        .await;
    assert_eq!(c.status, StatusCode::CREATED, "{}", c.body);
    let res = app.delete(&format!("/api/tasks/{t}")).await;
    assert_eq!(
        res.status,
        StatusCode::CONFLICT,
        "the new reference is enforced"
    );
}

async fn root_project_twice_is_a_no_op(db: Db) {
    let app = TestApp::root(db).await;
    let engine = app.state.engine.load_full();
    let report = app.store.sync_schema(&engine).await.unwrap();
    assert!(report.is_empty(), "{report:?}");
}

async fn adding_search_indexes_existing_rows(db: Db) {
    let test_db = TestDb::new(db).await;
    let store = Store::connect(&test_db.url).await.unwrap();
    let plain = "  title: { type: string, required: true }\n  body: text\n";
    let (app, _d) = app_on(&store, plain).await;
    app.inner
        .create(
            "tasks",
            json!({ "title": "Water the plants", "body": "twice a week" }),
        )
        .await;
    app.inner
        .create("tasks", json!({ "title": "Pay rent" }))
        .await;
    assert_eq!(
        app.inner.get("/api/tasks?q=plants").await.status,
        StatusCode::BAD_REQUEST
    );

    let searchable = format!("{plain}search: [title, body]\n");
    let (app, _d) = app_on(&store, &searchable).await;
    let res = app.inner.get("/api/tasks?q=week").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(
        res.body["items"].as_array().unwrap().len(),
        1,
        "rows written before the index are found"
    );
    assert_eq!(res.body["items"][0]["title"], "Water the plants");
    app.inner
        .create("tasks", json!({ "title": "Plants again" }))
        .await;
    let res = app.inner.get("/api/tasks?q=plants&count=true").await;
    assert_eq!(res.body["total"], 2);

    // Back and forth: the index follows the definitions; syncing twice is a no-op.
    let (app, _d) = app_on(&store, plain).await;
    assert_eq!(
        app.inner.get("/api/tasks?q=plants").await.status,
        StatusCode::BAD_REQUEST
    );
    let (app, _d) = app_on(&store, &searchable).await;
    assert_eq!(
        app.inner.get("/api/tasks?q=plants&count=true").await.body["total"],
        2
    );
    assert!(sync(&store, &searchable).await.unwrap().is_empty());
}

both!(
    adding_search_indexes_existing_rows,
    additive_changes_keep_data,
    other_changes_are_refused_and_nothing_changes,
    a_new_entity_referencing_an_old_one,
    root_project_twice_is_a_no_op,
);

/// `indexes: [[done, -score, id]]`: an index for `filter=done = false&sort=-score`,
/// descending with nulls last as lists sort, on both databases.
async fn an_index_for_a_sort(db: Db) {
    let app = TestApp::with_files(
        db,
        &[(
            "models/task.yaml",
            "entity: task\nfields:\n  title: string\n  done: { type: boolean, default: false }\n  score: integer\nindexes:\n  - [done, -score, id]\n",
        )],
    )
    .await;
    for (title, score) in [("a", Some(5)), ("b", None), ("c", Some(9)), ("d", Some(5))] {
        app.create("tasks", json!({ "title": title, "score": score }))
            .await;
    }
    let res = app
        .get("/api/tasks?filter=done%20%3D%20false&sort=-score,title")
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let titles: Vec<&str> = res.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["c", "a", "d", "b"]);
    let sql = "ix_task_done_score_desc_id";
    let definition: String = match db {
        Db::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.db.url).await.unwrap();
            let (d,): (String,) = sqlx::query_as("SELECT sql FROM sqlite_master WHERE name = $1")
                .bind(sql)
                .fetch_one(&pool)
                .await
                .unwrap();
            d
        }
        Db::Postgres => {
            let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
            let (d,): (String,) = sqlx::query_as(
                "SELECT indexdef FROM pg_indexes WHERE indexname = $1 AND schemaname = current_schema()",
            )
            .bind(sql)
            .fetch_one(&pool)
            .await
            .unwrap();
            d
        }
    };
    let expected = match db {
        Db::Sqlite => r#"("done", "score" DESC, "id")"#,
        Db::Postgres => "(done, score DESC NULLS LAST, id)",
    };
    assert!(definition.contains(expected), "{definition}");
}
both!(an_index_for_a_sort);

/// Writes a row of `_trellis_schema` as a database of an older Trellis holds it.
async fn write_snapshot(db: Db, url: &str, name: &str, definition: &str) {
    let sql = "UPDATE _trellis_schema SET definition = $1 WHERE name = $2";
    match db {
        Db::Sqlite => {
            let pool = sqlx::SqlitePool::connect(url).await.unwrap();
            sqlx::query(sql)
                .bind(definition)
                .bind(name)
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        Db::Postgres => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query(sql)
                .bind(definition)
                .bind(name)
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    }
}

async fn read_snapshot(db: Db, url: &str, name: &str) -> String {
    let sql = "SELECT definition FROM _trellis_schema WHERE name = $1";
    match db {
        Db::Sqlite => {
            let pool = sqlx::SqlitePool::connect(url).await.unwrap();
            let (d,): (String,) = sqlx::query_as(sql)
                .bind(name)
                .fetch_one(&pool)
                .await
                .unwrap();
            pool.close().await;
            d
        }
        Db::Postgres => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let (d,): (String,) = sqlx::query_as(sql)
                .bind(name)
                .fetch_one(&pool)
                .await
                .unwrap();
            pool.close().await;
            d
        }
    }
}

/// A database whose stored shapes are of the old form (SQL signatures): the next sync
/// converts them, writes them back typed, and judges changes as before.
async fn old_form_snapshots_are_converted(db: Db) {
    let test_db = TestDb::new(db).await;
    let store = Store::connect(&test_db.url).await.unwrap();
    let person = (
        "models/person.yaml",
        "entity: person\nfields:\n  name: string\n",
    );
    let v1 = "entity: task\nfields:\n  title: { type: string, required: true }\n  body: text\n  price: { type: decimal, precision: 10, scale: 2 }\n  who: { type: ref, to: person, on_delete: cascade }\n  tags: { type: many, of: person }\nsearch: [title]\n";
    let (engine, _d) = engine_for(&[person, ("models/task.yaml", v1)]);
    store.sync_schema(&engine).await.unwrap();

    // What the previous release stored, with logical types and without (the oldest).
    let (uuid, numeric) = match db {
        Db::Sqlite => ("TEXT", "INTEGER"),
        Db::Postgres => ("UUID", "NUMERIC(10, 2)"),
    };
    let with_types = format!(
        r#"{{"columns":{{"body":"TEXT","price":"{numeric}","title":"TEXT NOT NULL","who":"{uuid} REFERENCES person ON DELETE CASCADE"}},"links":{{"tags":"person"}},"search":["title"],"types":{{"body":"text","price":"decimal(10,2)","title":"string","who":"ref"}},"values":{{}}}}"#
    );
    let oldest = format!(
        r#"{{"columns":{{"body":"TEXT","price":"{numeric}","title":"TEXT NOT NULL","who":"{uuid} REFERENCES person ON DELETE CASCADE"}},"links":{{"tags":"person"}},"search":["title"]}}"#
    );
    let person_old = r#"{"columns":{"name":"TEXT"},"links":{},"search":[],"types":{"name":"string"},"values":{}}"#;
    for old in [&with_types, &oldest] {
        write_snapshot(db, &test_db.url, "task", old).await;
        write_snapshot(db, &test_db.url, "person", person_old).await;
        let report = store.sync_schema(&engine).await.unwrap();
        assert!(report.is_empty(), "{report:?}");
        for name in ["task", "person"] {
            let stored = read_snapshot(db, &test_db.url, name).await;
            assert!(
                stored.starts_with(r#"{"fields":["#) && !stored.contains("NOT NULL"),
                "{stored}"
            );
        }
        let again = sync_files(&store, &[person, ("models/task.yaml", v1)]).await;
        assert!(again.unwrap().is_empty());
    }

    // Changes are judged as before: a changed `required` is refused with the old
    // signatures, an additive one is applied.
    write_snapshot(db, &test_db.url, "task", &with_types).await;
    let optional = v1.replace("title: { type: string, required: true }", "title: string");
    match sync_files(&store, &[person, ("models/task.yaml", &optional)]).await {
        Err(store::Error::NeedsMigration(problems)) => assert_eq!(
            problems,
            [
                "task.title: changed from `TEXT NOT NULL` to `TEXT`; a changed type, `required` or reference needs a migration"
            ]
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    write_snapshot(db, &test_db.url, "task", &oldest).await;
    let added = v1.replace("  tags:", "  due: date\n  tags:");
    let report = sync_files(&store, &[person, ("models/task.yaml", &added)])
        .await
        .unwrap();
    assert_eq!(report.added_columns, ["task.due"]);
    assert!(report.changed_columns.is_empty() && report.kept.is_empty());
    store.close().await;
}

async fn sync_files(
    store: &Store,
    files: &[(&str, &str)],
) -> Result<store::SyncReport, store::Error> {
    let (engine, _dir) = engine_for(files);
    store.sync_schema(&engine).await
}

both!(old_form_snapshots_are_converted);
