//! Files as the engine sees them: the metadata a `file` column keeps ([`FileMeta`],
//! its storage key from `spec::file_keys`, the one definition of keys), what a write
//! asks of a file field ([`FileWrite`],
//! from a JSON body or from uploads), and the record's wire form ([`wire`]).
//!
//! Trusted metadata reaches a write only through [`Input::add_uploads`], which the
//! HTTP multipart path fills after storing the content; a JSON body can only remove
//! files (`null`) or keep and reorder existing ones (an array of their ids).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::input::{FieldError, Input, Mode};
use super::{Entity, Field};
use crate::spec::FieldType;
use crate::spec::file_keys::file_key;

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

/// The URL path of a file of a record (`thumb`: of one of its thumbnails). It needs
/// the caller's credentials, or a signature added by the link route.
pub fn file_url(
    plural: &str,
    record: &str,
    field: &str,
    file: Uuid,
    thumb: Option<&str>,
) -> String {
    match thumb {
        Some(t) => format!("/api/{plural}/{record}/files/{field}/{file}?thumb={t}"),
        None => format!("/api/{plural}/{record}/files/{field}/{file}"),
    }
}

/// One file as a record shows it: no `sha256`, a `url`, and the thumbnails' urls.
fn wire_one(meta: &FileMeta, plural: &str, record: &str, field: &str) -> Value {
    let mut thumbs = Map::new();
    for t in &meta.thumbs {
        thumbs.insert(
            t.clone(),
            json!(file_url(plural, record, field, meta.id, Some(t))),
        );
    }
    json!({
        "id": meta.id,
        "name": meta.name,
        "size": meta.size,
        "type": meta.mime,
        "url": file_url(plural, record, field, meta.id, None),
        "thumbs": thumbs,
    })
}

/// A file column's stored value as a record shows it: an object or `null` for one
/// file, an array for several.
pub fn wire(field: &Field, plural: &str, record: &str, stored: &Value) -> Value {
    let files = stored_files(stored);
    if is_multiple(field) {
        Value::Array(
            files
                .iter()
                .map(|m| wire_one(m, plural, record, &field.name))
                .collect(),
        )
    } else {
        files
            .first()
            .map(|m| wire_one(m, plural, record, &field.name))
            .unwrap_or(Value::Null)
    }
}

