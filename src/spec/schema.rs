//! JSON Schemas of Trellis's own file formats, for editors (autocomplete, underlines).
//!
//! The loader is the authority; these schemas describe the same keys so that an editor
//! catches most mistakes while a person types. A test validates every YAML file in the
//! repository against them, and another keeps the copies in `schemas/` current.

use serde_json::{Value, json};

use super::model::{ENTITY_KEYS, FieldType, RESERVED_FIELDS, SYSTEM_FIELDS};
use super::policy::BASE_ACTIONS;
use super::settings::{
    LIMIT_MAX, MAX_ACCESS_TTL, MAX_LEEWAY, MAX_PENDING_TTL, MAX_UPLOAD_LIMIT, MAX_URL_TTL,
    MAX_WEBHOOK_TIMEOUT, MIN_ACCESS_TTL,
};

pub const MODEL_SCHEMA_ID: &str = "https://trellis.dev/schemas/model.schema.json";
pub const SETTINGS_SCHEMA_ID: &str = "https://trellis.dev/schemas/trellis.schema.json";
pub const POLICY_SCHEMA_ID: &str = "https://trellis.dev/schemas/policy.schema.json";
pub const WORKFLOW_SCHEMA_ID: &str = "https://trellis.dev/schemas/workflow.schema.json";
pub const MIGRATION_SCHEMA_ID: &str = "https://trellis.dev/schemas/migration.schema.json";

fn identifier() -> Value {
    json!({ "type": "string", "pattern": "^[a-z][a-z0-9]*(_[a-z0-9]+)*$", "maxLength": 48 })
}

/// A schema ready for editors. Those that read it as draft 7 ignore the keys beside a
/// `$ref` (the hover text among them), so each such `$ref` moves into an `allOf`.
fn finish(mut schema: Value) -> Value {
    wrap_refs(&mut schema);
    schema
}

