//! `json`: any JSON value, kept as it was given (JSON `null` included).

use serde_json::{Value, json};

use super::{Cell, FieldKind};
use crate::engine::Field;

pub struct Json;

/// PostgreSQL cannot store NUL in text or JSONB; neither may SQLite through the API.
fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

impl FieldKind for Json {
    fn words(&self, _field: &Field) -> String {
        "JSON".into()
    }

    fn convert(&self, _field: &Field, value: &Value) -> Result<Cell, String> {
        if contains_nul(value) {
            return Err("must not contain the NUL character (\\u0000)".to_string());
        }
        Ok(Cell::Json(value.clone()))
    }

    fn null_cell(&self) -> Cell {
        Cell::Json(Value::Null)
    }

    fn input_schema(&self, _field: &Field, _documented: bool) -> Value {
        json!({})
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
