//! From typed changes to statements: how far a plan may go ([`PlanMode`]), what it
//! refuses, what it may lose ([`Loss`]) and the SQL of each change.

use super::sql::Builder;
use crate::engine::Engine;
use crate::engine::schema_diff::{ColumnShape, EntityShape, LinkShape, Schema, SchemaChange, diff};
use crate::spec::FieldType;
use crate::store::values::cell_value;
use crate::store::{Dialect, Error, quote};

/// What `sync_schema` did.
#[derive(Debug, Default, Clone)]
pub struct SyncReport {
    pub created_tables: Vec<String>,
    pub added_columns: Vec<String>,
    pub renamed_columns: Vec<String>,
    /// Things left in place (columns and tables of removed definitions).
    pub kept: Vec<String>,
    /// Columns whose type, `required` or reference a migration changed.
    pub changed_columns: Vec<String>,
    /// Entities and fields a migration dropped.
    pub dropped: Vec<String>,
}

impl SyncReport {
    pub fn is_empty(&self) -> bool {
        self.created_tables.is_empty()
            && self.added_columns.is_empty()
            && self.renamed_columns.is_empty()
            && self.changed_columns.is_empty()
            && self.dropped.is_empty()
    }
}

/// How far a plan may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlanMode {
    /// `serve` and reload: additive changes only; anything else is refused.
    Sync,
    /// `trellis migrate apply`: also drops, type and `required` changes, relinks;
    /// what they may lose is reported as [`Loss`]es, counted before anything runs.
    Migrate,
}

/// A change that may lose data, with the query that counts what.
#[derive(Debug, Clone)]
pub struct Loss {
    /// In plain words, with `{n}` for the count.
    pub what: String,
    /// `SELECT COUNT(*) …`: how many records or values are affected.
    pub count_sql: String,
    /// Cannot be applied at all while the count is above zero (even when allowed).
    pub blocking: bool,
}

/// Statements to run, snapshots to store or drop, what they do, and what they may lose.
#[derive(Default)]
pub(crate) struct Planned {
    pub statements: Vec<String>,
    pub snapshots: Vec<(String, String)>,
    pub dropped: Vec<String>,
    pub report: SyncReport,
    pub losses: Vec<Loss>,
}

fn count(table: &str, cond: &str) -> String {
    format!("SELECT COUNT(*) FROM {}{cond}", quote(table))
}

/// The statements that bring a database whose stored shapes are `old` to the
/// engine's definitions.
pub(crate) fn plan(
    dialect: Dialect,
    engine: &Engine,
    old: &Schema,
    mode: PlanMode,
) -> Result<Planned, Error> {
    let new = Schema::of(engine);
    let changes = diff(old, &new);
    let mut p = Planner {
        b: Builder { dialect },
        migrate: mode == PlanMode::Migrate,
        out: Planned::default(),
        late: Vec::new(),
        problems: Vec::new(),
    };
    for c in &changes {
        if let SchemaChange::DropTable { entity, shape } = c {
            p.drop_entity(entity, shape);
        }
    }
    for (name, shape) in &new.entities {
        let mine: Vec<&SchemaChange> = changes.iter().filter(|c| c.entity() == name).collect();
        if mine
            .iter()
            .any(|c| matches!(c, SchemaChange::CreateTable { .. }))
        {
            p.create_entity(name, shape);
        } else {
            p.alter_entity(name, shape, &mine);
        }
        p.late.extend(p.b.indexes(name, shape));
        let text = serde_json::to_string(shape).unwrap_or_default();
        let stored = old
            .entity(name)
            .map(|s| serde_json::to_string(s).unwrap_or_default());
        if stored.as_ref() != Some(&text) {
            p.out.snapshots.push((name.clone(), text));
        }
    }
    if !p.problems.is_empty() {
        return Err(Error::NeedsMigration(p.problems));
    }
    if let Some(users) = &new.accounts {
        p.late.extend(accounts_tables(dialect, users));
    }
    let mut out = p.out;
    out.statements.extend(p.late);
    out.statements.extend(crate::store::changes::ddl(dialect));
    out.statements.extend(crate::store::workflow::ddl(dialect));
    out.statements.extend(crate::store::files::ddl(dialect));
    Ok(out)
}

