//! `integer`, `number` and `decimal` (`scale` digits after the point, `precision` in all).

use serde_json::{Value, json};

use super::{FieldRules, Keys, Limits, bad_default, default_in_range, parse_limits, range_keys};
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
        yaml::Value::Str(s) if strings => match s.parse::<f64>() {
            Ok(v) => {
                default_in_range(sink, field, node, v);
                Some(Default::Value(serde_json::Value::String(s.clone())))
            }
            Err(_) => bad_default(sink, field, node, "a number"),
        },
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

    fn editor_keys(&self) -> Value {
        range_keys()
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

    fn editor_keys(&self) -> Value {
        let mut r = range_keys();
        if let Some(o) = r.as_object_mut() {
            o.insert("scale".into(), json!({ "type": "integer", "minimum": 0, "maximum": 12, "description": "Digits after the decimal point (default 2)." }));
            o.insert("precision".into(), json!({ "type": "integer", "minimum": 1, "maximum": 18, "description": "Total digits (default 18)." }));
        }
        r
    }

    fn numeric(&self) -> bool {
        true
    }
}
