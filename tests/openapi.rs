//! The OpenAPI document matches what is served; the published JSON Schemas match the
//! file formats and every YAML file in the repository.

mod common;

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use common::{Db, TestApp};
use serde_json::{Value, json};
use trellis::engine::Engine;
use trellis::engine::openapi::routes;
use trellis::spec;

fn root_engine() -> Engine {
    let loaded = spec::load(&common::repo_root());
    Engine::build(&loaded).expect("root project builds")
}

#[test]
fn openapi_document_snapshot() {
    let engine = root_engine();
    insta::assert_json_snapshot!("root_openapi", engine.openapi());
}

#[test]
fn document_paths_are_exactly_the_routes() {
    let engine = root_engine();
    let doc = engine.openapi();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete", "head", "options"] {
            if item.get(method).is_some() {
                documented.insert((method.to_string(), path.clone()));
            }
        }
    }
    let served: BTreeSet<(String, String)> = routes(&engine)
        .into_iter()
        .map(|r| (r.method.to_string(), r.path))
        .collect();
    assert_eq!(documented, served);
}

/// Calls every documented operation and every undocumented neighbour.
async fn served_routes_equal_documented(db: Db) {
    let app = TestApp::root(db).await;
    let engine = app.state.engine.load_full();
    let id = uuid::Uuid::now_v7().to_string();
    let documented: BTreeSet<(String, String)> = routes(&engine)
        .into_iter()
        .map(|r| (r.method.to_string(), r.path))
        .collect();
    let is_route_miss = |status: StatusCode, body: &Value| {
        status == StatusCode::METHOD_NOT_ALLOWED
            || (status == StatusCode::NOT_FOUND
                && body["type"] == "https://trellis.dev/problems/no-route")
    };
    let mut paths = BTreeSet::new();
    for (method, path) in &documented {
        paths.insert(path.clone());
        let mut concrete = path.replace("{id}", &id);
        if path.ends_with("/events") {
            // A stream never ends: a bad parameter shows the route is there.
            concrete.push_str("?unknown=1");
        }
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let body = matches!(method.as_str(), "post" | "patch").then(|| b"{}".to_vec());
        let res = app.call(m, &concrete, body, &[]).await;
        assert!(
            !is_route_miss(res.status, &res.body),
            "{method} {path} is documented but not served: {} {}",
            res.status,
            res.body
        );
        assert!(res.status.as_u16() < 500, "{method} {path}: {}", res.body);
    }
    for path in &paths {
        for method in ["get", "post", "put", "patch", "delete"] {
            if documented.contains(&(method.to_string(), path.clone())) {
                continue;
            }
            let concrete = path.replace("{id}", &id);
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let res = app.call(m, &concrete, Some(b"{}".to_vec()), &[]).await;
            assert!(
                is_route_miss(res.status, &res.body),
                "{method} {path} is served but not documented: {} {}",
                res.status,
                res.body
            );
        }
    }
    for path in ["/api/nothings", "/api", "/api/projects/x/y", "/"] {
        let res = app.get(path).await;
        assert!(is_route_miss(res.status, &res.body), "{path}: {}", res.body);
    }
}

/// The required properties of a record schema but `id` and `expand`.
fn engine_fields(doc: &Value, schema: &str) -> Vec<String> {
    doc["components"]["schemas"][schema]["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .filter(|f| *f != "id")
        .map(str::to_string)
        .collect()
}

/// Responses match the record schemas the document declares.
async fn responses_match_the_documented_schemas(db: Db) {
    let app = TestApp::root(db).await;
    let doc = app.get("/openapi.json").await.body;
    let schemas = doc["components"]["schemas"].clone();
    let validator_for = |name: &str| {
        let mut schema = schemas[name].clone();
        // Resolve component references inside the document.
        schema["$defs"] = schemas.clone();
        let text = schema
            .to_string()
            .replace("#/components/schemas/", "#/$defs/");
        jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
    };
    let org = app
        .create(
            "organizations",
            json!({ "name": "Acme", "slug": "acme", "founded_on": "2001-01-01" }),
        )
        .await;
    let skill = app.create("skills", json!({ "name": "Rust" })).await;
    let res = app
        .post(
            "/api/projects",
            json!({ "title": "Schema", "client": org, "budget": "5", "skills": [skill] }),
        )
        .await;
    let record = validator_for("Project");
    assert!(record.is_valid(&res.body), "{}", res.body);
    let list = app.get("/api/projects").await;
    assert!(
        validator_for("ProjectList").is_valid(&list.body),
        "{}",
        list.body
    );
    let bad = app.post("/api/projects", json!({ "title": 1 })).await;
    assert!(validator_for("Problem").is_valid(&bad.body), "{}", bad.body);
    let orgs = app.get("/api/organizations").await;
    assert!(
        validator_for("OrganizationList").is_valid(&orgs.body),
        "{}",
        orgs.body
    );
    // Expanded, selected and counted lists match too.
    let expanded = app
        .get("/api/projects?expand=client.projects,skills,applications&count=true")
        .await;
    assert_eq!(expanded.status, 200, "{}", expanded.body);
    let first = &expanded.body["items"][0];
    assert!(first["client"].is_string(), "{first}");
    assert!(first["expand"]["client"]["expand"]["projects"].is_array());
    assert!(
        validator_for("ProjectList").is_valid(&expanded.body),
        "{}",
        expanded.body
    );
    // A projection returns only the chosen fields: it is not a whole record, as the
    // `fields` parameter says.
    let some = app.get("/api/projects?fields=title&expand=client").await;
    assert_eq!(some.status, 200, "{}", some.body);
    assert!(
        !validator_for("ProjectList").is_valid(&some.body),
        "{}",
        some.body
    );
    let all = engine_fields(&doc, "Project");
    let mut whole = all.join(",");
    whole.push_str("&expand=client");
    let whole = app.get(&format!("/api/projects?fields={whole}")).await;
    assert!(
        validator_for("ProjectList").is_valid(&whole.body),
        "{}",
        whole.body
    );
    // A wrong shape is caught: the schemas are not vacuous.
    let mut wrong = res.body.clone();
    wrong["budget"] = json!(12);
    assert!(!record.is_valid(&wrong));
    wrong["budget"] = json!("12.00");
    wrong["client"] = json!({ "id": 5 });
    assert!(!record.is_valid(&wrong));
}

both!(
    served_routes_equal_documented,
    responses_match_the_documented_schemas
);

#[test]
fn published_schemas_are_current() {
    let root = common::repo_root();
    for (name, schema) in spec::schema::all_schemas() {
        let file = &format!("schemas/{name}");
        let text = std::fs::read_to_string(root.join(file)).expect(file);
        let committed: Value = serde_json::from_str(&text).expect(file);
        assert_eq!(
            committed, schema,
            "{file} is out of date: run `cargo run -- schema --out schemas`"
        );
    }
}

/// All YAML files under a folder, skipping build output.
fn yaml_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if path.is_dir() {
            if !matches!(
                name.as_str(),
                "target" | ".git" | ".trellis" | "node_modules"
            ) {
                yaml_files(&path, out);
            }
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            out.push(path);
        }
    }
}

