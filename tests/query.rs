//! List parameters over HTTP: filter, sort, keyset paging, count, fields, expand.

mod common;

use std::collections::{BTreeSet, HashSet};

use axum::http::StatusCode;
use common::{Db, TestApp};
use serde_json::{Value, json};

/// A small marketplace: 3 organizations, skills, users, 6 projects, applications.
struct Fixture {
    app: TestApp,
    acme: String,
    rust: String,
    sql: String,
    ada: String,
    bob: String,
}

async fn fixture(db: Db) -> Fixture {
    let app = TestApp::root(db).await;
    let ada = app
        .create(
            "users",
            json!({ "email": "ada@example.com", "display_name": "Ada" }),
        )
        .await;
    let bob = app
        .create(
            "users",
            json!({ "email": "bob@example.com", "display_name": "Bob" }),
        )
        .await;
    let acme = app
        .create(
            "organizations",
            json!({ "name": "Acme", "slug": "acme", "members": [ada] }),
        )
        .await;
    let globex = app
        .create(
            "organizations",
            json!({ "name": "Globex", "slug": "globex", "members": [bob] }),
        )
        .await;
    app.create(
        "organizations",
        json!({ "name": "Initech", "slug": "initech" }),
    )
    .await;
    let prog = app.create("skills", json!({ "name": "Programming" })).await;
    let rust = app
        .create("skills", json!({ "name": "Rust", "parent": prog }))
        .await;
    let sql = app
        .create("skills", json!({ "name": "SQL", "parent": prog }))
        .await;
    let projects = [
        json!({ "title": "Build API", "client": acme, "budget": "5000", "status": "open", "deadline": "2026-03-01", "skills": [rust, sql], "remote": true, "summary": "A REST api in Rust" }),
        json!({ "title": "Fix reports", "client": acme, "budget": "800.50", "status": "draft", "deadline": "2026-01-15", "skills": [sql], "remote": false }),
        json!({ "title": "Data warehouse", "client": globex, "budget": "12000", "status": "in_review", "skills": [sql], "remote": true, "summary": "Star schemas" }),
        json!({ "title": "Mobile app", "client": globex, "status": "open", "deadline": "2026-06-30", "remote": false }),
        json!({ "title": "Rust CLI", "client": globex, "budget": "1000", "status": "closed", "deadline": "2025-12-01", "skills": [rust], "remote": true }),
        json!({ "title": "Audit", "client": acme, "budget": "1000", "status": "open", "remote": true }),
    ];
    // Records in given workflow states are seeded: only transitions move them
    // through the API.
    let mut ids = Vec::new();
    for p in projects {
        ids.push(app.seed("projects", p).await);
    }
    app.seed(
        "applications",
        json!({ "project": ids[0], "applicant": bob, "status": "shortlisted" }),
    )
    .await;
    app.create(
        "applications",
        json!({ "project": ids[0], "applicant": ada }),
    )
    .await;
    app.create(
        "applications",
        json!({ "project": ids[2], "applicant": ada }),
    )
    .await;
    Fixture {
        app,
        acme,
        rust,
        sql,
        ada,
        bob,
    }
}

