//! Writes of records: create, update and delete (alone or in a batch), with the
//! policy's checks in the same transaction, and precise errors for refused writes.

use sea_query::{Asterisk, Expr, ExprTrait, Order, Query, SelectStatement};
use sea_query_sqlx::SqlxBinder;
use serde_json::Value;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::access::{permitted, visible};
use super::files::FileRows;
use super::filter::Compiler;
use super::kernel::{
    MAIN, Record, SYSTEM_COLUMNS, Tx, in_tx, main_col, on_pool, one_statement, record_from_row,
    select_columns,
};
use super::values::{DecodeJson, storage};
use super::{Dialect, Error, Holder, MissingTarget, Store, ddl};
use crate::engine::access::{Action, Decision, Principal};
use crate::engine::cond::check::{Ctx, Typed};
use crate::engine::files;
use crate::engine::{Cell, Engine, Entity, Input, input};
use crate::spec::Storage;
use crate::spec::{FieldType, OnDelete};

impl Store {
    /// Inserts a record (and its links) in one transaction.
    pub async fn create(
        &self,
        engine: &Engine,
        e: &Entity,
        input: &Input,
        who: &Principal,
    ) -> Result<Record, Error> {
        self.create_in(None, engine, e, input, who).await
    }

    pub(crate) async fn create_in(
        &self,
        batch: Option<&mut Tx>,
        engine: &Engine,
        e: &Entity,
        input: &Input,
        who: &Principal,
    ) -> Result<Record, Error> {
        let dialect = self.dialect();
        let ctx = who.ctx();
        let allowed = permitted(engine, e, &Action::Create, who)?;
        let id = Uuid::now_v7();
        let check =
            (allowed != Typed::Const(true)).then(|| visible(dialect, e, id, &allowed, &ctx));
        let now = input::now();
        let mut columns: Vec<String> = SYSTEM_COLUMNS.iter().map(|s| s.to_string()).collect();
        let mut values = vec![
            dialect.uuid(id).into(),
            dialect.datetime(now).into(),
            dialect.datetime(now).into(),
            Expr::val(1i64),
        ];
        for (index, cell) in &input.values {
            let f = &e.fields[*index];
            if f.has_column() {
                columns.push(f.name.clone());
                values.push(Expr::val(dialect.value(storage(f.ty, f.scale), cell)));
            }
        }
        // File fields: uploads (a JSON body may only leave a single one null or a
        // multiple one empty), and the storage keys this write claims.
        let mut claimed: Vec<String> = Vec::new();
        let mut file_errors = files::missing_required(e, input, input::Mode::Create);
        for (index, w) in &input.files {
            let f = &e.fields[*index];
            match w.resolve(f, &Value::Null) {
                Ok((value, _)) => {
                    columns.push(f.name.clone());
                    values.push(Expr::val(dialect.value(Storage::Json, &file_cell(value))));
                    claimed.extend(w.added.iter().map(|m| m.key(&e.name, &f.name)));
                }
                Err(why) => file_errors.push(files::resolve_error(f, &why)),
            }
        }
        if !file_errors.is_empty() {
            file_errors.sort_by(|a, b| a.pointer.cmp(&b.pointer));
            return Err(Error::invalid(file_errors));
        }
        let mut q = Query::insert();
        q.into_table(e.name.clone()).columns(columns);
        q.values(values)
            .map_err(|err| Error::Database(sqlx::Error::Protocol(err.to_string())))?;
        q.returning(Query::returning().columns(select_columns(e)));
        let links = link_statements(dialect, e, id, input, false);
        // Fields this caller writes only where a condition holds: on create, the
        // condition must hold for the new record, checked in the same transaction.
        let write_conds = engine
            .access
            .write_conditions(e, written_fields(e, input), who);
        let write_checks: Vec<(&str, &str, SelectStatement)> = write_conds
            .iter()
            .map(|w| {
                (
                    w.field.as_str(),
                    w.text.as_str(),
                    visible(dialect, e, id, &w.cond, &ctx),
                )
            })
            .collect();

        // One statement when nothing else is written or checked: the database's
        // trigger writes the change log in the same statement.
        let result: Result<Result<Record, Error>, sqlx::Error> = if batch.is_none()
            && links.is_empty()
            && check.is_none()
            && write_checks.is_empty()
            && claimed.is_empty()
        {
            async {
                on_pool!(self, pool => {
                    let row = one_statement!(q, dialect, pool, fetch_one)?;
                    Ok(Ok(record_from_row(e, &row)?))
                })
            }
            .await
        } else {
            async { in_tx!(self, batch, tx => {
            let (sql, vals) = dialect.build(&q);
            let row = match sqlx::query_with(AssertSqlSafe(sql), vals).fetch_one(&mut *tx).await {
                Ok(row) => row,
                Err(err) => {
                    tx.rollback().await?;
                    return Err(err);
                }
            };
            let rec = record_from_row(e, &row)?;
            for stmt in &links {
                let (sql, vals) = dialect.build(stmt);
                sqlx::query_with(AssertSqlSafe(sql), vals).execute(&mut *tx).await?;
            }
            if !claimed.is_empty() {
                let missing = (*tx).claim_pending(&claimed).await?;
                if !missing.is_empty() {
                    tx.rollback().await?;
                    return Ok(Err(uploads_gone(e, input, &missing)));
                }
            }
            if let Some(check) = &check {
                let (sql, vals) = dialect.build(check);
                if sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(&mut *tx).await?.is_none() {
                    tx.rollback().await?;
                    return Ok(Err(Error::forbidden(format!(
                        "your policy does not let you create this {}", e.name
                    ))));
                }
            }
            for (field, text, check) in &write_checks {
                let (sql, vals) = dialect.build(check);
                if sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(&mut *tx).await?.is_none() {
                    tx.rollback().await?;
                    return Ok(Err(Error::invalid(vec![input::FieldError::new(
                        format!("/{field}"),
                        format!(
                            "you may not set `{field}` on this {}: your policy lets you write it only where `{text}` (for a new record: where it holds for the record as created)",
                            e.name
                        ),
                    )])));
                }
            }
            tx.commit().await?;
            Ok(Ok(rec))
        })}.await
        };
        let mut rec = match result {
            Ok(inner) => inner?,
            Err(err) => {
                let err = self.explain_write_error(engine, e, input, err).await;
                // The database refuses a duplicate before the create rule is checked.
                // A caller whose create rule has a condition learns of the duplicate
                // only when they may read the record it duplicates; otherwise the
                // answer is the create rule's refusal, so that a create the policy
                // would refuse cannot ask whether a hidden record holds these values.
                if let (Error::Unique { fields }, Some(_)) = (&err, &check)
                    && !self
                        .duplicate_readable(engine, e, input, fields, who)
                        .await?
                {
                    return Err(Error::forbidden(format!(
                        "your policy does not let you create this {}",
                        e.name
                    )));
                }
                return Err(err);
            }
        };
        fill_links_from_input(e, input, &mut rec);
        self.as_seen_by(engine, e, rec, who).await
    }