#[test]
fn every_yaml_file_references_and_satisfies_its_schema() {
    let root = common::repo_root();
    let model = jsonschema::validator_for(&spec::schema::model_schema()).unwrap();
    let settings = jsonschema::validator_for(&spec::schema::settings_schema()).unwrap();
    let policy = jsonschema::validator_for(&spec::schema::policy_schema()).unwrap();
    let workflow = jsonschema::validator_for(&spec::schema::workflow_schema()).unwrap();
    let migration = jsonschema::validator_for(&spec::schema::migration_schema()).unwrap();
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    let mut checked = 0;
    for path in files {
        let rel = path
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .to_string();
        // The fuzzers' seeds are inputs, broken ones among them, not project files.
        if rel.starts_with("tests/")
            || rel.starts_with(".ci/")
            || rel.starts_with(".github/")
            || rel.starts_with("fuzz/")
        {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap_or("");
        let expected = if rel.ends_with("trellis.yaml") {
            "trellis.schema.json"
        } else if rel.contains("models/") {
            "model.schema.json"
        } else if rel.contains("policies/") {
            "policy.schema.json"
        } else if rel.contains("workflows/") {
            "workflow.schema.json"
        } else if rel.contains("migrations/") {
            "migration.schema.json"
        } else {
            continue;
        };
        assert!(
            first.starts_with("# yaml-language-server: $schema=") && first.ends_with(expected),
            "{rel} must start with `# yaml-language-server: $schema=…/{expected}`"
        );
        // The referenced file exists relative to the YAML file.
        let reference = first.trim_start_matches("# yaml-language-server: $schema=");
        let target = path.parent().unwrap().join(reference);
        assert!(target.is_file(), "{rel}: {reference} does not exist");
        let node = spec::yaml::parse(&text).unwrap_or_else(|e| panic!("{rel}: {e:?}"));
        let value = node.to_json();
        let validator = match expected {
            "model.schema.json" => &model,
            "policy.schema.json" => &policy,
            "workflow.schema.json" => &workflow,
            "migration.schema.json" => &migration,
            _ => &settings,
        };
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{rel}: {errors:#?}");
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} files checked");
}

#[test]
fn the_schema_rejects_what_the_loader_rejects() {
    let model = jsonschema::validator_for(&spec::schema::model_schema()).unwrap();
    let bad = [
        json!({ "entity": "task", "fields": { "title": { "type": "strng" } } }),
        json!({ "entity": "task", "fields": { "title": { "type": "string", "requird": true } } }),
        json!({ "entity": "task", "fields": { "done": { "type": "boolean", "values": ["a"] } } }),
        json!({ "entity": "task", "fields": { "s": { "type": "enum" } } }),
        json!({ "entity": "Task", "fields": { "x": "string" } }),
        json!({ "entity": "task", "fields": { "id": "string" } }),
        json!({ "entity": "task", "feilds": {} }),
    ];
    for doc in bad {
        assert!(!model.is_valid(&doc), "schema accepted {doc}");
    }
    let good = json!({
        "entity": "task",
        "fields": {
            "title": { "type": "string", "required": true, "max": 10 },
            "n": "integer",
            "s": { "type": "enum", "values": ["a"], "default": "a" },
            "o": { "type": "ref", "to": "owner", "on_delete": "set_null" }
        },
        "indexes": [["title", "n"]],
        "search": ["title"]
    });
    assert!(model.is_valid(&good));
}

/// Validates answers against what the document declares for them, resolving the
/// document's `$ref`s.
struct Contract {
    doc: Value,
}

impl Contract {
    fn new(doc: Value) -> Contract {
        Contract { doc }
    }

    /// A validator for `schema`, a schema of the document.
    fn validator(&self, schema: &Value) -> jsonschema::Validator {
        let mut schema = schema.clone();
        schema["$defs"] = self.doc["components"]["schemas"].clone();
        let text = schema
            .to_string()
            .replace("#/components/schemas/", "#/$defs/");
        jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
    }

    /// The schema of a component.
    fn component(&self, name: &str) -> jsonschema::Validator {
        let schema = &self.doc["components"]["schemas"][name];
        assert!(schema.is_object(), "no schema {name}");
        self.validator(&json!({ "$ref": format!("#/components/schemas/{name}") }))
    }

    fn operation(&self, method: &str, template: &str) -> &Value {
        let op = &self.doc["paths"][template][method];
        assert!(op.is_object(), "{method} {template} is not documented");
        op
    }

    /// The request body of `method template` fits its documented schema.
    fn request_fits(&self, method: &str, template: &str, body: &Value) -> bool {
        let schema = &self.operation(method, template)["requestBody"]["content"]["application/json"]
            ["schema"];
        self.validator(schema).is_valid(body)
    }

    /// `res` is documented for `method template` (its status, its media type) and
    /// its body fits the schema declared there. Returns the problem type, if any.
    fn check(&self, method: &str, template: &str, res: &common::Resp) {
        let op = self.operation(method, template);
        let status = res.status.as_u16().to_string();
        let mut response = &op["responses"][&status];
        if let Some(shared) = response["$ref"].as_str() {
            let name = shared.trim_start_matches("#/components/responses/");
            response = &self.doc["components"]["responses"][name];
        }
        assert!(
            response.is_object(),
            "{method} {template} answered {status}, which it does not document: {}",
            res.body
        );
        if response.get("content").is_none() {
            assert!(
                res.raw.is_empty(),
                "{method} {template} {status}: a body it does not document"
            );
            return;
        }
        let media = res
            .header("content-type")
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .to_string();
        let schema = &response["content"][&media]["schema"];
        assert!(
            schema.is_object(),
            "{method} {template} {status}: no schema for {media}"
        );
        let errors: Vec<String> = self
            .validator(schema)
            .iter_errors(&res.body)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {template} {status} does not fit its schema: {errors:#?}\n{}",
            res.body
        );
    }

    /// `res` is a problem of `kind` that fits the document's schema for that kind.
    fn problem(&self, kind: &str, res: &common::Resp) {
        assert_eq!(
            res.body["type"],
            format!("https://trellis.dev/problems/{kind}"),
            "{}",
            res.body
        );
        assert_eq!(res.header("content-type"), Some("application/problem+json"));
        // Every problem carries its request's id, as in the header.
        assert_eq!(
            res.body["request_id"].as_str(),
            res.header("x-request-id"),
            "{}",
            res.body
        );
        let name = problem_schema(kind);
        let errors: Vec<String> = self
            .component(&name)
            .iter_errors(&res.body)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{kind}: {errors:#?}\n{}", res.body);
    }
}

/// The schema name of a problem type: `stale-version` → `ProblemStaleVersion`.
fn problem_schema(kind: &str) -> String {
    let mut name = "Problem".to_string();
    for part in kind.split('-') {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            name.push(first.to_ascii_uppercase());
            name.extend(chars);
        }
    }
    name
}

/// Every problem type the server emits (grep `Problem::new` and the helpers of
/// src/http/problem.rs), each with a schema.
const PROBLEM_KINDS: [&str; 25] = [
    "bad-request",
    "bad-parameter",
    "unauthorized",
    "forbidden",
    "not-found",
    "no-route",
    "method-not-allowed",
    "body-timeout",
    "unique",
    "still-referenced",
    "wrong-state",
    "conflict",
    "stale-version",
    "too-large",
    "unsupported-media-type",
    "unsupported-content-encoding",
    "validation",
    "guard-failed",
    "rate-limited",
    "internal",
    "effect-failed",
    "database-unavailable",
    "timeout",
    "too-many-streams",
    "no-reload",
];

/// Every schema of the document, with the JSON pointer it is at.
fn schemas_in(v: &Value, at: String, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            if m.contains_key("type") || m.contains_key("$ref") || m.contains_key("oneOf") {
                out.push((at.clone(), v.clone()));
            }
            for (k, child) in m {
                schemas_in(
                    child,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                schemas_in(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_object_in_the_document_is_typed() {
    assert_typed(&root_engine().openapi());
    let files: Vec<(String, String)> = [
        ("trellis.yaml", "settings.yaml"),
        ("models/user.yaml", "model_user.yaml"),
        ("models/task.yaml", "model_task.yaml"),
        ("policies/user.yaml", "policy_user.yaml"),
        ("policies/task.yaml", "policy_task.yaml"),
        ("workflows/task.yaml", "workflow_task.yaml"),
    ]
    .into_iter()
    .map(|(to, from)| {
        let text =
            std::fs::read_to_string(common::repo_root().join("src/cli/init").join(from)).unwrap();
        (to.to_string(), text)
    })
    .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    for dir in [common::project(&files), common::project(EVERY_TYPE)] {
        let loaded = spec::load(dir.path());
        assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
        assert_typed(&Engine::build(&loaded).unwrap().openapi());
    }
    let loaded = spec::load(&common::repo_root().join("tests/fixtures/search_hidden"));
    assert_typed(&Engine::build(&loaded).unwrap().openapi());
}

/// Every object schema of `doc` is typed, every reference resolves, every
/// component is a valid JSON Schema.
fn assert_typed(doc: &Value) {
    let mut found = Vec::new();
    schemas_in(doc, String::new(), &mut found);
    // An object schema says what it holds: its properties, a union, or its values.
    // The only free-form objects: the document itself, and the JSON Schema of a
    // transition's input in the list of transitions.
    let free = |at: &str| {
        at == "/paths/~1openapi.json/get/responses/200/content/application~1json/schema"
            || at.ends_with("/properties/transitions/items/properties/input")
    };
    let bare: Vec<&String> = found
        .iter()
        .filter(|(at, s)| {
            s["type"] == "object"
                && [
                    "properties",
                    "oneOf",
                    "anyOf",
                    "allOf",
                    "additionalProperties",
                    "$ref",
                ]
                .iter()
                .all(|k| s.get(*k).is_none())
                && !free(at)
        })
        .map(|(at, _)| at)
        .collect();
    assert!(bare.is_empty(), "untyped objects: {bare:#?}");
    // Every reference resolves.
    let text = doc.to_string();
    for part in text.split("\"#/components/schemas/").skip(1) {
        let name = part.split('"').next().unwrap();
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling reference to {name}"
        );
    }
    // Every component is a valid JSON Schema (2020-12, the document's dialect).
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        assert!(
            jsonschema::meta::is_valid(schema),
            "{name} is not a valid JSON Schema"
        );
    }
}

#[test]
fn operations_have_ids_summaries_tags_servers_and_license() {
    let doc = root_engine().openapi();
    assert_eq!(doc["servers"][0]["url"], "/");
    assert!(doc["info"]["license"]["name"].is_string());
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
            assert!(ids.insert(id.to_string()), "operationId {id} twice");
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{method} {path}: no summary"
            );
            assert!(op["tags"][0].is_string(), "{method} {path}: no tag");
            // Every problem answer names its types; none is the catch-all.
            for (status, res) in op["responses"].as_object().unwrap() {
                if let Some(schema) = res.pointer("/content/application~1problem+json/schema") {
                    let text = schema.to_string();
                    assert!(
                        text.contains("#/components/schemas/Problem")
                            && !text.contains("#/components/schemas/Problem\""),
                        "{method} {path} {status}: {schema}"
                    );
                }
            }
            // Every operation documents the rate limit and an unavailable database.
            for status in ["429", "503"] {
                assert!(
                    op["responses"][status].is_object(),
                    "{method} {path}: no {status}"
                );
            }
        }
    }
    // Stable names: a generated client's methods come from them.
    for id in [
        "list_projects",
        "create_project",
        "get_project",
        "update_project",
        "delete_project",
        "aggregate_projects",
        "events_projects",
        "publish_project",
        "history_of_project",
        "transitions_of_project",
        "batch",
        "status",
        "reload",
        "explain",
        "health",
        "openapi",
        "signup",
        "login",
    ] {
        assert!(ids.contains(id), "operationId {id} is gone");
    }
}

#[test]
fn problem_types_and_unions_are_typed() {
    let doc = root_engine().openapi();
    let schemas = &doc["components"]["schemas"];
    for kind in PROBLEM_KINDS {
        let s = &schemas[problem_schema(kind)];
        assert_eq!(
            s["properties"]["type"]["const"],
            format!("https://trellis.dev/problems/{kind}"),
            "{kind}"
        );
        let required = s["required"].as_array().unwrap();
        assert!(required.contains(&json!("request_id")), "{kind}");
        let status = s["properties"]["status"]["const"].as_u64().unwrap();
        if status == 429 || status == 503 {
            assert!(required.contains(&json!("retry_after")), "{kind}");
        }
    }
    let required = |name: &str| -> Vec<String> {
        serde_json::from_value(schemas[name]["required"].clone()).unwrap()
    };
    assert!(required("ProblemValidation").contains(&"errors".to_string()));
    assert!(required("ProblemStaleVersion").contains(&"current_version".to_string()));
    assert!(required("ProblemRateLimited").contains(&"retry_after".to_string()));
    assert!(required("ProblemStillReferenced").contains(&"referenced_by".to_string()));
    assert!(required("ProblemBadParameter").contains(&"parameter".to_string()));
    assert!(required("ProblemWrongState").contains(&"possible".to_string()));
    assert!(required("ProblemGuardFailed").contains(&"reasons".to_string()));
    assert!(schemas["ProblemBadParameter"]["properties"]["column"].is_object());
    assert!(schemas["ProblemBadParameter"]["properties"]["hint"].is_object());
    assert_eq!(
        schemas["ProblemValidation"]["properties"]["errors"]["items"]["required"],
        json!(["pointer", "detail"])
    );
    // A transition's 409 and 422 are unions told apart by `type`.
    let fire = &doc["paths"]["/api/projects/{id}/transitions/close"]["post"]["responses"];
    let conflict = &fire["409"]["content"]["application/problem+json"]["schema"];
    assert_eq!(conflict["discriminator"]["propertyName"], "type");
    assert_eq!(conflict["oneOf"].as_array().unwrap().len(), 2);
    let invalid = &fire["422"]["content"]["application/problem+json"]["schema"];
    assert_eq!(
        invalid["discriminator"]["mapping"]["https://trellis.dev/problems/guard-failed"],
        "#/components/schemas/ProblemGuardFailed"
    );
}

#[test]
fn batch_aggregate_history_and_status_are_typed() {
    let doc = root_engine().openapi();
    let schemas = &doc["components"]["schemas"];
    // A batch operation: one flat union of (op, entity[, name]), each member with
    // its literal `op`, `entity` and `name`, so generators and TypeScript tell them
    // apart.
    let members: Vec<&str> = schemas["BatchOperation"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["$ref"]
                .as_str()
                .unwrap()
                .trim_start_matches("#/components/schemas/")
        })
        .collect();
    for m in [
        "BatchCreateProject",
        "BatchUpdateSkill",
        "BatchDeleteUser",
        "BatchTransitionProjectClose",
        "BatchTransitionApplicationReject",
    ] {
        assert!(members.contains(&m), "{m} in {members:?}");
    }
    for m in &members {
        let props = &schemas[*m]["properties"];
        assert!(props["op"]["const"].is_string(), "{m}");
        assert!(props["entity"]["enum"].is_array(), "{m}");
        assert_eq!(schemas[*m]["additionalProperties"], false, "{m}");
    }
    assert_eq!(
        schemas["BatchCreateProject"]["properties"]["entity"]["enum"],
        json!(["project", "projects"])
    );
    assert_eq!(
        schemas["BatchCreateProject"]["properties"]["data"]["$ref"],
        "#/components/schemas/ProjectCreate"
    );
    assert_eq!(
        schemas["BatchUpdateProject"]["properties"]["data"]["$ref"],
        "#/components/schemas/ProjectUpdate"
    );
    assert_eq!(
        schemas["BatchTransitionProjectClose"]["properties"]["name"]["const"],
        "close"
    );
    assert_eq!(
        schemas["BatchTransitionProjectClose"]["properties"]["data"]["$ref"],
        "#/components/schemas/ProjectCloseInput"
    );
    assert!(
        !members
            .iter()
            .any(|m| m.starts_with("BatchTransitionSkill")),
        "skills have no workflow"
    );
    // Aggregate groups: keys and metrics, each typed.
    let group = &schemas["ProjectAggregateGroup"]["properties"];
    assert_eq!(group["count"]["type"], "integer");
    assert_eq!(group["sum_budget"]["type"], json!(["string", "null"]));
    assert_eq!(group["avg_budget"]["type"], json!(["number", "null"]));
    assert_eq!(group["status"]["type"], json!(["string", "null"]));
    assert_eq!(group["created_at:month"]["format"], "date");
    assert_eq!(group["max_deadline"]["format"], "date");
    assert!(group["sum_title"].is_null() && group["summary"].is_null());
    // History entries: a union by transition, each with its input.
    assert_eq!(
        schemas["ProjectHistoryEntry"]["discriminator"]["mapping"]["close"],
        "#/components/schemas/ProjectCloseHistoryEntry"
    );
    assert_eq!(
        schemas["ProjectCloseHistoryEntry"]["properties"]["input"]["$ref"],
        "#/components/schemas/ProjectCloseInput"
    );
    assert_eq!(schemas["Status"]["oneOf"].as_array().unwrap().len(), 2);
    assert_eq!(
        schemas["StatusDetails"]["properties"]["diagnostics"]["items"]["$ref"],
        "#/components/schemas/Diagnostic"
    );
}

