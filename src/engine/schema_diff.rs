//! The difference between two sets of definitions, as typed changes.
//!
//! A [`Schema`] is what the database stores of a project: per entity its columns
//! (logical type, storage, `required`, `unique`, reference, default, enum values),
//! its many links, its search fields and indexes. [`diff`] turns an old schema and a
//! new one into a list of [`SchemaChange`]s; the migration text
//! ([`super::migration`]) and the SQL of each dialect (the store) both render from
//! that one list. The stored snapshot of an entity is its [`EntityShape`] (serde).
//! Nothing here knows SQL.

use serde::{Deserialize, Serialize};

use super::{Cell, Engine, Entity, Field, input};
use crate::spec::model::Default as SpecDefault;
use crate::spec::{FieldType, OnDelete, Storage};

/// What a ref column points to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    pub target: String,
    #[serde(with = "on_delete_name")]
    pub on_delete: OnDelete,
}

/// One column of an entity's table, dialect-neutral.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnShape {
    pub name: String,
    /// The logical type (several share one storage kind).
    #[serde(rename = "type", with = "field_type_name")]
    pub ty: FieldType,
    /// A decimal's precision and scale (0 for other types).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub precision: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub scale: u32,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub unique: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
    /// A fixed `default:` value, as written (not `now`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    /// An enum's values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// A file field's `multiple` (its values are an array, not one object). `None`
    /// for other types, and in shapes stored before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiple: Option<bool>,
    /// The column's former name (from the definitions; never stored).
    #[serde(skip)]
    pub renamed_from: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A `many` field: a link table to its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkShape {
    pub name: String,
    pub target: String,
}

/// A field that the database stores: a column or a link table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldShape {
    Column(ColumnShape),
    Link(LinkShape),
}

impl FieldShape {
    pub fn name(&self) -> &str {
        match self {
            FieldShape::Column(c) => &c.name,
            FieldShape::Link(l) => &l.name,
        }
    }
}

/// The stored shape of one entity: its fields in declaration order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EntityShape {
    pub fields: Vec<FieldShape>,
    #[serde(default)]
    pub search: Vec<String>,
    #[serde(default)]
    pub indexes: Vec<Vec<String>>,
    #[serde(default)]
    pub unique: Vec<Vec<String>>,
}

/// The shapes of a set of definitions, in the order of the definitions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schema {
    pub entities: Vec<(String, EntityShape)>,
    /// The entity with built-in accounts (`auth.users`).
    pub accounts: Option<String>,
}

/// One step from an old schema to a new one.
#[derive(Debug, Clone, PartialEq)]
pub enum SchemaChange {
    /// A new entity: its table, references, link tables and search index.
    CreateTable {
        entity: String,
        shape: EntityShape,
    },
    /// An entity removed from the definitions (its last stored shape).
    DropTable {
        entity: String,
        shape: EntityShape,
    },
    AddColumn {
        entity: String,
        column: ColumnShape,
    },
    /// A field with `renamed_from` naming a column of the old shape. `to` may differ
    /// from `from` in more than the name.
    RenameColumn {
        entity: String,
        from: ColumnShape,
        to: ColumnShape,
    },
    /// The same column with another type, `required`, `unique`, reference or enum values.
    ChangeColumn {
        entity: String,
        from: ColumnShape,
        to: ColumnShape,
    },
    DropColumn {
        entity: String,
        column: ColumnShape,
    },
    AddLink {
        entity: String,
        link: LinkShape,
    },
    /// A many field that now links to another entity.
    Relink {
        entity: String,
        from: LinkShape,
        to: LinkShape,
    },
    DropLink {
        entity: String,
        link: LinkShape,
    },
    /// Other search fields (`to` empty: no full-text index).
    ChangeSearch {
        entity: String,
        from: Vec<String>,
        to: Vec<String>,
    },
    /// Other `indexes:` or `unique:` groups.
    ChangeIndexes {
        entity: String,
    },
    /// Built-in accounts for another (or a first) users entity.
    Accounts {
        entity: String,
    },
}

