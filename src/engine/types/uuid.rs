//! `uuid`: an identity that is not a link (the ids of other systems).

use serde_json::Value;

use super::{Cell, FieldKind, Literal, Reject, string_with_format, text};
use crate::engine::Field;

pub struct Uuid;

/// A UUID from a request body; `words` is what the field's type expects.
pub(super) fn convert_uuid(
    value: &Value,
    field: &Field,
    kind: &dyn FieldKind,
) -> Result<Cell, String> {
    ::uuid::Uuid::parse_str(text(kind, field, value)?)
        .map(Cell::Uuid)
        .map_err(|_| format!("must be {}", kind.words(field)))
}

/// A UUID literal of a condition.
pub(super) fn uuid_literal(
    field: &Field,
    literal: Literal<'_>,
    kind: &dyn FieldKind,
) -> Result<Cell, Reject> {
    match literal {
        Literal::Str(s) => ::uuid::Uuid::parse_str(s)
            .map(Cell::Uuid)
            .map_err(|_| Reject::NotA("an id (a UUID in quotes)".into())),
        _ => Err(Reject::NotA(kind.expectation(field))),
    }
}

pub(super) fn uuid_claim(claim: &Value) -> Option<Cell> {
    ::uuid::Uuid::parse_str(claim.as_str()?)
        .ok()
        .map(Cell::Uuid)
}

pub(super) fn uuid_output(v: &Value) -> Option<Cell> {
    Some(Cell::Uuid(::uuid::Uuid::parse_str(v.as_str()?).ok()?))
}

impl FieldKind for Uuid {
    fn words(&self, _field: &Field) -> String {
        "a UUID string".into()
    }

    fn convert(&self, field: &Field, value: &Value) -> Result<Cell, String> {
        convert_uuid(value, field, self)
    }

    fn input_schema(&self, _field: &Field, documented: bool) -> Value {
        string_with_format("uuid", documented)
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
