//! Files over HTTP (docs/files.md): multipart uploads streamed part by part into
//! the file store, the download and signed-link routes, and the headers of every
//! file answer (`Content-Disposition`, `ETag`, `Range`, `Cache-Control`, the
//! sandboxing `Content-Security-Policy`).
//!
//! The pure pieces (file names, ranges, dispositions, validators) are at the top
//! and unit-tested here; the handlers follow.

use axum::http::{HeaderMap, HeaderValue, header};
use unicode_normalization::UnicodeNormalization;

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
        match last.parse::<u64>() {
            Ok(end) => end,
            Err(_) => u64::MAX,
        }
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

/// The strong validator of a file (or one of its thumbnails): its SHA-256 and
/// the thumbnail size. The bytes are served as stored (file answers are never
/// compressed), so the validator is strong and `Range` may use it.
pub fn file_etag(sha256: &str, thumb: Option<&str>) -> String {
    match thumb {
        Some(size) => format!("\"{sha256}-{size}\""),
        None => format!("\"{sha256}\""),
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
        assert_eq!(ranged("bytes=0-9", 100), RangeAsk::Part { start: 0, end: 9 });
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
        for risky in ["image/svg+xml", "text/html", "application/pdf", "text/plain"] {
            assert!(!inline_type(risky), "{risky}");
        }
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
        assert_eq!(file_etag("ff", Some("10x10")), "\"ff-10x10\"");
    }
}
