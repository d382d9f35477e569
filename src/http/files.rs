//! Files over HTTP (docs/files.md): multipart uploads streamed part by part into
//! the file store, the download and signed-link routes, and the headers of every
//! file answer (`Content-Disposition`, `ETag`, `Range`, `Cache-Control`, the
//! sandboxing `Content-Security-Policy`).
//!
//! The pure pieces (file names, ranges, dispositions, validators) are at the top
//! and unit-tested here; the handlers follow.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use unicode_normalization::UnicodeNormalization;
use uuid::Uuid;

use super::extract::Target;
use super::problem::{self, Problem};
use super::{AppState, MAX_BODY_BYTES};
use crate::engine::access::{Action, Decision, Principal};
use crate::engine::files::{FileMeta, Uploads, file_url};
use crate::engine::input::Mode;
use crate::engine::query;
use crate::engine::transition::Refusal;
use crate::engine::{Engine, Entity, Field};
use crate::runtime::files::sign::LinkTarget;
use crate::runtime::files::thumbs::thumb_type;
use crate::runtime::files::{ByteRange, FileError, Files, LinkError, SNIFF_BYTES, sniff};
use crate::spec::file_keys::{ThumbSize, file_key, thumb_key};
use crate::spec::{FieldType, Storage};
use crate::store::Record;

/// The longest file name kept, in bytes of UTF-8 (what most file systems allow).
pub const MAX_NAME_BYTES: usize = 255;

/// The name a file gets when the client sent none or nothing usable.
const FALLBACK_NAME: &str = "file";

/// A client's file name made safe to keep and to show: only its last path
/// component (`../../etc/passwd` → `passwd`, `C:\x\y.pdf` → `y.pdf`), in Unicode
/// NFC, without control or bidirectional-override characters, without leading or
/// trailing spaces and dots, at most [`MAX_NAME_BYTES`] bytes (cut at a character
/// boundary, keeping a short extension). Never empty. The name is metadata only:
/// storage keys never come from it.
pub fn sanitize_name(raw: &str) -> String {
    let nfc: String = raw.nfc().collect();
    let last = nfc
        .rsplit(['/', '\\'])
        .find(|part| !part.trim().is_empty())
        .unwrap_or("");
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !is_invisible_format(*c))
        .collect();
    let trimmed = cleaned.trim_matches(|c: char| c.is_whitespace() || c == '.');
    if trimmed.is_empty() {
        return FALLBACK_NAME.to_string();
    }
    truncate_name(trimmed)
}

/// Bidirectional overrides and isolates (which make `gpj.exe` read as `exe.jpg`),
/// zero-width characters and the byte-order mark.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// At most [`MAX_NAME_BYTES`] bytes, keeping an extension of up to 16 bytes.
fn truncate_name(name: &str) -> String {
    if name.len() <= MAX_NAME_BYTES {
        return name.to_string();
    }
    let ext = match name.rfind('.') {
        Some(dot) if name.len() - dot <= 16 => &name[dot..],
        _ => "",
    };
    let mut stem_end = MAX_NAME_BYTES - ext.len();
    while !name.is_char_boundary(stem_end) {
        stem_end -= 1;
    }
    format!("{}{ext}", &name[..stem_end])
}

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAsk {
    /// No usable single range (none, malformed, several, or `If-Range` no longer
    /// matches): the whole file, 200.
    Whole,
    /// Bytes `start..=end`, 206.
    Part { start: u64, end: u64 },
    /// A single byte range that lies outside the file: 416.
    Unsatisfiable,
}

/// Reads `Range` (RFC 9110 §14): one `bytes=` range (`a-b`, `a-`, `-n`). A
/// malformed header is ignored (the whole file), as are several ranges (a
/// client must accept the whole file in answer).
pub fn range_ask(headers: &HeaderMap, size: u64, etag: &str) -> RangeAsk {
    let Some(raw) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeAsk::Whole;
    };
    // `If-Range` with a validator that no longer matches: the whole file.
    if let Some(if_range) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok())
        && if_range.trim() != etag
    {
        return RangeAsk::Whole;
    }
    let Some(spec) = raw.trim().strip_prefix("bytes=") else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // A suffix: the last n bytes.
        if !digits(last) {
            return RangeAsk::Whole;
        }
        let Ok(n) = last.parse::<u64>() else {
            return RangeAsk::Whole;
        };
        if n == 0 || size == 0 {
            return RangeAsk::Unsatisfiable;
        }
        return RangeAsk::Part {
            start: size.saturating_sub(n),
            end: size - 1,
        };
    }
    if !digits(first) || !(last.is_empty() || digits(last)) {
        return RangeAsk::Whole;
    }
    let Ok(start) = first.parse::<u64>() else {
        return RangeAsk::Whole;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        last.parse::<u64>().unwrap_or(u64::MAX)
    };
    if end < start {
        return RangeAsk::Whole;
    }
    if start >= size {
        return RangeAsk::Unsatisfiable;
    }
    RangeAsk::Part {
        start,
        end: end.min(size - 1),
    }
}

/// Types shown in the browser (`inline`): raster images only. Everything else,
/// SVG (which can hold script), HTML, PDF and text included, is an `attachment`,
/// downloaded rather than rendered on the API's origin.
pub fn inline_type(media: &str) -> bool {
    matches!(
        media,
        "image/png" | "image/jpeg" | "image/gif" | "image/webp" | "image/avif" | "image/bmp"
    )
}

/// `Content-Disposition` (RFC 6266): `inline` for [`inline_type`]s, else
/// `attachment`, with an ASCII `filename` fallback and the exact name as
/// `filename*=UTF-8''…` (RFC 8187).
pub fn content_disposition(name: &str, media: &str) -> HeaderValue {
    let kind = if inline_type(media) {
        "inline"
    } else {
        "attachment"
    };
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' && c != '%' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        // RFC 8187's attr-char: ALPHA / DIGIT / "!#$&+-.^_`|~".
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&format!(
        "{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// The strong validator of a file (or one of its thumbnails): the file's id,
/// and the thumbnail size. A file's content never changes under its id (a new
/// upload is a new id), and the bytes are served as stored (file answers are
/// never compressed), so the validator is strong and `If-Range` may use it.
pub fn file_etag(file_id: Uuid, thumb: Option<&str>) -> String {
    match thumb {
        Some(size) => format!("\"{file_id}-{size}\""),
        None => format!("\"{file_id}\""),
    }
}

/// Does `If-None-Match` name this validator (or `*`)? Compared weakly, as RFC
/// 9110 §13.1.2 asks.
pub fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    let bare = etag.trim_start_matches("W/");
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == bare)
}

