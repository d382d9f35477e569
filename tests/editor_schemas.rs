//! The editor schemas (`schemas/*.json`, from `spec::schema`) and the loader (`trellis
//! check`) agree: on valid sample files (both accept), on near-miss typos of every fixed
//! key the samples use (both refuse), on values of the wrong type (both refuse, or both
//! accept), and on the cases issue #17 lists. Every key has hover text. Load-time only:
//! no database.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use trellis::spec::{self, Diagnostic, Severity, schema};

// --- the schemas themselves ---

/// Every `properties` entry of `schema`, with its JSON pointer.
fn properties<'a>(schema: &'a Value, at: String, out: &mut Vec<(String, &'a Value)>) {
    match schema {
        Value::Object(o) => {
            for (k, v) in o {
                if k == "properties"
                    && let Some(props) = v.as_object()
                {
                    for (name, sub) in props {
                        out.push((format!("{at}/properties/{name}"), sub));
                    }
                }
                properties(v, format!("{at}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                properties(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_key_of_every_schema_has_a_description() {
    let mut missing = Vec::new();
    let mut with_example = 0;
    for (file, schema) in schema::all_schemas() {
        let mut props = Vec::new();
        properties(&schema, String::new(), &mut props);
        assert!(props.len() >= 3, "{file}");
        for (at, sub) in props {
            // The conditions of if/then are not keys a person writes.
            if at.contains("/if/") {
                continue;
            }
            match sub.get("description").and_then(Value::as_str) {
                Some(d) if d.len() >= 8 => {}
                _ => missing.push(format!("{file}#{at}")),
            }
            if let Some(md) = sub.get("markdownDescription").and_then(Value::as_str) {
                assert!(md.len() > 20, "{file}#{at}: {md}");
                with_example += usize::from(md.contains("```yaml\n"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "keys without a description: {missing:#?}"
    );
    assert!(
        with_example >= 30,
        "only {with_example} keys have an example"
    );
}

/// (That `schemas/` holds them is `tests/openapi.rs::published_schemas_are_current`.)
#[test]
fn every_schema_compiles() {
    for (file, schema) in schema::all_schemas() {
        jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            schema["$id"].as_str().is_some_and(|id| id.ends_with(file)),
            "{file}"
        );
        // No key beside a `$ref`: editors reading draft 7 would drop the hover text.
        let mut stack = vec![&schema];
        while let Some(v) = stack.pop() {
            match v {
                Value::Object(o) => {
                    assert!(!(o.contains_key("$ref") && o.len() > 1), "{file}: {v}");
                    stack.extend(o.values());
                }
                Value::Array(items) => stack.extend(items),
                _ => {}
            }
        }
    }
}

/// The keys the schema offers for a field of each type are the keys the loader accepts.
#[test]
fn field_keys_are_the_loaders() {
    let model = schema::model_schema();
    let variants = model["$defs"]["field"]["else"]["allOf"]
        .as_array()
        .expect("variants");
    for (name, ty) in spec::model::FieldType::ALL {
        let variant = variants
            .iter()
            .find(|v| v["if"]["properties"]["type"]["const"] == name)
            .unwrap_or_else(|| panic!("{name}"));
        let mut offered: Vec<&str> = variant["then"]["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .map(String::as_str)
            .collect();
        let mut accepted = spec::model::field_keys(ty);
        offered.sort_unstable();
        accepted.sort_unstable();
        assert_eq!(offered, accepted, "{name}");
    }
}

// --- sample projects ---

/// A schema's validator, for whole files.
struct Schemas {
    by_kind: HashMap<&'static str, (Value, jsonschema::Validator)>,
}

impl Schemas {
    fn new() -> Schemas {
        let mut by_kind = HashMap::new();
        for (file, schema) in schema::all_schemas() {
            let v = jsonschema::validator_for(&schema).expect(file);
            by_kind.insert(file, (schema, v));
        }
        Schemas { by_kind }
    }

    fn get(&self, kind: &'static str) -> &(Value, jsonschema::Validator) {
        &self.by_kind[kind]
    }
}

/// The schema of a project file, by its path in the project.
fn kind_of(rel: &str) -> Option<&'static str> {
    if rel == "trellis.yaml" {
        Some("trellis.schema.json")
    } else if rel.starts_with("models/") {
        Some("model.schema.json")
    } else if rel.starts_with("policies/") {
        Some("policy.schema.json")
    } else if rel.starts_with("workflows/") {
        Some("workflow.schema.json")
    } else if rel.starts_with("migrations/") {
        Some("migration.schema.json")
    } else {
        None
    }
}

/// A copy of a project's definition files in a temporary folder.
struct Project {
    dir: tempfile::TempDir,
    /// Path in the project -> original text.
    files: BTreeMap<String, String>,
}

impl Project {
    fn copy(from: &Path) -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut files = BTreeMap::new();
        let mut rels = Vec::new();
        if from.join("trellis.yaml").is_file() {
            rels.push(PathBuf::from("trellis.yaml"));
        }
        for sub in ["models", "policies", "workflows", "migrations"] {
            let Ok(entries) = std::fs::read_dir(from.join(sub)) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name.ends_with(".yaml") {
                    rels.push(Path::new(sub).join(name));
                }
            }
        }
        for rel in rels {
            let text = std::fs::read_to_string(from.join(&rel)).expect("read");
            let target = dir.path().join(&rel);
            std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
            std::fs::write(&target, &text).expect("write");
            files.insert(rel.to_string_lossy().replace('\\', "/"), text);
        }
        Project { dir, files }
    }

    /// Errors `trellis check` reports with `rel` holding `text` (and the others their
    /// original text): the definitions', and the migrations' when `rel` is one.
    fn errors_with(&self, rel: &str, text: &str) -> Vec<Diagnostic> {
        let path = self.dir.path().join(rel);
        std::fs::write(&path, text).expect("write");
        let mut diags = if rel.starts_with("migrations/") {
            spec::migration::read_all(self.dir.path()).1
        } else {
            spec::load(self.dir.path()).diagnostics
        };
        std::fs::write(&path, &self.files[rel]).expect("restore");
        diags.retain(|d| d.severity == Severity::Error);
        diags
    }
}

/// The errors of one file read on its own, as `check` reads it first (the project-wide
/// checks come after, and need every file): a quick answer when it already refuses.
fn file_errors(rel: &str, text: &str) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if rel.starts_with("migrations/") {
        return out; // read whole by `Project::errors_with`
    }
    let node = match spec::yaml::parse(text) {
        Ok(n) => n,
        Err(e) => panic!("{rel}: {e:?}"),
    };
    let stem = Path::new(rel)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    let mut sink = spec::diag::Sink {
        file: rel,
        out: &mut out,
    };
    match kind_of(rel) {
        Some("trellis.schema.json") => {
            spec::settings::parse_settings(&mut sink, &node);
        }
        Some("model.schema.json") => {
            spec::model::parse_model(&mut sink, &stem, &node);
        }
        Some("policy.schema.json") => {
            spec::policy::parse_policy(&mut sink, &stem, &node);
        }
        Some("workflow.schema.json") => {
            spec::workflow::parse_workflow(&mut sink, &stem, &node);
        }
        _ => {}
    }
    out.retain(|d| d.severity == Severity::Error);
    out
}

/// `check`'s errors: those of the file alone when it has some, else the whole
/// project's.
fn check_errors(project: &Project, rel: &str, text: &str) -> Vec<Diagnostic> {
    let alone = file_errors(rel, text);
    if alone.is_empty() {
        project.errors_with(rel, text)
    } else {
        alone
    }
}

/// Caches validators of subschemas (with the root's `$defs`), by address.
struct Subschemas<'a> {
    root: &'a Value,
    cache: HashMap<usize, jsonschema::Validator>,
}

impl<'a> Subschemas<'a> {
    fn valid(&mut self, sub: &'a Value, instance: &Value) -> bool {
        let key = sub as *const Value as usize;
        let root = self.root;
        let v = self.cache.entry(key).or_insert_with(|| {
            let mut s = match sub {
                Value::Object(_) => sub.clone(),
                Value::Bool(b) => return jsonschema::validator_for(&json!(b)).expect("bool"),
                _ => json!({}),
            };
            s["$defs"] = root["$defs"].clone();
            jsonschema::validator_for(&s).expect("subschema")
        });
        v.is_valid(instance)
    }

    fn resolve(&self, sub: &'a Value) -> &'a Value {
        match sub.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r.trim_start_matches("#/$defs/");
                &self.root["$defs"][name]
            }
            None => sub,
        }
    }

    /// Every subschema that applies to `instance` (a valid one) under `sub`:
    /// through `$ref`, `allOf`, the valid branches of `anyOf`/`oneOf`, and `then`
    /// when `if` holds.
    fn applicable(&mut self, sub: &'a Value, instance: &Value, out: &mut Vec<&'a Value>) {
        let sub = self.resolve(sub);
        if !sub.is_object() {
            return;
        }
        out.push(sub);
        if let Some(all) = sub.get("allOf").and_then(Value::as_array) {
            for s in all {
                self.applicable(s, instance, out);
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(branches) = sub.get(key).and_then(Value::as_array) {
                for s in branches {
                    if self.valid(s, instance) {
                        self.applicable(s, instance, out);
                    }
                }
            }
        }
        if let Some(cond) = sub.get("if") {
            let branch = if self.valid(cond, instance) {
                sub.get("then")
            } else {
                sub.get("else")
            };
            if let Some(b) = branch {
                self.applicable(b, instance, out);
            }
        }
    }
}

/// A key of a mapping whose keys are fixed (the schema lists them).
struct FixedKey {
    /// The JSON path of the mapping, as keys and indexes.
    path: Vec<PathStep>,
    key: String,
    /// Every key that mapping may have.
    allowed: Vec<String>,
    value: Value,
}

#[derive(Clone, Debug)]
enum PathStep {
    Key(String),
    Index(usize),
}

fn fixed_keys<'a>(
    subs: &mut Subschemas<'a>,
    schema: &'a Value,
    instance: &Value,
    path: Vec<PathStep>,
    out: &mut Vec<FixedKey>,
) {
    let mut here = Vec::new();
    subs.applicable(schema, instance, &mut here);
    match instance {
        Value::Object(map) => {
            // A key some applicable schema lists under `properties` is a fixed key
            // (whether the schema also refuses other keys is what the test checks).
            let mut allowed: Vec<String> = Vec::new();
            for s in &here {
                if let Some(props) = s.get("properties").and_then(Value::as_object) {
                    allowed.extend(props.keys().cloned());
                }
            }
            for (k, v) in map {
                if allowed.contains(k) {
                    out.push(FixedKey {
                        path: path.clone(),
                        key: k.clone(),
                        allowed: allowed.clone(),
                        value: v.clone(),
                    });
                }
                let mut child_path = path.clone();
                child_path.push(PathStep::Key(k.clone()));
                for s in &here {
                    let child = s
                        .get("properties")
                        .and_then(|p| p.get(k))
                        .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()));
                    if let Some(c) = child {
                        fixed_keys(subs, c, v, child_path.clone(), out);
                    }
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let mut child_path = path.clone();
                child_path.push(PathStep::Index(i));
                for s in &here {
                    if let Some(c) = s.get("items").filter(|c| c.is_object()) {
                        fixed_keys(subs, c, v, child_path.clone(), out);
                    }
                }
            }
        }
        _ => {}
    }
}

fn at_path<'v>(doc: &'v mut Value, path: &[PathStep]) -> &'v mut Value {
    let mut cur = doc;
    for step in path {
        cur = match step {
            PathStep::Key(k) => &mut cur[k.as_str()],
            PathStep::Index(i) => &mut cur[*i],
        };
    }
    cur
}

