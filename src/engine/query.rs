//! The query parameters of list and get requests, read and checked against the model:
//! `filter`, `sort`, `limit`, `after`, `count`, `fields`, `expand`, `q`.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::access::Principal;
use super::cond::check::{Column, Scope, Typed, check};
use super::cond::parse;
use super::input::Cell;
use super::{Engine, Entity, system_field};
use crate::spec::FieldType;
use crate::spec::diag::did_you_mean;

/// Most records in one page of a list (`limit`).
pub const MAX_LIMIT: u32 = 200;
/// A list's page size when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 20;
/// How deep `expand` may go (`a.b.c`).
pub const MAX_EXPAND_DEPTH: usize = 3;
/// At most this many related records per parent in `many` and `inverse` expansions
/// (defined with the relation types, whose record schema states it).
pub use super::types::relation::EXPAND_CAP;
/// Longest `q`.
pub const MAX_SEARCH_LENGTH: usize = 200;

/// A problem with one query parameter: answered as 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub param: String,
    pub message: String,
    pub hint: Option<String>,
    /// For `filter`: the 1-based column of the problem in the condition.
    pub column: Option<usize>,
}

impl ParamError {
    fn new(param: &str, message: impl Into<String>, hint: Option<String>) -> ParamError {
        ParamError {
            param: param.to_string(),
            message: message.into(),
            hint,
            column: None,
        }
    }
}

/// One sort key.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub column: Column,
    pub desc: bool,
}

/// Relations to embed, as a tree: `client.members,skills`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expand {
    pub children: BTreeMap<String, Expand>,
}

impl Expand {
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }
}

/// Fields to return, as a tree: `id,title,client.name`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields {
    /// Field name -> the fields of the embedded record (empty: all of them).
    pub names: BTreeMap<String, Fields>,
}

/// Where the previous page ended: the sort values and id of its last record.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    /// The sort, as given, so that a cursor is not used with another one.
    #[serde(rename = "s")]
    pub sort: String,
    /// The values of the sort keys (the last one is the id).
    #[serde(rename = "k")]
    pub keys: Vec<Value>,
    /// Relevance-ranked search pages by position instead.
    #[serde(rename = "o", default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let bytes = URL_SAFE_NO_PAD.decode(text.as_bytes()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The cursor after `record` for this sort.
    pub fn after(
        record: &serde_json::Map<String, Value>,
        sort_text: &str,
        sort: &[SortKey],
    ) -> Cursor {
        Cursor {
            sort: sort_text.to_string(),
            keys: sort
                .iter()
                .map(|k| record.get(&k.column.name).cloned().unwrap_or(Value::Null))
                .collect(),
            offset: None,
        }
    }
}

/// A value as the API returns it, back into a cell (for cursors).
pub fn cell_from_output(ty: FieldType, scale: u32, v: &Value) -> Option<Cell> {
    if v.is_null() {
        return Some(Cell::Null);
    }
    super::types::kind(ty).cursor_value(scale, v)
}

/// A list request, checked.
#[derive(Debug, Clone)]
pub struct ListRequest {
    pub filter: Option<Typed>,
    /// The sort keys, always ending with `id` so that the order is total.
    pub sort: Vec<SortKey>,
    /// The sort as written (part of cursors).
    pub sort_text: String,
    pub limit: u32,
    /// The decoded `after` cursor: one cell per sort key.
    pub after: Option<Vec<Cell>>,
    pub count: bool,
    pub fields: Option<Fields>,
    pub expand: Expand,
    /// Full-text search words.
    pub search: Option<String>,
    /// Order by search relevance (a search without `sort`); pages by position.
    pub relevance: bool,
    /// The position to continue from, when ordered by relevance.
    pub offset: u64,
}

impl ListRequest {
    /// What a cursor of this list must carry: the sort and the search.
    pub fn cursor_key(&self) -> String {
        match &self.search {
            Some(q) => format!("{}|{q}", self.sort_text),
            None => self.sort_text.clone(),
        }
    }
}

/// A get request's parameters.
#[derive(Debug, Clone, Default)]
pub struct GetRequest {
    pub fields: Option<Fields>,
    pub expand: Expand,
}

const LIST_PARAMS: [&str; 8] = [
    "filter", "sort", "limit", "after", "count", "fields", "expand", "q",
];
const GET_PARAMS: [&str; 2] = ["fields", "expand"];

fn unknown_param(name: &str, known: &[&str]) -> ParamError {
    ParamError::new(
        name,
        format!("unknown query parameter `{name}`"),
        Some(match did_you_mean(name, known.iter().copied()) {
            Some(best) => format!("did you mean `{best}`?"),
            None => format!("supported: {}", known.join(", ")),
        }),
    )
}

