//! JSON Schemas of an entity's request bodies and records, with compiled validators.

use serde_json::{Map, Value, json};

use super::Field;
use super::types::{describe, nullable};
use crate::engine::query::EXPAND_MEMBER;
use crate::spec::FieldType;
use crate::spec::model::Default as SpecDefault;

pub struct EntitySchemas {
    /// Body of POST (documented form).
    pub create: Value,
    /// Body of PATCH (documented form).
    pub update: Value,
    /// A record as returned.
    pub record: Value,
    pub create_validator: jsonschema::Validator,
    pub update_validator: jsonschema::Validator,
}

impl std::fmt::Debug for EntitySchemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntitySchemas").finish_non_exhaustive()
    }
}

pub const UUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
pub use super::types::DECIMAL_PATTERN;

/// The schema of one field's value in a request body. `documented` adds keywords that
/// the validator leaves to the input conversion (patterns in Rust regex syntax, formats).
fn input_schema(field: &Field, documented: bool) -> Value {
    let kind = field.kind();
    let mut s = kind.input_schema(field, documented);
    describe(&mut s, field);
    if !field.required && kind.nullable() {
        nullable(&mut s);
    }
    s
}

/// The schema of one field's value in a returned record.
fn output_schema(field: &Field) -> Value {
    let kind = field.kind();
    let mut s = kind
        .record_schema(field)
        .unwrap_or_else(|| input_schema(field, true));
    if let Some(obj) = s.as_object_mut() {
        // Limits are input rules; the output may hold older values.
        for k in ["minLength", "maxLength", "minimum", "maximum", "maxItems"] {
            obj.remove(k);
        }
    }
    if !field.required && kind.nullable() {
        nullable(&mut s);
    }
    if let Some(SpecDefault::Value(_)) = &field.default
        && let Some(obj) = s.as_object_mut()
    {
        obj.remove("default");
    }
    s
}

/// Says a field's default in its description (see the create body).
fn default_note(s: &mut Value, field: &Field) {
    let note = match &field.default {
        Some(SpecDefault::Value(v)) => format!("Default: `{v}`."),
        Some(SpecDefault::Now) => "Default: the current time (`now`) when left out.".to_string(),
        None => return,
    };
    let Some(obj) = s.as_object_mut() else {
        return;
    };
    let text = match obj.get("description").and_then(Value::as_str) {
        Some(d) => format!("{}. {note}", d.trim_end_matches('.')),
        None => note,
    };
    obj.insert("description".into(), json!(text));
}

impl EntitySchemas {
    /// `protected`: a workflow's state field, left out of the documented request bodies
    /// (clients cannot write it) but kept in the validators, which check seed data too.
    pub fn build(
        entity: &str,
        label: &str,
        fields: &[Field],
        protected: Option<&str>,
    ) -> Result<EntitySchemas, String> {
        let writable: Vec<&Field> = fields
            .iter()
            .filter(|f| f.ty != FieldType::Inverse)
            .collect();

        let body = |documented: bool, for_create: bool| {
            let mut props = Map::new();
            for f in &writable {
                if documented && protected == Some(f.name.as_str()) {
                    continue;
                }
                let mut s = input_schema(f, documented);
                // The default goes in the description, not in a `default` keyword:
                // openapi-typescript (v7, default flags) makes a property with a
                // `default` required, and a create may leave it out.
                if documented && for_create {
                    default_note(&mut s, f);
                }
                props.insert(f.name.clone(), s);
            }
            let mut schema = json!({
                "type": "object",
                "properties": props,
                "additionalProperties": false,
            });
            if for_create {
                let required: Vec<&str> = writable
                    .iter()
                    .filter(|f| f.must_be_given())
                    .map(|f| f.name.as_str())
                    .collect();
                if !required.is_empty() {
                    schema["required"] = json!(required);
                }
            }
            schema
        };

        let create = body(true, true);
        let update = body(true, false);
        let mut record_props = Map::new();
        record_props.insert(
            "id".into(),
            json!({ "type": "string", "format": "uuid", "readOnly": true }),
        );
        record_props.insert(
            "created_at".into(),
            json!({ "type": "string", "format": "date-time", "readOnly": true }),
        );
        record_props.insert(
            "updated_at".into(),
            json!({ "type": "string", "format": "date-time", "readOnly": true }),
        );
        record_props.insert("version".into(), json!({ "type": "integer", "minimum": 1, "readOnly": true, "description": "Incremented by every change; send it back in If-Match." }));
        let mut required: Vec<&str> = vec!["id", "created_at", "updated_at", "version"];
        let mut expanded = Map::new();
        for f in fields {
            if let Some(s) = f.kind().expanded_schema(f) {
                expanded.insert(f.name.clone(), s);
            }
            if f.ty == FieldType::Inverse {
                continue;
            }
            let mut s = output_schema(f);
            if protected == Some(f.name.as_str()) {
                // Always a state of the workflow, never null.
                s = f.kind().input_schema(f, true);
                s["readOnly"] = json!(true);
                s["description"] = json!(
                    "The workflow state: set on create, changed only through the transition endpoints."
                );
            }
            record_props.insert(f.name.clone(), s);
            required.push(f.name.as_str());
        }
        if !expanded.is_empty() {
            record_props.insert(
                EXPAND_MEMBER.into(),
                json!({
                    "type": "object",
                    "description": "Only with `expand`: the related records of the relations it names (and only those `fields` selects). The relation fields keep their ids either way.",
                    "properties": expanded,
                    "additionalProperties": false,
                }),
            );
        }
        // Every field the record carries is present, so required; `fields` (a
        // projection) returns only the chosen ones and `id`.
        let record = json!({
            "type": "object",
            "title": label,
            "description": format!("A {entity} record: every field but inverse relations, which are only in `expand`. With `fields`, only the chosen fields (and `id`) are returned."),
            "properties": record_props,
            "required": required,
        });

        let compile = |schema: &Value| {
            jsonschema::options()
                .should_validate_formats(false)
                .build(schema)
                .map_err(|e| e.to_string())
        };
        Ok(EntitySchemas {
            create_validator: compile(&body(false, true))?,
            update_validator: compile(&body(false, false))?,
            create,
            update,
            record,
        })
    }
}
