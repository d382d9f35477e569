//! [`Cond`] + an entity → [`Typed`]: every name resolved against the model, every
//! value converted to the type of the field it is compared with.

use std::collections::HashMap;

use chrono::Utc;

use super::{Cond, Op, Operand, Path, Span, Value};
use crate::engine::input::{Cell, a_or_an};
use crate::engine::types::{Literal, Reject};
use crate::engine::{Engine, Entity, Field, system_field};
use crate::spec::FieldType;
use crate::spec::diag::did_you_mean;

/// Most relation hops in one path (`a.b.c.d.field`).
pub const MAX_HOPS: usize = 4;

/// A problem with a condition that parsed: an unknown name, a value of the wrong type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckError {
    pub span: (usize, usize),
    pub message: String,
    pub hint: Option<String>,
}

impl CheckError {
    fn new(span: Span, message: impl Into<String>, hint: Option<String>) -> CheckError {
        CheckError {
            span: (span.start, span.end),
            message: message.into(),
            hint,
        }
    }

    /// 1-based column of the problem.
    pub fn column(&self) -> usize {
        self.span.0 + 1
    }
}

/// The column a predicate looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub ty: FieldType,
    pub scale: u32,
    /// A file field's column (`avatar is set`), or a value inside its metadata
    /// (`avatar.size > 1000`: then `ty` is the value's type).
    pub file: Option<FileColumn>,
}

/// A test on a file field: on the field itself (`attr: None`, only `is set`) or on
/// an attribute of its file (of any of its files when `multiple`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileColumn {
    pub multiple: bool,
    pub attr: Option<FileAttr>,
}

/// What a condition may test of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAttr {
    Size,
    Type,
    Name,
}

impl FileAttr {
    pub const NAMES: [&'static str; 3] = ["size", "type", "name"];

    /// Its key in the stored metadata.
    pub fn key(self) -> &'static str {
        match self {
            FileAttr::Size => "size",
            FileAttr::Type => "type",
            FileAttr::Name => "name",
        }
    }

    fn parse(name: &str) -> Option<FileAttr> {
        match name {
            "size" => Some(FileAttr::Size),
            "type" => Some(FileAttr::Type),
            "name" => Some(FileAttr::Name),
            _ => None,
        }
    }

    /// The attribute as a field of its value's type, for checking literals.
    fn field(self) -> &'static Field {
        static FIELDS: std::sync::LazyLock<[Field; 3]> = std::sync::LazyLock::new(|| {
            [
                Field::plain("size", FieldType::Integer),
                Field::plain("type", FieldType::String),
                Field::plain("name", FieldType::String),
            ]
        });
        match self {
            FileAttr::Size => &FIELDS[0],
            FileAttr::Type => &FIELDS[1],
            FileAttr::Name => &FIELDS[2],
        }
    }
}

impl Column {
    fn of(f: &Field) -> Column {
        Column {
            name: f.name.clone(),
            ty: f.ty,
            scale: f.scale,
            file: (f.ty == FieldType::File).then(|| FileColumn {
                multiple: crate::engine::files::is_multiple(f),
                attr: None,
            }),
        }
    }

    /// A plain column of this name and type.
    pub fn plain(name: &str, ty: FieldType, scale: u32) -> Column {
        Column {
            name: name.to_string(),
            ty,
            scale,
            file: None,
        }
    }
}

/// `t` (a test on a file attribute's stand-in field) as a test on the file field.
fn on_file(t: Typed, field: &Field, attr: FileAttr) -> Typed {
    match t {
        Typed::Pred { column, pred } => Typed::Pred {
            column: Column {
                name: field.name.clone(),
                ty: column.ty,
                scale: 0,
                file: Some(FileColumn {
                    multiple: crate::engine::files::is_multiple(field),
                    attr: Some(attr),
                }),
            },
            pred,
        },
        Typed::And(a, b) => Typed::And(
            Box::new(on_file(*a, field, attr)),
            Box::new(on_file(*b, field, attr)),
        ),
        Typed::Or(a, b) => Typed::Or(
            Box::new(on_file(*a, field, attr)),
            Box::new(on_file(*b, field, attr)),
        ),
        Typed::Not(a) => Typed::Not(Box::new(on_file(*a, field, attr))),
        other => other,
    }
}

