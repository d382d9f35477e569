//! `file` fields from the model to the record, on SQLite and PostgreSQL: what a JSON
//! body may do to them (remove, keep and reorder, never set metadata), the trusted
//! upload channel (`Input::add_uploads`, what the multipart path fills) through the
//! store's create and update, the wire form of a record (urls, no sha256), filters on
//! `is set`, size, type and name, and read rules on a file field. The multipart
//! requests and downloads themselves are tested with the HTTP routes.

mod common;

use axum::http::StatusCode;
use common::{Db, TestApp};
use serde_json::{Map, Value, json};
use trellis::engine::access::Principal;
use trellis::engine::files::{FileMeta, Uploads};
use trellis::engine::input::{Input, Mode, parse_body};

both!(
    json_bodies_never_set_file_metadata,
    uploads_reach_the_record_through_the_trusted_channel,
    uploads_that_do_not_fit_are_refused,
    filters_test_files,
    read_rules_hide_file_fields,
    removing_one_file_and_deleting_the_record,
    writes_claim_uploads_and_queue_what_they_drop,
    cascaded_deletes_queue_the_files_of_what_they_delete,
    batch_deletes_queue_cascaded_files,
    a_cycle_of_cascades_ends,
);

const PROJECT: &[(&str, &str)] = &[
    (
        "trellis.yaml",
        "auth:\n  jwt: { algorithm: HS256, secret_env: S }\n",
    ),
    (
        "models/person.yaml",
        "entity: person\nplural: people\nfields:\n  name: string\n  owner: string\n  avatar: { type: file, accept: [image/png, image/jpeg], max_size: 1MiB, thumbs: [100x100, 640x0] }\n  cv: { type: file, accept: [application/pdf] }\n  docs: { type: file, multiple: true, max_count: 3 }\n",
    ),
    (
        "policies/person.yaml",
        "entity: person\nrules:\n  - roles: [member]\n    allow: [list, read, create, update]\n  - roles: [admin]\n    allow: [\"*\"]\nfields:\n  cv: { read: { roles: [admin], where: owner = user.id } }\n  owner: { on_create: user.id, write: { roles: [admin] } }\n",
    ),
];

fn meta(name: &str, size: u64, mime: &str, thumbs: &[&str]) -> FileMeta {
    FileMeta {
        id: uuid::Uuid::now_v7(),
        name: name.into(),
        size,
        mime: mime.into(),
        sha256: "ab".repeat(32),
        thumbs: thumbs.iter().map(|t| t.to_string()).collect(),
    }
}

/// What the multipart path does: parse the other parts, check the write rules of
/// the uploaded fields, add the uploads, write.
async fn write(
    app: &TestApp,
    who: &Principal,
    id: Option<&str>,
    body: Value,
    uploads: Vec<(&str, Vec<FileMeta>)>,
) -> Result<Value, String> {
    let engine = app.state.engine.load_full();
    let e = engine.entity("person").expect("person").clone();
    let mode = if id.is_some() {
        Mode::Update
    } else {
        Mode::Create
    };
    let uploads: Uploads = uploads
        .into_iter()
        .map(|(f, files)| (f.to_string(), files))
        .collect();
    let rule_errors = engine.access.check_uploads(&e, &uploads, mode, who);
    // The multipart path records each upload as pending before storing it.
    let keys: Vec<String> = uploads
        .iter()
        .flat_map(|(f, files)| files.iter().map(move |m| m.key("person", f)))
        .collect();
    app.store.record_pending(&keys).await.expect("pending");
    let mut body = body;
    let mut errors = engine.access.check_write(&e, &body, mode, who);
    if mode == Mode::Create {
        engine
            .access
            .apply_presets(&e, who, &mut body)
            .map_err(|e| format!("{e:?}"))?;
    }
    errors.extend(rule_errors);
    if !errors.is_empty() {
        return Err(format!("{errors:?}"));
    }
    let mut input: Input = parse_body(&e, &body, mode).map_err(|e| format!("{e:?}"))?;
    input
        .add_uploads(&e, uploads)
        .map_err(|e| format!("{e:?}"))?;
    let rec = match id {
        None => app.store.create(&engine, &e, &input, who).await,
        Some(id) => {
            let id = uuid::Uuid::parse_str(id).expect("uuid");
            app.store.update(&engine, &e, id, &input, None, who).await
        }
    };
    rec.map(Value::Object).map_err(|e| format!("{e:?}"))
}

fn admin() -> Principal {
    Principal::user(
        "0190a000-0000-7000-8000-0000000000aa",
        &["admin"],
        Map::new(),
    )
}

