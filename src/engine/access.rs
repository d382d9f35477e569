//! Policies, compiled: who may do what, as conditions the store adds to its SQL.
//!
//! Default deny: once a project has policy files, an action is allowed only by a
//! matching `allow` rule, and a matching `deny` rule always wins. A project without
//! any policy file is open (and `trellis check` says so).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::cond::check::{Ctx, Scope, Typed, check};
use super::cond::{Cond, parse};
use super::input::{FieldError, Mode};
use super::{Engine, Entity};
use crate::spec::diag::Diagnostic;
use crate::spec::policy::{PolicyDef, WriteDef};
use crate::spec::{Severity, Spec};

/// Who is calling.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The user id (from the token's user id claim); `None` for anonymous callers.
    pub id: Option<String>,
    /// `anonymous`, or `authenticated` plus the token's roles.
    pub roles: Vec<String>,
    /// Every claim of the token, plus `id` and `roles` (shared with every [`Ctx`]).
    pub claims: Arc<Map<String, Value>>,
    /// Trellis itself (built-in signup): no policy applies.
    pub system: bool,
}

impl Principal {
    pub fn anonymous() -> Principal {
        Principal {
            id: None,
            roles: vec!["anonymous".to_string()],
            claims: Default::default(),
            system: false,
        }
    }

    /// Trellis acting for itself.
    pub fn system() -> Principal {
        Principal {
            id: None,
            roles: Vec::new(),
            claims: Default::default(),
            system: true,
        }
    }

    /// A signed-in user with these roles (`authenticated` is added).
    pub fn user(id: &str, roles: &[&str], mut claims: Map<String, Value>) -> Principal {
        let mut all = vec!["authenticated".to_string()];
        all.extend(roles.iter().map(|r| r.to_string()));
        claims.insert("id".into(), json!(id));
        claims.insert("roles".into(), json!(all));
        Principal {
            id: Some(id.to_string()),
            roles: all,
            claims: Arc::new(claims),
            system: false,
        }
    }

    pub fn has_role(&self, roles: &[String]) -> bool {
        roles.iter().any(|r| r == "*" || self.roles.contains(r))
    }

    pub fn is_anonymous(&self) -> bool {
        self.id.is_none()
    }

    /// The context conditions run in for this caller, now.
    pub fn ctx(&self) -> Ctx {
        Ctx {
            now: super::input::now(),
            user: self.claims.clone(),
        }
    }
}

/// What a caller does to an entity's records: what policy rules allow or deny.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    List,
    Read,
    Create,
    Update,
    Delete,
    Aggregate,
    /// Firing the workflow's transition of this name.
    Transition(String),
}

impl Action {
    /// An action as a policy names it (`read`, `transition.close`); `None` for any
    /// other text (the spec's checks report those).
    pub fn parse(name: &str) -> Option<Action> {
        Some(match name {
            "list" => Action::List,
            "read" => Action::Read,
            "create" => Action::Create,
            "update" => Action::Update,
            "delete" => Action::Delete,
            "aggregate" => Action::Aggregate,
            _ => Action::Transition(
                name.strip_prefix("transition.")
                    .filter(|t| !t.is_empty())?
                    .to_string(),
            ),
        })
    }
}

impl std::fmt::Display for Action {
    /// The name a policy gives the action.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::List => f.write_str("list"),
            Action::Read => f.write_str("read"),
            Action::Create => f.write_str("create"),
            Action::Update => f.write_str("update"),
            Action::Delete => f.write_str("delete"),
            Action::Aggregate => f.write_str("aggregate"),
            Action::Transition(name) => write!(f, "transition.{name}"),
        }
    }
}

/// An entry of a rule's `allow:` or `deny:`: one action, or `*` (every action).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionPattern {
    Any,
    One(Action),
}

impl ActionPattern {
    /// `*` or an action's name; `None` for any other text.
    pub fn parse(name: &str) -> Option<ActionPattern> {
        match name {
            "*" => Some(ActionPattern::Any),
            _ => Action::parse(name).map(ActionPattern::One),
        }
    }

