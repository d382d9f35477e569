//! Full-text search (`q`): which search fields a caller may search, and the
//! match and relevance terms of each dialect.

use sea_query::{Expr, ExprTrait, SelectStatement};

use super::Dialect;
use super::dialect::Relevance;
use super::filter::Compiler;
use super::kernel::{MAIN, all, any};
use crate::engine::access::Principal;
use crate::engine::cond::check::Typed;
use crate::engine::{Engine, Entity};

/// At most this many search fields visible only where a condition holds
/// (`read.where`) take part in a caller's `q`, in declaration order; the others count
/// as hidden (fail closed). Each adds a term per subset of them.
pub const MAX_CONDITIONAL_SEARCH_FIELDS: usize = 3;

/// Full-text search as one caller may use it.
pub(crate) struct Search {
    /// The condition that a record matches the words through fields the caller may
    /// read on that record (for the count, and for the page when there is no join).
    pub(crate) matches: Expr,
    /// SQLite's relevance order: the full-text index joined once (`rowid`,
    /// `rank`), aliased `s`; the page then needs `extra` in its WHERE as well.
    pub(crate) join: Option<(SelectStatement, Option<Expr>)>,
    /// PostgreSQL's relevance order (best first, ascending).
    pub(crate) rank: Option<Expr>,
}

/// The search fields of `e` as `who` may search them: those visible on every
/// record, and those visible only where a condition holds (with the condition).
fn searchable(engine: &Engine, e: &Entity, who: &Principal) -> (Vec<String>, Vec<(String, Typed)>) {
    if !engine.access.enforced || who.system {
        return (e.search.clone(), Vec::new());
    }
    let hidden = engine.access.hidden(&e.name, who);
    let conditional = engine.access.conditional(&e.name, who);
    let mut visible = Vec::new();
    let mut some = Vec::new();
    for f in &e.search {
        if hidden.contains(f) {
            continue;
        }
        match conditional.iter().find(|(c, _)| c == f) {
            Some((_, cond)) => {
                if some.len() < MAX_CONDITIONAL_SEARCH_FIELDS {
                    some.push((f.clone(), cond.clone()));
                }
            }
            None => visible.push(f.clone()),
        }
    }
    (visible, some)
}

/// Full-text search for `who`: `words` match only through the search fields the
/// caller may read (on each record, for fields visible under a condition), and the
/// relevance comes from the fields every record shows this caller.
pub(crate) fn search_terms(
    dialect: Dialect,
    engine: &Engine,
    e: &Entity,
    words: &str,
    who: &Principal,
    compiler: &mut Compiler<'_>,
) -> Search {
    let (visible, conditional) = searchable(engine, e, who);
    // Every subset of the conditional fields: the record matches through the
    // visible fields plus those of the subset whose conditions all hold on it.
    let mut alternatives: Vec<(Vec<String>, Vec<Typed>)> = Vec::new();
    for mask in 0u32..(1 << conditional.len()) {
        let mut cols = Vec::new();
        let mut conds = Vec::new();
        for f in &e.search {
            if visible.contains(f) {
                cols.push(f.clone());
            } else if let Some(n) = conditional.iter().position(|(c, _)| c == f)
                && mask & (1 << n) != 0
            {
                cols.push(f.clone());
                conds.push(conditional[n].1.clone());
            }
        }
        if !cols.is_empty() {
            alternatives.push((cols, conds));
        }
    }
    if alternatives.is_empty() {
        // Nothing this caller may search: no record matches.
        return Search {
            matches: Expr::cust("1 = 0"),
            join: None,
            rank: None,
        };
    }
    let guarded = |compiler: &mut Compiler<'_>, conds: &[Typed], m: Expr| {
        let mut terms: Vec<Expr> = conds.iter().map(|c| compiler.compile(c, MAIN)).collect();
        terms.push(m);
        all(terms)
    };
    // Every alternative's match: the words through its fields, where its
    // conditions hold.
    let narrowed: Vec<Expr> = alternatives
        .iter()
        .map(|(cols, conds)| {
            let m = dialect.text_match(e, MAIN, cols, words);
            guarded(compiler, conds, m)
        })
        .collect();
    let matches = match dialect.text_prefilter(e, MAIN, words) {
        // The whole document's match is what the index serves: when the caller may
        // search every field it is the match, otherwise the narrower matches refine it.
        Some(indexed) if visible.len() == e.search.len() => indexed,
        Some(indexed) => indexed.and(any(narrowed)),
        None => any(narrowed),
    };
    // The widest match (every field the caller may read somewhere); the relevance
    // weighs only the fields visible on every record.
    let widest = alternatives
        .last()
        .map(|(c, _)| c.clone())
        .unwrap_or_default();
    match dialect.relevance(e, MAIN, &visible, &widest, words) {
        Relevance::Join(sub) => {
            // With one alternative the join is the whole match.
            let extra = (alternatives.len() > 1).then(|| matches.clone());
            Search {
                matches,
                join: Some((*sub, extra)),
                rank: None,
            }
        }
        Relevance::Order(rank) => Search {
            matches,
            join: None,
            rank: Some(rank),
        },
    }
}
