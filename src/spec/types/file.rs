//! `file`: one uploaded file, or several with `multiple: true`. The column keeps the
//! files' metadata (JSON); the content lives in object storage. Options: `max_size`,
//! `accept` (MIME types or families, checked against the sniffed type), `thumbs` (for
//! images), and `max_count` for a multiple field.

use serde_json::{Value, json};

use super::{FieldRules, Keys};
use crate::spec::diag::{Sink, list};
use crate::spec::field::{
    FieldDef, FileOptions, MAX_MAX_COUNT, MAX_THUMB_SIDE, Storage, ThumbSize,
};
use crate::spec::settings::{MAX_UPLOAD_LIMIT, parse_byte_size};
use crate::spec::walk::{Named, bool_key, get, key_pos};
use crate::spec::yaml::{self, Node};

pub struct File;

/// The largest `max_size` a field may declare (the project's `files.max_upload`
/// lowers it): the largest `files.max_upload`.
pub const MAX_FILE_SIZE: u64 = MAX_UPLOAD_LIMIT;

impl FieldRules for File {
    fn keys(&self) -> &'static [&'static str] {
        &["multiple", "max_count", "max_size", "accept", "thumbs"]
    }

    fn storage(&self, _precision: u32, _scale: u32) -> Option<Storage> {
        Some(Storage::Json)
    }

    fn parse_options(&self, sink: &mut Sink<'_>, name: &Named, map: &Keys, field: &mut FieldDef) {
        let mut opts = FileOptions {
            multiple: bool_key(sink, map, "multiple"),
            ..FileOptions::default()
        };
        if let Some(node) = get(map, "max_count") {
            match &node.value {
                yaml::Value::Int(n) if !opts.multiple => {
                    let _ = n;
                    sink.error_hint(
                        node.pos,
                        "max-count-without-multiple",
                        format!(
                            "`max_count` applies only to a field of several files, and `{}` holds one",
                            name.name
                        ),
                        "add `multiple: true`, or remove `max_count`",
                    );
                }
                yaml::Value::Int(n) if *n >= 1 && *n <= i64::from(MAX_MAX_COUNT) => {
                    opts.max_count = Some(*n as u32);
                }
                yaml::Value::Int(n) => sink.error_hint(
                    node.pos,
                    "bad-max-count",
                    format!("`max_count` must be between 1 and {MAX_MAX_COUNT}, not {n}"),
                    "write e.g. `max_count: 10`",
                ),
                other => sink.error_hint(
                    node.pos,
                    "wrong-value-type",
                    format!(
                        "`max_count` must be a whole number, not {}",
                        other.kind_name()
                    ),
                    "write e.g. `max_count: 10`",
                ),
            }
        }
        if let Some(node) = get(map, "max_size")
            && let Some(size) = parse_size_node(sink, node)
        {
            opts.max_size = size;
            opts.max_size_pos = Some(node.pos);
        }
        if let Some(node) = get(map, "accept") {
            opts.accept = parse_accept(sink, node);
        }
        if let Some(node) = get(map, "thumbs") {
            opts.thumbs = parse_thumbs(sink, node);
            if !opts.thumbs.is_empty() {
                let images_only = !opts.accept.is_empty()
                    && opts
                        .accept
                        .iter()
                        .all(|a| a.starts_with("image/") && a != "image/svg+xml");
                if !images_only {
                    sink.error_hint(
                        node.pos,
                        "thumbs-need-images",
                        format!(
                            "`thumbs` are made of images, but `{}` accepts {}",
                            name.name,
                            if opts.accept.is_empty() {
                                "any type".to_string()
                            } else {
                                list(&opts.accept.iter().map(String::as_str).collect::<Vec<_>>())
                            }
                        ),
                        "restrict `accept` to raster images, e.g. `accept: [image/png, image/jpeg, image/webp]`, or remove `thumbs`",
                    );
                }
            }
        }
        if let Some(pos) = key_pos(map, "required")
            && field.required
            && opts.multiple
        {
            sink.error_hint(
                pos,
                "required-multiple-file",
                format!(
                    "`{}` holds a list of files, which is never absent (it may be empty)",
                    name.name
                ),
                "remove `required`",
            );
        }
        field.file = Some(opts);
    }

    fn editor_keys(&self) -> Value {
        json!({
            "multiple": {
                "type": "boolean",
                "description": "Several files (a list, in upload order) instead of one. Default false.",
                "markdownDescription": "Several files (a list, in upload order) instead of one. Default false.\n\n```yaml\nattachments: { type: file, multiple: true, max_count: 10 }\n```"
            },
            "max_count": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_MAX_COUNT,
                "description": "With `multiple: true`: the most files the field holds (default 20)."
            },
            "max_size": {
                "anyOf": [
                    { "type": "integer", "minimum": 1 },
                    { "type": "string", "pattern": SIZE_PATTERN }
                ],
                "description": "The largest file accepted: bytes, or a number with B, KiB, MiB, GiB (1024-based) or KB, MB, GB (1000-based). Default 10MiB; never above `files.max_upload` of trellis.yaml.",
                "markdownDescription": "The largest file accepted: bytes, or a number with `B`, `KiB`, `MiB`, `GiB` (1024-based) or `KB`, `MB`, `GB` (1000-based). Default `10MiB`; never above `files.max_upload` of trellis.yaml. A larger upload is refused with a 413.\n\n```yaml\ncv: { type: file, max_size: 5MiB, accept: [application/pdf] }\n```"
            },
            "accept": {
                "anyOf": [
                    { "type": "string", "pattern": MIME_PATTERN },
                    { "type": "array", "items": { "type": "string", "pattern": MIME_PATTERN }, "minItems": 1, "uniqueItems": true }
                ],
                "description": "The MIME types (application/pdf) or families (image/*) accepted, checked against the type sniffed from the content, never the name or the client's word. Default: any type.",
                "markdownDescription": "The MIME types (`application/pdf`) or families (`image/*`) accepted, checked against the type **sniffed from the content**, never the file name or the client's word. Default: any type. Another type is refused with a 422 naming the sniffed type.\n\n```yaml\navatar: { type: file, accept: [image/png, image/jpeg, image/webp] }\n```"
            },
            "thumbs": {
                "anyOf": [
                    { "type": "string", "pattern": THUMB_PATTERN },
                    { "type": "array", "items": { "type": "string", "pattern": THUMB_PATTERN }, "minItems": 1, "uniqueItems": true }
                ],
                "description": "Thumbnails made of each uploaded image, as WIDTHxHEIGHT; 0 keeps the ratio (640x0). Only when `accept` lists raster images only.",
                "markdownDescription": "Thumbnails made of each uploaded image, as `WIDTHxHEIGHT` in pixels (at most 4096); `0` keeps the ratio (`640x0`), never both. Only when `accept` lists raster images only.\n\n```yaml\navatar: { type: file, accept: [image/png, image/jpeg], thumbs: [100x100, 640x0] }\n```"
            }
        })
    }

    fn may_be_unique(&self) -> bool {
        false
    }
}

