//! `enum`: one of a fixed list of words.

use serde_json::{Value, json};

use super::{Cell, FieldKind, Literal, Reject, text};
use crate::engine::Field;
use crate::spec::diag::did_you_mean;

pub struct Enum;

impl FieldKind for Enum {
    fn words(&self, field: &Field) -> String {
        format!("one of: {}", field.values.join(", "))
    }

    fn convert(&self, field: &Field, value: &Value) -> Result<Cell, String> {
        let s = text(self, field, value)?;
        if field.values.iter().any(|v| v == s) {
            Ok(Cell::Text(s.to_string()))
        } else {
            Err(format!("must be one of: {}", field.values.join(", ")))
        }
    }

    fn input_schema(&self, field: &Field, _documented: bool) -> Value {
        json!({ "type": "string", "enum": field.values })
    }

    fn ordered(&self) -> bool {
        false
    }

    fn expectation(&self, field: &Field) -> String {
        format!("one of: {}", field.values.join(", "))
    }

    fn literal(&self, field: &Field, literal: Literal<'_>) -> Result<Cell, Reject> {
        let (Literal::Word(v) | Literal::Str(v)) = literal else {
            return Err(Reject::NotA(self.expectation(field)));
        };
        if field.values.iter().any(|x| x == v) {
            return Ok(Cell::Text(v.to_string()));
        }
        Err(Reject::Invalid {
            message: format!("`{v}` is not a value of `{}`", field.name),
            hint: Some(
                match did_you_mean(v, field.values.iter().map(String::as_str)) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!("the values are: {}", field.values.join(", ")),
                },
            ),
        })
    }

    fn claim_value(&self, claim: &Value) -> Option<Cell> {
        claim.as_str().map(|s| Cell::Text(s.to_string()))
    }

    fn cursor_value(&self, _scale: u32, v: &Value) -> Option<Cell> {
        Some(Cell::Text(v.as_str()?.to_string()))
    }

    fn example_filter(&self, field: &Field) -> Option<String> {
        field
            .values
            .first()
            .map(|v| format!("{} = '{v}'", field.name))
    }
}
