//! The statements of a schema, built from typed shapes: tables, columns, references,
//! link tables, indexes, search indexes and SQLite's table rebuild. What differs
//! between databases is asked of [`Dialect`].

use sea_query::{ColumnDef, ForeignKey, ForeignKeyAction, Index, Table, TableCreateStatement};

use crate::engine::Entity;
use crate::engine::schema_diff::{ColumnShape, EntityShape, LinkShape};
use crate::spec::{FieldType, OnDelete};
use crate::store::values::cell_value;
use crate::store::{Dialect, quote};

/// The full-text index table of an entity in SQLite (`__` cannot occur in model names).
pub(crate) fn fts_table(entity: &str) -> String {
    format!("{entity}__fts")
}

/// The text PostgreSQL indexes and searches: the search fields joined by spaces.
pub(crate) fn pg_document(e: &Entity, alias: Option<&str>) -> String {
    pg_document_of(&e.search, alias)
}

/// The document of some search fields only (what one caller may search); the text
/// of [`pg_document`] for all of them, so that the GIN index serves it.
pub(crate) fn pg_document_of(fields: &[String], alias: Option<&str>) -> String {
    if fields.is_empty() {
        return "to_tsvector('simple', '')".to_string();
    }
    let prefix = alias.map(|a| format!("{}.", quote(a))).unwrap_or_default();
    let parts: Vec<String> = fields
        .iter()
        .map(|f| format!("coalesce({prefix}{}, '')", quote(f)))
        .collect();
    format!("to_tsvector('simple', {})", parts.join(" || ' ' || "))
}

/// A deterministic index name within PostgreSQL's 63-byte limit.
pub(crate) fn index_name(prefix: &str, table: &str, cols: &[String]) -> String {
    let cols: Vec<String> = cols
        .iter()
        .map(|c| match c.strip_prefix('-') {
            Some(desc) => format!("{desc}_desc"),
            None => c.clone(),
        })
        .collect();
    let name = format!("{prefix}_{table}_{}", cols.join("_"));
    if name.len() <= 60 {
        return name;
    }
    let mut hash: u32 = 2166136261;
    for b in name.bytes() {
        hash = (hash ^ u32::from(b)).wrapping_mul(16777619);
    }
    format!("{}_{hash:08x}", &name[..50])
}

fn fk_action(o: OnDelete) -> ForeignKeyAction {
    match o {
        OnDelete::Restrict => ForeignKeyAction::Restrict,
        OnDelete::Cascade => ForeignKeyAction::Cascade,
        OnDelete::SetNull => ForeignKeyAction::SetNull,
    }
}

/// Builds the statements of one dialect.
pub(crate) struct Builder {
    pub dialect: Dialect,
}

impl Builder {
    /// A column's definition; `with_default`: its fixed default, for rows that exist.
    pub fn column(&self, c: &ColumnShape, with_default: bool) -> ColumnDef {
        let mut def = ColumnDef::new(c.name.clone());
        def.custom(self.dialect.ddl_column_type(c.storage()));
        if c.required {
            def.not_null();
        }
        if with_default && let Some(cell) = c.default_cell() {
            def.default(cell_value(self.dialect, c.ty, c.scale, &cell));
        }
        if self.dialect.ddl_inline_references()
            && let Some(r) = &c.reference
        {
            def.extra(format!(
                "REFERENCES {}(\"id\") ON DELETE {}",
                quote(&r.target),
                self.dialect.ddl_on_delete(r.on_delete)
            ));
        }
        def
    }

    fn system_columns(&self, t: &mut TableCreateStatement) {
        let (id_type, time_type) = (self.dialect.ddl_id_type(), self.dialect.ddl_time_type());
        t.col(
            ColumnDef::new("id")
                .custom(id_type)
                .not_null()
                .primary_key(),
        )
        .col(ColumnDef::new("created_at").custom(time_type).not_null())
        .col(ColumnDef::new("updated_at").custom(time_type).not_null())
        .col(
            ColumnDef::new("version")
                .custom(self.dialect.ddl_version_type())
                .not_null()
                .default(1),
        );
    }

    /// `CREATE TABLE` with the system columns and the entity's columns.
    pub fn create_table(&self, table: &str, e: &EntityShape) -> String {
        let mut t = Table::create();
        t.table(table.to_string());
        self.system_columns(&mut t);
        for c in e.columns() {
            t.col(self.column(c, false));
        }
        self.dialect.ddl_sql(&t)
    }

    /// `ALTER TABLE … ADD COLUMN`.
    pub fn add_column(&self, table: &str, c: &ColumnShape, with_default: bool) -> String {
        let mut t = Table::alter();
        t.table(table.to_string())
            .add_column(self.column(c, with_default));
        self.dialect.ddl_sql(&t)
    }

    /// `ALTER TABLE … RENAME COLUMN`.
    pub fn rename_column(&self, table: &str, from: &str, to: &str) -> String {
        let mut t = Table::alter();
        t.table(table.to_string())
            .rename_column(from.to_string(), to.to_string());
        self.dialect.ddl_sql(&t)
    }