    pub fn covers(&self, action: &Action) -> bool {
        match self {
            ActionPattern::Any => true,
            ActionPattern::One(a) => a == action,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub roles: Vec<String>,
    pub allow: Vec<ActionPattern>,
    pub deny: Vec<ActionPattern>,
    pub cond: Option<Typed>,
    /// The `where` as written.
    pub cond_text: Option<String>,
}

/// How one rule bears on a caller and an action (for `explain`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleTrace {
    pub name: String,
    /// `allow` or `deny`.
    pub effect: &'static str,
    /// Why the rule does not apply, if it does not: `role` or `action`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// The checked condition (not serialized); the store says whether it holds.
    #[serde(skip)]
    pub cond: Option<Typed>,
}

/// The answer `explain` gives, from the rules that apply (their conditions judged
/// on the record): deny wins, then the first allow, else default deny.
pub fn verdict(traces: &[(RuleTrace, Option<bool>)]) -> (Decided, String) {
    let holding = |effect: &str| {
        traces
            .iter()
            .find(|(t, holds)| t.effect == effect && *holds == Some(true))
            .map(|(t, _)| t.name.clone())
    };
    match (holding("deny"), holding("allow")) {
        (Some(d), _) => (
            Decided::Deny,
            format!("the deny rule “{d}” applies, and deny wins"),
        ),
        (None, Some(a)) => (Decided::Allow, format!("the rule “{a}” allows it")),
        (None, None) => (
            Decided::Deny,
            "no allow rule applies to this caller, action and record (default deny)".to_string(),
        ),
    }
}

/// Allowed or not, for one record (`explain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decided {
    Allow,
    Deny,
}

impl Decided {
    pub fn as_str(self) -> &'static str {
        match self {
            Decided::Allow => "allow",
            Decided::Deny => "deny",
        }
    }
}

#[derive(Debug, Clone)]
pub enum WriteRule {
    Never,
    OnCreate,
    /// `roles` may always write the field. With a condition, every other caller
    /// allowed to change the record may write it where the condition holds: on the
    /// stored record before an update (in the UPDATE's own WHERE), on the new record
    /// on create (in the create's transaction). Without one, nobody else may.
    Rule {
        roles: Vec<String>,
        cond: Option<Typed>,
        /// The `where` as written, for the refusal's message.
        cond_text: Option<String>,
    },
}

/// A field a caller writes only where a condition holds (see [`WriteRule::Rule`]).
#[derive(Debug, Clone)]
pub struct WriteCondition {
    pub field: String,
    pub cond: Typed,
    /// The condition as written in the policy.
    pub text: String,
}

/// The compiled policy of one entity.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub rules: Vec<Rule>,
    /// Field -> roles that may read it.
    pub read_roles: HashMap<String, Vec<String>>,
    /// Field -> condition on the record under which it is visible.
    pub read_where: HashMap<String, Typed>,
    pub write: HashMap<String, WriteRule>,
    /// Field -> claim path stored on create (`user.id` -> ["id"]).
    pub presets: HashMap<String, Vec<String>>,
}

/// The answer to "may this caller do this?".
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Deny,
    /// Allowed on the records matching the condition.
    Allow(Typed),
}

fn matches(actions: &[ActionPattern], action: &Action) -> bool {
    actions.iter().any(|a| a.covers(action))
}

fn or(a: Typed, b: Typed) -> Typed {
    match (a, b) {
        (Typed::Const(true), _) | (_, Typed::Const(true)) => Typed::Const(true),
        (Typed::Const(false), x) | (x, Typed::Const(false)) => x,
        (a, b) => Typed::Or(Box::new(a), Box::new(b)),
    }
}

fn and(a: Typed, b: Typed) -> Typed {
    match (a, b) {
        (Typed::Const(false), _) | (_, Typed::Const(false)) => Typed::Const(false),
        (Typed::Const(true), x) | (x, Typed::Const(true)) => x,
        (a, b) => Typed::And(Box::new(a), Box::new(b)),
    }
}

impl Policy {
    pub fn decide(&self, action: &Action, p: &Principal) -> Decision {
        let mut allowed: Option<Typed> = None;
        for r in self.rules.iter().filter(|r| p.has_role(&r.roles)) {
            if matches(&r.allow, action) {
                let c = r.cond.clone().unwrap_or(Typed::Const(true));
                allowed = Some(match allowed {
                    None => c,
                    Some(prev) => or(prev, c),
                });
            }
        }
        let Some(mut cond) = allowed else {
            return Decision::Deny;
        };
        for r in self.rules.iter().filter(|r| p.has_role(&r.roles)) {
            if matches(&r.deny, action) {
                match &r.cond {
                    None => return Decision::Deny,
                    Some(c) => cond = and(cond, Typed::Not(Box::new(c.clone()))),
                }
            }
        }
        if cond == Typed::Const(false) {
            Decision::Deny
        } else {
            Decision::Allow(cond)
        }
    }

