//! One test per diagnostic kind: the right file, line, column and code, and a hint a
//! person can act on. Loading never stops at the first problem.

mod common;

use trellis::spec::{self, Diagnostic, Severity};

/// Loads a project made of the given files and returns its diagnostics.
fn diags(files: &[(&str, &str)]) -> Vec<Diagnostic> {
    let dir = common::project(files);
    spec::load(dir.path())
        .diagnostics
        .into_iter()
        .filter(|d| d.code != "no-policies")
        .collect()
}

/// Diagnostics of the whole build: the spec's, then the compiled policies'.
fn all_diags(files: &[(&str, &str)]) -> Vec<Diagnostic> {
    let dir = common::project(files);
    let loaded = spec::load(dir.path());
    let mut out: Vec<Diagnostic> = loaded.diagnostics.clone();
    if !loaded.has_errors()
        && let Err(trellis::engine::Error::Diagnostics(more)) =
            trellis::engine::Engine::build(&loaded)
    {
        out.extend(more);
    }
    out
}

/// The one diagnostic with `code`, failing if there is not exactly one.
fn only<'a>(all: &'a [Diagnostic], code: &str) -> &'a Diagnostic {
    let found: Vec<&Diagnostic> = all.iter().filter(|d| d.code == code).collect();
    assert_eq!(found.len(), 1, "expected one `{code}` in {all:#?}");
    found[0]
}

fn at(d: &Diagnostic, file: &str, line: u32, column: u32) {
    assert_eq!(
        (d.file.as_str(), d.line, d.column),
        (file, line, column),
        "{d}"
    );
}

const ORG: (&str, &str) = (
    "models/organization.yaml",
    "entity: organization\nfields:\n  name: { type: string, required: true }\n",
);

#[test]
fn a_clean_project_has_no_diagnostics() {
    let d = diags(&[ORG]);
    assert!(d.is_empty(), "{d:#?}");
}

#[test]
fn the_repository_projects_are_clean() {
    for dir in ["", "examples/helpdesk"] {
        let loaded = spec::load(&common::repo_root().join(dir));
        let serious: Vec<_> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.code != "no-policies")
            .collect();
        assert!(serious.is_empty(), "{dir}: {serious:#?}");
        assert!(trellis::engine::Engine::build(&loaded).is_ok(), "{dir}");
        assert!(!loaded.spec.models.is_empty(), "{dir} has models");
    }
}

#[test]
fn misspelt_keys_get_did_you_mean() {
    let d = diags(&[("models/task.yaml", "entity: task\nfeilds:\n  x: string\n")]);
    let unknown = only(&d, "unknown-key");
    at(unknown, "models/task.yaml", 2, 1);
    assert_eq!(unknown.hint.as_deref(), Some("did you mean `fields`?"));
    assert_eq!(unknown.severity, Severity::Error);

    let d = diags(&[(
        "models/task.yaml",
        "entity: task\nfields:\n  title: { type: string, requird: true }\n",
    )]);
    let unknown = only(&d, "unknown-key");
    at(unknown, "models/task.yaml", 3, 26);
    assert_eq!(unknown.hint.as_deref(), Some("did you mean `required`?"));
}

#[test]
fn keys_that_belong_to_another_type() {
    let d = diags(&[(
        "models/task.yaml",
        "entity: task\nfields:\n  done: { type: boolean, values: [a] }\n",
    )]);
    let wrong = only(&d, "key-not-for-type");
    at(wrong, "models/task.yaml", 3, 26);
    assert!(wrong.hint.as_deref().unwrap().contains("enum"));
}

#[test]
fn unknown_types_list_the_valid_ones() {
    let d = diags(&[(
        "models/task.yaml",
        "entity: task\nfields:\n  title: { type: strng }\n  count: int\n",
    )]);
    let types: Vec<&Diagnostic> = d.iter().filter(|d| d.code == "unknown-type").collect();
    assert_eq!(types.len(), 2, "{d:#?}");
    at(types[0], "models/task.yaml", 3, 18);
    assert!(
        types[0]
            .hint
            .as_deref()
            .unwrap()
            .starts_with("did you mean `string`?")
    );
    at(types[1], "models/task.yaml", 4, 10);
    assert!(
        types[1]
            .hint
            .as_deref()
            .unwrap()
            .starts_with("did you mean `integer`?")
    );
}

