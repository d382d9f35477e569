//! Text → [`Cond`]. Errors carry the column of the problem and a hint.

use chrono::{DateTime, NaiveDate, Utc};

use super::{Cond, Op, Operand, Path, Span, Value};

/// Longest condition accepted, in characters.
pub const MAX_LENGTH: usize = 4000;
/// Deepest nesting of parentheses and `not`.
pub const MAX_DEPTH: usize = 32;
/// Most values in one `in [...]` list.
pub const MAX_LIST: usize = 500;

/// Why a condition could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based column (in characters) where the problem is.
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl ParseError {
    fn at(offset: usize, message: impl Into<String>, hint: Option<&str>) -> ParseError {
        ParseError {
            column: offset + 1,
            message: message.into(),
            hint: hint.map(str::to_string),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Int(i64),
    Float(f64),
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
    Op(Op),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Str(_) => "a quoted text".into(),
            Tok::Int(_) | Tok::Float(_) => "a number".into(),
            Tok::Date(_) => "a date".into(),
            Tok::DateTime(_) => "a date and time".into(),
            Tok::Op(op) => format!("`{}`", op.symbol()),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::LBracket => "`[`".into(),
            Tok::RBracket => "`]`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Dot => "`.`".into(),
        }
    }
}

const KEYWORDS: [&str; 10] = [
    "and", "or", "not", "in", "is", "set", "has", "true", "false", "now",
];