impl SchemaChange {
    /// The entity the change is about.
    pub fn entity(&self) -> &str {
        match self {
            SchemaChange::CreateTable { entity, .. }
            | SchemaChange::DropTable { entity, .. }
            | SchemaChange::AddColumn { entity, .. }
            | SchemaChange::RenameColumn { entity, .. }
            | SchemaChange::ChangeColumn { entity, .. }
            | SchemaChange::DropColumn { entity, .. }
            | SchemaChange::AddLink { entity, .. }
            | SchemaChange::Relink { entity, .. }
            | SchemaChange::DropLink { entity, .. }
            | SchemaChange::ChangeSearch { entity, .. }
            | SchemaChange::ChangeIndexes { entity }
            | SchemaChange::Accounts { entity } => entity,
        }
    }
}

impl ColumnShape {
    pub fn of(f: &Field) -> ColumnShape {
        let decimal = f.ty == FieldType::Decimal;
        ColumnShape {
            name: f.name.clone(),
            ty: f.ty,
            precision: if decimal { f.precision } else { 0 },
            scale: if decimal { f.scale } else { 0 },
            required: f.required,
            unique: f.unique,
            reference: match (&f.target, f.ty) {
                (Some(target), FieldType::Ref) => Some(Reference {
                    target: target.clone(),
                    on_delete: f.on_delete,
                }),
                _ => None,
            },
            default: match &f.default {
                Some(SpecDefault::Value(v)) => Some(v.clone()),
                _ => None,
            },
            values: if f.ty == FieldType::Enum {
                f.values.clone()
            } else {
                Vec::new()
            },
            multiple: f.file.as_ref().map(|o| o.multiple),
            renamed_from: f.renamed_from.clone(),
        }
    }

    /// How the column keeps its values.
    pub fn storage(&self) -> Storage {
        self.ty
            .storage(self.precision, self.scale)
            .unwrap_or(Storage::Text)
    }

    /// The logical type as the store's messages name it: `decimal(18,2)`, `enum`, ….
    pub fn type_name(&self) -> String {
        match self.ty {
            FieldType::Decimal => format!("decimal({},{})", self.precision, self.scale),
            FieldType::File if self.multiple == Some(true) => "file (multiple)".to_string(),
            ty => ty.name().to_string(),
        }
    }

    /// The logical type as a migration file names it: `decimal(18, 2)`, `enum`, ….
    pub fn type_words(&self) -> String {
        match self.ty {
            FieldType::Decimal => format!("decimal({}, {})", self.precision, self.scale),
            FieldType::File if self.multiple == Some(true) => "file (multiple)".to_string(),
            ty => ty.name().to_string(),
        }
    }

    /// Same logical type (and decimal precision and scale, and a file field's
    /// `multiple` where both shapes know it)?
    pub fn same_type(&self, other: &ColumnShape) -> bool {
        (self.ty, self.precision, self.scale) == (other.ty, other.precision, other.scale)
            && !matches!((self.multiple, other.multiple), (Some(a), Some(b)) if a != b)
    }

    /// Same column definition: type, `required` and reference. What else may change
    /// (`unique`, enum values, the default) needs no change of the column itself.
    pub fn same_column(&self, other: &ColumnShape) -> bool {
        self.same_type(other)
            && self.required == other.required
            && self.reference == other.reference
    }

    /// Everything a migration would mention (not the default).
    fn same_shape(&self, other: &ColumnShape) -> bool {
        self.same_column(other) && self.unique == other.unique && self.values == other.values
    }

    /// Does every value of `from` fit this column unchanged (a widening conversion)?
    pub fn widens(&self, from: &ColumnShape) -> bool {
        use FieldType as T;
        self.same_type(from)
            || matches!(self.ty, T::Text | T::String | T::Json) && from.ty != T::Json
            || (from.ty == T::Integer && matches!(self.ty, T::Number | T::Decimal))
            || (from.ty == T::Decimal
                && self.ty == T::Decimal
                && self.scale >= from.scale
                && self.precision - self.scale >= from.precision - from.scale)
    }

    /// The default as a value of the column, when there is a fixed one that fits.
    pub fn default_cell(&self) -> Option<Cell> {
        let v = self.default.as_ref()?;
        input::convert(&self.as_field(), v).ok()
    }