async fn json_bodies_never_set_file_metadata(db: Db) {
    let app = TestApp::with_files(db, PROJECT).await;
    let forged = json!({
        "id": uuid::Uuid::now_v7(), "name": "x.png", "size": 1, "type": "image/png",
        "sha256": "00".repeat(32), "thumbs": []
    });
    // A single field: only null.
    for avatar in [
        forged.clone(),
        json!("files/person/avatar/x"),
        json!([]),
        json!(3),
    ] {
        let res = app
            .post("/api/people", json!({ "name": "Ann", "avatar": avatar }))
            .await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
        assert_eq!(res.pointers(), ["/avatar"], "{}", res.body);
        assert!(
            res.error_for("/avatar").contains("multipart"),
            "{}",
            res.body
        );
    }
    // A multiple field: only ids of the record's own files.
    for docs in [
        json!([forged.clone()]),
        json!(["nope"]),
        json!(forged.clone()),
        json!(null),
    ] {
        let res = app
            .post("/api/people", json!({ "name": "Ann", "docs": docs }))
            .await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
        let pointers = res.pointers();
        assert!(
            !pointers.is_empty() && pointers.iter().all(|p| p.starts_with("/docs")),
            "{}",
            res.body
        );
    }
    let stranger = uuid::Uuid::now_v7().to_string();
    let res = app
        .post("/api/people", json!({ "name": "Ann", "docs": [stranger] }))
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert!(res.error_for("/docs").contains(&stranger), "{}", res.body);
    assert_eq!(app.rows("person").await, 0);

    // The allowed forms: nothing stored.
    let res = app
        .post(
            "/api/people",
            json!({ "name": "Ann", "avatar": null, "docs": [] }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["avatar"], Value::Null);
    assert_eq!(res.body["docs"], json!([]));
    let id = res.id();

    // Another record's file id cannot be borrowed by PATCH.
    let other = write(
        &app,
        &admin(),
        None,
        json!({ "name": "Bob" }),
        vec![("docs", vec![meta("b.txt", 3, "text/plain", &[])])],
    )
    .await
    .expect("create");
    let borrowed = other["docs"][0]["id"].as_str().expect("id").to_string();
    let res = app
        .patch(
            &format!("/api/people/{id}"),
            json!({ "docs": [borrowed] }),
            &[],
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert!(res.error_for("/docs").contains(&borrowed), "{}", res.body);
    let res = app.get(&format!("/api/people/{id}")).await;
    assert_eq!(res.body["docs"], json!([]));
    assert_eq!(res.body["version"], json!(1));

    // Batch takes the JSON forms only, with the same refusals.
    let res = app
        .post(
            "/api/batch",
            json!({ "operations": [
                { "op": "update", "entity": "person", "id": id, "data": { "avatar": forged } }
            ] }),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    let res = app.get(&format!("/api/people/{id}")).await;
    assert_eq!(res.body["avatar"], Value::Null);
}

async fn uploads_reach_the_record_through_the_trusted_channel(db: Db) {
    let app = TestApp::with_files(db, PROJECT).await;
    let who = admin();
    let avatar = meta("me.png", 2048, "image/png", &["100x100", "640x0"]);
    let d1 = meta("a.txt", 10, "text/plain", &[]);
    let d2 = meta("b.pdf", 20, "application/pdf", &[]);
    let rec = write(
        &app,
        &who,
        None,
        json!({ "name": "Ann" }),
        vec![
            ("avatar", vec![avatar.clone()]),
            ("docs", vec![d1.clone(), d2.clone()]),
        ],
    )
    .await
    .expect("create");
    let id = rec["id"].as_str().expect("id").to_string();
    let base = format!("/api/people/{id}/files");
    let expected_avatar = json!({
        "id": avatar.id, "name": "me.png", "size": 2048, "type": "image/png",
        "url": format!("{base}/avatar/{}", avatar.id),
        "thumbs": {
            "100x100": format!("{base}/avatar/{}?thumb=100x100", avatar.id),
            "640x0": format!("{base}/avatar/{}?thumb=640x0", avatar.id),
        }
    });
    assert_eq!(rec["avatar"], expected_avatar);
    assert_eq!(rec["cv"], Value::Null);
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|f| f["id"].as_str().expect("id").to_string())
            .collect()
    };
    assert_eq!(ids(&rec["docs"]), [d1.id.to_string(), d2.id.to_string()]);

    // Read, one record and a list (the list's JSON fast path falls back): the same
    // metadata, never the sha256.
    let one = app.get(&format!("/api/people/{id}")).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.body["avatar"], expected_avatar);
    let list = app.get("/api/people").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["items"][0]["avatar"], expected_avatar);
    assert_eq!(list.body["items"][0]["docs"], one.body["docs"]);
    for res in [&one, &list] {
        let text = String::from_utf8_lossy(&res.raw);
        assert!(
            !text.contains("sha256") && !text.contains(&"ab".repeat(32)),
            "{text}"
        );
    }
    // The column keeps the full metadata (sha256 included).
    let raw: String = match db {
        Db::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.db.url).await.expect("pool");
            sqlx::query_scalar("SELECT avatar FROM person")
                .fetch_one(&pool)
                .await
                .expect("row")
        }
        Db::Postgres => {
            let pool = sqlx::PgPool::connect(&app.db.url).await.expect("pool");
            sqlx::query_scalar("SELECT avatar::text FROM person")
                .fetch_one(&pool)
                .await
                .expect("row")
        }
    };
    let stored: Value = serde_json::from_str(&raw).expect("json");
    assert_eq!(stored["sha256"], json!("ab".repeat(32)));
    assert_eq!(stored["thumbs"], json!(["100x100", "640x0"]));

    // A JSON PATCH keeps and reorders (d2 first, d1 dropped); a third upload appends.
    let d3 = meta("c.txt", 30, "text/plain", &[]);
    let rec = write(
        &app,
        &who,
        Some(&id),
        json!({ "docs": [d2.id] }),
        vec![("docs", vec![d3.clone()])],
    )
    .await
    .expect("update");
    assert_eq!(ids(&rec["docs"]), [d2.id.to_string(), d3.id.to_string()]);
    // Uploads alone append.
    let d4 = meta("d.txt", 40, "text/plain", &[]);
    let rec = write(
        &app,
        &who,
        Some(&id),
        json!({}),
        vec![("docs", vec![d4.clone()])],
    )
    .await
    .expect("append");
    assert_eq!(
        ids(&rec["docs"]),
        [d2.id.to_string(), d3.id.to_string(), d4.id.to_string()]
    );
    // A fourth file is one too many (max_count: 3); nothing changes.
    let err = write(
        &app,
        &who,
        Some(&id),
        json!({}),
        vec![("docs", vec![meta("e.txt", 1, "text/plain", &[])])],
    )
    .await
    .expect_err("too many");
    assert!(err.contains("at most 3"), "{err}");
    let res = app.get(&format!("/api/people/{id}")).await;
    assert_eq!(res.body["docs"].as_array().map(Vec::len), Some(3));
    // JSON reorders without uploading.
    let res = app
        .patch(
            &format!("/api/people/{id}"),
            json!({ "docs": [d4.id, d2.id, d3.id] }),
            &[],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(
        ids(&res.body["docs"]),
        [d4.id.to_string(), d2.id.to_string(), d3.id.to_string()]
    );
    // A single field's upload replaces its file; null removes it.
    let avatar2 = meta("new.jpg", 100, "image/jpeg", &[]);
    let rec = write(
        &app,
        &who,
        Some(&id),
        json!({}),
        vec![("avatar", vec![avatar2.clone()])],
    )
    .await
    .expect("replace");
    assert_eq!(rec["avatar"]["id"], json!(avatar2.id));
    assert_eq!(rec["avatar"]["thumbs"], json!({}));
    let res = app
        .patch(&format!("/api/people/{id}"), json!({ "avatar": null }), &[])
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["avatar"], Value::Null);
}

