//! File storage (runtime::files, store::files): the object store on the local folder
//! AND on a real S3-compatible server, the pending-upload and removal tables on
//! SQLite AND PostgreSQL, the removal worker and the sweeper, and a `trellis serve`
//! killed with SIGKILL that leaves nothing behind once it runs again.
//!
//! The S3 half needs `TRELLIS_TEST_S3_URL` (`http://127.0.0.1:PORT/BUCKET`, an
//! existing bucket) and `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`: `.ci/run`
//! starts moto's server and sets them (`.ci/s3.sh`). Unset is a failure, never a skip.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Db, TestDb};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use trellis::engine::Engine;
use trellis::runtime::files::keys::{self, ThumbSize};
use trellis::runtime::files::{ByteRange, FileError, FileStore, Files, S3Credentials, Signer};
use trellis::spec;
use trellis::spec::settings::{FileSettings, FileStorage, S3Settings};
use trellis::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Local,
    S3,
}

/// The test S3 server: endpoint and bucket. Missing is a failure, never a skip.
fn s3_server() -> (String, String) {
    let url = match std::env::var("TRELLIS_TEST_S3_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "TRELLIS_TEST_S3_URL is not set: the S3 half of the file storage tests cannot run. \
             Run the suite with `bash .ci/run`, which starts an S3-compatible server (moto, \
             .ci/s3.sh), or `source .ci/s3.sh` first, or point TRELLIS_TEST_S3_URL at \
             http://HOST:PORT/BUCKET of a server you own (with AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY set)."
        ),
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .expect("TRELLIS_TEST_S3_URL is http(s)://HOST:PORT/BUCKET");
    let (host, bucket) = rest
        .split_once('/')
        .expect("TRELLIS_TEST_S3_URL names the bucket: http://HOST:PORT/BUCKET");
    let scheme = if url.starts_with("https") {
        "https"
    } else {
        "http"
    };
    (
        format!("{scheme}://{host}"),
        bucket.trim_end_matches('/').to_string(),
    )
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

/// `files` settings for a backend; on S3 every test has a prefix of its own.
fn settings(backend: Backend, pending_ttl: u64) -> FileSettings {
    let mut s = FileSettings {
        pending_ttl,
        ..FileSettings::default()
    };
    if backend == Backend::S3 {
        let (endpoint, bucket) = s3_server();
        s.storage = FileStorage::S3;
        s.s3 = Some(S3Settings {
            bucket,
            region: "us-east-1".into(),
            endpoint: Some(endpoint),
            prefix: Some(format!("test-{}", uuid::Uuid::now_v7().simple())),
            allow_http: true,
        });
    }
    s
}

/// A file store of its own: a temp folder, or a fresh prefix of the test bucket.
struct TestStore {
    store: FileStore,
    _dir: tempfile::TempDir,
}

fn file_store(backend: Backend) -> TestStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = settings(backend, 3600);
    let store = FileStore::from_settings(&settings, dir.path(), Some(&s3_credentials_if(backend)))
        .expect("the file store");
    TestStore { store, _dir: dir }
}

fn s3_credentials_if(backend: Backend) -> S3Credentials {
    match backend {
        Backend::S3 => s3_credentials(),
        Backend::Local => S3Credentials::default(),
    }
}

/// Generates one test per storage from an `async fn(Backend)`.
macro_rules! storages {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn local() {
                    super::$name(super::Backend::Local).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn s3() {
                    super::$name(super::Backend::S3).await
                }
            }
        )*
    };
}