    /// Every rule of the policy and how it bears on this caller and action.
    pub fn trace(&self, action: &Action, p: &Principal) -> Vec<RuleTrace> {
        let mut out = Vec::new();
        for r in &self.rules {
            for (effect, actions) in [("allow", &r.allow), ("deny", &r.deny)] {
                if actions.is_empty() {
                    continue;
                }
                let skipped = if !p.has_role(&r.roles) {
                    Some("role")
                } else if !matches(actions, action) {
                    Some("action")
                } else {
                    None
                };
                out.push(RuleTrace {
                    name: r.name.clone(),
                    effect,
                    skipped,
                    condition: r.cond_text.clone(),
                    cond: r.cond.clone(),
                });
            }
        }
        out
    }

    /// Fields of the entity this caller may never see: `read.roles` without one of
    /// the caller's roles, and no `read.where` to open them on some records.
    pub fn hidden(&self, p: &Principal) -> Vec<String> {
        self.read_roles
            .iter()
            .filter(|(f, roles)| !p.has_role(roles) && !self.read_where.contains_key(*f))
            .map(|(f, _)| f.clone())
            .collect()
    }

    /// Fields this caller sees only on the records where a condition holds:
    /// `read.where`, unless the caller has one of `read.roles` (who always see them).
    pub fn conditional(&self, p: &Principal) -> Vec<(String, Typed)> {
        self.read_where
            .iter()
            .filter(|(f, _)| {
                !self
                    .read_roles
                    .get(*f)
                    .is_some_and(|roles| p.has_role(roles))
            })
            .map(|(f, c)| (f.clone(), c.clone()))
            .collect()
    }
}

/// All policies of a project.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// `false`: the project has no policy files and everything is open.
    pub enforced: bool,
    pub policies: HashMap<String, Policy>,
    /// Claim names conditions may use (`id`, `roles`, and `auth.claims`).
    pub claims: Vec<String>,
}

impl Access {
    pub fn decide(&self, entity: &str, action: &Action, p: &Principal) -> Decision {
        if !self.enforced || p.system {
            return Decision::Allow(Typed::Const(true));
        }
        match self.policies.get(entity) {
            Some(policy) => policy.decide(action, p),
            None => Decision::Deny,
        }
    }

    /// Fields of `entity` hidden from this caller.
    pub fn hidden(&self, entity: &str, p: &Principal) -> Vec<String> {
        if !self.enforced || p.system {
            return Vec::new();
        }
        self.policies
            .get(entity)
            .map(|pol| pol.hidden(p))
            .unwrap_or_default()
    }