fn wrap_refs(v: &mut Value) {
    match v {
        Value::Object(o) => {
            // Editors show the hover text of the branch of an `anyOf` that matches:
            // each branch gets the text of the whole unless it has its own.
            for key in ["description", "markdownDescription"] {
                let Some(text) = o.get(key).cloned() else {
                    continue;
                };
                for branches in ["anyOf", "oneOf"] {
                    if let Some(items) = o.get_mut(branches).and_then(Value::as_array_mut) {
                        for item in items.iter_mut().filter_map(Value::as_object_mut) {
                            if !item.contains_key("description") {
                                item.insert(key.into(), text.clone());
                            }
                        }
                    }
                }
            }
            if o.len() > 1
                && let Some(target) = o.remove("$ref")
            {
                let reference = json!({ "$ref": target });
                match o.get_mut("allOf").and_then(Value::as_array_mut) {
                    Some(all) => all.insert(0, reference),
                    None => {
                        o.insert("allOf".into(), json!([reference]));
                    }
                }
            }
            for (_, child) in o.iter_mut() {
                wrap_refs(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(wrap_refs),
        _ => {}
    }
}

/// `schema` with a plain-words `description` (what editors show on hover).
fn doc(mut schema: Value, text: &str) -> Value {
    if let Some(o) = schema.as_object_mut() {
        o.insert("description".into(), json!(text));
    }
    schema
}

/// `schema` with a `description` and a `markdownDescription` that adds a short YAML
/// example (editors that render Markdown show the example on hover).
fn doc_example(schema: Value, text: &str, example: &str) -> Value {
    let mut schema = doc(schema, text);
    if let Some(o) = schema.as_object_mut() {
        o.insert(
            "markdownDescription".into(),
            json!(format!("{text}\n\n```yaml\n{example}\n```")),
        );
    }
    schema
}

/// One snake_case name, or a list of them (a single name is a list of one, as the
/// loader reads every list of names).
fn names() -> Value {
    json!({
        "anyOf": [
            { "$ref": "#/$defs/identifier" },
            { "type": "array", "items": { "$ref": "#/$defs/identifier" } }
        ]
    })
}

/// One word, or a list of words (roles, actions, origins, claims): a single word is a
/// list of one, as in the loader.
fn words(item: Value) -> Value {
    json!({ "anyOf": [ item.clone(), { "type": "array", "items": item } ] })
}

/// A condition of the condition language (or `true`/`false`).
fn condition(text: &str, example: &str) -> Value {
    doc_example(json!({ "type": ["string", "boolean"] }), text, example)
}

/// Plain words about each field type, for hover text on `type`.
fn type_doc(ty: FieldType) -> &'static str {
    match ty {
        FieldType::String => {
            "string: short text (a name, a title). Takes `min`/`max` (length) and `pattern`."
        }
        FieldType::Text => {
            "text: long text (a description, notes). Like string, but aggregates do not group by it."
        }
        FieldType::Integer => "integer: a whole number (64-bit). Takes `min`/`max`.",
        FieldType::Number => {
            "number: a floating-point number. For money use decimal. Takes `min`/`max`."
        }
        FieldType::Decimal => {
            "decimal: an exact number with a fixed number of digits after the point (money). Takes `scale`, `precision`, `min`/`max`."
        }
        FieldType::Boolean => "boolean: true or false.",
        FieldType::Date => "date: a calendar day, written 2025-01-31.",
        FieldType::Datetime => "datetime: an instant, written 2025-01-31T09:00:00Z (kept in UTC).",
        FieldType::Uuid => "uuid: a UUID, e.g. an identifier from another system.",
        FieldType::Email => "email: an email address, checked when written. Takes `max`.",
        FieldType::Url => "url: a web address, checked when written. Takes `max`.",
        FieldType::Enum => "enum: one of the words listed in `values`.",
        FieldType::Json => {
            "json: any JSON value (an object, a list, text, a number). Cannot be unique."
        }
        FieldType::Ref => {
            "ref: a link to one record of another entity (`to`); the field holds that record's id."
        }
        FieldType::Many => {
            "many: links to any number of records of another entity (`of`), kept in a link table; the field holds their ids."
        }
        FieldType::Inverse => {
            "inverse: the records of another entity (`of`) whose ref field (`via`) points to this record. Read-only, no column of its own."
        }
        FieldType::File => {
            "file: an uploaded file (or several with `multiple: true`), its content in object storage, its metadata (name, size, sniffed type) in the record. Takes `max_size`, `accept`, `thumbs`, `max_count`."
        }
    }
}

fn common(ty: FieldType, extra: Value) -> Value {
    let mut props = json!({
        "required": doc(json!({ "type": "boolean" }), "true: every record has a value: a create that leaves it out (and has no `default` to fall back on) is refused, and it can never be set to null. Default false."),
        "unique": doc(json!({ "type": "boolean" }), "true: no two records may have the same value (a unique index). Default false. For uniqueness over several fields, use the entity's `unique:`."),
        "label": doc(json!({ "type": "string" }), "A human-readable name of the field, shown as its title in the API documentation."),
        "description": doc(json!({ "type": "string" }), "What the field holds, in a sentence; shown in the API documentation."),
        "renamed_from": doc_example(
            json!({ "$ref": "#/$defs/identifier" }),
            "The field's previous name: the next migration renames the column and keeps its data, instead of dropping the old field and adding an empty one.",
            "full_name: { type: string, renamed_from: name }",
        )
    });
    if let (Some(p), Some(d)) = (props.as_object_mut(), ty.rules().default_schema()) {
        p.insert("default".into(), d);
    }
    if let Some(p) = props.as_object_mut()
        && !ty.rules().may_be_unique()
    {
        p.insert(
            "unique".into(),
            doc(
                json!({ "const": false }),
                "A field of this type cannot be unique.",
            ),
        );
    }
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
        common(ty, rules.editor_keys())
    } else {
        let mut props = json!({
            "label": doc(json!({ "type": "string" }), "A human-readable name of the field, shown as its title in the API documentation."),
            "description": doc(json!({ "type": "string" }), "What the field holds, in a sentence; shown in the API documentation.")
        });
        if let (Some(p), Value::Object(own)) = (props.as_object_mut(), rules.editor_keys()) {
            p.extend(own);
        }
        props
    };
    if let Some(o) = props.as_object_mut() {
        o.insert("type".into(), doc(json!({ "const": name }), type_doc(ty)));
    }
    let mut required = vec!["type"];
    required.extend(rules.required_keys());
    json!({
        "if": { "properties": { "type": { "const": name } }, "required": ["type"] },
        "then": { "properties": props, "required": required, "additionalProperties": false }
    })
}

/// The schema of one field definition (a model's `fields` and a transition's `input`).
fn field_def() -> Value {
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
    let all_types: Vec<String> = FieldType::ALL
        .iter()
        .map(|(_, t)| format!("- {}", type_doc(*t)))
        .collect();
    let type_text = "The field's type: string, text, integer, number, decimal, boolean, date, datetime, uuid, email, url, enum, json, ref, many or inverse.";
    doc_example(
        // if/then/else rather than oneOf, so that an editor's message names the key
        // that is wrong (`/fields/n/default`) rather than the whole field.
        json!({
            "type": ["string", "object"],
            "if": { "type": "string" },
            "then": doc(json!({ "enum": simple_types }), "Shorthand: just the type, e.g. `deadline: date` (not for enum, ref, many and inverse, which need more keys)."),
            "else": {
                "required": ["type"],
                "properties": {
                    "type": {
                        "enum": type_names,
                        "description": type_text,
                        "markdownDescription": format!("{type_text}\n\n{}", all_types.join("\n"))
                    }
                },
                "allOf": variants
            }
        }),
        "A field: a type name (`deadline: date`), or a mapping with `type` and the type's options.",
        "title:  { type: string, required: true, max: 200 }\nbudget: { type: decimal, scale: 2, min: 0 }\nstatus: { type: enum, values: [draft, open], default: draft }\nclient: { type: ref, to: organization, on_delete: restrict }\ndeadline: date",
    )
}

/// The JSON Schema of `models/*.yaml`.
pub fn model_schema() -> Value {
    let group = doc_example(
        json!({ "type": "array", "items": names() }),
        "Combinations of fields whose values no two records may share (a unique index each): a list of field lists.",
        "unique:\n  - [client, title]   # one title per client",
    );
    // An index may list a field in descending order, as `sort=` does: `-price`.
    let sorted = json!({
        "type": "string",
        "pattern": "^-?[a-z][a-z0-9_]*$",
        "description": "A field; `-field` in descending order (an index for a sort)."
    });
    let index_group = doc_example(
        json!({
            "type": "array",
            "items": {
                "anyOf": [
                    sorted.clone(),
                    { "type": "array", "items": sorted }
                ]
            }
        }),
        "Database indexes, each a list of fields, to make common filters and sorts fast. An index for a sorted list lists the filter fields, then the sort fields as in `sort=` (`-price` descending), then `id`.",
        "indexes:\n  - [status, deadline]\n  - [status, -budget, id]",
    );
    let mut reserved: Vec<&str> = SYSTEM_FIELDS.to_vec();
    reserved.extend(RESERVED_FIELDS);
    let _ = ENTITY_KEYS;
    finish(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": MODEL_SCHEMA_ID,
        "title": "Trellis model",
        "description": "One entity of a Trellis project: its fields become a table and a REST API.",
        "type": "object",
        "required": ["entity", "fields"],
        "additionalProperties": false,
        "properties": {
            "entity": doc(json!({ "$ref": "#/$defs/identifier" }), "The entity's name in snake_case; it must match the file name (models/project.yaml says `entity: project`). It names the table, and its plural the routes."),
            "plural": doc_example(json!({ "$ref": "#/$defs/identifier" }), "The name used in routes: /api/<plural>. Default: the English plural of the entity (project → projects, category → categories).", "entity: person\nplural: people   # /api/people"),
            "label": doc(json!({ "type": "string" }), "A human-readable name of the entity; it names the entity's group of routes in the API documentation."),
            "description": doc(json!({ "type": "string" }), "What the entity is, in a sentence; shown in the API documentation."),
            "fields": doc_example(
                json!({
                    "type": "object",
                    "minProperties": 1,
                    "propertyNames": { "$ref": "#/$defs/identifier", "not": { "enum": reserved } },
                    "additionalProperties": { "$ref": "#/$defs/field" }
                }),
                "The entity's fields, by name (snake_case). Every record also has `id`, `created_at`, `updated_at` and `version` without declaring them.",
                "fields:\n  title: { type: string, required: true }\n  deadline: date",
            ),
            "indexes": index_group,
            "unique": group,
            "search": doc_example(names(), "The string and text fields that full-text search (`q=` on a list) looks in.", "search: [title, summary]")
        },
        "$defs": {
            "identifier": identifier(),
            "field": field_def()
        }
    }))
}

