//! The `trellis` command as a user runs it: real processes, real ports.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Output;
use std::time::{Duration, Instant};

use common::process::{free_port, http, serve, serve_with, trellis, wait_healthy};
use common::{Db, TestDb};
use serde_json::{Value, json};

fn run(args: &[&str]) -> Output {
    trellis().args(args).output().expect("run trellis")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_is_clean_on_the_root_project() {
    let out = run(&["check", env!("CARGO_MANIFEST_DIR")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("0 errors"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_prints_every_problem_and_fails() {
    let dir = common::project(&[
        (
            "models/task.yaml",
            "entity: task\nfields:\n  title: { type: strng, requird: true }\n",
        ),
        (
            "models/note.yaml",
            "entity: note\nfields:\n  task: { type: ref, to: tsk }\n",
        ),
    ]);
    let out = run(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for expected in [
        "models/task.yaml:3:18",
        "did you mean `string`?",
        "models/task.yaml:3:25",
        "did you mean `required`?",
        "models/note.yaml:3:26",
        "did you mean `task`?",
        "3 errors",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");

    let out = run(&["check", dir.path().to_str().unwrap(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let diags: Value = serde_json::from_slice(&out.stdout).expect("json");
    let codes: Vec<&str> = diags
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["severity"] == "error")
        .map(|d| d["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["unknown-entity", "unknown-type", "unknown-key"]);
    assert_eq!(diags[1]["line"], 3);
    assert_eq!(diags[1]["column"], 18);
}

#[test]
fn check_of_a_missing_folder_is_an_error_not_a_crash() {
    let out = run(&["check", "/nonexistent/trellis/project"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("does not exist"));
}

#[test]
fn openapi_and_schema_commands() {
    let out = run(&["openapi", env!("CARGO_MANIFEST_DIR")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/projects"]["post"].is_object());

    let out = run(&["schema"]);
    assert!(out.status.success());
    let schema: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(schema, trellis::spec::schema::model_schema());

    let dir = tempfile::tempdir().unwrap();
    let out = run(&["schema", "--out", dir.path().to_str().unwrap()]);
    assert!(out.status.success());
    assert!(dir.path().join("model.schema.json").is_file());
    assert!(dir.path().join("trellis.schema.json").is_file());
}

async fn serve_creates_tables_and_answers(db: Db) {
    let project = common::project(&[(
        "models/task.yaml",
        "entity: task\nfields:\n  title: { type: string, required: true }\n",
    )]);
    let dir = project.path().to_str().unwrap().to_string();
    let test_db = TestDb::new(db).await;
    let port = free_port();
    let url = (db == Db::Postgres).then_some(test_db.url.as_str());
    let mut server = serve(&dir, port, url);
    wait_healthy(&mut server, port);
    let (status, body) = http(
        port,
        "POST",
        "/api/tasks",
        Some(&json!({ "title": "From curl" })),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let (status, body) = http(port, "GET", "/api/tasks", None).unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["items"][0]["title"], "From curl");
    drop(server);
    if db == Db::Sqlite {
        assert!(
            project.path().join(".trellis/data.db").is_file(),
            "the default database lives inside the project"
        );
    }

    // A restart finds its data; a change that needs a migration is refused at start.
    let mut server = serve(&dir, port, url);
    wait_healthy(&mut server, port);
    let (_, body) = http(port, "GET", "/api/tasks", None).unwrap();
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    drop(server);
    std::fs::write(
        project.path().join("models/task.yaml"),
        "entity: task\nfields:\n  title: { type: integer, required: true }\n",
    )
    .unwrap();
    let mut cmd = trellis();
    cmd.args(["serve", &dir, "--port", &free_port().to_string()]);
    if let Some(url) = url {
        cmd.args(["--database-url", url]);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("task.title: changed from"), "{err}");
    assert!(err.contains("Nothing was changed"), "{err}");
}

both!(serve_creates_tables_and_answers);

#[test]
fn serve_refuses_a_broken_project_with_its_diagnostics() {
    let project = common::project(&[(
        "models/task.yaml",
        "entity: task\nfields:\n  x: { type: nope }\n",
    )]);
    let out = trellis()
        .args([
            "serve",
            project.path().to_str().unwrap(),
            "--port",
            &free_port().to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("models/task.yaml:3:"), "{err}");
    assert!(err.contains("is not a field type"), "{err}");
}

#[test]
fn a_bad_database_url_is_a_clear_error() {
    let out = trellis()
        .args([
            "serve",
            env!("CARGO_MANIFEST_DIR"),
            "--port",
            &free_port().to_string(),
            "--database-url",
            "mysql://nope",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is not a database URL"),
        "{}",
        text(&out.stderr)
    );
}

async fn policy_tests_run_and_report(db: Db) {
    let root = env!("CARGO_MANIFEST_DIR");
    let test_db = TestDb::new(db).await;
    let mut args = vec!["test", root];
    if db == Db::Postgres {
        args.extend(["--database-url", test_db.url.as_str()]);
    }
    let out = run(&args);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("policy tests: 31 passed, 0 failed"),
        "{stdout}"
    );

    // A wrong expectation fails with the action, the file and line, and exit 1.
    let project = common::project(&[
        (
            "models/note.yaml",
            "entity: note\nfields:\n  body: text\n  public: boolean\n",
        ),
        (
            "policies/note.yaml",
            "entity: note\nrules:\n  - roles: [authenticated]\n    allow: [list, read]\n    where: public\ntests:\n  - name: private notes are hidden\n    as: { id: u1, roles: [member] }\n    record: { body: x, public: false }\n    expect: { read: deny, list: deny }\n  - name: wrong on purpose\n    as: { id: u1, roles: [member] }\n    record: { body: x, public: true }\n    expect: { read: deny, update: deny }\n",
        ),
    ]);
    let mut args = vec!["test", project.path().to_str().unwrap()];
    if db == Db::Postgres {
        args.extend(["--database-url", test_db.url.as_str()]);
    }
    let out = run(&args);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("ok      policies/note.yaml:7  private notes are hidden"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAILED  policies/note.yaml:11  wrong on purpose"),
        "{stdout}"
    );
    assert!(
        stdout.contains("read: expected deny, got allow"),
        "{stdout}"
    );
    assert!(!stdout.contains("update: expected"), "{stdout}");
    assert!(stdout.contains("1 passed, 1 failed"), "{stdout}");
}

both!(policy_tests_run_and_report);

async fn serve_watches_the_files(db: Db) {
    let project = common::project(&[(
        "models/task.yaml",
        "entity: task\nfields:\n  title: { type: string, required: true }\n",
    )]);
    let dir = project.path().to_str().unwrap().to_string();
    let test_db = TestDb::new(db).await;
    let port = free_port();
    let url = (db == Db::Postgres).then_some(test_db.url.as_str());
    let mut server = serve(&dir, port, url);
    wait_healthy(&mut server, port);
    assert_eq!(http(port, "GET", "/api/notes", None).unwrap().0, 404);
    std::fs::write(
        project.path().join("models/note.yaml"),
        "entity: note\nfields:\n  body: text\n",
    )
    .unwrap();
    let start = Instant::now();
    loop {
        if http(port, "GET", "/api/notes", None).is_some_and(|(s, _)| s == 200) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the new entity never appeared"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::write(
        project.path().join("models/note.yaml"),
        "entity: note\nfields:\n  body: { type: nope }\n",
    )
    .unwrap();
    let start = Instant::now();
    loop {
        let (_, status) = http(port, "GET", "/_/status", None).unwrap();
        if status["last_result"] == "failed" {
            assert_eq!(status["diagnostics"][0]["file"], "models/note.yaml");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the broken file was never reported"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        http(port, "GET", "/api/notes", None).unwrap().0,
        200,
        "the last good definitions serve"
    );
    // Reloading reads the files; that must not trigger further reloads.
    let (_, before) = http(port, "GET", "/_/status", None).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let (_, after) = http(port, "GET", "/_/status", None).unwrap();
    assert_eq!(
        before["generation"], after["generation"],
        "no reload without a change"
    );
    assert_eq!(
        before["last_attempt_at"], after["last_attempt_at"],
        "no reload attempt without a change"
    );
}

both!(serve_watches_the_files);

/// Reads server-sent events from a raw connection until `want` appears in one.
fn read_events_until(stream: &mut TcpStream, want: &str) -> String {
    let start = Instant::now();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < Duration::from_secs(20) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
                if seen.contains(want) {
                    return seen;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("reading events: {e}"),
        }
    }
    panic!("never saw {want:?}; got:\n{seen}");
}

/// Two real server processes on one database: a change made through one reaches a
/// subscriber of the other.
async fn events_cross_instances(db: Db) {
    let project = common::project(&[("models/note.yaml", "entity: note\nfields:\n  body: text\n")]);
    let dir = project.path().to_str().unwrap().to_string();
    let test_db = TestDb::new(db).await;
    let url = (db == Db::Postgres).then_some(test_db.url.as_str());
    let (port_a, port_b) = (free_port(), free_port());
    let mut a = serve(&dir, port_a, url);
    wait_healthy(&mut a, port_a);
    let mut b = serve(&dir, port_b, url);
    wait_healthy(&mut b, port_b);

    let mut sub = TcpStream::connect(("127.0.0.1", port_b)).unwrap();
    sub.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    sub.write_all(
        b"GET /api/notes/events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n",
    )
    .unwrap();
    let head = read_events_until(&mut sub, "\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/event-stream"), "{head}");

    let (status, created) = http(
        port_a,
        "POST",
        "/api/notes",
        Some(&json!({ "body": "written on A" })),
    )
    .unwrap();
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let seen = read_events_until(&mut sub, "written on A");
    assert!(seen.contains("event: created"), "{seen}");
    assert!(seen.contains(&id), "{seen}");

    let (status, _) = http(port_a, "DELETE", &format!("/api/notes/{id}"), None).unwrap();
    assert_eq!(status, 204);
    let seen = read_events_until(&mut sub, "event: deleted");
    assert!(seen.contains(&id), "{seen}");
}
both!(events_cross_instances);

#[test]
fn diagram_prints_a_workflow() {
    let root = common::repo_root();
    let out = run(&["diagram", root.to_str().unwrap(), "application"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mermaid = text(&out.stdout);
    assert!(mermaid.starts_with("stateDiagram-v2\n"), "{mermaid}");
    assert!(mermaid.contains("    [*] --> submitted\n"), "{mermaid}");
    let out = run(&[
        "diagram",
        root.to_str().unwrap(),
        "project",
        "--format",
        "dot",
    ]);
    assert!(text(&out.stdout).starts_with("digraph project {"));
    let out = run(&["diagram", root.to_str().unwrap(), "skill"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("`skill` has no workflow") && err.contains("application"),
        "{err}"
    );
}

/// A watched project whose policies go away keeps enforcing the last good ones, and
/// one that has none with `auth` configured does not start.
async fn serve_fails_closed_when_policies_go(db: Db) {
    const AUTH: &str = "auth:\n  jwt: { algorithm: HS256, secret_env: S }\n";
    const TASK: &str = "entity: task\nfields:\n  title: { type: string, required: true }\n";
    const ADMINS: &str = "rules:\n  - { roles: [admin], allow: [\"*\"] }\n";
    let project = common::project(&[("trellis.yaml", AUTH), ("models/task.yaml", TASK)]);
    let dir = project.path().to_str().unwrap().to_string();
    let test_db = TestDb::new(db).await;
    let url = (db == Db::Postgres).then_some(test_db.url.as_str());
    let mut cmd = trellis();
    cmd.args(["serve", &dir, "--port", &free_port().to_string()])
        .env("S", "fail-closed-secret-fail-closed-secret-0123");
    if let Some(url) = url {
        cmd.args(["--database-url", url]);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("no-policies"), "{err}");
    assert!(err.contains("open_without_policies"), "{err}");

    let policies = project.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("task.yaml"),
        format!("entity: task\n{ADMINS}"),
    )
    .unwrap();
    let port = free_port();
    let mut server = serve_with(
        &dir,
        port,
        url,
        &[("S", "fail-closed-secret-fail-closed-secret-0123")],
    );
    wait_healthy(&mut server, port);
    let create = || http(port, "POST", "/api/tasks", Some(&json!({ "title": "x" }))).unwrap();
    assert_eq!(create().0, 401);
    let wait_for = |path: &str, want: u16| {
        let start = Instant::now();
        while http(port, "GET", path, None).map(|(s, _)| s) != Some(want) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{path} never answered {want}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    // The folder moved away, with a new entity beside: the reload is refused whole.
    let away = project.path().join("policies-away");
    std::fs::rename(&policies, &away).unwrap();
    std::fs::write(
        project.path().join("models/probe.yaml"),
        "entity: probe\nfields:\n  x: string\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(http(port, "GET", "/api/probes", None).unwrap().0, 404);
    assert_eq!(create().0, 401);
    // Back, with a policy for the new entity: the watcher goes on and takes it.
    std::fs::rename(&away, &policies).unwrap();
    std::fs::write(
        policies.join("probe.yaml"),
        format!("entity: probe\n{ADMINS}"),
    )
    .unwrap();
    wait_for("/api/probes", 401);
    // An emptied folder, again with a new entity beside: refused.
    std::fs::remove_file(policies.join("task.yaml")).unwrap();
    std::fs::remove_file(policies.join("probe.yaml")).unwrap();
    std::fs::write(
        project.path().join("models/probe2.yaml"),
        "entity: probe2\nfields:\n  x: string\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(http(port, "GET", "/api/probe2s", None).unwrap().0, 404);
    assert_eq!(create().0, 401);
    assert_eq!(rows_in(url, &project, "task").await, 0);
}

/// Counts a table's rows straight from the database the server uses.
async fn rows_in(url: Option<&str>, project: &tempfile::TempDir, table: &str) -> i64 {
    let url = match url {
        Some(u) => u.to_string(),
        None => format!(
            "sqlite://{}",
            project.path().join(".trellis/data.db").display()
        ),
    };
    let store = trellis::store::Store::connect(&url).await.unwrap();
    store.count_rows(table).await.unwrap()
}

both!(serve_fails_closed_when_policies_go);

/// The project folder is the optional positional `[DIR]` of every command;
/// `--dir` still works where it existed, and two different folders are refused.
#[test]
fn every_command_takes_the_folder_the_same_way() {
    let root = env!("CARGO_MANIFEST_DIR");
    let secret = [("TRELLIS_JWT_SECRET", common::TEST_SECRET)];
    let token = |args: &[&str]| {
        let mut cmd = trellis();
        cmd.args(args).envs(secret);
        cmd.output().unwrap()
    };
    for args in [
        &["token", root, "--sub", "u1"][..],
        &["token", "--dir", root, "--sub", "u1"],
        &["token", "--sub", "u1", "--dir", root],
        &["token", root, "--dir", root, "--sub", "u1"],
    ] {
        let out = token(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim().split('.').count(), 3, "{args:?}");
    }
    let out = trellis()
        .current_dir(root)
        .args(["token", "--sub", "u1"])
        .envs(secret)
        .output()
        .unwrap();
    assert!(out.status.success(), "the current folder by default");
    let out = token(&["token", root, "--dir", "/elsewhere", "--sub", "u1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("two project folders were given"),
        "{}",
        text(&out.stderr)
    );

    for args in [
        &["diagram", root, "application"][..],
        &["diagram", "--dir", root, "application"],
        &["openapi", root],
        &["openapi", "--dir", root],
        &["check", "--dir", root],
    ] {
        let out = run(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
    // Help shows `[DIR]` and hides the alias.
    for command in ["serve", "check", "test", "openapi", "token"] {
        let help = text(&run(&[command, "--help"]).stdout);
        assert!(help.contains("[DIR]"), "{command}: {help}");
        assert!(!help.contains("--dir"), "{command}: {help}");
    }
    for (command, usage) in [
        (
            "explain",
            "trellis explain [OPTIONS] [DIR] <ENTITY> <ID> <ACTION>",
        ),
        ("add-user", "trellis add-user [OPTIONS] [DIR] <EMAIL>"),
        ("diagram", "trellis diagram [OPTIONS] [DIR] <ENTITY>"),
    ] {
        let help = text(&run(&[command, "--help"]).stdout);
        assert!(help.contains(usage), "{command}: {help}");
        assert!(!help.contains("--dir"), "{command}: {help}");
    }
    let help = text(&run(&["migrate", "plan", "--help"]).stdout);
    assert!(help.contains("[DIR]"), "{help}");
}

/// `--ttl` sets how long a token lasts (seconds or a unit), within 30 days.
#[test]
fn token_ttl() {
    let root = env!("CARGO_MANIFEST_DIR");
    let claims = |args: &[&str]| {
        let out = trellis()
            .args(["token", root, "--sub", "u1"])
            .args(args)
            .env("TRELLIS_JWT_SECRET", common::TEST_SECRET)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let token = text(&out.stdout);
        let payload = token.trim().split('.').nth(1).unwrap().to_string();
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        let claims: Value = serde_json::from_slice(&bytes).unwrap();
        let ttl = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
        (ttl, text(&out.stderr))
    };
    assert_eq!(claims(&[]).0, 900);
    assert_eq!(claims(&["--ttl", "120"]).0, 120);
    assert_eq!(claims(&["--ttl", "15m"]).0, 900);
    let (ttl, said) = claims(&["--ttl", "24h"]);
    assert_eq!(ttl, 86_400);
    assert!(said.contains("valid for 86400 s"), "{said}");
    assert_eq!(claims(&["--ttl=30d"]).0, 30 * 86_400);
    for (bad, why) in [
        ("31d", "longer than the maximum of 30 days"),
        ("0", "at least 1 second"),
        ("1.5h", "is not a duration"),
        ("15 minutes", "is not a duration"),
        ("-5", "is not a duration"),
    ] {
        let out = trellis()
            .args(["token", root, "--sub", "u1", &format!("--ttl={bad}")])
            .env("TRELLIS_JWT_SECRET", common::TEST_SECRET)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            text(&out.stderr).contains(why),
            "{bad}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{bad}: no token");
    }
}

/// `--color always|never|auto` and `NO_COLOR`, for diagnostics and clap's own help,
/// on a terminal (a pseudo-terminal from `script`) and through a pipe.
#[test]
fn color_follows_the_flag_and_no_color() {
    let broken = common::project(&[(
        "models/task.yaml",
        "entity: task\nfields:\n  title: { type: strng }\n",
    )]);
    let dir = broken.path().to_str().unwrap();
    let escape = "\x1b[";
    let piped = |args: &[&str], no_color: Option<&str>| {
        let mut cmd = trellis();
        cmd.args(args).env_remove("NO_COLOR");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let out = cmd.output().unwrap();
        format!("{}{}", text(&out.stdout), text(&out.stderr))
    };
    assert!(piped(&["check", dir, "--color", "always"], None).contains(escape));
    assert!(
        piped(&["--color=always", "check", dir], Some("1")).contains(escape),
        "the flag wins"
    );
    assert!(!piped(&["check", dir, "--color", "never"], None).contains(escape));
    assert!(
        !piped(&["check", dir], None).contains(escape),
        "a pipe is no terminal"
    );
    let out = run(&["check", dir, "--color", "sometimes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("possible values: auto, always, never"));

    // On a terminal: colour by default, none with NO_COLOR (any non-empty value)
    // or --color never, for diagnostics and for clap's help alike.
    let bin = env!("CARGO_BIN_EXE_trellis");
    let on_tty = |command: &str, no_color: Option<&str>| {
        let mut cmd = std::process::Command::new("script");
        cmd.args(["-q", "-e", "-c", &format!("{bin} {command}"), "/dev/null"])
            .env_remove("NO_COLOR")
            .env("TERM", "xterm-256color")
            .env_remove("CLICOLOR")
            .env_remove("CLICOLOR_FORCE");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let out = cmd.output().expect("run script");
        text(&out.stdout)
    };
    let check = format!("check {dir}");
    assert!(
        on_tty(&check, None).contains(escape),
        "{}",
        on_tty(&check, None)
    );
    assert!(!on_tty(&check, Some("1")).contains(escape));
    assert!(
        on_tty(&check, Some("")).contains(escape),
        "an empty NO_COLOR is unset"
    );
    assert!(!on_tty(&format!("{check} --color never"), None).contains(escape));
    assert!(on_tty(&format!("{check} --color always"), Some("1")).contains(escape));
    assert!(on_tty("check --help", None).contains(escape));
    assert!(!on_tty("check --help", Some("yes")).contains(escape));
    assert!(!on_tty("--color never check --help", None).contains(escape));
}

/// Tables of a PostgreSQL test schema, or whether the SQLite file exists.
async fn pg_tables(url: &str) -> Vec<String> {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT tablename::text FROM pg_catalog.pg_tables WHERE schemaname = current_schema() ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.into_iter().map(|(t,)| t).collect()
}

const TASK_V1: &str = "entity: task\nfields:\n  title: { type: string, required: true }\n";
const TASK_V2: &str =
    "entity: task\nfields:\n  title: { type: string, required: true }\n  notes: text\n";

/// `migrate plan` changes no database: a missing SQLite file stays missing, an
/// empty PostgreSQL schema stays empty; it says what it counted against.
async fn migrate_plan_has_no_side_effects(db: Db) {
    let project = common::project(&[("models/task.yaml", TASK_V1)]);
    let dir = project.path().to_str().unwrap();
    let test_db = TestDb::new(db).await;
    let mut args = vec!["migrate", "plan", dir];
    if db == Db::Postgres {
        args.extend(["--database-url", test_db.url.as_str()]);
    }
    let out = run(&args);
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    assert!(said.contains("0001_initial.yaml"), "{said}");
    assert!(
        project
            .path()
            .join("migrations/0001_initial.yaml")
            .is_file()
    );
    match db {
        Db::Sqlite => {
            assert!(said.contains("No database at"), "{said}");
            assert!(said.contains("none was created"), "{said}");
            assert!(
                !project.path().join(".trellis").exists(),
                "no .trellis/ was made"
            );
        }
        Db::Postgres => {
            assert!(said.contains("Counted in"), "{said}");
            assert_eq!(pg_tables(&test_db.url).await, Vec::<String>::new());
        }
    }
    // Status on the untouched database changes nothing either.
    args[1] = "status";
    let out = run(&args);
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    assert!(said.contains("pending  0001_initial"), "{said}");
    match db {
        Db::Sqlite => {
            assert!(said.contains("no database at"), "{said}");
            assert!(!project.path().join(".trellis").exists());
        }
        Db::Postgres => assert_eq!(pg_tables(&test_db.url).await, Vec::<String>::new()),
    }
}

both!(migrate_plan_has_no_side_effects);

/// A database that development-mode `serve` synced: `status` recognises it as a
/// baseline and says how to adopt it; `baseline` refuses tables that do not match
/// and records the migrations when they do; then production mode starts.
async fn status_recognises_a_synced_database_and_baseline_adopts_it(db: Db) {
    let project = common::project(&[("models/task.yaml", TASK_V1)]);
    let dir = project.path().to_str().unwrap().to_string();
    let test_db = TestDb::new(db).await;
    let url = match db {
        Db::Sqlite => format!(
            "sqlite://{}",
            project.path().join(".trellis/data.db").display()
        ),
        Db::Postgres => test_db.url.clone(),
    };
    let migrate = |action: &str| {
        trellis()
            .args(["migrate", action, &dir, "--database-url", &url])
            .output()
            .unwrap()
    };
    let served = |with: &str| {
        let port = free_port();
        let mut server = serve(&dir, port, Some(with));
        wait_healthy(&mut server, port);
        let (status, _) = http(
            port,
            "POST",
            "/api/tasks",
            Some(&json!({ "title": "kept" })),
        )
        .unwrap();
        assert_eq!(status, 201);
    };
    // Synced at v1, planned at v2: the tables match no migration.
    served(&url);
    std::fs::write(project.path().join("models/task.yaml"), TASK_V2).unwrap();
    let out = migrate("plan");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = migrate("status");
    let said = text(&out.stdout);
    assert!(said.contains("pending  0001_initial"), "{said}");
    assert!(said.contains("match no migration's definitions"), "{said}");
    let out = migrate("baseline");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("the tables of task"), "{err}");
    assert!(
        err.contains("do not match the definitions of any migration"),
        "{err}"
    );
    let store = trellis::store::Store::connect(&url).await.unwrap();
    assert!(
        store.applied_migrations().await.unwrap().is_empty(),
        "nothing recorded"
    );

    // Served at v2 (an additive change, synced): now the tables match 0001.
    served(&url);
    let out = migrate("status");
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("pending  0001_initial"), "{said}");
    assert!(
        said.contains("Baseline: the tables match the definitions of 0001_initial"),
        "{said}"
    );
    assert!(said.contains("`trellis migrate baseline`"), "{said}");
    assert!(!said.contains("0001_initial is not applied"), "{said}");
    let out = migrate("baseline");
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    assert!(said.contains("recorded as applied  0001_initial"), "{said}");
    let applied = store.applied_migrations().await.unwrap();
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0].name, "0001_initial");
    assert_eq!(store.count_rows("task").await.unwrap(), 2, "the rows stay");
    let said = text(&migrate("status").stdout);
    assert!(said.contains("applied  0001_initial"), "{said}");
    assert!(said.contains("Up to date."), "{said}");
    // Twice: refused, nothing changes.
    let out = migrate("baseline");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("already has migration history (0001_initial)"));
    assert_eq!(store.applied_migrations().await.unwrap().len(), 1);
    store.close().await;
    // Production mode accepts the adopted database.
    let port = free_port();
    let mut cmd = trellis();
    cmd.args([
        "serve",
        &dir,
        "--mode",
        "production",
        "--port",
        &port.to_string(),
    ])
    .args(["--database-url", &url])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    let mut server = common::process::Server(cmd.spawn().unwrap());
    wait_healthy(&mut server, port);
    let (_, body) = http(port, "GET", "/api/tasks", None).unwrap();
    assert_eq!(body["items"].as_array().unwrap().len(), 2);
}

both!(status_recognises_a_synced_database_and_baseline_adopts_it);

/// The server's log lines follow `--color` too (and a pipe gets none by default).
#[test]
fn serve_logs_follow_the_color_flag() {
    let project = common::project(&[("models/task.yaml", TASK_V1)]);
    let dir = project.path().to_str().unwrap();
    let log_of = |color: Option<&str>| {
        let port = free_port();
        let mut cmd = trellis();
        cmd.args(["serve", dir, "--port", &port.to_string(), "--no-watch"])
            .env_remove("NO_COLOR")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if let Some(c) = color {
            cmd.args(["--color", c]);
        }
        let mut server = common::process::Server(cmd.spawn().unwrap());
        wait_healthy(&mut server, port);
        server.0.kill().unwrap();
        let mut log = String::new();
        server
            .0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut log)
            .unwrap();
        assert!(log.contains("serving 1 entities"), "{log}");
        log
    };
    assert!(log_of(Some("always")).contains("\x1b["));
    assert!(!log_of(Some("never")).contains("\x1b["));
    assert!(!log_of(None).contains("\x1b["));
}
