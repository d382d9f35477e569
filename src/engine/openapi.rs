//! The OpenAPI 3.1 document, built from the loaded definitions. It lists exactly the
//! routes the server answers: [`routes`] is the one list both use.

use serde_json::{Map, Value, json};

use super::query::{DEFAULT_LIMIT, MAX_LIMIT};
use super::types::{DECIMAL_PATTERN, a_or_an};
use super::{Engine, Entity, Field, pascal_case, system_field};
use crate::spec::{FieldType, Storage};

/// An HTTP method and a path template, as served.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub method: &'static str,
    pub path: String,
}

/// Every route the server answers for this engine.
pub fn routes(engine: &Engine) -> Vec<Route> {
    let mut out = vec![
        Route {
            method: "get",
            path: "/_/health".into(),
        },
        // Operations: the probes and the metrics (document: `operations_paths`).
        Route {
            method: "get",
            path: "/_/live".into(),
        },
        Route {
            method: "get",
            path: "/_/ready".into(),
        },
        Route {
            method: "get",
            path: "/metrics".into(),
        },
        Route {
            method: "get",
            path: "/openapi.json".into(),
        },
        Route {
            method: "get",
            path: "/_/explain".into(),
        },
        Route {
            method: "get",
            path: "/_/status".into(),
        },
        Route {
            method: "post",
            path: "/_/reload".into(),
        },
        Route {
            method: "post",
            path: "/api/batch".into(),
        },
    ];
    if engine.auth.users.is_some() {
        for path in [
            "/auth/signup",
            "/auth/login",
            "/auth/refresh",
            "/auth/logout",
        ] {
            out.push(Route {
                method: "post",
                path: path.into(),
            });
        }
    }
    for e in engine.entities() {
        let collection = format!("/api/{}", e.plural);
        let item = format!("/api/{}/{{id}}", e.plural);
        for method in ["get", "post"] {
            out.push(Route {
                method,
                path: collection.clone(),
            });
        }
        out.push(Route {
            method: "get",
            path: format!("/api/{}/aggregate", e.plural),
        });
        out.push(Route {
            method: "get",
            path: format!("/api/{}/events", e.plural),
        });
        for method in ["get", "patch", "delete"] {
            out.push(Route {
                method,
                path: item.clone(),
            });
        }
        // Files (docs/files.md): per file field, add/replace, download, remove, link.
        for f in e.fields.iter().filter(|f| f.ty == FieldType::File) {
            let field = format!("{item}/files/{}", f.name);
            let file = format!("{field}/{{file}}");
            out.push(Route {
                method: "post",
                path: field,
            });
            for method in ["get", "delete"] {
                out.push(Route {
                    method,
                    path: file.clone(),
                });
            }
            out.push(Route {
                method: "get",
                path: format!("{file}/link"),
            });
        }
        if let Some(wf) = engine.workflow(&e.name) {
            for tail in ["transitions", "history"] {
                out.push(Route {
                    method: "get",
                    path: format!("{item}/{tail}"),
                });
            }
            for t in &wf.transitions {
                out.push(Route {
                    method: "post",
                    path: format!("{item}/transitions/{}", t.name),
                });
            }
        }
    }
    out
}

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// The base of every problem type's URI.
pub const PROBLEM_BASE: &str = "https://trellis.dev/problems/";

/// One problem type the server emits: its slug (the `type` is [`PROBLEM_BASE`] + slug),
/// status, title and extension members (name, schema, always present?).
struct ProblemType {
    kind: &'static str,
    status: u16,
    title: &'static str,
    description: &'static str,
    members: Vec<(&'static str, Value, bool)>,
}

fn field_errors() -> Value {
    json!({
        "type": "array",
        "description": "One entry per problem with the request body.",
        "items": {
            "type": "object",
            "required": ["pointer", "detail"],
            "additionalProperties": false,
            "properties": {
                "pointer": { "type": "string", "description": "A JSON pointer into the request body (`/budget`; `/operations/…` is not used: `operation` names a batch's operation)." },
                "detail": { "type": "string", "description": "What is wrong there." }
            }
        }
    })
}

fn retry_after_member() -> Value {
    json!({ "type": "integer", "minimum": 1, "description": "Seconds to wait before trying again (also the `Retry-After` header)." })
}

/// Every problem type the server emits.
fn problem_types() -> Vec<ProblemType> {
    let pt = |kind, status, title, description| ProblemType {
        kind,
        status,
        title,
        description,
        members: Vec::new(),
    };
    let with = |mut p: ProblemType, members: Vec<(&'static str, Value, bool)>| {
        p.members = members;
        p
    };
    vec![
        pt(
            "bad-request",
            400,
            "Bad request",
            "The request cannot be read: a body that is not JSON, a malformed header or path, a batch operation that is malformed.",
        ),
        with(
            pt(
                "bad-parameter",
                400,
                "Invalid query parameter",
                "A query parameter is invalid.",
            ),
            vec![
                (
                    "parameter",
                    json!({ "type": "string", "description": "The parameter at fault." }),
                    true,
                ),
                (
                    "column",
                    json!({ "type": "integer", "minimum": 1, "description": "In a `filter`: the position (1-based, in characters) of the problem." }),
                    false,
                ),
                (
                    "hint",
                    json!({ "type": "string", "description": "What may have been meant, or what is accepted." }),
                    false,
                ),
            ],
        ),
        pt(
            "unauthorized",
            401,
            "Unauthorized",
            "The token is missing, expired or invalid, or the action needs a signed-in caller. Comes with `WWW-Authenticate`.",
        ),
        pt("forbidden", 403, "Forbidden", "The caller may not do this."),
        pt(
            "not-found",
            404,
            "Not found",
            "No such record (or the caller may not see it).",
        ),
        pt("no-route", 404, "Not found", "No such route."),
        pt(
            "method-not-allowed",
            405,
            "Method not allowed",
            "The route does not answer this method.",
        ),
        pt(
            "body-timeout",
            408,
            "Request body too slow",
            "The request body did not arrive in time.",
        ),
        with(
            pt(
                "unique",
                409,
                "Already taken",
                "A unique value is already taken.",
            ),
            vec![("errors", field_errors(), true)],
        ),
        with(
            pt(
                "still-referenced",
                409,
                "Still referenced",
                "The record cannot be deleted while other records reference it.",
            ),
            vec![(
                "referenced_by",
                json!({
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["entity", "field", "count", "ids"],
                        "additionalProperties": false,
                        "properties": {
                            "entity": { "type": "string", "description": "The entity of the referencing records." },
                            "field": { "type": "string", "description": "Their field that holds the reference." },
                            "count": { "type": "integer", "minimum": 1, "description": "How many of them." },
                            "ids": { "type": "array", "items": { "type": "string", "format": "uuid" }, "description": "A few of their ids." }
                        }
                    }
                }),
                true,
            )],
        ),
        with(
            pt(
                "wrong-state",
                409,
                "Wrong state",
                "The record is not in a state the transition leaves from.",
            ),
            vec![
                (
                    "state",
                    json!({ "type": "string", "description": "The record's state." }),
                    true,
                ),
                (
                    "possible",
                    json!({ "type": "array", "items": { "type": "string" }, "description": "The transitions that leave that state." }),
                    true,
                ),
            ],
        ),
        pt(
            "conflict",
            409,
            "Conflict",
            "Another change won a race; reload and try again.",
        ),
        with(
            pt(
                "stale-version",
                412,
                "Version mismatch",
                "The record changed since the version in `If-Match` (or a batch operation's `if_match`).",
            ),
            vec![(
                "current_version",
                json!({ "type": "integer", "minimum": 1, "description": "The record's version now." }),
                true,
            )],
        ),
        pt(
            "too-large",
            413,
            "Body too large",
            "The body is larger than 1 MiB, or a batch has more than 100 operations.",
        ),
        pt(
            "unsupported-media-type",
            415,
            "Unsupported media type",
            "The body is not declared as application/json.",
        ),
        pt(
            "unsupported-content-encoding",
            415,
            "Unsupported content encoding",
            "The body is compressed (`Content-Encoding`); send it uncompressed (the answer says `Accept-Encoding: identity`).",
        ),
        with(
            pt(
                "validation",
                422,
                "Invalid content",
                "The body does not fit; `errors` lists each problem.",
            ),
            vec![("errors", field_errors(), true)],
        ),
        with(
            pt(
                "guard-failed",
                422,
                "Transition not possible now",
                "A guard of the transition does not hold.",
            ),
            vec![(
                "reasons",
                json!({ "type": "array", "items": { "type": "string" }, "description": "The messages of the guards that failed." }),
                true,
            )],
        ),
        with(
            pt(
                "rate-limited",
                429,
                "Too many requests",
                "Too many requests from this caller or address.",
            ),
            vec![("retry_after", retry_after_member(), true)],
        ),
        pt(
            "internal",
            500,
            "Internal error",
            "The server could not complete the request; the error is in its log.",
        ),
        pt(
            "effect-failed",
            500,
            "Workflow effect failed",
            "A workflow's effect failed; nothing was written.",
        ),
        with(
            pt(
                "database-unavailable",
                503,
                "Service unavailable",
                "The database does not answer; try again shortly.",
            ),
            vec![("retry_after", retry_after_member(), true)],
        ),
        with(
            pt(
                "timeout",
                503,
                "Took too long",
                "The request took too long and was stopped; ask for less or try again later.",
            ),
            vec![("retry_after", retry_after_member(), false)],
        ),
        pt(
            "too-many-streams",
            503,
            "Too many event streams",
            "The server has as many event streams open as it may; `Retry-After` says when to try again.",
        ),
        pt(
            "no-reload",
            503,
            "Reload unavailable",
            "This server does not reload.",
        ),
        with(
            pt(
                "shutting-down",
                503,
                "Shutting down",
                "This instance is draining (SIGTERM or SIGINT): it finishes its requests and takes no new stream; send new requests to another instance.",
            ),
            vec![("retry_after", retry_after_member(), true)],
        ),
        with(
            pt(
                "file-too-large",
                413,
                "File too large",
                "A file is larger than its field's `max_size` (`field`, `max_size` say which); nothing of it is kept.",
            ),
            vec![
                (
                    "field",
                    json!({ "type": "string", "description": "The file field." }),
                    true,
                ),
                (
                    "max_size",
                    json!({ "type": "integer", "minimum": 0, "description": "The largest file the field takes, in bytes." }),
                    true,
                ),
            ],
        ),
        with(
            pt(
                "file-type",
                422,
                "File type not accepted",
                "A file's content (its type sniffed from the bytes, never its name or declared type) is not one the field accepts.",
            ),
            vec![
                (
                    "field",
                    json!({ "type": "string", "description": "The file field." }),
                    false,
                ),
                (
                    "sniffed",
                    json!({ "type": "string", "description": "The type sniffed from the content, such as `text/plain`." }),
                    false,
                ),
                (
                    "accept",
                    json!({ "type": "array", "items": { "type": "string" }, "description": "What the field accepts." }),
                    false,
                ),
            ],
        ),
        with(
            pt(
                "too-many-files",
                422,
                "Too many files",
                "More files than the field holds (`max_count`; one for a single file field).",
            ),
            vec![
                (
                    "field",
                    json!({ "type": "string", "description": "The file field." }),
                    true,
                ),
                (
                    "max_count",
                    json!({ "type": "integer", "minimum": 1, "description": "How many files the field holds." }),
                    true,
                ),
            ],
        ),
        pt(
            "invalid-link",
            403,
            "Invalid link",
            "A signed file url whose signature does not match (tampered) or whose `exp` has passed; ask for a new one.",
        ),
        with(
            pt(
                "range-not-satisfiable",
                416,
                "Range not satisfiable",
                "The `Range` asked for lies outside the file; the `Content-Range` header gives the file's size.",
            ),
            vec![(
                "size",
                json!({ "type": "integer", "minimum": 0, "description": "The file's size in bytes." }),
                true,
            )],
        ),
        pt(
            "no-file-storage",
            503,
            "No file storage",
            "This server has no file storage configured (`files` in trellis.yaml).",
        ),
        with(
            pt(
                "file-storage-unavailable",
                503,
                "File storage unavailable",
                "The file storage does not answer; try again shortly.",
            ),
            vec![("retry_after", retry_after_member(), true)],
        ),
        with(
            pt(
                "not-loaded",
                503,
                "Definitions not loaded",
                "The project's definitions are not loaded yet.",
            ),
            vec![("retry_after", retry_after_member(), true)],
        ),
    ]
}

