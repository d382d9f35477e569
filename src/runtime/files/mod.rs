//! Where the content of file fields lives: a local folder (default) or an
//! S3-compatible bucket, behind one [`FileStore`]. Uploads are streamed
//! ([`FileStore::put_stream`]): hashed, sniffed from their first bytes, counted
//! against the size limit and written in parts as they arrive, never held whole in
//! memory. Downloads stream too, with byte ranges ([`FileStore::get`]).
//!
//! - [`keys`]: the object keys (`files/<entity>/<field>/<file id>`, thumbnails under
//!   `thumbs/…`), defined in `spec::file_keys` so the store and the routes share them.
//! - [`sign`]: signed download links (HMAC-SHA256, expiring, bound to one file).
//! - [`thumbs`]: thumbnails, decoded with limits, generated once and kept.
//! - [`worker`]: the removal worker and the sweeper of abandoned uploads.

pub mod sign;
pub mod thumbs;
pub mod worker;

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{BoxStream, Stream, StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};

pub use crate::spec::file_keys as keys;
use crate::spec::settings::{FileSettings, FileStorage, S3Settings};
pub use sign::{LinkError, Signer};

/// Bytes sent to storage at once: the part size of a multipart upload (S3 wants at
/// least 5 MiB per part but the last), and the most an upload holds before its first
/// part goes out. A smaller upload is stored with one request.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one upload in flight at once. With [`PART_SIZE`], an upload holds at
/// most about `(PART_CONCURRENCY + 1) * PART_SIZE` bytes in memory.
pub const PART_CONCURRENCY: usize = 2;
/// Bytes of the beginning of an upload the type is sniffed from.
pub const SNIFF_BYTES: usize = 8192;

/// The credentials of an S3 bucket, read from the environment by the CLI
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).
#[derive(Clone, Default)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// What went wrong with a file. The HTTP layer maps each kind to a status.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The upload is larger than the limit (413). Nothing of it is kept.
    #[error("the file is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// No object under this key (404).
    #[error("no such file")]
    NotFound,
    /// The requested byte range is outside the file (416).
    #[error("the range is outside the file's {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    /// The client's body failed mid-upload (400). Nothing of it is kept.
    #[error("the upload was interrupted: {0}")]
    Upload(String),
    /// The image cannot be made a thumbnail: not an image of an accepted format,
    /// broken, or larger than the decoding limits (422).
    #[error("{0}")]
    Image(String),
    /// The storage configuration is wrong (the server does not start).
    #[error("file storage: {0}")]
    Config(String),
    /// The storage failed (503 / 500).
    #[error("file storage failed: {0}")]
    Storage(String),
}

impl From<object_store::Error> for FileError {
    fn from(err: object_store::Error) -> FileError {
        match err {
            object_store::Error::NotFound { .. } => FileError::NotFound,
            other => FileError::Storage(other.to_string()),
        }
    }
}

/// A stored upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub size: u64,
    /// The SHA-256 of the content, lowercase hex.
    pub sha256: String,
    /// The type sniffed from the first bytes ([`sniff`]), never the client's word.
    pub sniffed: String,
}

/// A byte range of a download, as a `Range` header asks for it (RFC 9110).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=start-end` (`end` inclusive; clamped to the file's end).
    FromTo(u64, u64),
    /// `bytes=start-`.
    From(u64),
    /// `bytes=-n`: the last `n` bytes.
    Last(u64),
}

impl ByteRange {
    /// The bytes this range takes of a file of `size` bytes, or `None` when it is
    /// unsatisfiable (416).
    pub fn resolve(self, size: u64) -> Option<Range<u64>> {
        match self {
            ByteRange::FromTo(start, end) if start <= end && start < size => {
                Some(start..end.saturating_add(1).min(size))
            }
            ByteRange::From(start) if start < size => Some(start..size),
            ByteRange::Last(n) if n > 0 && size > 0 => Some(size.saturating_sub(n)..size),
            _ => None,
        }
    }
}

/// A download: what the file is, which bytes of it come, and the bytes.
pub struct Fetched {
    /// The whole file's size.
    pub size: u64,
    /// The bytes `body` holds (all of them without a range).
    pub range: Range<u64>,
    pub last_modified: chrono::DateTime<chrono::Utc>,
    pub body: BoxStream<'static, Result<Bytes, FileError>>,
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetched")
            .field("size", &self.size)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// The type of content from its first bytes: a known signature (`infer`), else
/// `text/plain` for UTF-8 text without control characters, else
/// `application/octet-stream` (also for an empty file).
pub fn sniff(head: &[u8]) -> String {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_string();
    }
    if head.is_empty() {
        return "application/octet-stream".to_string();
    }
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        // Cut in the middle of a character at the end of the sniffed bytes.
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or("")
        }
        Err(_) => return "application/octet-stream".to_string(),
    };
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t' | '\u{c}'));
    if plain {
        "text/plain"
    } else {
        "application/octet-stream"
    }
    .to_string()
}

