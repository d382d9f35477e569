//! Shared test harness: a Trellis app on a fresh SQLite file or a fresh PostgreSQL
//! schema, called through the real router.
#![allow(dead_code)]

pub mod process;

use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use trellis::engine::Engine;
use trellis::http::{AppState, Auth, router};
use trellis::spec;
use trellis::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Generates one test per database from an `async fn(Db)`.
#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::common::Db::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::common::Db::Postgres).await
                }
            }
        )*
    };
}

/// The PostgreSQL server the tests use. Missing is a failure, never a skip.
pub fn pg_admin_url() -> String {
    match std::env::var("TRELLIS_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "TRELLIS_TEST_PG_URL is not set: the PostgreSQL half of the tests cannot run. \
             Run the suite with `bash .ci/run`, which starts a throwaway PostgreSQL, \
             or point TRELLIS_TEST_PG_URL at a server you own."
        ),
    }
}

/// A fresh, empty database: a temp SQLite file, or a new schema on the test server.
pub struct TestDb {
    pub url: String,
    pub db: Db,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(db: Db) -> TestDb {
        match db {
            Db::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("data.db").display());
                TestDb {
                    url,
                    db,
                    _dir: Some(dir),
                }
            }
            Db::Postgres => {
                let admin = pg_admin_url();
                let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
                let pool = sqlx::PgPool::connect(&admin)
                    .await
                    .expect("connect to the test PostgreSQL");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&pool)
                    .await
                    .expect("create a test schema");
                pool.close().await;
                let sep = if admin.contains('?') { '&' } else { '?' };
                let url = format!("{admin}{sep}options=-c%20search_path%3D{schema}");
                TestDb {
                    url,
                    db,
                    _dir: None,
                }
            }
        }
    }
}

/// A project folder written from (path, text) pairs.
pub fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, text) in files {
        let full = dir.path().join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, text).expect("write");
    }
    dir
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The JWT secret the tests give to projects that ask for one.
pub const TEST_SECRET: &str = "test-secret-test-secret-test-secret-0123456789";

/// Calls a router as a client would, with a default bearer token (or none).
#[derive(Clone)]
pub struct TestAppRouter {
    pub router: Router,
    pub token: Option<String>,
}

pub struct TestApp {
    pub client: TestAppRouter,
    pub store: Store,
    pub state: AppState,
    pub db: TestDb,
    _project: Option<tempfile::TempDir>,
}

/// A response, with the body parsed as JSON (Null when empty).
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn id(&self) -> String {
        self.body["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id in {}", self.body))
            .to_string()
    }

    /// The pointers of a problem's `errors`.
    pub fn pointers(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e["pointer"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn error_for(&self, pointer: &str) -> String {
        self.body["errors"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["pointer"] == pointer))
            .and_then(|e| e["detail"].as_str())
            .unwrap_or_else(|| panic!("no error for {pointer} in {}", self.body))
            .to_string()
    }
}

impl TestAppRouter {
    pub fn new(router: Router) -> TestAppRouter {
        TestAppRouter {
            router,
            token: None,
        }
    }

