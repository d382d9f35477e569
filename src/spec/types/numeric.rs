//! `integer`, `number` and `decimal` (`scale` digits after the point, `precision` in all).

use serde_json::{Value, json};

use super::{
    DECIMAL_PATTERN, FieldRules, Keys, Limits, bad_default, default_doc, default_in_range, matches,
    parse_limits, range_keys,
};
use crate::spec::diag::Sink;
use crate::spec::field::{Default, FieldDef, MAX_DECIMAL_PRECISION, Storage};
use crate::spec::walk::{Named, get, whole_number};
use crate::spec::yaml::{self, Node};

pub struct Integer;
pub struct Number;
pub struct Decimal;

/// A number default (a decimal may also be written as a string).
fn number_default(
    sink: &mut Sink<'_>,
    field: &FieldDef,
    node: &Node,
    strings: bool,
) -> Option<Default> {
    match &node.value {
        yaml::Value::Int(_) | yaml::Value::Float(_) => {
            let v = match &node.value {
                yaml::Value::Int(i) => *i as f64,
                yaml::Value::Float(f) => *f,
                _ => 0.0,
            };
            default_in_range(sink, field, node, v);
            Some(Default::Value(node.to_json()))
        }
        yaml::Value::Str(s) if strings && matches(DECIMAL_PATTERN, s) => match s.parse::<f64>() {
            Ok(v) => {
                default_in_range(sink, field, node, v);
                Some(Default::Value(serde_json::Value::String(s.clone())))
            }
            Err(_) => bad_default(sink, field, node, "a number"),
        },
        _ if strings => bad_default(
            sink,
            field,
            node,
            "a number, or a decimal as text like \"12.50\"",
        ),
        _ => bad_default(sink, field, node, "a number"),
    }
}

impl FieldRules for Integer {
    fn keys(&self) -> &'static [&'static str] {
        &["min", "max"]
    }

    fn storage(&self, _precision: u32, _scale: u32) -> Option<Storage> {
        Some(Storage::Integer)
    }

    fn parse_options(&self, sink: &mut Sink<'_>, _name: &Named, map: &Keys, field: &mut FieldDef) {
        parse_limits(sink, map, field, Limits::Whole);
    }

    fn check_default(&self, sink: &mut Sink<'_>, field: &FieldDef, node: &Node) -> Option<Default> {
        match &node.value {
            yaml::Value::Int(i) => {
                default_in_range(sink, field, node, *i as f64);
                Some(Default::Value((*i).into()))
            }
            _ => bad_default(sink, field, node, "a whole number"),
        }
    }

    fn default_schema(&self) -> Option<Value> {
        Some(default_doc(json!({ "type": "integer" }), "0"))
    }

    fn editor_keys(&self) -> Value {
        json!({
            "min": { "type": "integer", "description": "The smallest value allowed (a whole number); a smaller one is refused with a 422." },
            "max": { "type": "integer", "description": "The largest value allowed (a whole number); a larger one is refused with a 422." }
        })
    }

    fn numeric(&self) -> bool {
        true
    }
}

impl FieldRules for Number {
    fn keys(&self) -> &'static [&'static str] {
        &["min", "max"]
    }

    fn storage(&self, _precision: u32, _scale: u32) -> Option<Storage> {
        Some(Storage::Real)
    }

    fn parse_options(&self, sink: &mut Sink<'_>, _name: &Named, map: &Keys, field: &mut FieldDef) {
        parse_limits(sink, map, field, Limits::Number);
    }

    fn check_default(&self, sink: &mut Sink<'_>, field: &FieldDef, node: &Node) -> Option<Default> {
        number_default(sink, field, node, false)
    }

    fn default_schema(&self) -> Option<Value> {
        Some(default_doc(json!({ "type": "number" }), "0.5"))
    }

    fn editor_keys(&self) -> Value {
        range_keys()
    }

    fn numeric(&self) -> bool {
        true
    }
}

impl FieldRules for Decimal {
    fn keys(&self) -> &'static [&'static str] {
        &["min", "max", "scale", "precision"]
    }

    fn storage(&self, precision: u32, scale: u32) -> Option<Storage> {
        Some(Storage::Decimal { precision, scale })
    }

    fn parse_options(&self, sink: &mut Sink<'_>, _name: &Named, map: &Keys, field: &mut FieldDef) {
        parse_limits(sink, map, field, Limits::Number);
        if let Some(node) = get(map, "scale")
            && let Some(v) = whole_number(sink, node, "`scale`")
        {
            if (0..=12).contains(&v) {
                field.scale = v as u32;
            } else {
                sink.error_hint(
                    node.pos,
                    "bad-range",
                    "`scale` (digits after the decimal point) must be between 0 and 12",
                    "money usually has `scale: 2`",
                );
            }
        }
        if let Some(node) = get(map, "precision")
            && let Some(v) = whole_number(sink, node, "`precision`")
        {
            if (1..=i64::from(MAX_DECIMAL_PRECISION)).contains(&v) && v as u32 > field.scale {
                field.precision = v as u32;
            } else {
                sink.error_hint(
                    node.pos,
                    "bad-range",
                    format!(
                        "`precision` (total digits) must be between the scale + 1 and {MAX_DECIMAL_PRECISION}"
                    ),
                    "leave it out to get 18 digits",
                );
            }
        }
    }

    fn check_default(&self, sink: &mut Sink<'_>, field: &FieldDef, node: &Node) -> Option<Default> {
        number_default(sink, field, node, true)
    }

    fn default_schema(&self) -> Option<Value> {
        Some(default_doc(
            json!({ "anyOf": [ { "type": "number" }, { "type": "string", "pattern": DECIMAL_PATTERN } ] }),
            "\"0.00\"",
        ))
    }

    fn editor_keys(&self) -> Value {
        let mut r = range_keys();
        if let Some(o) = r.as_object_mut() {
            o.insert("scale".into(), json!({ "type": "integer", "minimum": 0, "maximum": 12, "description": "Digits after the decimal point, 0 to 12 (default 2: cents)." }));
            o.insert("precision".into(), json!({ "type": "integer", "minimum": 1, "maximum": 18, "description": "Digits in all, before and after the point: more than `scale`, at most 18 (default 18)." }));
        }
        r
    }

    fn numeric(&self) -> bool {
        true
    }
}
