//! `integer`, `number` (a double) and `decimal` (exact, with a scale and a precision).

use std::str::FromStr;

use serde_json::{Value, json};

use super::{Cell, FieldKind, Literal, Reject};
use crate::engine::Field;

pub struct Integer;
pub struct Number;
pub struct Decimal;

/// Values in request bodies and records that are decimals are strings of this form.
pub const DECIMAL_PATTERN: &str = r"^-?[0-9]+(\.[0-9]+)?$";

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

/// `min`/`max` as `minimum`/`maximum`.
fn range(s: &mut Value, field: &Field) {
    if let Some(min) = field.min {
        s["minimum"] = number(min);
    }
    if let Some(max) = field.max {
        s["maximum"] = number(max);
    }
}

fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

fn example(field: &Field) -> Option<String> {
    Some(format!("{} >= 10", field.name))
}

impl FieldKind for Integer {
    fn words(&self, _field: &Field) -> String {
        "a whole number".into()
    }

    fn convert(&self, field: &Field, value: &Value) -> Result<Cell, String> {
        let i = value
            .as_i64()
            .or_else(|| {
                value
                    .as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            })
            .ok_or_else(|| format!("must be {}", self.words(field)))?;
        check_range(field, i as f64)?;
        Ok(Cell::Int(i))
    }

    fn input_schema(&self, field: &Field, _documented: bool) -> Value {
        let mut s = json!({ "type": "integer" });
        range(&mut s, field);
        s
    }

    fn expectation(&self, _field: &Field) -> String {
        "a number".into()
    }

    fn literal(&self, field: &Field, literal: Literal<'_>) -> Result<Cell, Reject> {
        match literal {
            Literal::Int(i) => Ok(Cell::Int(i)),
            Literal::Float(x) => Ok(Cell::Float(x)),
            _ => Err(Reject::NotA(self.expectation(field))),
        }
    }

    fn claim_value(&self, claim: &Value) -> Option<Cell> {
        claim.as_i64().map(Cell::Int)
    }

    fn cursor_value(&self, _scale: u32, v: &Value) -> Option<Cell> {
        Some(Cell::Int(v.as_i64()?))
    }

    fn example_filter(&self, field: &Field) -> Option<String> {
        example(field)
    }
}

impl FieldKind for Number {
    fn words(&self, _field: &Field) -> String {
        "a number".into()
    }

    fn convert(&self, field: &Field, value: &Value) -> Result<Cell, String> {
        let f = value
            .as_f64()
            .ok_or_else(|| format!("must be {}", self.words(field)))?;
        check_range(field, f)?;
        Ok(Cell::Float(f))
    }

    fn input_schema(&self, field: &Field, _documented: bool) -> Value {
        let mut s = json!({ "type": "number" });
        range(&mut s, field);
        s
    }

    fn expectation(&self, _field: &Field) -> String {
        "a number".into()
    }

    fn literal(&self, field: &Field, literal: Literal<'_>) -> Result<Cell, Reject> {
        match literal {
            Literal::Int(i) => Ok(Cell::Float(i as f64)),
            Literal::Float(x) => Ok(Cell::Float(x)),
            _ => Err(Reject::NotA(self.expectation(field))),
        }
    }

    fn claim_value(&self, claim: &Value) -> Option<Cell> {
        claim.as_f64().map(Cell::Float)
    }

    fn cursor_value(&self, _scale: u32, v: &Value) -> Option<Cell> {
        Some(Cell::Float(v.as_f64()?))
    }

    fn example_filter(&self, field: &Field) -> Option<String> {
        example(field)
    }
}

/// Parses an exact decimal from a request, refusing more digits than the field keeps.
pub fn parse_decimal(raw: &str, field: &Field) -> Result<rust_decimal::Decimal, String> {
    use rust_decimal::Decimal;
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

/// A decimal literal of a condition, at the field's scale.
fn decimal_literal(field: &Field, raw: &str) -> Result<Cell, Reject> {
    let invalid = |message: String, hint: Option<&str>| Reject::Invalid {
        message,
        hint: hint.map(str::to_string),
    };
    let d = rust_decimal::Decimal::from_str(raw)
        .map_err(|_| invalid(format!("`{raw}` is not a decimal number"), None))?;
    let mut probe = d.normalize();
    if probe.scale() > field.scale {
        return Err(invalid(
            format!(
                "`{}` keeps {} digits after the decimal point; {raw} has more",
                field.name, field.scale
            ),
            Some("round the value"),
        ));
    }
    probe.rescale(field.scale);
    let limit =
        rust_decimal::Decimal::from_i128_with_scale(10i128.pow(field.precision - field.scale), 0);
    if probe.abs() >= limit {
        return Err(invalid(
            format!("{raw} is too large for `{}`", field.name),
            None,
        ));
    }
    Ok(Cell::Decimal(probe))
}

impl FieldKind for Decimal {
    fn words(&self, _field: &Field) -> String {
        "a decimal number as a string, like \"12.50\"".into()
    }

    fn convert(&self, field: &Field, value: &Value) -> Result<Cell, String> {
        let raw = match value {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            _ => return Err(format!("must be {}", self.words(field))),
        };
        parse_decimal(&raw, field).map(Cell::Decimal)
    }

    fn input_schema(&self, field: &Field, documented: bool) -> Value {
        // One JSON type, the one records answer with: a string, exact (a JSON number
        // would pass through binary floating point in most clients). Ranges are
        // checked exactly by the input conversion. Seed data (YAML fixtures) may
        // also give numbers: see `EntitySchemas::seed_validator`.
        let mut s = json!({
            "type": "string",
            "description": format!("An exact decimal with at most {} digits after the point, as a string (\"12.50\").", field.scale)
        });
        if documented {
            s["pattern"] = json!(DECIMAL_PATTERN);
        }
        s
    }

    fn record_schema(&self, field: &Field) -> Option<Value> {
        Some(json!({
            "type": "string",
            "pattern": DECIMAL_PATTERN,
            "description": format!("Exact decimal with {} digits after the point.", field.scale)
        }))
    }

    fn expectation(&self, _field: &Field) -> String {
        "a number".into()
    }

    fn literal(&self, field: &Field, literal: Literal<'_>) -> Result<Cell, Reject> {
        match literal {
            Literal::Str(s) => decimal_literal(field, s),
            Literal::Int(i) => decimal_literal(field, &i.to_string()),
            Literal::Float(x) => {
                let d = rust_decimal::Decimal::from_f64_retain(x)
                    .map(|d| d.normalize().to_string())
                    .unwrap_or_default();
                decimal_literal(field, &d)
            }
            _ => Err(Reject::NotA(self.expectation(field))),
        }
    }

    fn cursor_value(&self, scale: u32, v: &Value) -> Option<Cell> {
        let mut d = rust_decimal::Decimal::from_str(v.as_str()?).ok()?;
        d.rescale(scale);
        Some(Cell::Decimal(d))
    }

    fn example_filter(&self, field: &Field) -> Option<String> {
        example(field)
    }
}