    /// Whether `who` may read a stored record with the values `input` gives to the
    /// unique `fields` (the record a refused create would have duplicated), and
    /// those fields of it.
    async fn duplicate_readable(
        &self,
        engine: &Engine,
        e: &Entity,
        input: &Input,
        fields: &[String],
        who: &Principal,
    ) -> Result<bool, Error> {
        let Decision::Allow(read) = engine.access.decide(&e.name, &Action::Read, who) else {
            return Ok(false);
        };
        // A duplicate in a field the caller may not see would tell them its value.
        let hidden = engine.access.hidden_everywhere(who);
        if fields.is_empty()
            || fields
                .iter()
                .any(|f| hidden.iter().any(|(he, hf)| *he == e.name && hf == f))
        {
            return Ok(false);
        }
        let dialect = self.dialect();
        let ctx = who.ctx();
        let mut q = Query::select();
        q.expr(Expr::val(1i64)).from_as(e.name.clone(), MAIN);
        for name in fields {
            let given = input
                .values
                .iter()
                .find(|(i, _)| e.fields[*i].name == *name);
            let Some((i, cell)) = given else {
                return Ok(false);
            };
            let f = &e.fields[*i];
            q.and_where(
                main_col(name.clone()).eq(Expr::val(dialect.value(storage(f.ty, f.scale), cell))),
            );
        }
        if read != Typed::Const(true) {
            q.and_where(Compiler::new(dialect, &ctx).compile(&read, MAIN));
        }
        Ok(on_pool!(self, pool => {
            let (sql, values) = dialect.build(&q);
            sqlx::query_with(AssertSqlSafe(sql), values).fetch_optional(pool).await?.is_some()
        }))
    }