async fn uploads_that_do_not_fit_are_refused(db: Db) {
    let app = TestApp::with_files(db, PROJECT).await;
    let who = admin();
    for (field, files, words) in [
        (
            "avatar",
            vec![meta("x.pdf", 10, "application/pdf", &[])],
            "application/pdf",
        ),
        (
            "avatar",
            vec![meta("big.png", 2 << 20, "image/png", &[])],
            "bytes",
        ),
        (
            "avatar",
            vec![
                meta("a.png", 1, "image/png", &[]),
                meta("b.png", 1, "image/png", &[]),
            ],
            "one file",
        ),
        ("cv", vec![meta("cv.pdf", 1, "image/png", &[])], "image/png"),
        (
            "docs",
            (0..4)
                .map(|i| meta(&format!("{i}.txt"), 1, "text/plain", &[]))
                .collect(),
            "at most 3",
        ),
        (
            "name",
            vec![meta("n.txt", 1, "text/plain", &[])],
            "not a file field",
        ),
        (
            "nothing",
            vec![meta("n.txt", 1, "text/plain", &[])],
            "not a file field",
        ),
    ] {
        let err = write(
            &app,
            &who,
            None,
            json!({ "name": "Ann" }),
            vec![(field, files)],
        )
        .await
        .expect_err(field);
        assert!(err.contains(words), "{field}: {err}");
    }
    assert_eq!(app.rows("person").await, 0);
}

