//! `workflows/*.yaml`: a state machine bound to an entity's enum field.
//!
//! ```yaml
//! entity: project
//! field: status
//! initial: draft
//! states:
//!   draft: { label: Draft }
//!   open: { label: Open for applications }
//!   closed: { final: true }
//! transitions:
//!   publish:
//!     from: draft
//!     to: open
//!     require:
//!       - { check: "record.budget > 0", message: "Set a budget before publishing" }
//!     set: { published_at: now }
//!   close:
//!     from: "*"
//!     to: closed
//!     input: { reason: { type: text, required: true } }
//!     after_commit:
//!       - webhook: { endpoint: crm, body: "{{ record | tojson }}" }
//! ```
//!
//! Guards (`check:`) and effect bodies are minijinja; their names are checked here, at
//! load time. `where:` guards are conditions of the condition language, checked and
//! compiled by the engine like policy conditions.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::diag::{Sink, did_you_mean, list, suggest};
use super::model::{FieldDef, FieldType, SYSTEM_FIELDS, parse_field};
use super::policy::CondText;
use super::walk::{Named, check_identifier, get, map_with_keys, name_list, opt_string, string};
use super::yaml::{Node, Pos, Value};
use super::{Diagnostic, Spec};

pub const WORKFLOW_KEYS: [&str; 7] = [
    "entity",
    "field",
    "initial",
    "states",
    "transitions",
    "label",
    "description",
];
pub const STATE_KEYS: [&str; 3] = ["label", "description", "final"];
pub const TRANSITION_KEYS: [&str; 8] = [
    "label",
    "description",
    "from",
    "to",
    "require",
    "input",
    "set",
    "after_commit",
];
pub const GUARD_KEYS: [&str; 3] = ["check", "where", "message"];
pub const EFFECT_KEYS: [&str; 1] = ["webhook"];
pub const WEBHOOK_EFFECT_KEYS: [&str; 2] = ["endpoint", "body"];

/// Variables a guard (`check:`) may use.
pub const GUARD_VARIABLES: [&str; 4] = ["record", "user", "input", "now"];
/// Variables an effect body may use.
pub const BODY_VARIABLES: [&str; 8] = [
    "record",
    "user",
    "input",
    "now",
    "entity",
    "transition",
    "from",
    "to",
];

#[derive(Debug, Clone)]
pub struct StateDef {
    pub name: Named,
    pub label: Option<String>,
    pub description: Option<String>,
    pub is_final: bool,
}

/// `from:`: some states, or `"*"` (every state that is not final).
#[derive(Debug, Clone)]
pub enum FromDef {
    Any(Pos),
    States(Vec<Named>),
}

#[derive(Debug, Clone)]
pub enum GuardDef {
    /// A minijinja expression over `record`, `user`, `input` and `now`.
    Check {
        expr: String,
        pos: Pos,
        message: String,
    },
    /// A condition of the condition language on the record, checked by the database
    /// in the same statement that changes the state.
    Where { cond: CondText, message: String },
}

impl GuardDef {
    pub fn message(&self) -> &str {
        match self {
            GuardDef::Check { message, .. } | GuardDef::Where { message, .. } => message,
        }
    }
}

/// The value a `set:` entry assigns.
#[derive(Debug, Clone, PartialEq)]
pub enum SetValue {
    /// A constant, converted to the field's type when the workflow loads.
    Literal(serde_json::Value),
    /// The time of the transition.
    Now,
    /// `user.<claim>`.
    Claim(String),
    /// `input.<field>`.
    Input(String),
    /// `record.<field>`: a field of the record before the transition.
    Record(String),
    /// `{ expr: "…" }`: a minijinja expression.
    Expr(String),
}

#[derive(Debug, Clone)]
pub struct AssignDef {
    pub field: Named,
    pub value: SetValue,
    pub pos: Pos,
}

/// `after_commit: [{ webhook: { endpoint, body } }]`.
#[derive(Debug, Clone)]
pub struct EffectDef {
    pub endpoint: Named,
    /// A minijinja template; the default body is a JSON document describing the event.
    pub body: Option<(String, Pos)>,
}

#[derive(Debug, Clone)]
pub struct TransitionDef {
    pub name: Named,
    pub label: Option<String>,
    pub description: Option<String>,
    pub from: FromDef,
    pub to: Named,
    pub require: Vec<GuardDef>,
    pub input: Vec<FieldDef>,
    pub set: Vec<AssignDef>,
    pub after_commit: Vec<EffectDef>,
}

#[derive(Debug, Clone)]
pub struct WorkflowDef {
    pub file: String,
    pub entity: Named,
    pub field: Named,
    pub initial: Named,
    pub label: Option<String>,
    pub description: Option<String>,
    pub states: Vec<StateDef>,
    pub transitions: Vec<TransitionDef>,
}

impl WorkflowDef {
    pub fn state(&self, name: &str) -> Option<&StateDef> {
        self.states.iter().find(|s| s.name.name == name)
    }

    pub fn transition(&self, name: &str) -> Option<&TransitionDef> {
        self.transitions.iter().find(|t| t.name.name == name)
    }

    /// The states a transition leaves from (`*` is every state that is not final).
    pub fn from_states(&self, t: &TransitionDef) -> Vec<String> {
        match &t.from {
            FromDef::Any(_) => self
                .states
                .iter()
                .filter(|s| !s.is_final)
                .map(|s| s.name.name.clone())
                .collect(),
            FromDef::States(names) => names.iter().map(|n| n.name.clone()).collect(),
        }
    }
}