/// The headers every file answer carries, 304 and 206 included: the browser
/// must not guess another type (`nosniff`), and whatever it renders runs in a
/// sandbox without script, forms or plugins, and may load nothing (an uploaded
/// HTML page or SVG cannot act on the API's origin).
pub fn file_security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'; style-src 'unsafe-inline'"),
    );
    headers.insert(
        header::HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
}

/// `Cache-Control` of a file answer: `private, no-cache` for a download with
/// credentials (a browser may keep it but asks again, and the policy is checked
/// again); for a signed url, `private, max-age` of the seconds it has left.
pub fn cache_control(signed_left: Option<u64>) -> HeaderValue {
    match signed_left {
        None => HeaderValue::from_static("private, no-cache"),
        Some(secs) => HeaderValue::from_str(&format!("private, max-age={secs}"))
            .unwrap_or_else(|_| HeaderValue::from_static("private, no-cache")),
    }
}

// ---------------------------------------------------------------------------
// Multipart uploads

/// The most bytes of one part that is not a file (a field value, or `data`).
pub const MAX_TEXT_PART: u64 = 64 * 1024;

/// Parts of one multipart request at most, files included.
pub const MAX_PARTS: usize = 128;

/// What a multipart request carried: the JSON body its text parts make, and the
/// files stored from its file parts (their keys recorded as pending uploads).
pub(super) struct Received {
    pub body: Value,
    pub uploads: Uploads,
    /// Every key stored for this request (files and thumbnails), to remove if the
    /// write fails.
    pub keys: Vec<String>,
}

/// Is this request's body multipart/form-data?
pub(super) fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("multipart/form-data")
        })
}

/// The file storage of this server; 503 without one.
pub(super) fn storage(state: &AppState) -> Result<Arc<Files>, Problem> {
    state.files.clone().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no-file-storage",
            "No file storage",
            "this server has no file storage configured (`files` in trellis.yaml)",
        )
    })
}

fn file_field<'e>(e: &'e Entity, name: &str) -> Option<&'e Field> {
    e.fields
        .iter()
        .find(|f| f.name == name && f.ty == FieldType::File)
}

/// 413 for a file over its field's `max_size` (or the request over its total).
pub(super) fn file_too_large(field: &str, limit: u64) -> Problem {
    let mut p = Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "file-too-large",
        "File too large",
        format!("a file of `{field}` may be at most {limit} bytes"),
    );
    p.extra.push(("field".into(), json!(field)));
    p.extra.push(("max_size".into(), json!(limit)));
    p
}

/// 422 for content of a type the field does not accept (the sniffed type, never
/// the name or the client's `Content-Type`).
pub(super) fn wrong_file_type(field: &str, sniffed: &str, accept: &[String]) -> Problem {
    let mut p = Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "file-type",
        "File type not accepted",
        format!(
            "the content of this `{field}` file is {sniffed}, which is not accepted (accepted: {})",
            accept.join(", ")
        ),
    );
    p.extra.push(("field".into(), json!(field)));
    p.extra.push(("sniffed".into(), json!(sniffed)));
    p.extra.push(("accept".into(), json!(accept)));
    p
}

/// 422 for more files than a field holds.
pub(super) fn too_many_files(field: &str, limit: usize, given: usize) -> Problem {
    let mut p = Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "too-many-files",
        "Too many files",
        format!(
            "`{field}` holds at most {limit} file{}, not {given}",
            if limit == 1 { "" } else { "s" }
        ),
    );
    p.extra.push(("field".into(), json!(field)));
    p.extra.push(("max_count".into(), json!(limit)));
    p
}

fn multipart_problem(err: multer::Error) -> Problem {
    match err {
        multer::Error::FieldSizeExceeded { limit, field_name } => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "Body too large",
            format!(
                "the part `{}` may be at most {limit} bytes",
                field_name.unwrap_or_default()
            ),
        ),
        multer::Error::StreamSizeExceeded { limit } => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "Body too large",
            format!("this multipart body may be at most {limit} bytes"),
        ),
        other => Problem::bad_request(format!("the multipart body cannot be read: {other}")),
    }
}

/// The most files a field holds.
fn limit_of(field: &Field) -> usize {
    field.file.as_ref().map(|o| o.limit() as usize).unwrap_or(1)
}

fn max_size_of(field: &Field) -> u64 {
    field.file.as_ref().map(|o| o.max_size).unwrap_or(0)
}

/// The value of a text part: JSON when the part says `application/json`, else
/// the field's text form (a number, a boolean, JSON for structured fields; text
/// otherwise). What does not fit is left to the body's validation (422).
fn text_value(field: Option<&Field>, text: String, json_part: bool) -> Result<Value, Problem> {
    if json_part {
        return serde_json::from_str(&text)
            .map_err(|e| Problem::bad_request(format!("a JSON part is not valid JSON: {e}")));
    }
    let structured = match field {
        Some(f) => matches!(
            f.storage(),
            None | Some(Storage::Integer | Storage::Real | Storage::Boolean | Storage::Json)
        ),
        None => false,
    };
    if structured && let Ok(v) = serde_json::from_str::<Value>(&text) {
        return Ok(v);
    }
    Ok(Value::String(text))
}

/// The most bytes of a part's headers (and of the preamble before the first
/// part). multer keeps headers in memory until their end, bounded only by the
/// whole body's limit (the sum of the file fields' sizes): without this, one
/// request could make the server hold that much.
pub const MAX_PART_HEADERS: usize = 16 * 1024;

