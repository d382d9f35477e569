//! JSON Schemas of an entity's request bodies and records, with compiled validators.

use serde_json::{Map, Value, json};

use super::Field;
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
pub const DECIMAL_PATTERN: &str = r"^-?[0-9]+(\.[0-9]+)?$";

/// The schema of one field's value in a request body. `documented` adds keywords that
/// the validator leaves to the input conversion (patterns in Rust regex syntax, formats).
fn input_schema(field: &Field, documented: bool) -> Value {
    let mut s = match field.ty {
        FieldType::String | FieldType::Text | FieldType::Email | FieldType::Url => {
            let mut s = json!({ "type": "string" });
            if let Some(min) = field.min {
                s["minLength"] = json!(min as u64);
            }
            if let Some(max) = field.max {
                s["maxLength"] = json!(max as u64);
            }
            if documented {
                if let Some(p) = &field.pattern {
                    s["pattern"] = json!(p.as_str());
                }
                match field.ty {
                    FieldType::Email => s["format"] = json!("email"),
                    FieldType::Url => s["format"] = json!("uri"),
                    _ => {}
                }
            }
            s
        }
        FieldType::Integer => {
            let mut s = json!({ "type": "integer" });
            range(&mut s, field);
            s
        }
        FieldType::Number => {
            let mut s = json!({ "type": "number" });
            range(&mut s, field);
            s
        }
        FieldType::Decimal => {
            // Decimal ranges are checked exactly by the input conversion.
            let mut s = json!({
                "type": ["string", "number"],
                "description": format!("An exact decimal with at most {} digits after the point, as a string (\"12.50\") or a number.", field.scale)
            });
            if documented {
                s["pattern"] = json!(DECIMAL_PATTERN);
            }
            s
        }
        FieldType::Boolean => json!({ "type": "boolean" }),
        FieldType::Date => {
            let mut s = json!({ "type": "string" });
            if documented {
                s["format"] = json!("date");
            }
            s
        }
        FieldType::Datetime => {
            let mut s = json!({ "type": "string" });
            if documented {
                s["format"] = json!("date-time");
            }
            s
        }
        FieldType::Uuid | FieldType::Ref => {
            let mut s = json!({ "type": "string" });
            if documented {
                s["format"] = json!("uuid");
            }
            s
        }
        FieldType::Enum => json!({ "type": "string", "enum": field.values }),
        FieldType::Json => json!({}),
        FieldType::Many => {
            let mut item = json!({ "type": "string" });
            if documented {
                item["format"] = json!("uuid");
            }
            json!({ "type": "array", "items": item, "maxItems": 1000 })
        }
        FieldType::Inverse => json!({}),
    };
    describe(&mut s, field);
    if !field.required && field.ty != FieldType::Json && field.ty != FieldType::Many {
        nullable(&mut s);
    }
    s
}

fn range(s: &mut Value, field: &Field) {
    if let Some(min) = field.min {
        s["minimum"] = number(min);
    }
    if let Some(max) = field.max {
        s["maximum"] = number(max);
    }
}

fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

fn describe(s: &mut Value, field: &Field) {
    if let Some(obj) = s.as_object_mut() {
        if let Some(label) = &field.label {
            obj.insert("title".into(), json!(label));
        }
        if let Some(d) = &field.description {
            obj.insert("description".into(), json!(d));
        }
    }
}

/// Adds `null` to a schema's types.
fn nullable(s: &mut Value) {
    let Some(obj) = s.as_object_mut() else {
        return;
    };
    match obj.get("type").cloned() {
        Some(Value::String(t)) if t != "null" => {
            obj.insert("type".into(), json!([t, "null"]));
        }
        Some(Value::Array(mut ts)) if !ts.contains(&json!("null")) => {
            ts.push(json!("null"));
            obj.insert("type".into(), Value::Array(ts));
        }
        _ => {}
    }
    if let Some(Value::Array(values)) = obj.get_mut("enum")
        && !values.contains(&Value::Null)
    {
        values.push(Value::Null);
    }
}

fn component(entity: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{}", super::pascal_case(entity)) })
}

/// The schema of one field's value in a returned record.
fn output_schema(field: &Field) -> Value {
    let target = field.target.as_deref().unwrap_or_default();
    let uuid = json!({ "type": "string", "format": "uuid" });
    match field.ty {
        FieldType::Ref => {
            let mut any = vec![uuid, component(target)];
            if !field.required {
                any.push(json!({ "type": "null" }));
            }
            let mut s = json!({
                "anyOf": any,
                "description": format!("The id of the {target}; the {target} itself with `expand={}`.", field.name)
            });
            describe(&mut s, field);
            return s;
        }
        FieldType::Many => {
            let mut s = json!({
                "type": "array",
                "items": { "anyOf": [uuid, component(target)] },
                "description": format!("The ids of the linked {target} records; the records themselves with `expand={}`.", field.name)
            });
            describe(&mut s, field);
            return s;
        }
        FieldType::Inverse => {
            return json!({
                "type": "array",
                "items": component(target),
                "description": format!(
                    "Only with `expand={}`: the {target} records whose `{}` is this record (at most {} of them).",
                    field.name,
                    field.via.as_deref().unwrap_or_default(),
                    crate::engine::query::EXPAND_CAP
                )
            });
        }
        _ => {}
    }
    let mut s = match field.ty {
        FieldType::Decimal => json!({
            "type": "string",
            "pattern": DECIMAL_PATTERN,
            "description": format!("Exact decimal with {} digits after the point.", field.scale)
        }),
        FieldType::Many => {
            json!({ "type": "array", "items": { "type": "string", "format": "uuid" } })
        }
        _ => input_schema(field, true),
    };
    if let Some(obj) = s.as_object_mut() {
        // Limits are input rules; the output may hold older values.
        for k in ["minLength", "maxLength", "minimum", "maximum", "maxItems"] {
            obj.remove(k);
        }
    }
    if !field.required && field.ty != FieldType::Many && field.ty != FieldType::Json {
        nullable(&mut s);
    }
    if let Some(SpecDefault::Value(v)) = &field.default
        && let Some(obj) = s.as_object_mut()
    {
        let _ = v;
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
