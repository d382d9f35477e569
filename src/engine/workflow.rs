//! Workflows, compiled: states, transitions, guards, assignments and effects of one
//! entity's state machine. Evaluation of guards, `set` expressions and effect bodies
//! (minijinja, strict undefined, fuel-limited) happens here; the database side of a
//! transition (the compare-and-set, history, outbox) is in `store::workflow`.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::access::{Action, Principal};
use super::cond::check::{Scope, Typed, check};
use super::cond::parse::parse;
use super::input::{Cell, convert, format_datetime};
use super::{Engine, Entity, Field, schemas};
use crate::spec::workflow::{FromDef, GuardDef, SetValue, WorkflowDef};
use crate::spec::{Diagnostic, FieldType, Spec};

#[derive(Debug, Clone)]
pub struct State {
    pub name: String,
    pub label: String,
    pub description: Option<String>,
    pub is_final: bool,
}

#[derive(Debug)]
pub enum Guard {
    /// A minijinja expression; `uses_input` when it reads `input` (so it cannot be
    /// judged before the caller sends one).
    Check {
        expr: String,
        message: String,
        uses_input: bool,
    },
    /// A condition on the record, part of the compare-and-set statement.
    Where { cond: Typed, message: String },
}

#[derive(Debug)]
pub enum AssignValue {
    Literal(Cell),
    Now,
    Claim(String),
    Input(String),
    Record(String),
    Expr(String),
}

#[derive(Debug)]
pub struct Assign {
    /// Index of the field in the entity's fields.
    pub field: usize,
    pub value: AssignValue,
}

#[derive(Debug)]
pub struct Effect {
    pub endpoint: String,
    /// The template's name in the workflow's environment; `None`: the default body.
    pub template: Option<String>,
}

#[derive(Debug)]
pub struct Transition {
    pub name: String,
    pub label: String,
    pub description: Option<String>,
    pub from: Vec<String>,
    pub to: String,
    pub guards: Vec<Guard>,
    /// Each guard as written (`check` expression or `where` condition), for diagrams.
    pub guard_texts: Vec<String>,
    /// The transition's input, as a pseudo-entity (its fields and request schema).
    pub input: Entity,
    pub set: Vec<Assign>,
    pub effects: Vec<Effect>,
}

impl Transition {
    /// The policy action that lets a caller fire it.
    pub fn action(&self) -> Action {
        Action::Transition(self.name.clone())
    }
}

pub struct Workflow {
    pub entity: String,
    pub field: String,
    pub initial: String,
    pub label: Option<String>,
    pub file: String,
    pub states: Vec<State>,
    pub transitions: Vec<Transition>,
    env: minijinja::Environment<'static>,
}

impl std::fmt::Debug for Workflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workflow")
            .field("entity", &self.entity)
            .field("field", &self.field)
            .finish_non_exhaustive()
    }
}

/// The variables guards and templates see.
pub struct Context {
    pub record: Value,
    pub user: Value,
    pub input: Value,
    pub now: String,
}

impl Workflow {
    pub fn transition(&self, name: &str) -> Option<&Transition> {
        self.transitions.iter().find(|t| t.name == name)
    }

    pub fn state(&self, name: &str) -> Option<&State> {
        self.states.iter().find(|s| s.name == name)
    }

    /// Transitions that may leave `state`.
    pub fn from_state<'w>(&'w self, state: &'w str) -> impl Iterator<Item = &'w Transition> {
        self.transitions
            .iter()
            .filter(move |t| t.from.iter().any(|f| f == state))
    }

    /// The guard context of a record, a caller and an input. Decimals become numbers
    /// so that `record.budget > 0` compares as a user expects.
    pub fn context(
        e: &Entity,
        record: &Map<String, Value>,
        who: &Principal,
        input: &Entity,
        given: &Map<String, Value>,
    ) -> Context {
        let mut rec = Map::new();
        for (k, v) in record {
            rec.insert(k.clone(), numeric(e.field(k), v));
        }
        let mut inp = Map::new();
        for f in &input.fields {
            let v = given.get(&f.name).cloned().unwrap_or(Value::Null);
            inp.insert(f.name.clone(), numeric(Some(f), &v));
        }
        let mut user = (*who.claims).clone();
        user.entry("id").or_insert(Value::Null);
        user.entry("roles")
            .or_insert_with(|| json!(who.roles.clone()));
        Context {
            record: Value::Object(rec),
            user: Value::Object(user),
            input: Value::Object(inp),
            now: format_datetime(&super::input::now()),
        }
    }

    fn jinja(ctx: &Context) -> minijinja::Value {
        minijinja::context! {
            record => minijinja::Value::from(minijinja::value::Serde(&ctx.record)),
            user => minijinja::Value::from(minijinja::value::Serde(&ctx.user)),
            input => minijinja::Value::from(minijinja::value::Serde(&ctx.input)),
            now => ctx.now.clone(),
        }
    }