/// The document with `key` of the mapping at `path` renamed to `to` (in place).
fn renamed(doc: &Value, path: &[PathStep], key: &str, to: &str) -> Value {
    let mut doc = doc.clone();
    let target = at_path(&mut doc, path);
    if let Value::Object(map) = target {
        let old = std::mem::take(map);
        let mut new = Map::new();
        for (k, v) in old {
            new.insert(if k == key { to.to_string() } else { k }, v);
        }
        *map = new;
    }
    doc
}

/// The document with the value of `key` at `path` replaced.
fn replaced(doc: &Value, path: &[PathStep], key: &str, value: Value) -> Value {
    let mut doc = doc.clone();
    at_path(&mut doc, path)[key] = value;
    doc
}

/// Near misses of a key: a letter dropped, two neighbours swapped.
fn typos(key: &str) -> Vec<String> {
    let chars: Vec<char> = key.chars().collect();
    let mut out = Vec::new();
    if chars.len() >= 2 {
        let mid = chars.len() / 2;
        let mut dropped = chars.clone();
        dropped.remove(mid);
        out.push(dropped.into_iter().collect());
        let i = mid.saturating_sub(1);
        let mut swapped = chars.clone();
        swapped.swap(i, i + 1);
        out.push(swapped.into_iter().collect());
    }
    out.retain(|t: &String| t != key);
    out.dedup();
    out
}