/// Must records of `e` be built in Rust (`store::kernel::record_from_row`) rather
/// than as JSON by the database or straight from rows? Yes when it has a file field:
/// its stored metadata becomes urls and loses its `sha256` in Rust. The one predicate
/// every fast JSON path asks before it writes records of `e`.
pub fn built_in_rust(e: &Entity) -> bool {
    e.fields.iter().any(|f| f.ty == FieldType::File)
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

/// Uploaded files per field name, as the multipart path hands them over.
pub type Uploads = BTreeMap<String, Vec<FileMeta>>;

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

    /// The problem of an unresolvable write, for a 422.
    pub fn error(field: &Field, why: &Resolve) -> FieldError {
        let pointer = format!("/{}", field.name);
        match why {
            Resolve::Unknown(ids) => FieldError::new(
                pointer,
                format!(
                    "{} {} of this record's `{}`; list only ids of its files (to keep them, in this order)",
                    ids.iter()
                        .map(|i| format!("`{i}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if ids.len() == 1 {
                        "is not a file"
                    } else {
                        "are not files"
                    },
                    field.name
                ),
            ),
            Resolve::TooMany { limit, given } => FieldError::new(
                pointer,
                format!(
                    "holds at most {limit} file{}, not {given}",
                    if *limit == 1 { "" } else { "s" }
                ),
            ),
        }
    }
}

/// The JSON form of a file field in a request body: `null` (a single field: remove
/// the file) or an array of the ids of the record's files to keep (a multiple field).
/// Already checked against the JSON Schema.
pub(crate) fn from_body(field: &Field, value: &Value) -> Result<FileWrite, String> {
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

pub(crate) fn single_words() -> String {
    "in a JSON body may only be null (to remove the file); upload a file with multipart/form-data"
        .into()
}

pub(crate) fn multiple_words(field: &Field) -> String {
    format!(
        "in a JSON body must be an array of the ids of this record's `{}` files to keep, in order; upload files with multipart/form-data",
        field.name
    )
}

impl Input {
    /// Adds files uploaded with this request (the multipart path's trusted metadata)
    /// to an input parsed from the rest of the request: a single field's upload
    /// replaces its file, a multiple field's are appended (after the ids a JSON value
    /// kept). Each file must fit the field (`accept` on the sniffed type, `max_size`);
    /// the count is checked against the stored files when the write runs. Apply the
    /// caller's write rules with `Access::check_uploads` too.
    pub fn add_uploads(&mut self, e: &Entity, uploads: Uploads) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        for (name, files) in uploads {
            let pointer = format!("/{name}");
            let Some((index, field)) = e
                .fields
                .iter()
                .enumerate()
                .find(|(_, f)| f.name == name && f.ty == FieldType::File)
            else {
                errors.push(FieldError::new(
                    pointer,
                    format!("`{name}` is not a file field of {}", e.name),
                ));
                continue;
            };
            let Some(opts) = &field.file else {
                continue;
            };
            if files.is_empty() {
                continue;
            }
            if !opts.multiple && files.len() > 1 {
                errors.push(FieldError::new(
                    pointer,
                    format!("holds one file, not {}", files.len()),
                ));
                continue;
            }
            if files.len() > opts.limit() as usize {
                errors.push(FieldError::new(
                    pointer,
                    format!("holds at most {} files, not {}", opts.limit(), files.len()),
                ));
                continue;
            }
            let mut bad = false;
            for f in &files {
                if f.size > opts.max_size {
                    errors.push(FieldError::new(
                        pointer.clone(),
                        format!(
                            "`{}` is {} bytes; the largest file accepted is {} bytes",
                            f.name, f.size, opts.max_size
                        ),
                    ));
                    bad = true;
                } else if !opts.accepts(&f.mime) {
                    errors.push(FieldError::new(
                        pointer.clone(),
                        format!(
                            "`{}` is {}, which is not accepted (accepted: {})",
                            f.name,
                            f.mime,
                            opts.accept.join(", ")
                        ),
                    ));
                    bad = true;
                }
            }
            if bad {
                continue;
            }
            match self.files.iter_mut().find(|(i, _)| *i == index) {
                Some((_, w)) => {
                    if !opts.multiple && w.keep.as_ref().is_some_and(|k| k.is_empty()) {
                        // `null` and an upload for the same single field: the upload wins.
                        w.keep = None;
                    }
                    w.added.extend(files);
                }
                None => self.files.push((
                    index,
                    FileWrite {
                        keep: None,
                        added: files,
                        remove: Vec::new(),
                    },
                )),
            }
        }
        self.files.sort_by_key(|(i, _)| *i);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// An input that removes one stored file of a file field (the remove route):
    /// `None` when `field` is not a file field of `e`. The write answers a 422 when
    /// the record has no such file.
    pub fn remove_file(e: &Entity, field: &str, file: Uuid) -> Option<Input> {
        let index = e
            .fields
            .iter()
            .position(|f| f.name == field && f.ty == FieldType::File)?;
        Some(Input {
            values: Vec::new(),
            files: vec![(
                index,
                FileWrite {
                    keep: None,
                    added: Vec::new(),
                    remove: vec![file],
                },
            )],
        })
    }

    /// The write asked of a file field, if any.
    pub fn file(&self, index: usize) -> Option<&FileWrite> {
        self.files.iter().find(|(i, _)| *i == index).map(|(_, w)| w)
    }
}

/// The required single file fields a create leaves without a file (checked when the
/// write runs, after uploads were added).
pub fn missing_required(e: &Entity, input: &Input, mode: Mode) -> Vec<FieldError> {
    if mode == Mode::Update {
        return Vec::new();
    }
    e.fields
        .iter()
        .enumerate()
        .filter(|(_, f)| f.ty == FieldType::File && f.required)
        .filter(|(i, _)| input.file(*i).is_none_or(|w| w.added.is_empty()))
        .map(|(_, f)| {
            FieldError::new(
                format!("/{}", f.name),
                "is required: upload a file with multipart/form-data",
            )
        })
        .collect()
}