fn titles(body: &Value) -> BTreeSet<String> {
    body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {body}"))
        .iter()
        .map(|p| p["title"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn enc(s: &str) -> String {
    serde_urlencoded::to_string([("x", s)]).unwrap()[2..].to_string()
}

async fn filtered(app: &TestApp, filter: &str) -> BTreeSet<String> {
    let res = app
        .get(&format!("/api/projects?limit=200&filter={}", enc(filter)))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{filter}: {}", res.body);
    titles(&res.body)
}

async fn filters_select_the_right_records(db: Db) {
    let f = fixture(db).await;
    let app = &f.app;
    let cases: Vec<(String, BTreeSet<String>)> = vec![
        (
            "status = 'open'".into(),
            set(&["Build API", "Mobile app", "Audit"]),
        ),
        (
            "status = open and budget >= 1000".into(),
            set(&["Build API", "Audit"]),
        ),
        (
            "budget > 800.5".into(),
            set(&["Build API", "Data warehouse", "Rust CLI", "Audit"]),
        ),
        (
            "status in [open, in_review] or not remote".into(),
            set(&[
                "Build API",
                "Fix reports",
                "Data warehouse",
                "Mobile app",
                "Audit",
            ]),
        ),
        (
            "deadline < 2026-02-01".into(),
            set(&["Fix reports", "Rust CLI"]),
        ),
        (
            "deadline is not set".into(),
            set(&["Data warehouse", "Audit"]),
        ),
        (
            "summary is set and not (budget < 6000)".into(),
            set(&["Data warehouse"]),
        ),
        ("title ~ 'RUST'".into(), set(&["Rust CLI"])),
        ("summary ~ 'rust'".into(), set(&["Build API"])),
        (
            "client.name = 'Acme'".into(),
            set(&["Build API", "Fix reports", "Audit"]),
        ),
        (
            "client.name != 'Acme' and client.slug ~ 'glob'".into(),
            set(&["Data warehouse", "Mobile app", "Rust CLI"]),
        ),
        (
            format!("skills has '{}'", f.rust),
            set(&["Build API", "Rust CLI"]),
        ),
        (
            "skills.name = 'SQL'".into(),
            set(&["Build API", "Fix reports", "Data warehouse"]),
        ),
        (
            "skills.parent.name = 'Programming' and not skills.name = 'SQL'".into(),
            set(&["Rust CLI"]),
        ),
        ("skills is not set".into(), set(&["Mobile app", "Audit"])),
        (
            format!("client.members has '{}'", f.ada),
            set(&["Build API", "Fix reports", "Audit"]),
        ),
        (
            "applications.status = shortlisted".into(),
            set(&["Build API"]),
        ),
        (
            format!("applications.applicant = '{}'", f.ada),
            set(&["Build API", "Data warehouse"]),
        ),
        (
            "applications is set".into(),
            set(&["Build API", "Data warehouse"]),
        ),
        (
            format!("client = '{}' and remote", f.acme),
            set(&["Build API", "Audit"]),
        ),
        (
            "created_at < now and version = 1".into(),
            set(&[
                "Build API",
                "Fix reports",
                "Data warehouse",
                "Mobile app",
                "Rust CLI",
                "Audit",
            ]),
        ),
        ("status in []".into(), set(&[])),
        (
            "(status = open or status = closed) and (deadline > 2026-01-01 or deadline is not set)"
                .into(),
            set(&["Build API", "Mobile app", "Audit"]),
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(filtered(app, &filter).await, expected, "filter: {filter}");
    }

    // Through an inverse from the other side, and counts.
    let res = app
        .get(&format!(
            "/api/organizations?count=true&filter={}",
            enc("projects.status = open")
        ))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let names: BTreeSet<String> = res.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, set(&["Acme", "Globex"]));
    assert_eq!(res.body["total"], 2);
    let res = app
        .get(&format!(
            "/api/users?filter={}",
            enc(&format!("id = '{}'", f.bob))
        ))
        .await;
    assert_eq!(res.body["items"][0]["display_name"], "Bob");
    let _ = &f.sql;
}

async fn bad_filters_point_at_the_problem(db: Db) {
    let f = fixture(db).await;
    let app = &f.app;
    let cases = [
        ("budgte > 5", 1, "did you mean `budget`?"),
        ("status = 'open' and budget >", 29, "value"),
        ("status = archived", 10, "the values are"),
        ("status = opne", 10, "did you mean `open`?"),
        ("deadline > 5", 12, "date"),
        ("title ~ 5", 9, "quoted text"),
        ("budget > 1.234", 10, "round"),
        ("client.nmae = 'x'", 1, "did you mean `name`?"),
        ("title.x = 1", 1, "not a relation"),
        ("skills = 'x'", 1, "has"),
        ("client = user.id", 10, "policies"),
        ("status == 'open' && remote", 18, "and"),
        ("(status = 'open'", 1, ")"),
        ("remote = 'yes'", 10, "true or false"),
        ("summary", 1, "cannot stand alone"),
    ];
    for (filter, column, hint) in cases {
        let res = app
            .get(&format!("/api/projects?filter={}", enc(filter)))
            .await;
        assert_eq!(
            res.status,
            StatusCode::BAD_REQUEST,
            "{filter}: {}",
            res.body
        );
        assert_eq!(res.header("content-type"), Some("application/problem+json"));
        assert_eq!(res.body["parameter"], "filter", "{filter}");
        assert_eq!(res.body["column"], column, "{filter}: {}", res.body);
        assert!(
            res.body["detail"].as_str().unwrap().contains(hint),
            "{filter}: {}",
            res.body
        );
    }
    let long = format!("title = '{}'", "x".repeat(5000));
    let res = app
        .get(&format!("/api/projects?filter={}", enc(&long)))
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let deep = format!("{}remote{}", "(".repeat(50), ")".repeat(50));
    let res = app
        .get(&format!("/api/projects?filter={}", enc(&deep)))
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.body["detail"].as_str().unwrap().contains("nested"));
    let res = app.get("/api/projects?filter=remote&filter=remote").await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
}

async fn sort_is_total_and_nulls_come_last(db: Db) {
    let f = fixture(db).await;
    let app = &f.app;
    let res = app.get("/api/projects?sort=-budget,title").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let order: Vec<&str> = res.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            "Data warehouse",
            "Build API",
            "Audit",
            "Rust CLI",
            "Fix reports",
            "Mobile app"
        ]
    );
    let res = app.get("/api/projects?sort=deadline").await;
    let order: Vec<&str> = res.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        &order[..4],
        ["Rust CLI", "Fix reports", "Build API", "Mobile app"]
    );
    assert_eq!(
        order[4..].iter().copied().collect::<BTreeSet<_>>(),
        ["Audit", "Data warehouse"].into_iter().collect(),
        "nulls last"
    );
    for bad in [
        "sort=budgte",
        "sort=skills",
        "sort=title,title",
        "sort=preferences",
    ] {
        let res = app.get(&format!("/api/projects?{bad}")).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}: {}", res.body);
        assert_eq!(res.body["parameter"], "sort");
    }
    // Paging with a sort: pages join up exactly.
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let path = match &next {
            Some(c) => format!("/api/projects?sort=-budget,title&limit=2&after={c}"),
            None => "/api/projects?sort=-budget,title&limit=2".to_string(),
        };
        let res = app.get(&path).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        for p in res.body["items"].as_array().unwrap() {
            seen.push(p["title"].as_str().unwrap().to_string());
        }
        match res.body["next"].as_str() {
            Some(c) => next = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "Data warehouse",
            "Build API",
            "Audit",
            "Rust CLI",
            "Fix reports",
            "Mobile app"
        ]
    );
    // A cursor does not fit another sort.
    let res = app.get("/api/projects?sort=title&limit=2").await;
    let cursor = res.body["next"].as_str().unwrap().to_string();
    let res = app
        .get(&format!("/api/projects?sort=-title&after={cursor}"))
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.body["parameter"], "after");
}

