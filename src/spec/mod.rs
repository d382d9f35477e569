//! `spec`: the project's YAML files as plain Rust values, and every check that can be
//! made on them. No I/O beyond reading the project's files; no async runtime, no HTTP.
//!
//! [`load`] never stops at the first problem: it returns what it could read and every
//! diagnostic (file, line, column, stable code, message, hint).

pub mod diag;
pub mod field;
pub mod file_keys;
pub mod migration;
pub mod model;
pub mod policy;
pub mod schema;
pub mod settings;
pub mod types;
pub mod walk;
pub mod workflow;
pub mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use diag::{Diagnostic, Severity};
pub use model::{FieldDef, FieldType, ModelDef, OnDelete, Storage};
pub use settings::Settings;

use diag::{Sink, suggest};
use yaml::Pos;

/// Files larger than this are refused before parsing.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Everything read from a project folder.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub root: PathBuf,
    pub settings: Settings,
    pub models: Vec<ModelDef>,
    pub policies: Vec<policy::PolicyDef>,
    pub workflows: Vec<workflow::WorkflowDef>,
    /// The text of every file read, by relative path, for rendering diagnostics.
    pub sources: BTreeMap<String, String>,
}

impl Spec {
    pub fn model(&self, name: &str) -> Option<&ModelDef> {
        self.models.iter().find(|m| m.entity.name == name)
    }

    pub fn workflow(&self, entity: &str) -> Option<&workflow::WorkflowDef> {
        self.workflows.iter().find(|w| w.entity.name == entity)
    }
}

/// The outcome of loading a project: what was read, and what is wrong with it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub spec: Spec,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }
}

/// The plural of an entity name, used in routes (`/api/projects`).
pub fn pluralize(name: &str) -> String {
    if let Some(stem) = name.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'i', 'o', 'u'])
    {
        return format!("{stem}ies");
    }
    if name.ends_with('s')
        || name.ends_with('x')
        || name.ends_with('z')
        || name.ends_with("ch")
        || name.ends_with("sh")
    {
        return format!("{name}es");
    }
    format!("{name}s")
}

/// The plural a model uses: its `plural:` or the derived one.
pub fn plural_of(model: &ModelDef) -> String {
    model
        .plural
        .as_ref()
        .map(|p| p.name.clone())
        .unwrap_or_else(|| pluralize(&model.entity.name))
}

/// The name of the join table of a `many` field.
pub fn join_table(entity: &str, field: &str) -> String {
    format!("{entity}_{field}")
}

/// Reads and checks the project in `root`.
pub fn load(root: &Path) -> Loaded {
    let mut diagnostics = Vec::new();
    let mut spec = Spec {
        root: root.to_path_buf(),
        ..Spec::default()
    };

    if !root.is_dir() {
        diagnostics.push(Diagnostic {
            severity: Severity::Error,
            code: "no-project",
            file: root.display().to_string(),
            line: 1,
            column: 1,
            message: "this folder does not exist".to_string(),
            hint: Some("run the command inside a Trellis project, or name its folder".to_string()),
        });
        return Loaded { spec, diagnostics };
    }

    // trellis.yaml (optional)
    for name in ["trellis.yaml", "trellis.yml"] {
        let path = root.join(name);
        if path.is_file()
            && let Some(node) = read_yaml(root, &path, &mut spec.sources, &mut diagnostics)
        {
            let mut sink = Sink {
                file: name,
                out: &mut diagnostics,
            };
            spec.settings = settings::parse_settings(&mut sink, &node);
        }
    }

    let model_files = yaml_files(root, "models", &mut diagnostics);
    if model_files.is_empty() {
        diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            code: "no-models",
            file: "models".to_string(),
            line: 1,
            column: 1,
            message: "there are no model files, so the API has no entities".to_string(),
            hint: Some(
                "add a file like `models/task.yaml` starting with `entity: task`".to_string(),
            ),
        });
    }
    spec.models = read_all(
        root,
        model_files,
        &mut spec.sources,
        &mut diagnostics,
        model::parse_model,
    );
    let policy_files = yaml_files(root, "policies", &mut diagnostics);
    spec.policies = read_all(
        root,
        policy_files,
        &mut spec.sources,
        &mut diagnostics,
        policy::parse_policy,
    );

    let workflow_files = yaml_files(root, "workflows", &mut diagnostics);
    spec.workflows = read_all(
        root,
        workflow_files,
        &mut spec.sources,
        &mut diagnostics,
        workflow::parse_workflow,
    );

    check_project(&spec, &mut diagnostics);
    check_access(&spec, &mut diagnostics);
    workflow::check_workflows(&spec, &mut diagnostics);
    diagnostics.sort_by(|a, b| {
        (a.file.as_str(), a.line, a.column).cmp(&(b.file.as_str(), b.line, b.column))
    });
    Loaded { spec, diagnostics }
}