/// Reads a workflow file.
pub fn parse_workflow(sink: &mut Sink<'_>, stem: &str, root: &Node) -> Option<WorkflowDef> {
    if matches!(root.value, Value::Null) {
        sink.error_hint(
            root.pos,
            "empty-file",
            "this workflow file is empty",
            format!(
                "start it with `entity: {stem}`, `field: status`, `initial:`, `states:` and `transitions:`"
            ),
        );
        return None;
    }
    let map = map_with_keys(sink, root, "a workflow file", &WORKFLOW_KEYS)?;
    let mut missing = |key: &str, example: &str| {
        sink.error_hint(
            root.pos,
            "missing-key",
            format!("the workflow has no `{key}:`"),
            format!("add e.g. `{example}`"),
        );
    };
    let (Some(entity_node), Some(field_node), Some(initial_node)) =
        (get(map, "entity"), get(map, "field"), get(map, "initial"))
    else {
        if get(map, "entity").is_none() {
            missing("entity", &format!("entity: {stem}"));
        }
        if get(map, "field").is_none() {
            missing("field", "field: status");
        }
        if get(map, "initial").is_none() {
            missing("initial", "initial: draft");
        }
        return None;
    };
    let entity = string(sink, entity_node, "`entity`")?;
    let field = string(sink, field_node, "`field`")?;
    let initial = string(sink, initial_node, "`initial`")?;
    let label = opt_string(sink, map, "label", "`label`").map(|n| n.name);
    let description = opt_string(sink, map, "description", "`description`").map(|n| n.name);

    let mut states = Vec::new();
    match get(map, "states").map(|n| (n, n.as_map())) {
        None => sink.error_hint(
            root.pos,
            "missing-key",
            "the workflow has no `states:`",
            "add e.g. `states: { draft: {}, open: {}, closed: { final: true } }`",
        ),
        Some((node, None)) => sink.error_hint(
            node.pos,
            "wrong-value-type",
            format!(
                "`states` must be a mapping of state names to their settings, not {}",
                node.value.kind_name()
            ),
            "write e.g. `states: { draft: { label: Draft }, closed: { final: true } }`",
        ),
        Some((_, Some(entries))) => {
            for (key, value) in entries {
                let name = Named {
                    name: key.name.clone(),
                    pos: key.pos,
                };
                check_identifier(sink, &name, "state");
                let mut state = StateDef {
                    name,
                    label: None,
                    description: None,
                    is_final: false,
                };
                if !matches!(value.value, Value::Null)
                    && let Some(sm) = map_with_keys(sink, value, "a state", &STATE_KEYS)
                {
                    state.label = opt_string(sink, sm, "label", "`label`").map(|n| n.name);
                    state.description =
                        opt_string(sink, sm, "description", "`description`").map(|n| n.name);
                    state.is_final = super::walk::bool_key(sink, sm, "final");
                }
                states.push(state);
            }
        }
    }

    let mut transitions = Vec::new();
    match get(map, "transitions").map(|n| (n, n.as_map())) {
        None => sink.error_hint(
            root.pos,
            "missing-key",
            "the workflow has no `transitions:`",
            "add e.g. `transitions: { publish: { from: draft, to: open } }`",
        ),
        Some((node, None)) => sink.error_hint(
            node.pos,
            "wrong-value-type",
            format!(
                "`transitions` must be a mapping of transition names to their settings, not {}",
                node.value.kind_name()
            ),
            "write e.g. `transitions: { publish: { from: draft, to: open } }`",
        ),
        Some((_, Some(entries))) => {
            for (key, value) in entries {
                let name = Named {
                    name: key.name.clone(),
                    pos: key.pos,
                };
                if let Some(t) = parse_transition(sink, name, value) {
                    transitions.push(t);
                }
            }
        }
    }

    Some(WorkflowDef {
        file: sink.file.to_string(),
        entity,
        field,
        initial,
        label,
        description,
        states,
        transitions,
    })
}