async fn filters_test_files(db: Db) {
    let app = TestApp::with_files(db, PROJECT).await;
    let who = admin();
    let mk = |name: &'static str, avatar: Option<FileMeta>, docs: Vec<FileMeta>| {
        let mut uploads = Vec::new();
        if let Some(a) = avatar {
            uploads.push(("avatar", vec![a]));
        }
        if !docs.is_empty() {
            uploads.push(("docs", docs));
        }
        (json!({ "name": name }), uploads)
    };
    for (body, uploads) in [
        mk(
            "png",
            Some(meta("a.png", 5000, "image/png", &[])),
            vec![meta("report.pdf", 100, "application/pdf", &[])],
        ),
        mk(
            "jpeg",
            Some(meta("b.jpg", 500, "image/jpeg", &[])),
            vec![
                meta("x.txt", 7, "text/plain", &[]),
                meta("big.zip", 90000, "application/zip", &[]),
            ],
        ),
        mk("none", None, vec![]),
    ] {
        write(&app, &who, None, body, uploads)
            .await
            .expect("create");
    }
    let names = |res: &common::Resp| -> Vec<String> {
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        let mut n: Vec<String> = res.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|r| r["name"].as_str().unwrap_or_default().to_string())
            .collect();
        n.sort();
        n
    };
    let q = |f: &str| format!("/api/people?filter={}", urlencode(f));
    for (filter, expected) in [
        ("avatar is set", vec!["jpeg", "png"]),
        ("avatar is not set", vec!["none"]),
        ("avatar.size > 1000", vec!["png"]),
        ("avatar.size <= 1000", vec!["jpeg"]),
        ("avatar.type = 'image/png'", vec!["png"]),
        (
            "avatar.type in ['image/png', 'image/jpeg']",
            vec!["jpeg", "png"],
        ),
        ("avatar.name ~ 'B.J'", vec!["jpeg"]),
        ("not (avatar.size > 1000)", vec!["jpeg"]),
        ("docs is set", vec!["jpeg", "png"]),
        ("docs is not set", vec!["none"]),
        ("docs.size > 50000", vec!["jpeg"]),
        ("docs.type = 'application/pdf'", vec!["png"]),
        (
            "docs.type = 'text/plain' and docs.size > 50000",
            vec!["jpeg"],
        ),
        ("docs.name ~ 'report'", vec!["png"]),
        ("cv is set", vec![]),
    ] {
        assert_eq!(names(&app.get(&q(filter)).await), expected, "{filter}");
    }
    for bad in [
        "avatar = 'x'",
        "avatar.sha256 = 'ab'",
        "avatar.url ~ 'x'",
        "avatar.size > 'big'",
        "avatar.size.x > 1",
        "docs has '0190a000-0000-7000-8000-0000000000aa'",
    ] {
        let res = app.get(&q(bad)).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}: {}", res.body);
    }
    // Sorting and grouping by a file field are refused too.
    let res = app.get("/api/people?sort=avatar").await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
}

