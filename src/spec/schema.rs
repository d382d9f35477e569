//! JSON Schemas of Trellis's own file formats, for editors (autocomplete, underlines).
//!
//! The loader is the authority; these schemas describe the same keys so that an editor
//! catches most mistakes while a person types. A test validates every YAML file in the
//! repository against them, and another keeps the copies in `schemas/` current.

use serde_json::{Value, json};

use super::model::{ENTITY_KEYS, FieldType};

pub const MODEL_SCHEMA_ID: &str = "https://trellis.dev/schemas/model.schema.json";
pub const SETTINGS_SCHEMA_ID: &str = "https://trellis.dev/schemas/trellis.schema.json";
pub const POLICY_SCHEMA_ID: &str = "https://trellis.dev/schemas/policy.schema.json";
pub const WORKFLOW_SCHEMA_ID: &str = "https://trellis.dev/schemas/workflow.schema.json";

fn identifier() -> Value {
    json!({ "type": "string", "pattern": "^[a-z][a-z0-9]*(_[a-z0-9]+)*$", "maxLength": 48 })
}

fn names() -> Value {
    json!({
        "oneOf": [
            { "$ref": "#/$defs/identifier" },
            { "type": "array", "items": { "$ref": "#/$defs/identifier" }, "minItems": 1 }
        ]
    })
}

fn common(extra: Value) -> Value {
    let mut props = json!({
        "required": { "type": "boolean", "description": "A value must be given (NOT NULL)." },
        "unique": { "type": "boolean", "description": "No two records may share a value." },
        "default": { "description": "The value used when a create leaves the field out." },
        "label": { "type": "string", "description": "A human-readable name." },
        "description": { "type": "string" },
        "renamed_from": { "$ref": "#/$defs/identifier", "description": "The field's former name: its data is kept." }
    });
    if let (Some(p), Some(e)) = (props.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            p.insert(k.clone(), v.clone());
        }
    }
    props
}

fn field_variant(ty: FieldType) -> Value {
    let name = ty.name();
    let rules = ty.rules();
    let mut props = if rules.common_keys() {
        common(rules.editor_keys())
    } else {
        let mut props = json!({
            "label": { "type": "string" },
            "description": { "type": "string" }
        });
        if let (Some(p), Value::Object(own)) = (props.as_object_mut(), rules.editor_keys()) {
            p.extend(own);
        }
        props
    };
    if let Some(o) = props.as_object_mut() {
        o.insert("type".into(), json!({ "const": name }));
    }
    let mut required = vec!["type"];
    required.extend(rules.required_keys());
    json!({
        "if": { "properties": { "type": { "const": name } }, "required": ["type"] },
        "then": { "properties": props, "required": required, "additionalProperties": false }
    })
}

/// The JSON Schema of `models/*.yaml`.
pub fn model_schema() -> Value {
    let type_names = FieldType::names();
    let simple_types: Vec<&str> = FieldType::ALL
        .iter()
        .filter(|(_, t)| t.rules().shorthand_example().is_none())
        .map(|(n, _)| *n)
        .collect();
    let variants: Vec<Value> = FieldType::ALL
        .iter()
        .map(|(_, t)| field_variant(*t))
        .collect();
    let group = json!({
        "type": "array",
        "items": { "$ref": "#/$defs/names" }
    });
    // An index may list a field in descending order, as `sort=` does: `-price`.
    let sorted = json!({
        "type": "string",
        "pattern": "^-?[a-z][a-z0-9_]*$",
        "description": "A field; `-field` in descending order (an index for a sort)."
    });
    let index_group = json!({
        "type": "array",
        "description": "Indexes, each a list of fields. An index for a sorted list lists the filter fields, then the sort fields as in `sort=` (`-price` descending), then `id`.",
        "items": {
            "oneOf": [
                sorted.clone(),
                { "type": "array", "items": sorted, "minItems": 1 }
            ]
        }
    });
    let _ = ENTITY_KEYS;
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": MODEL_SCHEMA_ID,
        "title": "Trellis model",
        "description": "One entity of a Trellis project: its fields become a table and a REST API.",
        "type": "object",
        "required": ["entity", "fields"],
        "additionalProperties": false,
        "properties": {
            "entity": { "$ref": "#/$defs/identifier", "description": "The entity's name; must match the file name." },
            "plural": { "$ref": "#/$defs/identifier", "description": "The route name, e.g. `people` for /api/people (default: English plural)." },
            "label": { "type": "string" },
            "description": { "type": "string" },
            "fields": {
                "type": "object",
                "minProperties": 1,
                "propertyNames": { "$ref": "#/$defs/identifier", "not": { "enum": ["id", "created_at", "updated_at", "version", "deleted_at", "_links", "items", "expand"] } },
                "additionalProperties": { "$ref": "#/$defs/field" }
            },
            "indexes": index_group,
            "unique": group,
            "search": { "$ref": "#/$defs/names" }
        },
        "$defs": {
            "identifier": identifier(),
            "names": names(),
            "field": {
                "oneOf": [
                    { "enum": simple_types, "description": "Shorthand: just the type." },
                    {
                        "type": "object",
                        "required": ["type"],
                        "properties": { "type": { "enum": type_names } },
                        "allOf": variants
                    }
                ]
            }
        }
    })
}

