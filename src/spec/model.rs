//! `models/*.yaml`: one entity per file.

use regex::Regex;

use super::diag::{Sink, list, suggest};
use super::walk::{
    Named, bool_key, check_identifier, get, key_pos, map_with_keys, name_list, number, opt_string,
    string, whole_number,
};
use super::yaml::{Node, Pos, Value};

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
    pub const ALL: [(&'static str, FieldType); 16] = [
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

    /// How values of this type are kept in a column (`None` for `many` and `inverse`,
    /// which have no column of their own). Decimals carry their precision and scale.
    pub fn storage(self, precision: u32, scale: u32) -> Option<Storage> {
        Some(match self {
            FieldType::String
            | FieldType::Text
            | FieldType::Email
            | FieldType::Url
            | FieldType::Enum => Storage::Text,
            FieldType::Integer => Storage::Integer,
            FieldType::Number => Storage::Real,
            FieldType::Decimal => Storage::Decimal { precision, scale },
            FieldType::Boolean => Storage::Boolean,
            FieldType::Date => Storage::Date,
            FieldType::Datetime => Storage::Timestamp,
            FieldType::Uuid | FieldType::Ref => Storage::Uuid,
            FieldType::Json => Storage::Json,
            FieldType::Many | FieldType::Inverse => return None,
        })
    }

    /// Does the field own a column in its entity's table?
    pub fn has_column(self) -> bool {
        !matches!(self, FieldType::Many | FieldType::Inverse)
    }

    pub fn is_textual(self) -> bool {
        matches!(
            self,
            FieldType::String | FieldType::Text | FieldType::Email | FieldType::Url
        )
    }

    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            FieldType::Integer | FieldType::Number | FieldType::Decimal
        )
    }

    /// The keys a field of this type accepts besides the common ones.
    fn specific_keys(self) -> &'static [&'static str] {
        match self {
            FieldType::String | FieldType::Text => &["min", "max", "pattern"],
            FieldType::Email | FieldType::Url => &["max"],
            FieldType::Integer | FieldType::Number => &["min", "max"],
            FieldType::Decimal => &["min", "max", "scale", "precision"],
            FieldType::Enum => &["values"],
            FieldType::Ref => &["to", "on_delete"],
            FieldType::Many => &["of"],
            FieldType::Inverse => &["of", "via"],
            FieldType::Boolean
            | FieldType::Date
            | FieldType::Datetime
            | FieldType::Uuid
            | FieldType::Json => &[],
        }
    }
}

const COMMON_KEYS: [&str; 7] = [
    "type",
    "required",
    "unique",
    "default",
    "label",
    "description",
    "renamed_from",
];
const RELATION_COMMON_KEYS: [&str; 3] = ["type", "label", "description"];

/// Every key any field may have, for suggestions.
pub const ALL_FIELD_KEYS: [&str; 17] = [
    "type",
    "required",
    "unique",
    "default",
    "label",
    "description",
    "renamed_from",
    "min",
    "max",
    "pattern",
    "scale",
    "precision",
    "values",
    "to",
    "on_delete",
    "of",
    "via",
];

pub const ENTITY_KEYS: [&str; 8] = [
    "entity",
    "plural",
    "label",
    "description",
    "fields",
    "indexes",
    "unique",
    "search",
];

/// What happens to records that reference a deleted record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDelete {
    Restrict,
    Cascade,
    SetNull,
}

impl OnDelete {
    const NAMES: [&'static str; 3] = ["restrict", "cascade", "set_null"];
}

/// The system fields every entity has.
pub const SYSTEM_FIELDS: [&str; 4] = ["id", "created_at", "updated_at", "version"];

/// Names a field may not have (besides the system fields): they are reserved for
/// list parameters or future system use.
pub const RESERVED_FIELDS: [&str; 3] = ["deleted_at", "_links", "items"];

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
}

#[derive(Debug, Clone)]
pub struct ModelDef {
    /// The file, relative to the project folder.
    pub file: String,
    pub entity: Named,
    pub plural: Option<Named>,
    pub label: Option<String>,
    pub description: Option<String>,
    pub fields: Vec<FieldDef>,
    pub indexes: Vec<Vec<Named>>,
    pub unique: Vec<Vec<Named>>,
    pub search: Vec<Named>,
}

impl ModelDef {
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }
}

pub const DEFAULT_DECIMAL_SCALE: u32 = 2;
pub const DEFAULT_DECIMAL_PRECISION: u32 = 18;
/// Decimals are exact 64-bit integers of their smallest unit in SQLite, so 18 digits at most.
pub const MAX_DECIMAL_PRECISION: u32 = 18;

