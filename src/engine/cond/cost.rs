//! The cost budget of a condition a caller writes (`filter` on lists, `count`,
//! `/aggregate` and `/events`). Each relation step is a correlated subquery that the
//! database runs for the rows of the step before it, so a condition's cost grows
//! with the product of its steps along a path and with the sum over its branches.
//! Conditions the project author wrote (policy `where:`, named `conditions:`,
//! workflow guards) are not budgeted.
//!
//! The cost of a condition:
//! - a test on a field of the record itself: 1 ([`FIELD_COST`]); `~` (contains) on a
//!   field reached through a relation: [`CONTAINS_COST`] (it reads every related
//!   value, no index serves it);
//! - times [`REF_STEP`] for each step through a `ref` field, and [`TO_MANY_STEP`]
//!   for each step through a `many` or `inverse` field (a path that ends on a
//!   to-many field, `skills has …`, `applications is set`, counts that step too);
//! - `and`, `or`: the sum of both sides; `not`: the cost of what it negates.
//!
//! A condition that costs more than [`MAX_FILTER_COST`] is refused (400).

use super::check::Typed;
use super::{Cond, Path};
use crate::engine::{Engine, Entity};
use crate::spec::FieldType;

/// The most a caller's condition may cost.
pub const MAX_FILTER_COST: u64 = 256;
/// A test on a field of the record (or of a related record, before the steps).
pub const FIELD_COST: u64 = 1;
/// `~` on a field of a related record.
pub const CONTAINS_COST: u64 = 4;
/// A step through a `ref` field (one related record).
pub const REF_STEP: u64 = 2;
/// A step through a `many` or `inverse` field (any number of related records).
pub const TO_MANY_STEP: u64 = 4;

/// A condition over the budget: what it costs and what to simplify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverBudget {
    pub cost: u64,
    pub message: String,
    pub hint: String,
}

/// The relation steps of `path` from `e`, as their cost factors (unknown names
/// count as fields: `check` reports them).
fn steps(engine: &Engine, e: &Entity, path: &Path) -> Vec<u64> {
    let mut out = Vec::new();
    let mut at = Some(e);
    for seg in &path.segments {
        let Some(field) = at.and_then(|en| en.field(seg)) else {
            break;
        };
        let factor = match field.ty {
            FieldType::Ref => REF_STEP,
            FieldType::Many | FieldType::Inverse => TO_MANY_STEP,
            _ => break,
        };
        out.push(factor);
        at = field
            .target
            .as_deref()
            .and_then(|t| engine.entity(t))
            .map(|a| &**a);
    }
    out
}

/// What `cond` costs on `e`, with the most expensive path it names.
fn walk(engine: &Engine, e: &Entity, cond: &Cond, worst: &mut (u64, String)) -> u64 {
    let leaf = |path: &Path, contains: bool, worst: &mut (u64, String)| {
        let steps = steps(engine, e, path);
        let base = if contains && !steps.is_empty() {
            CONTAINS_COST
        } else {
            FIELD_COST
        };
        let cost = steps.iter().fold(base, |acc, f| acc.saturating_mul(*f));
        if cost > worst.0 {
            *worst = (cost, path.to_string());
        }
        cost
    };
    match cond {
        Cond::And(a, b) | Cond::Or(a, b) => {
            walk(engine, e, a, worst).saturating_add(walk(engine, e, b, worst))
        }
        Cond::Not(inner) => walk(engine, e, inner, worst),
        Cond::Cmp { path, op, .. } => leaf(path, *op == super::Op::Contains, worst),
        Cond::In { path, .. }
        | Cond::IsSet { path, .. }
        | Cond::Has { path, .. }
        | Cond::Truthy(path) => leaf(path, false, worst),
        // A block: its condition, on the related records, times the steps to them.
        Cond::Within { path, cond } => {
            let factor = steps(engine, e, path)
                .iter()
                .fold(1u64, |acc, f| acc.saturating_mul(*f));
            let inner = match end(engine, e, path) {
                Some(target) => walk(engine, target, cond, worst),
                None => FIELD_COST,
            };
            inner.saturating_mul(factor)
        }
    }
}

/// The entity `path` leads to from `e`, if every segment is a relation.
fn end<'e>(engine: &'e Engine, e: &'e Entity, path: &Path) -> Option<&'e Entity> {
    let mut at = e;
    for seg in &path.segments {
        let target = at.field(seg)?.target.as_deref()?;
        at = engine.entity(target)?;
    }
    Some(at)
}

/// The cost of a caller's condition on `e` (see the module's documentation).
pub fn cost(engine: &Engine, e: &Entity, cond: &Cond) -> u64 {
    walk(engine, e, cond, &mut (0, String::new()))
}

/// Refuses a caller's condition that costs more than [`MAX_FILTER_COST`], saying
/// which part weighs most.
pub fn within_budget(engine: &Engine, e: &Entity, cond: &Cond) -> Result<(), OverBudget> {
    let mut worst = (0, String::new());
    let total = walk(engine, e, cond, &mut worst);
    if total <= MAX_FILTER_COST {
        return Ok(());
    }
    let (heaviest, path) = worst;
    let message = format!(
        "the filter is too expensive to run: it costs {total}, and at most {MAX_FILTER_COST} is allowed \
         (`{path}` alone costs {heaviest})"
    );
    let hint = "simplify it: use fewer `or` branches over relation paths (`a.b = x or a.b = y` \
        is `a.b in [x, y]`), fewer relation steps per path, and `~` on the record's own \
        fields rather than on related ones; see docs/querying.md, \"Cost of a filter\""
        .to_string();
    Err(OverBudget {
        cost: total,
        message,
        hint,
    })
}

/// Does a checked condition step through a relation (a correlated subquery)?
/// The store gives such requests only some of its connections.
pub fn steps_through_relations(t: &Typed) -> bool {
    match t {
        Typed::Const(_) | Typed::Pred { .. } => false,
        Typed::Hop { .. } | Typed::Links { .. } => true,
        Typed::And(a, b) | Typed::Or(a, b) => {
            steps_through_relations(a) || steps_through_relations(b)
        }
        Typed::Not(inner) => steps_through_relations(inner),
    }
}
