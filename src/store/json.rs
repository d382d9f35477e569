//! Records written straight from rows as the JSON the API answers with (the list's
//! hot path: no map per record).

use super::Error;
use super::values::{Columns, DecodeJson, write_value};
use crate::engine::Entity;
use crate::spec::Storage;

/// A page of a list with its records as the JSON array the API answers with.
#[derive(Debug)]
pub struct JsonPage {
    /// A JSON array, written by serde_json (not checked again).
    pub items: Vec<u8>,
    pub next: Option<String>,
    pub total: Option<i64>,
}

/// Writes the record of `row` as a JSON object, without the `hidden` fields: the
/// same JSON as [`record_from_row`] (for an entity without `many` fields), without
/// building the map.
pub(crate) fn write_record<R: DecodeJson>(
    e: &Entity,
    row: &R,
    hidden: &[String],
    out: &mut Vec<u8>,
) -> Result<(), sqlx::Error> {
    let mut first = true;
    let mut key = |out: &mut Vec<u8>, name: &str| -> Result<bool, sqlx::Error> {
        if hidden.iter().any(|h| h == name) {
            return Ok(false);
        }
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        write_value(out, name)?;
        out.push(b':');
        Ok(true)
    };
    out.push(b'{');
    if key(out, "id")? {
        write_value(out, &row.uuid_text(0)?)?;
    }
    if key(out, "created_at")? {
        write_value(out, &row.datetime_text(1)?)?;
    }
    if key(out, "updated_at")? {
        write_value(out, &row.datetime_text(2)?)?;
    }
    if key(out, "version")? {
        write_value(out, &row.int(3)?)?;
    }
    for (col, f) in (4..).zip(e.column_fields()) {
        if key(out, &f.name)? {
            row.write_json(col, f.storage().unwrap_or(Storage::Text), out)?;
        }
    }
    out.push(b'}');
    Ok(())
}

/// Writes column `i` of `row`, a record's JSON built by the database
/// ([`super::json_tree`]), finishing its marked values when `finish` says there are any.
pub(crate) fn write_built<R: Columns>(
    row: &R,
    i: usize,
    finish: bool,
    out: &mut Vec<u8>,
) -> Result<(), sqlx::Error> {
    let text = row.text(i)?.ok_or_else(|| sqlx::Error::ColumnDecode {
        index: i.to_string(),
        source: Box::new(sqlx::error::UnexpectedNullError),
    })?;
    if finish {
        super::json_tree::finish(text, out).map_err(|message| sqlx::Error::ColumnDecode {
            index: i.to_string(),
            source: message.into(),
        })
    } else {
        out.extend_from_slice(text.as_bytes());
        Ok(())
    }
}

/// A page that could not be written as JSON (it cannot happen: every value comes
/// from a JSON value or a string).
pub(crate) fn not_json(err: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Database(sqlx::Error::Decode(Box::new(err)))
}
