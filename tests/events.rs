//! The change feed (`GET /api/{plural}/events`), in-process, on both databases:
//! per-subscriber policies and filters, hidden fields, records moving in and out of
//! view, replay with `Last-Event-ID`, retention, and the log's transaction.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Db, TestApp};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const FILES: &[(&str, &str)] = &[
    (
        "trellis.yaml",
        "auth:\n  jwt: { algorithm: HS256, secret_env: S }\n",
    ),
    (
        "models/task.yaml",
        "entity: task\nfields:\n  title: { type: string, required: true }\n  owner: string\n  secret: string\n  done: { type: boolean, default: false }\n",
    ),
    (
        "policies/task.yaml",
        "entity: task\nrules:\n  - roles: [admin]\n    allow: [\"*\"]\n  - roles: [member]\n    allow: [list, read]\n    where: owner = user.id\nfields:\n  secret: { read: { roles: [admin] } }\n",
    ),
];

/// One server-sent event.
#[derive(Debug, Clone)]
struct Sse {
    id: Option<String>,
    event: String,
    data: Value,
}

/// An open event stream.
struct Stream {
    body: Body,
    buf: String,
}

impl Stream {
    async fn open(
        app: &TestApp,
        token: Option<&str>,
        query: &str,
        last: Option<&str>,
    ) -> Result<Stream, (StatusCode, Value)> {
        Stream::open_path(app, &format!("/api/tasks/events{query}"), token, last).await
    }

    async fn open_path(
        app: &TestApp,
        path: &str,
        token: Option<&str>,
        last: Option<&str>,
    ) -> Result<Stream, (StatusCode, Value)> {
        let mut req = Request::get(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(l) = last {
            req = req.header("last-event-id", l);
        }
        let res = app
            .client
            .router
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        if res.status() != StatusCode::OK {
            let status = res.status();
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            return Err((
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            ));
        }
        assert_eq!(
            res.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Ok(Stream {
            body: res.into_body(),
            buf: String::new(),
        })
    }

    /// An administrator's stream of another collection.
    async fn open_at(app: &TestApp, plural: &str, last: Option<&str>) -> Stream {
        let token = app.client.token.as_deref();
        Stream::open_path(app, &format!("/api/{plural}/events"), token, last)
            .await
            .unwrap()
    }

    /// The next event (comments skipped); panics after 10 s.
    async fn next(&mut self) -> Sse {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = Sse {
                    id: None,
                    event: "message".into(),
                    data: Value::Null,
                };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        ev.id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        ev.event = v.trim().to_string();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("data:") {
                        ev.data = serde_json::from_str(v.trim()).unwrap();
                        any = true;
                    }
                }
                if any {
                    return ev;
                }
                continue;
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), self.body.frame())
                .await
                .expect("an event within 10 s")
                .expect("the stream is open")
                .expect("a frame");
            if let Ok(data) = frame.into_data() {
                self.buf.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }

    /// Asserts that nothing arrives for a while.
    async fn quiet(&mut self) {
        let got = tokio::time::timeout(Duration::from_millis(700), self.next()).await;
        assert!(got.is_err(), "unexpected event: {:?}", got.ok());
    }
}