    /// Changes the given fields; with `if_match`, only if the version is still that.
    pub async fn update(
        &self,
        engine: &Engine,
        e: &Entity,
        id: Uuid,
        input: &Input,
        if_match: Option<i64>,
        who: &Principal,
    ) -> Result<Record, Error> {
        self.update_in(None, engine, e, id, input, if_match, who)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn update_in(
        &self,
        batch: Option<&mut Tx>,
        engine: &Engine,
        e: &Entity,
        id: Uuid,
        input: &Input,
        if_match: Option<i64>,
        who: &Principal,
    ) -> Result<Record, Error> {
        let dialect = self.dialect();
        let ctx = who.ctx();
        let read = match engine.access.decide(&e.name, &Action::Read, who) {
            Decision::Deny => return Err(Error::NotFound),
            Decision::Allow(c) => c,
        };
        let allowed = match engine.access.decide(&e.name, &Action::Update, who) {
            Decision::Deny => Typed::Const(false),
            Decision::Allow(c) => c,
        };
        let now = input::now();
        let mut q = Query::update();
        q.table(e.name.clone())
            .value("updated_at", dialect.datetime(now))
            .value("version", Expr::col("version").add(1i64));
        for (index, cell) in &input.values {
            let f = &e.fields[*index];
            if f.has_column() {
                q.value(f.name.clone(), dialect.value(storage(f.ty, f.scale), cell));
            }
        }
        // File fields: their stored values are read (and locked) in the transaction
        // first; the new values keep, reorder, replace or append files.
        let file_fields: Vec<&crate::engine::Field> =
            input.files.iter().map(|(i, _)| &e.fields[*i]).collect();
        let stored_files_q = (!file_fields.is_empty()).then(|| {
            let mut sq = Query::select();
            sq.from(e.name.clone())
                .columns(file_fields.iter().map(|f| f.name.clone()))
                .and_where(Expr::col("id").eq(dialect.uuid(id)));
            if dialect.locks_selected_rows() {
                sq.lock(sea_query::LockType::Update);
            }
            sq
        });
        q.and_where(Expr::col("id").eq(dialect.uuid(id)));
        if let Some(v) = if_match {
            q.and_where(Expr::col("version").eq(v));
        }
        // Fields this caller writes only where a condition holds: the conditions join
        // the update rule's, compiled on the UPDATE's own row (qualified by the table's
        // name), so they read the stored row before the change, and PostgreSQL checks
        // them again on the newest version of a row that a concurrent write changed
        // while this one waited for its lock (a subquery would keep its older snapshot).
        let write_conds = engine
            .access
            .write_conditions(e, written_fields(e, input), who);
        let guard = write_conds
            .iter()
            .fold(allowed.clone(), |acc, w| match acc {
                Typed::Const(true) => w.cond.clone(),
                acc => Typed::And(Box::new(acc), Box::new(w.cond.clone())),
            });
        if guard != Typed::Const(true) {
            q.and_where(on_own_row(dialect, e, id, &guard, &ctx));
        }
        // Which write condition refused the change (asked only after a refusal).
        // The update rule first: when it refuses, the answer stays the general one.
        let mut write_checks: Vec<(Option<(&str, &str)>, SelectStatement)> = Vec::new();
        if !write_conds.is_empty() {
            write_checks.push((None, visible(dialect, e, id, &allowed, &ctx)));
        }
        write_checks.extend(write_conds.iter().map(|w| {
            (
                Some((w.field.as_str(), w.text.as_str())),
                visible(dialect, e, id, &w.cond, &ctx),
            )
        }));
        let refused = |field: &str, text: &str| {
            Error::invalid(vec![input::FieldError::new(
                format!("/{field}"),
                format!(
                    "you may not change `{field}` of this {} now: your policy lets you write it only where `{text}`",
                    e.name
                ),
            )])
        };
        q.returning(Query::returning().columns(select_columns(e)));
        let links = link_statements(dialect, e, id, input, true);
        // Why nothing was updated: invisible (404), stale (412) or not allowed (403).
        let mut current = visible(dialect, e, id, &read, &ctx);
        current.column((MAIN.to_string(), "version".to_string()));
        // The row after the change must still be within reach.
        let after =
            (allowed != Typed::Const(true)).then(|| visible(dialect, e, id, &allowed, &ctx));

        // Why nothing was updated, asked after the fact.
        let explain = |version: Option<i64>| match version {
            None => Error::NotFound,
            Some(current) if if_match.is_some_and(|v| v != current) => Error::Stale { current },
            Some(_) => Error::forbidden(format!("you may not change this {}", e.name)),
        };
        // One statement when nothing else is written or checked: the database's
        // trigger writes the change log, with the old row, in the same statement.
        let result: Result<Result<Record, Error>, sqlx::Error> = if batch.is_none()
            && links.is_empty()
            && after.is_none()
            && stored_files_q.is_none()
        {
            async {
                on_pool!(self, pool => {
                    let updated = one_statement!(q, dialect, pool, fetch_optional)?;
                    match updated {
                        Some(row) => Ok(Ok(record_from_row(e, &row)?)),
                        None => {
                            let (sql, vals) = dialect.build(&current);
                            let found = sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(pool).await?;
                            let version: Option<i64> = match found {
                                Some(row) => Some(row.int(1)?),
                                None => None,
                            };
                            let err = explain(version);
                            if err.is_forbidden() {
                                for (which, check) in &write_checks {
                                    let (sql, vals) = dialect.build(check);
                                    if sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(pool).await?.is_none() {
                                        return Ok(Err(match which {
                                            Some((field, text)) => refused(field, text),
                                            None => err,
                                        }));
                                    }
                                }
                            }
                            Ok(Err(err))
                        }
                    }
                })
            }
            .await
        } else {
            async { in_tx!(self, batch, tx => {
            let mut q = q.clone();
            // What the file fields become, and the files they drop; a file error is
            // answered only once the update's own checks passed (a caller who may
            // not change the record learns nothing of its files).
            let mut claimed: Vec<String> = Vec::new();
            let mut removed: Vec<String> = Vec::new();
            let mut file_errors = Vec::new();
            if let Some(sq) = &stored_files_q {
                let (sql, vals) = dialect.build(sq);
                let row = sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(&mut *tx).await?;
                if let Some(row) = row {
                    for (col, (index, w)) in input.files.iter().enumerate() {
                        let f = &e.fields[*index];
                        let stored = row.json(col, Storage::Json)?;
                        match w.resolve(f, &stored) {
                            Ok((value, dropped)) => {
                                q.value(f.name.clone(), dialect.value(Storage::Json, &file_cell(value)));
                                claimed.extend(w.added.iter().map(|m| m.key(&e.name, &f.name)));
                                removed.extend(dropped.iter().map(|m| m.key(&e.name, &f.name)));
                            }
                            Err(why) => file_errors.push(files::resolve_error(f, &why)),
                        }
                    }
                }
            }
            let (sql, vals) = dialect.build(&q);
            let updated = match sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(&mut *tx).await {
                Ok(row) => row,
                Err(err) => {
                    tx.rollback().await?;
                    return Err(err);
                }
            };
            let Some(row) = updated else {
                let (sql, vals) = dialect.build(&current);
                let found = sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(&mut *tx).await?;
                let version: Option<i64> = match found {
                    Some(row) => Some(row.int(1)?),
                    None => None,
                };
                let mut err = explain(version);
                if err.is_forbidden() {
                    for (which, check) in &write_checks {
                        let (sql, vals) = dialect.build(check);
                        if sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(&mut *tx).await?.is_none() {
                            if let Some((field, text)) = which {
                                err = refused(field, text);
                            }
                            break;
                        }
                    }
                }
                tx.rollback().await?;
                return Ok(Err(err));
            };
            if !file_errors.is_empty() {
                tx.rollback().await?;
                return Ok(Err(Error::invalid(file_errors)));
            }
            let rec = record_from_row(e, &row)?;
            for stmt in &links {
                let (sql, vals) = dialect.build(stmt);
                sqlx::query_with(AssertSqlSafe(sql), vals).execute(&mut *tx).await?;
            }
            if !claimed.is_empty() {
                let missing = (*tx).claim_pending(&claimed).await?;
                if !missing.is_empty() {
                    tx.rollback().await?;
                    return Ok(Err(uploads_gone(e, input, &missing)));
                }
            }
            if !removed.is_empty() {
                (*tx).enqueue_removals(&removed).await?;
            }
            if let Some(after) = &after {
                let (sql, vals) = dialect.build(after);
                if sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(&mut *tx).await?.is_none() {
                    tx.rollback().await?;
                    return Ok(Err(Error::forbidden(format!(
                        "this change would take the {} out of your reach", e.name
                    ))));
                }
            }
            tx.commit().await?;
            Ok(Ok(rec))
        })}.await
        };
        let mut rec = match result {
            Ok(inner) => inner?,
            Err(err) => return Err(self.explain_write_error(engine, e, input, err).await),
        };
        // Links not written by this change are read back.
        let given: Vec<&str> = input
            .values
            .iter()
            .filter(|(i, _)| e.fields[*i].ty == FieldType::Many)
            .map(|(i, _)| e.fields[*i].name.as_str())
            .collect();
        if e.many_fields().any(|f| !given.contains(&f.name.as_str())) {
            let mut items = vec![rec];
            self.load_links(e, &mut items).await?;
            rec = items.pop().ok_or(Error::NotFound)?;
        }
        fill_links_from_input(e, input, &mut rec);
        self.as_seen_by(engine, e, rec, who).await
    }

    /// Deletes a record. Restricting references answer [`Error::Restricted`].
    pub async fn delete(
        &self,
        engine: &Engine,
        e: &Entity,
        id: Uuid,
        who: &Principal,
    ) -> Result<(), Error> {
        self.delete_in(None, engine, e, id, None, who).await
    }

    /// Deletes a record only while its version is still `if_match` (`If-Match` on
    /// DELETE): the version is checked in the DELETE's own WHERE, so a change that
    /// lands in between makes it delete nothing ([`Error::Stale`]), never the newer row.
    pub async fn delete_if(
        &self,
        engine: &Engine,
        e: &Entity,
        id: Uuid,
        if_match: Option<i64>,
        who: &Principal,
    ) -> Result<(), Error> {
        self.delete_in(None, engine, e, id, if_match, who).await
    }

    pub(crate) async fn delete_in(
        &self,
        batch: Option<&mut Tx>,
        engine: &Engine,
        e: &Entity,
        id: Uuid,
        if_match: Option<i64>,
        who: &Principal,
    ) -> Result<(), Error> {
        let dialect = self.dialect();
        let ctx = who.ctx();
        let read = match engine.access.decide(&e.name, &Action::Read, who) {
            Decision::Deny => return Err(Error::NotFound),
            Decision::Allow(c) => c,
        };
        let allowed = match engine.access.decide(&e.name, &Action::Delete, who) {
            Decision::Deny => Typed::Const(false),
            Decision::Allow(c) => c,
        };
        let mut q = Query::delete();
        q.from_table(e.name.clone())
            .and_where(Expr::col("id").eq(dialect.uuid(id)));
        if let Some(v) = if_match {
            q.and_where(Expr::col("version").eq(v));
        }
        // On the DELETE's own row (not `id IN (subquery)`), so PostgreSQL checks it
        // again on the newest version of a row that a concurrent write changed.
        if allowed != Typed::Const(true) {
            q.and_where(on_own_row(dialect, e, id, &allowed, &ctx));
        }
        // The files of a deleted record are enqueued for removal in its transaction.
        let file_fields: Vec<&crate::engine::Field> = e
            .fields
            .iter()
            .filter(|f| f.ty == FieldType::File)
            .collect();
        if !file_fields.is_empty() {
            q.returning(Query::returning().columns(file_fields.iter().map(|f| f.name.clone())));
        }
        // So are the files of the records its `on_delete: cascade` refs delete with it:
        // read before the DELETE (which removes them), queued only once it did.
        let cascaded = super::files::cascaded_files(engine, e, dialect);
        // The database's triggers log the deletion, and what its foreign keys delete
        // or clear along with the record.
        let result: Result<u64, sqlx::Error> = if batch.is_none()
            && file_fields.is_empty()
            && cascaded.is_empty()
        {
            async {
                on_pool!(self, pool => {
                    Ok(one_statement!(q, dialect, pool, execute)?.rows_affected())
                })
            }
            .await
        } else {
            async {
                in_tx!(self, batch, tx => {
                    let mut removed = Vec::new();
                    for c in &cascaded {
                        let vals = sea_query_sqlx::SqlxValues(sea_query::Values(vec![dialect.uuid(id)]));
                        let rows = match sqlx::query_with(AssertSqlSafe(c.sql.clone()), vals).fetch_all(&mut *tx).await {
                            Ok(rows) => rows,
                            Err(err) => {
                                tx.rollback().await?;
                                return Err(err);
                            }
                        };
                        for row in &rows {
                            for (col, f) in c.fields.iter().enumerate() {
                                let stored = row.json(col, Storage::Json)?;
                                removed.extend(
                                    files::stored_files(&stored)
                                        .iter()
                                        .map(|m| m.key(&c.entity, f)),
                                );
                            }
                        }
                    }
                    let (sql, vals) = dialect.build(&q);
                    if file_fields.is_empty() {
                        match sqlx::query_with(AssertSqlSafe(sql), vals).execute(&mut *tx).await {
                            Ok(done) => {
                                if done.rows_affected() > 0 && !removed.is_empty() {
                                    removed.sort();
                                    removed.dedup();
                                    (*tx).enqueue_removals(&removed).await?;
                                }
                                tx.commit().await?;
                                Ok(done.rows_affected())
                            }
                            Err(err) => {
                                tx.rollback().await?;
                                Err(err)
                            }
                        }
                    } else {
                        match sqlx::query_with(AssertSqlSafe(sql), vals).fetch_optional(&mut *tx).await {
                            Ok(Some(row)) => {
                                for (col, f) in file_fields.iter().enumerate() {
                                    let stored = row.json(col, Storage::Json)?;
                                    removed.extend(
                                        files::stored_files(&stored)
                                            .iter()
                                            .map(|m| m.key(&e.name, &f.name)),
                                    );
                                }
                                if !removed.is_empty() {
                                    removed.sort();
                                    removed.dedup();
                                    (*tx).enqueue_removals(&removed).await?;
                                }
                                tx.commit().await?;
                                Ok(1)
                            }
                            Ok(None) => {
                                tx.rollback().await?;
                                Ok(0)
                            }
                            Err(err) => {
                                tx.rollback().await?;
                                Err(err)
                            }
                        }
                    }
                })
            }
            .await
        };
        match result {
            // Why nothing was deleted: invisible (404), stale (412) or not allowed (403).
            Ok(0) => match self.get_where(e, id, &read, &ctx).await {
                Ok(rec) => match rec.get("version").and_then(Value::as_i64) {
                    Some(current) if if_match.is_some_and(|v| v != current) => {
                        Err(Error::Stale { current })
                    }
                    _ => Err(Error::forbidden(format!(
                        "you may not delete this {}",
                        e.name
                    ))),
                },
                Err(_) => Err(Error::NotFound),
            },
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(db)) if is_fk_violation(db.as_ref()) => {
                Err(self.restricting_holders(engine, e, id).await)
            }
            Err(err) => Err(Error::Database(err)),
        }
    }