fn once<'a>(seen: &mut Vec<&'a str>, name: &'a str) -> Result<(), ParamError> {
    if seen.contains(&name) {
        return Err(ParamError::new(
            name,
            format!("`{name}` is given more than once"),
            Some("give each parameter once; separate several values with commas".into()),
        ));
    }
    seen.push(name);
    Ok(())
}

/// Reads the parameters of `GET /api/{plural}`.
pub fn list_request(
    engine: &Engine,
    e: &Entity,
    pairs: &[(String, String)],
    hidden: &[(String, String)],
    who: &Principal,
) -> Result<ListRequest, ParamError> {
    let mut req = ListRequest {
        filter: None,
        sort: Vec::new(),
        sort_text: String::new(),
        limit: DEFAULT_LIMIT,
        after: None,
        count: false,
        fields: None,
        expand: Expand::default(),
        search: None,
        relevance: false,
        offset: 0,
    };
    let mut seen = Vec::new();
    let mut after_raw = None;
    let mut fields_raw = None;
    for (k, v) in pairs {
        let name = k.as_str();
        if !LIST_PARAMS.contains(&name) {
            return Err(unknown_param(name, &LIST_PARAMS));
        }
        once(&mut seen, name)?;
        match name {
            "filter" => req.filter = Some(filter(engine, e, v, hidden, who)?),
            "sort" => req.sort_text = v.clone(),
            "limit" => {
                req.limit = match v.parse::<u32>() {
                    Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                    _ => {
                        return Err(ParamError::new(
                            "limit",
                            format!(
                                "`limit` must be a whole number from 1 to {MAX_LIMIT}, not `{v}`"
                            ),
                            None,
                        ));
                    }
                }
            }
            "after" => after_raw = Some(v.clone()),
            "count" => {
                req.count = match v.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(ParamError::new(
                            "count",
                            format!("`count` must be true or false, not `{v}`"),
                            None,
                        ));
                    }
                }
            }
            "fields" => fields_raw = Some(v.clone()),
            "expand" => req.expand = expand(engine, e, v, hidden)?,
            "q" => {
                let q = v.trim();
                if q.chars().count() > MAX_SEARCH_LENGTH {
                    return Err(ParamError::new(
                        "q",
                        format!("`q` may be at most {MAX_SEARCH_LENGTH} characters"),
                        None,
                    ));
                }
                if q.chars().any(|c| c.is_control() && !c.is_whitespace()) {
                    return Err(ParamError::new(
                        "q",
                        "`q` may not contain control characters (such as NUL)".to_string(),
                        Some("search for words: letters, digits and punctuation".into()),
                    ));
                }
                if e.search.is_empty() {
                    return Err(ParamError::new(
                        "q",
                        format!("{} has no search fields", e.name),
                        Some(format!(
                            "add `search: [field, …]` to models/{}.yaml",
                            e.name
                        )),
                    ));
                }
                if !q.is_empty() {
                    req.search = Some(q.to_string());
                }
            }
            _ => {}
        }
    }
    req.sort = sort(e, &req.sort_text)?;
    if let Some(k) = req
        .sort
        .iter()
        .find(|k| is_hidden(hidden, &e.name, &k.column.name))
    {
        return Err(ParamError::new(
            "sort",
            format!("you may not sort by `{}`", k.column.name),
            None,
        ));
    }
    req.relevance = req.search.is_some() && req.sort_text.trim().is_empty();
    if let Some(raw) = fields_raw {
        req.fields = Some(fields(engine, e, &raw, &req.expand, hidden)?);
    }
    if let Some(raw) = after_raw {
        let cursor = cursor(&raw, &req)?;
        if req.relevance {
            req.offset = cursor.offset.ok_or_else(bad_cursor)?;
        } else {
            req.after = Some(after(&cursor, &req)?);
        }
    }
    Ok(req)
}

/// Reads the parameters of `GET /api/{plural}/{id}`.
pub fn get_request(
    engine: &Engine,
    e: &Entity,
    pairs: &[(String, String)],
    hidden: &[(String, String)],
) -> Result<GetRequest, ParamError> {
    let mut req = GetRequest::default();
    let mut seen = Vec::new();
    let mut fields_raw = None;
    for (k, v) in pairs {
        let name = k.as_str();
        if !GET_PARAMS.contains(&name) {
            return Err(unknown_param(name, &GET_PARAMS));
        }
        once(&mut seen, name)?;
        match name {
            "expand" => req.expand = expand(engine, e, v, hidden)?,
            _ => fields_raw = Some(v.clone()),
        }
    }
    if let Some(raw) = fields_raw {
        req.fields = Some(fields(engine, e, &raw, &req.expand, hidden)?);
    }
    Ok(req)
}