    /// Every (entity, field) this caller may not use in a query: the hidden ones, and
    /// those visible only on some records (a filter would reveal them elsewhere).
    pub fn hidden_everywhere(&self, p: &Principal) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !self.enforced || p.system {
            return out;
        }
        for (e, pol) in &self.policies {
            for f in pol.hidden(p) {
                out.push((e.clone(), f));
            }
            for (f, _) in pol.conditional(p) {
                out.push((e.clone(), f));
            }
        }
        out
    }

    /// Fields of `entity` visible to this caller only where a condition holds.
    pub fn conditional(&self, entity: &str, p: &Principal) -> Vec<(String, Typed)> {
        if !self.enforced || p.system {
            return Vec::new();
        }
        self.policies
            .get(entity)
            .map(|pol| pol.conditional(p))
            .unwrap_or_default()
    }

    /// The rows of every entity this caller may read, for restricting the relation
    /// steps of the conditions the caller writes (see [`Scope::rows`]): `None` when
    /// nothing is restricted (no policies, or Trellis itself).
    pub fn readable_rows(
        &self,
        engine: &Engine,
        p: &Principal,
    ) -> Option<HashMap<String, Option<Typed>>> {
        if !self.enforced || p.system {
            return None;
        }
        Some(
            engine
                .entities()
                .iter()
                .map(|e| {
                    let rows = match self.decide(&e.name, &Action::Read, p) {
                        Decision::Allow(cond) => Some(cond),
                        Decision::Deny => None,
                    };
                    (e.name.clone(), rows)
                })
                .collect(),
        )
    }

    pub fn policy(&self, entity: &str) -> Option<&Policy> {
        self.policies.get(entity)
    }

    /// Field write rules for a request body: each field the caller may not write is
    /// a 422 entry (never silently dropped).
    pub fn check_write(
        &self,
        e: &Entity,
        body: &Value,
        mode: Mode,
        who: &Principal,
    ) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if !self.enforced || who.system {
            return errors;
        }
        let (Some(obj), Some(policy)) = (body.as_object(), self.policies.get(&e.name)) else {
            return errors;
        };
        let hidden = policy.hidden(who);
        for key in obj.keys() {
            let pointer = format!("/{key}");
            if hidden.contains(key) {
                errors.push(FieldError::new(
                    pointer,
                    format!("you may not write `{key}`"),
                ));
                continue;
            }
            if policy.presets.contains_key(key) {
                // Set from the caller; only roles allowed to write it may choose another value.
                let may = matches!(policy.write.get(key), Some(WriteRule::Rule { roles, .. }) if who.has_role(roles));
                if !may {
                    errors.push(FieldError::new(
                        pointer,
                        format!("`{key}` is set by the server from who you are"),
                    ));
                }
                continue;
            }
            match policy.write.get(key) {
                Some(WriteRule::Never) => {
                    errors.push(FieldError::new(
                        pointer,
                        format!("`{key}` cannot be written"),
                    ));
                }
                Some(WriteRule::OnCreate) if mode == Mode::Update => {
                    errors.push(FieldError::new(
                        pointer,
                        format!("`{key}` can only be set when the record is created"),
                    ));
                }
                Some(WriteRule::Rule {
                    roles, cond: None, ..
                }) if !who.has_role(roles) => {
                    errors.push(FieldError::new(
                        pointer,
                        format!(
                            "you may not write `{key}` (it needs the role {})",
                            roles.join(" or ")
                        ),
                    ));
                }
                _ => {}
            }
        }
        errors
    }

    /// Field write rules for the file fields a multipart request uploads to: the same
    /// answers as [`Access::check_write`] gives a JSON body naming those fields.
    pub fn check_uploads(
        &self,
        e: &Entity,
        uploads: &crate::engine::files::Uploads,
        mode: Mode,
        who: &Principal,
    ) -> Vec<FieldError> {
        let body: serde_json::Map<String, Value> = uploads
            .iter()
            .filter(|(_, files)| !files.is_empty())
            .map(|(name, _)| (name.clone(), Value::Null))
            .collect();
        self.check_write(e, &Value::Object(body), mode, who)
    }

    /// The conditions under which this caller writes the given fields of `e`: one per
    /// field whose write rule has a `where` and whose `roles` the caller lacks. The
    /// store ANDs them into the write (an update: on the stored record, in the
    /// UPDATE's WHERE; a create: on the new record, in its transaction).
    pub fn write_conditions<'a>(
        &self,
        e: &Entity,
        fields: impl IntoIterator<Item = &'a str>,
        who: &Principal,
    ) -> Vec<WriteCondition> {
        if !self.enforced || who.system {
            return Vec::new();
        }
        let Some(policy) = self.policies.get(&e.name) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for field in fields {
            if let Some(WriteRule::Rule {
                roles,
                cond: Some(cond),
                cond_text,
            }) = policy.write.get(field)
                && !who.has_role(roles)
            {
                out.push(WriteCondition {
                    field: field.to_string(),
                    cond: cond.clone(),
                    text: cond_text.clone().unwrap_or_default(),
                });
            }
        }
        out
    }

    /// Fills `on_create` presets (e.g. the author is the caller) into a create body,
    /// where the caller did not give the field.
    pub fn apply_presets(
        &self,
        e: &Entity,
        who: &Principal,
        body: &mut Value,
    ) -> Result<(), FieldError> {
        if !self.enforced || who.system {
            return Ok(());
        }
        let (Some(policy), Some(obj)) = (self.policies.get(&e.name), body.as_object_mut()) else {
            return Ok(());
        };
        for (field, claim) in &policy.presets {
            if obj.contains_key(field) {
                // Given explicitly by a caller allowed to (see `check_write`).
                continue;
            }
            let mut v = who.claims.get(&claim[0]);
            for part in &claim[1..] {
                v = v.and_then(|x| x.get(part));
            }
            let Some(v) = v.filter(|v| !v.is_null()) else {
                return Err(FieldError::new(
                    format!("/{field}"),
                    format!(
                        "`{field}` is set to your `user.{}`, but you have none",
                        claim.join(".")
                    ),
                ));
            };
            obj.insert(field.clone(), v.clone());
        }
        Ok(())
    }
}

/// An error diagnostic of a compile step (policies, workflows).
pub(crate) fn diag(
    file: &str,
    line: u32,
    column: u32,
    code: &'static str,
    message: String,
    hint: Option<String>,
) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        code,
        file: file.to_string(),
        line,
        column,
        message,
        hint,
    }
}