    /// Which records keep `id` from being deleted.
    async fn restricting_holders(&self, engine: &Engine, e: &Entity, id: Uuid) -> Error {
        let dialect = self.dialect();
        let mut holders = Vec::new();
        let mut total = 0;
        for r in engine.referrers(&e.name) {
            if r.on_delete != OnDelete::Restrict {
                continue;
            }
            let mut count_q = Query::select();
            count_q
                .from(r.entity.clone())
                .expr(Expr::col(Asterisk).count())
                .and_where(Expr::col(r.field.clone()).eq(dialect.uuid(id)));
            let mut ids_q = Query::select();
            ids_q
                .from(r.entity.clone())
                .column("id")
                .and_where(Expr::col(r.field.clone()).eq(dialect.uuid(id)))
                .order_by("id", Order::Asc)
                .limit(5);
            let found: Result<(i64, Vec<String>), sqlx::Error> = on_pool!(self, pool => async {
                let (sql, vals) = dialect.build(&count_q);
                let count: i64 = sqlx::query_scalar_with(AssertSqlSafe(sql), vals).fetch_one(pool).await?;
                let (sql, vals) = dialect.build(&ids_q);
                let rows = sqlx::query_with(AssertSqlSafe(sql), vals).fetch_all(pool).await?;
                let ids = rows.iter().map(|r| r.uuid_text(0)).collect::<Result<Vec<_>, _>>()?;
                Ok((count, ids))
            }.await);
            match found {
                Ok((count, ids)) if count > 0 => {
                    total += count;
                    holders.push(Holder {
                        entity: r.entity.clone(),
                        field: r.field.clone(),
                        count,
                        ids,
                    });
                }
                Ok(_) => {}
                Err(err) => return Error::Database(err),
            }
        }
        Error::Restricted { total, holders }
    }