    /// Does a `check:` guard hold? An evaluation error counts as "no", with the reason.
    pub fn check(&self, expr: &str, ctx: &Context) -> Result<bool, String> {
        let compiled = self
            .env
            .compile_expression(expr)
            .map_err(|e| e.to_string())?;
        compiled
            .eval(Self::jinja(ctx))
            .map(|v| v.is_true())
            .map_err(|e| e.to_string())
    }

    /// The value of a `set:` expression, as JSON.
    pub fn eval(&self, expr: &str, ctx: &Context) -> Result<Value, String> {
        let compiled = self
            .env
            .compile_expression(expr)
            .map_err(|e| e.to_string())?;
        let v = compiled.eval(Self::jinja(ctx)).map_err(|e| e.to_string())?;
        serde_json::Value::deserialize(v).map_err(|e| e.to_string())
    }

    /// The body of a webhook effect after `t` moved the record from `from`.
    pub fn render_body(
        &self,
        effect: &Effect,
        t: &Transition,
        from: &str,
        ctx: &Context,
    ) -> Result<String, String> {
        let Some(name) = &effect.template else {
            return Ok(json!({
                "event": format!("{}.{}", self.entity, t.name),
                "entity": self.entity,
                "transition": t.name,
                "from": from,
                "to": t.to,
                "record": ctx.record,
                "input": ctx.input,
                "actor": ctx.user.get("id").cloned().unwrap_or(Value::Null),
                "at": ctx.now,
            })
            .to_string());
        };
        let tmpl = self.env.get_template(name).map_err(|e| e.to_string())?;
        tmpl.render(minijinja::context! {
            record => minijinja::Value::from(minijinja::value::Serde(&ctx.record)),
            user => minijinja::Value::from(minijinja::value::Serde(&ctx.user)),
            input => minijinja::Value::from(minijinja::value::Serde(&ctx.input)),
            now => ctx.now.clone(),
            entity => self.entity.clone(),
            transition => t.name.clone(),
            from => from.to_string(),
            to => t.to.clone(),
        })
        .map_err(|e| e.to_string())
    }
}

/// Decimals as JSON numbers (guards compare them with numbers).
fn numeric(field: Option<&Field>, v: &Value) -> Value {
    match (field.map(|f| f.ty), v) {
        (Some(FieldType::Decimal), Value::String(s)) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| v.clone()),
        _ => v.clone(),
    }
}

fn diag(
    file: &str,
    pos: crate::spec::yaml::Pos,
    code: &'static str,
    message: String,
    hint: Option<String>,
) -> Diagnostic {
    super::access::diag(file, pos.line, pos.col, code, message, hint)
}

/// Compiles every workflow of `spec` against the built engine (entities and policies).
pub fn compile(engine: &Engine, spec: &Spec) -> (HashMap<String, Arc<Workflow>>, Vec<Diagnostic>) {
    let mut out = Vec::new();
    let mut workflows = HashMap::new();
    for def in &spec.workflows {
        let Some(entity) = engine.entity(&def.entity.name) else {
            continue;
        };
        if let Some(wf) = compile_one(engine, spec, entity, def, &mut out) {
            workflows.insert(entity.name.clone(), Arc::new(wf));
        }
    }
    (workflows, out)
}