/// One step through a relation.
#[derive(Debug, Clone, PartialEq)]
pub enum Hop {
    /// A `ref` field of the current entity, to `target`.
    Ref { field: String, target: String },
    /// A `many` field: its link table, to `target`.
    Many {
        field: String,
        join: String,
        target: String,
    },
    /// An `inverse` field: the `child` records whose `via` points here.
    Inverse { child: String, via: String },
}

impl Hop {
    pub fn target(&self) -> &str {
        match self {
            Hop::Ref { target, .. } | Hop::Many { target, .. } => target,
            Hop::Inverse { child, .. } => child,
        }
    }
}

/// A value, resolved now or when the condition runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Cell(Cell),
    /// The current time (today's date for a date field).
    Now,
    /// A claim of the caller.
    User(Vec<String>),
    /// `record.<field>`: a column of the record the condition is about, seen from
    /// `up` relation steps further in (0: the record itself). Compiled to a column of
    /// the enclosing query, never to a value.
    Outer {
        up: usize,
        column: Column,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Pred {
    Cmp(Op, Arg),
    In(Vec<Arg>),
    IsSet(bool),
}

/// A checked condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Typed {
    Const(bool),
    And(Box<Typed>, Box<Typed>),
    Or(Box<Typed>, Box<Typed>),
    Not(Box<Typed>),
    /// True when a related record satisfies `inner`.
    Hop {
        hop: Hop,
        inner: Box<Typed>,
    },
    /// A to-many relation has a link (to `id`, or to anything).
    Links {
        hop: Hop,
        id: Option<Arg>,
    },
    /// A test on a column of the current record.
    Pred {
        column: Column,
        pred: Pred,
    },
}

/// What a condition may refer to besides the model.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Claims `user.<name>` may name; `None`: `user.*` is not available here.
    pub claims: Option<Vec<String>>,
    /// Named conditions of a policy, usable by name on its entity.
    pub named: Vec<(String, Cond)>,
    /// The entity the named conditions belong to.
    pub named_entity: Option<String>,
    /// Fields the caller may not see, as (entity, field): using one is an error.
    pub hidden: Vec<(String, String)>,
    /// For a condition a caller writes (a `filter`): per entity, the rows the caller
    /// may read (`None` in the map: none at all). Every relation step of the
    /// condition then reaches only those rows. `None`: no restriction, as for the
    /// conditions the project's author writes (policies, workflow guards).
    pub rows: Option<HashMap<String, Option<Typed>>>,
}

enum Resolved<'e> {
    Field(&'e Field),
    ToMany(Hop),
}

struct Checker<'e> {
    engine: &'e Engine,
    scope: &'e Scope,
    /// Named conditions being expanded (to refuse cycles).
    expanding: std::cell::RefCell<Vec<String>>,
    /// The entity the condition is about (what `record.<field>` names).
    root: &'e Entity,
    /// Relation steps between the root and the entity being checked.
    depth: std::cell::Cell<usize>,
}

/// Checks `cond` against `entity`.
pub fn check(
    engine: &Engine,
    entity: &Entity,
    cond: &Cond,
    scope: &Scope,
) -> Result<Typed, CheckError> {
    Checker {
        engine,
        scope,
        expanding: Default::default(),
        root: entity,
        depth: Default::default(),
    }
    .cond(entity, cond)
}

fn field_names(entity: &Entity) -> Vec<&str> {
    entity
        .fields
        .iter()
        .map(|f| f.name.as_str())
        .chain(crate::spec::model::SYSTEM_FIELDS)
        .collect()
}

