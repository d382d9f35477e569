//! A YAML document as a tree of nodes that remember where they stand in the file.
//!
//! The loader never deserializes user files straight into typed structs: serde stops
//! at the first error, and a person editing YAML wants every mistake at once. Instead
//! each file becomes a [`Node`] tree (through serde-saphyr, which rejects duplicate
//! keys and limits alias bombs), and the walkers (`model.rs`, `policy.rs`, `workflow.rs`, `settings.rs`) read the tree,
//! reporting every problem they meet.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A 1-based line and column in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    fn from_location(loc: &serde_saphyr::Location) -> Pos {
        Pos {
            line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
            col: u32::try_from(loc.column()).unwrap_or(u32::MAX),
        }
    }
}

/// A value with its position.
#[derive(Debug, Clone)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

/// A map key with its position.
#[derive(Debug, Clone)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

impl Value {
    /// How a person would name this kind of value in a message.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "true/false",
            Value::Int(_) => "a whole number",
            Value::Float(_) => "a number",
            Value::Str(_) => "text",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping (key: value pairs)",
        }
    }
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The node as plain JSON (positions dropped).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::Seq(items) => {
                serde_json::Value::Array(items.iter().map(Node::to_json).collect())
            }
            Value::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// A YAML syntax problem: where it is and what it is.
#[derive(Debug, Clone)]
pub struct ParseError {
    pub pos: Pos,
    pub message: String,
    pub code: &'static str,
}

/// Parses one YAML document. An empty file is `Null` at line 1.
pub fn parse(text: &str) -> Result<Node, ParseError> {
    if text.trim().is_empty() {
        return Ok(Node {
            pos: Pos { line: 1, col: 1 },
            value: Value::Null,
        });
    }
    // YAML 1.2 booleans only: `n`, `no`, `yes`, `on`, `off` stay text (a field
    // named `n` or an enum value `no` must not turn into false).
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    match serde_saphyr::from_str_with_options::<Node>(text, options) {
        Ok(mut node) => {
            let lines: Vec<&str> = text.lines().collect();
            skip_quotes(&mut node, &lines);
            Ok(node)
        }
        Err(err) => {
            let pos = err
                .location()
                .map(|l| Pos::from_location(&l))
                .unwrap_or(Pos { line: 1, col: 1 });
            let raw = err.to_string();
            let lower = raw.to_lowercase();
            let code = if lower.contains("duplicate") {
                "duplicate-key"
            } else if lower.contains("budget") || lower.contains("alias") || lower.contains("limit")
            {
                "yaml-too-complex"
            } else {
                "yaml-syntax"
            };
            // The library's message may carry its own snippet after the first line; the
            // caller renders a snippet itself, so keep only the sentence.
            let first = raw.lines().next().unwrap_or("invalid YAML").trim();
            // Drop the library's own "error: line N column M:" prefix: the position is
            // reported separately.
            let mut message = first.trim_start_matches("error:").trim().to_string();
            if let Some(idx) = message.find(": ")
                && message.starts_with("line ")
            {
                message = message[idx + 2..].to_string();
            }
            if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
                let key = rest.split(", set ").next().unwrap_or(rest).trim();
                message = format!("the key `{key}` appears twice in this mapping");
            }
            Err(ParseError { pos, message, code })
        }
    }
}

/// A quoted scalar's position is its opening quote; moves it to the first character
/// inside, so that a column within the text (a condition's) lands on the right
/// character.
fn skip_quotes(node: &mut Node, lines: &[&str]) {
    match &mut node.value {
        Value::Str(_) => {
            let line = lines.get(node.pos.line.saturating_sub(1) as usize);
            let at = line.and_then(|l| l.chars().nth(node.pos.col.saturating_sub(1) as usize));
            if matches!(at, Some('"' | '\'')) {
                node.pos.col += 1;
            }
        }
        Value::Seq(items) => items.iter_mut().for_each(|n| skip_quotes(n, lines)),
        Value::Map(entries) => entries.iter_mut().for_each(|(_, n)| skip_quotes(n, lines)),
        _ => {}
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(d)?;
        Ok(Node {
            pos: Pos::from_location(&spanned.referenced),
            value: spanned.value,
        })
    }
}

/// A map key: any scalar, read as text.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a plain key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<KeyText, E> {
                Ok(KeyText(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
                Ok(KeyText("null".to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Value, D2::Error> {
                Value::deserialize(d)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
                Ok(Value::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
                Ok(Value::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
                Ok(i64::try_from(v)
                    .map(Value::Int)
                    .unwrap_or(Value::Float(v as f64)))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
                Ok(i64::try_from(v)
                    .map(Value::Int)
                    .unwrap_or(Value::Float(v as f64)))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
                Ok(i64::try_from(v)
                    .map(Value::Int)
                    .unwrap_or(Value::Float(v as f64)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
                Ok(Value::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
                Ok(Value::Str(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
                Ok(Value::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Node>()? {
                    items.push(item);
                }
                Ok(Value::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
                    let value = map.next_value::<Node>()?;
                    entries.push((
                        Key {
                            name: key.value.0,
                            pos: Pos::from_location(&key.referenced),
                        },
                        value,
                    ));
                }
                Ok(Value::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_have_positions() {
        let node = parse("entity: project\nfields:\n  title: { type: string }\n").unwrap();
        let map = node.as_map().unwrap();
        assert_eq!(map[0].0.name, "entity");
        assert_eq!(map[0].0.pos, Pos { line: 1, col: 1 });
        assert_eq!(map[0].1.pos, Pos { line: 1, col: 9 });
        let fields = map[1].1.as_map().unwrap();
        assert_eq!(fields[0].0.pos, Pos { line: 3, col: 3 });
        let inner = fields[0].1.as_map().unwrap();
        assert_eq!(inner[0].1.pos, Pos { line: 3, col: 18 });
    }

    #[test]
    fn yaml_1_1_booleans_stay_text() {
        let node = parse("n: 1\nyes: no\nvalues: [on, off, y]\nflag: true\n").unwrap();
        let map = node.as_map().unwrap();
        assert_eq!(map[0].0.name, "n");
        assert_eq!(map[1].0.name, "yes");
        assert_eq!(map[1].1.as_str(), Some("no"));
        let values: Vec<&str> = map[2]
            .1
            .as_seq()
            .unwrap()
            .iter()
            .filter_map(Node::as_str)
            .collect();
        assert_eq!(values, ["on", "off", "y"]);
        assert!(matches!(map[3].1.value, Value::Bool(true)));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(err.code, "duplicate-key");
        assert_eq!(err.pos.line, 2);
    }

    #[test]
    fn alias_bombs_are_errors_not_crashes() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = i - 1;
            doc.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        assert!(parse(&doc).is_err());
    }
}