/// A whole number from `min` to `max`, as the loader's range checks.
fn whole(min: u64, max: u64, text: &str) -> Value {
    doc(
        json!({ "type": "integer", "minimum": min, "maximum": max }),
        text,
    )
}

/// The JSON Schema of `trellis.yaml`.
pub fn settings_schema() -> Value {
    let per = |text: &str| whole(1, LIMIT_MAX, text);
    finish(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SETTINGS_SCHEMA_ID,
        "title": "Trellis project settings",
        "description": "The project's settings. Every key is optional; an empty file is a project with the defaults.",
        "type": ["object", "null"],
        "additionalProperties": false,
        "properties": {
            "name": doc(json!({ "type": "string" }), "The API's name, shown as the title of its documentation (OpenAPI)."),
            "description": doc(json!({ "type": "string" }), "What the API is for; shown in its documentation (OpenAPI)."),
            "database": doc_example(json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "url": doc(json!({ "type": "string" }), "sqlite://path/to/file.db or postgres://user@host/db. `${VAR}` reads an environment variable, so passwords stay out of the file. `--database-url` and DATABASE_URL take precedence.")
                }
            }), "Which database to use. Default: the SQLite file .trellis/data.db in the project folder.", "database:\n  url: \"${DATABASE_URL}\""),
            "auth": doc_example(json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "claims": doc_example(words(json!({ "type": "string" })), "Claims of the token, besides `id` and `roles`, that policy conditions may use as `user.<claim>`.", "claims: [org]   # then `where: organization = user.org`"),
                    "open_without_policies": doc(json!({ "type": "boolean" }), "true: serve an open API on purpose when the project has no policy files. Without it, authentication with no policies is an error (fail closed). Default false."),
                    "jwt": doc_example(json!({
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                            "algorithm": doc(json!({ "enum": ["HS256", "RS256", "ES256"] }), "How tokens are signed: HS256 (a shared secret, `secret_env`; needed for built-in users) or RS256/ES256 (a public key, `public_key_file` or `jwks_file`). Default HS256."),
                            "secret_env": doc(json!({ "type": "string" }), "The name of the environment variable that holds the HS256 secret (never the secret itself)."),
                            "public_key_file": doc(json!({ "type": "string" }), "A PEM public key file, relative to the project folder (RS256, ES256)."),
                            "jwks_file": doc(json!({ "type": "string" }), "A JWKS file of public keys, relative to the project folder (RS256, ES256); the token's `kid` picks the key."),
                            "issuer": doc(json!({ "type": "string" }), "If set, a token's `iss` claim must be exactly this."),
                            "audience": doc(json!({ "type": "string" }), "If set, a token's `aud` claim must name this audience."),
                            "leeway": whole(0, MAX_LEEWAY, "Seconds of clock difference tolerated when checking `exp` and `nbf`, from 0 to 3600. Default 30."),
                            "user_id_claim": doc(json!({ "type": "string" }), "The claim that holds the caller's id (`user.id` in conditions). Default `sub`."),
                            "roles_claim": doc(json!({ "type": "string" }), "The claim that holds the caller's roles (a list, or one role). Default `roles`.")
                        },
                        // HS256 (the default) needs its secret; RS256 and ES256 a key.
                        "if": { "properties": { "algorithm": { "enum": ["RS256", "ES256"] } }, "required": ["algorithm"] },
                        "then": { "anyOf": [ { "required": ["public_key_file"] }, { "required": ["jwks_file"] } ] },
                        "else": { "required": ["secret_env"] }
                    }), "Accept JSON Web Tokens (`Authorization: Bearer …`) issued by Trellis's built-in users or by another service.", "jwt:\n  algorithm: HS256\n  secret_env: TRELLIS_JWT_SECRET"),
                    "users": doc_example(json!({
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["entity"],
                        "properties": {
                            "entity": doc(json!({ "type": "string" }), "The entity whose records are the accounts; it needs a required, unique `email` field."),
                            "role_field": doc(json!({ "type": "string" }), "A field of that entity whose value is the account's role in its tokens (e.g. an enum `role`)."),
                            "access_ttl": whole(MIN_ACCESS_TTL, MAX_ACCESS_TTL, "How long an access token lasts, in seconds: from 30 to 86400 (a day). Default 900 (15 minutes).")
                        }
                    }), "Built-in accounts: POST /auth/signup and /auth/login on an entity of the model. Needs `jwt` with HS256: Trellis signs the tokens with that secret.", "users:\n  entity: user\n  role_field: role\n  access_ttl: 900")
                }
            }), "How callers prove who they are: JWTs (`jwt`), built-in accounts (`users`), and the claims conditions may use.", "auth:\n  jwt: { algorithm: HS256, secret_env: TRELLIS_JWT_SECRET }\n  users: { entity: user, role_field: role }\n  claims: [org]"),
            "cors": doc_example(json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "origins": doc(words(json!({ "type": "string", "pattern": "^(\\*|https?://[^/]+)$" })), "Browser origins allowed to call the API: scheme, host and optional port, no path (`http://localhost:5173`); `*` for any.")
                }
            }), "Which web pages (origins) may call the API from a browser. Read when `serve` starts.", "cors:\n  origins: [\"http://localhost:5173\"]"),
            "mode": doc(json!({ "enum": ["development", "production"] }), "development (default): `serve` creates and changes tables to match the models. production: `serve` never changes the schema and refuses to start while migrations are pending (`trellis migrate`)."),
            "limits": doc_example(json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "requests": doc(json!({
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                            "per_second": per("Requests per second per caller (default 200)."),
                            "per_minute": per("Requests per minute per caller, instead of `per_second`."),
                            "burst": per("Requests at once before the rate applies (default: two seconds' worth).")
                        },
                        "not": { "required": ["per_second", "per_minute"] }
                    }), "A rate per signed-in caller and per client address, for every route but /_/health (default 200 a second, bursts of 400). Give `per_second` or `per_minute`, not both."),
                    "trusted_proxies": doc(words(json!({ "type": "string", "pattern": "^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$" })), "IP addresses or CIDR blocks (`10.0.0.0/8`) of reverse proxies whose `Forwarded` / `X-Forwarded-For` headers name the client (default: none)."),
                    "signup": doc(json!({
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                            "per_minute": per("Signups per client address per minute (default 10).")
                        }
                    }), "Limits of POST /auth/signup."),
                    "connections": doc(json!({
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                            "per_address": per("TCP connections open at once per client address; trusted proxies are exempt (default 256).")
                        }
                    }), "Limits of open connections."),
                    "password_hashes": whole(1, 1024, "Password hashes computed at once by the process, from 1 to 1024 (default 4; about 19 MiB of memory each)."),
                    "streams": doc(json!({
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                            "per_principal": per("Streams open at once per signed-in caller (default 10)."),
                            "per_address": per("Streams open at once per client address (default 30)."),
                            "total": per("Streams open at once in all (default 1000).")
                        }
                    }), "Limits of open event streams (GET /api/<plural>/events).")
                }
            }), "Abuse limits of the HTTP API (docs/limits.md), read when `serve` starts. Limits cannot be turned off; each is a whole number from 1 to 1000000.", "limits:\n  requests: { per_second: 200, burst: 400 }\n  trusted_proxies: [\"127.0.0.1\"]"),
            "files": doc_example(json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "storage": doc(json!({ "enum": ["local", "s3"] }), "Where file content is stored: `local` (a folder, `dir`; the default) or `s3` (an S3-compatible bucket, `s3`)."),
                    "dir": doc(json!({ "type": "string", "minLength": 1 }), "The folder of `storage: local`, relative to the project folder. Default `.trellis/files`."),
                    "s3": doc_example(json!({
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["bucket"],
                        "properties": {
                            "bucket": doc(json!({ "type": "string" }), "The bucket's name."),
                            "region": doc(json!({ "type": "string" }), "The bucket's region. Default `us-east-1`."),
                            "endpoint": doc(json!({ "type": "string", "pattern": "^https?://\\S+$" }), "The address of an S3-compatible server other than AWS (MinIO, R2, a local server); requests are path-style (`<endpoint>/<bucket>/<key>`)."),
                            "prefix": doc(json!({ "type": "string", "pattern": "^[^/]" }), "Put every key under this prefix (`trellis/`), to share a bucket."),
                            "allow_http": doc(json!({ "type": "boolean" }), "Allow a plain-http `endpoint` (a server on this machine or a private network). Default false.")
                        }
                    }), "An S3-compatible bucket. Credentials come from the environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN); without them, the instance's role.", "s3:\n  bucket: my-app-files\n  region: eu-west-1"),
                    "max_upload": doc(json!({ "anyOf": [
                        { "type": "integer", "minimum": 1, "maximum": MAX_UPLOAD_LIMIT },
                        { "type": "string", "pattern": "^[0-9]+(\\.[0-9]+)? ?([KMGT]i?B|B)?$" }
                    ]}), "The largest upload: bytes, or a size with a unit (KiB, MiB, GiB are 1024-based; KB, MB, GB 1000-based; `1.5GiB`), at most 64 GiB. No file field's `max_size` may be larger. Default 1GiB."),
                    "url_ttl": whole(1, MAX_URL_TTL, "Seconds a signed download link works, from 1 to 86400 (a day). Default 300."),
                    "pending_ttl": whole(1, MAX_PENDING_TTL, "Seconds after which an upload that no record took is removed (its request failed or the server stopped mid-upload), from 1 to 604800 (a week). It must be longer than the slowest upload. Default 3600."),
                    "upload_timeout": whole(1, MAX_URL_TTL, "Seconds an upload request may last in all, from 1 to 86400, and less than `pending_ttl`; while its bytes keep coming the request deadline does not cut it (a pause longer than the deadline does). Default 1800, or half of a shorter `pending_ttl`."),
                    "signing_secret_env": doc(json!({ "type": "string" }), "The environment variable holding the secret that signs download links. Default: the HS256 JWT secret (`auth.jwt.secret_env`); without either, a random secret for each run.")
                }
            }), "File fields' storage and limits (docs/files.md), read when `serve` starts.", "files:\n  storage: s3\n  s3: { bucket: my-app-files, region: eu-west-1 }\n  max_upload: 100MiB\n  url_ttl: 300"),
            "webhooks": doc_example(json!({
                "type": "object",
                "propertyNames": { "$ref": "#/$defs/identifier" },
                "additionalProperties": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["url"],
                    "properties": {
                        "url": doc(json!({ "type": "string", "pattern": "^(https?://|\\$\\{)\\S*$" }), "The http(s) address deliveries are posted to; `${VAR}` reads it from the environment."),
                        "secret_env": doc(json!({ "type": "string" }), "The environment variable holding the secret that signs every delivery (HMAC-SHA256)."),
                        "headers": doc(json!({ "type": "object", "propertyNames": { "pattern": "^[A-Za-z0-9-]+$" }, "additionalProperties": { "type": "string" } }), "Extra headers sent with every delivery; `${VAR}` in a value reads the environment (for tokens)."),
                        "timeout": whole(1, MAX_WEBHOOK_TIMEOUT, "Seconds before a delivery attempt is abandoned and retried later, from 1 to 120 (default 10).")
                    }
                }
            }), "Endpoints that workflow `after_commit` effects post to, by name. Deliveries are queued with the change and retried with backoff (up to 12 attempts).", "webhooks:\n  crm:\n    url: \"${CRM_WEBHOOK_URL}\"\n    secret_env: CRM_WEBHOOK_SECRET\n    timeout: 10")
        },
        "$defs": { "identifier": identifier() }
    }))
}

