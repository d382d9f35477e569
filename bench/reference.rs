//! The ceiling Trellis is measured against: a small hand-written axum + sqlx server
//! answering the benchmark's requests over the same tables (`bench/project`) with
//! fixed queries, the way a good engineer would write them by hand. It verifies the
//! same HS256 tokens and applies the same row rule for members.
//!
//!     cargo build --release --features bench --bin trellis-reference
//!     trellis-reference --db URL --port N        (BENCH_JWT_SECRET in the environment)
#![forbid(unsafe_code)]
// Handlers answer early with a ready `Response`; boxing it would only add noise here.
#![allow(clippy::result_large_err)]

// The same allocator as Trellis, so that the ratio measures the engine, not malloc.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Row, SqlitePool};
use uuid::Uuid;

enum Db {
    Pg(PgPool),
    Lite(SqlitePool),
}

struct App {
    db: Db,
    key: jsonwebtoken::DecodingKey,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    roles: Vec<String>,
    region: Option<String>,
}

#[derive(Serialize)]
struct Item {
    id: String,
    created_at: String,
    updated_at: String,
    version: i64,
    title: String,
    price: Option<String>,
    quantity: Option<i64>,
    status: Option<String>,
    owner: String,
}

#[derive(Serialize)]
struct Owner {
    id: String,
    created_at: String,
    updated_at: String,
    version: i64,
    name: String,
    region: String,
}

const ITEM: &str = "id, created_at, updated_at, version, title, price, quantity, status, owner";

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn pg_item(r: &sqlx::postgres::PgRow) -> Item {
    Item {
        id: r.get::<Uuid, _>(0).to_string(),
        created_at: time(r.get(1)),
        updated_at: time(r.get(2)),
        version: r.get(3),
        title: r.get(4),
        price: r.get::<Option<Decimal>, _>(5).map(|d| format!("{:.2}", d)),
        quantity: r.get(6),
        status: r.get(7),
        owner: r.get::<Uuid, _>(8).to_string(),
    }
}

fn lite_item(r: &sqlx::sqlite::SqliteRow) -> Item {
    Item {
        id: r.get(0),
        created_at: r.get(1),
        updated_at: r.get(2),
        version: r.get(3),
        title: r.get(4),
        price: r
            .get::<Option<i64>, _>(5)
            .map(|u| format!("{}.{:02}", u / 100, (u % 100).abs())),
        quantity: r.get(6),
        status: r.get(7),
        owner: r.get(8),
    }
}

fn fail(status: StatusCode, detail: &str) -> Response {
    (
        status,
        [("content-type", "application/problem+json")],
        json!({ "status": status.as_u16(), "detail": detail }).to_string(),
    )
        .into_response()
}

fn db_fail(e: sqlx::Error) -> Response {
    fail(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
}

fn claims(app: &App, headers: &HeaderMap) -> Result<Claims, Response> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| fail(StatusCode::UNAUTHORIZED, "sign in"))?;
    let validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    jsonwebtoken::decode::<Claims>(token, &app.key, &validation)
        .map(|d| d.claims)
        .map_err(|_| fail(StatusCode::UNAUTHORIZED, "bad token"))
}

fn admin(c: &Claims) -> Result<(), Response> {
    if c.roles.iter().any(|r| r == "admin") {
        Ok(())
    } else {
        Err(fail(StatusCode::FORBIDDEN, "admins only"))
    }
}

