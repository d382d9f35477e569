//! Workflows end to end on the root project (the talent marketplace): the protected
//! state field, guards, permissions, the compare-and-set under concurrency, history,
//! "what may I fire", batch transitions and the change log.

mod common;

use axum::http::StatusCode;
use common::{Db, TestApp, TestAppRouter};
use serde_json::{Value, json};

/// An organization with one client member, a contractor, and a project of theirs.
struct Market {
    app: TestApp,
    org: String,
    ann: TestAppRouter,
    ann_id: String,
    dev: TestAppRouter,
    dev_id: String,
    other_client: TestAppRouter,
}

async fn market(db: Db) -> Market {
    let app = TestApp::root(db).await;
    let ann_id = app
        .seed(
            "users",
            json!({ "email": "ann@acme.example", "display_name": "Ann", "role": "client" }),
        )
        .await;
    let dev_id = app
        .seed(
            "users",
            json!({ "email": "dev@example.com", "display_name": "Dev" }),
        )
        .await;
    let bob_id = app
        .seed(
            "users",
            json!({ "email": "bob@globex.example", "display_name": "Bob", "role": "client" }),
        )
        .await;
    let org = app
        .seed(
            "organizations",
            json!({ "name": "Acme", "slug": "acme", "members": [ann_id] }),
        )
        .await;
    app.seed(
        "organizations",
        json!({ "name": "Globex", "slug": "globex", "members": [bob_id] }),
    )
    .await;
    let ann = app.as_user(&app.token(&ann_id, &["client"]));
    let dev = app.as_user(&app.token(&dev_id, &["contractor"]));
    let other_client = app.as_user(&app.token(&bob_id, &["client"]));
    Market {
        app,
        org,
        ann,
        ann_id,
        dev,
        dev_id,
        other_client,
    }
}

fn transition<'a>(options: &'a Value, name: &str) -> Option<&'a Value> {
    options["transitions"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == name))
}

