//! Field types: one definition per type family, each behind [`FieldKind`], and
//! [`kind`], the registry from a model's [`FieldType`] to its definition.
//!
//! A definition answers everything the engine asks about a type: how a request body's
//! JSON becomes a [`Cell`] (and what to say when it does not), the JSON Schema of its
//! values in the API, how a literal in a condition or a claim is typed, which operators
//! apply, and how a value the API returned comes back for a cursor. What the model file
//! may say about a field of the type (keys, option checks, defaults, the editor schema,
//! the storage kind) is the spec's part: [`crate::spec::types`], one file per family
//! with the same names, reached from here through [`FieldType`].

mod boolean;
mod choice;
pub mod file;
mod json;
mod numeric;
pub mod relation;
mod temporal;
mod text;
mod uuid;

pub use numeric::{DECIMAL_PATTERN, parse_decimal};
pub use temporal::truncate_micros;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::Field;
use crate::spec::FieldType;

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
    Uuid(::uuid::Uuid),
    Json(Value),
    /// The ids of a `many` field.
    Ids(Vec<::uuid::Uuid>),
}

/// A literal written in a condition (`filter=`, `where:`), before it meets a field.
#[derive(Debug, Clone, Copy)]
pub enum Literal<'a> {
    /// A quoted text: `'open'`.
    Str(&'a str),
    /// A bare word: `open`.
    Word(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
}

/// Why a literal is not a value of a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    /// Not of the field's type: "… is not {0}".
    NotA(String),
    /// Of the type, but not a value the field allows.
    Invalid {
        message: String,
        hint: Option<String>,
    },
}

/// Everything the engine knows about one field type. `field` is always a field of the
/// implementing type.
pub trait FieldKind: Sync {
    // --- request bodies ---

    /// What a value must be, for input errors ("must be {words}").
    fn words(&self, field: &Field) -> String;

    /// A non-null JSON value of a request body (already checked against the JSON
    /// Schema) or of a model default, as a cell; `Err` holds the detail of the problem.
    fn convert(&self, field: &Field, value: &Value) -> Result<Cell, String>;

    /// The cell of a JSON `null` in an optional field.
    fn null_cell(&self) -> Cell {
        Cell::Null
    }

    // --- JSON Schema of values in the API ---

    /// The schema of a value in a request body, without the field's title and
    /// description and without `null`. `documented` adds keywords that the validator
    /// leaves to [`FieldKind::convert`] (patterns in Rust regex syntax, formats).
    fn input_schema(&self, field: &Field, documented: bool) -> Value;

    /// The schema of a value in a returned record, when it differs from the documented
    /// input schema.
    fn record_schema(&self, _field: &Field) -> Option<Value> {
        None
    }

    /// A relation: the schema of its expansion, under the record's `expand` member.
    fn expanded_schema(&self, _field: &Field) -> Option<Value> {
        None
    }

    /// Does an optional field's schema admit `null`? (No for values that are never
    /// absent: lists, JSON.)
    fn nullable(&self) -> bool {
        true
    }

    // --- filters, sorting, aggregates ---

    /// May conditions compare it, and lists sort by it?
    fn comparable(&self) -> bool {
        true
    }

    /// Do `<`, `<=`, `>`, `>=` apply?
    fn ordered(&self) -> bool {
        true
    }

    /// Is a value a record identity (`record.<field>` compares these)?
    fn is_id(&self) -> bool {
        false
    }

    /// A point in time: conditions compare it with `now`, aggregates bucket it by day,
    /// week, month or year and take its min and max.
    fn temporal(&self) -> bool {
        false
    }

    /// Is it offered for grouping in the OpenAPI document of aggregates?
    fn groupable(&self) -> bool {
        true
    }

    /// The value of `now` (a default, a condition's `now`) for a point in time.
    fn at(&self, now: DateTime<Utc>) -> Cell {
        Cell::DateTime(now)
    }

    /// What a condition must compare it with (for errors).
    fn expectation(&self, field: &Field) -> String;

    /// A literal of a condition as a value of the field.
    fn literal(&self, field: &Field, literal: Literal<'_>) -> Result<Cell, Reject> {
        let _ = literal;
        Err(Reject::NotA(self.expectation(field)))
    }

