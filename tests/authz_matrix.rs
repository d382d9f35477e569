//! The authorization matrix of the root project: for every entity, every record and
//! every kind of caller (admin, an owner, another user of the same role, another
//! role, anonymous), list, read and update answer exactly what the policies say —
//! computed independently by the in-memory evaluator over the same data — and no
//! answer carries a record or a field the caller may not see.

mod common;

use std::collections::BTreeSet;

use axum::http::StatusCode;
use common::{Db, TestApp, TestAppRouter};
use serde_json::{Map, Value, json};
use trellis::engine::access::{Action, Decision, Principal, WriteRule};
use trellis::engine::cond::eval::eval;
use trellis::engine::files::FileMeta;
use trellis::engine::input::Input;

struct Caller {
    name: &'static str,
    client: TestAppRouter,
    principal: Principal,
}

async fn account(app: &TestApp, email: &str, role: &str) -> (String, String) {
    let id = app.signup(email).await;
    if role != "contractor" {
        app.patch(&format!("/api/users/{id}"), json!({ "role": role }), &[])
            .await;
    }
    (id.clone(), app.token(&id, &[role]))
}

async fn matrix(db: Db) {
    let app = TestApp::root(db).await;
    let (client_id, client_tok) = account(&app, "client@acme.example", "client").await;
    let (other_client_id, other_client_tok) =
        account(&app, "client@globex.example", "client").await;
    let (dev_id, dev_tok) = account(&app, "dev@example.com", "contractor").await;
    let (other_dev_id, other_dev_tok) = account(&app, "dev2@example.com", "contractor").await;
    let (admin_id, admin_tok) = account(&app, "root@example.com", "admin").await;

    // Data, made by the admin: two organizations, projects in every state, links.
    let acme = app
        .create(
            "organizations",
            json!({ "name": "Acme", "slug": "acme", "members": [client_id] }),
        )
        .await;
    let globex = app
        .create(
            "organizations",
            json!({ "name": "Globex", "slug": "globex" }),
        )
        .await;
    let rust = app.create("skills", json!({ "name": "Rust" })).await;
    let mut projects = Vec::new();
    for (i, status) in ["draft", "open", "in_review", "closed"].iter().enumerate() {
        for org in [&acme, &globex] {
            // A project in a given state is a fixture: seeded, as only transitions
            // move the state through the API.
            projects.push(
                app.seed(
                    "projects",
                    json!({ "title": format!("{status} {i} {org}"), "client": org, "status": status, "internal_notes": "n", "skills": [rust] }),
                )
                .await,
            );
        }
    }
    for (i, p) in projects.iter().enumerate() {
        let applicant = if i % 2 == 0 { &dev_id } else { &other_dev_id };
        app.create(
            "applications",
            json!({ "project": p, "applicant": applicant }),
        )
        .await;
    }
    // Applications past `submitted` (seeded: only transitions move them), whose
    // proposal the applicant may no longer change.
    app.seed(
        "applications",
        json!({ "project": projects[3], "applicant": dev_id, "status": "shortlisted", "proposed_rate": "90" }),
    )
    .await;
    app.seed(
        "applications",
        json!({ "project": projects[4], "applicant": other_dev_id, "status": "accepted", "cover_letter": "Hi" }),
    )
    .await;
    app.seed(
        "applications",
        json!({ "project": projects[5], "applicant": dev_id, "status": "accepted" }),
    )
    .await;
    app.create("reviews", json!({ "project": projects[0], "author": dev_id, "subject": client_id, "rating": 4, "public": false })).await;
    app.create("reviews", json!({ "project": projects[1], "author": other_dev_id, "subject": client_id, "rating": 5 })).await;

    // Files (issue 20): the contractors' avatars and CVs (the CV readable by the
    // contractor, admins and the organizations they applied to), a logo, attachments.
    for dev in [&dev_id, &other_dev_id] {
        attach(
            &app,
            "user",
            dev,
            "avatar",
            vec![file("me.png", "image/png", &["100x100", "640x0"])],
        )
        .await;
        attach(
            &app,
            "user",
            dev,
            "cv",
            vec![file("cv.pdf", "application/pdf", &[])],
        )
        .await;
    }
    attach(
        &app,
        "organization",
        &acme,
        "logo",
        vec![file("logo.png", "image/png", &["200x200"])],
    )
    .await;
    attach(
        &app,
        "project",
        &projects[1],
        "attachments",
        vec![
            file("brief.pdf", "application/pdf", &[]),
            file("mockup.png", "image/png", &[]),
        ],
    )
    .await;

    let principal = |id: &str, role: &str| Principal::user(id, &[role], Map::new());
    let callers = vec![
        Caller {
            name: "admin",
            client: app.as_user(&admin_tok),
            principal: principal(&admin_id, "admin"),
        },
        Caller {
            name: "client member",
            client: app.as_user(&client_tok),
            principal: principal(&client_id, "client"),
        },
        Caller {
            name: "other client",
            client: app.as_user(&other_client_tok),
            principal: principal(&other_client_id, "client"),
        },
        Caller {
            name: "contractor",
            client: app.as_user(&dev_tok),
            principal: principal(&dev_id, "contractor"),
        },
        Caller {
            name: "other contractor",
            client: app.as_user(&other_dev_tok),
            principal: principal(&other_dev_id, "contractor"),
        },
        Caller {
            name: "anonymous",
            client: app.anonymous(),
            principal: Principal::anonymous(),
        },
    ];

    let mut cases = check_matrix(&app, &callers).await;
    cases += file_visibility(&callers, &dev_id).await;
    let users = [
        &client_id,
        &other_client_id,
        &dev_id,
        &other_dev_id,
        &admin_id,
    ];
    cases += review_creates(&app, &callers, &projects, &users).await;
    println!("authorization matrix (root project): {cases} cases passed");
    assert!(cases >= 300, "{cases}");
    let (oracles, hidden) = check_oracles(&app, &callers).await;
    println!(
        "oracle section (root project): {oracles} filters compared, {hidden} of them through hidden rows"
    );
    assert!(hidden >= 100, "{hidden} of {oracles}");
}