/// Reads and parses each file with `parse` (given the file's stem), keeping what parses.
fn read_all<T>(
    root: &Path,
    files: Vec<PathBuf>,
    sources: &mut BTreeMap<String, String>,
    diagnostics: &mut Vec<Diagnostic>,
    parse: fn(&mut Sink<'_>, &str, &yaml::Node) -> Option<T>,
) -> Vec<T> {
    let mut out = Vec::new();
    for path in files {
        let Some(node) = read_yaml(root, &path, sources, diagnostics) else {
            continue;
        };
        let rel = relative(root, &path);
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let mut sink = Sink {
            file: &rel,
            out: diagnostics,
        };
        if let Some(item) = parse(&mut sink, &stem, &node) {
            out.push(item);
        }
    }
    out
}

/// Parses YAML text from memory (used by tests and by `load`).
pub fn load_model_text(file: &str, text: &str) -> (Option<ModelDef>, Vec<Diagnostic>) {
    let mut out = Vec::new();
    let stem = Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    let model = match yaml::parse(text) {
        Ok(node) => {
            let mut sink = Sink {
                file,
                out: &mut out,
            };
            model::parse_model(&mut sink, &stem, &node)
        }
        Err(err) => {
            push_parse_error(file, err, &mut out);
            None
        }
    };
    (model, out)
}

fn push_parse_error(file: &str, err: yaml::ParseError, out: &mut Vec<Diagnostic>) {
    let hint = match err.code {
        "duplicate-key" => "each key may appear once per mapping; remove or rename one of them",
        "yaml-too-complex" => {
            "the file expands to too much data (aliases or nesting); write the values out plainly"
        }
        _ => "check the indentation and that every `key:` has a space after the colon",
    };
    out.push(Diagnostic {
        severity: Severity::Error,
        code: err.code,
        file: file.to_string(),
        line: err.pos.line,
        column: err.pos.col,
        message: err.message,
        hint: Some(hint.to_string()),
    });
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

fn yaml_files(root: &Path, folder: &str, diagnostics: &mut Vec<Diagnostic>) -> Vec<PathBuf> {
    let dir = root.join(folder);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    files.sort();
    files.retain(|p| {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext == "yaml" || ext == "yml" {
            true
        } else {
            if ext != "md" {
                diagnostics.push(Diagnostic {
                    severity: Severity::Warning,
                    code: "ignored-file",
                    file: relative(root, p),
                    line: 1,
                    column: 1,
                    message: "this file is ignored: only .yaml and .yml files are read".to_string(),
                    hint: Some("rename it to end in .yaml".to_string()),
                });
            }
            false
        }
    });
    files
}

fn read_yaml(
    root: &Path,
    path: &Path,
    sources: &mut BTreeMap<String, String>,
    out: &mut Vec<Diagnostic>,
) -> Option<yaml::Node> {
    let rel = relative(root, path);
    let too_big = std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_FILE_BYTES);
    let text = if too_big {
        Err("the file is larger than 1 MiB".to_string())
    } else {
        std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                String::from_utf8(bytes).map_err(|_| "the file is not UTF-8 text".to_string())
            })
    };
    let text = match text {
        Ok(t) => t,
        Err(reason) => {
            out.push(Diagnostic {
                severity: Severity::Error,
                code: "unreadable-file",
                file: rel,
                line: 1,
                column: 1,
                message: format!("cannot read this file: {reason}"),
                hint: None,
            });
            return None;
        }
    };
    let parsed = yaml::parse(&text);
    sources.insert(rel.clone(), text);
    match parsed {
        Ok(node) => Some(node),
        Err(err) => {
            push_parse_error(&rel, err, out);
            None
        }
    }
}