    /// The same app, calling with this token (or none).
    pub fn with_token(&self, token: Option<String>) -> TestAppRouter {
        TestAppRouter {
            router: self.router.clone(),
            token,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(path);
        let has_body = body.is_some();
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(token) = &self.token
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        if has_body
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(body.map(Body::from).unwrap_or_else(Body::empty))
            .expect("request");
        let res = self.router.clone().oneshot(req).await.expect("response");
        let status = res.status();
        let headers = res.headers().clone();
        let raw = res
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        let body = if raw.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&raw)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()))
        };
        Resp {
            status,
            headers,
            body,
            raw,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(body.to_string().into_bytes()), &[])
            .await
    }

    /// Fires the transition `name` of the record at `record` (`/api/projects/{id}`).
    pub async fn fire(&self, record: &str, name: &str, input: Value) -> Resp {
        self.post(&format!("{record}/transitions/{name}"), input)
            .await
    }

    pub async fn patch(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> Resp {
        self.call(
            Method::PATCH,
            path,
            Some(body.to_string().into_bytes()),
            headers,
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.call(Method::DELETE, path, None, &[]).await
    }

    /// Creates a record and returns its id, failing the test on anything but 201.
    pub async fn create(&self, plural: &str, body: Value) -> String {
        let res = self.post(&format!("/api/{plural}"), body).await;
        assert_eq!(
            res.status,
            StatusCode::CREATED,
            "create {plural}: {}",
            res.body
        );
        res.id()
    }
}

impl std::ops::Deref for TestApp {
    type Target = TestAppRouter;
    fn deref(&self) -> &TestAppRouter {
        &self.client
    }
}

impl TestApp {
    /// The app for a project folder on a fresh database.
    pub async fn for_dir(db: Db, dir: &Path) -> TestApp {
        // Server-side errors show in the output of a failing test.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("trellis=warn")
            .try_init();
        let loaded = spec::load(dir);
        assert!(
            !loaded.has_errors(),
            "the test project has errors: {:#?}",
            loaded.diagnostics
        );
        let engine = Engine::build(&loaded).expect("engine");
        let test_db = TestDb::new(db).await;
        let store = Store::connect(&test_db.url).await.expect("connect");
        store.sync_schema(&engine).await.expect("create tables");
        let auth = Auth::from_engine(&engine, dir, &|_| Some(TEST_SECRET.to_string()))
            .expect("auth setup");
        // Tests act as an administrator unless they say otherwise.
        let admin = auth
            .issue(
                &uuid::Uuid::now_v7().to_string(),
                &["admin".to_string()],
                Default::default(),
            )
            .map(|(t, _)| t);
        let mut state = AppState::with_auth(engine, store.clone(), auth);
        state.set_reloader(trellis::runtime::Reloader {
            dir: dir.to_path_buf(),
            secret: std::sync::Arc::new(|_: &str| Some(TEST_SECRET.to_string())),
        });
        TestApp {
            client: TestAppRouter::new(router(state.clone())).with_token(admin),
            store,
            state,
            db: test_db,
            _project: None,
        }
    }

    /// The repository's own project (the talent marketplace).
    pub async fn root(db: Db) -> TestApp {
        TestApp::for_dir(db, &repo_root()).await
    }

    /// A project made of the given files.
    pub async fn with_files(db: Db, files: &[(&str, &str)]) -> TestApp {
        let dir = project(files);
        let mut app = TestApp::for_dir(db, dir.path()).await;
        app._project = Some(dir);
        app
    }

    /// A token for a user with these roles (the project must have `auth.jwt`).
    pub fn token(&self, user_id: &str, roles: &[&str]) -> String {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        self.state
            .auth
            .load()
            .issue(user_id, &roles, Default::default())
            .expect("the project signs tokens")
            .0
    }

    /// The app as seen by the holder of `token`.
    pub fn as_user(&self, token: &str) -> TestAppRouter {
        self.client.with_token(Some(token.to_string()))
    }

    /// The app as seen by an anonymous caller.
    pub fn anonymous(&self) -> TestAppRouter {
        self.client.with_token(None)
    }

    /// Creates a record straight through the store, as Trellis itself: the body may
    /// set a workflow's state field (fixtures in a given state). Returns its id.
    pub async fn seed(&self, plural: &str, body: Value) -> String {
        let engine = self.state.engine.load_full();
        let e = engine.entity_by_plural(plural).expect("entity").clone();
        let input =
            trellis::engine::input::parse_body(&e, &body, trellis::engine::input::Mode::Seed)
                .unwrap_or_else(|errors| panic!("seed {plural}: {errors:?}"));
        let rec = self
            .store
            .create(
                &engine,
                &e,
                &input,
                &trellis::engine::access::Principal::system(),
            )
            .await
            .unwrap_or_else(|err| panic!("seed {plural}: {err}"));
        rec["id"].as_str().expect("id").to_string()
    }

    /// Every record of every entity, as stored (read as the system, through the store).
    pub async fn everything(&self) -> Stored {
        let engine = self.state.engine.load_full();
        let system = trellis::engine::access::Principal::system();
        let mut records = std::collections::HashMap::new();
        for e in engine.entities() {
            let req = trellis::engine::query::list_request(
                &engine,
                e,
                &[("limit".into(), "200".into())],
                &[],
                &system,
            )
            .expect("list everything");
            let page = self
                .store
                .list(&engine, e, &req, &system)
                .await
                .expect("list everything");
            let table = page
                .items
                .into_iter()
                .map(|r| (r["id"].as_str().expect("id").to_string(), r))
                .collect();
            records.insert(e.name.clone(), table);
        }
        Stored { records }
    }

    /// Signs up through the API (password `correct horse`, the email as display
    /// name) and returns the new account's id.
    pub async fn signup(&self, email: &str) -> String {
        let res = self
            .anonymous()
            .post(
                "/auth/signup",
                json!({ "email": email, "password": "correct horse", "display_name": email }),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
        res.body["user"]["id"]
            .as_str()
            .expect("the new user's id")
            .to_string()
    }

    /// Counts rows straight from the database.
    pub async fn rows(&self, table: &str) -> i64 {
        self.store.count_rows(table).await.expect("count rows")
    }
}

/// Records by entity and id, where the in-memory evaluator finds related records.
pub struct Stored {
    pub records: std::collections::HashMap<
        String,
        std::collections::HashMap<String, trellis::engine::cond::eval::Record>,
    >,
}

impl trellis::engine::cond::eval::World for Stored {
    fn record(&self, entity: &str, id: &str) -> Option<&trellis::engine::cond::eval::Record> {
        self.records.get(entity)?.get(id)
    }
    fn children(
        &self,
        entity: &str,
        via: &str,
        parent_id: &str,
    ) -> Vec<&trellis::engine::cond::eval::Record> {
        self.records
            .get(entity)
            .map(|t| {
                t.values()
                    .filter(|r| r.get(via).and_then(Value::as_str) == Some(parent_id))
                    .collect()
            })
            .unwrap_or_default()
    }
}
