//! `models/*.yaml`: one entity per file.

use super::diag::{Sink, list, suggest};
use super::walk::{
    Named, bool_key, check_identifier, get, key_pos, map_with_keys, name_list, opt_string, string,
};
use super::yaml::{Node, Pos, Value};

pub use super::field::{
    DEFAULT_DECIMAL_PRECISION, DEFAULT_DECIMAL_SCALE, Default, FieldDef, FieldType, FileOptions,
    MAX_DECIMAL_PRECISION, OnDelete, Storage, ThumbSize,
};

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
pub const ALL_FIELD_KEYS: [&str; 22] = [
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
    "multiple",
    "max_count",
    "max_size",
    "accept",
    "thumbs",
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

/// The system fields every entity has.
pub const SYSTEM_FIELDS: [&str; 4] = ["id", "created_at", "updated_at", "version"];

/// Names a field may not have (besides the system fields): they are reserved for
/// list parameters, the member that holds expanded relations, or future system use.
pub const RESERVED_FIELDS: [&str; 4] = ["deleted_at", "_links", "items", "expand"];

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
    // Fields declared but refused (their own error says why): a later mention of
    // one (`search`, `indexes`, `unique`) is not a second, misleading error.
    let mut broken: Vec<String> = Vec::new();
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
                    match parse_field(sink, &named, value) {
                        Some(field) => fields.push(field),
                        None => broken.push(key.name.clone()),
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

    let model_fields = Declared {
        fields: fields.iter().map(|f| (f.name.clone(), f.ty)).collect(),
        broken,
    };
    let indexes = field_groups(sink, map, "indexes", &model_fields);
    let unique = field_groups(sink, map, "unique", &model_fields);
    let mut search = Vec::new();
    if let Some(node) = get(map, "search") {
        for name in name_list(sink, node, "`search`") {
            match model_fields.fields.iter().find(|(n, _)| *n == name.name) {
                Some((_, ty)) if ty.rules().searchable() => search.push(name),
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

/// The fields an entity declares: those that loaded, and the names of those refused.
struct Declared {
    fields: Vec<(String, FieldType)>,
    broken: Vec<String>,
}

fn unknown_field(sink: &mut Sink<'_>, name: &Named, declared: &Declared, what: &str) {
    if declared.broken.contains(&name.name) {
        return;
    }
    let mut names: Vec<&str> = declared.fields.iter().map(|(n, _)| n.as_str()).collect();
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
    declared: &Declared,
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
            match declared.fields.iter().find(|(n, _)| *n == name.name) {
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
                    unknown_field(sink, name, declared, &format!("`{key}`"));
                }
            }
        }
        if ok {
            groups.push(names);
        }
    }
    groups
}

/// Every key a field of type `ty` accepts: the common ones (`default` only for types
/// that take one), then the type's own. The editor schema offers the same.
pub fn field_keys(ty: FieldType) -> Vec<&'static str> {
    let rules = ty.rules();
    let common: &[&str] = if rules.common_keys() {
        &COMMON_KEYS
    } else {
        &RELATION_COMMON_KEYS
    };
    let takes_default = rules.default_schema().is_some();
    let mut keys: Vec<&'static str> = common
        .iter()
        .copied()
        .filter(|k| *k != "default" || takes_default)
        .collect();
    keys.extend(ty.specific_keys());
    keys
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
            if name.name == "expand" {
                "every record keeps its expanded relations (`?expand=…`) under `expand`; choose another name".to_string()
            } else {
                format!(
                    "every entity already has {}; choose another name",
                    list(&SYSTEM_FIELDS)
                )
            },
        );
    }
    // Shorthand: `title: string`.
    if let Value::Str(type_name) = &node.value {
        let ty = parse_type(sink, type_name, node.pos)?;
        if let Some(example) = ty.rules().shorthand_example() {
            sink.error_hint(
                node.pos,
                "missing-key",
                format!("a {} field needs more than its type", ty.name()),
                example,
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
    let allowed = field_keys(ty);
    for (key, _) in map {
        let k = key.name.as_str();
        if allowed.contains(&k) {
            continue;
        }
        if ALL_FIELD_KEYS.contains(&k) {
            let owners: Vec<&str> = FieldType::ALL
                .iter()
                .filter(|(_, t)| field_keys(*t).contains(&k))
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

    // The type's own keys.
    ty.rules().parse_options(sink, name, map, &mut field);
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
        field.default = ty
            .rules()
            .check_default(sink, &field, node)
            .map(|d| (d, node.pos));
    }
    if field.unique && !ty.has_column() {
        // Not reachable through allowed keys, kept for safety.
        field.unique = false;
    }
    if let Some(pos) = key_pos(map, "unique")
        && field.unique
        && !ty.rules().may_be_unique()
    {
        sink.error(
            pos,
            "bad-unique",
            format!("a {} field cannot be unique", ty.name()),
        );
    }
    Some(field)
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
        file: None,
    }
}