/// The component name of a problem type's schema: `ProblemStaleVersion`.
fn problem_schema_name(kind: &str) -> String {
    format!("Problem{}", pascal_case(&kind.replace('-', "_")))
}

/// The schemas of the problems: `Problem` (any) and one per type.
fn problem_schemas(schemas: &mut Map<String, Value>) {
    let common = |type_schema: Value, status_schema: Value| {
        json!({
            "type": type_schema,
            "title": { "type": "string", "description": "A short, stable summary of the type." },
            "status": status_schema,
            "detail": { "type": "string", "description": "What happened this time, for people." },
            "instance": { "type": "string" },
            "request_id": { "type": "string", "description": "The request's id, as in the `X-Request-Id` response header: quote it when reporting a problem. Every problem carries it." },
            "operation": { "type": "integer", "minimum": 0, "description": "Only in answers to `POST /api/batch`: the index of the operation that failed." }
        })
    };
    schemas.insert(
        "Problem".into(),
        json!({
            "type": "object",
            "description": "An RFC 9457 problem, of any type (each type has its own schema, `Problem…`, with its extension members).",
            "required": ["type", "title", "status", "detail", "request_id"],
            "properties": common(
                json!({ "type": "string", "format": "uri", "description": format!("`{PROBLEM_BASE}<kind>`: tells the types apart.") }),
                json!({ "type": "integer", "minimum": 400, "maximum": 599 })
            )
        }),
    );
    for p in problem_types() {
        let mut props = common(
            json!({ "type": "string", "const": format!("{PROBLEM_BASE}{}", p.kind) }),
            json!({ "type": "integer", "const": p.status }),
        );
        let mut required = vec![
            json!("type"),
            json!("title"),
            json!("status"),
            json!("detail"),
            json!("request_id"),
        ];
        // Every 429 and 503 says how long to wait, in the body as in `Retry-After`.
        let mut members = p.members;
        if matches!(p.status, 429 | 503) {
            members.retain(|(name, ..)| *name != "retry_after");
            members.push(("retry_after", retry_after_member(), true));
        }
        for (name, schema, always) in members {
            props[name] = schema;
            if always {
                required.push(json!(name));
            }
        }
        schemas.insert(
            problem_schema_name(p.kind),
            json!({
                "type": "object",
                "title": p.title,
                "description": p.description,
                "required": required,
                "properties": props
            }),
        );
    }
}

/// The schema of a problem of one of `kinds`: a reference, or a union told apart by `type`.
fn problem_union(kinds: &[&str]) -> Value {
    if let [one] = kinds {
        return schema_ref(&problem_schema_name(one));
    }
    let mut mapping = Map::new();
    let refs: Vec<Value> = kinds
        .iter()
        .map(|k| {
            let name = problem_schema_name(k);
            mapping.insert(
                format!("{PROBLEM_BASE}{k}"),
                json!(format!("#/components/schemas/{name}")),
            );
            schema_ref(&name)
        })
        .collect();
    json!({ "oneOf": refs, "discriminator": { "propertyName": "type", "mapping": mapping } })
}

/// A problem response whose types follow from its status (see [`default_kinds`]);
/// [`type_problems`] fills them in.
fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/problem+json": { "schema": schema_ref("Problem") } }
    })
}

/// A problem response of these types.
fn problem_of(description: &str, kinds: &[&str]) -> Value {
    json!({
        "description": description,
        "content": { "application/problem+json": { "schema": problem_union(kinds) } }
    })
}

/// The problem types a status has when an operation does not say.
fn default_kinds(status: &str) -> &'static [&'static str] {
    match status {
        "400" => &["bad-request"],
        "401" => &["unauthorized"],
        "403" => &["forbidden"],
        "404" => &["not-found"],
        "408" => &["body-timeout"],
        "409" => &["conflict"],
        "412" => &["stale-version"],
        "413" => &["too-large"],
        "415" => &["unsupported-media-type", "unsupported-content-encoding"],
        "422" => &["validation"],
        "429" => &["rate-limited"],
        "500" => &["internal"],
        "503" => &["database-unavailable", "timeout"],
        _ => &[],
    }
}

/// The answers every operation may get, shared: a body too slow (408), the rate
/// limit (429), an unavailable database or a request that took too long (503).
fn shared_responses() -> Value {
    let mut out = Map::new();
    for (name, status, description) in [
        (
            "BodyTimeout",
            "408",
            "The request body did not arrive in time.",
        ),
        (
            "RateLimited",
            "429",
            "Too many requests from this caller or address (`limits` in trellis.yaml); `retry_after` and `Retry-After` say when to try again.",
        ),
        (
            "Unavailable",
            "503",
            "The database does not answer, or the request took too long; `Retry-After` says when to try again.",
        ),
    ] {
        let mut r = problem(description);
        if let Some(schema) = r.pointer_mut("/content/application~1problem+json/schema") {
            *schema = problem_union(default_kinds(status));
        }
        out.insert(name.into(), r);
    }
    Value::Object(out)
}

/// Gives every problem response its types, and adds the answers every operation may
/// get ([`shared_responses`]; 408 only where there is a body).
fn type_problems(paths: &mut Map<String, Value>) {
    for item in paths.values_mut() {
        let Some(obj) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in obj.iter_mut() {
            if method == "parameters" {
                continue;
            }
            let has_body = op.get("requestBody").is_some();
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            for (status, name) in [
                ("408", "BodyTimeout"),
                ("429", "RateLimited"),
                ("503", "Unavailable"),
            ] {
                if status != "408" || has_body {
                    responses.entry(status).or_insert_with(
                        || json!({ "$ref": format!("#/components/responses/{name}") }),
                    );
                }
            }
            for (status, response) in responses.iter_mut() {
                let Some(schema) =
                    response.pointer_mut("/content/application~1problem+json/schema")
                else {
                    continue;
                };
                if *schema == schema_ref("Problem") {
                    let kinds = default_kinds(status);
                    if !kinds.is_empty() {
                        *schema = problem_union(kinds);
                    }
                }
            }
            let mut sorted: Vec<(String, Value)> = std::mem::take(responses).into_iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            responses.extend(sorted);
        }
    }
}

fn id_param(e: &Entity) -> Value {
    json!({
        "name": "id", "in": "path", "required": true,
        "description": format!("The id of the {}.", e.name),
        "schema": { "type": "string", "format": "uuid" }
    })
}

fn etag_header() -> Value {
    json!({
        "ETag": {
            "description": "The record's version, quoted; send it back in If-Match.",
            "schema": { "type": "string" }
        }
    })
}

/// `If-None-Match`: the `ETag` of an earlier answer; unchanged, the answer is a 304.
fn if_none_match_param() -> Value {
    json!({
        "name": "If-None-Match", "in": "header", "required": false,
        "description": "The `ETag` of an earlier answer (several, comma-separated, or `*`): if this caller's answer is unchanged, a 304 without a body.",
        "schema": { "type": "string" }
    })
}

/// The 304 of a conditional GET.
fn not_modified() -> Value {
    json!({
        "description": "Unchanged since the `ETag` in `If-None-Match`; no body.",
        "headers": { "ETag": { "description": "The same `ETag`.", "schema": { "type": "string" } } }
    })
}

/// The weak `ETag` of a list, an aggregate or this document.
fn weak_etag_header() -> Value {
    json!({
        "ETag": {
            "description": "`W/\"<hash>\"` over this answer as this caller gets it; send it back in If-None-Match.",
            "schema": { "type": "string" }
        }
    })
}

fn query_param(name: &str, description: String, schema: Value, examples: Value) -> Value {
    let mut p = json!({
        "name": name, "in": "query", "required": false,
        "description": description,
        "schema": schema,
    });
    if examples.as_object().is_some_and(|o| !o.is_empty()) {
        p["examples"] = examples;
    }
    p
}

fn relations(e: &Entity) -> Vec<&str> {
    e.fields
        .iter()
        .filter(|f| f.ty.is_link())
        .map(|f| f.name.as_str())
        .collect()
}

fn fields_param(_e: &Entity) -> Value {
    // No example: a projection does not match the record schema, whose fields are
    // all required.
    query_param(
        "fields",
        "Comma-separated fields to return: a projection, which returns only the chosen fields \
         and `id` (so the record schema's required fields may be missing). `relation.field` \
         selects the relation (its id) and a field of the record expanded in `expand` \
         (with `expand=relation`)."
            .to_string(),
        json!({ "type": "string", "minLength": 1 }),
        json!({}),
    )
}