impl<'e> Checker<'e> {
    fn cond(&self, entity: &'e Entity, cond: &Cond) -> Result<Typed, CheckError> {
        Ok(match cond {
            Cond::And(a, b) => Typed::And(
                Box::new(self.cond(entity, a)?),
                Box::new(self.cond(entity, b)?),
            ),
            Cond::Or(a, b) => Typed::Or(
                Box::new(self.cond(entity, a)?),
                Box::new(self.cond(entity, b)?),
            ),
            Cond::Not(a) => Typed::Not(Box::new(self.cond(entity, a)?)),
            Cond::Cmp { path, op, value } => self.walk(entity, path, 0, &|field, _| {
                self.cmp(field, path, *op, value)
            })?,
            Cond::In { path, values } => self.walk(entity, path, 0, &|field, _| {
                if !filterable(field.ty) {
                    return Err(not_filterable(field, path));
                }
                let args = values
                    .iter()
                    .map(|v| self.arg(field, v))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Typed::Pred {
                    column: Column::of(field),
                    pred: Pred::In(args),
                })
            })?,
            Cond::IsSet { path, set } => self.walk_any(entity, path, 0, &|r| {
                Ok(match r {
                    Resolved::Field(f) => Typed::Pred {
                        column: Column::of(f),
                        pred: Pred::IsSet(*set),
                    },
                    Resolved::ToMany(hop) => {
                        let links = Typed::Links { hop, id: None };
                        if *set {
                            links
                        } else {
                            Typed::Not(Box::new(links))
                        }
                    }
                })
            })?,
            Cond::Has { path, value } => self.walk_any(entity, path, 0, &|r| match r {
                Resolved::ToMany(hop) => {
                    let id_field = system_field("id").expect("id");
                    let id = self.arg(id_field, value).map_err(|err| {
                        // `user.*` or `record.*` where they are not available: say so,
                        // rather than suggest the very form that was written.
                        if matches!(value.operand, Operand::User(_) | Operand::Record(_)) {
                            return err;
                        }
                        CheckError::new(
                            value.span,
                            format!("`has` takes the id of {} record", a_or_an(hop.target())),
                            Some(
                                "write e.g. `skills has '0192f0c1-…'` or `members has user.id`"
                                    .into(),
                            ),
                        )
                    })?;
                    Ok(Typed::Links { hop, id: Some(id) })
                }
                Resolved::Field(f) => Err(CheckError::new(
                    path.span,
                    format!(
                        "`has` works on many and inverse fields; `{}` is a {} field",
                        f.name,
                        f.ty.name()
                    ),
                    Some(format!("compare it instead, e.g. `{path} = …`")),
                )),
            })?,
            Cond::Truthy(path)
                if path.segments.len() == 1
                    && self.scope.named_entity.as_deref() == Some(entity.name.as_str())
                    && self.scope.named.iter().any(|(n, _)| *n == path.segments[0]) =>
            {
                let name = &path.segments[0];
                if self.expanding.borrow().contains(name) {
                    return Err(CheckError::new(
                        path.span,
                        format!("the condition `{name}` refers to itself"),
                        Some("conditions may use other conditions, but not in a circle".into()),
                    ));
                }
                let named = self
                    .scope
                    .named
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, c)| c.clone())
                    .ok_or_else(|| CheckError::new(path.span, "unknown condition", None))?;
                self.expanding.borrow_mut().push(name.clone());
                let out = self.cond(entity, &named);
                self.expanding.borrow_mut().pop();
                out.map_err(|mut e| {
                    e.message = format!("in the condition `{name}`: {}", e.message);
                    e.span = (path.span.start, path.span.end);
                    e
                })?
            }
            Cond::Within { path, cond } => self.walk_any(entity, path, 0, &|r| {
                let hop = match r {
                    Resolved::ToMany(hop) => hop,
                    Resolved::Field(f) if f.ty == FieldType::Ref => Hop::Ref {
                        field: f.name.clone(),
                        target: f.target.clone().unwrap_or_default(),
                    },
                    Resolved::Field(f) => {
                        return Err(CheckError::new(
                            path.span,
                            format!(
                                "`{path}` is a {} field, not a relation, so `{path}.( … )` has no records to look at",
                                f.ty.name()
                            ),
                            Some("a block follows a ref, many or inverse field: `applications.(status = accepted and applicant = user.id)`".into()),
                        ));
                    }
                };
                let target = self.target(&hop, path)?;
                // In a caller's condition, the block reaches only readable records.
                let visible = self.visible_rows(target, path, path.segments.len() - 1)?;
                self.depth.set(self.depth.get() + 1);
                let inner = self.cond(target, cond);
                self.depth.set(self.depth.get() - 1);
                let inner = inner?;
                Ok(Typed::Hop {
                    hop,
                    inner: Box::new(only_within(visible, inner)),
                })
            })?,
            Cond::Truthy(path) => self.walk(entity, path, 0, &|field, _| {
                if field.ty != FieldType::Boolean {
                    return Err(CheckError::new(
                        path.span,
                        format!(
                            "`{path}` is a {} field, not true/false, so it cannot stand alone",
                            field.ty.name()
                        ),
                        Some(format!("compare it, e.g. `{path} = …` or `{path} is set`")),
                    ));
                }
                Ok(Typed::Pred {
                    column: Column::of(field),
                    pred: Pred::Cmp(Op::Eq, Arg::Cell(Cell::Bool(true))),
                })
            })?,
        })
    }

    /// Follows `path` from `entity`; the last segment must be a field with a column.
    fn walk(
        &self,
        entity: &'e Entity,
        path: &Path,
        index: usize,
        leaf: &dyn Fn(&'e Field, &'e Entity) -> Result<Typed, CheckError>,
    ) -> Result<Typed, CheckError> {
        self.walk_any(entity, path, index, &|r| match r {
            Resolved::Field(f) => leaf(f, entity),
            Resolved::ToMany(hop) => Err(CheckError::new(
                path.span,
                format!(
                    "`{path}` is a list of {} records, not a single value",
                    hop.target()
                ),
                Some(format!(
                    "use `{path} has <id>`, `{path} is set`, or a field of them: `{path}.<field> …`"
                )),
            )),
        })
    }

    fn walk_any(
        &self,
        entity: &'e Entity,
        path: &Path,
        index: usize,
        leaf: &dyn Fn(Resolved<'e>) -> Result<Typed, CheckError>,
    ) -> Result<Typed, CheckError> {
        let name = &path.segments[index];
        let last = index + 1 == path.segments.len();
        // Hops of enclosing blocks count too (`depth` is 0 outside blocks).
        if self.depth.get() >= MAX_HOPS {
            return Err(CheckError::new(
                path.span,
                format!(
                    "`{path}` goes through more than {MAX_HOPS} relations{}",
                    if self.depth.get() > index {
                        " (with the blocks around it)"
                    } else {
                        ""
                    }
                ),
                None,
            ));
        }
        let hidden = self
            .scope
            .hidden
            .iter()
            .any(|(e, f)| *e == entity.name && f == name);
        if hidden {
            return Err(CheckError::new(
                path.span,
                format!("you may not use the field `{name}` of {}", entity.name),
                Some("its policy hides it from your roles".to_string()),
            ));
        }
        let field = entity
            .field(name)
            .or_else(|| system_field(name))
            .ok_or_else(|| {
                let names = field_names(entity);
                CheckError::new(
                    path.span,
                    format!("{} has no field `{name}`", entity.name),
                    Some(match did_you_mean(name, names.iter().copied()) {
                        Some(best) => format!("did you mean `{best}`?"),
                        None => format!("{} has: {}", entity.name, names.join(", ")),
                    }),
                )
            })?;
        let hop = match field.ty {
            FieldType::Ref => Some(Hop::Ref {
                field: field.name.clone(),
                target: field.target.clone().unwrap_or_default(),
            }),
            FieldType::Many => Some(Hop::Many {
                field: field.name.clone(),
                join: entity.join_table(field),
                target: field.target.clone().unwrap_or_default(),
            }),
            FieldType::Inverse => Some(Hop::Inverse {
                child: field.target.clone().unwrap_or_default(),
                via: field.via.clone().unwrap_or_default(),
            }),
            _ => None,
        };
        if last {
            return match (field.ty, hop) {
                (FieldType::Many | FieldType::Inverse, Some(hop)) => {
                    let target = self.target(&hop, path)?;
                    let visible = self.visible_rows(target, path, index)?;
                    let t = leaf(Resolved::ToMany(hop))?;
                    Ok(match visible {
                        Some(rows) => links_within(t, &rows),
                        None => t,
                    })
                }
                _ => leaf(Resolved::Field(field)),
            };
        }
        if field.ty == FieldType::File {
            let attr_name = &path.segments[index + 1];
            let attr = FileAttr::parse(attr_name)
                .filter(|_| index + 2 == path.segments.len())
                .ok_or_else(|| {
                    CheckError::new(
                        path.span,
                        format!("`{path}` is not something a condition can test of a file"),
                        Some(format!(
                            "test `{name} is set`, or a file's {}: e.g. `{name}.size > 1000000`, `{name}.type = 'application/pdf'`",
                            FileAttr::NAMES.join(", ")
                        )),
                    )
                })?;
            let t = leaf(Resolved::Field(attr.field()))?;
            return Ok(on_file(t, field, attr));
        }
        let Some(hop) = hop else {
            return Err(CheckError::new(
                path.span,
                format!(
                    "`{name}` is a {} field, not a relation, so `{path}` leads nowhere",
                    field.ty.name()
                ),
                Some(format!(
                    "only ref, many and inverse fields can be followed with `.`; use `{name}` alone"
                )),
            ));
        };
        let target = self.target(&hop, path)?;
        let visible = self.visible_rows(target, path, index)?;
        self.depth.set(self.depth.get() + 1);
        let inner = self.walk_any(target, path, index + 1, leaf);
        self.depth.set(self.depth.get() - 1);
        let inner = inner?;
        Ok(Typed::Hop {
            hop,
            inner: Box::new(only_within(visible, inner)),
        })
    }

    /// The entity a relation step leads to.
    fn target(&self, hop: &Hop, path: &Path) -> Result<&'e Entity, CheckError> {
        self.engine
            .entity(hop.target())
            .map(|e| &**e)
            .ok_or_else(|| {
                CheckError::new(
                    path.span,
                    format!("unknown entity `{}`", hop.target()),
                    None,
                )
            })
    }

    /// The rows of `target` a relation step of a caller's condition may reach: `None`
    /// when it is not restricted (the project's own conditions, or a caller who may
    /// read every row), an error when the caller may read none of them.
    fn visible_rows(
        &self,
        target: &Entity,
        path: &Path,
        index: usize,
    ) -> Result<Option<Typed>, CheckError> {
        let Some(rows) = &self.scope.rows else {
            return Ok(None);
        };
        match rows.get(&target.name) {
            Some(Some(Typed::Const(true))) => Ok(None),
            Some(Some(cond)) => Ok(Some(cond.clone())),
            _ => {
                let through = path.segments[..=index].join(".");
                Err(CheckError::new(
                    path.span,
                    format!(
                        "you may not read {} records, so a condition cannot go through `{through}`",
                        target.name
                    ),
                    Some(format!(
                        "leave `{through}` out of the condition; only relations to records you may read can be used"
                    )),
                ))
            }
        }
    }

    fn cmp(&self, field: &Field, path: &Path, op: Op, value: &Value) -> Result<Typed, CheckError> {
        if !filterable(field.ty) {
            return Err(not_filterable(field, path));
        }
        if op == Op::Contains {
            if !field.ty.is_textual() {
                return Err(CheckError::new(
                    path.span,
                    format!(
                        "`~` (contains) works on text; `{path}` is a {} field",
                        field.ty.name()
                    ),
                    Some(format!("use `=` or `in` for {} fields", field.ty.name())),
                ));
            }
            let Operand::Str(s) = &value.operand else {
                return Err(CheckError::new(
                    value.span,
                    "`~` takes a quoted text",
                    Some(format!("e.g. `{path} ~ 'rust'`")),
                ));
            };
            return Ok(Typed::Pred {
                column: Column::of(field),
                pred: Pred::Cmp(op, Arg::Cell(Cell::Text(s.clone()))),
            });
        }
        if op.is_ordering() && !field.kind().ordered() {
            return Err(CheckError::new(
                path.span,
                format!(
                    "`{}` cannot compare {} fields by order",
                    op.symbol(),
                    field.ty.name()
                ),
                Some("use `=`, `!=` or `in`".to_string()),
            ));
        }
        let arg = self.arg(field, value)?;
        Ok(Typed::Pred {
            column: Column::of(field),
            pred: Pred::Cmp(op, arg),
        })
    }

    /// Converts a value to the type of `field`.
    fn arg(&self, field: &Field, value: &Value) -> Result<Arg, CheckError> {
        let wrong = |expected: &str| {
            CheckError::new(
                value.span,
                format!(
                    "`{}` is a {} field; {} is not {expected}",
                    field.name,
                    field.ty.name(),
                    value.operand
                ),
                Some(format!("write {expected}")),
            )
        };
        let ty = field.ty;
        Ok(match &value.operand {
            Operand::Now if field.kind().temporal() => Arg::Now,
            Operand::Now => return Err(wrong(&expectation(field))),
            Operand::User(claim) => {
                let name = claim.join(".");
                match &self.scope.claims {
                    None => {
                        return Err(CheckError::new(
                            value.span,
                            format!("`user.{name}` is not available here"),
                            Some("`user.*` can be used in policies".to_string()),
                        ));
                    }
                    Some(claims) if !claims.contains(&name) => {
                        return Err(CheckError::new(
                            value.span,
                            format!("there is no claim `user.{name}`"),
                            Some(
                                match did_you_mean(&name, claims.iter().map(String::as_str)) {
                                    Some(best) => format!("did you mean `user.{best}`?"),
                                    None => format!("claims: {}", claims.join(", ")),
                                },
                            ),
                        ));
                    }
                    Some(_) => Arg::User(claim.clone()),
                }
            }
            Operand::Record(name) => {
                if self.scope.claims.is_none() {
                    return Err(CheckError::new(
                        value.span,
                        format!("`record.{name}` is not available here"),
                        Some("`record.<field>` can be used in policies".to_string()),
                    ));
                }
                let root = self.root;
                let Some(own) = root.field(name).or_else(|| system_field(name)) else {
                    let names = field_names(root);
                    return Err(CheckError::new(
                        value.span,
                        format!("{} has no field `{name}`", root.name),
                        Some(match did_you_mean(name, names.iter().copied()) {
                            Some(best) => format!("did you mean `record.{best}`?"),
                            None => format!("{} has: {}", root.name, names.join(", ")),
                        }),
                    ));
                };
                if !own.kind().is_id() || !field.kind().is_id() {
                    return Err(CheckError::new(
                        value.span,
                        format!(
                            "`record.{name}` is a {} field and `{}` a {} field; `record.<field>` compares record identities",
                            own.ty.name(),
                            field.name,
                            ty.name()
                        ),
                        Some("use it with ref, uuid and id fields, e.g. `members has record.subject`".to_string()),
                    ));
                }
                Arg::Outer {
                    up: self.depth.get(),
                    column: Column::of(own),
                }
            }
            Operand::Word(w) => match field.kind().literal(field, Literal::Word(w)) {
                Ok(cell) => Arg::Cell(cell),
                Err(Reject::NotA(_)) => {
                    return Err(CheckError::new(
                        value.span,
                        format!("`{w}` is not a value for `{}`", field.name),
                        Some(if ty.is_textual() {
                            format!("put text in quotes: '{w}'")
                        } else {
                            format!("write {}", expectation(field))
                        }),
                    ));
                }
                Err(reject) => return Err(rejected(reject, value.span, &wrong)),
            },
            Operand::Str(s) => literal(field, Literal::Str(s), value.span, &wrong)?,
            Operand::Int(i) => literal(field, Literal::Int(*i), value.span, &wrong)?,
            Operand::Float(x) => literal(field, Literal::Float(*x), value.span, &wrong)?,
            Operand::Bool(b) => literal(field, Literal::Bool(*b), value.span, &wrong)?,
            Operand::Date(d) => literal(field, Literal::Date(*d), value.span, &wrong)?,
            Operand::DateTime(dt) => literal(field, Literal::DateTime(*dt), value.span, &wrong)?,
        })
    }
}