/// Values of another type than `value`.
fn wrong_types(value: &Value) -> Vec<Value> {
    match value {
        Value::Bool(_) => vec![json!("maybe"), json!({ "x": 1 })],
        Value::Number(_) => vec![json!("many"), json!({ "x": 1 })],
        Value::String(_) => vec![json!(true), json!({ "x": 1 }), json!([[1]])],
        _ => Vec::new(),
    }
}

/// A file as YAML text: JSON is YAML, and the loader reads it the same.
fn as_text(doc: &Value) -> String {
    serde_json::to_string_pretty(doc).expect("json")
}

#[derive(Default)]
struct Tally {
    /// (file kind, key, the keys of its mapping) already tried: one case per key of
    /// each kind of mapping, not per occurrence.
    seen: Vec<(&'static str, String, Vec<String>)>,
    typos: usize,
    wrong_types_refused: usize,
    wrong_types_accepted: usize,
}

fn check_project<'a>(
    from: &Path,
    schemas: &'a Schemas,
    subs: &mut HashMap<&'static str, Subschemas<'a>>,
    tally: &mut Tally,
) {
    let project = Project::copy(from);
    let before = spec::load(project.dir.path());
    let errors: Vec<&Diagnostic> = before.errors().collect();
    assert!(errors.is_empty(), "{}: {errors:#?}", from.display());
    let mut failures = Vec::new();
    for (rel, text) in &project.files {
        let Some(kind) = kind_of(rel) else { continue };
        let (schema, validator) = schemas.get(kind);
        let doc = spec::yaml::parse(text)
            .unwrap_or_else(|e| panic!("{rel}: {e:?}"))
            .to_json();
        // The valid sample passes both, also written as JSON (how the cases below are).
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{rel}: the schema refuses it: {errors:#?}"
        );
        let loaded = project.errors_with(rel, &as_text(&doc));
        assert!(loaded.is_empty(), "{rel} as JSON: {loaded:#?}");

        let subs = subs.entry(kind).or_insert_with(|| Subschemas {
            root: schema,
            cache: HashMap::new(),
        });
        let mut keys = Vec::new();
        fixed_keys(subs, schema, &doc, Vec::new(), &mut keys);
        for fk in keys {
            let mut sig = fk.allowed.clone();
            sig.sort();
            let case = (kind, fk.key.clone(), sig);
            if tally.seen.contains(&case) {
                continue;
            }
            tally.seen.push(case);
            let holder = at_path(&mut doc.clone(), &fk.path).clone();
            for typo in typos(&fk.key) {
                if fk.allowed.contains(&typo) || holder.get(&typo).is_some() {
                    continue;
                }
                tally.typos += 1;
                let bad = renamed(&doc, &fk.path, &fk.key, &typo);
                let where_ = format!("{rel}: `{}` -> `{typo}` at {:?}", fk.key, fk.path);
                if validator.is_valid(&bad) {
                    failures.push(format!("the schema accepts {where_}"));
                }
                let errors = check_errors(&project, rel, &as_text(&bad));
                let named = errors
                    .iter()
                    .any(|d| d.file == *rel && d.message.contains(&format!("`{typo}`")));
                if !named {
                    failures.push(format!(
                        "check does not name the typo in {where_}: {errors:#?}"
                    ));
                }
            }
            for wrong in wrong_types(&fk.value) {
                let bad = replaced(&doc, &fk.path, &fk.key, wrong.clone());
                let by_schema = !validator.is_valid(&bad);
                let errors = check_errors(&project, rel, &as_text(&bad));
                let by_check = !errors.is_empty();
                if by_schema != by_check {
                    failures.push(format!(
                        "{rel}: `{}: {wrong}` at {:?}: the schema {} it, check {} it: {errors:#?}",
                        fk.key,
                        fk.path,
                        if by_schema { "refuses" } else { "accepts" },
                        if by_check { "refuses" } else { "accepts" },
                    ));
                } else if by_schema {
                    tally.wrong_types_refused += 1;
                } else {
                    tally.wrong_types_accepted += 1;
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}:\n{}",
        from.display(),
        failures.join("\n")
    );
}

#[test]
fn typos_and_wrong_types_are_refused_by_both() {
    let schemas = Schemas::new();
    let root = common::repo_root();
    let mut tally = Tally::default();
    let mut subs = HashMap::new();
    // The project `trellis init` writes, laid out from its templates.
    let init = tempfile::tempdir().expect("temp dir");
    for (template, rel) in [
        ("settings.yaml", "trellis.yaml"),
        ("model_task.yaml", "models/task.yaml"),
        ("model_user.yaml", "models/user.yaml"),
        ("policy_task.yaml", "policies/task.yaml"),
        ("policy_user.yaml", "policies/user.yaml"),
        ("workflow_task.yaml", "workflows/task.yaml"),
    ] {
        let text =
            std::fs::read_to_string(root.join("src/cli/init").join(template)).expect(template);
        let path = init.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    for project in [
        root.clone(),
        root.join("examples/helpdesk"),
        root.join("tests/fixtures/editors"),
        root.join("tests/fixtures/editors-keys"),
        init.path().to_path_buf(),
    ] {
        check_project(&project, &schemas, &mut subs, &mut tally);
    }
    // Every key of every schema is tried somewhere.
    let mut untried = Vec::new();
    for (file, schema) in schema::all_schemas() {
        let mut props = Vec::new();
        properties(&schema, String::new(), &mut props);
        for (at, _) in props {
            let key = at.rsplit('/').next().unwrap_or_default().to_string();
            // The workflow's `$defs/field` is the model's, tried there.
            let model_field = file == "workflow.schema.json" && at.starts_with("/$defs/field");
            if !at.contains("/if/")
                && !model_field
                && !tally
                    .seen
                    .iter()
                    .any(|(k, name, _)| *k == file && *name == key)
            {
                untried.push(format!("{file}: {key} ({at})"));
            }
        }
    }
    untried.sort();
    untried.dedup();
    assert!(untried.is_empty(), "keys no sample uses: {untried:#?}");
    eprintln!(
        "{} typos refused by both; wrong types: {} refused by both, {} accepted by both",
        tally.typos, tally.wrong_types_refused, tally.wrong_types_accepted
    );
    assert!(tally.typos > 200, "only {} typo cases", tally.typos);
    assert!(tally.wrong_types_refused > 100);
}

// --- the cases issue #17 lists, and their neighbours ---

const MEMBER: (&str, &str) = (
    "models/member.yaml",
    "entity: member\nfields:\n  email: { type: email, required: true, unique: true }\n  role: { type: enum, values: [client, admin] }\n",
);

/// Whether the schema of `rel` accepts it, and the errors `check` reports for the
/// project made of `files` (`rel` among them).
fn both(files: &[(&str, &str)], rel: &str) -> (Result<(), Vec<String>>, Vec<Diagnostic>) {
    let text = files
        .iter()
        .find(|(p, _)| *p == rel)
        .map(|(_, t)| *t)
        .expect("rel");
    let kind = kind_of(rel).expect("kind");
    let schema = schema::all_schemas()
        .into_iter()
        .find(|(f, _)| *f == kind)
        .expect("schema")
        .1;
    let doc = spec::yaml::parse(text).expect("yaml").to_json();
    let validator = jsonschema::validator_for(&schema).expect("schema");
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    let dir = common::project(files);
    let mut diags = if rel.starts_with("migrations/") {
        spec::migration::read_all(dir.path()).1
    } else {
        spec::load(dir.path()).diagnostics
    };
    diags.retain(|d| d.severity == Severity::Error);
    (
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        },
        diags,
    )
}

/// Both refuse: the schema at `pointer`, `check` with `code` and a hint, at `line` where
/// the text `at` starts.
fn both_refuse(
    files: &[(&str, &str)],
    rel: &str,
    pointer: &str,
    code: &str,
    (line, at): (u32, &str),
) -> Diagnostic {
    let (schema, check) = both(files, rel);
    let errors = schema.expect_err("the schema accepts it");
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(&format!("{pointer}: "))),
        "{pointer}: {errors:#?}"
    );
    let found: Vec<&Diagnostic> = check.iter().filter(|d| d.code == code).collect();
    assert_eq!(found.len(), 1, "one `{code}` in {check:#?}");
    let d = found[0].clone();
    assert_eq!((d.file.as_str(), d.line), (rel, line), "{d}");
    let text = files
        .iter()
        .find(|(p, _)| *p == rel)
        .map(|(_, t)| *t)
        .unwrap_or_default();
    let there: String = text
        .lines()
        .nth(line as usize - 1)
        .unwrap_or_default()
        .chars()
        .skip(d.column as usize - 1)
        .collect();
    // A quoted value's position is its first character inside the quotes.
    let at = at.trim_matches('"');
    assert!(there.starts_with(at), "{d} points at `{there}`, not `{at}`");
    assert!(d.hint.as_deref().is_some_and(|h| h.len() > 10), "{d}");
    d
}

