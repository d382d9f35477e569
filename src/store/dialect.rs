//! Every difference between SQLite and PostgreSQL, in one place.
//!
//! The rest of the store asks [`Dialect`] instead of matching on the database:
//! column types, id and time types, query builders, full-text search, upserts,
//! locking and row decoding. A third database means implementing this type (and
//! its tests), not editing every store file.

/// The SQL dialect of a store's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {}
