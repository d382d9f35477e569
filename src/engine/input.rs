//! Request bodies: validated against the entity's JSON Schema, then converted into
//! typed cells. Every problem is reported at once, one entry per field.

use chrono::{DateTime, SecondsFormat, Utc};
use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

use super::{Entity, Field};
use crate::spec::FieldType;
use crate::spec::diag::did_you_mean;
use crate::spec::model::{Default as SpecDefault, SYSTEM_FIELDS};

pub use super::types::{Cell, a_or_an, parse_decimal, truncate_micros};

/// One problem with one part of a request body (RFC 9457 `errors` entry).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// A JSON pointer into the body, e.g. `/budget`.
    pub pointer: String,
    pub detail: String,
}

impl FieldError {
    pub fn new(pointer: impl Into<String>, detail: impl Into<String>) -> FieldError {
        FieldError {
            pointer: pointer.into(),
            detail: detail.into(),
        }
    }
}

/// The fields a write sets, in the entity's field order.
#[derive(Debug, Clone, Default)]
pub struct Input {
    pub values: Vec<(usize, Cell)>,
    /// What the write asks of file fields (in field order): from the JSON body (remove,
    /// keep and reorder) and from uploads (`Input::add_uploads`, the multipart path).
    pub files: Vec<(usize, super::files::FileWrite)>,
}

impl Input {
    pub fn get(&self, index: usize) -> Option<&Cell> {
        self.values
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, c)| c)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Create,
    Update,
    /// A create that may also set a workflow's state field (`trellis test` setup rows,
    /// seeding): never reachable from the HTTP API.
    Seed,
}

