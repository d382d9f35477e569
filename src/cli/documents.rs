//! Commands that print a document of the project or of Trellis itself:
//! `trellis openapi`, `trellis schema`, `trellis diagram`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use trellis::spec;

use super::project::load_engine;
use super::{DiagramFormat, SchemaKind};

pub(super) fn openapi(dir: &Path) -> Result<ExitCode> {
    let engine = load_engine(dir)?;
    println!("{}", serde_json::to_string_pretty(&engine.openapi())?);
    Ok(ExitCode::SUCCESS)
}

/// The editor schemas of the file formats, by file name, as `schemas/` holds them.
pub(super) fn schema_files() -> Result<Vec<(&'static str, String)>> {
    spec::schema::all_schemas()
        .into_iter()
        .map(|(name, v)| Ok((name, serde_json::to_string_pretty(&v)? + "\n")))
        .collect()
}

pub(super) fn schema(kind: SchemaKind, out: Option<&Path>) -> Result<ExitCode> {
    let files = schema_files()?;
    match out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for (name, text) in &files {
                std::fs::write(dir.join(name), text)
                    .with_context(|| format!("writing {}", dir.join(name).display()))?;
            }
            let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
            eprintln!("wrote {} to {}", names.join(", "), dir.display());
        }
        None => {
            let name = match kind {
                SchemaKind::Model => "model.schema.json",
                SchemaKind::Settings => "trellis.schema.json",
                SchemaKind::Policy => "policy.schema.json",
                SchemaKind::Workflow => "workflow.schema.json",
                SchemaKind::Migration => "migration.schema.json",
            };
            let text = files
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| t.as_str())
                .unwrap_or_default();
            print!("{text}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn diagram(dir: &Path, entity: &str, format: DiagramFormat) -> Result<ExitCode> {
    let engine = load_engine(dir)?;
    let Some(wf) = engine.workflow(entity) else {
        let with: Vec<&str> = engine.workflows.keys().map(String::as_str).collect();
        anyhow::bail!(
            "`{entity}` has no workflow{}",
            if with.is_empty() {
                " (this project has none)".to_string()
            } else {
                format!("; entities with one: {}", with.join(", "))
            }
        );
    };
    let format = match format {
        DiagramFormat::Mermaid => trellis::engine::diagram::Format::Mermaid,
        DiagramFormat::Dot => trellis::engine::diagram::Format::Dot,
    };
    print!("{}", trellis::engine::diagram::render(&engine, wf, format));
    Ok(ExitCode::SUCCESS)
}