/// Counts the bytes of each part's headers as the body streams to multer, and
/// fails the body when one part's headers (or the preamble) exceed
/// [`MAX_PART_HEADERS`]. It only scans for the delimiter (`\r\n--boundary`) and
/// the headers' end (`\r\n\r\n`), carrying a few bytes across chunks; it holds
/// nothing else.
struct HeaderGuard {
    delimiter: Vec<u8>,
    /// In a part's headers (or the preamble), with this many bytes seen.
    in_headers: Option<usize>,
    /// The last bytes of the previous chunk, for a pattern split across chunks.
    tail: Vec<u8>,
    tripped: Arc<std::sync::atomic::AtomicBool>,
}

impl HeaderGuard {
    fn new(boundary: &str, tripped: Arc<std::sync::atomic::AtomicBool>) -> HeaderGuard {
        HeaderGuard {
            delimiter: format!("\r\n--{boundary}").into_bytes(),
            // The body starts with the preamble and the first part's headers.
            in_headers: Some(0),
            tail: Vec::new(),
            tripped,
        }
    }

    /// Looks at the next chunk; `false` when headers grew too large.
    fn see(&mut self, chunk: &[u8]) -> bool {
        let keep = self.delimiter.len().max(4);
        let mut window = std::mem::take(&mut self.tail);
        let carried = window.len();
        window.extend_from_slice(chunk);
        let mut at = 0;
        loop {
            match self.in_headers {
                Some(seen) => match memchr::memmem::find(&window[at..], b"\r\n\r\n") {
                    Some(end) => {
                        if seen + end > MAX_PART_HEADERS {
                            self.tripped
                                .store(true, std::sync::atomic::Ordering::Relaxed);
                            return false;
                        }
                        at += end + 4;
                        self.in_headers = None;
                    }
                    None => {
                        let fresh = (window.len() - at).min(window.len() - carried);
                        let seen = seen + fresh;
                        if seen > MAX_PART_HEADERS {
                            self.tripped
                                .store(true, std::sync::atomic::Ordering::Relaxed);
                            return false;
                        }
                        self.in_headers = Some(seen);
                        break;
                    }
                },
                None => match memchr::memmem::find(&window[at..], &self.delimiter) {
                    Some(start) => {
                        at += start + self.delimiter.len();
                        self.in_headers = Some(0);
                    }
                    None => break,
                },
            }
        }
        let from = window.len().saturating_sub(keep).max(at.min(window.len()));
        self.tail = window[from..].to_vec();
        true
    }
}

/// The request body with a [`HeaderGuard`] in the way.
fn guarded(
    body: Body,
    boundary: &str,
    tripped: Arc<std::sync::atomic::AtomicBool>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let mut guard = HeaderGuard::new(boundary, tripped);
    body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        if guard.see(&chunk) {
            Ok(chunk)
        } else {
            Err(std::io::Error::other("the headers of a part are too large"))
        }
    })
}

/// Reads a multipart body part by part. A part named after a file field of `e`
/// with a file name is a file: it is streamed into storage (never held whole),
/// its type sniffed from its first bytes and checked against `accept` before the
/// rest is stored. A part named `data` holds the whole JSON body; any other part
/// is one field's value. `only`: the files route, where every part must be a file
/// of this field. Whatever was stored is removed again when reading fails.
pub(super) async fn receive(
    state: &AppState,
    files: &Files,
    e: &Entity,
    headers: &HeaderMap,
    body: Body,
    only: Option<&Field>,
    existing: &BTreeMap<String, usize>,
) -> Result<Received, Problem> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(ct).map_err(|e| {
        Problem::bad_request(format!(
            "the multipart Content-Type has no usable boundary: {e}"
        ))
    })?;
    if let Some(coding) = headers.get(header::CONTENT_ENCODING)
        && !coding.as_bytes().eq_ignore_ascii_case(b"identity")
    {
        let mut p = Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-content-encoding",
            "Unsupported content encoding",
            "send the body uncompressed",
        );
        p.accept_encoding = true;
        return Err(p);
    }
    // Limits per part (a file at most its field's `max_size`, other parts
    // MAX_TEXT_PART, `data` the JSON limit) and for the whole body.
    let mut sizes = multer::SizeLimit::new().per_field(MAX_TEXT_PART);
    let mut whole: u64 = MAX_BODY_BYTES as u64;
    for f in e.fields.iter().filter(|f| f.ty == FieldType::File) {
        // One byte over the limit reaches the store, which names the field.
        sizes = sizes.for_field(f.name.clone(), max_size_of(f).saturating_add(1));
        whole = whole.saturating_add(max_size_of(f).saturating_mul(limit_of(f) as u64));
    }
    sizes = sizes
        .for_field("data", MAX_BODY_BYTES as u64)
        .whole_stream(whole.saturating_add(64 * 1024));
    let constraints = multer::Constraints::new().size_limit(sizes);
    let tripped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stream = guarded(body, &boundary, tripped.clone());
    let mut parts = multer::Multipart::with_constraints(stream, boundary, constraints);
    let mut got = Received {
        body: Value::Object(Map::new()),
        uploads: Uploads::new(),
        keys: Vec::new(),
    };
    let outcome = read_parts(state, files, e, &mut parts, only, existing, &mut got).await;
    match outcome {
        Ok(()) => Ok(got),
        Err(p) => {
            forget(state, files, &got.keys).await;
            if tripped.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-large",
                    "Body too large",
                    format!("the headers of a part may be at most {MAX_PART_HEADERS} bytes"),
                ));
            }
            Err(p)
        }
    }
}