    /// Turns a failed write into a precise error: which unique fields, which missing targets.
    pub(crate) async fn explain_write_error(
        &self,
        _engine: &Engine,
        e: &Entity,
        input: &Input,
        err: sqlx::Error,
    ) -> Error {
        let Some(db) = err.as_database_error() else {
            // Not a constraint: kept as it is (a lost connection must stay one).
            return Error::Database(err);
        };
        if db.is_unique_violation() {
            let groups = ddl::unique_groups(e);
            let fields = db
                .constraint()
                .and_then(|c| groups.iter().find(|(name, _)| name == c))
                .map(|(_, cols)| cols.clone())
                .or_else(|| {
                    // SQLite: "UNIQUE constraint failed: project.client, project.title"
                    let msg = db.message();
                    msg.split_once("failed: ").map(|(_, cols)| {
                        cols.split(", ")
                            .map(|c| c.rsplit('.').next().unwrap_or(c).to_string())
                            .collect()
                    })
                })
                .unwrap_or_default();
            return Error::Unique { fields };
        }
        if is_fk_violation(db) {
            // Find which referenced records are missing.
            let mut missing_all = Vec::new();
            for (index, cell) in &input.values {
                let f = &e.fields[*index];
                let Some(target) = &f.target else { continue };
                let wanted: Vec<Uuid> = match cell {
                    Cell::Uuid(id) if f.ty == FieldType::Ref => vec![*id],
                    Cell::Ids(ids) => ids.clone(),
                    _ => continue,
                };
                match self.missing_ids(target, &wanted).await {
                    Ok(missing) if !missing.is_empty() => missing_all.push(MissingTarget {
                        field: f.name.clone(),
                        target: target.clone(),
                        ids: missing,
                    }),
                    Ok(_) => {}
                    Err(err) => return err,
                }
            }
            if !missing_all.is_empty() {
                return Error::MissingTargets(missing_all);
            }
        }
        Error::Database(err)
    }