/// Reads a model file. `stem` is the file name without extension.
pub fn parse_model(sink: &mut Sink<'_>, stem: &str, root: &Node) -> Option<ModelDef> {
    if matches!(root.value, Value::Null) {
        sink.error_hint(
            root.pos,
            "empty-file",
            "this model file is empty",
            format!("start it with `entity: {stem}` and a `fields:` mapping"),
        );
        return None;
    }
    let map = map_with_keys(sink, root, "a model file", &ENTITY_KEYS)?;
    let entity = match get(map, "entity") {
        Some(node) => string(sink, node, "`entity`")?,
        None => {
            sink.error_hint(
                root.pos,
                "missing-key",
                "the model file has no `entity:` name",
                format!("add `entity: {stem}` as the first line"),
            );
            return None;
        }
    };
    if check_identifier(sink, &entity, "entity") && entity.name != stem {
        sink.error_hint(
            entity.pos,
            "entity-name-mismatch",
            format!(
                "the entity is named `{}` but its file is named `{stem}`",
                entity.name
            ),
            format!(
                "rename the file to `{}.yaml`, or the entity to `{stem}`",
                entity.name
            ),
        );
    }
    let plural = opt_string(sink, map, "plural", "`plural`");
    if let Some(p) = &plural {
        check_identifier(sink, p, "plural");
    }
    let label = opt_string(sink, map, "label", "`label`").map(|n| n.name);
    let description = opt_string(sink, map, "description", "`description`").map(|n| n.name);

    let mut fields = Vec::new();
    match get(map, "fields") {
        None => sink.error_hint(
            root.pos,
            "missing-key",
            format!("the entity `{}` has no `fields:`", entity.name),
            "add a `fields:` mapping, e.g. `fields: { name: { type: string, required: true } }`",
        ),
        Some(node) => match node.as_map() {
            Some(entries) => {
                if entries.is_empty() {
                    sink.error_hint(
                        node.pos,
                        "no-fields",
                        format!("the entity `{}` has no fields", entity.name),
                        "declare at least one field, e.g. `name: { type: string }`",
                    );
                }
                for (key, value) in entries {
                    let named = Named {
                        name: key.name.clone(),
                        pos: key.pos,
                    };
                    if let Some(field) = parse_field(sink, &named, value) {
                        fields.push(field);
                    }
                }
            }
            None => sink.error_hint(
                node.pos,
                "wrong-value-type",
                format!(
                    "`fields` must be a mapping of field names to definitions, not {}",
                    node.value.kind_name()
                ),
                "write one field per line, e.g. `title: { type: string, required: true }`",
            ),
        },
    }

    let model_fields: Vec<(String, FieldType)> =
        fields.iter().map(|f| (f.name.clone(), f.ty)).collect();
    let indexes = field_groups(sink, map, "indexes", &model_fields);
    let unique = field_groups(sink, map, "unique", &model_fields);
    let mut search = Vec::new();
    if let Some(node) = get(map, "search") {
        for name in name_list(sink, node, "`search`") {
            match model_fields.iter().find(|(n, _)| *n == name.name) {
                Some((_, FieldType::String | FieldType::Text)) => search.push(name),
                Some((_, ty)) => sink.error_hint(
                    name.pos,
                    "bad-search-field",
                    format!(
                        "`{}` is a {} field; only string and text fields can be searched",
                        name.name,
                        ty.name()
                    ),
                    "remove it from `search`",
                ),
                None => unknown_field(sink, &name, &model_fields, "`search`"),
            }
        }
    }

    Some(ModelDef {
        file: sink.file.to_string(),
        entity,
        plural,
        label,
        description,
        fields,
        indexes,
        unique,
        search,
    })
}

fn unknown_field(sink: &mut Sink<'_>, name: &Named, fields: &[(String, FieldType)], what: &str) {
    let mut names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    names.extend(SYSTEM_FIELDS);
    sink.error_hint(
        name.pos,
        "unknown-field",
        format!(
            "{what} names `{}`, which is not a field of this entity",
            name.name
        ),
        suggest(&name.name, &names),
    );
}

