//! The steps from one set of definitions to the next, in plain words, for a
//! migration file that people review: a rendering of [`schema_diff::diff`].

use super::Engine;
use super::schema_diff::{
    self, ColumnShape, FieldShape, LinkShape, Reference, Schema, SchemaChange,
};
use crate::spec::{FieldType, OnDelete};

fn describe_column(c: &ColumnShape) -> String {
    let mut s = match c.ty {
        FieldType::Enum => format!("enum [{}]", c.values.join(", ")),
        FieldType::Ref => format!(
            "ref to {}",
            c.reference
                .as_ref()
                .map(|r| r.target.as_str())
                .unwrap_or_default()
        ),
        _ => c.type_words(),
    };
    if c.required {
        s.push_str(", required");
    }
    if c.unique {
        s.push_str(", unique");
    }
    s
}

fn describe(f: &FieldShape) -> String {
    match f {
        FieldShape::Column(c) => describe_column(c),
        FieldShape::Link(l) => format!("many to {}", l.target),
    }
}

fn on_delete_word(c: &ColumnShape) -> String {
    let o = c
        .reference
        .as_ref()
        .map_or(crate::spec::OnDelete::Restrict, |r| r.on_delete);
    format!("{o:?}").to_lowercase()
}

/// What changed in a column, in the order a reader checks it.
fn column_changes(from: &ColumnShape, to: &ColumnShape) -> Vec<String> {
    let mut changes = Vec::new();
    if !from.same_type(to) {
        changes.push(format!("type {} -> {}", from.type_words(), to.type_words()));
    }
    if from.required != to.required {
        changes.push(
            if to.required {
                "now required"
            } else {
                "now optional"
            }
            .into(),
        );
    }
    if from.unique != to.unique {
        changes.push(
            if to.unique {
                "now unique"
            } else {
                "no longer unique"
            }
            .into(),
        );
    }
    let target = |c: &ColumnShape| c.reference.as_ref().map(|r| r.target.clone());
    if target(from) != target(to) {
        changes.push(format!(
            "points to `{}` instead of `{}`",
            target(to).unwrap_or_default(),
            target(from).unwrap_or_default()
        ));
    }
    if on_delete_word(from) != on_delete_word(to) {
        changes.push(format!(
            "on_delete {} -> {}",
            on_delete_word(from),
            on_delete_word(to)
        ));
    }
    let added: Vec<&str> = to
        .values
        .iter()
        .filter(|v| !from.values.contains(v))
        .map(String::as_str)
        .collect();
    let removed: Vec<&str> = to
        .removed_values(from)
        .into_iter()
        .map(String::as_str)
        .collect();
    if !added.is_empty() {
        changes.push(format!("new values {}", added.join(", ")));
    }
    if !removed.is_empty() {
        changes.push(format!(
            "values removed: {} (records holding them keep them until changed)",
            removed.join(", ")
        ));
    }
    changes
}

/// A many field as a column-like shape, to name what changes when a field turns
/// from a link into a column or back.
fn link_as_column(l: &LinkShape) -> ColumnShape {
    ColumnShape {
        name: l.name.clone(),
        ty: FieldType::Many,
        precision: 0,
        scale: 0,
        required: false,
        unique: false,
        reference: Some(Reference {
            target: l.target.clone(),
            on_delete: OnDelete::Restrict,
        }),
        default: None,
        values: Vec::new(),
        multiple: None,
        renamed_from: None,
    }
}

/// A field that turned from a link into a column or back: one change of the field
/// for the reader (the database adds one and drops the other).
fn kind_change(change: &SchemaChange, all: &[SchemaChange]) -> Option<String> {
    let (entity, name, to) = match change {
        SchemaChange::AddColumn { entity, column } => (entity, &column.name, column.clone()),
        SchemaChange::AddLink { entity, link } => (entity, &link.name, link_as_column(link)),
        _ => return None,
    };
    let from = all.iter().find_map(|c| match c {
        SchemaChange::DropLink { entity: e, link } if e == entity && &link.name == name => {
            Some(link_as_column(link))
        }
        SchemaChange::DropColumn { entity: e, column } if e == entity && &column.name == name => {
            Some(column.clone())
        }
        _ => None,
    })?;
    (from.ty == FieldType::Many || to.ty == FieldType::Many).then(|| {
        format!(
            "change the field `{entity}.{name}`: {}",
            column_changes(&from, &to).join("; ")
        )
    })
}