async fn paging_through_1000_rows_while_writing(db: Db) {
    let app = TestApp::root(db).await;
    // Names repeat, so the sort has many ties that only the id breaks.
    let mut initial = Vec::new();
    for i in 0..1000 {
        let id = app
            .create(
                "skills",
                json!({ "name": format!("skill {:03}", (i * 7919) % 250) }),
            )
            .await;
        initial.push(id);
    }
    let mut seen: Vec<String> = Vec::new();
    let mut deleted: HashSet<String> = HashSet::new();
    let mut next: Option<String> = None;
    let mut page = 0;
    loop {
        let path = match &next {
            Some(c) => format!("/api/skills?sort=-name&limit=37&after={c}"),
            None => "/api/skills?sort=-name&limit=37".to_string(),
        };
        let res = app.get(&path).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        let items = res.body["items"].as_array().unwrap().clone();
        let mut last_name = None;
        for s in &items {
            seen.push(s["id"].as_str().unwrap().to_string());
            last_name = s["name"].as_str().map(str::to_string);
        }
        // Meanwhile: rows are inserted before and after the cursor, and rows already
        // seen and not yet seen are deleted.
        page += 1;
        for k in 0..3 {
            app.create(
                "skills",
                json!({ "name": format!("skill {:03}", (page * 31 + k * 97) % 250) }),
            )
            .await;
        }
        if let Some(name) = last_name {
            app.create("skills", json!({ "name": name })).await;
        }
        if page % 4 == 0 {
            let victim = initial[(page * 13) % 1000].clone();
            if app.delete(&format!("/api/skills/{victim}")).await.status == StatusCode::NO_CONTENT {
                deleted.insert(victim);
            }
        }
        match res.body["next"].as_str() {
            Some(c) => next = Some(c.to_string()),
            None => break,
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no record twice");
    for id in initial.iter().filter(|id| !deleted.contains(*id)) {
        assert!(
            unique.contains(id),
            "a record that existed throughout was skipped"
        );
    }
    assert!(page >= 27, "{page} pages");
}

async fn count_fields_and_limits(db: Db) {
    let f = fixture(db).await;
    let app = &f.app;
    let res = app
        .get("/api/projects?limit=2&count=true&filter=status%20%3D%20open")
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["total"], 3);
    assert_eq!(res.body["items"].as_array().unwrap().len(), 2);
    let res = app.get("/api/projects").await;
    assert!(res.body.get("total").is_none(), "total only when asked");

    let res = app
        .get("/api/projects?fields=title,budget&sort=title&limit=1")
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let item = res.body["items"][0].as_object().unwrap();
    let keys: BTreeSet<&str> = item.keys().map(String::as_str).collect();
    assert_eq!(keys, ["budget", "id", "title"].into_iter().collect());
    assert_eq!(item["title"], "Audit");

    let res = app
        .get("/api/projects?fields=title,client.name&expand=client&sort=title&limit=1")
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    // `client.name` keeps the ref (its id) and the name of the expanded client.
    assert_eq!(
        res.body["items"][0],
        json!({
            "id": res.body["items"][0]["id"],
            "title": "Audit",
            "client": f.acme,
            "expand": { "client": { "id": f.acme, "name": "Acme" } }
        })
    );
    // An expansion no field selects is left out, with its member.
    let res = app
        .get("/api/projects?fields=title&expand=client&sort=title&limit=1")
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let keys: BTreeSet<&str> = res.body["items"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["id", "title"].into_iter().collect());

    for (bad, param) in [
        ("fields=titel", "fields"),
        ("fields=client.name", "fields"),
        ("fields=applications", "fields"),
        ("expand=title", "expand"),
        ("expand=clinet", "expand"),
        ("expand=a.b.c.d", "expand"),
        ("count=maybe", "count"),
        ("limit=201", "limit"),
        ("limit=0", "limit"),
    ] {
        let res = app.get(&format!("/api/projects?{bad}")).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}: {}", res.body);
        assert_eq!(res.body["parameter"], param, "{bad}");
    }
    let res = app.get("/api/skills?q=rust").await;
    assert_eq!(
        res.status,
        StatusCode::BAD_REQUEST,
        "skills have no search fields"
    );
    assert!(res.body["hint"].as_str().unwrap().contains("search:"));
    let res = app.get("/api/projects?expand=clinet").await;
    assert!(
        res.body["detail"]
            .as_str()
            .unwrap()
            .contains("did you mean `client`")
    );
}

