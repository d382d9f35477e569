//! Firing a transition, decided without the database: may the caller fire it, does
//! it leave the record's state, which guards hold, what `set:` writes, the history
//! entry and the webhook bodies.
//!
//! The store runs the result (`store::workflow`): it reads the record in its
//! transaction, asks [`admit`], judges the conditions only SQL can judge (the
//! policy's `where`, `where:` guards) and hands their answers to [`plan`], then
//! executes the plan's statements and writes [`TransitionPlan::deliveries`]. A
//! [`Refusal`] travels back to the caller beside the store's own errors, never as one.

use std::cell::OnceCell;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::Entity;
use super::access::{Access, Decision, Principal};
use super::cond::check::Typed;
use super::input::{self, Cell, FieldError, Input, Mode};
use super::workflow::{AssignValue, Context, Guard, Transition, Workflow};
use crate::spec::FieldType;

/// A transition's input: validated once, where the request is read, and kept.
#[derive(Debug, Clone, Default)]
pub struct TransitionInput {
    /// The body as sent (`{}` when empty): the history keeps it, and guards, `set:`
    /// and effect templates read it as written.
    pub given: Map<String, Value>,
    /// The same values converted to the input's fields.
    pub cells: Input,
}

impl TransitionInput {
    /// Validates `body` (an object; `{}` for no input) against the input of `t`.
    pub fn parse(t: &Transition, body: &Value) -> Result<TransitionInput, Vec<FieldError>> {
        let cells = input::parse_body(&t.input, body, Mode::Create)?;
        Ok(TransitionInput {
            given: body.as_object().cloned().unwrap_or_default(),
            cells,
        })
    }
}

/// One request to fire a transition on one record.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub entity: &'a Entity,
    pub workflow: &'a Workflow,
    pub transition: &'a Transition,
    pub who: &'a Principal,
    /// The record to move.
    pub id: Uuid,
    pub input: &'a TransitionInput,
    /// The caller's request id, kept in the history.
    pub request_id: Option<&'a str>,
}

/// Why the workflow does not let a transition happen: a decision of the domain, not
/// a failure of the storage.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// The caller may see the record but not fire the transition on it.
    #[error("{0}")]
    Forbidden(String),
    /// The record is not in a state the transition leaves from.
    #[error("cannot `{transition}` from the state `{state}`")]
    WrongState {
        state: String,
        transition: String,
        from: Vec<String>,
        possible: Vec<String>,
    },
    /// Guards that do not hold, by message.
    #[error("{}", .0.join("; "))]
    Guards(Vec<String>),
    /// Values the workflow computed do not fit their fields.
    #[error("invalid values")]
    Invalid(Vec<FieldError>),
    /// An effect could not be prepared (a template error).
    #[error("{0}")]
    Effect(String),
}

/// Past the first decisions: the record's state, and the conditions the database
/// must judge on the stored record before [`plan`].
#[derive(Debug)]
pub struct Admitted<'a> {
    /// The record's state as read.
    pub state: String,
    /// The policy's condition for firing, when it is not simply "true".
    permission: Option<Typed>,
    /// The `where:` guards, in order.
    guards: Vec<&'a Typed>,
}

impl Admitted<'_> {
    /// The conditions only the database can judge, in the order [`plan`] expects
    /// their answers: the policy's condition (if any), then each `where:` guard. The
    /// store also puts every one of them into its compare-and-set.
    pub fn conditions(&self) -> Vec<&Typed> {
        self.permission
            .iter()
            .chain(self.guards.iter().copied())
            .collect()
    }

    /// Is the first of [`Admitted::conditions`] the policy's? When it does not hold,
    /// [`plan`] refuses on it alone, and the others need not be judged.
    pub fn permission_first(&self) -> bool {
        self.permission.is_some()
    }
}

