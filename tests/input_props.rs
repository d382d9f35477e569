//! Property tests of everything that reads untrusted text besides the condition
//! language (`cond_props.rs`): YAML files, list / get / aggregate query strings,
//! request bodies and transition inputs. Whatever the input: no panic, and an
//! error comes back as a value (diagnostics, `ParamError`, field errors).

mod common;

use std::sync::LazyLock;

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::Value;
use trellis::engine::Engine;
use trellis::engine::access::Principal;
use trellis::engine::input::{Mode, parse_body};
use trellis::spec;

static ENGINE: LazyLock<Engine> = LazyLock::new(|| {
    Engine::build(&spec::load(&common::repo_root())).expect("the root project builds")
});

/// Words of the root project's files and of YAML, to build near-misses from.
const YAML_WORDS: &[&str] = &[
    "entity:",
    "fields:",
    "type:",
    "string",
    "enum",
    "values:",
    "[",
    "]",
    "{",
    "}",
    "-",
    ":",
    "required:",
    "true",
    "ref",
    "to:",
    "many",
    "of:",
    "&a",
    "*a",
    "<<:",
    "'",
    "\"",
    "\n",
    "  ",
    "\t",
    "#",
    "|",
    ">",
    "!!str",
    "---",
    "...",
    "default:",
    "now",
    "min:",
    "-1e999",
    "~",
];

fn yaml_near_miss() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(YAML_WORDS), 0..40).prop_map(|w| w.join(" "))
}

const QUERY_KEYS: &[&str] = &[
    "filter", "sort", "limit", "after", "count", "fields", "expand", "q", "group_by", "sum", "avg",
    "min", "max", "x",
];
const QUERY_VALUES: &[&str] = &[
    "status = open",
    "-budget,title",
    "0",
    "201",
    "-1",
    "abc",
    "true",
    "title,client.name",
    "client.members,skills",
    "client.client.client",
    "budget",
    "created_at:month",
    "deadline:week",
    "eyJ4IjoxfQ",
    "",
    "%",
    "((((",
    "status in [",
    "budget > 'x'",
];

fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        (
            prop_oneof![
                prop::sample::select(QUERY_KEYS).prop_map(str::to_string),
                "\\PC{0,8}"
            ],
            prop_oneof![
                prop::sample::select(QUERY_VALUES).prop_map(str::to_string),
                "\\PC{0,40}"
            ],
        ),
        0..6,
    )
}

/// JSON values of any shape, shallow enough to stay fast.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        "\\PC{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    prop::sample::select(
                        &[
                            "title", "budget", "status", "client", "skills", "deadline", "reason",
                            "x"
                        ][..]
                    )
                    .prop_map(str::to_string),
                    "\\PC{0,6}"
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(Config { cases: 1000, failure_persistence: None, ..Config::default() })]

    #[test]
    fn yaml_loading_never_panics(text in "\\PC{0,200}") {
        let _ = spec::load_model_text("models/thing.yaml", &text);
    }

    #[test]
    fn yaml_near_misses_never_panic(text in yaml_near_miss()) {
        let (_, diags) = spec::load_model_text("models/thing.yaml", &text);
        // A file that is not a model says why, with a position.
        for d in diags {
            prop_assert!(d.line >= 1 && d.column >= 1, "{d}");
        }
    }

    #[test]
    fn migration_definitions_never_panic(text in yaml_near_miss()) {
        let files = [("models/thing.yaml".to_string(), text)].into_iter().collect();
        let _ = spec::migration::load_texts(&files);
    }

    #[test]
    fn query_strings_never_panic(pairs in pairs()) {
        for e in ENGINE.entities() {
            let _ = trellis::engine::query::list_request(&ENGINE, e, &pairs, &[], &Principal::anonymous());
            let _ = trellis::engine::query::get_request(&ENGINE, e, &pairs, &[]);
            let _ = trellis::engine::aggregate::aggregate_request(&ENGINE, e, &pairs, &[], &Principal::anonymous());
        }
    }

    #[test]
    fn request_bodies_never_panic(body in json_value()) {
        for e in ENGINE.entities() {
            for mode in [Mode::Create, Mode::Update, Mode::Seed] {
                if let Err(errors) = parse_body(e, &body, mode) {
                    prop_assert!(!errors.is_empty());
                }
            }
        }
        for wf in ENGINE.workflows.values() {
            for t in &wf.transitions {
                let _ = parse_body(&t.input, &body, Mode::Create);
            }
        }
    }
}
