//! The process environment as a value. The CLI reads the environment once, at
//! start, into an [`Env`] and hands it down; nothing below the CLI calls
//! `std::env`. `${VAR}` in configured text (`database.url`, webhook URLs and
//! headers) is expanded by [`expand_vars`], the one implementation.

use std::collections::HashMap;
use std::sync::Arc;

/// The environment variables of the process, read once by the CLI.
#[derive(Clone, Default)]
pub struct Env(Arc<HashMap<String, String>>);

impl Env {
    /// From name and value pairs (the CLI passes the process's variables; tests
    /// their own).
    pub fn new(vars: impl IntoIterator<Item = (String, String)>) -> Env {
        Env(Arc::new(vars.into_iter().collect()))
    }

    /// The value of the variable `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// `text` with every `${VAR}` replaced by the variable's value.
    pub fn expand(&self, text: &str) -> Result<String, ExpandError> {
        expand_vars(text, |name| self.get(name).map(str::to_string))
    }
}

/// The values are secrets: only the names are shown.
impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.0.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_tuple("Env").field(&names).finish()
    }
}

/// Why `${VAR}` expansion failed. Each caller words it for its own context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpandError {
    /// A `${` without its `}`.
    Unclosed,
    /// The variable of that name is not set.
    Unset(String),
}

/// `text` with every `${VAR}` replaced by `lookup("VAR")`. Text outside `${…}`
/// is kept as written (a lone `$` included).
pub fn expand_vars(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or(ExpandError::Unclosed)?;
        let name = &after[..end];
        let value = lookup(name).ok_or_else(|| ExpandError::Unset(name.to_string()))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env::new([
            ("HOST".to_string(), "db.local".to_string()),
            ("EMPTY".to_string(), String::new()),
        ])
    }

    #[test]
    fn expands_every_variable_and_keeps_the_rest() {
        let env = env();
        assert_eq!(env.expand("plain").as_deref(), Ok("plain"));
        assert_eq!(
            env.expand("postgres://${HOST}/app?x=${EMPTY}$").as_deref(),
            Ok("postgres://db.local/app?x=$")
        );
        assert_eq!(
            env.expand("${HOST}${HOST}").as_deref(),
            Ok("db.localdb.local")
        );
    }

    #[test]
    fn an_unset_variable_is_named() {
        assert_eq!(
            env().expand("a ${TRELLIS_SURELY_UNSET_VAR} b"),
            Err(ExpandError::Unset("TRELLIS_SURELY_UNSET_VAR".into()))
        );
    }

    #[test]
    fn an_unclosed_reference_is_an_error() {
        assert_eq!(env().expand("${HOST"), Err(ExpandError::Unclosed));
        assert_eq!(env().expand("${HOST} and ${"), Err(ExpandError::Unclosed));
    }

    #[test]
    fn debug_shows_names_only() {
        let shown = format!("{:?}", env());
        assert!(
            shown.contains("HOST") && !shown.contains("db.local"),
            "{shown}"
        );
    }
}