/// A literal of a condition as an argument for `field`.
fn literal(
    field: &Field,
    literal: Literal<'_>,
    span: Span,
    wrong: &dyn Fn(&str) -> CheckError,
) -> Result<Arg, CheckError> {
    field
        .kind()
        .literal(field, literal)
        .map(Arg::Cell)
        .map_err(|reject| rejected(reject, span, wrong))
}

fn rejected(reject: Reject, span: Span, wrong: &dyn Fn(&str) -> CheckError) -> CheckError {
    match reject {
        Reject::NotA(expected) => wrong(&expected),
        Reject::Invalid { message, hint } => CheckError::new(span, message, hint),
    }
}

/// `inner`, restricted to the related rows a caller may reach (if restricted).
fn only_within(rows: Option<Typed>, inner: Typed) -> Typed {
    match rows {
        Some(rows) => Typed::And(Box::new(rows), Box::new(inner)),
        None => inner,
    }
}

/// `t` with each test for links (`x has <id>`, `x is set`) turned into a relation step
/// that reaches only the related records satisfying `rows`.
fn links_within(t: Typed, rows: &Typed) -> Typed {
    match t {
        Typed::Links { hop, id } => {
            let inner = match id {
                None => rows.clone(),
                Some(arg) => Typed::And(
                    Box::new(rows.clone()),
                    Box::new(Typed::Pred {
                        column: Column::plain("id", FieldType::Uuid, 0),
                        pred: Pred::Cmp(Op::Eq, arg),
                    }),
                ),
            };
            Typed::Hop {
                hop,
                inner: Box::new(inner),
            }
        }
        Typed::Not(a) => Typed::Not(Box::new(links_within(*a, rows))),
        Typed::And(a, b) => Typed::And(
            Box::new(links_within(*a, rows)),
            Box::new(links_within(*b, rows)),
        ),
        Typed::Or(a, b) => Typed::Or(
            Box::new(links_within(*a, rows)),
            Box::new(links_within(*b, rows)),
        ),
        other => other,
    }
}