fn expand_param(e: &Entity) -> Value {
    let rels = relations(e);
    let mut examples = serde_json::Map::new();
    if let Some(first) = rels.first() {
        examples.insert("one".into(), json!({ "value": first }));
    }
    query_param(
        "expand",
        format!(
            "Comma-separated relations whose records to embed in the record's `expand` member, nested \
             with dots (`a.b`: in the expanded record's own `expand`, at most {} levels); the relation \
             fields keep their ids. `many` and `inverse` relations embed at most {} records per parent. \
             Relations of {}: {}.",
            crate::engine::query::MAX_EXPAND_DEPTH,
            crate::engine::query::EXPAND_CAP,
            e.name,
            if rels.is_empty() {
                "none".to_string()
            } else {
                rels.join(", ")
            }
        ),
        json!({ "type": "string" }),
        Value::Object(examples),
    )
}

fn filter_example(e: &Entity) -> String {
    e.fields
        .iter()
        .find_map(|f| f.kind().example_filter(f))
        .unwrap_or_else(|| "created_at >= 2025-01-01".to_string())
}

/// The query parameters of a list.
fn list_params(e: &Entity) -> Value {
    let mut params = vec![
        query_param(
            "filter",
            "A condition in the condition language: comparisons `= != < <= > >=`, `~` (contains, \
             case-insensitive), `in [a, b]`, `is set`, `is not set`, `has <id>` (many and inverse \
             relations), `and`, `or`, `not`, parentheses. Values: 'text', numbers, true/false, dates \
             (2025-01-31), date-times (2025-01-31T09:00:00Z), `now`, bare enum values. Dotted paths follow \
             relations (`client.name = 'Acme'`; through a many or inverse relation: some related record \
             matches). A bad filter answers 400 with the column of the problem."
                .to_string(),
            json!({ "type": "string", "maxLength": crate::engine::cond::parse::MAX_LENGTH }),
            json!({ "simple": { "value": filter_example(e) }, "combined": { "value": format!("{} and created_at < now", filter_example(e)) } }),
        ),
        query_param(
            "sort",
            "Comma-separated fields; `-` before a field sorts it descending. Ties are broken by `id`; \
             missing values come last."
                .to_string(),
            json!({ "type": "string" }),
            json!({ "newest": { "value": "-created_at" } }),
        ),
        query_param(
            "limit",
            format!("How many records to return (1 to {MAX_LIMIT}, default {DEFAULT_LIMIT})."),
            json!({ "type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT }),
            json!({ "small": { "value": 10 } }),
        ),
        query_param(
            "after",
            "The `next` cursor of the previous page (with the same `sort`, `filter` and `q`). Pages stay \
             correct while records are added or removed."
                .to_string(),
            json!({ "type": "string" }),
            json!({}),
        ),
        query_param(
            "count",
            "`true` adds `total`: how many records match.".to_string(),
            json!({ "type": "boolean", "default": false }),
            json!({ "yes": { "value": true } }),
        ),
        fields_param(e),
        expand_param(e),
    ];
    if !e.search.is_empty() {
        params.push(query_param(
            "q",
            format!(
                "Full-text search in {}: every word must occur. Without `sort`, the best matches come first.",
                e.search.join(", ")
            ),
            json!({ "type": "string", "maxLength": crate::engine::query::MAX_SEARCH_LENGTH }),
            json!({ "words": { "value": "rust api" } }),
        ));
    }
    Value::Array(params)
}

/// The JSON Schema of a value kept as `storage`, as aggregates return it (null for a
/// group without a value, or a metric over no values).
fn stored_value_schema(storage: Option<Storage>) -> Value {
    match storage {
        Some(Storage::Text) => json!({ "type": ["string", "null"] }),
        Some(Storage::Integer) => json!({ "type": ["integer", "null"] }),
        Some(Storage::Real) => json!({ "type": ["number", "null"] }),
        Some(Storage::Decimal { scale, .. }) => json!({
            "type": ["string", "null"],
            "pattern": DECIMAL_PATTERN,
            "description": format!("An exact decimal with {scale} digits after the point, as a string.")
        }),
        Some(Storage::Boolean) => json!({ "type": ["boolean", "null"] }),
        Some(Storage::Date) => json!({ "type": ["string", "null"], "format": "date" }),
        Some(Storage::Timestamp) => json!({ "type": ["string", "null"], "format": "date-time" }),
        Some(Storage::Uuid) => json!({ "type": ["string", "null"], "format": "uuid" }),
        Some(Storage::Json) | None => json!({}),
    }
}

/// The fields an aggregate may read: the system fields, then the entity's own.
fn aggregate_fields(e: &Entity) -> impl Iterator<Item = &Field> {
    ["id", "created_at", "updated_at", "version"]
        .into_iter()
        .filter_map(|name| -> Option<&Field> { system_field(name) })
        .chain(e.fields.iter())
}

/// One group of an aggregate of `e`: every key a group may have (the group keys of
/// `group_by`, then the metrics), each with its type. Which ones a group has depends
/// on the request.
fn aggregate_group_schema(e: &Entity) -> Value {
    let mut props = Map::new();
    for f in aggregate_fields(e) {
        if !f.kind().groupable() {
            continue;
        }
        if f.ty == FieldType::Many {
            props.insert(
                f.name.clone(),
                json!({ "type": ["string", "null"], "format": "uuid", "description": format!("`group_by={}`: one linked id per group (null: records without links the caller may see).", f.name) }),
            );
            continue;
        }
        let mut s = stored_value_schema(f.storage());
        s["description"] = json!(format!("`group_by={}`", f.name));
        props.insert(f.name.clone(), s);
        if f.kind().temporal() {
            for b in ["day", "week", "month", "year"] {
                props.insert(
                    format!("{}:{b}", f.name),
                    json!({ "type": ["string", "null"], "format": "date", "description": format!("`group_by={}:{b}`: the first day of the {b} (UTC{}).", f.name, if b == "week" { ", weeks start on Monday" } else { "" }) }),
                );
            }
        }
    }
    props.insert(
        "count".into(),
        json!({ "type": "integer", "minimum": 0, "description": "`count=true` (or no metric asked): the records in the group." }),
    );
    for f in aggregate_fields(e) {
        let numeric = f.ty.is_numeric();
        if numeric {
            let mut sum = stored_value_schema(f.storage());
            sum["description"] = json!(format!("`sum={}`", f.name));
            props.insert(format!("sum_{}", f.name), sum);
            props.insert(
                format!("avg_{}", f.name),
                json!({ "type": ["number", "null"], "description": format!("`avg={}` (rounded to 6 decimals)", f.name) }),
            );
        }
        if numeric || f.kind().temporal() {
            for m in ["min", "max"] {
                let mut s = stored_value_schema(f.storage());
                s["description"] = json!(format!("`{m}={}`", f.name));
                props.insert(format!("{m}_{}", f.name), s);
            }
        }
    }
    json!({
        "type": "object",
        "description": format!("One group of an aggregate of {} records: the keys of `group_by` (as written, `created_at:month` for a bucket), then the metrics (`count`, `sum_<field>`, `avg_<field>`, `min_<field>`, `max_<field>`). A group has the keys and metrics the request asks for, no others.", e.name),
        "additionalProperties": false,
        "properties": props
    })
}

fn aggregate_path(e: &Entity, tag: &str) -> Value {
    let numeric: Vec<&str> = e
        .fields
        .iter()
        .filter(|f| f.ty.is_numeric())
        .map(|f| f.name.as_str())
        .collect();
    let dates: Vec<&str> = e
        .fields
        .iter()
        .filter(|f| f.kind().temporal())
        .map(|f| f.name.as_str())
        .chain(["created_at", "updated_at"])
        .collect();
    let groupable: Vec<&str> = e
        .fields
        .iter()
        .filter(|f| f.kind().groupable())
        .map(|f| f.name.as_str())
        .collect();
    let mut params = vec![
        query_param(
            "group_by",
            format!(
                "Comma-separated fields to group by ({}); a many field groups by each linked id; dates and datetimes take a UTC bucket: `created_at:day`, `:week` (from Monday), `:month`, `:year`.",
                groupable.join(", ")
            ),
            json!({ "type": "string" }),
            json!({ "by_month": { "value": "created_at:month" } }),
        ),
        query_param(
            "count",
            "`true`: the number of records per group (also the default metric).".into(),
            json!({ "type": "boolean" }),
            json!({}),
        ),
    ];
    for (name, what) in [
        ("sum", "Sum"),
        ("avg", "Average"),
        ("min", "Smallest"),
        ("max", "Largest"),
    ] {
        let fields = if matches!(name, "min" | "max") {
            numeric
                .iter()
                .chain(dates.iter())
                .copied()
                .collect::<Vec<_>>()
        } else {
            numeric.clone()
        };
        params.push(query_param(
            name,
            format!(
                "{what} of these comma-separated fields per group, as `{name}_<field>` ({}).",
                if fields.is_empty() {
                    "none here".to_string()
                } else {
                    fields.join(", ")
                }
            ),
            json!({ "type": "string" }),
            json!({}),
        ));
    }
    params.push(query_param(
        "filter",
        "A condition, as for lists.".into(),
        json!({ "type": "string" }),
        json!({}),
    ));
    params.push(query_param(
        "sort",
        "Group keys or metric names (`-count`), `-` for descending; default: by the groups.".into(),
        json!({ "type": "string" }),
        json!({}),
    ));
    params.push(if_none_match_param());
    params.push(query_param(
        "limit",
        format!(
            "At most this many groups (1 to {}, default {}).",
            crate::engine::aggregate::MAX_GROUPS,
            crate::engine::aggregate::DEFAULT_GROUPS
        ),
        json!({ "type": "integer", "minimum": 1, "maximum": crate::engine::aggregate::MAX_GROUPS }),
        json!({}),
    ));
    json!({
        "get": {
            "operationId": format!("aggregate_{}", e.plural),
            "summary": format!("Groups and metrics of {} records (the policy action `aggregate`)", e.name),
            "tags": [tag],
            "parameters": params,
            "responses": {
                "304": not_modified(),
                "200": {
                    "headers": weak_etag_header(),
                    "description": "One object per group: the group keys, then the metrics (`count`, `sum_<field>`, `avg_<field>`, …). Decimal sums are strings with their scale; averages are numbers.",
                    "content": json_content(json!({
                        "type": "object",
                        "required": ["groups"],
                        "properties": { "groups": { "type": "array", "items": schema_ref(&format!("{}AggregateGroup", pascal_case(&e.name))) } }
                    }))
                },
                "400": problem_of("A parameter is invalid; `parameter` names it.", &["bad-parameter", "bad-request"])
            }
        }
    })
}

fn events_path(e: &Entity, tag: &str) -> Value {
    let header = json!({
        "name": "Last-Event-ID", "in": "header", "required": false,
        "description": "The `id` of the last event received: the events after it are sent first (as long as the change log keeps them), then live ones.",
        "schema": { "type": "string", "pattern": "^[0-9]+$" }
    });
    json!({
        "get": {
            "operationId": format!("events_{}", e.plural),
            "summary": format!("Live changes to {} records (server-sent events)", e.name),
            "description": "A stream of server-sent events for the records the caller may list (the policy action `list`) that match `filter`, with only the fields the caller may read, as they are when the event is sent. Event names: `created`, `updated` and `transitioned` (data: `id`, `at`, `record`; a transition also `from`, the state the record left), `deleted` (the record is gone) and `removed` (the record left the caller's view), both with `id` and `at`. Each of these has an `id` to resume from with `Last-Event-ID`. Then there are notices without an `id`: `reset` (events were missed for good; reload, then follow the feed again), `dropped` (the client read too slowly; reconnect with `Last-Event-ID`) and `error`; the stream ends after `dropped` and `error`. Comments keep the connection alive.",
            "tags": [tag],
            "parameters": [
                query_param("filter", "A condition, as for lists.".into(), json!({ "type": "string" }), json!({})),
                header
            ],
            "responses": {
                "200": {
                    "description": "The event stream.",
                    "content": { "text/event-stream": { "schema": {
                        "type": "object",
                        "description": "One event of the stream (the stream is a sequence of them; comments are not events).",
                        "required": ["event", "data"],
                        "properties": {
                            "id": { "type": "string", "pattern": "^[0-9]+$", "description": "Resume after this event with Last-Event-ID." },
                            "event": { "enum": ["created", "updated", "transitioned", "deleted", "removed", "reset", "dropped", "error"] },
                            "data": { "type": "string", "contentMediaType": "application/json", "description": "A JSON object: `id`, `at`, and `record` (created, updated, transitioned), `from` (transitioned), or `reason` (notices)." }
                        }
                    } } }
                },
                "400": problem_of("A parameter is invalid; `parameter` names it.", &["bad-parameter", "bad-request"]),
                "401": problem("Sign in first."),
                "403": problem("The caller may not list these records."),
                "429": problem("This caller or address has as many streams open as it may (`limits.streams`), or makes too many requests; `Retry-After` says when to try again."),
                "503": problem_of("The server has as many streams open as it may, or the database does not answer; `Retry-After` says when to try again.", &["too-many-streams", "shutting-down", "database-unavailable", "timeout"])
            }
        }
    })
}

/// The record schema as some callers see it: a field with a read rule in the policy
/// (`read.roles`, `read.where`) is left out for the callers it hides from, so it is
/// not required, and its description says why.
fn record_schema(engine: &Engine, e: &Entity) -> Value {
    let mut record = e.schemas.record.clone();
    let Some(policy) = engine
        .access
        .enforced
        .then(|| engine.access.policy(&e.name))
        .flatten()
    else {
        return record;
    };
    let mut restricted: Vec<&String> = policy
        .read_roles
        .keys()
        .chain(policy.read_where.keys())
        .collect();
    restricted.sort();
    restricted.dedup();
    for name in restricted {
        let mut why = Vec::new();
        if let Some(roles) = policy.read_roles.get(name) {
            why.push(format!(
                "callers with one of the roles {}",
                roles.join(", ")
            ));
        }
        if policy.read_where.contains_key(name) {
            why.push("on the records where the policy's read condition holds".to_string());
        }
        let note = format!(
            "Present only for {} (a read rule of the {} policy); left out otherwise.",
            why.join(", or "),
            e.name
        );
        if let Some(Value::Array(req)) = record.get_mut("required") {
            req.retain(|r| r.as_str() != Some(name.as_str()));
        }
        if let Some(prop) = record["properties"].get_mut(name.as_str())
            && let Some(obj) = prop.as_object_mut()
        {
            let text = match obj.get("description").and_then(Value::as_str) {
                Some(d) => format!("{}. {note}", d.trim_end_matches('.')),
                None => note,
            };
            obj.insert("description".into(), json!(text));
        }
    }
    record
}

fn entity_paths(
    engine: &Engine,
    e: &Entity,
    paths: &mut Map<String, Value>,
    schemas: &mut Map<String, Value>,
) {
    let base = pascal_case(&e.name);
    let record = base.to_string();
    let create = format!("{base}Create");
    let update = format!("{base}Update");
    let list = format!("{base}List");
    schemas.insert(record.clone(), record_schema(engine, e));
    schemas.insert(format!("{base}AggregateGroup"), aggregate_group_schema(e));
    schemas.insert(create.clone(), e.schemas.create.clone());
    schemas.insert(update.clone(), e.schemas.update.clone());
    schemas.insert(
        list.clone(),
        json!({
            "type": "object",
            "required": ["items", "next"],
            "properties": {
                "items": { "type": "array", "items": schema_ref(&record) },
                "next": { "type": ["string", "null"], "description": "Pass as `after` to get the next page; null on the last page." },
                "total": { "type": "integer", "minimum": 0, "description": "With `count=true`: how many records match `filter` and `q`." }
            }
        }),
    );
    let tag = e.label.clone();
    let collection = json!({
        "get": {
            "operationId": format!("list_{}", e.plural),
            "summary": format!("List {} records", e.name),
            "tags": [tag],
            "parameters": list_params(e).as_array().cloned().unwrap_or_default().into_iter().chain([if_none_match_param()]).collect::<Vec<_>>(),
            "responses": {
                "200": { "description": "A page of records (oldest first unless `sort` says otherwise).", "headers": weak_etag_header(), "content": json_content(schema_ref(&list)) },
                "304": not_modified(),
                "400": problem_of("A query parameter is invalid; `parameter` names it (and `column`, the position in a filter).", &["bad-parameter", "bad-request"])
            }
        },
        "post": {
            "operationId": format!("create_{}", e.name),
            "summary": format!("Create a {}", e.name),
            "tags": [tag],
            "requestBody": { "required": true, "content": json_content(schema_ref(&create)) },
            "responses": {
                "201": {
                    "description": "Created.",
                    "headers": {
                        "Location": { "description": "The new record's URL.", "schema": { "type": "string" } },
                        "ETag": etag_header()["ETag"].clone()
                    },
                    "content": json_content(schema_ref(&record))
                },
                "400": problem("The body is not valid JSON."),
                "409": problem_of("A unique value is already taken.", &["unique"]),
                "413": problem("The body is larger than 1 MiB."),
                "415": problem("The body is not declared as application/json, or is compressed."),
                "422": problem("The body does not fit the entity; `errors` lists each problem.")
            }
        }
    });
    let item = json!({
        "parameters": [id_param(e)],
        "get": {
            "operationId": format!("get_{}", e.name),
            "summary": format!("Get a {}", e.name),
            "tags": [tag],
            "parameters": [fields_param(e), expand_param(e), if_none_match_param()],
            "responses": {
                "200": { "description": "The record.", "headers": etag_header(), "content": json_content(schema_ref(&record)) },
                "304": not_modified(),
                "400": problem_of("A query parameter is invalid; `parameter` names it.", &["bad-parameter", "bad-request"]),
                "404": problem("No such record.")
            }
        },
        "patch": {
            "operationId": format!("update_{}", e.name),
            "summary": format!("Change some fields of a {}", e.name),
            "tags": [tag],
            "parameters": [{
                "name": "If-Match", "in": "header", "required": false,
                "description": "The version you last saw (the ETag); the change is refused with 412 if the record has changed since.",
                "schema": { "type": "string" }
            }],
            "requestBody": { "required": true, "content": json_content(schema_ref(&update)) },
            "responses": {
                "200": { "description": "The changed record.", "headers": etag_header(), "content": json_content(schema_ref(&record)) },
                "400": problem("The body is not valid JSON, or If-Match is malformed."),
                "404": problem("No such record."),
                "409": problem_of("A unique value is already taken, or another change won a race.", &["unique", "conflict"]),
                "412": problem("The record changed since the version in If-Match."),
                "413": problem("The body is larger than 1 MiB."),
                "415": problem("The body is not declared as application/json, or is compressed."),
                "422": problem("The body does not fit the entity; `errors` lists each problem.")
            }
        },
        "delete": {
            "operationId": format!("delete_{}", e.name),
            "summary": format!("Delete a {}", e.name),
            "tags": [tag],
            "parameters": [{
                "name": "If-Match", "in": "header", "required": false,
                "description": "The version you last saw (the ETag); the record is deleted only if it is still at that version, 412 otherwise.",
                "schema": { "type": "string" }
            }],
            "responses": {
                "204": { "description": "Deleted." },
                "400": problem("If-Match is malformed."),
                "404": problem("No such record."),
                "409": problem_of("Other records still reference this one (`referenced_by`), or another change won a race.", &["still-referenced", "conflict"]),
                "412": problem("The record changed since the version in If-Match.")
            }
        }
    });
    paths.insert(format!("/api/{}", e.plural), collection);
    paths.insert(
        format!("/api/{}/aggregate", e.plural),
        aggregate_path(e, &tag),
    );
    paths.insert(format!("/api/{}/events", e.plural), events_path(e, &tag));
    paths.insert(format!("/api/{}/{{id}}", e.plural), item);
}

/// The file routes of an entity's file fields (docs/files.md), and the
/// multipart bodies of its create and update.
fn file_paths(e: &Entity, paths: &mut Map<String, Value>, schemas: &mut Map<String, Value>) {
    let file_fields: Vec<&Field> = e
        .fields
        .iter()
        .filter(|f| f.ty == FieldType::File)
        .collect();
    if file_fields.is_empty() {
        return;
    }
    let base = pascal_case(&e.name);
    let tag = e.label.clone();
    let binary = json!({ "type": "string", "contentMediaType": "application/octet-stream", "description": "A file: a part with a file name. Its type is sniffed from the content." });
    for (mode, schema_name) in [
        ("Create", format!("{base}Create")),
        ("Update", format!("{base}Update")),
    ] {
        let mut properties = Map::new();
        properties.insert(
            "data".into(),
            json!({ "allOf": [schema_ref(&schema_name)], "description": "The other fields as one JSON object (the JSON body), instead of or besides one part per field." }),
        );
        for f in &file_fields {
            let multiple = f.file.as_ref().is_some_and(|o| o.multiple);
            properties.insert(
                f.name.clone(),
                if multiple {
                    json!({ "type": "array", "items": binary.clone(), "description": "Files to add: one part per file, each named after the field." })
                } else {
                    binary.clone()
                },
            );
        }
        schemas.insert(
            format!("{base}{mode}Multipart"),
            json!({
                "type": "object",
                "description": "multipart/form-data: files in parts named after their field (with a file name), other fields in parts of their own (JSON with `Content-Type: application/json`, else their text form) or all of them in `data`.",
                "properties": properties,
                "additionalProperties": { "type": "string", "description": "Another field's value, in its text form or as JSON." }
            }),
        );
    }
    let multipart = |name: String| json!({ "schema": schema_ref(&name), "encoding": { "data": { "contentType": "application/json" } } });
    if let Some(body) = paths
        .get_mut(&format!("/api/{}", e.plural))
        .and_then(|p| p.pointer_mut("/post/requestBody/content"))
        .and_then(Value::as_object_mut)
    {
        body.insert(
            "multipart/form-data".into(),
            multipart(format!("{base}CreateMultipart")),
        );
    }
    if let Some(body) = paths
        .get_mut(&format!("/api/{}/{{id}}", e.plural))
        .and_then(|p| p.pointer_mut("/patch/requestBody/content"))
        .and_then(Value::as_object_mut)
    {
        body.insert(
            "multipart/form-data".into(),
            multipart(format!("{base}UpdateMultipart")),
        );
    }
    for code in ["413", "422"] {
        for (path, op) in [
            (format!("/api/{}", e.plural), "post"),
            (format!("/api/{}/{{id}}", e.plural), "patch"),
        ] {
            let kinds: &[&str] = if code == "413" {
                &["too-large", "file-too-large"]
            } else {
                &["validation", "file-type", "too-many-files"]
            };
            if let Some(r) = paths
                .get_mut(&path)
                .and_then(|p| p.pointer_mut(&format!("/{op}/responses/{code}")))
            {
                *r = problem_of(
                    if code == "413" {
                        "The body is larger than 1 MiB, or a file than its field's `max_size`."
                    } else {
                        "The body does not fit the entity (`errors`), a file's type is not accepted, or too many files."
                    },
                    kinds,
                );
            }
        }
    }
    schemas.insert(
        "FileLink".into(),
        json!({
            "type": "object",
            "required": ["url", "expires_at"],
            "properties": {
                "url": { "type": "string", "description": "The file's url with `exp` and `sig`: works without credentials until `expires_at`." },
                "expires_at": { "type": "string", "format": "date-time" }
            }
        }),
    );
    let file_param = json!({ "name": "file", "in": "path", "required": true, "description": "The file's id (`id` in the field's metadata).", "schema": { "type": "string", "format": "uuid" } });
    let field_doc = |f: &Field| f.description.clone().unwrap_or_default();
    let if_match = json!({
        "name": "If-Match", "in": "header", "required": false,
        "description": "The record's version you last saw (its ETag); 412 if it changed since.",
        "schema": { "type": "string" }
    });
    let record = schema_ref(&base);
    for f in file_fields {
        let item = format!("/api/{}/{{id}}/files/{}", e.plural, f.name);
        let thumb_param = json!({ "name": "thumb", "in": "query", "required": false, "description": "One of the field's thumbnail sizes (`100x100`) made of this file.", "schema": { "type": "string" } });
        let multiple = f.file.as_ref().is_some_and(|o| o.multiple);
        paths.insert(
            item.clone(),
            json!({
                "parameters": [id_param(e)],
                "post": {
                    "operationId": format!("add_{}_{}", e.name, f.name),
                    "summary": if multiple { format!("Add files to `{}` of a {}", f.name, e.name) } else { format!("Replace the `{}` of a {}", f.name, e.name) },
                    "description": format!("{} Needs the update permission on the record and the field's write rule. {}", if multiple { "Appends the files (one part each, named after the field or anything else, each with a file name)." } else { "Replaces the file (one part with a file name)." }, field_doc(f)),
                    "tags": [tag],
                    "parameters": [if_match],
                    "requestBody": { "required": true, "content": { "multipart/form-data": { "schema": { "type": "object", "properties": { (f.name.clone()): if multiple { json!({ "type": "array", "items": binary }) } else { binary.clone() } } } } } },
                    "responses": {
                        "200": { "description": "The changed record.", "headers": etag_header(), "content": json_content(record.clone()) },
                        "400": problem("The multipart body is malformed, has no file, or If-Match is malformed."),
                        "403": problem("The caller may read the record but not change it or this field."),
                        "404": problem("No such record (or not visible to the caller), or no such file field."),
                        "412": problem("The record changed since the version in If-Match."),
                        "413": problem_of("A file is larger than the field's `max_size`, or the body has too many parts.", &["file-too-large", "too-large"]),
                        "415": problem("The body is not multipart/form-data, or is compressed."),
                        "422": problem_of("A file's type is not accepted, or the field would hold too many files.", &["file-type", "too-many-files", "validation"]),
                        "503": problem_of("No file storage is configured, or it does not answer.", &["no-file-storage", "file-storage-unavailable", "database-unavailable", "timeout"])
                    }
                }
            }),
        );
        paths.insert(
            format!("{item}/{{file}}"),
            json!({
                "parameters": [id_param(e), file_param.clone()],
                "get": {
                    "operationId": format!("download_{}_{}", e.name, f.name),
                    "summary": format!("Download a file of `{}` of a {}", f.name, e.name),
                    "description": "With the caller's credentials (the record's read policy and the field's read rule apply: 404 when either hides it), or with `exp` and `sig` of a signed url (…/link), without. Answers the content as stored: `Content-Type` the sniffed type, `Content-Disposition` attachment (inline for raster images), `ETag` (304 with If-None-Match), single `Range`s (206, 416), `X-Content-Type-Options: nosniff` and `Content-Security-Policy: sandbox`.",
                    "tags": [tag],
                    "parameters": [
                        thumb_param.clone(),
                        { "name": "exp", "in": "query", "required": false, "description": "A signed url's expiry (unix seconds).", "schema": { "type": "integer" } },
                        { "name": "sig", "in": "query", "required": false, "description": "A signed url's signature.", "schema": { "type": "string" } },
                        { "name": "Range", "in": "header", "required": false, "description": "One byte range, `bytes=0-1023`, `bytes=1024-` or `bytes=-500` (several: the whole file).", "schema": { "type": "string" } },
                        if_none_match_param()
                    ],
                    "responses": {
                        "200": { "description": "The file.", "headers": etag_header(), "content": { "application/octet-stream": { "schema": { "type": "string", "contentMediaType": "application/octet-stream" } } } },
                        "206": { "description": "The bytes the Range asked for (`Content-Range`).", "headers": etag_header(), "content": { "application/octet-stream": { "schema": { "type": "string", "contentMediaType": "application/octet-stream" } } } },
                        "304": not_modified(),
                        "400": problem("A query parameter is malformed."),
                        "403": problem_of("A signed url was tampered with or has expired.", &["invalid-link"]),
                        "404": problem("No such file, or not visible to the caller."),
                        "416": problem_of("The range lies outside the file.", &["range-not-satisfiable"]),
                        "503": problem_of("No file storage is configured, or it does not answer.", &["no-file-storage", "file-storage-unavailable", "database-unavailable", "timeout"])
                    }
                },
                "delete": {
                    "operationId": format!("remove_{}_{}", e.name, f.name),
                    "summary": format!("Remove a file of `{}` of a {}", f.name, e.name),
                    "description": "Needs the update permission on the record and the field's write rule. The content is removed after the commit.",
                    "tags": [tag],
                    "parameters": [if_match],
                    "responses": {
                        "200": { "description": "The changed record.", "headers": etag_header(), "content": json_content(record.clone()) },
                        "400": problem("If-Match is malformed."),
                        "403": problem("The caller may read the record but not change it or this field."),
                        "404": problem("No such file, or not visible to the caller."),
                        "412": problem("The record changed since the version in If-Match."),
                        "422": problem("The field's write rule refuses the change.")
                    }
                }
            }),
        );
        paths.insert(
            format!("{item}/{{file}}/link"),
            json!({
                "parameters": [id_param(e), file_param.clone()],
                "get": {
                    "operationId": format!("link_{}_{}", e.name, f.name),
                    "summary": format!("A signed url of a file of `{}` of a {}", f.name, e.name),
                    "description": "After the same checks as a download: a url that works without credentials until it expires (`files.url_ttl`, 300 s by default), for `<img src>` and links.",
                    "tags": [tag],
                    "parameters": [thumb_param],
                    "responses": {
                        "200": { "description": "The signed url.", "content": json_content(schema_ref("FileLink")) },
                        "400": problem("A query parameter is malformed."),
                        "404": problem("No such file, or not visible to the caller."),
                        "503": problem_of("No file storage is configured.", &["no-file-storage", "database-unavailable", "timeout"])
                    }
                }
            }),
        );
    }
}

/// The transition endpoints, the list of what the caller may fire, and the history.
fn workflow_paths(
    e: &Entity,
    wf: &super::workflow::Workflow,
    paths: &mut Map<String, Value>,
    schemas: &mut Map<String, Value>,
) {
    let base = pascal_case(&e.name);
    let tag = e.label.clone();
    let item = format!("/api/{}/{{id}}", e.plural);
    let states: Vec<&str> = wf.states.iter().map(|s| s.name.as_str()).collect();
    let names: Vec<&str> = wf.transitions.iter().map(|t| t.name.as_str()).collect();
    schemas.insert(
        format!("{base}Transitions"),
        json!({
            "type": "object",
            "required": ["id", "state", "state_label", "final", "version", "transitions"],
            "additionalProperties": false,
            "properties": {
                "id": { "type": "string", "format": "uuid" },
                "state": { "enum": states },
                "state_label": { "type": ["string", "null"] },
                "final": { "type": "boolean", "description": "Does no transition leave this state?" },
                "version": { "type": ["integer", "null"], "description": "The record's version (for If-Match)." },
                "transitions": { "type": "array", "items": {
                    "type": "object",
                    "required": ["name", "label", "to", "allowed", "reasons"],
                    "additionalProperties": false,
                    "properties": {
                        "name": { "enum": names },
                        "label": { "type": "string" },
                        "to": { "enum": states },
                        "allowed": { "type": "boolean", "description": "May this caller fire it now?" },
                        "reasons": { "type": "array", "items": { "type": "string" }, "description": "Why not: missing permission, failing guards." },
                        "depends_on_input": { "type": "boolean", "description": "Some guards read the input, so they are judged when it is sent." },
                        "input": { "type": "object", "description": "The JSON Schema of the input." }
                    }
                } }
            }
        }),
    );
    // One history entry per transition: its `input` is that transition's input.
    let mut entry_refs = Vec::new();
    let mut entry_mapping = Map::new();
    for t in &wf.transitions {
        let name = format!("{base}{}HistoryEntry", pascal_case(&t.name));
        schemas.insert(
            name.clone(),
            json!({
                "type": "object",
                "description": format!("`{}` fired on {}.", t.name, a_or_an(&e.name)),
                "required": ["id", "transition", "from", "to", "actor", "input", "at", "request_id"],
                "additionalProperties": false,
                "properties": {
                    "id": { "type": "string", "format": "uuid" },
                    "transition": { "type": "string", "const": t.name },
                    "from": { "enum": states },
                    "to": { "enum": states },
                    "actor": { "type": ["string", "null"], "description": "The id of the caller who fired it (null: anonymous)." },
                    "input": {
                        "$ref": format!("#/components/schemas/{base}{}Input", pascal_case(&t.name)),
                        "description": "The input as it was sent (`{}` for none)."
                    },
                    "at": { "type": "string", "format": "date-time" },
                    "request_id": { "type": ["string", "null"], "description": "The `X-Request-Id` of the request that fired it (null: fired in a batch)." }
                }
            }),
        );
        entry_mapping.insert(t.name.clone(), component_path(&name));
        entry_refs.push(schema_ref(&name));
    }
    schemas.insert(
        format!("{base}HistoryEntry"),
        tagged_union("transition", entry_refs, entry_mapping),
    );
    schemas.insert(
        format!("{base}History"),
        json!({
            "type": "object",
            "required": ["items", "next"],
            "properties": {
                "items": { "type": "array", "items": schema_ref(&format!("{base}HistoryEntry")) },
                "next": { "type": ["string", "null"], "description": "Pass as `after` for the next page." }
            }
        }),
    );
    paths.insert(
        format!("{item}/transitions"),
        json!({
            "parameters": [id_param(e)],
            "get": {
                "operationId": format!("transitions_of_{}", e.name),
                "summary": format!("What this caller may fire on a {} now, and why not", e.name),
                "tags": [tag],
                "responses": {
                    "200": { "description": "Every transition that leaves the current state.", "content": json_content(schema_ref(&format!("{base}Transitions"))) },
                    "401": problem("Sign in first."),
                    "404": problem("No such record.")
                }
            }
        }),
    );
    paths.insert(
        format!("{item}/history"),
        json!({
            "parameters": [id_param(e)],
            "get": {
                "operationId": format!("history_of_{}", e.name),
                "summary": format!("The transitions of a {}, oldest first", e.name),
                "tags": [tag],
                "parameters": [
                    { "name": "limit", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1, "maximum": 500, "default": 100 } },
                    { "name": "after", "in": "query", "required": false, "description": "The `next` of the previous page.", "schema": { "type": "string", "format": "uuid" } }
                ],
                "responses": {
                    "200": { "description": "A page of history.", "content": json_content(schema_ref(&format!("{base}History"))) },
                    "400": problem("A query parameter is invalid."),
                    "401": problem("Sign in first."),
                    "404": problem("No such record.")
                }
            }
        }),
    );
    for t in &wf.transitions {
        let input = format!("{base}{}Input", pascal_case(&t.name));
        schemas.insert(input.clone(), t.input.schemas.create.clone());
        let mut guards: Vec<String> = t
            .guards
            .iter()
            .map(|g| match g {
                super::workflow::Guard::Check { message, .. }
                | super::workflow::Guard::Where { message, .. } => format!("- {message}"),
            })
            .collect();
        if !guards.is_empty() {
            guards.insert(0, "Guards:".to_string());
        }
        let description = format!(
            "From {} to `{}`. Allowed by the policy action `{}`. {}{}",
            t.from
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", "),
            t.to,
            t.action(),
            t.description.clone().map(|d| d + " ").unwrap_or_default(),
            guards.join("\n")
        );
        paths.insert(
            format!("{item}/transitions/{}", t.name),
            json!({
                "parameters": [id_param(e)],
                "post": {
                    "operationId": format!("{}_{}", t.name, e.name),
                    "summary": format!("{} ({} → {})", t.label, t.from.join(", "), t.to),
                    "description": description,
                    "tags": [tag],
                    "parameters": [{
                        "name": "If-Match", "in": "header", "required": false,
                        "description": "The version you last saw; refused with 412 if the record has changed since.",
                        "schema": { "type": "string" }
                    }],
                    "requestBody": { "required": false, "content": json_content(schema_ref(&input)) },
                    "responses": {
                        "200": { "description": "The record in its new state.", "headers": etag_header(), "content": json_content(schema_ref(&base)) },
                        "400": problem("The body is not valid JSON, or If-Match is malformed."),
                        "401": problem("Sign in first."),
                        "403": problem("The caller may see the record but not fire this transition."),
                        "404": problem("No such record."),
                        "409": problem_of("The record is not in a state this transition leaves from (`state`, `possible`), or another change won a race.", &["wrong-state", "conflict"]),
                        "412": problem("The record changed since the version in If-Match."),
                        "413": problem("The body is larger than 1 MiB."),
                        "415": problem("The body is not declared as application/json, or is compressed."),
                        "422": problem_of("The input does not fit (`errors`), or a guard failed (`reasons`).", &["validation", "guard-failed"]),
                        "500": problem_of("A workflow effect failed; nothing was written.", &["effect-failed", "internal"])
                    }
                }
            }),
        );
    }
}

