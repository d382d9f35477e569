//! `file`: the metadata of one file (an object) or several (an array). A JSON body
//! only removes (`null`) or keeps and reorders (`[ids]`); content and metadata come
//! through multipart uploads (see `engine::files`). Conditions test `is set` and the
//! files' `size`, `type` and `name` (`avatar.size > 1000`).

use serde_json::{Value, json};

use super::{Cell, FieldKind, describe, string_with_format};
use crate::engine::Field;
use crate::engine::files::{is_multiple, multiple_words, single_words};

pub struct File;

/// The schema of one file's metadata in a returned record.
pub fn meta_schema() -> Value {
    json!({
        "type": "object",
        "required": ["id", "name", "size", "type", "url", "thumbs"],
        "properties": {
            "id": { "type": "string", "format": "uuid", "description": "The file's id (a UUID v7 chosen by the server)." },
            "name": { "type": "string", "description": "The file's name as uploaded, sanitized." },
            "size": { "type": "integer", "minimum": 0, "description": "The size in bytes." },
            "type": { "type": "string", "description": "The MIME type sniffed from the content." },
            "url": { "type": "string", "description": "The path that downloads the file (GET, with the caller's credentials; `/link` gives a signed, expiring url)." },
            "thumbs": {
                "type": "object",
                "additionalProperties": { "type": "string" },
                "description": "The thumbnails made of an image: size (`100x100`) → download path."
            }
        }
    })
}

impl FieldKind for File {
    fn words(&self, field: &Field) -> String {
        if is_multiple(field) {
            "an array of file ids".into()
        } else {
            "null".into()
        }
    }

    fn convert(&self, field: &Field, _value: &Value) -> Result<Cell, String> {
        // File fields are read by `engine::files::from_body`, never converted to a cell.
        Err(if is_multiple(field) {
            multiple_words(field)
        } else {
            single_words()
        })
    }

    fn input_schema(&self, field: &Field, documented: bool) -> Value {
        if is_multiple(field) {
            let limit = field.file.as_ref().map(|o| o.limit()).unwrap_or(1);
            let mut s = json!({
                "type": "array",
                "items": string_with_format("uuid", documented),
                "uniqueItems": true,
                "maxItems": limit,
            });
            if documented {
                s["description"] = json!(
                    "The ids of this record's files to keep, in this order (the others are removed). Files are uploaded with multipart/form-data."
                );
            }
            s
        } else {
            let mut s = json!({ "type": "null" });
            if documented {
                s["description"] = json!(
                    "Only `null` (remove the file). A file is uploaded with multipart/form-data."
                );
            }
            s
        }
    }

    fn record_schema(&self, field: &Field) -> Option<Value> {
        let mut s = if is_multiple(field) {
            json!({ "type": "array", "items": meta_schema() })
        } else {
            let mut m = meta_schema();
            m["type"] = json!(["object", "null"]);
            m
        };
        describe(&mut s, field);
        Some(s)
    }

    fn nullable(&self) -> bool {
        false
    }

    fn comparable(&self) -> bool {
        false
    }

    fn groupable(&self) -> bool {
        false
    }

    fn expectation(&self, _field: &Field) -> String {
        "nothing (test `is set`, or a file's `size`, `type` or `name`)".into()
    }

    fn cursor_value(&self, _scale: u32, _v: &Value) -> Option<Cell> {
        None
    }
}
