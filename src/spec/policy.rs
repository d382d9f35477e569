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
    Roles(Vec<Named>),
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
    if let Some(pos) = super::walk::key_pos(map, "tests") {
        sink.warning_hint(
            pos,
            "not-yet-supported",
            "policy `tests:` are not run by this version of Trellis yet",
            "they are kept; `trellis test` will run them",
        );
    }
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
                            let wm = map_with_keys(sink, w, "`write`", &["roles"])?;
                            get(wm, "roles").map(|n| {
                                (WriteDef::Roles(name_list(sink, n, "`write.roles`")), w.pos)
                            })
                        }
                        _ => {
                            sink.error_hint(
                                w.pos,
                                "unknown-value",
                                "`write` must be `never`, `on_create` or `{ roles: [...] }`",
                                "e.g. `write: on_create` keeps a field fixed after creation",
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
    })
}
