//! The first five minutes: `trellis init` → `check` → `test` → `serve` → a
//! request, as a new user runs them (real processes, both databases), and what
//! the commands say in a folder that holds no project.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::process::{free_port, serve_with, trellis, wait_healthy};
use common::{Db, TEST_SECRET, TestDb};
use serde_json::{Value, json};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    trellis()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run trellis")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// One HTTP/1.1 request with an optional bearer token.
fn call(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status: u16 = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Every file the new project holds, relative to it, sorted.
fn files_of(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

async fn init_check_test_serve(db: Db) {
    let parent = tempfile::tempdir().unwrap();
    let out = run_in(parent.path(), &["init", "shop"]);
    let said = ok(&out);
    let project = parent.path().join("shop");
    assert!(said.contains("cd shop"), "{said}");
    assert!(said.contains("trellis check"), "{said}");
    assert_eq!(
        files_of(&project),
        [
            ".gitignore",
            "README.md",
            "models/task.yaml",
            "models/user.yaml",
            "policies/task.yaml",
            "policies/user.yaml",
            "schemas/migration.schema.json",
            "schemas/model.schema.json",
            "schemas/policy.schema.json",
            "schemas/trellis.schema.json",
            "schemas/workflow.schema.json",
            "trellis.yaml",
            "workflows/task.yaml",
        ]
    );
    assert!(
        std::fs::read_to_string(project.join(".gitignore"))
            .unwrap()
            .lines()
            .any(|l| l == ".trellis/")
    );
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    for command in ["trellis check", "trellis test", "trellis serve"] {
        assert!(readme.contains(command), "README lacks {command}");
    }

    // Every YAML file names its schema, which exists beside it (offline) and is
    // the one the binary generates, and the file satisfies it.
    for (file, schema, generated) in [
        (
            "trellis.yaml",
            "schemas/trellis.schema.json",
            trellis::spec::schema::settings_schema(),
        ),
        (
            "models/user.yaml",
            "../schemas/model.schema.json",
            trellis::spec::schema::model_schema(),
        ),
        (
            "models/task.yaml",
            "../schemas/model.schema.json",
            trellis::spec::schema::model_schema(),
        ),
        (
            "policies/user.yaml",
            "../schemas/policy.schema.json",
            trellis::spec::schema::policy_schema(),
        ),
        (
            "policies/task.yaml",
            "../schemas/policy.schema.json",
            trellis::spec::schema::policy_schema(),
        ),
        (
            "workflows/task.yaml",
            "../schemas/workflow.schema.json",
            trellis::spec::schema::workflow_schema(),
        ),
    ] {
        let path = project.join(file);
        let yaml = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            yaml.lines().next().unwrap(),
            format!("# yaml-language-server: $schema={schema}"),
            "{file}"
        );
        let written: Value = serde_json::from_str(
            &std::fs::read_to_string(path.parent().unwrap().join(schema)).unwrap(),
        )
        .unwrap();
        assert_eq!(written, generated, "{file}: {schema}");
        let validator = jsonschema::validator_for(&written).unwrap();
        let value = trellis::spec::yaml::parse(&yaml).unwrap().to_json();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{file}: {errors:?}");
    }

    // check → test → serve, from inside the folder as the README says.
    let out = run_in(&project, &["check"]);
    ok(&out);
    assert!(
        text(&out.stderr).contains("0 errors, 0 warnings"),
        "{}",
        text(&out.stderr)
    );
    let test_db = TestDb::new(db).await;
    let url = (db == Db::Postgres).then_some(test_db.url.as_str());
    let mut args = vec!["test"];
    if let Some(url) = url {
        args.extend(["--database-url", url]);
    }
    let tested = ok(&run_in(&project, &args));
    assert!(
        tested.contains("policy tests: 4 passed, 0 failed"),
        "{tested}"
    );

    let dir = project.to_str().unwrap();
    if db == Db::Sqlite {
        // Nothing to explain before the database exists; asking does not create it.
        let out = trellis()
            .args([
                "explain",
                dir,
                "task",
                "0190a0a0-0000-7000-8000-000000000000",
                "read",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).contains("there is no database at"),
            "{}",
            text(&out.stderr)
        );
        assert!(!project.join(".trellis").exists());
    }
    let port = free_port();
    let mut server = serve_with(dir, port, url, &[("TRELLIS_JWT_SECRET", TEST_SECRET)]);
    wait_healthy(&mut server, port);
    let (status, ann) = call(
        port,
        "POST",
        "/auth/signup",
        None,
        Some(&json!({ "email": "ann@example.com", "password": "correct horse", "name": "Ann" })),
    );
    assert_eq!(status, 201, "{ann}");
    let token = ann["access_token"].as_str().unwrap().to_string();
    let ann_id = ann["user"]["id"].as_str().unwrap().to_string();
    assert_eq!(ann["user"]["role"], "member");
    let (status, task) = call(
        port,
        "POST",
        "/api/tasks",
        Some(&token),
        Some(&json!({ "title": "Water the plants" })),
    );
    assert_eq!(status, 201, "{task}");
    assert_eq!(task["owner"], ann_id.as_str());
    assert_eq!(task["status"], "todo");
    let task_id = task["id"].as_str().unwrap().to_string();
    let (status, done) = call(
        port,
        "POST",
        &format!("/api/tasks/{task_id}/transitions/finish"),
        Some(&token),
        Some(&json!({})),
    );
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "done");
    assert!(done["done_at"].is_string(), "{done}");
    // Another person sees nothing of Ann's; anonymous callers are asked to sign in.
    let (_, bob) = call(
        port,
        "POST",
        "/auth/signup",
        None,
        Some(&json!({ "email": "bob@example.com", "password": "correct horse", "name": "Bob" })),
    );
    let bob_token = bob["access_token"].as_str().unwrap().to_string();
    let bob_id = bob["user"]["id"].as_str().unwrap().to_string();
    let (status, page) = call(port, "GET", "/api/tasks", Some(&bob_token), None);
    assert_eq!(status, 200);
    assert_eq!(page["items"], json!([]));
    let (status, _) = call(
        port,
        "GET",
        &format!("/api/tasks/{task_id}"),
        Some(&bob_token),
        None,
    );
    assert_eq!(status, 404);
    let (status, _) = call(port, "GET", "/api/tasks", None, None);
    assert_eq!(status, 401);
    // Mass assignment: a member neither picks a role at signup nor gives a task away.
    let (status, refused) = call(
        port,
        "POST",
        "/auth/signup",
        None,
        Some(
            &json!({ "email": "eve@example.com", "password": "correct horse", "name": "Eve", "role": "admin" }),
        ),
    );
    assert_eq!(status, 422, "{refused}");
    let (status, refused) = call(
        port,
        "POST",
        "/api/tasks",
        Some(&bob_token),
        Some(&json!({ "title": "Planted", "owner": ann_id })),
    );
    assert_eq!(status, 422, "{refused}");
    // Nor gives one of their own away, stamps it done, moves it past the workflow,
    // or makes themself an admin; and they see only their own account.
    let (_, mine) = call(
        port,
        "POST",
        "/api/tasks",
        Some(&bob_token),
        Some(&json!({ "title": "Mine" })),
    );
    let mine_path = format!("/api/tasks/{}", mine["id"].as_str().unwrap());
    for change in [
        json!({ "owner": ann_id }),
        json!({ "done_at": "2026-01-01T00:00:00Z" }),
        json!({ "status": "done" }),
    ] {
        let (status, body) = call(port, "PATCH", &mine_path, Some(&bob_token), Some(&change));
        assert_eq!(status, 422, "{change}: {body}");
    }
    let (status, body) = call(
        port,
        "PATCH",
        &format!("/api/users/{bob_id}"),
        Some(&bob_token),
        Some(&json!({ "role": "admin" })),
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["pointer"], "/role");
    let (status, _) = call(
        port,
        "GET",
        &format!("/api/users/{ann_id}"),
        Some(&bob_token),
        None,
    );
    assert_eq!(status, 404);
    let (_, me) = call(
        port,
        "GET",
        &format!("/api/users/{bob_id}"),
        Some(&bob_token),
        None,
    );
    assert_eq!(me["role"], "member");
    drop(server);
    if db == Db::Sqlite {
        assert!(project.join(".trellis/data.db").is_file());
    }

    // `explain`, in words and as JSON, on the served database.
    let explain = |who: &str, format: Option<&str>| {
        let mut args = vec![
            "explain",
            dir,
            "task",
            task_id.as_str(),
            "delete",
            "--as",
            who,
            "--roles",
            "member",
        ];
        if let Some(url) = url {
            args.extend(["--database-url", url]);
        }
        if let Some(f) = format {
            args.extend(["--format", f]);
        }
        ok(&trellis().args(&args).output().unwrap())
    };
    let words = explain(&ann_id, None);
    assert!(
        words.starts_with(&format!(
            "DENIED: User `{ann_id}` (roles: authenticated, member) may not delete task {task_id}."
        )),
        "{words}"
    );
    assert!(
        words.contains(
            "Why: the deny rule “Finished tasks are not deleted” applies, and deny wins."
        ),
        "{words}"
    );
    assert!(words.contains("Rules of policies/task.yaml:"), "{words}");
    assert!(
        words.contains("applies: `mine` holds on this record"),
        "{words}"
    );
    assert!(
        words.contains("where mine means `owner = user.id`"),
        "{words}"
    );
    assert!(
        words.contains("applies: `status = done` holds on this record"),
        "{words}"
    );
    assert!(
        words.contains("does not apply: not for the caller's roles"),
        "{words}"
    );
    let words = explain(&bob_id, None);
    assert!(words.starts_with("DENIED: User"), "{words}");
    assert!(
        words.contains("does not apply: `mine` does not hold on this record"),
        "{words}"
    );
    let json: Value = serde_json::from_str(&explain(&ann_id, Some("json"))).unwrap();
    assert_eq!(json["decision"], "deny");
    assert_eq!(json["action"], "delete");
    assert_eq!(json["rules"][0]["condition_holds"], true);
}

