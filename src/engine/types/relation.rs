//! `ref` (a link to one record, a UUID column), `many` (links kept in a link table) and
//! `inverse` (the records whose ref points here; read-only, no storage of its own).

use serde_json::{Value, json};
use uuid::Uuid;

use super::uuid::{convert_uuid, uuid_claim, uuid_literal, uuid_output};
use super::{Cell, FieldKind, Literal, Reject, a_or_an, describe, string_with_format};
use crate::engine::Field;

pub struct Ref;
pub struct Many;
pub struct Inverse;

/// At most this many related records are embedded per parent for `many` and
/// `inverse` expansions.
pub const EXPAND_CAP: usize = 100;

fn target(field: &Field) -> &str {
    field.target.as_deref().unwrap_or("related")
}

/// The schema of a reference to another entity's record.
fn component(entity: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{}", crate::engine::pascal_case(entity)) })
}

impl FieldKind for Ref {
    fn words(&self, field: &Field) -> String {
        format!(
            "the id of {} record (a UUID string)",
            a_or_an(target(field))
        )
    }

    fn convert(&self, field: &Field, value: &Value) -> Result<Cell, String> {
        convert_uuid(value, field, self)
    }

    fn input_schema(&self, _field: &Field, documented: bool) -> Value {
        string_with_format("uuid", documented)
    }

    fn record_schema(&self, field: &Field) -> Option<Value> {
        let target = field.target.as_deref().unwrap_or_default();
        let mut s = json!({
            "type": "string",
            "format": "uuid",
            "description": format!(
                "The id of the {target}, always (with `expand={0}`, the {target} itself is in `expand.{0}`).",
                field.name
            )
        });
        describe(&mut s, field);
        Some(s)
    }

    fn expanded_schema(&self, field: &Field) -> Option<Value> {
        let target = field.target.as_deref().unwrap_or_default();
        Some(json!({
            "anyOf": [component(target), { "type": "null" }],
            "description": format!(
                "With `expand={}`: the {target} `{}` refers to; null when there is none or the caller may not read it.",
                field.name, field.name
            )
        }))
    }

    fn ordered(&self) -> bool {
        false
    }

    fn is_id(&self) -> bool {
        true
    }

    fn expectation(&self, _field: &Field) -> String {
        "an id (a UUID in quotes)".into()
    }

    fn literal(&self, field: &Field, literal: Literal<'_>) -> Result<Cell, Reject> {
        uuid_literal(field, literal, self)
    }

    fn claim_value(&self, claim: &Value) -> Option<Cell> {
        uuid_claim(claim)
    }

    fn cursor_value(&self, _scale: u32, v: &Value) -> Option<Cell> {
        uuid_output(v)
    }
}

impl FieldKind for Many {
    fn words(&self, field: &Field) -> String {
        format!("a list of {} ids", target(field))
    }

    fn convert(&self, field: &Field, value: &Value) -> Result<Cell, String> {
        let items = value
            .as_array()
            .ok_or_else(|| format!("must be {}", self.words(field)))?;
        let mut ids = Vec::with_capacity(items.len());
        for item in items {
            let id = item
                .as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| {
                    format!(
                        "each entry must be the id of {} record (a UUID string)",
                        a_or_an(target(field))
                    )
                })?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(Cell::Ids(ids))
    }

    fn input_schema(&self, _field: &Field, documented: bool) -> Value {
        let item = string_with_format("uuid", documented);
        json!({ "type": "array", "items": item, "maxItems": 1000 })
    }

    fn record_schema(&self, field: &Field) -> Option<Value> {
        let target = field.target.as_deref().unwrap_or_default();
        let mut s = json!({
            "type": "array",
            "items": { "type": "string", "format": "uuid" },
            "description": format!(
                "The ids of the linked {target} records, always (with `expand={0}`, the records themselves are in `expand.{0}`).",
                field.name
            )
        });
        describe(&mut s, field);
        Some(s)
    }

    fn expanded_schema(&self, field: &Field) -> Option<Value> {
        let target = field.target.as_deref().unwrap_or_default();
        Some(json!({
            "type": "array",
            "items": component(target),
            "description": format!(
                "With `expand={}`: the linked {target} records the caller may read (at most {EXPAND_CAP}, the first by id).",
                field.name
            )
        }))
    }

    fn nullable(&self) -> bool {
        false
    }

    fn comparable(&self) -> bool {
        false
    }

    fn expectation(&self, _field: &Field) -> String {
        "nothing".into()
    }

    fn cursor_value(&self, _scale: u32, _v: &Value) -> Option<Cell> {
        None
    }
}

impl FieldKind for Inverse {
    fn words(&self, _field: &Field) -> String {
        "JSON".into()
    }

    fn convert(&self, field: &Field, _value: &Value) -> Result<Cell, String> {
        Err(format!(
            "`{}` is read-only; write `{}` on the {} records instead",
            field.name,
            field.via.as_deref().unwrap_or("ref"),
            target(field)
        ))
    }

    fn input_schema(&self, _field: &Field, _documented: bool) -> Value {
        json!({})
    }

    fn expanded_schema(&self, field: &Field) -> Option<Value> {
        let target = field.target.as_deref().unwrap_or_default();
        Some(json!({
            "type": "array",
            "items": component(target),
            "description": format!(
                "With `expand={}`: the {target} records whose `{}` is this record and the caller may read (at most {}, the first by id).",
                field.name,
                field.via.as_deref().unwrap_or_default(),
                EXPAND_CAP
            )
        }))
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
        "nothing".into()
    }

    fn cursor_value(&self, _scale: u32, _v: &Value) -> Option<Cell> {
        None
    }
}