async fn get_item(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let c = match claims(&app, &headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Ok(uuid) = Uuid::parse_str(&id) else {
        return fail(StatusCode::NOT_FOUND, "no such item");
    };
    let region =
        (!c.roles.iter().any(|r| r == "admin")).then(|| c.region.clone().unwrap_or_default());
    let found = match &app.db {
        Db::Pg(p) => {
            let row = match &region {
                None => sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {ITEM} FROM item WHERE id = $1"))).bind(uuid).fetch_optional(p).await,
                Some(r) => sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {ITEM} FROM item t WHERE id = $1 AND EXISTS (SELECT 1 FROM owner o WHERE o.id = t.owner AND o.region = $2)"))).bind(uuid).bind(r).fetch_optional(p).await,
            };
            row.map(|r| r.as_ref().map(pg_item))
        }
        Db::Lite(p) => {
            let row = match &region {
                None => sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {ITEM} FROM item WHERE id = $1"))).bind(id).fetch_optional(p).await,
                Some(r) => sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {ITEM} FROM item t WHERE id = $1 AND EXISTS (SELECT 1 FROM owner o WHERE o.id = t.owner AND o.region = $2)"))).bind(id).bind(r).fetch_optional(p).await,
            };
            row.map(|r| r.as_ref().map(lite_item))
        }
    };
    match found {
        Ok(Some(item)) => {
            let etag = format!("\"{}\"", item.version);
            (StatusCode::OK, [("etag", etag)], Json(item)).into_response()
        }
        Ok(None) => fail(StatusCode::NOT_FOUND, "no such item"),
        Err(e) => db_fail(e),
    }
}

/// `GET /api/items`: the benchmark's two lists: the filtered, sorted one (for admins,
/// or with the region rule for members), and the plain one with `expand=owner`.
async fn list_items(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let c = match claims(&app, &headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let expand = q.as_deref().unwrap_or("").contains("expand=owner");
    let region =
        (!c.roles.iter().any(|r| r == "admin")).then(|| c.region.clone().unwrap_or_default());
    let rule = if region.is_some() {
        " AND EXISTS (SELECT 1 FROM owner o WHERE o.id = t.owner AND o.region = $2)"
    } else {
        ""
    };
    let sql = if expand {
        format!("SELECT {ITEM} FROM item t ORDER BY id LIMIT 21")
    } else {
        format!(
            "SELECT {ITEM} FROM item t WHERE status = 'open' AND price > $1{rule} ORDER BY price DESC NULLS LAST, id LIMIT 21"
        )
    };
    let (mut items, owners): (Vec<Item>, Vec<Owner>) = match &app.db {
        Db::Pg(p) => {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
            if !expand {
                query = query.bind(Decimal::new(100, 0));
                if let Some(r) = &region {
                    query = query.bind(r);
                }
            }
            let rows = match query.fetch_all(p).await {
                Ok(r) => r,
                Err(e) => return db_fail(e),
            };
            let items: Vec<Item> = rows.iter().map(pg_item).collect();
            let mut owners = Vec::new();
            if expand {
                let ids: Vec<Uuid> = items
                    .iter()
                    .filter_map(|i| Uuid::parse_str(&i.owner).ok())
                    .collect();
                let rows = match sqlx::query("SELECT id, created_at, updated_at, version, name, region FROM owner WHERE id = ANY($1)").bind(ids).fetch_all(p).await {
                    Ok(r) => r,
                    Err(e) => return db_fail(e),
                };
                owners = rows
                    .iter()
                    .map(|r| Owner {
                        id: r.get::<Uuid, _>(0).to_string(),
                        created_at: time(r.get(1)),
                        updated_at: time(r.get(2)),
                        version: r.get(3),
                        name: r.get(4),
                        region: r.get(5),
                    })
                    .collect();
            }
            (items, owners)
        }
        Db::Lite(p) => {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
            if !expand {
                query = query.bind(10_000i64);
                if let Some(r) = &region {
                    query = query.bind(r);
                }
            }
            let rows = match query.fetch_all(p).await {
                Ok(r) => r,
                Err(e) => return db_fail(e),
            };
            let items: Vec<Item> = rows.iter().map(lite_item).collect();
            let mut owners = Vec::new();
            if expand {
                let marks = vec!["?"; items.len().max(1)].join(", ");
                let sql = format!(
                    "SELECT id, created_at, updated_at, version, name, region FROM owner WHERE id IN ({marks})"
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
                for i in &items {
                    query = query.bind(i.owner.clone());
                }
                let rows = match query.fetch_all(p).await {
                    Ok(r) => r,
                    Err(e) => return db_fail(e),
                };
                owners = rows
                    .iter()
                    .map(|r| Owner {
                        id: r.get(0),
                        created_at: r.get(1),
                        updated_at: r.get(2),
                        version: r.get(3),
                        name: r.get(4),
                        region: r.get(5),
                    })
                    .collect();
            }
            (items, owners)
        }
    };
    let next = (items.len() > 20).then(|| items[19].id.clone());
    items.truncate(20);
    let items: Vec<Value> = items
        .into_iter()
        .map(|i| {
            let mut v = serde_json::to_value(&i).unwrap_or_default();
            if expand {
                // As Trellis answers: the ref stays the id, the owner goes under `expand`.
                let owner = owners
                    .iter()
                    .find(|o| o.id == i.owner)
                    .and_then(|o| serde_json::to_value(o).ok())
                    .unwrap_or(Value::Null);
                v["expand"] = json!({ "owner": owner });
            }
            v
        })
        .collect();
    Json(json!({ "items": items, "next": next })).into_response()
}

#[derive(Deserialize)]
struct NewItem {
    title: String,
    /// Decimals travel as strings, as in the Trellis API.
    price: Option<String>,
    quantity: Option<i64>,
    owner: Uuid,
}

async fn create_item(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(body): Json<NewItem>,
) -> Response {
    if let Err(r) = claims(&app, &headers).and_then(|c| admin(&c)) {
        return r;
    }
    if body.title.is_empty() || body.title.chars().count() > 200 {
        return fail(StatusCode::UNPROCESSABLE_ENTITY, "title");
    }
    let price = match body.price.as_deref().map(Decimal::from_str) {
        None => None,
        Some(Ok(d)) => Some(d.round_dp(2)),
        Some(Err(_)) => return fail(StatusCode::UNPROCESSABLE_ENTITY, "price"),
    };
    let id = Uuid::now_v7();
    let now = Utc::now();
    let sql = format!(
        "INSERT INTO item (id, created_at, updated_at, version, title, price, quantity, status, owner) VALUES ($1, $2, $2, 1, $3, $4, $5, 'open', $6) RETURNING {ITEM}"
    );
    let item = match &app.db {
        Db::Pg(p) => sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(id)
            .bind(now)
            .bind(&body.title)
            .bind(price)
            .bind(body.quantity)
            .bind(body.owner)
            .fetch_one(p)
            .await
            .map(|r| pg_item(&r)),
        Db::Lite(p) => {
            let units = price.map(|d| {
                (d * Decimal::new(100, 0))
                    .trunc()
                    .to_string()
                    .parse::<i64>()
                    .unwrap_or(0)
            });
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(id.to_string())
                .bind(time(now))
                .bind(&body.title)
                .bind(units)
                .bind(body.quantity)
                .bind(body.owner.to_string())
                .fetch_one(p)
                .await
                .map(|r| lite_item(&r))
        }
    };
    match item {
        Ok(item) => (
            StatusCode::CREATED,
            [("location", format!("/api/items/{}", item.id))],
            Json(item),
        )
            .into_response(),
        Err(e) => db_fail(e),
    }
}

#[derive(Deserialize)]
struct Patch {
    title: String,
}

async fn patch_item(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<Patch>,
) -> Response {
    if let Err(r) = claims(&app, &headers).and_then(|c| admin(&c)) {
        return r;
    }
    let Ok(uuid) = Uuid::parse_str(&id) else {
        return fail(StatusCode::NOT_FOUND, "no such item");
    };
    let now = Utc::now();
    let sql = format!(
        "UPDATE item SET title = $1, updated_at = $2, version = version + 1 WHERE id = $3 RETURNING {ITEM}"
    );
    let item = match &app.db {
        Db::Pg(p) => sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(&body.title)
            .bind(now)
            .bind(uuid)
            .fetch_optional(p)
            .await
            .map(|r| r.as_ref().map(pg_item)),
        Db::Lite(p) => sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(&body.title)
            .bind(time(now))
            .bind(id)
            .fetch_optional(p)
            .await
            .map(|r| r.as_ref().map(lite_item)),
    };
    match item {
        Ok(Some(item)) => Json(item).into_response(),
        Ok(None) => fail(StatusCode::NOT_FOUND, "no such item"),
        Err(e) => db_fail(e),
    }
}

/// `POST /api/items/{id}/transitions/bump`: a compare-and-set on the state and the
/// version, and a history row, in one transaction.
async fn bump_item(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let who = match claims(&app, &headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(r) = admin(&who) {
        return r;
    }
    let Ok(uuid) = Uuid::parse_str(&id) else {
        return fail(StatusCode::NOT_FOUND, "no such item");
    };
    let now = Utc::now();
    let select = format!("SELECT {ITEM} FROM item WHERE id = $1");
    let update = format!(
        "UPDATE item SET status = 'open', updated_at = $1, version = version + 1 WHERE id = $2 AND status = 'open' AND version = $3 RETURNING {ITEM}"
    );
    let history = "INSERT INTO _trellis_history (id, entity, record_id, transition, from_state, to_state, actor, input, at, request_id) VALUES ($1, 'item', $2, 'bump', 'open', 'open', NULL, '{}', $3, NULL)";
    let result: Result<Option<Item>, sqlx::Error> = match &app.db {
        Db::Pg(p) => {
            async {
                let mut tx = p.begin().await?;
                let Some(cur) = sqlx::query(sqlx::AssertSqlSafe(select.clone()))
                    .bind(uuid)
                    .fetch_optional(&mut *tx)
                    .await?
                else {
                    return Ok(None);
                };
                let v: i64 = cur.get(3);
                let Some(row) = sqlx::query(sqlx::AssertSqlSafe(update.clone()))
                    .bind(now)
                    .bind(uuid)
                    .bind(v)
                    .fetch_optional(&mut *tx)
                    .await?
                else {
                    return Ok(None);
                };
                sqlx::query(history)
                    .bind(Uuid::now_v7().to_string())
                    .bind(&id)
                    .bind(time(now))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Some(pg_item(&row)))
            }
            .await
        }
        Db::Lite(p) => {
            async {
                let mut tx = p.begin_with(sqlx::AssertSqlSafe("BEGIN IMMEDIATE")).await?;
                let Some(cur) = sqlx::query(sqlx::AssertSqlSafe(select.clone()))
                    .bind(&id)
                    .fetch_optional(&mut *tx)
                    .await?
                else {
                    return Ok(None);
                };
                let v: i64 = cur.get(3);
                let Some(row) = sqlx::query(sqlx::AssertSqlSafe(update.clone()))
                    .bind(time(now))
                    .bind(&id)
                    .bind(v)
                    .fetch_optional(&mut *tx)
                    .await?
                else {
                    return Ok(None);
                };
                sqlx::query(history)
                    .bind(Uuid::now_v7().to_string())
                    .bind(&id)
                    .bind(time(now))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Some(lite_item(&row)))
            }
            .await
        }
    };
    match result {
        Ok(Some(item)) => Json(item).into_response(),
        Ok(None) => fail(StatusCode::CONFLICT, "not open, or changed meanwhile"),
        Err(e) => db_fail(e),
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut url, mut port) = (String::new(), 8099u16);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--db" => url = args.next().unwrap_or_default(),
            "--port" => port = args.next().and_then(|p| p.parse().ok()).unwrap_or(port),
            other => {
                eprintln!("unknown argument {other}; use --db URL --port N");
                std::process::exit(2);
            }
        }
    }
    let secret = std::env::var("BENCH_JWT_SECRET").unwrap_or_else(|_| {
        eprintln!("BENCH_JWT_SECRET is not set");
        std::process::exit(2)
    });
    let db = if url.starts_with("postgres") {
        match PgPoolOptions::new().max_connections(16).connect(&url).await {
            Ok(p) => Db::Pg(p),
            Err(e) => {
                eprintln!("cannot connect: {e}");
                std::process::exit(1)
            }
        }
    } else {
        let options = match SqliteConnectOptions::from_str(&url) {
            Ok(o) => o
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(std::time::Duration::from_secs(10)),
            Err(e) => {
                eprintln!("bad url: {e}");
                std::process::exit(2)
            }
        };
        match SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
        {
            Ok(p) => Db::Lite(p),
            Err(e) => {
                eprintln!("cannot open: {e}");
                std::process::exit(1)
            }
        }
    };
    let app = Arc::new(App {
        db,
        key: jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
    });
    let router = Router::new()
        .route(
            "/_/health",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/api/items", get(list_items).post(create_item))
        .route("/api/items/{id}", get(get_item).patch(patch_item))
        .route("/api/items/{id}/transitions/bump", post(bump_item))
        .with_state(app);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1)
        }
    };
    let _ = axum::serve(listener, router).await;
}