async fn read_rules_hide_file_fields(db: Db) {
    let app = TestApp::with_files(db, PROJECT).await;
    let ann_id = "0190a000-0000-7000-8000-000000000001";
    let bob_id = "0190a000-0000-7000-8000-000000000002";
    let ann = Principal::user(ann_id, &["member"], Map::new());
    let rec = write(
        &app,
        &ann,
        None,
        json!({ "name": "Ann" }),
        vec![("cv", vec![meta("cv.pdf", 10, "application/pdf", &[])])],
    )
    .await
    .expect("create");
    assert_eq!(rec["owner"], json!(ann_id));
    assert_eq!(rec["cv"]["name"], json!("cv.pdf"));
    let id = rec["id"].as_str().expect("id").to_string();

    let as_ann = app.as_user(&app.token(ann_id, &["member"]));
    let as_bob = app.as_user(&app.token(bob_id, &["member"]));
    let res = as_ann.get(&format!("/api/people/{id}")).await;
    assert_eq!(res.body["cv"]["name"], json!("cv.pdf"), "{}", res.body);
    for res in [
        as_bob.get(&format!("/api/people/{id}")).await,
        as_bob.get("/api/people").await,
    ] {
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        let text = String::from_utf8_lossy(&res.raw);
        assert!(
            !text.contains("cv.pdf") && !text.contains("\"cv\""),
            "{text}"
        );
    }
    // Bob cannot probe Ann's cv with a filter.
    for f in ["cv is set", "cv.size > 1", "cv.type = 'application/pdf'"] {
        let res = as_bob
            .get(&format!("/api/people?filter={}", urlencode(f)))
            .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{f}: {}", res.body);
    }
    // Write rules apply to uploads: Bob may update people, but not `owner`, and an
    // upload to a field he may not write is refused like a JSON value.
    let bob = Principal::user(bob_id, &["member"], Map::new());
    let err = write(&app, &bob, Some(&id), json!({ "owner": bob_id }), vec![])
        .await
        .expect_err("owner");
    assert!(err.contains("owner"), "{err}");
    // Anonymous callers see nothing.
    let res = app.anonymous().get(&format!("/api/people/{id}")).await;
    assert!(
        res.status == StatusCode::UNAUTHORIZED || res.status == StatusCode::NOT_FOUND,
        "{}",
        res.body
    );
}

async fn removing_one_file_and_deleting_the_record(db: Db) {
    let app = TestApp::with_files(db, PROJECT).await;
    let who = admin();
    let d1 = meta("a.txt", 10, "text/plain", &[]);
    let d2 = meta("b.txt", 20, "text/plain", &[]);
    let rec = write(
        &app,
        &who,
        None,
        json!({ "name": "Ann" }),
        vec![("docs", vec![d1.clone(), d2.clone()])],
    )
    .await
    .expect("create");
    let id = rec["id"].as_str().expect("id").to_string();
    let engine = app.state.engine.load_full();
    let e = engine.entity("person").expect("person").clone();
    let uid = uuid::Uuid::parse_str(&id).expect("uuid");
    let input = Input::remove_file(&e, "docs", d1.id).expect("a file field");
    let rec = app
        .store
        .update(&engine, &e, uid, &input, None, &who)
        .await
        .expect("remove one");
    assert_eq!(rec["docs"].as_array().map(Vec::len), Some(1));
    assert_eq!(rec["docs"][0]["id"], json!(d2.id));
    // Removing it again: not a file of the record.
    let again = app.store.update(&engine, &e, uid, &input, None, &who).await;
    assert!(
        format!("{again:?}").contains(&d1.id.to_string()),
        "{again:?}"
    );
    assert!(Input::remove_file(&e, "name", d1.id).is_none());
    assert!(Input::remove_file(&e, "nothing", d1.id).is_none());
    let res = app.delete(&format!("/api/people/{id}")).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.body);
    assert_eq!(app.rows("person").await, 0);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn key(field: &str, m: &FileMeta) -> String {
    m.key("person", field)
}

async fn queued(app: &TestApp) -> Vec<String> {
    let mut keys: Vec<String> = app
        .store
        .queued_removals()
        .await
        .expect("removals")
        .into_iter()
        .map(|(k, _, _)| k)
        .collect();
    keys.sort();
    keys
}

