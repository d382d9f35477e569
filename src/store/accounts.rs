//! Built-in accounts: password hashes, kept apart from the entity's own table so that
//! they can never appear in a record.

use sea_query::{Expr, ExprTrait, OnConflict, Query};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::kernel::{MAIN, main_col, on_pool};
use super::values::DecodeJson;
use super::{Error, Store};
use crate::engine::Entity;

pub(crate) const CREDENTIALS: &str = "_trellis_credentials";
pub(crate) const REFRESH: &str = "_trellis_refresh_tokens";

/// What happened to a presented refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// Valid: it is now revoked, and this user may get a new pair.
    Rotated { user_id: String },
    /// Unknown or expired.
    Invalid,
    /// Already used or revoked: a stolen copy may be in use, so every token of the
    /// user was revoked.
    Reused,
}

impl Store {
    /// Stores (or replaces) the password hash of an account.
    pub async fn set_password(&self, user: Uuid, hash: &str) -> Result<(), Error> {
        let dialect = self.dialect();
        let mut q = Query::insert();
        q.into_table(CREDENTIALS)
            .columns(["user_id", "password_hash"])
            .values_panic([dialect.uuid(user).into(), hash.into()])
            .on_conflict(
                OnConflict::column("user_id")
                    .update_column("password_hash")
                    .to_owned(),
            );
        on_pool!(self, pool => {
            let (sql, vals) = self.dialect().build(&q);
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
        q.from_as(users.name.clone(), MAIN)
            .column((MAIN.to_string(), "id".to_string()))
            .column(("c".to_string(), "password_hash".to_string()))
            .join_as(
                sea_query::JoinType::InnerJoin,
                CREDENTIALS,
                "c",
                Expr::col(("c".to_string(), "user_id".to_string()))
                    .equals((MAIN.to_string(), "id".to_string())),
            )
            .and_where(main_col("email").eq(email.to_string()));
        let found = on_pool!(self, pool => {
            let (sql, vals) = self.dialect().build(&q);
            match sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(pool).await? {
                Some(row) => Some((row.uuid_text(0)?, sqlx::Row::try_get::<String, _>(&row, 1)?)),
                None => None,
            }
        });
        Ok(found)
    }
}

fn hash_token(token: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl Store {
    /// Stores a new refresh token (only its SHA-256) for `user`, valid `ttl` seconds.
    pub async fn add_refresh_token(&self, user: Uuid, token: &str, ttl: i64) -> Result<(), Error> {
        let dialect = self.dialect();
        let expires = crate::engine::input::now() + chrono::Duration::seconds(ttl);
        let mut q = Query::insert();
        q.into_table(REFRESH)
            .columns(["token_hash", "user_id", "expires_at", "revoked"])
            .values_panic([
                hash_token(token).into(),
                dialect.uuid(user).into(),
                dialect.datetime(expires).into(),
                Expr::val(0i64),
            ]);
        on_pool!(self, pool => {
            let (sql, vals) = self.dialect().build(&q);
            sqlx::query_with(AssertSqlSafe(sql), vals).execute(pool).await?;
        });
        Ok(())
    }

    /// Uses a refresh token once: valid tokens are revoked (the caller issues a new
    /// pair); a token presented twice revokes every token of its user.
    pub async fn use_refresh_token(&self, token: &str) -> Result<Refresh, Error> {
        let dialect = self.dialect();
        let hash = hash_token(token);
        let now = crate::engine::input::now();
        // Revoke it if it is live; the row count says whether it was.
        let mut revoke = Query::update();
        revoke
            .table(REFRESH)
            .value("revoked", 1i64)
            .and_where(Expr::col("token_hash").eq(hash.clone()))
            .and_where(Expr::col("revoked").eq(0i64))
            .and_where(Expr::col("expires_at").gt(dialect.datetime(now)));
        let mut owner = Query::select();
        owner
            .from(REFRESH)
            .column("user_id")
            .column("revoked")
            .and_where(Expr::col("token_hash").eq(hash));
        let (changed, found) = on_pool!(self, pool => {
            let (sql, vals) = dialect.build(&revoke);
            let changed = sqlx::query_with(AssertSqlSafe(sql), vals).execute(pool).await?.rows_affected();
            let (sql, vals) = dialect.build(&owner);
            let found = match sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(pool).await? {
                Some(row) => Some((row.uuid_text(0)?, row.int(1)?)),
                None => None,
            };
            (changed, found)
        });
        Ok(match (changed, found) {
            (1, Some((user_id, _))) => Refresh::Rotated { user_id },
            (_, Some((user_id, revoked))) if revoked != 0 && changed == 0 => {
                if let Ok(uid) = Uuid::parse_str(&user_id) {
                    self.revoke_all(uid).await?;
                }
                Refresh::Reused
            }
            _ => Refresh::Invalid,
        })
    }

    /// Revokes one refresh token (logout). Unknown tokens are ignored.
    pub async fn revoke_refresh_token(&self, token: &str) -> Result<(), Error> {
        let mut q = Query::update();
        q.table(REFRESH)
            .value("revoked", 1i64)
            .and_where(Expr::col("token_hash").eq(hash_token(token)));
        on_pool!(self, pool => {
            let (sql, vals) = self.dialect().build(&q);
            sqlx::query_with(AssertSqlSafe(sql), vals).execute(pool).await?;
        });
        Ok(())
    }

    /// Revokes every refresh token of a user.
    pub async fn revoke_all(&self, user: Uuid) -> Result<(), Error> {
        let dialect = self.dialect();
        let mut q = Query::update();
        q.table(REFRESH)
            .value("revoked", 1i64)
            .and_where(Expr::col("user_id").eq(dialect.uuid(user)));
        on_pool!(self, pool => {
            let (sql, vals) = self.dialect().build(&q);
            sqlx::query_with(AssertSqlSafe(sql), vals).execute(pool).await?;
        });
        Ok(())
    }
}