fn auth_paths(
    engine: &Engine,
    users: &str,
    paths: &mut Map<String, Value>,
    components: &mut Value,
) {
    let Some(e) = engine.entity(users) else {
        return;
    };
    let record = pascal_case(&e.name);
    let mut signup = e.schemas.create.clone();
    signup["properties"]["password"] =
        json!({ "type": "string", "minLength": 8, "maxLength": 256, "writeOnly": true });
    let mut required: Vec<Value> = signup["required"].as_array().cloned().unwrap_or_default();
    required.push(json!("password"));
    signup["required"] = Value::Array(required);
    if let Some(rf) = engine
        .auth
        .users
        .as_ref()
        .and_then(|u| u.role_field.as_ref())
        && let Some(props) = signup["properties"].as_object_mut()
    {
        props.shift_remove(&rf.name);
    }
    if let Some(schemas) = components["schemas"].as_object_mut() {
        schemas.insert("Signup".into(), signup);
        schemas.insert(
            "Login".into(),
            json!({
                "type": "object", "required": ["email", "password"],
                "properties": { "email": { "type": "string" }, "password": { "type": "string", "writeOnly": true } }
            }),
        );
        schemas.insert(
            "Session".into(),
            json!({
                "type": "object", "required": ["access_token", "token_type", "expires_in", "refresh_token", "user"],
                "properties": {
                    "access_token": { "type": "string", "description": "A JWT for `Authorization: Bearer …`." },
                    "refresh_token": { "type": "string", "description": "Trade it at /auth/refresh for new tokens; it works once." },
                    "token_type": { "type": "string", "const": "Bearer" },
                    "expires_in": { "type": "integer", "description": "Seconds until the token expires." },
                    "user": schema_ref(&record)
                }
            }),
        );
    }
    paths.insert(
        "/auth/signup".into(),
        json!({ "post": {
            "operationId": "signup", "summary": "Create an account and sign in", "tags": ["Auth"],
            "security": [{}],
            "requestBody": { "required": true, "content": json_content(schema_ref("Signup")) },
            "responses": {
                "201": { "description": "The account and a token.", "content": json_content(schema_ref("Session")) },
                "400": problem("The body is not valid JSON."),
                "409": problem_of("The email is already taken.", &["unique"]),
                "413": problem("The body is larger than 1 MiB."),
                "415": problem("The body is not declared as application/json, or is compressed."),
                "422": problem("The body does not fit; `errors` lists each problem."),
                "429": problem("Too many signups from this address (`limits.signup`); `Retry-After` says when to try again.")
            }
        }}),
    );
    paths.insert(
        "/auth/login".into(),
        json!({ "post": {
            "operationId": "login", "summary": "Sign in with email and password", "tags": ["Auth"],
            "security": [{}],
            "requestBody": { "required": true, "content": json_content(schema_ref("Login")) },
            "responses": {
                "200": { "description": "A token.", "content": json_content(schema_ref("Session")) },
                "400": problem("The body is not valid JSON."),
                "401": problem("Wrong email or password."),
                "413": problem("The body is larger than 1 MiB."),
                "415": problem("The body is not declared as application/json, or is compressed."),
                "422": problem("Email or password missing."),
                "429": problem("Too many attempts for this account or from this address; `retry_after` says when to try again.")
            }
        }}),
    );
    let refresh_body = json!({
        "type": "object", "required": ["refresh_token"],
        "properties": { "refresh_token": { "type": "string", "writeOnly": true } }
    });
    paths.insert(
        "/auth/refresh".into(),
        json!({ "post": {
            "operationId": "refresh", "summary": "Trade a refresh token for new tokens (each refresh token works once)", "tags": ["Auth"],
            "security": [{}],
            "requestBody": { "required": true, "content": json_content(refresh_body.clone()) },
            "responses": {
                "200": { "description": "New tokens.", "content": json_content(schema_ref("Session")) },
                "400": problem("The body is not valid JSON."),
                "401": problem("Unknown, expired or already used refresh token (reuse closes every session of the account)."),
                "413": problem("The body is larger than 1 MiB."),
                "415": problem("The body is not declared as application/json, or is compressed."),
                "422": problem("No refresh token.")
            }
        }}),
    );
    paths.insert(
        "/auth/logout".into(),
        json!({ "post": {
            "operationId": "logout", "summary": "Revoke a refresh token", "tags": ["Auth"],
            "security": [{}],
            "requestBody": { "required": true, "content": json_content(refresh_body) },
            "responses": {
                "204": { "description": "Revoked (or already unknown)." },
                "400": problem("The body is not valid JSON."),
                "413": problem("The body is larger than 1 MiB."),
                "415": problem("The body is not declared as application/json, or is compressed."),
                "422": problem("No refresh token.")
            }
        }}),
    );
}