    async fn missing_ids(&self, table: &str, wanted: &[Uuid]) -> Result<Vec<String>, Error> {
        let dialect = self.dialect();
        let mut q = Query::select();
        q.from(table.to_string())
            .column("id")
            .and_where(Expr::col("id").is_in(wanted.iter().map(|id| dialect.uuid(*id))));
        let found: Vec<String> = on_pool!(self, pool => {
            let (sql, vals) = dialect.build(&q);
            let rows = sqlx::query_with(AssertSqlSafe(sql), vals).fetch_all(pool).await?;
            rows.iter().map(|r| r.uuid_text(0)).collect::<Result<Vec<_>, _>>()?
        });
        Ok(wanted
            .iter()
            .map(|id| id.hyphenated().to_string())
            .filter(|id| !found.contains(id))
            .collect())
    }
}

/// SQLite reports a RESTRICT action with the trigger code (1811), not the
/// foreign-key one, so the message is checked too.
fn is_fk_violation(db: &dyn sqlx::error::DatabaseError) -> bool {
    db.is_foreign_key_violation() || db.message().contains("FOREIGN KEY constraint failed")
}

/// Statements that write the `many` fields given in `input`.
fn link_statements(
    dialect: Dialect,
    e: &Entity,
    id: Uuid,
    input: &Input,
    replace: bool,
) -> Vec<LinkStatement> {
    let mut out = Vec::new();
    for (index, cell) in &input.values {
        let f = &e.fields[*index];
        let Cell::Ids(ids) = cell else { continue };
        if f.ty != FieldType::Many {
            continue;
        }
        let table = e.join_table(f);
        if replace {
            let mut d = Query::delete();
            d.from_table(table.clone())
                .and_where(Expr::col("source_id").eq(dialect.uuid(id)));
            out.push(LinkStatement::Delete(d));
        }
        if !ids.is_empty() {
            let mut ins = Query::insert();
            ins.into_table(table).columns(["source_id", "target_id"]);
            for t in ids {
                let _ = ins.values([dialect.uuid(id).into(), dialect.uuid(*t).into()]);
            }
            out.push(LinkStatement::Insert(ins));
        }
    }
    out
}

