//! The steps from one set of definitions to the next, in plain words, for a
//! migration file that people review.

use super::{Engine, Entity, Field};
use crate::spec::FieldType;

fn describe(f: &Field) -> String {
    let mut s = match f.ty {
        FieldType::Decimal => format!("decimal({}, {})", f.precision, f.scale),
        FieldType::Enum => format!("enum [{}]", f.values.join(", ")),
        FieldType::Ref | FieldType::Many | FieldType::Inverse => format!(
            "{} to {}",
            f.ty.name(),
            f.target.as_deref().unwrap_or_default()
        ),
        ty => ty.name().to_string(),
    };
    if f.required {
        s.push_str(", required");
    }
    if f.unique {
        s.push_str(", unique");
    }
    s
}

fn entity_steps(old: &Entity, new: &Entity, out: &mut Vec<String>) {
    let e = &new.name;
    for f in &new.fields {
        if f.ty == FieldType::Inverse {
            continue;
        }
        match old.field(&f.name) {
            None => match f
                .renamed_from
                .as_deref()
                .and_then(|r| old.field(r).map(|o| (r, o)))
            {
                Some((from, _)) => out.push(format!(
                    "rename the field `{e}.{from}` to `{}` (its data is kept)",
                    f.name
                )),
                None => out.push(format!("add the field `{e}.{}` ({})", f.name, describe(f))),
            },
            Some(o) => {
                let mut changes = Vec::new();
                if o.ty != f.ty || o.scale != f.scale || o.precision != f.precision {
                    changes.push(format!("type {} -> {}", describe_type(o), describe_type(f)));
                }
                if o.required != f.required {
                    changes.push(if f.required {
                        "now required".into()
                    } else {
                        "now optional".into()
                    });
                }
                if o.unique != f.unique {
                    changes.push(if f.unique {
                        "now unique".into()
                    } else {
                        "no longer unique".into()
                    });
                }
                if o.target != f.target {
                    changes.push(format!(
                        "points to `{}` instead of `{}`",
                        f.target.as_deref().unwrap_or_default(),
                        o.target.as_deref().unwrap_or_default()
                    ));
                }
                if o.on_delete != f.on_delete {
                    changes.push(
                        format!("on_delete {:?} -> {:?}", o.on_delete, f.on_delete).to_lowercase(),
                    );
                }
                let removed: Vec<&str> = o
                    .values
                    .iter()
                    .filter(|v| !f.values.contains(v))
                    .map(String::as_str)
                    .collect();
                let added: Vec<&str> = f
                    .values
                    .iter()
                    .filter(|v| !o.values.contains(v))
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
                if !changes.is_empty() {
                    out.push(format!(
                        "change the field `{e}.{}`: {}",
                        f.name,
                        changes.join("; ")
                    ));
                }
            }
        }
    }
    for o in &old.fields {
        if o.ty == FieldType::Inverse || new.field(&o.name).is_some() {
            continue;
        }
        if new
            .fields
            .iter()
            .any(|f| f.renamed_from.as_deref() == Some(o.name.as_str()))
        {
            continue;
        }
        out.push(format!(
            "drop the field `{e}.{}` ({}) and its data",
            o.name,
            describe(o)
        ));
    }
    if old.indexes != new.indexes || old.unique != new.unique {
        out.push(format!("change the indexes of `{e}`"));
    }
    if old.search != new.search {
        out.push(format!(
            "search `{e}` by {}",
            if new.search.is_empty() {
                "nothing".to_string()
            } else {
                new.search.join(", ")
            }
        ));
    }
}

fn describe_type(f: &Field) -> String {
    match f.ty {
        FieldType::Decimal => format!("decimal({}, {})", f.precision, f.scale),
        ty => ty.name().to_string(),
    }
}

/// What changes from `base` (the last migration's definitions; `None`: an empty
/// database) to `target`. Empty when nothing that the database stores changed.
pub fn steps(base: Option<&Engine>, target: &Engine) -> Vec<String> {
    let mut out = Vec::new();
    for e in target.entities() {
        match base.and_then(|b| b.entity(&e.name)) {
            None => {
                let fields: Vec<String> = e
                    .fields
                    .iter()
                    .filter(|f| f.ty != FieldType::Inverse)
                    .map(|f| format!("{} ({})", f.name, describe(f)))
                    .collect();
                out.push(format!(
                    "create the entity `{}` with {}",
                    e.name,
                    fields.join(", ")
                ));
            }
            Some(old) => entity_steps(old, e, &mut out),
        }
    }
    if let Some(base) = base {
        for old in base.entities() {
            if target.entity(&old.name).is_none() {
                out.push(format!(
                    "drop the entity `{}` and all its records",
                    old.name
                ));
            }
        }
    }
    let users = |e: &Engine| e.auth.users.as_ref().map(|u| u.entity.name.clone());
    if base.map(users).unwrap_or(None) != users(target)
        && let Some(u) = users(target)
    {
        out.push(format!("keep built-in accounts for `{u}`"));
    }
    out
}
