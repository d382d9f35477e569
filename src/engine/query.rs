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

/// The member of a record that holds its expanded relations (`expand=`); a field
/// may not have this name.
pub const EXPAND_MEMBER: &str = "expand";
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
            column: Column::plain(&field.name, field.ty, field.scale),
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
        column: Column::plain("id", FieldType::Uuid, 0),
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
    if root.names.is_empty() {
        return Err(ParamError::new(
            "fields",
            "`fields` names no field",
            Some(
                "list the fields to return, e.g. `fields=id`; leave `fields` out for all of them"
                    .to_string(),
            ),
        ));
    }
    Ok(root)
}

/// Keeps only the selected fields of a record (always its `id`), and of the records
/// expanded under its `expand` member (`client.name` selects the `client` id and the
/// `name` of the expanded client). The member goes when none of it is selected.
pub fn select_fields(rec: &mut serde_json::Map<String, Value>, fields: &Fields) {
    rec.retain(|k, _| k == "id" || k == EXPAND_MEMBER || fields.names.contains_key(k));
    let Some(Value::Object(expanded)) = rec.get_mut(EXPAND_MEMBER) else {
        return;
    };
    expanded.retain(|k, _| fields.names.contains_key(k));
    if expanded.is_empty() {
        rec.shift_remove(EXPAND_MEMBER);
        return;
    }
    for (name, sub) in &fields.names {
        if sub.names.is_empty() {
            continue;
        }
        match expanded.get_mut(name) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CLIENT: &str = "entity: client\nfields:\n  name: string\n  projects: { type: inverse, of: project, via: client }\n";
    const TAG: &str = "entity: tag\nfields:\n  label: string\n";
    const PROJECT: &str = "entity: project\nfields:\n  title: string\n  price: { type: decimal, precision: 10, scale: 2 }\n  starts: datetime\n  extra: json\n  client: { type: ref, to: client }\n  tags: { type: many, of: tag }\nsearch: [title]\n";

    /// Projects with a client (ref) and tags (many); `extra` are policy files.
    fn engine(extra: &[(&str, &str)]) -> Engine {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let files = [
            ("trellis.yaml", "name: t\n"),
            ("models/client.yaml", CLIENT),
            ("models/tag.yaml", TAG),
            ("models/project.yaml", PROJECT),
        ];
        for (path, text) in files.iter().chain(extra) {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("a folder");
            std::fs::write(path, text).expect("a file");
        }
        let loaded = crate::spec::load(dir.path());
        Engine::build(&loaded).unwrap_or_else(|e| panic!("{e}: {:?}", loaded.diagnostics))
    }

    fn pairs(params: &[(&str, &str)]) -> Vec<(String, String)> {
        params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn list_as(
        engine: &Engine,
        params: &[(&str, &str)],
        hidden: &[(String, String)],
        who: &Principal,
    ) -> Result<ListRequest, ParamError> {
        let e = engine.entity("project").expect("the project entity");
        list_request(engine, e, &pairs(params), hidden, who)
    }

    fn list(engine: &Engine, params: &[(&str, &str)]) -> Result<ListRequest, ParamError> {
        list_as(engine, params, &[], &Principal::anonymous())
    }

    fn refused(engine: &Engine, params: &[(&str, &str)]) -> ParamError {
        match list(engine, params) {
            Ok(req) => panic!("{params:?} accepted: {req:?}"),
            Err(err) => err,
        }
    }

    fn keys(req: &ListRequest) -> Vec<(&str, bool)> {
        req.sort
            .iter()
            .map(|k| (k.column.name.as_str(), k.desc))
            .collect()
    }

    #[test]
    fn without_parameters_a_page_of_twenty_by_id() {
        let engine = engine(&[]);
        let req = list(&engine, &[]).expect("no parameters");
        assert_eq!(req.limit, DEFAULT_LIMIT);
        assert_eq!(keys(&req), [("id", false)]);
        assert_eq!(req.sort[0].column.ty, FieldType::Uuid);
        assert_eq!(req.sort_text, "");
        assert!(req.filter.is_none());
        assert!(req.after.is_none());
        assert!(req.fields.is_none());
        assert!(req.expand.is_empty());
        assert!(req.search.is_none());
        assert!(!req.count);
        assert!(!req.relevance);
        assert_eq!(req.offset, 0);
    }

    #[test]
    fn limit_is_from_one_to_the_maximum() {
        let engine = engine(&[]);
        let max = MAX_LIMIT.to_string();
        assert_eq!(list(&engine, &[("limit", "1")]).expect("1").limit, 1);
        assert_eq!(
            list(&engine, &[("limit", &max)]).expect("max").limit,
            MAX_LIMIT
        );
        let over = (MAX_LIMIT + 1).to_string();
        for bad in ["0", over.as_str(), "-1", "ten", "1.5", ""] {
            let err = refused(&engine, &[("limit", bad)]);
            assert_eq!(err.param, "limit", "{bad}");
            assert_eq!(
                err.message,
                format!("`limit` must be a whole number from 1 to {MAX_LIMIT}, not `{bad}`")
            );
        }
    }

    #[test]
    fn unknown_and_repeated_parameters_are_refused() {
        let engine = engine(&[]);
        let err = refused(&engine, &[("limt", "5")]);
        assert_eq!(err.param, "limt");
        assert_eq!(err.hint.as_deref(), Some("did you mean `limit`?"));
        let err = refused(&engine, &[("limit", "5"), ("limit", "6")]);
        assert_eq!(err.param, "limit");
        assert!(err.message.contains("more than once"), "{}", err.message);
        let err = refused(&engine, &[("count", "yes")]);
        assert_eq!(err.param, "count");
        assert!(list(&engine, &[("count", "true")]).expect("count").count);
    }

    #[test]
    fn sort_keys_in_order_then_the_id() {
        let engine = engine(&[]);
        let req = list(&engine, &[("sort", "-price,title")]).expect("a sort");
        assert_eq!(
            keys(&req),
            [("price", true), ("title", false), ("id", false)]
        );
        assert_eq!(req.sort_text, "-price,title");
        assert_eq!(req.sort[0].column.ty, FieldType::Decimal);
        assert_eq!(req.sort[0].column.scale, 2);
        // `+` is ascending; system fields sort too; nothing after the id.
        let req = list(&engine, &[("sort", "+created_at, -id")]).expect("a sort");
        assert_eq!(keys(&req), [("created_at", false), ("id", true)]);
    }

    #[test]
    fn unsortable_or_unknown_sort_keys_are_refused_with_a_hint() {
        let engine = engine(&[]);
        let err = refused(&engine, &[("sort", "-prcie")]);
        assert_eq!(err.param, "sort");
        assert_eq!(
            err.message,
            "cannot sort by `prcie`: project has no such field"
        );
        assert_eq!(err.hint.as_deref(), Some("did you mean `price`?"));
        let err = refused(&engine, &[("sort", "extra")]);
        assert_eq!(
            (err.param.as_str(), err.message.as_str()),
            ("sort", "cannot sort by `extra`: it is a json field")
        );
        let err = refused(&engine, &[("sort", "title,-title")]);
        assert_eq!(err.message, "`title` is listed twice in `sort`");
        let hidden = [("project".to_string(), "price".to_string())];
        let err = list_as(
            &engine,
            &[("sort", "price")],
            &hidden,
            &Principal::anonymous(),
        )
        .expect_err("a hidden field");
        assert_eq!(
            (err.param.as_str(), err.message.as_str()),
            ("sort", "you may not sort by `price`")
        );
    }

    #[test]
    fn an_unknown_filter_field_is_refused_with_its_column_and_a_hint() {
        let engine = engine(&[]);
        let req = list(&engine, &[("filter", "title = 'a'")]).expect("a filter");
        assert!(req.filter.is_some());
        let err = refused(&engine, &[("filter", "price > 1 and titel = 'a'")]);
        assert_eq!(err.param, "filter");
        assert_eq!(err.column, Some(15));
        assert_eq!(err.hint.as_deref(), Some("did you mean `title`?"));
        let err = refused(&engine, &[("filter", "title = ")]);
        assert_eq!(err.param, "filter");
        assert!(err.column.is_some());
    }

    #[test]
    fn fields_and_expand_are_trees_of_relations() {
        let engine = engine(&[]);
        let req = list(
            &engine,
            &[
                ("expand", "client,tags"),
                ("fields", "title, client.name, tags"),
            ],
        )
        .expect("fields and expand");
        let leaf = Expand::default;
        assert_eq!(
            req.expand,
            Expand {
                children: BTreeMap::from([("client".into(), leaf()), ("tags".into(), leaf())]),
            }
        );
        let fields = req.fields.expect("fields");
        assert_eq!(
            fields.names.keys().collect::<Vec<_>>(),
            ["client", "tags", "title"]
        );
        assert_eq!(
            fields.names["client"].names.keys().collect::<Vec<_>>(),
            ["name"]
        );
        // Three levels deep, back through the inverse.
        let req = list(&engine, &[("expand", "client.projects.tags")]).expect("deep");
        assert_eq!(
            req.expand.children["client"].children["projects"].children["tags"],
            leaf()
        );
        let err = refused(&engine, &[("expand", "client.projects.client.name")]);
        assert_eq!(err.param, "expand");
        assert!(err.message.contains("deeper than 3"), "{}", err.message);
    }

    #[test]
    fn unknown_relations_and_unexpanded_selections_are_refused() {
        let engine = engine(&[]);
        let err = refused(&engine, &[("expand", "clinet")]);
        assert_eq!(err.param, "expand");
        assert_eq!(
            err.message,
            "cannot expand `clinet`: it is not a relation of project"
        );
        assert_eq!(err.hint.as_deref(), Some("did you mean `client`?"));
        let err = refused(&engine, &[("expand", "title")]);
        assert_eq!(
            err.hint.as_deref(),
            Some("relations of project: client, tags")
        );
        let err = refused(&engine, &[("expand", "tags.label")]);
        assert_eq!(err.hint.as_deref(), Some("tag has no relations"));
        let err = refused(&engine, &[("fields", "client.name")]);
        assert_eq!(err.param, "fields");
        assert_eq!(err.hint.as_deref(), Some("add `expand=client`"));
        let err = refused(&engine, &[("fields", "titel")]);
        assert_eq!(
            (err.message.as_str(), err.hint.as_deref()),
            (
                "project has no field `titel`",
                Some("did you mean `title`?")
            )
        );
    }

    #[test]
    fn get_requests_take_fields_and_expand_only() {
        let engine = engine(&[]);
        let e = engine.entity("project").expect("the project entity");
        let req = get_request(
            &engine,
            e,
            &pairs(&[("expand", "client"), ("fields", "client.name")]),
            &[],
        )
        .expect("a get request");
        assert!(req.expand.children.contains_key("client"));
        assert!(req.fields.is_some());
        let err = get_request(&engine, e, &pairs(&[("filter", "title = 'a'")]), &[])
            .expect_err("no filter on a get");
        assert_eq!(err.param, "filter");
        assert_eq!(err.hint.as_deref(), Some("supported: fields, expand"));
        let hidden = [("client".to_string(), "name".to_string())];
        let err = get_request(
            &engine,
            e,
            &pairs(&[("expand", "client"), ("fields", "client.name")]),
            &hidden,
        )
        .expect_err("a hidden field");
        assert_eq!(err.message, "you may not select `name`");
    }

    #[test]
    fn a_cursor_continues_after_the_last_record() {
        let engine = engine(&[]);
        let sort = [("sort", "-price,title")];
        let req = list(&engine, &sort).expect("a sort");
        let id = "0190a000-0000-7000-8000-000000000001";
        let last = json!({ "id": id, "price": "12.5", "title": "b", "starts": null });
        let last = last.as_object().expect("a record");
        let cursor = Cursor::after(last, &req.cursor_key(), &req.sort);
        assert_eq!(cursor.keys, [json!("12.5"), json!("b"), json!(id)]);
        let text = cursor.encode();
        assert_eq!(Cursor::decode(&text), Some(cursor));
        let next = list(&engine, &[sort[0], ("after", &text)]).expect("the next page");
        assert_eq!(
            next.after,
            Some(vec![
                Cell::Decimal(rust_decimal::Decimal::new(1250, 2)),
                Cell::Text("b".into()),
                Cell::Uuid(id.parse().expect("a uuid")),
            ])
        );
        // Only with the same sort, and only a cursor.
        let err = refused(&engine, &[("sort", "title"), ("after", &text)]);
        assert_eq!(err.param, "after");
        assert!(err.message.contains("another `sort`"), "{}", err.message);
        let err = refused(&engine, &[sort[0], ("after", "not-a-cursor")]);
        assert_eq!(err.param, "after");
        assert_eq!(err.message, "`after` is not a cursor of this list");
    }

    #[test]
    fn a_search_is_words_without_control_characters() {
        let engine = engine(&[]);
        let req = list(&engine, &[("q", "  rust  ")]).expect("a search");
        assert_eq!(req.search.as_deref(), Some("rust"));
        assert!(req.relevance);
        assert_eq!(req.cursor_key(), "|rust");
        let req = list(&engine, &[("q", "rust"), ("sort", "title")]).expect("sorted");
        assert!(!req.relevance);
        for bad in ["a\u{0}b", "a\u{1b}[31m"] {
            let err = refused(&engine, &[("q", bad)]);
            assert_eq!(err.param, "q");
            assert!(
                err.message.contains("control characters"),
                "{}",
                err.message
            );
        }
        let long = "a".repeat(MAX_SEARCH_LENGTH + 1);
        assert_eq!(refused(&engine, &[("q", &long)]).param, "q");
        let e = engine.entity("client").expect("the client entity");
        let err = list_request(
            &engine,
            e,
            &pairs(&[("q", "acme")]),
            &[],
            &Principal::anonymous(),
        )
        .expect_err("no search fields");
        assert_eq!(
            err.hint.as_deref(),
            Some("add `search: [field, …]` to models/client.yaml")
        );
    }

    #[test]
    fn a_filter_reaches_only_the_related_rows_the_caller_may_read() {
        let engine = engine(&[
            (
                "policies/project.yaml",
                "entity: project\nrules:\n  - roles: [anonymous]\n    allow: [list, read]\n",
            ),
            (
                "policies/client.yaml",
                "entity: client\nrules:\n  - roles: [anonymous]\n    allow: [read]\n    where: name != 'hidden'\n",
            ),
        ]);
        let anon = Principal::anonymous();
        // No policy for tags: no tag may be read, so no condition goes through them.
        let err = list_as(&engine, &[("filter", "tags.label = 'x'")], &[], &anon)
            .expect_err("tags are not readable");
        assert_eq!(err.param, "filter");
        assert_eq!(
            err.message,
            "you may not read tag records, so a condition cannot go through `tags`"
        );
        // Clients are, where the rule says so: the step is restricted to those rows.
        let req = list_as(&engine, &[("filter", "client.name = 'acme'")], &[], &anon)
            .expect("clients are readable");
        let Some(Typed::Hop { hop, inner }) = req.filter else {
            panic!("a relation step: {:?}", req.filter);
        };
        assert_eq!(
            hop,
            super::super::cond::check::Hop::Ref {
                field: "client".into(),
                target: "client".into()
            }
        );
        assert!(matches!(*inner, Typed::And(..)), "{inner:?}");
        // Trellis itself reads everything: the step is not restricted.
        let req = list_as(
            &engine,
            &[("filter", "client.name = 'acme'")],
            &[],
            &Principal::system(),
        )
        .expect("no restriction");
        let Some(Typed::Hop { inner, .. }) = req.filter else {
            panic!("a relation step: {:?}", req.filter);
        };
        assert!(matches!(*inner, Typed::Pred { .. }), "{inner:?}");
    }
}