    /// The values of `from` (an enum) that this column no longer has.
    pub fn removed_values<'a>(&self, from: &'a ColumnShape) -> Vec<&'a String> {
        from.values
            .iter()
            .filter(|v| !self.values.contains(v))
            .collect()
    }

    fn as_field(&self) -> Field {
        Field {
            required: self.required,
            unique: self.unique,
            values: self.values.clone(),
            target: self.reference.as_ref().map(|r| r.target.clone()),
            on_delete: self
                .reference
                .as_ref()
                .map_or(OnDelete::Restrict, |r| r.on_delete),
            scale: self.scale,
            precision: self.precision,
            ..Field::plain(&self.name, self.ty)
        }
    }
}

impl EntityShape {
    pub fn of(e: &Entity) -> EntityShape {
        EntityShape {
            fields: e
                .fields
                .iter()
                .filter_map(|f| match f.ty {
                    FieldType::Many => Some(FieldShape::Link(LinkShape {
                        name: f.name.clone(),
                        target: f.target.clone().unwrap_or_default(),
                    })),
                    _ if f.has_column() => Some(FieldShape::Column(ColumnShape::of(f))),
                    _ => None,
                })
                .collect(),
            search: e.search.clone(),
            indexes: e.indexes.clone(),
            unique: e.unique.clone(),
        }
    }

    pub fn columns(&self) -> impl Iterator<Item = &ColumnShape> {
        self.fields.iter().filter_map(|f| match f {
            FieldShape::Column(c) => Some(c),
            FieldShape::Link(_) => None,
        })
    }

    pub fn links(&self) -> impl Iterator<Item = &LinkShape> {
        self.fields.iter().filter_map(|f| match f {
            FieldShape::Link(l) => Some(l),
            FieldShape::Column(_) => None,
        })
    }

    pub fn column(&self, name: &str) -> Option<&ColumnShape> {
        self.columns().find(|c| c.name == name)
    }

    pub fn link(&self, name: &str) -> Option<&LinkShape> {
        self.links().find(|l| l.name == name)
    }
}

impl Schema {
    /// The shapes of an engine's definitions.
    pub fn of(engine: &Engine) -> Schema {
        Schema {
            entities: engine
                .entities()
                .iter()
                .map(|e| (e.name.clone(), EntityShape::of(e)))
                .collect(),
            accounts: engine.auth.users.as_ref().map(|u| u.entity.name.clone()),
        }
    }

    pub fn entity(&self, name: &str) -> Option<&EntityShape> {
        self.entities
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
    }
}

/// The changes from `old` to `new`: removed entities first, then each entity of
/// `new` in order (its fields in declaration order, then the fields it lost, its
/// search and indexes), then the accounts.
pub fn diff(old: &Schema, new: &Schema) -> Vec<SchemaChange> {
    let mut out = Vec::new();
    for (name, shape) in &old.entities {
        if new.entity(name).is_none() {
            out.push(SchemaChange::DropTable {
                entity: name.clone(),
                shape: shape.clone(),
            });
        }
    }
    for (name, shape) in &new.entities {
        match old.entity(name) {
            None => out.push(SchemaChange::CreateTable {
                entity: name.clone(),
                shape: shape.clone(),
            }),
            Some(prev) => entity_changes(name, prev, shape, &mut out),
        }
    }
    if old.accounts != new.accounts
        && let Some(u) = &new.accounts
    {
        out.push(SchemaChange::Accounts { entity: u.clone() });
    }
    out
}

fn column_change(entity: &str, prev: &EntityShape, c: &ColumnShape) -> Option<SchemaChange> {
    let entity = entity.to_string();
    if let Some(o) = prev.column(&c.name) {
        return (!o.same_shape(c)).then(|| SchemaChange::ChangeColumn {
            entity,
            from: o.clone(),
            to: c.clone(),
        });
    }
    let renamed = c.renamed_from.as_deref().and_then(|r| prev.column(r));
    Some(match renamed {
        Some(from) if prev.link(&c.name).is_none() => SchemaChange::RenameColumn {
            entity,
            from: from.clone(),
            to: c.clone(),
        },
        _ => SchemaChange::AddColumn {
            entity,
            column: c.clone(),
        },
    })
}