fn file(name: &str, mime: &str, thumbs: &[&str]) -> FileMeta {
    FileMeta {
        id: uuid::Uuid::now_v7(),
        name: name.into(),
        size: 1234,
        mime: mime.into(),
        sha256: "cd".repeat(32),
        thumbs: thumbs.iter().map(|t| t.to_string()).collect(),
    }
}

/// Adds uploaded files to a record as the multipart path does (pending rows, then
/// the trusted channel of the write).
async fn attach(app: &TestApp, entity: &str, id: &str, field: &str, files: Vec<FileMeta>) {
    let engine = app.state.engine.load_full();
    let e = engine.entity(entity).expect("entity").clone();
    let keys: Vec<String> = files.iter().map(|m| m.key(entity, field)).collect();
    app.store.record_pending(&keys).await.expect("pending");
    let mut input = Input::default();
    input
        .add_uploads(&e, [(field.to_string(), files)].into())
        .expect("fits");
    let id = uuid::Uuid::parse_str(id).expect("uuid");
    app.store
        .update(&engine, &e, id, &input, None, &Principal::system())
        .await
        .expect("attach");
}

/// The contractor's CV by caller, explicitly (the matrix checks it generically):
/// the contractor, admins and the client who received an application see it; the
/// other client and the other contractor see the avatar but not the CV, and cannot
/// test it in a filter; anonymous callers see nothing.
async fn file_visibility(callers: &[Caller], dev_id: &str) -> usize {
    let mut cases = 0;
    for caller in callers {
        cases += 1;
        let res = caller.client.get(&format!("/api/users/{dev_id}")).await;
        let sees_cv = matches!(caller.name, "admin" | "client member" | "contractor");
        if caller.name == "anonymous" {
            assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.body);
            continue;
        }
        assert_eq!(res.status, StatusCode::OK, "{}: {}", caller.name, res.body);
        assert_eq!(
            res.body["avatar"]["name"],
            json!("me.png"),
            "{}",
            caller.name
        );
        let avatar_id = res.body["avatar"]["id"].as_str().unwrap_or_default();
        assert_eq!(
            res.body["avatar"]["thumbs"]["100x100"],
            json!(format!(
                "/api/users/{dev_id}/files/avatar/{avatar_id}?thumb=100x100"
            ))
        );
        let text = String::from_utf8_lossy(&res.raw);
        assert!(!text.contains("sha256"), "{text}");
        // Expanded users (built by the database elsewhere) fall back to records too.
        let exp = caller
            .client
            .get("/api/applications?expand=applicant&limit=200")
            .await;
        let exp_text = String::from_utf8_lossy(&exp.raw);
        assert!(!exp_text.contains("sha256"), "{}: {exp_text}", caller.name);
        if caller.name == "other contractor" || caller.name == "other client" {
            assert!(
                !exp_text.contains("cv.pdf") || caller.name == "other contractor",
                "{exp_text}"
            );
        }
        if sees_cv {
            assert_eq!(
                res.body["cv"]["type"],
                json!("application/pdf"),
                "{}",
                caller.name
            );
        } else {
            assert!(
                res.body.get("cv").is_none(),
                "{}: {}",
                caller.name,
                res.body
            );
            assert!(!text.contains("cv.pdf"), "{}: {text}", caller.name);
            let probe = caller.client.get("/api/users?filter=cv%20is%20set").await;
            assert_eq!(
                probe.status,
                StatusCode::BAD_REQUEST,
                "{}: {}",
                caller.name,
                probe.body
            );
        }
    }
    cases
}

