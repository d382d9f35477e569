//! `enum`: one of the words listed in `values`.

use serde_json::{Value, json};

use super::{FieldRules, Keys, bad_default, default_doc};
use crate::spec::diag::{Sink, did_you_mean, list};
use crate::spec::field::{Default, FieldDef, Storage};
use crate::spec::walk::{Named, get, name_list};
use crate::spec::yaml::{self, Node};

pub struct Enum;

impl FieldRules for Enum {
    fn keys(&self) -> &'static [&'static str] {
        &["values"]
    }

    fn required_keys(&self) -> &'static [&'static str] {
        &["values"]
    }

    fn shorthand_example(&self) -> Option<&'static str> {
        Some("write e.g. `{ type: enum, values: [draft, open] }`")
    }

    fn storage(&self, _precision: u32, _scale: u32) -> Option<Storage> {
        Some(Storage::Text)
    }

    fn parse_options(&self, sink: &mut Sink<'_>, name: &Named, map: &Keys, field: &mut FieldDef) {
        let Some(node) = get(map, "values") else {
            sink.error_hint(
                name.pos,
                "missing-key",
                format!("the enum field `{}` has no `values`", name.name),
                "add e.g. `values: [draft, open, closed]`",
            );
            return;
        };
        let values = name_list(sink, node, "`values`");
        if values.is_empty() {
            sink.error_hint(
                node.pos,
                "missing-key",
                "an enum needs at least one value",
                "write e.g. `values: [draft, open, closed]`",
            );
        }
        let mut seen: Vec<&str> = Vec::new();
        for v in &values {
            if seen.contains(&v.name.as_str()) {
                sink.error(
                    v.pos,
                    "duplicate-name",
                    format!("the value `{}` is listed twice", v.name),
                );
            }
            seen.push(&v.name);
            if v.name.is_empty() || v.name.len() > 64 {
                sink.error(
                    v.pos,
                    "invalid-enum-value",
                    "enum values must be between 1 and 64 characters",
                );
            }
        }
        field.values = values.into_iter().map(|v| v.name).collect();
    }

    fn check_default(&self, sink: &mut Sink<'_>, field: &FieldDef, node: &Node) -> Option<Default> {
        let yaml::Value::Str(s) = &node.value else {
            return bad_default(sink, field, node, "one of the enum's values");
        };
        if !field.values.is_empty() && !field.values.contains(s) {
            let values: Vec<&str> = field.values.iter().map(String::as_str).collect();
            sink.error_hint(
                node.pos,
                "enum-default-not-in-values",
                format!(
                    "the default `{s}` is not one of the values of `{}`",
                    field.name
                ),
                match did_you_mean(s, values.iter().copied()) {
                    Some(best) => {
                        format!("did you mean `{best}`? (the values are {})", list(&values))
                    }
                    None => format!("use one of {}, or add `{s}` to `values`", list(&values)),
                },
            );
        }
        Some(Default::Value(serde_json::Value::String(s.clone())))
    }

    fn default_schema(&self) -> Option<Value> {
        Some(default_doc(json!({ "type": "string" }), "draft"))
    }

    fn editor_keys(&self) -> Value {
        json!({
            "values": {
                "anyOf": [
                    { "type": "string", "minLength": 1, "maxLength": 64 },
                    { "type": "array", "items": { "type": "string", "minLength": 1, "maxLength": 64 }, "minItems": 1, "uniqueItems": true }
                ],
                "description": "The words the field may hold (each 1 to 64 characters). Adding one needs no migration.",
                "markdownDescription": "The words the field may hold (each 1 to 64 characters). Adding one needs no migration.\n\n```yaml\nstatus: { type: enum, values: [draft, open, closed], default: draft }\n```"
            }
        })
    }
}
