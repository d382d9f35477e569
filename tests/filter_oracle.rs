//! The attacks on caller-written filters from issue #15, scripted against the root
//! project on both databases: a signed-up contractor learns nothing through relation
//! steps about rows they may not read, and filters through rows they may read still
//! work.

mod common;

use axum::http::StatusCode;
use common::{Db, TestApp, TestAppRouter};
use serde_json::{Value, json};

async fn account(app: &TestApp, email: &str) -> (String, String) {
    let id = app.signup(email).await;
    (id.clone(), app.token(&id, &["contractor"]))
}

/// The ids a list answers for `filter` (and its total, which must agree).
async fn ids(client: &TestAppRouter, plural: &str, filter: &str) -> Vec<String> {
    let q = serde_urlencoded::to_string([("filter", filter)]).unwrap();
    let res = client
        .get(&format!("/api/{plural}?{q}&count=true&limit=200"))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{filter}: {}", res.body);
    let items: Vec<String> = res.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(res.body["total"], json!(items.len()), "{filter}");
    items
}

struct World {
    app: TestApp,
    dev: String,
    dev_client: TestAppRouter,
    rival: String,
    acme: String,
    globex: String,
    open_project: String,
}

const SECRET: &str = "Initech merger plan";

async fn world(db: Db) -> World {
    let app = TestApp::root(db).await;
    let (dev, dev_tok) = account(&app, "dev@example.com").await;
    let (rival, _) = account(&app, "rival@example.com").await;
    let acme = app
        .create("organizations", json!({ "name": "Acme", "slug": "acme" }))
        .await;
    let globex = app
        .create(
            "organizations",
            json!({ "name": "Globex", "slug": "globex" }),
        )
        .await;
    // Acme's only project is a draft that contractors may not see.
    app.seed(
        "projects",
        json!({ "title": "Secret plan", "summary": SECRET, "client": acme, "status": "draft" }),
    )
    .await;
    let open_project = app
        .seed(
            "projects",
            json!({ "title": "Open call", "summary": "A rival to Initech", "client": globex, "status": "open" }),
        )
        .await;
    // Each contractor applies to the open project; only their own is theirs to see.
    app.create(
        "applications",
        json!({ "project": open_project, "applicant": dev, "proposed_rate": "100.00" }),
    )
    .await;
    app.create(
        "applications",
        json!({ "project": open_project, "applicant": rival, "proposed_rate": "150.00" }),
    )
    .await;
    let dev_client = app.as_user(&dev_tok);
    World {
        app,
        dev,
        dev_client,
        rival,
        acme,
        globex,
        open_project,
    }
}

async fn hidden_rows_are_no_oracle(db: Db) {
    let w = world(db).await;
    let dev = &w.dev_client;
    // Through a draft project: nothing, exactly as for a word it does not hold.
    assert_eq!(
        ids(dev, "organizations", "projects.summary ~ 'Initech'").await,
        vec![w.globex.clone()],
        "only the published project's organization matches"
    );
    for nothing in [
        "projects.summary ~ 'merger'",
        "projects.summary ~ 'mergex'",
        "projects.status = draft",
    ] {
        assert!(
            ids(dev, "organizations", nothing).await.is_empty(),
            "{nothing}"
        );
    }
    // The admin does find Acme that way: the data is there.
    assert_eq!(
        ids(&w.app, "organizations", "projects.summary ~ 'merger'").await,
        vec![w.acme.clone()]
    );
    // Another contractor's application is not an oracle on its rate …
    for nothing in [
        "applications.proposed_rate > 140",
        "applications.(proposed_rate > 140)",
    ] {
        assert!(ids(dev, "users", nothing).await.is_empty(), "{nothing}");
    }
    let q = format!("applications.(applicant = '{}')", w.rival);
    assert!(ids(dev, "projects", &q).await.is_empty());
    // … while one's own is there to filter by.
    assert_eq!(
        ids(dev, "users", "applications.proposed_rate > 90").await,
        vec![w.dev.clone()]
    );
    // Nor on what someone else applied to.
    let q = format!("applications.applicant = '{}'", w.rival);
    assert!(ids(dev, "projects", &q).await.is_empty());
    let q = format!("applications has '{}'", w.rival);
    assert!(ids(dev, "users", &q).await.is_empty());
    let q = format!("applications.applicant = '{}'", w.dev);
    assert_eq!(ids(dev, "projects", &q).await, vec![w.open_project.clone()]);
    // The same filters through the aggregate route.
    let res = dev
        .get("/api/projects/aggregate?count=true&filter=applications.proposed_rate%20%3E%20140")
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["groups"], json!([{ "count": 0 }]), "{}", res.body);
}

/// A binary search with `>=` over the summaries of draft projects, through the
/// organizations `client` may list: the first `n` characters it recovers, and the
/// answer of every probe.
async fn binary_search(client: &TestAppRouter, n: usize) -> (String, Vec<Value>) {
    let alphabet: Vec<char> = (' '..='~').collect();
    let mut prefix = String::new();
    let mut answers = Vec::new();
    for _ in 0..n {
        // The largest character c such that some summary is >= prefix + c.
        let (mut lo, mut hi) = (0usize, alphabet.len() - 1);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            let probe = format!("{prefix}{}", alphabet[mid]).replace('\'', "\\'");
            let filter = format!("projects.summary >= '{probe}' and projects.status = draft");
            let found = ids(client, "organizations", &filter).await;
            if found.is_empty() {
                hi = mid - 1;
            } else {
                lo = mid;
            }
            answers.push(json!(found));
        }
        prefix.push(alphabet[lo]);
    }
    (prefix, answers)
}