/// Reviews: every caller reviews every user about every project. Allowed exactly
/// when the `create` condition (blocks and `record.<field>` included) holds for the
/// new review according to the evaluator; every created review is removed again.
async fn review_creates(
    app: &TestApp,
    callers: &[Caller],
    projects: &[String],
    users: &[&String],
) -> usize {
    let engine = app.state.engine.load_full();
    let data = app.everything().await;
    let mut cases = 0;
    let mut allowed = 0;
    for caller in callers {
        let who = &caller.principal;
        let ctx = who.ctx();
        for project in projects {
            for subject in users {
                cases += 1;
                let res = caller
                    .client
                    .post(
                        "/api/reviews",
                        json!({ "project": project, "subject": subject, "rating": 3 }),
                    )
                    .await;
                let expected = match engine.access.decide("review", &Action::Create, who) {
                    Decision::Deny => false,
                    Decision::Allow(cond) => {
                        let mut new = Map::new();
                        new.insert("project".into(), json!(project));
                        new.insert("subject".into(), json!(subject));
                        new.insert("author".into(), json!(who.id));
                        new.insert("rating".into(), json!(3));
                        new.insert("public".into(), json!(true));
                        eval(&cond, &new, &data, &ctx) == Some(true)
                    }
                };
                if expected {
                    allowed += 1;
                    assert_eq!(
                        res.status,
                        StatusCode::CREATED,
                        "{} reviews {subject} about {project}: {}",
                        caller.name,
                        res.body
                    );
                    let gone = app.delete(&format!("/api/reviews/{}", res.id())).await;
                    assert_eq!(gone.status, StatusCode::NO_CONTENT);
                } else if who.is_anonymous() {
                    // Refused before the policy: an anonymous caller has no id to
                    // be the author (422 on `/author`).
                    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
                    assert_eq!(res.pointers(), ["/author"]);
                } else {
                    assert_eq!(
                        res.status,
                        StatusCode::FORBIDDEN,
                        "{} reviews {subject} about {project}: {}",
                        caller.name,
                        res.body
                    );
                }
            }
        }
    }
    // The data has both sides of an accepted application, and strangers.
    assert!(allowed >= 4 && allowed < cases / 4, "{allowed} of {cases}");
    cases
}