fn link_change(entity: &str, prev: &EntityShape, l: &LinkShape) -> Option<SchemaChange> {
    let entity = entity.to_string();
    match prev.link(&l.name) {
        None => Some(SchemaChange::AddLink {
            entity,
            link: l.clone(),
        }),
        Some(o) if o.target != l.target => Some(SchemaChange::Relink {
            entity,
            from: o.clone(),
            to: l.clone(),
        }),
        Some(_) => None,
    }
}

fn entity_changes(
    entity: &str,
    prev: &EntityShape,
    new: &EntityShape,
    out: &mut Vec<SchemaChange>,
) {
    for f in &new.fields {
        out.extend(match f {
            FieldShape::Column(c) => column_change(entity, prev, c),
            FieldShape::Link(l) => link_change(entity, prev, l),
        });
    }
    for f in &prev.fields {
        let renamed_away = new
            .columns()
            .any(|c| c.renamed_from.as_deref() == Some(f.name()));
        match f {
            FieldShape::Column(c) if new.column(&c.name).is_none() && !renamed_away => {
                out.push(SchemaChange::DropColumn {
                    entity: entity.to_string(),
                    column: c.clone(),
                });
            }
            FieldShape::Link(l) if new.link(&l.name).is_none() => {
                out.push(SchemaChange::DropLink {
                    entity: entity.to_string(),
                    link: l.clone(),
                });
            }
            _ => {}
        }
    }
    if prev.indexes != new.indexes || prev.unique != new.unique {
        out.push(SchemaChange::ChangeIndexes {
            entity: entity.to_string(),
        });
    }
    if prev.search != new.search {
        out.push(SchemaChange::ChangeSearch {
            entity: entity.to_string(),
            from: prev.search.clone(),
            to: new.search.clone(),
        });
    }
}

/// `FieldType` by its name in the definitions (`decimal`, `ref`, …).
mod field_type_name {
    use crate::spec::FieldType;

    pub fn serialize<S: serde::Serializer>(ty: &FieldType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(ty.name())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<FieldType, D::Error> {
        let name: String = serde::Deserialize::deserialize(d)?;
        FieldType::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown field type `{name}`")))
    }
}

/// `OnDelete` by its name in the definitions (`restrict`, `cascade`, `set_null`).
mod on_delete_name {
    use crate::spec::OnDelete;

    const NAMES: [(&str, OnDelete); 3] = [
        ("restrict", OnDelete::Restrict),
        ("cascade", OnDelete::Cascade),
        ("set_null", OnDelete::SetNull),
    ];