/// The drop half of a [`kind_change`].
fn kind_changed_away(change: &SchemaChange, all: &[SchemaChange]) -> bool {
    let (entity, name, was_link) = match change {
        SchemaChange::DropColumn { entity, column } => (entity, &column.name, false),
        SchemaChange::DropLink { entity, link } => (entity, &link.name, true),
        _ => return false,
    };
    all.iter().any(|c| match c {
        SchemaChange::AddColumn { entity: e, column } => {
            was_link && e == entity && &column.name == name
        }
        SchemaChange::AddLink { entity: e, link } => !was_link && e == entity && &link.name == name,
        _ => false,
    })
}

/// One change in plain words (`None`: nothing a reader needs to see).
fn step(change: &SchemaChange, all: &[SchemaChange]) -> Option<String> {
    if kind_changed_away(change, all) {
        return None;
    }
    if let Some(s) = kind_change(change, all) {
        return Some(s);
    }
    Some(match change {
        SchemaChange::CreateTable { entity, shape } => {
            let fields: Vec<String> = shape
                .fields
                .iter()
                .map(|f| format!("{} ({})", f.name(), describe(f)))
                .collect();
            format!("create the entity `{entity}` with {}", fields.join(", "))
        }
        SchemaChange::DropTable { entity, .. } => {
            format!("drop the entity `{entity}` and all its records")
        }
        SchemaChange::AddColumn { entity, column } => format!(
            "add the field `{entity}.{}` ({})",
            column.name,
            describe_column(column)
        ),
        SchemaChange::AddLink { entity, link } => format!(
            "add the field `{entity}.{}` (many to {})",
            link.name, link.target
        ),
        SchemaChange::RenameColumn { entity, from, to } => format!(
            "rename the field `{entity}.{}` to `{}` (its data is kept)",
            from.name, to.name
        ),
        SchemaChange::ChangeColumn { entity, from, to } => format!(
            "change the field `{entity}.{}`: {}",
            to.name,
            column_changes(from, to).join("; ")
        ),
        SchemaChange::Relink { entity, from, to } => format!(
            "change the field `{entity}.{}`: points to `{}` instead of `{}`",
            to.name, to.target, from.target
        ),
        SchemaChange::DropColumn { entity, column } => format!(
            "drop the field `{entity}.{}` ({}) and its data",
            column.name,
            describe_column(column)
        ),
        SchemaChange::DropLink { entity, link } => format!(
            "drop the field `{entity}.{}` (many to {}) and its data",
            link.name, link.target
        ),
        SchemaChange::ChangeIndexes { entity } => format!("change the indexes of `{entity}`"),
        SchemaChange::ChangeSearch { entity, to, .. } => format!(
            "search `{entity}` by {}",
            if to.is_empty() {
                "nothing".to_string()
            } else {
                to.join(", ")
            }
        ),
        SchemaChange::Accounts { entity } => format!("keep built-in accounts for `{entity}`"),
    })
}

/// The order a migration file lists its steps in: each entity of the new
/// definitions (its fields, then the fields it lost, then its indexes and search),
/// then the entities removed, then the accounts.
fn rank(change: &SchemaChange) -> u8 {
    match change {
        SchemaChange::DropTable { .. } => 3,
        SchemaChange::Accounts { .. } => 4,
        SchemaChange::DropColumn { .. } | SchemaChange::DropLink { .. } => 1,
        SchemaChange::ChangeIndexes { .. } | SchemaChange::ChangeSearch { .. } => 2,
        _ => 0,
    }
}