/// The answer of `/_/explain`.
fn explanation_schema() -> Value {
    json!({
        "type": "object",
        "required": ["entity", "id", "action", "caller", "decision", "reason", "rules"],
        "additionalProperties": false,
        "properties": {
            "entity": { "type": "string" },
            "id": { "type": "string", "format": "uuid" },
            "action": { "type": "string", "description": "list, read, create, update, delete, aggregate or transition.<name>." },
            "caller": {
                "type": "object", "required": ["id", "roles"], "additionalProperties": false,
                "properties": {
                    "id": { "type": ["string", "null"], "description": "null: anonymous." },
                    "roles": { "type": "array", "items": { "type": "string" } }
                }
            },
            "decision": { "type": "string", "enum": ["allow", "deny"] },
            "reason": { "type": "string" },
            "rules": { "type": "array", "description": "Every rule of the entity's policy, in order.", "items": {
                "type": "object", "required": ["name", "effect"], "additionalProperties": false,
                "properties": {
                    "name": { "type": "string" },
                    "effect": { "type": "string", "enum": ["allow", "deny"] },
                    "skipped": { "type": "string", "enum": ["role", "action"], "description": "Why the rule does not apply, if it does not." },
                    "condition": { "type": "string" },
                    "condition_holds": { "type": "boolean", "description": "Does its condition hold on the record (rules that apply)?" }
                }
            } },
            "fields": {
                "type": "object",
                "description": "The fields the caller does not always see, and how each shows on this record (absent when no policy was needed).",
                "additionalProperties": { "type": "string", "enum": ["hidden", "shown on this record", "hidden on this record"] }
            }
        }
    })
}

