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

/// The SQL type of a column.
pub fn column_type(dialect: Dialect, ty: FieldType, scale: u32, precision: u32) -> String {
    match dialect {
        Dialect::Sqlite => match ty {
            FieldType::Integer | FieldType::Boolean | FieldType::Decimal => "INTEGER",
            FieldType::Number => "REAL",
            _ => "TEXT",
        }
        .to_string(),
        Dialect::Postgres => match ty {
            FieldType::Integer => "BIGINT".to_string(),
            FieldType::Number => "DOUBLE PRECISION".to_string(),
            FieldType::Decimal => format!("NUMERIC({precision}, {scale})"),
            FieldType::Boolean => "BOOLEAN".to_string(),
            FieldType::Date => "DATE".to_string(),
            FieldType::Datetime => "TIMESTAMPTZ".to_string(),
            FieldType::Uuid | FieldType::Ref => "UUID".to_string(),
            FieldType::Json => "JSONB".to_string(),
            _ => "TEXT".to_string(),
        },
    }
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

/// Reads one column of a row as the JSON the API returns.
pub trait DecodeJson {
    fn json(&self, index: usize, ty: FieldType, scale: u32) -> Result<Value, sqlx::Error>;
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
                .map(|units| Value::String(Decimal::new(units, scale).to_string()))
                .unwrap_or(Value::Null),
            FieldType::Boolean => self
                .try_get::<Option<i64>, _>(i)?
                .map(|v| Value::Bool(v != 0))
                .unwrap_or(Value::Null),
            FieldType::Datetime => match self.try_get::<Option<String>, _>(i)? {
                Some(s) => Value::String(
                    DateTime::parse_from_rfc3339(&s)
                        .map(|d| format_datetime(&d.with_timezone(&Utc)))
                        .map_err(|e| decode_err(i, e.to_string()))?,
                ),
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

    fn uuid_text(&self, i: usize) -> Result<String, sqlx::Error> {
        self.try_get::<String, _>(i)
    }

    fn datetime_text(&self, i: usize) -> Result<String, sqlx::Error> {
        let s: String = self.try_get(i)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|d| format_datetime(&d.with_timezone(&Utc)))
            .map_err(|e| decode_err(i, e.to_string()))
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