fn parse_transition(sink: &mut Sink<'_>, name: Named, node: &Node) -> Option<TransitionDef> {
    check_identifier(sink, &name, "transition");
    let tm = map_with_keys(sink, node, "a transition", &TRANSITION_KEYS)?;
    let from = match get(tm, "from") {
        None => {
            sink.error_hint(
                name.pos,
                "missing-key",
                format!("the transition `{}` has no `from:`", name.name),
                "add the state(s) it leaves from, e.g. `from: draft`, `from: [open, in_review]` or `from: \"*\"`",
            );
            return None;
        }
        Some(n) if n.as_str() == Some("*") => FromDef::Any(n.pos),
        Some(n) => FromDef::States(name_list(sink, n, "`from`")),
    };
    let to = match get(tm, "to") {
        None => {
            sink.error_hint(
                name.pos,
                "missing-key",
                format!("the transition `{}` has no `to:`", name.name),
                "add the state it leads to, e.g. `to: open`",
            );
            return None;
        }
        Some(n) => string(sink, n, "`to`")?,
    };
    let mut require = Vec::new();
    if let Some(r) = get(tm, "require") {
        match r.as_seq() {
            None => sink.error_hint(
                r.pos,
                "wrong-value-type",
                "`require` must be a list of guards",
                "write e.g. `require: [{ check: \"record.budget > 0\", message: \"Set a budget first\" }]`",
            ),
            Some(items) => {
                for item in items {
                    if let Some(g) = parse_guard(sink, item) {
                        require.push(g);
                    }
                }
            }
        }
    }
    let mut input = Vec::new();
    if let Some(i) = get(tm, "input") {
        match i.as_map() {
            None => sink.error_hint(
                i.pos,
                "wrong-value-type",
                "`input` must be a mapping of field names to definitions, like a model's `fields`",
                "write e.g. `input: { reason: { type: text, required: true } }`",
            ),
            Some(entries) => {
                for (key, value) in entries {
                    let named = Named {
                        name: key.name.clone(),
                        pos: key.pos,
                    };
                    if let Some(f) = parse_field(sink, &named, value) {
                        if matches!(f.ty, FieldType::Many | FieldType::Inverse | FieldType::File) {
                            sink.error_hint(
                                f.ty_pos,
                                "bad-input-field",
                                format!("a transition's input cannot hold a {} field", f.ty.name()),
                                "use a ref, or a scalar type (files are uploaded to a record's file field)",
                            );
                            continue;
                        }
                        input.push(f);
                    }
                }
            }
        }
    }
    let mut set = Vec::new();
    if let Some(s) = get(tm, "set") {
        match s.as_map() {
            None => sink.error_hint(
                s.pos,
                "wrong-value-type",
                "`set` must be a mapping of field names to values",
                "write e.g. `set: { published_at: now, closed_by: user.id, reason: input.reason }`",
            ),
            Some(entries) => {
                for (key, value) in entries {
                    let field = Named {
                        name: key.name.clone(),
                        pos: key.pos,
                    };
                    if let Some(v) = parse_set_value(sink, value) {
                        set.push(AssignDef {
                            field,
                            value: v,
                            pos: value.pos,
                        });
                    }
                }
            }
        }
    }
    let mut after_commit = Vec::new();
    if let Some(a) = get(tm, "after_commit") {
        match a.as_seq() {
            None => sink.error_hint(
                a.pos,
                "wrong-value-type",
                "`after_commit` must be a list of effects",
                "write e.g. `after_commit: [{ webhook: { endpoint: crm } }]`",
            ),
            Some(items) => {
                for item in items {
                    let Some(em) = map_with_keys(sink, item, "an effect", &EFFECT_KEYS) else {
                        continue;
                    };
                    let Some(w) = get(em, "webhook") else {
                        sink.error_hint(
                            item.pos,
                            "missing-key",
                            "an effect needs `webhook:`",
                            "write e.g. `- webhook: { endpoint: crm }`",
                        );
                        continue;
                    };
                    let Some(wm) = map_with_keys(sink, w, "a webhook effect", &WEBHOOK_EFFECT_KEYS)
                    else {
                        continue;
                    };
                    let Some(endpoint) = opt_string(sink, wm, "endpoint", "`endpoint`") else {
                        if get(wm, "endpoint").is_none() {
                            sink.error_hint(
                                w.pos,
                                "missing-key",
                                "a webhook effect needs `endpoint:`, the name of an endpoint in trellis.yaml's `webhooks`",
                                "add e.g. `endpoint: crm`",
                            );
                        }
                        continue;
                    };
                    let body = get(wm, "body")
                        .and_then(|b| string(sink, b, "`body`"))
                        .map(|b| (b.name, b.pos));
                    after_commit.push(EffectDef { endpoint, body });
                }
            }
        }
    }
    Some(TransitionDef {
        label: opt_string(sink, tm, "label", "`label`").map(|n| n.name),
        description: opt_string(sink, tm, "description", "`description`").map(|n| n.name),
        name,
        from,
        to,
        require,
        input,
        set,
        after_commit,
    })
}

fn parse_guard(sink: &mut Sink<'_>, node: &Node) -> Option<GuardDef> {
    let gm = map_with_keys(sink, node, "a guard", &GUARD_KEYS)?;
    let message = match get(gm, "message") {
        Some(m) => string(sink, m, "`message`")?.name,
        None => {
            sink.error_hint(
                node.pos,
                "missing-key",
                "a guard needs a `message`: what the caller is told when it fails",
                "add e.g. `message: \"Set a budget before publishing\"`",
            );
            return None;
        }
    };
    match (get(gm, "check"), get(gm, "where")) {
        (Some(c), None) => {
            let c = string(sink, c, "`check`")?;
            Some(GuardDef::Check {
                expr: c.name,
                pos: c.pos,
                message,
            })
        }
        (None, Some(w)) => {
            let w = string(sink, w, "`where`")?;
            Some(GuardDef::Where {
                cond: CondText {
                    text: w.name,
                    pos: w.pos,
                },
                message,
            })
        }
        (Some(_), Some(_)) => {
            sink.error_hint(
                node.pos,
                "conflicting-keys",
                "a guard has either `check` or `where`, not both",
                "write two guards",
            );
            None
        }
        (None, None) => {
            sink.error_hint(
                node.pos,
                "missing-key",
                "a guard needs `check:` (an expression) or `where:` (a condition on the record)",
                "write e.g. `check: \"record.budget > 0\"` or `where: \"skills is set\"`",
            );
            None
        }
    }
}