const SIZE_PATTERN: &str = "^[0-9]+(\\.[0-9]+)? ?([KMGT]i?B|B)$";
const MIME_PATTERN: &str = "^[a-z0-9][a-z0-9!#$&^_.+-]*/([a-z0-9][a-z0-9!#$&^_.+-]*|\\*)$";
const THUMB_PATTERN: &str = "^[0-9]{1,4}x[0-9]{1,4}$";

/// `5MiB`, `500 KB`, `1024` (bytes): the size in bytes, if it is one from 1 byte
/// to [`MAX_FILE_SIZE`] (the units of `files.max_upload`: `parse_byte_size`).
pub fn parse_size(text: &str) -> Option<u64> {
    parse_byte_size(text).filter(|s| (1..=MAX_FILE_SIZE).contains(s))
}

fn parse_size_node(sink: &mut Sink<'_>, node: &Node) -> Option<u64> {
    let hint = "write bytes (`5000000`) or a number with a unit: `5MiB`, `500KiB`, `2GiB` (1024-based) or `5MB` (1000-based)";
    let size = match &node.value {
        yaml::Value::Int(n) if *n >= 1 => Some(*n as u64),
        yaml::Value::Int(_) => None,
        yaml::Value::Str(s) => parse_size(s),
        other => {
            sink.error_hint(
                node.pos,
                "wrong-value-type",
                format!("`max_size` must be a size, not {}", other.kind_name()),
                hint,
            );
            return None;
        }
    };
    match size {
        Some(s) if s <= MAX_FILE_SIZE => Some(s),
        _ => {
            let given = match &node.value {
                yaml::Value::Str(s) => format!("`{s}`"),
                yaml::Value::Int(n) => n.to_string(),
                other => other.kind_name().to_string(),
            };
            sink.error_hint(
                node.pos,
                "bad-size",
                format!("`max_size` {given} is not a size between 1 byte and 64GiB"),
                hint,
            );
            None
        }
    }
}

/// A MIME type or family as written in `accept`, lower case: `image/png`, `image/*`.
pub fn is_mime(text: &str) -> bool {
    let Some((ty, sub)) = text.split_once('/') else {
        return false;
    };
    let token = |s: &str| {
        s.len() <= 127
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "!#$&^_.+-".contains(c))
    };
    token(ty) && (sub == "*" || token(sub))
}

