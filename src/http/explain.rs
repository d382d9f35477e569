//! The JSON of `explain` (`GET /_/explain`, `trellis explain`).

use serde_json::{Map, Value, json};

use crate::engine::access::Action;
use crate::store::{Explanation, Visibility};

/// An action named by a caller of `explain`, or the words of why it is none.
pub fn parse_action(name: &str) -> Result<Action, String> {
    Action::parse(name).ok_or_else(|| {
        format!(
            "`{name}` is not an action; actions: list, read, create, update, delete, aggregate, transition.<name>"
        )
    })
}

pub fn explain_json(x: &Explanation) -> Value {
    let rules: Vec<Value> = x
        .rules
        .iter()
        .map(|(t, holds)| {
            let mut entry = serde_json::to_value(t).unwrap_or_default();
            if let Some(h) = holds {
                entry["condition_holds"] = json!(h);
            }
            entry
        })
        .collect();
    let mut body = json!({
        "entity": x.entity,
        "id": x.id,
        "action": x.action.to_string(),
        "caller": { "id": x.caller_id, "roles": x.caller_roles },
        "decision": x.decision.as_str(),
        "reason": x.reason,
        "rules": rules,
    });
    if let Some(fields) = &x.fields {
        let fields: Map<String, Value> = fields
            .iter()
            .map(|(f, v)| {
                let word = match v {
                    Visibility::Hidden => "hidden",
                    Visibility::ShownHere => "shown on this record",
                    Visibility::HiddenHere => "hidden on this record",
                };
                (f.clone(), json!(word))
            })
            .collect();
        body["fields"] = Value::Object(fields);
    }
    body
}