/// The JSON Schema of `trellis.yaml`.
pub fn settings_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SETTINGS_SCHEMA_ID,
        "title": "Trellis project settings",
        "type": ["object", "null"],
        "additionalProperties": false,
        "properties": {
            "name": { "type": "string", "description": "The API's title." },
            "description": { "type": "string" },
            "database": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "url": { "type": "string", "description": "sqlite://path or postgres://…; `${VAR}` reads an environment variable." }
                }
            },
            "auth": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "claims": { "type": "array", "items": { "type": "string" } },
                    "open_without_policies": { "type": "boolean", "description": "Serve an open API on purpose when there are no policy files (without it, authentication with no policies is an error)." },
                    "jwt": {
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                            "algorithm": { "enum": ["HS256", "RS256", "ES256"] },
                            "secret_env": { "type": "string", "description": "The environment variable holding the HS256 secret." },
                            "public_key_file": { "type": "string", "description": "A PEM public key (RS256, ES256)." },
                            "jwks_file": { "type": "string", "description": "A JWKS file (RS256, ES256); the token's `kid` picks the key." },
                            "issuer": { "type": "string" },
                            "audience": { "type": "string" },
                            "leeway": { "type": "integer", "minimum": 0 },
                            "user_id_claim": { "type": "string" },
                            "roles_claim": { "type": "string" }
                        }
                    },
                    "users": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["entity"],
                        "properties": {
                            "entity": { "type": "string" },
                            "role_field": { "type": "string" },
                            "access_ttl": { "type": "integer", "minimum": 30 }
                        }
                    }
                }
            },
            "cors": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "origins": { "type": "array", "items": { "type": "string" } }
                }
            },
            "mode": { "enum": ["development", "production"], "description": "production: `serve` never changes the schema and refuses to start while migrations are pending." },
            "limits": {
                "type": "object",
                "additionalProperties": false,
                "description": "Abuse limits of the HTTP API (docs/limits.md); read when `serve` starts.",
                "properties": {
                    "requests": {
                        "type": "object",
                        "additionalProperties": false,
                        "description": "A token bucket per principal and per client address, for every route but /_/health (default 200 a second, bursts of 400).",
                        "properties": {
                            "per_second": { "type": "integer", "minimum": 1, "maximum": 1000000 },
                            "per_minute": { "type": "integer", "minimum": 1, "maximum": 1000000 },
                            "burst": { "type": "integer", "minimum": 1, "maximum": 1000000, "description": "Requests at once before the rate applies (default: two seconds' worth)." }
                        },
                        "not": { "required": ["per_second", "per_minute"] }
                    },
                    "trusted_proxies": {
                        "type": "array",
                        "items": { "type": "string" },
                        "description": "IP addresses or CIDR blocks of reverse proxies whose `Forwarded` / `X-Forwarded-For` name the client (default: none)."
                    },
                    "signup": {
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                            "per_minute": { "type": "integer", "minimum": 1, "maximum": 1000000, "description": "Signups per client address per minute (default 10)." }
                        }
                    },
                    "connections": {
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                            "per_address": { "type": "integer", "minimum": 1, "maximum": 1000000, "description": "TCP connections open at once per client address; trusted proxies are exempt (default 256)." }
                        }
                    },
                    "password_hashes": { "type": "integer", "minimum": 1, "maximum": 1024, "description": "Password hashes computed at once by the process (default 4; about 19 MiB each)." },
                    "streams": {
                        "type": "object",
                        "additionalProperties": false,
                        "description": "Open event streams (GET /api/{plural}/events).",
                        "properties": {
                            "per_principal": { "type": "integer", "minimum": 1, "maximum": 1000000, "description": "Default 10." },
                            "per_address": { "type": "integer", "minimum": 1, "maximum": 1000000, "description": "Default 30." },
                            "total": { "type": "integer", "minimum": 1, "maximum": 1000000, "description": "Default 1000." }
                        }
                    }
                }
            },
            "webhooks": {
                "type": "object",
                "description": "Endpoints that workflow `after_commit` effects post to, by name.",
                "propertyNames": { "$ref": "#/$defs/identifier" },
                "additionalProperties": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["url"],
                    "properties": {
                        "url": { "type": "string", "pattern": "^(https?://|\\$\\{)", "description": "http(s) address; `${VAR}` reads it from the environment." },
                        "secret_env": { "type": "string", "description": "The environment variable holding the HMAC-SHA256 signing secret." },
                        "headers": { "type": "object", "additionalProperties": { "type": "string" }, "description": "Extra headers; `${VAR}` in a value reads the environment." },
                        "timeout": { "type": "integer", "minimum": 1, "maximum": 120, "description": "Seconds before an attempt is abandoned (default 10)." }
                    }
                }
            }
        },
        "$defs": { "identifier": identifier() }
    })
}

