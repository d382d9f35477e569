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

pub(super) fn schema(kind: SchemaKind, out: Option<&Path>) -> Result<ExitCode> {
    let model = serde_json::to_string_pretty(&spec::schema::model_schema())?;
    let settings = serde_json::to_string_pretty(&spec::schema::settings_schema())?;
    let policy = serde_json::to_string_pretty(&spec::schema::policy_schema())?;
    let workflow = serde_json::to_string_pretty(&spec::schema::workflow_schema())?;
    match out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::write(dir.join("model.schema.json"), model + "\n")?;
            std::fs::write(dir.join("trellis.schema.json"), settings + "\n")?;
            std::fs::write(dir.join("policy.schema.json"), policy + "\n")?;
            std::fs::write(dir.join("workflow.schema.json"), workflow + "\n")?;
            eprintln!(
                "wrote model.schema.json, trellis.schema.json, policy.schema.json and workflow.schema.json to {}",
                dir.display()
            );
        }
        None => println!(
            "{}",
            match kind {
                SchemaKind::Model => model,
                SchemaKind::Settings => settings,
                SchemaKind::Policy => policy,
                SchemaKind::Workflow => workflow,
            }
        ),
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
