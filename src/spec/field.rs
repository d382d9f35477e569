//! A field of a model as the loader reads it: its type, its options, its default.
//! (What each type accepts and means lives in `types/`, one file per family.)

pub use super::file_keys::{MAX_THUMB_SIDE, ThumbSize};
use super::walk::Named;
use super::yaml::Pos;

/// The field types a model may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    String,
    Text,
    Integer,
    Number,
    Decimal,
    Boolean,
    Date,
    Datetime,
    Uuid,
    Email,
    Url,
    Enum,
    Json,
    Ref,
    Many,
    Inverse,
    /// A file (or several, with `multiple: true`): its metadata in a JSON column, its
    /// content in object storage.
    File,
}

/// How a field's values are kept in its column, whatever the field's type: the store's
/// dialect turns a storage kind into a column type, a typed NULL and a decoder, so a new
/// field type that stores like an existing one needs nothing from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Storage {
    /// Strings of any kind (string, text, email, url, enum).
    Text,
    Integer,
    /// A double-precision float (`number`).
    Real,
    /// An exact decimal: SQLite keeps integer units of `10^-scale`, PostgreSQL a NUMERIC.
    Decimal {
        precision: u32,
        scale: u32,
    },
    Boolean,
    Date,
    /// An instant in UTC (`datetime`).
    Timestamp,
    /// A UUID (uuid fields, refs and ids).
    Uuid,
    Json,
}

impl FieldType {
    pub const ALL: [(&'static str, FieldType); 17] = [
        ("string", FieldType::String),
        ("text", FieldType::Text),
        ("integer", FieldType::Integer),
        ("number", FieldType::Number),
        ("decimal", FieldType::Decimal),
        ("boolean", FieldType::Boolean),
        ("date", FieldType::Date),
        ("datetime", FieldType::Datetime),
        ("uuid", FieldType::Uuid),
        ("email", FieldType::Email),
        ("url", FieldType::Url),
        ("enum", FieldType::Enum),
        ("json", FieldType::Json),
        ("ref", FieldType::Ref),
        ("many", FieldType::Many),
        ("inverse", FieldType::Inverse),
        ("file", FieldType::File),
    ];

    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|(n, _)| *n).collect()
    }

    pub fn parse(name: &str) -> Option<FieldType> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map(|(n, _)| *n)
            .unwrap_or("string")
    }
}

/// What happens to records that reference a deleted record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDelete {
    Restrict,
    Cascade,
    SetNull,
}

impl OnDelete {
    pub const NAMES: [&'static str; 3] = ["restrict", "cascade", "set_null"];
}

/// A default value: a constant, or a value computed at insert time.
#[derive(Debug, Clone, PartialEq)]
pub enum Default {
    Value(serde_json::Value),
    /// `now` for datetimes, `today` for dates.
    Now,
}

#[derive(Debug, Clone)]
pub struct FieldDef {
    pub name: String,
    pub pos: Pos,
    pub ty: FieldType,
    pub ty_pos: Pos,
    pub required: bool,
    pub unique: bool,
    pub default: Option<(Default, Pos)>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub pattern: Option<String>,
    pub label: Option<String>,
    pub description: Option<String>,
    pub values: Vec<String>,
    /// `to` of a ref, `of` of a many or an inverse.
    pub target: Option<Named>,
    /// `via` of an inverse: the ref field on the target that points back here.
    pub via: Option<Named>,
    pub on_delete: OnDelete,
    pub scale: u32,
    pub precision: u32,
    pub renamed_from: Option<Named>,
    /// The options of a `file` field (`None` for every other type).
    pub file: Option<FileOptions>,
}

/// What a `file` field accepts: one file or several, how large, of which types, and
/// which thumbnails are made of images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOptions {
    /// Several files in insertion order (an array), rather than one (an object).
    pub multiple: bool,
    /// At most this many files in a `multiple` field (`None`: [`DEFAULT_MAX_COUNT`]).
    pub max_count: Option<u32>,
    /// The largest file accepted, in bytes.
    pub max_size: u64,
    /// Accepted MIME types (`application/pdf`) or families (`image/*`), checked against
    /// the sniffed type of the content; empty: any type.
    pub accept: Vec<String>,
    /// The thumbnails made of each image, in the order written.
    pub thumbs: Vec<ThumbSize>,
    /// Where `max_size` was written (checked against `files.max_upload`).
    pub max_size_pos: Option<Pos>,
}

impl std::default::Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            multiple: false,
            max_count: None,
            max_size: DEFAULT_MAX_FILE_SIZE,
            accept: Vec::new(),
            thumbs: Vec::new(),
            max_size_pos: None,
        }
    }
}

impl FileOptions {
    /// How many files the field holds at most (1 unless `multiple`).
    pub fn limit(&self) -> u32 {
        if self.multiple {
            self.max_count.unwrap_or(DEFAULT_MAX_COUNT)
        } else {
            1
        }
    }

    /// Does `accept` admit a file whose sniffed type is `mime`? (An empty `accept`
    /// admits everything.) Families (`image/*`) match by their prefix; parameters
    /// (`; charset=…`) and case are ignored.
    pub fn accepts(&self, mime: &str) -> bool {
        if self.accept.is_empty() {
            return true;
        }
        let mime = mime
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        self.accept.iter().any(|a| match a.strip_suffix("/*") {
            Some(family) => mime
                .strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1),
            None => *a == mime,
        })
    }

    /// The thumbnail of this size, if the field makes one (`100x100`).
    pub fn thumb(&self, size: &str) -> Option<ThumbSize> {
        self.thumbs.iter().copied().find(|t| t.to_string() == size)
    }
}

/// `max_size` when a file field does not say: 10 MiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 10 * 1024 * 1024;
/// `max_count` when a multiple file field does not say.
pub const DEFAULT_MAX_COUNT: u32 = 20;
/// The most files a multiple field may be declared to hold.
pub const MAX_MAX_COUNT: u32 = 1000;

pub const DEFAULT_DECIMAL_SCALE: u32 = 2;
pub const DEFAULT_DECIMAL_PRECISION: u32 = 18;
/// Decimals are exact 64-bit integers of their smallest unit in SQLite, so 18 digits at most.
pub const MAX_DECIMAL_PRECISION: u32 = 18;