    /// A caller's claim (`user.<name>`) as a value of the field, if it fits.
    fn claim_value(&self, _claim: &Value) -> Option<Cell> {
        None
    }

    /// A non-null value as the API returns it, back into a cell (for cursors); `scale`
    /// is the field's decimal scale.
    fn cursor_value(&self, scale: u32, v: &Value) -> Option<Cell>;

    /// An example condition on the field for the OpenAPI document.
    fn example_filter(&self, _field: &Field) -> Option<String> {
        None
    }
}

/// The definition of a field type. The match is exhaustive: a new [`FieldType`] does
/// not compile until it has one.
pub fn kind(ty: FieldType) -> &'static dyn FieldKind {
    match ty {
        FieldType::String => &text::Text { long: false },
        FieldType::Text => &text::Text { long: true },
        FieldType::Email => &text::Email,
        FieldType::Url => &text::Url,
        FieldType::Integer => &numeric::Integer,
        FieldType::Number => &numeric::Number,
        FieldType::Decimal => &numeric::Decimal,
        FieldType::Boolean => &boolean::Boolean,
        FieldType::Date => &temporal::Date,
        FieldType::Datetime => &temporal::Datetime,
        FieldType::Uuid => &uuid::Uuid,
        FieldType::Enum => &choice::Enum,
        FieldType::Json => &json::Json,
        FieldType::Ref => &relation::Ref,
        FieldType::Many => &relation::Many,
        FieldType::Inverse => &relation::Inverse,
        FieldType::File => &file::File,
    }
}

impl Field {
    /// The definition of the field's type.
    pub fn kind(&self) -> &'static dyn FieldKind {
        kind(self.ty)
    }
}

// --- helpers the definitions share ---

/// A request value that must be a string without NUL.
fn text<'v>(kind: &dyn FieldKind, field: &Field, value: &'v Value) -> Result<&'v str, String> {
    let s = value
        .as_str()
        .ok_or_else(|| format!("must be {}", kind.words(field)))?;
    if s.contains('\0') {
        return Err("must not contain the NUL character (\\u0000)".to_string());
    }
    Ok(s)
}

/// `an organization`, `a project`
pub fn a_or_an(noun: &str) -> String {
    // By sound, not letter: "a user", "a unit", "a one-off", "an hour".
    let lower = noun.to_ascii_lowercase();
    let vowel_letter = lower.starts_with(['a', 'e', 'i', 'o', 'u']);
    let consonant_sound = [
        "uni", "use", "usa", "usu", "uti", "ure", "eu", "one", "once",
    ]
    .iter()
    .any(|p| lower.starts_with(p));
    let silent_h = ["hour", "honest", "honor", "honour", "heir"]
        .iter()
        .any(|p| lower.starts_with(p));
    if (vowel_letter && !consonant_sound) || silent_h {
        format!("an {noun}")
    } else {
        format!("a {noun}")
    }
}

/// Adds the field's label and description to a schema.
pub(crate) fn describe(s: &mut Value, field: &Field) {
    if let Some(obj) = s.as_object_mut() {
        if let Some(label) = &field.label {
            obj.insert("title".into(), json!(label));
        }
        if let Some(d) = &field.description {
            obj.insert("description".into(), json!(d));
        }
    }
}

/// Adds `null` to a schema's types.
pub(crate) fn nullable(s: &mut Value) {
    let Some(obj) = s.as_object_mut() else {
        return;
    };
    match obj.get("type").cloned() {
        Some(Value::String(t)) if t != "null" => {
            obj.insert("type".into(), json!([t, "null"]));
        }
        Some(Value::Array(mut ts)) if !ts.contains(&json!("null")) => {
            ts.push(json!("null"));
            obj.insert("type".into(), Value::Array(ts));
        }
        _ => {}
    }
    if let Some(Value::Array(values)) = obj.get_mut("enum")
        && !values.contains(&Value::Null)
    {
        values.push(Value::Null);
    }
}

/// A schema of one JSON type with the format `format` when documented.
fn string_with_format(format: &str, documented: bool) -> Value {
    let mut s = json!({ "type": "string" });
    if documented {
        s["format"] = json!(format);
    }
    s
}

#[cfg(test)]
mod tests;