    /// The reference of a ref column as a constraint, where references are not part
    /// of the column (PostgreSQL: added once every table exists).
    pub fn foreign_key(&self, table: &str, c: &ColumnShape) -> Option<String> {
        let r = c.reference.as_ref()?;
        if self.dialect.ddl_inline_references() {
            return None;
        }
        Some(
            self.dialect.ddl_sql(
                &ForeignKey::create()
                    .name(format!("fk_{table}_{}", c.name))
                    .from(table.to_string(), c.name.clone())
                    .to(r.target.clone(), "id")
                    .on_delete(fk_action(r.on_delete))
                    .to_owned(),
            ),
        )
    }

    /// The link table of a many field, and its index on the target.
    pub fn create_join(&self, entity: &str, link: &LinkShape) -> Vec<String> {
        let table = crate::spec::join_table(entity, &link.name);
        let id_type = self.dialect.ddl_id_type();
        let mut t = Table::create();
        t.table(table.clone())
            .col(ColumnDef::new("source_id").custom(id_type).not_null())
            .col(ColumnDef::new("target_id").custom(id_type).not_null())
            .primary_key(Index::create().col("source_id").col("target_id"))
            .foreign_key(
                ForeignKey::create()
                    .name(format!("fk_{table}_source"))
                    .from(table.clone(), "source_id")
                    .to(entity.to_string(), "id")
                    .on_delete(ForeignKeyAction::Cascade),
            )
            .foreign_key(
                ForeignKey::create()
                    .name(format!("fk_{table}_target"))
                    .from(table.clone(), "target_id")
                    .to(link.target.clone(), "id")
                    .on_delete(ForeignKeyAction::Cascade),
            );
        vec![
            self.dialect.ddl_sql(&t),
            self.index(&table, &["target_id".to_string()], false),
        ]
    }

    /// `CREATE [UNIQUE] INDEX IF NOT EXISTS`; a column `-name` is descending.
    pub fn index(&self, table: &str, cols: &[String], unique: bool) -> String {
        let name = index_name(if unique { "uq" } else { "ix" }, table, cols);
        if cols.iter().any(|c| c.starts_with('-')) {
            let rendered: Vec<String> = cols
                .iter()
                .map(|c| match c.strip_prefix('-') {
                    Some(d) => self.dialect.ddl_desc_column(&quote(d)),
                    None => quote(c),
                })
                .collect();
            return format!(
                "CREATE {}INDEX IF NOT EXISTS {} ON {} ({})",
                if unique { "UNIQUE " } else { "" },
                quote(&name),
                quote(table),
                rendered.join(", ")
            );
        }
        let mut i = Index::create();
        i.if_not_exists().name(name).table(table.to_string());
        for c in cols {
            i.col(c.clone());
        }
        if unique {
            i.unique();
        }
        self.dialect.ddl_sql(&i)
    }

    /// Every index of an entity (all `IF NOT EXISTS`): unique fields, references,
    /// `unique:` and `indexes:` groups.
    pub fn indexes(&self, table: &str, e: &EntityShape) -> Vec<String> {
        let mut out = Vec::new();
        for c in e.columns() {
            if c.unique {
                out.push(self.index(table, std::slice::from_ref(&c.name), true));
            } else if c.ty == FieldType::Ref {
                out.push(self.index(table, std::slice::from_ref(&c.name), false));
            }
        }
        for cols in &e.unique {
            out.push(self.index(table, cols, true));
        }
        for cols in &e.indexes {
            out.push(self.index(table, cols, false));
        }
        out
    }

    /// (Re)creates the full-text index of an entity (drops it without search fields).
    pub fn search(&self, table: &str, e: &EntityShape) -> Vec<String> {
        self.dialect.ddl_search(
            table,
            &e.search,
            &fts_table(table),
            &pg_document_of(&e.search, None),
        )
    }

    /// A table's change beyond ALTER (SQLite): a new table of the new shape, filled
    /// from the old one (`copy`: column -> expression over the old row), which then
    /// takes its place. Run with foreign keys off (see `apply_migration`).
    pub fn rebuild(&self, table: &str, e: &EntityShape, copy: &[(String, String)]) -> Vec<String> {
        let temp = format!("{table}__rebuild");
        let mut t = Table::create();
        t.table(temp.clone());
        self.system_columns(&mut t);
        for c in e.columns() {
            t.col(self.column(c, false));
        }
        let mut cols = ["id", "created_at", "updated_at", "version"]
            .into_iter()
            .map(quote)
            .collect::<Vec<_>>();
        let mut exprs = cols.clone();
        for (col, expr) in copy {
            cols.push(quote(col));
            exprs.push(expr.clone());
        }
        vec![
            self.dialect.ddl_sql(&t),
            format!(
                "INSERT INTO {} ({}) SELECT {} FROM {}",
                quote(&temp),
                cols.join(", "),
                exprs.join(", "),
                quote(table)
            ),
            format!("DROP TABLE {}", quote(table)),
            format!("ALTER TABLE {} RENAME TO {}", quote(&temp), quote(table)),
        ]
    }
}