async fn writes_claim_uploads_and_queue_what_they_drop(db: Db) {
    let app = TestApp::with_files(db, PROJECT).await;
    let who = admin();
    let a1 = meta("a.png", 10, "image/png", &["100x100"]);
    let d1 = meta("1.txt", 1, "text/plain", &[]);
    let d2 = meta("2.txt", 2, "text/plain", &[]);
    let rec = write(
        &app,
        &who,
        None,
        json!({ "name": "Ann" }),
        vec![
            ("avatar", vec![a1.clone()]),
            ("docs", vec![d1.clone(), d2.clone()]),
        ],
    )
    .await
    .expect("create");
    let id = rec["id"].as_str().expect("id").to_string();
    // The create claimed its uploads: nothing pending, nothing queued.
    assert!(
        app.store
            .pending_uploads()
            .await
            .expect("pending")
            .is_empty()
    );
    assert!(queued(&app).await.is_empty());

    // Replacing the avatar queues the old one (its thumbnails go with its key).
    let a2 = meta("b.png", 10, "image/png", &[]);
    write(
        &app,
        &who,
        Some(&id),
        json!({}),
        vec![("avatar", vec![a2.clone()])],
    )
    .await
    .expect("replace");
    assert_eq!(queued(&app).await, [key("avatar", &a1)]);
    // Keeping only d2 queues d1.
    let res = app
        .patch(
            &format!("/api/people/{id}"),
            json!({ "docs": [d2.id] }),
            &[],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let mut expected = vec![key("avatar", &a1), key("docs", &d1)];
    expected.sort();
    assert_eq!(queued(&app).await, expected);

    // A refused write queues nothing and leaves its upload pending (the http path
    // discards it; the sweeper would remove it).
    let d3 = meta("3.txt", 3, "text/plain", &[]);
    let err = write(
        &app,
        &who,
        Some(&id),
        json!({ "docs": [uuid::Uuid::now_v7()] }),
        vec![("docs", vec![d3.clone()])],
    )
    .await
    .expect_err("unknown id");
    assert!(err.contains("is not a file"), "{err}");
    assert_eq!(queued(&app).await, expected);
    let pending: Vec<String> = app
        .store
        .pending_uploads()
        .await
        .expect("pending")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(pending, [key("docs", &d3)]);

    // An upload that is no longer pending (expired and swept) fails the write.
    let engine = app.state.engine.load_full();
    let e = engine.entity("person").expect("person").clone();
    let mut input = parse_body(&e, &json!({}), Mode::Update).expect("input");
    let gone = meta("gone.txt", 1, "text/plain", &[]);
    input
        .add_uploads(&e, [("docs".to_string(), vec![gone.clone()])].into())
        .expect("fits");
    let uid = uuid::Uuid::parse_str(&id).expect("uuid");
    let err = app
        .store
        .update(&engine, &e, uid, &input, None, &who)
        .await
        .expect_err("expired");
    assert!(format!("{err:?}").contains("expired"), "{err:?}");
    let res = app.get(&format!("/api/people/{id}")).await;
    assert_eq!(res.body["docs"].as_array().map(Vec::len), Some(1));

    // Deleting the record queues every file it still names.
    let res = app.delete(&format!("/api/people/{id}")).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.body);
    let mut expected = vec![
        key("avatar", &a1),
        key("docs", &d1),
        key("avatar", &a2),
        key("docs", &d2),
    ];
    expected.sort();
    assert_eq!(queued(&app).await, expected);
}

/// `org` ← `project` (cascade; a single and a multiple file field) ← `task` (cascade;
/// files): a two-level cascade; `team` (cascade, no files) ← `member` (cascade; a
/// file): files behind an entity without any; `folder` (cascade from `org` and from
/// itself: a tree); `note` (`set_null`: survives, keeps its file).
const CASCADE: &[(&str, &str)] = &[
    (
        "trellis.yaml",
        "auth:\n  jwt: { algorithm: HS256, secret_env: S }\n",
    ),
    ("models/org.yaml", "entity: org\nfields:\n  name: string\n"),
    (
        "models/project.yaml",
        "entity: project\nfields:\n  name: string\n  org: { type: ref, to: org, on_delete: cascade }\n  logo: { type: file }\n  attachments: { type: file, multiple: true }\n",
    ),
    (
        "models/task.yaml",
        "entity: task\nfields:\n  name: string\n  project: { type: ref, to: project, on_delete: cascade }\n  files: { type: file, multiple: true }\n",
    ),
    (
        "models/team.yaml",
        "entity: team\nfields:\n  name: string\n  org: { type: ref, to: org, on_delete: cascade }\n",
    ),
    (
        "models/member.yaml",
        "entity: member\nfields:\n  name: string\n  team: { type: ref, to: team, on_delete: cascade }\n  photo: { type: file }\n",
    ),
    (
        "models/folder.yaml",
        "entity: folder\nfields:\n  name: string\n  org: { type: ref, to: org, on_delete: cascade }\n  parent: { type: ref, to: folder, on_delete: cascade }\n  cover: { type: file }\n",
    ),
    (
        "models/note.yaml",
        "entity: note\nfields:\n  name: string\n  org: { type: ref, to: org, on_delete: set_null }\n  doc: { type: file }\n",
    ),
    (
        "policies/org.yaml",
        "entity: org\nrules:\n  - roles: [admin]\n    allow: [\"*\"]\n",
    ),
    (
        "policies/project.yaml",
        "entity: project\nrules:\n  - roles: [admin]\n    allow: [\"*\"]\n",
    ),
    (
        "policies/task.yaml",
        "entity: task\nrules:\n  - roles: [admin]\n    allow: [\"*\"]\n",
    ),
    (
        "policies/team.yaml",
        "entity: team\nrules:\n  - roles: [admin]\n    allow: [\"*\"]\n",
    ),
    (
        "policies/member.yaml",
        "entity: member\nrules:\n  - roles: [admin]\n    allow: [\"*\"]\n",
    ),
    (
        "policies/folder.yaml",
        "entity: folder\nrules:\n  - roles: [admin]\n    allow: [\"*\"]\n",
    ),
    (
        "policies/note.yaml",
        "entity: note\nrules:\n  - roles: [admin]\n    allow: [\"*\"]\n",
    ),
];