#[test]
fn references_to_unknown_entities() {
    let d = diags(&[
        ORG,
        (
            "models/project.yaml",
            "entity: project\nfields:\n  client: { type: ref, to: organisation }\n  tags: { type: many, of: tag }\n",
        ),
    ]);
    let unknown: Vec<&Diagnostic> = d.iter().filter(|d| d.code == "unknown-entity").collect();
    assert_eq!(unknown.len(), 2, "{d:#?}");
    at(unknown[0], "models/project.yaml", 3, 28);
    assert_eq!(
        unknown[0].hint.as_deref(),
        Some("did you mean `organization`?")
    );
    at(unknown[1], "models/project.yaml", 4, 27);
    assert!(
        unknown[1]
            .hint
            .as_deref()
            .unwrap()
            .contains("models/tag.yaml")
    );
}

#[test]
fn inverse_without_a_matching_ref() {
    let d = diags(&[
        (
            "models/organization.yaml",
            "entity: organization\nfields:\n  name: string\n  projects: { type: inverse, of: project, via: owner }\n",
        ),
        (
            "models/project.yaml",
            "entity: project\nfields:\n  client: { type: ref, to: organization }\n",
        ),
    ]);
    let inv = only(&d, "inverse-without-ref");
    at(inv, "models/organization.yaml", 4, 48);
    assert!(inv.hint.as_deref().unwrap().contains("`client`"), "{inv}");

    // `via` names a field that is not a ref back.
    let d = diags(&[
        (
            "models/organization.yaml",
            "entity: organization\nfields:\n  name: string\n  projects: { type: inverse, of: project, via: title }\n",
        ),
        (
            "models/project.yaml",
            "entity: project\nfields:\n  title: string\n",
        ),
    ]);
    let inv = only(&d, "inverse-without-ref");
    assert!(inv.message.contains("is not a ref"), "{inv}");
}

#[test]
fn duplicate_and_reserved_names() {
    let d = diags(&[(
        "models/task.yaml",
        "entity: task\nfields:\n  title: string\n  title: text\n",
    )]);
    let dup = only(&d, "duplicate-key");
    at(dup, "models/task.yaml", 4, 3);
    assert!(dup.message.contains("`title` appears twice"), "{dup}");

    let d = diags(&[(
        "models/task.yaml",
        "entity: task\nfields:\n  id: string\n  created_at: datetime\n",
    )]);
    let reserved: Vec<&Diagnostic> = d.iter().filter(|d| d.code == "reserved-name").collect();
    assert_eq!(reserved.len(), 2);
    at(reserved[0], "models/task.yaml", 3, 3);

    // Two entities on one route.
    let d = diags(&[
        (
            "models/person.yaml",
            "entity: person\nplural: people\nfields:\n  name: string\n",
        ),
        (
            "models/people.yaml",
            "entity: people\nplural: people\nfields:\n  name: string\n",
        ),
    ]);
    let route = only(&d, "duplicate-route");
    assert!(route.message.contains("/api/people"));

    // Duplicate enum values.
    let d = diags(&[(
        "models/task.yaml",
        "entity: task\nfields:\n  s: { type: enum, values: [a, b, a] }\n",
    )]);
    at(only(&d, "duplicate-name"), "models/task.yaml", 3, 35);
}

#[test]
fn invalid_identifiers_suggest_snake_case() {
    let d = diags(&[(
        "models/task.yaml",
        "entity: task\nfields:\n  DueDate: date\n  due-time: datetime\n",
    )]);
    let bad: Vec<&Diagnostic> = d
        .iter()
        .filter(|d| d.code == "invalid-identifier")
        .collect();
    assert_eq!(bad.len(), 2, "{d:#?}");
    at(bad[0], "models/task.yaml", 3, 3);
    assert!(bad[0].hint.as_deref().unwrap().contains("`due_date`"));
    assert!(bad[1].hint.as_deref().unwrap().contains("`due_time`"));
}

#[test]
fn entity_name_must_match_the_file() {
    let d = diags(&[("models/task.yaml", "entity: todo\nfields:\n  x: string\n")]);
    let m = only(&d, "entity-name-mismatch");
    at(m, "models/task.yaml", 1, 9);
    assert!(m.hint.as_deref().unwrap().contains("todo.yaml"));
    let d = diags(&[("models/task.yaml", "fields:\n  x: string\n")]);
    assert!(
        only(&d, "missing-key")
            .hint
            .as_deref()
            .unwrap()
            .contains("entity: task")
    );
}

#[test]
fn enum_default_outside_values() {
    let d = diags(&[(
        "models/task.yaml",
        "entity: task\nfields:\n  status: { type: enum, values: [todo, done], default: doing }\n",
    )]);
    let e = only(&d, "enum-default-not-in-values");
    at(e, "models/task.yaml", 3, 56);
    assert!(e.hint.as_deref().unwrap().contains("`todo`"));
}

