//! Request bodies: validated against the entity's JSON Schema, then converted into
//! typed cells. Every problem is reported at once, one entry per field.

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use jsonschema::error::ValidationErrorKind;
use rust_decimal::Decimal;
use serde_json::Value;
use uuid::Uuid;

use super::{Entity, Field};
use crate::spec::FieldType;
use crate::spec::diag::did_you_mean;
use crate::spec::model::{Default as SpecDefault, SYSTEM_FIELDS};

/// A typed value on its way to the database.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Decimal(Decimal),
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
    Uuid(Uuid),
    Json(Value),
    /// The ids of a `many` field.
    Ids(Vec<Uuid>),
}

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

/// Datetimes keep microseconds, the precision both databases store.
pub fn truncate_micros(dt: DateTime<Utc>) -> DateTime<Utc> {
    let micros = dt.timestamp_micros();
    DateTime::from_timestamp_micros(micros).unwrap_or(dt)
}

pub fn now() -> DateTime<Utc> {
    truncate_micros(Utc::now())
}

/// Validates and converts a request body.
pub fn parse_body(entity: &Entity, body: &Value, mode: Mode) -> Result<Input, Vec<FieldError>> {
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
                match convert(field, value) {
                    Ok(cell) => input.values.push((index, cell)),
                    Err(detail) => errors.push(FieldError::new(pointer, detail)),
                }
            }
            None if mode != Mode::Update => match &field.default {
                Some(SpecDefault::Now) => {
                    let cell = if field.ty == FieldType::Date {
                        Cell::Date(Utc::now().date_naive())
                    } else {
                        Cell::DateTime(now())
                    };
                    input.values.push((index, cell));
                }
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
    match field.ty {
        FieldType::String | FieldType::Text => "text".into(),
        FieldType::Email => "an email address (text)".into(),
        FieldType::Url => "a URL (text)".into(),
        FieldType::Integer => "a whole number".into(),
        FieldType::Number => "a number".into(),
        FieldType::Decimal => "a decimal number, as a string like \"12.50\" or a number".into(),
        FieldType::Boolean => "true or false".into(),
        FieldType::Date => "a date like \"2025-01-31\"".into(),
        FieldType::Datetime => "a date and time like \"2025-01-31T09:00:00Z\"".into(),
        FieldType::Uuid => "a UUID string".into(),
        FieldType::Ref => format!(
            "the id of {} record (a UUID string)",
            a_or_an(field.target.as_deref().unwrap_or("related"))
        ),
        FieldType::Many => format!(
            "a list of {} ids",
            field.target.as_deref().unwrap_or("related")
        ),
        FieldType::Enum => format!("one of: {}", field.values.join(", ")),
        FieldType::Json | FieldType::Inverse => "JSON".into(),
    }
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

/// `an organization`, `a project`
pub fn a_or_an(noun: &str) -> String {
    if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {noun}")
    } else {
        format!("a {noun}")
    }
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
        } else if field.ty == FieldType::Json {
            Ok(Cell::Json(Value::Null))
        } else {
            Ok(Cell::Null)
        };
    }
    let text = || {
        let s = value
            .as_str()
            .ok_or_else(|| format!("must be {}", type_words(field)))?;
        if s.contains('\0') {
            return Err("must not contain the NUL character (\\u0000)".to_string());
        }
        Ok::<&str, String>(s)
    };
    match field.ty {
        FieldType::String | FieldType::Text => {
            let s = text()?;
            check_length(field, s)?;
            if let Some(p) = &field.pattern
                && !p.is_match(s)
            {
                return Err(format!("must match the pattern {}", p.as_str()));
            }
            Ok(Cell::Text(s.to_string()))
        }
        FieldType::Email => {
            let s = text()?.trim();
            check_length(field, s)?;
            let valid = s.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !s.chars().any(char::is_whitespace)
                    && !domain.contains('@')
            });
            if valid {
                Ok(Cell::Text(s.to_string()))
            } else {
                Err("must be an email address like name@example.com".to_string())
            }
        }
        FieldType::Url => {
            let s = text()?.trim();
            check_length(field, s)?;
            let rest = s
                .strip_prefix("https://")
                .or_else(|| s.strip_prefix("http://"));
            match rest {
                Some(r) if !r.is_empty() && !s.chars().any(char::is_whitespace) => {
                    Ok(Cell::Text(s.to_string()))
                }
                _ => Err("must be a web address starting with http:// or https://".to_string()),
            }
        }
        FieldType::Integer => {
            let i = value
                .as_i64()
                .or_else(|| {
                    value
                        .as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                        .map(|f| f as i64)
                })
                .ok_or_else(|| format!("must be {}", type_words(field)))?;
            check_range(field, i as f64)?;
            Ok(Cell::Int(i))
        }
        FieldType::Number => {
            let f = value
                .as_f64()
                .ok_or_else(|| format!("must be {}", type_words(field)))?;
            check_range(field, f)?;
            Ok(Cell::Float(f))
        }
        FieldType::Decimal => {
            let raw = match value {
                Value::String(s) => s.trim().to_string(),
                Value::Number(n) => n.to_string(),
                _ => return Err(format!("must be {}", type_words(field))),
            };
            let d = parse_decimal(&raw, field)?;
            Ok(Cell::Decimal(d))
        }
        FieldType::Boolean => value
            .as_bool()
            .map(Cell::Bool)
            .ok_or_else(|| format!("must be {}", type_words(field))),
        FieldType::Date => NaiveDate::parse_from_str(text()?, "%Y-%m-%d")
            .map(Cell::Date)
            .map_err(|_| format!("must be {} (a real calendar date)", type_words(field))),
        FieldType::Datetime => DateTime::parse_from_rfc3339(text()?)
            .map(|dt| Cell::DateTime(truncate_micros(dt.with_timezone(&Utc))))
            .map_err(|_| format!("must be {} (RFC 3339, with a time zone)", type_words(field))),
        FieldType::Uuid | FieldType::Ref => Uuid::parse_str(text()?)
            .map(Cell::Uuid)
            .map_err(|_| format!("must be {}", type_words(field))),
        FieldType::Enum => {
            let s = text()?;
            if field.values.iter().any(|v| v == s) {
                Ok(Cell::Text(s.to_string()))
            } else {
                Err(format!("must be one of: {}", field.values.join(", ")))
            }
        }
        FieldType::Json => {
            if contains_nul(value) {
                return Err("must not contain the NUL character (\\u0000)".to_string());
            }
            Ok(Cell::Json(value.clone()))
        }
        FieldType::Many => {
            let items = value
                .as_array()
                .ok_or_else(|| format!("must be {}", type_words(field)))?;
            let mut ids = Vec::with_capacity(items.len());
            for item in items {
                let id = item
                    .as_str()
                    .and_then(|s| Uuid::parse_str(s).ok())
                    .ok_or_else(|| {
                        format!(
                            "each entry must be the id of {} record (a UUID string)",
                            a_or_an(field.target.as_deref().unwrap_or("related"))
                        )
                    })?;
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            Ok(Cell::Ids(ids))
        }
        FieldType::Inverse => Err(format!(
            "`{}` is read-only; write `{}` on the {} records instead",
            field.name,
            field.via.as_deref().unwrap_or("ref"),
            field.target.as_deref().unwrap_or("related")
        )),
    }
}

