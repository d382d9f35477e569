//! Blocks (`rel.( … )`: one related record satisfies the whole block) and
//! `record.<field>` (a field of the record a policy is about, from inside relation
//! steps): the SQL the store runs and the in-memory evaluator agree on varied data,
//! with missing values, on SQLite and PostgreSQL; and where they are refused.

mod common;

use std::collections::BTreeSet;

use axum::http::StatusCode;
use common::{Db, TestApp};
use serde_json::{Map, Value, json};
use trellis::engine::access::{Action, Decision, Principal};
use trellis::engine::cond::eval::eval;

both!(
    blocks_and_record_fields_agree_with_the_evaluator,
    where_they_may_be_used
);

/// One role per condition, each allowed to list the tasks where its condition holds.
const CONDITIONS: [&str; 8] = [
    // The owner has an accepted assignment on the task (the same assignment).
    "assignments.(accepted and person = record.owner)",
    // Uncorrelated, for contrast: some assignment is accepted, some is the owner's.
    "assignments.accepted and assignments.person = record.owner",
    "group.members has record.reviewer",
    "not assignments.(person = record.reviewer)",
    "assignments.(accepted and person = user.id) or owner = record.reviewer",
    "assignments.(person in [record.owner, record.reviewer])",
    // Two levels: a group member, who is the reviewer, has an accepted assignment.
    "group.members.(assignments.(accepted and task = record.id) and id = record.reviewer)",
    "group.(members has record.owner and not members has record.reviewer)",
];

fn files() -> Vec<(String, String)> {
    let mut policy = String::from("entity: task\nrules:\n");
    for (i, c) in CONDITIONS.iter().enumerate() {
        policy.push_str(&format!(
            "  - roles: [r{i}]\n    allow: [list]\n    where: \"{c}\"\n"
        ));
    }
    policy.push_str("  - roles: [admin]\n    allow: [\"*\"]\n");
    vec![
        (
            "trellis.yaml".into(),
            "auth:\n  jwt: { algorithm: HS256, secret_env: S }\n".into(),
        ),
        (
            "models/person.yaml".into(),
            "entity: person\nfields:\n  name: string\n  assignments: { type: inverse, of: assignment, via: person }\n".into(),
        ),
        (
            "models/group.yaml".into(),
            "entity: group\nfields:\n  name: string\n  members: { type: many, of: person }\n".into(),
        ),
        (
            "models/task.yaml".into(),
            "entity: task\nfields:\n  title: string\n  group: { type: ref, to: group }\n  owner: { type: ref, to: person }\n  reviewer: { type: ref, to: person }\n  assignments: { type: inverse, of: assignment, via: task }\n".into(),
        ),
        (
            "models/assignment.yaml".into(),
            "entity: assignment\nfields:\n  task: { type: ref, to: task, required: true }\n  person: { type: ref, to: person }\n  accepted: boolean\n".into(),
        ),
        ("policies/task.yaml".into(), policy),
        (
            "policies/person.yaml".into(),
            "entity: person\nrules:\n  - roles: [admin]\n    allow: [\"*\"]\n".into(),
        ),
        (
            "policies/group.yaml".into(),
            "entity: group\nrules:\n  - roles: [admin]\n    allow: [\"*\"]\n".into(),
        ),
        (
            "policies/assignment.yaml".into(),
            "entity: assignment\nrules:\n  - roles: [admin]\n    allow: [\"*\"]\n".into(),
        ),
    ]
}

use common::Stored as Data;

async fn app_with_files(db: Db) -> TestApp {
    let files = files();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    TestApp::with_files(db, &refs).await
}

