//! `string`, `text`, `email`, `url`: strings with length limits (and a pattern for
//! string and text).

use serde_json::{Value, json};

use super::{Cell, FieldKind, Literal, Reject, text};
use crate::engine::Field;

/// `string` (`long: false`) and `text` (`long: true`, not offered for grouping).
pub struct Text {
    pub long: bool,
}
pub struct Email;
pub struct Url;

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

/// The schema all text types share; `format` for email and url.
fn schema(field: &Field, documented: bool, format: Option<&str>) -> Value {
    let mut s = json!({ "type": "string" });
    if let Some(min) = field.min {
        s["minLength"] = json!(min as u64);
    }
    if let Some(max) = field.max {
        s["maxLength"] = json!(max as u64);
    }
    if documented {
        if let Some(p) = &field.pattern {
            s["pattern"] = json!(p.as_str());
        }
        if let Some(format) = format {
            s["format"] = json!(format);
        }
    }
    s
}

/// What the text types share in conditions.
macro_rules! textual_conditions {
    () => {
        fn expectation(&self, _field: &Field) -> String {
            "a quoted text".into()
        }

        fn literal(&self, field: &Field, literal: Literal<'_>) -> Result<Cell, Reject> {
            match literal {
                Literal::Str(s) => Ok(Cell::Text(s.to_string())),
                _ => Err(Reject::NotA(self.expectation(field))),
            }
        }

        fn claim_value(&self, claim: &Value) -> Option<Cell> {
            claim.as_str().map(|s| Cell::Text(s.to_string()))
        }

        fn cursor_value(&self, _scale: u32, v: &Value) -> Option<Cell> {
            Some(Cell::Text(v.as_str()?.to_string()))
        }
    };
}

impl FieldKind for Text {
    fn words(&self, _field: &Field) -> String {
        "text".into()
    }

    fn convert(&self, field: &Field, value: &Value) -> Result<Cell, String> {
        let s = text(self, field, value)?;
        check_length(field, s)?;
        if let Some(p) = &field.pattern
            && !p.is_match(s)
        {
            return Err(format!("must match the pattern {}", p.as_str()));
        }
        Ok(Cell::Text(s.to_string()))
    }

    fn input_schema(&self, field: &Field, documented: bool) -> Value {
        schema(field, documented, None)
    }

    fn groupable(&self) -> bool {
        !self.long
    }

    textual_conditions!();
}

impl FieldKind for Email {
    fn words(&self, _field: &Field) -> String {
        "an email address (text)".into()
    }

    fn convert(&self, field: &Field, value: &Value) -> Result<Cell, String> {
        let s = text(self, field, value)?.trim();
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

    fn input_schema(&self, field: &Field, documented: bool) -> Value {
        schema(field, documented, Some("email"))
    }

    textual_conditions!();
}

impl FieldKind for Url {
    fn words(&self, _field: &Field) -> String {
        "a URL (text)".into()
    }

    fn convert(&self, field: &Field, value: &Value) -> Result<Cell, String> {
        let s = text(self, field, value)?.trim();
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

    fn input_schema(&self, field: &Field, documented: bool) -> Value {
        schema(field, documented, Some("uri"))
    }

    textual_conditions!();
}
