//! The record and request-body schemas of the OpenAPI document type precisely: every
//! field a record always carries is required (nullable only where it may be null),
//! fields some callers may not read are optional and say why, a ref is its id,
//! expansions are typed per relation under `expand`, create bodies leave defaults
//! optional without the `default` keyword, and decimals have one JSON type.

mod common;

use axum::http::StatusCode;
use common::{Db, TestApp};
use serde_json::{Value, json};
use trellis::engine::Engine;
use trellis::spec;

fn root_doc() -> Value {
    let loaded = spec::load(&common::repo_root());
    Engine::build(&loaded)
        .expect("root project builds")
        .openapi()
}

fn names(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

#[test]
fn record_schemas_require_what_every_record_carries() {
    let doc = root_doc();
    let project = &doc["components"]["schemas"]["Project"];
    let required = names(&project["required"]);
    for f in [
        "id",
        "created_at",
        "updated_at",
        "version",
        "title",
        "summary",
        "status",
        "client",
        "skills",
        "deadline",
        "published_at",
    ] {
        assert!(required.contains(&f), "{f} is not required: {required:?}");
    }
    let props = &project["properties"];
    // Only where the value may be null.
    assert_eq!(props["title"]["type"], "string");
    assert_eq!(props["summary"]["type"], json!(["string", "null"]));
    // The workflow state is never null.
    assert_eq!(props["status"]["type"], "string");
    assert!(
        !props["status"]["enum"]
            .as_array()
            .unwrap()
            .contains(&Value::Null)
    );
    // A ref is its id, a many its ids; an inverse is not a field of the record.
    assert_eq!(
        props["client"],
        json!({
            "type": "string", "format": "uuid",
            "description": props["client"]["description"]
        })
    );
    assert_eq!(
        props["skills"]["items"],
        json!({ "type": "string", "format": "uuid" })
    );
    assert!(props.get("applications").is_none());
    // Fields with a read rule in the policy are optional and say why.
    for f in ["internal_notes", "budget"] {
        assert!(!required.contains(&f), "{f} is hidden from some callers");
        let d = props[f]["description"].as_str().unwrap();
        assert!(d.contains("Present only for"), "{f}: {d}");
        assert!(d.contains("project policy"), "{f}: {d}");
    }
    // The expansions, typed per relation, under `expand` (never required).
    assert!(!required.contains(&"expand"));
    let expand = &props["expand"];
    assert_eq!(expand["additionalProperties"], false);
    let ex = &expand["properties"];
    assert_eq!(
        ex["client"]["anyOf"],
        json!([{ "$ref": "#/components/schemas/Organization" }, { "type": "null" }])
    );
    assert_eq!(
        ex["skills"]["items"],
        json!({ "$ref": "#/components/schemas/Skill" })
    );
    assert_eq!(ex["skills"]["type"], "array");
    assert_eq!(
        ex["applications"]["items"],
        json!({ "$ref": "#/components/schemas/Application" })
    );
    // Every record schema: system fields required; no `expand` without relations.
    for (name, s) in doc["components"]["schemas"].as_object().unwrap() {
        if s["title"].is_string() && s["properties"]["version"].is_object() {
            let req = names(&s["required"]);
            for f in ["id", "created_at", "updated_at", "version"] {
                assert!(req.contains(&f), "{name}: {f}");
            }
            if let Some(ex) = s["properties"].get("expand") {
                assert!(!ex["properties"].as_object().unwrap().is_empty(), "{name}");
            }
        }
    }
}

/// Every place a request body schema may hide in the document.
fn request_bodies(doc: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (name, s) in doc["components"]["schemas"].as_object().unwrap() {
        if name.ends_with("Create") || name.ends_with("Update") || name.ends_with("Input") {
            out.push((name.clone(), s.clone()));
        }
    }
    out
}

fn no_default_keyword(where_: &str, v: &Value) {
    match v {
        Value::Object(o) => {
            assert!(!o.contains_key("default"), "{where_} has a `default`: {v}");
            for (k, x) in o {
                no_default_keyword(&format!("{where_}/{k}"), x);
            }
        }
        Value::Array(items) => items.iter().for_each(|x| no_default_keyword(where_, x)),
        _ => {}
    }
}

#[test]
fn create_bodies_leave_defaults_optional_and_decimals_are_strings() {
    let doc = root_doc();
    let bodies = request_bodies(&doc);
    assert!(bodies.iter().any(|(n, _)| n == "OrganizationCreate"));
    for (name, s) in &bodies {
        no_default_keyword(name, s);
    }
    let org = &doc["components"]["schemas"]["OrganizationCreate"];
    assert!(!names(&org["required"]).contains(&"verified"));
    assert!(
        org["properties"]["verified"]["description"]
            .as_str()
            .unwrap()
            .contains("Default: `false`"),
        "{org}"
    );
    let project = &doc["components"]["schemas"]["ProjectCreate"];
    assert!(!names(&project["required"]).contains(&"remote"));
    // Decimals: one JSON type, in bodies and records.
    assert_eq!(
        project["properties"]["budget"]["type"],
        json!(["string", "null"])
    );
    assert_eq!(
        doc["components"]["schemas"]["Project"]["properties"]["budget"]["type"],
        json!(["string", "null"])
    );
    let text = doc.to_string();
    assert!(
        !text.contains(r#"["string","number""#),
        "no multi-type decimal remains"
    );
}

#[test]
fn the_fields_and_expand_parameters_say_what_they_return() {
    let doc = root_doc();
    let params = doc["paths"]["/api/projects"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let param = |n: &str| {
        params
            .iter()
            .find(|p| p["name"] == n)
            .unwrap_or_else(|| panic!("no {n}"))
    };
    let fields = param("fields")["description"].as_str().unwrap();
    assert!(
        fields.contains("returns only the chosen fields"),
        "{fields}"
    );
    assert_eq!(param("fields")["schema"]["minLength"], 1);
    let expand = param("expand")["description"].as_str().unwrap();
    assert!(expand.contains("`expand` member"), "{expand}");
    assert!(expand.contains("keep their ids"), "{expand}");
}

both!(served_records_match_their_schemas_for_every_caller);

async fn served_records_match_their_schemas_for_every_caller(db: Db) {
    let app = TestApp::root(db).await;
    let doc = app.get("/openapi.json").await.body;
    let schemas = doc["components"]["schemas"].clone();
    let validator_for = |name: &str| {
        let mut schema = schemas[name].clone();
        schema["$defs"] = schemas.clone();
        let text = schema
            .to_string()
            .replace("#/components/schemas/", "#/$defs/");
        jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
    };
    let org = app
        .create("organizations", json!({ "name": "Acme", "slug": "acme" }))
        .await;
    let skill = app.create("skills", json!({ "name": "Rust" })).await;
    // Decimals have one JSON type, in and out: a string. A number is refused (the
    // document says string, and contract tests send numbers expecting a refusal).
    for (body, pointer) in [
        (
            json!({ "title": "Typed", "client": org, "budget": 12.5 }),
            "/budget",
        ),
        (
            json!({ "title": "Typed", "client": org, "budget": 12 }),
            "/budget",
        ),
    ] {
        let res = app.post("/api/projects", body).await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
        assert_eq!(
            res.error_for(pointer),
            "must be a decimal number as a string, like \"12.50\""
        );
    }
    let res = app
        .patch(
            &format!("/api/users/{}", app.signup("rate@example.com").await),
            json!({ "hourly_rate": 95 }),
            &[],
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    let res = app
        .post(
            "/api/projects",
            json!({ "title": "Typed", "client": org, "budget": "12.5", "skills": [skill] }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["budget"], "12.50");
    assert_eq!(res.body["remote"], json!(true), "the default, left out");
    let project = res.id();
    let seeded = app
        .seed(
            "projects",
            json!({ "title": "Open", "client": org, "status": "open", "internal_notes": "n" }),
        )
        .await;
    app.post(
        "/api/applications",
        json!({ "project": seeded, "cover_letter": "Hi", "proposed_rate": "80" }),
    )
    .await;
    let dev = app.signup("dev@example.com").await;
    let contractor = app.as_user(&app.token(&dev, &["contractor"]));
    let anonymous = app.anonymous();
    for (who, caller) in [
        ("admin", &app.client),
        ("contractor", &contractor),
        ("anonymous", &anonymous),
    ] {
        for path in [
            "/api/projects".to_string(),
            "/api/projects?expand=client,skills,applications.applicant&count=true".to_string(),
            "/api/organizations?expand=projects.skills,members".to_string(),
        ] {
            let res = caller.get(&path).await;
            if who == "anonymous" {
                assert!(res.status.is_client_error(), "{path}: {}", res.body);
                assert!(validator_for("Problem").is_valid(&res.body), "{}", res.body);
                continue;
            }
            assert_eq!(res.status, StatusCode::OK, "{who} {path}: {}", res.body);
            let list = path.split('?').next().unwrap().trim_start_matches("/api/");
            let schema = match list {
                "projects" => "ProjectList",
                _ => "OrganizationList",
            };
            assert!(
                validator_for(schema).is_valid(&res.body),
                "{who} {path}: {}",
                res.body
            );
        }
        if who == "anonymous" {
            continue;
        }
        let res = caller
            .get(&format!(
                "/api/projects/{seeded}?expand=client,applications"
            ))
            .await;
        assert_eq!(res.status, StatusCode::OK, "{who}: {}", res.body);
        assert!(validator_for("Project").is_valid(&res.body), "{}", res.body);
        if who == "contractor" {
            assert!(res.body.get("internal_notes").is_none(), "{}", res.body);
        }
    }
    // The contractor cannot see the draft project: 404, a documented problem.
    let res = contractor.get(&format!("/api/projects/{project}")).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.body);
    // An empty projection is refused rather than answering records without fields.
    for q in ["fields=", "fields=,", "fields=%20"] {
        let res = app.get(&format!("/api/projects?{q}")).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{q}: {}", res.body);
        assert_eq!(res.body["parameter"], "fields");
    }
}