fn parse_set_value(sink: &mut Sink<'_>, node: &Node) -> Option<SetValue> {
    if let Some(map) = node.as_map() {
        let m = map_with_keys(sink, node, "a `set` value", &["expr", "value"])?;
        return match (get(m, "expr"), get(m, "value")) {
            (Some(e), None) => Some(SetValue::Expr(string(sink, e, "`expr`")?.name)),
            (None, Some(v)) => Some(SetValue::Literal(v.to_json())),
            _ => {
                sink.error_hint(
                    node.pos,
                    "wrong-value-type",
                    format!(
                        "write either `{{ expr: … }}` or `{{ value: … }}` (found {})",
                        list(&map.iter().map(|(k, _)| k.name.as_str()).collect::<Vec<_>>())
                    ),
                    "e.g. `{ expr: \"record.score + 1\" }`, or `{ value: now }` for the text `now`",
                );
                None
            }
        };
    }
    if let Value::Str(s) = &node.value {
        if s == "now" {
            return Some(SetValue::Now);
        }
        for (prefix, make) in [
            ("user.", SetValue::Claim as fn(String) -> SetValue),
            ("input.", SetValue::Input),
            ("record.", SetValue::Record),
        ] {
            if let Some(rest) = s.strip_prefix(prefix)
                && super::walk::is_identifier(rest)
            {
                return Some(make(rest.to_string()));
            }
        }
    }
    Some(SetValue::Literal(node.to_json()))
}