/// Compares every list, read and update answer of every caller with what the
/// policies allow according to the in-memory evaluator. Returns the number of cases.
async fn check_matrix(app: &TestApp, callers: &[Caller]) -> usize {
    let engine = app.state.engine.load_full();
    let data = app.everything().await;
    let mut cases = 0;
    for caller in callers {
        let who = &caller.principal;
        let ctx = who.ctx();
        for e in engine.entities() {
            let hidden: BTreeSet<String> = engine.access.hidden(&e.name, who).into_iter().collect();
            let all = &data.records[&e.name];
            let visible = |action: &Action| -> Option<BTreeSet<String>> {
                match engine.access.decide(&e.name, action, who) {
                    Decision::Deny => None,
                    Decision::Allow(cond) => Some(
                        all.iter()
                            .filter(|(_, r)| eval(&cond, r, &data, &ctx) == Some(true))
                            .map(|(id, _)| id.clone())
                            .collect(),
                    ),
                }
            };
            let conditional = engine.access.conditional(&e.name, who);
            let no_hidden = |body: &Value, what: &str| {
                for f in &hidden {
                    assert!(
                        body.get(f).is_none(),
                        "{}: {what} shows hidden `{f}`",
                        caller.name
                    );
                }
                // Fields visible only where a condition holds, record by record.
                let id = body["id"].as_str().unwrap_or_default();
                if let Some(stored) = all.get(id) {
                    for (f, cond) in &conditional {
                        let shown = body.get(f).is_some();
                        let allowed = eval(cond, stored, &data, &ctx) == Some(true);
                        assert_eq!(
                            shown, allowed,
                            "{}: {what} of {} {id}: `{f}`",
                            caller.name, e.name
                        );
                    }
                }
            };

            // list
            cases += 1;
            let res = caller
                .client
                .get(&format!("/api/{}?limit=200", e.plural))
                .await;
            match visible(&Action::List) {
                None => assert_eq!(
                    res.status,
                    if who.is_anonymous() {
                        StatusCode::UNAUTHORIZED
                    } else {
                        StatusCode::FORBIDDEN
                    },
                    "{} list {}: {}",
                    caller.name,
                    e.plural,
                    res.body
                ),
                Some(expected) => {
                    assert_eq!(
                        res.status,
                        StatusCode::OK,
                        "{} list {}: {}",
                        caller.name,
                        e.plural,
                        res.body
                    );
                    let got: BTreeSet<String> = res.body["items"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r["id"].as_str().unwrap().to_string())
                        .collect();
                    assert_eq!(got, expected, "{} list {}", caller.name, e.plural);
                    for item in res.body["items"].as_array().unwrap() {
                        no_hidden(item, "a list");
                    }
                }
            }

            // Field write rules, sorted by field (the state field is the workflow's).
            let policy = engine.access.policy(&e.name);
            let state_field = engine.workflow(&e.name).map(|w| w.field.clone());
            let mut write_rules: Vec<(String, WriteRule)> = policy
                .map(|p| {
                    p.write
                        .iter()
                        .filter(|(f, _)| Some(f.as_str()) != state_field.as_deref())
                        .map(|(f, r)| (f.clone(), r.clone()))
                        .collect()
                })
                .unwrap_or_default();
            write_rules.sort_by(|a, b| a.0.cmp(&b.0));
            let presets: BTreeSet<String> = policy
                .map(|p| p.presets.keys().cloned().collect())
                .unwrap_or_default();
            let readable = visible(&Action::Read).unwrap_or_default();
            let updatable = visible(&Action::Update).unwrap_or_default();
            for id in all.keys() {
                // read
                cases += 1;
                let res = caller.client.get(&format!("/api/{}/{id}", e.plural)).await;
                if readable.contains(id) {
                    assert_eq!(
                        res.status,
                        StatusCode::OK,
                        "{} read {} {id}",
                        caller.name,
                        e.name
                    );
                    no_hidden(&res.body, "a record");
                } else {
                    assert_eq!(
                        res.status,
                        StatusCode::NOT_FOUND,
                        "{} read {} {id}: {}",
                        caller.name,
                        e.name,
                        res.body
                    );
                    assert!(res.body.get("id").is_none(), "no row in a refusal");
                }
                // update (an empty change: allowed or not, it moves nothing)
                cases += 1;
                let res = caller
                    .client
                    .patch(&format!("/api/{}/{id}", e.plural), json!({}), &[])
                    .await;
                let expected = if !readable.contains(id) {
                    StatusCode::NOT_FOUND
                } else if !updatable.contains(id) {
                    if who.is_anonymous() {
                        StatusCode::UNAUTHORIZED
                    } else {
                        StatusCode::FORBIDDEN
                    }
                } else {
                    StatusCode::OK
                };
                assert_eq!(
                    res.status, expected,
                    "{} update {} {id}: {}",
                    caller.name, e.name, res.body
                );
                if res.status == StatusCode::OK {
                    no_hidden(&res.body, "an update's answer");
                }
                // field writes: every field with a write rule, set to the value it
                // already has (allowed or not, the record stays as it was)
                let stored = &all[id];
                for (field, rule) in &write_rules {
                    cases += 1;
                    let body = json!({ field.as_str(): stored.get(field).cloned().unwrap_or(Value::Null) });
                    let res = caller
                        .client
                        .patch(&format!("/api/{}/{id}", e.plural), body, &[])
                        .await;
                    let has_role = |roles: &[String]| who.has_role(roles);
                    // Refused whatever the record: hidden, preset, never, on_create,
                    // or a roles-only rule without the role.
                    let refused_always = hidden.contains(field)
                        || (presets.contains(field)
                            && !matches!(rule, WriteRule::Rule { roles, .. } if has_role(roles)))
                        || match rule {
                            WriteRule::Never | WriteRule::OnCreate => true,
                            WriteRule::Rule {
                                roles, cond: None, ..
                            } => !has_role(roles),
                            WriteRule::Rule { cond: Some(_), .. } => false,
                        };
                    let refused_here = match rule {
                        WriteRule::Rule {
                            roles,
                            cond: Some(c),
                            ..
                        } if !has_role(roles) => eval(c, stored, &data, &ctx) != Some(true),
                        _ => false,
                    };
                    let expected = if refused_always {
                        StatusCode::UNPROCESSABLE_ENTITY
                    } else if !readable.contains(id) {
                        StatusCode::NOT_FOUND
                    } else if !updatable.contains(id) {
                        if who.is_anonymous() {
                            StatusCode::UNAUTHORIZED
                        } else {
                            StatusCode::FORBIDDEN
                        }
                    } else if refused_here {
                        StatusCode::UNPROCESSABLE_ENTITY
                    } else {
                        StatusCode::OK
                    };
                    assert_eq!(
                        res.status, expected,
                        "{} writes `{field}` of {} {id}: {}",
                        caller.name, e.name, res.body
                    );
                    if expected == StatusCode::UNPROCESSABLE_ENTITY {
                        assert!(
                            res.body["errors"].as_array().is_some_and(|a| a
                                .iter()
                                .any(|x| x["pointer"] == format!("/{field}"))),
                            "{} writes `{field}` of {} {id}: the refusal names the field: {}",
                            caller.name,
                            e.name,
                            res.body
                        );
                    }
                }
            }
        }
    }
    cases
}

