//! Statements are planned once, not at every request, on both databases.
//!
//! - PostgreSQL: a list's LIMIT is written as a number. Bound as `$n`, the
//!   generic plan of a cached statement assumes a tenth of the table is wanted,
//!   never wins against the custom plan, and the statement is planned again at
//!   every execution (`pg_prepared_statements.custom_plans` keeps growing).
//! - SQLite: the bundled library is built with the query planner stability
//!   guarantee (`.cargo/config.toml`). Without it, once `ANALYZE` has written
//!   `sqlite_stat4`, binding a value compared with an indexed column marks the
//!   statement expired, and every execution parses and plans it again.

mod common;

use common::{Db, TestApp};
use serde_json::{Value, json};
use trellis::store::Pool;

const FILES: &[(&str, &str)] = &[(
    "models/task.yaml",
    "entity: task\nfields:\n  title: { type: string, required: true }\n  rank: integer\n  done: { type: boolean, default: false }\nindexes:\n  - [done, -rank, id]\n",
)];

const PAGE: &str =
    "/api/tasks?filter=done%20%3D%20false%20and%20rank%20%3E%205&sort=-rank&limit=10";

fn ranks(body: &Value) -> Vec<i64> {
    body["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i["rank"].as_i64()).collect())
        .unwrap_or_default()
}

async fn repeated_lists_keep_their_plan(db: Db) {
    let app = TestApp::with_files(db, FILES).await;
    for rank in 0..30 {
        app.seed(
            "tasks",
            json!({ "title": format!("task {rank}"), "rank": rank }),
        )
        .await;
    }
    if let Pool::Postgres(pool) = app.store.pool() {
        // Enough rows that a plan for "a tenth of the table" costs more than one for
        // eleven rows (none of them matches the filter).
        sqlx::query(
            "INSERT INTO task (id, created_at, updated_at, version, title, rank, done) \
             SELECT gen_random_uuid(), now(), now(), 1, 'bulk ' || g, g % 5, false \
             FROM generate_series(1, 20000) AS g",
        )
        .execute(pool)
        .await
        .expect("bulk rows");
        sqlx::query("ANALYZE task")
            .execute(pool)
            .await
            .expect("ANALYZE");
    }
    let first = app.client.get(PAGE).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(ranks(&first.body), (20..30).rev().collect::<Vec<_>>());
    assert!(first.body["next"].is_string(), "{}", first.body);

    match app.store.pool() {
        Pool::Postgres(pool) => {
            // Each connection caches its own statements: with five executions per
            // connection and one more, one of them has run the list six times or more.
            let max = pool.options().get_max_connections() as usize;
            for _ in 0..5 * max + 1 {
                let again = app.client.get(PAGE).await;
                assert_eq!(again.status, 200, "{}", again.body);
                assert_eq!(ranks(&again.body), ranks(&first.body));
            }
            let (mut generic, mut custom) = (0i64, 0i64);
            let mut held = Vec::new();
            for _ in 0..pool.size() {
                let mut conn = pool.acquire().await.expect("a connection");
                let (g, c): (i64, i64) = sqlx::query_as(
                    "SELECT COALESCE(SUM(generic_plans), 0)::bigint, COALESCE(SUM(custom_plans), 0)::bigint \
                     FROM pg_prepared_statements WHERE statement LIKE '%FROM \"task\"%ORDER BY%'",
                )
                .fetch_one(&mut *conn)
                .await
                .expect("the plan cache");
                // PostgreSQL plans the first five executions for their values, then
                // keeps the generic plan unless it looks dearer than those were.
                assert!(
                    c <= 5,
                    "the list was planned anew at every execution on one connection ({c} custom plans, {g} generic)"
                );
                generic += g;
                custom += c;
                held.push(conn);
            }
            assert!(
                generic + custom > 5 * max as i64,
                "every list ran a cached statement ({generic} + {custom} plans)"
            );
        }
        Pool::Sqlite(pool) => {
            let options: Vec<String> = sqlx::query_scalar("PRAGMA compile_options")
                .fetch_all(pool)
                .await
                .expect("compile options");
            for wanted in ["ENABLE_QPSG", "DEFAULT_MEMSTATUS=0", "ENABLE_STAT4"] {
                assert!(
                    options.iter().any(|o| o == wanted),
                    "SQLite was built without {wanted}: {options:?}"
                );
            }
            // With statistics in place, the list still answers the same, page after page.
            sqlx::query("ANALYZE").execute(pool).await.expect("ANALYZE");
            for _ in 0..20 {
                let again = app.client.get(PAGE).await;
                assert_eq!(again.status, 200, "{}", again.body);
                assert_eq!(ranks(&again.body), ranks(&first.body));
            }
            let next = first.body["next"].as_str().unwrap_or_default();
            let rest = app.client.get(&format!("{PAGE}&after={next}")).await;
            assert_eq!(rest.status, 200, "{}", rest.body);
            assert_eq!(ranks(&rest.body), (10..20).rev().collect::<Vec<_>>());
        }
    }
}
both!(repeated_lists_keep_their_plan);