fn both_accept(files: &[(&str, &str)], rel: &str) {
    let (schema, check) = both(files, rel);
    assert_eq!(schema, Ok(()), "{rel}");
    assert!(check.is_empty(), "{rel}: {check:#?}");
}

#[test]
fn a_single_name_is_a_list_of_one_in_both() {
    // `roles: client` (and every other list of names) reads as `[client]`.
    let policy = "entity: member\nrules:\n  - roles: client\n    allow: read\n    deny: delete\n    where: role = client\nfields:\n  role: { read: { roles: admin }, write: { roles: admin } }\ntests:\n  - as: { id: u1, roles: client }\n    expect: { read: allow }\n";
    both_accept(
        &[MEMBER, ("policies/member.yaml", policy)],
        "policies/member.yaml",
    );
    let model = "entity: member\nfields:\n  email: { type: email, required: true, unique: true }\n  role: { type: enum, values: [client, admin] }\n  name: string\nsearch: name\nunique: [email]\nindexes: [role]\n";
    both_accept(&[("models/member.yaml", model)], "models/member.yaml");
    let settings =
        "cors: { origins: \"*\" }\nauth:\n  claims: org\nlimits:\n  trusted_proxies: 127.0.0.1\n";
    both_accept(&[MEMBER, ("trellis.yaml", settings)], "trellis.yaml");
}