async fn blocks_and_record_fields_agree_with_the_evaluator(db: Db) {
    let app = app_with_files(db).await;
    // A small deterministic mix: 4 people, 2 groups, 24 tasks with owners and
    // reviewers (sometimes missing), and assignments accepted or not (or unknown).
    let mut people = Vec::new();
    for n in ["ann", "bob", "cy", "di"] {
        people.push(app.create("persons", json!({ "name": n })).await);
    }
    let groups = [
        app.create(
            "groups",
            json!({ "name": "g1", "members": [people[0], people[1]] }),
        )
        .await,
        app.create("groups", json!({ "name": "g2", "members": [people[2]] }))
            .await,
    ];
    let mut seed: u64 = 7;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let pick = |i: u64| -> Value {
        if i as usize >= people.len() {
            Value::Null
        } else {
            json!(people[i as usize])
        }
    };
    for t in 0..24 {
        let task = app
            .create(
                "tasks",
                json!({ "title": format!("t{t}"), "group": if t % 5 == 4 { Value::Null } else { json!(groups[t % 2]) },
                        "owner": pick(next(5)), "reviewer": pick(next(5)) }),
            )
            .await;
        for _ in 0..next(4) {
            let accepted = match next(3) {
                0 => json!(true),
                1 => json!(false),
                _ => Value::Null,
            };
            app.create(
                "assignments",
                json!({ "task": task, "person": pick(next(5)), "accepted": accepted }),
            )
            .await;
        }
    }

    let engine = app.state.engine.load_full();
    let data: Data = app.everything().await;
    let tasks = &data.records["task"];
    let mut nonempty = 0;
    for (i, text) in CONDITIONS.iter().enumerate() {
        for me in &people {
            let role = format!("r{i}");
            let who = Principal::user(me, &[role.as_str()], Map::new());
            let Decision::Allow(cond) = engine.access.decide("task", &Action::List, &who) else {
                panic!("{text}: no list rule");
            };
            let ctx = who.ctx();
            let expected: BTreeSet<String> = tasks
                .iter()
                .filter(|(_, r)| eval(&cond, r, &data, &ctx) == Some(true))
                .map(|(id, _)| id.clone())
                .collect();
            let res = app
                .as_user(&app.token(me, &[role.as_str()]))
                .get("/api/tasks?limit=200")
                .await;
            assert_eq!(res.status, StatusCode::OK, "{text}: {}", res.body);
            let got: BTreeSet<String> = res.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(got, expected, "{text} as {me}");
            if !got.is_empty() && got.len() < tasks.len() {
                nonempty += 1;
            }
        }
    }
    // The data makes every condition choose (neither nothing nor everything) often.
    assert!(nonempty >= 20, "{nonempty}");
    // A block is not the same as its parts: the correlated and the uncorrelated
    // condition differ on this data.
    let as_role = |i: usize| Principal::user(&people[0], &[&format!("r{i}")], Map::new());
    let Decision::Allow(block) = engine.access.decide("task", &Action::List, &as_role(0)) else {
        panic!()
    };
    let Decision::Allow(parts) = engine.access.decide("task", &Action::List, &as_role(1)) else {
        panic!()
    };
    let ctx = as_role(0).ctx();
    assert!(
        tasks
            .values()
            .any(|r| eval(&block, r, &data, &ctx) != eval(&parts, r, &data, &ctx)),
        "the data should tell a block from its parts"
    );
}

async fn where_they_may_be_used(db: Db) {
    let app = app_with_files(db).await;
    // Blocks are part of the language: filters may use them.
    let res = app
        .get("/api/tasks?filter=assignments.(accepted%20and%20person%20is%20set)")
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    // `record.<field>` is for policies: in a filter it is a 400 that says so.
    let res = app
        .get("/api/tasks?filter=assignments.(person%20=%20record.owner)")
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert!(
        res.body["detail"]
            .as_str()
            .unwrap()
            .contains("`record.owner` is not available here"),
        "{}",
        res.body
    );
    // The same after `has`: the answer names what is wrong, not a hint to write it.
    for (filter, message) in [
        (
            "assignments%20has%20record.id",
            "`record.id` is not available here",
        ),
        (
            "assignments%20has%20user.id",
            "`user.id` is not available here",
        ),
    ] {
        let res = app.get(&format!("/api/tasks?filter={filter}")).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
        assert!(
            res.body["detail"].as_str().unwrap().contains(message),
            "{filter}: {}",
            res.body
        );
    }
    // In a policy: only identities, only known fields, blocks only after relations.
    for (condition, message, column) in [
        // Columns point into the quoted condition (it starts at column 13).
        (
            "owner = record.title",
            "`record.title` is a string field",
            21,
        ),
        ("owner = record.ownr", "task has no field `ownr`", 21),
        (
            "title.(x = 1)",
            "`title` is a string field, not a relation",
            13,
        ),
        (
            "assignments.(task = record.title)",
            "`record.title` is a string",
            33,
        ),
        // Hops in blocks count towards the limit of 4 (here: 5).
        (
            "assignments.(task.assignments.(person.assignments.task.title = 'x'))",
            "goes through more than 4 relations (with the blocks around it)",
            44,
        ),
    ] {
        let mut files = files();
        files.retain(|(name, _)| name != "policies/task.yaml");
        let policy = format!(
            "entity: task\nrules:\n  - roles: [member]\n    allow: [list]\n    where: \"{condition}\"\n"
        );
        files.push(("policies/task.yaml".into(), policy));
        let dir = common::project(
            &files
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect::<Vec<_>>(),
        );
        let loaded = trellis::spec::load(dir.path());
        assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
        let Err(trellis::engine::Error::Diagnostics(d)) = trellis::engine::Engine::build(&loaded)
        else {
            panic!("{condition}: expected a diagnostic");
        };
        let d = d
            .iter()
            .find(|d| d.code == "invalid-condition")
            .unwrap_or_else(|| panic!("{condition}: {d:#?}"));
        assert!(d.message.contains(message), "{condition}: {d}");
        assert_eq!(
            (d.file.as_str(), d.line, d.column),
            ("policies/task.yaml", 5, column),
            "{condition}: {d}"
        );
    }
}