/// Creates a record of `entity` with uploads (claimed like the multipart path does);
/// returns its id and the keys of its files.
async fn create_with_files(
    app: &TestApp,
    entity: &str,
    body: Value,
    uploads: Vec<(&str, usize)>,
) -> (String, Vec<String>) {
    let engine = app.state.engine.load_full();
    let e = engine.entity(entity).expect("entity").clone();
    let uploads: Uploads = uploads
        .into_iter()
        .map(|(f, n)| {
            let files = (0..n)
                .map(|i| meta(&format!("{f}{i}.txt"), 1, "text/plain", &[]))
                .collect();
            (f.to_string(), files)
        })
        .collect();
    let keys: Vec<String> = uploads
        .iter()
        .flat_map(|(f, files)| files.iter().map(move |m| m.key(entity, f)))
        .collect();
    app.store.record_pending(&keys).await.expect("pending");
    let mut input = parse_body(&e, &body, Mode::Create).expect("input");
    input.add_uploads(&e, uploads).expect("fits");
    let rec = app
        .store
        .create(&engine, &e, &input, &admin())
        .await
        .expect("create");
    let id = rec["id"].as_str().expect("id").to_string();
    (id, keys)
}

/// An org with a project (logo, two attachments) and its task (two files), a team
/// with a member (photo), a folder tree of three levels (a cover each), and a note
/// (`set_null`, a doc). Returns the org's id, the keys a delete of the org must
/// queue, and the note's keys.
async fn org_with_children(app: &TestApp, name: &str) -> (String, Vec<String>, Vec<String>) {
    let org = app.create("orgs", json!({ "name": name })).await;
    let mut doomed = Vec::new();
    let (project, keys) = create_with_files(
        app,
        "project",
        json!({ "name": "p", "org": org }),
        vec![("logo", 1), ("attachments", 2)],
    )
    .await;
    doomed.extend(keys);
    let (_, keys) = create_with_files(
        app,
        "task",
        json!({ "name": "t", "project": project }),
        vec![("files", 2)],
    )
    .await;
    doomed.extend(keys);
    let team = app
        .create("teams", json!({ "name": "t", "org": org }))
        .await;
    let (_, keys) = create_with_files(
        app,
        "member",
        json!({ "name": "m", "team": team }),
        vec![("photo", 1)],
    )
    .await;
    doomed.extend(keys);
    let (top, keys) = create_with_files(
        app,
        "folder",
        json!({ "name": "top", "org": org }),
        vec![("cover", 1)],
    )
    .await;
    doomed.extend(keys);
    let (sub, keys) = create_with_files(
        app,
        "folder",
        json!({ "name": "sub", "parent": top }),
        vec![("cover", 1)],
    )
    .await;
    doomed.extend(keys);
    let (_, keys) = create_with_files(
        app,
        "folder",
        json!({ "name": "subsub", "parent": sub }),
        vec![("cover", 1)],
    )
    .await;
    doomed.extend(keys);
    let (_, kept) = create_with_files(
        app,
        "note",
        json!({ "name": "n", "org": org }),
        vec![("doc", 1)],
    )
    .await;
    doomed.sort();
    (org, doomed, kept)
}

