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

both!(
    both_paths_agree,
    record_path_still_serves,
    expansions_agree_with_the_record_path,
    capped_expansions_agree_with_the_record_path,
);

/// Past the cap of 100 related records per parent: `many` takes the first 100
/// links, then those the caller may read; `inverse` the first 100 readable children,
/// less those whose `via` the caller may not see — as the record path does.
async fn capped_expansions_agree_with_the_record_path(db: Db) {
    let app = TestApp::with_files(db, EXPAND_FILES).await;
    let mut tags = Vec::new();
    for n in 0..104 {
        let label = if n % 9 == 4 {
            "private".to_string()
        } else {
            format!("t{n}")
        };
        tags.push(app.seed("tags", json!({ "label": label })).await);
    }
    let bob = app.seed("owners", json!({ "name": "Bob" })).await;
    for n in 0..104 {
        app.seed(
            "things",
            json!({ "name": format!("n{n}"), "count": (n % 5) * 10 - 25, "owner": bob, "maker": bob, "tags": tags }),
        )
        .await;
    }
    let engine = app.state.engine.load_full();
    let admin = Principal::user("u-admin", &["admin"], Default::default());
    let member = Principal::user("u-member", &["member"], Default::default());
    for (entity, expand, callers) in [
        ("thing", "tags", vec![&admin, &member]),
        ("owner", "things,made", vec![&admin]),
        ("owner", "things.tags", vec![&admin, &member]),
    ] {
        let e = engine.entity(entity).unwrap().clone();
        for who in callers {
            let pairs = vec![
                ("expand".to_string(), expand.to_string()),
                ("limit".to_string(), "2".to_string()),
            ];
            let req = list_request(&engine, &e, &pairs, &[], &Principal::system()).unwrap();
            let page = app.store.list(&engine, &e, &req, who).await.unwrap();
            let json = app.store.list_json(&engine, &e, &req, who).await.unwrap();
            assert_eq!(
                std::str::from_utf8(&json.items).unwrap(),
                serde_json::to_string(&page.items).unwrap(),
                "{entity}?expand={expand} as {:?}",
                who.roles
            );
            let first = &page.items[0]["expand"];
            let shown = first.as_object().unwrap().values().next().unwrap();
            let n = shown.as_array().unwrap().len();
            assert!(
                (80..=100).contains(&n),
                "{entity}?expand={expand}: {n} records"
            );
        }
    }
    // Members see `made` only where `maker` shows (count > -10): fewer children.
    let e = engine.entity("owner").unwrap().clone();
    let pairs = vec![("expand".to_string(), "made".to_string())];
    let req = list_request(&engine, &e, &pairs, &[], &Principal::system()).unwrap();
    let page = app.store.list(&engine, &e, &req, &member).await.unwrap();
    let json = app
        .store
        .list_json(&engine, &e, &req, &member)
        .await
        .unwrap();
    assert_eq!(
        std::str::from_utf8(&json.items).unwrap(),
        serde_json::to_string(&page.items).unwrap()
    );
    let made = page.items[0]["expand"]["made"].as_array().unwrap().len();
    assert!((51..100).contains(&made), "{made} children shown");
}

/// Things with every field type, owners and tags, related every way (`ref`, `many`,
/// `inverse`, a ref to the same entity); each entity has row rules and field rules
/// for members (hidden fields, fields shown on some records, a `via` shown on some
/// records), guests may read things only.
const EXPAND_FILES: &[(&str, &str)] = &[
    (
        "trellis.yaml",
        "name: Expansions\nauth:\n  jwt: { algorithm: HS256, secret_env: PAGES_SECRET }\n",
    ),
    (
        "models/thing.yaml",
        "entity: thing\nfields:\n  name: { type: string }\n  notes: { type: text }\n  count: { type: integer }\n  ratio: { type: number }\n  price: { type: decimal, scale: 2 }\n  done: { type: boolean }\n  due: { type: date }\n  seen_at: { type: datetime }\n  code: { type: uuid }\n  mail: { type: email }\n  site: { type: url }\n  size: { type: enum, values: [small, large] }\n  extra: { type: json }\n  owner: { type: ref, to: owner }\n  maker: { type: ref, to: owner }\n  tags: { type: many, of: tag }\n",
    ),
    (
        "models/owner.yaml",
        "entity: owner\nfields:\n  name: { type: string, required: true }\n  secret: string\n  score: number\n  since: datetime\n  boss: { type: ref, to: owner }\n  things: { type: inverse, of: thing, via: owner }\n  made: { type: inverse, of: thing, via: maker }\n",
    ),
    (
        "models/tag.yaml",
        "entity: tag\nfields:\n  label: string\n  weight: number\n  cost: { type: decimal, scale: 3 }\n  meta: json\n  at: datetime\n  on: date\n  flag: boolean\n  code: uuid\n  owners: { type: many, of: owner }\n",
    ),
    (
        "policies/thing.yaml",
        "entity: thing\nrules:\n  - roles: [member, guest]\n    allow: [list, read]\n  - roles: [admin]\n    allow: ['*']\nfields:\n  mail: { read: { roles: [admin] } }\n  notes: { read: { roles: [admin], where: count > 0 } }\n  maker: { read: { roles: [admin], where: count > -10 } }\n",
    ),
    (
        "policies/owner.yaml",
        "entity: owner\nrules:\n  - roles: [member]\n    allow: [list, read]\n    where: name != 'Hidden'\n  - roles: [admin]\n    allow: ['*']\nfields:\n  secret: { read: { roles: [admin] } }\n  score: { read: { roles: [admin], where: name = 'Ann' } }\n",
    ),
    (
        "policies/tag.yaml",
        "entity: tag\nrules:\n  - roles: [member]\n    allow: [list, read]\n    where: label != 'private'\n  - roles: [admin]\n    allow: ['*']\nfields:\n  cost: { read: { roles: [admin] } }\n  meta: { read: { roles: [admin], where: flag } }\n",
    ),
];

