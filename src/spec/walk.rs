//! Small helpers for reading a [`Node`] tree while reporting every problem.

use super::diag::{Sink, list, suggest};
use super::yaml::{Key, Node, Pos, Value};

/// A name as written in a file, with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Named {
    pub name: String,
    pub pos: Pos,
}

/// Reports keys that are not in `allowed` (with a did-you-mean), and returns the map.
pub fn map_with_keys<'n>(
    sink: &mut Sink<'_>,
    node: &'n Node,
    what: &str,
    allowed: &[&str],
) -> Option<&'n [(Key, Node)]> {
    let Some(map) = node.as_map() else {
        sink.error_hint(
            node.pos,
            "wrong-value-type",
            format!(
                "{what} must be a mapping of keys to values, not {}",
                node.value.kind_name()
            ),
            format!(
                "write it as `key: value` lines; valid keys are {}",
                list(allowed)
            ),
        );
        return None;
    };
    for (key, _) in map {
        if !allowed.contains(&key.name.as_str()) {
            sink.error_hint(
                key.pos,
                "unknown-key",
                format!("`{}` is not a valid key in {what}", key.name),
                suggest(&key.name, allowed),
            );
        }
    }
    Some(map)
}

pub fn get<'n>(map: &'n [(Key, Node)], key: &str) -> Option<&'n Node> {
    map.iter().find(|(k, _)| k.name == key).map(|(_, v)| v)
}

pub fn key_pos(map: &[(Key, Node)], key: &str) -> Option<Pos> {
    map.iter().find(|(k, _)| k.name == key).map(|(k, _)| k.pos)
}

pub fn string(sink: &mut Sink<'_>, node: &Node, what: &str) -> Option<Named> {
    match &node.value {
        Value::Str(s) => Some(Named {
            name: s.clone(),
            pos: node.pos,
        }),
        other => {
            sink.error(
                node.pos,
                "wrong-value-type",
                format!("{what} must be text, not {}", other.kind_name()),
            );
            None
        }
    }
}

pub fn opt_string(
    sink: &mut Sink<'_>,
    map: &[(Key, Node)],
    key: &str,
    what: &str,
) -> Option<Named> {
    get(map, key).and_then(|n| string(sink, n, what))
}

pub fn bool_key(sink: &mut Sink<'_>, map: &[(Key, Node)], key: &str) -> bool {
    match get(map, key) {
        None => false,
        Some(Node {
            value: Value::Bool(b),
            ..
        }) => *b,
        Some(n) => {
            sink.error_hint(
                n.pos,
                "wrong-value-type",
                format!("`{key}` must be true or false, not {}", n.value.kind_name()),
                format!("write `{key}: true` or `{key}: false`"),
            );
            false
        }
    }
}

pub fn number(sink: &mut Sink<'_>, node: &Node, what: &str) -> Option<f64> {
    match node.value {
        Value::Int(i) => Some(i as f64),
        Value::Float(f) => Some(f),
        ref other => {
            sink.error(
                node.pos,
                "wrong-value-type",
                format!("{what} must be a number, not {}", other.kind_name()),
            );
            None
        }
    }
}

pub fn whole_number(sink: &mut Sink<'_>, node: &Node, what: &str) -> Option<i64> {
    match node.value {
        Value::Int(i) => Some(i),
        ref other => {
            sink.error(
                node.pos,
                "wrong-value-type",
                format!("{what} must be a whole number, not {}", other.kind_name()),
            );
            None
        }
    }
}

/// A list of names; a single name is accepted as a list of one.
pub fn name_list(sink: &mut Sink<'_>, node: &Node, what: &str) -> Vec<Named> {
    match &node.value {
        Value::Str(s) => vec![Named {
            name: s.clone(),
            pos: node.pos,
        }],
        Value::Seq(items) => items
            .iter()
            .filter_map(|item| string(sink, item, &format!("each entry of {what}")))
            .collect(),
        other => {
            sink.error_hint(
                node.pos,
                "wrong-value-type",
                format!("{what} must be a list of names, not {}", other.kind_name()),
                "write it as `[first, second]`",
            );
            Vec::new()
        }
    }
}

/// Is this a valid snake_case identifier that fits a database name?
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && name.len() <= 48
        && !name.ends_with('_')
        && !name.contains("__")
}

/// A lower snake_case suggestion for an invalid identifier.
pub fn to_snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let trimmed = out.trim_matches('_').to_string();
    if trimmed.starts_with(|c: char| c.is_ascii_digit()) {
        format!("n_{trimmed}")
    } else {
        trimmed
    }
}

pub fn check_identifier(sink: &mut Sink<'_>, named: &Named, what: &str) -> bool {
    if is_identifier(&named.name) {
        return true;
    }
    let snake = to_snake(&named.name);
    let hint = if !snake.is_empty() && is_identifier(&snake) {
        format!("use lower-case letters, digits and single underscores, e.g. `{snake}`")
    } else {
        "use lower-case letters, digits and single underscores, starting with a letter (at most 48 characters)".to_string()
    };
    sink.error_hint(
        named.pos,
        "invalid-identifier",
        format!("`{}` is not a valid {what} name", named.name),
        hint,
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(is_identifier("project"));
        assert!(is_identifier("due_date2"));
        assert!(!is_identifier("Project"));
        assert!(!is_identifier("2fa"));
        assert!(!is_identifier("a__b"));
        assert!(!is_identifier("due-date"));
        assert_eq!(to_snake("DueDate"), "due_date");
        assert_eq!(to_snake("due-date"), "due_date");
    }
}