/// Checks that need the whole project: the entity, its state field, the states'
/// graph, guard and template names, webhook endpoints and the policies.
pub fn check_workflows(spec: &Spec, out: &mut Vec<Diagnostic>) {
    let entity_names: Vec<&str> = spec.models.iter().map(|m| m.entity.name.as_str()).collect();
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for wf in &spec.workflows {
        let mut sink = Sink {
            file: &wf.file,
            out,
        };
        let Some(model) = spec.model(&wf.entity.name) else {
            sink.error_hint(
                wf.entity.pos,
                "unknown-entity",
                format!("there is no entity `{}` for this workflow", wf.entity.name),
                match did_you_mean(&wf.entity.name, entity_names.iter().copied()) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!("entities: {}", list(&entity_names)),
                },
            );
            continue;
        };
        if let Some(prev) = seen.insert(&wf.entity.name, &wf.file) {
            sink.error_hint(
                wf.entity.pos,
                "duplicate-name",
                format!("`{}` already has a workflow in {prev}", wf.entity.name),
                "an entity has at most one workflow; merge the two files",
            );
        }
        let state_names: Vec<&str> = wf.states.iter().map(|s| s.name.name.as_str()).collect();
        let field_names: Vec<&str> = model.fields.iter().map(|f| f.name.as_str()).collect();

        // The state field: an enum whose values are exactly the states.
        match model.field(&wf.field.name) {
            None => sink.error_hint(
                wf.field.pos,
                "unknown-field",
                format!("`{}` has no field `{}`", wf.entity.name, wf.field.name),
                format!(
                    "{} — or add `{}: {{ type: enum, values: [{}] }}` to {}",
                    suggest(&wf.field.name, &field_names),
                    wf.field.name,
                    state_names.join(", "),
                    model.file
                ),
            ),
            Some(f) if f.ty != FieldType::Enum => sink.error_hint(
                wf.field.pos,
                "state-field-not-enum",
                format!(
                    "the state field `{}` is a {} field; it must be an enum of the workflow's states",
                    f.name,
                    f.ty.name()
                ),
                format!(
                    "declare it in {} as `{}: {{ type: enum, values: [{}] }}`",
                    model.file,
                    f.name,
                    state_names.join(", ")
                ),
            ),
            Some(f) => {
                let values: BTreeSet<&str> = f.values.iter().map(String::as_str).collect();
                let states: BTreeSet<&str> = state_names.iter().copied().collect();
                let missing: Vec<&str> = states.difference(&values).copied().collect();
                let extra: Vec<&str> = values.difference(&states).copied().collect();
                if !missing.is_empty() || !extra.is_empty() {
                    let mut parts = Vec::new();
                    if !missing.is_empty() {
                        parts.push(format!("the states {} are not values of the enum", list(&missing)));
                    }
                    if !extra.is_empty() {
                        parts.push(format!("the enum values {} are not states", list(&extra)));
                    }
                    sink.error_hint(
                        wf.field.pos,
                        "state-field-mismatch",
                        format!(
                            "the enum `{}.{}` must list exactly the workflow's states: {}",
                            wf.entity.name,
                            f.name,
                            parts.join("; ")
                        ),
                        format!(
                            "write `values: [{}]` in {}",
                            state_names.join(", "),
                            model.file
                        ),
                    );
                }
                if let Some((super::model::Default::Value(d), pos)) = &f.default
                    && d.as_str() != Some(wf.initial.name.as_str())
                {
                    out.push(Diagnostic {
                        severity: super::Severity::Warning,
                        code: "state-default-ignored",
                        file: model.file.clone(),
                        line: pos.line,
                        column: pos.col,
                        message: format!(
                            "the default of `{}` is ignored: the workflow in {} starts every {} in `{}`",
                            f.name, wf.file, wf.entity.name, wf.initial.name
                        ),
                        hint: Some(format!("remove the default, or write `default: {}`", wf.initial.name)),
                    });
                }
            }
        }
        let mut sink = Sink {
            file: &wf.file,
            out,
        };
        let unknown_state = |sink: &mut Sink<'_>, n: &Named, what: &str| {
            sink.error_hint(
                n.pos,
                "unknown-state",
                format!(
                    "{what} names `{}`, which is not a state of this workflow",
                    n.name
                ),
                suggest(&n.name, &state_names),
            );
        };
        if wf.states.is_empty() {
            continue;
        }
        let initial_ok = wf.state(&wf.initial.name).is_some();
        if !initial_ok {
            unknown_state(&mut sink, &wf.initial, "`initial`");
        }
        if wf
            .state(&wf.initial.name)
            .is_some_and(|s| s.is_final && wf.states.len() > 1)
        {
            let open: Vec<&str> = wf
                .states
                .iter()
                .filter(|s| !s.is_final)
                .map(|s| s.name.name.as_str())
                .collect();
            sink.error_hint(
                wf.initial.pos,
                "final-initial",
                format!(
                    "the initial state `{}` is final, so nothing can ever happen",
                    wf.initial.name
                ),
                if open.is_empty() {
                    format!(
                        "drop `final: true` from `{}`, or add a state that is not final to start in",
                        wf.initial.name
                    )
                } else {
                    format!(
                        "start in a state that is not final ({}), or drop `final: true` from `{}`",
                        list(&open),
                        wf.initial.name
                    )
                },
            );
        }
        let mut edges: Vec<(String, String)> = Vec::new();
        let mut seen_t: BTreeSet<&str> = BTreeSet::new();
        for t in &wf.transitions {
            if !seen_t.insert(&t.name.name) {
                sink.error(
                    t.name.pos,
                    "duplicate-name",
                    format!("the transition `{}` is defined twice", t.name.name),
                );
            }
            let to_ok = wf.state(&t.to.name).is_some();
            if !to_ok {
                unknown_state(&mut sink, &t.to, "`to`");
            }
            if let FromDef::States(names) = &t.from {
                if names.is_empty() {
                    sink.error(
                        t.name.pos,
                        "missing-key",
                        format!("the transition `{}` leaves from no state", t.name.name),
                    );
                }
                for n in names {
                    match wf.state(&n.name) {
                        None => unknown_state(&mut sink, n, "`from`"),
                        Some(s) if s.is_final => sink.error_hint(
                            n.pos,
                            "from-final-state",
                            format!("`{}` is a final state: no transition may leave it", n.name),
                            format!(
                                "remove `{}` from `from`, or drop `final: true` from the state",
                                n.name
                            ),
                        ),
                        Some(_) => {}
                    }
                }
            }
            if to_ok {
                for f in wf.from_states(t) {
                    if wf.state(&f).is_some() && f != t.to.name {
                        edges.push((f, t.to.name.clone()));
                    } else if f == t.to.name {
                        edges.push((f.clone(), f));
                    }
                }
            }
            check_transition(&mut sink, spec, wf, model, t);
        }
        // Reachability from the initial state, and a way out of every non-final state.
        // A misspelt `to` (reported above) leaves the graph incomplete: the states it
        // was meant to reach would all be reported too.
        let targets_known = wf
            .transitions
            .iter()
            .all(|t| wf.state(&t.to.name).is_some());
        if initial_ok && targets_known {
            let mut reached: BTreeSet<&str> = BTreeSet::from([wf.initial.name.as_str()]);
            let mut queue = VecDeque::from([wf.initial.name.as_str()]);
            while let Some(s) = queue.pop_front() {
                for (a, b) in &edges {
                    if a == s && reached.insert(b.as_str()) {
                        queue.push_back(b.as_str());
                    }
                }
            }
            for s in &wf.states {
                if !reached.contains(s.name.name.as_str()) {
                    sink.error_hint(
                        s.name.pos,
                        "unreachable-state",
                        format!(
                            "no sequence of transitions from `{}` reaches the state `{}`",
                            wf.initial.name, s.name.name
                        ),
                        format!(
                            "add a transition with `to: {}`, or remove the state",
                            s.name.name
                        ),
                    );
                }
            }
        }
        for s in &wf.states {
            // A transition whose `to` is unknown still leaves (that is reported above).
            let leaves = wf
                .transitions
                .iter()
                .any(|t| t.to.name != s.name.name && wf.from_states(t).contains(&s.name.name));
            if !s.is_final && !leaves {
                sink.error_hint(
                    s.name.pos,
                    "dead-end-state",
                    format!(
                        "the state `{}` is not final, yet no transition leaves it",
                        s.name.name
                    ),
                    format!(
                        "mark it `final: true`, or add a transition with `from: {}`",
                        s.name.name
                    ),
                );
            }
        }
        check_fireable(&mut sink, spec, wf);
        // Write rules on the state field have no effect: only transitions write it.
        if let Some(p) = spec
            .policies
            .iter()
            .find(|p| p.entity.name == wf.entity.name)
        {
            for rule in p.fields.iter().filter(|r| r.field.name == wf.field.name) {
                if let Some((_, pos)) = &rule.write {
                    out.push(Diagnostic {
                        severity: super::Severity::Warning,
                        code: "state-field-write-rule",
                        file: p.file.clone(),
                        line: pos.line,
                        column: pos.col,
                        message: format!(
                            "`{}` is kept by the workflow in {}: only its transitions write it, so this write rule has no effect",
                            wf.field.name, wf.file
                        ),
                        hint: Some("remove it; who may move the record is the policy action `transition.<name>`".to_string()),
                    });
                }
            }
        }
        check_set_fields_writable(
            &mut Sink {
                file: &wf.file,
                out,
            },
            spec,
            wf,
        );
    }
    // Policy actions `transition.<name>` must name a transition of the entity's workflow.
    for p in &spec.policies {
        let wf = spec
            .workflows
            .iter()
            .find(|w| w.entity.name == p.entity.name);
        let mut sink = Sink { file: &p.file, out };
        for rule in &p.rules {
            for a in rule.allow.iter().chain(&rule.deny) {
                let Some(t) = a.name.strip_prefix("transition.") else {
                    continue;
                };
                match wf {
                    None => sink.error_hint(
                        a.pos,
                        "unknown-transition",
                        format!(
                            "`{}` has no workflow, so it has no transition `{t}`",
                            p.entity.name
                        ),
                        format!(
                            "add workflows/{}.yaml, or remove `{}`",
                            p.entity.name, a.name
                        ),
                    ),
                    Some(wf) if wf.transition(t).is_none() => {
                        let names: Vec<&str> = wf
                            .transitions
                            .iter()
                            .map(|t| t.name.name.as_str())
                            .collect();
                        sink.error_hint(
                            a.pos,
                            "unknown-transition",
                            format!(
                                "the workflow of `{}` has no transition `{t}`",
                                p.entity.name
                            ),
                            match did_you_mean(t, names.iter().copied()) {
                                Some(best) => format!("did you mean `transition.{best}`?"),
                                None if names.is_empty() => format!(
                                    "{} has no transitions; add `{t}` under `transitions:` there, or remove `{}`",
                                    wf.file, a.name
                                ),
                                None => format!("its transitions: {}", list(&names)),
                            },
                        );
                    }
                    Some(_) => {}
                }
            }
        }
    }
}

