//! The OpenAPI 3.1 document, built from the loaded definitions. It lists exactly the
//! routes the server answers: [`routes`] is the one list both use.

use serde_json::{Map, Value, json};

use super::query::{DEFAULT_LIMIT, MAX_LIMIT};
use super::{Engine, Entity, pascal_case};

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

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } }
    })
}

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
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
    let mut group_props = Map::new();
    for g in &groupable {
        group_props.insert((*g).to_string(), json!({}));
    }
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
                "200": {
                    "description": "One object per group: the group keys, then the metrics (`count`, `sum_<field>`, `avg_<field>`, …). Decimal sums are strings with their scale; averages are numbers.",
                    "content": json_content(json!({
                        "type": "object",
                        "required": ["groups"],
                        "properties": { "groups": { "type": "array", "items": { "type": "object" } } }
                    }))
                },
                "400": problem("A parameter is invalid; `parameter` names it.")
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
                "400": problem("A parameter is invalid; `parameter` names it."),
                "401": problem("Sign in first."),
                "403": problem("The caller may not list these records."),
                "429": problem("This caller or address has as many streams open as it may (`limits.streams`); close one. `Retry-After` says when to try again."),
                "503": problem("The server has as many streams open as it may; `Retry-After` says when to try again.")
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
            "parameters": list_params(e),
            "responses": {
                "200": { "description": "A page of records (oldest first unless `sort` says otherwise).", "content": json_content(schema_ref(&list)) },
                "400": problem("A query parameter is invalid; `parameter` names it (and `column`, the position in a filter).")
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
                "409": problem("A unique value is already taken."),
                "413": problem("The body is larger than 1 MiB."),
                "415": problem("The body is not declared as application/json."),
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
            "parameters": [fields_param(e), expand_param(e)],
            "responses": {
                "200": { "description": "The record.", "headers": etag_header(), "content": json_content(schema_ref(&record)) },
                "400": problem("A query parameter is invalid."),
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
                "409": problem("A unique value is already taken."),
                "412": problem("The record changed since the version in If-Match."),
                "413": problem("The body is larger than 1 MiB."),
                "415": problem("The body is not declared as application/json."),
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
                "409": problem("Other records still reference this one."),
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
            "required": ["id", "state", "transitions"],
            "properties": {
                "id": { "type": "string", "format": "uuid" },
                "state": { "enum": states },
                "state_label": { "type": ["string", "null"] },
                "final": { "type": "boolean" },
                "version": { "type": "integer" },
                "transitions": { "type": "array", "items": {
                    "type": "object",
                    "required": ["name", "label", "to", "allowed", "reasons"],
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
    schemas.insert(
        format!("{base}History"),
        json!({
            "type": "object",
            "required": ["items", "next"],
            "properties": {
                "items": { "type": "array", "items": {
                    "type": "object",
                    "required": ["id", "transition", "from", "to", "input", "at"],
                    "properties": {
                        "id": { "type": "string", "format": "uuid" },
                        "transition": { "enum": names },
                        "from": { "enum": states },
                        "to": { "enum": states },
                        "actor": { "type": ["string", "null"], "description": "The id of the caller who fired it." },
                        "input": { "type": "object" },
                        "at": { "type": "string", "format": "date-time" },
                        "request_id": { "type": ["string", "null"] }
                    }
                } },
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
                        "409": problem("The record is not in a state this transition leaves from (`state`, `possible`), or another change won a race."),
                        "412": problem("The record changed since the version in If-Match."),
                        "413": problem("The body is larger than 1 MiB."),
                        "415": problem("The body is not declared as application/json."),
                        "422": problem("The input does not fit (`errors`), or a guard failed (`reasons`).")
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
                "409": problem("The email is already taken."),
                "413": problem("The body is larger than 1 MiB."),
                "415": problem("The body is not declared as application/json."),
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
                "415": problem("The body is not declared as application/json."),
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
                "415": problem("The body is not declared as application/json."),
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
                "415": problem("The body is not declared as application/json."),
                "422": problem("No refresh token.")
            }
        }}),
    );
}

/// Builds the document.
pub fn document(engine: &Engine) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(
        "Problem".into(),
        json!({
            "type": "object",
            "description": "An RFC 9457 problem.",
            "required": ["type", "title", "status"],
            "properties": {
                "type": { "type": "string" },
                "title": { "type": "string" },
                "status": { "type": "integer" },
                "detail": { "type": "string" },
                "instance": { "type": "string" },
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["pointer", "detail"],
                        "properties": {
                            "pointer": { "type": "string", "description": "A JSON pointer into the request body." },
                            "detail": { "type": "string" }
                        }
                    }
                }
            }
        }),
    );
    paths.insert(
        "/_/health".into(),
        json!({
            "get": {
                "operationId": "health",
                "summary": "Is the server ready?",
                "description": "Ready when the database answers a trivial query within 3 s.",
                "tags": ["System"],
                "responses": {
                    "503": problem("The database does not answer; try again later (Retry-After)."),
                    "200": {
                        "description": "Ready.",
                        "content": json_content(json!({
                            "type": "object",
                            "required": ["status"],
                            "properties": { "status": { "type": "string", "const": "ok" } }
                        }))
                    }
                }
            }
        }),
    );
    paths.insert(
        "/openapi.json".into(),
        json!({
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "tags": ["System"],
                "responses": { "200": { "description": "The OpenAPI document.", "content": json_content(json!({ "type": "object" })) } }
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
                "requestBody": { "required": true, "content": json_content(json!({
                    "type": "object",
                    "required": ["operations"],
                    "properties": { "operations": { "type": "array", "description": "At most 100 operations (413 beyond).", "items": {
                        "type": "object",
                        "required": ["op", "entity"],
                        "additionalProperties": false,
                        "properties": {
                            "op": { "enum": ["create", "update", "delete", "transition"] },
                            "entity": { "type": "string", "description": "The entity (or its plural)." },
                            "id": { "type": "string", "description": "For update, delete and transition: an id or a reference like \"$0.id\"." },
                            "data": { "type": "object", "description": "For create and update: the body, as for a single request; for transition: its input." },
                            "name": { "type": "string", "description": "For transition: the transition's name." },
                            "if_match": { "type": "integer", "description": "For update, delete and transition: the expected version." }
                        }
                    } } }
                })) },
                "responses": {
                    "200": { "description": "Every operation's result, in order (a deleted record as `{id, deleted: true}`).", "content": json_content(json!({
                        "type": "object", "required": ["results"],
                        "properties": { "results": { "type": "array", "items": { "type": "object" } } }
                    })) },
                    "400": problem("An operation is malformed; `operation` is its index."),
                    "401": problem("An operation needs a signed-in caller."),
                    "403": problem("An operation is not allowed; `operation` is its index."),
                    "404": problem("An operation names a record that does not exist or is not visible."),
                    "409": problem("An operation conflicts (unique value, reference, workflow state)."),
                    "412": problem("An update's, delete's or transition's `if_match` is stale."),
                    "413": problem("More than 100 operations, or a body over 1 MiB."),
                    "415": problem("The body is not declared as application/json."),
                    "422": problem("An operation's data does not fit; `operation` is its index.")
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
                        "content": json_content(json!({
                            "type": "object",
                            "required": ["status"],
                            "properties": {
                                "status": { "enum": ["ok", "failed"] },
                                "generation": { "type": "integer" },
                                "loaded_at": { "type": "string", "format": "date-time" },
                                "last_attempt_at": { "type": "string", "format": "date-time" },
                                "last_result": { "enum": ["ok", "failed"] },
                                "diagnostics": { "type": "array", "items": { "type": "object" } },
                                "applied": { "type": "array", "items": { "type": "string" } },
                                "entities": { "type": "array", "items": { "type": "object" } },
                                "policies": { "type": "boolean" },
                                "webhooks": {
                                    "type": "object",
                                    "description": "Webhook deliveries in the outbox by state.",
                                    "properties": {
                                        "pending": { "type": "integer" },
                                        "delivered": { "type": "integer" },
                                        "failed": { "type": "integer" }
                                    }
                                }
                            }
                        }))
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
                    "200": { "description": "The new definitions serve; the body is the status.", "content": json_content(json!({ "type": "object" })) },
                    "401": problem("Sign in first."),
                    "403": problem("Only callers with the role `admin` may reload."),
                    "422": { "description": "The files have problems; the previous definitions keep serving. The body is the status, with `diagnostics`.", "content": json_content(json!({ "type": "object" })) },
                    "503": problem("This server does not reload (production mode).")
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
                    "200": { "description": "The rules, whether each applies and holds, the decision and the field visibility.", "content": json_content(json!({ "type": "object" })) },
                    "400": problem("A parameter is missing or wrong."),
                    "401": problem("Sign in as an administrator."),
                    "403": problem("Only callers with the role `admin` may ask."),
                    "404": problem("No such record.")
                }
            }
        }),
    );
    for e in engine.entities() {
        entity_paths(engine, e, &mut paths, &mut schemas);
        if let Some(wf) = engine.workflow(&e.name) {
            workflow_paths(e, wf, &mut paths, &mut schemas);
        }
    }
    let mut info = json!({
        "title": engine.title,
        "version": env!("CARGO_PKG_VERSION"),
    });
    if let Some(d) = &engine.description {
        info["description"] = json!(d);
    }
    let mut components = json!({ "schemas": schemas });
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
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": info,
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "paths": paths,
        "components": components
    });
    if !doc_security.is_null() {
        doc["security"] = doc_security;
    }
    doc
}