/// Checks that span files: relations, name collisions.
pub fn check_project(spec: &Spec, out: &mut Vec<Diagnostic>) {
    let entity_names: Vec<&str> = spec.models.iter().map(|m| m.entity.name.as_str()).collect();
    let mut seen_entities: BTreeMap<&str, &str> = BTreeMap::new();
    let mut seen_routes: BTreeMap<String, &str> = BTreeMap::new();
    let mut tables: BTreeMap<String, String> = BTreeMap::new();
    for m in &spec.models {
        tables.insert(
            m.entity.name.clone(),
            format!("the entity `{}`", m.entity.name),
        );
    }

    for model in &spec.models {
        let file = model.file.as_str();
        let mut sink = Sink { file, out };
        if let Some(prev) = seen_entities.insert(&model.entity.name, file) {
            sink.error_hint(
                model.entity.pos,
                "duplicate-name",
                format!(
                    "the entity `{}` is also defined in {prev}",
                    model.entity.name
                ),
                "keep one file per entity",
            );
        }
        let plural = plural_of(model);
        if plural == "batch" {
            let pos = model
                .plural
                .as_ref()
                .map(|p| p.pos)
                .unwrap_or(model.entity.pos);
            sink.error_hint(
                pos,
                "reserved-name",
                "`/api/batch` is reserved for batch writes",
                "choose another `plural:`",
            );
        }
        let plural_pos = model
            .plural
            .as_ref()
            .map(|p| p.pos)
            .unwrap_or(model.entity.pos);
        if let Some(other) = seen_routes.insert(plural.clone(), &model.entity.name) {
            sink.error_hint(
                plural_pos,
                "duplicate-route",
                format!("`/api/{plural}` is already the route of the entity `{other}`"),
                "give one of them a different `plural:`",
            );
        }

        for field in &model.fields {
            let Some(target) = &field.target else {
                continue;
            };
            let target_model = spec.model(&target.name);
            if target_model.is_none() {
                sink.error_hint(
                    target.pos,
                    "unknown-entity",
                    format!(
                        "the field `{}` points to `{}`, but there is no such entity",
                        field.name, target.name
                    ),
                    match diag::did_you_mean(&target.name, entity_names.iter().copied()) {
                        Some(best) => format!("did you mean `{best}`?"),
                        None => format!(
                            "add `models/{}.yaml`, or use one of: {}",
                            target.name,
                            diag::list(&entity_names)
                        ),
                    },
                );
                continue;
            }
            if field.ty == FieldType::Many {
                let table = join_table(&model.entity.name, &field.name);
                if let Some(owner) = tables.insert(
                    table.clone(),
                    format!("the field `{}.{}`", model.entity.name, field.name),
                ) {
                    sink.error_hint(
                        field.pos,
                        "duplicate-name",
                        format!(
                            "the link table `{table}` of this field has the same name as {owner}"
                        ),
                        "rename the field or the entity",
                    );
                }
            }
            if field.ty == FieldType::Inverse
                && let (Some(via), Some(target_model)) = (&field.via, target_model)
            {
                match target_model.field(&via.name) {
                    Some(back) if back.ty == FieldType::Ref && back.target.as_ref().is_some_and(|t| t.name == model.entity.name) => {}
                    Some(back) => sink.error_hint(
                        via.pos,
                        "inverse-without-ref",
                        format!(
                            "`{}.{}` is not a ref to `{}`, so this inverse has nothing to follow",
                            target.name, via.name, model.entity.name
                        ),
                        format!(
                            "`via` must name a field of `{}` declared as `{{ type: ref, to: {} }}` (it is a {} field)",
                            target.name, model.entity.name, back.ty.name()
                        ),
                    ),
                    None => {
                        let refs: Vec<&str> = target_model
                            .fields
                            .iter()
                            .filter(|f| f.ty == FieldType::Ref && f.target.as_ref().is_some_and(|t| t.name == model.entity.name))
                            .map(|f| f.name.as_str())
                            .collect();
                        sink.error_hint(
                            via.pos,
                            "inverse-without-ref",
                            format!("`{}` has no field `{}`", target.name, via.name),
                            if refs.is_empty() {
                                format!(
                                    "add `{}: {{ type: ref, to: {} }}` to models/{}.yaml",
                                    via.name, model.entity.name, target.name
                                )
                            } else {
                                match diag::did_you_mean(&via.name, refs.iter().copied()) {
                                    Some(best) => format!("did you mean `{best}`?"),
                                    None => format!(
                                        "`{}` points here through: {}",
                                        target.name,
                                        diag::list(&refs)
                                    ),
                                }
                            },
                        );
                    }
                }
            }
        }
    }
    let _ = Pos::default();
}