/// The first decisions, on the record as read: may the caller fire the transition
/// at all, and does it leave the record's state?
pub fn admit<'a>(
    req: &Request<'a>,
    access: &Access,
    before: &Map<String, Value>,
) -> Result<Admitted<'a>, Refusal> {
    let (e, wf, t) = (req.entity, req.workflow, req.transition);
    let permission = match access.decide(&e.name, &t.action(), req.who) {
        Decision::Deny => {
            return Err(Refusal::Forbidden(format!(
                "you may not `{}` this {}",
                t.name, e.name
            )));
        }
        Decision::Allow(c) => (c != Typed::Const(true)).then_some(c),
    };
    let state = before
        .get(&wf.field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !t.from.contains(&state) {
        return Err(Refusal::WrongState {
            possible: wf.from_state(&state).map(|t| t.name.clone()).collect(),
            state,
            transition: t.name.clone(),
            from: t.from.clone(),
        });
    }
    let guards = t
        .guards
        .iter()
        .filter_map(|g| match g {
            Guard::Where { cond, .. } => Some(cond),
            Guard::Check { .. } => None,
        })
        .collect();
    Ok(Admitted {
        state,
        permission,
        guards,
    })
}

/// A row of a record's history, as the transition writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    pub id: String,
    pub entity: String,
    pub record_id: String,
    pub transition: String,
    pub from: String,
    pub to: String,
    pub actor: Option<String>,
    /// The input as sent, as JSON text.
    pub input: String,
    pub at: String,
    pub request_id: Option<String>,
}

/// A webhook delivery the transition queues in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub id: String,
    pub endpoint: String,
    /// `<entity>.<transition>`.
    pub event: String,
    pub body: String,
    pub created_ms: i64,
}

/// What a permitted transition writes: the store turns it into one compare-and-set
/// (state, version and the conditions of [`Admitted::conditions`]), the history row
/// and, once the record is written, the outbox rows of [`TransitionPlan::deliveries`].
#[derive(Debug, Clone, PartialEq)]
pub struct TransitionPlan {
    /// The state the record leaves.
    pub from: String,
    /// The state it enters.
    pub to: String,
    /// The values of `set:`, by field index.
    pub assigned: Vec<(usize, Cell)>,
    /// The instant of the transition: the record's `updated_at` and the history's `at`.
    pub now: DateTime<Utc>,
    pub history: HistoryRow,
}

/// Decides the rest on the record as read (`before`, with its `many` ids), given the
/// database's answers to [`Admitted::conditions`] (`holds`, in that order).
pub fn plan(
    req: &Request<'_>,
    admitted: &Admitted<'_>,
    before: &Map<String, Value>,
    holds: &[bool],
    now: DateTime<Utc>,
) -> Result<TransitionPlan, Refusal> {
    let (e, wf, t, who) = (req.entity, req.workflow, req.transition, req.who);
    let mut answers = holds.iter().copied();
    if admitted.permission.is_some() && !answers.next().unwrap_or(false) {
        return Err(Refusal::Forbidden(format!(
            "your policy does not let you `{}` this {}",
            t.name, e.name
        )));
    }
    // The template context copies the record: built only for a transition whose
    // `check:` guards or `set:` expressions read it.
    let ctx = OnceCell::new();
    let ctx = || ctx.get_or_init(|| Workflow::context(e, before, who, &t.input, &req.input.given));
    let mut failed = Vec::new();
    for g in &t.guards {
        let (holds, message) = match g {
            Guard::Check { expr, message, .. } => match wf.check(expr, ctx()) {
                Ok(b) => (b, message),
                Err(err) => {
                    tracing::warn!(entity = %e.name, transition = %t.name, error = %err, "a guard could not be evaluated; it counts as failed");
                    (false, message)
                }
            },
            Guard::Where { message, .. } => (answers.next().unwrap_or(false), message),
        };
        if !holds {
            failed.push(message.clone());
        }
    }
    if !failed.is_empty() {
        return Err(Refusal::Guards(failed));
    }
    let assigned = assignments(req, ctx, before, now)?;
    let history = HistoryRow {
        id: Uuid::now_v7().hyphenated().to_string(),
        entity: e.name.clone(),
        record_id: req.id.hyphenated().to_string(),
        transition: t.name.clone(),
        from: admitted.state.clone(),
        to: t.to.clone(),
        actor: who.id.clone(),
        input: Value::Object(req.input.given.clone()).to_string(),
        at: input::format_datetime(&now),
        request_id: req.request_id.map(str::to_string),
    };
    Ok(TransitionPlan {
        from: admitted.state.clone(),
        to: t.to.clone(),
        assigned,
        now,
        history,
    })
}