async fn feed_follows_policies_and_filters(db: Db) {
    let app = TestApp::with_files(db, FILES).await;
    let member = app.token("u1", &["member"]);
    let outsider = app.token("u3", &["guest"]);

    // Refusals are problems, before any stream opens.
    let (status, _) = Stream::open(&app, None, "", None).await.err().unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = Stream::open(&app, Some(&outsider), "", None)
        .await
        .err()
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = Stream::open(&app, Some(&member), "?filter=dne%20%3D%20false", None)
        .await
        .err()
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["parameter"], "filter");
    let (status, body) = Stream::open(&app, Some(&member), "?sort=title", None)
        .await
        .err()
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = Stream::open(&app, Some(&member), "", Some("abc"))
        .await
        .err()
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Hidden fields cannot be used to probe.
    let (status, _) = Stream::open(&app, Some(&member), "?filter=secret%20%3D%20'x'", None)
        .await
        .err()
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let mut all = Stream::open(&app, Some(&member), "", None).await.unwrap();
    let mut open = Stream::open(&app, Some(&member), "?filter=done%20%3D%20false", None)
        .await
        .unwrap();
    let mut admin = Stream::open(&app, app.client.token.as_deref(), "", None)
        .await
        .unwrap();

    let a = app
        .create(
            "tasks",
            json!({ "title": "A", "owner": "u1", "secret": "s" }),
        )
        .await;
    let b = app
        .create(
            "tasks",
            json!({ "title": "B", "owner": "u2", "secret": "s" }),
        )
        .await;

    let first = all.next().await;
    assert_eq!(first.event, "created");
    assert_eq!(first.data["id"], a);
    assert_eq!(first.data["record"]["title"], "A");
    assert!(
        first.data["record"].get("secret").is_none(),
        "hidden field sent"
    );
    let ev = open.next().await;
    assert_eq!((ev.event.as_str(), &ev.data["id"]), ("created", &json!(a)));
    // The administrator sees both, with every field.
    let ev = admin.next().await;
    assert_eq!((ev.event.as_str(), &ev.data["id"]), ("created", &json!(a)));
    assert_eq!(ev.data["record"]["secret"], "s");
    let ev = admin.next().await;
    assert_eq!((ev.event.as_str(), &ev.data["id"]), ("created", &json!(b)));

    // Leaves the filter's view, but not the policy's.
    let res = app
        .patch(&format!("/api/tasks/{a}"), json!({ "done": true }), &[])
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let ev = all.next().await;
    assert_eq!(
        (ev.event.as_str(), &ev.data["record"]["done"]),
        ("updated", &json!(true))
    );
    let ev = open.next().await;
    assert_eq!((ev.event.as_str(), &ev.data["id"]), ("removed", &json!(a)));
    assert!(ev.data.get("record").is_none());

    // Leaves the policy's view, then comes back.
    app.patch(&format!("/api/tasks/{a}"), json!({ "owner": "u2" }), &[])
        .await;
    let ev = all.next().await;
    assert_eq!((ev.event.as_str(), &ev.data["id"]), ("removed", &json!(a)));
    app.patch(&format!("/api/tasks/{a}"), json!({ "owner": "u1" }), &[])
        .await;
    let ev = all.next().await;
    assert_eq!((ev.event.as_str(), &ev.data["id"]), ("updated", &json!(a)));

    // Deletions: of a visible record, and of one never visible (nothing).
    assert_eq!(
        app.delete(&format!("/api/tasks/{a}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete(&format!("/api/tasks/{b}")).await.status,
        StatusCode::NO_CONTENT
    );
    let ev = all.next().await;
    assert_eq!((ev.event.as_str(), &ev.data["id"]), ("deleted", &json!(a)));
    let c = app
        .create("tasks", json!({ "title": "C", "owner": "u1" }))
        .await;
    let last_live = all.next().await;
    assert_eq!(
        (last_live.event.as_str(), &last_live.data["id"]),
        ("created", &json!(c))
    );
    open.next().await; // C, undone
    open.quiet().await;

    // Reconnecting after the first event replays the rest, in order, then goes live.
    let mut again = Stream::open(&app, Some(&member), "", first.id.as_deref())
        .await
        .unwrap();
    let mut replayed = Vec::new();
    loop {
        let ev = again.next().await;
        let done = ev.data["id"] == c;
        replayed.push(ev);
        if done {
            break;
        }
    }
    // Replayed events carry records as they are now: A is gone, so its updates
    // arrive as removals (or not at all when A was out of view), and the end state is
    // the same as the live stream's.
    let kinds: Vec<&str> = replayed.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["removed", "removed", "deleted", "created"]);
    let ids: Vec<i64> = replayed
        .iter()
        .map(|e| e.id.as_deref().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert!(ids[0] > first.id.as_deref().unwrap().parse::<i64>().unwrap());
    assert_eq!(replayed.last().unwrap().id, last_live.id);
    let d = app
        .create("tasks", json!({ "title": "D", "owner": "u1" }))
        .await;
    let ev = again.next().await;
    assert_eq!((ev.event.as_str(), &ev.data["id"]), ("created", &json!(d)));

    // Past the retention: the client is told to reload.
    let far = chrono::Utc::now().timestamp_millis() + 60_000;
    assert!(app.store.prune_changes(far).await.unwrap() >= 9);
    assert_eq!(app.rows("_trellis_changes").await, 0);
    let mut late = Stream::open(&app, Some(&member), "", first.id.as_deref())
        .await
        .unwrap();
    let ev = late.next().await;
    assert_eq!(ev.event, "reset");
    assert!(ev.data["reason"].as_str().unwrap().contains("reload"));
}
both!(feed_follows_policies_and_filters);

async fn the_log_is_written_with_the_change(db: Db) {
    let app = TestApp::with_files(db, FILES).await;
    let before = app.rows("_trellis_changes").await;
    // A batch that fails halfway writes neither records nor log rows.
    let res = app
        .post(
            "/api/batch",
            json!({ "operations": [
                { "op": "create", "entity": "task", "data": { "title": "kept?" } },
                { "op": "create", "entity": "task", "data": { "nope": 1 } }
            ] }),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(app.rows("task").await, 0);
    assert_eq!(app.rows("_trellis_changes").await, before);
    // A refused write writes no log row either.
    let member = app.as_user(&app.token("u1", &["member"]));
    let res = member.post("/api/tasks", json!({ "title": "mine" })).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(app.rows("_trellis_changes").await, before);
    // Each successful write adds exactly one.
    let id = app.create("tasks", json!({ "title": "T" })).await;
    app.patch(&format!("/api/tasks/{id}"), json!({ "title": "U" }), &[])
        .await;
    app.delete(&format!("/api/tasks/{id}")).await;
    assert_eq!(app.rows("_trellis_changes").await, before + 3);
    let log = app.store.changes_after(0, Some("task"), 10).await.unwrap();
    let kinds: Vec<&str> = log.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(kinds, ["created", "updated", "deleted"]);
    assert!(log[0].before.is_none());
    assert_eq!(log[1].before_text("title").as_deref(), Some("T"));
    assert_eq!(log[2].before_text("title").as_deref(), Some("U"));
}
both!(the_log_is_written_with_the_change);

async fn a_slow_subscriber_is_dropped_with_a_reason(db: Db) {
    let app = TestApp::with_files(db, FILES).await;
    let mut slow = Stream::open(&app, app.client.token.as_deref(), "", None)
        .await
        .unwrap();
    // More changes than the feed buffers, while the client reads nothing.
    for round in 0..12 {
        let ops: Vec<Value> = (0..100)
            .map(|i| json!({ "op": "create", "entity": "task", "data": { "title": format!("t{round}-{i}") } }))
            .collect();
        let res = app.post("/api/batch", json!({ "operations": ops })).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    }
    // Let the feed read the whole log meanwhile.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // What was queued for it arrives, then the reason it was dropped, then the end.
    let mut created = 0;
    loop {
        let ev = slow.next().await;
        if ev.event == "dropped" {
            assert!(
                ev.data["reason"]
                    .as_str()
                    .unwrap()
                    .contains("Last-Event-ID")
            );
            break;
        }
        assert_eq!(ev.event, "created");
        created += 1;
        assert!(created < 1200, "never dropped");
    }
    assert!(
        created < 1024,
        "{created} events were buffered for one client"
    );
    let end = tokio::time::timeout(Duration::from_secs(5), slow.body.frame()).await;
    assert!(matches!(end, Ok(None)), "the stream ends after `dropped`");
}
both!(a_slow_subscriber_is_dropped_with_a_reason);

const THINGS: &[(&str, &str)] = &[
    (
        "trellis.yaml",
        "auth:\n  jwt: { algorithm: HS256, secret_env: S }\n",
    ),
    (
        "models/note.yaml",
        "entity: note\nfields:\n  title: { type: string, required: true }\n  thing: { type: ref, to: thing }\n  vault: { type: ref, to: vault }\n",
    ),
    (
        "models/thing.yaml",
        "entity: thing\nfields:\n  word: string\n  shared: { type: boolean, default: false }\n",
    ),
    (
        "models/vault.yaml",
        "entity: vault\nfields:\n  word: string\n",
    ),
    (
        "policies/note.yaml",
        "entity: note\nrules:\n  - { roles: [admin], allow: [\"*\"] }\n  - { roles: [member], allow: [list, read] }\n",
    ),
    (
        "policies/thing.yaml",
        "entity: thing\nrules:\n  - { roles: [admin], allow: [\"*\"] }\n  - { roles: [member], allow: [list, read], where: shared }\n",
    ),
    (
        "policies/vault.yaml",
        "entity: vault\nrules:\n  - { roles: [admin], allow: [\"*\"] }\n",
    ),
];

/// A subscriber's filter reaches related records only where the subscriber may
/// read them: an event cannot tell what a hidden record holds.
async fn feed_filters_see_only_readable_relations(db: Db) {
    let app = TestApp::with_files(db, THINGS).await;
    let member = app.token("u1", &["member"]);
    // No read permission at all on the target: refused, naming the relation.
    let (status, body) = Stream::open_path(
        &app,
        "/api/notes/events?filter=vault.word%20%3D%20'x'",
        Some(&member),
        None,
    )
    .await
    .err()
    .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["parameter"], "filter");
    assert!(
        body["detail"].as_str().unwrap().contains("`vault`"),
        "{body}"
    );
    let mut stream = Stream::open_path(
        &app,
        "/api/notes/events?filter=thing.word%20%3D%20'plan'",
        Some(&member),
        None,
    )
    .await
    .unwrap();
    let hidden = app
        .create("things", json!({ "word": "plan", "shared": false }))
        .await;
    let shared = app
        .create("things", json!({ "word": "plan", "shared": true }))
        .await;
    app.create(
        "notes",
        json!({ "title": "through hidden", "thing": hidden }),
    )
    .await;
    let seen = app
        .create(
            "notes",
            json!({ "title": "through shared", "thing": shared }),
        )
        .await;
    let ev = stream.next().await;
    assert_eq!(
        (ev.event.as_str(), &ev.data["id"]),
        ("created", &json!(seen))
    );
    stream.quiet().await;
}

both!(feed_filters_see_only_readable_relations);

async fn what_the_database_deletes_along_is_logged(db: Db) {
    let app = TestApp::with_files(
        db,
        &[
            ("models/folder.yaml", "entity: folder\nfields:\n  name: string\n"),
            (
                "models/doc.yaml",
                "entity: doc\nfields:\n  name: string\n  folder: { type: ref, to: folder, on_delete: cascade }\n",
            ),
            (
                "models/page.yaml",
                "entity: page\nfields:\n  name: string\n  doc: { type: ref, to: doc, on_delete: cascade }\n",
            ),
            (
                "models/link.yaml",
                "entity: link\nfields:\n  name: string\n  folder: { type: ref, to: folder, on_delete: set_null }\n",
            ),
        ],
    )
    .await;
    let folder = app.create("folders", json!({ "name": "f" })).await;
    let doc = app
        .create("docs", json!({ "name": "d", "folder": folder }))
        .await;
    let page = app
        .create("pages", json!({ "name": "p", "doc": doc }))
        .await;
    let link = app
        .create("links", json!({ "name": "l", "folder": folder }))
        .await;
    let other = app.create("folders", json!({ "name": "other" })).await;
    let kept = app
        .create("docs", json!({ "name": "kept", "folder": other }))
        .await;
    let mut pages = Stream::open_at(&app, "pages", None).await;
    let mut links = Stream::open_at(&app, "links", None).await;

    let after = app.store.last_change().await.unwrap();
    let res = app.delete(&format!("/api/folders/{folder}")).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert_eq!(app.rows("page").await, 0);
    assert_eq!(app.rows("doc").await, 1);
    let log = app.store.changes_after(after, None, 100).await.unwrap();
    let mut got: Vec<(String, String, String)> = log
        .iter()
        .map(|c| {
            (
                c.entity.clone(),
                c.kind.as_str().to_string(),
                c.record_id.to_string(),
            )
        })
        .collect();
    got.sort();
    let mut want = vec![
        ("doc".to_string(), "deleted".to_string(), doc.clone()),
        ("folder".to_string(), "deleted".to_string(), folder.clone()),
        ("link".to_string(), "updated".to_string(), link.clone()),
        ("page".to_string(), "deleted".to_string(), page.clone()),
    ];
    want.sort();
    assert_eq!(got, want);
    assert!(!got.iter().any(|(_, _, id)| *id == kept));

    let ev = pages.next().await;
    assert_eq!(
        (ev.event.as_str(), &ev.data["id"]),
        ("deleted", &json!(page))
    );
    let ev = links.next().await;
    assert_eq!(
        (ev.event.as_str(), &ev.data["id"]),
        ("updated", &json!(link))
    );
    assert_eq!(ev.data["record"]["folder"], Value::Null);
}
both!(what_the_database_deletes_along_is_logged);

/// The log is written by the database's own triggers, so a change made beside
/// Trellis (psql, another program) reaches the feed too, with its old row.
async fn writes_made_beside_trellis_reach_the_feed(db: Db) {
    let app = TestApp::with_files(db, FILES).await;
    let member = app.token("u1", &["member"]);
    let id = app
        .create("tasks", json!({ "title": "T", "owner": "u1" }))
        .await;
    let mut mine = Stream::open(&app, Some(&member), "?filter=done%20%3D%20false", None)
        .await
        .unwrap();
    let update =
        format!("UPDATE task SET title = 'from psql', version = version + 1 WHERE id = '{id}'");
    let done = format!("UPDATE task SET done = true WHERE id = '{id}'");
    let delete = format!("DELETE FROM task WHERE id = '{id}'");
    raw(&app, update).await;
    let ev = mine.next().await;
    assert_eq!(ev.event, "updated");
    assert_eq!(ev.data["record"]["title"], "from psql");
    // This change takes it out of the filter: the old row said `done = false`.
    raw(&app, done).await;
    let ev = mine.next().await;
    assert_eq!((ev.event.as_str(), &ev.data["id"]), ("removed", &json!(id)));
    raw(&app, delete).await;
    // Deleted while out of view: nothing to tell this subscriber.
    let log = app.store.changes_after(0, Some("task"), 10).await.unwrap();
    let kinds: Vec<(&str, Option<String>)> = log
        .iter()
        .map(|c| (c.kind.as_str(), c.before_text("title")))
        .collect();
    assert_eq!(
        kinds,
        [
            ("created", None),
            ("updated", Some("T".to_string())),
            ("updated", Some("from psql".to_string())),
            ("deleted", Some("from psql".to_string())),
        ]
    );
}
both!(writes_made_beside_trellis_reach_the_feed);

/// Runs a statement on the app's database over a connection of its own.
async fn raw(app: &TestApp, sql: String) {
    match app.db.db {
        Db::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.db.url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        Db::Postgres => {
            let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    }
}

/// A member sees its own tasks; `secret` only on done ones (a conditional field rule).
const SHARED_VIEWS: &[(&str, &str)] = &[
    (
        "trellis.yaml",
        "auth:\n  jwt: { algorithm: HS256, secret_env: S }\n  claims: [team]\n",
    ),
    (
        "models/task.yaml",
        "entity: task\nfields:\n  title: { type: string, required: true }\n  owner: string\n  secret: string\n  done: { type: boolean, default: false }\n",
    ),
    (
        "policies/task.yaml",
        "entity: task\nrules:\n  - roles: [admin]\n    allow: [\"*\"]\n  - roles: [member]\n    allow: [list, read]\n    where: owner = user.id\nfields:\n  secret: { read: { roles: [admin], where: done = true } }\n",
    ),
];

/// Subscribers with the same view (rules and filter compiling to the same SQL, the
/// same hidden fields) share each change's evaluation; the key tells views apart by
/// every claim a rule uses, and no event reaches a subscriber of another view.
async fn subscribers_of_one_view_share_events_and_see_only_theirs(db: Db) {
    use trellis::engine::access::Principal;

    let app = TestApp::with_files(db, SHARED_VIEWS).await;
    let engine = app.state.engine.load_full();
    let e = engine.entity("task").unwrap();
    let claims = |team: &str| {
        let mut m = serde_json::Map::new();
        m.insert("team".into(), json!(team));
        m
    };
    let key = |who: &Principal, filter: Option<&str>| {
        let hidden = engine.access.hidden_everywhere(who);
        let filter =
            filter.map(|f| trellis::engine::query::filter(&engine, e, f, &hidden, who).unwrap());
        app.store.feed_key(&engine, e, filter.as_ref(), who)
    };
    let u1 = Principal::user("u1", &["member"], claims("red"));
    let u1_blue = Principal::user("u1", &["member"], claims("blue"));
    let u2 = Principal::user("u2", &["member"], claims("red"));
    let boss = Principal::user("boss", &["admin"], claims("red"));
    let chief = Principal::user("chief", &["admin"], claims("blue"));
    let guest = Principal::user("g", &["guest"], claims("red"));
    // A claim no rule uses does not split a view; the user id the rule uses does.
    assert_eq!(key(&u1, None), key(&u1_blue, None));
    assert_ne!(key(&u1, None), key(&u2, None));
    assert_eq!(key(&boss, None), key(&chief, None));
    assert_ne!(key(&boss, None), key(&u1, None));
    assert_ne!(key(&boss, None), key(&boss, Some("title = 'A'")));
    assert_ne!(
        key(&boss, Some("title = 'A'")),
        key(&boss, Some("title = 'B'"))
    );
    assert_eq!(key(&guest, None), "denied");

    let t1 = app.token("u1", &["member"]);
    let t2 = app.token("u2", &["member"]);
    let boss = app.token("boss", &["admin"]);
    let chief = app.token("chief", &["admin"]);
    let mut u1_a = Stream::open(&app, Some(&t1), "", None).await.unwrap();
    let mut u1_b = Stream::open(&app, Some(&t1), "", None).await.unwrap();
    let mut u2_s = Stream::open(&app, Some(&t2), "", None).await.unwrap();
    let mut boss_s = Stream::open(&app, Some(&boss), "", None).await.unwrap();
    let mut chief_s = Stream::open(&app, Some(&chief), "", None).await.unwrap();
    let mut only_a = Stream::open(&app, Some(&chief), "?filter=title%20%3D%20'A'", None)
        .await
        .unwrap();

    let a = app
        .create(
            "tasks",
            json!({ "title": "A", "owner": "u1", "secret": "s" }),
        )
        .await;
    let b = app
        .create(
            "tasks",
            json!({ "title": "B", "owner": "u2", "secret": "t" }),
        )
        .await;
    // The two streams of u1 get the same event, without the secret (not done).
    let (x, y) = (u1_a.next().await, u1_b.next().await);
    assert_eq!((x.event.as_str(), &x.data["id"]), ("created", &json!(a)));
    assert_eq!(x.data, y.data);
    assert_eq!(x.id, y.id);
    assert!(x.data["record"].get("secret").is_none(), "{}", x.data);
    // u2 gets only its own task.
    let ev = u2_s.next().await;
    assert_eq!((ev.event.as_str(), &ev.data["id"]), ("created", &json!(b)));
    assert!(ev.data["record"].get("secret").is_none());
    // Both administrators (one view) see both, with the secret.
    for s in [&mut boss_s, &mut chief_s] {
        let ev = s.next().await;
        assert_eq!(
            (ev.data["id"].clone(), ev.data["record"]["secret"].clone()),
            (json!(a), json!("s"))
        );
        let ev = s.next().await;
        assert_eq!(
            (ev.data["id"].clone(), ev.data["record"]["secret"].clone()),
            (json!(b), json!("t"))
        );
    }
    let ev = only_a.next().await;
    assert_eq!((ev.event.as_str(), &ev.data["id"]), ("created", &json!(a)));

    // Done: the secret comes into u1's view, on both of its streams.
    app.patch(&format!("/api/tasks/{a}"), json!({ "done": true }), &[])
        .await;
    for s in [&mut u1_a, &mut u1_b] {
        let ev = s.next().await;
        assert_eq!((ev.event.as_str(), &ev.data["id"]), ("updated", &json!(a)));
        assert_eq!(ev.data["record"]["secret"], "s");
    }
    let ev = only_a.next().await;
    assert_eq!((ev.event.as_str(), &ev.data["id"]), ("updated", &json!(a)));
    // Nothing about A reached u2, nothing about B reached u1 or the filtered stream.
    u1_a.quiet().await;
    u1_b.quiet().await;
    u2_s.quiet().await;
    only_a.quiet().await;
}
both!(subscribers_of_one_view_share_events_and_see_only_theirs);

/// A write answered by this process wakes the poller: with an interval of an hour,
/// its subscribers still hear of it at once. A change made beside Trellis waits for
/// the interval, or for the next write of this process, and then arrives first.
async fn this_process_writes_wake_the_feed(db: Db) {
    let mut app = TestApp::with_files(db, FILES).await;
    let mut state = app.state.clone();
    state.set_feed(trellis::runtime::Feed::with_interval(
        app.store.clone(),
        Duration::from_secs(3600),
    ));
    let token = app.client.token.clone();
    app.client = common::TestAppRouter::new(trellis::http::router(state)).with_token(token);
    let member = app.token("u1", &["member"]);
    let mut mine = Stream::open(&app, Some(&member), "", None).await.unwrap();
    let first = app
        .create("tasks", json!({ "title": "A", "owner": "u1" }))
        .await;
    let ev = mine.next().await;
    assert_eq!(
        (ev.event.as_str(), &ev.data["id"]),
        ("created", &json!(first))
    );
    // Beside Trellis: nobody wakes the poller.
    raw(
        &app,
        format!("UPDATE task SET title = 'from psql', version = version + 1 WHERE id = '{first}'"),
    )
    .await;
    mine.quiet().await;
    // The next write through the API brings both, in the order they were made.
    let second = app
        .create("tasks", json!({ "title": "B", "owner": "u1" }))
        .await;
    let ev = mine.next().await;
    assert_eq!(
        (ev.event.as_str(), &ev.data["id"]),
        ("updated", &json!(first))
    );
    assert_eq!(ev.data["record"]["title"], "from psql");
    let ev = mine.next().await;
    assert_eq!(
        (ev.event.as_str(), &ev.data["id"]),
        ("created", &json!(second))
    );
}
both!(this_process_writes_wake_the_feed);
