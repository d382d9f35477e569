//! `expand`: a relation field keeps its id (or ids) whatever the request; the
//! expanded records are under the record's `expand` member, level by level, and
//! follow the read policies and field rules of their own entity.

mod common;

use axum::http::StatusCode;
use common::{Db, TestApp, TestAppRouter};
use serde_json::{Value, json};

both!(
    a_ref_is_its_id_with_and_without_expand,
    nested_inverse_and_many_expansions_go_under_expand,
    expansions_do_not_leak_hidden_records_or_fields,
    an_expanded_list_or_get_is_one_statement,
);

/// Teams (some not public) and their people. `salary` is for admins only; `diary`
/// shows on the people whose diary is public.
const TEAMS: &[(&str, &str)] = &[
    (
        "trellis.yaml",
        "auth:\n  jwt: { algorithm: HS256, secret_env: S }\n",
    ),
    (
        "models/team.yaml",
        "entity: team\nfields:\n  name: { type: string, required: true }\n  public: { type: boolean, default: true }\n  secret: string\n  people: { type: inverse, of: person, via: team }\n",
    ),
    (
        "models/person.yaml",
        "entity: person\nplural: people\nfields:\n  name: { type: string, required: true }\n  team: { type: ref, to: team }\n  friends: { type: many, of: person }\n  salary: integer\n  diary: string\n  public_diary: { type: boolean, default: false }\n",
    ),
    (
        "policies/team.yaml",
        "entity: team\nrules:\n  - roles: [member]\n    allow: [list, read]\n    where: public\n  - roles: [admin]\n    allow: [\"*\"]\nfields:\n  secret: { read: { roles: [admin] } }\n",
    ),
    (
        "policies/person.yaml",
        "entity: person\nrules:\n  - roles: [member]\n    allow: [list, read]\n  - roles: [admin]\n    allow: [\"*\"]\nfields:\n  salary: { read: { roles: [admin] } }\n  diary: { read: { roles: [admin], where: public_diary } }\n",
    ),
];

struct Teams {
    app: TestApp,
    member: TestAppRouter,
    open: String,
    closed: String,
    ada: String,
    bob: String,
    cyd: String,
}

async fn teams(db: Db) -> Teams {
    let app = TestApp::with_files(db, TEAMS).await;
    let member = app.as_user(&app.token("m1", &["member"]));
    let open = app
        .create("teams", json!({ "name": "Open", "secret": "open secret" }))
        .await;
    let closed = app
        .create(
            "teams",
            json!({ "name": "Closed", "public": false, "secret": "closed secret" }),
        )
        .await;
    let ada = app
        .create(
            "people",
            json!({ "name": "Ada", "team": open, "salary": 100, "diary": "ada's diary", "public_diary": true }),
        )
        .await;
    let bob = app
        .create(
            "people",
            json!({ "name": "Bob", "team": open, "salary": 200, "diary": "bob's diary", "friends": [ada] }),
        )
        .await;
    let cyd = app
        .create(
            "people",
            json!({ "name": "Cyd", "team": closed, "salary": 300, "friends": [ada, bob] }),
        )
        .await;
    Teams {
        app,
        member,
        open,
        closed,
        ada,
        bob,
        cyd,
    }
}

fn ok(res: &common::Resp) -> &Value {
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    &res.body
}

fn by_name<'a>(items: &'a Value, name: &str) -> &'a Value {
    items
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {items}"))
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {items}"))
}