impl TransitionPlan {
    /// The outbox rows of the transition's webhooks, rendered from the record as the
    /// transition left it (`after`), queued at `at`.
    pub fn deliveries(
        &self,
        req: &Request<'_>,
        after: &Map<String, Value>,
        at: DateTime<Utc>,
    ) -> Result<Vec<Outgoing>, Refusal> {
        let (e, wf, t) = (req.entity, req.workflow, req.transition);
        if t.effects.is_empty() {
            return Ok(Vec::new());
        }
        let ctx = Workflow::context(e, after, req.who, &t.input, &req.input.given);
        let created_ms = at.timestamp_millis();
        t.effects
            .iter()
            .map(|effect| {
                let body = wf.render_body(effect, t, &self.from, &ctx).map_err(|err| {
                    Refusal::Effect(format!(
                        "the body of the webhook to `{}` could not be rendered: {err}",
                        effect.endpoint
                    ))
                })?;
                Ok(Outgoing {
                    id: Uuid::now_v7().hyphenated().to_string(),
                    endpoint: effect.endpoint.clone(),
                    event: format!("{}.{}", e.name, t.name),
                    body,
                    created_ms,
                })
            })
            .collect()
    }
}

/// The values of `set:` assignments, as cells for the update.
fn assignments<'c>(
    req: &Request<'_>,
    ctx: impl Fn() -> &'c Context,
    before: &Map<String, Value>,
    now: DateTime<Utc>,
) -> Result<Vec<(usize, Cell)>, Refusal> {
    let (e, wf, t, who) = (req.entity, req.workflow, req.transition, req.who);
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for a in &t.set {
        let field = &e.fields[a.field];
        let value = match &a.value {
            AssignValue::Literal(cell) => {
                out.push((a.field, cell.clone()));
                continue;
            }
            AssignValue::Now => {
                // The same instant as the record's `updated_at` and the history's `at`.
                let cell = if field.ty == FieldType::Date {
                    Cell::Date(now.date_naive())
                } else {
                    Cell::DateTime(now)
                };
                out.push((a.field, cell));
                continue;
            }
            AssignValue::Claim(c) => who.claims.get(c).cloned().unwrap_or(Value::Null),
            // As sent (the context has decimals as floats, which could round), and
            // converted to the target field: its checks are its own.
            AssignValue::Input(i) => req.input.given.get(i).cloned().unwrap_or(Value::Null),
            AssignValue::Record(r) => before.get(r).cloned().unwrap_or(Value::Null),
            AssignValue::Expr(expr) => match wf.eval(expr, ctx()) {
                Ok(v) => v,
                Err(err) => {
                    errors.push(FieldError::new(
                        format!("/{}", field.name),
                        format!("the workflow could not compute this field: {err}"),
                    ));
                    continue;
                }
            },
        };
        let value = match (&value, field.ty) {
            // Numbers for decimal fields arrive as floats from expressions.
            (Value::Number(n), FieldType::Decimal) => Value::String(n.to_string()),
            _ => value,
        };
        match input::convert(field, &value) {
            Ok(cell) => out.push((a.field, cell)),
            Err(detail) => errors.push(FieldError::new(
                format!("/{}", field.name),
                format!(
                    "the workflow sets `{}` to {value}, which does not fit: {detail}",
                    field.name
                ),
            )),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(Refusal::Invalid(errors))
    }
}

/// What a caller could fire from a record's state now, and why not
/// (`GET /api/{plural}/{id}/transitions`).
#[derive(Debug, Clone)]
pub struct TransitionOptions<'a> {
    pub state: String,
    pub state_label: Option<String>,
    pub is_final: bool,
    pub transitions: Vec<Choice<'a>>,
}