/// The JSON Schema of `workflows/*.yaml`.
pub fn workflow_schema() -> Value {
    let model = model_schema();
    let field = model["$defs"]["field"].clone();
    let states = json!({ "oneOf": [
        { "const": "*", "description": "Every state that is not final." },
        { "$ref": "#/$defs/names" }
    ]});
    let transition = json!({
        "type": "object",
        "required": ["from", "to"],
        "additionalProperties": false,
        "properties": {
            "label": { "type": "string" },
            "description": { "type": "string" },
            "from": states,
            "to": { "$ref": "#/$defs/identifier" },
            "require": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["message"],
                    "additionalProperties": false,
                    "properties": {
                        "check": { "type": "string", "description": "A minijinja expression over record, user, input and now." },
                        "where": { "type": "string", "description": "A condition on the record, checked by the database in the same statement as the change." },
                        "message": { "type": "string", "description": "What the caller is told when the guard fails." }
                    },
                    "oneOf": [ { "required": ["check"] }, { "required": ["where"] } ]
                }
            },
            "input": {
                "type": "object",
                "propertyNames": { "$ref": "#/$defs/identifier" },
                "additionalProperties": { "$ref": "#/$defs/field" }
            },
            "set": {
                "type": "object",
                "propertyNames": { "$ref": "#/$defs/identifier" },
                "description": "Values assigned with the state change: constants, `now`, `user.<claim>`, `input.<field>`, `record.<field>`, `{ expr: … }` or `{ value: … }`."
            },
            "after_commit": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["webhook"],
                    "additionalProperties": false,
                    "properties": {
                        "webhook": {
                            "type": "object",
                            "required": ["endpoint"],
                            "additionalProperties": false,
                            "properties": {
                                "endpoint": { "$ref": "#/$defs/identifier", "description": "A name under `webhooks` in trellis.yaml." },
                                "body": { "type": "string", "description": "A minijinja template; the default is a JSON description of the event." }
                            }
                        }
                    }
                }
            }
        }
    });
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": WORKFLOW_SCHEMA_ID,
        "title": "Trellis workflow",
        "description": "A state machine bound to an entity's enum field: its transitions become endpoints.",
        "type": "object",
        "required": ["entity", "field", "initial", "states", "transitions"],
        "additionalProperties": false,
        "properties": {
            "entity": { "$ref": "#/$defs/identifier" },
            "field": { "$ref": "#/$defs/identifier", "description": "The state field: an enum of exactly the workflow's states." },
            "initial": { "$ref": "#/$defs/identifier", "description": "The state of every new record." },
            "label": { "type": "string" },
            "description": { "type": "string" },
            "states": {
                "type": "object",
                "minProperties": 1,
                "propertyNames": { "$ref": "#/$defs/identifier" },
                "additionalProperties": {
                    "type": ["object", "null"],
                    "additionalProperties": false,
                    "properties": {
                        "label": { "type": "string" },
                        "description": { "type": "string" },
                        "final": { "type": "boolean", "description": "No transition leaves a final state." }
                    }
                }
            },
            "transitions": {
                "type": "object",
                "propertyNames": { "$ref": "#/$defs/identifier" },
                "additionalProperties": transition
            }
        },
        "$defs": {
            "identifier": identifier(),
            "names": names(),
            "field": field
        }
    })
}

/// The JSON Schema of `policies/*.yaml`.
pub fn policy_schema() -> Value {
    let roles = json!({ "type": "array", "items": { "type": "string" }, "minItems": 1 });
    let action = json!({
        "anyOf": [
            { "enum": ["list", "read", "create", "update", "delete", "aggregate", "*"] },
            { "type": "string", "pattern": "^transition\\.[a-z][a-z0-9_]*$" }
        ]
    });
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": POLICY_SCHEMA_ID,
        "title": "Trellis policy",
        "description": "Who may do what with one entity. Default deny; deny rules win.",
        "type": "object",
        "required": ["entity"],
        "additionalProperties": false,
        "properties": {
            "entity": { "type": "string", "description": "The entity; must match the file name." },
            "conditions": {
                "type": "object",
                "description": "Named conditions, usable by name in `where`.",
                "additionalProperties": { "type": "string" }
            },
            "rules": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["roles"],
                    "additionalProperties": false,
                    "properties": {
                        "name": { "type": "string" },
                        "roles": roles.clone(),
                        "allow": { "type": "array", "items": action.clone() },
                        "deny": { "type": "array", "items": action },
                        "where": { "type": "string", "description": "A condition, or the name of one." }
                    }
                }
            },
            "fields": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "read": { "type": "object", "additionalProperties": false, "properties": { "roles": roles.clone(), "where": { "type": "string", "description": "The field shows only on records where this holds." } } },
                        "write": {
                            "anyOf": [
                                { "enum": ["never", "on_create"] },
                                { "type": "object", "additionalProperties": false, "minProperties": 1, "properties": { "roles": roles, "where": { "type": "string", "description": "Callers without one of `roles` (who always may) write the field only where this holds: on the stored record before an update, on the new record on create." } } }
                            ]
                        },
                        "on_create": { "type": "string", "pattern": "^user\\." }
                    }
                }
            },
            "tests": { "type": "array" }
        }
    })
}
