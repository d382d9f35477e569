//! Files over HTTP (docs/files.md): multipart create and PATCH, the add and remove
//! routes, downloads with their headers (`Content-Disposition`, `ETag`/304,
//! `Range`, `nosniff`, `sandbox`), signed links, the limits as problems, and the
//! attack pass (other users' files, hidden records and fields, anonymous callers,
//! mass assignment of metadata, too many parts) — on SQLite and PostgreSQL, each
//! with the local folder and with an S3-compatible server.
//!
//! The S3 half needs `TRELLIS_TEST_S3_URL` (`http://127.0.0.1:PORT/BUCKET`) and
//! the `AWS_*` credentials: `.ci/run` starts moto (`.ci/s3.sh`); a missing server
//! fails the test, never skips it.

mod common;

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use common::{Db, Resp, TestApp, TestAppRouter};
use serde_json::{Value, json};
use trellis::runtime::files::sign::LinkTarget;
use trellis::runtime::files::{FileStore, Files, S3Credentials, Signer};
use trellis::spec::settings::{FileSettings, FileStorage, S3Settings};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Local,
    S3,
}

/// One test per database and storage.
macro_rules! all {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::{Backend, Db};
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite_local() { super::$name(Db::Sqlite, Backend::Local).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite_s3() { super::$name(Db::Sqlite, Backend::S3).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_local() { super::$name(Db::Postgres, Backend::Local).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_s3() { super::$name(Db::Postgres, Backend::S3).await }
            }
        )*
    };
}

all!(
    round_trip_byte_for_byte,
    ranges_and_validators,
    names_are_sanitized_and_never_keys,
    limits_are_problems_and_leave_nothing,
    sniffing_decides_the_type,
    add_and_remove_routes,
    concurrent_replace_leaves_no_orphans,
    downloads_follow_the_policies,
    signed_links_expire_and_resist_tampering,
    attackers_upload_nothing_and_assign_no_metadata,
);

const PROJECT: &[(&str, &str)] = &[
    (
        "trellis.yaml",
        "auth:\n  jwt: { algorithm: HS256, secret_env: S }\n",
    ),
    (
        "models/profile.yaml",
        "entity: profile\nfields:\n  title: { type: string, max: 40 }\n  owner: string\n  secret: { type: boolean, default: false }\n  age: integer\n  avatar: { type: file, accept: [image/png, image/jpeg], max_size: 1MiB, thumbs: [8x8] }\n  cv: { type: file, accept: [application/pdf, image/png], max_size: 64KiB }\n  docs: { type: file, multiple: true, max_count: 3, max_size: 4MiB }\n",
    ),
    (
        "policies/profile.yaml",
        "entity: profile\nconditions:\n  mine: owner = user.id\nrules:\n  - roles: [member]\n    allow: [list, read]\n    where: not secret or mine\n  - roles: [member]\n    allow: [create, update]\n    where: mine\n  - roles: [admin]\n    allow: [\"*\"]\nfields:\n  owner: { on_create: user.id, write: { roles: [admin] } }\n  cv: { read: { roles: [admin], where: mine } }\n",
    ),
];

/// The test S3 server: endpoint and bucket. Missing is a failure, never a skip.
fn s3_server() -> (String, String) {
    let url = match std::env::var("TRELLIS_TEST_S3_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "TRELLIS_TEST_S3_URL is not set: the S3 half of the file tests cannot run. Run the \
             suite with `bash .ci/run`, which starts an S3-compatible server (moto, .ci/s3.sh), \
             or `source .ci/s3.sh` first, or point TRELLIS_TEST_S3_URL at \
             http://HOST:PORT/BUCKET of a server you own (with AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY)."
        ),
    };
    let (endpoint, bucket) = url
        .rsplit_once('/')
        .expect("TRELLIS_TEST_S3_URL is http://HOST:PORT/BUCKET");
    (endpoint.to_string(), bucket.to_string())
}

fn s3_credentials() -> S3Credentials {
    let get = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: the S3 tests need the test server's credentials (.ci/s3.sh sets them)")
        })
    };
    S3Credentials {
        access_key_id: get("AWS_ACCESS_KEY_ID"),
        secret_access_key: get("AWS_SECRET_ACCESS_KEY"),
        session_token: None,
    }
}

/// The app with file storage of its own, and callers.
struct Fixture {
    app: TestApp,
    files: Arc<Files>,
    /// Administrator.
    admin: TestAppRouter,
    _dir: tempfile::TempDir,
}

async fn fixture(db: Db, backend: Backend) -> Fixture {
    let mut app = TestApp::with_files(db, PROJECT).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = FileSettings::default();
    let store = match backend {
        Backend::Local => FileStore::local(dir.path()).expect("local store"),
        Backend::S3 => {
            let (endpoint, bucket) = s3_server();
            let s3 = S3Settings {
                bucket,
                region: "us-east-1".into(),
                endpoint: Some(endpoint),
                prefix: Some(format!("http-{}", uuid::Uuid::now_v7().simple())),
                allow_http: true,
            };
            settings.storage = FileStorage::S3;
            settings.s3 = Some(s3.clone());
            FileStore::s3(&s3, Some(&s3_credentials())).expect("s3 store")
        }
    };
    let files = Arc::new(Files::new(store, Signer::new(b"link secret"), settings));
    let mut state = app.state.clone();
    state.set_files(files.clone());
    let token = app.client.token.clone();
    app.client = TestAppRouter::new(trellis::http::router(state.clone())).with_token(token);
    app.state = state;
    let admin = app.client.clone();
    Fixture {
        app,
        files,
        admin,
        _dir: dir,
    }
}

