//! The stored shapes written before typed shapes: per column an SQL signature
//! (`TEXT NOT NULL REFERENCES x ON DELETE RESTRICT`) and, since migrations, its
//! logical type. Read once and converted; `sync_schema` writes the new form back.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::engine::schema_diff::{ColumnShape, EntityShape, FieldShape, LinkShape, Reference};
use crate::spec::{FieldType, OnDelete};
use crate::store::Dialect;

/// The old form of a stored shape.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct LegacySnapshot {
    /// Column name -> signature (SQL type, NOT NULL, reference).
    columns: BTreeMap<String, String>,
    /// Many field -> target entity.
    #[serde(default)]
    links: BTreeMap<String, String>,
    #[serde(default)]
    search: Vec<String>,
    /// Column name -> logical type (`decimal(18,2)`, `enum`, …); missing in the oldest.
    #[serde(default)]
    types: BTreeMap<String, String>,
    /// Enum field -> its values.
    #[serde(default)]
    values: BTreeMap<String, Vec<String>>,
}

/// The base SQL type of a signature (`TEXT NOT NULL REFERENCES …` -> `TEXT`).
fn sig_type(sig: &str) -> &str {
    let end = [" NOT NULL", " REFERENCES"]
        .iter()
        .filter_map(|m| sig.find(m))
        .min()
        .unwrap_or(sig.len());
    &sig[..end]
}

fn sig_reference(sig: &str) -> Option<Reference> {
    let rest = sig.split(" REFERENCES ").nth(1)?;
    let (target, action) = rest.split_once(" ON DELETE ").unwrap_or((rest, "RESTRICT"));
    Some(Reference {
        target: target.to_string(),
        on_delete: match action.trim() {
            "CASCADE" => OnDelete::Cascade,
            "SET NULL" => OnDelete::SetNull,
            _ => OnDelete::Restrict,
        },
    })
}

/// `decimal(18,2)`, `string`, … -> type, precision, scale.
fn parse_type(name: &str) -> Option<(FieldType, u32, u32)> {
    if let Some(args) = name.strip_prefix("decimal(") {
        let (p, s) = args.trim_end_matches(')').split_once(',')?;
        return Some((
            FieldType::Decimal,
            p.trim().parse().ok()?,
            s.trim().parse().ok()?,
        ));
    }
    FieldType::parse(name).map(|t| (t, 0, 0))
}

/// A logical type that the SQL type of an old column stands for.
fn infer_type(sql: &str, is_ref: bool) -> (FieldType, u32, u32) {
    if let Some(args) = sql.strip_prefix("NUMERIC(")
        && let Some((p, s)) = args.trim_end_matches(')').split_once(',')
        && let (Ok(p), Ok(s)) = (p.trim().parse(), s.trim().parse())
    {
        return (FieldType::Decimal, p, s);
    }
    let ty = match sql {
        "INTEGER" | "BIGINT" => FieldType::Integer,
        "REAL" | "DOUBLE PRECISION" => FieldType::Number,
        "BOOLEAN" => FieldType::Boolean,
        "DATE" => FieldType::Date,
        "TIMESTAMPTZ" => FieldType::Datetime,
        "JSONB" => FieldType::Json,
        _ if is_ref => FieldType::Ref,
        "UUID" => FieldType::Uuid,
        _ => FieldType::String,
    };
    (ty, 0, 0)
}