fn lex(text: &str) -> Result<Vec<(Tok, Span)>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let single = match c {
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '[' => Some(Tok::LBracket),
            ']' => Some(Tok::RBracket),
            ',' => Some(Tok::Comma),
            '.' => Some(Tok::Dot),
            '~' => Some(Tok::Op(Op::Contains)),
            '=' => Some(Tok::Op(Op::Eq)),
            _ => None,
        };
        if let Some(tok) = single {
            i += 1;
            if tok == Tok::Op(Op::Eq) && chars.get(i) == Some(&'=') {
                i += 1; // `==` reads as `=`
            }
            out.push((tok, Span { start, end: i }));
            continue;
        }
        match c {
            '!' | '<' | '>' => {
                let next = chars.get(i + 1).copied();
                let (op, len) = match (c, next) {
                    ('!', Some('=')) => (Op::Ne, 2),
                    ('<', Some('=')) => (Op::Le, 2),
                    ('>', Some('=')) => (Op::Ge, 2),
                    ('<', Some('>')) => (Op::Ne, 2),
                    ('<', _) => (Op::Lt, 1),
                    ('>', _) => (Op::Gt, 1),
                    _ => {
                        return Err(ParseError::at(
                            i,
                            "`!` is not an operator here",
                            Some("write `!=` for \"not equal\", or `not` before a condition"),
                        ));
                    }
                };
                i += len;
                out.push((Tok::Op(op), Span { start, end: i }));
            }
            '\'' | '"' => {
                let quote = c;
                i += 1;
                let mut s = String::new();
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(ParseError::at(
                                start,
                                "this text is not closed",
                                Some(if quote == '\'' {
                                    "end it with a `'`"
                                } else {
                                    "end it with a `\"`"
                                }),
                            ));
                        }
                        Some('\\') => {
                            let escaped = match chars.get(i + 1) {
                                Some('n') => '\n',
                                Some('t') => '\t',
                                Some('r') => '\r',
                                Some(&other @ ('\\' | '\'' | '"')) => other,
                                _ => {
                                    return Err(ParseError::at(
                                        i,
                                        "unknown escape in text",
                                        Some("use \\' for a quote and \\\\ for a backslash"),
                                    ));
                                }
                            };
                            s.push(escaped);
                            i += 2;
                        }
                        Some(&ch) if ch == quote => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push((Tok::Str(s), Span { start, end: i }));
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                // A number, a date (2025-01-31) or a date and time (2025-01-31T10:00:00Z).
                let mut j = i + 1;
                while j < chars.len()
                    && (chars[j].is_ascii_alphanumeric()
                        || matches!(chars[j], '.' | '-' | '+' | ':'))
                {
                    // Stop a number before `..` or a `.` followed by a letter (not expected in numbers).
                    j += 1;
                }
                let raw: String = chars[i..j].iter().collect();
                let span = Span { start, end: j };
                let tok = if raw.len() >= 10 && raw.as_bytes().get(4) == Some(&b'-') && c != '-' {
                    if raw.len() == 10 {
                        NaiveDate::parse_from_str(&raw, "%Y-%m-%d")
                            .map(Tok::Date)
                            .map_err(|_| {
                                ParseError::at(
                                    start,
                                    format!("`{raw}` is not a valid date"),
                                    Some("write dates as YYYY-MM-DD, e.g. 2025-01-31"),
                                )
                            })?
                    } else {
                        DateTime::parse_from_rfc3339(&raw)
                            .map(|d| Tok::DateTime(d.with_timezone(&Utc)))
                            .map_err(|_| {
                                ParseError::at(
                                    start,
                                    format!("`{raw}` is not a valid date and time"),
                                    Some("write them as RFC 3339 with a time zone, e.g. 2025-01-31T09:00:00Z"),
                                )
                            })?
                    }
                } else if let Ok(n) = raw.parse::<i64>() {
                    Tok::Int(n)
                } else {
                    match raw.parse::<f64>() {
                        Ok(x) if x.is_finite() => Tok::Float(x),
                        _ => {
                            return Err(ParseError::at(
                                start,
                                format!("`{raw}` is not a number"),
                                Some("write numbers like 42, -3 or 12.5"),
                            ));
                        }
                    }
                };
                i = j;
                out.push((tok, span));
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut j = i + 1;
                while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                let word: String = chars[i..j].iter().collect();
                i = j;
                out.push((Tok::Word(word), Span { start, end: i }));
            }
            other => {
                let hint = match other {
                    '&' => Some("write `and`"),
                    '|' => Some("write `or`"),
                    _ => Some("operators are = != < <= > >= ~ in, is set, has, and, or, not"),
                };
                return Err(ParseError::at(i, format!("unexpected `{other}`"), hint));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, Span)>,
    pos: usize,
    depth: usize,
    /// Length of the text in characters, for "at the end" errors.
    len: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    fn span(&self) -> Span {
        self.toks.get(self.pos).map(|(_, s)| *s).unwrap_or(Span {
            start: self.len,
            end: self.len,
        })
    }

    fn next(&mut self) -> Option<(Tok, Span)> {
        let t = self.toks.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x == w)
    }

    fn found(&self) -> String {
        match self.peek() {
            Some(t) => t.describe(),
            None => "the end".to_string(),
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError::at(
                self.span().start,
                format!("the condition is nested more than {MAX_DEPTH} levels deep"),
                Some("simplify it"),
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Cond, ParseError> {
        let mut left = self.and()?;
        while self.is_word("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Cond::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Cond, ParseError> {
        let mut left = self.unary()?;
        while self.is_word("and") {
            self.pos += 1;
            let right = self.unary()?;
            left = Cond::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Cond, ParseError> {
        if self.is_word("not") {
            self.pos += 1;
            self.enter()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Cond::Not(Box::new(inner)));
        }
        if self.peek() == Some(&Tok::LParen) {
            let open = self.span();
            self.pos += 1;
            self.enter()?;
            let inner = self.or()?;
            self.depth -= 1;
            match self.next() {
                Some((Tok::RParen, _)) => return Ok(inner),
                Some((tok, span)) => {
                    return Err(ParseError::at(
                        span.start,
                        format!("expected `)` or `and`/`or`, found {}", tok.describe()),
                        Some("conditions are joined with `and` / `or`"),
                    ));
                }
                None => {
                    return Err(ParseError::at(
                        open.start,
                        "this `(` is never closed",
                        Some("add a `)`"),
                    ));
                }
            }
        }
        self.predicate()
    }

    /// A dotted path, and whether it ends in `.(`, the start of a block (the `(` is
    /// left for the caller).
    fn path_or_block(&mut self) -> Result<(Path, bool), ParseError> {
        let start = self.span();
        let mut segments = Vec::new();
        let mut block = false;
        loop {
            match self.next() {
                Some((Tok::Word(w), _)) if !KEYWORDS.contains(&w.as_str()) => segments.push(w),
                Some((tok, span)) => {
                    return Err(ParseError::at(
                        span.start,
                        format!("expected a field name, found {}", tok.describe()),
                        Some("a condition starts with a field, e.g. `status = 'open'`"),
                    ));
                }
                None => {
                    return Err(ParseError::at(
                        self.len,
                        "expected a field name, found the end",
                        Some("complete the condition, e.g. `status = 'open'`"),
                    ));
                }
            }
            if self.peek() == Some(&Tok::Dot) {
                self.pos += 1;
                if self.peek() == Some(&Tok::LParen) {
                    block = true;
                    break;
                }
                continue;
            }
            break;
        }
        let end = self
            .toks
            .get(self.pos.saturating_sub(if block { 2 } else { 1 }))
            .map(|(_, s)| s.end)
            .unwrap_or(start.end);
        Ok((
            Path {
                segments,
                span: Span {
                    start: start.start,
                    end,
                },
            },
            block,
        ))
    }

    fn operand(&mut self) -> Result<Value, ParseError> {
        let Some((tok, span)) = self.next() else {
            return Err(ParseError::at(
                self.len,
                "expected a value, found the end",
                Some("add a value, e.g. 'text', 42, true, 2025-01-31 or now"),
            ));
        };
        let operand = match tok {
            Tok::Str(s) => Operand::Str(s),
            Tok::Int(i) => Operand::Int(i),
            Tok::Float(x) => Operand::Float(x),
            Tok::Date(d) => Operand::Date(d),
            Tok::DateTime(d) => Operand::DateTime(d),
            Tok::Word(w) => match w.as_str() {
                "true" => Operand::Bool(true),
                "false" => Operand::Bool(false),
                "now" => Operand::Now,
                "user" if self.peek() == Some(&Tok::Dot) => {
                    let mut claim = Vec::new();
                    while self.peek() == Some(&Tok::Dot) {
                        self.pos += 1;
                        match self.next() {
                            Some((Tok::Word(w), _)) => claim.push(w),
                            _ => {
                                return Err(ParseError::at(
                                    span.start,
                                    "expected a claim name after `user.`",
                                    Some("e.g. `user.id`"),
                                ));
                            }
                        }
                    }
                    Operand::User(claim)
                }
                "record" if self.peek() == Some(&Tok::Dot) => {
                    self.pos += 1;
                    match self.next() {
                        Some((Tok::Word(w), _)) if self.peek() != Some(&Tok::Dot) => {
                            Operand::Record(w)
                        }
                        _ => {
                            return Err(ParseError::at(
                                span.start,
                                "expected one field name after `record.`",
                                Some(
                                    "e.g. `record.subject`: a field of the record the policy is about",
                                ),
                            ));
                        }
                    }
                }
                w if KEYWORDS.contains(&w) => {
                    return Err(ParseError::at(
                        span.start,
                        format!("expected a value, found the keyword `{w}`"),
                        Some("put text values in quotes, e.g. 'and'"),
                    ));
                }
                _ => Operand::Word(w),
            },
            other => {
                return Err(ParseError::at(
                    span.start,
                    format!("expected a value, found {}", other.describe()),
                    Some("values are 'text', numbers, true/false, dates like 2025-01-31, or now"),
                ));
            }
        };
        let end = self
            .toks
            .get(self.pos.saturating_sub(1))
            .map(|(_, s)| s.end)
            .unwrap_or(span.end);
        Ok(Value {
            operand,
            span: Span {
                start: span.start,
                end,
            },
        })
    }

    fn predicate(&mut self) -> Result<Cond, ParseError> {
        let (path, block) = self.path_or_block()?;
        if block {
            let open = self.span();
            self.pos += 1;
            self.enter()?;
            let inner = self.or()?;
            self.depth -= 1;
            return match self.next() {
                Some((Tok::RParen, _)) => Ok(Cond::Within {
                    path,
                    cond: Box::new(inner),
                }),
                Some((tok, span)) => Err(ParseError::at(
                    span.start,
                    format!("expected `)` or `and`/`or`, found {}", tok.describe()),
                    Some("conditions are joined with `and` / `or`"),
                )),
                None => Err(ParseError::at(
                    open.start,
                    "this `(` is never closed",
                    Some("add a `)`"),
                )),
            };
        }
        match self.peek().cloned() {
            Some(Tok::Op(op)) => {
                self.pos += 1;
                let value = self.operand()?;
                Ok(Cond::Cmp { path, op, value })
            }
            Some(Tok::Word(w)) if w == "in" => {
                self.pos += 1;
                let open = self.span();
                if self.next().map(|(t, _)| t) != Some(Tok::LBracket) {
                    return Err(ParseError::at(
                        open.start,
                        "expected `[` after `in`",
                        Some("write a list, e.g. `status in [open, closed]`"),
                    ));
                }
                let mut values = Vec::new();
                if self.peek() == Some(&Tok::RBracket) {
                    self.pos += 1;
                    return Ok(Cond::In { path, values });
                }
                loop {
                    values.push(self.operand()?);
                    if values.len() > MAX_LIST {
                        return Err(ParseError::at(
                            open.start,
                            format!("a list may hold at most {MAX_LIST} values"),
                            None,
                        ));
                    }
                    match self.next() {
                        Some((Tok::Comma, _)) => continue,
                        Some((Tok::RBracket, _)) => break,
                        Some((tok, span)) => {
                            return Err(ParseError::at(
                                span.start,
                                format!("expected `,` or `]`, found {}", tok.describe()),
                                Some("separate values with commas"),
                            ));
                        }
                        None => {
                            return Err(ParseError::at(
                                open.start,
                                "this `[` is never closed",
                                Some("add a `]`"),
                            ));
                        }
                    }
                }
                Ok(Cond::In { path, values })
            }
            Some(Tok::Word(w)) if w == "is" => {
                self.pos += 1;
                let negated = self.is_word("not");
                if negated {
                    self.pos += 1;
                }
                if !self.is_word("set") {
                    let at = self.span().start;
                    return Err(ParseError::at(
                        at,
                        format!("expected `set` after `is`, found {}", self.found()),
                        Some("write `is set` or `is not set`; compare values with `=`"),
                    ));
                }
                self.pos += 1;
                Ok(Cond::IsSet {
                    path,
                    set: !negated,
                })
            }
            Some(Tok::Word(w)) if w == "has" => {
                self.pos += 1;
                let value = self.operand()?;
                Ok(Cond::Has { path, value })
            }
            None | Some(Tok::RParen) => Ok(Cond::Truthy(path)),
            Some(Tok::Word(w)) if w == "and" || w == "or" => Ok(Cond::Truthy(path)),
            Some(Tok::Word(w)) => {
                let hint =
                    match crate::spec::diag::did_you_mean(&w, ["and", "or", "in", "is", "has"]) {
                        Some(best) => format!("did you mean `{best}`?"),
                        None => "after a field comes an operator: = != < <= > >= ~ in, is set, has"
                            .to_string(),
                    };
                Err(ParseError {
                    column: self.span().start + 1,
                    message: format!("expected an operator after `{path}`, found `{w}`"),
                    hint: Some(hint),
                })
            }
            Some(tok) => Err(ParseError::at(
                self.span().start,
                format!(
                    "expected an operator after `{path}`, found {}",
                    tok.describe()
                ),
                Some("after a field comes an operator: = != < <= > >= ~ in, is set, has"),
            )),
        }
    }
}

/// Parses a condition.
pub fn parse(text: &str) -> Result<Cond, ParseError> {
    let len = text.chars().count();
    if len > MAX_LENGTH {
        return Err(ParseError::at(
            MAX_LENGTH,
            format!("the condition is longer than {MAX_LENGTH} characters"),
            Some("split it or simplify it"),
        ));
    }
    let toks = lex(text)?;
    if toks.is_empty() {
        return Err(ParseError::at(
            0,
            "the condition is empty",
            Some("write e.g. `status = 'open'`"),
        ));
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
        len,
    };
    let cond = p.or()?;
    if let Some((tok, span)) = p.next() {
        let hint = if tok == Tok::RParen {
            "there is a `)` without its `(`"
        } else {
            "join conditions with `and` or `or`"
        };
        return Err(ParseError::at(
            span.start,
            format!("unexpected {} after a complete condition", tok.describe()),
            Some(hint),
        ));
    }
    Ok(cond)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Cond {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e:?}"))
    }

    #[test]
    fn design_examples_parse_and_print_back() {
        for (text, printed) in [
            (
                "status = 'open' and budget >= 1000",
                "status = 'open' and budget >= 1000",
            ),
            (
                "status in [open, in_review] or not remote",
                "status in [open, in_review] or not remote",
            ),
            (
                "deadline < now and owner is set",
                "deadline < now and owner is set",
            ),
            ("client.members has user.id", "client.members has user.id"),
            ("title ~ 'rust'", "title ~ 'rust'"),
            ("a = 1 and (b = 2 or c = 3)", "a = 1 and (b = 2 or c = 3)"),
            ("not (a is not set or b)", "not (a is not set or b)"),
            (
                "d >= 2025-01-31 and t < 2025-01-31T10:00:00Z",
                "d >= 2025-01-31 and t < 2025-01-31T10:00:00Z",
            ),
            ("x != -2.5", "x != -2.5"),
            ("s = \"it's\"", "s = 'it\\'s'"),
        ] {
            let cond = p(text);
            assert_eq!(cond.to_string(), printed);
            assert_eq!(p(&cond.to_string()), cond);
        }
    }

    #[test]
    fn precedence() {
        assert_eq!(p("a or b and c"), p("a or (b and c)"));
        assert_eq!(p("not a and b"), p("(not a) and b"));
        assert_ne!(p("a and b or c"), p("a and (b or c)"));
    }

    #[test]
    fn errors_point_at_the_problem() {
        let e = parse("status = 'open' and budget >").unwrap_err();
        assert_eq!(e.column, 29);
        let e = parse("status = 'open").unwrap_err();
        assert_eq!(e.column, 10);
        let e = parse("status == 'a' && x").unwrap_err();
        assert_eq!(e.column, 15);
        assert_eq!(e.hint.as_deref(), Some("write `and`"));
        let e = parse("status is 'open'").unwrap_err();
        assert_eq!(e.column, 11);
        let e = parse("(a = 1").unwrap_err();
        assert_eq!(e.column, 1);
        let e = parse("a = 1)").unwrap_err();
        assert_eq!(e.column, 6);
        let e = parse("status adn x").unwrap_err();
        assert_eq!(e.hint.as_deref(), Some("did you mean `and`?"));
        let deep = format!("{}a{}", "(".repeat(40), ")".repeat(40));
        assert!(parse(&deep).unwrap_err().message.contains("nested"));
        assert!(parse(&"a".repeat(MAX_LENGTH + 1)).is_err());
        assert!(parse("").is_err());
        assert!(parse("d = 2025-02-30").is_err());
    }

    #[test]
    fn blocks_and_record_fields_parse_and_print_back() {
        for (text, printed) in [
            (
                "applications.(status = accepted and applicant = user.id)",
                "applications.(status = accepted and applicant = user.id)",
            ),
            (
                "project.applications.( applicant = record.author ) and not x",
                "project.applications.(applicant = record.author) and not x",
            ),
            (
                "a.(b.(c = 1 or d) and e has record.f)",
                "a.(b.(c = 1 or d) and e has record.f)",
            ),
            ("members has record.subject", "members has record.subject"),
        ] {
            let cond = p(text);
            assert_eq!(cond.to_string(), printed);
            assert_eq!(p(&cond.to_string()), cond);
        }
        // A block is one condition about one related record.
        assert!(matches!(p("a.(b = 1 and c = 2)"), Cond::Within { .. }));
        let e = parse("a.(b = 1").unwrap_err();
        assert_eq!(e.column, 3);
        assert!(e.message.contains("never closed"), "{e:?}");
        let e = parse("a.(b = 1 c)").unwrap_err();
        assert_eq!(e.column, 10);
        let e = parse("x = record.").unwrap_err();
        assert!(e.message.contains("after `record.`"), "{e:?}");
        let e = parse("x = record.a.b").unwrap_err();
        assert!(e.message.contains("one field name"), "{e:?}");
    }
}
