//! Values between the API and the database: cells bound as parameters, and columns
//! read back as JSON. What differs between the dialects (the column type, the bound
//! form and the way a value comes back of each [`Storage`] kind) is answered by
//! [`Dialect`]; here the decoders are written once, over [`Columns`], the primitive
//! getters both row types offer.
//!
//! | storage         | SQLite                         | PostgreSQL        |
//! |-----------------|--------------------------------|-------------------|
//! | uuid (ids, refs)| TEXT (lower-case hyphenated)   | UUID              |
//! | text            | TEXT                           | TEXT              |
//! | integer         | INTEGER                        | BIGINT            |
//! | real            | REAL                           | DOUBLE PRECISION  |
//! | decimal         | INTEGER of the smallest unit   | NUMERIC(p, s)     |
//! | boolean         | INTEGER 0/1                    | BOOLEAN           |
//! | date            | TEXT `YYYY-MM-DD`              | DATE              |
//! | timestamp       | TEXT, fixed-width UTC          | TIMESTAMPTZ       |
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
use super::dialect::Kept;
use crate::engine::Cell;
use crate::engine::input::format_datetime;
use crate::spec::{FieldType, Storage};

/// How a value of type `ty` is bound and read (`many` and `inverse` values have no
/// column; they bind as text NULLs). Only column types need a decimal's precision.
pub(crate) fn storage(ty: FieldType, scale: u32) -> Storage {
    ty.storage(0, scale).unwrap_or(Storage::Text)
}

/// Binds a cell as the value of a field of type `ty` ([`Dialect::value`]).
pub fn cell_value(dialect: Dialect, ty: FieldType, scale: u32, cell: &Cell) -> SqlValue {
    dialect.value(storage(ty, scale), cell)
}

