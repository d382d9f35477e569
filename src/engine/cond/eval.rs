//! Evaluates a [`Typed`] condition on records in memory, with SQL's semantics:
//! three-valued logic (a comparison with a missing value is unknown, and only
//! true passes), relation hops are `EXISTS`. The differential tests check that this
//! agrees with the SQL that `store` generates, on both databases.

use std::cmp::Ordering;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::Op;
use super::check::{Arg, Column, Ctx, Hop, Pred, Typed, resolve};
use crate::engine::input::Cell;
use crate::spec::FieldType;

/// A record as the API returns it.
pub type Record = Map<String, Value>;

/// Where related records are found.
pub trait World {
    /// The record of `entity` with this id.
    fn record(&self, entity: &str, id: &str) -> Option<&Record>;
    /// The records of `entity` whose `via` field holds `parent_id`.
    fn children(&self, entity: &str, via: &str, parent_id: &str) -> Vec<&Record>;
}

/// Kleene logic: `None` is unknown.
pub fn eval(t: &Typed, rec: &Record, world: &dyn World, ctx: &Ctx) -> Option<bool> {
    // `record.<field>` seen from inside relation steps: bound to this record's value
    // before the steps are taken (those of records further out were bound already).
    if has_outer(t) {
        return eval_bound(&bind_outer(t, rec, 0), rec, world, ctx);
    }
    eval_bound(t, rec, world, ctx)
}

fn has_outer(t: &Typed) -> bool {
    let outer = |a: &Arg| matches!(a, Arg::Outer { .. });
    match t {
        Typed::Const(_) => false,
        Typed::And(a, b) | Typed::Or(a, b) => has_outer(a) || has_outer(b),
        Typed::Not(a) => has_outer(a),
        Typed::Hop { inner, .. } => has_outer(inner),
        Typed::Links { id, .. } => id.as_ref().is_some_and(outer),
        Typed::Pred { pred, .. } => match pred {
            Pred::Cmp(_, a) => outer(a),
            Pred::In(args) => args.iter().any(outer),
            Pred::IsSet(_) => false,
        },
    }
}

/// Replaces the `Arg::Outer` that point at `rec` (`up` equal to their depth below
/// it) by its value.
fn bind_outer(t: &Typed, rec: &Record, depth: usize) -> Typed {
    let bind = |a: &Arg| match a {
        Arg::Outer { up, column } if *up == depth => {
            let value = rec.get(&column.name).and_then(Value::as_str);
            Arg::Cell(
                value
                    .and_then(|s| uuid::Uuid::parse_str(s).ok())
                    .map(Cell::Uuid)
                    .unwrap_or(Cell::Null),
            )
        }
        other => other.clone(),
    };
    match t {
        Typed::Const(_) => t.clone(),
        Typed::And(a, b) => Typed::And(
            Box::new(bind_outer(a, rec, depth)),
            Box::new(bind_outer(b, rec, depth)),
        ),
        Typed::Or(a, b) => Typed::Or(
            Box::new(bind_outer(a, rec, depth)),
            Box::new(bind_outer(b, rec, depth)),
        ),
        Typed::Not(a) => Typed::Not(Box::new(bind_outer(a, rec, depth))),
        Typed::Hop { hop, inner } => Typed::Hop {
            hop: hop.clone(),
            inner: Box::new(bind_outer(inner, rec, depth + 1)),
        },
        Typed::Links { hop, id } => Typed::Links {
            hop: hop.clone(),
            id: id.as_ref().map(bind),
        },
        Typed::Pred { column, pred } => Typed::Pred {
            column: column.clone(),
            pred: match pred {
                Pred::Cmp(op, a) => Pred::Cmp(*op, bind(a)),
                Pred::In(args) => Pred::In(args.iter().map(bind).collect()),
                Pred::IsSet(b) => Pred::IsSet(*b),
            },
        },
    }
}