async fn cascaded_deletes_queue_the_files_of_what_they_delete(db: Db) {
    let app = TestApp::with_files(db, CASCADE).await;
    let (org, doomed, kept) = org_with_children(&app, "a").await;
    let (other, _, _) = org_with_children(&app, "b").await;
    assert!(queued(&app).await.is_empty());
    assert_eq!(doomed.len(), 9);

    // A delete that deletes nothing (a stale If-Match) queues nothing.
    let engine = app.state.engine.load_full();
    let e = engine.entity("org").expect("org").clone();
    let uid = uuid::Uuid::parse_str(&org).expect("uuid");
    let err = app
        .store
        .delete_if(&engine, &e, uid, Some(7), &admin())
        .await
        .expect_err("stale");
    assert!(format!("{err:?}").contains("Stale"), "{err:?}");
    assert!(queued(&app).await.is_empty());

    // Deleting a folder in the middle of the tree queues its cover and the ones
    // below, not the one above.
    let res = app.get("/api/folders?filter=name%20%3D%20%27sub%27").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let subs: Vec<String> = res.body["items"]
        .as_array()
        .expect("data")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(subs.len(), 2, "{}", res.body);
    let res = app.delete(&format!("/api/folders/{}", subs[0])).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.body);
    assert_eq!(queued(&app).await.len(), 2);
    assert_eq!(app.rows("folder").await, 4);

    let res = app.delete(&format!("/api/orgs/{org}")).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.body);
    let queue = queued(&app).await;
    for key in &doomed {
        assert!(queue.contains(key), "{key} not queued: {queue:?}");
    }
    assert_eq!(queue.len(), doomed.len(), "{queue:?}");
    // `set_null`: the note stays, with its file.
    for key in &kept {
        assert!(!queue.contains(key), "{key} queued");
    }
    assert_eq!(app.rows("note").await, 2);
    // The other org's records and files are untouched.
    assert_eq!(app.rows("project").await, 1);
    assert_eq!(app.rows("task").await, 1);
    assert_eq!(app.rows("member").await, 1);
    assert_eq!(app.rows("folder").await, 3);
    let res = app.get(&format!("/api/orgs/{other}")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
}

async fn batch_deletes_queue_cascaded_files(db: Db) {
    let app = TestApp::with_files(db, CASCADE).await;
    let (a, doomed_a, kept_a) = org_with_children(&app, "a").await;
    let (b, doomed_b, kept_b) = org_with_children(&app, "b").await;
    let engine = app.state.engine.load_full();
    let e = engine.entity("org").expect("org").clone();
    let who = admin();

    // A batch rolled back queues nothing.
    let mut batch = app.store.begin_batch().await.expect("batch");
    batch
        .delete(
            &engine,
            &e,
            uuid::Uuid::parse_str(&a).expect("uuid"),
            None,
            &who,
        )
        .await
        .expect("delete a");
    drop(batch);
    assert!(queued(&app).await.is_empty());
    assert_eq!(app.rows("project").await, 2);

    let mut batch = app.store.begin_batch().await.expect("batch");
    for id in [&a, &b] {
        batch
            .delete(
                &engine,
                &e,
                uuid::Uuid::parse_str(id).expect("uuid"),
                None,
                &who,
            )
            .await
            .expect("delete");
    }
    batch.commit().await.expect("commit");
    let mut expected: Vec<String> = doomed_a.into_iter().chain(doomed_b).collect();
    expected.sort();
    assert_eq!(queued(&app).await, expected);
    let queue = queued(&app).await;
    assert!(kept_a.iter().chain(&kept_b).all(|k| !queue.contains(k)));
    for table in ["org", "project", "task", "team", "member", "folder"] {
        assert_eq!(app.rows(table).await, 0, "{table}");
    }
    assert_eq!(app.rows("note").await, 2);
}

/// `left` and `right` cascade from each other: the walk of the model ends (it follows
/// the cycle once around), and the delete queues the files of what it reached.
async fn a_cycle_of_cascades_ends(db: Db) {
    let policy = |e: &str| format!("entity: {e}\nrules:\n  - roles: [admin]\n    allow: [\"*\"]\n");
    let (pl, pr) = (policy("left"), policy("right"));
    let files: &[(&str, &str)] = &[
        (
            "trellis.yaml",
            "auth:\n  jwt: { algorithm: HS256, secret_env: S }\n",
        ),
        (
            "models/left.yaml",
            "entity: left\nfields:\n  right: { type: ref, to: right, on_delete: cascade }\n  f: { type: file }\n",
        ),
        (
            "models/right.yaml",
            "entity: right\nfields:\n  left: { type: ref, to: left, on_delete: cascade }\n  f: { type: file }\n",
        ),
        ("policies/left.yaml", &pl),
        ("policies/right.yaml", &pr),
    ];
    let app = TestApp::with_files(db, files).await;
    let (l1, own) = create_with_files(&app, "left", json!({}), vec![("f", 1)]).await;
    let (r1, right) = create_with_files(&app, "right", json!({ "left": l1 }), vec![("f", 1)]).await;
    let (other, _) = create_with_files(&app, "left", json!({}), vec![("f", 1)]).await;
    let res = app.delete(&format!("/api/lefts/{l1}")).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.body);
    let mut expected: Vec<String> = own.into_iter().chain(right).collect();
    expected.sort();
    assert_eq!(queued(&app).await, expected);
    assert_eq!(
        app.get(&format!("/api/rights/{r1}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/api/lefts/{other}")).await.status,
        StatusCode::OK
    );
}
