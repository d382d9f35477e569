//! Built-in accounts: password hashes, kept apart from the entity's own table so that
//! they can never appear in a record.

use sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_query_sqlx::SqlxBinder;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::crud::on_pool;
use super::values::{DecodeJson, uuid_value};
use super::{Error, Pool, Store};
use crate::engine::Entity;
use sea_query::{PostgresQueryBuilder, SqliteQueryBuilder};

pub(crate) const CREDENTIALS: &str = "_trellis_credentials";

impl Store {
    /// Stores (or replaces) the password hash of an account.
    pub async fn set_password(&self, user: Uuid, hash: &str) -> Result<(), Error> {
        let dialect = self.dialect();
        let mut q = Query::insert();
        q.into_table(CREDENTIALS)
            .columns(["user_id", "password_hash"])
            .values_panic([uuid_value(dialect, user).into(), hash.into()])
            .on_conflict(
                OnConflict::column("user_id")
                    .update_column("password_hash")
                    .to_owned(),
            );
        on_pool!(self, pool, qb => {
            let (sql, vals) = q.build_sqlx(qb());
            sqlx::query_with(AssertSqlSafe(sql), vals).execute(pool).await?;
        });
        Ok(())
    }

    /// The id and password hash of the account with this email, if any.
    pub async fn credentials(
        &self,
        users: &Entity,
        email: &str,
    ) -> Result<Option<(String, String)>, Error> {
        let mut q = Query::select();
        q.from_as(users.name.clone(), "t0")
            .column(("t0".to_string(), "id".to_string()))
            .column(("c".to_string(), "password_hash".to_string()))
            .join_as(
                sea_query::JoinType::InnerJoin,
                CREDENTIALS,
                "c",
                Expr::col(("c".to_string(), "user_id".to_string()))
                    .equals(("t0".to_string(), "id".to_string())),
            )
            .and_where(Expr::col(("t0".to_string(), "email".to_string())).eq(email.to_string()));
        let found = on_pool!(self, pool, qb => {
            let (sql, vals) = q.build_sqlx(qb());
            match sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(pool).await? {
                Some(row) => Some((row.uuid_text(0)?, sqlx::Row::try_get::<String, _>(&row, 1)?)),
                None => None,
            }
        });
        Ok(found)
    }
}