/// `cond` on the row an UPDATE or DELETE of `e` writes, its columns qualified by the
/// table's name: PostgreSQL checks it again on the newest version of a row that a
/// concurrent write changed while this one waited for its lock. (A table named like
/// the compiler's subquery aliases, `t1` or `j2`, would be shadowed by them: it gets
/// the `id IN (SELECT …)` form.)
fn on_own_row(dialect: Dialect, e: &Entity, id: Uuid, cond: &Typed, ctx: &Ctx) -> Expr {
    let clashes = e.name.len() > 1
        && (e.name.starts_with('t') || e.name.starts_with('j'))
        && e.name[1..].bytes().all(|b| b.is_ascii_digit());
    if clashes {
        Expr::col("id").in_subquery(visible(dialect, e, id, cond, ctx))
    } else {
        Compiler::new(dialect, ctx).compile(cond, &e.name)
    }
}

/// A statement on a link table.
enum LinkStatement {
    Delete(sea_query::DeleteStatement),
    Insert(sea_query::InsertStatement),
}

impl SqlxBinder for LinkStatement {
    fn build_sqlx<T: sea_query::QueryBuilder>(
        &self,
        qb: T,
    ) -> (String, sea_query_sqlx::SqlxValues) {
        match self {
            LinkStatement::Delete(d) => d.build_sqlx(qb),
            LinkStatement::Insert(i) => i.build_sqlx(qb),
        }
    }
}