/// The canonical text of a datetime: RFC 3339 in UTC.
pub fn format_datetime(dt: &DateTime<Utc>) -> String {
    dt.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

pub fn now() -> DateTime<Utc> {
    truncate_micros(Utc::now())
}

/// Decimals written as numbers, as the text of the number: the API takes decimals as
/// strings only (one JSON type), while YAML fixtures and policy tests write `80`.
pub fn decimals_as_text(entity: &Entity, body: &Value) -> Value {
    let mut body = body.clone();
    if let Some(obj) = body.as_object_mut() {
        for f in entity.fields.iter().filter(|f| f.ty == FieldType::Decimal) {
            if let Some(v) = obj.get_mut(&f.name)
                && let Value::Number(n) = v
            {
                *v = Value::String(n.to_string());
            }
        }
    }
    body
}

/// Validates and converts a request body.
pub fn parse_body(entity: &Entity, body: &Value, mode: Mode) -> Result<Input, Vec<FieldError>> {
    let seed;
    let body = if mode == Mode::Seed {
        seed = decimals_as_text(entity, body);
        &seed
    } else {
        body
    };
    let Some(obj) = body.as_object() else {
        return Err(vec![FieldError::new(
            "",
            format!(
                "the body must be a JSON object of {} fields, like {{\"{}\": …}}",
                entity.name,
                entity
                    .fields
                    .first()
                    .map(|f| f.name.as_str())
                    .unwrap_or("name")
            ),
        )]);
    };
    let validator = match mode {
        Mode::Create | Mode::Seed => &entity.schemas.create_validator,
        Mode::Update => &entity.schemas.update_validator,
    };
    let mut errors: Vec<FieldError> = Vec::new();
    for err in validator.iter_errors(body) {
        schema_error(entity, obj, &err, &mut errors);
    }
    errors.dedup();
    let protected = entity
        .workflow_field
        .as_deref()
        .filter(|f| mode != Mode::Seed && obj.contains_key(*f));
    if let Some(f) = protected {
        // One answer for the state field, whatever its value.
        let pointer = format!("/{f}");
        let nested = format!("{pointer}/");
        errors.retain(|e| e.pointer != pointer && !e.pointer.starts_with(&nested));
        errors.push(FieldError::new(
            format!("/{f}"),
            format!(
                "`{f}` is kept by the workflow: a new {e} starts in its initial state, and only transitions change it; \
                 fire one with POST /api/{p}/{{id}}/transitions/{{name}} (GET /api/{p}/{{id}}/transitions lists those you may fire)",
                e = entity.name,
                p = entity.plural
            ),
        ));
    }

    let mut input = Input::default();
    for (index, field) in entity.fields.iter().enumerate() {
        let pointer = format!("/{}", field.name);
        match obj.get(&field.name) {
            Some(_) if protected == Some(field.name.as_str()) => {}
            Some(value) => {
                if errors.iter().any(|e| e.pointer.starts_with(&pointer)) {
                    continue;
                }
                if field.ty == FieldType::File {
                    match super::files::from_body(field, value) {
                        Ok(w) => input.files.push((index, w)),
                        Err(detail) => errors.push(FieldError::new(pointer, detail)),
                    }
                    continue;
                }
                match convert(field, value) {
                    Ok(cell) => input.values.push((index, cell)),
                    Err(detail) => errors.push(FieldError::new(pointer, detail)),
                }
            }
            None if mode != Mode::Update => match &field.default {
                Some(SpecDefault::Now) => input.values.push((index, field.kind().at(now()))),
                Some(SpecDefault::Value(v)) => match convert(field, v) {
                    Ok(cell) => input.values.push((index, cell)),
                    Err(detail) => errors.push(FieldError::new(
                        pointer,
                        format!("the model's default is invalid: {detail}"),
                    )),
                },
                None => {}
            },
            None => {}
        }
    }
    if errors.is_empty() {
        Ok(input)
    } else {
        errors.sort_by(|a, b| a.pointer.cmp(&b.pointer));
        Err(errors)
    }
}

fn type_words(field: &Field) -> String {
    field.kind().words(field)
}

fn schema_error(
    entity: &Entity,
    obj: &serde_json::Map<String, Value>,
    err: &jsonschema::ValidationError<'_>,
    out: &mut Vec<FieldError>,
) {
    let pointer = err.instance_path().as_str().to_string();
    let field_name = pointer
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    let field = entity.field(field_name);
    let in_list = pointer.matches('/').count() > 1;
    let detail = match err.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            for name in unexpected {
                out.push(FieldError::new(
                    format!("/{name}"),
                    unknown_field(entity, name),
                ));
            }
            return;
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            out.push(FieldError::new(format!("/{name}"), "is required"));
            return;
        }
        ValidationErrorKind::Type { .. } => match field {
            Some(f) if !in_list && obj.get(&f.name).is_some_and(Value::is_null) => {
                "is required and cannot be null".to_string()
            }
            Some(f) if f.ty == FieldType::File && super::files::is_multiple(f) => {
                super::files::multiple_words(f)
            }
            Some(f) if f.ty == FieldType::File => super::files::single_words(),
            Some(f) if in_list => format!(
                "each entry must be the id of {} record (a UUID string)",
                a_or_an(f.target.as_deref().unwrap_or("related"))
            ),
            Some(f) => format!("must be {}", type_words(f)),
            None => "has the wrong type".to_string(),
        },
        ValidationErrorKind::Enum { .. } => match field {
            Some(f) => format!("must be one of: {}", f.values.join(", ")),
            None => "is not an allowed value".to_string(),
        },
        ValidationErrorKind::MinLength { limit } => {
            format!("must be at least {limit} character{}", plural(*limit))
        }
        ValidationErrorKind::MaxLength { limit } => {
            format!("must be at most {limit} character{}", plural(*limit))
        }
        ValidationErrorKind::Minimum { limit } => format!("must be at least {limit}"),
        ValidationErrorKind::Maximum { limit } => format!("must be at most {limit}"),
        ValidationErrorKind::MaxItems { limit } => format!("may list at most {limit} ids"),
        _ => err.to_string(),
    };
    out.push(FieldError::new(pointer, detail));
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn unknown_field(entity: &Entity, name: &str) -> String {
    if SYSTEM_FIELDS.contains(&name) {
        return format!("`{name}` is set by the server and cannot be written");
    }
    if let Some(f) = entity.field(name)
        && f.ty == FieldType::Inverse
    {
        return format!(
            "`{name}` is read-only: it lists the {} records whose `{}` points here; write that field on them instead",
            f.target.as_deref().unwrap_or("related"),
            f.via.as_deref().unwrap_or("ref")
        );
    }
    let writable = entity
        .fields
        .iter()
        .filter(|f| f.ty != FieldType::Inverse)
        .map(|f| f.name.as_str());
    match did_you_mean(name, writable) {
        Some(best) => format!("unknown field `{name}`; did you mean `{best}`?"),
        None => format!(
            "unknown field `{name}`; {} has: {}",
            entity.name,
            entity
                .fields
                .iter()
                .filter(|f| f.ty != FieldType::Inverse)
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Converts one already schema-checked JSON value into a cell.
pub fn convert(field: &Field, value: &Value) -> Result<Cell, String> {
    if value.is_null() {
        return if field.required && field.has_column() {
            Err("is required and cannot be null".to_string())
        } else {
            Ok(field.kind().null_cell())
        };
    }
    field.kind().convert(field, value)
}