/// Warns about fields a transition's `set:` assigns that callers may also write
/// through the API because the policy says nothing about them (no write rule, or
/// `on_create`): what the workflow records (when, why, by whom) could then be
/// written around it. `write: never` makes transitions the only writers; an
/// explicit `write: { roles, where }` says who else may, and is not warned about.
fn check_set_fields_writable(sink: &mut Sink<'_>, spec: &Spec, wf: &WorkflowDef) {
    let policy = spec
        .policies
        .iter()
        .find(|p| p.entity.name == wf.entity.name);
    let writable_by_api = match policy {
        // An open project (already warned about as a whole), or an entity nobody may use.
        None => false,
        Some(p) => p.rules.iter().any(|r| {
            r.allow
                .iter()
                .any(|a| matches!(a.name.as_str(), "create" | "update" | "*"))
        }),
    };
    if !writable_by_api {
        return;
    }
    let mut warned: BTreeSet<&str> = BTreeSet::new();
    for t in &wf.transitions {
        for a in &t.set {
            // The state field has its own rules (only transitions write it).
            if a.field.name == wf.field.name || warned.contains(a.field.name.as_str()) {
                continue;
            }
            let rule = policy.and_then(|p| {
                p.fields
                    .iter()
                    .find(|f| f.field.name == a.field.name)
                    .and_then(|f| f.write.as_ref())
            });
            // `never`: only transitions write it. An explicit `{ roles, where }` rule:
            // the author chose who else may (e.g. agents reassign a ticket).
            if matches!(
                rule,
                Some((
                    super::policy::WriteDef::Never | super::policy::WriteDef::Rule { .. },
                    _
                ))
            ) {
                continue;
            }
            warned.insert(&a.field.name);
            sink.warning_hint(
                a.field.pos,
                "set-field-writable",
                format!(
                    "`{}` is set by the transition `{}`, but callers may also write it through the API, around the workflow",
                    a.field.name, t.name.name
                ),
                format!(
                    "add `{}: {{ write: never }}` under `fields:` in policies/{}.yaml: transitions still set it, and nobody else (or `write: {{ roles: [...] }}` to say who else may)",
                    a.field.name, wf.entity.name
                ),
            );
        }
    }
}

/// Warns about transitions that no policy rule lets anyone fire.
fn check_fireable(sink: &mut Sink<'_>, spec: &Spec, wf: &WorkflowDef) {
    if spec.policies.is_empty() {
        return; // an open project: everyone may do everything
    }
    let policy = spec
        .policies
        .iter()
        .find(|p| p.entity.name == wf.entity.name);
    for t in &wf.transitions {
        let action = format!("transition.{}", t.name.name);
        let allowed = policy.is_some_and(|p| {
            p.rules
                .iter()
                .any(|r| r.allow.iter().any(|a| a.name == action || a.name == "*"))
        });
        if !allowed {
            sink.warning_hint(
                t.name.pos,
                "transition-never-allowed",
                format!("no policy rule lets anyone fire `{}`", t.name.name),
                format!(
                    "allow `{action}` to some roles in policies/{}.yaml",
                    wf.entity.name
                ),
            );
        }
    }
}