async fn helpdesk_matrix(db: Db) {
    let dir = common::repo_root().join("examples/helpdesk");
    let app = TestApp::for_dir(db, &dir).await;
    // The helpdesk has no built-in accounts: tokens name agents and customers by id.
    // Records are made by the system first (leads need an agent record of their own);
    // tickets in a given state are seeded, as only transitions move the state.
    let lead = app
        .seed(
            "agents",
            json!({ "display_name": "Lea", "email": "lea@help.example" }),
        )
        .await;
    let agent = app
        .seed(
            "agents",
            json!({ "display_name": "Al", "email": "al@help.example" }),
        )
        .await;
    let c1 = app
        .seed(
            "customers",
            json!({ "name": "Cy", "email": "cy@example.com", "vip": true }),
        )
        .await;
    let c2 = app
        .seed(
            "customers",
            json!({ "name": "Di", "email": "di@example.com" }),
        )
        .await;
    let team = app
        .seed("teams", json!({ "name": "Tier 1", "agents": [agent] }))
        .await;
    let tag = app.seed("tags", json!({ "name": "billing" })).await;
    let mut tickets = Vec::new();
    for (customer, status) in [(&c1, "new"), (&c1, "open"), (&c2, "new"), (&c2, "solved")] {
        tickets.push(
            app.seed(
                "tickets",
                json!({ "subject": format!("{status} issue"), "body": "help", "customer": customer, "status": status,
                        "assignee": agent, "team": team, "tags": [tag], "estimated_cost": "12.50", "metadata": { "src": "mail" } }),
            )
            .await,
        );
    }
    for (i, t) in tickets.iter().enumerate() {
        app.seed(
            "comments",
            json!({ "ticket": t, "author": agent, "body": "public reply" }),
        )
        .await;
        app.seed("comments", json!({ "ticket": t, "author": if i % 2 == 0 { &lead } else { &agent }, "body": "internal note", "internal": true })).await;
    }
    let token = |id: &str, role: &str| app.token(id, &[role]);
    let principal = |id: &str, role: &str| Principal::user(id, &[role], Map::new());
    let callers = vec![
        Caller {
            name: "lead",
            client: app.as_user(&token(&lead, "lead")),
            principal: principal(&lead, "lead"),
        },
        Caller {
            name: "agent",
            client: app.as_user(&token(&agent, "agent")),
            principal: principal(&agent, "agent"),
        },
        Caller {
            name: "customer (owner)",
            client: app.as_user(&token(&c1, "customer")),
            principal: principal(&c1, "customer"),
        },
        Caller {
            name: "other customer",
            client: app.as_user(&token(&c2, "customer")),
            principal: principal(&c2, "customer"),
        },
        Caller {
            name: "anonymous",
            client: app.anonymous(),
            principal: Principal::anonymous(),
        },
    ];
    let cases = check_matrix(&app, &callers).await;
    println!("authorization matrix (helpdesk example): {cases} cases passed");
    assert!(cases >= 150, "{cases}");
    let (oracles, hidden) = check_oracles(&app, &callers).await;
    println!(
        "oracle section (helpdesk example): {oracles} filters compared, {hidden} of them through hidden rows"
    );
    assert!(hidden >= 50, "{hidden} of {oracles}");
}