/// One transition that leaves the record's state, for [`TransitionOptions`].
#[derive(Debug, Clone)]
pub struct Choice<'a> {
    pub transition: &'a Transition,
    /// Why the caller cannot fire it now (none: it can).
    pub reasons: Vec<String>,
    /// A `check:` guard reads the input, so it is judged only when one is sent.
    pub depends_on_input: bool,
}

/// The transitions that leave a record's state, with the caller's permission for
/// each: the first half of [`Choices::options`].
#[derive(Debug)]
pub struct Choices<'a> {
    state: String,
    items: Vec<(&'a Transition, Decision)>,
}

/// The transitions that leave the state of `rec` and what the policy says of each.
pub fn choices<'a>(
    access: &Access,
    e: &Entity,
    wf: &'a Workflow,
    rec: &Map<String, Value>,
    who: &Principal,
) -> Choices<'a> {
    let state = rec
        .get(&wf.field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let items = wf
        .transitions
        .iter()
        .filter(|t| t.from.contains(&state))
        .map(|t| (t, access.decide(&e.name, &t.action(), who)))
        .collect();
    Choices { state, items }
}

impl<'a> Choices<'a> {
    /// First round for the database: the policy's conditions, one per transition the
    /// policy allows only where a condition holds, in order.
    pub fn permissions(&self) -> Vec<&Typed> {
        self.items
            .iter()
            .filter_map(|(_, d)| match d {
                Decision::Allow(c) if *c != Typed::Const(true) => Some(c),
                _ => None,
            })
            .collect()
    }

    /// Why the policy keeps the caller from each transition (empty: it does not),
    /// given the answers to [`Choices::permissions`].
    fn policy_reasons(&self, e: &Entity, who: &Principal, permitted: &[bool]) -> Vec<Vec<String>> {
        let mut answers = permitted.iter().copied();
        self.items
            .iter()
            .map(|(t, decision)| match decision {
                Decision::Deny if who.is_anonymous() => {
                    vec![format!("sign in to `{}` a {}", t.name, e.name)]
                }
                Decision::Deny => vec![format!("you may not `{}` this {}", t.name, e.name)],
                Decision::Allow(c)
                    if *c != Typed::Const(true) && !answers.next().unwrap_or(false) =>
                {
                    vec![format!(
                        "your policy does not let you `{}` this {}",
                        t.name, e.name
                    )]
                }
                Decision::Allow(_) => Vec::new(),
            })
            .collect()
    }