/// The tables of built-in accounts (credentials, refresh tokens) of `users`.
fn accounts_tables(dialect: Dialect, users: &str) -> Vec<String> {
    let (id_type, time_type) = (dialect.ddl_id_type(), dialect.ddl_time_type());
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {} (user_id {id_type} PRIMARY KEY NOT NULL REFERENCES {}(\"id\") ON DELETE CASCADE, password_hash TEXT NOT NULL)",
            crate::store::accounts::CREDENTIALS,
            quote(users)
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (token_hash TEXT PRIMARY KEY NOT NULL, user_id {id_type} NOT NULL REFERENCES {}(\"id\") ON DELETE CASCADE, expires_at {time_type} NOT NULL, revoked BIGINT NOT NULL DEFAULT 0)",
            crate::store::accounts::REFRESH,
            quote(users)
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS ix_trellis_refresh_user ON {} (user_id)",
            crate::store::accounts::REFRESH
        ),
    ]
}

/// A plan being rendered.
struct Planner {
    b: Builder,
    migrate: bool,
    out: Planned,
    /// Statements that need every table (references, link tables, indexes).
    late: Vec<String>,
    /// Changes refused without a migration.
    problems: Vec<String>,
}

/// How one table is being changed: rebuilt (SQLite), and how each column of the new
/// shape is filled from the old row.
#[derive(Default)]
struct TableWork {
    rebuild: bool,
    copy: Vec<(String, String)>,
}

impl TableWork {
    fn keep(&mut self, column: &str) {
        self.copy.push((column.to_string(), quote(column)));
    }
}

impl Planner {
    fn dialect(&self) -> Dialect {
        self.b.dialect
    }

    /// An entity removed from the definitions: kept by `serve`, dropped by a migration.
    fn drop_entity(&mut self, name: &str, prev: &EntityShape) {
        if !self.migrate {
            self.out.report.kept.push(format!(
                "{name} (the entity was removed; its table and data are kept)"
            ));
            return;
        }
        self.out.losses.push(Loss {
            what: format!("drop the entity `{name}`: {{n}} record(s) are deleted"),
            count_sql: count(name, ""),
            blocking: false,
        });
        for link in prev.links() {
            self.out.statements.push(format!(
                "DROP TABLE IF EXISTS {}",
                quote(&crate::spec::join_table(name, &link.name))
            ));
        }
        self.out.statements.extend(
            self.dialect()
                .ddl_drop_entity(name, &super::sql::fts_table(name)),
        );
        self.out.dropped.push(name.to_string());
        self.out.report.dropped.push(format!("entity {name}"));
    }

    fn create_entity(&mut self, name: &str, e: &EntityShape) {
        self.out.statements.push(self.b.create_table(name, e));
        for c in e.columns() {
            self.late.extend(self.b.foreign_key(name, c));
        }
        for link in e.links() {
            self.late.extend(self.b.create_join(name, link));
        }
        if !e.search.is_empty() {
            self.late.extend(self.b.search(name, e));
        }
        self.out.report.created_tables.push(name.to_string());
    }

    fn alter_entity(&mut self, name: &str, e: &EntityShape, changes: &[&SchemaChange]) {
        let mut work = TableWork::default();
        for c in e.columns() {
            let change = changes.iter().find(|ch| match ch {
                SchemaChange::ChangeColumn { to, .. } | SchemaChange::RenameColumn { to, .. } => {
                    to.name == c.name
                }
                SchemaChange::AddColumn { column, .. } => column.name == c.name,
                _ => false,
            });
            match change {
                Some(SchemaChange::ChangeColumn { from, to, .. }) if !from.same_column(to) => {
                    if self.migrate {
                        self.change_column(name, from, to, &mut work);
                    } else {
                        self.problems.push(self.refusal(name, from, to));
                    }
                }
                Some(SchemaChange::RenameColumn { from, to, .. })
                    if self.dialect().ddl_signature(from) == self.dialect().ddl_signature(to)
                        && e.column(&from.name).is_none() =>
                {
                    self.out
                        .statements
                        .push(self.b.rename_column(name, &from.name, &to.name));
                    work.keep(&to.name);
                    self.out
                        .report
                        .renamed_columns
                        .push(format!("{name}.{} -> {}", from.name, to.name));
                }
                Some(SchemaChange::RenameColumn { to: c, .. })
                | Some(SchemaChange::AddColumn { column: c, .. }) => {
                    self.add_column(name, c, &mut work);
                }
                _ => work.keep(&c.name),
            }
        }
        if self.migrate {
            for ch in changes {
                if let SchemaChange::ChangeColumn { from, to, .. } = ch
                    && to.ty == FieldType::Enum
                {
                    self.remove_enum_values(name, from, to);
                }
            }
        }
        let mut dropped: Vec<&ColumnShape> = changes
            .iter()
            .filter_map(|ch| match ch {
                SchemaChange::DropColumn { column, .. } => Some(column),
                _ => None,
            })
            .collect();
        dropped.sort_by(|a, b| a.name.cmp(&b.name));
        for c in dropped {
            self.drop_column(name, c, &mut work);
        }
        let search_changed = changes
            .iter()
            .any(|ch| matches!(ch, SchemaChange::ChangeSearch { .. }));
        if work.rebuild {
            self.out
                .statements
                .extend(self.b.rebuild(name, e, &work.copy));
            // The new table has no full-text triggers yet.
            self.late.extend(self.b.search(name, e));
        } else if search_changed {
            self.late.extend(self.b.search(name, e));
        }
        for ch in changes {
            match ch {
                SchemaChange::AddLink { link, .. } => {
                    self.late.extend(self.b.create_join(name, link));
                }
                SchemaChange::Relink { from, to, .. } => self.relink(name, from, to),
                _ => {}
            }
        }
        if self.migrate {
            let mut gone: Vec<&LinkShape> = changes
                .iter()
                .filter_map(|ch| match ch {
                    SchemaChange::DropLink { link, .. } => Some(link),
                    _ => None,
                })
                .collect();
            gone.sort_by(|a, b| a.name.cmp(&b.name));
            for link in gone {
                self.drop_link(name, link);
            }
        }
    }

    /// Why `serve` will not change a column.
    fn refusal(&self, table: &str, from: &ColumnShape, to: &ColumnShape) -> String {
        if from.same_type(to) {
            format!(
                "{table}.{}: changed from `{}` to `{}`; a changed type, `required` or reference needs a migration",
                to.name,
                self.dialect().ddl_signature(from),
                self.dialect().ddl_signature(to)
            )
        } else {
            format!(
                "{table}.{}: changed from {} to {}; a changed type needs a migration",
                to.name,
                from.type_name(),
                to.type_name()
            )
        }
    }

    /// A new column (or a renamed one whose column changed too): filled with the
    /// default; a required one without a default is refused (`serve`) or counted.
    fn add_column(&mut self, table: &str, c: &ColumnShape, work: &mut TableWork) {
        if c.required && c.default.is_none() {
            if !self.migrate {
                self.problems.push(format!(
                    "{table}.{}: a new required field needs a fixed `default` for the records that already exist (or make it optional first)",
                    c.name
                ));
                return;
            }
            self.out.losses.push(Loss {
                what: format!(
                    "add the required field `{table}.{}` without a default: {{n}} existing record(s) would have no value; give it a `default:` or add it as optional first",
                    c.name
                ),
                count_sql: count(table, ""),
                blocking: true,
            });
            if self.dialect().ddl_alters_by_rebuild() {
                work.rebuild = true;
            } else {
                self.out.statements.push(self.b.add_column(table, c, false));
                self.late.extend(self.b.foreign_key(table, c));
            }
        } else {
            self.out.statements.push(self.b.add_column(table, c, true));
            self.late.extend(self.b.foreign_key(table, c));
            work.keep(&c.name);
        }
        self.out
            .report
            .added_columns
            .push(format!("{table}.{}", c.name));
    }

    /// A column whose type, `required` or reference changed (a migration).
    fn change_column(
        &mut self,
        table: &str,
        from: &ColumnShape,
        to: &ColumnShape,
        work: &mut TableWork,
    ) {
        let dialect = self.dialect();
        let col = quote(&to.name);
        let base_changed = !from.same_type(to);
        // A file field holds only the metadata of uploaded files: no other value
        // becomes one, and a file field's metadata is no value of another type (its
        // objects would be left behind).
        if base_changed && (from.ty == FieldType::File) != (to.ty == FieldType::File) {
            self.out.losses.push(Loss {
                what: format!(
                    "change `{table}.{}` from {} to {}: {{n}} record(s) hold a value, which cannot be converted to or from files; empty the field first, or add a new field under another name and drop this one",
                    to.name,
                    from.type_name(),
                    to.type_name()
                ),
                count_sql: count(table, &format!(" WHERE {col} IS NOT NULL")),
                blocking: true,
            });
        }
        // A single file field stores one object, a multiple one an array: the stored
        // metadata does not change its shape.
        let between_files = from.ty == FieldType::File && to.ty == FieldType::File;
        if base_changed && between_files {
            self.out.losses.push(Loss {
                what: format!(
                    "change `{table}.{}` from {} to {}: {{n}} record(s) hold a value stored in the other shape (one file, or a list of files); empty the field first, or add a new field under another name and drop this one",
                    to.name,
                    from.type_name(),
                    to.type_name()
                ),
                count_sql: count(table, &format!(" WHERE {col} IS NOT NULL")),
                blocking: true,
            });
        }
        if base_changed && !between_files {
            let lossless = to.widens(from);
            self.out.losses.push(Loss {
                what: format!(
                    "convert `{table}.{}` from {} to {}: {{n}} value(s) are converted{}",
                    to.name,
                    from.type_name(),
                    to.type_name(),
                    if lossless {
                        ""
                    } else {
                        "; values that do not fit fail the migration (PostgreSQL) or are cast (SQLite)"
                    }
                ),
                count_sql: if lossless {
                    "SELECT CAST(0 AS BIGINT)".to_string()
                } else {
                    count(table, &format!(" WHERE {col} IS NOT NULL"))
                },
                blocking: false,
            });
        }
        let now_required = to.required && !from.required;
        let literal = to
            .default_cell()
            .map(|cell| dialect.ddl_literal(&cell_value(dialect, to.ty, to.scale, &cell)));
        if now_required && literal.is_none() {
            self.out.losses.push(Loss {
                what: format!(
                    "make `{table}.{}` required: {{n}} record(s) have no value; give the field a `default:` (it fills them) or fill them first",
                    to.name
                ),
                count_sql: count(table, &format!(" WHERE {col} IS NULL")),
                blocking: true,
            });
        }
        let target = |c: &ColumnShape| c.reference.as_ref().map(|r| r.target.clone());
        let target_changed = target(from) != target(to);
        if target_changed && let Some(t) = target(to) {
            self.out.losses.push(Loss {
                what: format!(
                    "point `{table}.{}` at `{t}`: {{n}} record(s) hold an id of the old target, which must exist in the new one",
                    to.name
                ),
                count_sql: count(table, &format!(" WHERE {col} IS NOT NULL")),
                blocking: false,
            });
        }
        if dialect.ddl_alters_by_rebuild() {
            work.rebuild = true;
            let mut expr = if base_changed {
                dialect.ddl_copy_converted(&col, from, to)
            } else {
                col.clone()
            };
            if let Some(l) = &literal {
                expr = format!("COALESCE({expr}, {l})");
            }
            work.copy.push((to.name.clone(), expr));
        } else {
            let t = quote(table);
            if base_changed {
                let ty = dialect.ddl_column_type(to.storage());
                self.out.statements.push(format!(
                    "ALTER TABLE {t} ALTER COLUMN {col} TYPE {ty} USING {col}::{ty}"
                ));
            }
            if let (true, Some(l)) = (now_required, &literal) {
                self.out
                    .statements
                    .push(format!("UPDATE {t} SET {col} = {l} WHERE {col} IS NULL"));
            }
            if to.required != from.required {
                self.out.statements.push(format!(
                    "ALTER TABLE {t} ALTER COLUMN {col} {} NOT NULL",
                    if to.required { "SET" } else { "DROP" }
                ));
            }
            if from.reference.is_some() || target_changed {
                self.out.statements.push(format!(
                    "ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {}",
                    quote(&format!("fk_{table}_{}", to.name))
                ));
                self.late.extend(self.b.foreign_key(table, to));
            }
        }
        self.out
            .report
            .changed_columns
            .push(format!("{table}.{}", to.name));
    }

    /// Enum values removed while records hold them: those records lose the value.
    fn remove_enum_values(&mut self, table: &str, from: &ColumnShape, to: &ColumnShape) {
        let gone = to.removed_values(from);
        if gone.is_empty() {
            return;
        }
        let list = gone
            .iter()
            .map(|v| format!("'{}'", v.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(", ");
        let col = quote(&to.name);
        let names = gone
            .iter()
            .map(|v| format!("`{v}`"))
            .collect::<Vec<_>>()
            .join(", ");
        self.out.losses.push(Loss {
            what: if to.required {
                format!(
                    "remove {names} from `{table}.{}`: {{n}} record(s) hold them, and the field is required; change them first",
                    to.name
                )
            } else {
                format!(
                    "remove {names} from `{table}.{}`: {{n}} record(s) hold them and become empty",
                    to.name
                )
            },
            count_sql: count(table, &format!(" WHERE {col} IN ({list})")),
            blocking: to.required,
        });
        self.out.statements.push(format!(
            "UPDATE {} SET {col} = NULL WHERE {col} IN ({list})",
            quote(table)
        ));
    }

    /// A field removed from the definitions: kept by `serve` (refused while its
    /// column is required), dropped by a migration.
    fn drop_column(&mut self, table: &str, c: &ColumnShape, work: &mut TableWork) {
        let col = &c.name;
        if self.migrate {
            self.out.losses.push(Loss {
                what: format!(
                    "drop the field `{table}.{col}`: the values of {{n}} record(s) are lost"
                ),
                count_sql: count(table, &format!(" WHERE {} IS NOT NULL", quote(col))),
                blocking: false,
            });
            if self.dialect().ddl_alters_by_rebuild() {
                work.rebuild = true;
            } else {
                self.out.statements.push(format!(
                    "ALTER TABLE {} DROP COLUMN IF EXISTS {}",
                    quote(table),
                    quote(col)
                ));
            }
            self.out.report.dropped.push(format!("field {table}.{col}"));
        } else if c.required {
            self.problems.push(format!(
                "{table}.{col}: the field was removed but its column is required, so new records could not be saved; put the field back, or make it optional first and remove it later"
            ));
        } else {
            self.out.report.kept.push(format!(
                "{table}.{col} (removed from the model; its column and data are kept)"
            ));
        }
    }

    /// A many field that links to another entity: its links are deleted (a migration).
    fn relink(&mut self, entity: &str, from: &LinkShape, to: &LinkShape) {
        if !self.migrate {
            self.problems.push(format!(
                "{entity}.{}: now links to `{}` instead of `{}`; that needs a migration",
                to.name, to.target, from.target
            ));
            return;
        }
        let table = crate::spec::join_table(entity, &to.name);
        self.out.losses.push(Loss {
            what: format!(
                "relink `{entity}.{}` from `{}` to `{}`: {{n}} link(s) are deleted",
                to.name, from.target, to.target
            ),
            count_sql: count(&table, ""),
            blocking: false,
        });
        self.out
            .statements
            .push(format!("DROP TABLE IF EXISTS {}", quote(&table)));
        self.late.extend(self.b.create_join(entity, to));
    }

    fn drop_link(&mut self, entity: &str, link: &LinkShape) {
        let table = crate::spec::join_table(entity, &link.name);
        self.out.losses.push(Loss {
            what: format!(
                "drop the field `{entity}.{}`: {{n}} link(s) are deleted",
                link.name
            ),
            count_sql: count(&table, ""),
            blocking: false,
        });
        self.out
            .statements
            .push(format!("DROP TABLE IF EXISTS {}", quote(&table)));
        self.out
            .report
            .dropped
            .push(format!("field {entity}.{}", link.name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(files: &[(&str, &str)]) -> Engine {
        crate::engine::engine_from_texts(files)
    }

    /// The shapes a plan stores, read back.
    fn stored(snapshots: Vec<(String, String)>) -> Schema {
        Schema {
            entities: snapshots
                .into_iter()
                .map(|(n, text)| (n, serde_json::from_str(&text).unwrap()))
                .collect(),
            accounts: None,
        }
    }

    /// The plan from `v1` (as stored by a first sync) to `v2`, in both dialects, as
    /// text: the statements (without Trellis's own tables), then the losses.
    fn render(v1: &[(&str, &str)], v2: &[(&str, &str)], mode: PlanMode) -> String {
        let (e1, e2) = (engine(v1), engine(v2));
        let mut out = String::new();
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let first = plan(dialect, &e1, &Schema::default(), PlanMode::Sync).unwrap();
            let old = stored(first.snapshots);
            out.push_str(&format!("-- {dialect:?}\n"));
            match plan(dialect, &e2, &old, mode) {
                Ok(p) => {
                    for s in p.statements.iter().filter(|s| !s.contains("_trellis_")) {
                        out.push_str(&format!("{s}\n"));
                    }
                    for l in &p.losses {
                        out.push_str(&format!(
                            "loss{}: {} [{}]\n",
                            if l.blocking { " (blocking)" } else { "" },
                            l.what,
                            l.count_sql
                        ));
                    }
                }
                Err(Error::NeedsMigration(problems)) => {
                    for p in problems {
                        out.push_str(&format!("refused: {p}\n"));
                    }
                }
                Err(e) => out.push_str(&format!("error: {e}\n")),
            }
        }
        out
    }

    const PERSON: (&str, &str) = (
        "models/person.yaml",
        "entity: person\nfields:\n  name: string\n",
    );
    const TEAM: (&str, &str) = (
        "models/team.yaml",
        "entity: team\nfields:\n  name: string\n",
    );
    const TASK_V1: &str = "entity: task\nfields:\n  name: { type: string, required: true }\n  points: integer\n  notes: text\n  owner: string\n";
    const TASK_V2: &str = "entity: task\nfields:\n  title: { type: string, required: true, renamed_from: name }\n  points: { type: decimal, scale: 1 }\n  owner: { type: string, required: true, default: nobody }\n";

    fn task(text: &str) -> (&'static str, &str) {
        ("models/task.yaml", text)
    }

    #[test]
    fn a_new_entity() {
        let task_text = "entity: task\nfields:\n  title: { type: string, required: true, unique: true }\n  price: { type: decimal, precision: 10, scale: 2, default: 1.5 }\n  owner: { type: ref, to: person, on_delete: cascade }\n  helpers: { type: many, of: person }\n  size: { type: enum, values: [s, m] }\nsearch: [title]\nindexes:\n  - [-price, title]\n";
        insta::assert_snapshot!(render(
            &[PERSON],
            &[PERSON, task(task_text)],
            PlanMode::Sync
        ));
    }

    #[test]
    fn additive_changes() {
        let v1 = "entity: task\nfields:\n  title: string\n  old_note: text\n";
        let v2 = "entity: task\nfields:\n  title: string\n  note: { type: text, renamed_from: old_note }\n  priority: { type: integer, required: true, default: 3 }\n  who: { type: ref, to: person }\n  tags: { type: many, of: task }\nsearch: [title]\n";
        insta::assert_snapshot!(render(
            &[PERSON, task(v1)],
            &[PERSON, task(v2)],
            PlanMode::Sync
        ));
    }

    #[test]
    fn serve_refuses_what_needs_a_migration() {
        let v1 = "entity: task\nfields:\n  title: { type: string, required: true }\n  size: integer\n  who: { type: ref, to: person }\n  gone: { type: string, required: true }\n  tags: { type: many, of: person }\n";
        let v2 = "entity: task\nfields:\n  title: string\n  size: text\n  who: { type: ref, to: team }\n  more: { type: date, required: true }\n  tags: { type: many, of: team }\n";
        assert_eq!(
            render(
                &[PERSON, TEAM, task(v1)],
                &[PERSON, TEAM, task(v2)],
                PlanMode::Sync
            ),
            "-- Sqlite\n\
             refused: task.title: changed from `TEXT NOT NULL` to `TEXT`; a changed type, `required` or reference needs a migration\n\
             refused: task.size: changed from integer to text; a changed type needs a migration\n\
             refused: task.who: changed from `TEXT REFERENCES person ON DELETE RESTRICT` to `TEXT REFERENCES team ON DELETE RESTRICT`; a changed type, `required` or reference needs a migration\n\
             refused: task.more: a new required field needs a fixed `default` for the records that already exist (or make it optional first)\n\
             refused: task.gone: the field was removed but its column is required, so new records could not be saved; put the field back, or make it optional first and remove it later\n\
             refused: task.tags: now links to `team` instead of `person`; that needs a migration\n\
             -- Postgres\n\
             refused: task.title: changed from `TEXT NOT NULL` to `TEXT`; a changed type, `required` or reference needs a migration\n\
             refused: task.size: changed from integer to text; a changed type needs a migration\n\
             refused: task.who: changed from `UUID REFERENCES person ON DELETE RESTRICT` to `UUID REFERENCES team ON DELETE RESTRICT`; a changed type, `required` or reference needs a migration\n\
             refused: task.more: a new required field needs a fixed `default` for the records that already exist (or make it optional first)\n\
             refused: task.gone: the field was removed but its column is required, so new records could not be saved; put the field back, or make it optional first and remove it later\n\
             refused: task.tags: now links to `team` instead of `person`; that needs a migration\n"
        );
    }

    #[test]
    fn a_migration_renames_converts_fills_and_drops() {
        insta::assert_snapshot!(render(
            &[task(TASK_V1)],
            &[
                task(TASK_V2),
                (
                    "models/label.yaml",
                    "entity: label\nfields:\n  text: { type: string, required: true }\n"
                )
            ],
            PlanMode::Migrate
        ));
    }

    #[test]
    fn a_migration_converts_types() {
        let v1 = "entity: task\nfields:\n  a: { type: decimal, precision: 10, scale: 2 }\n  b: { type: decimal, precision: 10, scale: 2 }\n  c: { type: decimal, scale: 2 }\n  d: { type: decimal, scale: 2 }\n  e: string\n  f: boolean\n  g: number\n  h: { type: ref, to: person }\n";
        let v2 = "entity: task\nfields:\n  a: { type: decimal, precision: 12, scale: 4 }\n  b: { type: decimal, precision: 10, scale: 1 }\n  c: number\n  d: string\n  e: { type: integer, required: true }\n  f: string\n  g: { type: decimal, scale: 2 }\n  h: { type: ref, to: person, on_delete: set_null }\n";
        insta::assert_snapshot!(render(
            &[PERSON, task(v1)],
            &[PERSON, task(v2)],
            PlanMode::Migrate
        ));
    }

    #[test]
    fn a_migration_drops_entities_links_and_enum_values() {
        let v1 = "entity: task\nfields:\n  s: { type: enum, values: [small, \"it's\", large] }\n  tags: { type: many, of: person }\n  people: { type: many, of: person }\n";
        let v2 = "entity: task\nfields:\n  s: { type: enum, values: [small, large] }\n  people: { type: many, of: team }\n";
        insta::assert_snapshot!(render(
            &[PERSON, TEAM, task(v1)],
            &[TEAM, task(v2)],
            PlanMode::Migrate
        ));
    }

    #[test]
    fn the_same_definitions_plan_nothing_but_trellis_tables() {
        let e = engine(&[PERSON, task(TASK_V1)]);
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let first = plan(dialect, &e, &Schema::default(), PlanMode::Sync).unwrap();
            let old = stored(first.snapshots);
            let again = plan(dialect, &e, &old, PlanMode::Migrate).unwrap();
            assert!(again.report.is_empty() && again.losses.is_empty());
            assert!(again.snapshots.is_empty());
            assert!(
                again
                    .statements
                    .iter()
                    .all(|s| s.contains("IF NOT EXISTS") || s.contains("_trellis_")),
                "{:#?}",
                again.statements
            );
        }
    }
}