/// Checks of `auth` and the policy files that need only the spec.
fn check_access(spec: &Spec, out: &mut Vec<Diagnostic>) {
    let entity_names: Vec<&str> = spec.models.iter().map(|m| m.entity.name.as_str()).collect();
    if let Some(users) = &spec.settings.auth.users {
        let mut sink = Sink {
            file: "trellis.yaml",
            out,
        };
        match spec.model(&users.entity.name) {
            None => sink.error_hint(
                users.entity.pos,
                "unknown-entity",
                format!(
                    "`auth.users.entity` names `{}`, which is not an entity",
                    users.entity.name
                ),
                match diag::did_you_mean(&users.entity.name, entity_names.iter().copied()) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!("entities: {}", entity_names.join(", ")),
                },
            ),
            Some(m) => {
                if !m.fields.iter().any(|f| {
                    f.name == "email" && f.ty == FieldType::Email && f.unique && f.required
                }) {
                    sink.error_hint(
                        users.entity.pos,
                        "users-need-email",
                        format!("the accounts entity `{}` needs a required, unique email field named `email`", m.entity.name),
                        format!("add `email: {{ type: email, required: true, unique: true }}` to models/{}.yaml", m.entity.name),
                    );
                }
                if let Some(rf) = &users.role_field
                    && !m.fields.iter().any(|f| {
                        f.name == rf.name && matches!(f.ty, FieldType::Enum | FieldType::String)
                    })
                {
                    sink.error_hint(
                        rf.pos,
                        "unknown-field",
                        format!(
                            "`role_field` must name an enum or string field of `{}`",
                            m.entity.name
                        ),
                        "add e.g. `role: { type: enum, values: [member, admin], default: member }`",
                    );
                }
            }
        }
    }
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for p in &spec.policies {
        let mut sink = Sink { file: &p.file, out };
        let Some(model) = spec.model(&p.entity.name) else {
            sink.error_hint(
                p.entity.pos,
                "unknown-entity",
                format!("there is no entity `{}` for this policy", p.entity.name),
                match diag::did_you_mean(&p.entity.name, entity_names.iter().copied()) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!("entities: {}", entity_names.join(", ")),
                },
            );
            continue;
        };
        if let Some(prev) = seen.insert(&p.entity.name, &p.file) {
            sink.error(
                p.entity.pos,
                "duplicate-name",
                format!("`{}` already has a policy in {prev}", p.entity.name),
            );
        }
        for (name, _) in &p.conditions {
            if model.field(&name.name).is_some() {
                sink.error_hint(
                    name.pos,
                    "duplicate-name",
                    format!("the condition `{}` has the name of a field", name.name),
                    "give the condition another name",
                );
            }
        }
        let field_names: Vec<&str> = model.fields.iter().map(|f| f.name.as_str()).collect();
        for rule in &p.fields {
            match model.field(&rule.field.name) {
                None => sink.error_hint(
                    rule.field.pos,
                    "unknown-field",
                    format!("`{}` has no field `{}`", p.entity.name, rule.field.name),
                    suggest(&rule.field.name, &field_names),
                ),
                Some(f)
                    if rule.on_create.is_some()
                        && !matches!(
                            f.ty,
                            FieldType::Ref
                                | FieldType::Uuid
                                | FieldType::String
                                | FieldType::Email
                                | FieldType::Text
                        ) =>
                {
                    sink.error(
                        rule.field.pos,
                        "bad-preset",
                        format!(
                            "`on_create` presets fit ref, uuid and text fields; `{}` is a {} field",
                            f.name,
                            f.ty.name()
                        ),
                    )
                }
                Some(_) => {}
            }
        }
    }
    if !spec.policies.is_empty() {
        for m in &spec.models {
            if !spec.policies.iter().any(|p| p.entity.name == m.entity.name) {
                let mut sink = Sink { file: &m.file, out };
                sink.warning_hint(
                    m.entity.pos,
                    "no-policy",
                    format!(
                        "`{}` has no policy, so nobody may use it (access is denied by default)",
                        m.entity.name
                    ),
                    format!("add policies/{}.yaml with the rules for it", m.entity.name),
                );
            }
        }
    } else if !spec.models.is_empty()
        && spec.settings.auth.configured()
        && !spec.settings.auth.open_without_policies
    {
        // Fail closed: authentication without any rule would leave every route open,
        // which is what a deleted or misplaced `policies/` folder looks like.
        out.push(Diagnostic {
            severity: Severity::Error,
            code: "no-policies",
            file: "policies".to_string(),
            line: 1,
            column: 1,
            message: "`auth` is configured in trellis.yaml but there are no policy files, so every route would be open to every caller".to_string(),
            hint: Some("write the rules in policies/<entity>.yaml (one file per entity), or, to serve an open API on purpose, set `open_without_policies: true` under `auth` in trellis.yaml".to_string()),
        });
    } else if !spec.models.is_empty() {
        out.push(Diagnostic {
            severity: Severity::Warning,
            code: "no-policies",
            file: "policies".to_string(),
            line: 1,
            column: 1,
            message: "there are no policy files: every entity is open to everyone, without authentication".to_string(),
            hint: Some("add policies/<entity>.yaml files to control access; once one exists, every entity is denied by default".to_string()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals() {
        assert_eq!(pluralize("project"), "projects");
        assert_eq!(pluralize("category"), "categories");
        assert_eq!(pluralize("day"), "days");
        assert_eq!(pluralize("status"), "statuses");
        assert_eq!(pluralize("box"), "boxes");
        assert_eq!(pluralize("match"), "matches");
    }
}