/// What changes from `base` (the last migration's definitions; `None`: an empty
/// database) to `target`. Empty when nothing that the database stores changed.
pub fn steps(base: Option<&Engine>, target: &Engine) -> Vec<String> {
    let old = base.map(Schema::of).unwrap_or_default();
    let new = Schema::of(target);
    let mut changes = schema_diff::diff(&old, &new);
    // Stable: within a rank, the diff's order (entities and fields as declared).
    changes.sort_by_key(|c| {
        let entity = new
            .entities
            .iter()
            .position(|(n, _)| n == c.entity())
            .unwrap_or(usize::MAX);
        match rank(c) {
            r @ (3 | 4) => (r, 0, 0),
            r => (0, entity, r),
        }
    });
    changes.iter().filter_map(|c| step(c, &changes)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(files: &[(&str, &str)]) -> Engine {
        crate::engine::engine_from_texts(files)
    }

    fn task(fields: &str) -> Engine {
        engine(&[
            (
                "models/person.yaml",
                "entity: person\nfields:\n  name: string\n",
            ),
            (
                "models/team.yaml",
                "entity: team\nfields:\n  name: string\n",
            ),
            (
                "models/task.yaml",
                &format!("entity: task\nfields:\n{fields}"),
            ),
        ])
    }

    #[test]
    fn an_empty_database_gets_every_entity() {
        let e = task(
            "  title: { type: string, required: true, unique: true }\n  size: { type: enum, values: [s, m] }\n  who: { type: ref, to: person }\n  tags: { type: many, of: team }\n  price: { type: decimal, precision: 10, scale: 2 }\n",
        );
        assert_eq!(
            steps(None, &e),
            [
                "create the entity `person` with name (string)",
                "create the entity `task` with title (string, required, unique), size (enum [s, m]), who (ref to person), tags (many to team), price (decimal(10, 2))",
                "create the entity `team` with name (string)",
            ]
        );
        assert!(steps(Some(&e), &e).is_empty());
    }

    #[test]
    fn each_kind_of_field_change_in_words() {
        let v1 = task(
            "  name: { type: string, required: true }\n  points: integer\n  notes: text\n  size: { type: enum, values: [s, m] }\n  who: { type: ref, to: person }\n  tags: { type: many, of: person }\n  gone: { type: many, of: person }\n  people: { type: many, of: person }\n",
        );
        let v2 = task(
            "  title: { type: string, required: true, renamed_from: name }\n  points: { type: decimal, scale: 1, unique: true }\n  size: { type: enum, values: [m, l], required: true, default: m }\n  who: { type: ref, to: team, on_delete: cascade }\n  tags: { type: many, of: team }\n  added: date\n  people: string\nsearch: [title]\nindexes:\n  - [added]\n",
        );
        assert_eq!(
            steps(Some(&v1), &v2),
            [
                "rename the field `task.name` to `title` (its data is kept)",
                "change the field `task.points`: type integer -> decimal(18, 1); now unique",
                "change the field `task.size`: now required; new values l; values removed: s (records holding them keep them until changed)",
                "change the field `task.who`: points to `team` instead of `person`; on_delete restrict -> cascade",
                "change the field `task.tags`: points to `team` instead of `person`",
                "add the field `task.added` (date)",
                "change the field `task.people`: type many -> string; points to `` instead of `person`",
                "drop the field `task.notes` (text) and its data",
                "drop the field `task.gone` (many to person) and its data",
                "change the indexes of `task`",
                "search `task` by title",
            ]
        );
    }

    #[test]
    fn removed_entities_and_accounts_come_last() {
        let users =
            "entity: user\nfields:\n  email: { type: email, required: true, unique: true }\n";
        let settings = "name: x\nauth:\n  jwt: { algorithm: HS256, secret_env: X_SECRET }\n  users: { entity: user }\n";
        let v1 = engine(&[
            ("models/user.yaml", users),
            ("models/old.yaml", "entity: old\nfields:\n  a: string\n"),
        ]);
        let v2 = engine(&[("trellis.yaml", settings), ("models/user.yaml", users)]);
        assert_eq!(
            steps(Some(&v1), &v2),
            [
                "drop the entity `old` and all its records",
                "keep built-in accounts for `user`",
            ]
        );
    }
}
