//! `boolean`.

use serde_json::{Value, json};

use super::{Cell, FieldKind, Literal, Reject};
use crate::engine::Field;

pub struct Boolean;

impl FieldKind for Boolean {
    fn words(&self, _field: &Field) -> String {
        "true or false".into()
    }

    fn convert(&self, field: &Field, value: &Value) -> Result<Cell, String> {
        value
            .as_bool()
            .map(Cell::Bool)
            .ok_or_else(|| format!("must be {}", self.words(field)))
    }

    fn input_schema(&self, _field: &Field, _documented: bool) -> Value {
        json!({ "type": "boolean" })
    }

    fn ordered(&self) -> bool {
        false
    }

    fn expectation(&self, _field: &Field) -> String {
        "true or false".into()
    }

    fn literal(&self, field: &Field, literal: Literal<'_>) -> Result<Cell, Reject> {
        match literal {
            Literal::Bool(b) => Ok(Cell::Bool(b)),
            _ => Err(Reject::NotA(self.expectation(field))),
        }
    }

    fn claim_value(&self, claim: &Value) -> Option<Cell> {
        claim.as_bool().map(Cell::Bool)
    }

    fn cursor_value(&self, _scale: u32, v: &Value) -> Option<Cell> {
        Some(Cell::Bool(v.as_bool()?))
    }

    fn example_filter(&self, field: &Field) -> Option<String> {
        Some(format!("{} = true", field.name))
    }
}
