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
    println!("{}", String::from_utf8_lossy(&engine.openapi_json));
    Ok(ExitCode::SUCCESS)
}

pub(super) fn schema(kind: SchemaKind, out: Option<&Path>) -> Result<ExitCode> {
    let schemas = spec::schema::all_schemas();
    match out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for (file, schema) in &schemas {
                let path = dir.join(file);
                std::fs::write(&path, serde_json::to_string_pretty(schema)? + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let files: Vec<&str> = schemas.iter().map(|(f, _)| *f).collect();
            eprintln!("wrote {} to {}", files.join(", "), dir.display());
        }
        None => {
            let schema = match kind {
                SchemaKind::Model => spec::schema::model_schema(),
                SchemaKind::Settings => spec::schema::settings_schema(),
                SchemaKind::Policy => spec::schema::policy_schema(),
                SchemaKind::Workflow => spec::schema::workflow_schema(),
                SchemaKind::Migration => spec::schema::migration_schema(),
            };
            println!("{}", serde_json::to_string_pretty(&schema)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn diagram(targets: &[String], format: DiagramFormat) -> Result<ExitCode> {
    let (dir, entity) = match targets {
        [entity] => (Path::new("."), entity.as_str()),
        [dir, entity] => (Path::new(dir.as_str()), entity.as_str()),
        _ => anyhow::bail!(
            "give the entity, optionally after the project folder: `trellis diagram [DIR] ENTITY`"
        ),
    };
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
