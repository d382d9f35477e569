//! Bounded cost per request (issue 15): `q` searches only the fields the caller may
//! read and never answers 500, a caller's filter has a cost budget, and a statement
//! stops when its request's deadline passes, giving its connection back at once.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use axum::http::StatusCode;
use common::{Db, TEST_SECRET, TestApp, TestAppRouter, repo_root};
use serde_json::{Value, json};
use trellis::engine::Engine;
use trellis::http::{AppState, Auth, router};
use trellis::spec;
use trellis::store::Store;

fn fixture() -> PathBuf {
    repo_root().join("tests/fixtures/search_hidden")
}

fn ids(body: &Value) -> Vec<String> {
    let mut out: Vec<String> = body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {body}"))
        .iter()
        .map(|r| r["title"].as_str().unwrap_or_default().to_string())
        .collect();
    out.sort();
    out
}

/// Titles found by `q` (relevance order and a sorted list, which take different
/// paths), asserting that `total` agrees.
async fn found(client: &TestAppRouter, q: &str) -> Vec<String> {
    let q = urlencoding(q);
    let ranked = client.get(&format!("/api/notes?q={q}&count=true")).await;
    assert_eq!(ranked.status, StatusCode::OK, "{}", ranked.body);
    let sorted = client
        .get(&format!("/api/notes?q={q}&sort=title&count=true"))
        .await;
    assert_eq!(sorted.status, StatusCode::OK, "{}", sorted.body);
    let (a, b) = (ids(&ranked.body), ids(&sorted.body));
    assert_eq!(a, b, "ranked and sorted searches disagree for {q}");
    assert_eq!(ranked.body["total"], json!(a.len()), "{}", ranked.body);
    assert_eq!(sorted.body["total"], json!(a.len()), "{}", sorted.body);
    a
}