/// Generates one test per database and storage from an `async fn(Db, Backend)`.
macro_rules! databases_and_storages {
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

/// Deterministic pseudo-random bytes (xorshift), so a byte out of place shows.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// `data` as a body stream of `chunk`-byte pieces, as a request body arrives.
fn body(
    data: &[u8],
    chunk: usize,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + use<> {
    let pieces: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(chunk.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures_util::stream::iter(pieces)
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn read(
    store: &FileStore,
    key: &str,
    range: Option<ByteRange>,
) -> (u64, std::ops::Range<u64>, Vec<u8>) {
    let fetched = store.get(key, range).await.expect("get");
    let (size, r) = (fetched.size, fetched.range.clone());
    let mut out = Vec::new();
    let mut b = fetched.body;
    while let Some(chunk) = b.next().await {
        out.extend_from_slice(&chunk.expect("a chunk"));
    }
    (size, r, out)
}

fn key(field: &str) -> (uuid::Uuid, String) {
    let id = uuid::Uuid::now_v7();
    (id, keys::file_key("contractor", field, &id))
}

// ---------------------------------------------------------------- the object store

async fn round_trip_byte_for_byte(backend: Backend) {
    let t = file_store(backend);
    // Small (one request) and larger than a part (a multipart upload of 3 parts),
    // in odd-sized chunks.
    for (len, chunk) in [(1000, 7), (2 * 8 * 1024 * 1024 + 12345, 65_537)] {
        let data = content(len, len as u64);
        let (_, k) = key("cv");
        let stored = t
            .store
            .put_stream(&k, body(&data, chunk), 64 * 1024 * 1024)
            .await
            .expect("put_stream");
        assert_eq!(stored.size, len as u64);
        assert_eq!(stored.sha256, sha256_hex(&data));
        let (size, range, back) = read(&t.store, &k, None).await;
        assert_eq!((size, range), (len as u64, 0..len as u64));
        assert!(back == data, "{backend:?}: {len} bytes came back different");
    }
}

async fn zero_byte_file(backend: Backend) {
    let t = file_store(backend);
    let (_, k) = key("cv");
    let stored = t
        .store
        .put_stream(&k, body(&[], 1), 10)
        .await
        .expect("an empty file is a file");
    assert_eq!(stored.size, 0);
    assert_eq!(
        stored.sha256,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(stored.sniffed, "application/octet-stream");
    assert!(t.store.exists(&k).await.unwrap());
    let (size, range, back) = read(&t.store, &k, None).await;
    assert_eq!((size, range, back), (0, 0..0, Vec::new()));
    assert!(matches!(
        t.store.get(&k, Some(ByteRange::From(0))).await,
        Err(FileError::RangeNotSatisfiable { size: 0 })
    ));
}

async fn over_the_limit_leaves_nothing(backend: Backend) {
    let t = file_store(backend);
    // Refused before the first part went out, and after two parts went out (a
    // multipart upload in progress, aborted).
    for (len, limit) in [(5_000_000, 4_000_000), (20 * 1024 * 1024, 17 * 1024 * 1024)] {
        let data = content(len, 7);
        let (_, k) = key("cv");
        let err = t
            .store
            .put_stream(&k, body(&data, 256 * 1024), limit)
            .await
            .expect_err("too large");
        assert!(
            matches!(err, FileError::TooLarge { limit: l } if l == limit),
            "{err:?}"
        );
        assert!(
            !t.store.exists(&k).await.unwrap(),
            "{backend:?}: {len} left behind"
        );
    }
    // Exactly at the limit is allowed.
    let data = content(4096, 3);
    let (_, k) = key("cv");
    t.store
        .put_stream(&k, body(&data, 1000), 4096)
        .await
        .expect("at the limit");
    assert_eq!(t.store.list("files").await.unwrap(), vec![k]);
}

async fn an_interrupted_upload_leaves_nothing(backend: Backend) {
    let t = file_store(backend);
    for before in [1000usize, 9 * 1024 * 1024] {
        let (_, k) = key("cv");
        let good = content(before, 1);
        let stream = body(&good, 64 * 1024).chain(futures_util::stream::iter([Err(
            std::io::Error::new(std::io::ErrorKind::ConnectionReset, "the client went away"),
        )]));
        let err = t
            .store
            .put_stream(&k, stream, 1 << 30)
            .await
            .expect_err("a broken body");
        assert!(
            matches!(&err, FileError::Upload(m) if m.contains("went away")),
            "{err:?}"
        );
        assert!(!t.store.exists(&k).await.unwrap());
    }
    assert_eq!(t.store.list("files").await.unwrap(), Vec::<String>::new());
}

async fn byte_ranges(backend: Backend) {
    let t = file_store(backend);
    let data = content(10_000, 11);
    let (_, k) = key("cv");
    t.store
        .put_stream(&k, body(&data, 999), 1 << 20)
        .await
        .unwrap();
    for (range, want) in [
        (ByteRange::FromTo(0, 0), 0..1),
        (ByteRange::FromTo(100, 199), 100..200),
        (ByteRange::FromTo(9_990, 20_000), 9_990..10_000),
        (ByteRange::From(9_000), 9_000..10_000),
        (ByteRange::Last(500), 9_500..10_000),
        (ByteRange::Last(50_000), 0..10_000),
    ] {
        let (size, got, bytes) = read(&t.store, &k, Some(range)).await;
        assert_eq!((size, got.clone()), (10_000, want.clone()), "{range:?}");
        assert!(
            bytes == data[want.start as usize..want.end as usize],
            "{range:?}"
        );
    }
    for bad in [
        ByteRange::From(10_000),
        ByteRange::FromTo(10_000, 10_001),
        ByteRange::Last(0),
    ] {
        assert!(
            matches!(
                t.store.get(&k, Some(bad)).await,
                Err(FileError::RangeNotSatisfiable { size: 10_000 })
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        t.store
            .get(
                "files/contractor/cv/0190c6b4-0000-7000-8000-000000000000",
                None
            )
            .await,
        Err(FileError::NotFound)
    ));
}

/// A tiny valid PNG of `w` × `h` (RGB, black), made with the image crate.
fn png(w: u32, h: u32) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::new_rgb8(w, h)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

async fn the_type_is_sniffed_from_the_content(backend: Backend) {
    let t = file_store(backend);
    // What a client calls `cv.pdf` but is a PNG; what it calls `avatar.png` but is
    // a shell script; a real PDF; text. Names never reach the store: only bytes.
    let script = b"#!/bin/sh\nrm -rf / --no-preserve-root\n".to_vec();
    for (data, want) in [
        (png(3, 2), "image/png"),
        (
            b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n".to_vec(),
            "application/pdf",
        ),
        (b"Dear reader,\nhello.\n".to_vec(), "text/plain"),
    ] {
        let (_, k) = key("cv");
        let stored = t
            .store
            .put_stream(&k, body(&data, 3), 1 << 20)
            .await
            .unwrap();
        assert_eq!(stored.sniffed, want);
    }
    let (_, k) = key("avatar");
    let stored = t
        .store
        .put_stream(&k, body(&script, 5), 1 << 20)
        .await
        .unwrap();
    assert!(
        !stored.sniffed.starts_with("image/"),
        "a script is not an image: {}",
        stored.sniffed
    );
    assert!(stored.sniffed.starts_with("text/"), "{}", stored.sniffed);
}

async fn delete_is_idempotent_and_takes_the_thumbnails(backend: Backend) {
    let t = file_store(backend);
    let (id, k) = key("avatar");
    let image = png(300, 200);
    let stored = t
        .store
        .put_stream(&k, body(&image, 100), 1 << 20)
        .await
        .unwrap();
    let sizes = [
        ThumbSize::parse("100x100").unwrap(),
        ThumbSize::parse("640x0").unwrap(),
    ];
    let made = t
        .store
        .make_thumbs("contractor", "avatar", &id, &stored.sniffed, &sizes)
        .await
        .unwrap();
    assert_eq!(made, sizes.to_vec());
    let mut want = vec![
        keys::thumb_key("contractor", "avatar", &id, sizes[0]),
        keys::thumb_key("contractor", "avatar", &id, sizes[1]),
    ];
    want.sort();
    assert_eq!(t.store.list("thumbs").await.unwrap(), want);
    // The thumbnails are images of the right size: 100x100 fits 300x200 in
    // 100x67; 640x0 does not enlarge.
    let (_, _, small) = read(&t.store, &want[0], None).await;
    let small = image::load_from_memory(&small).unwrap();
    let (_, _, same) = read(&t.store, &want[1], None).await;
    let same = image::load_from_memory(&same).unwrap();
    let mut dims = [
        (small.width(), small.height()),
        (same.width(), same.height()),
    ];
    dims.sort();
    assert_eq!(dims, [(100, 67), (300, 200)]);
    // Made once and kept: a second request finds the stored one.
    t.store
        .put_bytes(&want[0], Bytes::from_static(b"kept"))
        .await
        .unwrap();
    let again = t
        .store
        .ensure_thumb("contractor", "avatar", &id, "image/png", sizes[0])
        .await
        .unwrap();
    assert_eq!(
        again,
        keys::thumb_key("contractor", "avatar", &id, sizes[0])
    );
    assert_eq!(read(&t.store, &again, None).await.2, b"kept");
    // A local upload killed mid-way leaves a staging file next to the key
    // (`<key>#<n>`, never listed); removing the key removes it.
    let staged = t._dir.path().join(format!(".trellis/files/{k}#1"));
    let other = t._dir.path().join(format!(".trellis/files/{k}x#1"));
    if backend == Backend::Local {
        std::fs::write(&staged, b"half an upload").unwrap();
        std::fs::write(&other, b"not this one").unwrap();
    }
    t.store.delete_with_thumbs(&k).await.unwrap();
    assert!(!staged.exists());
    if backend == Backend::Local {
        assert!(other.exists(), "only the key's own staging files go");
    }
    assert_eq!(t.store.list("thumbs").await.unwrap(), Vec::<String>::new());
    assert!(!t.store.exists(&k).await.unwrap());
    // Again: nothing there is not an error.
    t.store.delete_with_thumbs(&k).await.unwrap();
    t.store.delete(&k).await.unwrap();
}

/// A PNG whose header claims `w` × `h` pixels, with a few bytes of data: a
/// decompression bomb's shape.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA
    chunk(&mut out, b"IHDR", &ihdr);
    // A zlib stream of a few zero bytes.
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

async fn a_decompression_bomb_gets_no_thumbnails(backend: Backend) {
    let t = file_store(backend);
    // 100 000 × 100 000 RGBA would be 40 GB of pixels; the file is 70 bytes.
    for (w, h) in [(100_000, 100_000), (10_001, 1), (5_000, 5_000)] {
        let bomb = png_claiming(w, h);
        assert!(bomb.len() < 100);
        let (id, k) = key("avatar");
        let stored = t
            .store
            .put_stream(&k, body(&bomb, 10), 1 << 20)
            .await
            .unwrap();
        assert_eq!(stored.sniffed, "image/png");
        let made = t
            .store
            .make_thumbs(
                "contractor",
                "avatar",
                &id,
                "image/png",
                &[ThumbSize::parse("100x100").unwrap()],
            )
            .await
            .unwrap();
        assert_eq!(made, Vec::new(), "{w}x{h}");
        let err = t
            .store
            .ensure_thumb(
                "contractor",
                "avatar",
                &id,
                "image/png",
                ThumbSize::parse("10x10").unwrap(),
            )
            .await
            .expect_err("refused");
        assert!(matches!(err, FileError::Image(_)), "{err:?}");
    }
    assert_eq!(t.store.list("thumbs").await.unwrap(), Vec::<String>::new());
    // The limit itself, without storage: refused by the decoder's limits.
    let err = trellis::runtime::files::thumbs::render(
        &png_claiming(100_000, 100_000),
        "image/png",
        ThumbSize::parse("10x10").unwrap(),
    )
    .expect_err("a bomb");
    assert!(
        matches!(&err, FileError::Image(m) if m.contains("too large")),
        "{err:?}"
    );
}

/// Keys come from the model and UUIDs; even so, one that tries to leave the store
/// (`..`, an absolute path, empty segments) is refused, and nothing is written
/// outside the folder.
async fn a_key_cannot_leave_the_store(backend: Backend) {
    let t = file_store(backend);
    let outside = [
        t._dir.path().join("escaped"),
        t._dir.path().join(".trellis/escaped"),
    ];
    for bad in [
        "files/../../escaped",
        "../escaped",
        "files/./x",
        "files//x",
        "/etc/passwd",
        "files/a/../../../escaped",
        "",
        "files/",
    ] {
        let put = t.store.put_stream(bad, body(b"x", 1), 10).await;
        assert!(matches!(put, Err(FileError::Storage(_))), "{bad}: {put:?}");
        assert!(
            matches!(t.store.get(bad, None).await, Err(FileError::Storage(_))),
            "{bad}"
        );
        assert!(t.store.delete(bad).await.is_err(), "{bad}");
    }
    assert!(outside.iter().all(|p| !p.exists()));
    assert_eq!(t.store.list("files").await.unwrap(), Vec::<String>::new());
}

storages!(
    a_key_cannot_leave_the_store,
    round_trip_byte_for_byte,
    zero_byte_file,
    over_the_limit_leaves_nothing,
    an_interrupted_upload_leaves_nothing,
    byte_ranges,
    the_type_is_sniffed_from_the_content,
    delete_is_idempotent_and_takes_the_thumbnails,
    a_decompression_bomb_gets_no_thumbnails,
);

// ------------------------------------------------------------------ the SQL tables

const NOTE: (&str, &str) = (
    "models/note.yaml",
    "entity: note\nfields:\n  title: { type: string }\n",
);

/// A store with Trellis's tables (the `_trellis_file_*` ones included).
async fn database(db: Db) -> (Store, TestDb) {
    let dir = common::project(&[NOTE]);
    let loaded = spec::load(dir.path());
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let engine = Engine::build(&loaded).expect("engine");
    let test_db = TestDb::new(db).await;
    let store = Store::connect(&test_db.url).await.expect("connect");
    store.sync_schema(&engine).await.expect("create tables");
    (store, test_db)
}

fn names(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

async fn pending_uploads_are_claimed_once(db: Db) {
    let (store, _db) = database(db).await;
    store
        .record_pending(&names(&["a", "b", "c"]))
        .await
        .unwrap();
    // Recording again changes nothing.
    store.record_pending(&names(&["a"])).await.unwrap();
    let pending: Vec<String> = store
        .pending_uploads()
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(pending, names(&["a", "b", "c"]));
    // A write claims what it references; what is not pending is reported.
    let missing = store.claim_pending(&names(&["a", "x"])).await.unwrap();
    assert_eq!(missing, names(&["x"]));
    // Claimed once: a second write cannot take it again.
    assert_eq!(
        store.claim_pending(&names(&["a"])).await.unwrap(),
        names(&["a"])
    );
    // A failed write gives its uploads up: they move to the removal queue.
    let moved = store.discard_pending(&names(&["b", "a"])).await.unwrap();
    assert_eq!(moved, names(&["b"]));
    let queued: Vec<String> = store
        .queued_removals()
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _, _)| k)
        .collect();
    assert_eq!(queued, names(&["b"]));
    let pending: Vec<String> = store
        .pending_uploads()
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(pending, names(&["c"]));
}

async fn expired_uploads_move_to_the_removal_queue(db: Db) {
    let (store, _db) = database(db).await;
    store
        .record_pending(&names(&["old1", "old2"]))
        .await
        .unwrap();
    let cutoff = chrono::Utc::now().timestamp_millis() + 1;
    tokio::time::sleep(Duration::from_millis(20)).await;
    store.record_pending(&names(&["fresh"])).await.unwrap();
    // In batches: one, then the rest.
    assert_eq!(
        store.expire_pending(cutoff, 1).await.unwrap(),
        names(&["old1"])
    );
    assert_eq!(
        store.expire_pending(cutoff, 10).await.unwrap(),
        names(&["old2"])
    );
    assert_eq!(
        store.expire_pending(cutoff, 10).await.unwrap(),
        Vec::<String>::new()
    );
    // An expired upload can no longer be claimed by a write.
    assert_eq!(
        store.claim_pending(&names(&["old1"])).await.unwrap(),
        names(&["old1"])
    );
    let pending: Vec<String> = store
        .pending_uploads()
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(pending, names(&["fresh"]));
    let queued: Vec<String> = store
        .queued_removals()
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _, _)| k)
        .collect();
    assert_eq!(queued, names(&["old1", "old2"]));
}

async fn removals_are_leased_retried_and_done(db: Db) {
    let (store, _db) = database(db).await;
    store
        .enqueue_removals(&names(&["r1", "r2", "r3"]))
        .await
        .unwrap();
    // Queued once, however often.
    store.enqueue_removals(&names(&["r1"])).await.unwrap();
    let taken = store.due_removals(2, 60_000).await.unwrap();
    assert_eq!(taken.len(), 2);
    assert!(taken.iter().all(|r| r.attempts == 0));
    // Under lease: another worker does not get them.
    let rest = store.due_removals(10, 60_000).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert!(store.due_removals(10, 60_000).await.unwrap().is_empty());
    // A worker that died: its lease runs out and the removal is due again.
    store.enqueue_removals(&names(&["r4"])).await.unwrap();
    let short = store.due_removals(10, 1).await.unwrap();
    assert_eq!(
        short.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        ["r4"]
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    let again = store.due_removals(10, 60_000).await.unwrap();
    assert_eq!(
        again.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        ["r4"]
    );
    // A failure is recorded and retried at the time given.
    let now = chrono::Utc::now().timestamp_millis();
    store
        .removal_failed("r4", "the bucket said no", now - 1)
        .await
        .unwrap();
    let retried = store.due_removals(10, 60_000).await.unwrap();
    assert_eq!(
        retried,
        vec![trellis::store::Removal {
            key: "r4".into(),
            attempts: 1
        }]
    );
    let queue = store.queued_removals().await.unwrap();
    assert!(
        queue.contains(&("r4".into(), 1, Some("the bucket said no".into()))),
        "{queue:?}"
    );
    for r in taken.iter().chain(&rest).chain(&retried) {
        store.removal_done(&r.key).await.unwrap();
    }
    assert!(store.queued_removals().await.unwrap().is_empty());
}

both!(
    pending_uploads_are_claimed_once,
    expired_uploads_move_to_the_removal_queue,
    removals_are_leased_retried_and_done,
);

// ------------------------------------------------- the worker and the sweeper

async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within 60 s");
}

async fn the_worker_removes_queued_and_expired_files(db: Db, backend: Backend) {
    let (store, _db) = database(db).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(backend, 1);
    let fs =
        FileStore::from_settings(&settings, dir.path(), Some(&s3_credentials_if(backend))).unwrap();
    let files = Arc::new(Files::new(fs.clone(), Signer::random(), settings));
    let put = |k: String| {
        let fs = fs.clone();
        async move {
            fs.put_stream(&k, body(b"content", 3), 100).await.unwrap();
            k
        }
    };
    // Replaced (queued by a write), its thumbnail, abandoned (pending, never
    // claimed), claimed (a record owns it) and unrelated files.
    let (replaced_id, replaced) = key("avatar");
    let replaced = put(replaced).await;
    let thumb = keys::thumb_key(
        "contractor",
        "avatar",
        &replaced_id,
        ThumbSize::parse("10x10").unwrap(),
    );
    fs.put_bytes(&thumb, Bytes::from_static(b"t"))
        .await
        .unwrap();
    let abandoned = put(key("cv").1).await;
    let claimed = put(key("cv").1).await;
    let kept = put(key("cv").1).await;
    store
        .record_pending(&[abandoned.clone(), claimed.clone()])
        .await
        .unwrap();
    assert!(
        store
            .claim_pending(std::slice::from_ref(&claimed))
            .await
            .unwrap()
            .is_empty()
    );
    store
        .enqueue_removals(std::slice::from_ref(&replaced))
        .await
        .unwrap();
    let worker = trellis::runtime::files::worker::spawn(store.clone(), files.clone());
    files.wake();
    wait_until("the removals", || async {
        // Pending first: the sweeper moves pending uploads to the queue, never back.
        store.pending_uploads().await.unwrap().is_empty()
            && store.queued_removals().await.unwrap().is_empty()
    })
    .await;
    assert!(
        worker.finish(Duration::from_secs(10)).await,
        "the worker stops when asked"
    );
    let mut left = fs.list("files").await.unwrap();
    left.sort();
    let mut want = vec![claimed, kept];
    want.sort();
    assert_eq!(left, want);
    assert_eq!(fs.list("thumbs").await.unwrap(), Vec::<String>::new());
}

databases_and_storages!(the_worker_removes_queued_and_expired_files);

/// An upload cut off mid-way (the request's task dropped, as when its process
/// dies) after parts of it were written: once its pending row expires, the sweeper
/// and the worker leave nothing of it in the local folder, its staging file
/// included. (On S3 the parts of a multipart upload never completed are for the
/// bucket's lifecycle rule: docs/files.md.)
async fn an_upload_cut_off_mid_way_leaves_nothing(db: Db) {
    let (store, _db) = database(db).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(Backend::Local, 1);
    let fs = FileStore::from_settings(&settings, dir.path(), None).unwrap();
    let files = Arc::new(Files::new(fs.clone(), Signer::random(), settings));
    let (_, k) = key("cv");
    store
        .record_pending(std::slice::from_ref(&k))
        .await
        .unwrap();
    // 12 MiB arrive (a part is written), then the client stalls forever.
    let data = content(12 * 1024 * 1024, 9);
    let stalled = body(&data, 1 << 20).chain(futures_util::stream::pending());
    let upload = {
        let (fs, k) = (fs.clone(), k.clone());
        tokio::spawn(async move { fs.put_stream(&k, stalled, 1 << 30).await })
    };
    let folder = dir.path().join(".trellis/files/files/contractor/cv");
    wait_until("a part on disk", || {
        let folder = folder.clone();
        async move {
            std::fs::read_dir(&folder)
                .map(|entries| {
                    entries
                        .flatten()
                        .any(|e| e.metadata().map(|m| m.len() > 0).unwrap_or(false))
                })
                .unwrap_or(false)
        }
    })
    .await;
    upload.abort();
    let _ = upload.await;
    let worker = trellis::runtime::files::worker::spawn(store.clone(), files);
    wait_until("the sweep", || async {
        store.pending_uploads().await.unwrap().is_empty()
            && store.queued_removals().await.unwrap().is_empty()
    })
    .await;
    assert!(worker.finish(Duration::from_secs(10)).await);
    let left: Vec<String> = std::fs::read_dir(&folder)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(left, Vec::<String>::new());
}

both!(an_upload_cut_off_mid_way_leaves_nothing);

// ------------------------------------------ a trellis process killed with SIGKILL

/// `trellis.yaml` with the `files` section of `settings`.
fn trellis_yaml(settings: &FileSettings) -> String {
    let mut text = format!("files:\n  pending_ttl: {}\n", settings.pending_ttl);
    if let Some(s3) = &settings.s3 {
        text.push_str(&format!(
            "  storage: s3\n  s3:\n    bucket: {}\n    region: {}\n    endpoint: \"{}\"\n    prefix: {}\n    allow_http: true\n",
            s3.bucket,
            s3.region,
            s3.endpoint.as_deref().unwrap_or_default(),
            s3.prefix.as_deref().unwrap_or_default(),
        ));
    }
    text
}

fn serve(project: &Path, url: &str) -> common::process::Server {
    let port = common::process::free_port();
    let mut server = common::process::serve_with(project.to_str().unwrap(), port, Some(url), &[]);
    common::process::wait_healthy(&mut server, port);
    server
}

/// A server killed (SIGKILL) after a write committed removals but before its
/// worker removed anything, and during uploads: once a server runs again, the
/// replaced files and the abandoned uploads are gone, and the rest stays.
async fn nothing_dangles_after_a_kill(db: Db, backend: Backend) {
    let settings = settings(backend, 1);
    let dir = common::project(&[NOTE, ("trellis.yaml", &trellis_yaml(&settings))]);
    let test_db = TestDb::new(db).await;
    // The first server creates the tables, then dies without a chance to clean up.
    let first = serve(dir.path(), &test_db.url);
    drop(first); // SIGKILL
    let fs =
        FileStore::from_settings(&settings, dir.path(), Some(&s3_credentials_if(backend))).unwrap();
    let store = Store::connect(&test_db.url).await.unwrap();
    // What the killed process left: files a committed write replaced (queued, not
    // removed), an upload in flight (pending, part of it stored), and files
    // records own.
    let mut replaced = Vec::new();
    for _ in 0..5 {
        let (_, k) = key("avatar");
        fs.put_stream(&k, body(b"old", 1), 10).await.unwrap();
        replaced.push(k);
    }
    let (_, in_flight) = key("cv");
    fs.put_stream(&in_flight, body(&content(3000, 5), 100), 1 << 20)
        .await
        .unwrap();
    let (_, owned) = key("cv");
    fs.put_stream(&owned, body(b"mine", 1), 10).await.unwrap();
    store.enqueue_removals(&replaced).await.unwrap();
    store
        .record_pending(&[in_flight.clone(), owned.clone()])
        .await
        .unwrap();
    assert!(
        store
            .claim_pending(std::slice::from_ref(&owned))
            .await
            .unwrap()
            .is_empty()
    );
    // A second server, killed at once too: what it did not finish stays queued.
    let second = serve(dir.path(), &test_db.url);
    drop(second);
    // The third one finishes the job.
    let _third = serve(dir.path(), &test_db.url);
    wait_until("the removals after the restart", || async {
        store.pending_uploads().await.unwrap().is_empty()
            && store.queued_removals().await.unwrap().is_empty()
            && fs.list("files").await.unwrap() == vec![owned.clone()]
    })
    .await;
    assert_eq!(fs.list("files").await.unwrap(), vec![owned]);
}

databases_and_storages!(nothing_dangles_after_a_kill);

// ------------------------------------------------------------------ the settings

#[test]
fn files_settings_are_read_and_checked() {
    let load = |text: &str| {
        let dir = common::project(&[NOTE, ("trellis.yaml", text)]);
        spec::load(dir.path())
    };
    let loaded = load(
        "files:\n  storage: s3\n  s3: { bucket: b, region: eu-west-1, endpoint: \"http://127.0.0.1:9000\", prefix: app/, allow_http: true }\n  max_upload: 100MiB\n  url_ttl: 60\n  pending_ttl: 120\n  signing_secret_env: FILES_SECRET\n",
    );
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let f = &loaded.spec.settings.files;
    assert_eq!(f.storage, FileStorage::S3);
    assert_eq!(f.max_upload, 100 * 1024 * 1024);
    assert_eq!((f.url_ttl, f.pending_ttl), (60, 120));
    // Left out, the upload timeout stays below a short pending_ttl.
    assert_eq!(f.upload_timeout, 60);
    assert_eq!(f.signing_secret_env.as_deref(), Some("FILES_SECRET"));
    let s3 = f.s3.as_ref().unwrap();
    assert_eq!(
        (s3.bucket.as_str(), s3.region.as_str(), s3.prefix.as_deref()),
        ("b", "eu-west-1", Some("app"))
    );
    let loaded = load("files:\n  upload_timeout: 7200\n  pending_ttl: 86400\n");
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    assert_eq!(loaded.spec.settings.files.upload_timeout, 7200);
    // The defaults.
    let loaded = load("name: x\n");
    assert_eq!(loaded.spec.settings.files, FileSettings::default());
    assert_eq!(FileSettings::default().max_upload, 1 << 30);
    // Every mistake is a diagnostic with its line.
    for (text, code, line) in [
        ("files:\n  storage: ftp\n", "unknown-value", 2),
        ("files:\n  storage: s3\n", "missing-key", 2),
        ("files:\n  s3: { region: x }\n", "missing-key", 2),
        (
            "files:\n  s3: { bucket: b, endpoint: \"http://s3.local\" }\n",
            "insecure-endpoint",
            2,
        ),
        (
            "files:\n  s3: { bucket: b, endpoint: \"s3.local\" }\n",
            "invalid-url",
            2,
        ),
        (
            "files:\n  s3: { bucket: b, prefix: \"../x\" }\n",
            "invalid-value",
            2,
        ),
        ("files:\n  max_upload: 12 parsecs\n", "invalid-size", 2),
        ("files:\n  max_upload: 100GiB\n", "out-of-range", 2),
        ("files:\n  url_ttl: 0\n", "out-of-range", 2),
        ("files:\n  pending_ttl: 999999999\n", "out-of-range", 2),
        ("files:\n  upload_timeout: 0\n", "out-of-range", 2),
        (
            "files:\n  pending_ttl: 600\n  upload_timeout: 600\n",
            "out-of-range",
            3,
        ),
        ("files:\n  bucket: b\n", "unknown-key", 2),
    ] {
        let loaded = load(text);
        let errors: Vec<_> = loaded.errors().collect();
        assert_eq!(errors.len(), 1, "{text}: {errors:#?}");
        assert_eq!(
            (errors[0].code, errors[0].line),
            (code, line),
            "{text}: {:#?}",
            errors[0]
        );
        assert!(errors[0].hint.is_some(), "{text}: {:#?}", errors[0]);
    }
    // Sizes: 1024-based and 1000-based units, fractions (the syntax of a file
    // field's `max_size`).
    use trellis::spec::settings::parse_byte_size;
    assert_eq!(parse_byte_size("5MiB"), Some(5 << 20));
    assert_eq!(parse_byte_size("5 MB"), Some(5_000_000));
    assert_eq!(parse_byte_size("1GiB"), Some(1 << 30));
    assert_eq!(parse_byte_size("1.5GiB"), Some(3 << 29));
    assert_eq!(parse_byte_size("1.5 GB"), Some(1_500_000_000));
    assert_eq!(parse_byte_size("0.5KiB"), Some(512));
    assert_eq!(parse_byte_size("2TB"), Some(2_000_000_000_000));
    assert_eq!(parse_byte_size("1KB"), Some(1000));
    assert_eq!(parse_byte_size("123"), Some(123));
    assert_eq!(parse_byte_size("12B"), Some(12));
    for bad in [
        "",
        "MiB",
        ".5MiB",
        "5.MiB",
        "1.2.3GB",
        "-1",
        "5 mib",
        "5 PB",
        "99999999999999999999GiB",
    ] {
        assert_eq!(parse_byte_size(bad), None, "{bad}");
    }
    let loaded = load("files:\n  max_upload: 1.5GiB\n");
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    assert_eq!(loaded.spec.settings.files.max_upload, 3 << 29);
}

/// In production mode a signing secret that is named but not set stops `serve`
/// before it touches the database: links signed with a made-up secret would break
/// on every restart and differ between instances.
#[test]
fn production_needs_the_link_signing_secret() {
    let dir = common::project(&[
        NOTE,
        (
            "trellis.yaml",
            "mode: production\nfiles:\n  signing_secret_env: TRELLIS_TEST_FILES_SECRET_UNSET\n",
        ),
    ]);
    let out = common::process::trellis()
        .args(["serve", dir.path().to_str().unwrap(), "--port", "1"])
        .env_remove("TRELLIS_TEST_FILES_SECRET_UNSET")
        .output()
        .expect("run serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TRELLIS_TEST_FILES_SECRET_UNSET (files.signing_secret_env) is not set"),
        "{err}"
    );
    // Nothing was created: the database was not opened.
    assert!(!dir.path().join(".trellis/data.db").exists());
}