/// The JSON Schema of `workflows/*.yaml`.
pub fn workflow_schema() -> Value {
    let model = model_schema();
    let field = model["$defs"]["field"].clone();
    let states = doc_example(
        json!({ "anyOf": [
            doc(json!({ "const": "*" }), "Every state that is not final."),
            names()
        ]}),
        "The state(s) the transition leaves from: one state, a list, or \"*\" (every state that is not final).",
        "from: [open, in_review]",
    );
    let guard = json!({
        "type": "object",
        "required": ["message"],
        "additionalProperties": false,
        "properties": {
            "check": doc_example(json!({ "type": "string" }), "An expression (minijinja) over `record` (before the change), `user`, `input` and `now`; the transition is refused when it is false.", "check: \"record.budget is not none and record.budget > 0\""),
            "where": doc_example(json!({ "type": "string" }), "A condition on the record in the condition language (as in policies), checked by the database in the same statement as the change.", "where: skills is set"),
            "message": doc(json!({ "type": "string" }), "What the caller is told when this guard fails (every failing guard is reported).")
        },
        "oneOf": [ { "required": ["check"] }, { "required": ["where"] } ]
    });
    let transition = json!({
        "type": "object",
        "required": ["from", "to"],
        "additionalProperties": false,
        "properties": {
            "label": doc(json!({ "type": "string" }), "A human-readable name of the transition (a button's text); shown in the API documentation and diagrams."),
            "description": doc(json!({ "type": "string" }), "What the transition does, in a sentence; shown in the API documentation."),
            "from": states,
            "to": doc(json!({ "$ref": "#/$defs/identifier" }), "The state the record is in after the transition."),
            "require": doc_example(
                json!({ "type": "array", "items": guard }),
                "Guards: conditions that must hold for the transition to happen, each with the message the caller gets otherwise. Each has `check` (an expression) or `where` (a condition on the record).",
                "require:\n  - check: \"record.budget > 0\"\n    message: Set a budget before publishing\n  - where: skills is set\n    message: Add at least one skill",
            ),
            "input": doc_example(
                json!({
                    "type": "object",
                    "propertyNames": { "$ref": "#/$defs/identifier" },
                    "additionalProperties": {
                        "allOf": [
                            { "$ref": "#/$defs/field" },
                            { "properties": { "type": doc(json!({ "not": { "enum": ["many", "inverse"] } }), "An input field holds a value: any type but many and inverse (a ref for a link).") } }
                        ]
                    }
                }),
                "The body the transition's request takes, declared like a model's fields (not many or inverse); guards, `set` and webhook bodies read it as `input.<name>`.",
                "input:\n  reason: { type: text, required: true, max: 2000 }",
            ),
            "set": doc_example(
                json!({
                    "type": "object",
                    "propertyNames": { "$ref": "#/$defs/identifier" },
                    "additionalProperties": {
                        "anyOf": [
                            {
                                "type": "object",
                                "additionalProperties": false,
                                "minProperties": 1,
                                "maxProperties": 1,
                                "properties": {
                                    "expr": doc(json!({ "type": "string" }), "An expression (minijinja) over `record`, `user`, `input` and `now` whose value is assigned."),
                                    "value": doc(json!({}), "A constant assigned as written (e.g. the text `now` rather than the time).")
                                }
                            },
                            { "not": { "type": "object" } }
                        ]
                    }
                }),
                "Fields assigned with the state change: a constant, `now`, `user.<claim>`, `input.<field>`, `record.<field>`, `{ expr: … }` or `{ value: … }`.",
                "set:\n  published_at: now\n  closed_by: user.id\n  close_reason: input.reason",
            ),
            "after_commit": doc_example(
                json!({
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["webhook"],
                        "additionalProperties": false,
                        "properties": {
                            "webhook": doc(json!({
                                "type": "object",
                                "required": ["endpoint"],
                                "additionalProperties": false,
                                "properties": {
                                    "endpoint": doc(json!({ "$ref": "#/$defs/identifier" }), "A name under `webhooks` in trellis.yaml."),
                                    "body": doc(json!({ "type": "string" }), "A minijinja template of the body, over record, user, input, now, entity, transition, from and to; the default is a JSON description of the event.")
                                }
                            }), "Post to a webhook endpoint once the transition is committed (queued, retried).")
                        }
                    }
                }),
                "Effects after the transition is committed: webhook deliveries.",
                "after_commit:\n  - webhook: { endpoint: notifications }",
            )
        }
    });
    finish(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": WORKFLOW_SCHEMA_ID,
        "title": "Trellis workflow",
        "description": "A state machine bound to an entity's enum field: its transitions become endpoints.",
        "type": "object",
        "required": ["entity", "field", "initial", "states", "transitions"],
        "additionalProperties": false,
        "properties": {
            "entity": doc(json!({ "$ref": "#/$defs/identifier" }), "The entity the workflow is for; it must match the file name (workflows/project.yaml says `entity: project`)."),
            "field": doc(json!({ "$ref": "#/$defs/identifier" }), "The state field: an enum field of the entity whose `values` are exactly the workflow's states. Only transitions change it."),
            "initial": doc(json!({ "$ref": "#/$defs/identifier" }), "The state every new record starts in."),
            "label": doc(json!({ "type": "string" }), "A human-readable name of the workflow."),
            "description": doc(json!({ "type": "string" }), "What the workflow is for, in a sentence."),
            "states": doc_example(json!({
                "type": "object",
                "minProperties": 1,
                "propertyNames": { "$ref": "#/$defs/identifier" },
                "additionalProperties": {
                    "type": ["object", "null"],
                    "additionalProperties": false,
                    "properties": {
                        "label": doc(json!({ "type": "string" }), "A human-readable name of the state."),
                        "description": doc(json!({ "type": "string" }), "What the state means, in a sentence."),
                        "final": doc(json!({ "type": "boolean" }), "true: no transition leaves this state, and `from: \"*\"` leaves it out. Default false.")
                    }
                }
            }), "The states, by name (the values of the state field).", "states:\n  draft: { label: Draft }\n  open: {}\n  closed: { final: true }"),
            "transitions": doc_example(json!({
                "type": "object",
                "propertyNames": { "$ref": "#/$defs/identifier" },
                "additionalProperties": transition
            }), "The transitions, by name: each becomes POST /api/<plural>/{id}/<name>, allowed by policies as `transition.<name>`.", "transitions:\n  publish:\n    from: draft\n    to: open\n    set: { published_at: now }")
        },
        "$defs": {
            "identifier": identifier(),
            "field": field
        }
    }))
}