async fn project_lifecycle(db: Db) {
    let m = market(db).await;
    let rust = m.app.seed("skills", json!({ "name": "Rust" })).await;

    // The state field is set by the workflow and cannot be written.
    let res = m
        .ann
        .post(
            "/api/projects",
            json!({ "title": "Build API", "client": m.org, "status": "open" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    let why = res.error_for("/status");
    assert!(
        why.contains("kept by the workflow") && why.contains("/transitions/"),
        "{why}"
    );
    let id = m
        .ann
        .create("projects", json!({ "title": "Build API", "client": m.org }))
        .await;
    let path = format!("/api/projects/{id}");
    assert_eq!(m.ann.get(&path).await.body["status"], "draft");
    let res = m.ann.patch(&path, json!({ "status": "closed" }), &[]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.error_for("/status").contains("kept by the workflow"));

    // What may Ann fire now? Publishing needs a budget and a skill.
    let res = m.ann.get(&format!("{path}/transitions")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["state"], "draft");
    assert_eq!(res.body["state_label"], "Draft");
    let publish = transition(&res.body, "publish").expect("publish is listed");
    assert_eq!(publish["allowed"], false);
    assert_eq!(
        publish["reasons"],
        json!([
            "Set a budget before publishing",
            "Add at least one skill before publishing"
        ])
    );
    let close = transition(&res.body, "close").expect("close is listed");
    assert_eq!(close["allowed"], true);
    assert_eq!(close["input"]["required"], json!(["reason"]));
    assert!(
        transition(&res.body, "review").is_none(),
        "review does not leave draft"
    );

    // A failing guard answers 422 with every message; nothing changes.
    let res = m.ann.fire(&path, "publish", json!({})).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(
        res.body["type"],
        "https://trellis.dev/problems/guard-failed"
    );
    assert_eq!(res.body["reasons"].as_array().unwrap().len(), 2);
    let res = m.ann.patch(&path, json!({ "budget": "1500" }), &[]).await;
    assert_eq!(res.status, StatusCode::OK);
    let res = m.ann.fire(&path, "publish", Value::Null).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        res.body["reasons"],
        json!(["Add at least one skill before publishing"])
    );
    m.ann.patch(&path, json!({ "skills": [rust] }), &[]).await;

    // A stale If-Match is refused before anything else.
    let res = m
        .ann
        .call(
            axum::http::Method::POST,
            &format!("{path}/transitions/publish"),
            None,
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(res.status, StatusCode::PRECONDITION_FAILED, "{}", res.body);

    let res = m
        .ann
        .call(
            axum::http::Method::POST,
            &format!("{path}/transitions/publish"),
            None,
            &[("x-request-id", "req-publish-1")],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["status"], "open");
    assert!(
        res.body["published_at"].is_string(),
        "set: published_at: now"
    );
    assert_eq!(res.header("etag"), Some("\"4\""));
    assert_eq!(res.header("x-request-id"), Some("req-publish-1"));

    // Publishing again: the record is no longer in a state `publish` leaves from.
    let res = m.ann.fire(&path, "publish", json!({})).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    assert_eq!(res.body["state"], "open");
    assert_eq!(res.body["possible"], json!(["review", "close"]));

    // Contractors see the open project but may not move it.
    let res = m.dev.get(&format!("{path}/transitions")).await;
    assert_eq!(res.status, StatusCode::OK);
    let review = transition(&res.body, "review").unwrap();
    assert_eq!(review["allowed"], false);
    assert_eq!(
        review["reasons"],
        json!(["you may not `review` this project"])
    );
    let res = m.dev.fire(&path, "review", json!({})).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    // Anonymous callers may not read projects, so for them the record is not there.
    let res = m.app.anonymous().fire(&path, "review", json!({})).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    // Another organization's member sees the open project, and may not move it either.
    let res = m.other_client.fire(&path, "review", json!({})).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);

    // Unknown transitions and bad input.
    let res = m.ann.fire(&path, "reveiw", json!({})).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert!(
        res.body["detail"]
            .as_str()
            .unwrap()
            .contains("did you mean `review`?")
    );
    let res = m.ann.fire(&path, "close", json!({})).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(res.pointers(), ["/reason"]);
    let res = m
        .ann
        .fire(&path, "close", json!({ "reason": "ok", "extra": 1 }))
        .await;
    assert_eq!(res.pointers(), ["/extra", "/reason"], "{}", res.body);

    let res = m.ann.fire(&path, "review", json!({})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let res = m
        .ann
        .fire(&path, "close", json!({ "reason": "Hired someone" }))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["status"], "closed");
    assert_eq!(res.body["close_reason"], "Hired someone", "set from input");

    // A final state offers nothing.
    let res = m.ann.get(&format!("{path}/transitions")).await;
    assert_eq!(res.body["final"], true);
    assert_eq!(res.body["transitions"], json!([]));

    // The history, oldest first, with actor, input and request id.
    let res = m.ann.get(&format!("{path}/history")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let items = res.body["items"].as_array().unwrap();
    let steps: Vec<(&str, &str, &str)> = items
        .iter()
        .map(|i| {
            (
                i["transition"].as_str().unwrap(),
                i["from"].as_str().unwrap(),
                i["to"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("publish", "draft", "open"),
            ("review", "open", "in_review"),
            ("close", "in_review", "closed")
        ]
    );
    assert!(items.iter().all(|i| i["actor"] == m.ann_id.as_str()));
    assert_eq!(items[0]["request_id"], "req-publish-1");
    assert_eq!(items[2]["input"], json!({ "reason": "Hired someone" }));
    // Paging.
    let res = m.ann.get(&format!("{path}/history?limit=2")).await;
    assert_eq!(res.body["items"].as_array().unwrap().len(), 2);
    let next = res.body["next"].as_str().unwrap().to_string();
    let res = m
        .ann
        .get(&format!("{path}/history?limit=2&after={next}"))
        .await;
    assert_eq!(res.body["items"][0]["transition"], "close");
    assert_eq!(res.body["next"], Value::Null);
    assert_eq!(
        m.ann.get(&format!("{path}/history?limit=0")).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        m.ann.get(&format!("{path}/history?sort=x")).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(m.app.rows("_trellis_history").await, 3);

    // The history is under the entity's read policy: a draft of Acme's is invisible
    // to Globex's member, so are its transitions and its history.
    let draft = m
        .ann
        .create(
            "projects",
            json!({ "title": "Secret plan", "client": m.org }),
        )
        .await;
    for tail in ["history", "transitions"] {
        let res = m
            .other_client
            .get(&format!("/api/projects/{draft}/{tail}"))
            .await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{tail}: {}", res.body);
    }
    let res = m
        .other_client
        .fire(
            &format!("/api/projects/{draft}"),
            "close",
            json!({ "reason": "mine now" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    // Entities without a workflow have no such routes.
    let res = m.ann.get(&format!("/api/skills/{rust}/transitions")).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

async fn application_workflow(db: Db) {
    let m = market(db).await;
    let project = m
        .app
        .seed(
            "projects",
            json!({ "title": "Open work", "client": m.org, "status": "open", "budget": "900" }),
        )
        .await;
    let app_path = |id: &str| format!("/api/applications/{id}");
    // The contractor applies; the application starts submitted.
    let res = m
        .dev
        .post(
            "/api/applications",
            json!({ "project": project, "cover_letter": "Hi" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["status"], "submitted");
    let mine = res.id();
    let other_dev = m
        .app
        .seed(
            "users",
            json!({ "email": "eve@example.com", "display_name": "Eve" }),
        )
        .await;
    let theirs = m
        .app
        .seed(
            "applications",
            json!({ "project": project, "applicant": other_dev }),
        )
        .await;

    // Only the client organization's members shortlist, accept or reject.
    let res = m.dev.fire(&app_path(&mine), "shortlist", json!({})).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    let res = m
        .other_client
        .fire(&app_path(&mine), "shortlist", json!({}))
        .await;
    assert_eq!(
        res.status,
        StatusCode::NOT_FOUND,
        "not their project: invisible"
    );
    let res = m.ann.fire(&app_path(&mine), "shortlist", json!({})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["status"], "shortlisted");

    // Accepting needs the project in review: a `where` guard, checked by the database.
    let res = m.ann.get(&format!("{}/transitions", app_path(&mine))).await;
    let accept = transition(&res.body, "accept").unwrap();
    assert_eq!(accept["allowed"], false);
    assert_eq!(
        accept["reasons"],
        json!(["Applications are accepted only while their project is in review"])
    );
    let res = m.ann.fire(&app_path(&mine), "accept", json!({})).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);

    // Only the applicant withdraws: not the client, not an admin, not another contractor.
    let res = m.ann.fire(&app_path(&mine), "withdraw", json!({})).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    let res = m.app.fire(&app_path(&mine), "withdraw", json!({})).await;
    assert_eq!(
        res.status,
        StatusCode::FORBIDDEN,
        "admins do not withdraw: {}",
        res.body
    );
    let res = m.dev.fire(&app_path(&theirs), "withdraw", json!({})).await;
    assert_eq!(
        res.status,
        StatusCode::NOT_FOUND,
        "another's application is invisible"
    );
    let res = m.dev.get(&format!("{}/transitions", app_path(&mine))).await;
    assert_eq!(transition(&res.body, "withdraw").unwrap()["allowed"], true);
    assert_eq!(transition(&res.body, "accept").unwrap()["allowed"], false);

    // The project goes into review; now the client accepts one and rejects the other.
    let res = m
        .ann
        .fire(&format!("/api/projects/{project}"), "review", json!({}))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let res = m.ann.fire(&app_path(&mine), "accept", json!({})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["status"], "accepted");
    assert!(res.body["decided_at"].is_string());
    let res = m
        .ann
        .fire(
            &app_path(&theirs),
            "reject",
            json!({ "feedback": "Too late" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["feedback"], "Too late");

    // Accepted is final: withdrawing now is a conflict naming the state.
    let res = m.dev.fire(&app_path(&mine), "withdraw", json!({})).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    assert_eq!(res.body["state"], "accepted");
    assert_eq!(res.body["possible"], json!([]));

    // The contractor reads the history of their application.
    let res = m.dev.get(&format!("{}/history", app_path(&mine))).await;
    assert_eq!(res.status, StatusCode::OK);
    let names: Vec<&str> = res.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["transition"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["shortlist", "accept"]);
    assert_eq!(res.body["items"][1]["actor"], m.ann_id.as_str());
    let _ = &m.dev_id;
}

/// N callers fire the same transition at once: exactly one wins, the others get 409.
async fn concurrent_transitions_have_one_winner(db: Db) {
    let m = market(db).await;
    let project = m
        .app
        .seed(
            "projects",
            json!({ "title": "Race", "client": m.org, "status": "open", "budget": "10" }),
        )
        .await;
    const CALLERS: usize = 16;
    let path = format!("/api/projects/{project}/transitions/review");
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(CALLERS));
    let mut tasks = Vec::new();
    for _ in 0..CALLERS {
        let ann = m.ann.clone();
        let path = path.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            ann.post(&path, json!({})).await
        }));
    }
    let mut winners = 0;
    let mut conflicts = 0;
    for t in tasks {
        let res = t.await.unwrap();
        match res.status {
            StatusCode::OK => winners += 1,
            StatusCode::CONFLICT => conflicts += 1,
            other => panic!("unexpected {other}: {}", res.body),
        }
    }
    println!(
        "{db:?}: {CALLERS} concurrent callers of `review`: {winners} won, {conflicts} got 409"
    );
    assert_eq!((winners, conflicts), (1, CALLERS - 1));
    let rec = m.ann.get(&format!("/api/projects/{project}")).await;
    assert_eq!(rec.body["status"], "in_review");
    assert_eq!(rec.body["version"], 2, "one change");
    assert_eq!(m.app.rows("_trellis_history").await, 1);

    // Two different transitions racing from the same state: accept and reject.
    let dev_app = m
        .app
        .seed(
            "applications",
            json!({ "project": project, "applicant": m.dev_id }),
        )
        .await;
    let mut tasks = Vec::new();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(CALLERS));
    for i in 0..CALLERS {
        let ann = m.ann.clone();
        let name = if i % 2 == 0 { "accept" } else { "reject" };
        let path = format!("/api/applications/{dev_app}/transitions/{name}");
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            ann.post(&path, json!({})).await.status
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let won = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let lost = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    println!("{db:?}: {CALLERS} concurrent callers of accept/reject: {won} won, {lost} got 409");
    assert_eq!((won, lost), (1, CALLERS - 1), "{statuses:?}");
    assert_eq!(m.app.rows("_trellis_history").await, 2);
}

/// Transitions in a batch run in its transaction; the change log records them.
async fn batch_transitions_and_the_change_log(db: Db) {
    let m = market(db).await;
    let rust = m.app.seed("skills", json!({ "name": "Rust" })).await;
    let res = m
        .ann
        .post(
            "/api/batch",
            json!({ "operations": [
                { "op": "create", "entity": "project", "data": { "title": "Batch", "client": m.org, "budget": "100", "skills": [rust] } },
                { "op": "transition", "entity": "project", "id": "$0.id", "name": "publish" },
                { "op": "transition", "entity": "project", "id": "$0.id", "name": "review", "if_match": 2 }
            ] }),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["results"][1]["status"], "open");
    assert_eq!(res.body["results"][2]["status"], "in_review");
    let id = res.body["results"][0]["id"].as_str().unwrap().to_string();

    // A failing transition rolls back the whole batch, earlier operations included.
    let before = m.app.rows("project").await;
    let res = m
        .ann
        .post(
            "/api/batch",
            json!({ "operations": [
                { "op": "create", "entity": "project", "data": { "title": "No budget", "client": m.org } },
                { "op": "transition", "entity": "project", "id": "$0.id", "name": "publish" }
            ] }),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(res.body["operation"], 1);
    assert_eq!(m.app.rows("project").await, before);
    let res = m
        .ann
        .post(
            "/api/batch",
            json!({ "operations": [{ "op": "transition", "entity": "project", "id": id, "name": "publsh" }] }),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(
        res.body["detail"].as_str().unwrap().contains("publish"),
        "{}",
        res.body
    );
    assert_eq!(m.app.rows("_trellis_history").await, 2);

    // Each transition is one `transitioned` row in the change log, with the state before.
    let changes = m
        .app
        .store
        .changes_after(0, Some("project"), 100)
        .await
        .unwrap();
    let kinds: Vec<(&str, Option<String>)> = changes
        .iter()
        .filter(|c| c.entity == "project")
        .map(|c| (c.kind.as_str(), c.before_text("status")))
        .collect();
    assert_eq!(
        kinds,
        [
            ("created", None),
            ("transitioned", Some("draft".to_string())),
            ("transitioned", Some("open".to_string()))
        ]
    );
}

/// The helpdesk example's ticket workflow: customers open tickets and may reopen
/// their own solved ones; agents take, park, resume, solve and close them.
async fn helpdesk_ticket_lifecycle(db: Db) {
    let app = TestApp::for_dir(db, &common::repo_root().join("examples/helpdesk")).await;
    let al_id = app
        .seed(
            "agents",
            json!({ "display_name": "Al", "email": "al@help.example" }),
        )
        .await;
    let cy_id = app
        .seed(
            "customers",
            json!({ "name": "Cy", "email": "cy@example.com" }),
        )
        .await;
    let di_id = app
        .seed(
            "customers",
            json!({ "name": "Di", "email": "di@example.com" }),
        )
        .await;
    let al = app.as_user(&app.token(&al_id, &["agent"]));
    let cy = app.as_user(&app.token(&cy_id, &["customer"]));
    let di = app.as_user(&app.token(&di_id, &["customer"]));

    // The customer opens a ticket; it starts `new`, whatever the body says.
    let body = json!({ "subject": "Charged twice", "body": "Twice in March", "customer": cy_id });
    let res = cy
        .post("/api/tickets", json!({ "subject": "Charged twice", "body": "Twice", "customer": cy_id, "status": "solved" }))
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert!(res.error_for("/status").contains("kept by the workflow"));
    let id = cy.create("tickets", body).await;
    let path = format!("/api/tickets/{id}");
    let fire = |who: &TestAppRouter, name: &str, input: Value| {
        let who = who.clone();
        let url = format!("{path}/transitions/{name}");
        async move { who.post(&url, input).await }
    };
    let ticket = cy.get(&path).await;
    assert_eq!(ticket.body["status"], "new");
    assert_eq!(ticket.body["assignee"], Value::Null);

    // `open` assigns the caller, so an agent needs an agent record: without one the
    // reference is refused like in any write (not a server error), and nothing moves.
    let ghost_id = "0190a000-0000-7000-8000-000000000001";
    let ghost = app.as_user(&app.token(ghost_id, &["agent"]));
    let res = fire(&ghost, "open", json!({})).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(
        res.error_for("/assignee"),
        format!("there is no agent with id {ghost_id}")
    );
    assert_eq!(cy.get(&path).await.body["status"], "new");
    assert_eq!(
        al.get(&format!("{path}/history")).await.body["items"],
        json!([])
    );
    // The customer may not take their own ticket; the agent takes it and is assigned.
    let res = fire(&cy, "open", json!({})).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    let res = fire(&al, "open", json!({})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["status"], "open");
    assert_eq!(res.body["assignee"], al_id.as_str());
    // Once open, the customer no longer edits it.
    let res = cy
        .patch(&path, json!({ "subject": "Charged three times" }), &[])
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);

    // Waiting for the customer, and back; the customer cannot resume it.
    let res = fire(&al, "wait_for_customer", json!({})).await;
    assert_eq!(res.body["status"], "pending", "{}", res.body);
    let res = fire(&cy, "resume", json!({})).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    let res = fire(&al, "resume", json!({})).await;
    assert_eq!(res.body["status"], "open", "{}", res.body);

    // Solving needs a resolution, and an assignee.
    let res = fire(&al, "solve", json!({})).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(res.pointers(), ["/resolution"]);
    let res = al.patch(&path, json!({ "assignee": null }), &[]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let options = al.get(&format!("{path}/transitions")).await;
    let solve = transition(&options.body, "solve").expect("solve is listed");
    assert_eq!(solve["allowed"], false);
    assert_eq!(
        solve["reasons"],
        json!(["Assign the ticket to an agent before solving it"])
    );
    let res = fire(&al, "solve", json!({ "resolution": "Refunded" })).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(
        res.body["reasons"],
        json!(["Assign the ticket to an agent before solving it"])
    );
    al.patch(&path, json!({ "assignee": al_id }), &[]).await;
    let res = fire(
        &al,
        "solve",
        json!({ "resolution": "Refunded the second charge" }),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["status"], "solved");
    assert_eq!(res.body["resolution"], "Refunded the second charge");
    assert!(res.body["solved_at"].is_string(), "{}", res.body);
    // The resolution is the workflow's to write.
    let res = al
        .patch(&path, json!({ "resolution": "Something else" }), &[])
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(
        res.error_for("/resolution"),
        "`resolution` cannot be written"
    );

    // Another customer does not see it; its customer reopens it.
    let res = fire(&di, "reopen", json!({})).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.body);
    let options = cy.get(&format!("{path}/transitions")).await;
    assert_eq!(options.status, StatusCode::OK, "{}", options.body);
    let allowed: Vec<(&str, bool)> = options.body["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t["allowed"].as_bool().unwrap()))
        .collect();
    assert_eq!(allowed, [("reopen", true), ("close", false)]);
    let res = fire(&cy, "reopen", json!({})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["status"], "open");
    assert_eq!(res.body["solved_at"], Value::Null, "reopening clears it");
    assert_eq!(res.body["resolution"], "Refunded the second charge");

    // Solved again and closed by the agent: closed is final.
    fire(&al, "solve", json!({ "resolution": "Refunded, for real" })).await;
    let res = fire(&cy, "close", json!({})).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    let res = fire(&al, "close", json!({})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["status"], "closed");
    let res = fire(&cy, "reopen", json!({})).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    assert_eq!(res.body["possible"], json!([]));

    let history = al.get(&format!("{path}/history")).await;
    let moves: Vec<(&str, &str)> = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["transition"].as_str().unwrap(),
                h["actor"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            ("open", al_id.as_str()),
            ("wait_for_customer", al_id.as_str()),
            ("resume", al_id.as_str()),
            ("solve", al_id.as_str()),
            ("reopen", cy_id.as_str()),
            ("solve", al_id.as_str()),
            ("close", al_id.as_str()),
        ]
    );
}

/// `set:` values that break a unique or reference constraint are refused like the
/// same values in an update (409, 422), and the transition does not happen.
async fn set_values_that_break_constraints(db: Db) {
    let app = TestApp::with_files(
        db,
        &[
            ("models/member.yaml", "entity: member\nfields:\n  name: string\n"),
            (
                "models/badge.yaml",
                "entity: badge\nfields:\n  code: { type: string, unique: true }\n  holder: { type: ref, to: member }\n  status: { type: enum, values: [blank, issued] }\n",
            ),
            (
                "workflows/badge.yaml",
                "entity: badge\nfield: status\ninitial: blank\nstates:\n  blank: {}\n  issued: { final: true }\ntransitions:\n  issue:\n    from: blank\n    to: issued\n    input:\n      code: { type: string, required: true }\n      holder: { type: ref, to: member }\n    set: { code: input.code, holder: input.holder }\n",
            ),
        ],
    )
    .await;
    let ann = app.create("members", json!({ "name": "Ann" })).await;
    let first = app.create("badges", json!({})).await;
    let second = app.create("badges", json!({})).await;
    let issue = |id: &str| format!("/api/badges/{id}/transitions/issue");
    let res = app
        .post(&issue(&first), json!({ "code": "A-1", "holder": ann }))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);

    let res = app.post(&issue(&second), json!({ "code": "A-1" })).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    assert_eq!(res.body["type"], "https://trellis.dev/problems/unique");
    let missing = "0190a000-0000-7000-8000-000000000002";
    let res = app
        .post(&issue(&second), json!({ "code": "B-2", "holder": missing }))
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(
        res.error_for("/holder"),
        format!("there is no member with id {missing}")
    );
    let badge = app.get(&format!("/api/badges/{second}")).await;
    assert_eq!(badge.body["status"], "blank");
    assert_eq!(badge.body["code"], Value::Null);
    assert_eq!(app.rows("_trellis_history").await, 1);
}

both!(
    project_lifecycle,
    application_workflow,
    concurrent_transitions_have_one_winner,
    batch_transitions_and_the_change_log,
    helpdesk_ticket_lifecycle,
    set_values_that_break_constraints,
);

/// `trellis diagram`: every transition with who may fire it and its guards.
#[test]
fn diagrams_show_transitions_permissions_and_guards() {
    use trellis::engine::diagram::{Format, render};
    let loaded = trellis::spec::load(&common::repo_root());
    let engine = trellis::engine::Engine::build(&loaded).expect("engine");
    let wf = engine.workflow("application").expect("a workflow");
    let mermaid = render(&engine, wf, Format::Mermaid);
    assert!(mermaid.starts_with("stateDiagram-v2\n"), "{mermaid}");
    for line in [
        "    [*] --> submitted",
        "    state \"Shortlisted\" as shortlisted",
        "    shortlisted --> accepted: accept<br/>client where to_my_projects<br/>admin<br/>if project.status = in_review",
        "    submitted --> withdrawn: withdraw<br/>contractor where own<br/>admin<br/>not authenticated where not own",
        "    accepted --> [*]",
    ] {
        assert!(
            mermaid.lines().any(|l| l == line),
            "missing `{line}` in\n{mermaid}"
        );
    }
    let project = engine.workflow("project").expect("a workflow");
    let mermaid = render(&engine, project, Format::Mermaid);
    assert!(
        mermaid.contains(
            "<br/>if record.budget is not none and record.budget #gt; 0<br/>if skills is set"
        ),
        "`>` is escaped for Mermaid: {mermaid}"
    );
    let dot = render(&engine, project, Format::Dot);
    assert!(dot.starts_with("digraph project {"), "{dot}");
    assert!(
        dot.contains("closed [label=\"Closed\", peripheries=2];"),
        "{dot}"
    );
    assert!(dot.contains("draft -> open [label=\"publish\\nclient where mine\\nadmin\\nif record.budget is not none and record.budget > 0\\nif skills is set\"];"), "{dot}");
}