    pub fn serialize<S: serde::Serializer>(o: &OnDelete, s: S) -> Result<S::Ok, S::Error> {
        let name = NAMES
            .iter()
            .find(|(_, v)| v == o)
            .map_or("restrict", |(n, _)| n);
        s.serialize_str(name)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<OnDelete, D::Error> {
        let name: String = serde::Deserialize::deserialize(d)?;
        NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown on_delete `{name}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: FieldType) -> ColumnShape {
        ColumnShape {
            name: name.into(),
            ty,
            precision: 0,
            scale: 0,
            required: false,
            unique: false,
            reference: None,
            default: None,
            values: Vec::new(),
            multiple: None,
            renamed_from: None,
        }
    }

    fn link(name: &str, target: &str) -> FieldShape {
        FieldShape::Link(LinkShape {
            name: name.into(),
            target: target.into(),
        })
    }

    fn entity(fields: Vec<FieldShape>) -> EntityShape {
        EntityShape {
            fields,
            ..EntityShape::default()
        }
    }

    fn schema(entities: Vec<(&str, EntityShape)>) -> Schema {
        Schema {
            entities: entities
                .into_iter()
                .map(|(n, e)| (n.to_string(), e))
                .collect(),
            accounts: None,
        }
    }

    fn one(old: EntityShape, new: EntityShape) -> Vec<SchemaChange> {
        diff(&schema(vec![("task", old)]), &schema(vec![("task", new)]))
    }

    fn c(c: ColumnShape) -> FieldShape {
        FieldShape::Column(c)
    }

    #[test]
    fn same_definitions_make_no_change() {
        let e = entity(vec![
            c(col("title", FieldType::String)),
            link("tags", "tag"),
        ]);
        assert_eq!(one(e.clone(), e), []);
    }

    #[test]
    fn a_new_and_a_removed_entity() {
        let task = entity(vec![c(col("title", FieldType::String))]);
        let label = entity(vec![c(col("text", FieldType::String))]);
        let changes = diff(
            &schema(vec![("task", task.clone())]),
            &schema(vec![("label", label.clone())]),
        );
        assert_eq!(
            changes,
            [
                SchemaChange::DropTable {
                    entity: "task".into(),
                    shape: task
                },
                SchemaChange::CreateTable {
                    entity: "label".into(),
                    shape: label
                },
            ]
        );
    }

    #[test]
    fn added_renamed_and_dropped_columns() {
        let old = entity(vec![
            c(col("name", FieldType::String)),
            c(col("notes", FieldType::Text)),
        ]);
        let mut title = col("title", FieldType::String);
        title.renamed_from = Some("name".into());
        let due = col("due", FieldType::Date);
        let changes = one(old, entity(vec![c(title.clone()), c(due.clone())]));
        assert_eq!(
            changes,
            [
                SchemaChange::RenameColumn {
                    entity: "task".into(),
                    from: col("name", FieldType::String),
                    to: title
                },
                SchemaChange::AddColumn {
                    entity: "task".into(),
                    column: due
                },
                SchemaChange::DropColumn {
                    entity: "task".into(),
                    column: col("notes", FieldType::Text)
                },
            ]
        );
    }

    #[test]
    fn a_renamed_from_that_names_no_column_adds_one() {
        let mut c2 = col("c", FieldType::String);
        c2.renamed_from = Some("zzz".into());
        let changes = one(entity(vec![]), entity(vec![c(c2.clone())]));
        assert_eq!(
            changes,
            [SchemaChange::AddColumn {
                entity: "task".into(),
                column: c2
            }]
        );
    }

    #[test]
    fn changed_columns_and_what_changed() {
        let mut points = col("points", FieldType::Decimal);
        (points.precision, points.scale) = (18, 1);
        let mut owner = col("owner", FieldType::String);
        owner.required = true;
        owner.default = Some(serde_json::json!("nobody"));
        let old = entity(vec![
            c(col("points", FieldType::Integer)),
            c(col("owner", FieldType::String)),
        ]);
        let changes = one(old, entity(vec![c(points.clone()), c(owner.clone())]));
        let [
            SchemaChange::ChangeColumn {
                from: p0, to: p1, ..
            },
            SchemaChange::ChangeColumn {
                from: o0, to: o1, ..
            },
        ] = changes.as_slice()
        else {
            panic!("{changes:?}")
        };
        assert!(!p0.same_type(p1) && p1.widens(p0));
        assert_eq!(p1.type_name(), "decimal(18,1)");
        assert_eq!(p1.type_words(), "decimal(18, 1)");
        assert!(o0.same_type(o1) && !o0.same_column(o1));
        assert_eq!(o1.default_cell(), Some(Cell::Text("nobody".into())));
    }

    #[test]
    fn a_default_alone_is_no_change_but_unique_and_values_are() {
        let mut a = col("a", FieldType::Integer);
        a.default = Some(serde_json::json!(1));
        let mut b = a.clone();
        b.default = Some(serde_json::json!(2));
        assert_eq!(one(entity(vec![c(a.clone())]), entity(vec![c(b)])), []);

        let mut u = a.clone();
        u.unique = true;
        let changes = one(entity(vec![c(a.clone())]), entity(vec![c(u.clone())]));
        assert!(
            matches!(&changes[..], [SchemaChange::ChangeColumn { from, to, .. }] if from.same_column(to)),
            "{changes:?}"
        );

        let mut s0 = col("size", FieldType::Enum);
        s0.values = vec!["small".into(), "medium".into(), "large".into()];
        let mut s1 = s0.clone();
        s1.values = vec!["small".into(), "large".into(), "huge".into()];
        let changes = one(entity(vec![c(s0.clone())]), entity(vec![c(s1.clone())]));
        assert_eq!(s1.removed_values(&s0), [&"medium".to_string()]);
        assert_eq!(changes.len(), 1, "{changes:?}");
    }

    #[test]
    fn references_are_part_of_the_column() {
        let mut r0 = col("who", FieldType::Ref);
        r0.reference = Some(Reference {
            target: "person".into(),
            on_delete: OnDelete::Restrict,
        });
        let mut r1 = r0.clone();
        r1.reference = Some(Reference {
            target: "person".into(),
            on_delete: OnDelete::Cascade,
        });
        let changes = one(entity(vec![c(r0.clone())]), entity(vec![c(r1)]));
        assert!(
            matches!(&changes[..], [SchemaChange::ChangeColumn { from, to, .. }] if from.same_type(to) && !from.same_column(to)),
            "{changes:?}"
        );
    }

    #[test]
    fn links_added_relinked_and_dropped() {
        let old = entity(vec![link("people", "person"), link("zz", "person")]);
        let new = entity(vec![link("people", "team"), link("tags", "tag")]);
        let changes = one(old, new);
        let names: Vec<&str> = changes
            .iter()
            .map(|c| match c {
                SchemaChange::Relink { .. } => "relink",
                SchemaChange::AddLink { .. } => "add",
                SchemaChange::DropLink { .. } => "drop",
                _ => "other",
            })
            .collect();
        assert_eq!(names, ["relink", "add", "drop"]);
    }

    #[test]
    fn a_field_that_turns_from_link_into_column_is_added_and_dropped() {
        let old = entity(vec![link("people", "person")]);
        let new = entity(vec![c(col("people", FieldType::String))]);
        let changes = one(old, new);
        assert!(
            matches!(
                &changes[..],
                [
                    SchemaChange::AddColumn { .. },
                    SchemaChange::DropLink { .. }
                ]
            ),
            "{changes:?}"
        );
    }

    #[test]
    fn search_indexes_and_accounts() {
        let old = entity(vec![c(col("t", FieldType::String))]);
        let mut new = old.clone();
        new.search = vec!["t".into()];
        new.indexes = vec![vec!["t".into()]];
        let mut s_new = schema(vec![("task", new)]);
        s_new.accounts = Some("task".into());
        let changes = diff(&schema(vec![("task", old)]), &s_new);
        assert_eq!(
            changes,
            [
                SchemaChange::ChangeIndexes {
                    entity: "task".into()
                },
                SchemaChange::ChangeSearch {
                    entity: "task".into(),
                    from: vec![],
                    to: vec!["t".into()]
                },
                SchemaChange::Accounts {
                    entity: "task".into()
                },
            ]
        );
    }

    #[test]
    fn widening_conversions() {
        let dec = |p, s| {
            let mut c = col("x", FieldType::Decimal);
            (c.precision, c.scale) = (p, s);
            c
        };
        let int = col("x", FieldType::Integer);
        let text = col("x", FieldType::Text);
        let json = col("x", FieldType::Json);
        assert!(dec(18, 2).widens(&int));
        assert!(dec(12, 4).widens(&dec(10, 2)));
        assert!(!dec(10, 1).widens(&dec(10, 2)));
        assert!(!dec(10, 4).widens(&dec(10, 2)), "fewer integer digits");
        assert!(text.widens(&int));
        assert!(!text.widens(&json));
        assert!(!int.widens(&dec(18, 2)));
    }

    #[test]
    fn the_stored_shape_round_trips_and_names_types() {
        let mut r = col("who", FieldType::Ref);
        r.required = true;
        r.reference = Some(Reference {
            target: "person".into(),
            on_delete: OnDelete::SetNull,
        });
        let mut d = col("price", FieldType::Decimal);
        (d.precision, d.scale) = (10, 2);
        let e = entity(vec![c(r), c(d), link("tags", "tag")]);
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(
            text,
            r#"{"fields":[{"column":{"name":"who","type":"ref","required":true,"unique":false,"reference":{"target":"person","on_delete":"set_null"}}},{"column":{"name":"price","type":"decimal","precision":10,"scale":2,"required":false,"unique":false}},{"link":{"name":"tags","target":"tag"}}],"search":[],"indexes":[],"unique":[]}"#
        );
        assert_eq!(serde_json::from_str::<EntityShape>(&text).unwrap(), e);
        assert!(serde_json::from_str::<EntityShape>(r#"{"columns":{}}"#).is_err());
    }
}