/// The extraction attack: a binary search with `>=` over the summary of a hidden
/// draft, as a contractor. Every probe answers the same, so it recovers nothing.
async fn extraction_by_binary_search_learns_nothing(db: Db) {
    let w = world(db).await;
    let (prefix, answers) = binary_search(&w.dev_client, 6).await;
    assert!(answers.len() >= 30, "{}", answers.len());
    assert!(
        answers.iter().all(|a| a == &json!([])),
        "some probe answered otherwise: {answers:?}"
    );
    assert_ne!(&prefix, &SECRET[..6]);
    assert_eq!(
        prefix, "      ",
        "the search learned only its own lower bound"
    );
    // The same search as the admin recovers the start of the summary: the attack is real.
    let (prefix, _) = binary_search(&w.app, 6).await;
    assert_eq!(prefix, &SECRET[..6]);
}

/// A unique constraint is checked by the database before the create rule: a client of
/// another organization, whose create would be refused anyway, must not learn from a
/// 409 that a hidden draft of Acme has the title it tried.
async fn a_duplicate_reveals_no_hidden_record(db: Db) {
    let w = world(db).await;
    let app = &w.app;
    let (bob, _) = account(app, "bob@example.com").await;
    let (ann, _) = account(app, "ann@example.com").await;
    app.patch(
        &format!("/api/organizations/{}", w.globex),
        json!({ "members": [bob] }),
        &[],
    )
    .await;
    app.patch(
        &format!("/api/organizations/{}", w.acme),
        json!({ "members": [ann] }),
        &[],
    )
    .await;
    let bob = app.as_user(&app.token(&bob, &["client"]));
    let ann = app.as_user(&app.token(&ann, &["client"]));
    let before = app.rows("project").await;
    // "Secret plan" is Acme's hidden draft; the other title exists nowhere.
    let mut answers = Vec::new();
    for title in ["Secret plan", "Nothing like it"] {
        let body = json!({ "title": title, "client": w.acme });
        let res = bob.post("/api/projects", body.clone()).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{title}: {}", res.body);
        answers.push(without_request_id(res.body));
        let res = bob
            .post(
                "/api/batch",
                json!({ "operations": [{ "op": "create", "entity": "project", "data": body }] }),
            )
            .await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{title}: {}", res.body);
        answers.push(without_request_id(res.body));
    }
    assert_eq!(answers[0], answers[2], "the same answer, duplicate or not");
    assert_eq!(answers[1], answers[3]);
    assert_eq!(app.rows("project").await, before);
    // A duplicate the caller may read is still named: Acme's member sees the draft.
    let res = ann
        .post(
            "/api/projects",
            json!({ "title": "Secret plan", "client": w.acme }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    // So is one of a published project (another client reads it).
    let res = bob
        .post(
            "/api/projects",
            json!({ "title": "Open call", "client": w.globex }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    assert_eq!(app.rows("project").await, before);
}

/// A problem body without its `request_id`, which differs for every request.
fn without_request_id(mut body: serde_json::Value) -> serde_json::Value {
    if let Some(obj) = body.as_object_mut() {
        obj.remove("request_id");
    }
    body
}

/// The same for a field of a record the caller reads, but whose field it sees only
/// on its own records: a duplicate of its value must not be a way to read it.
async fn a_duplicate_reveals_no_hidden_field(db: Db) {
    let app = TestApp::with_files(
        db,
        &[
            (
                "trellis.yaml",
                "auth:\n  jwt: { algorithm: HS256, secret_env: S }\n",
            ),
            (
                "models/badge.yaml",
                "entity: badge\nfields:\n  name: { type: string, required: true }\n  code: { type: string, unique: true }\n  owner: string\n",
            ),
            (
                "policies/badge.yaml",
                "entity: badge\nrules:\n  - roles: [clerk]\n    allow: [list, read]\n  - roles: [clerk]\n    allow: [create]\n    where: owner = user.id\n  - roles: [admin]\n    allow: [\"*\"]\nfields:\n  code: { read: { where: owner = user.id } }\n",
            ),
        ],
    )
    .await;
    app.create(
        "badges",
        json!({ "name": "Vault", "code": "4711", "owner": "x" }),
    )
    .await;
    let clerk = app.as_user(&app.token("c1", &["clerk"]));
    let mut answers = Vec::new();
    for code in ["4711", "0000"] {
        let res = clerk
            .post(
                "/api/badges",
                json!({ "name": "Probe", "code": code, "owner": "someone else" }),
            )
            .await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{code}: {}", res.body);
        answers.push(without_request_id(res.body));
    }
    assert_eq!(answers[0], answers[1], "the same answer, duplicate or not");
    assert_eq!(app.rows("badge").await, 1);
}

both!(
    hidden_rows_are_no_oracle,
    extraction_by_binary_search_learns_nothing,
    a_duplicate_reveals_no_hidden_record,
    a_duplicate_reveals_no_hidden_field
);
