//! `trellis migrate plan | apply | status` and production mode, as a user runs them:
//! real processes against a real SQLite file or PostgreSQL schema, with rows present.

mod common;

use std::path::Path;
use std::process::Output;

use common::process::{free_port, http, serve_with, trellis, wait_healthy};
use common::{Db, TestDb};
use serde_json::json;
use trellis::store::Store;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn migrate(dir: &Path, url: &str, args: &[&str]) -> Output {
    trellis()
        .arg("migrate")
        .arg(args[0])
        .arg(dir)
        .args(&args[1..])
        .args(["--database-url", url])
        .output()
        .expect("run trellis migrate")
}

fn ok(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs `serve --mode production` and returns how it ended (it refuses to start).
fn serve_in_production(dir: &Path, url: &str) -> Output {
    trellis()
        .arg("serve")
        .arg(dir)
        .args(["--mode", "production", "--port", &free_port().to_string()])
        .args(["--database-url", url])
        .output()
        .expect("run trellis serve")
}

const TASK_V1: &str = "entity: task\nfields:\n  name: { type: string, required: true }\n  points: integer\n  notes: text\n  owner: string\n";
/// `name` renamed to `title`, `points` widened to a decimal, `notes` dropped,
/// `owner` now required with a default, a new entity.
const TASK_V2: &str = "entity: task\nfields:\n  title: { type: string, required: true, renamed_from: name }\n  points: { type: decimal, scale: 1 }\n  owner: { type: string, required: true, default: nobody }\n";
const LABEL: &str = "entity: label\nfields:\n  text: { type: string, required: true }\n";

struct Project {
    dir: tempfile::TempDir,
    url: String,
    _db: TestDb,
}

async fn project(db: Db) -> Project {
    let dir = common::project(&[("models/task.yaml", TASK_V1)]);
    let test_db = TestDb::new(db).await;
    let url = match db {
        Db::Postgres => test_db.url.clone(),
        Db::Sqlite => format!("sqlite://{}", dir.path().join("data.db").display()),
    };
    Project {
        dir,
        url,
        _db: test_db,
    }
}

/// Starts `serve` in production mode and posts the records, then stops it.
fn create_tasks(p: &Project, tasks: &[serde_json::Value]) {
    let port = free_port();
    let mut server = serve_with(
        p.dir.path().to_str().unwrap(),
        port,
        Some(&p.url),
        &[("TRELLIS_MODE", "production")],
    );
    wait_healthy(&mut server, port);
    for t in tasks {
        let (status, body) = http(port, "POST", "/api/tasks", Some(t)).unwrap();
        assert_eq!(status, 201, "{body}");
    }
}

async fn plan_apply_and_status(db: Db) {
    let p = project(db).await;
    let dir = p.dir.path();

    // Production mode refuses a database that no migration has prepared.
    let out = serve_in_production(dir, &p.url);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("never changes the schema") && err.contains("migrate plan"),
        "{err}"
    );

    let out = ok(&migrate(dir, &p.url, &["plan"]));
    assert!(out.contains("migrations/0001_initial.yaml"), "{out}");
    assert!(out.contains("create the entity `task`"), "{out}");
    let file = std::fs::read_to_string(dir.join("migrations/0001_initial.yaml")).unwrap();
    assert!(
        file.starts_with(
            "# yaml-language-server: $schema=../schemas/migration.schema.json\n# Trellis migration 0001_initial"
        ),
        "{file}"
    );
    assert!(
        file.contains("definitions:\n  models/task.yaml: |\n    entity: task\n"),
        "{file}"
    );
    // Planning again writes nothing.
    let out = ok(&migrate(dir, &p.url, &["plan"]));
    assert!(out.contains("Nothing changed since 0001_initial"), "{out}");
    assert_eq!(
        std::fs::read_dir(dir.join("migrations")).unwrap().count(),
        1
    );

    let out = ok(&migrate(dir, &p.url, &["status"]));
    assert!(out.contains("pending  0001_initial"), "{out}");
    let out = ok(&migrate(dir, &p.url, &["apply"]));
    assert!(out.contains("applied 0001_initial"), "{out}");
    // Applying twice is a no-op.
    let out = ok(&migrate(dir, &p.url, &["apply"]));
    assert!(out.contains("Nothing to apply"), "{out}");

    create_tasks(
        &p,
        &[
            json!({ "name": "Write docs", "points": 3, "notes": "long", "owner": "ann" }),
            json!({ "name": "Fix bug", "points": 5 }),
            json!({ "name": "Release", "notes": "tomorrow" }),
        ],
    );

    // The next definitions: a rename, a widened type, a dropped field, a field made
    // required with a default, a new entity.
    std::fs::write(dir.join("models/task.yaml"), TASK_V2).unwrap();
    std::fs::write(dir.join("models/label.yaml"), LABEL).unwrap();
    let out = ok(&migrate(
        dir,
        &p.url,
        &["plan", "--name", "Rename and tidy tasks"],
    ));
    for step in [
        "create the entity `label`",
        "rename the field `task.name` to `title` (its data is kept)",
        "change the field `task.points`: type integer -> decimal(18, 1)",
        "change the field `task.owner`: now required",
        "drop the field `task.notes` (text) and its data",
        "LOSES DATA: drop the field `task.notes`: the values of 2 record(s) are lost",
    ] {
        assert!(out.contains(step), "missing `{step}` in {out}");
    }
    assert!(
        dir.join("migrations/0002_rename_and_tidy_tasks.yaml")
            .is_file()
    );

    // Refused without --allow-destructive: nothing of it is applied.
    let out = migrate(dir, &p.url, &["apply"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("0002_rename_and_tidy_tasks would lose data"),
        "{err}"
    );
    assert!(err.contains("--allow-destructive"), "{err}");
    let store = Store::connect(&p.url).await.unwrap();
    assert_eq!(store.count_rows("task").await.unwrap(), 3);
    assert_eq!(store.applied_migrations().await.unwrap().len(), 1);
    let out = ok(&migrate(dir, &p.url, &["status"]));
    assert!(out.contains("pending  0002_rename_and_tidy_tasks"), "{out}");

    let out = ok(&migrate(dir, &p.url, &["apply", "--allow-destructive"]));
    assert!(out.contains("applied 0002_rename_and_tidy_tasks"), "{out}");
    assert!(out.contains("lost: drop the field `task.notes`"), "{out}");

    // The data followed: renamed, converted, filled; the new entity works.
    let port = free_port();
    let mut server = serve_with(
        dir.to_str().unwrap(),
        port,
        Some(&p.url),
        &[("TRELLIS_MODE", "production")],
    );
    wait_healthy(&mut server, port);
    let (status, body) = http(port, "GET", "/api/tasks?sort=title", None).unwrap();
    assert_eq!(status, 200, "{body}");
    let rows: Vec<(String, serde_json::Value, String)> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert!(t.get("notes").is_none(), "{t}");
            (
                t["title"].as_str().unwrap().to_string(),
                t["points"].clone(),
                t["owner"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("Fix bug".to_string(), json!("5.0"), "nobody".to_string()),
            ("Release".to_string(), json!(null), "nobody".to_string()),
            ("Write docs".to_string(), json!("3.0"), "ann".to_string()),
        ]
    );
    let (status, _) = http(
        port,
        "POST",
        "/api/labels",
        Some(&json!({ "text": "urgent" })),
    )
    .unwrap();
    assert_eq!(status, 201);
    // The change log's triggers follow the new shape of the table (SQLite rebuilt it).
    let first = body["items"][0]["id"].as_str().unwrap().to_string();
    let (status, body) = http(
        port,
        "PATCH",
        &format!("/api/tasks/{first}"),
        Some(&json!({ "title": "Fix the bug" })),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let log = store.changes_after(0, Some("task"), 100).await.unwrap();
    let last = log.last().unwrap();
    assert_eq!(last.kind.as_str(), "updated");
    assert_eq!(last.before_text("title").as_deref(), Some("Fix bug"));
    assert_eq!(last.before_text("owner").as_deref(), Some("nobody"));
    assert!(!last.before.as_deref().unwrap().contains("notes"));
    drop(server);

    // An applied migration that was edited is refused, and production will not start.
    let path = dir.join("migrations/0001_initial.yaml");
    let edited = std::fs::read_to_string(&path)
        .unwrap()
        .replace("points: integer", "points: number");
    std::fs::write(&path, edited).unwrap();
    let out = migrate(dir, &p.url, &["apply"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("applied migrations were edited") && err.contains("0001_initial"),
        "{err}"
    );
    let out = ok(&migrate(dir, &p.url, &["status"]));
    assert!(out.contains("EDITED   0001_initial"), "{out}");
    let out = serve_in_production(dir, &p.url);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("0001_initial was edited after it was applied"));
    store.close().await;
}

/// A required field without a default cannot be added while records exist, not even
/// with --allow-destructive.
async fn impossible_steps_are_refused(db: Db) {
    let p = project(db).await;
    let dir = p.dir.path();
    ok(&migrate(dir, &p.url, &["plan"]));
    ok(&migrate(dir, &p.url, &["apply"]));
    create_tasks(&p, &[json!({ "name": "One" })]);
    std::fs::write(
        dir.join("models/task.yaml"),
        format!("{TASK_V1}  due: {{ type: date, required: true }}\n"),
    )
    .unwrap();
    let out = ok(&migrate(dir, &p.url, &["plan"]));
    assert!(
        out.contains("CANNOT APPLY: add the required field `task.due` without a default"),
        "{out}"
    );
    let out = migrate(dir, &p.url, &["apply", "--allow-destructive"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("(cannot be allowed)"),
        "{}",
        text(&out.stderr)
    );
    let store = Store::connect(&p.url).await.unwrap();
    assert_eq!(store.applied_migrations().await.unwrap().len(), 1);
    store.close().await;
}

/// Removing an enum value that records hold is a loss: counted, refused, then applied
/// by emptying those records' field.
async fn removed_enum_values(db: Db) {
    let p = project(db).await;
    let dir = p.dir.path();
    let with = |values: &str| format!("{TASK_V1}  size: {{ type: enum, values: [{values}] }}\n");
    std::fs::write(dir.join("models/task.yaml"), with("small, medium, large")).unwrap();
    ok(&migrate(dir, &p.url, &["plan"]));
    ok(&migrate(dir, &p.url, &["apply"]));
    create_tasks(
        &p,
        &[
            json!({ "name": "A", "size": "medium" }),
            json!({ "name": "B", "size": "medium" }),
            json!({ "name": "C", "size": "large" }),
        ],
    );
    std::fs::write(dir.join("models/task.yaml"), with("small, large")).unwrap();
    let out = ok(&migrate(dir, &p.url, &["plan", "--name", "no medium"]));
    assert!(out.contains("values removed: medium"), "{out}");
    assert!(
        out.contains(
            "LOSES DATA: remove `medium` from `task.size`: 2 record(s) hold them and become empty"
        ),
        "{out}"
    );
    assert_eq!(migrate(dir, &p.url, &["apply"]).status.code(), Some(1));
    ok(&migrate(dir, &p.url, &["apply", "--allow-destructive"]));
    let port = free_port();
    let mut server = serve_with(
        dir.to_str().unwrap(),
        port,
        Some(&p.url),
        &[("TRELLIS_MODE", "production")],
    );
    wait_healthy(&mut server, port);
    let (_, body) = http(port, "GET", "/api/tasks?sort=name&fields=name,size", None).unwrap();
    assert_eq!(
        body["items"],
        json!([{ "id": body["items"][0]["id"], "name": "A", "size": null },
               { "id": body["items"][1]["id"], "name": "B", "size": null },
               { "id": body["items"][2]["id"], "name": "C", "size": "large" }])
    );
}

/// A file field is added and dropped like any other; a field holding values is not
/// converted to a file field (nor back).
async fn file_fields_are_added_and_dropped(db: Db) {
    let p = project(db).await;
    let dir = p.dir.path();
    let with = |extra: &str| format!("{TASK_V1}{extra}");
    std::fs::write(
        dir.join("models/task.yaml"),
        with(
            "  scan: { type: file, accept: [application/pdf] }
  docs: { type: file, multiple: true }
",
        ),
    )
    .unwrap();
    let out = ok(&migrate(dir, &p.url, &["plan", "--name", "files"]));
    assert!(out.contains("scan") && out.contains("docs"), "{out}");
    ok(&migrate(dir, &p.url, &["apply"]));
    create_tasks(
        &p,
        &[json!({ "name": "A", "owner": "ann", "scan": null, "docs": [] })],
    );
    // `owner` holds a value: it does not become a file field.
    std::fs::write(
        dir.join("models/task.yaml"),
        "entity: task\nfields:\n  name: { type: string, required: true }\n  points: integer\n  notes: text\n  owner: file\n  scan: { type: file, accept: [application/pdf] }\n  docs: { type: file, multiple: true }\n",
    )
    .unwrap();
    let out = ok(&migrate(dir, &p.url, &["plan", "--name", "owner file"]));
    assert!(
        out.contains("1 record(s) hold a value, which cannot be converted to or from files"),
        "{out}"
    );
    assert_eq!(migrate(dir, &p.url, &["apply"]).status.code(), Some(1));
    // Dropping the file fields (and not converting `owner`) applies.
    std::fs::remove_dir_all(dir.join("migrations")).ok();
    std::fs::write(dir.join("models/task.yaml"), TASK_V1).unwrap();
    let out = migrate(dir, &p.url, &["plan", "--name", "no files"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// A file field does not switch between one file and several while records hold a
/// value: their stored metadata would keep the other shape (an object, or a list).
async fn file_fields_keep_single_or_multiple(db: Db) {
    let p = project(db).await;
    let dir = p.dir.path();
    let with = |extra: &str| format!("{TASK_V1}{extra}");
    std::fs::write(
        dir.join("models/task.yaml"),
        with("  docs: { type: file, multiple: true }\n  scan: file\n"),
    )
    .unwrap();
    ok(&migrate(dir, &p.url, &["plan", "--name", "files"]));
    ok(&migrate(dir, &p.url, &["apply"]));
    create_tasks(&p, &[json!({ "name": "A", "docs": [], "scan": null })]);
    std::fs::write(
        dir.join("models/task.yaml"),
        with("  docs: file\n  scan: { type: file, multiple: true }\n"),
    )
    .unwrap();
    let out = ok(&migrate(dir, &p.url, &["plan", "--name", "shapes"]));
    assert!(
        out.contains("change `task.docs` from file (multiple) to file: 1 record(s) hold a value stored in the other shape"),
        "{out}"
    );
    assert_eq!(migrate(dir, &p.url, &["apply"]).status.code(), Some(1));
}

both!(
    plan_apply_and_status,
    impossible_steps_are_refused,
    removed_enum_values,
    file_fields_are_added_and_dropped,
    file_fields_keep_single_or_multiple
);

/// Two processes apply the same migrations at once against PostgreSQL: each
/// migration is applied by exactly one of them; the other waits for the lock and
/// finds it done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appliers_on_postgres() {
    let p = project(Db::Postgres).await;
    let dir = p.dir.path();
    ok(&migrate(dir, &p.url, &["plan"]));
    std::fs::write(dir.join("models/label.yaml"), LABEL).unwrap();
    ok(&migrate(dir, &p.url, &["plan", "--name", "labels"]));
    std::fs::write(dir.join("models/task.yaml"), TASK_V2).unwrap();
    ok(&migrate(dir, &p.url, &["plan", "--name", "tidy"]));
    let spawn = || {
        trellis()
            .args([
                "migrate",
                "apply",
                dir.to_str().unwrap(),
                "--allow-destructive",
            ])
            .args(["--database-url", &p.url])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let (a, b) = (ok(&a), ok(&b));
    for name in ["0001_initial", "0002_labels", "0003_tidy"] {
        let applied = [&a, &b]
            .iter()
            .filter(|o| o.contains(&format!("applied {name}\n")))
            .count();
        assert_eq!(applied, 1, "{name} applied once:\n--- a\n{a}\n--- b\n{b}");
    }
    println!("process a:\n{a}\nprocess b:\n{b}");
    let store = Store::connect(&p.url).await.unwrap();
    assert_eq!(store.applied_migrations().await.unwrap().len(), 3);
    store.close().await;
}

/// Every change to the root project's models comes with its migration: production
/// deployments of it would otherwise refuse to start.
#[test]
fn the_root_project_migrations_cover_its_models() {
    let root = common::repo_root();
    let (files, problems) = trellis::spec::migration::read_all(&root);
    assert!(problems.is_empty(), "{problems:#?}");
    let last = files.last().expect("migrations/ has the initial migration");
    let base =
        trellis::engine::Engine::build(&trellis::spec::migration::load_texts(&last.definitions))
            .expect("the last migration's definitions build");
    let current = trellis::engine::Engine::build(&trellis::spec::load(&root)).expect("engine");
    let steps = trellis::engine::migration::steps(Some(&base), &current);
    assert!(
        steps.is_empty(),
        "the models changed since {}: run `cargo run -- migrate plan --name …` and commit the file:\n{steps:#?}",
        last.name
    );
}