async fn read_parts(
    state: &AppState,
    files: &Files,
    e: &Entity,
    parts: &mut multer::Multipart<'static>,
    only: Option<&Field>,
    existing: &BTreeMap<String, usize>,
    got: &mut Received,
) -> Result<(), Problem> {
    let mut count = 0usize;
    let mut seen_data = false;
    let mut values = Map::new();
    while let Some(part) = parts.next_field().await.map_err(multipart_problem)? {
        count += 1;
        if count > MAX_PARTS {
            return Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Body too large",
                format!("a multipart body may have at most {MAX_PARTS} parts"),
            ));
        }
        let name = part.name().unwrap_or("").to_string();
        let is_file = part.file_name().is_some();
        let field = match only {
            Some(f) => {
                if !is_file {
                    return Err(Problem::bad_request(format!(
                        "this route takes only files (parts with a file name) of `{}`",
                        f.name
                    )));
                }
                Some(f)
            }
            None => file_field(e, &name).filter(|_| is_file),
        };
        if let Some(field) = field {
            let given = got.uploads.get(&field.name).map_or(0, Vec::len) + 1;
            let limit = limit_of(field);
            let multiple = field.file.as_ref().is_some_and(|o| o.multiple);
            let before = if multiple {
                existing.get(&field.name).copied().unwrap_or(0)
            } else {
                0
            };
            if before + given > limit {
                return Err(too_many_files(&field.name, limit, before + given));
            }
            let meta = store_part(state, files, e, field, part, &mut got.keys).await?;
            got.uploads
                .entry(field.name.clone())
                .or_default()
                .push(meta);
            continue;
        }
        let json_part = part
            .content_type()
            .is_some_and(|m| m.essence_str() == "application/json");
        let text = part.text().await.map_err(multipart_problem)?;
        if name == "data" && file_field(e, "data").is_none() {
            if seen_data {
                return Err(Problem::bad_request("the part `data` is given twice"));
            }
            seen_data = true;
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(obj)) => {
                    for (k, v) in obj {
                        if values.insert(k.clone(), v).is_some() {
                            return Err(Problem::bad_request(format!(
                                "`{k}` is given twice (in `data` and in a part of its own)"
                            )));
                        }
                    }
                }
                Ok(_) => {
                    return Err(Problem::bad_request(
                        "the part `data` must hold a JSON object",
                    ));
                }
                Err(err) => {
                    return Err(Problem::bad_request(format!(
                        "the part `data` is not valid JSON: {err}"
                    )));
                }
            }
            continue;
        }
        let f = e.fields.iter().find(|f| f.name == name);
        let value = text_value(f, text, json_part)?;
        if values.insert(name.clone(), value).is_some() {
            return Err(Problem::bad_request(format!(
                "the part `{name}` is given twice"
            )));
        }
    }
    got.body = Value::Object(values);
    Ok(())
}

/// Streams one file part into storage under a fresh key (recorded as a pending
/// upload first): sniffs its first bytes and refuses a type the field does not
/// accept before storing anything, then the rest chunk by chunk, then the
/// thumbnails.
async fn store_part(
    state: &AppState,
    files: &Files,
    e: &Entity,
    field: &Field,
    mut part: multer::Field<'static>,
    keys: &mut Vec<String>,
) -> Result<FileMeta, Problem> {
    let Some(opts) = field.file.as_ref() else {
        return Err(Problem::internal());
    };
    let name = sanitize_name(part.file_name().unwrap_or(""));
    // The first bytes, enough to tell the type.
    let mut head: Vec<Bytes> = Vec::new();
    let mut head_len = 0usize;
    let mut ended = false;
    while head_len < SNIFF_BYTES {
        match part.chunk().await.map_err(multipart_problem)? {
            Some(chunk) => {
                head_len += chunk.len();
                head.push(chunk);
            }
            None => {
                ended = true;
                break;
            }
        }
    }
    let first: Vec<u8> = head
        .iter()
        .flat_map(|c| c.iter().copied())
        .take(SNIFF_BYTES)
        .collect();
    let sniffed = sniff(&first);
    if !opts.accepts(&sniffed) {
        return Err(wrong_file_type(&field.name, &sniffed, &opts.accept));
    }
    if head_len as u64 > opts.max_size {
        return Err(file_too_large(&field.name, opts.max_size));
    }
    let id = Uuid::now_v7();
    let key = file_key(&e.name, &field.name, &id);
    state
        .store
        .record_pending(std::slice::from_ref(&key))
        .await
        .map_err(|err| problem::from_store(err, &e.name))?;
    keys.push(key.clone());
    let rest = futures_util::stream::iter(head.into_iter().map(Ok::<Bytes, multer::Error>));
    let stored = if ended {
        files.store.put_stream(&key, rest, opts.max_size).await
    } else {
        files
            .store
            .put_stream(&key, rest.chain(part), opts.max_size)
            .await
    };
    let stored = match stored {
        Ok(s) => s,
        Err(FileError::TooLarge { limit }) => return Err(file_too_large(&field.name, limit)),
        Err(FileError::Upload(why)) if why.contains("exceeded") => {
            return Err(file_too_large(&field.name, opts.max_size));
        }
        Err(other) => return Err(file_problem(other)),
    };
    let thumbs = if opts.thumbs.is_empty() {
        Vec::new()
    } else {
        files
            .store
            .make_thumbs(&e.name, &field.name, &id, &stored.sniffed, &opts.thumbs)
            .await
            .map_err(file_problem)?
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    Ok(FileMeta {
        id,
        name,
        size: stored.size,
        mime: stored.sniffed,
        sha256: stored.sha256,
        thumbs,
    })
}

/// Removes what a failed request stored: the pending rows move to the durable
/// removal queue first (so a crash here still removes them), then the objects go
/// at once.
pub(super) async fn forget(state: &AppState, files: &Files, keys: &[String]) {
    if keys.is_empty() {
        return;
    }
    if let Err(err) = state.store.discard_pending(keys).await {
        tracing::warn!(error = %err, "files: cannot queue the removal of a failed upload; the sweeper will");
    }
    for key in keys {
        if let Err(err) = files.store.delete_with_thumbs(key).await {
            tracing::warn!(key, error = %err, "files: cannot remove a failed upload now; the removal worker will");
        }
    }
    files.wake();
}

/// A storage failure as a problem.
pub(super) fn file_problem(err: FileError) -> Problem {
    match err {
        FileError::TooLarge { limit } => file_too_large("file", limit),
        FileError::NotFound => Problem::not_found("there is no such file"),
        FileError::RangeNotSatisfiable { size } => range_not_satisfiable(size),
        FileError::Upload(why) => {
            Problem::bad_request(format!("the upload was interrupted: {why}"))
        }
        FileError::Image(why) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "file-type",
            "File type not accepted",
            why,
        ),
        other => {
            tracing::error!(error = %other, "file storage");
            let mut p = Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "file-storage-unavailable",
                "File storage unavailable",
                "the file storage does not answer right now; try again shortly",
            );
            p.retry_after(5);
            p
        }
    }
}

