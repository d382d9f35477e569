//! Field write rules that depend on the record and the caller (`write: { roles,
//! where }`), fields written only by transitions (`write: never` + `set:`), and the
//! root project's policies that use them — each refused write checked by its status,
//! its body and the stored row afterwards, on SQLite and PostgreSQL. The last tests
//! play the attacker: a signed-up contractor, a client of another organization, an
//! anonymous caller.

mod common;

use axum::http::StatusCode;
use common::{Db, TestApp, TestAppRouter};
use serde_json::{Value, json};

both!(
    conditions_read_the_stored_row_and_the_new_one,
    a_refused_write_changes_nothing_in_a_batch_either,
    the_applicant_edits_the_proposal_while_submitted,
    decisions_are_written_only_by_transitions,
    clients_never_rewrite_a_proposal,
    project_dates_and_reasons_only_through_transitions,
    internal_notes_only_for_the_owning_organization,
    attackers_learn_and_change_nothing,
    reviews_only_between_the_parties_of_a_project,
    a_write_that_waited_for_a_lock_reads_the_newest_row,
);

/// A small project with a conditional write rule: `title` may be changed by anyone
/// allowed to update a note only while the note is not locked; editors and admins
/// always.
const NOTES: &[(&str, &str)] = &[
    (
        "trellis.yaml",
        "auth:\n  jwt: { algorithm: HS256, secret_env: S }\n",
    ),
    (
        "models/note.yaml",
        "entity: note\nfields:\n  title: { type: string, required: true }\n  body: text\n  locked: { type: boolean, default: false }\n  owner: string\n",
    ),
    (
        "policies/note.yaml",
        "entity: note\nconditions:\n  unlocked: not locked\nrules:\n  - roles: [member, editor]\n    allow: [list, read, create, update]\n  - roles: [admin]\n    allow: [\"*\"]\nfields:\n  title: { write: { roles: [editor, admin], where: unlocked } }\n  body: { write: { where: owner = user.id } }\n",
    ),
];

fn stored(res: &common::Resp) -> &Value {
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    &res.body
}