#[test]
fn defaults_of_the_wrong_type() {
    let d = diags(&[(
        "models/task.yaml",
        "entity: task\nfields:\n  n: { type: integer, default: many }\n  due: { type: date, default: 2025-02-30 }\n  at: { type: datetime, default: now }\n",
    )]);
    let bad: Vec<&Diagnostic> = d.iter().filter(|d| d.code == "invalid-default").collect();
    assert_eq!(bad.len(), 2, "{d:#?}");
    at(bad[0], "models/task.yaml", 3, 32);
    at(bad[1], "models/task.yaml", 4, 31);
}

#[test]
fn min_greater_than_max() {
    let d = diags(&[(
        "models/task.yaml",
        "entity: task\nfields:\n  title: { type: string, min: 10, max: 5 }\n",
    )]);
    at(only(&d, "min-greater-than-max"), "models/task.yaml", 3, 31);
}

#[test]
fn invalid_regex_patterns() {
    let d = diags(&[(
        "models/task.yaml",
        "entity: task\nfields:\n  code: { type: string, pattern: '([A-Z' }\n",
    )]);
    let p = only(&d, "invalid-pattern");
    at(p, "models/task.yaml", 3, 34);
    assert!(p.message.contains("not a valid regular expression"));
}

#[test]
fn unknown_fields_in_indexes_unique_and_search() {
    let d = diags(&[(
        "models/task.yaml",
        "entity: task\nfields:\n  title: string\n  done: boolean\nindexes:\n  - [titel]\nunique:\n  - [title, dne]\nsearch: [done]\n",
    )]);
    let unknown: Vec<&Diagnostic> = d.iter().filter(|d| d.code == "unknown-field").collect();
    assert_eq!(unknown.len(), 2, "{d:#?}");
    at(unknown[0], "models/task.yaml", 6, 6);
    assert_eq!(unknown[0].hint.as_deref(), Some("did you mean `title`?"));
    at(unknown[1], "models/task.yaml", 8, 13);
    at(only(&d, "bad-search-field"), "models/task.yaml", 9, 10);
}

#[test]
fn wrong_value_types() {
    let d = diags(&[(
        "models/task.yaml",
        "entity: task\nfields:\n  title: { type: string, required: yes please }\n  n: { type: integer, max: lots }\n",
    )]);
    let wrong: Vec<&Diagnostic> = d.iter().filter(|d| d.code == "wrong-value-type").collect();
    assert_eq!(wrong.len(), 2, "{d:#?}");
    at(wrong[0], "models/task.yaml", 3, 36);
    at(wrong[1], "models/task.yaml", 4, 28);
}

#[test]
fn yaml_syntax_errors_and_bombs_are_diagnostics() {
    let d = diags(&[(
        "models/task.yaml",
        "entity: task\nfields:\n  title: { type: string\n",
    )]);
    let e = only(&d, "yaml-syntax");
    assert_eq!(e.file, "models/task.yaml");
    assert!(e.line >= 3, "{e}");

    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let d = diags(&[("models/bomb.yaml", &bomb)]);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert!(
        d[0].code == "yaml-too-complex" || d[0].code == "yaml-syntax",
        "{d:#?}"
    );
}

#[test]
fn every_problem_in_every_file_at_once() {
    let d = diags(&[
        (
            "models/a.yaml",
            "entity: a\nfields:\n  x: { type: strin }\n  y: { type: ref, to: nothing }\n",
        ),
        (
            "models/b.yaml",
            "entity: b\nfields:\n  Z: string\n  w: { type: integer, min: 3, max: 1 }\n",
        ),
        ("trellis.yaml", "nam: x\n"),
    ]);
    let codes: Vec<(&str, &str)> = d.iter().map(|d| (d.file.as_str(), d.code)).collect();
    assert_eq!(
        codes,
        [
            ("models/a.yaml", "unknown-type"),
            ("models/a.yaml", "unknown-entity"),
            ("models/b.yaml", "invalid-identifier"),
            ("models/b.yaml", "min-greater-than-max"),
            ("trellis.yaml", "unknown-key"),
        ]
    );
}

#[test]
fn settings_are_checked() {
    let d = diags(&[
        ORG,
        (
            "trellis.yaml",
            "name: X\ncors: { origins: [localhost:5173] }\ndatabase: { uri: x }\n",
        ),
    ]);
    at(only(&d, "invalid-origin"), "trellis.yaml", 2, 19);
    let unknown = only(&d, "unknown-key");
    at(unknown, "trellis.yaml", 3, 13);
    assert_eq!(unknown.hint.as_deref(), Some("did you mean `url`?"));
}