    /// Second round: the `where:` guards of the transitions the caller may fire, in
    /// order. Guards are judged, and their reasons told, only for those: otherwise
    /// they would reveal the state of the record (and of related ones) to callers
    /// the policy keeps out.
    pub fn guards(&self, e: &Entity, who: &Principal, permitted: &[bool]) -> Vec<&'a Typed> {
        self.policy_reasons(e, who, permitted)
            .iter()
            .zip(&self.items)
            .filter(|(reasons, _)| reasons.is_empty())
            .flat_map(|(_, (t, _))| t.guards.iter())
            .filter_map(|g| match g {
                Guard::Where { cond, .. } => Some(cond),
                Guard::Check { .. } => None,
            })
            .collect()
    }

    /// The answer, given the database's answers to [`Choices::permissions`] and
    /// [`Choices::guards`].
    pub fn options(
        self,
        e: &Entity,
        wf: &Workflow,
        rec: &Map<String, Value>,
        who: &Principal,
        permitted: &[bool],
        guards: &[bool],
    ) -> TransitionOptions<'a> {
        let mut answers = guards.iter().copied();
        let empty = Map::new();
        let mut transitions = Vec::new();
        let policy = self.policy_reasons(e, who, permitted);
        for ((t, _), mut reasons) in self.items.into_iter().zip(policy) {
            let mut depends_on_input = false;
            let permitted = reasons.is_empty();
            let ctx = Workflow::context(e, rec, who, &t.input, &empty);
            for g in t.guards.iter().filter(|_| permitted) {
                match g {
                    Guard::Check {
                        uses_input: true, ..
                    } => depends_on_input = true,
                    Guard::Check { expr, message, .. } => {
                        if !wf.check(expr, &ctx).unwrap_or(false) {
                            reasons.push(message.clone());
                        }
                    }
                    Guard::Where { message, .. } => {
                        if !answers.next().unwrap_or(false) {
                            reasons.push(message.clone());
                        }
                    }
                }
            }
            transitions.push(Choice {
                transition: t,
                reasons,
                depends_on_input,
            });
        }
        TransitionOptions {
            state_label: wf.state(&self.state).map(|s| s.label.clone()),
            is_final: wf.state(&self.state).is_some_and(|s| s.is_final),
            state: self.state,
            transitions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;
    use serde_json::json;

    /// A ticket with a workflow: `solve` needs a resolution (check guard) and sets
    /// `solved_at`, `resolution` and `points`; `escalate` renders a webhook body.
    fn engine() -> Engine {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let files = [
            (
                "trellis.yaml",
                "name: t\nwebhooks:\n  hooks:\n    url: http://localhost:9/hook\n",
            ),
            (
                "models/ticket.yaml",
                "entity: ticket\nfields:\n  title: string\n  resolution: { type: string, max: 10 }\n  points: integer\n  solved_at: datetime\n  status: { type: enum, values: [open, solved, escalated] }\n",
            ),
            (
                "workflows/ticket.yaml",
                "entity: ticket\nfield: status\ninitial: open\nstates:\n  open: {}\n  solved: { final: true }\n  escalated: { final: true }\ntransitions:\n  solve:\n    from: open\n    to: solved\n    input:\n      resolution: { type: string }\n    require:\n      - check: \"record.title != 'stuck'\"\n        message: Stuck tickets cannot be solved\n    set: { solved_at: now, resolution: input.resolution, points: { expr: \"record.points + 1\" } }\n  escalate:\n    from: open\n    to: escalated\n    after_commit:\n      - webhook: { endpoint: hooks, body: '{\"id\": \"{{ record.id }}\", \"to\": \"{{ to }}\"}' }\n      - webhook: { endpoint: hooks, body: '{{ record.title.missing }}' }\n",
            ),
        ];
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("a folder");
            std::fs::write(path, text).expect("a file");
        }
        let loaded = crate::spec::load(dir.path());
        Engine::build(&loaded).unwrap_or_else(|e| panic!("{e}: {:?}", loaded.diagnostics))
    }

    fn record(status: &str, title: &str) -> Map<String, Value> {
        json!({
            "id": "0190a000-0000-7000-8000-000000000001",
            "version": 3,
            "title": title,
            "points": 2,
            "status": status,
        })
        .as_object()
        .cloned()
        .unwrap_or_default()
    }

    fn fire(
        engine: &Engine,
        name: &str,
        rec: &Map<String, Value>,
        body: Value,
    ) -> Result<TransitionPlan, Refusal> {
        let e = engine.entity("ticket").expect("the ticket entity");
        let wf = engine.workflow("ticket").expect("its workflow");
        let t = wf.transition(name).expect("the transition");
        let input = TransitionInput::parse(t, &body).expect("a valid input");
        let who = Principal::anonymous();
        let req = Request {
            entity: e,
            workflow: wf,
            transition: t,
            who: &who,
            id: Uuid::nil(),
            input: &input,
            request_id: Some("r-1"),
        };
        let admitted = admit(&req, &engine.access, rec)?;
        assert!(
            admitted.conditions().is_empty(),
            "no policy, no `where:` guard"
        );
        plan(&req, &admitted, rec, &[], chrono::Utc::now())
    }

    #[test]
    fn a_transition_from_another_state_is_refused() {
        let engine = engine();
        let refusal = fire(&engine, "solve", &record("solved", "a"), json!({}));
        assert_eq!(
            refusal,
            Err(Refusal::WrongState {
                state: "solved".into(),
                transition: "solve".into(),
                from: vec!["open".into()],
                possible: Vec::new(),
            })
        );
    }

    #[test]
    fn a_failing_guard_is_refused_with_its_message() {
        let engine = engine();
        let refusal = fire(&engine, "solve", &record("open", "stuck"), json!({}));
        assert_eq!(
            refusal,
            Err(Refusal::Guards(vec![
                "Stuck tickets cannot be solved".into()
            ]))
        );
    }

    #[test]
    fn assignments_become_typed_cells() {
        let engine = engine();
        let e = engine.entity("ticket").expect("the ticket entity");
        let index = |name: &str| {
            e.fields
                .iter()
                .position(|f| f.name == name)
                .expect("a field")
        };
        let plan = fire(
            &engine,
            "solve",
            &record("open", "a"),
            json!({ "resolution": "fixed" }),
        )
        .expect("a plan");
        assert_eq!((plan.from.as_str(), plan.to.as_str()), ("open", "solved"));
        assert_eq!(
            plan.assigned,
            vec![
                (index("solved_at"), Cell::DateTime(plan.now)),
                (index("resolution"), Cell::Text("fixed".into())),
                (index("points"), Cell::Int(3)),
            ]
        );
        assert_eq!(plan.history.transition, "solve");
        assert_eq!(plan.history.input, r#"{"resolution":"fixed"}"#);
        assert_eq!(plan.history.request_id.as_deref(), Some("r-1"));
        assert_eq!(plan.history.at, input::format_datetime(&plan.now));
    }

    #[test]
    fn assigned_values_that_do_not_fit_are_refused() {
        let engine = engine();
        let refusal = fire(
            &engine,
            "solve",
            &record("open", "a"),
            json!({ "resolution": "far too long for ten" }),
        );
        let Err(Refusal::Invalid(errors)) = refusal else {
            panic!("expected invalid values, got {refusal:?}");
        };
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].pointer, "/resolution");
        assert!(
            errors[0]
                .detail
                .starts_with("the workflow sets `resolution`"),
            "{}",
            errors[0].detail
        );
    }

    #[test]
    fn effects_render_from_the_record_after() {
        let engine = engine();
        let rec = record("open", "a");
        let plan = fire(&engine, "escalate", &rec, json!({})).expect("a plan");
        let e = engine.entity("ticket").expect("the ticket entity");
        let wf = engine.workflow("ticket").expect("its workflow");
        let t = wf.transition("escalate").expect("the transition");
        let input = TransitionInput::default();
        let who = Principal::anonymous();
        let req = Request {
            entity: e,
            workflow: wf,
            transition: t,
            who: &who,
            id: Uuid::nil(),
            input: &input,
            request_id: None,
        };
        let mut after = rec.clone();
        after.insert("status".into(), json!("escalated"));
        // The second body reads an attribute a string lacks: strict templates refuse it.
        let refusal = plan.deliveries(&req, &after, chrono::Utc::now());
        let Err(Refusal::Effect(why)) = refusal else {
            panic!("expected an effect error, got {refusal:?}");
        };
        assert!(
            why.starts_with("the body of the webhook to `hooks` could not be rendered"),
            "{why}"
        );
    }

    #[test]
    fn options_tell_why_not_and_judge_guards() {
        let engine = engine();
        let e = engine.entity("ticket").expect("the ticket entity");
        let wf = engine.workflow("ticket").expect("its workflow");
        let who = Principal::anonymous();
        let rec = record("open", "stuck");
        let choices = choices(&engine.access, e, wf, &rec, &who);
        assert!(choices.permissions().is_empty(), "no policy");
        assert!(choices.guards(e, &who, &[]).is_empty(), "no `where:` guard");
        let options = choices.options(e, wf, &rec, &who, &[], &[]);
        assert_eq!(options.state, "open");
        assert!(!options.is_final);
        let reasons: Vec<(&str, &[String])> = options
            .transitions
            .iter()
            .map(|c| (c.transition.name.as_str(), c.reasons.as_slice()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                ("solve", &["Stuck tickets cannot be solved".to_string()][..]),
                ("escalate", &[][..]),
            ]
        );
    }
}