/// `/_/status` and the answer of `/_/reload`.
fn status_schemas(schemas: &mut Map<String, Value>) {
    let result = json!({ "type": "string", "enum": ["ok", "failed"] });
    let details = json!({
        "generation": { "type": "integer", "minimum": 1, "description": "Incremented by every successful load." },
        "loaded_at": { "type": "string", "format": "date-time", "description": "When the definitions now serving were loaded." },
        "last_attempt_at": { "type": "string", "format": "date-time" },
        "last_result": result,
        "diagnostics": { "type": "array", "description": "The problems of the last attempt.", "items": schema_ref("Diagnostic") },
        "applied": { "type": "array", "items": { "type": "string" }, "description": "Schema changes the last successful reload applied." },
        "entities": { "type": "array", "items": {
            "type": "object", "required": ["name", "route"], "additionalProperties": false,
            "properties": { "name": { "type": "string" }, "route": { "type": "string" } }
        } },
        "policies": { "type": "boolean", "description": "Are policies enforced?" }
    });
    let detail_names: Vec<&String> = details
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    schemas.insert(
        "Diagnostic".into(),
        json!({
            "type": "object",
            "description": "A problem in a definition file.",
            "required": ["severity", "code", "file", "line", "column", "message"],
            "additionalProperties": false,
            "properties": {
                "severity": { "type": "string", "enum": ["error", "warning"] },
                "code": { "type": "string", "description": "Stable: tools may match on it." },
                "file": { "type": "string", "description": "Relative to the project folder." },
                "line": { "type": "integer", "minimum": 1 },
                "column": { "type": "integer", "minimum": 1 },
                "message": { "type": "string" },
                "hint": { "type": "string" }
            }
        }),
    );
    schemas.insert(
        "ReloadResult".into(),
        json!({
            "type": "object",
            "description": "How the last reload went.",
            "required": detail_names,
            "additionalProperties": false,
            "properties": details
        }),
    );
    let mut props = details.clone();
    props["status"] = json!({ "type": "string", "enum": ["ok", "failed"], "description": "The last reload's result (the previous definitions keep serving after a failure)." });
    props["webhooks"] = json!({
        "type": "object",
        "description": "Webhook deliveries in the outbox by state.",
        "required": ["pending", "delivered", "failed"],
        "properties": {
            "pending": { "type": "integer", "minimum": 0 },
            "delivered": { "type": "integer", "minimum": 0 },
            "failed": { "type": "integer", "minimum": 0 }
        },
        "additionalProperties": { "type": "integer", "minimum": 0 }
    });
    let mut required: Vec<Value> = detail_names.iter().map(|n| json!(n)).collect();
    required.push(json!("status"));
    schemas.insert(
        "StatusDetails".into(),
        json!({
            "type": "object",
            "description": "The status as administrators (or anyone, on a project without authentication and policies) see it. `webhooks` is left out when the outbox cannot be read.",
            "required": required,
            "additionalProperties": false,
            "properties": props
        }),
    );
    schemas.insert(
        "StatusSummary".into(),
        json!({
            "type": "object",
            "description": "The status as other callers see it.",
            "required": ["status"],
            "additionalProperties": false,
            "properties": { "status": props["status"].clone() }
        }),
    );
    schemas.insert(
        "Status".into(),
        json!({
            "description": "The short answer, or the details (tell them apart with `\"generation\" in body`).",
            "oneOf": [schema_ref("StatusSummary"), schema_ref("StatusDetails")]
        }),
    );
}

