//! Accounts, tokens and the root project's policies, through HTTP, on both databases.

mod common;

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Db, TEST_SECRET, TestApp, TestAppRouter};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

/// Signs up through the API, gives the account a role (as admin), and signs in.
async fn account(app: &TestApp, email: &str, role: &str) -> (String, TestAppRouter) {
    let anon = app.anonymous();
    let id = app.signup(email).await;
    if role != "contractor" {
        let res = app
            .patch(&format!("/api/users/{id}"), json!({ "role": role }), &[])
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    }
    let res = anon
        .post(
            "/auth/login",
            json!({ "email": email, "password": "correct horse" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let token = res.body["access_token"].as_str().unwrap().to_string();
    (id, app.as_user(&token))
}

async fn signup_and_login(db: Db) {
    let app = TestApp::root(db).await;
    let anon = app.anonymous();
    let res = anon
        .post(
            "/auth/signup",
            json!({ "email": "ada@example.com", "password": "correct horse", "display_name": "Ada" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["token_type"], "Bearer");
    assert!(res.body["expires_in"].as_u64().unwrap() > 0);
    assert_eq!(res.body["user"]["role"], "contractor");
    assert!(res.body["user"].get("password").is_none());
    let token = res.body["access_token"].as_str().unwrap().to_string();
    let id = res.body["user"]["id"].as_str().unwrap().to_string();
    let me = app.as_user(&token).get(&format!("/api/users/{id}")).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert!(me.body.get("email").is_none(), "email is for admins only");

    // Mistakes at signup, each with its field.
    let res = anon
        .post(
            "/auth/signup",
            json!({ "email": "bob@example.com", "password": "short", "display_name": "Bob", "role": "admin" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    let mut pointers = res.pointers();
    pointers.sort();
    assert_eq!(pointers, ["/password", "/role"]);
    let res = anon
        .post("/auth/signup", json!({ "email": "ada@example.com", "password": "another one", "display_name": "Ada 2" }))
        .await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    assert_eq!(app.rows("user").await, 1);

    // Login: wrong password and unknown email look the same.
    for (email, password) in [
        ("ada@example.com", "wrong horse"),
        ("nobody@example.com", "correct horse"),
    ] {
        let res = anon
            .post(
                "/auth/login",
                json!({ "email": email, "password": password }),
            )
            .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.body);
        assert_eq!(res.body["detail"], "wrong email or password");
        assert!(
            res.header("www-authenticate")
                .unwrap()
                .starts_with("Bearer")
        );
    }
    let res = anon
        .post("/auth/login", json!({ "email": "ada@example.com" }))
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// Accounts whose entity has fields only admins or nobody write: signing up (Trellis
/// creates the record itself) must not be a way around the field rules that refuse
/// the same body in a PATCH by the new account.
const MEMBERS: &[(&str, &str)] = &[
    (
        "trellis.yaml",
        "auth:\n  jwt: { algorithm: HS256, secret_env: S }\n  users: { entity: member, role_field: role }\n",
    ),
    (
        "models/member.yaml",
        "entity: member\nfields:\n  email: { type: email, required: true, unique: true }\n  display_name: { type: string, required: true }\n  role: { type: enum, values: [member, admin], default: member }\n  credits: { type: integer, default: 0 }\n  verified: { type: boolean, default: false }\n  staff_notes: text\n  bio: text\n",
    ),
    (
        "policies/member.yaml",
        "entity: member\nrules:\n  - roles: [authenticated]\n    allow: [list, read]\n  - roles: [authenticated]\n    allow: [update]\n    where: id = user.id\n  - roles: [admin]\n    allow: [\"*\"]\nfields:\n  email: { read: { roles: [admin] } }\n  credits: { write: never }\n  verified: { write: { roles: [admin] } }\n  staff_notes: { read: { roles: [admin] } }\n",
    ),
];

async fn signup_follows_field_write_rules(db: Db) {
    let app = TestApp::with_files(db, MEMBERS).await;
    let anon = app.anonymous();
    for (field, value) in [
        ("credits", json!(1_000_000)),
        ("verified", json!(true)),
        ("staff_notes", json!("trust this one")),
    ] {
        let mut body =
            json!({ "email": "m@example.com", "password": "correct horse", "display_name": "M" });
        body[field] = value;
        let res = anon.post("/auth/signup", body).await;
        assert_eq!(
            res.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}: {}",
            res.body
        );
        assert_eq!(res.pointers(), [format!("/{field}")], "{}", res.body);
        assert_eq!(app.rows("member").await, 0, "{field}: nothing was created");
    }
    // The same body without them signs up; the account's own fields are its to give.
    let res = anon
        .post(
            "/auth/signup",
            json!({ "email": "m@example.com", "password": "correct horse", "display_name": "M", "bio": "hi" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(res.body["user"]["credits"], 0);
    assert_eq!(res.body["user"]["verified"], false);
    assert_eq!(res.body["user"]["bio"], "hi");
    // And the new account cannot write them afterwards either (the rules above).
    let id = res.body["user"]["id"].as_str().unwrap().to_string();
    let me = app.as_user(res.body["access_token"].as_str().unwrap());
    let res = me
        .patch(&format!("/api/members/{id}"), json!({ "credits": 5 }), &[])
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
}

async fn refresh_rotation_logout_and_rate_limits(db: Db) {
    let app = TestApp::root(db).await;
    let anon = app.anonymous();
    let res = anon
        .post(
            "/auth/signup",
            json!({ "email": "r@example.com", "password": "correct horse", "display_name": "R" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let first = res.body["refresh_token"].as_str().unwrap().to_string();

    // Each refresh token works once and is replaced.
    let res = anon
        .post("/auth/refresh", json!({ "refresh_token": first }))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let second = res.body["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    let access = res.body["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        app.as_user(&access).get("/api/users").await.status,
        StatusCode::OK
    );
    // Using the first again looks like theft: every session of the account closes.
    let res = anon
        .post("/auth/refresh", json!({ "refresh_token": first }))
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.body);
    assert!(
        res.body["detail"]
            .as_str()
            .unwrap()
            .contains("already used")
    );
    let res = anon
        .post("/auth/refresh", json!({ "refresh_token": second }))
        .await;
    assert_eq!(
        res.status,
        StatusCode::UNAUTHORIZED,
        "revoked with the family"
    );
    let res = anon
        .post("/auth/refresh", json!({ "refresh_token": "made-up" }))
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    let res = anon.post("/auth/refresh", json!({})).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Logout revokes.
    let res = anon
        .post(
            "/auth/login",
            json!({ "email": "r@example.com", "password": "correct horse" }),
        )
        .await;
    let third = res.body["refresh_token"].as_str().unwrap().to_string();
    let res = anon
        .post("/auth/logout", json!({ "refresh_token": third }))
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    let res = anon
        .post("/auth/refresh", json!({ "refresh_token": third }))
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);

    // Five wrong passwords lock the account for a while, even for the right one.
    for _ in 0..5 {
        let res = anon
            .post(
                "/auth/login",
                json!({ "email": "r@example.com", "password": "wrong horse" }),
            )
            .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    }
    let res = anon
        .post(
            "/auth/login",
            json!({ "email": "R@example.com", "password": "correct horse" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "{}", res.body);
    assert_eq!(res.header("content-type"), Some("application/problem+json"));
    assert!(res.body["retry_after"].as_u64().unwrap() > 0);
}

async fn anonymous_callers(db: Db) {
    let app = TestApp::root(db).await;
    app.create("skills", json!({ "name": "Rust" })).await;
    let anon = app.anonymous();
    let res = anon.get("/api/skills").await;
    assert_eq!(res.status, StatusCode::OK, "skills are public");
    assert_eq!(res.body["items"].as_array().unwrap().len(), 1);
    let res = anon.get("/api/projects").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.body);
    let res = anon.post("/api/skills", json!({ "name": "SQL" })).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.body);
    assert_eq!(app.rows("skill").await, 1);
}

struct Market {
    app: TestApp,
    client: TestAppRouter,
    client_id: String,
    other_client: TestAppRouter,
    contractor: TestAppRouter,
    contractor_id: String,
    other_contractor: TestAppRouter,
    org: String,
    draft: String,
    open: String,
}

async fn market(db: Db) -> Market {
    let app = TestApp::root(db).await;
    let (client_id, client) = account(&app, "client@acme.example", "client").await;
    let (_, other_client) = account(&app, "client@globex.example", "client").await;
    let (contractor_id, contractor) = account(&app, "dev@example.com", "contractor").await;
    let (_, other_contractor) = account(&app, "dev2@example.com", "contractor").await;
    let res = client
        .post(
            "/api/organizations",
            json!({ "name": "Acme", "slug": "acme", "members": [client_id] }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let org = res.id();
    let draft = client
        .post(
            "/api/projects",
            json!({ "title": "Secret plan", "client": org, "internal_notes": "do not share" }),
        )
        .await;
    assert_eq!(draft.status, StatusCode::CREATED, "{}", draft.body);
    // A published project is a fixture in a given workflow state: seeded.
    let open = app
        .seed(
            "projects",
            json!({ "title": "Public work", "client": org, "status": "open", "internal_notes": "budget is flexible" }),
        )
        .await;
    Market {
        draft: draft.id(),
        open,
        app,
        client,
        client_id,
        other_client,
        contractor,
        contractor_id,
        other_contractor,
        org,
    }
}

fn titles(body: &Value) -> Vec<String> {
    let mut t: Vec<String> = body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|p| p["title"].as_str().unwrap_or_default().to_string())
        .collect();
    t.sort();
    t
}

async fn projects_by_role(db: Db) {
    let m = market(db).await;
    // The contractor sees published projects only, without internal notes.
    let res = m.contractor.get("/api/projects?count=true").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(titles(&res.body), ["Public work"]);
    assert_eq!(res.body["total"], 1, "counts see only permitted rows");
    assert!(res.body["items"][0].get("internal_notes").is_none());
    assert_eq!(
        m.contractor
            .get(&format!("/api/projects/{}", m.draft))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let res = m.contractor.get(&format!("/api/projects/{}", m.open)).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.body.get("internal_notes").is_none());
    for bad in [
        "filter=internal_notes%20~%20%27x%27",
        "sort=internal_notes",
        "fields=title,internal_notes",
    ] {
        let res = m.contractor.get(&format!("/api/projects?{bad}")).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}: {}", res.body);
    }
    // Visible but not theirs: 403. Invisible: 404.
    let res = m
        .contractor
        .patch(
            &format!("/api/projects/{}", m.open),
            json!({ "title": "Mine now" }),
            &[],
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    assert_eq!(
        m.contractor
            .delete(&format!("/api/projects/{}", m.open))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        m.contractor
            .delete(&format!("/api/projects/{}", m.draft))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(m.app.rows("project").await, 2);

    // The client member sees both, with notes; another client sees only the published one.
    let res = m.client.get("/api/projects").await;
    assert_eq!(titles(&res.body), ["Public work", "Secret plan"]);
    assert!(
        res.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p.get("internal_notes").is_some())
    );
    let res = m.other_client.get("/api/projects").await;
    assert_eq!(titles(&res.body), ["Public work"]);
    assert_eq!(
        m.other_client
            .get(&format!("/api/projects/{}", m.draft))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // A client cannot create a project for an organization they are not in.
    let res = m
        .other_client
        .post(
            "/api/projects",
            json!({ "title": "Hijack", "client": m.org }),
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    assert_eq!(m.app.rows("project").await, 2);
    // The client field is fixed after creation; closed projects are not deleted.
    let res = m
        .client
        .patch(
            &format!("/api/projects/{}", m.open),
            json!({ "client": m.org }),
            &[],
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.error_for("/client")
            .contains("only be set when the record is created")
    );
    let res = m
        .client
        .fire(
            &format!("/api/projects/{}", m.open),
            "close",
            json!({ "reason": "Staffed elsewhere" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["status"], "closed");
    assert_eq!(
        m.client
            .delete(&format!("/api/projects/{}", m.open))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        m.client
            .delete(&format!("/api/projects/{}", m.draft))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
}

async fn applications_by_role(db: Db) {
    let m = market(db).await;
    let res = m
        .contractor
        .post(
            "/api/applications",
            json!({ "project": m.open, "cover_letter": "Hire me" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(
        res.body["applicant"], m.contractor_id,
        "the applicant is the caller"
    );
    let mine = res.id();
    // Not to a draft (not visible), not for someone else, not choosing the status.
    let res = m
        .contractor
        .post("/api/applications", json!({ "project": m.draft }))
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    let res = m
        .contractor
        .post(
            "/api/applications",
            json!({ "project": m.open, "applicant": m.client_id, "status": "accepted" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    let mut pointers = res.pointers();
    pointers.sort();
    assert_eq!(pointers, ["/applicant", "/status"]);
    let res = m
        .other_contractor
        .post("/api/applications", json!({ "project": m.open }))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    assert_eq!(m.app.rows("application").await, 2);

    // Each contractor sees their own; the client sees both; another client none.
    assert_eq!(
        m.contractor.get("/api/applications").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        m.other_contractor
            .get(&format!("/api/applications/{mine}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        m.client.get("/api/applications").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        m.other_client.get("/api/applications").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // The contractor edits the letter while the application is submitted; the client
    // shortlists it; then the proposal is fixed (`write.where`), and the status is
    // never the contractor's to write.
    let res = m
        .contractor
        .patch(
            &format!("/api/applications/{mine}"),
            json!({ "cover_letter": "Really" }),
            &[],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let res = m
        .client
        .fire(&format!("/api/applications/{mine}"), "shortlist", json!({}))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["status"], "shortlisted");
    let res = m
        .contractor
        .patch(
            &format!("/api/applications/{mine}"),
            json!({ "cover_letter": "Really, really" }),
            &[],
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert!(
        res.error_for("/cover_letter")
            .contains("only where `own and status = submitted`"),
        "{}",
        res.body
    );
    let res = m
        .contractor
        .patch(
            &format!("/api/applications/{mine}"),
            json!({ "status": "accepted" }),
            &[],
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.error_for("/status").contains("kept by the workflow"));
    let res = m
        .contractor
        .fire(&format!("/api/applications/{mine}"), "accept", json!({}))
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    assert_eq!(
        m.app.get(&format!("/api/applications/{mine}")).await.body["status"],
        "shortlisted"
    );

    // Expansions follow the related entity's policy: the contractor sees the open
    // project through the application, but the organization's projects only as far
    // as projects are visible to them.
    let res = m
        .contractor
        .get(&format!(
            "/api/applications/{mine}?expand=project.client.projects"
        ))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let project = &res.body["expand"]["project"];
    assert_eq!(res.body["project"], project["id"], "the ref stays its id");
    assert_eq!(project["title"], "Public work");
    assert!(project.is_object() && project.get("internal_notes").is_none());
    assert_eq!(project["client"], project["expand"]["client"]["id"]);
    assert!(project["expand"]["client"].get("projects").is_none());
    assert_eq!(
        titles(&json!({ "items": project["expand"]["client"]["expand"]["projects"] })),
        ["Public work"]
    );
    let res = m
        .client
        .get(&format!("/api/organizations/{}?expand=projects", m.org))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(
        titles(&json!({ "items": res.body["expand"]["projects"] })),
        ["Public work", "Secret plan"]
    );
}

async fn updates_may_not_move_rows_out_of_reach(db: Db) {
    let m = market(db).await;
    // A member may edit the organization, but not remove themselves from it: the
    // organization would leave their reach.
    let path = format!("/api/organizations/{}", m.org);
    let res = m
        .client
        .patch(&path, json!({ "website": "https://acme.example" }), &[])
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let res = m.client.patch(&path, json!({ "members": [] }), &[]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    let res = m.app.get(&path).await;
    assert_eq!(res.body["members"], json!([m.client_id]), "nothing changed");
    assert_eq!(res.body["version"], 2);
    let res = m
        .client
        .patch(&path, json!({ "verified": true }), &[])
        .await;
    assert_eq!(
        res.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "only admins verify"
    );
}

async fn users_and_hidden_fields(db: Db) {
    let m = market(db).await;
    let res = m.contractor.get("/api/users").await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        res.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u.get("email").is_none())
    );
    let res = m
        .contractor
        .get("/api/users?filter=email%20~%20%27acme%27")
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let res = m.app.get("/api/users?filter=email%20~%20%27acme%27").await;
    assert_eq!(res.body["items"].as_array().unwrap().len(), 1, "admins may");
    let me = format!("/api/users/{}", m.contractor_id);
    let res = m
        .contractor
        .patch(&me, json!({ "display_name": "Dev" }), &[])
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(
        res.body.get("email").is_none(),
        "responses to writes are redacted too"
    );
    let res = m
        .contractor
        .patch(&me, json!({ "role": "admin" }), &[])
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    let res = m
        .contractor
        .patch(
            &format!("/api/users/{}", m.client_id),
            json!({ "display_name": "X" }),
            &[],
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
}

fn sign(claims: Value, secret: &str, alg: Algorithm) -> String {
    encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn bad_tokens_are_401(db: Db) {
    let app = TestApp::root(db).await;
    let now = chrono::Utc::now().timestamp();
    let good = json!({ "sub": uuid::Uuid::now_v7().to_string(), "roles": ["admin"], "iss": "trellis-marketplace", "aud": "trellis", "exp": now + 600 });
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let header =
        |alg: &str| URL_SAFE_NO_PAD.encode(json!({ "alg": alg, "typ": "JWT" }).to_string());
    let payload = URL_SAFE_NO_PAD.encode(good.to_string());
    let mut no_exp = good.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            sign(
                with("exp", json!(now - 3600)),
                TEST_SECRET,
                Algorithm::HS256,
            ),
        ),
        (
            "not yet valid",
            sign(
                with("nbf", json!(now + 3600)),
                TEST_SECRET,
                Algorithm::HS256,
            ),
        ),
        (
            "wrong issuer",
            sign(
                with("iss", json!("someone-else")),
                TEST_SECRET,
                Algorithm::HS256,
            ),
        ),
        (
            "wrong audience",
            sign(
                with("aud", json!("other-api")),
                TEST_SECRET,
                Algorithm::HS256,
            ),
        ),
        (
            "wrong signature",
            sign(
                good.clone(),
                "another-secret-another-secret-0123456789",
                Algorithm::HS256,
            ),
        ),
        ("alg none", format!("{}.{payload}.", header("none"))),
        ("HS/RS confusion", {
            let t = sign(good.clone(), TEST_SECRET, Algorithm::HS256);
            let parts: Vec<&str> = t.split('.').collect();
            format!("{}.{}.{}", header("RS256"), parts[1], parts[2])
        }),
        (
            "HS384 instead of HS256",
            sign(good.clone(), TEST_SECRET, Algorithm::HS384),
        ),
        ("malformed", "not.a.token".to_string()),
        ("no expiry", sign(no_exp, TEST_SECRET, Algorithm::HS256)),
        // The project configures an issuer and an audience: a token must carry both.
        ("no issuer", {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove("iss");
            sign(c, TEST_SECRET, Algorithm::HS256)
        }),
        ("no audience", {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove("aud");
            sign(c, TEST_SECRET, Algorithm::HS256)
        }),
        ("no user id", {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove("sub");
            sign(c, TEST_SECRET, Algorithm::HS256)
        }),
    ];
    for (what, token) in cases {
        let res = app.as_user(&token).get("/api/skills").await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{what}: {}", res.body);
        assert_eq!(
            res.header("content-type"),
            Some("application/problem+json"),
            "{what}"
        );
        assert!(res.header("www-authenticate").is_some(), "{what}");
        if what.starts_with("no issuer") {
            assert!(
                res.body["detail"].as_str().unwrap().contains("`iss`"),
                "{}",
                res.body
            );
        }
        if what.starts_with("no audience") {
            assert!(
                res.body["detail"].as_str().unwrap().contains("`aud`"),
                "{}",
                res.body
            );
        }
        // Asked again (after the cache could have kept it): still refused.
        let again = app.as_user(&token).get("/api/skills").await;
        assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{what} again");
    }
    let res = app
        .anonymous()
        .call(
            axum::http::Method::GET,
            "/api/skills",
            None,
            &[("authorization", "Basic YTpi")],
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "not a bearer token");
    // The good token works, within the leeway too.
    assert_eq!(
        app.as_user(&sign(good.clone(), TEST_SECRET, Algorithm::HS256))
            .get("/api/skills")
            .await
            .status,
        StatusCode::OK
    );
    let res = app
        .as_user(&sign(
            with("exp", json!(now - 5)),
            TEST_SECRET,
            Algorithm::HS256,
        ))
        .get("/api/skills")
        .await;
    assert_eq!(
        res.status,
        StatusCode::OK,
        "5 s past expiry is within the 30 s leeway"
    );
}

/// Verified tokens are cached (runtime/auth.rs), but a cached token still expires on
/// time, and a reload (say, with another issuer or key) forgets every cached token.
async fn cached_tokens_expire_and_reloads_forget_them(db: Db) {
    let settings = |issuer: &str| {
        format!(
            "name: Tokens\nauth:\n  open_without_policies: true\n  jwt: {{ algorithm: HS256, secret_env: TOKEN_SECRET, issuer: {issuer}, leeway: 0 }}\n"
        )
    };
    let dir = common::project(&[
        ("trellis.yaml", &settings("one")),
        (
            "models/note.yaml",
            "entity: note\nfields:\n  title: { type: string }\n",
        ),
    ]);
    let app = TestApp::for_dir(db, dir.path()).await;
    let claims = |exp: i64| json!({ "sub": "u1", "roles": ["member"], "iss": "one", "exp": exp });
    let now = chrono::Utc::now().timestamp();
    let short = sign(claims(now + 2), TEST_SECRET, Algorithm::HS256);
    for _ in 0..3 {
        let res = app.as_user(&short).get("/api/notes").await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    }
    // Past its expiry (and the leeway of 0 s), the cached token is refused.
    while chrono::Utc::now().timestamp() <= now + 2 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let res = app.as_user(&short).get("/api/notes").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.body);
    assert_eq!(res.body["detail"], "the token has expired");

    let long = sign(claims(now + 600), TEST_SECRET, Algorithm::HS256);
    let res = app.as_user(&long).get("/api/notes").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    std::fs::write(dir.path().join("trellis.yaml"), settings("two")).unwrap();
    let res = app.post("/_/reload", json!({})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let res = app.as_user(&long).get("/api/notes").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.body);
    assert_eq!(res.body["detail"], "the token was issued by another issuer");
}

async fn fields_visible_on_some_records(db: Db) {
    let m = market(db).await;
    // Budgets: admins always, others while the project is open or when it is theirs.
    let res = m
        .client
        .patch(
            &format!("/api/projects/{}", m.open),
            json!({ "budget": "900" }),
            &[],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["budget"], "900.00");
    let res = m.contractor.get(&format!("/api/projects/{}", m.open)).await;
    assert_eq!(res.body["budget"], "900.00", "open: shown");
    let res = m
        .client
        .fire(&format!("/api/projects/{}", m.open), "review", json!({}))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["status"], "in_review");
    let res = m.contractor.get(&format!("/api/projects/{}", m.open)).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        res.body.get("budget").is_none(),
        "in review: hidden from contractors"
    );
    let res = m.client.get(&format!("/api/projects/{}", m.open)).await;
    assert_eq!(res.body["budget"], "900.00", "the owner still sees it");
    assert_eq!(
        m.app.get(&format!("/api/projects/{}", m.open)).await.body["budget"],
        "900.00"
    );
    // Lists too; and such a field cannot be filtered or sorted on.
    let res = m.contractor.get("/api/projects").await;
    assert!(res.body["items"][0].get("budget").is_none(), "{}", res.body);
    let res = m
        .contractor
        .get("/api/projects?filter=budget%20%3E%20100")
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let res = m.client.get("/api/projects?sort=budget").await;
    assert_eq!(
        res.status,
        StatusCode::BAD_REQUEST,
        "conditional for clients too"
    );
    assert_eq!(
        m.app.get("/api/projects?sort=budget").await.status,
        StatusCode::OK
    );
}

async fn explain_for_admins(db: Db) {
    let m = market(db).await;
    let q = |who: &str, roles: &str, action: &str, id: &str| {
        format!("/_/explain?entity=project&id={id}&action={action}&as={who}&roles={roles}")
    };
    // A contractor and a draft: no allow rule holds.
    let res = m
        .app
        .get(&q(&m.contractor_id, "contractor", "read", &m.draft))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["decision"], "deny");
    let rules = res.body["rules"].as_array().unwrap();
    let browse = rules
        .iter()
        .find(|r| r["name"] == "Signed-in people browse published projects")
        .unwrap();
    assert_eq!(browse["condition_holds"], false);
    assert_eq!(browse["condition"], "published");
    let admins = rules
        .iter()
        .find(|r| r["name"] == "Admins do everything")
        .unwrap();
    assert_eq!(admins["skipped"], "role");
    // Internal notes: shown to the owning organization's members (`read.where: mine`).
    assert_eq!(
        res.body["fields"]["internal_notes"],
        "hidden on this record"
    );
    assert_eq!(res.body["fields"]["budget"], "hidden on this record");
    // The client member: allowed by the members' rule.
    let res = m
        .app
        .get(&q(&m.client_id, "client", "update", &m.draft))
        .await;
    assert_eq!(res.body["decision"], "allow", "{}", res.body);
    assert!(
        res.body["reason"]
            .as_str()
            .unwrap()
            .contains("Client members manage")
    );
    // Deny wins: closing the project, then deleting.
    let res = m
        .client
        .fire(
            &format!("/api/projects/{}", m.open),
            "close",
            json!({ "reason": "Staffed elsewhere" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let res = m
        .app
        .get(&q(&m.client_id, "client", "delete", &m.open))
        .await;
    assert_eq!(res.body["decision"], "deny");
    assert!(
        res.body["reason"]
            .as_str()
            .unwrap()
            .contains("Closed projects are not deleted")
    );
    // Only administrators may ask.
    assert_eq!(
        m.contractor
            .get(&q(&m.contractor_id, "contractor", "read", &m.draft))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        m.app
            .anonymous()
            .get(&q(&m.contractor_id, "contractor", "read", &m.draft))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        m.app.get("/_/explain?entity=project").await.status,
        StatusCode::BAD_REQUEST
    );
}

async fn asymmetric_keys_and_key_sets(db: Db) {
    let keys = common::repo_root().join("tests/fixtures/keys");
    let read = |f: &str| std::fs::read(keys.join(f)).unwrap();
    let model = ("models/note.yaml", "entity: note\nfields:\n  body: text\n");
    let policy = (
        "policies/note.yaml",
        "entity: note\nrules:\n  - roles: [authenticated]\n    allow: [list]\n",
    );
    let now = chrono::Utc::now().timestamp();
    let claims = json!({ "sub": "u1", "exp": now + 600 });
    for (setting, alg, private, public, kid) in [
        (
            "algorithm: RS256, public_key_file: key.pem",
            Algorithm::RS256,
            "rsa.key.pem",
            "rsa.pub.pem",
            None,
        ),
        (
            "algorithm: ES256, public_key_file: key.pem",
            Algorithm::ES256,
            "ec.key.pem",
            "ec.pub.pem",
            None,
        ),
        (
            "algorithm: RS256, jwks_file: jwks.json",
            Algorithm::RS256,
            "rsa.key.pem",
            "rsa.pub.pem",
            Some("test-rsa-1"),
        ),
    ] {
        let settings = format!("auth:\n  jwt: {{ {setting} }}\n");
        let dir = common::project(&[model, policy, ("trellis.yaml", settings.as_str())]);
        std::fs::write(dir.path().join("key.pem"), read(public)).unwrap();
        std::fs::write(dir.path().join("jwks.json"), read("jwks.json")).unwrap();
        let app = TestApp::for_dir(db, dir.path()).await;
        let key = if alg == Algorithm::RS256 {
            EncodingKey::from_rsa_pem(&read(private)).unwrap()
        } else {
            EncodingKey::from_ec_pem(&read(private)).unwrap()
        };
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        let good = encode(&header, &claims, &key).unwrap();
        assert_eq!(
            app.as_user(&good).get("/api/notes").await.status,
            StatusCode::OK,
            "{setting}"
        );
        assert_eq!(
            app.anonymous().get("/api/notes").await.status,
            StatusCode::UNAUTHORIZED
        );
        // Key confusion: an HS256 token "signed" with the public key as the secret.
        let confused = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&read(public)),
        )
        .unwrap();
        assert_eq!(
            app.as_user(&confused).get("/api/notes").await.status,
            StatusCode::UNAUTHORIZED,
            "{setting}"
        );
        // Another key.
        let other = if alg == Algorithm::RS256 {
            "ec.key.pem"
        } else {
            "rsa.key.pem"
        };
        let other_alg = if alg == Algorithm::RS256 {
            Algorithm::ES256
        } else {
            Algorithm::RS256
        };
        let other_key = if other_alg == Algorithm::RS256 {
            EncodingKey::from_rsa_pem(&read(other)).unwrap()
        } else {
            EncodingKey::from_ec_pem(&read(other)).unwrap()
        };
        let wrong = encode(&Header::new(other_alg), &claims, &other_key).unwrap();
        assert_eq!(
            app.as_user(&wrong).get("/api/notes").await.status,
            StatusCode::UNAUTHORIZED,
            "{setting}"
        );
        if kid.is_some() {
            let mut h = Header::new(alg);
            h.kid = Some("unknown-key".into());
            let unknown = encode(&h, &claims, &key).unwrap();
            let res = app.as_user(&unknown).get("/api/notes").await;
            assert_eq!(res.status, StatusCode::UNAUTHORIZED);
            assert!(res.body["detail"].as_str().unwrap().contains("kid"));
        }
    }
}

both!(
    asymmetric_keys_and_key_sets,
    explain_for_admins,
    fields_visible_on_some_records,
    refresh_rotation_logout_and_rate_limits,
    signup_and_login,
    signup_follows_field_write_rules,
    anonymous_callers,
    projects_by_role,
    applications_by_role,
    updates_may_not_move_rows_out_of_reach,
    users_and_hidden_fields,
    bad_tokens_are_401,
    cached_tokens_expire_and_reloads_forget_them,
);