/// Where file content is stored: one object store (a local folder or an S3 bucket)
/// and the prefix of this project's keys in it. Cloning shares it.
#[derive(Clone)]
pub struct FileStore {
    objects: Arc<dyn ObjectStore>,
    prefix: Option<String>,
    /// The folder of a local store: where an upload killed mid-way left its
    /// staging file (`<key>#<n>`), which [`FileStore::delete`] removes too.
    local_dir: Option<std::path::PathBuf>,
    /// `local folder …` / `s3://bucket/prefix`, for logs.
    describe: String,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

impl std::fmt::Display for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

impl FileStore {
    /// A local folder (created if missing).
    pub fn local(dir: &Path) -> Result<FileStore, FileError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| FileError::Config(format!("cannot create {}: {e}", dir.display())))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| FileError::Config(format!("cannot use {}: {e}", dir.display())))?
            // Empty folders go with their last file.
            .with_automatic_cleanup(true)
            // A record names a file only once it is on disk for good.
            .with_fsync(true);
        Ok(FileStore {
            objects: Arc::new(fs),
            prefix: None,
            local_dir: Some(dir.to_path_buf()),
            describe: format!("local folder {}", dir.display()),
        })
    }

    /// An S3-compatible bucket. Without credentials, the instance's role (EC2,
    /// ECS) is asked for them.
    pub fn s3(
        settings: &S3Settings,
        credentials: Option<&S3Credentials>,
    ) -> Result<FileStore, FileError> {
        // reqwest is built without a default TLS provider; this process uses ring's.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_allow_http(settings.allow_http);
        if let Some(endpoint) = &settings.endpoint {
            // Path-style requests (`<endpoint>/<bucket>/<key>`), which every
            // S3-compatible server understands.
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        if let Some(c) = credentials {
            builder = builder
                .with_access_key_id(&c.access_key_id)
                .with_secret_access_key(&c.secret_access_key);
            if let Some(token) = &c.session_token {
                builder = builder.with_token(token);
            }
        }
        let s3 = builder
            .build()
            .map_err(|e| FileError::Config(format!("bucket {}: {e}", settings.bucket)))?;
        let describe = match &settings.prefix {
            Some(p) => format!("s3://{}/{p}", settings.bucket),
            None => format!("s3://{}", settings.bucket),
        };
        Ok(FileStore {
            objects: Arc::new(s3),
            prefix: settings.prefix.clone(),
            local_dir: None,
            describe,
        })
    }

    /// The store `files` in trellis.yaml describes; `project` is the folder a
    /// relative `files.dir` is in.
    pub fn from_settings(
        settings: &FileSettings,
        project: &Path,
        credentials: Option<&S3Credentials>,
    ) -> Result<FileStore, FileError> {
        match settings.storage {
            FileStorage::Local => FileStore::local(&project.join(&settings.dir)),
            FileStorage::S3 => match &settings.s3 {
                Some(s3) => FileStore::s3(s3, credentials),
                None => Err(FileError::Config(
                    "`files.storage: s3` needs `files.s3`".into(),
                )),
            },
        }
    }

    fn path(&self, key: &str) -> Result<ObjectPath, FileError> {
        if !valid_key(key) {
            return Err(FileError::Storage(format!("`{key}` is not a storage key")));
        }
        let full = match &self.prefix {
            Some(p) => format!("{p}/{key}"),
            None => key.to_string(),
        };
        ObjectPath::parse(&full)
            .map_err(|e| FileError::Storage(format!("`{key}` is not a key: {e}")))
    }

    /// Stores `body` under `key` as it arrives. Refuses it once it exceeds
    /// `max_size` bytes ([`FileError::TooLarge`]), or when the body fails
    /// ([`FileError::Upload`]); either way nothing stays under `key` (a multipart
    /// upload in progress is aborted). Holds at most about
    /// `(PART_CONCURRENCY + 1) * PART_SIZE` bytes, whatever the file's size.
    pub async fn put_stream<S, E>(
        &self,
        key: &str,
        body: S,
        max_size: u64,
    ) -> Result<Stored, FileError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let path = self.path(key)?;
        let mut body = std::pin::pin!(body);
        let mut hasher = Sha256::new();
        let mut head: Vec<u8> = Vec::new();
        let mut first = BytesMut::new();
        let mut upload: Option<WriteMultipart> = None;
        let mut size: u64 = 0;
        let failure = loop {
            let chunk = match body.next().await {
                None => break None,
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => break Some(FileError::Upload(e.to_string())),
            };
            size = size.saturating_add(chunk.len() as u64);
            if size > max_size {
                break Some(FileError::TooLarge { limit: max_size });
            }
            hasher.update(&chunk);
            if head.len() < SNIFF_BYTES {
                let take = (SNIFF_BYTES - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
            }
            match &mut upload {
                Some(w) => {
                    if let Err(e) = w.wait_for_capacity(PART_CONCURRENCY).await {
                        break Some(e.into());
                    }
                    w.put(chunk);
                }
                None => {
                    first.extend_from_slice(&chunk);
                    if first.len() >= PART_SIZE {
                        match self.objects.put_multipart(&path).await {
                            Ok(parts) => {
                                let mut w = WriteMultipart::new_with_chunk_size(parts, PART_SIZE);
                                w.put(first.split().freeze());
                                upload = Some(w);
                            }
                            Err(e) => break Some(e.into()),
                        }
                    }
                }
            }
        };
        if let Some(err) = failure {
            if let Some(w) = upload
                && let Err(e) = w.abort().await
            {
                tracing::warn!(key, error = %e, "files: cannot abort a refused upload; its parts stay until the bucket's lifecycle removes them");
            }
            return Err(err);
        }
        let stored = match upload {
            None => self
                .objects
                .put(&path, PutPayload::from(first.freeze()))
                .await
                .map(|_| ()),
            Some(w) => w.finish().await.map(|_| ()),
        };
        if let Err(e) = stored {
            // Whatever may have been written goes.
            let _ = self.delete(key).await;
            return Err(e.into());
        }
        let sha256 = hex(&hasher.finalize());
        Ok(Stored {
            size,
            sha256,
            sniffed: sniff(&head),
        })
    }

    /// The object under `key`, or the bytes `range` of it.
    pub async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<Fetched, FileError> {
        let path = self.path(key)?;
        let meta = self.objects.head(&path).await?;
        let size = meta.size;
        let range = match range {
            None => 0..size,
            Some(r) => r
                .resolve(size)
                .ok_or(FileError::RangeNotSatisfiable { size })?,
        };
        let body: BoxStream<'static, Result<Bytes, FileError>> = if range.is_empty() {
            futures_util::stream::empty().boxed()
        } else {
            let options = GetOptions {
                range: Some(GetRange::Bounded(range.clone())),
                ..GetOptions::default()
            };
            self.objects
                .get_opts(&path, options)
                .await?
                .into_stream()
                .map_err(FileError::from)
                .boxed()
        };
        Ok(Fetched {
            size,
            range,
            last_modified: meta.last_modified,
            body,
        })
    }

    /// The whole object under `key`, if it is at most `max` bytes (thumbnails).
    pub async fn read_all(&self, key: &str, max: u64) -> Result<Option<Bytes>, FileError> {
        let fetched = self.get(key, None).await?;
        if fetched.size > max {
            return Ok(None);
        }
        let mut out = BytesMut::with_capacity(fetched.size as usize);
        let mut body = fetched.body;
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(Some(out.freeze()))
    }

    /// Stores small content whole (thumbnails).
    pub async fn put_bytes(&self, key: &str, content: Bytes) -> Result<(), FileError> {
        let path = self.path(key)?;
        self.objects.put(&path, PutPayload::from(content)).await?;
        Ok(())
    }

    /// Whether an object is stored under `key`.
    pub async fn exists(&self, key: &str) -> Result<bool, FileError> {
        match self.objects.head(&self.path(key)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the object under `key`; removing what is not there succeeds. In a
    /// local folder, the staging files of an upload to `key` that a killed process
    /// left (`<key>#<n>`) go too. (On S3 the parts of an upload never completed
    /// are the bucket's lifecycle rule's to abort: docs/files.md.)
    pub async fn delete(&self, key: &str) -> Result<(), FileError> {
        match self.objects.delete(&self.path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(root) = &self.local_dir {
            let path = root.join(key);
            tokio::task::spawn_blocking(move || remove_staged(&path))
                .await
                .map_err(|e| FileError::Storage(e.to_string()))??;
        }
        Ok(())
    }

    /// Removes a file and, for a file's key, its thumbnails.
    pub async fn delete_with_thumbs(&self, key: &str) -> Result<(), FileError> {
        if let Some(prefix) = keys::thumbs_prefix_of(key) {
            for thumb in self.list(&prefix).await? {
                self.delete(&thumb).await?;
            }
        }
        self.delete(key).await
    }

    /// The keys under `prefix` (a folder of keys, e.g. `files/contractor`), sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, FileError> {
        let path = self.path(prefix)?;
        let strip = self.prefix.as_ref().map(|p| format!("{p}/"));
        let mut out: Vec<String> = self
            .objects
            .list(Some(&path))
            .map_ok(|meta| {
                let key = meta.location.to_string();
                match &strip {
                    Some(p) => key.strip_prefix(p.as_str()).unwrap_or(&key).to_string(),
                    None => key,
                }
            })
            .try_collect()
            .await?;
        out.sort();
        Ok(out)
    }
}

/// Removes the staging files (`<name>#<digits>`) of uploads to `path`.
fn remove_staged(path: &Path) -> Result<(), FileError> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Ok(());
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(FileError::Storage(format!(
                "cannot read {}: {e}",
                dir.display()
            )));
        }
    };
    let staged = format!("{name}#");
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        let is_staged = file
            .strip_prefix(&staged)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if is_staged {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(FileError::Storage(format!("cannot remove {file}: {e}")));
                }
            }
        }
    }
    Ok(())
}

