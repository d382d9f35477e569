//! The OpenAPI 3.1 document, built from the loaded definitions. It lists exactly the
//! routes the server answers: [`routes`] is the one list both use.

use serde_json::{Map, Value, json};

use super::{Engine, Entity, pascal_case};

pub const MAX_LIMIT: u32 = 200;
pub const DEFAULT_LIMIT: u32 = 20;

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
    ];
    for e in engine.entities() {
        let collection = format!("/api/{}", e.plural);
        let item = format!("/api/{}/{{id}}", e.plural);
        for method in ["get", "post"] {
            out.push(Route {
                method,
                path: collection.clone(),
            });
        }
        for method in ["get", "patch", "delete"] {
            out.push(Route {
                method,
                path: item.clone(),
            });
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

fn entity_paths(e: &Entity, paths: &mut Map<String, Value>, schemas: &mut Map<String, Value>) {
    let base = pascal_case(&e.name);
    let record = base.to_string();
    let create = format!("{base}Create");
    let update = format!("{base}Update");
    let list = format!("{base}List");
    schemas.insert(record.clone(), e.schemas.record.clone());
    schemas.insert(create.clone(), e.schemas.create.clone());
    schemas.insert(update.clone(), e.schemas.update.clone());
    schemas.insert(
        list.clone(),
        json!({
            "type": "object",
            "required": ["items", "next"],
            "properties": {
                "items": { "type": "array", "items": schema_ref(&record) },
                "next": { "type": ["string", "null"], "description": "Pass as `after` to get the next page; null on the last page." }
            }
        }),
    );
    let tag = e.label.clone();
    let collection = json!({
        "get": {
            "operationId": format!("list_{}", e.plural),
            "summary": format!("List {} records", e.name),
            "tags": [tag],
            "parameters": [
                {
                    "name": "limit", "in": "query", "required": false,
                    "description": format!("How many records to return (1 to {MAX_LIMIT}, default {DEFAULT_LIMIT})."),
                    "schema": { "type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT }
                },
                {
                    "name": "after", "in": "query", "required": false,
                    "description": "The `next` cursor of the previous page.",
                    "schema": { "type": "string" }
                }
            ],
            "responses": {
                "200": { "description": "A page of records, oldest first.", "content": json_content(schema_ref(&list)) },
                "400": problem("A query parameter is invalid.")
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
            "responses": {
                "200": { "description": "The record.", "headers": etag_header(), "content": json_content(schema_ref(&record)) },
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
            "responses": {
                "204": { "description": "Deleted." },
                "404": problem("No such record."),
                "409": problem("Other records still reference this one.")
            }
        }
    });
    paths.insert(format!("/api/{}", e.plural), collection);
    paths.insert(format!("/api/{}/{{id}}", e.plural), item);
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
                "tags": ["System"],
                "responses": {
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
    for e in engine.entities() {
        entity_paths(e, &mut paths, &mut schemas);
    }
    let mut info = json!({
        "title": engine.title,
        "version": env!("CARGO_PKG_VERSION"),
    });
    if let Some(d) = &engine.description {
        info["description"] = json!(d);
    }
    json!({
        "openapi": "3.1.0",
        "info": info,
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "paths": paths,
        "components": { "schemas": schemas }
    })
}
