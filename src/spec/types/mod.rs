//! Field types as a model file sees them: one definition per type family, each behind
//! [`FieldRules`], and [`rules`], the registry from a [`FieldType`] to its definition.
//!
//! A definition says which keys a field of the type accepts and checks them, checks a
//! `default:`, describes the keys for editors (the model file's JSON Schema) and tells
//! how values are kept in a column ([`Storage`]). What the type means to the API
//! (conversion of request values, value schemas, filter operators) is the engine's
//! part: `engine::types`, one file per family with the same names.

mod boolean;
mod choice;
pub mod file;
mod json;
mod numeric;
mod relation;
mod temporal;
mod text;
mod uuid;

use serde_json::{Value, json};

use super::diag::Sink;
use super::field::{Default, FieldDef, FieldType, Storage};
use super::walk::{Named, get, number, whole_number};
use super::yaml::{Key, Node};

/// The keys of a field mapping, as the loader reads them.
pub type Keys = [(Key, Node)];

/// Everything a model file may say about a field of one type.
pub trait FieldRules: Sync {
    /// The keys a field of this type accepts besides the common ones.
    fn keys(&self) -> &'static [&'static str];

    /// Keys a field of this type must have besides `type` (for the editor schema; the
    /// loader reports them in [`FieldRules::parse_options`]).
    fn required_keys(&self) -> &'static [&'static str] {
        &[]
    }

    /// Does the field take the common keys (`required`, `unique`, `default`, …)? Links
    /// kept outside the entity's row take only `type`, `label` and `description`.
    fn common_keys(&self) -> bool {
        true
    }

    /// For a type that cannot be written as a shorthand (`title: string`): what to
    /// write instead.
    fn shorthand_example(&self) -> Option<&'static str> {
        None
    }

    /// How values are kept in a column (`None`: no column of its own). Decimals pass
    /// their precision and scale.
    fn storage(&self, precision: u32, scale: u32) -> Option<Storage>;

    /// Reads and checks the type's own keys of `map` into `field`.
    fn parse_options(
        &self,
        _sink: &mut Sink<'_>,
        _name: &Named,
        _map: &Keys,
        _field: &mut FieldDef,
    ) {
    }

    /// Checks a `default:` against the field's type and limits (`None`: the type takes
    /// no default, as relations do).
    fn check_default(
        &self,
        _sink: &mut Sink<'_>,
        _field: &FieldDef,
        _node: &Node,
    ) -> Option<Default> {
        None
    }

    /// The editor schema of the type's own keys (`properties` of a JSON Schema).
    fn editor_keys(&self) -> Value {
        json!({})
    }

    /// The editor schema of a `default:` of this type (`None`: the type takes no
    /// default, and `default` is not one of its keys). It says what
    /// [`FieldRules::check_default`] accepts, as far as a JSON Schema can (limits and
    /// enum values are the loader's).
    fn default_schema(&self) -> Option<Value> {
        None
    }

    /// Text that `~` (contains) and `search:` work on.
    fn textual(&self) -> bool {
        false
    }

    /// Numbers that aggregates sum and average.
    fn numeric(&self) -> bool {
        false
    }

    /// May it be listed in `search:`?
    fn searchable(&self) -> bool {
        false
    }

    /// Does it point to records of another entity (`to:`/`of:`), which `expand=` embeds?
    fn links(&self) -> bool {
        false
    }

    /// May it be `unique`?
    fn may_be_unique(&self) -> bool {
        true
    }
}

/// The definition of a field type. The match is exhaustive: a new [`FieldType`] does
/// not compile until it has one.
pub fn rules(ty: FieldType) -> &'static dyn FieldRules {
    match ty {
        FieldType::String | FieldType::Text => &text::Text,
        FieldType::Email => &text::Email,
        FieldType::Url => &text::Url,
        FieldType::Integer => &numeric::Integer,
        FieldType::Number => &numeric::Number,
        FieldType::Decimal => &numeric::Decimal,
        FieldType::Boolean => &boolean::Boolean,
        FieldType::Date => &temporal::Date,
        FieldType::Datetime => &temporal::Datetime,
        FieldType::Uuid => &uuid::Uuid,
        FieldType::Enum => &choice::Enum,
        FieldType::Json => &json::Json,
        FieldType::Ref => &relation::Ref,
        FieldType::Many => &relation::Many,
        FieldType::Inverse => &relation::Inverse,
        FieldType::File => &file::File,
    }
}

impl FieldType {
    /// Everything a model file may say about a field of this type (its keys, option
    /// checks, defaults, editor schema, storage): its definition in `spec/types/`.
    pub fn rules(self) -> &'static dyn FieldRules {
        rules(self)
    }

    /// How values of this type are kept in a column (`None` for `many` and `inverse`,
    /// which have no column of their own). Decimals carry their precision and scale.
    pub fn storage(self, precision: u32, scale: u32) -> Option<Storage> {
        self.rules().storage(precision, scale)
    }

    /// Does the field own a column in its entity's table?
    pub fn has_column(self) -> bool {
        self.storage(0, 0).is_some()
    }

    pub fn is_textual(self) -> bool {
        self.rules().textual()
    }

    pub fn is_numeric(self) -> bool {
        self.rules().numeric()
    }

    /// Does it point to records of another entity (ref, many, inverse)?
    pub fn is_link(self) -> bool {
        self.rules().links()
    }

    /// The keys a field of this type accepts besides the common ones.
    pub(crate) fn specific_keys(self) -> &'static [&'static str] {
        self.rules().keys()
    }
}

