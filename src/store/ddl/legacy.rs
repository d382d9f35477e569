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