fn range_not_satisfiable(size: u64) -> Problem {
    let mut p = Problem::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        "range-not-satisfiable",
        "Range not satisfiable",
        format!("the file has {size} bytes; ask for a range inside them"),
    );
    p.extra.push(("size".into(), json!(size)));
    p
}

/// The ids of the files a record shows in a field, in order.
fn file_ids(rec: &Record, field: &str) -> Vec<String> {
    let id = |v: &Value| v.get("id").and_then(Value::as_str).map(String::from);
    match rec.get(field) {
        Some(Value::Array(items)) => items.iter().filter_map(id).collect(),
        Some(v @ Value::Object(_)) => id(v).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// The stored files of each file field of a record (how many), for the count
/// checks made before streaming.
pub(super) fn counts(e: &Entity, rec: &Record) -> BTreeMap<String, usize> {
    e.fields
        .iter()
        .filter(|f| f.ty == FieldType::File)
        .map(|f| {
            let n = file_ids(rec, &f.name).len();
            (f.name.clone(), n)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Routes

/// `{plural}/{id}/files/{field}/{file}`.
#[derive(serde::Deserialize)]
pub(super) struct FilePath {
    plural: String,
    id: String,
    field: String,
    file: String,
}

/// `{plural}/{id}/files/{field}`.
#[derive(serde::Deserialize)]
pub(super) struct FieldPath {
    plural: String,
    id: String,
    field: String,
}

/// The one answer to every file that is not there or not the caller's to see
/// (the record, the field, the file or the thumbnail): no existence oracle.
fn no_file(e: &Entity) -> Problem {
    Problem::not_found(format!("there is no such file of a {}", e.name))
}

/// What a download needs of a file's metadata, as a record shows it.
struct Shown {
    name: String,
    size: u64,
    mime: String,
    /// The thumbnail sizes made.
    thumbs: Vec<String>,
}

/// File `file_id` of `field` as the record shows it (the wire form, or the
/// stored one): `None` when the field is absent (redacted) or does not hold it.
fn find_file(rec: &Record, field: &str, file_id: Uuid) -> Option<Shown> {
    let id = file_id.to_string();
    let one = |v: &Value| -> Option<Shown> {
        if v.get("id").and_then(Value::as_str) != Some(id.as_str()) {
            return None;
        }
        let thumbs = match v.get("thumbs") {
            Some(Value::Object(m)) => m.keys().cloned().collect(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
            _ => Vec::new(),
        };
        Some(Shown {
            name: v
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("file")
                .to_string(),
            size: v.get("size").and_then(Value::as_u64)?,
            mime: v
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("application/octet-stream")
                .to_string(),
            thumbs,
        })
    };
    match rec.get(field)? {
        Value::Array(items) => items.iter().find_map(one),
        v @ Value::Object(_) => one(v),
        _ => None,
    }
}

/// The file as this caller may see it: the record read under the caller's read
/// policy, the field under its read rules (redacted, or without this file: the
/// same 404 as a record that does not exist).
async fn visible_file(
    state: &AppState,
    engine: &Engine,
    e: &Entity,
    who: &Principal,
    id: Uuid,
    field: &str,
    file_id: Uuid,
) -> Result<Shown, Problem> {
    if file_field(e, field).is_none() {
        return Err(no_file(e));
    }
    let hidden = engine.access.hidden_everywhere(who);
    let req = query::get_request(engine, e, &[], &hidden).map_err(|_| Problem::internal())?;
    let seen = state
        .store
        .get_with(engine, e, id, &req, who)
        .await
        .map_err(|err| match err {
            crate::store::Error::NotFound | crate::store::Error::Refused(_) => no_file(e),
            other => problem::from_store(other, &e.name),
        })?;
    find_file(&seen, field, file_id).ok_or_else(|| no_file(e))
}

/// `thumb=WxH` (one of the field's sizes that was made of this file), `exp` and
/// `sig` of a signed url. Any other parameter is refused.
struct FileQuery {
    thumb: Option<String>,
    exp: Option<i64>,
    sig: Option<String>,
}

fn file_query(raw: Option<&str>) -> Result<FileQuery, Problem> {
    let pairs = super::query_pairs(raw)?;
    let mut q = FileQuery {
        thumb: None,
        exp: None,
        sig: None,
    };
    for (k, v) in pairs {
        match k.as_str() {
            "thumb" if q.thumb.is_none() => q.thumb = Some(v),
            "exp" if q.exp.is_none() => {
                q.exp =
                    Some(v.parse().map_err(|_| {
                        Problem::bad_request("`exp` must be a unix time in seconds")
                    })?)
            }
            "sig" if q.sig.is_none() => q.sig = Some(v),
            other => {
                return Err(Problem::bad_request(format!(
                    "a file url takes `thumb`, `exp` and `sig` once each, not `{other}`"
                )));
            }
        }
    }
    Ok(q)
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A signed url that is not (any more): 403, the same for a forged one and an
/// expired one but for the words.
fn bad_link(why: LinkError) -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "invalid-link",
        "Invalid link",
        match why {
            LinkError::Expired => "this link has expired; ask for a new one (…/link)",
            LinkError::Invalid => "this link is not valid",
        },
    )
}

/// `GET /api/{plural}/{id}/files/{field}/{file}[?thumb=WxH]`: the file (or a
/// thumbnail), with the caller's credentials under the record's read policy and
/// the field's read rule, or with a signed url's `exp` and `sig`, without them.
pub(super) async fn download(
    State(state): State<AppState>,
    Path(p): Path<FilePath>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    parts_ext: axum::http::Extensions,
) -> Result<Response, Problem> {
    let engine = state.engine.load_full();
    let q = file_query(raw.as_deref())?;
    let e = entity_of(&engine, &p.plural)?;
    let not_found = || no_file(&e);
    let id = Uuid::parse_str(&p.id).map_err(|_| not_found())?;
    let file_id = Uuid::parse_str(&p.file).map_err(|_| not_found())?;
    let files = storage(&state)?;
    let signed_left;
    let meta = match (&q.exp, &q.sig) {
        (Some(exp), Some(sig)) => {
            let target = LinkTarget {
                plural: &e.plural,
                record_id: &p.id,
                field: &p.field,
                file_id: &p.file,
                thumb: q.thumb.as_deref(),
            };
            let now = now_secs();
            files
                .signer
                .verify(&target, *exp, sig, now)
                .map_err(bad_link)?;
            signed_left = Some(u64::try_from(exp - now).unwrap_or(0));
            if file_field(&e, &p.field).is_none() {
                return Err(not_found());
            }
            let raw = state.store.get(&e, id).await.map_err(|err| match err {
                crate::store::Error::NotFound => not_found(),
                other => problem::from_store(other, &e.name),
            })?;
            find_file(&raw, &p.field, file_id).ok_or_else(not_found)?
        }
        (None, None) => {
            let who = state.principal(&headers)?;
            super::extract::note_principal(&parts_ext, &who);
            signed_left = None;
            visible_file(&state, &engine, &e, &who, id, &p.field, file_id).await?
        }
        _ => {
            return Err(Problem::bad_request(
                "a signed url has both `exp` and `sig`",
            ));
        }
    };
    let (key, media, etag) = match &q.thumb {
        None => (
            file_key(&e.name, &p.field, &file_id),
            meta.mime.clone(),
            file_etag(file_id, None),
        ),
        Some(t) => {
            if !meta.thumbs.iter().any(|m| m == t) {
                return Err(not_found());
            }
            let size = ThumbSize::parse(t).ok_or_else(not_found)?;
            (
                thumb_key(&e.name, &p.field, &file_id, size),
                thumb_type(&meta.mime).to_string(),
                file_etag(file_id, Some(t)),
            )
        }
    };
    let cache = cache_control(signed_left);
    if none_match(&headers, &etag) {
        let mut res = StatusCode::NOT_MODIFIED.into_response();
        let h = res.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&etag) {
            h.insert(header::ETAG, v);
        }
        h.insert(header::CACHE_CONTROL, cache);
        file_security_headers(h);
        return Ok(res);
    }
    // The size of what is stored (a thumbnail's is not in the metadata).
    let size = match &q.thumb {
        None => meta.size,
        Some(_) => {
            files
                .store
                .get(&key, None)
                .await
                .map_err(file_problem)?
                .size
        }
    };
    let ask = range_ask(&headers, size, &etag);
    let range = match ask {
        RangeAsk::Whole => None,
        RangeAsk::Part { start, end } => Some(ByteRange::FromTo(start, end)),
        RangeAsk::Unsatisfiable => {
            let mut res = range_not_satisfiable(size).into_response();
            let h = res.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            file_security_headers(h);
            return Ok(res);
        }
    };
    let fetched = files
        .store
        .get(&key, range)
        .await
        .map_err(|err| match err {
            FileError::NotFound => not_found(),
            other => file_problem(other),
        })?;
    let partial = range.is_some();
    let len = fetched.range.end - fetched.range.start;
    let mut res = Response::new(Body::from_stream(fetched.body));
    *res.status_mut() = if partial {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&media)
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if partial
        && let Ok(v) = HeaderValue::from_str(&format!(
            "bytes {}-{}/{}",
            fetched.range.start,
            fetched.range.end.saturating_sub(1),
            fetched.size
        ))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_DISPOSITION,
        content_disposition(&meta.name, &media),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, cache);
    file_security_headers(h);
    Ok(res)
}

/// The entity of `{plural}`, answered as a missing file when there is none.
fn entity_of(engine: &Engine, plural: &str) -> Result<Arc<Entity>, Problem> {
    engine
        .entity_by_plural(plural)
        .cloned()
        .ok_or_else(|| Problem::not_found("there is no such file"))
}

/// `GET …/files/{field}/{file}/link[?thumb=WxH]`: after the same checks as a
/// download, a signed url that works without credentials until it expires.
pub(super) async fn link(
    State(state): State<AppState>,
    Target(who, engine, e, id): Target<Uuid>,
    Path(p): Path<FilePath>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Problem> {
    let q = file_query(raw.as_deref())?;
    if q.exp.is_some() || q.sig.is_some() {
        return Err(Problem::bad_request(
            "ask for a link with your credentials, not with a link",
        ));
    }
    let file_id = Uuid::parse_str(&p.file).map_err(|_| no_file(&e))?;
    let files = storage(&state)?;
    let meta = visible_file(&state, &engine, &e, &who, id, &p.field, file_id).await?;
    if let Some(t) = &q.thumb
        && !meta.thumbs.iter().any(|m| m == t)
    {
        return Err(no_file(&e));
    }
    let record = id.to_string();
    let file = file_id.to_string();
    let target = LinkTarget {
        plural: &e.plural,
        record_id: &record,
        field: &p.field,
        file_id: &file,
        thumb: q.thumb.as_deref(),
    };
    let ttl = files.settings.url_ttl;
    let (query, exp) = files.signer.query(&target, now_secs(), ttl);
    let url = format!(
        "{}?{query}",
        file_url(&e.plural, &record, &p.field, file_id, None)
    );
    let expires_at = chrono::DateTime::<chrono::Utc>::from_timestamp(exp, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let mut res = super::json_response(
        StatusCode::OK,
        &json!({ "url": url, "expires_at": expires_at }),
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// `POST /api/{plural}/{id}/files/{field}` (multipart): adds files to a multiple
/// field, or replaces a single one; the record's update rule and the field's
/// write rule apply, as for a PATCH (with `If-Match`).
pub(super) async fn add(
    State(state): State<AppState>,
    Target(who, engine, e, id): Target<Uuid>,
    Path(p): Path<FieldPath>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let _ = (&p.plural, &p.id);
    let expected = super::if_match(&headers)?;
    let Some(field) = file_field(&e, &p.field).cloned() else {
        return Err(no_file(&e));
    };
    if !is_multipart(&headers) {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send the files as multipart/form-data",
        ));
    }
    let files = storage(&state)?;
    let existing = may_update(&state, &engine, &e, &who, id, &[field.name.as_str()]).await?;
    let got = receive(&state, &files, &e, &headers, body, Some(&field), &existing).await?;
    if got.uploads.is_empty() {
        return Err(Problem::bad_request(format!(
            "send at least one file of `{}`",
            field.name
        )));
    }
    write(&state, &files, &engine, &e, &who, Some((id, expected)), got).await
}

/// Before anything is stored: the caller may update this record (read it, and
/// the policy allows `update` at all) and write these fields; the record's
/// stored file counts.
pub(super) async fn may_update(
    state: &AppState,
    engine: &Engine,
    e: &Entity,
    who: &Principal,
    id: Uuid,
    fields: &[&str],
) -> Result<BTreeMap<String, usize>, Problem> {
    let hidden = engine.access.hidden_everywhere(who);
    let req = query::get_request(engine, e, &[], &hidden).map_err(|_| Problem::internal())?;
    state
        .store
        .get_with(engine, e, id, &req, who)
        .await
        .map_err(|err| problem::for_caller(err, &e.name, who))?;
    if let Decision::Deny = engine.access.decide(&e.name, &Action::Update, who) {
        return Err(problem::refusal(
            Refusal::Forbidden(format!("you may not update this {}", e.name)),
            &e.name,
            who,
        ));
    }
    may_write_fields(engine, e, who, fields, Mode::Update)?;
    let raw = state
        .store
        .get(e, id)
        .await
        .map_err(|err| problem::from_store(err, &e.name))?;
    Ok(counts(e, &raw))
}

/// The field write rules of these file fields, checked before any byte is stored.
pub(super) fn may_write_fields(
    engine: &Engine,
    e: &Entity,
    who: &Principal,
    fields: &[&str],
    mode: Mode,
) -> Result<(), Problem> {
    let probe: Map<String, Value> = fields
        .iter()
        .map(|f| (f.to_string(), Value::Null))
        .collect();
    let errors = engine
        .access
        .check_write(e, &Value::Object(probe), mode, who);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Problem::invalid(errors))
    }
}

/// `DELETE /api/{plural}/{id}/files/{field}/{file}`: removes one file (the
/// record's update rule and the field's write rule apply; `If-Match` too).
/// Answers the record.
pub(super) async fn remove(
    State(state): State<AppState>,
    Target(who, engine, e, id): Target<Uuid>,
    Path(p): Path<FilePath>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let expected = super::if_match(&headers)?;
    let Some(field) = file_field(&e, &p.field).cloned() else {
        return Err(no_file(&e));
    };
    let file_id = Uuid::parse_str(&p.file).map_err(|_| no_file(&e))?;
    let meta = visible_file(&state, &engine, &e, &who, id, &field.name, file_id).await;
    let _ = meta?;
    let raw = state
        .store
        .get(&e, id)
        .await
        .map_err(|err| problem::from_store(err, &e.name))?;
    let multiple = field.file.as_ref().is_some_and(|o| o.multiple);
    let value = if multiple {
        let keep: Vec<Value> = file_ids(&raw, &field.name)
            .into_iter()
            .filter(|i| *i != file_id.to_string())
            .map(Value::String)
            .collect();
        Value::Array(keep)
    } else {
        Value::Null
    };
    let body = json!({ field.name.clone(): value });
    let input = super::checked_input(&engine, &e, &body, Mode::Update, &who)?;
    let rec = state
        .store
        .update(&engine, &e, id, &input, expected, &who)
        .await
        .map_err(|err| problem::for_caller(err, &e.name, &who))?;
    Ok(super::record_response(StatusCode::OK, &rec))
}

/// The write of a multipart create (`target` none) or update: the text parts
/// parsed and checked as a JSON body would be, the uploads added as trusted
/// metadata, one transaction (which claims the pending uploads). A failed write
/// removes what was stored at once.
pub(super) async fn write(
    state: &AppState,
    files: &Files,
    engine: &Engine,
    e: &Entity,
    who: &Principal,
    target: Option<(Uuid, Option<i64>)>,
    got: Received,
) -> Result<Response, Problem> {
    let Received {
        body,
        uploads,
        keys,
    } = got;
    let mode = if target.is_some() {
        Mode::Update
    } else {
        Mode::Create
    };
    let written = async {
        let mut input = super::checked_input(engine, e, &body, mode, who)?;
        input.add_uploads(e, uploads).map_err(Problem::invalid)?;
        let rec = match target {
            None => state.store.create(engine, e, &input, who).await,
            Some((id, expected)) => {
                state
                    .store
                    .update(engine, e, id, &input, expected, who)
                    .await
            }
        };
        rec.map_err(|err| problem::for_caller(err, &e.name, who))
    }
    .await;
    match written {
        Ok(rec) => {
            files.wake();
            let status = if target.is_some() {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            let mut res = super::record_response(status, &rec);
            if status == StatusCode::CREATED
                && let Some(id) = rec.get("id").and_then(Value::as_str)
                && let Ok(loc) = HeaderValue::from_str(&format!("/api/{}/{id}", e.plural))
            {
                res.headers_mut().insert(header::LOCATION, loc);
            }
            Ok(res)
        }
        Err(p) => {
            forget(state, files, &keys).await;
            Err(p)
        }
    }
}

/// A multipart `POST /api/{plural}` or `PATCH /api/{plural}/{id}`.
pub(super) async fn multipart_write(
    state: &AppState,
    engine: &Engine,
    e: &Entity,
    who: &Principal,
    target: Option<(Uuid, Option<i64>)>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let files = storage(state)?;
    let file_fields: Vec<&str> = e
        .fields
        .iter()
        .filter(|f| f.ty == FieldType::File)
        .map(|f| f.name.as_str())
        .collect();
    let existing = match target {
        Some((id, _)) => may_update(state, engine, e, who, id, &[]).await?,
        None => {
            if let Decision::Deny = engine.access.decide(&e.name, &Action::Create, who) {
                return Err(problem::refusal(
                    Refusal::Forbidden(format!("you may not create a {}", e.name)),
                    &e.name,
                    who,
                ));
            }
            BTreeMap::new()
        }
    };
    let _ = file_fields;
    let got = receive(state, &files, e, headers, body, None, &existing).await?;
    // The write rules of the file fields uploaded to.
    let uploaded: Vec<&str> = got.uploads.keys().map(String::as_str).collect();
    let mode = if target.is_some() {
        Mode::Update
    } else {
        Mode::Create
    };
    if let Err(p) = may_write_fields(engine, e, who, &uploaded, mode) {
        forget(state, &files, &got.keys).await;
        return Err(p);
    }
    write(state, &files, engine, e, who, target, got).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranged(range: &str, size: u64) -> RangeAsk {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(range).unwrap());
        range_ask(&h, size, "\"x\"")
    }

    #[test]
    fn names_keep_their_last_component_only() {
        assert_eq!(sanitize_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_name("C:\\Users\\a\\cv.pdf"), "cv.pdf");
        assert_eq!(sanitize_name("dir/"), "dir");
        assert_eq!(sanitize_name(".."), "file");
        assert_eq!(sanitize_name("../.."), "file");
        assert_eq!(sanitize_name(""), "file");
        assert_eq!(sanitize_name("  . "), "file");
        assert_eq!(sanitize_name("a\u{0}b\r\n.txt"), "ab.txt");
        assert_eq!(sanitize_name(".env"), "env");
        assert_eq!(sanitize_name("report\u{202E}fdp.exe"), "reportfdp.exe");
    }

    #[test]
    fn names_are_nfc_and_capped() {
        // "é" as e + combining acute becomes the single code point.
        assert_eq!(sanitize_name("re\u{301}sume\u{301}.pdf"), "résumé.pdf");
        let long = format!("{}.pdf", "é".repeat(300));
        let cut = sanitize_name(&long);
        assert!(cut.len() <= MAX_NAME_BYTES);
        assert!(cut.ends_with(".pdf"));
        let no_ext = "x".repeat(1000);
        assert_eq!(sanitize_name(&no_ext).len(), MAX_NAME_BYTES);
    }

    #[test]
    fn ranges() {
        assert_eq!(
            ranged("bytes=0-9", 100),
            RangeAsk::Part { start: 0, end: 9 }
        );
        assert_eq!(
            ranged("bytes=90-", 100),
            RangeAsk::Part { start: 90, end: 99 }
        );
        assert_eq!(
            ranged("bytes=-10", 100),
            RangeAsk::Part { start: 90, end: 99 }
        );
        assert_eq!(
            ranged("bytes=-1000", 100),
            RangeAsk::Part { start: 0, end: 99 }
        );
        assert_eq!(
            ranged("bytes=50-5000", 100),
            RangeAsk::Part { start: 50, end: 99 }
        );
        assert_eq!(ranged("bytes=100-", 100), RangeAsk::Unsatisfiable);
        assert_eq!(ranged("bytes=-0", 100), RangeAsk::Unsatisfiable);
        assert_eq!(ranged("bytes=0-0", 0), RangeAsk::Unsatisfiable);
        assert_eq!(ranged("bytes=0-1,5-6", 100), RangeAsk::Whole);
        assert_eq!(ranged("bytes=9-1", 100), RangeAsk::Whole);
        assert_eq!(ranged("items=0-1", 100), RangeAsk::Whole);
        assert_eq!(ranged("bytes=a-b", 100), RangeAsk::Whole);
        assert_eq!(ranged("bytes=+1-2", 100), RangeAsk::Whole);
        assert_eq!(
            ranged("bytes=0-99999999999999999999999", 100),
            RangeAsk::Part { start: 0, end: 99 }
        );
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_static("bytes=0-1"));
        h.insert(header::IF_RANGE, HeaderValue::from_static("\"old\""));
        assert_eq!(range_ask(&h, 100, "\"new\""), RangeAsk::Whole);
        assert_eq!(
            range_ask(&h, 100, "\"old\""),
            RangeAsk::Part { start: 0, end: 1 }
        );
    }

    #[test]
    fn dispositions() {
        let d = content_disposition("résumé \"final\".pdf", "application/pdf");
        assert_eq!(
            d.to_str().unwrap(),
            "attachment; filename=\"r_sum_ _final_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf"
        );
        let d = content_disposition("a.png", "image/png");
        assert!(d.to_str().unwrap().starts_with("inline; "));
        for risky in [
            "image/svg+xml",
            "text/html",
            "application/pdf",
            "text/plain",
        ] {
            assert!(!inline_type(risky), "{risky}");
        }
    }

    #[test]
    fn part_headers_are_bounded() {
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut g = HeaderGuard::new("b", flag.clone());
        // Headers, a large body split anywhere, then the next part's headers.
        assert!(g.see(b"--b\r\nContent-Disposition: form-data; name=\"f\"\r"));
        assert!(g.see(b"\n\r\n"));
        for _ in 0..100 {
            assert!(g.see(&[b'x'; 1000]));
        }
        assert!(g.see(b"\r\n-"));
        assert!(g.see(b"-b\r\nContent-Disposition: form-data; name=\"g\"\r\n\r\nv"));
        assert!(!flag.load(std::sync::atomic::Ordering::Relaxed));
        // A part whose headers never end.
        assert!(g.see(b"\r\n--b\r\nX-Long: "));
        let mut ok = true;
        for _ in 0..20 {
            ok &= g.see(&[b'h'; 1000]);
        }
        assert!(!ok);
        assert!(flag.load(std::sync::atomic::Ordering::Relaxed));
        // Long headers that end within one chunk.
        let mut g = HeaderGuard::new("b", flag.clone());
        let mut long = b"--b\r\nX: ".to_vec();
        long.extend(std::iter::repeat_n(b'a', 20_000));
        long.extend_from_slice(b"\r\n\r\nv");
        assert!(!g.see(&long));
        // A preamble that never ends.
        let mut g = HeaderGuard::new("b", flag);
        assert!(!(0..20).all(|_| g.see(&[b'p'; 1000])));
    }

    #[test]
    fn validators() {
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", W/\"abc\""),
        );
        assert!(none_match(&h, "\"abc\""));
        assert!(!none_match(&h, "\"abd\""));
        let id = Uuid::nil();
        assert_eq!(file_etag(id, Some("10x10")), format!("\"{id}-10x10\""));
    }
}
