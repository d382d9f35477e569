//! Typed conditions → SQL expressions. Relation hops become correlated `EXISTS`
//! subqueries; every value is bound.

use sea_query::{Expr, ExprTrait, Func, Query};

use super::Dialect;
use super::values::cell_value;
use crate::engine::cond::Op;
use crate::engine::cond::check::{Arg, Column, Ctx, Hop, Pred, Typed, resolve};
use crate::engine::input::Cell;
use crate::spec::FieldType;

/// Compiles conditions, numbering the table aliases of subqueries.
pub struct Compiler<'c> {
    pub dialect: Dialect,
    pub ctx: &'c Ctx,
    next_alias: usize,
    /// The aliases of the records being compiled, outermost first: what
    /// `record.<field>` (`Arg::Outer`) refers to, `up` steps out.
    scopes: Vec<String>,
}

fn col(alias: &str, name: &str) -> Expr {
    Expr::col((alias.to_string(), name.to_string()))
}

fn truth(b: bool) -> Expr {
    Expr::cust(if b { "1 = 1" } else { "1 = 0" })
}

impl<'c> Compiler<'c> {
    pub fn new(dialect: Dialect, ctx: &'c Ctx) -> Compiler<'c> {
        Compiler {
            dialect,
            ctx,
            next_alias: 1,
            scopes: Vec::new(),
        }
    }

    /// The column `record.<field>` names, `up` relation steps out of the current one.
    fn outer(&self, up: usize, column: &Column) -> Expr {
        match self.scopes.len().checked_sub(up + 1) {
            Some(i) => col(&self.scopes[i], &column.name),
            // Not produced by the checker (a condition used beyond its record).
            None => Expr::cust("NULL"),
        }
    }

    fn alias(&mut self, prefix: &str) -> String {
        let a = format!("{prefix}{}", self.next_alias);
        self.next_alias += 1;
        a
    }

    /// `t` as an SQL condition on the table aliased `alias`.
    pub fn compile(&mut self, t: &Typed, alias: &str) -> Expr {
        // A new alias is a step into related records (or a new top-level condition).
        let entered = self.scopes.last().map(String::as_str) != Some(alias);
        if entered {
            self.scopes.push(alias.to_string());
        }
        let out = self.compile_in(t, alias);
        if entered {
            self.scopes.pop();
        }
        out
    }

    fn compile_in(&mut self, t: &Typed, alias: &str) -> Expr {
        match t {
            Typed::Const(b) => truth(*b),
            Typed::And(a, b) => {
                let a = self.compile(a, alias);
                let b = self.compile(b, alias);
                a.and(b)
            }
            Typed::Or(a, b) => {
                let a = self.compile(a, alias);
                let b = self.compile(b, alias);
                a.or(b)
            }
            Typed::Not(a) => self.compile(a, alias).not(),
            Typed::Hop { hop, inner } => {
                let mut q = Query::select();
                q.expr(Expr::val(1));
                match hop {
                    Hop::Ref { field, target } => {
                        let t = self.alias("t");
                        q.from_as(target.clone(), t.clone())
                            .and_where(col(&t, "id").equals((alias.to_string(), field.clone())));
                        let inner = self.compile(inner, &t);
                        q.and_where(inner);
                    }
                    Hop::Many { join, target, .. } => {
                        let j = self.alias("j");
                        let t = self.alias("t");
                        q.from_as(join.clone(), j.clone())
                            .join_as(
                                sea_query::JoinType::InnerJoin,
                                target.clone(),
                                t.clone(),
                                col(&t, "id").equals((j.clone(), "target_id".to_string())),
                            )
                            .and_where(
                                col(&j, "source_id").equals((alias.to_string(), "id".to_string())),
                            );
                        let inner = self.compile(inner, &t);
                        q.and_where(inner);
                    }
                    Hop::Inverse { child, via } => {
                        let t = self.alias("t");
                        q.from_as(child.clone(), t.clone())
                            .and_where(col(&t, via).equals((alias.to_string(), "id".to_string())));
                        let inner = self.compile(inner, &t);
                        q.and_where(inner);
                    }
                }
                Expr::exists(q)
            }
            Typed::Links { hop, id } => {
                let wanted = match id {
                    None => None,
                    Some(Arg::Outer { up, column }) => Some(self.outer(*up, column)),
                    Some(arg) => match resolve(arg, FieldType::Uuid, self.ctx) {
                        Some(Cell::Uuid(u)) => Some(Expr::val(self.dialect.uuid(u))),
                        _ => return truth(false),
                    },
                };
                let mut q = Query::select();
                q.expr(Expr::val(1));
                match hop {
                    Hop::Many { join, .. } => {
                        let j = self.alias("j");
                        q.from_as(join.clone(), j.clone()).and_where(
                            col(&j, "source_id").equals((alias.to_string(), "id".to_string())),
                        );
                        if let Some(u) = wanted {
                            q.and_where(col(&j, "target_id").eq(u));
                        }
                    }
                    Hop::Inverse { child, via } => {
                        let t = self.alias("t");
                        q.from_as(child.clone(), t.clone())
                            .and_where(col(&t, via).equals((alias.to_string(), "id".to_string())));
                        if let Some(u) = wanted {
                            q.and_where(col(&t, "id").eq(u));
                        }
                    }
                    Hop::Ref { field, .. } => {
                        // Not produced by the checker; a ref "link" is the column itself.
                        return match wanted {
                            None => col(alias, field).is_not_null(),
                            Some(u) => col(alias, field).eq(u),
                        };
                    }
                }
                Expr::exists(q)
            }
            Typed::Pred { column, pred } => self.pred(column, pred, alias),
        }
    }

    fn bind(&self, column: &Column, cell: &Cell) -> Expr {
        Expr::val(cell_value(self.dialect, column.ty, column.scale, cell))
    }

    fn pred(&mut self, column: &Column, pred: &Pred, alias: &str) -> Expr {
        // An integer column compared with a fraction: compare as doubles, with a cast
        // that also gives the statement its own text. PostgreSQL statements are
        // prepared and cached by their text with the parameter types of their first
        // use; the same text bound later with another type would be misread.
        let fractional = column.ty == FieldType::Integer
            && match pred {
                Pred::Cmp(_, Arg::Cell(Cell::Float(_))) => true,
                Pred::In(args) => args.iter().any(|a| matches!(a, Arg::Cell(Cell::Float(_)))),
                _ => false,
            };
        if fractional {
            let as_double = Column {
                name: column.name.clone(),
                ty: FieldType::Number,
                scale: 0,
            };
            let c = col(alias, &column.name).cast_as("DOUBLE PRECISION");
            let to_float = |a: &Arg| match a {
                Arg::Cell(Cell::Int(i)) => Arg::Cell(Cell::Float(*i as f64)),
                other => other.clone(),
            };
            let pred = match pred {
                Pred::Cmp(op, a) => Pred::Cmp(*op, to_float(a)),
                Pred::In(args) => Pred::In(args.iter().map(to_float).collect()),
                other => other.clone(),
            };
            return self.pred_on(c, &as_double, &pred);
        }
        let c = col(alias, &column.name);
        self.pred_on(c, column, pred)
    }

    fn pred_on(&mut self, c: Expr, column: &Column, pred: &Pred) -> Expr {
        match pred {
            Pred::IsSet(true) => c.is_not_null(),
            Pred::IsSet(false) => c.is_null(),
            Pred::In(args) => {
                if args.is_empty() {
                    return truth(false);
                }
                let values: Vec<Expr> = args
                    .iter()
                    .map(|a| match a {
                        Arg::Outer { up, column } => self.outer(*up, column),
                        _ => match resolve(a, column.ty, self.ctx) {
                            Some(cell) => self.bind(column, &cell),
                            None => self.bind(column, &Cell::Null),
                        },
                    })
                    .collect();
                c.is_in(values)
            }
            Pred::Cmp(op, arg) => {
                let v = match arg {
                    Arg::Outer { up, column } => self.outer(*up, column),
                    _ => {
                        let cell = resolve(arg, column.ty, self.ctx).unwrap_or(Cell::Null);
                        self.bind(column, &cell)
                    }
                };
                match op {
                    Op::Eq => c.eq(v),
                    Op::Ne => c.ne(v),
                    Op::Lt => c.lt(v),
                    Op::Le => c.lte(v),
                    Op::Gt => c.gt(v),
                    Op::Ge => c.gte(v),
                    Op::Contains => {
                        let find = self.dialect.position_function();
                        Expr::from(
                            Func::cust(find.to_string())
                                .arg(Func::lower(c))
                                .arg(Func::lower(v)),
                        )
                        .gt(0)
                    }
                }
            }
        }
    }
}
