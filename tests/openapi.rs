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