/// Most operations in one batch (as `http::batch` enforces).
const BATCH_MAX_OPERATIONS: usize = 100;

/// A union of `refs` told apart by the property `by`: `mapping` maps its values to
/// the schemas.
fn tagged_union(by: &str, refs: Vec<Value>, mapping: Map<String, Value>) -> Value {
    json!({ "type": "object", "oneOf": refs, "discriminator": { "propertyName": by, "mapping": mapping } })
}

fn component_path(name: &str) -> Value {
    json!(format!("#/components/schemas/{name}"))
}

/// The batch's schemas: an operation is a union by `op`, each of which is a union by
/// `entity` (and a transition by `name` too), so that every `data` has its entity's
/// body schema; a result is a record or a deletion.
fn batch_schemas(engine: &Engine, schemas: &mut Map<String, Value>) {
    let reference_note =
        "An id, or a reference like \"$0.id\" (that field of an earlier operation's result).";
    let entity_names = |e: &Entity| {
        let mut names = vec![json!(e.name)];
        if e.plural != e.name {
            names.push(json!(e.plural));
        }
        names
    };
    // One flat union of every (operation, entity[, transition]): generators that
    // cannot nest unions (openapi-generator) still take it, and TypeScript tells the
    // members apart by their literal `op`, `entity` and `name`.
    let mut leaves = Vec::new();
    for op in ["create", "update", "delete", "transition"] {
        for e in engine.entities() {
            let base = pascal_case(&e.name);
            let name = format!("Batch{}{base}", pascal_case(op));
            let mut props = Map::new();
            props.insert("op".into(), json!({ "type": "string", "const": op }));
            props.insert(
                "entity".into(),
                json!({ "type": "string", "enum": entity_names(e), "description": "The entity (or its plural)." }),
            );
            let mut required = vec![json!("op"), json!("entity")];
            if op != "create" {
                props.insert(
                    "id".into(),
                    json!({ "type": "string", "description": reference_note }),
                );
                required.push(json!("id"));
            }
            if op != "create" {
                props.insert(
                    "if_match".into(),
                    json!({ "type": "integer", "description": "The version the record must still have (412 otherwise)." }),
                );
            }
            let schema = match op {
                "create" | "update" => {
                    let body = if op == "create" {
                        format!("{base}Create")
                    } else {
                        format!("{base}Update")
                    };
                    let mut data = schema_ref(&body);
                    data["description"] = json!(
                        "The body, as for a single request; any string value may be a reference like \"$0.id\"."
                    );
                    props.insert("data".into(), data);
                    required.push(json!("data"));
                    json!({
                        "type": "object",
                        "description": format!("{} {} (as `{}` would).", pascal_case(op), a_or_an(&e.name), if op == "create" { format!("POST /api/{}", e.plural) } else { format!("PATCH /api/{}/{{id}}", e.plural) }),
                        "required": required, "additionalProperties": false, "properties": props
                    })
                }
                "delete" => json!({
                    "type": "object",
                    "description": format!("Delete {}; its result is `{{id, deleted: true}}`.", a_or_an(&e.name)),
                    "required": required, "additionalProperties": false, "properties": props
                }),
                _ => {
                    let Some(wf) = engine.workflow(&e.name) else {
                        continue;
                    };
                    for t in &wf.transitions {
                        let t_name = format!("{name}{}", pascal_case(&t.name));
                        let mut t_props = props.clone();
                        t_props.insert(
                            "name".into(),
                            json!({ "type": "string", "const": t.name, "description": "The transition." }),
                        );
                        let mut input = schema_ref(&format!("{base}{}Input", pascal_case(&t.name)));
                        input["description"] = json!("The transition's input (none: `{}`).");
                        t_props.insert("data".into(), input);
                        let mut t_required = required.clone();
                        t_required.push(json!("name"));
                        schemas.insert(
                            t_name.clone(),
                            json!({
                                "type": "object",
                                "description": format!("Fire `{}` on {}.", t.name, a_or_an(&e.name)),
                                "required": t_required, "additionalProperties": false, "properties": t_props
                            }),
                        );
                        leaves.push(schema_ref(&t_name));
                    }
                    continue;
                }
            };
            schemas.insert(name.clone(), schema);
            leaves.push(schema_ref(&name));
        }
    }
    schemas.insert(
        "BatchOperation".into(),
        json!({
            "description": "One operation: `op`, `entity` (and `name` for a transition) say which member it is, and so what its `data` is.",
            "oneOf": leaves
        }),
    );
    schemas.insert(
        "BatchRequest".into(),
        json!({
            "type": "object",
            "required": ["operations"],
            "properties": { "operations": {
                "type": "array",
                // Not `maxItems`: a longer batch is a 413 (a limit on the request's
                // size), which a contract tester would read as accepting data the
                // schema forbids; the limit is stated here instead.
                "description": format!("At most {} operations (413 beyond), run in order.", BATCH_MAX_OPERATIONS),
                "items": schema_ref("BatchOperation")
            } }
        }),
    );
    schemas.insert(
        "BatchDeleted".into(),
        json!({
            "type": "object",
            "description": "The result of a delete.",
            "required": ["id", "deleted"],
            "additionalProperties": false,
            "properties": {
                "id": { "type": "string", "format": "uuid" },
                "deleted": { "type": "boolean", "const": true }
            }
        }),
    );
    let mut results: Vec<Value> = engine
        .entities()
        .iter()
        .map(|e| schema_ref(&pascal_case(&e.name)))
        .collect();
    results.push(schema_ref("BatchDeleted"));
    schemas.insert(
        "BatchResult".into(),
        json!({
            "description": "One operation's result: the record it wrote, as a single request returns it (create, update, transition), or `{id, deleted: true}` (delete).",
            "anyOf": results
        }),
    );
    schemas.insert(
        "BatchResponse".into(),
        json!({
            "type": "object",
            "required": ["results"],
            "properties": { "results": {
                "type": "array",
                "description": "Every operation's result, in the order of the operations.",
                "items": schema_ref("BatchResult")
            } }
        }),
    );
}

