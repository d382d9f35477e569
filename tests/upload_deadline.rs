//! Uploads and the request deadline (docs/files.md, "Slow uploads"): a multipart
//! upload runs for as long as its bytes keep coming, even past the request
//! deadline; a pause longer than the deadline, or more than `files.upload_timeout`
//! in all, cuts it with a 408. Here the deadline is 1 s, so a 3 s upload shows it —
//! on SQLite and PostgreSQL, through the router with a body that arrives in pieces.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use common::{Db, TestApp};
use serde_json::Value;
use tower::ServiceExt;
use trellis::engine::Engine;
use trellis::http::AppState;
use trellis::runtime::files::{FileStore, Files, Signer};
use trellis::spec;
use trellis::spec::settings::FileSettings;
use trellis::store::Store;

const PROJECT: &[(&str, &str)] = &[(
    "models/doc.yaml",
    "entity: doc\nfields:\n  title: string\n  attachment: { type: file, max_size: 1MiB }\n",
)];

const BOUNDARY: &str = "trellis-upload-deadline";

/// The router of the project on `app`'s database, with a 1 s request deadline and
/// uploads capped at `upload_timeout` seconds, and the store of its files.
async fn app_with_deadline(
    app: &TestApp,
    files_dir: &std::path::Path,
    upload_timeout: u64,
) -> (axum::Router, Arc<Files>) {
    let dir = common::project(PROJECT);
    let loaded = spec::load(dir.path());
    let engine = Engine::build(&loaded).expect("engine");
    let store = Store::connect_with_deadline(&app.db.url, Duration::from_secs(1))
        .await
        .expect("connect");
    let settings = FileSettings {
        upload_timeout,
        ..FileSettings::default()
    };
    let files = Arc::new(Files::new(
        FileStore::local(files_dir).expect("local store"),
        Signer::new(b"link secret"),
        settings,
    ));
    let mut state = AppState::new(engine, store);
    state.set_files(files.clone());
    (trellis::http::router(state), files)
}

/// A multipart create whose file arrives in `pieces` pieces of 1 KiB, `gap` apart.
fn slow_upload(pieces: usize, gap: Duration) -> Request<Body> {
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nslow\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"attachment\"; filename=\"a.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{BOUNDARY}--\r\n");
    let stream = futures_util::stream::unfold(0usize, move |n| {
        let head = head.clone();
        let tail = tail.clone();
        async move {
            let chunk = match n {
                0 => Bytes::from(head),
                n if n <= pieces => {
                    tokio::time::sleep(gap).await;
                    Bytes::from(vec![b'x'; 1024])
                }
                n if n == pieces + 1 => Bytes::from(tail),
                _ => return None,
            };
            Some((Ok::<_, std::io::Error>(chunk), n + 1))
        }
    });
    Request::post("/api/docs")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from_stream(stream))
        .expect("request")
}

async fn answer(router: axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let res = router.oneshot(req).await.expect("answer");
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Past the deadline while its bytes keep coming: stored whole.
async fn an_upload_that_keeps_coming_outlives_the_deadline(db: Db) {
    let app = TestApp::with_files(db, PROJECT).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (router, files) = app_with_deadline(&app, dir.path(), 60).await;
    let started = std::time::Instant::now();
    let (status, body) = answer(router.clone(), slow_upload(10, Duration::from_millis(300))).await;
    assert!(
        started.elapsed() > Duration::from_secs(2),
        "the upload was slow"
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["attachment"]["size"], 10 * 1024, "{body}");
    assert_eq!(body["title"], "slow");
    // Its bytes are the ones sent.
    let url = body["attachment"]["url"].as_str().expect("url").to_string();
    let res = router
        .oneshot(Request::get(url).body(Body::empty()).expect("request"))
        .await
        .expect("download");
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .expect("body");
    assert_eq!(bytes.len(), 10 * 1024);
    assert!(bytes.iter().all(|b| *b == b'x'));
    assert_eq!(files.store.list("files").await.expect("list").len(), 1);
}

/// A pause longer than the deadline: 408, and no record.
async fn a_stalled_upload_is_cut(db: Db) {
    let app = TestApp::with_files(db, PROJECT).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (router, _files) = app_with_deadline(&app, dir.path(), 60).await;
    let (status, body) = answer(router.clone(), slow_upload(2, Duration::from_millis(1600))).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
    assert_eq!(body["type"], "https://trellis.dev/problems/body-timeout");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("no bytes arrived for 1 s")),
        "{body}"
    );
    let list = app.client.get("/api/docs").await;
    assert_eq!(list.body["items"], serde_json::json!([]), "{}", list.body);
}

/// Bytes keep coming, but for longer than `files.upload_timeout` in all: 408.
async fn an_upload_longer_than_its_timeout_is_cut(db: Db) {
    let app = TestApp::with_files(db, PROJECT).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (router, _files) = app_with_deadline(&app, dir.path(), 2).await;
    let (status, body) = answer(router, slow_upload(20, Duration::from_millis(300))).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("more than 2 s in all")),
        "{body}"
    );
    let list = app.client.get("/api/docs").await;
    assert_eq!(list.body["items"], serde_json::json!([]), "{}", list.body);
}

both!(
    an_upload_that_keeps_coming_outlives_the_deadline,
    a_stalled_upload_is_cut,
    an_upload_longer_than_its_timeout_is_cut,
);