#[test]
fn warnings_for_missing_models_and_unsupported_files() {
    // Workflows are loaded now; a file there that is not YAML is ignored, with a
    // warning, like anywhere else.
    let d = diags(&[("workflows/notes.txt", "ideas"), ("models/notes.txt", "x")]);
    assert!(d.iter().all(|d| d.severity == Severity::Warning), "{d:#?}");
    only(&d, "no-models");
    assert!(d.iter().all(|d| d.code != "not-yet-supported"), "{d:#?}");
    let mut ignored: Vec<&str> = d
        .iter()
        .filter(|d| d.code == "ignored-file")
        .map(|d| d.file.as_str())
        .collect();
    ignored.sort();
    assert_eq!(
        ignored,
        ["models/notes.txt", "workflows/notes.txt"],
        "{d:#?}"
    );
    assert_eq!(d.len(), 3, "{d:#?}");
}

const TASK: (&str, &str) = (
    "models/task.yaml",
    "entity: task\nfields:\n  title: string\n  owner: uuid\n  done: boolean\n",
);

#[test]
fn policy_files_are_checked() {
    let d = diags(&[
        TASK,
        (
            "policies/task.yaml",
            "entity: task\nrules:\n  - name: r\n    roles: [member]\n    allow: [lst, read]\nfields:\n  titel: { write: never }\n  owner: { on_create: owner }\n",
        ),
    ]);
    let action = only(&d, "unknown-action");
    at(action, "policies/task.yaml", 5, 13);
    assert!(
        action
            .hint
            .as_deref()
            .unwrap()
            .contains("did you mean `list`?")
    );
    let field = only(&d, "unknown-field");
    at(field, "policies/task.yaml", 7, 3);
    assert_eq!(field.hint.as_deref(), Some("did you mean `title`?"));
    at(only(&d, "unknown-value"), "policies/task.yaml", 8, 23);
}

#[test]
fn policy_conditions_are_checked_against_the_model() {
    let d = all_diags(&[
        TASK,
        (
            "policies/task.yaml",
            "entity: task\nconditions:\n  mine: owner = user.id\n  loop: loop\nrules:\n  - roles: [member]\n    allow: [read]\n    where: titel = 'x'\n  - roles: [member]\n    allow: [list]\n    where: owner = user.org\n",
        ),
    ]);
    let conds: Vec<&Diagnostic> = d.iter().filter(|d| d.code == "invalid-condition").collect();
    assert_eq!(conds.len(), 3, "{d:#?}");
    // The cycle, the misspelt field (with its column inside the condition), the claim.
    assert!(
        conds[0].message.contains("refers to itself"),
        "{}",
        conds[0]
    );
    at(conds[1], "policies/task.yaml", 8, 12);
    assert_eq!(conds[1].hint.as_deref(), Some("did you mean `title`?"));
    at(conds[2], "policies/task.yaml", 11, 20);
    assert!(conds[2].message.contains("user.org"), "{}", conds[2]);
}

#[test]
fn entities_without_a_policy_are_reported() {
    let d = diags(&[
        TASK,
        ("models/note.yaml", "entity: note\nfields:\n  body: text\n"),
        (
            "policies/task.yaml",
            "entity: task\nrules:\n  - roles: [admin]\n    allow: ['*']\n",
        ),
    ]);
    let w = only(&d, "no-policy");
    assert_eq!(w.file, "models/note.yaml");
    assert_eq!(w.severity, Severity::Warning);
    let dir = common::project(&[TASK]);
    let open = spec::load(dir.path());
    assert!(
        open.diagnostics
            .iter()
            .any(|d| d.code == "no-policies" && d.severity == Severity::Warning)
    );
}

#[test]
fn auth_settings_are_checked() {
    let d = diags(&[
        TASK,
        (
            "trellis.yaml",
            "auth:\n  jwt: { algorithm: HS265 }\n  users: { entity: tsk }\n",
        ),
    ]);
    assert!(
        d.iter().any(
            |x| x.code == "unknown-value" && x.hint.as_deref() == Some("did you mean `HS256`?")
        ),
        "{d:#?}"
    );
    assert!(
        d.iter()
            .any(|x| x.code == "missing-key" && x.message.contains("secret_env")),
        "{d:#?}"
    );
    let unknown = only(&d, "unknown-entity");
    assert_eq!(unknown.hint.as_deref(), Some("did you mean `task`?"));
    let d = diags(&[
        TASK,
        (
            "trellis.yaml",
            "auth:\n  jwt: { algorithm: HS256, secret_env: S }\n  users: { entity: task }\n",
        ),
    ]);
    only(&d, "users-need-email");
}
