//! `trellis init [DIR]`: a small working project to start from. The templates are
//! the files of `src/cli/init/`, built into the binary; the editor schemas are
//! generated (the same text `trellis schema --out` writes), so an editor checks
//! the new files offline.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use super::documents::schema_files;

/// The project's files: path in the new folder, text.
const TEMPLATES: [(&str, &str); 8] = [
    ("trellis.yaml", include_str!("init/settings.yaml")),
    ("models/user.yaml", include_str!("init/model_user.yaml")),
    ("models/task.yaml", include_str!("init/model_task.yaml")),
    ("policies/user.yaml", include_str!("init/policy_user.yaml")),
    ("policies/task.yaml", include_str!("init/policy_task.yaml")),
    (
        "workflows/task.yaml",
        include_str!("init/workflow_task.yaml"),
    ),
    ("README.md", include_str!("init/README.md")),
    (".gitignore", include_str!("init/gitignore")),
];

/// What marks a folder as a Trellis project already.
fn existing_project(dir: &Path) -> Option<String> {
    for name in ["trellis.yaml", "trellis.yml"] {
        if dir.join(name).is_file() {
            return Some(name.to_string());
        }
    }
    let models = dir.join("models");
    let has_models = std::fs::read_dir(&models).ok().is_some_and(|entries| {
        entries.flatten().any(|e| {
            let p = e.path();
            matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml"))
        })
    });
    has_models.then(|| "model files in models/".to_string())
}

pub(super) fn init(dir: &Path, force: bool) -> Result<ExitCode> {
    if dir.exists() && !dir.is_dir() {
        bail!("{} is a file, not a folder", dir.display());
    }
    if let Some(what) = existing_project(dir) {
        bail!(
            "{} already holds a Trellis project ({what}); `trellis init` writes only into a new or empty folder and never over a project (nothing was written). Check it with `trellis check {}`.",
            dir.display(),
            dir.display()
        );
    }
    let mut files: Vec<(String, String)> = TEMPLATES
        .iter()
        .map(|(path, text)| (path.to_string(), text.to_string()))
        .collect();
    for (name, text) in schema_files()? {
        files.push((format!("schemas/{name}"), text));
    }
    let present: Vec<&str> = files
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| dir.join(p).exists())
        .collect();
    if !present.is_empty() && !force {
        bail!(
            "{} already has {}; nothing was written. Run `trellis init --force` to write the other files beside them (existing files are kept as they are; `.trellis/` is added to an existing .gitignore).",
            dir.display(),
            present.join(", ")
        );
    }
    let mut written = Vec::new();
    let mut kept = Vec::new();
    for (path, text) in &files {
        let full = dir.join(path);
        if full.exists() {
            if path == ".gitignore" {
                let old = std::fs::read_to_string(&full)
                    .with_context(|| format!("reading {}", full.display()))?;
                if !old.lines().any(|l| {
                    matches!(
                        l.trim(),
                        ".trellis" | ".trellis/" | "/.trellis/" | "/.trellis"
                    )
                }) {
                    let sep = if old.is_empty() || old.ends_with('\n') {
                        ""
                    } else {
                        "\n"
                    };
                    std::fs::write(&full, format!("{old}{sep}{text}"))
                        .with_context(|| format!("writing {}", full.display()))?;
                    written.push(format!("{path} (added `.trellis/`)"));
                    continue;
                }
            }
            kept.push(path.as_str());
            continue;
        }
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&full, text).with_context(|| format!("writing {}", full.display()))?;
        written.push(path.clone());
    }
    println!("Created a Trellis project in {}:", dir.display());
    for w in &written {
        println!("  {w}");
    }
    if !kept.is_empty() {
        println!("Kept as they were: {}", kept.join(", "));
    }
    let cd = if dir == Path::new(".") {
        String::new()
    } else {
        format!("cd {}\n  ", shell_word(dir))
    };
    println!(
        "\nNext:\n  {cd}trellis check    # every problem of every file\n  trellis test     # the policies' tests\n  trellis serve    # the API on http://127.0.0.1:8080"
    );
    Ok(ExitCode::SUCCESS)
}

/// A folder as it would be typed in a shell.
fn shell_word(dir: &Path) -> String {
    let text = dir.display().to_string();
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-~".contains(c))
    {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}