async fn a_ref_is_its_id_with_and_without_expand(db: Db) {
    let t = teams(db).await;
    let app = &t.app;
    let plain = app.get(&format!("/api/people/{}", t.bob)).await;
    let plain = ok(&plain);
    assert_eq!(plain["team"], json!(t.open));
    assert_eq!(plain["friends"], json!([t.ada]));
    assert!(
        plain.get("expand").is_none(),
        "no expand, no member: {plain}"
    );

    let res = app
        .get(&format!("/api/people/{}?expand=team,friends", t.bob))
        .await;
    let expanded = ok(&res);
    assert_eq!(expanded["team"], json!(t.open), "the field is still the id");
    assert_eq!(expanded["friends"], json!([t.ada]));
    assert_eq!(expanded["expand"]["team"]["id"], json!(t.open));
    assert_eq!(expanded["expand"]["team"]["name"], "Open");
    assert_eq!(expanded["expand"]["friends"][0]["id"], json!(t.ada));
    assert_eq!(expanded["expand"]["friends"][0]["name"], "Ada");
    // Everything else is the record as read without `expand`.
    let mut without = expanded.as_object().unwrap().clone();
    without.shift_remove("expand");
    assert_eq!(&Value::Object(without), plain);

    // Lists: the same, record by record; a null ref expands to null.
    let lone = app.create("people", json!({ "name": "Lone" })).await;
    let res = app.get("/api/people?expand=team,friends&sort=name").await;
    let items = &ok(&res)["items"];
    for p in items.as_array().unwrap() {
        assert!(p["team"].is_string() || p["team"].is_null(), "{p}");
        assert_eq!(p["team"], p["expand"]["team"]["id"], "{p}");
        let ids: Vec<&Value> = p["expand"]["friends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| &f["id"])
            .collect();
        assert_eq!(
            p["friends"].as_array().unwrap().iter().collect::<Vec<_>>(),
            ids
        );
    }
    let lone_rec = by_name(items, "Lone");
    assert_eq!(lone_rec["id"], json!(lone));
    assert_eq!(lone_rec["team"], Value::Null);
    assert_eq!(lone_rec["expand"]["team"], Value::Null);
    assert_eq!(lone_rec["expand"]["friends"], json!([]));
    let res = app.get("/api/people?sort=name").await;
    for p in ok(&res)["items"].as_array().unwrap() {
        assert!(p.get("expand").is_none(), "{p}");
        assert!(p["team"].is_string() || p["team"].is_null(), "{p}");
    }
    // `expand` is not a field: it cannot be selected, sorted or filtered on.
    for q in ["fields=expand", "sort=expand", "filter=expand%20%3D%201"] {
        let res = app.get(&format!("/api/people?{q}")).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{q}: {}", res.body);
    }
    // Nor written.
    let res = app
        .post(
            "/api/people",
            json!({ "name": "Eve", "expand": { "team": {} } }),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(res.pointers(), ["/expand"], "{}", res.body);
    let _ = (&t.closed, &t.cyd);
}

async fn nested_inverse_and_many_expansions_go_under_expand(db: Db) {
    let t = teams(db).await;
    let app = &t.app;
    // Inverse: only under `expand`.
    let res = app.get(&format!("/api/teams/{}", t.open)).await;
    assert!(ok(&res).get("people").is_none(), "{}", res.body);
    let res = app
        .get(&format!("/api/teams/{}?expand=people.friends.team", t.open))
        .await;
    let team = ok(&res);
    assert!(team.get("people").is_none(), "{team}");
    let people = &team["expand"]["people"];
    let bob = by_name(people, "Bob");
    assert_eq!(bob["team"], json!(t.open));
    assert_eq!(bob["friends"], json!([t.ada]));
    let ada = &bob["expand"]["friends"][0];
    assert_eq!(ada["name"], "Ada");
    assert_eq!(ada["team"], json!(t.open));
    assert_eq!(ada["expand"]["team"]["name"], "Open");
    assert_eq!(ada["expand"]["team"]["id"], json!(t.open));
    assert!(
        ada["expand"]["team"].get("expand").is_none(),
        "not asked for"
    );
    assert_eq!(by_name(people, "Ada")["expand"]["friends"], json!([]));

    // A list, three levels, and `fields` selecting inside the expansions.
    let res = app
        .get("/api/people?expand=team.people,friends&fields=name,team.name,team.people.name,friends&sort=name")
        .await;
    let items = &ok(&res)["items"];
    let cyd = by_name(items, "Cyd");
    assert_eq!(
        cyd,
        &json!({
            "id": t.cyd,
            "name": "Cyd",
            "team": t.closed,
            "friends": [t.ada, t.bob],
            "expand": {
                "team": {
                    "id": t.closed,
                    "name": "Closed",
                    "expand": { "people": [{ "id": t.cyd, "name": "Cyd" }] }
                },
                "friends": cyd["expand"]["friends"],
            }
        })
    );
    let friends = cyd["expand"]["friends"].as_array().unwrap();
    assert_eq!(friends.len(), 2);
    for f in friends {
        assert!(f["salary"].is_number(), "all fields of a selected relation");
        assert!(f["team"].is_string());
    }
}

async fn expansions_do_not_leak_hidden_records_or_fields(db: Db) {
    let t = teams(db).await;
    let m = &t.member;
    // Cyd's team is not public: the ref stays the id the caller already sees
    // without `expand`, and the expansion is null.
    let res = m.get(&format!("/api/people/{}", t.cyd)).await;
    assert_eq!(ok(&res)["team"], json!(t.closed));
    let res = m
        .get(&format!("/api/people/{}?expand=team,friends", t.cyd))
        .await;
    let cyd = ok(&res);
    assert_eq!(cyd["team"], json!(t.closed));
    assert_eq!(cyd["expand"]["team"], Value::Null, "{cyd}");
    assert!(cyd.get("salary").is_none());
    // Hidden fields are not in the expanded records; a field visible on some records
    // shows only on those.
    let friends = cyd["expand"]["friends"].as_array().unwrap();
    assert_eq!(friends.len(), 2, "{cyd}");
    for f in friends {
        assert!(f["name"].is_string(), "{f}");
        assert!(f.get("salary").is_none(), "{f}");
    }
    assert_eq!(
        by_name(&cyd["expand"]["friends"], "Ada")["diary"],
        "ada's diary"
    );
    assert!(
        by_name(&cyd["expand"]["friends"], "Bob")
            .get("diary")
            .is_none(),
        "{cyd}"
    );
    let res = m
        .get("/api/people?expand=team.people.friends&sort=name")
        .await;
    let body = ok(&res).to_string();
    for hidden in ["salary", "secret", "bob's diary", "Closed"] {
        assert!(!body.contains(hidden), "{hidden} leaked: {body}");
    }
    let items = &res.body["items"];
    let bob = by_name(items, "Bob");
    let team = &bob["expand"]["team"];
    assert_eq!(team["name"], "Open");
    assert!(team.get("secret").is_none());
    for p in team["expand"]["people"].as_array().unwrap() {
        assert!(p.get("salary").is_none(), "{p}");
        for f in p["expand"]["friends"].as_array().unwrap() {
            assert!(f.get("salary").is_none(), "{f}");
        }
    }
    // The closed team's people are not reached through it.
    let res = m
        .get(&format!("/api/teams/{}?expand=people", t.closed))
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.body);
    let res = m.get("/api/teams?expand=people").await;
    let teams = &ok(&res)["items"];
    assert_eq!(teams.as_array().unwrap().len(), 1, "{teams}");
    // Hidden and conditional fields cannot be expanded into or selected through it.
    for q in [
        "expand=team&fields=name,team.secret",
        "expand=friends&fields=friends.salary",
        "expand=friends&fields=friends.diary",
        "expand=team.people&fields=team.people.salary",
    ] {
        let res = m.get(&format!("/api/people?{q}")).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{q}: {}", res.body);
        assert_eq!(res.body["parameter"], "fields", "{q}");
    }
    // Anonymous callers read nothing, expanded or not.
    let anon = t.app.anonymous();
    for path in [
        format!("/api/people/{}?expand=team", t.bob),
        "/api/people?expand=team,friends".to_string(),
        format!("/api/teams/{}?expand=people", t.open),
    ] {
        let res = anon.get(&path).await;
        assert!(
            matches!(
                res.status,
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
            ),
            "{path}: {} {}",
            res.status,
            res.body
        );
        let body = res.body.to_string();
        assert!(!body.contains("Ada") && !body.contains("Open"), "{body}");
    }
}

/// Whatever the depth, the kinds of relation and the caller's rules, a list or a
/// get with `expand` is one statement (the database writes the JSON); the member's
/// answer still hides what its rules hide.
async fn an_expanded_list_or_get_is_one_statement(db: Db) {
    let t = teams(db).await;
    let app = &t.app;
    let expand = "expand=team.people.friends,friends.team";
    for client in [app.as_user(&app.token("a1", &["admin"])), t.member.clone()] {
        let before = app.store.query_count();
        let res = client.get(&format!("/api/people?{expand}&limit=50")).await;
        ok(&res);
        assert_eq!(app.store.query_count() - before, 1, "{}", res.body);
        let before = app.store.query_count();
        let res = client.get(&format!("/api/people/{}?{expand}", t.bob)).await;
        ok(&res);
        assert_eq!(app.store.query_count() - before, 1, "{}", res.body);
    }
    let res = t
        .member
        .get(&format!("/api/people?{expand}&limit=50"))
        .await;
    let text = ok(&res).to_string();
    assert!(
        !text.contains("salary") && !text.contains("secret"),
        "{text}"
    );
    assert!(!text.contains("bob's diary"), "{text}");
    assert!(text.contains("ada's diary"), "{text}");
    let cyd = by_name(&res.body["items"], "Cyd");
    assert_eq!(cyd["team"], t.closed.as_str(), "the id stays");
    assert_eq!(
        cyd["expand"]["team"],
        Value::Null,
        "the closed team is not shown"
    );
}