/// The API's text of a datetime stored by SQLite. Trellis stores the fixed-width
/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` ([`super::dialect::sqlite_datetime`]); the API drops trailing
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

/// Appends `value` to `out` as JSON text.
pub(crate) fn write_value(
    out: &mut Vec<u8>,
    value: &(impl serde::Serialize + ?Sized),
) -> Result<(), sqlx::Error> {
    serde_json::to_writer(out, value).map_err(|err| sqlx::Error::Decode(err.into()))
}

fn decode_err(index: usize, message: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: index.to_string(),
        source: message.into(),
    }
}

/// A value a dialect does not keep that way was asked for (a bug in [`Dialect::kept`]).
fn not_kept(index: usize, what: &str) -> sqlx::Error {
    decode_err(index, format!("this database does not keep {what} values"))
}

/// The primitive getters a row offers to the decoders: one per way a dialect keeps
/// values ([`Kept`]). A row type implements those its dialect uses.
pub trait Columns {
    /// The dialect whose rows these are.
    const DIALECT: Dialect;
    fn text(&self, i: usize) -> Result<Option<&str>, sqlx::Error>;
    fn integer(&self, i: usize) -> Result<Option<i64>, sqlx::Error>;
    fn real(&self, i: usize) -> Result<Option<f64>, sqlx::Error>;
    fn boolean(&self, i: usize) -> Result<Option<bool>, sqlx::Error> {
        Err(not_kept(i, "boolean"))
    }
    fn numeric(&self, i: usize) -> Result<Option<Decimal>, sqlx::Error> {
        Err(not_kept(i, "numeric"))
    }
    fn date(&self, i: usize) -> Result<Option<NaiveDate>, sqlx::Error> {
        Err(not_kept(i, "date"))
    }
    fn timestamp(&self, i: usize) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        Err(not_kept(i, "timestamp"))
    }
    fn uuid(&self, i: usize) -> Result<Option<Uuid>, sqlx::Error> {
        Err(not_kept(i, "uuid"))
    }
    fn json_value(&self, i: usize) -> Result<Option<Value>, sqlx::Error> {
        Err(not_kept(i, "json"))
    }
}

impl Columns for SqliteRow {
    const DIALECT: Dialect = Dialect::Sqlite;
    fn text(&self, i: usize) -> Result<Option<&str>, sqlx::Error> {
        self.try_get(i)
    }
    fn integer(&self, i: usize) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(i)
    }
    fn real(&self, i: usize) -> Result<Option<f64>, sqlx::Error> {
        self.try_get(i)
    }
}

impl Columns for PgRow {
    const DIALECT: Dialect = Dialect::Postgres;
    fn text(&self, i: usize) -> Result<Option<&str>, sqlx::Error> {
        self.try_get(i)
    }
    fn integer(&self, i: usize) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(i)
    }
    fn real(&self, i: usize) -> Result<Option<f64>, sqlx::Error> {
        self.try_get(i)
    }
    fn boolean(&self, i: usize) -> Result<Option<bool>, sqlx::Error> {
        self.try_get(i)
    }
    fn numeric(&self, i: usize) -> Result<Option<Decimal>, sqlx::Error> {
        self.try_get(i)
    }
    fn date(&self, i: usize) -> Result<Option<NaiveDate>, sqlx::Error> {
        self.try_get(i)
    }
    fn timestamp(&self, i: usize) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        self.try_get(i)
    }
    fn uuid(&self, i: usize) -> Result<Option<Uuid>, sqlx::Error> {
        self.try_get(i)
    }
    fn json_value(&self, i: usize) -> Result<Option<Value>, sqlx::Error> {
        self.try_get(i)
    }
}

/// Column `i` of `row`, kept as `kept`, as the JSON the API returns.
fn decode<R: Columns + ?Sized>(row: &R, i: usize, kept: Kept) -> Result<Value, sqlx::Error> {
    let text = |s: Option<&str>| s.map(|s| Value::String(s.to_string()));
    Ok(match kept {
        Kept::Text => text(row.text(i)?),
        Kept::Integer => row.integer(i)?.map(Value::from),
        Kept::Real => row
            .real(i)?
            .map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Kept::Units { scale } => row
            .integer(i)?
            .map(|units| Value::String(units_text(units, scale))),
        Kept::Numeric { scale } => row.numeric(i)?.map(|mut d| {
            d.rescale(scale);
            Value::String(d.to_string())
        }),
        Kept::IntegerBool => row.integer(i)?.map(|v| Value::Bool(v != 0)),
        Kept::Bool => row.boolean(i)?.map(Value::Bool),
        Kept::Date => row
            .date(i)?
            .map(|d| Value::String(d.format("%Y-%m-%d").to_string())),
        Kept::TimestampText => match row.text(i)? {
            Some(s) => Some(Value::String(
                stored_datetime_text(s.to_string()).map_err(|e| decode_err(i, e))?,
            )),
            None => None,
        },
        Kept::Timestamp => row
            .timestamp(i)?
            .map(|d| Value::String(format_datetime(&d))),
        Kept::Uuid => row
            .uuid(i)?
            .map(|u| Value::String(u.hyphenated().to_string())),
        Kept::JsonText => match row.text(i)? {
            Some(s) => Some(serde_json::from_str(s).map_err(|e| decode_err(i, e.to_string()))?),
            None => None,
        },
        Kept::Json => row.json_value(i)?,
    }
    .unwrap_or(Value::Null))
}

/// Reads the columns of a row as the JSON the API returns, whatever the dialect.
pub trait DecodeJson {
    /// Column `i`, which keeps values of `storage`.
    fn json(&self, i: usize, storage: Storage) -> Result<Value, sqlx::Error>;
    /// Writes [`DecodeJson::json`] as JSON text; text and integers straight from the
    /// row (no `Value` between).
    fn write_json(&self, i: usize, storage: Storage, out: &mut Vec<u8>) -> Result<(), sqlx::Error>;
    /// An id (never NULL).
    fn uuid_text(&self, i: usize) -> Result<String, sqlx::Error>;
    /// A `created_at` or `updated_at` (never NULL).
    fn datetime_text(&self, i: usize) -> Result<String, sqlx::Error>;
    /// An integer (never NULL).
    fn int(&self, i: usize) -> Result<i64, sqlx::Error>;
}

fn not_null(i: usize, v: Value) -> Result<String, sqlx::Error> {
    match v {
        Value::String(s) => Ok(s),
        _ => Err(sqlx::Error::ColumnDecode {
            index: i.to_string(),
            source: Box::new(sqlx::error::UnexpectedNullError),
        }),
    }
}

impl<R: Columns> DecodeJson for R {
    fn json(&self, i: usize, storage: Storage) -> Result<Value, sqlx::Error> {
        decode(self, i, R::DIALECT.kept(storage))
    }

    fn write_json(&self, i: usize, storage: Storage, out: &mut Vec<u8>) -> Result<(), sqlx::Error> {
        match R::DIALECT.kept(storage) {
            Kept::Text => match self.text(i)? {
                Some(s) => write_value(out, s)?,
                None => out.extend_from_slice(b"null"),
            },
            Kept::Integer => match self.integer(i)? {
                Some(n) => write_value(out, &n)?,
                None => out.extend_from_slice(b"null"),
            },
            kept => write_value(out, &decode(self, i, kept)?)?,
        }
        Ok(())
    }

    fn uuid_text(&self, i: usize) -> Result<String, sqlx::Error> {
        not_null(i, self.json(i, Storage::Uuid)?)
    }

    fn datetime_text(&self, i: usize) -> Result<String, sqlx::Error> {
        not_null(i, self.json(i, Storage::Timestamp)?)
    }

    fn int(&self, i: usize) -> Result<i64, sqlx::Error> {
        self.integer(i)?.ok_or_else(|| sqlx::Error::ColumnDecode {
            index: i.to_string(),
            source: Box::new(sqlx::error::UnexpectedNullError),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::dialect::sqlite_datetime;
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

    /// A row of one dialect, for the decoders: the columns as JSON values.
    struct Fake<const PG: bool>(Vec<Value>);

    impl<const PG: bool> Columns for Fake<PG> {
        const DIALECT: Dialect = if PG {
            Dialect::Postgres
        } else {
            Dialect::Sqlite
        };
        fn text(&self, i: usize) -> Result<Option<&str>, sqlx::Error> {
            Ok(self.0[i].as_str())
        }
        fn integer(&self, i: usize) -> Result<Option<i64>, sqlx::Error> {
            Ok(self.0[i].as_i64())
        }
        fn real(&self, i: usize) -> Result<Option<f64>, sqlx::Error> {
            Ok(self.0[i].as_f64())
        }
        fn boolean(&self, i: usize) -> Result<Option<bool>, sqlx::Error> {
            Ok(self.0[i].as_bool())
        }
        fn numeric(&self, i: usize) -> Result<Option<Decimal>, sqlx::Error> {
            Ok(self.0[i].as_str().and_then(|s| s.parse().ok()))
        }
        fn date(&self, i: usize) -> Result<Option<NaiveDate>, sqlx::Error> {
            Ok(self.0[i].as_str().and_then(|s| s.parse().ok()))
        }
        fn timestamp(&self, i: usize) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
            Ok(self.0[i].as_str().and_then(|s| s.parse().ok()))
        }
        fn uuid(&self, i: usize) -> Result<Option<Uuid>, sqlx::Error> {
            Ok(self.0[i].as_str().and_then(|s| s.parse().ok()))
        }
        fn json_value(&self, i: usize) -> Result<Option<Value>, sqlx::Error> {
            Ok(Some(self.0[i].clone()).filter(|v| !v.is_null()))
        }
    }

    fn written<R: Columns>(row: &R, i: usize, storage: Storage) -> String {
        let mut out = Vec::new();
        row.write_json(i, storage, &mut out).unwrap_or_default();
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn both_dialects_decode_to_the_same_json() {
        use serde_json::json;
        let price = Storage::Decimal {
            precision: 10,
            scale: 2,
        };
        // (storage, as SQLite keeps it, as PostgreSQL hands it back, the API's JSON)
        let cases = [
            (
                Storage::Text,
                json!("a \"b\""),
                json!("a \"b\""),
                json!("a \"b\""),
            ),
            (Storage::Integer, json!(42), json!(42), json!(42)),
            (Storage::Real, json!(1.5), json!(1.5), json!(1.5)),
            (price, json!(1250), json!("12.5"), json!("12.50")),
            (Storage::Boolean, json!(1), json!(true), json!(true)),
            (Storage::Boolean, json!(0), json!(false), json!(false)),
            (
                Storage::Date,
                json!("2026-12-07"),
                json!("2026-12-07"),
                json!("2026-12-07"),
            ),
            (
                Storage::Timestamp,
                json!("2026-12-07T10:00:00.500000Z"),
                json!("2026-12-07T10:00:00.5Z"),
                json!("2026-12-07T10:00:00.500Z"),
            ),
            (
                Storage::Uuid,
                json!("00000000-0000-0000-0000-0000000000a1"),
                json!("00000000-0000-0000-0000-0000000000a1"),
                json!("00000000-0000-0000-0000-0000000000a1"),
            ),
            (
                Storage::Json,
                json!("{\"a\":[1]}"),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (Storage::Json, Value::Null, Value::Null, Value::Null),
            (Storage::Text, Value::Null, Value::Null, Value::Null),
        ];
        for (storage, sqlite, pg, api) in cases {
            let sqlite = Fake::<false>(vec![sqlite]);
            let pg = Fake::<true>(vec![pg]);
            assert_eq!(
                sqlite.json(0, storage).ok(),
                Some(api.clone()),
                "{storage:?}"
            );
            assert_eq!(pg.json(0, storage).ok(), Some(api.clone()), "{storage:?}");
            // Written straight to text, the same JSON.
            assert_eq!(written(&sqlite, 0, storage), api.to_string(), "{storage:?}");
            assert_eq!(written(&pg, 0, storage), api.to_string(), "{storage:?}");
        }
    }

    #[test]
    fn system_columns_are_never_null() {
        let row = Fake::<false>(vec![Value::Null]);
        assert!(row.uuid_text(0).is_err());
        assert!(row.datetime_text(0).is_err());
        assert!(row.int(0).is_err());
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