#[test]
fn out_of_range_settings_are_errors_in_both_never_clamped() {
    let auth = |users: &str, jwt: &str| {
        format!(
            "auth:\n  jwt: {{ algorithm: HS256, secret_env: S{jwt} }}\n  users: {{ entity: member{users} }}\n"
        )
    };
    let text = auth(", access_ttl: 10", "");
    let d = both_refuse(
        &[MEMBER, ("trellis.yaml", &text)],
        "trellis.yaml",
        "/auth/users/access_ttl",
        "out-of-range",
        (3, "10"),
    );
    assert_eq!(
        d.message,
        "`access_ttl` (seconds) must be from 30 to 86400, not 10"
    );
    assert!(
        d.hint
            .as_deref()
            .unwrap_or_default()
            .contains("access_ttl: 900"),
        "{d}"
    );
    let text = auth(", access_ttl: 100000", "");
    both_refuse(
        &[MEMBER, ("trellis.yaml", &text)],
        "trellis.yaml",
        "/auth/users/access_ttl",
        "out-of-range",
        (3, "100000"),
    );
    let text = auth("", ", leeway: 4000");
    let d = both_refuse(
        &[MEMBER, ("trellis.yaml", &text)],
        "trellis.yaml",
        "/auth/jwt/leeway",
        "out-of-range",
        (2, "4000"),
    );
    assert!(d.message.contains("from 0 to 3600"), "{d}");
    for timeout in ["0", "500"] {
        let text =
            format!("webhooks:\n  crm: {{ url: \"https://example.com\", timeout: {timeout} }}\n");
        let d = both_refuse(
            &[MEMBER, ("trellis.yaml", &text)],
            "trellis.yaml",
            "/webhooks/crm/timeout",
            "out-of-range",
            (2, timeout),
        );
        assert!(d.message.contains("from 1 to 120"), "{d}");
    }
    // The limits' own range, the same in both.
    let text = "limits: { password_hashes: 2000 }\n";
    both_refuse(
        &[MEMBER, ("trellis.yaml", text)],
        "trellis.yaml",
        "/limits/password_hashes",
        "out-of-range",
        (1, "2000"),
    );
    // `files`: the links' and pending uploads' lifetimes, the upload limit.
    for (key, value, range) in [
        ("url_ttl", "0", "from 1 to 86400"),
        ("url_ttl", "86401", "from 1 to 86400"),
        ("pending_ttl", "0", "from 1 to 604800"),
        ("upload_timeout", "0", "from 1 to 86400"),
        ("max_upload", "0", "from 1 byte"),
        // A size with a unit above the limit (`65GiB`) is the loader's to refuse
        // alone: a pattern cannot compare numbers (tests/files_storage.rs).
    ] {
        let text = format!("files:\n  {key}: {value}\n");
        let d = both_refuse(
            &[MEMBER, ("trellis.yaml", &text)],
            "trellis.yaml",
            &format!("/files/{key}"),
            "out-of-range",
            (2, value),
        );
        assert!(d.message.contains(range), "{d}");
    }
    let text = "files:\n  max_upload: \"12 parsecs\"\n";
    both_refuse(
        &[MEMBER, ("trellis.yaml", text)],
        "trellis.yaml",
        "/files/max_upload",
        "invalid-size",
        (2, "\"12 parsecs\""),
    );
    // In range: both accept.
    let text = auth(", access_ttl: 30", ", leeway: 0");
    let (schema, check) = both(&[MEMBER, ("trellis.yaml", &text)], "trellis.yaml");
    assert_eq!(schema, Ok(()));
    assert!(check.iter().all(|d| d.code != "out-of-range"), "{check:#?}");
}