fn check_transition(
    sink: &mut Sink<'_>,
    spec: &Spec,
    wf: &WorkflowDef,
    model: &super::ModelDef,
    t: &TransitionDef,
) {
    let mut record_fields: Vec<&str> = model.fields.iter().map(|f| f.name.as_str()).collect();
    record_fields.extend(SYSTEM_FIELDS);
    let input_fields: Vec<&str> = t.input.iter().map(|f| f.name.as_str()).collect();
    let mut claims: Vec<&str> = vec!["id", "roles"];
    claims.extend(spec.settings.auth.claims.iter().map(String::as_str));
    if let Some(users) = &spec.settings.auth.users {
        claims.push("email");
        if let Some(rf) = &users.role_field {
            claims.push(rf.name.as_str());
        }
    }
    let names = Names {
        record: &record_fields,
        input: &input_fields,
        claims: &claims,
    };
    for g in &t.require {
        if let GuardDef::Check { expr, pos, .. } = g {
            check_expression(sink, expr, *pos, &names, &GUARD_VARIABLES, "a guard");
        }
    }
    let settable: Vec<&str> = model
        .fields
        .iter()
        .filter(|f| f.ty.has_column() && f.ty != FieldType::File && f.name != wf.field.name)
        .map(|f| f.name.as_str())
        .collect();
    for a in &t.set {
        match model.field(&a.field.name) {
            // `id`, `version`, …: not model fields, and reported just below.
            None if SYSTEM_FIELDS.contains(&a.field.name.as_str()) => {}
            None => sink.error_hint(
                a.field.pos,
                "unknown-field",
                format!(
                    "`set` names `{}`, which is not a field of `{}`",
                    a.field.name, wf.entity.name
                ),
                suggest(&a.field.name, &settable),
            ),
            Some(_) if a.field.name == wf.field.name => sink.error_hint(
                a.field.pos,
                "set-state-field",
                format!(
                    "`{}` is the state field: the transition sets it to `{}`",
                    a.field.name, t.to.name
                ),
                "remove it from `set`",
            ),
            Some(f) if !f.ty.has_column() || f.ty == FieldType::File => sink.error_hint(
                a.field.pos,
                "bad-set-field",
                format!("`set` cannot assign the {} field `{}`", f.ty.name(), f.name),
                format!(
                    "`set` writes the record's own columns ({}); change `{}` with a PATCH",
                    list(&settable),
                    f.name
                ),
            ),
            Some(_) => {}
        }
        if SYSTEM_FIELDS.contains(&a.field.name.as_str()) {
            sink.error_hint(
                a.field.pos,
                "bad-set-field",
                format!("`{}` is kept by Trellis and cannot be set", a.field.name),
                format!(
                    "remove it from `set`; Trellis maintains {} itself",
                    list(&SYSTEM_FIELDS)
                ),
            );
        }
        let (what, name, known): (&str, &str, &[&str]) = match &a.value {
            SetValue::Claim(c) => ("user", c, &claims),
            SetValue::Input(i) => ("input", i, &input_fields),
            SetValue::Record(r) => ("record", r, &record_fields),
            SetValue::Expr(e) => {
                check_expression(
                    sink,
                    e,
                    a.pos,
                    &names,
                    &GUARD_VARIABLES,
                    "a `set` expression",
                );
                continue;
            }
            SetValue::Literal(_) | SetValue::Now => continue,
        };
        if !known.contains(&name) {
            sink.error_hint(
                a.pos,
                "unknown-name",
                format!("`{what}.{name}`: there is no {what} field `{name}`"),
                if known.is_empty() {
                    format!("the transition declares no `{what}` fields")
                } else {
                    suggest(name, known)
                },
            );
        }
    }
    let endpoints: Vec<&str> = spec
        .settings
        .webhooks
        .iter()
        .map(|w| w.name.name.as_str())
        .collect();
    for effect in &t.after_commit {
        if !endpoints.contains(&effect.endpoint.name.as_str()) {
            sink.error_hint(
                effect.endpoint.pos,
                "unknown-endpoint",
                format!("there is no webhook endpoint `{}` in trellis.yaml", effect.endpoint.name),
                if endpoints.is_empty() {
                    format!(
                        "add `webhooks: {{ {}: {{ url: \"https://…\", secret_env: … }} }}` to trellis.yaml",
                        effect.endpoint.name
                    )
                } else {
                    suggest(&effect.endpoint.name, &endpoints)
                },
            );
        }
        if let Some((body, pos)) = &effect.body {
            check_template(sink, body, *pos, &names);
        }
    }
}

/// The names a guard or template may use.
struct Names<'a> {
    record: &'a [&'a str],
    input: &'a [&'a str],
    claims: &'a [&'a str],
}

/// An environment with the same filters and tests the engine evaluates with.
pub fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env
}

/// Instructions one guard, assignment or body may run.
pub const FUEL: u64 = 50_000;

fn check_expression(
    sink: &mut Sink<'_>,
    expr: &str,
    pos: Pos,
    names: &Names<'_>,
    allowed: &[&str],
    what: &str,
) {
    let env = environment();
    match env.compile_expression(expr) {
        Err(err) => sink.error_hint(
            pos,
            "invalid-expression",
            format!(
                "{what} is not a valid expression: {}",
                minijinja_detail(&err)
            ),
            "write e.g. `record.budget > 0 and input.reason | length > 3`",
        ),
        Ok(compiled) => {
            check_variables(
                sink,
                compiled.undeclared_variables(true),
                pos,
                names,
                allowed,
            );
            check_callables(sink, expr, pos);
        }
    }
}

fn check_template(sink: &mut Sink<'_>, body: &str, pos: Pos, names: &Names<'_>) {
    let env = environment();
    match env.template_from_str(body) {
        Err(err) => sink.error_hint(
            pos,
            "invalid-template",
            format!("the body is not a valid template: {}", minijinja_detail(&err)),
            "write e.g. `{\"id\": {{ record.id | tojson }}, \"reason\": {{ input.reason | tojson }}}`",
        ),
        Ok(tmpl) => {
            check_variables(sink, tmpl.undeclared_variables(true), pos, names, &BODY_VARIABLES);
            check_callables(sink, body, pos);
        }
    }
}

fn minijinja_detail(err: &minijinja::Error) -> String {
    err.detail()
        .map(str::to_string)
        .unwrap_or_else(|| err.kind().to_string())
}

/// Filters and tests are looked up when an expression runs, so a misspelt one would
/// only show as a guard that always fails. Each name written after `|` or `is` is
/// tried on its own here instead.
fn check_callables(sink: &mut Sink<'_>, text: &str, pos: Pos) {
    let env = environment();
    let (filters, tests) = callables(text);
    for (name, is_filter) in filters
        .iter()
        .map(|n| (n, true))
        .chain(tests.iter().map(|n| (n, false)))
    {
        let probe = if is_filter {
            format!("none | {name}")
        } else {
            format!("none is {name}")
        };
        let unknown = match env.compile_expression(&probe) {
            Ok(c) => c.eval(()).err().is_some_and(|e| {
                matches!(
                    e.kind(),
                    minijinja::ErrorKind::UnknownFilter | minijinja::ErrorKind::UnknownTest
                )
            }),
            Err(_) => false,
        };
        if unknown {
            let what = if is_filter { "filter" } else { "test" };
            let known: &[&str] = if is_filter {
                &COMMON_FILTERS
            } else {
                &COMMON_TESTS
            };
            sink.error_hint(
                pos,
                "unknown-callable",
                format!("there is no {what} `{name}`"),
                suggest(name, known),
            );
        }
    }
}

