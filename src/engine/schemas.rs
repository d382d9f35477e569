//! JSON Schemas of an entity's request bodies and records, with compiled validators.

use serde_json::{Map, Value, json};

use super::Field;
use super::types::{describe, nullable};
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
                if documented
                    && for_create
                    && let Some(SpecDefault::Value(v)) = &f.default
                {
                    s["default"] = v.clone();
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
        for f in fields {
            let mut s = output_schema(f);
            if protected == Some(f.name.as_str()) {
                s["readOnly"] = json!(true);
                s["description"] = json!(
                    "The workflow state: set on create, changed only through the transition endpoints."
                );
            }
            record_props.insert(f.name.clone(), s);
        }
        // Every field is present unless `fields=` selects some; `id` always is.
        let record = json!({
            "type": "object",
            "title": label,
            "description": format!("A {entity} record. Every field except inverse ones is present unless `fields` selects some; `id` always is."),
            "properties": record_props,
            "required": ["id"],
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