/// A field rule's condition (`read.where`, `write.where`), parsed and checked;
/// `what` names it in the diagnostic.
fn field_condition(
    engine: &Engine,
    entity: &Entity,
    scope: &Scope,
    file: &str,
    text: &crate::spec::policy::CondText,
    what: &str,
) -> Result<Typed, Diagnostic> {
    let cond = parse(&text.text).map_err(|e| {
        diag(
            file,
            text.pos.line,
            text.pos.col + e.column as u32 - 1,
            "invalid-condition",
            format!("{what} cannot be read: {}", e.message),
            e.hint,
        )
    })?;
    check(engine, entity, &cond, scope).map_err(|e| {
        diag(
            file,
            text.pos.line,
            text.pos.col + e.span.0 as u32,
            "invalid-condition",
            format!("{what}: {}", e.message),
            e.hint,
        )
    })
}

/// Compiles the policies of `spec` against the built engine, reporting every
/// condition that does not parse or does not fit the model.
pub fn compile(engine: &Engine, spec: &Spec) -> (Access, Vec<Diagnostic>) {
    let mut out = Vec::new();
    let mut claims = vec!["id".to_string(), "roles".to_string()];
    claims.extend(spec.settings.auth.claims.iter().cloned());
    if let Some(users) = &spec.settings.auth.users {
        claims.push("email".to_string());
        if let Some(rf) = &users.role_field {
            claims.push(rf.name.clone());
        }
    }
    let mut access = Access {
        enforced: !spec.policies.is_empty(),
        policies: HashMap::new(),
        claims: claims.clone(),
    };
    for def in &spec.policies {
        let Some(entity) = engine.entity(&def.entity.name) else {
            continue;
        };
        access.policies.insert(
            entity.name.clone(),
            compile_one(engine, entity, def, &claims, &mut out),
        );
    }
    (access, out)
}

