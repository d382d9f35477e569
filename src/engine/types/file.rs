//! `file`: the metadata of one file (an object) or several (an array). A JSON body
//! only removes (`null`) or keeps and reorders (`[ids]`); content and metadata come
//! through multipart uploads (see `engine::files`). Conditions test `is set` and the
//! files' `size`, `type` and `name` (`avatar.size > 1000`).

use serde_json::{Value, json};
use uuid::Uuid;

use super::{Cell, FieldKind, describe, string_with_format};
use crate::engine::Field;
use crate::spec::file_keys::file_key;

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
            // Not `{"type": "null"}`: openapi-generator's typescript-fetch makes that
            // a `Null` model it never writes. A string of at most 0 characters types
            // as `string | null`; the API validates with `{"type": "null"}` (422 for "").
            let mut s = match documented {
                true => json!({ "type": ["string", "null"], "maxLength": 0 }),
                false => json!({ "type": "null" }),
            };
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

/// The metadata of one stored file, as its column keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileMeta {
    /// A UUID v7, chosen by the server; the storage key is made from it, never from
    /// the name.
    pub id: Uuid,
    /// The sanitized file name the client gave (for `Content-Disposition`).
    pub name: String,
    /// The size in bytes.
    pub size: u64,
    /// The MIME type sniffed from the content (never the client's word).
    #[serde(rename = "type")]
    pub mime: String,
    /// The SHA-256 of the content, lower-case hex (kept, never shown).
    pub sha256: String,
    /// The thumbnails made, as `WxH` (possibly none).
    #[serde(default)]
    pub thumbs: Vec<String>,
}

impl FileMeta {
    /// The metadata of a stored JSON value (`None` if it is not one).
    pub fn from_json(v: &Value) -> Option<FileMeta> {
        serde_json::from_value(v.clone()).ok()
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The storage key of the file's content (`spec::file_keys`). Its thumbnails go
    /// with it: the pending-upload and removal rows name only this key.
    pub fn key(&self, entity: &str, field: &str) -> String {
        file_key(entity, field, &self.id)
    }
}

/// The files a stored column value holds (a single file's object, or a multiple
/// field's array; `null` holds none). Entries that are not metadata are skipped.
pub fn stored_files(v: &Value) -> Vec<FileMeta> {
    match v {
        Value::Array(items) => items.iter().filter_map(FileMeta::from_json).collect(),
        Value::Object(_) => FileMeta::from_json(v).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// Does the field hold several files?
pub fn is_multiple(field: &Field) -> bool {
    field.file.as_ref().is_some_and(|o| o.multiple)
}

/// What a write asks of one file field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileWrite {
    /// The stored files to keep, in this order (the others are removed); `None` keeps
    /// them all (a multiple field given only uploads: they are appended). A single
    /// field's `null` is `Some(vec![])`.
    pub keep: Option<Vec<Uuid>>,
    /// Files uploaded with this request (trusted: only the multipart path adds them).
    pub added: Vec<FileMeta>,
    /// Stored files to remove (`DELETE /api/<plural>/<id>/files/<field>/<file id>`).
    pub remove: Vec<Uuid>,
}

/// Why a file write cannot be resolved against the stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolve {
    /// Ids to keep that are not files of the record.
    Unknown(Vec<Uuid>),
    /// More files than the field holds.
    TooMany { limit: u32, given: usize },
}

impl FileWrite {
    /// The new column value and the files it drops, from the stored value.
    pub fn resolve(
        &self,
        field: &Field,
        stored: &Value,
    ) -> Result<(Value, Vec<FileMeta>), Resolve> {
        let old = stored_files(stored);
        let limit = field.file.as_ref().map(|o| o.limit()).unwrap_or(1);
        let mut new: Vec<FileMeta> = match &self.keep {
            None => old.clone(),
            Some(ids) => {
                let unknown: Vec<Uuid> = ids
                    .iter()
                    .filter(|id| !old.iter().any(|m| m.id == **id))
                    .copied()
                    .collect();
                if !unknown.is_empty() {
                    return Err(Resolve::Unknown(unknown));
                }
                ids.iter()
                    .filter_map(|id| old.iter().find(|m| m.id == *id).cloned())
                    .collect()
            }
        };
        let unknown: Vec<Uuid> = self
            .remove
            .iter()
            .filter(|id| !new.iter().any(|m| m.id == **id))
            .copied()
            .collect();
        if !unknown.is_empty() {
            return Err(Resolve::Unknown(unknown));
        }
        new.retain(|m| !self.remove.contains(&m.id));
        if !is_multiple(field) && !self.added.is_empty() {
            // A single field's upload replaces its file.
            new.clear();
        }
        new.extend(self.added.iter().cloned());
        if new.len() > limit as usize {
            return Err(Resolve::TooMany {
                limit,
                given: new.len(),
            });
        }
        let dropped = old
            .into_iter()
            .filter(|m| !new.iter().any(|n| n.id == m.id))
            .collect();
        let value = if is_multiple(field) {
            Value::Array(new.iter().map(FileMeta::to_json).collect())
        } else {
            new.first().map(FileMeta::to_json).unwrap_or(Value::Null)
        };
        Ok((value, dropped))
    }
}

/// The JSON form of a file field in a request body: `null` (a single field: remove
/// the file) or an array of the ids of the record's files to keep (a multiple field).
/// Already checked against the JSON Schema.
pub fn from_body(field: &Field, value: &Value) -> Result<FileWrite, String> {
    if is_multiple(field) {
        let Some(items) = value.as_array() else {
            return Err(multiple_words(field));
        };
        let mut ids = Vec::with_capacity(items.len());
        for item in items {
            let id = item
                .as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| multiple_words(field))?;
            if ids.contains(&id) {
                return Err(format!("lists the file `{id}` twice"));
            }
            ids.push(id);
        }
        Ok(FileWrite {
            keep: Some(ids),
            ..FileWrite::default()
        })
    } else if value.is_null() {
        Ok(FileWrite {
            keep: Some(Vec::new()),
            ..FileWrite::default()
        })
    } else {
        Err(single_words())
    }
}

pub fn single_words() -> String {
    "in a JSON body may only be null (to remove the file); upload a file with multipart/form-data"
        .into()
}

pub fn multiple_words(field: &Field) -> String {
    format!(
        "in a JSON body must be an array of the ids of this record's `{}` files to keep, in order; upload files with multipart/form-data",
        field.name
    )
}
