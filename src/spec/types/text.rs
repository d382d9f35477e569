//! `string`, `text`, `email`, `url`: strings with length limits (and a pattern for
//! string and text).

use regex::Regex;
use serde_json::{Value, json};

use super::{FieldRules, Keys, Limits, bad_default, default_doc, parse_limits};
use crate::spec::diag::Sink;
use crate::spec::field::{Default, FieldDef, Storage};
use crate::spec::walk::{Named, get, string};
use crate::spec::yaml::{self, Node};

/// `string` and `text` (which differ only in the API: text is not grouped by).
pub struct Text;
pub struct Email;
pub struct Url;

/// Lengths, and a pattern (also read, and refused as a key, for email and url).
fn parse_text_options(sink: &mut Sink<'_>, map: &Keys, field: &mut FieldDef) {
    parse_limits(sink, map, field, Limits::Length);
    if let Some(node) = get(map, "pattern")
        && let Some(p) = string(sink, node, "`pattern`")
    {
        match Regex::new(&p.name) {
            Ok(_) => field.pattern = Some(p.name),
            Err(err) => sink.error_hint(
                node.pos,
                "invalid-pattern",
                format!("`pattern` is not a valid regular expression: {}", first_line(&err.to_string())),
                "patterns use Rust regex syntax, e.g. `^[A-Z]{3}-[0-9]+$`; quote the pattern in single quotes",
            ),
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .trim_start_matches("error:")
        .trim()
        .to_string()
}

fn text_default(sink: &mut Sink<'_>, field: &FieldDef, node: &Node) -> Option<Default> {
    match &node.value {
        yaml::Value::Str(s) => {
            let len = s.chars().count() as f64;
            if field.min.is_some_and(|m| len < m) || field.max.is_some_and(|m| len > m) {
                sink.error(
                    node.pos,
                    "invalid-default",
                    format!(
                        "the default of `{}` is outside its length limits",
                        field.name
                    ),
                );
            }
            Some(Default::Value(serde_json::Value::String(s.clone())))
        }
        _ => bad_default(sink, field, node, "text"),
    }
}

fn max_length() -> Value {
    json!({ "type": "integer", "minimum": 0, "description": "The longest length allowed, in characters." })
}

/// What the text types share.
macro_rules! textual {
    () => {
        fn storage(&self, _precision: u32, _scale: u32) -> Option<Storage> {
            Some(Storage::Text)
        }

        fn parse_options(
            &self,
            sink: &mut Sink<'_>,
            _name: &Named,
            map: &Keys,
            field: &mut FieldDef,
        ) {
            parse_text_options(sink, map, field)
        }

        fn check_default(
            &self,
            sink: &mut Sink<'_>,
            field: &FieldDef,
            node: &Node,
        ) -> Option<Default> {
            text_default(sink, field, node)
        }

        fn textual(&self) -> bool {
            true
        }

        fn default_schema(&self) -> Option<Value> {
            Some(default_doc(json!({ "type": "string" }), "Untitled"))
        }
    };
}

impl FieldRules for Text {
    fn keys(&self) -> &'static [&'static str] {
        &["min", "max", "pattern"]
    }

    fn editor_keys(&self) -> Value {
        json!({
            "min": { "type": "integer", "minimum": 0, "description": "The shortest length allowed, in characters." },
            "max": max_length(),
            "pattern": {
                "type": "string",
                "description": "A regular expression (Rust regex syntax) every value must match; quote it in single quotes.",
                "markdownDescription": "A regular expression (Rust regex syntax) every value must match; quote it in single quotes.\n\n```yaml\ncode: { type: string, pattern: '^[A-Z]{3}-[0-9]+$' }\n```"
            }
        })
    }

    fn searchable(&self) -> bool {
        true
    }

    textual!();
}

impl FieldRules for Email {
    fn keys(&self) -> &'static [&'static str] {
        &["max"]
    }

    fn editor_keys(&self) -> Value {
        json!({ "max": max_length() })
    }

    textual!();
}

impl FieldRules for Url {
    fn keys(&self) -> &'static [&'static str] {
        &["max"]
    }

    fn editor_keys(&self) -> Value {
        json!({ "max": max_length() })
    }

    textual!();
}