/// Names after `|` (filters) and after `is` / `is not` (tests), outside string literals.
fn callables(text: &str) -> (Vec<String>, Vec<String>) {
    let mut filters = Vec::new();
    let mut tests = Vec::new();
    let mut words: Vec<(String, bool)> = Vec::new(); // (token, preceded by `|`)
    let mut chars = text.chars().peekable();
    let mut after_pipe = false;
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                let mut escaped = false;
                for d in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if d == '\\' {
                        escaped = true;
                    } else if d == c {
                        break;
                    }
                }
                after_pipe = false;
                words.push((String::new(), false));
            }
            '|' => after_pipe = true,
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut word = String::from(c);
                while let Some(&d) = chars.peek() {
                    if d.is_ascii_alphanumeric() || d == '_' {
                        word.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                words.push((word, after_pipe));
                after_pipe = false;
            }
            c if c.is_whitespace() => {}
            _ => {
                after_pipe = false;
                words.push((String::new(), false));
            }
        }
    }
    for (i, (word, piped)) in words.iter().enumerate() {
        if *piped {
            filters.push(word.clone());
        } else if word == "is" {
            let next = match words.get(i + 1) {
                Some((w, _)) if w == "not" => words.get(i + 2),
                other => other,
            };
            if let Some((w, _)) = next
                && !w.is_empty()
            {
                tests.push(w.clone());
            }
        }
    }
    (filters, tests)
}

const COMMON_FILTERS: [&str; 24] = [
    "abs",
    "attr",
    "batch",
    "bool",
    "capitalize",
    "default",
    "first",
    "float",
    "indent",
    "int",
    "items",
    "join",
    "last",
    "length",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "replace",
    "round",
    "tojson",
    "trim",
    "upper",
];
const COMMON_TESTS: [&str; 12] = [
    "defined",
    "undefined",
    "none",
    "number",
    "string",
    "true",
    "false",
    "even",
    "odd",
    "divisibleby",
    "in",
    "startingwith",
];

fn check_variables(
    sink: &mut Sink<'_>,
    used: std::collections::HashSet<String>,
    pos: Pos,
    names: &Names<'_>,
    allowed: &[&str],
) {
    let mut used: Vec<String> = used.into_iter().collect();
    used.sort();
    for path in used {
        let mut parts = path.splitn(3, '.');
        let root = parts.next().unwrap_or_default();
        let attr = parts.next();
        if !allowed.contains(&root) {
            sink.error_hint(
                pos,
                "unknown-name",
                format!("`{root}` is not a variable here"),
                format!(
                    "{} (the variables are {})",
                    suggest(root, allowed),
                    list(allowed)
                ),
            );
            continue;
        }
        let Some(attr) = attr else { continue };
        let (known, what): (&[&str], &str) = match root {
            "record" => (names.record, "a field of the record"),
            "input" => (names.input, "an input field of this transition"),
            "user" => (
                names.claims,
                "a claim of the caller (declare others in `auth.claims`)",
            ),
            _ => continue,
        };
        if !known.contains(&attr) {
            sink.error_hint(
                pos,
                "unknown-name",
                format!("`{root}.{attr}` is not {what}"),
                if known.is_empty() {
                    "this transition declares no `input`".to_string()
                } else {
                    suggest(attr, known)
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values() {
        let mut out = Vec::new();
        let mut sink = Sink {
            file: "w.yaml",
            out: &mut out,
        };
        let node = |t: &str| super::super::yaml::parse(t).expect("yaml");
        assert_eq!(
            parse_set_value(&mut sink, &node("now")),
            Some(SetValue::Now)
        );
        assert_eq!(
            parse_set_value(&mut sink, &node("user.id")),
            Some(SetValue::Claim("id".into()))
        );
        assert_eq!(
            parse_set_value(&mut sink, &node("input.reason")),
            Some(SetValue::Input("reason".into()))
        );
        assert_eq!(
            parse_set_value(&mut sink, &node("Closed by the client")),
            Some(SetValue::Literal(serde_json::json!("Closed by the client")))
        );
        assert_eq!(
            parse_set_value(&mut sink, &node("{ value: now }")),
            Some(SetValue::Literal(serde_json::json!("now")))
        );
        assert_eq!(
            parse_set_value(&mut sink, &node("{ expr: 'record.score + 1' }")),
            Some(SetValue::Expr("record.score + 1".into()))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn finds_filters_and_tests_outside_strings() {
        let (f, t) =
            callables("input.x | lenght > 3 and record.y is not nonee and 'a|b' == \"is x\"");
        assert_eq!(f, vec!["lenght"]);
        assert_eq!(t, vec!["nonee"]);
        let mut out = Vec::new();
        let mut sink = Sink {
            file: "w.yaml",
            out: &mut out,
        };
        check_callables(
            &mut sink,
            "x | lenght and y | length and z is nonee",
            Pos::default(),
        );
        let messages: Vec<&str> = out.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            ["there is no filter `lenght`", "there is no test `nonee`"]
        );
        assert_eq!(out[0].hint.as_deref(), Some("did you mean `length`?"));
    }
}