fn compile_one(
    engine: &Engine,
    entity: &Entity,
    def: &PolicyDef,
    claims: &[String],
    out: &mut Vec<Diagnostic>,
) -> Policy {
    let mut named: Vec<(String, Cond)> = Vec::new();
    for (name, text) in &def.conditions {
        match parse(&text.text) {
            Ok(c) => named.push((name.name.clone(), c)),
            Err(e) => out.push(diag(
                &def.file,
                text.pos.line,
                text.pos.col + e.column as u32 - 1,
                "invalid-condition",
                format!(
                    "the condition `{}` cannot be read: {}",
                    name.name, e.message
                ),
                e.hint,
            )),
        }
    }
    let scope = Scope {
        claims: Some(claims.to_vec()),
        named: named.clone(),
        named_entity: Some(entity.name.clone()),
        hidden: Vec::new(),
        rows: None,
    };
    // Named conditions are checked even when no rule uses them.
    for (name, text) in &def.conditions {
        if let Some((_, c)) = named.iter().find(|(n, _)| *n == name.name)
            && let Err(e) = check(engine, entity, c, &scope)
        {
            out.push(diag(
                &def.file,
                text.pos.line,
                text.pos.col + e.span.0 as u32,
                "invalid-condition",
                format!("the condition `{}`: {}", name.name, e.message),
                e.hint,
            ));
        }
    }
    let mut policy = Policy::default();
    for r in &def.rules {
        let cond = r.condition.as_ref().map(|text| {
            let parsed = match parse(&text.text) {
                Ok(c) => c,
                Err(e) => {
                    out.push(diag(
                        &def.file,
                        text.pos.line,
                        text.pos.col + e.column as u32 - 1,
                        "invalid-condition",
                        format!("`where` of `{}` cannot be read: {}", r.name, e.message),
                        e.hint,
                    ));
                    return Typed::Const(false);
                }
            };
            match check(engine, entity, &parsed, &scope) {
                Ok(t) => t,
                Err(e) => {
                    out.push(diag(
                        &def.file,
                        text.pos.line,
                        text.pos.col + e.span.0 as u32,
                        "invalid-condition",
                        format!("`where` of `{}`: {}", r.name, e.message),
                        e.hint,
                    ));
                    Typed::Const(false)
                }
            }
        });
        policy.rules.push(Rule {
            name: r.name.clone(),
            roles: r.roles.iter().map(|n| n.name.clone()).collect(),
            // Names that are not actions are reported by the spec's checks.
            allow: r
                .allow
                .iter()
                .filter_map(|n| ActionPattern::parse(&n.name))
                .collect(),
            deny: r
                .deny
                .iter()
                .filter_map(|n| ActionPattern::parse(&n.name))
                .collect(),
            cond,
            cond_text: r.condition.as_ref().map(|c| c.text.clone()),
        });
    }
    for f in &def.fields {
        if let Some(text) = &f.read_where {
            let checked = field_condition(
                engine,
                entity,
                &scope,
                &def.file,
                text,
                &format!("`read.where` of `{}`", f.field.name),
            );
            match checked {
                Ok(t) => {
                    policy.read_where.insert(f.field.name.clone(), t);
                }
                Err(d) => out.push(d),
            }
        }
        if let Some(roles) = &f.read_roles {
            policy.read_roles.insert(
                f.field.name.clone(),
                roles.iter().map(|n| n.name.clone()).collect(),
            );
        }
        if let Some((w, _)) = &f.write {
            let rule = match w {
                WriteDef::Never => WriteRule::Never,
                WriteDef::OnCreate => WriteRule::OnCreate,
                WriteDef::Rule { roles, condition } => {
                    let cond = condition.as_ref().map(|text| {
                        field_condition(
                            engine,
                            entity,
                            &scope,
                            &def.file,
                            text,
                            &format!("`write.where` of `{}`", f.field.name),
                        )
                        // A condition that does not fit lets nobody but the roles
                        // write (the project does not load anyway).
                        .unwrap_or_else(|d| {
                            out.push(d);
                            Typed::Const(false)
                        })
                    });
                    WriteRule::Rule {
                        roles: roles.iter().map(|n| n.name.clone()).collect(),
                        cond,
                        cond_text: condition.as_ref().map(|c| c.text.clone()),
                    }
                }
            };
            policy.write.insert(f.field.name.clone(), rule);
        }
        if let Some(p) = &f.on_create {
            let path: Vec<String> = p
                .name
                .trim_start_matches("user.")
                .split('.')
                .map(str::to_string)
                .collect();
            if !claims.contains(&path[0]) {
                out.push(diag(
                    &def.file,
                    p.pos.line,
                    p.pos.col,
                    "unknown-claim",
                    format!("there is no claim `user.{}`", path[0]),
                    Some(format!("claims: {}", claims.join(", "))),
                ));
            }
            policy.presets.insert(f.field.name.clone(), path);
        }
    }
    policy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_read_back_as_written() {
        for name in [
            "list",
            "read",
            "create",
            "update",
            "delete",
            "aggregate",
            "transition.close",
        ] {
            let action = Action::parse(name).expect("an action");
            assert_eq!(action.to_string(), name);
        }
        assert_eq!(
            Action::parse("transition.close"),
            Some(Action::Transition("close".into()))
        );
        for not_one in ["", "*", "transition.", "transitions.close", "Read", "write"] {
            assert_eq!(Action::parse(not_one), None, "{not_one}");
        }
    }

    #[test]
    fn a_star_covers_every_action_and_a_name_its_own() {
        let close = Action::Transition("close".into());
        assert!(ActionPattern::parse("*").expect("`*`").covers(&close));
        assert!(
            ActionPattern::parse("*")
                .expect("`*`")
                .covers(&Action::Read)
        );
        let read = ActionPattern::parse("read").expect("`read`");
        assert!(read.covers(&Action::Read));
        assert!(!read.covers(&Action::List));
        assert!(!read.covers(&close));
        assert_eq!(ActionPattern::parse("nothing"), None);
    }

    #[test]
    fn deny_wins_then_the_first_allow_then_default_deny() {
        let trace = |name: &str, effect: &'static str| RuleTrace {
            name: name.into(),
            effect,
            skipped: None,
            condition: None,
            cond: None,
        };
        let (d, why) = verdict(&[
            (trace("a", "allow"), Some(true)),
            (trace("d", "deny"), Some(true)),
        ]);
        assert_eq!(
            (d, why.as_str()),
            (Decided::Deny, "the deny rule “d” applies, and deny wins")
        );
        let (d, why) = verdict(&[
            (trace("d", "deny"), Some(false)),
            (trace("a", "allow"), None),
            (trace("b", "allow"), Some(true)),
        ]);
        assert_eq!(
            (d, why.as_str()),
            (Decided::Allow, "the rule “b” allows it")
        );
        let (d, _) = verdict(&[(trace("a", "allow"), Some(false))]);
        assert_eq!(d, Decided::Deny);
    }
}