impl Fixture {
    fn member(&self, id: &str) -> TestAppRouter {
        self.app.as_user(&self.app.token(id, &["member"]))
    }

    /// Every object in storage (files and thumbnails).
    async fn objects(&self) -> Vec<String> {
        let mut all = self.files.store.list("files").await.expect("list files");
        all.extend(self.files.store.list("thumbs").await.expect("list thumbs"));
        all
    }

    /// Objects neither referenced by a record nor queued for removal, and
    /// pending uploads left: both must be none after every request.
    async fn orphans(&self) -> (Vec<String>, usize) {
        let referenced = self.referenced().await;
        let queued: Vec<String> = self
            .app
            .store
            .queued_removals()
            .await
            .expect("removals")
            .into_iter()
            .map(|(k, ..)| k)
            .collect();
        let orphans = self
            .objects()
            .await
            .into_iter()
            .filter(|k| {
                !referenced.contains(k)
                    && !queued
                        .iter()
                        .any(|q| k.starts_with(q.as_str()) || same_file(q, k))
            })
            .collect();
        let pending = self
            .app
            .store
            .pending_uploads()
            .await
            .expect("pending")
            .len();
        (orphans, pending)
    }

    /// The keys of every file (and thumbnail) the stored records reference.
    async fn referenced(&self) -> Vec<String> {
        let mut keys = Vec::new();
        let everything = self.app.everything().await;
        for rec in everything
            .records
            .get("profile")
            .into_iter()
            .flat_map(|t| t.values())
        {
            for field in ["avatar", "cv", "docs"] {
                let shown: Vec<Value> = match &rec[field] {
                    Value::Array(items) => items.clone(),
                    v @ Value::Object(_) => vec![v.clone()],
                    _ => Vec::new(),
                };
                for file in shown {
                    let id = file["id"].as_str().expect("a file id");
                    keys.push(format!("files/profile/{field}/{id}"));
                    if let Some(thumbs) = file["thumbs"].as_object() {
                        for size in thumbs.keys() {
                            keys.push(format!("thumbs/profile/{field}/{id}/{size}"));
                        }
                    }
                }
            }
        }
        keys
    }
}

/// A thumbnail of a file queued for removal goes with it.
fn same_file(queued: &str, key: &str) -> bool {
    let Some(rest) = queued.strip_prefix("files/") else {
        return false;
    };
    key.strip_prefix("thumbs/")
        .is_some_and(|k| k.starts_with(rest))
}

/// One part of a multipart body.
struct Part<'a> {
    name: &'a str,
    file_name: Option<&'a str>,
    content_type: Option<&'a str>,
    data: Vec<u8>,
}

fn file<'a>(name: &'a str, file_name: &'a str, data: &[u8]) -> Part<'a> {
    Part {
        name,
        file_name: Some(file_name),
        content_type: Some("application/octet-stream"),
        data: data.to_vec(),
    }
}

fn text<'a>(name: &'a str, value: &str) -> Part<'a> {
    Part {
        name,
        file_name: None,
        content_type: None,
        data: value.as_bytes().to_vec(),
    }
}

fn json_part<'a>(name: &'a str, value: Value) -> Part<'a> {
    Part {
        name,
        file_name: None,
        content_type: Some("application/json"),
        data: value.to_string().into_bytes(),
    }
}

const BOUNDARY: &str = "----trellis-test-boundary-7d1f";

