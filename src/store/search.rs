//! Full-text search (`q`): which search fields a caller may search, and the
//! match and relevance terms of each dialect.

use sea_query::{Expr, ExprTrait, Query, SelectStatement};

use super::filter::Compiler;
use super::kernel::{MAIN, all, any};
use super::{Dialect, ddl};
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

/// The FTS5 query that every word of `words` occurs in the columns `cols` (all of the
/// index's columns when `cols` is every search field). Each word is a quoted string,
/// so FTS5 operators and column names in the input are read as text.
fn fts_query(e: &Entity, cols: &[String], words: &str) -> String {
    // A "word" without letters or digits has no token: it is left out, as
    // PostgreSQL's `plainto_tsquery` leaves it out (nothing left matches nothing).
    let words: Vec<String> = words
        .split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    let words = match words.is_empty() {
        true => "\"\"".to_string(),
        false => words.join(" "),
    };
    if cols.len() == e.search.len() {
        words
    } else {
        // Column names come from the validated model; quoted all the same.
        let cols: Vec<String> = cols.iter().map(|c| super::quote(c)).collect();
        format!("{{{}}} : ({words})", cols.join(" "))
    }
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
    match dialect {
        Dialect::Sqlite => {
            let table = ddl::fts_table(&e.name);
            let fts = super::quote(&table);
            let mut matches = Vec::new();
            for (cols, conds) in &alternatives {
                let m = Expr::cust_with_values(
                    format!(
                        "{}.rowid IN (SELECT rowid FROM {fts} WHERE {fts} MATCH ?)",
                        super::quote(MAIN)
                    ),
                    [fts_query(e, cols, words)],
                );
                matches.push(guarded(compiler, conds, m));
            }
            let matches = any(matches);
            // The widest match (every field the caller may read somewhere) joins the
            // index once; the rank weighs only the fields visible on every record.
            let widest = alternatives
                .last()
                .map(|(c, _)| c.clone())
                .unwrap_or_default();
            let weights: Vec<&str> = e
                .search
                .iter()
                .map(|f| if visible.contains(f) { "1.0" } else { "0.0" })
                .collect();
            let mut sub = Query::select();
            sub.expr_as(Expr::cust("rowid"), "rowid")
                .expr_as(
                    Expr::cust(format!("bm25({fts}, {})", weights.join(", "))),
                    "rank",
                )
                .from(table)
                .and_where(Expr::cust_with_values(
                    format!("{fts} MATCH ?"),
                    [fts_query(e, &widest, words)],
                ));
            // With one alternative the join is the whole match.
            let extra = (alternatives.len() > 1).then(|| matches.clone());
            Search {
                matches,
                join: Some((sub, extra)),
                rank: None,
            }
        }
        Dialect::Postgres => {
            // The whole document's match is what the GIN index serves; the match on
            // the fields the caller may read narrows it down.
            let indexed = Expr::cust_with_values(
                format!(
                    "{} @@ plainto_tsquery('simple', $1)",
                    ddl::pg_document(e, Some(MAIN))
                ),
                [words.to_string()],
            );
            let everything = visible.len() == e.search.len();
            let mut narrowed = Vec::new();
            if !everything {
                for (cols, conds) in &alternatives {
                    let m = Expr::cust_with_values(
                        format!(
                            "{} @@ plainto_tsquery('simple', $1)",
                            ddl::pg_document_of(cols, Some(MAIN))
                        ),
                        [words.to_string()],
                    );
                    narrowed.push(guarded(compiler, conds, m));
                }
            }
            let matches = match narrowed.is_empty() {
                true => indexed,
                false => indexed.and(any(narrowed)),
            };
            let rank = Expr::cust_with_values(
                format!(
                    "-ts_rank({}, plainto_tsquery('simple', $1))",
                    ddl::pg_document_of(&visible, Some(MAIN))
                ),
                [words.to_string()],
            );
            Search {
                matches,
                join: None,
                rank: Some(rank),
            }
        }
    }
}
