//! A large upload streams through the file store in bounded memory, on the local
//! folder and on S3: the process's peak resident set (VmHWM) stays under 100 MiB
//! while a 256 MiB body is stored (`TRELLIS_RSS_BYTES=1073741824` for 1 GiB).
//! Alone in its binary, so that no other test's memory counts.
//!
//! Needs `TRELLIS_TEST_S3_URL` and the AWS_* test credentials (.ci/s3.sh), like
//! tests/files_storage.rs.

use bytes::Bytes;
use trellis::runtime::files::{FileStore, S3Credentials};
use trellis::spec::settings::S3Settings;

const LIMIT: u64 = 100 * 1024 * 1024;

/// The peak resident set of this process, in bytes (Linux).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    kb * 1024
}

fn s3_store() -> FileStore {
    let url = std::env::var("TRELLIS_TEST_S3_URL").unwrap_or_else(|_| {
        panic!(
            "TRELLIS_TEST_S3_URL is not set: the S3 half of this test cannot run. Run the suite \
             with `bash .ci/run`, or `source .ci/s3.sh` first (it starts moto's S3 server)."
        )
    });
    let rest = url
        .strip_prefix("http://")
        .expect("http://HOST:PORT/BUCKET");
    let (host, bucket) = rest.split_once('/').expect("http://HOST:PORT/BUCKET");
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set (.ci/s3.sh sets it)"))
    };
    FileStore::s3(
        &S3Settings {
            bucket: bucket.trim_end_matches('/').to_string(),
            region: "us-east-1".into(),
            endpoint: Some(format!("http://{host}")),
            prefix: Some(format!("rss-{}", uuid::Uuid::now_v7().simple())),
            allow_http: true,
        },
        Some(&S3Credentials {
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
            session_token: None,
        }),
    )
    .expect("the S3 store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_streams_in_bounded_memory() {
    let total: u64 = std::env::var("TRELLIS_RSS_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256 * 1024 * 1024);
    let dir = tempfile::tempdir().unwrap();
    for (name, store) in [
        ("local", FileStore::local(dir.path()).unwrap()),
        ("s3", s3_store()),
    ] {
        // 64 KiB pieces, as a request body arrives: each a buffer of its own (as
        // hyper's are), so what the store keeps of them counts.
        let piece: Vec<u8> = (0..65_536u32).map(|i| (i * 31 % 251) as u8).collect();
        let pieces = total / piece.len() as u64;
        let stream = futures_util::stream::iter(
            (0..pieces).map(move |_| Ok::<Bytes, std::io::Error>(Bytes::copy_from_slice(&piece))),
        );
        let key = format!("files/big/file/{}", uuid::Uuid::now_v7());
        let started = std::time::Instant::now();
        let stored = store
            .put_stream(&key, stream, total)
            .await
            .expect("put_stream");
        let took = started.elapsed();
        assert_eq!(stored.size, pieces * 65_536);
        let peak = peak_rss();
        println!(
            "{name}: stored {} MiB in {:.1} s; peak RSS of the process {:.1} MiB",
            stored.size >> 20,
            took.as_secs_f64(),
            peak as f64 / 1048576.0
        );
        assert!(
            peak < LIMIT,
            "{name}: the peak resident set reached {} MiB",
            peak >> 20
        );
        // And back, streamed: the download holds no more than the upload did.
        let started = std::time::Instant::now();
        let fetched = store.get(&key, None).await.unwrap();
        assert_eq!(fetched.size, stored.size);
        let mut body = fetched.body;
        let mut read = 0u64;
        while let Some(chunk) = futures_util::StreamExt::next(&mut body).await {
            read += chunk.expect("a chunk").len() as u64;
        }
        assert_eq!(read, stored.size);
        let peak = peak_rss();
        println!(
            "{name}: read it back in {:.1} s; peak RSS of the process {:.1} MiB",
            started.elapsed().as_secs_f64(),
            peak as f64 / 1048576.0
        );
        assert!(
            peak < LIMIT,
            "{name}: the peak resident set reached {} MiB",
            peak >> 20
        );
        store.delete(&key).await.unwrap();
    }
}