/// The JSON Schema of `policies/*.yaml`.
pub fn policy_schema() -> Value {
    let roles = |text: &str| {
        doc_example(
            words(json!({ "type": "string" })),
            text,
            "roles: [client, admin]",
        )
    };
    let action = json!({
        "anyOf": [
            { "enum": BASE_ACTIONS },
            { "type": "string", "pattern": "^transition\\.[a-z][a-z0-9_]*$" }
        ]
    });
    let actions = |text: &str, example: &str| doc_example(words(action.clone()), text, example);
    let row = json!({ "type": "object" });
    let test = json!({
        "type": "object",
        "required": ["as", "expect"],
        "additionalProperties": false,
        "properties": {
            "name": doc(json!({ "type": "string" }), "What the test shows, in a sentence; `trellis test` prints it."),
            "as": doc_example(json!({
                "anyOf": [
                    doc(json!({ "const": "anonymous" }), "A caller without a token."),
                    {
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                            "id": doc(json!({ "type": "string" }), "The caller's user id (`user.id`); `$name` is the id of a setup row named `name`. Default `test-user`."),
                            "roles": doc(words(json!({ "type": "string" })), "The caller's roles (`authenticated` is added)."),
                            "claims": doc(json!({ "type": "object" }), "More claims of the caller, as `user.<claim>` in conditions (those listed in `auth.claims`).")
                        }
                    }
                ]
            }), "Who tries the actions: `anonymous`, or a signed-in caller with an id, roles and claims.", "as: { id: $ann, roles: [client] }"),
            "setup": doc_example(json!({
                "type": "object",
                "propertyNames": { "$ref": "#/$defs/identifier" },
                "additionalProperties": { "anyOf": [ row.clone(), { "type": "array", "items": row } ] }
            }), "Rows created first, in order, by entity: a row or a list of rows (their fields). `$id: name` names a row; `$name` elsewhere stands for its id.", "setup:\n  user: [{ $id: ann, email: ann@acme.example, display_name: Ann }]\n  organization: [{ $id: acme, name: Acme, slug: acme, members: [$ann] }]"),
            "record": doc_example(json!({ "type": "object" }), "The record of this policy's entity the actions are tried on (its fields). `create` creates it first; the other actions use the created record.", "record: { title: Draft plan, client: $acme, status: draft }"),
            "change": doc_example(json!({ "type": "object" }), "The body the `update` action sends (default: no field, \"may I update at all?\"). It goes through the field write rules.", "change: { proposed_rate: 200 }"),
            "expect": doc_example(json!({
                "type": "object",
                "propertyNames": { "pattern": "^(list|read|create|update|delete|read\\..+)$" },
                "properties": {
                    "list": doc(json!({ "enum": ["allow", "deny"] }), "Does the record appear in the caller's list?"),
                    "read": doc(json!({ "enum": ["allow", "deny"] }), "May the caller read the record?"),
                    "create": doc(json!({ "enum": ["allow", "deny"] }), "May the caller create the record?"),
                    "update": doc(json!({ "enum": ["allow", "deny"] }), "May the caller update the record (with `change` as the body)?"),
                    "delete": doc(json!({ "enum": ["allow", "deny"] }), "May the caller delete the record? Tried last.")
                },
                "additionalProperties": doc(json!({ "enum": ["allow", "deny"] }), "`read.<field>`: does the caller read the record with this field (allow), or not (deny: the record or the field is hidden)?")
            }), "The outcome of each action: `allow` or `deny`. Actions: list, read, create, update, delete, and `read.<field>`.", "expect: { list: allow, read: allow, update: deny, read.internal_notes: deny }")
        }
    });
    finish(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": POLICY_SCHEMA_ID,
        "title": "Trellis policy",
        "description": "Who may do what with one entity. Default deny; deny rules win.",
        "type": "object",
        "required": ["entity"],
        "additionalProperties": false,
        "properties": {
            "entity": doc(json!({ "type": "string" }), "The entity the policy is for; it must match the file name (policies/project.yaml says `entity: project`)."),
            "conditions": doc_example(json!({
                "type": "object",
                "propertyNames": { "$ref": "#/$defs/identifier" },
                "additionalProperties": condition("A condition on the record, in the condition language.", "mine: client.members has user.id")
            }), "Named conditions, usable by name in a rule's or a field rule's `where`.", "conditions:\n  published: status in [open, in_review, closed]\n  mine: client.members has user.id"),
            "rules": doc_example(json!({
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["roles"],
                    "anyOf": [ { "required": ["allow"] }, { "required": ["deny"] } ],
                    "additionalProperties": false,
                    "properties": {
                        "name": doc(json!({ "type": "string" }), "What the rule is for, in a sentence; `trellis explain` shows it."),
                        "roles": roles("Whom the rule applies to: `anonymous` (no token), `authenticated` (any signed-in caller) or the token's roles. One role or a list."),
                        "allow": actions("Actions the rule allows: list, read, create, update, delete, aggregate, `transition.<name>`, or `*` (all). One or a list.", "allow: [list, read, transition.publish]"),
                        "deny": actions("Actions the rule denies; a deny that applies wins over every allow.", "deny: [delete]\nwhere: status = closed"),
                        "where": condition("The rule applies only to records where this condition holds (or the name of one under `conditions`). Without it: all records.", "where: status = open or mine")
                    }
                }
            }), "The rules. A caller may do an action on the records some applying allow rule covers, minus those an applying deny rule covers; nothing else (default deny).", "rules:\n  - name: Members manage their projects\n    roles: [client]\n    allow: [list, read, update]\n    where: mine"),
            "fields": doc_example(json!({
                "type": "object",
                "propertyNames": { "$ref": "#/$defs/identifier" },
                "additionalProperties": {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "read": doc_example(json!({
                            "type": "object",
                            "additionalProperties": false,
                            "properties": {
                                "roles": roles("These roles always see the field; without `where`, nobody else does."),
                                "where": condition("Others see the field only on records where this holds.", "where: status = open or mine")
                            }
                        }), "Who sees the field. Hidden fields are never returned, filtered, sorted or expanded.", "read: { roles: [admin], where: mine }"),
                        "write": doc_example(json!({
                            "anyOf": [
                                doc(json!({ "enum": ["never", "on_create"] }), "never: no request writes it (only a transition's `set`); on_create: given on create, fixed afterwards."),
                                {
                                    "type": "object",
                                    "additionalProperties": false,
                                    "minProperties": 1,
                                    "properties": {
                                        "roles": roles("These roles may always write the field."),
                                        "where": condition("Other callers allowed to update the record write the field only where this holds: on the stored record before an update, on the new record on create.", "where: status = draft")
                                    }
                                }
                            ]
                        }), "Who may write the field: `never`, `on_create`, or `{ roles, where }`. A refused write is a 422 naming the field.", "write: { roles: [admin], where: status = draft }"),
                        "on_create": doc_example(json!({ "type": "string", "pattern": "^user\\." }), "Fill the field on create from a claim of the caller; giving it explicitly is refused unless `write` roles allow it.", "on_create: user.id")
                    }
                }
            }), "Rules for single fields, by field name: who reads them, who writes them.", "fields:\n  budget: { read: { roles: [admin] } }\n  client: { write: on_create }\n  author: { on_create: user.id, write: never }"),
            "tests": doc_example(
                json!({ "type": "array", "items": test }),
                "Policy tests, run by `trellis test` against a real database: a caller, rows to set up, a record, and the expected outcome of each action.",
                "tests:\n  - name: Contractors do not see drafts\n    as: { id: dev, roles: [contractor] }\n    setup:\n      organization: [{ $id: acme, name: Acme, slug: acme }]\n    record: { title: Draft, client: $acme, status: draft }\n    expect: { list: deny, read: deny }",
            )
        },
        "$defs": { "identifier": identifier() }
    }))
}