/// Lists and gets with `expand` (and `fields=`) answer, byte for byte, what the
/// record path answers, for an admin, a member (rows and fields hidden at every
/// level) and a guest (no related entity readable), and in one statement.
async fn expansions_agree_with_the_record_path(db: Db) {
    let app = TestApp::with_files(db, EXPAND_FILES).await;
    let texts = [
        "plain",
        "quote \" backslash \\ slash /",
        "line\nbreak\ttab\r",
        "control \u{1} \u{1f} \u{7f}",
        "unicode é ✓ 𝄞",
        "",
    ];
    let mut tags = Vec::new();
    for (n, text) in texts.iter().enumerate() {
        let label = if n == 2 {
            "private".to_string()
        } else {
            text.to_string()
        };
        let body = json!({
            "label": label, "weight": ([0.1, 1.0 / 3.0, 100.0, -2.5e-7, 1e21, 12345.678][n]),
            "cost": format!("{}.125", n as i64 - 3), "flag": n % 2 == 0,
            "meta": { "z": text, "a": [n, null, 1.50, true], "n": { "k": 1e300 } },
            "at": format!("2026-03-0{}T09:30:1{n}.{}Z", n + 1, ["0", "5", "123", "123456", "000001", "999"][n]),
            "on": "2024-02-29", "code": uuid::Uuid::now_v7()
        });
        tags.push(app.create("tags", body).await);
    }
    app.create("tags", json!({})).await;
    let ann = app
        .create(
            "owners",
            json!({ "name": "Ann", "secret": "s1", "score": 2.5, "since": "2026-01-01T00:00:00Z" }),
        )
        .await;
    let hidden = app
        .create(
            "owners",
            json!({ "name": "Hidden", "secret": "s2", "score": 1.0, "boss": ann }),
        )
        .await;
    let bob = app
        .create(
            "owners",
            json!({ "name": "Bob", "score": -0.5, "boss": hidden }),
        )
        .await;
    app.seed("owners", json!({ "name": "Nobody" })).await;
    for (i, tag) in tags.iter().enumerate() {
        let owners = match i % 3 {
            0 => json!([ann, hidden]),
            1 => json!([bob]),
            _ => json!([]),
        };
        let res = app
            .patch(
                &format!("/api/tags/{tag}"),
                json!({ "owners": owners }),
                &[],
            )
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    }
    let owners = [ann.clone(), hidden.clone(), bob.clone()];
    for (n, text) in texts.iter().enumerate() {
        let k = n as i64;
        let res = app
            .post(
                "/api/things",
                json!({
                    "name": text, "notes": format!("{text}{text}"), "count": k * 7 - 20,
                    "ratio": ([k as f64 / 3.0, 1e-7, 5.0, -0.0, 1.5e300, 2.0][n]),
                    "price": format!("{}.5", k * 100 - 250), "done": n % 2 == 0,
                    "due": "2026-02-28", "seen_at": format!("2026-03-01T09:30:1{n}.12345{n}Z"),
                    "code": uuid::Uuid::now_v7(), "mail": format!("a{n}@example.com"),
                    "site": format!("https://example.com/{n}?q=\"x\""), "size": "large",
                    "extra": { "text": text, "list": [k, null, true], "nested": { "k": 1.5 } },
                    "owner": owners[n % 3], "maker": owners[(n + 1) % 3],
                    "tags": tags.iter().skip(n).take(3).collect::<Vec<_>>(),
                }),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    }
    app.post("/api/things", json!({})).await;

    let engine = app.state.engine.load_full();
    let admin = Principal::user("u-admin", &["admin"], Default::default());
    let member = Principal::user("u-member", &["member"], Default::default());
    let guest = Principal::user("u-guest", &["guest"], Default::default());
    // (entity, expand, fields, callers that may ask)
    let all: &[&Principal] = &[&admin, &member, &guest];
    let admin_only: &[&Principal] = &[&admin];
    let readers: &[&Principal] = &[&admin, &member];
    let cases: Vec<(&str, &str, Option<&str>, &[&Principal])> = vec![
        ("thing", "owner", None, all),
        ("thing", "tags", None, all),
        (
            "thing",
            "owner,tags",
            Some("name,owner,tags.label,tags.on"),
            all,
        ),
        ("thing", "owner.things,owner.made,owner.boss", None, all),
        ("thing", "owner.boss.boss,tags.owners", None, all),
        ("thing", "owner.things.tags,tags.owners.made", None, all),
        (
            "thing",
            "owner,tags",
            Some("ratio,extra,owner.name,owner.since,tags"),
            all,
        ),
        ("thing", "maker.made", None, admin_only),
        (
            "thing",
            "maker,owner.things",
            Some("maker.score,owner.things"),
            admin_only,
        ),
        ("owner", "things,made,boss", None, readers),
        (
            "owner",
            "things.tags.owners",
            Some("things.tags.owners.name,boss"),
            readers,
        ),
        ("owner", "boss", Some("name"), readers),
        ("tag", "owners.things", None, readers),
    ];
    let mut compared = 0;
    for (entity, expand, fields, callers) in &cases {
        let e = engine.entity(entity).unwrap().clone();
        for who in callers.iter() {
            let mut pairs = vec![
                ("expand".to_string(), expand.to_string()),
                ("limit".to_string(), "3".to_string()),
            ];
            if let Some(f) = fields {
                pairs.push(("fields".to_string(), f.to_string()));
            }
            let context = format!(
                "{entity}?expand={expand}&fields={fields:?} as {:?}",
                who.roles
            );
            let mut after: Option<String> = None;
            let mut seen = 0;
            loop {
                let mut pairs = pairs.clone();
                if let Some(a) = &after {
                    pairs.push(("after".to_string(), a.clone()));
                }
                let req = list_request(&engine, &e, &pairs, &[], &Principal::system())
                    .unwrap_or_else(|err| panic!("{context}: {err:?}"));
                let page = app.store.list(&engine, &e, &req, who).await.unwrap();
                let before = app.store.query_count();
                let json = app.store.list_json(&engine, &e, &req, who).await.unwrap();
                assert_eq!(
                    app.store.query_count() - before,
                    1,
                    "{context}: one statement"
                );
                let records = serde_json::to_string(&page.items).unwrap();
                assert_eq!(
                    std::str::from_utf8(&json.items).unwrap(),
                    records,
                    "{context}"
                );
                assert_eq!(json.next, page.next, "{context}");
                for item in &page.items {
                    let id = uuid::Uuid::parse_str(item["id"].as_str().unwrap()).unwrap();
                    let get = trellis::engine::query::GetRequest {
                        fields: req.fields.clone(),
                        expand: req.expand.clone(),
                    };
                    let one = app
                        .store
                        .get_with(&engine, &e, id, &get, who)
                        .await
                        .unwrap();
                    let before = app.store.query_count();
                    let (body, version) = app
                        .store
                        .get_json(&engine, &e, id, &get, who)
                        .await
                        .unwrap();
                    assert_eq!(
                        app.store.query_count() - before,
                        1,
                        "{context}: one statement"
                    );
                    assert_eq!(
                        std::str::from_utf8(&body).unwrap(),
                        serde_json::to_string(&one).unwrap(),
                        "{context}: get {id}"
                    );
                    assert_eq!(version, one.get("version").and_then(Value::as_i64));
                }
                seen += page.items.len();
                compared += 1;
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            assert!(seen > 0, "{context}");
        }
    }
    assert!(compared > 50, "{compared} pages compared");

    // The member sees neither the hidden owner nor the private tag, nor hidden fields,
    // at any level.
    let member_client = app.as_user(&app.token("u-member", &["member"]));
    let res = member_client
        .get("/api/things?expand=owner.boss,tags.owners&limit=50")
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let text = res.body.to_string();
    assert!(!text.contains("\"Hidden\""), "{text}");
    assert!(!text.contains("\"private\""), "{text}");
    assert!(!text.contains("\"secret\""), "{text}");
    assert!(!text.contains("\"cost\""), "{text}");
    assert!(!text.contains("\"mail\""), "{text}");
    let res = app
        .get("/api/things?expand=owner.boss,tags.owners&limit=50")
        .await;
    let text = res.body.to_string();
    assert!(
        text.contains("\"Hidden\"") && text.contains("\"cost\""),
        "{text}"
    );
}
