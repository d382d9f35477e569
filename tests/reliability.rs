//! Reliability with real processes: `kill -9` during writes loses no acknowledged
//! write (SQLite and PostgreSQL), and a PostgreSQL outage is answered with 503s
//! within the timeouts, then recovered from without a restart.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::process::{OwnPostgres, free_port, http, serve, wait_healthy};
use common::{Db, TestDb};
use serde_json::json;

const TASK: &str =
    "entity: task\nfields:\n  title: { type: string, required: true }\n  n: integer\n";

/// What a writer knows: the last state the server acknowledged, and the write in
/// flight when the server died (it may or may not have committed).
#[derive(Debug, Clone, Default)]
struct Known {
    id: String,
    acked: Option<(String, i64)>,
    in_flight: Option<String>,
}

/// A `serve` process of a one-entity project, healthy, and what it runs on.
struct Running {
    _project: tempfile::TempDir,
    _db: TestDb,
    dir: String,
    url: String,
    port: u16,
    server: common::process::Server,
}

async fn task_server(db: Db) -> Running {
    // Every client of these tests is on 127.0.0.1, and they are about crashes and
    // slow clients, not abuse limits (docs/limits.md, tests/abuse.rs): the writers
    // write as fast as they can, and the slowloris test opens 300 connections and
    // then expects an ordinary client from the same address to be served.
    let project = common::project(&[
        ("models/task.yaml", TASK),
        (
            "trellis.yaml",
            "limits:\n  requests: { per_second: 1000000, burst: 1000000 }\n  connections: { per_address: 1000 }\n",
        ),
    ]);
    let dir = project.path().to_str().unwrap().to_string();
    let test_db = TestDb::new(db).await;
    let url = match db {
        Db::Postgres => test_db.url.clone(),
        Db::Sqlite => format!("sqlite://{}", project.path().join("data.db").display()),
    };
    let port = free_port();
    let mut server = serve(&dir, port, Some(&url));
    wait_healthy(&mut server, port);
    Running {
        _project: project,
        _db: test_db,
        dir,
        url,
        port,
        server,
    }
}

async fn acknowledged_writes_survive_kill_9(db: Db) {
    let Running {
        _project,
        _db,
        dir,
        url,
        port,
        server,
    } = task_server(db).await;

    let stop = Arc::new(AtomicBool::new(false));
    let known: Arc<Mutex<Vec<Known>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..4 {
        let (stop, known) = (stop.clone(), known.clone());
        writers.push(std::thread::spawn(move || {
            // Each writer creates records and rewrites each a few times.
            let mut writes = 0;
            'records: while !stop.load(Ordering::Relaxed) {
                let title = format!("w{w} created {writes}");
                let Some((201, body)) =
                    http(port, "POST", "/api/tasks", Some(&json!({ "title": title })))
                else {
                    break;
                };
                writes += 1;
                let id = body["id"].as_str().unwrap().to_string();
                let slot = {
                    let mut k = known.lock().unwrap();
                    k.push(Known {
                        id: id.clone(),
                        acked: Some((title, 1)),
                        in_flight: None,
                    });
                    k.len() - 1
                };
                for round in 0..5 {
                    let title = format!("w{w} {id} round {round}");
                    known.lock().unwrap()[slot].in_flight = Some(title.clone());
                    match http(
                        port,
                        "PATCH",
                        &format!("/api/tasks/{id}"),
                        Some(&json!({ "title": title, "n": round })),
                    ) {
                        Some((200, body)) => {
                            let mut k = known.lock().unwrap();
                            k[slot].acked = Some((title, body["version"].as_i64().unwrap()));
                            k[slot].in_flight = None;
                            writes += 1;
                        }
                        _ => break 'records,
                    }
                }
            }
            writes
        }));
    }
    std::thread::sleep(Duration::from_millis(1500));
    // SIGKILL in the middle of the writes.
    drop(server);
    stop.store(true, Ordering::Relaxed);
    let writes: i32 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(
        writes > 20,
        "the load was real: {writes} acknowledged writes"
    );

    let mut server = serve(&dir, port, Some(&url));
    wait_healthy(&mut server, port);
    let known = known.lock().unwrap().clone();
    let mut in_flight_committed = 0;
    for k in &known {
        let (status, body) = http(port, "GET", &format!("/api/tasks/{}", k.id), None).unwrap();
        assert_eq!(
            status, 200,
            "acknowledged record {} is missing: {body}",
            k.id
        );
        let (title, version) = k.acked.clone().unwrap();
        let now = body["title"].as_str().unwrap();
        if now == title {
            assert_eq!(body["version"].as_i64(), Some(version), "{body}");
        } else {
            // Committed, but the answer never reached the client: allowed, and only
            // for the one write in flight.
            assert_eq!(Some(now), k.in_flight.as_deref(), "record {}: {body}", k.id);
            assert_eq!(body["version"].as_i64(), Some(version + 1));
            in_flight_committed += 1;
        }
    }
    println!(
        "{db:?}: {writes} acknowledged writes on {} records before kill -9; all present after the restart ({in_flight_committed} unacknowledged in-flight writes had committed)",
        known.len()
    );
    drop(server);
}