#[test]
fn defaults_are_typed_per_field_type_in_both() {
    let field = |def: &str| format!("entity: task\nfields:\n  f: {def}\n");
    for (def, value) in [
        ("{ type: integer, default: \"abc\" }", "\"abc\""),
        ("{ type: integer, default: 1.5 }", "1.5"),
        ("{ type: number, default: many }", "many"),
        ("{ type: decimal, default: \"NaN\" }", "\"NaN\""),
        ("{ type: decimal, default: \"1e5\" }", "\"1e5\""),
        ("{ type: boolean, default: \"yes\" }", "\"yes\""),
        ("{ type: date, default: 2025-1-5 }", "2025-1-5"),
        ("{ type: date, default: now }", "now"),
        ("{ type: datetime, default: today }", "today"),
        (
            "{ type: datetime, default: \"2025-01-31\" }",
            "\"2025-01-31\"",
        ),
        (
            "{ type: uuid, default: 0190a5b47c1e7d2a9b3f2a1c4e5d6f70 }",
            "0190a5b47c1e",
        ),
        ("{ type: string, default: 5 }", "5"),
        ("{ type: enum, values: [a, b], default: [a] }", "[a]"),
    ] {
        let text = field(def);
        let d = both_refuse(
            &[("models/task.yaml", &text)],
            "models/task.yaml",
            "/fields/f/default",
            "invalid-default",
            (3, value),
        );
        assert!(
            d.hint
                .as_deref()
                .unwrap_or_default()
                .contains("the field's type is"),
            "{d}"
        );
    }
    // A ref takes no default: `default` is not one of its keys, in both.
    let text = "entity: task\nfields:\n  o: { type: ref, to: task, default: x }\n";
    let (schema, check) = both(&[("models/task.yaml", text)], "models/task.yaml");
    assert!(schema.is_err());
    assert!(
        check
            .iter()
            .any(|d| d.code == "key-not-for-type" && d.message.contains("`default`")),
        "{check:#?}"
    );
    // Well-typed defaults: both accept.
    let text = "entity: task\nfields:\n  a: { type: integer, default: 3 }\n  b: { type: decimal, default: \"12.50\" }\n  c: { type: decimal, default: 2 }\n  d: { type: date, default: 2025-01-31 }\n  e: { type: datetime, default: \"2025-01-31T09:00:00+02:00\" }\n  g: { type: json, default: [1, { a: null }] }\n  h: { type: uuid, default: 0190a5b4-7c1e-7d2a-9b3f-2a1c4e5d6f70 }\n  i: { type: enum, values: [x], default: x }\n";
    both_accept(&[("models/task.yaml", text)], "models/task.yaml");
}

