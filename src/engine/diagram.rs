//! State diagrams of a workflow (`trellis diagram`): Mermaid or Graphviz DOT, with who
//! may fire each transition (from the policy) and its guards on the edge.

use super::Engine;
use super::workflow::{Guard, Transition, Workflow};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Mermaid,
    Dot,
}

/// Who may fire `t`: one line per policy rule that allows it (roles and condition),
/// and one per rule that denies it.
pub fn who_may_fire(engine: &Engine, wf: &Workflow, t: &Transition) -> Vec<String> {
    if !engine.access.enforced {
        return vec!["anyone (no policies)".to_string()];
    }
    let Some(policy) = engine.access.policy(&wf.entity) else {
        return vec!["nobody (no policy)".to_string()];
    };
    let action = t.action();
    let mut out = Vec::new();
    for (effect, list) in [("", true), ("not ", false)] {
        for r in &policy.rules {
            let actions = if list { &r.allow } else { &r.deny };
            if !actions.iter().any(|a| a.covers(&action)) {
                continue;
            }
            let mut line = format!("{effect}{}", r.roles.join(", "));
            if let Some(c) = &r.cond_text {
                line.push_str(&format!(" where {c}"));
            }
            out.push(line);
        }
    }
    if out.is_empty() {
        out.push("nobody".to_string());
    }
    out
}

fn guard_lines(t: &Transition) -> Vec<String> {
    t.guards
        .iter()
        .map(|g| match g {
            Guard::Check { expr, .. } => format!("if {expr}"),
            Guard::Where { .. } => String::new(),
        })
        .zip(&t.guard_texts)
        .map(|(check, text)| {
            if check.is_empty() {
                format!("if {text}")
            } else {
                check
            }
        })
        .collect()
}

/// The diagram of `wf` in `format`.
pub fn render(engine: &Engine, wf: &Workflow, format: Format) -> String {
    match format {
        Format::Mermaid => mermaid(engine, wf),
        Format::Dot => dot(engine, wf),
    }
}

/// Text with Mermaid's entity codes for the characters its syntax uses.
fn mermaid_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("#amp;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '"' => out.push_str("#quot;"),
            ':' => out.push_str("#58;"),
            ';' => out.push_str("#59;"),
            '#' => out.push_str("#35;"),
            c => out.push(c),
        }
    }
    out
}

fn mermaid(engine: &Engine, wf: &Workflow) -> String {
    let mut out = String::from("stateDiagram-v2\n");
    for s in &wf.states {
        out.push_str(&format!(
            "    state \"{}\" as {}\n",
            mermaid_text(&s.label),
            s.name
        ));
    }
    out.push_str(&format!("    [*] --> {}\n", wf.initial));
    for t in &wf.transitions {
        let mut lines = vec![t.name.clone()];
        lines.extend(who_may_fire(engine, wf, t).iter().map(|l| mermaid_text(l)));
        lines.extend(guard_lines(t).iter().map(|l| mermaid_text(l)));
        let label = lines.join("<br/>");
        for from in &t.from {
            out.push_str(&format!("    {from} --> {}: {label}\n", t.to));
        }
    }
    for s in wf.states.iter().filter(|s| s.is_final) {
        out.push_str(&format!("    {} --> [*]\n", s.name));
    }
    out
}

fn dot_text(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn dot(engine: &Engine, wf: &Workflow) -> String {
    let mut out = format!(
        "digraph {} {{\n    rankdir=LR;\n    node [shape=box, style=rounded, fontname=\"Helvetica\"];\n    edge [fontname=\"Helvetica\", fontsize=10];\n    __start [shape=point, label=\"\"];\n",
        wf.entity
    );
    for s in &wf.states {
        let shape = if s.is_final { ", peripheries=2" } else { "" };
        out.push_str(&format!(
            "    {} [label=\"{}\"{shape}];\n",
            s.name,
            dot_text(&s.label)
        ));
    }
    out.push_str(&format!("    __start -> {};\n", wf.initial));
    for t in &wf.transitions {
        let mut lines = vec![t.name.clone()];
        lines.extend(who_may_fire(engine, wf, t));
        lines.extend(guard_lines(t));
        let label = lines
            .iter()
            .map(|l| dot_text(l))
            .collect::<Vec<_>>()
            .join("\\n");
        for from in &t.from {
            out.push_str(&format!("    {from} -> {} [label=\"{label}\"];\n", t.to));
        }
    }
    out.push_str("}\n");
    out
}