both!(init_check_test_serve);

#[test]
fn init_never_writes_over_a_project_or_a_file() {
    let dir = tempfile::tempdir().unwrap();
    ok(&run_in(dir.path(), &["init"]));
    let before = std::fs::read_to_string(dir.path().join("models/task.yaml")).unwrap();
    std::fs::write(
        dir.path().join("models/task.yaml"),
        "entity: task\nfields:\n  x: string\n",
    )
    .unwrap();
    for args in [&["init"][..], &["init", "--force"], &["init", "."]] {
        let out = run_in(dir.path(), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("already holds a Trellis project (trellis.yaml)"),
            "{err}"
        );
        assert!(err.contains("nothing was written"), "{err}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("models/task.yaml")).unwrap(),
        "entity: task\nfields:\n  x: string\n"
    );
    assert!(before.contains("entity: task"));

    // A folder with the user's own README and .gitignore (a fresh repository).
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(repo.path().join("README.md"), "# Mine\n").unwrap();
    std::fs::write(repo.path().join(".gitignore"), "node_modules").unwrap();
    let out = run_in(repo.path(), &["init"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("already has README.md, .gitignore"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(
        files_of(repo.path()),
        [".gitignore", "README.md"],
        "nothing was written"
    );
    let said = ok(&run_in(repo.path(), &["init", "--force"]));
    assert!(said.contains("Kept as they were: README.md"), "{said}");
    assert_eq!(
        std::fs::read_to_string(repo.path().join("README.md")).unwrap(),
        "# Mine\n"
    );
    let ignore = std::fs::read_to_string(repo.path().join(".gitignore")).unwrap();
    assert!(ignore.starts_with("node_modules\n"), "{ignore}");
    assert!(ignore.lines().any(|l| l == ".trellis/"), "{ignore}");
    assert!(repo.path().join("models/task.yaml").is_file());
    ok(&run_in(repo.path(), &["check"]));

    // A file is not a folder.
    let out = run_in(repo.path(), &["init", "README.md"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is a file, not a folder"));
}

/// Every command that needs a project, in an empty folder and in one that does
/// not exist: what it expected, where it looked, how to start; exit 1, and
/// nothing created (no database, no `.trellis/`).
#[test]
fn commands_refuse_a_folder_without_a_project() {
    let empty = tempfile::tempdir().unwrap();
    std::fs::create_dir(empty.path().join("models")).unwrap();
    let missing = empty.path().join("nope");
    let id = "0190a0a0-0000-7000-8000-000000000000";
    let port = free_port().to_string();
    for (dir, looked) in [
        (empty.path().to_path_buf(), "holds no .yaml files"),
        (missing.clone(), "does not exist"),
    ] {
        let d = dir.to_str().unwrap();
        let commands: Vec<Vec<&str>> = vec![
            vec!["serve", d, "--port", &port],
            vec!["check", d],
            vec!["test", d],
            vec!["openapi", d],
            vec!["migrate", "plan", d],
            vec!["migrate", "apply", d],
            vec!["migrate", "status", d],
            vec!["migrate", "baseline", d],
            vec!["token", d, "--sub", "u1"],
            vec!["explain", d, "task", id, "read"],
            vec!["add-user", d, "a@example.com"],
            vec!["diagram", d, "task"],
        ];
        for args in commands {
            let out = trellis().args(&args).output().unwrap();
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            let err = text(&out.stderr);
            assert!(
                err.contains("no Trellis project here: expected model files (models/*.yaml)"),
                "{args:?}: {err}"
            );
            assert!(err.contains(looked), "{args:?}: {err}");
            assert!(
                err.contains(&format!("`trellis init {d}`")),
                "{args:?}: {err}"
            );
            assert!(!err.contains("panicked"), "{err}");
        }
        assert!(!missing.exists(), "a missing folder stays missing");
    }
    assert_eq!(
        std::fs::read_dir(empty.path()).unwrap().count(),
        1,
        "only models/ is there: no database, no .trellis/"
    );
    assert_eq!(
        std::fs::read_dir(empty.path().join("models"))
            .unwrap()
            .count(),
        0
    );

    // For tools: the diagnostics as JSON, and exit 1.
    let out = trellis()
        .args(["check", empty.path().to_str().unwrap(), "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let diags: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(diags[0]["code"], "no-models");

    // The current folder: the advice is plain `trellis init`.
    let out = trellis()
        .current_dir(empty.path())
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("Start one with `trellis init`,"), "{err}");
    let shown = std::fs::canonicalize(empty.path()).unwrap().join("models");
    assert!(err.contains(&shown.display().to_string()), "{err}");
    assert!(!empty.path().join(".trellis").exists());
}