#[test]
fn policy_tests_are_typed_in_both() {
    let policy = |test: &str| {
        format!("entity: member\nrules:\n  - {{ roles: admin, allow: read }}\ntests:\n  - {test}\n")
    };
    let text = policy("{ as: { id: u1, claims: 5 }, expect: { read: allow } }");
    both_refuse(
        &[MEMBER, ("policies/member.yaml", &text)],
        "policies/member.yaml",
        "/tests/0/as",
        "wrong-value-type",
        (5, "5"),
    );
    let text = policy("{ as: anonymous, expect: { read: maybe } }");
    both_refuse(
        &[MEMBER, ("policies/member.yaml", &text)],
        "policies/member.yaml",
        "/tests/0/expect/read",
        "unknown-value",
        (5, "maybe"),
    );
    let text = policy("{ as: anonymous, expect: { aggregate: allow } }");
    both_refuse(
        &[MEMBER, ("policies/member.yaml", &text)],
        "policies/member.yaml",
        "/tests/0/expect",
        "unknown-action",
        (5, "aggregate"),
    );
    let text = policy("{ as: anonymous, record: [1], expect: { read: deny } }");
    let (schema, check) = both(
        &[MEMBER, ("policies/member.yaml", &text)],
        "policies/member.yaml",
    );
    assert!(
        schema.is_err() && check.iter().any(|d| d.code == "wrong-value-type"),
        "{check:#?}"
    );
    let text = policy(
        "{ as: { id: u1, roles: [admin] }, setup: { member: { $id: m, email: a@b.example } }, record: { email: c@d.example }, change: { role: admin }, expect: { read: allow, read.email: allow } }",
    );
    both_accept(
        &[MEMBER, ("policies/member.yaml", &text)],
        "policies/member.yaml",
    );
}