fn is_hidden(hidden: &[(String, String)], entity: &str, field: &str) -> bool {
    hidden.iter().any(|(e, f)| e == entity && f == field)
}

/// A `filter` parameter, checked against the entity: hidden fields refused, and
/// every relation step restricted to the rows `who` may read.
pub fn filter(
    engine: &Engine,
    e: &Entity,
    text: &str,
    hidden: &[(String, String)],
    who: &Principal,
) -> Result<Typed, ParamError> {
    let cond = parse(text).map_err(|err| ParamError {
        param: "filter".into(),
        message: err.message,
        hint: err.hint,
        column: Some(err.column),
    })?;
    budget(engine, e, &cond)?;
    let scope = Scope {
        hidden: hidden.to_vec(),
        rows: engine.access.readable_rows(engine, who),
        ..Scope::default()
    };
    check(engine, e, &cond, &scope).map_err(|err| ParamError {
        param: "filter".into(),
        column: Some(err.column()),
        message: err.message,
        hint: err.hint,
    })
}

/// Refuses a caller's condition over the cost budget
/// ([`super::cond::cost::MAX_FILTER_COST`]) as a 400 on `filter`.
pub fn budget(engine: &Engine, e: &Entity, cond: &super::cond::Cond) -> Result<(), ParamError> {
    super::cond::cost::within_budget(engine, e, cond).map_err(|over| ParamError {
        param: "filter".into(),
        message: over.message,
        hint: Some(over.hint),
        column: None,
    })
}

fn sortable(ty: FieldType) -> bool {
    super::types::kind(ty).comparable()
}

fn sort(e: &Entity, text: &str) -> Result<Vec<SortKey>, ParamError> {
    let mut keys: Vec<SortKey> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (desc, name) = match part.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, part.strip_prefix('+').unwrap_or(part)),
        };
        let field = e
            .field(name)
            .or_else(|| system_field(name))
            .ok_or_else(|| {
                let names: Vec<&str> = e
                    .fields
                    .iter()
                    .filter(|f| sortable(f.ty))
                    .map(|f| f.name.as_str())
                    .chain(crate::spec::model::SYSTEM_FIELDS)
                    .collect();
                ParamError::new(
                    "sort",
                    format!("cannot sort by `{name}`: {} has no such field", e.name),
                    Some(match did_you_mean(name, names.iter().copied()) {
                        Some(best) => format!("did you mean `{best}`?"),
                        None => format!("sortable fields: {}", names.join(", ")),
                    }),
                )
            })?;
        if !sortable(field.ty) {
            return Err(ParamError::new(
                "sort",
                format!("cannot sort by `{name}`: it is a {} field", field.ty.name()),
                None,
            ));
        }
        if keys.iter().any(|k| k.column.name == field.name) {
            return Err(ParamError::new(
                "sort",
                format!("`{name}` is listed twice in `sort`"),
                None,
            ));
        }
        keys.push(SortKey {
            column: Column {
                name: field.name.clone(),
                ty: field.ty,
                scale: field.scale,
            },
            desc,
        });
        if field.name == "id" {
            // The id is unique: later keys could never matter.
            return Ok(keys);
        }
        if keys.len() > 8 {
            return Err(ParamError::new("sort", "sort by at most 8 fields", None));
        }
    }
    keys.push(SortKey {
        column: Column {
            name: "id".into(),
            ty: FieldType::Uuid,
            scale: 0,
        },
        desc: false,
    });
    Ok(keys)
}

fn bad_cursor() -> ParamError {
    ParamError::new(
        "after",
        "`after` is not a cursor of this list",
        Some("pass the `next` value of the previous page, with the same `sort` and `q`".into()),
    )
}

fn cursor(raw: &str, req: &ListRequest) -> Result<Cursor, ParamError> {
    let cursor = Cursor::decode(raw).ok_or_else(bad_cursor)?;
    if cursor.sort != req.cursor_key() {
        return Err(ParamError::new(
            "after",
            "this cursor belongs to a list with another `sort` or `q`",
            Some("start again without `after` when you change the sort or the search".into()),
        ));
    }
    Ok(cursor)
}

fn after(cursor: &Cursor, req: &ListRequest) -> Result<Vec<Cell>, ParamError> {
    if cursor.keys.len() != req.sort.len() {
        return Err(bad_cursor());
    }
    cursor
        .keys
        .iter()
        .zip(&req.sort)
        .map(|(v, k)| cell_from_output(k.column.ty, k.column.scale, v).ok_or_else(bad_cursor))
        .collect()
}

