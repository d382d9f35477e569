//! `trellis check`: every problem of every file, for people or as JSON.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use super::Format;
use super::project::{load_all, render, require_project, summary};

pub(super) fn check(dir: &Path, format: Format) -> Result<ExitCode> {
    let (loaded, _) = load_all(dir);
    let project = require_project(dir, &loaded);
    if let (Format::Human, Err(err)) = (format, &project) {
        return Err(anyhow::anyhow!("{err}"));
    }
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&loaded.diagnostics)?),
        Format::Human => {
            render(&loaded);
            let entities = loaded.spec.models.len();
            eprintln!(
                "checked {} ({entities} entit{}): {}",
                dir.display(),
                if entities == 1 { "y" } else { "ies" },
                summary(&loaded.diagnostics)
            );
        }
    }
    Ok(if loaded.has_errors() || project.is_err() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