// --- helpers the definitions share ---

/// "the default of `x` must be {expected}".
fn bad_default(
    sink: &mut Sink<'_>,
    field: &FieldDef,
    node: &Node,
    expected: &str,
) -> Option<Default> {
    let given = match &node.value {
        super::yaml::Value::Str(s) => format!("`{s}`"),
        other => other.kind_name().to_string(),
    };
    sink.error_hint(
        node.pos,
        "invalid-default",
        format!(
            "the default of `{}` must be {expected}, not {given}",
            field.name,
        ),
        format!(
            "write {expected} (the field's type is {}), or remove the default",
            field.ty.name()
        ),
    );
    None
}

/// The editor schema of a text default (`special`: `now`/`today`) matching `pattern`.
fn string_default_schema(pattern: &str, special: Option<&str>, example: &str) -> Value {
    let text = json!({ "type": "string", "pattern": pattern });
    let schema = match special {
        Some(word) => json!({ "anyOf": [ { "const": word }, text ] }),
        None => text,
    };
    default_doc(schema, example)
}

/// A description of `default:` with an example, for a type's default schema.
fn default_doc(mut schema: Value, example: &str) -> Value {
    if let Some(o) = schema.as_object_mut() {
        o.insert(
            "description".into(),
            json!(format!(
                "The value a new record gets when a create leaves this field out, e.g. `default: {example}`."
            )),
        );
        o.insert(
            "markdownDescription".into(),
            json!(format!(
                "The value a new record gets when a create leaves this field out.\n\n```yaml\ndefault: {example}\n```"
            )),
        );
    }
    schema
}

/// A numeric default within `min`/`max`.
fn default_in_range(sink: &mut Sink<'_>, field: &FieldDef, node: &Node, v: f64) {
    if field.min.is_some_and(|m| v < m) || field.max.is_some_and(|m| v > m) {
        sink.error_hint(
            node.pos,
            "invalid-default",
            format!("the default of `{}` is outside its `min`/`max`", field.name),
            "correct the default or the limits",
        );
    }
}

/// What `min` and `max` measure.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Limits {
    /// A length in characters: a whole number, not negative.
    Length,
    /// A whole number.
    Whole,
    Number,
}

/// Reads `min` and `max` and checks that some value fits between them.
fn parse_limits(sink: &mut Sink<'_>, map: &Keys, field: &mut FieldDef, limits: Limits) {
    let min_node = get(map, "min");
    let max_node = get(map, "max");
    match limits {
        Limits::Length => {
            field.min = min_node
                .and_then(|n| whole_number(sink, n, "`min` (a length)"))
                .map(|v| v as f64);
            field.max = max_node
                .and_then(|n| whole_number(sink, n, "`max` (a length)"))
                .map(|v| v as f64);
            for (v, node) in [(field.min, min_node), (field.max, max_node)] {
                if let (Some(v), Some(node)) = (v, node)
                    && v < 0.0
                {
                    sink.error(node.pos, "bad-range", "a length cannot be negative");
                }
            }
        }
        Limits::Whole => {
            field.min = min_node
                .and_then(|n| whole_number(sink, n, "`min`"))
                .map(|v| v as f64);
            field.max = max_node
                .and_then(|n| whole_number(sink, n, "`max`"))
                .map(|v| v as f64);
        }
        Limits::Number => {
            field.min = min_node.and_then(|n| number(sink, n, "`min`"));
            field.max = max_node.and_then(|n| number(sink, n, "`max`"));
        }
    }
    if let (Some(min), Some(max), Some(node)) = (field.min, field.max, min_node)
        && min > max
    {
        sink.error_hint(
            node.pos,
            "min-greater-than-max",
            format!("`min` ({min}) is greater than `max` ({max}), so no value could be valid"),
            "swap them, or correct one of them",
        );
    }
}

/// `min`/`max` in the editor schema.
fn range_keys() -> Value {
    json!({
        "min": { "type": "number", "description": "The smallest value allowed; a smaller one is refused with a 422." },
        "max": { "type": "number", "description": "The largest value allowed; a larger one is refused with a 422." }
    })
}

/// A date as a default: `2025-01-31`.
const DATE_PATTERN: &str = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$";
/// A date and time as a default (RFC 3339): `2025-01-31T09:00:00Z`.
const DATETIME_PATTERN: &str = "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$";
/// A UUID as a default, in its usual hyphenated form.
const UUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
/// A decimal written as text: `12.50`, `-3` (no exponent, no `NaN`).
const DECIMAL_PATTERN: &str = "^-?[0-9]+(\\.[0-9]+)?$";

/// Does `s` match `pattern` (one of the constants above)?
fn matches(pattern: &str, s: &str) -> bool {
    regex::Regex::new(pattern).is_ok_and(|r| r.is_match(s))
}

/// A default that must be a string matching `pattern` that `ok` accepts, kept as
/// given; `special` (`now`, `today`) becomes [`Default::Now`].
fn string_default(
    sink: &mut Sink<'_>,
    field: &FieldDef,
    node: &Node,
    special: Option<&str>,
    pattern: &str,
    ok: impl Fn(&str) -> bool,
    expected: &str,
) -> Option<Default> {
    match &node.value {
        super::yaml::Value::Str(s) if special == Some(s.as_str()) => Some(Default::Now),
        super::yaml::Value::Str(s) if matches(pattern, s) && ok(s) => {
            Some(Default::Value(serde_json::Value::String(s.clone())))
        }
        _ => bad_default(sink, field, node, expected),
    }
}

#[cfg(test)]
mod tests;