/// PostgreSQL cannot store NUL in text or JSONB; neither may SQLite through the API.
fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

fn check_length(field: &Field, s: &str) -> Result<(), String> {
    let len = s.chars().count() as f64;
    if let Some(min) = field.min
        && len < min
    {
        return Err(format!("must be at least {min} characters"));
    }
    if let Some(max) = field.max
        && len > max
    {
        return Err(format!("must be at most {max} characters"));
    }
    Ok(())
}

fn check_range(field: &Field, v: f64) -> Result<(), String> {
    if let Some(min) = field.min
        && v < min
    {
        return Err(format!("must be at least {min}"));
    }
    if let Some(max) = field.max
        && v > max
    {
        return Err(format!("must be at most {max}"));
    }
    Ok(())
}

/// Parses an exact decimal, refusing more digits than the field keeps.
pub fn parse_decimal(raw: &str, field: &Field) -> Result<Decimal, String> {
    let plain = raw.strip_prefix('-').unwrap_or(raw);
    let well_formed = {
        let mut parts = plain.splitn(2, '.');
        let int = parts.next().unwrap_or("");
        let frac = parts.next();
        !int.is_empty()
            && int.chars().all(|c| c.is_ascii_digit())
            && frac.is_none_or(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()))
    };
    if !well_formed {
        return Err(format!(
            "must be a decimal number like \"12.50\" (digits, an optional point, no exponent), not {raw:?}"
        ));
    }
    let mut d = Decimal::from_str(raw).map_err(|_| "is too large".to_string())?;
    d = d.normalize();
    if d.scale() > field.scale {
        return Err(format!(
            "may have at most {} digit{} after the decimal point",
            field.scale,
            if field.scale == 1 { "" } else { "s" }
        ));
    }
    d.rescale(field.scale);
    let int_digits = field.precision - field.scale;
    let limit = Decimal::from_i128_with_scale(10i128.pow(int_digits), 0);
    if d.abs() >= limit {
        return Err(format!(
            "must have at most {int_digits} digits before the decimal point"
        ));
    }
    if let Some(min) = field.min
        && let Some(m) = Decimal::from_f64_retain(min)
        && d < m
    {
        return Err(format!("must be at least {min}"));
    }
    if let Some(max) = field.max
        && let Some(m) = Decimal::from_f64_retain(max)
        && d > m
    {
        return Err(format!("must be at most {max}"));
    }
    Ok(d)
}