fn compile_one(
    engine: &Engine,
    spec: &Spec,
    entity: &Entity,
    def: &WorkflowDef,
    out: &mut Vec<Diagnostic>,
) -> Option<Workflow> {
    let file = def.file.as_str();
    let mut env = crate::spec::workflow::environment();
    // Named conditions of the entity's policy are usable in `where` guards.
    let named = spec
        .policies
        .iter()
        .find(|p| p.entity.name == entity.name)
        .map(|p| {
            p.conditions
                .iter()
                .filter_map(|(n, t)| parse(&t.text).ok().map(|c| (n.name.clone(), c)))
                .collect()
        })
        .unwrap_or_default();
    let scope = Scope {
        claims: Some(engine.access.claims.clone()),
        named,
        named_entity: Some(entity.name.clone()),
        hidden: Vec::new(),
        rows: None,
    };
    let mut transitions = Vec::new();
    for t in &def.transitions {
        let mut guards = Vec::new();
        let mut guard_texts = Vec::new();
        for g in &t.require {
            guard_texts.push(match g {
                GuardDef::Check { expr, .. } => expr.clone(),
                GuardDef::Where { cond, .. } => cond.text.clone(),
            });
            match g {
                GuardDef::Check { expr, message, .. } => {
                    let uses_input = env
                        .compile_expression(expr)
                        .map(|c| c.undeclared_variables(false).iter().any(|v| v == "input"))
                        .unwrap_or(false);
                    guards.push(Guard::Check {
                        expr: expr.clone(),
                        message: message.clone(),
                        uses_input,
                    });
                }
                GuardDef::Where { cond, message } => {
                    let checked = parse(&cond.text)
                        .map_err(|e| {
                            let mut pos = cond.pos;
                            pos.col += e.column as u32 - 1;
                            diag(
                                file,
                                pos,
                                "invalid-condition",
                                format!("the guard `{}` cannot be read: {}", cond.text, e.message),
                                e.hint,
                            )
                        })
                        .and_then(|c| {
                            check(engine, entity, &c, &scope).map_err(|e| {
                                let mut pos = cond.pos;
                                pos.col += e.span.0 as u32;
                                diag(
                                    file,
                                    pos,
                                    "invalid-condition",
                                    format!("the guard `{}`: {}", cond.text, e.message),
                                    e.hint,
                                )
                            })
                        });
                    match checked {
                        Ok(typed) => guards.push(Guard::Where {
                            cond: typed,
                            message: message.clone(),
                        }),
                        Err(d) => out.push(d),
                    }
                }
            }
        }
        let input_fields: Vec<Field> = t.input.iter().map(super::field_from_def).collect();
        let input_name = format!("{}_{}_input", entity.name, t.name.name);
        let input_label = format!("Input of `{}`", t.name.name);
        let schemas =
            match schemas::EntitySchemas::build(&input_name, &input_label, &input_fields, None) {
                Ok(s) => s,
                Err(message) => {
                    out.push(diag(
                        file,
                        t.name.pos,
                        "invalid-input",
                        format!(
                            "the input of `{}` cannot be compiled: {message}",
                            t.name.name
                        ),
                        None,
                    ));
                    continue;
                }
            };
        let input = Entity {
            name: input_name,
            plural: String::new(),
            label: input_label,
            description: None,
            fields: input_fields,
            indexes: Vec::new(),
            unique: Vec::new(),
            search: Vec::new(),
            schemas,
            workflow_field: None,
        };
        let mut set = Vec::new();
        for a in &t.set {
            let Some(index) = entity.fields.iter().position(|f| f.name == a.field.name) else {
                continue; // reported by the spec checks
            };
            let value = match &a.value {
                SetValue::Literal(v) => match convert(&entity.fields[index], v) {
                    Ok(cell) => AssignValue::Literal(cell),
                    Err(detail) => {
                        out.push(diag(
                            file,
                            a.pos,
                            "invalid-value",
                            format!("`{}` cannot be set to {v}: {detail}", a.field.name),
                            Some("write a value of the field's type, or `{ expr: … }` for a computed one".into()),
                        ));
                        continue;
                    }
                },
                SetValue::Now => {
                    if !matches!(
                        entity.fields[index].ty,
                        FieldType::Datetime | FieldType::Date
                    ) {
                        out.push(diag(
                            file,
                            a.pos,
                            "invalid-value",
                            format!(
                                "`now` is a time, but `{}` is a {} field",
                                a.field.name,
                                entity.fields[index].ty.name()
                            ),
                            Some("set `now` on a datetime or date field".into()),
                        ));
                        continue;
                    }
                    AssignValue::Now
                }
                SetValue::Claim(c) => AssignValue::Claim(c.clone()),
                SetValue::Input(i) => AssignValue::Input(i.clone()),
                SetValue::Record(r) => AssignValue::Record(r.clone()),
                SetValue::Expr(e) => AssignValue::Expr(e.clone()),
            };
            set.push(Assign {
                field: index,
                value,
            });
        }
        let mut effects = Vec::new();
        for (i, effect) in t.after_commit.iter().enumerate() {
            let template = match &effect.body {
                None => None,
                Some((body, pos)) => {
                    let name = format!("{}.{}.{i}", entity.name, t.name.name);
                    if let Err(err) = env.add_template_owned(name.clone(), body.clone()) {
                        out.push(diag(
                            file,
                            *pos,
                            "invalid-template",
                            format!("the body is not a valid template: {err}"),
                            None,
                        ));
                        continue;
                    }
                    Some(name)
                }
            };
            effects.push(Effect {
                endpoint: effect.endpoint.name.clone(),
                template,
            });
        }
        let from = def.from_states(t);
        let _ = matches!(t.from, FromDef::Any(_));
        transitions.push(Transition {
            name: t.name.name.clone(),
            label: t
                .label
                .clone()
                .unwrap_or_else(|| super::title_case(&t.name.name)),
            description: t.description.clone(),
            from,
            to: t.to.name.clone(),
            guards,
            guard_texts,
            input,
            set,
            effects,
        });
    }
    Some(Workflow {
        entity: entity.name.clone(),
        field: def.field.name.clone(),
        initial: def.initial.name.clone(),
        label: def.label.clone(),
        file: def.file.clone(),
        states: def
            .states
            .iter()
            .map(|s| State {
                name: s.name.name.clone(),
                label: s
                    .label
                    .clone()
                    .unwrap_or_else(|| super::title_case(&s.name.name)),
                description: s.description.clone(),
                is_final: s.is_final,
            })
            .collect(),
        transitions,
        env,
    })
}
