//! The condition language: one small language for `filter`, policy `where:` and
//! named `conditions:`.
//!
//! ```text
//! status = 'open' and budget >= 1000
//! status in [open, in_review] or not remote
//! deadline < now and client is set
//! skills has '0192…'          client.name ~ 'acme'
//! applications.(status = accepted and applicant = user.id)
//! ```
//!
//! [`parse`] turns text into a [`Cond`] (with positions for error messages),
//! [`check::check`] resolves it against an entity into a [`check::Typed`] condition,
//! which `store` compiles to SQL and [`eval`] evaluates in memory with the same
//! (SQL, three-valued) semantics.

pub mod check;
pub mod cost;
pub mod eval;
pub mod parse;

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};

pub use parse::{ParseError, parse};

/// A range of characters (0-based, end exclusive) in the condition text.
#[derive(Debug, Clone, Copy, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// A dotted name: `status`, `client.name`, `skills`.
#[derive(Debug, Clone)]
pub struct Path {
    pub segments: Vec<String>,
    pub span: Span,
}

impl PartialEq for Path {
    fn eq(&self, other: &Self) -> bool {
        self.segments == other.segments
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.segments.join("."))
    }
}

/// A value on the right of an operator.
#[derive(Debug, Clone)]
pub enum Operand {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
    /// The current time (or date, compared with a date).
    Now,
    /// A bare word such as an enum value: `status = open`.
    Word(String),
    /// A claim of the caller: `user.id`, `user.org`.
    User(Vec<String>),
    /// A field of the record the policy is about (`record.subject`), usable in
    /// policy conditions inside relation paths and blocks.
    Record(String),
}

impl PartialEq for Operand {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Operand::Str(a), Operand::Str(b)) => a == b,
            (Operand::Int(a), Operand::Int(b)) => a == b,
            (Operand::Float(a), Operand::Float(b)) => a.to_bits() == b.to_bits(),
            (Operand::Bool(a), Operand::Bool(b)) => a == b,
            (Operand::Date(a), Operand::Date(b)) => a == b,
            (Operand::DateTime(a), Operand::DateTime(b)) => a == b,
            (Operand::Now, Operand::Now) => true,
            (Operand::Word(a), Operand::Word(b)) => a == b,
            (Operand::User(a), Operand::User(b)) => a == b,
            (Operand::Record(a), Operand::Record(b)) => a == b,
            _ => false,
        }
    }
}

/// An operand and where it was written.
#[derive(Debug, Clone)]
pub struct Value {
    pub operand: Operand,
    pub span: Span,
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.operand == other.operand
    }
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `~`: case-insensitive "contains".
    Contains,
}

impl Op {
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Contains => "~",
        }
    }

    pub fn is_ordering(self) -> bool {
        matches!(self, Op::Lt | Op::Le | Op::Gt | Op::Ge)
    }
}

/// A parsed condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
    Cmp {
        path: Path,
        op: Op,
        value: Value,
    },
    In {
        path: Path,
        values: Vec<Value>,
    },
    /// `is set` (`set: true`) / `is not set`.
    IsSet {
        path: Path,
        set: bool,
    },
    Has {
        path: Path,
        value: Value,
    },
    /// A boolean field alone: `remote`.
    Truthy(Path),
    /// `applications.(status = accepted and applicant = user.id)`: some related
    /// record (through `path`) satisfies the whole inner condition at once.
    Within {
        path: Path,
        cond: Box<Cond>,
    },
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Str(s) => f.write_str(&quote(s)),
            Operand::Int(i) => write!(f, "{i}"),
            Operand::Float(x) => write!(f, "{x:?}"),
            Operand::Bool(b) => write!(f, "{b}"),
            Operand::Date(d) => write!(f, "{}", d.format("%Y-%m-%d")),
            Operand::DateTime(dt) => f.write_str(&crate::engine::input::format_datetime(dt)),
            Operand::Now => f.write_str("now"),
            Operand::Word(w) => f.write_str(w),
            Operand::User(path) => write!(f, "user.{}", path.join(".")),
            Operand::Record(field) => write!(f, "record.{field}"),
        }
    }
}

impl Cond {
    /// 0: or, 1: and, 2: not and predicates.
    fn precedence(&self) -> u8 {
        match self {
            Cond::Or(..) => 0,
            Cond::And(..) => 1,
            _ => 2,
        }
    }

    fn write_child(&self, f: &mut fmt::Formatter<'_>, child: &Cond, right: bool) -> fmt::Result {
        let needs = child.precedence() < self.precedence()
            || (right && child.precedence() == self.precedence() && self.precedence() < 2);
        if needs {
            write!(f, "({child})")
        } else {
            write!(f, "{child}")
        }
    }
}

/// Prints a condition so that parsing the text gives the same condition back.
impl fmt::Display for Cond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cond::And(a, b) => {
                self.write_child(f, a, false)?;
                f.write_str(" and ")?;
                self.write_child(f, b, true)
            }
            Cond::Or(a, b) => {
                self.write_child(f, a, false)?;
                f.write_str(" or ")?;
                self.write_child(f, b, true)
            }
            Cond::Not(inner) => {
                f.write_str("not ")?;
                if inner.precedence() < 2 {
                    write!(f, "({inner})")
                } else {
                    write!(f, "{inner}")
                }
            }
            Cond::Cmp { path, op, value } => write!(f, "{path} {} {}", op.symbol(), value.operand),
            Cond::In { path, values } => {
                write!(f, "{path} in [")?;
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}", v.operand)?;
                }
                f.write_str("]")
            }
            Cond::IsSet { path, set } => {
                write!(f, "{path} is {}set", if *set { "" } else { "not " })
            }
            Cond::Has { path, value } => write!(f, "{path} has {}", value.operand),
            Cond::Truthy(path) => write!(f, "{path}"),
            Cond::Within { path, cond } => write!(f, "{path}.({cond})"),
        }
    }
}