/// The probes (`/_/live`, `/_/ready` and its alias `/_/health`) and `/metrics`.
fn operations_paths(paths: &mut Map<String, Value>) {
    let ok = json!({
        "type": "object",
        "required": ["status"],
        "properties": { "status": { "type": "string", "const": "ok" } }
    });
    let ready = |operation_id: &str, summary: &str| {
        json!({ "get": {
            "operationId": operation_id,
            "summary": summary,
            "description": "Ready when the definitions are loaded, the process is not draining (SIGTERM, SIGINT) and the database answers a trivial query within 2 s (one query at a time whatever the number of probes; a success stands for a second). Not rate-limited.",
            "tags": ["System"],
            "security": [{}],
            "responses": {
                "200": { "description": "Ready.", "content": json_content(ok.clone()) },
                "503": problem_of("Not ready: draining (`shutting-down`), definitions not loaded (`not-loaded`), or the database does not answer (`database-unavailable`); try again after Retry-After.", &["shutting-down", "not-loaded", "database-unavailable"])
            }
        }})
    };
    paths.insert(
        "/_/ready".into(),
        ready("ready", "Can this instance serve requests?"),
    );
    paths.insert(
        "/_/health".into(),
        ready(
            "health",
            "Can this instance serve requests? (alias of /_/ready)",
        ),
    );
    paths.insert(
        "/_/live".into(),
        json!({ "get": {
            "operationId": "live",
            "summary": "Is the process up?",
            "description": "200 while the process runs, draining included. Not rate-limited.",
            "tags": ["System"],
            "security": [{}],
            "responses": { "200": { "description": "Alive.", "content": json_content(ok) } }
        }}),
    );
    paths.insert(
        "/metrics".into(),
        json!({ "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics of this process",
            "description": "The OpenMetrics text exposition: requests and latencies per route template, method and status; database pool; open event streams; outbox; reloads; rate-limit refusals. On a project with authentication or policies, only callers with the role `admin` (`serve --metrics-addr` serves it without authentication on a separate listener).",
            "tags": ["System"],
            "responses": {
                "200": { "description": "The exposition.", "content": { "application/openmetrics-text": { "schema": { "type": "string" } } } },
                "401": problem("Sign in first (or the token is not valid)."),
                "403": problem("Only callers with the role `admin` read the metrics.")
            }
        }}),
    );
}

/// Builds the document.
pub fn document(engine: &Engine) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    problem_schemas(&mut schemas);
    status_schemas(&mut schemas);
    schemas.insert("Explanation".into(), explanation_schema());
    operations_paths(&mut paths);
    paths.insert(
        "/openapi.json".into(),
        json!({
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "tags": ["System"],
                "parameters": [if_none_match_param()],
                "responses": {
                    "200": { "description": "The OpenAPI document.", "headers": weak_etag_header(), "content": json_content(json!({ "type": "object" })) },
                    "304": not_modified()
                }
            }
        }),
    );
    paths.insert(
        "/api/batch".into(),
        json!({
            "post": {
                "operationId": "batch",
                "summary": "Several writes in one transaction: all of them, or none",
                "description": "Operations run in order; each is checked as if sent alone (validation, policies, field rules). A string \"$N.field\" in `id` or `data` is that field of operation N's result (\"$0.id\": the id operation 0 wrote). On failure nothing is written and the problem's `operation` names the failing index.",
                "tags": ["System"],
                "requestBody": { "required": true, "content": json_content(schema_ref("BatchRequest")) },
                "responses": {
                    "200": { "description": "Every operation's result, in order (a deleted record as `{id, deleted: true}`).", "content": json_content(schema_ref("BatchResponse")) },
                    "400": problem("An operation is malformed; `operation` is its index."),
                    "401": problem("An operation needs a signed-in caller."),
                    "403": problem("An operation is not allowed; `operation` is its index."),
                    "404": problem("An operation names a record that does not exist or is not visible."),
                    "409": problem_of("An operation conflicts (unique value, reference, workflow state).", &["unique", "still-referenced", "wrong-state", "conflict"]),
                    "412": problem("An update's, delete's or transition's `if_match` is stale."),
                    "413": problem("More than 100 operations, or a body over 1 MiB."),
                    "415": problem("The body is not declared as application/json, or is compressed."),
                    "422": problem_of("An operation's data does not fit, or a transition's guard failed; `operation` is its index.", &["validation", "guard-failed"]),
                    "500": problem_of("A workflow effect failed; nothing was written.", &["effect-failed", "internal"])
                }
            }
        }),
    );
    paths.insert(
        "/_/status".into(),
        json!({
            "get": {
                "operationId": "status",
                "summary": "The loaded definitions and the result of the last reload",
                "description": "On a project with authentication or policies, only callers with the role `admin` get the details; everyone else gets `{\"status\": \"ok\" | \"failed\"}`.",
                "tags": ["System"],
                "responses": {
                    "200": {
                        "description": "The last reload's result (`status`); for administrators also the generation, load times, entities, and the diagnostics of the last reload attempt (a failed reload keeps the previous definitions serving).",
                        "content": json_content(schema_ref("Status"))
                    },
                    "401": problem("The token is not valid (no token is fine: the short answer).")
                }
            }
        }),
    );
    paths.insert(
        "/_/reload".into(),
        json!({
            "post": {
                "operationId": "reload",
                "summary": "Load the definition files again now (administrators)",
                "description": "Does what a file change or SIGHUP does: load, check, bring the database along (additive changes), swap. Not available in production mode.",
                "tags": ["System"],
                "responses": {
                    "200": { "description": "The new definitions serve; the body is the status.", "content": json_content(schema_ref("ReloadResult")) },
                    "401": problem("Sign in first."),
                    "403": problem("Only callers with the role `admin` may reload."),
                    "422": { "description": "The files have problems; the previous definitions keep serving. The body is the status, with `diagnostics`.", "content": json_content(schema_ref("ReloadResult")) },
                    "503": problem_of("This server does not reload (production mode), or the database does not answer.", &["no-reload", "database-unavailable", "timeout"])
                }
            }
        }),
    );
    let explain_param = |name: &str, description: &str, required: bool| json!({ "name": name, "in": "query", "required": required, "description": description, "schema": { "type": "string" } });
    paths.insert(
        "/_/explain".into(),
        json!({
            "get": {
                "operationId": "explain",
                "summary": "Why a user may or may not do an action on a record (administrators only)",
                "tags": ["System"],
                "parameters": [
                    explain_param("entity", "The entity.", true),
                    explain_param("id", "The record's id.", true),
                    explain_param("action", "list, read, create, update, delete, aggregate or transition.<name>.", true),
                    explain_param("as", "The user id to explain for (absent: anonymous).", false),
                    explain_param("roles", "That user's roles, comma-separated.", false)
                ],
                "responses": {
                    "200": { "description": "The rules, whether each applies and holds, the decision and the field visibility.", "content": json_content(schema_ref("Explanation")) },
                    "400": problem("A parameter is missing or wrong."),
                    "401": problem("Sign in as an administrator."),
                    "403": problem("Only callers with the role `admin` may ask."),
                    "404": problem("No such record.")
                }
            }
        }),
    );
    batch_schemas(engine, &mut schemas);
    for e in engine.entities() {
        entity_paths(engine, e, &mut paths, &mut schemas);
        file_paths(e, &mut paths, &mut schemas);
        if let Some(wf) = engine.workflow(&e.name) {
            workflow_paths(e, wf, &mut paths, &mut schemas);
        }
    }
    let mut info = json!({
        "title": engine.title,
        "version": env!("CARGO_PKG_VERSION"),
        // The project sets none; an SPDX `LicenseRef-` says so (generators such as
        // openapi-generator refuse a license without an identifier).
        "license": { "name": "Not specified", "identifier": "LicenseRef-NotSpecified" },
    });
    if let Some(d) = &engine.description {
        info["description"] = json!(d);
    }
    // Assembled by moving the maps in: `json!` would copy each interpolated value
    // (it serializes them), and paths and schemas are most of the document.
    let mut components = Value::Object(Map::from_iter([
        ("schemas".to_string(), Value::Object(schemas)),
        ("responses".to_string(), shared_responses()),
    ]));
    let mut doc_security = Value::Null;
    if engine.auth.jwt.is_some() {
        components["securitySchemes"] = json!({
            "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                        "description": "A JWT in `Authorization: Bearer <token>`. Without one, the caller is `anonymous`." }
        });
        // A token is optional everywhere: anonymous callers get what the policies give them.
        doc_security = json!([{ "bearer": [] }, {}]);
    }
    if let Some(users) = &engine.auth.users {
        auth_paths(engine, &users.entity.name, &mut paths, &mut components);
    }
    if engine.access.enforced {
        for item in paths.values_mut() {
            let Some(obj) = item.as_object_mut() else {
                continue;
            };
            for (method, op) in obj.iter_mut() {
                if method == "parameters" {
                    continue;
                }
                if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                    responses.entry("401").or_insert_with(|| problem("The token is missing, expired or invalid, or this needs a signed-in caller."));
                    responses
                        .entry("403")
                        .or_insert_with(|| problem("The caller may see this but not do this."));
                }
            }
        }
    }
    type_problems(&mut paths);
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": info,
        "servers": [{ "url": "/", "description": "The server that serves this document." }],
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
    });
    doc["paths"] = Value::Object(paths);
    doc["components"] = components;
    if !doc_security.is_null() {
        doc["security"] = doc_security;
    }
    doc
}
