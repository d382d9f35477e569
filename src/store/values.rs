//! How each field type is stored in each dialect, and read back as JSON.
//!
//! | type            | SQLite                         | PostgreSQL        |
//! |-----------------|--------------------------------|-------------------|
//! | id, uuid, ref   | TEXT (lower-case hyphenated)   | UUID              |
//! | string, text, email, url, enum | TEXT            | TEXT              |
//! | integer         | INTEGER                        | BIGINT            |
//! | number          | REAL                           | DOUBLE PRECISION  |
//! | decimal         | INTEGER of the smallest unit   | NUMERIC(p, s)     |
//! | boolean         | INTEGER 0/1                    | BOOLEAN           |
//! | date            | TEXT `YYYY-MM-DD`              | DATE              |
//! | datetime        | TEXT, fixed-width UTC          | TIMESTAMPTZ       |
//! | json            | TEXT                           | JSONB             |
//!
//! Fixed-width texts keep SQLite's ordering equal to PostgreSQL's.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use sea_query::Value as SqlValue;
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use super::Dialect;
use crate::engine::Cell;
use crate::engine::input::format_datetime;
use crate::spec::FieldType;

/// The stored text of a datetime in SQLite.
pub fn sqlite_datetime(dt: &DateTime<Utc>) -> String {
    dt.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// A typed NULL for a field type (PostgreSQL needs the type of every parameter).
fn null(dialect: Dialect, ty: FieldType) -> SqlValue {
    match (dialect, ty) {
        (Dialect::Sqlite, FieldType::Integer | FieldType::Boolean | FieldType::Decimal) => {
            SqlValue::BigInt(None)
        }
        (Dialect::Sqlite, FieldType::Number) => SqlValue::Double(None),
        (Dialect::Sqlite, _) => SqlValue::String(None),
        (Dialect::Postgres, FieldType::Integer) => SqlValue::BigInt(None),
        (Dialect::Postgres, FieldType::Number) => SqlValue::Double(None),
        (Dialect::Postgres, FieldType::Decimal) => SqlValue::Decimal(None),
        (Dialect::Postgres, FieldType::Boolean) => SqlValue::Bool(None),
        (Dialect::Postgres, FieldType::Date) => SqlValue::ChronoDate(None),
        (Dialect::Postgres, FieldType::Datetime) => SqlValue::ChronoDateTimeUtc(None),
        (Dialect::Postgres, FieldType::Uuid | FieldType::Ref) => SqlValue::Uuid(None),
        (Dialect::Postgres, FieldType::Json) => SqlValue::Json(None),
        (Dialect::Postgres, _) => SqlValue::String(None),
    }
}

pub fn uuid_value(dialect: Dialect, id: Uuid) -> SqlValue {
    match dialect {
        Dialect::Sqlite => SqlValue::String(Some(id.hyphenated().to_string())),
        Dialect::Postgres => SqlValue::Uuid(Some(id)),
    }
}

pub fn datetime_value(dialect: Dialect, dt: DateTime<Utc>) -> SqlValue {
    match dialect {
        Dialect::Sqlite => SqlValue::String(Some(sqlite_datetime(&dt))),
        Dialect::Postgres => SqlValue::ChronoDateTimeUtc(Some(dt)),
    }
}

/// Binds a cell as the value of a field.
pub fn cell_value(dialect: Dialect, ty: FieldType, scale: u32, cell: &Cell) -> SqlValue {
    match cell {
        Cell::Null => null(dialect, ty),
        Cell::Bool(b) => match dialect {
            Dialect::Sqlite => SqlValue::BigInt(Some(i64::from(*b))),
            Dialect::Postgres => SqlValue::Bool(Some(*b)),
        },
        Cell::Int(i) => SqlValue::BigInt(Some(*i)),
        Cell::Float(f) => SqlValue::Double(Some(*f)),
        Cell::Text(s) => SqlValue::String(Some(s.clone())),
        Cell::Decimal(d) => match dialect {
            Dialect::Sqlite => {
                let mut scaled = *d;
                scaled.rescale(scale);
                let units = i64::try_from(scaled.mantissa()).unwrap_or(i64::MAX);
                SqlValue::BigInt(Some(units))
            }
            Dialect::Postgres => SqlValue::Decimal(Some(*d)),
        },
        Cell::Date(d) => match dialect {
            Dialect::Sqlite => SqlValue::String(Some(d.format("%Y-%m-%d").to_string())),
            Dialect::Postgres => SqlValue::ChronoDate(Some(*d)),
        },
        Cell::DateTime(dt) => datetime_value(dialect, *dt),
        Cell::Uuid(id) => uuid_value(dialect, *id),
        Cell::Json(v) => match dialect {
            Dialect::Sqlite => SqlValue::String(Some(v.to_string())),
            Dialect::Postgres => SqlValue::Json(Some(Box::new(v.clone()))),
        },
        Cell::Ids(_) => null(dialect, ty),
    }
}

/// The API's text of a datetime stored by SQLite. Trellis stores the fixed-width
/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` ([`sqlite_datetime`]); the API drops trailing
/// groups of zeros in the fraction ([`format_datetime`]). That is done on the text
/// itself, without parsing, since a read does it for every datetime of every row;
/// any other text (written beside Trellis) is parsed.
fn stored_datetime_text(mut s: String) -> Result<String, String> {
    let b = s.as_bytes();
    let canonical = b.len() == 27
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            26 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    let number = |from: usize, to: usize| s[from..to].parse::<u32>().unwrap_or(u32::MAX);
    if canonical
        && i32::try_from(number(0, 4))
            .ok()
            .and_then(|y| NaiveDate::from_ymd_opt(y, number(5, 7), number(8, 10)))
            .is_some()
        && number(11, 13) < 24
        && number(14, 16) < 60
        && number(17, 19) < 60
    {
        if &s[23..26] == "000" {
            let keep = if &s[20..23] == "000" { 19 } else { 23 };
            s.truncate(keep);
            s.push('Z');
        }
        return Ok(s);
    }
    DateTime::parse_from_rfc3339(&s)
        .map(|d| format_datetime(&d.with_timezone(&Utc)))
        .map_err(|e| e.to_string())
}

/// The text of a decimal stored as an integer of its smallest unit (`1250`, scale 2:
/// `12.50`), as `Decimal::to_string` writes it, without building a `Decimal`.
fn units_text(units: i64, scale: u32) -> String {
    if scale > 18 {
        return Decimal::new(units, scale).to_string();
    }
    let magnitude = units.unsigned_abs();
    let unit = 10u64.pow(scale);
    let (whole, fraction) = (magnitude / unit, magnitude % unit);
    let sign = if units < 0 { "-" } else { "" };
    if scale == 0 {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction:0width$}", width = scale as usize)
    }
}

/// Reads one column of a row as the JSON the API returns.
/// Appends `value` to `out` as JSON text.
pub(crate) fn write_value(
    out: &mut Vec<u8>,
    value: &(impl serde::Serialize + ?Sized),
) -> Result<(), sqlx::Error> {
    serde_json::to_writer(out, value).map_err(|err| sqlx::Error::Decode(err.into()))
}

pub trait DecodeJson {
    fn json(&self, index: usize, ty: FieldType, scale: u32) -> Result<Value, sqlx::Error>;
    /// Writes [`DecodeJson::json`] as JSON text.
    fn write_json(
        &self,
        index: usize,
        ty: FieldType,
        scale: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), sqlx::Error> {
        write_value(out, &self.json(index, ty, scale)?)
    }
    fn uuid_text(&self, index: usize) -> Result<String, sqlx::Error>;
    fn datetime_text(&self, index: usize) -> Result<String, sqlx::Error>;
    fn int(&self, index: usize) -> Result<i64, sqlx::Error>;
}

fn decode_err(index: usize, message: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: index.to_string(),
        source: message.into(),
    }
}

impl DecodeJson for SqliteRow {
    fn json(&self, i: usize, ty: FieldType, scale: u32) -> Result<Value, sqlx::Error> {
        Ok(match ty {
            FieldType::Integer => self
                .try_get::<Option<i64>, _>(i)?
                .map(Value::from)
                .unwrap_or(Value::Null),
            FieldType::Number => self
                .try_get::<Option<f64>, _>(i)?
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            FieldType::Decimal => self
                .try_get::<Option<i64>, _>(i)?
                .map(|units| Value::String(units_text(units, scale)))
                .unwrap_or(Value::Null),
            FieldType::Boolean => self
                .try_get::<Option<i64>, _>(i)?
                .map(|v| Value::Bool(v != 0))
                .unwrap_or(Value::Null),
            FieldType::Datetime => match self.try_get::<Option<String>, _>(i)? {
                Some(s) => Value::String(stored_datetime_text(s).map_err(|e| decode_err(i, e))?),
                None => Value::Null,
            },
            FieldType::Json => match self.try_get::<Option<String>, _>(i)? {
                Some(s) => serde_json::from_str(&s).map_err(|e| decode_err(i, e.to_string()))?,
                None => Value::Null,
            },
            _ => self
                .try_get::<Option<String>, _>(i)?
                .map(Value::String)
                .unwrap_or(Value::Null),
        })
    }

    /// Text and integers are written from the row as they are (no `Value` between).
    fn write_json(
        &self,
        i: usize,
        ty: FieldType,
        scale: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), sqlx::Error> {
        match ty {
            FieldType::String
            | FieldType::Text
            | FieldType::Date
            | FieldType::Uuid
            | FieldType::Email
            | FieldType::Url
            | FieldType::Enum
            | FieldType::Ref => match self.try_get::<Option<&str>, _>(i)? {
                Some(s) => write_value(out, s)?,
                None => out.extend_from_slice(b"null"),
            },
            FieldType::Integer => match self.try_get::<Option<i64>, _>(i)? {
                Some(n) => write_value(out, &n)?,
                None => out.extend_from_slice(b"null"),
            },
            _ => write_value(out, &self.json(i, ty, scale)?)?,
        }
        Ok(())
    }

    fn uuid_text(&self, i: usize) -> Result<String, sqlx::Error> {
        self.try_get::<String, _>(i)
    }

    fn datetime_text(&self, i: usize) -> Result<String, sqlx::Error> {
        stored_datetime_text(self.try_get(i)?).map_err(|e| decode_err(i, e))
    }

    fn int(&self, i: usize) -> Result<i64, sqlx::Error> {
        self.try_get::<i64, _>(i)
    }
}

impl DecodeJson for PgRow {
    fn json(&self, i: usize, ty: FieldType, scale: u32) -> Result<Value, sqlx::Error> {
        Ok(match ty {
            FieldType::Integer => self
                .try_get::<Option<i64>, _>(i)?
                .map(Value::from)
                .unwrap_or(Value::Null),
            FieldType::Number => self
                .try_get::<Option<f64>, _>(i)?
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            FieldType::Decimal => self
                .try_get::<Option<Decimal>, _>(i)?
                .map(|mut d| {
                    d.rescale(scale);
                    Value::String(d.to_string())
                })
                .unwrap_or(Value::Null),
            FieldType::Boolean => self
                .try_get::<Option<bool>, _>(i)?
                .map(Value::Bool)
                .unwrap_or(Value::Null),
            FieldType::Date => self
                .try_get::<Option<NaiveDate>, _>(i)?
                .map(|d| Value::String(d.format("%Y-%m-%d").to_string()))
                .unwrap_or(Value::Null),
            FieldType::Datetime => self
                .try_get::<Option<DateTime<Utc>>, _>(i)?
                .map(|d| Value::String(format_datetime(&d)))
                .unwrap_or(Value::Null),
            FieldType::Uuid | FieldType::Ref => self
                .try_get::<Option<Uuid>, _>(i)?
                .map(|u| Value::String(u.hyphenated().to_string()))
                .unwrap_or(Value::Null),
            FieldType::Json => self.try_get::<Option<Value>, _>(i)?.unwrap_or(Value::Null),
            _ => self
                .try_get::<Option<String>, _>(i)?
                .map(Value::String)
                .unwrap_or(Value::Null),
        })
    }

    fn uuid_text(&self, i: usize) -> Result<String, sqlx::Error> {
        Ok(self.try_get::<Uuid, _>(i)?.hyphenated().to_string())
    }

    fn datetime_text(&self, i: usize) -> Result<String, sqlx::Error> {
        Ok(format_datetime(&self.try_get::<DateTime<Utc>, _>(i)?))
    }

    fn int(&self, i: usize) -> Result<i64, sqlx::Error> {
        self.try_get::<i64, _>(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The text shortcut gives exactly what parsing and formatting give.
        #[test]
        fn stored_datetimes_read_as_formatted(
            secs in -62_000_000_000i64..250_000_000_000i64,
            micros in prop_oneof![Just(0u32), Just(123_000), Just(5_000), 0u32..1_000_000],
        ) {
            let dt = DateTime::from_timestamp(secs, micros * 1000).unwrap_or_default();
            let stored = sqlite_datetime(&dt);
            prop_assert_eq!(stored_datetime_text(stored).ok(), Some(format_datetime(&dt)));
        }

        #[test]
        fn units_read_as_decimals(units in any::<i64>(), scale in 0u32..=20) {
            prop_assert_eq!(units_text(units, scale), Decimal::new(units, scale).to_string());
        }
    }

    #[test]
    fn other_datetime_texts_are_parsed() {
        assert_eq!(
            stored_datetime_text("2026-11-27T12:00:00+02:00".into()).ok(),
            Some("2026-11-27T10:00:00Z".to_string())
        );
        assert_eq!(
            stored_datetime_text("2026-02-30T12:00:00.000000Z".into()).ok(),
            None,
            "an impossible date is an error, as before"
        );
        assert!(stored_datetime_text("not a time".into()).is_err());
    }
}
