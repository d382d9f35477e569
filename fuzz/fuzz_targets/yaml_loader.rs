//! The project loader on arbitrary bytes taken as one YAML file of the
//! repository's root project. Mirrors `tests/input_props.rs::yaml_loading_never_panics`
//! and goes further:
//!
//! 1. `spec::load_model_text` (the loader's own text-level entry point: YAML → `Node`
//!    → `parse_model`, parse errors turned into diagnostics);
//! 2. the same `Node` read as a policy (`parse_policy`), a workflow
//!    (`parse_workflow`) and `trellis.yaml` (`parse_settings`), as `spec::load`
//!    would read the text in `policies/`, `workflows/` or the project root;
//! 3. for each kind, the cross-file checks `spec::load` runs (`check_project`,
//!    `workflow::check_workflows`) on the root project with the file put in or
//!    replacing the one of the same entity: all in memory;
//! 4. when all of that reports no error, the real thing: the file is written into a
//!    copy of the root project on tmpfs, `spec::load` reads the folder (adding the
//!    private policy checks) and, if it has no errors either, `Engine::build` compiles
//!    it (JSON Schemas, access rules, workflows, OpenAPI). A project the loader
//!    accepts must build or be refused with an error, never panic.
//!
//! Property: no panic, no hang; every step returns a value (diagnostics, `Ok`/`Err`).
//! Bytes that are not UTF-8 are skipped: the loader refuses them before parsing
//! ("the file is not UTF-8 text").
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use trellis::engine::Engine;
use trellis::spec::diag::Sink;
use trellis::spec::{self, Diagnostic, Severity, Spec, policy, settings, workflow, yaml};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The repository's root project, read once.
fn root_spec() -> &'static Spec {
    static ROOT: OnceLock<Spec> = OnceLock::new();
    ROOT.get_or_init(|| {
        let loaded = spec::load(&repo_root());
        assert!(!loaded.has_errors(), "the root project loads without errors");
        loaded.spec
    })
}

/// A private copy of the root project's files on tmpfs, for step 4. The folder is
/// `$TRELLIS_FUZZ_TMP/<pid>` (run.sh sets and removes `TRELLIS_FUZZ_TMP`), else
/// `/dev/shm/trellis-fuzz-<pid>` (or the temp dir when there is no /dev/shm).
fn scratch_project() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let pid = std::process::id();
        let dir = match std::env::var_os("TRELLIS_FUZZ_TMP") {
            Some(base) => PathBuf::from(base).join(pid.to_string()),
            None if Path::new("/dev/shm").is_dir() => {
                PathBuf::from(format!("/dev/shm/trellis-fuzz-{pid}"))
            }
            None => std::env::temp_dir().join(format!("trellis-fuzz-{pid}")),
        };
        let _ = std::fs::remove_dir_all(&dir);
        let root = repo_root();
        for folder in ["models", "policies", "workflows"] {
            std::fs::create_dir_all(dir.join(folder)).expect("scratch folder");
            for entry in std::fs::read_dir(root.join(folder)).expect("root project folder") {
                let path = entry.expect("entry").path();
                if path.is_file() {
                    std::fs::copy(&path, dir.join(folder).join(path.file_name().unwrap()))
                        .expect("copy");
                }
            }
        }
        std::fs::copy(root.join("trellis.yaml"), dir.join("trellis.yaml")).expect("copy");
        dir
    })
}

fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(|d| d.severity == Severity::Error)
}

/// The `entity:` the text declares, if it is a plain name (used as the file name).
fn declared_entity(node: &yaml::Node) -> Option<&str> {
    let name = node
        .as_map()?
        .iter()
        .find(|(k, _)| k.name == "entity")?
        .1
        .as_str()?;
    let plain = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    plain.then_some(name)
}

/// Steps 3 and 4 for one kind of file, once `spec` holds it.
fn check_and_build(spec: &Spec, own: &[Diagnostic], rel_path: &str, text: &str) {
    let mut out = own.to_vec();
    spec::check_project(spec, &mut out);
    workflow::check_workflows(spec, &mut out);
    for d in &out {
        let _ = d.to_string();
    }
    if has_errors(&out) {
        return;
    }
    // Step 4: through the files, as `trellis check` and `trellis serve` do.
    let dir = scratch_project();
    let path = dir.join(rel_path);
    let original = std::fs::read(&path).ok();
    std::fs::write(&path, text).expect("write the fuzzed file");
    let loaded = spec::load(dir);
    if !loaded.has_errors() {
        let _ = Engine::build(&loaded);
    }
    match original {
        Some(bytes) => std::fs::write(&path, bytes).expect("restore"),
        None => std::fs::remove_file(&path).expect("remove"),
    }
}

fuzz_target!(|data: &[u8]| {
    let root = root_spec();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    let node = match yaml::parse(text) {
        Ok(node) => node,
        Err(_) => {
            // Step 1 for text that is not YAML: the error becomes a diagnostic.
            let _ = spec::load_model_text("models/thing.yaml", text);
            return;
        }
    };
    // The file name the text asks for (`entity: x` lives in `models/x.yaml`), so
    // that a well-formed file reaches the cross-file checks.
    let stem = declared_entity(&node).unwrap_or("thing").to_string();

    // Step 1: the text-level entry point, as the property test calls it.
    let file = format!("models/{stem}.yaml");
    let (model, own) = spec::load_model_text(&file, text);
    if let Some(model) = model {
        let mut spec = root.clone();
        spec.models.retain(|m| m.entity.name != model.entity.name);
        spec.models.push(model);
        check_and_build(&spec, &own, &file, text);
    }

    // As a policy file.
    let file = format!("policies/{stem}.yaml");
    let mut own = Vec::new();
    let parsed = policy::parse_policy(&mut Sink { file: &file, out: &mut own }, &stem, &node);
    if let Some(p) = parsed {
        let mut spec = root.clone();
        spec.policies.retain(|q| q.entity.name != p.entity.name);
        spec.policies.push(p);
        check_and_build(&spec, &own, &file, text);
    }

    // As a workflow file.
    let file = format!("workflows/{stem}.yaml");
    let mut own = Vec::new();
    let parsed = workflow::parse_workflow(&mut Sink { file: &file, out: &mut own }, &stem, &node);
    if let Some(w) = parsed {
        let mut spec = root.clone();
        spec.workflows.retain(|v| v.entity.name != w.entity.name);
        spec.workflows.push(w);
        check_and_build(&spec, &own, &file, text);
    }

    // As trellis.yaml.
    let file = "trellis.yaml";
    let mut own = Vec::new();
    let parsed = settings::parse_settings(&mut Sink { file, out: &mut own }, &node);
    let mut spec = root.clone();
    spec.settings = parsed;
    check_and_build(&spec, &own, file, text);
});