fn filterable(ty: FieldType) -> bool {
    crate::engine::types::kind(ty).comparable()
}

fn not_filterable(field: &Field, path: &Path) -> CheckError {
    CheckError::new(
        path.span,
        format!(
            "{} fields such as `{}` cannot be compared",
            field.ty.name(),
            field.name
        ),
        Some("filter on another field".to_string()),
    )
}

fn expectation(field: &Field) -> String {
    field.kind().expectation(field)
}

/// The caller and the moment a condition runs in.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub now: chrono::DateTime<Utc>,
    /// The caller's claims (`user.<name>`), as JSON.
    pub user: std::sync::Arc<serde_json::Map<String, serde_json::Value>>,
}

impl Ctx {
    pub fn now() -> Ctx {
        Ctx {
            now: crate::engine::input::now(),
            user: Default::default(),
        }
    }
}

/// The value of an argument for a column, or `None` (SQL NULL) when a claim is missing
/// or does not fit the column's type.
pub fn resolve(arg: &Arg, column_ty: FieldType, ctx: &Ctx) -> Option<Cell> {
    match arg {
        Arg::Cell(c) => Some(c.clone()),
        Arg::Now => Some(crate::engine::types::kind(column_ty).at(ctx.now)),
        // A column, not a value: the SQL compiler and the evaluator bind it themselves.
        Arg::Outer { .. } => None,
        Arg::User(claim) => {
            let mut v = ctx.user.get(claim.first()?)?;
            for part in &claim[1..] {
                v = v.get(part)?;
            }
            crate::engine::types::kind(column_ty).claim_value(v)
        }
    }
}