fn expand(
    engine: &Engine,
    e: &Entity,
    text: &str,
    hidden: &[(String, String)],
) -> Result<Expand, ParamError> {
    let mut root = Expand::default();
    let mut count = 0;
    for path in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let segments: Vec<&str> = path.split('.').collect();
        if segments.len() > MAX_EXPAND_DEPTH {
            return Err(ParamError::new(
                "expand",
                format!("`{path}` is deeper than {MAX_EXPAND_DEPTH} levels"),
                None,
            ));
        }
        let mut entity = e;
        let mut node = &mut root;
        for seg in segments {
            if is_hidden(hidden, &entity.name, seg) {
                return Err(ParamError::new(
                    "expand",
                    format!("you may not expand `{seg}`"),
                    None,
                ));
            }
            let field = entity.field(seg).filter(|f| f.ty.is_link());
            let Some(field) = field else {
                let relations: Vec<&str> = entity
                    .fields
                    .iter()
                    .filter(|f| f.ty.is_link())
                    .map(|f| f.name.as_str())
                    .collect();
                return Err(ParamError::new(
                    "expand",
                    format!(
                        "cannot expand `{seg}`: it is not a relation of {}",
                        entity.name
                    ),
                    Some(match did_you_mean(seg, relations.iter().copied()) {
                        Some(best) => format!("did you mean `{best}`?"),
                        None if relations.is_empty() => format!("{} has no relations", entity.name),
                        None => format!("relations of {}: {}", entity.name, relations.join(", ")),
                    }),
                ));
            };
            entity = engine
                .entity(field.target.as_deref().unwrap_or_default())
                .ok_or_else(|| ParamError::new("expand", "unknown entity", None))?;
            if !node.children.contains_key(seg) {
                count += 1;
            }
            node = node.children.entry(seg.to_string()).or_default();
        }
    }
    if count > 12 {
        return Err(ParamError::new(
            "expand",
            "expand at most 12 relations at once",
            None,
        ));
    }
    Ok(root)
}

fn fields(
    engine: &Engine,
    e: &Entity,
    text: &str,
    expand: &Expand,
    hidden: &[(String, String)],
) -> Result<Fields, ParamError> {
    let mut root = Fields::default();
    for path in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let segments: Vec<&str> = path.split('.').collect();
        let mut entity = e;
        let mut node = &mut root;
        let mut exp = Some(expand);
        for (i, seg) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            if is_hidden(hidden, &entity.name, seg) {
                return Err(ParamError::new(
                    "fields",
                    format!("you may not select `{seg}`"),
                    None,
                ));
            }
            let field = entity.field(seg).or_else(|| system_field(seg));
            let Some(field) = field else {
                let names: Vec<&str> = entity
                    .fields
                    .iter()
                    .map(|f| f.name.as_str())
                    .chain(crate::spec::model::SYSTEM_FIELDS)
                    .collect();
                return Err(ParamError::new(
                    "fields",
                    format!("{} has no field `{seg}`", entity.name),
                    Some(match did_you_mean(seg, names.iter().copied()) {
                        Some(best) => format!("did you mean `{best}`?"),
                        None => format!("fields: {}", names.join(", ")),
                    }),
                ));
            };
            let expanded = exp.and_then(|x| x.children.get(*seg));
            if field.ty == FieldType::Inverse && expanded.is_none() {
                return Err(ParamError::new(
                    "fields",
                    format!("`{seg}` is only returned when expanded"),
                    Some(format!("add `expand={}`", segments[..=i].join("."))),
                ));
            }
            if !last {
                if expanded.is_none() {
                    return Err(ParamError::new(
                        "fields",
                        format!("`{path}` selects inside `{seg}`, which is not expanded"),
                        Some(format!("add `expand={}`", segments[..=i].join("."))),
                    ));
                }
                entity = engine
                    .entity(field.target.as_deref().unwrap_or_default())
                    .ok_or_else(|| ParamError::new("fields", "unknown entity", None))?;
            }
            exp = expanded;
            node = node.names.entry(seg.to_string()).or_default();
        }
    }
    Ok(root)
}

/// Keeps only the selected fields of a record (always its `id`).
pub fn select_fields(rec: &mut serde_json::Map<String, Value>, fields: &Fields) {
    rec.retain(|k, _| k == "id" || fields.names.contains_key(k));
    for (name, sub) in &fields.names {
        if sub.names.is_empty() {
            continue;
        }
        match rec.get_mut(name) {
            Some(Value::Object(inner)) => select_fields(inner, sub),
            Some(Value::Array(items)) => {
                for item in items {
                    if let Value::Object(inner) = item {
                        select_fields(inner, sub);
                    }
                }
            }
            _ => {}
        }
    }
}