/// `indexes:` / `unique:`: a list of field lists (a single name is a list of one).
fn field_groups(
    sink: &mut Sink<'_>,
    map: &[(super::yaml::Key, Node)],
    key: &str,
    fields: &[(String, FieldType)],
) -> Vec<Vec<Named>> {
    let Some(node) = get(map, key) else {
        return Vec::new();
    };
    let Some(items) = node.as_seq() else {
        sink.error_hint(
            node.pos,
            "wrong-value-type",
            format!("`{key}` must be a list, not {}", node.value.kind_name()),
            format!("write e.g. `{key}: [[status, deadline]]`"),
        );
        return Vec::new();
    };
    let mut groups = Vec::new();
    for item in items {
        let names = name_list(sink, item, &format!("`{key}`"));
        let mut ok = !names.is_empty();
        for given in &names {
            // An index may list a field in descending order, as `sort=` does: `-price`.
            let name = &match given.name.strip_prefix('-') {
                Some(rest) if key == "indexes" => Named {
                    name: rest.to_string(),
                    pos: given.pos,
                },
                _ => given.clone(),
            };
            match fields.iter().find(|(n, _)| *n == name.name) {
                Some((_, ty)) if !ty.has_column() => {
                    ok = false;
                    sink.error_hint(
                        name.pos,
                        "bad-index-field",
                        format!(
                            "`{}` is a {} field and has no column to index",
                            name.name,
                            ty.name()
                        ),
                        "index the ref field on the other entity instead",
                    );
                }
                Some(_) => {}
                None if SYSTEM_FIELDS.contains(&name.name.as_str()) => {}
                None => {
                    ok = false;
                    unknown_field(sink, name, fields, &format!("`{key}`"));
                }
            }
        }
        if ok {
            groups.push(names);
        }
    }
    groups
}