fn multipart(parts: &[Part<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{}\"", p.name);
        if let Some(f) = p.file_name {
            disposition.push_str(&format!("; filename=\"{f}\""));
        }
        out.extend_from_slice(disposition.as_bytes());
        out.extend_from_slice(b"\r\n");
        if let Some(ct) = p.content_type {
            out.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&p.data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

async fn send(
    client: &TestAppRouter,
    method: Method,
    path: &str,
    parts: &[Part<'_>],
    headers: &[(&str, &str)],
) -> Resp {
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let mut all: Vec<(&str, &str)> = vec![("content-type", ct.as_str())];
    all.extend_from_slice(headers);
    client
        .call(method, path, Some(multipart(parts)), &all)
        .await
}

/// A small PNG (16x12, a gradient), encoded here.
fn png() -> Vec<u8> {
    let img = image::RgbaImage::from_fn(16, 12, |x, y| {
        image::Rgba([x as u8 * 16, y as u8 * 20, 128, 255])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encode a PNG");
    out.into_inner()
}

fn pdf(len: usize) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n".to_vec();
    let mut x: u32 = 7;
    while out.len() < len {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        out.push((x >> 16) as u8);
    }
    out.truncate(len.max(9));
    out
}

fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

fn header<'a>(res: &'a Resp, name: &str) -> &'a str {
    res.header(name)
        .unwrap_or_else(|| panic!("no {name} header: {:?}", res.headers))
}

/// The file answers' common headers.
fn assert_file_headers(res: &Resp) {
    assert_eq!(header(res, "x-content-type-options"), "nosniff");
    assert!(
        header(res, "content-security-policy").starts_with("sandbox"),
        "{:?}",
        res.headers
    );
}

async fn create_profile(
    f: &Fixture,
    client: &TestAppRouter,
    parts: &[Part<'_>],
) -> (String, Value) {
    let res = send(client, Method::POST, "/api/profiles", parts, &[]).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let _ = f;
    (res.id(), res.body)
}

async fn round_trip_byte_for_byte(db: Db, backend: Backend) {
    let f = fixture(db, backend).await;
    let big = pdf(40 * 1024);
    let doc = noise(3 * 1024 * 1024 + 17, 1);
    let (id, rec) = create_profile(
        &f,
        &f.admin,
        &[
            text("title", "Ada"),
            text("age", "36"),
            file("avatar", "me.png", &png()),
            file("cv", "cv.pdf", &big),
            file("docs", "a.bin", &doc),
            file("docs", "empty.txt", b""),
        ],
    )
    .await;
    assert_eq!(rec["title"], "Ada");
    assert_eq!(
        rec["age"], 36,
        "a text part of an integer field is its number"
    );
    let cv = &rec["cv"];
    assert_eq!(cv["name"], "cv.pdf");
    assert_eq!(cv["size"], big.len());
    assert_eq!(cv["type"], "application/pdf");
    assert!(cv.get("sha256").is_none(), "the hash is not shown: {cv}");
    assert_eq!(rec["docs"].as_array().map(Vec::len), Some(2));
    assert_eq!(rec["docs"][1]["size"], 0);
    assert_eq!(rec["avatar"]["type"], "image/png");
    // Every file back, byte for byte.
    for (value, bytes, ct) in [
        (&rec["cv"], &big, "application/pdf"),
        (&rec["docs"][0], &doc, "application/octet-stream"),
        (&rec["docs"][1], &Vec::new(), "application/octet-stream"),
        (&rec["avatar"], &png(), "image/png"),
    ] {
        let url = value["url"].as_str().expect("url");
        assert!(
            url.starts_with(&format!("/api/profiles/{id}/files/")),
            "{url}"
        );
        let res = f.admin.get(url).await;
        assert_eq!(res.status, StatusCode::OK, "{url}: {}", res.body);
        assert_eq!(&res.raw, bytes, "{url}");
        assert_eq!(header(&res, "content-type"), ct);
        assert_eq!(header(&res, "content-length"), bytes.len().to_string());
        assert_eq!(header(&res, "cache-control"), "private, no-cache");
        assert_file_headers(&res);
    }
    let res = f.admin.get(rec["cv"]["url"].as_str().unwrap()).await;
    assert_eq!(
        header(&res, "content-disposition"),
        "attachment; filename=\"cv.pdf\"; filename*=UTF-8''cv.pdf"
    );
    let res = f.admin.get(rec["avatar"]["url"].as_str().unwrap()).await;
    assert!(header(&res, "content-disposition").starts_with("inline;"));
    // The thumbnail.
    let thumb = rec["avatar"]["thumbs"]["8x8"].as_str().expect("thumb url");
    let res = f.admin.get(thumb).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(res.raw.len() > 8);
    assert_file_headers(&res);
    let res = f
        .admin
        .get(&format!(
            "{}?thumb=9x9",
            rec["avatar"]["url"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        res.status,
        StatusCode::NOT_FOUND,
        "a size not made: {}",
        res.body
    );
    // The record read back shows the same.
    let res = f.admin.get(&format!("/api/profiles/{id}")).await;
    assert_eq!(res.body["cv"], rec["cv"]);
    assert_eq!(f.orphans().await, (vec![], 0));
    // A multipart PATCH with If-Match: stale → 412 and nothing kept.
    let stale = send(
        &f.admin,
        Method::PATCH,
        &format!("/api/profiles/{id}"),
        &[file("cv", "new.pdf", &pdf(100))],
        &[("if-match", "\"999\"")],
    )
    .await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.body
    );
    assert_eq!(f.orphans().await, (vec![], 0));
    let version = rec["version"].to_string();
    let res = send(
        &f.admin,
        Method::PATCH,
        &format!("/api/profiles/{id}"),
        &[file("cv", "new.pdf", &pdf(100)), text("title", "Ada L.")],
        &[("if-match", &format!("\"{version}\""))],
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["cv"]["name"], "new.pdf");
    assert_eq!(res.body["title"], "Ada L.");
    assert_ne!(res.body["cv"]["id"], rec["cv"]["id"]);
    // The old file is queued for removal in the same transaction.
    let queued = f.app.store.queued_removals().await.expect("removals");
    assert!(
        queued
            .iter()
            .any(|(k, ..)| k.ends_with(rec["cv"]["id"].as_str().unwrap())),
        "{queued:?}"
    );
    let old = f.admin.get(rec["cv"]["url"].as_str().unwrap()).await;
    assert_eq!(
        old.status,
        StatusCode::NOT_FOUND,
        "the replaced file is gone from the record"
    );
    assert_eq!(f.orphans().await, (vec![], 0));
}

async fn ranges_and_validators(db: Db, backend: Backend) {
    let f = fixture(db, backend).await;
    let data = noise(1000, 9);
    let (_, rec) = create_profile(&f, &f.admin, &[file("docs", "n.bin", &data)]).await;
    let url = rec["docs"][0]["url"].as_str().unwrap().to_string();
    let res = f
        .admin
        .call(Method::GET, &url, None, &[("range", "bytes=10-19")])
        .await;
    assert_eq!(res.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.raw, data[10..20]);
    assert_eq!(header(&res, "content-range"), "bytes 10-19/1000");
    assert_eq!(header(&res, "content-length"), "10");
    assert_file_headers(&res);
    let res = f
        .admin
        .call(Method::GET, &url, None, &[("range", "bytes=-5")])
        .await;
    assert_eq!(res.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.raw, data[995..]);
    let res = f
        .admin
        .call(Method::GET, &url, None, &[("range", "bytes=990-")])
        .await;
    assert_eq!(res.raw, data[990..]);
    let res = f
        .admin
        .call(Method::GET, &url, None, &[("range", "bytes=1000-")])
        .await;
    assert_eq!(
        res.status,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "{}",
        res.body
    );
    assert_eq!(header(&res, "content-range"), "bytes */1000");
    assert_eq!(
        res.body["type"],
        "https://trellis.dev/problems/range-not-satisfiable"
    );
    // Several ranges: the whole file.
    let res = f
        .admin
        .call(Method::GET, &url, None, &[("range", "bytes=0-1,5-6")])
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.raw, data);
    // ETag and 304.
    let res = f.admin.get(&url).await;
    let etag = header(&res, "etag").to_string();
    assert_eq!(
        etag,
        format!("\"{}\"", rec["docs"][0]["id"].as_str().unwrap())
    );
    let res = f
        .admin
        .call(Method::GET, &url, None, &[("if-none-match", &etag)])
        .await;
    assert_eq!(res.status, StatusCode::NOT_MODIFIED);
    assert!(res.raw.is_empty());
    assert_file_headers(&res);
    let res = f
        .admin
        .call(Method::GET, &url, None, &[("if-none-match", "\"other\"")])
        .await;
    assert_eq!(res.status, StatusCode::OK);
    // If-Range with another validator: the whole file.
    let res = f
        .admin
        .call(
            Method::GET,
            &url,
            None,
            &[("range", "bytes=0-1"), ("if-range", "\"old\"")],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.raw.len(), 1000);
}

async fn names_are_sanitized_and_never_keys(db: Db, backend: Backend) {
    let f = fixture(db, backend).await;
    let (id, rec) = create_profile(
        &f,
        &f.admin,
        &[
            file("docs", "../../../etc/passwd", b"root:x:0:0"),
            file("docs", "re\u{301}sume\u{301} \u{202E}fdp.exe", b"hello"),
            file("docs", "..", b"x"),
        ],
    )
    .await;
    let docs = rec["docs"].as_array().unwrap();
    assert_eq!(docs[0]["name"], "passwd");
    assert_eq!(docs[1]["name"], "résumé fdp.exe");
    assert_eq!(docs[2]["name"], "file");
    // The keys are made of ids only.
    for key in f.objects().await {
        assert!(!key.contains("passwd") && !key.contains(".."), "{key}");
        assert!(key.starts_with("files/profile/docs/"), "{key}");
    }
    let res = f.admin.get(docs[1]["url"].as_str().unwrap()).await;
    assert_eq!(
        header(&res, "content-disposition"),
        "attachment; filename=\"r_sum_ fdp.exe\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20fdp.exe"
    );
    let _ = id;
}

async fn limits_are_problems_and_leave_nothing(db: Db, backend: Backend) {
    let f = fixture(db, backend).await;
    // Too large: 413 naming the field; nothing stored, nothing pending.
    let res = send(
        &f.admin,
        Method::POST,
        "/api/profiles",
        &[
            text("title", "Big"),
            file("cv", "big.pdf", &pdf(64 * 1024 + 1)),
        ],
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", res.body);
    assert_eq!(
        res.body["type"],
        "https://trellis.dev/problems/file-too-large"
    );
    assert_eq!(res.body["field"], "cv");
    assert_eq!(res.body["max_size"], 64 * 1024);
    // Exactly the limit is fine.
    let res = send(
        &f.admin,
        Method::POST,
        "/api/profiles",
        &[file("cv", "ok.pdf", &pdf(64 * 1024))],
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    // Too many files: 422.
    let res = send(
        &f.admin,
        Method::POST,
        "/api/profiles",
        &[
            file("docs", "1", b"1"),
            file("docs", "2", b"2"),
            file("docs", "3", b"3"),
            file("docs", "4", b"4"),
        ],
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(
        res.body["type"],
        "https://trellis.dev/problems/too-many-files"
    );
    assert_eq!(res.body["max_count"], 3);
    let res = send(
        &f.admin,
        Method::POST,
        "/api/profiles",
        &[file("cv", "a.pdf", &pdf(10)), file("cv", "b.pdf", &pdf(10))],
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(
        res.body["type"],
        "https://trellis.dev/problems/too-many-files"
    );
    // An invalid field with files: 422, the files removed at once.
    let before = f.app.rows("profile").await;
    let res = send(
        &f.admin,
        Method::POST,
        "/api/profiles",
        &[
            file("cv", "cv.pdf", &pdf(1000)),
            file("docs", "d", &noise(100_000, 3)),
            text("title", &"x".repeat(41)),
        ],
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert!(res.error_for("/title").contains("40"), "{}", res.body);
    assert_eq!(f.app.rows("profile").await, before, "nothing created");
    let res = send(
        &f.admin,
        Method::POST,
        "/api/profiles",
        &[file("cv", "cv.pdf", &pdf(10)), text("nope", "1")],
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(
        f.objects().await.len(),
        1,
        "only the created record's file: {:?}",
        f.objects().await
    );
    assert_eq!(f.orphans().await, (vec![], 0));
    // Malformed multipart and the batch.
    let res = f
        .admin
        .call(
            Method::POST,
            "/api/profiles",
            Some(b"--x\r\nnope".to_vec()),
            &[("content-type", "multipart/form-data; boundary=x")],
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    let res = f
        .admin
        .call(
            Method::POST,
            "/api/profiles",
            Some(b"x".to_vec()),
            &[("content-type", "multipart/form-data")],
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::BAD_REQUEST,
        "no boundary: {}",
        res.body
    );
    let res = send(
        &f.admin,
        Method::POST,
        "/api/batch",
        &[text("operations", "[]")],
        &[],
    )
    .await;
    assert_eq!(
        res.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        res.body
    );
    assert!(
        res.body["detail"].as_str().unwrap().contains("multipart"),
        "{}",
        res.body
    );
    // Too many parts.
    let many: Vec<Part<'_>> = (0..200).map(|_| text("title", "x")).collect();
    let res = send(&f.admin, Method::POST, "/api/profiles", &many, &[]).await;
    assert!(
        res.status == StatusCode::PAYLOAD_TOO_LARGE || res.status == StatusCode::BAD_REQUEST,
        "{}",
        res.body
    );
    // Part headers that never end: refused before they fill memory.
    let mut body =
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"title\"\r\nX-Pad: ")
            .into_bytes();
    body.extend(std::iter::repeat_n(b'a', 200_000));
    body.extend_from_slice(format!("\r\n\r\nx\r\n--{BOUNDARY}--\r\n").as_bytes());
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let res = f
        .admin
        .call(
            Method::POST,
            "/api/profiles",
            Some(body),
            &[("content-type", ct.as_str())],
        )
        .await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", res.body);
    assert!(
        res.body["detail"].as_str().unwrap().contains("headers"),
        "{}",
        res.body
    );
    // A text part over its limit.
    let res = send(
        &f.admin,
        Method::POST,
        "/api/profiles",
        &[text("title", &"x".repeat(70 * 1024))],
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", res.body);
    assert_eq!(f.orphans().await, (vec![], 0));
}

async fn sniffing_decides_the_type(db: Db, backend: Backend) {
    let f = fixture(db, backend).await;
    // A PNG named .pdf is a PNG, which `cv` accepts.
    let (_, rec) = create_profile(&f, &f.admin, &[file("cv", "cv.pdf", &png())]).await;
    assert_eq!(rec["cv"]["type"], "image/png");
    assert_eq!(rec["cv"]["name"], "cv.pdf");
    // A script named .png, declared image/png, is text: `avatar` takes images only.
    let script = b"<script>alert(document.cookie)</script>";
    let res = send(
        &f.admin,
        Method::POST,
        "/api/profiles",
        &[Part {
            name: "avatar",
            file_name: Some("cat.png"),
            content_type: Some("image/png"),
            data: script.to_vec(),
        }],
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(res.body["type"], "https://trellis.dev/problems/file-type");
    assert_eq!(res.body["sniffed"], "text/html");
    assert!(res.body["detail"].as_str().unwrap().contains("text/html"));
    let res = send(
        &f.admin,
        Method::POST,
        "/api/profiles",
        &[file("avatar", "x.png", b"echo pwned")],
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(res.body["sniffed"], "text/plain");
    // An HTML upload where any type is accepted: an attachment, sandboxed, never sniffed.
    let (_, rec) = create_profile(
        &f,
        &f.admin,
        &[file(
            "docs",
            "x.png",
            b"<html><script>alert(1)</script></html>",
        )],
    )
    .await;
    let res = f.admin.get(rec["docs"][0]["url"].as_str().unwrap()).await;
    assert_eq!(header(&res, "content-type"), "text/html");
    assert!(header(&res, "content-disposition").starts_with("attachment"));
    assert_file_headers(&res);
    assert_eq!(f.orphans().await, (vec![], 0));
}

async fn add_and_remove_routes(db: Db, backend: Backend) {
    let f = fixture(db, backend).await;
    let (id, rec) = create_profile(&f, &f.admin, &[file("docs", "1.txt", b"one")]).await;
    let route = format!("/api/profiles/{id}/files/docs");
    let res = send(
        &f.admin,
        Method::POST,
        &route,
        &[
            file("docs", "2.txt", b"two"),
            file("file", "3.txt", b"three"),
        ],
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let names: Vec<&str> = res.body["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["1.txt", "2.txt", "3.txt"]);
    // A fourth: 422 too-many-files, nothing kept.
    let res = send(
        &f.admin,
        Method::POST,
        &route,
        &[file("docs", "4.txt", b"four")],
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(
        res.body["type"],
        "https://trellis.dev/problems/too-many-files"
    );
    assert_eq!(f.orphans().await, (vec![], 0));
    // Remove the first.
    let first = &rec["docs"][0];
    let res = f
        .admin
        .delete(&format!("{route}/{}", first["id"].as_str().unwrap()))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["docs"].as_array().unwrap().len(), 2);
    let res = f.admin.get(first["url"].as_str().unwrap()).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let res = f
        .admin
        .delete(&format!("{route}/{}", first["id"].as_str().unwrap()))
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    // The single field is replaced by the route.
    let single = format!("/api/profiles/{id}/files/cv");
    let res = send(
        &f.admin,
        Method::POST,
        &single,
        &[file("cv", "a.pdf", &pdf(50))],
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let a = res.body["cv"]["id"].clone();
    let res = send(
        &f.admin,
        Method::POST,
        &single,
        &[file("cv", "b.pdf", &pdf(50))],
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_ne!(res.body["cv"]["id"], a);
    assert_eq!(res.body["cv"]["name"], "b.pdf");
    // Not a file field, not a multipart body.
    let res = send(
        &f.admin,
        Method::POST,
        &format!("/api/profiles/{id}/files/title"),
        &[file("title", "a", b"a")],
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.body);
    let res = f.admin.post(&single, json!({})).await;
    assert_eq!(
        res.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        res.body
    );
    // JSON: a multiple field keeps the ids listed, in order.
    let ids: Vec<Value> = f.admin.get(&format!("/api/profiles/{id}")).await.body["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].clone())
        .collect();
    let res = f
        .admin
        .patch(
            &format!("/api/profiles/{id}"),
            json!({ "docs": [ids[1], ids[0]] }),
            &[],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["docs"][0]["id"], ids[1]);
    assert_eq!(f.orphans().await, (vec![], 0));
}

async fn concurrent_replace_leaves_no_orphans(db: Db, backend: Backend) {
    let f = fixture(db, backend).await;
    let (id, _) = create_profile(&f, &f.admin, &[file("cv", "0.pdf", &pdf(100))]).await;
    let path = format!("/api/profiles/{id}");
    for round in 0..3 {
        let a = pdf(2000 + round);
        let b = pdf(3000 + round);
        let (pa, pb) = ([file("cv", "a.pdf", &a)], [file("cv", "b.pdf", &b)]);
        let (ra, rb) = tokio::join!(
            send(&f.admin, Method::PATCH, &path, &pa, &[("if-match", "*")]),
            send(&f.admin, Method::PATCH, &path, &pb, &[]),
        );
        let ok = [&ra, &rb]
            .iter()
            .filter(|r| r.status == StatusCode::OK)
            .count();
        assert!(ok >= 1, "{} {}", ra.body, rb.body);
        for r in [&ra, &rb] {
            assert!(
                r.status == StatusCode::OK
                    || r.status == StatusCode::CONFLICT
                    || r.status == StatusCode::SERVICE_UNAVAILABLE,
                "{}",
                r.body
            );
        }
        // One file in the record, the other queued for removal or never kept.
        let now = f.admin.get(&path).await;
        let name = now.body["cv"]["name"].as_str().unwrap().to_string();
        let res = f.admin.get(now.body["cv"]["url"].as_str().unwrap()).await;
        assert_eq!(res.raw, if name == "a.pdf" { a } else { b });
        assert_eq!(f.orphans().await, (vec![], 0), "round {round}");
    }
}

async fn downloads_follow_the_policies(db: Db, backend: Backend) {
    let f = fixture(db, backend).await;
    let ann = f.member("ann");
    let bob = f.member("bob");
    let anon = f.app.anonymous();
    let (id, rec) = create_profile(
        &f,
        &ann,
        &[
            file("avatar", "a.png", &png()),
            file("cv", "cv.pdf", &pdf(500)),
        ],
    )
    .await;
    assert_eq!(rec["owner"], "ann");
    let (hidden_id, hidden) = create_profile(
        &f,
        &ann,
        &[
            text("secret", "true"),
            file("cv", "cv.pdf", &pdf(500)),
            file("avatar", "a.png", &png()),
        ],
    )
    .await;
    let avatar = rec["avatar"]["url"].as_str().unwrap();
    let cv = rec["cv"]["url"].as_str().unwrap();
    // The owner reads both.
    assert_eq!(ann.get(cv).await.status, StatusCode::OK);
    assert_eq!(ann.get(&format!("{cv}/link")).await.status, StatusCode::OK);
    // Another member: the avatar, never the cv (a field read rule), and nothing of
    // the secret record; the same 404 as for a file that does not exist.
    assert_eq!(bob.get(avatar).await.status, StatusCode::OK);
    let missing = bob
        .get(&format!(
            "/api/profiles/{id}/files/cv/{}",
            uuid::Uuid::now_v7()
        ))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    for url in [
        cv.to_string(),
        format!("{cv}/link"),
        hidden["cv"]["url"].as_str().unwrap().to_string(),
        hidden["avatar"]["url"].as_str().unwrap().to_string(),
        format!("{}/link", hidden["avatar"]["url"].as_str().unwrap()),
        format!("{}?thumb=8x8", hidden["avatar"]["url"].as_str().unwrap()),
    ] {
        for (who, client) in [("bob", &bob), ("anonymous", &anon)] {
            let res = client.get(&url).await;
            assert_eq!(
                res.status,
                StatusCode::NOT_FOUND,
                "{who} {url}: {}",
                res.body
            );
            assert_eq!(res.body["detail"], missing.body["detail"], "no oracle");
        }
    }
    // Anonymous gets nothing at all; a bad token is 401.
    assert_eq!(anon.get(avatar).await.status, StatusCode::NOT_FOUND);
    let res = f
        .app
        .client
        .call(
            Method::GET,
            avatar,
            None,
            &[("authorization", "Bearer nope")],
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    // Through a list: the cv is not shown to bob.
    let res = bob.get(&format!("/api/profiles/{id}")).await;
    assert!(
        res.body.get("cv").is_none_or(Value::is_null),
        "{}",
        res.body
    );
    let _ = hidden_id;
}

async fn signed_links_expire_and_resist_tampering(db: Db, backend: Backend) {
    let f = fixture(db, backend).await;
    let ann = f.member("ann");
    let anon = f.app.anonymous();
    let data = pdf(777);
    let (id, rec) = create_profile(
        &f,
        &ann,
        &[file("cv", "cv.pdf", &data), file("avatar", "a.png", &png())],
    )
    .await;
    let cv = rec["cv"]["url"].as_str().unwrap();
    let res = ann.get(&format!("{cv}/link")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(header(&res, "cache-control"), "no-store");
    let url = res.body["url"].as_str().unwrap().to_string();
    assert!(
        url.starts_with(cv) && url.contains("exp=") && url.contains("sig="),
        "{url}"
    );
    assert!(res.body["expires_at"].as_str().unwrap().ends_with('Z'));
    // Works without credentials, with a max-age no longer than the link lives.
    let res = anon.get(&url).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.raw, data);
    let cc = header(&res, "cache-control");
    let age: u64 = cc
        .strip_prefix("private, max-age=")
        .expect(cc)
        .parse()
        .unwrap();
    assert!(age <= 300 && age > 200, "{cc}");
    // Tampered: another signature, another expiry, another file, a thumbnail.
    let (path, query) = url.split_once('?').unwrap();
    let sig = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("sig="))
        .unwrap();
    let exp: i64 = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("exp="))
        .unwrap()
        .parse()
        .unwrap();
    let mut flipped = sig.to_string();
    let last = if flipped.ends_with('0') { "1" } else { "0" };
    flipped.replace_range(flipped.len() - 1.., last);
    let avatar_path = rec["avatar"]["url"].as_str().unwrap();
    for bad in [
        format!("{path}?exp={exp}&sig={flipped}"),
        format!("{path}?exp={}&sig={sig}", exp + 3600),
        format!("{avatar_path}?exp={exp}&sig={sig}"),
        format!("{avatar_path}?thumb=8x8&exp={exp}&sig={sig}"),
        format!("{path}?exp={exp}&sig=zz"),
    ] {
        let res = anon.get(&bad).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{bad}: {}", res.body);
        assert_eq!(
            res.body["type"],
            "https://trellis.dev/problems/invalid-link"
        );
    }
    // Expired: a genuine signature whose time has passed.
    let record = id.clone();
    let file_id = rec["cv"]["id"].as_str().unwrap().to_string();
    let target = LinkTarget {
        plural: "profiles",
        record_id: &record,
        field: "cv",
        file_id: &file_id,
        thumb: None,
    };
    let past = chrono::Utc::now().timestamp() - 1;
    let sig = f.files.signer.sign(&target, past);
    let res = anon.get(&format!("{path}?exp={past}&sig={sig}")).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    assert!(res.body["detail"].as_str().unwrap().contains("expired"));
    // A valid link to a file removed since: 404.
    let res = ann
        .delete(&format!("/api/profiles/{id}/files/cv/{file_id}"))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(res.body["cv"].is_null(), "{}", res.body);
    let res = anon.get(&url).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.body);
}

async fn attackers_upload_nothing_and_assign_no_metadata(db: Db, backend: Backend) {
    let f = fixture(db, backend).await;
    let ann = f.member("ann");
    let bob = f.member("bob");
    let anon = f.app.anonymous();
    let (id, rec) = create_profile(
        &f,
        &ann,
        &[file("cv", "cv.pdf", &pdf(100)), file("docs", "d", b"d")],
    )
    .await;
    let item = format!("/api/profiles/{id}");
    let objects = f.objects().await.len();
    // Bob and anonymous may not upload to ann's record, by any route.
    for (who, client, status) in [
        ("bob", &bob, StatusCode::FORBIDDEN),
        ("anonymous", &anon, StatusCode::NOT_FOUND),
    ] {
        let res = send(
            client,
            Method::PATCH,
            &item,
            &[file("avatar", "x.png", &png())],
            &[],
        )
        .await;
        assert!(
            res.status == status
                || res.status == StatusCode::UNAUTHORIZED
                || res.status == StatusCode::NOT_FOUND,
            "{who}: {}",
            res.body
        );
        let res = send(
            client,
            Method::POST,
            &format!("{item}/files/docs"),
            &[file("docs", "x", b"x")],
            &[],
        )
        .await;
        assert!(res.status.is_client_error(), "{who}: {}", res.body);
        assert_ne!(res.status, StatusCode::OK);
        let res = client
            .delete(&format!(
                "{item}/files/docs/{}",
                rec["docs"][0]["id"].as_str().unwrap()
            ))
            .await;
        assert!(res.status.is_client_error(), "{who}: {}", res.body);
    }
    // Anonymous may not create with files.
    let res = send(
        &anon,
        Method::POST,
        "/api/profiles",
        &[file("cv", "x.pdf", &pdf(10))],
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.body);
    assert_eq!(
        f.objects().await.len(),
        objects,
        "nothing stored for attackers"
    );
    // Mass assignment: metadata through JSON, through a JSON part, through `data`.
    let forged = json!({ "id": uuid::Uuid::now_v7(), "name": "x.pdf", "size": 1, "type": "application/pdf", "sha256": "00", "thumbs": [] });
    let other = f.admin.get(&item).await.body["cv"]["id"].clone();
    for body in [
        json!({ "cv": forged }),
        json!({ "docs": [forged] }),
        json!({ "cv": other }),
    ] {
        let res = ann.patch(&item, body.clone(), &[]).await;
        assert_eq!(
            res.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            res.body
        );
    }
    for parts in [
        vec![json_part("cv", forged.clone())],
        vec![text("cv", &forged.to_string())],
        vec![json_part("data", json!({ "cv": forged }))],
        vec![json_part("docs", json!([forged]))],
    ] {
        let res = send(&ann, Method::PATCH, &item, &parts, &[]).await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    }
    // `owner` is admin-only, whatever the channel.
    let res = send(
        &ann,
        Method::PATCH,
        &item,
        &[text("owner", "bob"), file("avatar", "a.png", &png())],
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(f.orphans().await, (vec![], 0));
    // Files of another record's id are not this record's.
    let (other_id, _) = create_profile(&f, &ann, &[]).await;
    let res = ann
        .get(&format!(
            "/api/profiles/{other_id}/files/cv/{}",
            rec["cv"]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    // Unknown query parameters and malformed ids.
    let res = ann
        .get(&format!("{}?x=1", rec["cv"]["url"].as_str().unwrap()))
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let res = ann.get(&format!("{item}/files/cv/..%2f..%2fetc")).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

/// The events of a record with files show its files as a read does: the same
/// urls, no `sha256` (the change log keeps the raw column), and a file field the
/// subscriber may not read left out.
async fn events_show_files_as_reads_do(db: Db) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let f = fixture(db, Backend::Local).await;
    let ann_token = f.app.token("ann", &["member"]);
    let bob_token = f.app.token("bob", &["member"]);
    let mut streams = Vec::new();
    for t in [&ann_token, &bob_token] {
        let req = axum::http::Request::get("/api/profiles/events")
            .header("authorization", format!("Bearer {t}"))
            .body(axum::body::Body::empty())
            .unwrap();
        let res = f.app.client.router.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        streams.push(res.into_body());
    }
    let ann = f.app.as_user(&ann_token);
    let (id, _) = create_profile(
        &f,
        &ann,
        &[
            file("avatar", "a.png", &png()),
            file("cv", "cv.pdf", &pdf(500)),
            file("docs", "d.bin", &noise(100, 1)),
        ],
    )
    .await;
    for (token, body) in [&ann_token, &bob_token].into_iter().zip(streams.iter_mut()) {
        let mut buf = String::new();
        let data = loop {
            if let Some(line) = buf
                .split("\n\n")
                .filter(|block| block.contains("event: created"))
                .flat_map(str::lines)
                .find_map(|l| l.strip_prefix("data:"))
            {
                break line.trim().to_string();
            }
            let frame = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
                .await
                .expect("an event within 10 s")
                .expect("the stream is open")
                .expect("a frame");
            if let Ok(bytes) = frame.into_data() {
                buf.push_str(std::str::from_utf8(&bytes).unwrap());
            }
        };
        assert!(!data.contains("sha256"), "{data}");
        let event: Value = serde_json::from_str(&data).unwrap();
        let read = f
            .app
            .as_user(token)
            .get(&format!("/api/profiles/{id}"))
            .await;
        assert_eq!(read.status, StatusCode::OK);
        assert_eq!(event["record"], read.body, "{token}");
        assert!(event["record"]["avatar"]["url"].is_string(), "{data}");
        // The owner reads the cv; another member never does.
        let cv = &event["record"]["cv"];
        if *token == ann_token {
            assert!(cv["url"].is_string(), "{data}");
        } else {
            assert!(cv.is_null(), "{data}");
        }
    }
}

mod events_show_files_as_reads_do {
    use super::Db;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::events_show_files_as_reads_do(Db::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::events_show_files_as_reads_do(Db::Postgres).await
    }
}