fn urlencoding(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

async fn seed_notes(app: &TestApp) {
    for (title, secret, memo, shared) in [
        ("alpha", "zebra", "", false),
        ("beta", "", "walrus", false),
        ("gamma", "", "walrus", true),
        ("delta walrus", "", "", false),
    ] {
        app.create(
            "notes",
            json!({ "title": title, "secret": secret, "memo": memo, "shared": shared }),
        )
        .await;
    }
}

/// A caller finds records only through the search fields it may read: never through
/// a field hidden from its role, and through a field readable under a condition
/// only on the records where the condition holds.
async fn q_matches_only_readable_fields(db: Db) {
    let app = TestApp::for_dir(db, &fixture()).await;
    seed_notes(&app).await;
    let reader = app.as_user(&app.token(&uuid::Uuid::now_v7().to_string(), &["reader"]));

    // The admin reads every field: the hidden and the conditional ones match.
    assert_eq!(found(&app, "zebra").await, ["alpha"]);
    assert_eq!(found(&app, "alpha zebra").await, ["alpha"]);
    assert_eq!(
        found(&app, "walrus").await,
        ["beta", "delta walrus", "gamma"]
    );

    // `secret` is hidden from readers: its words find nothing.
    assert!(found(&reader, "zebra").await.is_empty());
    assert!(found(&reader, "alpha zebra").await.is_empty());
    // `memo` is theirs only on shared notes; the title is everyone's.
    assert_eq!(found(&reader, "walrus").await, ["delta walrus", "gamma"]);
    assert_eq!(found(&reader, "alpha").await, ["alpha"]);
    assert_eq!(found(&reader, "beta walrus").await, Vec::<String>::new());
    assert_eq!(found(&reader, "gamma walrus").await, ["gamma"]);
}

/// The relevance order comes from the fields the caller may read on every record:
/// a word repeated in a hidden field does not lift a record above another.
async fn q_ranks_by_readable_fields(db: Db) {
    let app = TestApp::for_dir(db, &fixture()).await;
    app.create(
        "notes",
        json!({ "title": "otter report", "secret": "otter otter otter otter otter otter" }),
    )
    .await;
    app.create("notes", json!({ "title": "otter otter otter notes" }))
        .await;
    let order = |body: &Value| -> Vec<String> {
        body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|r| r["title"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let reader = app.as_user(&app.token(&uuid::Uuid::now_v7().to_string(), &["reader"]));
    let res = reader.get("/api/notes?q=otter").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(
        order(&res.body),
        ["otter otter otter notes", "otter report"],
        "{}",
        res.body
    );
    // Pages of a ranked search follow one another.
    let first = reader.get("/api/notes?q=otter&limit=1").await;
    assert_eq!(order(&first.body), ["otter otter otter notes"]);
    let next = first.body["next"]
        .as_str()
        .expect("a next page")
        .to_string();
    let second = reader
        .get(&format!("/api/notes?q=otter&limit=1&after={next}"))
        .await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(order(&second.body), ["otter report"]);
}

/// Full-text syntax in `q` is read as words; NUL and other control characters are
/// refused with 400; nothing answers 500, for a caller with every field and for
/// one whose search is narrowed to some fields.
async fn q_syntax_is_never_a_server_error(db: Db) {
    let app = TestApp::for_dir(db, &fixture()).await;
    seed_notes(&app).await;
    let reader = app.as_user(&app.token(&uuid::Uuid::now_v7().to_string(), &["reader"]));
    let words = [
        "\"",
        "\"\"",
        "*",
        "alpha*",
        "^alpha",
        "-alpha",
        "+alpha",
        "(",
        ")",
        "()",
        "{",
        "}",
        "{title}",
        "{title} : alpha",
        "title:alpha",
        "secret:zebra",
        ":",
        "NEAR(alpha beta)",
        "alpha OR zebra",
        "alpha AND",
        "NOT",
        "'",
        "\\",
        "alpha\"zebra",
        "é ✓ 𝄞",
        "%",
        "_",
        "a & b | !c",
        "alpha:*",
        "<->",
        "[",
        "]",
        ";",
        "--",
        "/*",
        "rowid",
        "rank",
    ];
    // Punctuation alone is no word, on both databases.
    assert_eq!(found(&app, "alpha *").await, ["alpha"]);
    assert_eq!(found(&app, "alpha \" ()").await, ["alpha"]);
    assert!(found(&app, "* ^ :").await.is_empty());
    for client in [&*app, &reader] {
        for w in words {
            let res = client
                .get(&format!("/api/notes?q={}&count=true", urlencoding(w)))
                .await;
            assert_eq!(res.status, StatusCode::OK, "q={w:?}: {}", res.body);
            let res = client
                .get(&format!("/api/notes?q={}&sort=-title", urlencoding(w)))
                .await;
            assert_eq!(res.status, StatusCode::OK, "q={w:?}: {}", res.body);
        }
        // The hidden field stays hidden whatever the syntax says.
        for w in ["secret:zebra", "{secret} : zebra", "zebra", "\"zebra\""] {
            let found = client
                .get(&format!("/api/notes?q={}&count=true", urlencoding(w)))
                .await;
            if std::ptr::eq(client, &reader) {
                assert_eq!(found.body["total"], json!(0), "q={w:?}: {}", found.body);
            }
        }
        for w in ["\0", "alpha\0", "a\u{1}b", "\u{7f}"] {
            let res = client
                .get(&format!("/api/notes?q={}", urlencoding(w)))
                .await;
            assert_eq!(res.status, StatusCode::BAD_REQUEST, "q={w:?}: {}", res.body);
            assert_eq!(res.body["parameter"], "q", "{}", res.body);
            assert_eq!(res.header("content-type"), Some("application/problem+json"));
        }
    }
}

/// 64 `or` branches over relation paths: refused with a 400 on `filter` that says
/// what to simplify, on lists, counts, aggregates and the event feed.
async fn filter_over_budget_is_refused(db: Db) {
    let app = TestApp::for_dir(db, &fixture()).await;
    seed_notes(&app).await;
    let heavy: Vec<String> = (0..64)
        .map(|n| format!("owner.notes.title ~ 'word{n}'"))
        .collect();
    let heavy = urlencoding(&heavy.join(" or "));
    for path in [
        format!("/api/notes?filter={heavy}"),
        format!("/api/notes?filter={heavy}&count=true"),
        format!("/api/notes/aggregate?count=true&filter={heavy}"),
        format!("/api/notes/events?filter={heavy}"),
    ] {
        let res = app.get(&path).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{path}: {}", res.body);
        assert_eq!(res.header("content-type"), Some("application/problem+json"));
        assert_eq!(res.body["parameter"], "filter", "{}", res.body);
        let detail = res.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("too expensive"), "{}", res.body);
        assert!(detail.contains("owner.notes.title"), "{}", res.body);
        let hint = res.body["hint"].as_str().unwrap_or_default();
        assert!(hint.contains("fewer `or` branches"), "{}", res.body);
    }
    // A deep to-many path with `~` alone is over the budget too.
    let deep = urlencoding("owner.notes.owner.notes.owner.notes.title ~ 'x'");
    let res = app.get(&format!("/api/notes?filter={deep}")).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    // So is the same weight inside a block: its steps multiply what it holds.
    let branches: Vec<String> = (0..64).map(|n| format!("title ~ 'word{n}'")).collect();
    let block = urlencoding(&format!("owner.notes.({})", branches.join(" or ")));
    let res = app.get(&format!("/api/notes?filter={block}")).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert!(
        res.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("too expensive"),
        "{}",
        res.body
    );
}

/// Ordinary filters with a few relation paths run.
async fn ordinary_relation_filters_run(db: Db) {
    let app = TestApp::for_dir(db, &fixture()).await;
    let ann = app.create("members", json!({ "name": "Ann" })).await;
    app.create("notes", json!({ "title": "one", "owner": ann }))
        .await;
    app.create("notes", json!({ "title": "two" })).await;
    for (filter, want) in [
        ("owner.name = 'Ann'", 1),
        ("owner.name ~ 'an' and title ~ 'o'", 1),
        (
            "owner.notes.title ~ 'tw' or owner.name = 'Ann' or title = 'two'",
            2,
        ),
        (
            "owner.notes.owner.name = 'Ann' and not owner.notes.title ~ 'zzz'",
            1,
        ),
        ("owner is set or owner.notes.title in ['one', 'two']", 1),
    ] {
        let res = app
            .get(&format!(
                "/api/notes?filter={}&count=true",
                urlencoding(filter)
            ))
            .await;
        assert_eq!(res.status, StatusCode::OK, "{filter}: {}", res.body);
        assert_eq!(res.body["total"], json!(want), "{filter}: {}", res.body);
        let res = app
            .get(&format!(
                "/api/notes/aggregate?count=true&filter={}",
                urlencoding(filter)
            ))
            .await;
        assert_eq!(res.status, StatusCode::OK, "{filter}: {}", res.body);
    }
    let members = app
        .get(&format!(
            "/api/members?filter={}",
            urlencoding("notes.title ~ 'on' or notes.owner.name = 'Bob'")
        ))
        .await;
    assert_eq!(members.status, StatusCode::OK, "{}", members.body);
    assert_eq!(members.body["items"].as_array().map(Vec::len), Some(1));
}

/// The app of `app`'s project on the same database, through a store whose requests
/// may take at most `deadline`.
async fn with_deadline(app: &TestApp, deadline: Duration) -> (TestAppRouter, Store) {
    let loaded = spec::load(&fixture());
    let engine = Engine::build(&loaded).expect("engine");
    let store = Store::connect_with_deadline(&app.db.url, deadline)
        .await
        .expect("connect");
    let auth =
        Auth::from_engine(&engine, &fixture(), &|_| Some(TEST_SECRET.to_string())).expect("auth");
    let state = AppState::with_auth(engine, store.clone(), auth);
    let token = app.token(&uuid::Uuid::now_v7().to_string(), &["admin"]);
    (
        TestAppRouter::new(router(state)).with_token(Some(token)),
        store,
    )
}

/// A statement still running at its request's deadline is stopped: the request
/// answers 503 (a problem saying it took too long) and the connection goes back to
/// the pool at once, so the next requests answer. More slow requests than the pool
/// has connections leave cheap requests answering while they run.
async fn slow_statements_stop_at_the_deadline(db: Db) {
    let app = TestApp::for_dir(db, &fixture()).await;
    let owner = app.create("members", json!({ "name": "Ann" })).await;
    let note = app
        .create("notes", json!({ "title": "first", "owner": owner }))
        .await;
    for batch in 0..30 {
        let operations: Vec<Value> = (0..100)
            .map(|n| {
                json!({ "op": "create", "entity": "note",
                        "data": { "title": format!("note {batch} {n}"), "owner": owner } })
            })
            .collect();
        let res = app
            .post("/api/batch", json!({ "operations": operations }))
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    }
    let (client, store) = with_deadline(&app, Duration::from_millis(1500)).await;
    // Every note, through its owner, against each of the owner's 3,000 notes, seven
    // times: about 63 million comparisons without an index, within the cost budget.
    let mut branches: Vec<String> = (0..7)
        .map(|n| format!("owner.notes.title ~ 'nothing like {n}'"))
        .collect();
    // A branch on the record's own field keeps PostgreSQL from turning the whole
    // condition into one hashed semi-join.
    branches.push("title = 'nothing'".to_string());
    let slow = format!(
        "/api/notes?limit=1&filter={}",
        urlencoding(&branches.join(" or "))
    );
    // PostgreSQL runs that filter as hashed subplans, in a moment: there the
    // statements are slowed down by a lock on the table that another connection
    // holds until the storm is over.
    let lock = match (db, store.pool()) {
        (Db::Postgres, trellis::store::Pool::Postgres(pool)) => {
            let mut tx = pool.begin().await.expect("begin");
            sqlx::query("LOCK TABLE note IN ACCESS EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await
                .expect("lock");
            Some(tx)
        }
        _ => None,
    };
    // More slow requests at once than the pool has connections (8 on SQLite).
    let mut storm = Vec::new();
    for _ in 0..10 {
        let client = client.clone();
        let slow = slow.clone();
        storm.push(tokio::spawn(async move { client.get(&slow).await }));
    }
    // While they run, cheap requests answer: expensive reads get at most half of
    // the pool's connections.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let res = client.get("/api/members?count=true").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(
        !storm.iter().all(|s| s.is_finished()),
        "the slow requests were over before the cheap one"
    );
    let mut stopped = 0;
    for res in storm {
        let res = res.await.expect("request");
        assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.body);
        assert_eq!(res.header("content-type"), Some("application/problem+json"));
        assert_eq!(res.body["type"], "https://trellis.dev/problems/timeout");
        // Statements stop a moment before the deadline and say so; requests still
        // waiting for a turn are cut off at the deadline itself.
        if res.body["title"] == "Took too long" {
            stopped += 1;
        }
    }
    assert!(stopped > 0, "no statement was stopped by the store");
    if let Some(tx) = lock {
        tx.rollback().await.expect("unlock");
    }
    // The pool is free again: ordinary requests answer.
    for _ in 0..3 {
        let res = client.get(&format!("/api/notes/{note}")).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        let res = client.get("/api/members?count=true").await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        assert_eq!(res.body["total"], json!(1));
    }
    store.close().await;
}

both!(
    q_matches_only_readable_fields,
    q_ranks_by_readable_fields,
    q_syntax_is_never_a_server_error,
    filter_over_budget_is_refused,
    ordinary_relation_filters_run,
    slow_statements_stop_at_the_deadline,
);

/// The prices docs/querying.md gives as examples, on the root project.
#[test]
fn the_documented_prices_hold() {
    use trellis::engine::cond::{cost, parse};
    let loaded = spec::load(&repo_root());
    let engine = Engine::build(&loaded).expect("engine");
    let price = |plural: &str, text: &str| {
        let e = engine.entity_by_plural(plural).expect("entity");
        cost::cost(&engine, e, &parse(text).expect("parses"))
    };
    assert_eq!(price("projects", "status = open and budget > 10"), 2);
    assert_eq!(price("projects", "client.name ~ 'acme'"), 8);
    assert_eq!(price("projects", "applications.applicant.name ~ 'x'"), 32);
    assert_eq!(price("projects", "skills has 'x'"), 4);
    assert_eq!(
        price("projects", "not (title ~ 'a' or client.name = 'b')"),
        3
    );
    let many: Vec<String> = (0..64)
        .map(|n| format!("projects.summary ~ 'w{n}'"))
        .collect();
    assert_eq!(price("organizations", &many.join(" or ")), 1024);
    let e = engine.entity_by_plural("organizations").expect("entity");
    let over = cost::within_budget(&engine, e, &parse(&many.join(" or ")).expect("parses"))
        .expect_err("over the budget");
    assert_eq!(over.cost, 1024);
    assert!(
        over.message.contains("`projects.summary` alone costs 16"),
        "{}",
        over.message
    );
}