impl LegacySnapshot {
    /// The typed shape. A column without a recorded logical type takes the current
    /// definition's type when that is stored alike (what the old comparison of SQL
    /// signatures saw as unchanged), or one inferred from its SQL type.
    pub(crate) fn convert(self, dialect: Dialect, current: Option<&EntityShape>) -> EntityShape {
        let now = |name: &str| current.and_then(|c| c.column(name));
        let mut fields: Vec<FieldShape> = Vec::new();
        for (name, sig) in &self.columns {
            let reference = sig_reference(sig);
            let sql = sig_type(sig);
            let (ty, precision, scale) = match self.types.get(name).and_then(|t| parse_type(t)) {
                Some(t) => t,
                None => match now(name) {
                    Some(c) if dialect.ddl_column_type(c.storage()) == sql => {
                        (c.ty, c.precision, c.scale)
                    }
                    _ => infer_type(sql, reference.is_some()),
                },
            };
            fields.push(FieldShape::Column(ColumnShape {
                name: name.clone(),
                ty,
                precision,
                scale,
                required: sig.contains(" NOT NULL"),
                // Not recorded before, and changing it needs nothing of the column.
                unique: now(name).is_some_and(|c| c.unique),
                reference,
                default: None,
                values: self.values.get(name).cloned().unwrap_or_default(),
                multiple: None,
                renamed_from: None,
            }));
        }
        for (name, target) in self.links {
            fields.push(FieldShape::Link(LinkShape { name, target }));
        }
        EntityShape {
            fields,
            search: self.search,
            // Not recorded before: indexes are created whatever the snapshot says.
            indexes: current.map(|c| c.indexes.clone()).unwrap_or_default(),
            unique: current.map(|c| c.unique.clone()).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::schema_diff::ColumnShape;

    fn convert(dialect: Dialect, text: &str, current: Option<&EntityShape>) -> EntityShape {
        serde_json::from_str::<LegacySnapshot>(text)
            .unwrap()
            .convert(dialect, current)
    }

    fn column(e: &EntityShape, name: &str) -> ColumnShape {
        e.column(name).unwrap().clone()
    }

    #[test]
    fn signatures_and_logical_types_become_typed_columns() {
        let text = r#"{"columns":{"price":"NUMERIC(10, 2) NOT NULL","size":"TEXT","who":"UUID REFERENCES person ON DELETE SET NULL"},"links":{"tags":"tag"},"search":["size"],"types":{"price":"decimal(10,2)","size":"enum","who":"ref"},"values":{"size":["s","m"]}}"#;
        let e = convert(Dialect::Postgres, text, None);
        let price = column(&e, "price");
        assert_eq!(
            (price.ty, price.precision, price.scale, price.required),
            (FieldType::Decimal, 10, 2, true)
        );
        let size = column(&e, "size");
        assert_eq!(
            (size.ty, size.values.clone()),
            (FieldType::Enum, vec!["s".into(), "m".into()])
        );
        let who = column(&e, "who");
        assert_eq!(who.ty, FieldType::Ref);
        assert_eq!(
            who.reference,
            Some(Reference {
                target: "person".into(),
                on_delete: OnDelete::SetNull
            })
        );
        assert_eq!(
            e.link("tags"),
            Some(&LinkShape {
                name: "tags".into(),
                target: "tag".into()
            })
        );
        assert_eq!(e.search, ["size"]);
        // Rendered back, the signatures are what was stored.
        assert_eq!(
            Dialect::Postgres.ddl_signature(&price),
            "NUMERIC(10, 2) NOT NULL"
        );
        assert_eq!(
            Dialect::Postgres.ddl_signature(&who),
            "UUID REFERENCES person ON DELETE SET NULL"
        );
    }

    #[test]
    fn the_oldest_form_takes_the_current_type_when_stored_alike() {
        // No logical types: SQLite's TEXT could be any of several types.
        let text = r#"{"columns":{"body":"TEXT","n":"INTEGER NOT NULL","who":"TEXT REFERENCES person ON DELETE CASCADE"},"links":{}}"#;
        let body = ColumnShape {
            name: "body".into(),
            ty: FieldType::Text,
            precision: 0,
            scale: 0,
            required: false,
            unique: true,
            reference: None,
            default: None,
            values: Vec::new(),
            multiple: None,
            renamed_from: None,
        };
        let current = EntityShape {
            fields: vec![crate::engine::schema_diff::FieldShape::Column(body.clone())],
            indexes: vec![vec!["body".into()]],
            ..EntityShape::default()
        };
        let e = convert(Dialect::Sqlite, text, Some(&current));
        assert_eq!(column(&e, "body"), body, "the current type and unique");
        assert_eq!(column(&e, "n").ty, FieldType::Integer, "inferred");
        assert!(column(&e, "n").required);
        assert_eq!(column(&e, "who").ty, FieldType::Ref);
        assert_eq!(e.indexes, current.indexes);
    }

    #[test]
    fn sql_types_stand_for_logical_types() {
        for (sql, ty) in [
            ("BIGINT", FieldType::Integer),
            ("DOUBLE PRECISION", FieldType::Number),
            ("REAL", FieldType::Number),
            ("BOOLEAN", FieldType::Boolean),
            ("DATE", FieldType::Date),
            ("TIMESTAMPTZ", FieldType::Datetime),
            ("UUID", FieldType::Uuid),
            ("JSONB", FieldType::Json),
            ("TEXT", FieldType::String),
        ] {
            assert_eq!(infer_type(sql, false).0, ty, "{sql}");
        }
        assert_eq!(
            infer_type("NUMERIC(12, 3)", false),
            (FieldType::Decimal, 12, 3)
        );
        assert_eq!(infer_type("UUID", true).0, FieldType::Ref);
    }
}