fn eval_bound(t: &Typed, rec: &Record, world: &dyn World, ctx: &Ctx) -> Option<bool> {
    match t {
        Typed::Const(b) => Some(*b),
        Typed::And(a, b) => match (eval(a, rec, world, ctx), eval(b, rec, world, ctx)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Typed::Or(a, b) => match (eval(a, rec, world, ctx), eval(b, rec, world, ctx)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Typed::Not(a) => eval(a, rec, world, ctx).map(|b| !b),
        Typed::Hop { hop, inner } => Some(
            related(hop, rec, world)
                .iter()
                .any(|r| eval(inner, r, world, ctx) == Some(true)),
        ),
        Typed::Links { hop, id } => {
            let wanted = match id {
                None => None,
                Some(arg) => match resolve(arg, FieldType::Uuid, ctx) {
                    Some(Cell::Uuid(u)) => Some(u.hyphenated().to_string()),
                    _ => return Some(false),
                },
            };
            let ids = related_ids(hop, rec, world);
            Some(match wanted {
                None => !ids.is_empty(),
                Some(w) => ids.contains(&w),
            })
        }
        Typed::Pred { column, pred } if column.file.is_some() => {
            eval_file(column, pred, rec, world, ctx)
        }
        Typed::Pred { column, pred } => {
            let v = rec.get(&column.name).unwrap_or(&Value::Null);
            match pred {
                Pred::IsSet(set) => Some(v.is_null() != *set),
                Pred::Cmp(op, arg) => {
                    let arg = resolve(arg, column.ty, ctx)?;
                    if v.is_null() {
                        return None;
                    }
                    if *op == Op::Contains {
                        let (Some(hay), Cell::Text(needle)) = (v.as_str(), &arg) else {
                            return None;
                        };
                        return Some(
                            hay.to_ascii_lowercase()
                                .contains(&needle.to_ascii_lowercase()),
                        );
                    }
                    let ord = compare(column, v, &arg)?;
                    Some(match op {
                        Op::Eq => ord == Ordering::Equal,
                        Op::Ne => ord != Ordering::Equal,
                        Op::Lt => ord == Ordering::Less,
                        Op::Le => ord != Ordering::Greater,
                        Op::Gt => ord == Ordering::Greater,
                        Op::Ge => ord != Ordering::Less,
                        Op::Contains => false,
                    })
                }
                Pred::In(args) => {
                    if args.is_empty() {
                        return Some(false);
                    }
                    if v.is_null() {
                        return None;
                    }
                    let mut unknown = false;
                    for a in args {
                        match resolve(a, column.ty, ctx) {
                            // A missing `record.<field>`: SQL's `IN (NULL)`.
                            Some(Cell::Null) | None => unknown = true,
                            Some(cell) => {
                                if compare(column, v, &cell) == Some(Ordering::Equal) {
                                    return Some(true);
                                }
                            }
                        }
                    }
                    if unknown { None } else { Some(false) }
                }
            }
        }
    }
}

/// A test on a file field, as SQL runs it (`store::filter`): `is set` (a multiple
/// field: at least one file), or on a metadata value of its file (of any of its
/// files: an `EXISTS`, never unknown).
fn eval_file(
    column: &Column,
    pred: &Pred,
    rec: &Record,
    world: &dyn World,
    ctx: &Ctx,
) -> Option<bool> {
    let file = column.file?;
    let v = rec.get(&column.name).unwrap_or(&Value::Null);
    let files: Vec<&Value> = match v {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    };
    let Some(attr) = file.attr else {
        return match pred {
            Pred::IsSet(set) => Some(files.is_empty() != *set),
            _ => Some(false),
        };
    };
    let one = |meta: &Value| {
        let mut r = Record::new();
        r.insert(
            "v".into(),
            meta.get(attr.key()).cloned().unwrap_or(Value::Null),
        );
        let t = Typed::Pred {
            column: Column::plain("v", column.ty, 0),
            pred: pred.clone(),
        };
        eval_bound(&t, &r, world, ctx)
    };
    if file.multiple {
        Some(files.iter().any(|m| one(m) == Some(true)))
    } else {
        match files.first() {
            Some(m) => one(m),
            // SQL: a test on the value of a NULL column is unknown (`is set` false).
            None => match pred {
                Pred::IsSet(set) => Some(!*set),
                _ => None,
            },
        }
    }
}

fn ids_of(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn related<'w>(hop: &Hop, rec: &Record, world: &'w dyn World) -> Vec<&'w Record> {
    match hop {
        Hop::Ref { field, target } => rec
            .get(field)
            .and_then(Value::as_str)
            .and_then(|id| world.record(target, id))
            .into_iter()
            .collect(),
        Hop::Many { field, target, .. } => ids_of(rec.get(field))
            .iter()
            .filter_map(|id| world.record(target, id))
            .collect(),
        Hop::Inverse { child, via } => match rec.get("id").and_then(Value::as_str) {
            Some(id) => world.children(child, via, id),
            None => Vec::new(),
        },
    }
}

fn related_ids(hop: &Hop, rec: &Record, world: &dyn World) -> Vec<String> {
    match hop {
        // Links to records the world does not hold (a caller may not read them) do not count.
        Hop::Many { field, target, .. } => ids_of(rec.get(field))
            .into_iter()
            .filter(|id| world.record(target, id).is_some())
            .collect(),
        _ => related(hop, rec, world)
            .iter()
            .filter_map(|r| r.get("id").and_then(Value::as_str).map(str::to_string))
            .collect(),
    }
}

/// Orders a stored value (as the API returns it) against a cell.
fn compare(column: &Column, v: &Value, arg: &Cell) -> Option<Ordering> {
    match (column.ty, arg) {
        (_, Cell::Text(s)) => v.as_str().map(|x| x.cmp(s.as_str())),
        (FieldType::Integer, Cell::Int(i)) => v.as_i64().map(|x| x.cmp(i)),
        (_, Cell::Int(i)) => v.as_f64().and_then(|x| x.partial_cmp(&(*i as f64))),
        (_, Cell::Float(f)) => v.as_f64().and_then(|x| x.partial_cmp(f)),
        (_, Cell::Decimal(d)) => v
            .as_str()
            .and_then(|s| Decimal::from_str(s).ok())
            .map(|x| x.cmp(d)),
        (_, Cell::Bool(b)) => v.as_bool().map(|x| x.cmp(b)),
        (_, Cell::Date(d)) => v
            .as_str()
            .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
            .map(|x| x.cmp(d)),
        (_, Cell::DateTime(d)) => v
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|x| x.with_timezone(&Utc).cmp(d)),
        (_, Cell::Uuid(u)) => v
            .as_str()
            .map(|x| x.cmp(u.hyphenated().to_string().as_str())),
        _ => None,
    }
}