/// The JSON Schema of `migrations/*.yaml` (written by `trellis migrate plan`).
pub fn migration_schema() -> Value {
    finish(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": MIGRATION_SCHEMA_ID,
        "title": "Trellis migration",
        "description": "A reviewed migration, written by `trellis migrate plan` and applied by `trellis migrate apply`. Never edit one that was applied: its checksum is recorded.",
        "type": "object",
        "required": ["migration", "steps", "definitions"],
        "additionalProperties": false,
        "properties": {
            "migration": doc(json!({ "type": "string", "pattern": "^[0-9]{4}_.+$" }), "The migration's name: its file name without `.yaml` (four digits, an underscore, a name)."),
            "steps": doc(json!({ "type": "array", "items": { "type": "string" } }), "What the migration does, one step a line, in words (for review; `apply` works from `definitions`)."),
            "definitions": doc_example(json!({
                "type": "object",
                "propertyNames": { "pattern": "^(trellis\\.ya?ml|models/[^/]+\\.ya?ml)$" },
                "additionalProperties": { "type": "string" }
            }), "The model files and trellis.yaml after this migration, verbatim, by path: applying needs nothing but this file.", "definitions:\n  models/task.yaml: |\n    entity: task\n    fields:\n      title: string")
        }
    }))
}

/// Every editor schema with its file name, as `trellis schema --out` writes them.
pub fn all_schemas() -> Vec<(&'static str, Value)> {
    vec![
        ("model.schema.json", model_schema()),
        ("trellis.schema.json", settings_schema()),
        ("policy.schema.json", policy_schema()),
        ("workflow.schema.json", workflow_schema()),
        ("migration.schema.json", migration_schema()),
    ]
}