/// An id no record has.
const NOBODY: &str = "00000000-0000-4000-8000-000000000000";

/// The answers to a filter that matter for an oracle: the list's items and total,
/// and the aggregate's groups (or the refusals, by status and detail).
async fn answers(caller: &Caller, plural: &str, filter: &str) -> Vec<(u16, Value)> {
    let q = serde_urlencoded::to_string([("filter", filter)]).unwrap();
    let mut out = Vec::new();
    for path in [
        format!("/api/{plural}?{q}&count=true&limit=200"),
        format!("/api/{plural}/aggregate?{q}&count=true"),
    ] {
        let res = caller.client.get(&path).await;
        let body = if res.status == StatusCode::OK {
            json!([res.body["items"], res.body["total"], res.body["groups"]])
        } else {
            res.body["detail"].clone()
        };
        out.push((res.status.as_u16(), body));
    }
    out
}

/// The oracle section: for every caller, every entity and every relation path of one
/// or two steps from it, a filter that can only be true through rows the caller may
/// not read answers exactly as the same filter made false (list items, `total`,
/// aggregate groups). Returns the filters compared, and how many of them named
/// hidden rows.
async fn check_oracles(app: &TestApp, callers: &[Caller]) -> (usize, usize) {
    let engine = app.state.engine.load_full();
    let data = app.everything().await;
    let relations = |e: &trellis::engine::Entity| -> Vec<(String, String, bool)> {
        e.fields
            .iter()
            .filter_map(|f| {
                let to_many = matches!(
                    f.ty,
                    trellis::spec::FieldType::Many | trellis::spec::FieldType::Inverse
                );
                let relation = to_many || f.ty == trellis::spec::FieldType::Ref;
                let target = f.target.clone().filter(|_| relation)?;
                Some((f.name.clone(), target, to_many))
            })
            .collect()
    };
    let mut paths = Vec::new();
    for e in engine.entities() {
        for (name, target, to_many) in relations(e) {
            paths.push((e.clone(), name.clone(), target.clone(), to_many));
            let Some(t) = engine.entity(&target) else {
                continue;
            };
            for (second, target2, to_many2) in relations(t) {
                paths.push((e.clone(), format!("{name}.{second}"), target2, to_many2));
            }
        }
    }
    let (mut compared, mut through_hidden) = (0, 0);
    for caller in callers {
        let who = &caller.principal;
        let ctx = who.ctx();
        for (e, path, target, to_many) in &paths {
            // The rows of the target this caller may not read.
            let all = &data.records[target];
            let hidden: Vec<&String> = match engine.access.decide(target, &Action::Read, who) {
                Decision::Deny => all.keys().collect(),
                Decision::Allow(cond) => all
                    .iter()
                    .filter(|(_, r)| eval(&cond, r, &data, &ctx) != Some(true))
                    .map(|(id, _)| id)
                    .collect(),
            };
            let hidden: Vec<&String> = hidden.into_iter().take(20).collect();
            let list = |ids: &[&str]| {
                ids.iter()
                    .map(|id| format!("'{id}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let ids: Vec<&str> = hidden.iter().map(|s| s.as_str()).collect();
            let mut pairs = vec![(
                format!("{path}.id in [{}]", list(&ids)),
                format!("{path}.id in ['{NOBODY}']"),
            )];
            if *to_many && let Some(first) = ids.first() {
                pairs.push((
                    format!("{path} has '{first}'"),
                    format!("{path} has '{NOBODY}'"),
                ));
            }
            for (truthy, falsy) in pairs {
                compared += 1;
                if !hidden.is_empty() {
                    through_hidden += 1;
                }
                let got = answers(caller, &e.plural, &truthy).await;
                let expected = answers(caller, &e.plural, &falsy).await;
                assert_eq!(
                    got, expected,
                    "{}: `{truthy}` on {} answers otherwise than `{falsy}`",
                    caller.name, e.plural
                );
            }
        }
    }
    (compared, through_hidden)
}

both!(matrix, helpdesk_matrix);