async fn expansion_is_nested_and_does_not_query_per_row(db: Db) {
    let f = fixture(db).await;
    let app = &f.app;
    let res = app
        .get("/api/projects?sort=title&expand=client.members,skills.parent,applications.applicant")
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let build = res.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["title"] == "Build API")
        .unwrap();
    // Fields keep their ids; the records are under `expand`, level by level.
    assert_eq!(build["client"], json!(f.acme));
    assert!(
        build.get("applications").is_none(),
        "inverse: only under expand"
    );
    let ex = &build["expand"];
    assert_eq!(ex["client"]["id"], json!(f.acme));
    assert_eq!(ex["client"]["name"], "Acme");
    let member_ids = ex["client"]["members"].as_array().unwrap();
    assert!(
        member_ids.iter().all(Value::is_string),
        "a many stays its ids"
    );
    assert_eq!(
        member_ids[0], ex["client"]["expand"]["members"][0]["id"],
        "{ex}"
    );
    assert_eq!(ex["client"]["expand"]["members"][0]["display_name"], "Ada");
    let skill_ids: BTreeSet<&str> = build["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(skill_ids.len(), 2);
    let skills: BTreeSet<&str> = ex["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(skills, ["Rust", "SQL"].into_iter().collect());
    let expanded_ids: BTreeSet<&str> = ex["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(expanded_ids, skill_ids);
    assert!(ex["skills"][0]["parent"].is_string(), "a ref stays its id");
    assert_eq!(ex["skills"][0]["expand"]["parent"]["name"], "Programming");
    assert_eq!(
        ex["skills"][0]["parent"],
        ex["skills"][0]["expand"]["parent"]["id"]
    );
    let applicants: BTreeSet<&str> = ex["applications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert!(a["applicant"].is_string(), "{a}");
            a["expand"]["applicant"]["display_name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(applicants, ["Ada", "Bob"].into_iter().collect());
    let mobile = res.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["title"] == "Mobile app")
        .unwrap();
    assert_eq!(mobile["skills"], json!([]));
    assert_eq!(mobile["expand"]["skills"], json!([]));
    assert_eq!(mobile["expand"]["applications"], json!([]));
    assert!(mobile.get("applications").is_none());

    // The number of queries does not depend on the number of rows.
    let url = "/api/projects?limit=200&expand=client.members,skills";
    let before = app.store.query_count();
    app.get(url).await;
    let small = app.store.query_count() - before;
    for i in 0..30 {
        app.create(
            "projects",
            json!({ "title": format!("Extra {i}"), "client": f.acme, "skills": [f.rust] }),
        )
        .await;
    }
    let before = app.store.query_count();
    let res = app.get(url).await;
    let large = app.store.query_count() - before;
    assert_eq!(res.body["items"].as_array().unwrap().len(), 36);
    assert_eq!(small, large, "queries for 6 rows vs 36 rows");
    assert!(large <= 8, "{large} queries");
    println!("queries for a list with two levels of expansion: {large}");

    // get by id with expand.
    let res = app
        .get(&format!(
            "/api/organizations/{}?expand=projects.skills,members",
            f.acme
        ))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(res.body.get("projects").is_none());
    assert!(res.body["expand"]["projects"].as_array().unwrap().len() >= 3);
    assert!(res.body["members"][0].is_string(), "a many stays its ids");
    assert_eq!(res.body["expand"]["members"][0]["email"], "ada@example.com");
    for p in res.body["expand"]["projects"].as_array().unwrap() {
        assert_eq!(p["client"], json!(f.acme));
        let ids = p["skills"].as_array().unwrap();
        let expanded = p["expand"]["skills"].as_array().unwrap();
        assert_eq!(ids.len(), expanded.len(), "{p}");
    }
    let res = app
        .get(&format!("/api/organizations/{}?expand=nope", f.acme))
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let _ = &f.bob;
}

async fn full_text_search(db: Db) {
    let f = fixture(db).await;
    let app = &f.app;
    let search = |q: &str| format!("/api/projects?q={}", enc(q));
    let res = app.get(&search("rust")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(titles(&res.body), set(&["Build API", "Rust CLI"]));
    assert_eq!(
        titles(&app.get(&search("RUST api")).await.body),
        set(&["Build API"])
    );
    assert_eq!(
        titles(&app.get(&search("schemas")).await.body),
        set(&["Data warehouse"])
    );
    assert_eq!(
        titles(&app.get(&search("nothing-like-this")).await.body),
        set(&[])
    );
    for odd in ["\"rust", "!!!", "rust OR", "NEAR(a b)", "a*", "'"] {
        let res = app.get(&search(odd)).await;
        assert_eq!(res.status, StatusCode::OK, "{odd}: {}", res.body);
    }
    // With a filter and a count; and by relevance, paged by position.
    let res = app
        .get(&format!(
            "/api/projects?q=rust&count=true&filter={}",
            enc("status = closed")
        ))
        .await;
    assert_eq!(titles(&res.body), set(&["Rust CLI"]));
    assert_eq!(res.body["total"], 1);
    let first = app.get("/api/projects?q=rust&limit=1").await;
    assert_eq!(first.body["items"].as_array().unwrap().len(), 1);
    let cursor = first.body["next"].as_str().unwrap().to_string();
    let second = app
        .get(&format!("/api/projects?q=rust&limit=1&after={cursor}"))
        .await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    let both: BTreeSet<String> = titles(&first.body)
        .union(&titles(&second.body))
        .cloned()
        .collect();
    assert_eq!(both, set(&["Build API", "Rust CLI"]));
    assert!(second.body["next"].is_null());
    let res = app
        .get(&format!("/api/projects?q=sql&limit=1&after={cursor}"))
        .await;
    assert_eq!(
        res.status,
        StatusCode::BAD_REQUEST,
        "a cursor of another search"
    );
    // With an explicit sort, search only filters.
    let res = app.get("/api/projects?q=rust&sort=title").await;
    let order: Vec<&str> = res.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["Build API", "Rust CLI"]);
    // The index follows writes.
    let id = app
        .create(
            "projects",
            json!({ "title": "Quantum thing", "client": f.acme }),
        )
        .await;
    assert_eq!(
        titles(&app.get(&search("quantum")).await.body),
        set(&["Quantum thing"])
    );
    app.patch(
        &format!("/api/projects/{id}"),
        json!({ "title": "Classical thing" }),
        &[],
    )
    .await;
    assert_eq!(titles(&app.get(&search("quantum")).await.body), set(&[]));
    assert_eq!(
        titles(&app.get(&search("classical")).await.body),
        set(&["Classical thing"])
    );
    app.delete(&format!("/api/projects/{id}")).await;
    assert_eq!(titles(&app.get(&search("classical")).await.body), set(&[]));
}

async fn expansions_are_capped_per_parent(db: Db) {
    let app = TestApp::with_files(
        db,
        &[
            (
                "models/list.yaml",
                "entity: list\nfields:\n  name: string\n  entries: { type: inverse, of: entry, via: list }\n  picks: { type: many, of: entry }\n",
            ),
            (
                "models/entry.yaml",
                "entity: entry\nplural: entries\nfields:\n  list: { type: ref, to: list, on_delete: cascade }\n  n: integer\n",
            ),
        ],
    )
    .await;
    let a = app.create("lists", json!({ "name": "a" })).await;
    let b = app.create("lists", json!({ "name": "b" })).await;
    let mut entries = Vec::new();
    for n in 0..105 {
        entries.push(app.create("entries", json!({ "list": a, "n": n })).await);
    }
    app.create("entries", json!({ "list": b, "n": 1000 })).await;
    app.patch(&format!("/api/lists/{b}"), json!({ "picks": entries }), &[])
        .await;
    let res = app.get("/api/lists?expand=entries,picks&sort=name").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let first = &res.body["items"][0]["expand"];
    let second = &res.body["items"][1]["expand"];
    assert_eq!(
        res.body["items"][1]["picks"].as_array().unwrap().len(),
        105,
        "the ids stay complete; the expansion is capped"
    );
    assert_eq!(
        first["entries"].as_array().unwrap().len(),
        100,
        "capped at 100"
    );
    assert_eq!(first["entries"][0]["n"], 0, "the first by id");
    assert_eq!(first["entries"][99]["n"], 99);
    assert_eq!(
        second["entries"].as_array().unwrap().len(),
        1,
        "the cap is per parent"
    );
    assert_eq!(second["picks"].as_array().unwrap().len(), 100);
    let res = app.get(&format!("/api/lists/{b}")).await;
    assert_eq!(
        res.body["picks"].as_array().unwrap().len(),
        105,
        "plain id lists are complete"
    );
}

/// Pages after a cursor are read from the cursor's place (a range on the first sort
/// key; the rows without that key, which come last, read separately): for every
/// sort (nullable and required keys, both directions, ties, several keys) and page
/// size, the pages join up to exactly the one-page answer, with a filter too.
async fn keyset_pages_join_up_for_every_sort(db: Db) {
    let app = TestApp::with_files(
        db,
        &[(
            "models/row.yaml",
            "entity: row\nfields:\n  a: integer\n  b: string\n  c: { type: integer, required: true }\nindexes:\n  - [-a, id]\n  - [a, b, id]\n",
        )],
    )
    .await;
    for i in 0..45i64 {
        // Ties and NULLs on every optional key.
        let a = if i % 5 == 0 {
            Value::Null
        } else {
            json!(i % 7)
        };
        let b = if i % 4 == 0 {
            Value::Null
        } else {
            json!(format!("b{}", i % 3))
        };
        app.create("rows", json!({ "a": a, "b": b, "c": i % 6 }))
            .await;
    }
    let ids = |body: &Value| -> Vec<String> {
        body["items"]
            .as_array()
            .unwrap_or_else(|| panic!("no items in {body}"))
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    for sort in [
        "a",
        "-a",
        "a,b",
        "-a,-b",
        "b,-a",
        "c,-a",
        "-c",
        "a,c",
        "-created_at",
        "-id",
    ] {
        for filter in [
            "",
            "&filter=a%20%3E%202",
            "&filter=a%20is%20not%20set%20or%20c%20%3E%203",
        ] {
            let whole = app
                .get(&format!("/api/rows?sort={sort}&limit=200{filter}"))
                .await;
            assert_eq!(whole.status, StatusCode::OK, "{}", whole.body);
            let whole = ids(&whole.body);
            assert!(!whole.is_empty(), "{sort} {filter}");
            for limit in [1, 4, 7] {
                let mut seen = Vec::new();
                let mut next: Option<String> = None;
                loop {
                    let after = next
                        .as_ref()
                        .map(|c| format!("&after={c}"))
                        .unwrap_or_default();
                    let res = app
                        .get(&format!(
                            "/api/rows?sort={sort}&limit={limit}{filter}{after}"
                        ))
                        .await;
                    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
                    let page = ids(&res.body);
                    assert!(page.len() <= limit);
                    seen.extend(page);
                    match res.body["next"].as_str() {
                        Some(c) => next = Some(c.to_string()),
                        None => break,
                    }
                }
                assert_eq!(seen, whole, "sort={sort} limit={limit} {filter}");
            }
        }
    }
    // The rows without the first key are a second read only for a page that reaches
    // them: one statement in the middle of the rows with a value.
    let first = app.get("/api/rows?sort=-a&limit=5").await;
    let cursor = first.body["next"].as_str().unwrap().to_string();
    let before = app.store.query_count();
    let res = app
        .get(&format!("/api/rows?sort=-a&limit=5&after={cursor}"))
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        app.store.query_count() - before,
        1,
        "one read in the middle"
    );
    // A required key has no such rows: no second read at the end either.
    let first = app.get("/api/rows?sort=-c&limit=40").await;
    let cursor = first.body["next"].as_str().unwrap().to_string();
    let before = app.store.query_count();
    let res = app
        .get(&format!("/api/rows?sort=-c&limit=40&after={cursor}"))
        .await;
    assert_eq!(ids(&res.body).len(), 5);
    assert_eq!(
        app.store.query_count() - before,
        1,
        "a required key: one read"
    );
}

both!(
    expansions_are_capped_per_parent,
    full_text_search,
    filters_select_the_right_records,
    bad_filters_point_at_the_problem,
    sort_is_total_and_nulls_come_last,
    paging_through_1000_rows_while_writing,
    keyset_pages_join_up_for_every_sort,
    count_fields_and_limits,
    expansion_is_nested_and_does_not_query_per_row,
);