both!(acknowledged_writes_survive_kill_9);

/// PostgreSQL goes away under load: answers are 503 problems within the timeouts,
/// `/_/health` says not ready, and when PostgreSQL is back the same server process
/// recovers by itself.
#[test]
fn a_database_outage_is_answered_and_recovered_from() {
    let pg = OwnPostgres::start_new();
    let project = common::project(&[("models/task.yaml", TASK)]);
    let dir = project.path().to_str().unwrap().to_string();
    let port = free_port();
    let mut server = serve(&dir, port, Some(&pg.url()));
    wait_healthy(&mut server, port);
    for i in 0..10 {
        let (status, body) = http(
            port,
            "POST",
            "/api/tasks",
            Some(&json!({ "title": format!("before {i}") })),
        )
        .unwrap();
        assert_eq!(status, 201, "{body}");
    }

    pg.stop();
    let mut slowest = Duration::ZERO;
    for i in 0..6 {
        let start = Instant::now();
        let (status, body) = if i % 2 == 0 {
            http(
                port,
                "POST",
                "/api/tasks",
                Some(&json!({ "title": "during" })),
            )
        } else {
            http(port, "GET", "/api/tasks", None)
        }
        .expect("an answer, not a hang");
        slowest = slowest.max(start.elapsed());
        if status != 503 {
            let _ = server.0.kill();
            let mut err = String::new();
            if let Some(mut e) = server.0.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("request {i} answered {status}: {body}\nserver log:\n{err}");
        }
        assert_eq!(
            body["type"],
            "https://trellis.dev/problems/database-unavailable"
        );
    }
    let (status, body) = http(port, "GET", "/_/health", None).unwrap();
    assert_eq!(status, 503, "not ready while the database is down: {body}");
    assert!(
        slowest < Duration::from_secs(8),
        "answered within the acquire timeout (3 s) plus margin: {slowest:?}"
    );

    pg.start();
    let start = Instant::now();
    let recovered = loop {
        if let Some((201, _)) = http(
            port,
            "POST",
            "/api/tasks",
            Some(&json!({ "title": "after" })),
        ) {
            break start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the server did not recover"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let (status, _) = http(port, "GET", "/_/health", None).unwrap();
    assert_eq!(status, 200);
    let (_, body) = http(port, "GET", "/api/tasks?count=true&limit=1", None).unwrap();
    assert_eq!(
        body["total"], 11,
        "nothing written during the outage: {body}"
    );
    assert!(server.0.try_wait().unwrap().is_none(), "the same process");
    println!(
        "outage: slowest answer while down {slowest:?}; first success {recovered:?} after PostgreSQL came back"
    );
}

/// Slow clients (slowloris): connections that trickle their request headers are
/// cut off after the header timeout, and while hundreds of them are open, other
/// clients are served as usual.
async fn slow_clients_are_cut_off(db: Db) {
    use std::io::{Read, Write};
    let running = task_server(db).await;
    let port = running.port;

    // 300 connections, each sending part of a request and then a byte per second.
    let started = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /api/tasks HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        slow.push(s);
    }
    // Meanwhile, an ordinary client is served at once.
    let t = Instant::now();
    let (status, body) = http(port, "POST", "/api/tasks", Some(&json!({ "title": "A" }))).unwrap();
    assert_eq!(status, 201, "{body}");
    let (status, _) = http(port, "GET", "/api/tasks", None).unwrap();
    assert_eq!(status, 200);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // Trickle until the server hangs up on every one of them.
    let mut open: Vec<bool> = vec![true; slow.len()];
    let mut buf = [0u8; 512];
    while open.iter().any(|o| *o) && started.elapsed() < Duration::from_secs(40) {
        for (i, s) in slow.iter_mut().enumerate() {
            if !open[i] {
                continue;
            }
            let wrote = s.write_all(b"X-Slow: 1\r\n").is_ok();
            let closed = match s.read(&mut buf) {
                Ok(0) => true,
                // A 408 answer before the close is fine too.
                Ok(_) => true,
                Err(e) => !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
            };
            if !wrote || closed {
                open[i] = false;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let still_open = open.iter().filter(|o| **o).count();
    let took = started.elapsed();
    println!("300 slow clients cut off after {took:?}; still open: {still_open}");
    assert_eq!(still_open, 0, "slow clients still connected after {took:?}");
    // Not before the header timeout (10 s): ordinary slow networks are not cut.
    assert!(took >= Duration::from_secs(9), "{took:?}");
    // And the server is still fine.
    let (status, body) = http(port, "GET", "/api/tasks", None).unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
}
both!(slow_clients_are_cut_off);

/// SQLite's write-ahead log stays bounded: while a reader pins an old snapshot the
/// log cannot be reset and grows; once the reader is gone, `checkpoint_wal` (run
/// every 2 s by `serve`) resets it and cuts the file back. On PostgreSQL there is
/// nothing to do.
async fn the_sqlite_wal_is_kept_bounded(db: Db) {
    let app = common::TestApp::with_files(db, &[("models/task.yaml", TASK)]).await;
    if db == Db::Postgres {
        assert_eq!(app.store.checkpoint_wal().await.unwrap(), 0);
        return;
    }
    let pool = sqlx::SqlitePool::connect(&app.db.url).await.unwrap();
    // A reader holding its snapshot, as steady overlapping traffic does.
    let mut reader = pool.begin().await.unwrap();
    let _: (i64,) = sqlx::query_as("SELECT count(*) FROM task")
        .fetch_one(&mut *reader)
        .await
        .unwrap();
    let page = "x".repeat(4000);
    for batch in 0..12 {
        let mut tx = pool.begin().await.unwrap();
        for i in 0..1000 {
            sqlx::query("INSERT INTO task (id, created_at, updated_at, version, title, n) VALUES ($1, '2026-11-27T00:00:00.000Z', '2026-11-27T00:00:00.000Z', 1, $2, $3)")
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(&page)
                .bind(batch * 1000 + i)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
    let wal =
        std::path::PathBuf::from(app.db.url.trim_start_matches("sqlite://").to_string() + "-wal");
    let grown = std::fs::metadata(&wal).unwrap().len();
    assert!(
        grown > 40 * 1024 * 1024,
        "the WAL did not grow: {grown} bytes"
    );
    // Pinned: the log cannot be reset yet.
    let frames = app.store.checkpoint_wal().await.unwrap();
    assert!(frames > trellis::store::WAL_RESTART_FRAMES, "{frames}");
    reader.rollback().await.unwrap();
    pool.close().await;
    assert_eq!(app.store.checkpoint_wal().await.unwrap(), 0);
    let after = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert!(
        after <= trellis::store::WAL_LIMIT_BYTES as u64,
        "{after} bytes left"
    );
    println!("WAL: {grown} bytes while pinned, {after} after the checkpoint");
    assert_eq!(app.rows("task").await, 12_000);
}
both!(the_sqlite_wal_is_kept_bounded);

/// One-statement writes from many clients at once all succeed: on SQLite a write
/// whose snapshot went stale (`SQLITE_BUSY_SNAPSHOT`) is run again, not answered 503.
async fn concurrent_one_statement_writes_all_succeed(db: Db) {
    let app =
        std::sync::Arc::new(common::TestApp::with_files(db, &[("models/task.yaml", TASK)]).await);
    let mut tasks = Vec::new();
    for w in 0..24 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let mut failed = Vec::new();
            for i in 0..15 {
                let res = app
                    .post(
                        "/api/tasks",
                        json!({ "title": format!("t{w}-{i}"), "n": i }),
                    )
                    .await;
                if res.status != 201 {
                    failed.push(format!("create {}: {}", res.status, res.body));
                    continue;
                }
                let id = res.id();
                let _ = app.get("/api/tasks?limit=5").await;
                let res = app
                    .patch(&format!("/api/tasks/{id}"), json!({ "n": i + 100 }), &[])
                    .await;
                if res.status != 200 {
                    failed.push(format!("patch {}: {}", res.status, res.body));
                }
            }
            failed
        }));
    }
    let mut failed = Vec::new();
    for t in tasks {
        failed.extend(t.await.unwrap());
    }
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert_eq!(app.rows("task").await, 24 * 15);
}
both!(concurrent_one_statement_writes_all_succeed);