/// Whether `key` is a key this store makes (`spec::file_keys`): segments of ASCII
/// letters, digits, `-`, `_` and `.`, none empty, `.` or `..`. Anything else (a
/// path that could leave the store's folder or prefix) is refused before it
/// reaches the storage.
fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// File storage as a running server holds it: the store, the link signer, the
/// limits of `files` in trellis.yaml, and a wake-up for the removal worker.
#[derive(Debug)]
pub struct Files {
    pub store: FileStore,
    pub signer: Signer,
    pub settings: FileSettings,
    wake: tokio::sync::Notify,
}

impl Files {
    pub fn new(store: FileStore, signer: Signer, settings: FileSettings) -> Files {
        Files {
            store,
            signer,
            settings,
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Tells the removal worker that a commit queued removals (or a failed write
    /// gave uploads up), so it does not wait for its next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keys_the_store_makes() {
        let id = uuid::Uuid::now_v7();
        assert!(valid_key(&keys::file_key("contractor", "cv", &id)));
        let size = keys::ThumbSize::parse("640x0").unwrap();
        assert!(valid_key(&keys::thumb_key(
            "contractor",
            "avatar",
            &id,
            size
        )));
        assert!(valid_key("files"));
        for bad in [
            "",
            "/",
            "/etc/passwd",
            "files/",
            "files//x",
            "files/../x",
            "..",
            "./x",
            "files/a b",
            "files/\u{e9}",
            "files\\x",
            "files/x?y",
        ] {
            assert!(!valid_key(bad), "{bad:?}");
        }
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(ByteRange::FromTo(0, 9).resolve(100), Some(0..10));
        assert_eq!(ByteRange::FromTo(90, 200).resolve(100), Some(90..100));
        assert_eq!(ByteRange::FromTo(100, 200).resolve(100), None);
        assert_eq!(ByteRange::FromTo(5, 4).resolve(100), None);
        assert_eq!(ByteRange::From(99).resolve(100), Some(99..100));
        assert_eq!(ByteRange::From(100).resolve(100), None);
        assert_eq!(ByteRange::Last(10).resolve(100), Some(90..100));
        assert_eq!(ByteRange::Last(1000).resolve(100), Some(0..100));
        assert_eq!(ByteRange::Last(0).resolve(100), None);
        assert_eq!(ByteRange::From(0).resolve(0), None);
    }

    #[test]
    fn sniffs_content_not_names() {
        let png = [
            0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n', 0, 0, 0, 13, b'I', b'H', b'D', b'R',
        ];
        assert_eq!(sniff(&png), "image/png");
        assert_eq!(sniff(b"%PDF-1.7\n"), "application/pdf");
        assert_eq!(sniff(b"hello, world\n"), "text/plain");
        assert_eq!(sniff("h\u{e9}".as_bytes()), "text/plain");
        // A two-byte character cut after its first byte, at the end of the sniffed part.
        assert_eq!(sniff(&[b'a', 0xc3]), "text/plain");
        assert_eq!(sniff(&[0, 1, 2, 3, 0xff]), "application/octet-stream");
        assert_eq!(sniff(b""), "application/octet-stream");
    }
}
