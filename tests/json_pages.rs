//! Lists written straight from rows to JSON (`Store::list_json`) answer exactly what
//! the record path (`Store::list`, then serialization) answers: every field type,
//! NULLs, awkward text, hidden fields, every page and cursor.

mod common;

use axum::http::StatusCode;
use common::{Db, TestApp};
use serde_json::{Value, json};
use trellis::engine::access::Principal;
use trellis::engine::query::list_request;

const THING: &str = "\
entity: thing
fields:
  name: { type: string }
  notes: { type: text }
  count: { type: integer }
  ratio: { type: number }
  price: { type: decimal, scale: 2 }
  done: { type: boolean }
  due: { type: date }
  seen_at: { type: datetime }
  code: { type: uuid }
  mail: { type: email }
  site: { type: url }
  size: { type: enum, values: [small, large] }
  extra: { type: json }
  owner: { type: ref, to: owner }
";

const OWNER: &str = "\
entity: owner
fields:
  name: { type: string, required: true }
  things: { type: inverse, of: thing, via: owner }
";

const POLICY: &str = "\
entity: thing
rules:
  - name: Everyone signed in reads
    roles: [authenticated]
    allow: [list, read]
  - name: Admins write
    roles: [admin]
    allow: ['*']
fields:
  mail: { read: { roles: [admin] } }
";

const OWNER_POLICY: &str = "\
entity: owner
rules:
  - name: Admins do everything
    roles: [admin]
    allow: ['*']
";

async fn app(db: Db) -> TestApp {
    TestApp::with_files(
        db,
        &[
            (
                "trellis.yaml",
                "name: Pages\nauth:\n  jwt: { algorithm: HS256, secret_env: PAGES_SECRET }\n",
            ),
            ("models/thing.yaml", THING),
            ("models/owner.yaml", OWNER),
            ("policies/thing.yaml", POLICY),
            ("policies/owner.yaml", OWNER_POLICY),
        ],
    )
    .await
}

async fn both_paths_agree(db: Db) {
    let app = app(db).await;
    let owner = app.create("owners", json!({ "name": "O" })).await;
    let texts = [
        "plain",
        "quote \" backslash \\ slash /",
        "line\nbreak\ttab\r",
        "control \u{1} \u{1f}",
        "unicode é ✓ 𝄞",
        "",
    ];
    let mut made = 0;
    for (n, text) in texts.iter().enumerate() {
        let n = n as i64;
        let res = app
            .post(
                "/api/things",
                json!({
                    "name": text, "notes": format!("{text}{text}"), "count": n * 7 - 20,
                    "ratio": n as f64 / 3.0, "price": format!("{}.5", n * 100), "done": n % 2 == 0,
                    "due": "2026-02-28", "seen_at": format!("2026-03-01T09:30:1{n}.12345{n}Z"),
                    "code": uuid::Uuid::now_v7(), "mail": format!("a{n}@example.com"),
                    "site": format!("https://example.com/{n}?q=\"x\""), "size": "large",
                    "extra": { "text": text, "list": [n, null, true], "nested": { "k": 1.5 } },
                    "owner": owner
                }),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
        made += 1;
    }
    // Every optional field NULL.
    let res = app.post("/api/things", json!({})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    made += 1;

    let engine = app.state.engine.load_full();
    let thing = engine.entity("thing").unwrap().clone();
    let admin = Principal::user("u-admin", &["admin"], Default::default());
    let member = Principal::user("u-member", &["member"], Default::default());
    let mut compared = 0;
    for who in [&admin, &member] {
        for sort in [
            "id",
            "-name",
            "count,-id",
            "-price",
            "seen_at",
            "done,ratio",
        ] {
            for limit in [1, 2, 3, 7, 50] {
                let mut after: Option<String> = None;
                let mut seen = 0;
                loop {
                    let mut pairs = vec![
                        ("sort".to_string(), sort.to_string()),
                        ("limit".to_string(), limit.to_string()),
                        ("count".to_string(), "true".to_string()),
                    ];
                    if let Some(a) = &after {
                        pairs.push(("after".to_string(), a.clone()));
                    }
                    let req =
                        list_request(&engine, &thing, &pairs, &[], &Principal::system()).unwrap();
                    let page = app.store.list(&engine, &thing, &req, who).await.unwrap();
                    let json = app
                        .store
                        .list_json(&engine, &thing, &req, who)
                        .await
                        .unwrap();
                    let direct: Value = serde_json::from_slice(&json.items).unwrap();
                    let records = serde_json::to_value(&page.items).unwrap();
                    assert_eq!(direct, records, "sort {sort}, limit {limit}");
                    // Byte for byte, key order included.
                    assert_eq!(
                        std::str::from_utf8(&json.items).unwrap(),
                        serde_json::to_string(&page.items).unwrap(),
                        "sort {sort}, limit {limit}"
                    );
                    assert_eq!(json.next, page.next, "sort {sort}, limit {limit}");
                    assert_eq!(json.total, page.total);
                    assert_eq!(json.total, Some(made));
                    for item in &page.items {
                        assert_eq!(
                            item.contains_key("mail"),
                            who.roles.iter().any(|r| r == "admin"),
                            "mail is for admins only"
                        );
                    }
                    seen += page.items.len();
                    compared += 1;
                    match page.next {
                        Some(next) => after = Some(next),
                        None => break,
                    }
                }
                assert_eq!(seen as i64, made, "sort {sort}, limit {limit}");
            }
        }
    }
    assert!(compared > 100, "{compared} pages compared");

    // A hidden field leaves the others in their declared order (it used to move the
    // last field into its place).
    let member_client = app.as_user(&app.token("u-member", &["member"]));
    let res = member_client.get("/api/things?limit=1").await;
    let one = member_client
        .get(&format!(
            "/api/things/{}",
            res.body["items"][0]["id"].as_str().unwrap()
        ))
        .await;
    for body in [&res.body["items"][0], &one.body] {
        let keys: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "id",
                "created_at",
                "updated_at",
                "version",
                "name",
                "notes",
                "count",
                "ratio",
                "price",
                "done",
                "due",
                "seen_at",
                "code",
                "site",
                "size",
                "extra",
                "owner"
            ]
        );
    }

    // And over HTTP: the list answers the records the single reads answer.
    let res = app.get("/api/things?sort=count&limit=50").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let items = res.body["items"].as_array().unwrap();
    assert_eq!(items.len() as i64, made);
    for item in items {
        let one = app
            .get(&format!("/api/things/{}", item["id"].as_str().unwrap()))
            .await;
        assert_eq!(&one.body, item);
    }
}

/// An entity with an inverse field and lists that expand or pick fields take the
/// record path; the answers are those of the records.
async fn record_path_still_serves(db: Db) {
    let app = app(db).await;
    let owner = app.create("owners", json!({ "name": "O" })).await;
    for n in 0..3 {
        app.create("things", json!({ "name": format!("t{n}"), "owner": owner }))
            .await;
    }
    let res = app
        .get("/api/things?expand=owner&fields=name,owner&sort=name")
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let third = &res.body["items"][2];
    let keys: Vec<&String> = third.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["id", "name", "owner", "expand"],
        "`fields` keeps the id"
    );
    assert_eq!(third["name"], "t2");
    assert_eq!(third["owner"], owner.as_str(), "a ref stays its id");
    assert_eq!(third["expand"]["owner"]["id"], owner.as_str());
    assert_eq!(third["expand"]["owner"]["name"], "O");
    let res = app.get("/api/owners").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["items"][0]["name"], "O");
}

both!(both_paths_agree, record_path_still_serves);