async fn conditions_read_the_stored_row_and_the_new_one(db: Db) {
    let app = TestApp::with_files(db, NOTES).await;
    let member = app.as_user(&app.token("m1", &["member"]));
    let editor = app.as_user(&app.token("e1", &["editor"]));

    // Create: the condition must hold for the new record.
    let res = member
        .post(
            "/api/notes",
            json!({ "title": "Locked at birth", "locked": true }),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert!(
        res.error_for("/title").contains("only where `unlocked`"),
        "{}",
        res.body
    );
    assert_eq!(app.rows("note").await, 0, "nothing was created");
    let res = member
        .post(
            "/api/notes",
            json!({ "title": "Plan", "owner": "m1", "body": "draft" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let note = format!("/api/notes/{}", res.id());

    // Update: the condition is read on the stored row, before the change. Locking and
    // renaming at once is allowed (the note was unlocked)...
    let res = member
        .patch(&note, json!({ "title": "Plan v2", "locked": true }), &[])
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["version"], 2);
    // ...and unlocking while renaming is not (the stored note is locked).
    let res = member
        .patch(&note, json!({ "title": "Plan v3", "locked": false }), &[])
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(res.body["type"], "https://trellis.dev/problems/validation");
    let detail = res.error_for("/title");
    assert!(
        detail.contains("you may not change `title` of this note now")
            && detail.contains("only where `unlocked`"),
        "{detail}"
    );
    let row = app.get(&note).await;
    assert_eq!(
        stored(&row)["title"],
        "Plan v2",
        "the refused write changed nothing"
    );
    assert_eq!(row.body["locked"], true);
    assert_eq!(row.body["version"], 2);
    // Other fields of the locked note are still the member's to write.
    let res = member.patch(&note, json!({ "body": "notes" }), &[]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    // The editor role always may.
    let res = editor.patch(&note, json!({ "title": "Final" }), &[]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["title"], "Final");
    // A condition on the caller: `body` only for its owner.
    let res = editor
        .patch(&note, json!({ "body": "mine now" }), &[])
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert!(res.error_for("/body").contains("`owner = user.id`"));
    assert_eq!(stored(&app.get(&note).await)["body"], "notes");
    // With `If-Match`, a stale version is still a 412, not a refusal of the field.
    let res = member
        .patch(&note, json!({ "title": "x" }), &[("if-match", "\"1\"")])
        .await;
    assert_eq!(res.status, StatusCode::PRECONDITION_FAILED, "{}", res.body);
}

async fn a_refused_write_changes_nothing_in_a_batch_either(db: Db) {
    let app = TestApp::with_files(db, NOTES).await;
    let member = app.as_user(&app.token("m1", &["member"]));
    let locked = app
        .create(
            "notes",
            json!({ "title": "Locked", "locked": true, "owner": "m1" }),
        )
        .await;
    let res = member
        .post(
            "/api/batch",
            json!({ "operations": [
                { "op": "create", "entity": "notes", "data": { "title": "New" } },
                { "op": "update", "entity": "notes", "id": locked, "data": { "title": "Renamed" } }
            ] }),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(res.body["operation"], 1, "{}", res.body);
    assert!(res.error_for("/title").contains("only where `unlocked`"));
    assert_eq!(
        app.rows("note").await,
        1,
        "the batch rolled back as a whole"
    );
    let row = app.get(&format!("/api/notes/{locked}")).await;
    assert_eq!(stored(&row)["title"], "Locked");
    assert_eq!(row.body["version"], 1);
}

/// The root project with a client member (Ann, of Acme), a client of another
/// organization (Bob, of Globex), two contractors and an open project of Acme's.
struct Market {
    app: TestApp,
    ann_id: String,
    ann: TestAppRouter,
    bob: TestAppRouter,
    dev: TestAppRouter,
    dev_id: String,
    dev2: TestAppRouter,
    dev2_id: String,
    acme: String,
    project: String,
}

async fn user(app: &TestApp, name: &str, role: &str) -> (String, TestAppRouter) {
    let id = app
        .create(
            "users",
            json!({ "email": format!("{name}@example.com"), "display_name": name, "role": role }),
        )
        .await;
    let who = app.as_user(&app.token(&id, &[role]));
    (id, who)
}

async fn market(db: Db) -> Market {
    let app = TestApp::root(db).await;
    let (ann_id, ann) = user(&app, "ann", "client").await;
    let (bob_id, bob) = user(&app, "bob", "client").await;
    let (dev_id, dev) = user(&app, "dev", "contractor").await;
    let (dev2_id, dev2) = user(&app, "dev2", "contractor").await;
    let acme = app
        .create(
            "organizations",
            json!({ "name": "Acme", "slug": "acme", "members": [ann_id] }),
        )
        .await;
    app.create(
        "organizations",
        json!({ "name": "Globex", "slug": "globex", "members": [bob_id] }),
    )
    .await;
    let project = app
        .seed(
            "projects",
            json!({ "title": "Marketplace API", "client": acme, "status": "open", "budget": "5000",
                    "internal_notes": "We would pay up to 8000" }),
        )
        .await;
    Market {
        app,
        ann_id,
        ann,
        bob,
        dev,
        dev_id,
        dev2,
        dev2_id,
        acme,
        project,
    }
}

impl Market {
    /// `who` applies to the project; returns the application's path.
    async fn apply(&self, who: &TestAppRouter, rate: u32) -> String {
        let res = who
            .post(
                "/api/applications",
                json!({ "project": self.project, "cover_letter": "Hire me", "proposed_rate": rate.to_string(), "estimated_hours": 40 }),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
        format!("/api/applications/{}", res.id())
    }

    /// The stored application, as an admin reads it.
    async fn row(&self, path: &str) -> Value {
        stored(&self.app.get(path).await).clone()
    }
}

async fn the_applicant_edits_the_proposal_while_submitted(db: Db) {
    let m = market(db).await;
    let mine = m.apply(&m.dev, 80).await;
    let res = m
        .dev
        .patch(
            &mine,
            json!({ "cover_letter": "Hire me: I know Rust", "proposed_rate": "90", "estimated_hours": 35 }),
            &[],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["proposed_rate"], "90.00");

    // Shortlisted: the proposal is what the client is looking at; it stays.
    let res = m.ann.fire(&mine, "shortlist", json!({})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let before = m.row(&mine).await;
    for (field, value) in [
        ("proposed_rate", json!("150")),
        ("cover_letter", json!("Actually, twice the rate")),
        ("estimated_hours", json!(80)),
    ] {
        let res = m.dev.patch(&mine, json!({ field: value }), &[]).await;
        assert_eq!(
            res.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}: {}",
            res.body
        );
        let detail = res.error_for(&format!("/{field}"));
        assert!(
            detail.contains(&format!("`{field}` of this application"))
                && detail.contains("`own and status = submitted`"),
            "{detail}"
        );
    }
    assert_eq!(m.row(&mine).await, before, "nothing changed");
}

async fn decisions_are_written_only_by_transitions(db: Db) {
    let m = market(db).await;
    let mine = m.apply(&m.dev, 80).await;
    let before = m.row(&mine).await;
    // The applicant: no feedback, no decision date, no backdated submission.
    for (field, value) in [
        ("feedback", json!("The best applicant we ever had")),
        ("decided_at", json!("2026-01-01T00:00:00Z")),
        ("submitted_at", json!("2020-01-01T00:00:00Z")),
    ] {
        let res = m.dev.patch(&mine, json!({ field: value }), &[]).await;
        assert_eq!(
            res.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}: {}",
            res.body
        );
        assert!(
            res.error_for(&format!("/{field}"))
                .contains("cannot be written"),
            "{}",
            res.body
        );
        // Not even an admin writes around the workflow.
        let res = m.app.patch(&mine, json!({ field: value }), &[]).await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    }
    // Nor on create.
    let res = m
        .dev2
        .post(
            "/api/applications",
            json!({ "project": m.project, "submitted_at": "2020-01-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(m.row(&mine).await, before, "nothing changed");

    // The transitions write them (`write: never` fields included).
    let res = m
        .ann
        .fire(&format!("/api/projects/{}", m.project), "review", json!({}))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let res = m
        .ann
        .fire(
            &mine,
            "reject",
            json!({ "feedback": "We chose someone else" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let row = m.row(&mine).await;
    assert_eq!(row["feedback"], "We chose someone else");
    assert!(row["decided_at"].is_string(), "{row}");
    assert_eq!(row["submitted_at"], before["submitted_at"]);
}

async fn clients_never_rewrite_a_proposal(db: Db) {
    let m = market(db).await;
    let mine = m.apply(&m.dev, 80).await;
    let before = m.row(&mine).await;
    // The client member reads the application, and changes none of its fields.
    assert_eq!(m.ann.get(&mine).await.status, StatusCode::OK);
    for body in [
        json!({ "proposed_rate": "10" }),
        json!({ "cover_letter": "I will work for almost nothing" }),
        json!({ "estimated_hours": 1 }),
    ] {
        let res = m.ann.patch(&mine, body.clone(), &[]).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{body}: {}", res.body);
        assert_eq!(res.body["detail"], "you may not change this application");
    }
    assert_eq!(m.row(&mine).await, before, "nothing changed");
    // The client accepts the proposal as the applicant made it.
    let res = m
        .ann
        .fire(&format!("/api/projects/{}", m.project), "review", json!({}))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let res = m.ann.fire(&mine, "accept", json!({})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["proposed_rate"], "80.00");
    assert_eq!(res.body["cover_letter"], "Hire me");
}

async fn project_dates_and_reasons_only_through_transitions(db: Db) {
    let m = market(db).await;
    // Not on create...
    let res = m
        .ann
        .post(
            "/api/projects",
            json!({ "title": "Backdated", "client": m.acme, "published_at": "2020-01-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert!(res.error_for("/published_at").contains("cannot be written"));
    let res = m
        .ann
        .post(
            "/api/projects",
            json!({ "title": "Draft plan", "client": m.acme, "budget": "100" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let draft = format!("/api/projects/{}", res.id());
    let before = m.row(&draft).await;
    // ...nor by PATCH on a draft.
    for (field, value) in [
        ("published_at", json!("2026-01-01T00:00:00Z")),
        ("close_reason", json!("Hired someone")),
    ] {
        let res = m.ann.patch(&draft, json!({ field: value }), &[]).await;
        assert_eq!(
            res.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}: {}",
            res.body
        );
        assert!(
            res.error_for(&format!("/{field}"))
                .contains("cannot be written")
        );
    }
    assert_eq!(m.row(&draft).await, before, "nothing changed");
    // The `close` transition writes the reason.
    let res = m
        .ann
        .fire(&draft, "close", json!({ "reason": "Hired someone" }))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(m.row(&draft).await["close_reason"], "Hired someone");
}

async fn internal_notes_only_for_the_owning_organization(db: Db) {
    let m = market(db).await;
    let path = format!("/api/projects/{}", m.project);
    // The owning organization's member reads them, in a get and in a list.
    let res = m.ann.get(&path).await;
    assert_eq!(stored(&res)["internal_notes"], "We would pay up to 8000");
    let res = m.ann.get("/api/projects").await;
    assert_eq!(
        res.body["items"][0]["internal_notes"],
        "We would pay up to 8000"
    );
    // A client of another organization, and a contractor, do not.
    for who in [&m.bob, &m.dev] {
        let res = who.get(&path).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        assert!(res.body.get("internal_notes").is_none(), "{}", res.body);
        assert_eq!(res.body["title"], "Marketplace API");
        let res = who.get("/api/projects").await;
        assert_eq!(res.body["items"].as_array().unwrap().len(), 1);
        assert!(res.body["items"][0].get("internal_notes").is_none());
        // Nor can they search, sort or pick by them.
        for q in [
            "filter=internal_notes%20~%20%278000%27",
            "sort=internal_notes",
            "fields=title,internal_notes",
        ] {
            let res = who.get(&format!("/api/projects?{q}")).await;
            assert_eq!(res.status, StatusCode::BAD_REQUEST, "{q}: {}", res.body);
        }
        // Nor reach them through an expansion.
        let res = who
            .get(&format!("/api/organizations/{}?expand=projects", m.acme))
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        let projects = res.body["expand"]["projects"].as_array().unwrap();
        assert!(!projects.is_empty(), "{}", res.body);
        for p in projects {
            assert!(p["title"].is_string(), "{p}");
            assert!(p.get("internal_notes").is_none(), "{}", res.body);
        }
    }
}

async fn attackers_learn_and_change_nothing(db: Db) {
    let m = market(db).await;
    let mine = m.apply(&m.dev, 80).await;
    let before = m.row(&mine).await;
    // Another contractor, another organization's client: the application is not theirs
    // to see, so not theirs to change (404, not "forbidden": its existence stays hidden).
    for who in [&m.dev2, &m.bob] {
        for body in [
            json!({ "proposed_rate": "1" }),
            json!({ "cover_letter": "Withdrawn" }),
        ] {
            let res = who.patch(&mine, body.clone(), &[]).await;
            assert_eq!(res.status, StatusCode::NOT_FOUND, "{body}: {}", res.body);
        }
        // A field nobody writes is refused before the record is looked at: the same
        // 422 for any id, so it tells nothing either.
        let res = who
            .patch(&mine, json!({ "feedback": "Terrible" }), &[])
            .await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    }
    // Anonymous: no application is visible, so none is found.
    let res = m
        .app
        .anonymous()
        .patch(&mine, json!({ "proposed_rate": "1" }), &[])
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.body);
    // The applicant cannot move the application to another project, or hand it to
    // someone else, to escape the `own` condition.
    let res = m
        .dev
        .patch(&mine, json!({ "applicant": m.dev2_id }), &[])
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    // A contractor who applies for someone else is refused; the applicant is the caller.
    let res = m
        .dev2
        .post(
            "/api/applications",
            json!({ "project": m.project, "applicant": m.dev_id, "proposed_rate": "1" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    // A batch is checked like single requests: the same refusal, nothing written.
    let res = m
        .dev
        .post(
            "/api/batch",
            json!({ "operations": [
                { "op": "update", "entity": "applications", "id": mine.rsplit('/').next().unwrap(), "data": { "cover_letter": "fine" } },
                { "op": "update", "entity": "applications", "id": mine.rsplit('/').next().unwrap(), "data": { "decided_at": "2026-01-01T00:00:00Z" } }
            ] }),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(res.body["operation"], 1);
    assert_eq!(m.row(&mine).await, before, "nothing changed");
    // After shortlisting, a batch that would both rename and edit the proposal is
    // refused by the stored row's state, whatever the batch wrote before it.
    let res = m.ann.fire(&mine, "shortlist", json!({})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let res = m
        .dev
        .post(
            "/api/batch",
            json!({ "operations": [
                { "op": "update", "entity": "applications", "id": mine.rsplit('/').next().unwrap(), "data": { "proposed_rate": "500" } }
            ] }),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(m.row(&mine).await["proposed_rate"], "80.00");
    // The other contractor still cannot see the application at all.
    assert_eq!(m.dev2.get(&mine).await.status, StatusCode::NOT_FOUND);
}

async fn reviews_only_between_the_parties_of_a_project(db: Db) {
    let m = market(db).await;
    let project = format!("/api/projects/{}", m.project);
    // Dev is accepted; Dev 2 applied too and was rejected.
    let mine = m.apply(&m.dev, 80).await;
    let theirs = m.apply(&m.dev2, 70).await;
    assert_eq!(
        m.ann.fire(&project, "review", json!({})).await.status,
        StatusCode::OK
    );
    assert_eq!(
        m.ann.fire(&mine, "accept", json!({})).await.status,
        StatusCode::OK
    );
    let res = m
        .ann
        .fire(&theirs, "reject", json!({ "feedback": "No" }))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    // A draft of the same client, which contractors cannot see.
    let res = m
        .ann
        .post(
            "/api/projects",
            json!({ "title": "Next secret", "client": m.acme }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let draft = res.id();
    let review = |project: &str, subject: &str| json!({ "project": project, "subject": subject, "rating": 2, "comment": "x" });
    let refused: Vec<(&TestAppRouter, Value, &str)> = vec![
        // The rejected contractor, about the client's member.
        (&m.dev2, review(&m.project, &m.ann_id), "rejected applicant"),
        // The accepted contractor, about someone not on the project.
        (
            &m.dev,
            review(&m.project, &m.dev2_id),
            "subject not on the project",
        ),
        // ... or about themselves.
        (&m.dev, review(&m.project, &m.dev_id), "self review"),
        // The accepted contractor, about a draft they cannot see.
        (&m.dev, review(&draft, &m.ann_id), "draft"),
        // Another organization's client, about the accepted contractor.
        (
            &m.bob,
            review(&m.project, &m.dev_id),
            "another organization",
        ),
        // The client's member, about the rejected contractor.
        (&m.ann, review(&m.project, &m.dev2_id), "rejected subject"),
    ];
    for (who, body, case) in refused {
        let res = who.post("/api/reviews", body).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{case}: {}", res.body);
        assert_eq!(m.app.rows("review").await, 0, "{case}: nothing stored");
    }
    // Naming another author is refused before anything else.
    let mut forged = review(&m.project, &m.ann_id);
    forged["author"] = json!(m.dev2_id);
    let res = m.dev.post("/api/reviews", forged).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(res.pointers(), ["/author"]);

    // Both parties review each other.
    let res = m
        .dev
        .post("/api/reviews", review(&m.project, &m.ann_id))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["author"], m.dev_id);
    let by_dev = format!("/api/reviews/{}", res.id());
    let res = m
        .ann
        .post("/api/reviews", review(&m.project, &m.dev_id))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(m.app.rows("review").await, 2);
    // What a review is about stays as checked; the rest is the author's.
    let before = m.row(&by_dev).await;
    for body in [json!({ "subject": m.dev2_id }), json!({ "project": draft })] {
        let res = m.dev.patch(&by_dev, body.clone(), &[]).await;
        assert_eq!(
            res.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            res.body
        );
    }
    assert_eq!(m.row(&by_dev).await, before);
    let res = m.dev.patch(&by_dev, json!({ "rating": 5 }), &[]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
}

/// Runs `request` while another connection holds the row `id` of `table` changed by
/// `change` (a SQL UPDATE with one `id` parameter) in an open transaction, and
/// commits that transaction once the request waits for it; returns the answer.
async fn while_a_row_is_held<F>(
    app: &TestApp,
    table: &str,
    change: &str,
    id: &str,
    request: F,
) -> common::Resp
where
    F: std::future::Future<Output = common::Resp> + Send + 'static,
{
    use sqlx::Connection;
    let url = &app.db.url;
    match app.db.db {
        Db::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            let mut watcher = sqlx::PgConnection::connect(url).await.unwrap();
            let mut tx = conn.begin().await.unwrap();
            let holder: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {table} SET {change} WHERE id = $1::uuid"
            )))
            .bind(id)
            .execute(&mut *tx)
            .await
            .unwrap();
            let pending = tokio::spawn(request);
            // Until the request is blocked by this transaction's row lock.
            let mut polls = 0;
            loop {
                let blocked: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                )
                .bind(holder)
                .fetch_one(&mut watcher)
                .await
                .unwrap();
                if blocked > 0 {
                    break;
                }
                polls += 1;
                assert!(polls < 3000, "the request never waited for the row");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            tx.commit().await.unwrap();
            pending.await.unwrap()
        }
        Db::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut conn)
                .await
                .unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {table} SET {change} WHERE id = ?"
            )))
            .bind(id)
            .execute(&mut conn)
            .await
            .unwrap();
            let pending = tokio::spawn(request);
            // SQLite has one writer: the request waits (busy timeout) for this commit,
            // or starts after it; either way it must see the committed row.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
            pending.await.unwrap()
        }
    }
}

/// The write condition is part of the UPDATE itself: an edit that waits for the row
/// while the client shortlists the application (in a transaction holding the row)
/// is judged on the shortlisted row, not on the submitted one it started from.
async fn a_write_that_waited_for_a_lock_reads_the_newest_row(db: Db) {
    let m = market(db).await;
    let mine = m.apply(&m.dev, 80).await;
    let id = mine.rsplit('/').next().unwrap().to_string();
    let (dev, path) = (m.dev.clone(), mine.clone());
    let res = while_a_row_is_held(
        &m.app,
        "application",
        "status = 'shortlisted', version = version + 1",
        &id,
        async move {
            dev.patch(&path, json!({ "proposed_rate": "500" }), &[])
                .await
        },
    )
    .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert!(res.error_for("/proposed_rate").contains("only where"));
    let row = m.row(&mine).await;
    assert_eq!(row["status"], "shortlisted");
    assert_eq!(row["proposed_rate"], "80.00");

    // The same for a delete: "closed projects are not deleted" holds for a project
    // closed while the delete waited.
    let project = format!("/api/projects/{}", m.project);
    let ann = m.ann.clone();
    let path = project.clone();
    let res = while_a_row_is_held(
        &m.app,
        "project",
        "status = 'closed', version = version + 1",
        &m.project,
        async move { ann.delete(&path).await },
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    assert_eq!(m.row(&project).await["status"], "closed");
}
