//! `date` (a calendar day) and `datetime` (an instant, kept to the microsecond in UTC).

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde_json::Value;

use super::{Cell, FieldKind, Literal, Reject, string_with_format, text};
use crate::engine::Field;

pub struct Date;
pub struct Datetime;

/// Datetimes keep microseconds, the precision both databases store.
pub fn truncate_micros(dt: DateTime<Utc>) -> DateTime<Utc> {
    let micros = dt.timestamp_micros();
    DateTime::from_timestamp_micros(micros).unwrap_or(dt)
}

impl FieldKind for Date {
    fn words(&self, _field: &Field) -> String {
        "a date like \"2025-01-31\"".into()
    }

    fn convert(&self, field: &Field, value: &Value) -> Result<Cell, String> {
        NaiveDate::parse_from_str(text(self, field, value)?, "%Y-%m-%d")
            .map(Cell::Date)
            .map_err(|_| format!("must be {} (a real calendar date)", self.words(field)))
    }

    fn input_schema(&self, _field: &Field, documented: bool) -> Value {
        string_with_format("date", documented)
    }

    fn temporal(&self) -> bool {
        true
    }

    fn at(&self, now: DateTime<Utc>) -> Cell {
        Cell::Date(now.date_naive())
    }

    fn expectation(&self, _field: &Field) -> String {
        "a date like 2025-01-31, or now".into()
    }

    fn literal(&self, field: &Field, literal: Literal<'_>) -> Result<Cell, Reject> {
        match literal {
            Literal::Str(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(Cell::Date)
                .map_err(|_| Reject::NotA("a date like 2025-01-31".into())),
            Literal::Date(d) => Ok(Cell::Date(d)),
            _ => Err(Reject::NotA(self.expectation(field))),
        }
    }

    fn cursor_value(&self, _scale: u32, v: &Value) -> Option<Cell> {
        Some(Cell::Date(
            NaiveDate::parse_from_str(v.as_str()?, "%Y-%m-%d").ok()?,
        ))
    }
}

impl FieldKind for Datetime {
    fn words(&self, _field: &Field) -> String {
        "a date and time like \"2025-01-31T09:00:00Z\"".into()
    }

    fn convert(&self, field: &Field, value: &Value) -> Result<Cell, String> {
        DateTime::parse_from_rfc3339(text(self, field, value)?)
            .map(|dt| Cell::DateTime(truncate_micros(dt.with_timezone(&Utc))))
            .map_err(|_| format!("must be {} (RFC 3339, with a time zone)", self.words(field)))
    }

    fn input_schema(&self, _field: &Field, documented: bool) -> Value {
        string_with_format("date-time", documented)
    }

    fn temporal(&self) -> bool {
        true
    }

    fn expectation(&self, _field: &Field) -> String {
        "a date and time like 2025-01-31T09:00:00Z, a date, or now".into()
    }

    fn literal(&self, field: &Field, literal: Literal<'_>) -> Result<Cell, Reject> {
        match literal {
            Literal::Str(s) => DateTime::parse_from_rfc3339(s)
                .map(|d| Cell::DateTime(d.with_timezone(&Utc)))
                .map_err(|_| Reject::NotA("a date and time like 2025-01-31T09:00:00Z".into())),
            Literal::Date(d) => Ok(Cell::DateTime(d.and_time(NaiveTime::MIN).and_utc())),
            Literal::DateTime(dt) => Ok(Cell::DateTime(dt)),
            _ => Err(Reject::NotA(self.expectation(field))),
        }
    }

    fn cursor_value(&self, _scale: u32, v: &Value) -> Option<Cell> {
        Some(Cell::DateTime(
            DateTime::parse_from_rfc3339(v.as_str()?)
                .ok()?
                .with_timezone(&Utc),
        ))
    }
}
