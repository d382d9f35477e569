//! Workflow webhooks with real processes: a delivery is written to the outbox in the
//! transition's transaction, survives `kill -9` of the server before it could be
//! delivered, and is delivered, signed, once the receiver is up and the server is back.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::process::{free_port, http, serve_with, wait_healthy};
use common::{Db, TestDb};
use serde_json::{Value, json};
use trellis::store::Store;

const SECRET: &str = "hook-secret-for-tests";

type Received = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A webhook receiver on the bound socket `hold` that records every request and
/// answers 204. The socket itself starts listening: the port is never released in
/// between, where another connection could take it as its local port.
async fn receiver(hold: tokio::net::TcpSocket) -> Received {
    let seen: Received = Arc::default();
    let log = seen.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let log = log.clone();
            async move {
                log.lock()
                    .unwrap()
                    .push((headers, String::from_utf8_lossy(&body).into_owned()));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = hold.listen(128).expect("listen on the receiver's port");
    tokio::spawn(async move { axum::serve(listener, app).await });
    seen
}

fn project(hook_port: u16) -> tempfile::TempDir {
    common::project(&[
        (
            "trellis.yaml",
            &format!(
                "webhooks:\n  ops:\n    url: \"http://127.0.0.1:{hook_port}/hook\"\n    secret_env: HOOK_SECRET\n    headers: {{ X-Team: \"${{HOOK_TEAM}}\" }}\n"
            ),
        ),
        (
            "models/ticket.yaml",
            "entity: ticket\nfields:\n  title: { type: string, required: true }\n  status: { type: enum, values: [open, done] }\n  note: text\n",
        ),
        (
            "workflows/ticket.yaml",
            r#"entity: ticket
field: status
initial: open
states:
  open: {}
  done: { final: true }
transitions:
  finish:
    from: open
    to: done
    input: { note: { type: text, required: true } }
    set: { note: input.note }
    after_commit:
      - webhook:
          endpoint: ops
          body: '{"ticket": {{ record.id | tojson }}, "title": {{ record.title | tojson }}, "from": {{ from | tojson }}, "note": {{ input.note | tojson }}}'
"#,
        ),
    ])
}

async fn outbox_when(
    store: &Store,
    what: &str,
    done: impl Fn(&[trellis::store::OutboxRow]) -> bool,
) -> Vec<trellis::store::OutboxRow> {
    let start = Instant::now();
    loop {
        let rows = store.outbox().await.expect("read the outbox");
        if done(&rows) {
            return rows;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what}: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn delivered_after_a_crash(db: Db) {
    // The receiver's port stays reserved (bound, not listening: connections are
    // refused) until the receiver starts, so that no other test's server takes it.
    let hold = tokio::net::TcpSocket::new_v4().unwrap();
    hold.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let hook_port = hold.local_addr().unwrap().port();
    let dir = project(hook_port);
    let path = dir.path().to_str().unwrap().to_string();
    let test_db = TestDb::new(db).await;
    let url = match db {
        Db::Postgres => test_db.url.clone(),
        Db::Sqlite => format!("sqlite://{}", dir.path().join("data.db").display()),
    };
    let env = [("HOOK_SECRET", SECRET), ("HOOK_TEAM", "platform")];
    let port = free_port();
    let mut server = serve_with(&path, port, Some(&url), &env);
    wait_healthy(&mut server, port);
    let store = Store::connect(&url)
        .await
        .expect("connect to the same database");

    let (status, body) = http(
        port,
        "POST",
        "/api/tickets",
        Some(&json!({ "title": "Disk full" })),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    // Failing transitions write nothing to the outbox: bad input, then a rolled-back batch.
    let (status, _) = http(
        port,
        "POST",
        &format!("/api/tickets/{id}/transitions/finish"),
        Some(&json!({})),
    )
    .unwrap();
    assert_eq!(status, 422);
    let (status, body) = http(
        port,
        "POST",
        "/api/batch",
        Some(&json!({ "operations": [
            { "op": "transition", "entity": "ticket", "id": id, "name": "finish", "data": { "note": "rolled back" } },
            { "op": "create", "entity": "ticket", "data": {} }
        ] })),
    )
    .unwrap();
    assert_eq!(status, 422, "{body}");
    assert!(
        store.outbox().await.unwrap().is_empty(),
        "nothing before a commit"
    );

    // The transition commits; the receiver is down, so the first attempt fails.
    let (status, body) = http(
        port,
        "POST",
        &format!("/api/tickets/{id}/transitions/finish"),
        Some(&json!({ "note": "Cleaned /var/log" })),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "done");
    let rows = outbox_when(&store, "a failed first attempt", |rows| {
        rows.len() == 1 && rows[0].attempts >= 1
    })
    .await;
    assert_eq!(rows[0].status, "pending");
    assert!(
        rows[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("cannot reach"),
        "{rows:?}"
    );
    // kill -9: the server gets no chance to do anything else.
    drop(server);

    let seen = receiver(hold).await;
    let mut server = serve_with(&path, port, Some(&url), &env);
    wait_healthy(&mut server, port);
    let rows = outbox_when(&store, "delivery after the restart", |rows| {
        rows.first().is_some_and(|r| r.status == "delivered")
    })
    .await;
    let received = seen.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "delivered once");
    let (headers, body) = &received[0];
    let sent: Value = serde_json::from_str(body).expect("the body is the rendered JSON template");
    assert_eq!(
        sent,
        json!({ "ticket": id, "title": "Disk full", "from": "open", "note": "Cleaned /var/log" })
    );
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-trellis-event"], "ticket.finish");
    assert_eq!(headers["x-trellis-delivery"], rows[0].id.as_str());
    assert_eq!(
        headers["x-team"], "platform",
        "header values read the environment"
    );
    // The signature: t=<seconds>,v1=HMAC-SHA256(secret, "<t>.<body>").
    let signature = headers["x-trellis-signature"].to_str().unwrap();
    let t: i64 = signature
        .strip_prefix("t=")
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .expect("t=<seconds>");
    assert!((chrono::Utc::now().timestamp() - t).abs() < 120);
    assert_eq!(
        signature,
        trellis::runtime::outbox::signature(SECRET, t, body)
    );
    assert!(rows[0].attempts >= 2, "{rows:?}");
    // Operators see the outbox in the status.
    let (_, status) = http(port, "GET", "/_/status", None).unwrap();
    assert_eq!(
        status["webhooks"],
        json!({ "delivered": 1, "failed": 0, "pending": 0 }),
        "{status}"
    );
    drop(server);
    store.close().await;
}

both!(delivered_after_a_crash);