pub(crate) fn parse_field(sink: &mut Sink<'_>, name: &Named, node: &Node) -> Option<FieldDef> {
    let name_ok = check_identifier(sink, name, "field");
    if name_ok
        && (SYSTEM_FIELDS.contains(&name.name.as_str())
            || RESERVED_FIELDS.contains(&name.name.as_str()))
    {
        sink.error_hint(
            name.pos,
            "reserved-name",
            format!("`{}` is a reserved field name", name.name),
            format!(
                "every entity already has {}; choose another name",
                list(&SYSTEM_FIELDS)
            ),
        );
    }
    // Shorthand: `title: string`.
    if let Value::Str(type_name) = &node.value {
        let ty = parse_type(sink, type_name, node.pos)?;
        if matches!(
            ty,
            FieldType::Enum | FieldType::Ref | FieldType::Many | FieldType::Inverse
        ) {
            sink.error_hint(
                node.pos,
                "missing-key",
                format!("a {} field needs more than its type", ty.name()),
                match ty {
                    FieldType::Enum => "write e.g. `{ type: enum, values: [draft, open] }`",
                    FieldType::Ref => "write e.g. `{ type: ref, to: organization }`",
                    FieldType::Many => "write e.g. `{ type: many, of: skill }`",
                    _ => "write e.g. `{ type: inverse, of: application, via: project }`",
                },
            );
            return None;
        }
        return Some(plain_field(name, ty, node.pos));
    }
    let Some(map) = node.as_map() else {
        sink.error_hint(
            node.pos,
            "wrong-value-type",
            format!(
                "the field `{}` must be a type name or a mapping, not {}",
                name.name,
                node.value.kind_name()
            ),
            "write e.g. `{ type: string, required: true }`",
        );
        return None;
    };
    let Some(type_node) = get(map, "type") else {
        sink.error_hint(
            name.pos,
            "missing-key",
            format!("the field `{}` has no `type`", name.name),
            format!("add `type:` with one of {}", list(&FieldType::names())),
        );
        // Still report unknown keys.
        for (key, _) in map {
            if !ALL_FIELD_KEYS.contains(&key.name.as_str()) {
                sink.error_hint(
                    key.pos,
                    "unknown-key",
                    format!("`{}` is not a valid key in a field", key.name),
                    suggest(&key.name, &ALL_FIELD_KEYS),
                );
            }
        }
        return None;
    };
    let type_name = string(sink, type_node, "`type`")?;
    let Some(ty) = parse_type(sink, &type_name.name, type_node.pos) else {
        for (key, _) in map {
            if !ALL_FIELD_KEYS.contains(&key.name.as_str()) {
                sink.error_hint(
                    key.pos,
                    "unknown-key",
                    format!("`{}` is not a valid key in a field", key.name),
                    suggest(&key.name, &ALL_FIELD_KEYS),
                );
            }
        }
        return None;
    };

    // Keys: the common ones, plus those of this type.
    let common: &[&str] = if matches!(ty, FieldType::Many | FieldType::Inverse) {
        &RELATION_COMMON_KEYS
    } else {
        &COMMON_KEYS
    };
    let mut allowed: Vec<&str> = common.to_vec();
    allowed.extend(ty.specific_keys());
    for (key, _) in map {
        let k = key.name.as_str();
        if allowed.contains(&k) {
            continue;
        }
        if ALL_FIELD_KEYS.contains(&k) {
            let owners: Vec<&str> = FieldType::ALL
                .iter()
                .filter(|(_, t)| {
                    t.specific_keys().contains(&k)
                        || (!matches!(t, FieldType::Many | FieldType::Inverse)
                            && COMMON_KEYS.contains(&k))
                })
                .map(|(n, _)| *n)
                .collect();
            sink.error_hint(
                key.pos,
                "key-not-for-type",
                format!("`{k}` does not apply to a {} field", ty.name()),
                format!("`{k}` applies to {} fields", owners.join(", ")),
            );
        } else {
            sink.error_hint(
                key.pos,
                "unknown-key",
                format!("`{k}` is not a valid key in a field"),
                suggest(k, &allowed),
            );
        }
    }

    let mut field = plain_field(name, ty, type_node.pos);
    field.required = bool_key(sink, map, "required");
    field.unique = bool_key(sink, map, "unique");
    field.label = opt_string(sink, map, "label", "`label`").map(|n| n.name);
    field.description = opt_string(sink, map, "description", "`description`").map(|n| n.name);
    field.renamed_from = opt_string(sink, map, "renamed_from", "`renamed_from`");
    if let Some(r) = &field.renamed_from {
        check_identifier(sink, r, "field");
    }

    // min / max
    let min_node = get(map, "min");
    let max_node = get(map, "max");
    if allowed.contains(&"min") || allowed.contains(&"max") {
        if ty.is_textual() {
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
        } else if ty == FieldType::Integer {
            field.min = min_node
                .and_then(|n| whole_number(sink, n, "`min`"))
                .map(|v| v as f64);
            field.max = max_node
                .and_then(|n| whole_number(sink, n, "`max`"))
                .map(|v| v as f64);
        } else {
            field.min = min_node.and_then(|n| number(sink, n, "`min`"));
            field.max = max_node.and_then(|n| number(sink, n, "`max`"));
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

    if let Some(node) = get(map, "pattern")
        && ty.is_textual()
        && let Some(p) = string(sink, node, "`pattern`")
    {
        match Regex::new(&p.name) {
            Ok(_) => field.pattern = Some(p.name),
            Err(err) => sink.error_hint(
                node.pos,
                "invalid-pattern",
                format!("`pattern` is not a valid regular expression: {}", first_line(&err.to_string())),
                "patterns use Rust regex syntax, e.g. `^[A-Z]{3}-[0-9]+$`; quote the pattern in single quotes",
            ),
        }
    }

    if ty == FieldType::Decimal {
        if let Some(node) = get(map, "scale")
            && let Some(v) = whole_number(sink, node, "`scale`")
        {
            if (0..=12).contains(&v) {
                field.scale = v as u32;
            } else {
                sink.error_hint(
                    node.pos,
                    "bad-range",
                    "`scale` (digits after the decimal point) must be between 0 and 12",
                    "money usually has `scale: 2`",
                );
            }
        }
        if let Some(node) = get(map, "precision")
            && let Some(v) = whole_number(sink, node, "`precision`")
        {
            if (1..=i64::from(MAX_DECIMAL_PRECISION)).contains(&v) && v as u32 > field.scale {
                field.precision = v as u32;
            } else {
                sink.error_hint(
                    node.pos,
                    "bad-range",
                    format!(
                        "`precision` (total digits) must be between the scale + 1 and {MAX_DECIMAL_PRECISION}"
                    ),
                    "leave it out to get 18 digits",
                );
            }
        }
    }

    if ty == FieldType::Enum {
        match get(map, "values") {
            None => sink.error_hint(
                name.pos,
                "missing-key",
                format!("the enum field `{}` has no `values`", name.name),
                "add e.g. `values: [draft, open, closed]`",
            ),
            Some(node) => {
                let values = name_list(sink, node, "`values`");
                if values.is_empty() {
                    sink.error_hint(
                        node.pos,
                        "missing-key",
                        "an enum needs at least one value",
                        "write e.g. `values: [draft, open, closed]`",
                    );
                }
                let mut seen: Vec<&str> = Vec::new();
                for v in &values {
                    if seen.contains(&v.name.as_str()) {
                        sink.error(
                            v.pos,
                            "duplicate-name",
                            format!("the value `{}` is listed twice", v.name),
                        );
                    }
                    seen.push(&v.name);
                    if v.name.is_empty() || v.name.len() > 64 {
                        sink.error(
                            v.pos,
                            "invalid-enum-value",
                            "enum values must be between 1 and 64 characters",
                        );
                    }
                }
                field.values = values.into_iter().map(|v| v.name).collect();
            }
        }
    }

    if matches!(ty, FieldType::Ref | FieldType::Many | FieldType::Inverse) {
        let key = if ty == FieldType::Ref { "to" } else { "of" };
        match get(map, key) {
            None => sink.error_hint(
                name.pos,
                "missing-key",
                format!("the {} field `{}` has no `{key}`", ty.name(), name.name),
                format!("add `{key}:` with the name of the entity it points to"),
            ),
            Some(node) => field.target = string(sink, node, &format!("`{key}`")),
        }
    }
    if ty == FieldType::Inverse {
        match get(map, "via") {
            None => sink.error_hint(
                name.pos,
                "missing-key",
                format!("the inverse field `{}` has no `via`", name.name),
                "add `via:` with the ref field of the other entity that points back here",
            ),
            Some(node) => field.via = string(sink, node, "`via`"),
        }
    }
    if let Some(node) = get(map, "on_delete")
        && let Some(v) = string(sink, node, "`on_delete`")
    {
        field.on_delete = match v.name.as_str() {
            "restrict" => OnDelete::Restrict,
            "cascade" => OnDelete::Cascade,
            "set_null" => OnDelete::SetNull,
            other => {
                sink.error_hint(
                    node.pos,
                    "unknown-value",
                    format!("`{other}` is not a valid `on_delete`"),
                    suggest(other, &OnDelete::NAMES),
                );
                OnDelete::Restrict
            }
        };
        if field.on_delete == OnDelete::SetNull && field.required {
            sink.error_hint(
                node.pos,
                "set-null-on-required",
                "`on_delete: set_null` cannot empty a required field",
                "use `restrict` or `cascade`, or make the field optional",
            );
        }
    }

    if let Some(node) = get(map, "default") {
        field.default = check_default(sink, &field, node).map(|d| (d, node.pos));
    }
    if field.unique && !ty.has_column() {
        // Not reachable through allowed keys, kept for safety.
        field.unique = false;
    }
    if let Some(pos) = key_pos(map, "unique")
        && field.unique
        && ty == FieldType::Json
    {
        sink.error(pos, "bad-unique", "a json field cannot be unique");
    }
    Some(field)
}

fn first_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .trim_start_matches("error:")
        .trim()
        .to_string()
}

fn parse_type(sink: &mut Sink<'_>, type_name: &str, pos: Pos) -> Option<FieldType> {
    match FieldType::parse(type_name) {
        Some(t) => Some(t),
        None => {
            let names = FieldType::names();
            let hint = match type_name {
                "str" | "varchar" | "char" => "did you mean `string`?".to_string(),
                "int" | "bigint" | "smallint" => "did you mean `integer`?".to_string(),
                "float" | "double" | "real" => "did you mean `number`?".to_string(),
                "bool" => "did you mean `boolean`?".to_string(),
                "timestamp" | "time" => "did you mean `datetime`?".to_string(),
                "money" | "numeric" => "did you mean `decimal`?".to_string(),
                "list" | "array" => {
                    "did you mean `many` (links to another entity) or `json`?".to_string()
                }
                _ => suggest(type_name, &names),
            };
            sink.error_hint(
                pos,
                "unknown-type",
                format!("`{type_name}` is not a field type"),
                format!("{hint} (types: {})", names.join(", ")),
            );
            None
        }
    }
}

fn plain_field(name: &Named, ty: FieldType, ty_pos: Pos) -> FieldDef {
    FieldDef {
        name: name.name.clone(),
        pos: name.pos,
        ty,
        ty_pos,
        required: false,
        unique: false,
        default: None,
        min: None,
        max: None,
        pattern: None,
        label: None,
        description: None,
        values: Vec::new(),
        target: None,
        via: None,
        on_delete: OnDelete::Restrict,
        scale: DEFAULT_DECIMAL_SCALE,
        precision: DEFAULT_DECIMAL_PRECISION,
        renamed_from: None,
    }
}

/// Checks a `default:` against the field's type and limits.
fn check_default(sink: &mut Sink<'_>, field: &FieldDef, node: &Node) -> Option<Default> {
    let bad = |sink: &mut Sink<'_>, expected: &str| {
        sink.error_hint(
            node.pos,
            "invalid-default",
            format!(
                "the default of `{}` must be {expected}, not {}",
                field.name,
                node.value.kind_name()
            ),
            "correct the default or remove it",
        );
        None
    };
    let value = &node.value;
    match field.ty {
        FieldType::Ref | FieldType::Many | FieldType::Inverse => None,
        FieldType::String | FieldType::Text | FieldType::Email | FieldType::Url => match value {
            Value::Str(s) => {
                let len = s.chars().count() as f64;
                if field.min.is_some_and(|m| len < m) || field.max.is_some_and(|m| len > m) {
                    sink.error(
                        node.pos,
                        "invalid-default",
                        format!(
                            "the default of `{}` is outside its length limits",
                            field.name
                        ),
                    );
                }
                Some(Default::Value(serde_json::Value::String(s.clone())))
            }
            _ => bad(sink, "text"),
        },
        FieldType::Integer => match value {
            Value::Int(i) => {
                in_range(sink, field, node, *i as f64);
                Some(Default::Value((*i).into()))
            }
            _ => bad(sink, "a whole number"),
        },
        FieldType::Number | FieldType::Decimal => match value {
            Value::Int(_) | Value::Float(_) => {
                let v = match value {
                    Value::Int(i) => *i as f64,
                    Value::Float(f) => *f,
                    _ => 0.0,
                };
                in_range(sink, field, node, v);
                Some(Default::Value(node.to_json()))
            }
            Value::Str(s) if field.ty == FieldType::Decimal => match s.parse::<f64>() {
                Ok(v) => {
                    in_range(sink, field, node, v);
                    Some(Default::Value(serde_json::Value::String(s.clone())))
                }
                Err(_) => bad(sink, "a number"),
            },
            _ => bad(sink, "a number"),
        },
        FieldType::Boolean => match value {
            Value::Bool(b) => Some(Default::Value((*b).into())),
            _ => bad(sink, "true or false"),
        },
        FieldType::Date => match value {
            Value::Str(s) if s == "today" => Some(Default::Now),
            Value::Str(s) if chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() => {
                Some(Default::Value(serde_json::Value::String(s.clone())))
            }
            _ => bad(sink, "a date like 2025-01-31, or `today`"),
        },
        FieldType::Datetime => match value {
            Value::Str(s) if s == "now" => Some(Default::Now),
            Value::Str(s) if chrono::DateTime::parse_from_rfc3339(s).is_ok() => {
                Some(Default::Value(serde_json::Value::String(s.clone())))
            }
            _ => bad(sink, "a date and time like 2025-01-31T09:00:00Z, or `now`"),
        },
        FieldType::Uuid => match value {
            Value::Str(s) if uuid::Uuid::parse_str(s).is_ok() => {
                Some(Default::Value(serde_json::Value::String(s.clone())))
            }
            _ => bad(sink, "a UUID"),
        },
        FieldType::Enum => match value {
            Value::Str(s) => {
                if !field.values.is_empty() && !field.values.contains(s) {
                    let values: Vec<&str> = field.values.iter().map(String::as_str).collect();
                    sink.error_hint(
                        node.pos,
                        "enum-default-not-in-values",
                        format!(
                            "the default `{s}` is not one of the values of `{}`",
                            field.name
                        ),
                        match super::diag::did_you_mean(s, values.iter().copied()) {
                            Some(best) => {
                                format!("did you mean `{best}`? (the values are {})", list(&values))
                            }
                            None => {
                                format!("use one of {}, or add `{s}` to `values`", list(&values))
                            }
                        },
                    );
                }
                Some(Default::Value(serde_json::Value::String(s.clone())))
            }
            _ => bad(sink, "one of the enum's values"),
        },
        FieldType::Json => Some(Default::Value(node.to_json())),
    }
}

fn in_range(sink: &mut Sink<'_>, field: &FieldDef, node: &Node, v: f64) {
    if field.min.is_some_and(|m| v < m) || field.max.is_some_and(|m| v > m) {
        sink.error_hint(
            node.pos,
            "invalid-default",
            format!("the default of `{}` is outside its `min`/`max`", field.name),
            "correct the default or the limits",
        );
    }
}