#[test]
fn migration_files_have_a_schema_and_check_agrees() {
    let good = "migration: 0001_initial\nsteps:\n  - create the entity `member`\ndefinitions:\n  models/member.yaml: |\n    entity: member\n    fields:\n      email: email\n";
    both_accept(
        &[("migrations/0001_initial.yaml", good)],
        "migrations/0001_initial.yaml",
    );
    let text = good.replace(
        "steps:\n  - create the entity `member`\n",
        "steps: create\n",
    );
    let (schema, check) = both(
        &[("migrations/0001_initial.yaml", &text)],
        "migrations/0001_initial.yaml",
    );
    assert!(
        schema.is_err() && check.iter().any(|d| d.message.contains("`steps`")),
        "{check:#?}"
    );
    let text = good.replace("migration: 0001_initial", "migration: 0002_other");
    let (_, check) = both(
        &[("migrations/0001_initial.yaml", &text)],
        "migrations/0001_initial.yaml",
    );
    assert!(
        check
            .iter()
            .any(|d| d.message.contains("`0001_initial`") && d.line == 1),
        "{check:#?}"
    );
    // What `migrate plan` writes points editors to the schema; that line is not part
    // of the checksum, so adding it to an applied migration is not an edit.
    let rendered = spec::migration::render("0001_initial", "now", &[], &[], &BTreeMap::new());
    assert!(
        rendered.starts_with(spec::migration::SCHEMA_LINE),
        "{rendered}"
    );
    let body = b"migration: x\n";
    let with = [spec::migration::SCHEMA_LINE.as_bytes(), b"\n", body].concat();
    assert_eq!(
        spec::migration::checksum(spec::migration::without_schema_line(&with)),
        spec::migration::checksum(body)
    );
    // Attack: a line hidden after a lone `\r` (a line break to YAML) still counts.
    let hidden = b"# yaml-language-server: $schema=x\rsteps: [changed]\nmigration: x\n";
    assert_eq!(
        spec::migration::without_schema_line(hidden),
        b"steps: [changed]\nmigration: x\n"
    );
    let crlf = b"# yaml-language-server: $schema=x\r\nmigration: x\n";
    assert_eq!(
        spec::migration::without_schema_line(crlf),
        b"migration: x\n"
    );
}

/// Disagreements found while writing the schemas, each now refused by both. (What a
/// JSON Schema cannot say stays `check`'s alone: a date that is not in the calendar, a
/// field or entity that does not exist, `min` above `max`.)
#[test]
fn other_cases_are_refused_by_both() {
    let cases: [(&str, &str); 9] = [
        (
            "trellis.yaml",
            "cors: { origins: [\"http://localhost:5173/app\"] }\n",
        ),
        (
            "trellis.yaml",
            "limits: { trusted_proxies: [proxy.internal] }\n",
        ),
        ("trellis.yaml", "auth: { jwt: { algorithm: RS256 } }\n"),
        ("trellis.yaml", "auth: { jwt: { issuer: me } }\n"),
        (
            "models/task.yaml",
            "entity: task\nfields:\n  n: { type: integer, min: 1.5 }\n",
        ),
        (
            "models/task.yaml",
            "entity: task\nfields:\n  j: { type: json, unique: true }\n",
        ),
        (
            "models/task.yaml",
            "entity: task\nfields:\n  s: { type: enum, values: [a, a] }\n",
        ),
        (
            "models/task.yaml",
            "entity: task\nfields:\n  s: { type: enum, values: [] }\n",
        ),
        (
            "workflows/task.yaml",
            "entity: task\nfield: status\ninitial: a\nstates: { a: {}, b: {} }\ntransitions:\n  go: { from: a, to: b, input: { who: { type: many, of: task } } }\n",
        ),
    ];
    let task = (
        "models/task.yaml",
        "entity: task\nfields:\n  status: { type: enum, values: [a, b] }\n",
    );
    for (rel, text) in cases {
        let mut files = vec![(rel, text)];
        if rel != "models/task.yaml" {
            files.push(task);
        }
        let (schema, check) = both(&files, rel);
        assert!(schema.is_err(), "the schema accepts {rel}: {text}");
        assert!(
            check.iter().any(|d| d.file == rel),
            "check accepts {rel}: {text}\n{check:#?}"
        );
    }
}
