//! `policies/*.yaml`: who may do what with one entity.
//!
//! ```yaml
//! entity: project
//! conditions:
//!   mine: client.members has user.id
//! rules:
//!   - name: Client members manage their projects
//!     roles: [client]
//!     allow: [list, read, update]
//!     where: mine
//! fields:
//!   budget: { read: { roles: [client, admin] } }
//!   client: { write: on_create }
//!   summary: { write: { roles: [admin], where: status = draft } }
//! ```

use super::diag::{Sink, suggest};
use super::walk::{Named, get, map_with_keys, name_list, opt_string, string};
use super::yaml::{Node, Pos, Value};

pub const POLICY_KEYS: [&str; 5] = ["entity", "conditions", "rules", "fields", "tests"];
pub const RULE_KEYS: [&str; 5] = ["name", "roles", "allow", "deny", "where"];
pub const FIELD_RULE_KEYS: [&str; 3] = ["read", "write", "on_create"];
pub const BASE_ACTIONS: [&str; 7] = [
    "list",
    "read",
    "create",
    "update",
    "delete",
    "aggregate",
    "*",
];

/// A condition as written, with where it starts (for diagnostics).
#[derive(Debug, Clone)]
pub struct CondText {
    pub text: String,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub struct RuleDef {
    pub name: String,
    pub pos: Pos,
    pub roles: Vec<Named>,
    pub allow: Vec<Named>,
    pub deny: Vec<Named>,
    pub condition: Option<CondText>,
}

#[derive(Debug, Clone)]
pub enum WriteDef {
    Never,
    OnCreate,
    /// `{ roles: [...], where: <condition> }`: the roles may always write the field;
    /// with `where`, every caller allowed to update the record may write it on the
    /// records where the condition holds (before the change; on create, for the new
    /// record).
    Rule {
        roles: Vec<Named>,
        condition: Option<CondText>,
    },
}

#[derive(Debug, Clone)]
pub struct FieldRuleDef {
    pub field: Named,
    /// Roles that may read the field (`None`: everyone who may read the record).
    pub read_roles: Option<Vec<Named>>,
    /// A condition on the record under which the field is visible.
    pub read_where: Option<CondText>,
    pub write: Option<(WriteDef, Pos)>,
    /// `on_create: user.id`: the claim stored on create.
    pub on_create: Option<Named>,
}

#[derive(Debug, Clone)]
pub struct PolicyDef {
    pub file: String,
    pub entity: Named,
    pub conditions: Vec<(Named, CondText)>,
    pub rules: Vec<RuleDef>,
    pub fields: Vec<FieldRuleDef>,
    pub tests: Vec<PolicyTest>,
}

/// Who a policy test acts as.
#[derive(Debug, Clone)]
pub enum Caller {
    Anonymous,
    User {
        /// A user id, or `$handle` of a setup row.
        id: String,
        roles: Vec<String>,
        claims: serde_json::Map<String, serde_json::Value>,
    },
}

/// One `tests:` entry: a caller, rows to set up, a record, and what the caller may do.
#[derive(Debug, Clone)]
pub struct PolicyTest {
    pub name: String,
    pub pos: Pos,
    pub caller: Caller,
    /// Rows created first, in order: (entity, fields). A `$id: name` key names a row;
    /// `$name` strings elsewhere stand for that row's id.
    pub setup: Vec<(Named, serde_json::Map<String, serde_json::Value>)>,
    /// The record of the policy's entity the actions are tried on.
    pub record: serde_json::Map<String, serde_json::Value>,
    /// The body the `update` action sends (default: no field, "may I update at all?").
    pub change: Option<serde_json::Map<String, serde_json::Value>>,
    /// Action (or `read.<field>`) -> allowed?
    pub expect: Vec<(Named, bool)>,
}

pub const TEST_KEYS: [&str; 6] = ["name", "as", "setup", "record", "change", "expect"];

fn parse_tests(sink: &mut Sink<'_>, node: &Node) -> Vec<PolicyTest> {
    let Some(items) = node.as_seq() else {
        sink.error_hint(
            node.pos,
            "wrong-value-type",
            "`tests` must be a list",
            "start each test with `- name: …`",
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(tm) = map_with_keys(sink, item, "a policy test", &TEST_KEYS) else {
            continue;
        };
        let name = opt_string(sink, tm, "name", "`name`")
            .map(|n| n.name)
            .unwrap_or_else(|| format!("test {}", i + 1));
        let caller = match get(tm, "as") {
            None => {
                sink.error_hint(
                    item.pos,
                    "missing-key",
                    format!("the test `{name}` has no `as`"),
                    "add e.g. `as: { id: u1, roles: [contractor] }` or `as: anonymous`",
                );
                continue;
            }
            Some(n) if n.as_str() == Some("anonymous") => Caller::Anonymous,
            Some(n) => {
                let Some(am) = map_with_keys(sink, n, "`as`", &["id", "roles", "claims"]) else {
                    continue;
                };
                let id = opt_string(sink, am, "id", "`as.id`")
                    .map(|n| n.name)
                    .unwrap_or_else(|| "test-user".to_string());
                let roles = get(am, "roles")
                    .map(|r| {
                        name_list(sink, r, "`as.roles`")
                            .into_iter()
                            .map(|n| n.name)
                            .collect()
                    })
                    .unwrap_or_default();
                let claims = match get(am, "claims").map(|c| (c, c.to_json())) {
                    None => serde_json::Map::new(),
                    Some((_, serde_json::Value::Object(m))) => m,
                    Some((c, _)) => {
                        sink.error_hint(
                            c.pos,
                            "wrong-value-type",
                            format!(
                                "`as.claims` must be a mapping of claims to values, not {}",
                                c.value.kind_name()
                            ),
                            "write e.g. `claims: { org: $acme }`",
                        );
                        continue;
                    }
                };
                Caller::User { id, roles, claims }
            }
        };
        let mut setup = Vec::new();
        if let Some(sn) = get(tm, "setup") {
            match sn.as_map() {
                Some(entries) => {
                    for (k, rows) in entries {
                        let entity = Named {
                            name: k.name.clone(),
                            pos: k.pos,
                        };
                        for row in rows.as_seq().unwrap_or(std::slice::from_ref(rows)) {
                            match row.to_json() {
                                serde_json::Value::Object(m) => setup.push((entity.clone(), m)),
                                _ => sink.error(
                                    row.pos,
                                    "wrong-value-type",
                                    "each setup row must be a mapping of fields",
                                ),
                            }
                        }
                    }
                }
                None => sink.error_hint(
                    sn.pos,
                    "wrong-value-type",
                    "`setup` must map entity names to rows",
                    "e.g. `setup: { organization: [{ $id: acme, name: Acme }] }`",
                ),
            }
        }
        let record = match get(tm, "record").map(|r| r.to_json()) {
            Some(serde_json::Value::Object(m)) => m,
            Some(_) => {
                sink.error(
                    item.pos,
                    "wrong-value-type",
                    "`record` must be a mapping of fields",
                );
                continue;
            }
            None => serde_json::Map::new(),
        };
        let change = match get(tm, "change").map(|r| (r.pos, r.to_json())) {
            Some((_, serde_json::Value::Object(m))) => Some(m),
            Some((pos, _)) => {
                sink.error_hint(
                    pos,
                    "wrong-value-type",
                    "`change` must be a mapping of fields: the body the `update` action sends",
                    "write e.g. `change: { cover_letter: Hello }`",
                );
                continue;
            }
            None => None,
        };
        let mut expect = Vec::new();
        match get(tm, "expect").and_then(|e| e.as_map().map(|m| (e, m))) {
            Some((_, entries)) => {
                for (k, v) in entries {
                    let allowed = match v.as_str() {
                        Some("allow") => true,
                        Some("deny") => false,
                        _ => {
                            sink.error_hint(
                                v.pos,
                                "unknown-value",
                                "expected `allow` or `deny`",
                                "write e.g. `read: deny`",
                            );
                            continue;
                        }
                    };
                    let action = Named {
                        name: k.name.clone(),
                        pos: k.pos,
                    };
                    let field_read = action
                        .name
                        .strip_prefix("read.")
                        .is_some_and(|f| !f.is_empty());
                    if !field_read
                        && !["list", "read", "create", "update", "delete"]
                            .contains(&action.name.as_str())
                    {
                        sink.error_hint(
                            k.pos,
                            "unknown-action",
                            format!("`{}` cannot be tested here", k.name),
                            format!(
                                "{} (or `read.<field>`: does the caller see that field of the record?)",
                                suggest(&k.name, &["list", "read", "create", "update", "delete"])
                            ),
                        );
                        continue;
                    }
                    expect.push((action, allowed));
                }
            }
            None => sink.error_hint(
                item.pos,
                "missing-key",
                format!("the test `{name}` has no `expect`"),
                "add e.g. `expect: { read: allow, update: deny }`",
            ),
        }
        out.push(PolicyTest {
            name,
            pos: item.pos,
            caller,
            setup,
            record,
            change,
            expect,
        });
    }
    out
}

fn cond_text(sink: &mut Sink<'_>, node: &Node, what: &str) -> Option<CondText> {
    match &node.value {
        Value::Str(s) => Some(CondText {
            text: s.clone(),
            pos: node.pos,
        }),
        Value::Bool(b) => Some(CondText {
            text: if *b { "id is set" } else { "not id is set" }.to_string(),
            pos: node.pos,
        }),
        other => {
            sink.error_hint(
                node.pos,
                "wrong-value-type",
                format!(
                    "{what} must be a condition (text), not {}",
                    other.kind_name()
                ),
                "write e.g. `where: status = 'open'`",
            );
            None
        }
    }
}

pub fn parse_policy(sink: &mut Sink<'_>, stem: &str, root: &Node) -> Option<PolicyDef> {
    let map = map_with_keys(sink, root, "a policy file", &POLICY_KEYS)?;
    let entity = match get(map, "entity") {
        Some(n) => string(sink, n, "`entity`")?,
        None => {
            sink.error_hint(
                root.pos,
                "missing-key",
                "the policy file has no `entity:`",
                format!("add `entity: {stem}` as the first line"),
            );
            return None;
        }
    };
    if entity.name != stem {
        sink.error_hint(
            entity.pos,
            "entity-name-mismatch",
            format!(
                "the policy is for `{}` but its file is named `{stem}`",
                entity.name
            ),
            format!("rename the file to `{}.yaml`", entity.name),
        );
    }
    let mut conditions = Vec::new();
    if let Some(node) = get(map, "conditions") {
        match node.as_map() {
            Some(entries) => {
                for (k, v) in entries {
                    let name = Named {
                        name: k.name.clone(),
                        pos: k.pos,
                    };
                    super::walk::check_identifier(sink, &name, "condition");
                    if let Some(c) = cond_text(sink, v, &format!("the condition `{}`", k.name)) {
                        conditions.push((name, c));
                    }
                }
            }
            None => sink.error_hint(
                node.pos,
                "wrong-value-type",
                "`conditions` must be a mapping of names to conditions",
                "write e.g. `conditions: { mine: owner = user.id }`",
            ),
        }
    }
    let mut rules = Vec::new();
    if let Some(node) = get(map, "rules") {
        match node.as_seq() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    let Some(rm) = map_with_keys(sink, item, "a rule", &RULE_KEYS) else {
                        continue;
                    };
                    let name = opt_string(sink, rm, "name", "`name`")
                        .map(|n| n.name)
                        .unwrap_or_else(|| format!("rule {}", i + 1));
                    let roles = match get(rm, "roles") {
                        Some(n) => name_list(sink, n, "`roles`"),
                        None => {
                            sink.error_hint(
                                item.pos,
                                "missing-key",
                                format!("the rule `{name}` has no `roles`"),
                                "add e.g. `roles: [authenticated]` (or `anonymous`, or your own roles)",
                            );
                            Vec::new()
                        }
                    };
                    let allow = get(rm, "allow")
                        .map(|n| name_list(sink, n, "`allow`"))
                        .unwrap_or_default();
                    let deny = get(rm, "deny")
                        .map(|n| name_list(sink, n, "`deny`"))
                        .unwrap_or_default();
                    if allow.is_empty() && deny.is_empty() {
                        sink.error_hint(
                            item.pos,
                            "missing-key",
                            format!("the rule `{name}` neither allows nor denies anything"),
                            "add e.g. `allow: [list, read]`",
                        );
                    }
                    for action in allow.iter().chain(&deny) {
                        let a = action.name.as_str();
                        let known = BASE_ACTIONS.contains(&a)
                            || a.strip_prefix("transition.").is_some_and(|t| !t.is_empty());
                        if !known {
                            sink.error_hint(
                                action.pos,
                                "unknown-action",
                                format!("`{a}` is not an action"),
                                format!("{} (or `transition.<name>`)", suggest(a, &BASE_ACTIONS)),
                            );
                        }
                    }
                    let condition = get(rm, "where").and_then(|n| cond_text(sink, n, "`where`"));
                    rules.push(RuleDef {
                        name,
                        pos: item.pos,
                        roles,
                        allow,
                        deny,
                        condition,
                    });
                }
            }
            None => sink.error_hint(
                node.pos,
                "wrong-value-type",
                "`rules` must be a list of rules",
                "start each rule with `- name: …`",
            ),
        }
    }
    let tests = get(map, "tests")
        .map(|n| parse_tests(sink, n))
        .unwrap_or_default();
    let mut fields = Vec::new();
    if let Some(node) = get(map, "fields") {
        match node.as_map() {
            Some(entries) => {
                for (k, v) in entries {
                    let field = Named {
                        name: k.name.clone(),
                        pos: k.pos,
                    };
                    let Some(fm) = map_with_keys(sink, v, "a field rule", &FIELD_RULE_KEYS) else {
                        continue;
                    };
                    let read_map = get(fm, "read")
                        .and_then(|r| map_with_keys(sink, r, "`read`", &["roles", "where"]));
                    let read_roles = read_map.and_then(|rm| {
                        get(rm, "roles").map(|n| name_list(sink, n, "`read.roles`"))
                    });
                    let read_where = read_map.and_then(|rm| {
                        get(rm, "where").and_then(|n| cond_text(sink, n, "`read.where`"))
                    });
                    let write = get(fm, "write").and_then(|w| match &w.value {
                        Value::Str(s) if s == "never" => Some((WriteDef::Never, w.pos)),
                        Value::Str(s) if s == "on_create" => Some((WriteDef::OnCreate, w.pos)),
                        Value::Map(_) => {
                            let wm = map_with_keys(sink, w, "`write`", &["roles", "where"])?;
                            let roles = get(wm, "roles").map(|n| name_list(sink, n, "`write.roles`"));
                            let condition = get(wm, "where")
                                .and_then(|n| cond_text(sink, n, "`write.where`"));
                            if roles.is_none() && get(wm, "where").is_none() {
                                sink.error_hint(
                                    w.pos,
                                    "missing-key",
                                    format!("the write rule of `{}` names neither `roles` nor `where`", k.name),
                                    "write e.g. `write: { roles: [admin] }`, or `write: { roles: [admin], where: status = draft }` (the roles always; others where the condition holds)",
                                );
                                return None;
                            }
                            Some((
                                WriteDef::Rule {
                                    roles: roles.unwrap_or_default(),
                                    condition,
                                },
                                w.pos,
                            ))
                        }
                        _ => {
                            sink.error_hint(
                                w.pos,
                                "unknown-value",
                                "`write` must be `never`, `on_create` or `{ roles: [...], where: <condition> }`",
                                "e.g. `write: on_create` keeps a field fixed after creation; `write: { roles: [admin], where: status = draft }` lets admins always, and others while the condition holds",
                            );
                            None
                        }
                    });
                    let on_create =
                        get(fm, "on_create").and_then(|n| string(sink, n, "`on_create`"));
                    if let Some(p) = &on_create
                        && !p.name.starts_with("user.")
                    {
                        sink.error_hint(
                            p.pos,
                            "unknown-value",
                            format!("`on_create: {}` is not a claim of the caller", p.name),
                            "write e.g. `on_create: user.id`",
                        );
                    }
                    fields.push(FieldRuleDef {
                        field,
                        read_roles,
                        read_where,
                        write,
                        on_create,
                    });
                }
            }
            None => sink.error_hint(
                node.pos,
                "wrong-value-type",
                "`fields` must be a mapping of field names to rules",
                "write e.g. `fields: { budget: { read: { roles: [admin] } } }`",
            ),
        }
    }
    Some(PolicyDef {
        file: sink.file.to_string(),
        entity,
        conditions,
        rules,
        fields,
        tests,
    })
}
