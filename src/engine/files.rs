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
pub use super::types::file::{
    FileMeta, FileWrite, Resolve, from_body, is_multiple, multiple_words, single_words,
    stored_files,
};
use super::{Entity, Field};
use crate::spec::FieldType;

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

/// Uploaded files per field name, as the multipart path hands them over.
pub type Uploads = BTreeMap<String, Vec<FileMeta>>;

/// The problem of an unresolvable file write, for a 422.
pub fn resolve_error(field: &Field, why: &Resolve) -> FieldError {
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
