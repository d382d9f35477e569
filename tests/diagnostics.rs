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

    // `expand` holds a record's expanded relations: not a field name.
    let d = diags(&[(
        "models/task.yaml",
        "entity: task\nfields:\n  title: string\n  expand: { type: string, required: true }\n",
    )]);
    let expand = only(&d, "reserved-name");
    at(expand, "models/task.yaml", 4, 3);
    assert_eq!(expand.message, "`expand` is a reserved field name");
    assert!(
        expand
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("expanded relations")),
        "{expand}"
    );

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
    at(p, "models/task.yaml", 3, 35);
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
fn descending_fields_in_indexes_only() {
    let d = diags(&[(
        "models/task.yaml",
        "entity: task\nfields:\n  title: string\n  done: boolean\nindexes:\n  - [done, -title, id]\nunique:\n  - [-title]\n",
    )]);
    // `-title` is a descending index column; in `unique` it names no field.
    let unknown = only(&d, "unknown-field");
    at(unknown, "models/task.yaml", 8, 6);
    assert!(unknown.message.contains("-title"), "{unknown:?}");
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
fn limits_are_checked() {
    let d = diags(&[
        ORG,
        (
            "trellis.yaml",
            "limits:\n  requests: { per_second: 0, burts: 3 }\n  trusted_proxies: [10.0.0.0/33, \"::1\", proxy.local]\n  password_hashes: many\n  streams: { per_principal: 5, total: -1 }\n  signup: { per_minute: 10 }\n",
        ),
    ]);
    let codes: Vec<&str> = d.iter().map(|d| d.code).collect();
    assert_eq!(codes.len(), 6, "{d:#?}");
    let unknown = only(&d, "unknown-key");
    at(unknown, "trellis.yaml", 2, 30);
    assert_eq!(unknown.hint.as_deref(), Some("did you mean `burst`?"));
    let bad: Vec<&Diagnostic> = d.iter().filter(|d| d.code == "invalid-address").collect();
    assert_eq!(bad.len(), 2, "{d:#?}");
    at(bad[0], "trellis.yaml", 3, 21);
    assert!(bad[1].message.contains("proxy.local"), "{}", bad[1]);
    let ranges: Vec<&Diagnostic> = d.iter().filter(|d| d.code == "out-of-range").collect();
    assert_eq!(ranges.len(), 2, "{d:#?}");
    assert!(ranges[0].message.contains("per_second"), "{}", ranges[0]);
    assert!(
        ranges[1].message.contains("`limits.streams.total`"),
        "{}",
        ranges[1]
    );
    at(only(&d, "wrong-value-type"), "trellis.yaml", 4, 20);
    // The good ones are read.
    let dir = common::project(&[
        ORG,
        (
            "trellis.yaml",
            "limits:\n  requests: { per_minute: 90 }\n  trusted_proxies: [10.0.0.0/8]\n  password_hashes: 2\n",
        ),
    ]);
    let loaded = spec::load(dir.path());
    let limits = &loaded.spec.settings.limits;
    assert_eq!(limits.requests_per_minute, 90);
    assert_eq!(limits.requests_burst, 3, "two seconds' worth");
    assert_eq!(limits.password_hashes, 2);
    assert!(limits.trusted_proxies[0].contains("10.9.8.7".parse().unwrap()));
    assert!(!limits.trusted_proxies[0].contains("11.0.0.1".parse().unwrap()));
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

// Workflows.

const PROJECT: (&str, &str) = (
    "models/project.yaml",
    "entity: project\nfields:\n  title: { type: string, required: true }\n  budget: decimal\n  priority: integer\n  tags: { type: many, of: tag }\n  status: { type: enum, values: [draft, open, closed] }\n",
);
const TAG: (&str, &str) = ("models/tag.yaml", "entity: tag\nfields:\n  name: string\n");

/// The head of a valid workflow of `project` (lines 1 to 8); transitions follow.
const WF_HEAD: &str = "entity: project\nfield: status\ninitial: draft\nstates:\n  draft: {}\n  open: {}\n  closed: { final: true }\ntransitions:\n";
/// Two transitions that make the head a valid workflow (lines 9 to 14).
const WF_MOVES: &str = "  publish:\n    from: draft\n    to: open\n  close:\n    from: [draft, open]\n    to: closed\n";

/// A project with the `project` model, a tag, and this workflow file.
fn wf_diags(workflow: &str, more: &[(&str, &str)]) -> Vec<Diagnostic> {
    let mut files = vec![PROJECT, TAG, ("workflows/project.yaml", workflow)];
    files.extend_from_slice(more);
    diags(&files)
}

fn hint(d: &Diagnostic) -> &str {
    d.hint
        .as_deref()
        .unwrap_or_else(|| panic!("no hint on {d}"))
}

#[test]
fn a_clean_workflow_has_no_diagnostics() {
    let d = wf_diags(&format!("{WF_HEAD}{WF_MOVES}"), &[]);
    assert!(d.is_empty(), "{d:#?}");
}

#[test]
fn a_workflow_for_an_unknown_entity() {
    let d = diags(&[
        PROJECT,
        TAG,
        (
            "workflows/projekt.yaml",
            &format!(
                "{}{WF_MOVES}",
                WF_HEAD.replace("entity: project", "entity: projekt")
            ),
        ),
    ]);
    let e = only(&d, "unknown-entity");
    at(e, "workflows/projekt.yaml", 1, 9);
    assert_eq!(e.severity, Severity::Error);
    assert!(e.message.contains("`projekt`"), "{e}");
    assert_eq!(hint(e), "did you mean `project`?");
    assert_eq!(
        d.len(),
        1,
        "nothing else is checked without the entity: {d:#?}"
    );
}

#[test]
fn two_workflows_for_one_entity() {
    let d = wf_diags(
        &format!("{WF_HEAD}{WF_MOVES}"),
        &[("workflows/lifecycle.yaml", &format!("{WF_HEAD}{WF_MOVES}"))],
    );
    let dup = only(&d, "duplicate-name");
    // Files are read in order; the second one is the duplicate.
    at(dup, "workflows/project.yaml", 1, 9);
    assert!(dup.message.contains("workflows/lifecycle.yaml"), "{dup}");
    assert!(hint(dup).contains("merge the two files"), "{dup}");
}

#[test]
fn the_state_field_is_an_enum_of_exactly_the_states() {
    let wf = format!("{WF_HEAD}{WF_MOVES}");

    let d = wf_diags(&wf.replace("field: status", "field: stauts"), &[]);
    let f = only(&d, "unknown-field");
    at(f, "workflows/project.yaml", 2, 8);
    assert!(hint(f).starts_with("did you mean `status`?"), "{f}");
    assert!(
        hint(f).contains("stauts: { type: enum, values: [draft, open, closed] }"),
        "{f}"
    );

    let d = wf_diags(&wf.replace("field: status", "field: title"), &[]);
    let f = only(&d, "state-field-not-enum");
    at(f, "workflows/project.yaml", 2, 8);
    assert!(f.message.contains("string field"), "{f}");
    assert!(
        hint(f).contains("`title: { type: enum, values: [draft, open, closed] }`"),
        "{f}"
    );

    let model = (
        "models/project.yaml",
        "entity: project\nfields:\n  title: string\n  status: { type: enum, values: [draft, open, archived] }\n",
    );
    let d = diags(&[model, ("workflows/project.yaml", &wf)]);
    let f = only(&d, "state-field-mismatch");
    at(f, "workflows/project.yaml", 2, 8);
    assert!(
        f.message
            .contains("the states `closed` are not values of the enum")
            && f.message
                .contains("the enum values `archived` are not states"),
        "{f}"
    );
    assert_eq!(
        hint(f),
        "write `values: [draft, open, closed]` in models/project.yaml"
    );
}

#[test]
fn a_default_on_the_state_field_is_ignored() {
    let model = (
        "models/project.yaml",
        "entity: project\nfields:\n  status: { type: enum, values: [draft, open, closed], default: open }\n",
    );
    let d = diags(&[
        model,
        ("workflows/project.yaml", &format!("{WF_HEAD}{WF_MOVES}")),
    ]);
    let w = only(&d, "state-default-ignored");
    assert_eq!(w.severity, Severity::Warning);
    at(w, "models/project.yaml", 3, 65);
    assert!(w.message.contains("starts every project in `draft`"), "{w}");
    assert_eq!(hint(w), "remove the default, or write `default: draft`");
    assert_eq!(d.len(), 1, "{d:#?}");

    // The initial state as the default is what the workflow does anyway.
    let model = (
        model.0,
        &*model.1.replace("default: open", "default: draft"),
    );
    let d = diags(&[
        model,
        ("workflows/project.yaml", &format!("{WF_HEAD}{WF_MOVES}")),
    ]);
    assert!(d.is_empty(), "{d:#?}");
}

#[test]
fn unknown_states_get_did_you_mean() {
    let wf = format!(
        "{}  publish:\n    from: drfat\n    to: opne\n  close:\n    from: [draft, open]\n    to: closed\n",
        WF_HEAD.replace("initial: draft", "initial: darft")
    );
    let d = wf_diags(&wf, &[]);
    let states: Vec<&Diagnostic> = d.iter().filter(|d| d.code == "unknown-state").collect();
    assert_eq!(states.len(), 3, "{d:#?}");
    at(states[0], "workflows/project.yaml", 3, 10);
    assert!(
        states[0].message.starts_with("`initial` names `darft`"),
        "{}",
        states[0]
    );
    assert_eq!(hint(states[0]), "did you mean `draft`?");
    at(states[1], "workflows/project.yaml", 10, 11);
    assert!(
        states[1].message.starts_with("`from` names `drfat`"),
        "{}",
        states[1]
    );
    assert_eq!(hint(states[1]), "did you mean `draft`?");
    at(states[2], "workflows/project.yaml", 11, 9);
    assert!(
        states[2].message.starts_with("`to` names `opne`"),
        "{}",
        states[2]
    );
    assert_eq!(hint(states[2]), "did you mean `open`?");

    // A transition whose target is misspelt still leaves its state: `draft` is not
    // reported as a dead end on top of the misspelling.
    let wf = format!(
        "{WF_HEAD}  publish:\n    from: draft\n    to: opne\n  close:\n    from: [draft, open]\n    to: closed\n"
    );
    let d = wf_diags(&wf, &[]);
    at(only(&d, "unknown-state"), "workflows/project.yaml", 11, 9);
    assert!(d.iter().all(|d| d.code != "dead-end-state"), "{d:#?}");
}

#[test]
fn the_initial_state_cannot_be_final() {
    let wf = format!(
        "{}{WF_MOVES}",
        WF_HEAD.replace("initial: draft", "initial: closed")
    );
    let d = wf_diags(&wf, &[]);
    let e = only(&d, "final-initial");
    at(e, "workflows/project.yaml", 3, 10);
    assert!(e.message.contains("`closed` is final"), "{e}");
    assert_eq!(
        hint(e),
        "start in a state that is not final (`draft`, `open`), or drop `final: true` from `closed`"
    );
}

#[test]
fn no_transition_leaves_a_final_state() {
    let wf = format!("{WF_HEAD}{WF_MOVES}  reopen:\n    from: [open, closed]\n    to: draft\n");
    let d = wf_diags(&wf, &[]);
    let e = only(&d, "from-final-state");
    at(e, "workflows/project.yaml", 16, 18);
    assert!(e.message.contains("`closed` is a final state"), "{e}");
    assert_eq!(
        hint(e),
        "remove `closed` from `from`, or drop `final: true` from the state"
    );
}

#[test]
fn unreachable_and_dead_end_states() {
    // `open` is never entered; `review` only goes back to itself.
    let model = (
        "models/project.yaml",
        "entity: project\nfields:\n  status: { type: enum, values: [draft, open, review, closed] }\n",
    );
    let wf = "entity: project\nfield: status\ninitial: draft\nstates:\n  draft: {}\n  review: {}\n  open: {}\n  closed: { final: true }\ntransitions:\n  submit:\n    from: draft\n    to: review\n  stall:\n    from: review\n    to: review\n  close:\n    from: [draft, open]\n    to: closed\n";
    let d = diags(&[model, ("workflows/project.yaml", wf)]);
    let unreachable = only(&d, "unreachable-state");
    at(unreachable, "workflows/project.yaml", 7, 3);
    assert!(
        unreachable
            .message
            .contains("from `draft` reaches the state `open`"),
        "{unreachable}"
    );
    assert_eq!(
        hint(unreachable),
        "add a transition with `to: open`, or remove the state"
    );
    // A transition back to the same state is no way out.
    let dead = only(&d, "dead-end-state");
    at(dead, "workflows/project.yaml", 6, 3);
    assert!(dead.message.contains("`review` is not final"), "{dead}");
    assert_eq!(
        hint(dead),
        "mark it `final: true`, or add a transition with `from: review`"
    );
    assert_eq!(d.len(), 2, "{d:#?}");
}

const PROJECT_POLICY: &str =
    "entity: project\nrules:\n  - roles: [member]\n    allow: [list, read, transition.publish]\n";

#[test]
fn transitions_no_policy_lets_anyone_fire() {
    let wf = format!("{WF_HEAD}{WF_MOVES}");
    let d = wf_diags(
        &wf,
        &[
            ("policies/project.yaml", PROJECT_POLICY),
            (
                "policies/tag.yaml",
                "entity: tag\nrules:\n  - roles: [member]\n    allow: [read]\n",
            ),
        ],
    );
    let w = only(&d, "transition-never-allowed");
    assert_eq!(w.severity, Severity::Warning);
    at(w, "workflows/project.yaml", 12, 3);
    assert!(w.message.contains("`close`"), "{w}");
    assert_eq!(
        hint(w),
        "allow `transition.close` to some roles in policies/project.yaml"
    );
    assert_eq!(d.len(), 1, "{d:#?}");

    // `*` allows every transition.
    let d = wf_diags(
        &wf,
        &[
            (
                "policies/project.yaml",
                "entity: project\nrules:\n  - roles: [admin]\n    allow: ['*']\n",
            ),
            (
                "policies/tag.yaml",
                "entity: tag\nrules:\n  - roles: [member]\n    allow: [read]\n",
            ),
        ],
    );
    assert!(d.is_empty(), "{d:#?}");
    // Without policy files, everyone may fire everything: no warning.
    assert!(wf_diags(&wf, &[]).is_empty());
}

#[test]
fn policy_actions_name_existing_transitions() {
    let d = wf_diags(
        &format!("{WF_HEAD}{WF_MOVES}"),
        &[
            (
                "policies/project.yaml",
                "entity: project\nrules:\n  - roles: [member]\n    allow: [read, transition.publsh, transition.close]\n",
            ),
            (
                "policies/tag.yaml",
                "entity: tag\nrules:\n  - roles: [member]\n    allow: [read, transition.archive]\n",
            ),
        ],
    );
    let unknown: Vec<&Diagnostic> = d
        .iter()
        .filter(|d| d.code == "unknown-transition")
        .collect();
    assert_eq!(unknown.len(), 2, "{d:#?}");
    at(unknown[0], "policies/project.yaml", 4, 19);
    assert!(
        unknown[0].message.contains("no transition `publsh`"),
        "{}",
        unknown[0]
    );
    assert_eq!(hint(unknown[0]), "did you mean `transition.publish`?");
    at(unknown[1], "policies/tag.yaml", 4, 19);
    assert!(
        unknown[1].message.contains("`tag` has no workflow"),
        "{}",
        unknown[1]
    );
    assert_eq!(
        hint(unknown[1]),
        "add workflows/tag.yaml, or remove `transition.archive`"
    );

    // A workflow without transitions: the hint says so (not an empty list).
    let d = diags(&[
        (
            "models/note.yaml",
            "entity: note\nfields:\n  status: { type: enum, values: [kept] }\n",
        ),
        (
            "workflows/note.yaml",
            "entity: note\nfield: status\ninitial: kept\nstates:\n  kept: { final: true }\ntransitions: {}\n",
        ),
        (
            "policies/note.yaml",
            "entity: note\nrules:\n  - roles: [member]\n    allow: [read, transition.archive]\n",
        ),
    ]);
    let unknown = only(&d, "unknown-transition");
    at(unknown, "policies/note.yaml", 4, 19);
    assert_eq!(
        hint(unknown),
        "workflows/note.yaml has no transitions; add `archive` under `transitions:` there, or remove `transition.archive`"
    );
    assert_eq!(d.len(), 1, "{d:#?}");
}

/// A workflow whose `publish` (with an input `reason`) ends with `body` (`require:`,
/// `set:`, …), which starts on line 17.
fn publish_with(body: &str) -> String {
    format!(
        "{WF_HEAD}  close:\n    from: [draft, open]\n    to: closed\n  publish:\n    from: draft\n    to: open\n    input:\n      reason: text\n{body}"
    )
}

#[test]
fn names_in_guards_are_checked() {
    // The guards' texts are on lines 18 and 20.
    let wf = publish_with(
        "    require:\n      - check: \"record.budgte > 0 and input.reson and user.rols\"\n        message: Not yet\n      - check: \"recod.budget > 0\"\n        message: Not yet\n",
    );
    let d = wf_diags(&wf, &[]);
    let names: Vec<&Diagnostic> = d.iter().filter(|d| d.code == "unknown-name").collect();
    assert_eq!(names.len(), 4, "{d:#?}");
    // One diagnostic per unknown name, at the guard's text (minijinja reports names
    // without positions).
    let messages: Vec<(&str, &str)> = names
        .iter()
        .map(|d| (d.message.as_str(), hint(d)))
        .collect();
    assert_eq!(
        messages,
        [
            (
                "`input.reson` is not an input field of this transition",
                "did you mean `reason`?"
            ),
            (
                "`record.budgte` is not a field of the record",
                "did you mean `budget`?"
            ),
            (
                "`user.rols` is not a claim of the caller (declare others in `auth.claims`)",
                "did you mean `roles`?"
            ),
            (
                "`recod` is not a variable here",
                "did you mean `record`? (the variables are `record`, `user`, `input`, `now`)"
            ),
        ]
    );
    for d in &names[..3] {
        at(d, "workflows/project.yaml", 18, 17);
    }
    at(names[3], "workflows/project.yaml", 20, 17);
}

#[test]
fn names_in_set_are_checked() {
    let wf = publish_with(
        "    set: { title: input.reasn, budget: record.budgte, priority: user.level }\n",
    );
    let d = wf_diags(&wf, &[]);
    let names: Vec<&Diagnostic> = d.iter().filter(|d| d.code == "unknown-name").collect();
    assert_eq!(names.len(), 3, "{d:#?}");
    at(names[0], "workflows/project.yaml", 17, 19);
    assert_eq!(
        names[0].message,
        "`input.reasn`: there is no input field `reasn`"
    );
    assert_eq!(hint(names[0]), "did you mean `reason`?");
    at(names[1], "workflows/project.yaml", 17, 40);
    assert_eq!(hint(names[1]), "did you mean `budget`?");
    at(names[2], "workflows/project.yaml", 17, 65);
    assert!(names[2].message.contains("`user.level`"), "{}", names[2]);
    assert!(hint(names[2]).contains("`id`, `roles`"), "{}", names[2]);

    // An input name in a transition without input.
    let wf = format!("{WF_HEAD}{WF_MOVES}").replace(
        "    to: open\n",
        "    to: open\n    set: { title: input.title }\n",
    );
    let d = wf_diags(&wf, &[]);
    let n = only(&d, "unknown-name");
    at(n, "workflows/project.yaml", 12, 19);
    assert_eq!(hint(n), "the transition declares no `input` fields");
}

#[test]
fn misspelt_filters_and_tests() {
    let wf = publish_with(
        "    require:\n      - check: \"input.reason | lenght > 3 and record.budget is not nonee\"\n        message: Explain why\n",
    );
    let d = wf_diags(&wf, &[]);
    let calls: Vec<&Diagnostic> = d.iter().filter(|d| d.code == "unknown-callable").collect();
    assert_eq!(calls.len(), 2, "{d:#?}");
    at(calls[0], "workflows/project.yaml", 18, 17);
    assert_eq!(calls[0].message, "there is no filter `lenght`");
    assert_eq!(hint(calls[0]), "did you mean `length`?");
    assert_eq!(calls[1].message, "there is no test `nonee`");
    assert_eq!(hint(calls[1]), "did you mean `none`?");
}

#[test]
fn invalid_guard_expressions() {
    let wf = publish_with(
        "    require:\n      - check: \"record.budget >\"\n        message: Set a budget\n    set: { priority: { expr: \"record.priority +\" } }\n",
    );
    let d = wf_diags(&wf, &[]);
    let bad: Vec<&Diagnostic> = d
        .iter()
        .filter(|d| d.code == "invalid-expression")
        .collect();
    assert_eq!(bad.len(), 2, "{d:#?}");
    at(bad[0], "workflows/project.yaml", 18, 17);
    assert!(
        bad[0]
            .message
            .starts_with("a guard is not a valid expression"),
        "{}",
        bad[0]
    );
    assert!(hint(bad[0]).contains("record.budget > 0"), "{}", bad[0]);
    at(bad[1], "workflows/project.yaml", 20, 22);
    assert!(
        bad[1]
            .message
            .starts_with("a `set` expression is not a valid expression"),
        "{}",
        bad[1]
    );
}

#[test]
fn webhook_endpoints_come_from_the_settings() {
    let wf = publish_with("    after_commit:\n      - webhook: { endpoint: opps }\n");
    let settings = (
        "trellis.yaml",
        "webhooks: { ops: { url: \"http://127.0.0.1:9/hook\" } }\n",
    );
    let d = wf_diags(&wf, &[settings]);
    let e = only(&d, "unknown-endpoint");
    at(e, "workflows/project.yaml", 18, 30);
    assert_eq!(
        e.message,
        "there is no webhook endpoint `opps` in trellis.yaml"
    );
    assert_eq!(hint(e), "did you mean `ops`?");
    assert_eq!(d.len(), 1, "{d:#?}");

    // No endpoints at all: the hint shows how to declare one.
    let d = wf_diags(&wf, &[]);
    let e = only(&d, "unknown-endpoint");
    assert!(hint(e).starts_with("add `webhooks: { opps: { url:"), "{e}");
    assert!(hint(e).contains("to trellis.yaml"), "{e}");
}

#[test]
fn set_cannot_write_the_state_or_derived_fields() {
    let wf = publish_with("    set: { status: closed, tags: x, version: 3, titel: x }\n");
    let d = wf_diags(&wf, &[]);
    let state = only(&d, "set-state-field");
    at(state, "workflows/project.yaml", 17, 12);
    assert!(state.message.contains("sets it to `open`"), "{state}");
    assert_eq!(hint(state), "remove it from `set`");
    let bad: Vec<&Diagnostic> = d.iter().filter(|d| d.code == "bad-set-field").collect();
    assert_eq!(bad.len(), 2, "{d:#?}");
    at(bad[0], "workflows/project.yaml", 17, 28);
    assert_eq!(bad[0].message, "`set` cannot assign the many field `tags`");
    assert!(
        hint(bad[0]).contains("change `tags` with a PATCH"),
        "{}",
        bad[0]
    );
    at(bad[1], "workflows/project.yaml", 17, 37);
    assert_eq!(
        bad[1].message,
        "`version` is kept by Trellis and cannot be set"
    );
    assert!(
        hint(bad[1]).starts_with("remove it from `set`"),
        "{}",
        bad[1]
    );
    // A system field is reported once, as such; a misspelt field gets a settable
    // suggestion.
    let unknown = only(&d, "unknown-field");
    at(unknown, "workflows/project.yaml", 17, 49);
    assert_eq!(hint(unknown), "did you mean `title`?");
    assert_eq!(d.len(), 4, "{d:#?}");
}

#[test]
fn set_constants_must_fit_the_field() {
    let wf =
        publish_with("    set: { priority: high, title: now, budget: { value: \"12.5x\" } }\n");
    let d = all_diags(&[PROJECT, TAG, ("workflows/project.yaml", &wf)]);
    let bad: Vec<&Diagnostic> = d.iter().filter(|d| d.code == "invalid-value").collect();
    assert_eq!(bad.len(), 3, "{d:#?}");
    at(bad[0], "workflows/project.yaml", 17, 22);
    assert!(
        bad[0]
            .message
            .starts_with("`priority` cannot be set to \"high\""),
        "{}",
        bad[0]
    );
    assert!(bad[0].message.contains("whole number"), "{}", bad[0]);
    assert!(hint(bad[0]).contains("`{ expr: … }`"), "{}", bad[0]);
    at(bad[1], "workflows/project.yaml", 17, 35);
    assert_eq!(
        bad[1].message,
        "`now` is a time, but `title` is a string field"
    );
    assert_eq!(hint(bad[1]), "set `now` on a datetime or date field");
    assert!(
        bad[2]
            .message
            .starts_with("`budget` cannot be set to \"12.5x\""),
        "{}",
        bad[2]
    );
}

#[test]
fn where_guards_are_checked_against_the_model() {
    let wf = publish_with(
        "    require:\n      - where: budget > 0 and titel = 'x'\n        message: Not yet\n      - where: tags has\n        message: Tags\n",
    );
    let d = all_diags(&[PROJECT, TAG, ("workflows/project.yaml", &wf)]);
    let conds: Vec<&Diagnostic> = d.iter().filter(|d| d.code == "invalid-condition").collect();
    assert_eq!(conds.len(), 2, "{d:#?}");
    // The column of the unknown name inside the condition.
    at(conds[0], "workflows/project.yaml", 18, 31);
    assert!(
        conds[0].message.contains("no field `titel`"),
        "{}",
        conds[0]
    );
    assert_eq!(hint(conds[0]), "did you mean `title`?");
    assert_eq!(conds[1].line, 20, "{}", conds[1]);
    assert!(
        conds[1]
            .message
            .starts_with("the guard `tags has` cannot be read"),
        "{}",
        conds[1]
    );
}

#[test]
fn write_rules_on_the_state_field_warn() {
    let d = wf_diags(
        &format!("{WF_HEAD}{WF_MOVES}"),
        &[(
            "policies/project.yaml",
            "entity: project\nrules:\n  - roles: [admin]\n    allow: ['*']\nfields:\n  title: { write: { roles: [admin] } }\n  status: { write: { roles: [admin] } }\n",
        )],
    );
    let w = only(&d, "state-field-write-rule");
    assert_eq!(w.severity, Severity::Warning);
    at(w, "policies/project.yaml", 7, 20);
    assert!(
        w.message
            .contains("kept by the workflow in workflows/project.yaml"),
        "{w}"
    );
    assert!(hint(w).contains("`transition.<name>`"), "{w}");
}

#[test]
fn a_transition_without_to() {
    let wf = format!("{WF_HEAD}{WF_MOVES}  stop:\n    from: open\n");
    let d = wf_diags(&wf, &[]);
    let e = only(&d, "missing-key");
    // At the transition's name, not at its first key.
    at(e, "workflows/project.yaml", 15, 3);
    assert_eq!(e.message, "the transition `stop` has no `to:`");
    assert_eq!(hint(e), "add the state it leads to, e.g. `to: open`");
}

#[test]
fn every_problem_of_a_broken_workflow_at_once() {
    let wf = "entity: project\nfield: status\ninitial: draft\nstates:\n  draft: {}\n  open: {}\n  closed: { final: true }\ntransitions:\n  publish:\n    from: draft\n    to: opne\n    require:\n      - check: \"record.budgte > 0\"\n        message: Set a budget\n    set: { status: open }\n    after_commit:\n      - webhook: { endpoint: crm }\n  close:\n    from: [open, closed]\n    to: closed\n  stop:\n    from: draft\n";
    let d = wf_diags(wf, &[]);
    let found: Vec<(u32, &str)> = d.iter().map(|d| (d.line, d.code)).collect();
    assert_eq!(
        found,
        [
            (11, "unknown-state"),
            (13, "unknown-name"),
            (15, "set-state-field"),
            (17, "unknown-endpoint"),
            (19, "from-final-state"),
            (21, "missing-key"),
        ],
        "{d:#?}"
    );
    assert!(d.iter().all(|d| d.file == "workflows/project.yaml"));
}

/// A condition written in quotes is reported at the name inside them, not at the quote.
#[test]
fn quoted_conditions_point_inside_the_quotes() {
    let d = all_diags(&[
        ORG,
        (
            "policies/organization.yaml",
            "entity: organization\nrules:\n  - name: Mine\n    roles: [member]\n    allow: [read]\n    where: \"nmae = 'x'\"\n",
        ),
    ]);
    let c = only(&d, "invalid-condition");
    // `    where: "` is 12 characters: the name starts in column 13.
    at(c, "policies/organization.yaml", 6, 13);
    assert_eq!(c.hint.as_deref(), Some("did you mean `name`?"));
}

#[test]
fn conditional_write_rules_are_checked() {
    // Line 7: an empty write rule; 8: an unknown key; 9: a condition that is not text;
    // 10: a misspelt field inside the condition; 11: a named condition in scope (fine);
    // 12: an unknown claim.
    let d = all_diags(&[
        TASK,
        (
            "policies/task.yaml",
            "entity: task\nconditions:\n  mine: owner = user.id\nrules:\n  - roles: [member]\n    allow: [read, update]\nfields:\n  title: { write: {} }\n  done: { write: { roles: [lead], when: done } }\n  owner: { write: { roles: [lead], where: [1] } }\n",
        ),
    ]);
    let empty = only(&d, "missing-key");
    at(empty, "policies/task.yaml", 8, 19);
    assert!(
        empty.message.contains("neither `roles` nor `where`"),
        "{empty}"
    );
    assert!(
        hint(empty).contains("write: { roles: [admin], where:"),
        "{empty}"
    );
    let unknown = only(&d, "unknown-key");
    at(unknown, "policies/task.yaml", 9, 35);
    let not_text = only(&d, "wrong-value-type");
    at(not_text, "policies/task.yaml", 10, 43);
    assert!(not_text.message.contains("`write.where`"), "{not_text}");

    // Conditions are checked against the model, with the named conditions in scope.
    let d = all_diags(&[
        TASK,
        (
            "policies/task.yaml",
            "entity: task\nconditions:\n  mine: owner = user.id\nrules:\n  - roles: [member]\n    allow: [read, update]\nfields:\n  title: { write: { roles: [lead], where: mine and not done } }\n  done: { write: { where: titel = 'x' } }\n  owner: { write: { where: owner = user.org } }\n",
        ),
    ]);
    let conds: Vec<&Diagnostic> = d.iter().filter(|d| d.code == "invalid-condition").collect();
    assert_eq!(conds.len(), 2, "{d:#?}");
    at(conds[0], "policies/task.yaml", 9, 27);
    assert!(
        conds[0].message.contains("`write.where` of `done`"),
        "{}",
        conds[0]
    );
    assert_eq!(conds[0].hint.as_deref(), Some("did you mean `title`?"));
    at(conds[1], "policies/task.yaml", 10, 36);
    assert!(conds[1].message.contains("user.org"), "{}", conds[1]);
}

#[test]
fn fields_a_transition_sets_and_the_api_writes_warn() {
    let wf = format!(
        "{WF_HEAD}  publish:\n    from: draft\n    to: open\n    set: {{ budget: 0, priority: 1 }}\n  close:\n    from: [draft, open]\n    to: closed\n    set: {{ title: closed }}\n"
    );
    // `budget` has no write rule (warned), `priority` is `never` (fine), `title` has
    // an explicit roles rule (the author chose who else writes it: fine).
    let d = wf_diags(
        &wf,
        &[(
            "policies/project.yaml",
            "entity: project\nrules:\n  - roles: [member]\n    allow: [read, update, transition.publish, transition.close]\nfields:\n  priority: { write: never }\n  title: { write: { roles: [admin] } }\n",
        )],
    );
    let w = only(&d, "set-field-writable");
    assert_eq!(w.severity, Severity::Warning);
    at(w, "workflows/project.yaml", 12, 12);
    assert!(
        w.message
            .contains("`budget` is set by the transition `publish`"),
        "{w}"
    );
    assert!(hint(w).contains("`budget: { write: never }`"), "{w}");
    assert!(hint(w).contains("policies/project.yaml"), "{w}");
    // Nobody may change a project through the API: nothing to warn about.
    let d = wf_diags(
        &wf,
        &[(
            "policies/project.yaml",
            "entity: project\nrules:\n  - roles: [member]\n    allow: [read, transition.publish, transition.close]\n",
        )],
    );
    assert!(d.iter().all(|d| d.code != "set-field-writable"), "{d:#?}");
}

/// A field refused for its own mistake is not reported again where `search`,
/// `indexes` or `unique` name it: one mistake, one message. A name declared nowhere
/// still is.
#[test]
fn a_broken_field_is_reported_once() {
    let all = diags(&[(
        "models/task.yaml",
        "entity: task\nfields:\n  title: { type: strng, required: true }\n  notes: text\nsearch: [title, notes]\nindexes: [[title]]\nunique: [[title, notes]]\n",
    )]);
    at(only(&all, "unknown-type"), "models/task.yaml", 3, 18);
    assert!(
        all.iter().all(|d| d.code != "unknown-field"),
        "no second error for `title`: {all:#?}"
    );
    let all = diags(&[(
        "models/task.yaml",
        "entity: task\nfields:\n  title: { type: strng }\n  notes: text\nsearch: [titel]\n",
    )]);
    only(&all, "unknown-type");
    at(only(&all, "unknown-field"), "models/task.yaml", 5, 10);
}
