//! `GET /api/{plural}/aggregate`: groups and metrics for dashboards, read and checked
//! against the model.
//!
//! ```text
//! group_by=status,client,created_at:month   count=true   sum=budget   avg=budget
//! min=deadline   max=budget   filter=…   sort=-count   limit=50
//! ```

use super::access::{Action, Decision, Principal};
use super::cond::check::{Column, Scope, Typed, check};
use super::cond::parse;
use super::query::ParamError;
use super::types::kind;
use super::{Engine, Entity, system_field};
use crate::spec::FieldType;
use crate::spec::diag::did_you_mean;

pub const DEFAULT_GROUPS: u32 = 100;
pub const MAX_GROUPS: u32 = 1000;

/// A time bucket for grouping dates and datetimes (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Day,
    Week,
    Month,
    Year,
}

impl Bucket {
    pub fn name(self) -> &'static str {
        match self {
            Bucket::Day => "day",
            Bucket::Week => "week",
            Bucket::Month => "month",
            Bucket::Year => "year",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub column: Column,
    pub bucket: Option<Bucket>,
    /// The key in the answer: `status`, `created_at:month`.
    pub key: String,
    /// For a `many` field: its link table (a record counts once per linked id).
    pub link: Option<String>,
    /// For a `many` field whose target the caller may read only in part: the target
    /// entity and the condition on its rows; links to other rows do not count
    /// (`Const(false)`: the caller may read none of them).
    pub link_rows: Option<(String, Typed)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Count => "count",
            Metric::Sum => "sum",
            Metric::Avg => "avg",
            Metric::Min => "min",
            Metric::Max => "max",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Measure {
    pub metric: Metric,
    /// `None` for `count`.
    pub column: Option<Column>,
    /// The key in the answer: `count`, `sum_budget`.
    pub key: String,
}

#[derive(Debug, Clone)]
pub struct AggregateRequest {
    pub filter: Option<Typed>,
    pub groups: Vec<Group>,
    pub measures: Vec<Measure>,
    /// (key, descending)
    pub sort: Vec<(String, bool)>,
    pub limit: u32,
}

const PARAMS: [&str; 9] = [
    "group_by", "count", "sum", "avg", "min", "max", "filter", "sort", "limit",
];

fn column_of(
    e: &Entity,
    name: &str,
    param: &str,
    hidden: &[(String, String)],
) -> Result<Column, ParamError> {
    column_or_link(e, name, param, hidden, false).map(|(c, _)| c)
}

fn column_or_link(
    e: &Entity,
    name: &str,
    param: &str,
    hidden: &[(String, String)],
    allow_many: bool,
) -> Result<(Column, Option<String>), ParamError> {
    if hidden.iter().any(|(en, f)| *en == e.name && f == name) {
        return Err(ParamError {
            param: param.into(),
            message: format!("you may not aggregate `{name}`"),
            hint: None,
            column: None,
        });
    }
    let field = e
        .field(name)
        .or_else(|| system_field(name))
        .ok_or_else(|| {
            let names: Vec<&str> = e.fields.iter().map(|f| f.name.as_str()).collect();
            ParamError {
                param: param.into(),
                message: format!("{} has no field `{name}`", e.name),
                hint: did_you_mean(name, names.iter().copied())
                    .map(|b| format!("did you mean `{b}`?")),
                column: None,
            }
        })?;
    if allow_many && field.ty == FieldType::Many {
        return Ok((
            Column::plain(&field.name, FieldType::Uuid, 0),
            Some(e.join_table(field)),
        ));
    }
    if !field.kind().comparable() {
        return Err(ParamError {
            param: param.into(),
            message: format!(
                "`{name}` is a {} field and cannot be aggregated",
                field.ty.name()
            ),
            hint: None,
            column: None,
        });
    }
    Ok((Column::plain(&field.name, field.ty, field.scale), None))
}

fn err(param: &str, message: impl Into<String>) -> ParamError {
    ParamError {
        param: param.into(),
        message: message.into(),
        hint: None,
        column: None,
    }
}

/// Reads the parameters of an aggregate request.
pub fn aggregate_request(
    engine: &Engine,
    e: &Entity,
    pairs: &[(String, String)],
    hidden: &[(String, String)],
    who: &Principal,
) -> Result<AggregateRequest, ParamError> {
    let mut req = AggregateRequest {
        filter: None,
        groups: Vec::new(),
        measures: Vec::new(),
        sort: Vec::new(),
        limit: DEFAULT_GROUPS,
    };
    let mut sort_text = String::new();
    let mut seen: Vec<&str> = Vec::new();
    for (k, v) in pairs {
        let name = k.as_str();
        if !PARAMS.contains(&name) {
            return Err(ParamError {
                param: name.into(),
                message: format!("unknown query parameter `{name}`"),
                hint: Some(match did_you_mean(name, PARAMS.iter().copied()) {
                    Some(b) => format!("did you mean `{b}`?"),
                    None => format!("supported: {}", PARAMS.join(", ")),
                }),
                column: None,
            });
        }
        if seen.contains(&name) {
            return Err(err(name, format!("`{name}` is given more than once")));
        }
        seen.push(name);
        match name {
            "group_by" => {
                for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let (field, bucket) = match part.split_once(':') {
                        Some((f, b)) => {
                            let bucket = match b {
                                "day" => Bucket::Day,
                                "week" => Bucket::Week,
                                "month" => Bucket::Month,
                                "year" => Bucket::Year,
                                other => {
                                    return Err(err(
                                        "group_by",
                                        format!(
                                            "`{other}` is not a bucket; use day, week, month or year"
                                        ),
                                    ));
                                }
                            };
                            (f, Some(bucket))
                        }
                        None => (part, None),
                    };
                    let (column, link) =
                        column_or_link(e, field, "group_by", hidden, bucket.is_none())?;
                    if link.is_some() && req.groups.iter().any(|g| g.link.is_some()) {
                        return Err(err("group_by", "group by at most one many field"));
                    }
                    if bucket.is_some() && !kind(column.ty).temporal() {
                        return Err(err(
                            "group_by",
                            format!(
                                "`{field}` is not a date, so it has no `:{}` buckets",
                                bucket.map(Bucket::name).unwrap_or_default()
                            ),
                        ));
                    }
                    if matches!(column.ty, FieldType::Text) {
                        return Err(err(
                            "group_by",
                            format!("`{field}` is a long text; group by a shorter field"),
                        ));
                    }
                    // Groups by linked ids count only links to rows the caller may read.
                    let link_rows = match (&link, e.field(field).and_then(|f| f.target.as_ref())) {
                        (Some(_), Some(target)) => {
                            match engine.access.decide(target, &Action::Read, who) {
                                Decision::Allow(Typed::Const(true)) => None,
                                Decision::Allow(rows) => Some((target.clone(), rows)),
                                Decision::Deny => Some((target.clone(), Typed::Const(false))),
                            }
                        }
                        _ => None,
                    };
                    req.groups.push(Group {
                        column,
                        bucket,
                        link,
                        link_rows,
                        key: part.to_string(),
                    });
                }
                if req.groups.len() > 4 {
                    return Err(err("group_by", "group by at most 4 fields"));
                }
            }
            "count" => match v.as_str() {
                "true" | "1" => req.measures.push(Measure {
                    metric: Metric::Count,
                    column: None,
                    key: "count".into(),
                }),
                "false" | "0" => {}
                _ => return Err(err("count", "`count` must be true or false")),
            },
            "sum" | "avg" | "min" | "max" => {
                let metric = match name {
                    "sum" => Metric::Sum,
                    "avg" => Metric::Avg,
                    "min" => Metric::Min,
                    _ => Metric::Max,
                };
                for field in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let column = column_of(e, field, name, hidden)?;
                    let fits = match metric {
                        Metric::Sum | Metric::Avg => column.ty.is_numeric(),
                        _ => column.ty.is_numeric() || kind(column.ty).temporal(),
                    };
                    if !fits {
                        return Err(err(
                            name,
                            format!(
                                "`{name}` needs a number{} field; `{field}` is a {} field",
                                if matches!(metric, Metric::Min | Metric::Max) {
                                    ", decimal or date"
                                } else {
                                    " or decimal"
                                },
                                column.ty.name()
                            ),
                        ));
                    }
                    req.measures.push(Measure {
                        metric,
                        key: format!("{name}_{field}"),
                        column: Some(column),
                    });
                }
            }
            "filter" => {
                let cond = parse(v).map_err(|e| ParamError {
                    param: "filter".into(),
                    message: e.message,
                    hint: e.hint,
                    column: Some(e.column),
                })?;
                super::query::budget(engine, e, &cond)?;
                let scope = Scope {
                    hidden: hidden.to_vec(),
                    rows: engine.access.readable_rows(engine, who),
                    ..Scope::default()
                };
                req.filter = Some(check(engine, e, &cond, &scope).map_err(|er| ParamError {
                    param: "filter".into(),
                    column: Some(er.column()),
                    message: er.message,
                    hint: er.hint,
                })?);
            }
            "sort" => sort_text = v.clone(),
            "limit" => {
                req.limit = match v.parse::<u32>() {
                    Ok(n) if (1..=MAX_GROUPS).contains(&n) => n,
                    _ => {
                        return Err(err(
                            "limit",
                            format!("`limit` must be a whole number from 1 to {MAX_GROUPS}"),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    if req.groups.is_empty() && req.measures.is_empty() {
        return Err(ParamError {
            param: "group_by".into(),
            message:
                "say what to compute: `group_by`, and/or `count=true`, `sum`, `avg`, `min`, `max`"
                    .into(),
            hint: Some("e.g. `group_by=status&count=true`".into()),
            column: None,
        });
    }
    if req.measures.is_empty() {
        req.measures.push(Measure {
            metric: Metric::Count,
            column: None,
            key: "count".into(),
        });
    }
    let keys: Vec<String> = req
        .groups
        .iter()
        .map(|g| g.key.clone())
        .chain(req.measures.iter().map(|m| m.key.clone()))
        .collect();
    for part in sort_text
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (desc, key) = match part.strip_prefix('-') {
            Some(k) => (true, k),
            None => (false, part),
        };
        if !keys.iter().any(|k| k == key) {
            return Err(ParamError {
                param: "sort".into(),
                message: format!(
                    "cannot sort by `{key}`: it is not a group or a metric of this request"
                ),
                hint: Some(format!("sortable here: {}", keys.join(", "))),
                column: None,
            });
        }
        req.sort.push((key.to_string(), desc));
    }
    if req.sort.is_empty() {
        req.sort = req.groups.iter().map(|g| (g.key.clone(), false)).collect();
    }
    Ok(req)
}