fn string_list<'n>(
    sink: &mut Sink<'_>,
    node: &'n Node,
    key: &str,
    example: &str,
) -> Vec<(String, &'n Node)> {
    let items: Vec<&Node> = match &node.value {
        yaml::Value::Str(_) => vec![node],
        yaml::Value::Seq(items) => items.iter().collect(),
        other => {
            sink.error_hint(
                node.pos,
                "wrong-value-type",
                format!("`{key}` must be a list, not {}", other.kind_name()),
                format!("write e.g. `{key}: {example}`"),
            );
            return Vec::new();
        }
    };
    if items.is_empty() {
        sink.error_hint(
            node.pos,
            "empty-list",
            format!("`{key}` is empty"),
            format!("list at least one entry, e.g. `{key}: {example}`, or remove `{key}`"),
        );
    }
    let mut out: Vec<(String, &Node)> = Vec::new();
    for item in items {
        let yaml::Value::Str(s) = &item.value else {
            sink.error_hint(
                item.pos,
                "wrong-value-type",
                format!(
                    "each entry of `{key}` must be text, not {}",
                    item.value.kind_name()
                ),
                format!("write e.g. `{key}: {example}`"),
            );
            continue;
        };
        if out.iter().any(|(o, _)| o == s) {
            sink.error(
                item.pos,
                "duplicate-name",
                format!("`{s}` is listed twice in `{key}`"),
            );
            continue;
        }
        out.push((s.clone(), item));
    }
    out
}

fn parse_accept(sink: &mut Sink<'_>, node: &Node) -> Vec<String> {
    let mut accept = Vec::new();
    for (s, item) in string_list(sink, node, "accept", "[image/png, image/jpeg]") {
        if is_mime(&s) {
            accept.push(s);
            continue;
        }
        let lower = s.to_ascii_lowercase();
        let hint = if lower != s && is_mime(&lower) {
            format!("write it in lower case: `{lower}`")
        } else if s.starts_with('.') || !s.contains('/') {
            format!(
                "`accept` lists MIME types, not extensions: e.g. `application/pdf`, `image/png`, or a family such as `image/*`{}",
                extension_hint(&s)
            )
        } else {
            "write a MIME type such as `application/pdf`, or a family such as `image/*`".into()
        };
        sink.error_hint(
            item.pos,
            "bad-mime-type",
            format!("`{s}` is not a MIME type"),
            hint,
        );
    }
    accept
}

fn extension_hint(ext: &str) -> String {
    let known = match ext.trim_start_matches('.').to_ascii_lowercase().as_str() {
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "image" | "images" => "image/*",
        "zip" => "application/zip",
        "txt" | "text" => "text/plain",
        _ => return String::new(),
    };
    format!(" (for `{ext}`: `{known}`)")
}

fn parse_thumbs(sink: &mut Sink<'_>, node: &Node) -> Vec<ThumbSize> {
    let mut thumbs = Vec::new();
    for (s, item) in string_list(
        sink,
        node,
        "thumbs",
        "[100x100, 640x0]` (quote a size that starts with 0, which YAML reads as a number: `'0x480'`",
    ) {
        let sides: Option<(u64, u64)> = s.split_once('x').and_then(|(w, h)| {
            let digits =
                |t: &str| !t.is_empty() && t.len() <= 9 && t.bytes().all(|b| b.is_ascii_digit());
            (digits(w) && digits(h))
                .then(|| (w.parse().ok(), h.parse().ok()))
                .and_then(|(w, h)| Some((w?, h?)))
        });
        match (ThumbSize::parse(&s), sides) {
            (Some(t), _) if thumbs.contains(&t) => sink.error(
                item.pos,
                "duplicate-name",
                format!("the thumbnail `{s}` is listed twice in `thumbs`"),
            ),
            (Some(t), _) => thumbs.push(t),
            (None, Some((0, 0))) => sink.error_hint(
                item.pos,
                "bad-thumb",
                format!("the thumbnail `{s}` has neither a width nor a height"),
                "give at least one side, e.g. `640x0` (640 wide, height keeping the ratio)",
            ),
            (None, Some((w, h))) if w > u64::from(MAX_THUMB_SIDE) || h > u64::from(MAX_THUMB_SIDE) => {
                sink.error_hint(
                    item.pos,
                    "bad-thumb",
                    format!("the thumbnail `{s}` is larger than {MAX_THUMB_SIDE} pixels on a side"),
                    "thumbnails are small previews; use e.g. `1280x0`",
                )
            }
            _ => sink.error_hint(
                item.pos,
                "bad-thumb",
                format!("`{s}` is not a thumbnail size"),
                "write WIDTHxHEIGHT in pixels without leading zeros, e.g. `100x100` or `640x0` (0 keeps the ratio)",
            ),
        }
    }
    thumbs
}
