//! `date` (default `today`) and `datetime` (default `now`).

use serde_json::Value;

use super::{DATE_PATTERN, DATETIME_PATTERN, FieldRules, string_default, string_default_schema};
use crate::spec::diag::Sink;
use crate::spec::field::{Default, FieldDef, Storage};
use crate::spec::yaml::Node;

pub struct Date;
pub struct Datetime;

impl FieldRules for Date {
    fn keys(&self) -> &'static [&'static str] {
        &[]
    }

    fn storage(&self, _precision: u32, _scale: u32) -> Option<Storage> {
        Some(Storage::Date)
    }

    fn check_default(&self, sink: &mut Sink<'_>, field: &FieldDef, node: &Node) -> Option<Default> {
        string_default(
            sink,
            field,
            node,
            Some("today"),
            DATE_PATTERN,
            |s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
            "a date like 2025-01-31, or `today`",
        )
    }

    fn default_schema(&self) -> Option<Value> {
        Some(string_default_schema(DATE_PATTERN, Some("today"), "today"))
    }
}

impl FieldRules for Datetime {
    fn keys(&self) -> &'static [&'static str] {
        &[]
    }

    fn storage(&self, _precision: u32, _scale: u32) -> Option<Storage> {
        Some(Storage::Timestamp)
    }

    fn check_default(&self, sink: &mut Sink<'_>, field: &FieldDef, node: &Node) -> Option<Default> {
        string_default(
            sink,
            field,
            node,
            Some("now"),
            DATETIME_PATTERN,
            |s| chrono::DateTime::parse_from_rfc3339(s).is_ok(),
            "a date and time like 2025-01-31T09:00:00Z, or `now`",
        )
    }

    fn default_schema(&self) -> Option<Value> {
        Some(string_default_schema(DATETIME_PATTERN, Some("now"), "now"))
    }
}