/// The real answers of batch, aggregate, transitions, history, status and every
/// problem type that can be provoked fit the schemas the document declares for them.
async fn real_answers_fit_their_declared_schemas(db: Db) {
    let app = TestApp::root(db).await;
    let doc = app.get("/openapi.json").await.body;
    // The document is the same for every caller: it describes shapes, never data.
    assert_eq!(app.anonymous().get("/openapi.json").await.body, doc);
    let c = Contract::new(doc);
    let skill = app.create("skills", json!({ "name": "Rust" })).await;

    // Batch: every kind of operation, with references.
    let body = json!({ "operations": [
        { "op": "create", "entity": "organization", "data": { "name": "Acme", "slug": "acme", "founded_on": "2001-01-01" } },
        { "op": "create", "entity": "projects", "data": { "title": "Shop", "client": "$0.id", "budget": "120", "skills": [skill] } },
        { "op": "update", "entity": "project", "id": "$1.id", "data": { "summary": "A shop" }, "if_match": 1 },
        { "op": "transition", "entity": "project", "id": "$1.id", "name": "publish" },
        { "op": "create", "entity": "skill", "data": { "name": "Go" } },
        { "op": "delete", "entity": "skill", "id": "$4.id" }
    ] });
    assert!(c.request_fits("post", "/api/batch", &body));
    let res = app.post("/api/batch", body).await;
    assert_eq!(res.status, 200, "{}", res.body);
    c.check("post", "/api/batch", &res);
    let results = res.body["results"].as_array().unwrap();
    assert!(c.component("Organization").is_valid(&results[0]));
    assert!(c.component("Project").is_valid(&results[3]));
    assert_eq!(results[3]["status"], "open");
    assert!(c.component("BatchDeleted").is_valid(&results[5]));
    let org = results[0]["id"].as_str().unwrap().to_string();
    let project = results[1]["id"].as_str().unwrap().to_string();
    // The request schema is not vacuous: an organization's data is not a project's.
    let wrong = json!({ "operations": [
        { "op": "create", "entity": "project", "data": { "name": "Acme", "slug": "acme" } }
    ] });
    assert!(!c.request_fits("post", "/api/batch", &wrong));
    let wrong = json!({ "operations": [
        { "op": "transition", "entity": "project", "id": "x", "name": "close", "data": {} }
    ] });
    assert!(
        !c.request_fits("post", "/api/batch", &wrong),
        "close needs a reason"
    );

    // Aggregates: group keys, buckets, a many field, every metric.
    for query in [
        "group_by=status,client,created_at:month&count=true&sum=budget&avg=budget&min=deadline&max=budget",
        "group_by=skills&count=true",
        "group_by=updated_at:week,remote&sum=version&min=created_at&max=published_at",
        "count=true&avg=budget&min=budget",
    ] {
        let res = app.get(&format!("/api/projects/aggregate?{query}")).await;
        assert_eq!(res.status, 200, "{query}: {}", res.body);
        assert!(
            !res.body["groups"].as_array().unwrap().is_empty(),
            "{query}"
        );
        c.check("get", "/api/projects/aggregate", &res);
    }
    let res = app
        .get("/api/organizations/aggregate?group_by=founded_on:year,verified&sum=headcount")
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    c.check("get", "/api/organizations/aggregate", &res);
    let mut group = res.body["groups"][0].clone();
    group["bogus"] = json!(1);
    assert!(!c.component("OrganizationAggregateGroup").is_valid(&group));

    // Transitions, firing with input, history, status.
    let record = format!("/api/projects/{project}");
    let res = app.get(&format!("{record}/transitions")).await;
    assert_eq!(res.status, 200, "{}", res.body);
    c.check("get", "/api/projects/{id}/transitions", &res);
    let res = app
        .fire(&record, "close", json!({ "reason": "done with it" }))
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    c.check("post", "/api/projects/{id}/transitions/close", &res);
    let res = app.get(&format!("{record}/history")).await;
    assert_eq!(res.status, 200, "{}", res.body);
    c.check("get", "/api/projects/{id}/history", &res);
    let items = res.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{}", res.body);
    assert_eq!(items[1]["input"]["reason"], "done with it");
    let mut wrong = items[1].clone();
    wrong["input"] = json!({});
    assert!(!c.component("ProjectHistoryEntry").is_valid(&wrong));
    let res = app.get("/_/status").await;
    assert!(res.body["generation"].is_number(), "{}", res.body);
    c.check("get", "/_/status", &res);
    assert!(c.component("StatusDetails").is_valid(&res.body));
    let res = app.anonymous().get("/_/status").await;
    assert_eq!(res.body, json!({ "status": "ok" }));
    c.check("get", "/_/status", &res);
    let res = app.post("/_/reload", json!({})).await;
    assert_eq!(res.status, 200, "{}", res.body);
    c.check("post", "/_/reload", &res);
    for query in [
        format!("entity=project&id={project}&action=read"),
        format!(
            "entity=project&id={project}&action=update&as={}&roles=contractor",
            uuid::Uuid::now_v7()
        ),
        format!("entity=project&id={project}&action=transition.close"),
    ] {
        let res = app.get(&format!("/_/explain?{query}")).await;
        assert_eq!(res.status, 200, "{query}: {}", res.body);
        c.check("get", "/_/explain", &res);
    }

    // Conditional reads: a 304 is documented where it comes.
    for (template, path) in [
        ("/api/projects/{id}", format!("/api/projects/{project}")),
        ("/api/projects", "/api/projects".to_string()),
        (
            "/api/projects/aggregate",
            "/api/projects/aggregate?group_by=status".to_string(),
        ),
        ("/openapi.json", "/openapi.json".to_string()),
    ] {
        let first = app.get(&path).await;
        c.check("get", template, &first);
        let tag = first
            .header("etag")
            .unwrap_or_else(|| panic!("{path}: no ETag"))
            .to_string();
        let res = app
            .call(Method::GET, &path, None, &[("if-none-match", &tag)])
            .await;
        assert_eq!(res.status, 304, "{path}");
        c.check("get", template, &res);
    }

    // Problems: each type that a request can provoke, against the operation's answer.
    let user = app.token(&uuid::Uuid::now_v7().to_string(), &["contractor"]);
    let raw = |method: Method, path: &str, body: &str, headers: &[(&str, &str)]| {
        let app = &app;
        let path = path.to_string();
        let body = body.as_bytes().to_vec();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        async move {
            let h: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            app.call(method, &path, Some(body), &h).await
        }
    };
    let res = raw(Method::POST, "/api/projects", "{", &[]).await;
    c.problem("bad-request", &res);
    c.check("post", "/api/projects", &res);
    let res = app.get("/api/projects?filter=title%20%3D%3D%3D").await;
    c.problem("bad-parameter", &res);
    assert!(res.body["column"].is_number(), "{}", res.body);
    c.check("get", "/api/projects", &res);
    let res = app.get("/api/projects/aggregate?group_by=nothing").await;
    c.problem("bad-parameter", &res);
    c.check("get", "/api/projects/aggregate", &res);
    let res = app.anonymous().post("/_/reload", json!({})).await;
    c.problem("unauthorized", &res);
    c.check("post", "/_/reload", &res);
    let res = app.as_user(&user).post("/_/reload", json!({})).await;
    c.problem("forbidden", &res);
    c.check("post", "/_/reload", &res);
    let res = app
        .get(&format!("/api/projects/{}", uuid::Uuid::now_v7()))
        .await;
    c.problem("not-found", &res);
    c.check("get", "/api/projects/{id}", &res);
    let res = app.get("/api/nothings").await;
    c.problem("no-route", &res);
    let res = raw(Method::PUT, "/api/projects", "{}", &[]).await;
    c.problem("method-not-allowed", &res);
    let res = app
        .post(
            "/api/organizations",
            json!({ "name": "Again", "slug": "acme" }),
        )
        .await;
    c.problem("unique", &res);
    c.check("post", "/api/organizations", &res);
    let res = app.delete(&format!("/api/organizations/{org}")).await;
    c.problem("still-referenced", &res);
    c.check("delete", "/api/organizations/{id}", &res);
    let res = app.fire(&record, "publish", json!({})).await;
    c.problem("wrong-state", &res);
    c.check("post", "/api/projects/{id}/transitions/publish", &res);
    let res = app
        .patch(
            &record,
            json!({ "summary": "late" }),
            &[("if-match", "\"1\"")],
        )
        .await;
    c.problem("stale-version", &res);
    c.check("patch", "/api/projects/{id}", &res);
    let res = app
        .call(Method::DELETE, &record, None, &[("if-match", "\"1\"")])
        .await;
    c.problem("stale-version", &res);
    c.check("delete", "/api/projects/{id}", &res);
    let res = app
        .post(
            "/api/batch",
            json!({ "operations": [
            { "op": "delete", "entity": "project", "id": project, "if_match": 1 }
        ] }),
        )
        .await;
    c.problem("stale-version", &res);
    c.check("post", "/api/batch", &res);
    let many: Vec<Value> = (0..101)
        .map(|_| json!({ "op": "delete", "entity": "skill", "id": skill }))
        .collect();
    let res = app.post("/api/batch", json!({ "operations": many })).await;
    c.problem("too-large", &res);
    c.check("post", "/api/batch", &res);
    let res = raw(
        Method::POST,
        "/api/skills",
        "name=x",
        &[("content-type", "text/plain")],
    )
    .await;
    c.problem("unsupported-media-type", &res);
    c.check("post", "/api/skills", &res);
    let res = raw(
        Method::POST,
        "/api/skills",
        "{}",
        &[("content-encoding", "gzip")],
    )
    .await;
    c.problem("unsupported-content-encoding", &res);
    c.check("post", "/api/skills", &res);
    let res = app.post("/api/projects", json!({ "title": 1 })).await;
    c.problem("validation", &res);
    c.check("post", "/api/projects", &res);
    let draft = app
        .create("projects", json!({ "title": "Bare", "client": org }))
        .await;
    let res = app
        .fire(&format!("/api/projects/{draft}"), "publish", json!({}))
        .await;
    c.problem("guard-failed", &res);
    c.check("post", "/api/projects/{id}/transitions/publish", &res);
    let res = app
        .fire(&format!("/api/projects/{draft}"), "close", json!({}))
        .await;
    c.problem("validation", &res);
    c.check("post", "/api/projects/{id}/transitions/close", &res);
    // A batch's problem names the failing operation.
    let res = app
        .post(
            "/api/batch",
            json!({ "operations": [
            { "op": "create", "entity": "skill", "data": { "name": "Zig" } },
            { "op": "transition", "entity": "project", "id": draft, "name": "publish" }
        ] }),
        )
        .await;
    c.problem("guard-failed", &res);
    assert_eq!(res.body["operation"], 1);
    c.check("post", "/api/batch", &res);
    let res = app
        .post(
            "/api/batch",
            json!({ "operations": [{ "op": "merge", "entity": "skill" }] }),
        )
        .await;
    c.problem("bad-request", &res);
    c.check("post", "/api/batch", &res);

    // Accounts: a session, a wrong password, then the lock (429 with `retry_after`).
    let anon = app.anonymous();
    let res = anon
        .post(
            "/auth/signup",
            json!({ "email": "typed@example.com", "password": "correct horse", "display_name": "Typed" }),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    c.check("post", "/auth/signup", &res);
    let res = anon
        .post("/auth/signup", json!({ "email": "typed@example.com", "password": "correct horse", "display_name": "Again" }))
        .await;
    c.check("post", "/auth/signup", &res);
    let res = anon
        .post(
            "/auth/login",
            json!({ "email": "typed@example.com", "password": "correct horse" }),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    c.check("post", "/auth/login", &res);
    let mut limited = None;
    for _ in 0..20 {
        let res = anon
            .post(
                "/auth/login",
                json!({ "email": "typed@example.com", "password": "wrong horse" }),
            )
            .await;
        c.check("post", "/auth/login", &res);
        if res.status == 429 {
            limited = Some(res);
            break;
        }
        c.problem("unauthorized", &res);
    }
    let limited = limited.expect("wrong passwords end in a 429");
    c.problem("rate-limited", &limited);

    // Numbers (doubles) and datetimes in aggregates; a transition with an input
    // fired in a batch, in the history.
    let applicant = res_user_id(&app, "typed@example.com").await;
    let application = app
        .seed(
            "applications",
            json!({ "project": project, "applicant": applicant, "estimated_hours": 12.5, "proposed_rate": "40.5" }),
        )
        .await;
    let res = app
        .get("/api/applications/aggregate?group_by=submitted_at:day,applicant,status&sum=estimated_hours,proposed_rate&avg=estimated_hours&min=submitted_at&max=estimated_hours")
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["groups"][0]["sum_estimated_hours"], 12.5);
    c.check("get", "/api/applications/aggregate", &res);
    let res = app
        .post("/api/batch", json!({ "operations": [
            { "op": "transition", "entity": "applications", "id": application, "name": "reject", "data": { "feedback": "no" } }
        ] }))
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    c.check("post", "/api/batch", &res);
    let res = app
        .get(&format!("/api/applications/{application}/history"))
        .await;
    c.check("get", "/api/applications/{id}/history", &res);
    assert_eq!(res.body["items"][0]["input"], json!({ "feedback": "no" }));
}

/// The id of the account with this email.
async fn res_user_id(app: &TestApp, email: &str) -> String {
    let res = app
        .get(&format!("/api/users?filter=email%20%3D%20'{email}'"))
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    res.body["items"][0]["id"]
        .as_str()
        .expect("the user")
        .to_string()
}

both!(real_answers_fit_their_declared_schemas);

/// A project with a field of every type, no accounts, and a workflow whose
/// transition takes inputs of several types.
const EVERY_TYPE: &[(&str, &str)] = &[
    (
        "models/box.yaml",
        "entity: box
fields:
  label: { type: string, required: true }
  notes: text
  email: email
  site: url
  count: { type: integer, default: 1 }
  weight: number
  price: { type: decimal, scale: 3 }
  open: { type: boolean, default: false }
  due: date
  seen_at: datetime
  code: uuid
  size: { type: enum, values: [s, m, l], default: m }
  extra: json
  state: { type: enum, values: [new, shipped] }
  owner: { type: ref, to: rack }
  tags: { type: many, of: rack }
",
    ),
    (
        "models/rack.yaml",
        "entity: rack
fields:
  name: { type: string, required: true }
  boxes: { type: inverse, of: box, via: owner }
",
    ),
    (
        "workflows/box.yaml",
        "entity: box
field: state
initial: new
states:
  new: {}
  shipped: { final: true }
transitions:
  ship:
    from: new
    to: shipped
    input:
      carrier: { type: enum, values: [post, courier], required: true }
      weight: { type: number, min: 0 }
      on: date
",
    ),
];

/// The document of another project is typed as the root project's is, and its
/// answers fit it: every field type in aggregates, batches, transitions, history.
async fn every_field_type_fits_its_schemas(db: Db) {
    let app = TestApp::with_files(db, EVERY_TYPE).await;
    let doc = app.get("/openapi.json").await.body;
    assert_typed(&doc);
    let c = Contract::new(doc);
    let rack = app.create("racks", json!({ "name": "A" })).await;
    let body = json!({ "operations": [
        { "op": "create", "entity": "box", "data": {
            "label": "one", "notes": "long", "email": "a@example.com", "site": "https://example.com",
            "weight": 1.5, "price": "2.125", "due": "2026-01-31", "seen_at": "2026-01-31T10:00:00Z",
            "code": uuid::Uuid::now_v7().to_string(), "size": "l", "extra": { "any": [1] },
            "owner": rack, "tags": [rack]
        } },
        { "op": "create", "entity": "boxes", "data": { "label": "two" } },
        { "op": "transition", "entity": "box", "id": "$0.id", "name": "ship", "data": { "carrier": "post", "weight": 2.5, "on": "2026-02-01" } },
        { "op": "update", "entity": "box", "id": "$1.id", "data": { "weight": null, "open": true } }
    ] });
    assert!(c.request_fits("post", "/api/batch", &body));
    let res = app.post("/api/batch", body).await;
    assert_eq!(res.status, 200, "{}", res.body);
    c.check("post", "/api/batch", &res);
    let first = res.body["results"][0]["id"].as_str().unwrap().to_string();
    let fields = [
        "label",
        "email",
        "site",
        "count",
        "weight",
        "price",
        "open",
        "due",
        "seen_at",
        "code",
        "size",
        "state",
        "owner",
        "tags",
        "id",
        "created_at",
        "version",
    ];
    for field in fields {
        let res = app
            .get(&format!("/api/boxes/aggregate?group_by={field}&count=true"))
            .await;
        assert_eq!(res.status, 200, "{field}: {}", res.body);
        c.check("get", "/api/boxes/aggregate", &res);
    }
    for query in [
        "group_by=due:week,seen_at:month,created_at:year,updated_at:day&count=true",
        "sum=count,weight,price,version&avg=count,weight,price&min=due,seen_at,weight,price&max=count,created_at,price",
    ] {
        let res = app.get(&format!("/api/boxes/aggregate?{query}")).await;
        assert_eq!(res.status, 200, "{query}: {}", res.body);
        c.check("get", "/api/boxes/aggregate", &res);
    }
    let res = app.get(&format!("/api/boxes/{first}/history")).await;
    c.check("get", "/api/boxes/{id}/history", &res);
    assert_eq!(res.body["items"][0]["input"]["carrier"], "post");
    let res = app.get(&format!("/api/boxes/{first}/transitions")).await;
    c.check("get", "/api/boxes/{id}/transitions", &res);
    let res = app.get("/_/status").await;
    c.check("get", "/_/status", &res);
    let res = app.delete(&format!("/api/racks/{rack}")).await;
    c.check("delete", "/api/racks/{id}", &res);
}

both!(every_field_type_fits_its_schemas);