fn fill_links_from_input(e: &Entity, input: &Input, rec: &mut Record) {
    for (index, cell) in &input.values {
        let f = &e.fields[*index];
        if let (FieldType::Many, Cell::Ids(ids)) = (f.ty, cell) {
            let mut sorted: Vec<String> = ids.iter().map(|i| i.hyphenated().to_string()).collect();
            sorted.sort();
            rec.insert(
                f.name.clone(),
                Value::Array(sorted.into_iter().map(Value::String).collect()),
            );
        }
    }
}

/// The names of the fields a write sets (values and files), for the write rules.
fn written_fields<'i>(e: &'i Entity, input: &'i Input) -> impl Iterator<Item = &'i str> {
    input
        .values
        .iter()
        .map(|(i, _)| *i)
        .chain(input.files.iter().map(|(i, _)| *i))
        .map(|i| e.fields[i].name.as_str())
}

/// A file column's new value as a cell: SQL NULL for no file, else its JSON.
fn file_cell(value: Value) -> Cell {
    if Value::is_null(&value) {
        Cell::Null
    } else {
        Cell::Json(value)
    }
}

/// The refusal of a write whose uploads are no longer pending (expired and swept, or
/// claimed by another write): the record would name objects that are not there.
fn uploads_gone(e: &Entity, input: &Input, missing: &[String]) -> Error {
    let errors = input
        .files
        .iter()
        .flat_map(|(i, w)| {
            let f = &e.fields[*i];
            w.added
                .iter()
                .filter(|m| missing.contains(&m.key(&e.name, &f.name)))
                .map(move |m| {
                    input::FieldError::new(
                        format!("/{}", f.name),
                        format!(
                            "the upload of `{}` expired before the write; send it again",
                            m.name
                        ),
                    )
                })
        })
        .collect();
    Error::invalid(errors)
}
