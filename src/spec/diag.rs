//! Diagnostics: what is wrong, where, and how to fix it.

use std::fmt;

use super::yaml::Pos;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in one file. `code` is stable: tools and tests may match on it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: &'static str,
    /// The file, relative to the project folder (e.g. `models/project.yaml`).
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {sev}[{}]: {}",
            self.file, self.line, self.column, self.code, self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Collects diagnostics for one file.
#[derive(Debug)]
pub struct Sink<'a> {
    pub file: &'a str,
    pub out: &'a mut Vec<Diagnostic>,
}

impl Sink<'_> {
    pub fn error(&mut self, pos: Pos, code: &'static str, message: impl Into<String>) {
        self.push(Severity::Error, pos, code, message.into(), None);
    }

    pub fn error_hint(
        &mut self,
        pos: Pos,
        code: &'static str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.push(
            Severity::Error,
            pos,
            code,
            message.into(),
            Some(hint.into()),
        );
    }

    pub fn warning_hint(
        &mut self,
        pos: Pos,
        code: &'static str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.push(
            Severity::Warning,
            pos,
            code,
            message.into(),
            Some(hint.into()),
        );
    }

    fn push(
        &mut self,
        severity: Severity,
        pos: Pos,
        code: &'static str,
        message: String,
        hint: Option<String>,
    ) {
        self.out.push(Diagnostic {
            severity,
            code,
            file: self.file.to_string(),
            line: pos.line,
            column: pos.col,
            message,
            hint,
        });
    }
}

/// The closest candidate to `word`, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    // Names are at most 48 characters: a much longer word is no typo of one, and
    // comparing it would only cost time (the fuzzer sends kilobytes).
    if word.len() > 64 {
        return None;
    }
    let lower = word.to_lowercase();
    // Close by edits (a typo, a swapped pair of letters), or by Jaro-Winkler
    // similarity for longer words.
    let max_edits = (lower.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter_map(|c| {
            let other = c.to_lowercase();
            let edits = strsim::osa_distance(&lower, &other);
            let jw = strsim::jaro_winkler(&lower, &other);
            let close = (edits <= max_edits && edits < other.chars().count()) || jw >= 0.8;
            close.then_some((edits, -jw, c))
        })
        .min_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)))
        .map(|(_, _, c)| c)
}

/// A hint naming the likely intended word, or listing the valid ones.
pub fn suggest(word: &str, candidates: &[&str]) -> String {
    match did_you_mean(word, candidates.iter().copied()) {
        Some(best) => format!("did you mean `{best}`?"),
        None => format!("expected one of: {}", list(candidates)),
    }
}

/// `a`, `b`, `c`
pub fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("requird", ["required", "unique", "default"]),
            Some("required")
        );
        assert_eq!(did_you_mean("zzz", ["required", "unique"]), None);
        assert_eq!(
            suggest("strng", &["string", "text", "integer"]),
            "did you mean `string`?"
        );
    }
}
