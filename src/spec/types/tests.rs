//! Each type's rules on their own: accepted keys, option checks, defaults, storage and
//! the editor schema. No files, no database.

use super::rules;
use crate::spec::diag::{Diagnostic, Sink};
use crate::spec::field::{Default, FieldDef, FieldType, Storage};
use crate::spec::model::{ALL_FIELD_KEYS, parse_field};
use crate::spec::walk::Named;
use crate::spec::yaml::{Pos, parse};

/// Parses one field definition (`text` is the YAML of its value) and returns it with
/// the codes of the diagnostics it produced.
fn field(text: &str) -> (Option<FieldDef>, Vec<&'static str>) {
    let node = parse(text).expect("valid YAML");
    let mut out: Vec<Diagnostic> = Vec::new();
    let mut sink = Sink {
        file: "models/x.yaml",
        out: &mut out,
    };
    let name = Named {
        name: "f".into(),
        pos: Pos::default(),
    };
    let def = parse_field(&mut sink, &name, &node);
    (def, out.iter().map(|d| d.code).collect())
}

fn codes(text: &str) -> Vec<&'static str> {
    field(text).1
}

#[test]
fn every_key_of_every_type_is_a_known_field_key() {
    for (name, ty) in FieldType::ALL {
        for key in rules(ty).keys().iter().chain(rules(ty).required_keys()) {
            assert!(ALL_FIELD_KEYS.contains(key), "{name}: {key}");
            assert!(
                rules(ty).keys().contains(key),
                "{name}: required {key} not accepted"
            );
        }
        // A type that needs keys cannot be written as a shorthand.
        assert_eq!(
            rules(ty).required_keys().is_empty(),
            rules(ty).shorthand_example().is_none(),
            "{name}"
        );
    }
}

#[test]
fn storage_kinds() {
    assert_eq!(FieldType::Email.storage(0, 0), Some(Storage::Text));
    assert_eq!(FieldType::Enum.storage(0, 0), Some(Storage::Text));
    assert_eq!(
        FieldType::Decimal.storage(10, 3),
        Some(Storage::Decimal {
            precision: 10,
            scale: 3
        })
    );
    assert_eq!(FieldType::Ref.storage(0, 0), Some(Storage::Uuid));
    assert_eq!(FieldType::Datetime.storage(0, 0), Some(Storage::Timestamp));
    assert!(!FieldType::Many.has_column() && !FieldType::Inverse.has_column());
}

#[test]
fn text_lengths_and_patterns() {
    let (f, c) = field("{ type: string, min: 2, max: 5, pattern: '^[a-z]+$' }");
    let f = f.unwrap();
    assert!(c.is_empty(), "{c:?}");
    assert_eq!((f.min, f.max), (Some(2.0), Some(5.0)));
    assert_eq!(f.pattern.as_deref(), Some("^[a-z]+$"));
    assert_eq!(codes("{ type: text, min: -1 }"), ["bad-range"]);
    assert_eq!(
        codes("{ type: text, min: 5, max: 2 }"),
        ["min-greater-than-max"]
    );
    assert_eq!(codes("{ type: string, pattern: '(' }"), ["invalid-pattern"]);
    assert_eq!(codes("{ type: email, min: 2 }"), ["key-not-for-type"]);
    assert_eq!(codes("{ type: url, default: 3 }"), ["invalid-default"]);
    assert_eq!(
        codes("{ type: string, max: 2, default: abc }"),
        ["invalid-default"]
    );
}

#[test]
fn numbers_and_decimals() {
    assert_eq!(codes("{ type: integer, min: 1.5 }").len(), 1);
    assert!(codes("{ type: number, min: 1.5, default: 2 }").is_empty());
    assert_eq!(
        codes("{ type: number, max: 1, default: 2 }"),
        ["invalid-default"]
    );
    let (f, c) = field("{ type: decimal, scale: 3, precision: 10, default: '1.5' }");
    assert!(c.is_empty(), "{c:?}");
    let f = f.unwrap();
    assert_eq!((f.scale, f.precision), (3, 10));
    assert_eq!(codes("{ type: decimal, scale: 13 }"), ["bad-range"]);
    assert_eq!(
        codes("{ type: decimal, scale: 4, precision: 4 }"),
        ["bad-range"]
    );
    assert_eq!(codes("{ type: decimal, precision: 19 }"), ["bad-range"]);
    assert_eq!(codes("{ type: integer, scale: 2 }"), ["key-not-for-type"]);
}

#[test]
fn enums_need_distinct_values() {
    assert_eq!(codes("enum"), ["missing-key"]);
    assert_eq!(codes("{ type: enum }"), ["missing-key"]);
    assert_eq!(codes("{ type: enum, values: [a, a] }"), ["duplicate-name"]);
    assert_eq!(
        codes("{ type: enum, values: [a, b], default: c }"),
        ["enum-default-not-in-values"]
    );
    let (f, _) = field("{ type: enum, values: [a, b], default: b }");
    assert_eq!(
        f.unwrap().default.map(|(d, _)| d),
        Some(Default::Value("b".into()))
    );
}

#[test]
fn temporal_and_other_defaults() {
    let (f, _) = field("{ type: datetime, default: now }");
    assert_eq!(f.unwrap().default.map(|(d, _)| d), Some(Default::Now));
    let (f, _) = field("{ type: date, default: today }");
    assert_eq!(f.unwrap().default.map(|(d, _)| d), Some(Default::Now));
    assert_eq!(codes("{ type: date, default: now }"), ["invalid-default"]);
    assert_eq!(
        codes("{ type: date, default: 2025-02-30 }"),
        ["invalid-default"]
    );
    assert_eq!(codes("{ type: uuid, default: x }"), ["invalid-default"]);
    assert_eq!(codes("{ type: boolean, default: 1 }"), ["invalid-default"]);
    assert!(codes("{ type: json, default: { a: 1 } }").is_empty());
    assert_eq!(codes("{ type: json, unique: true }"), ["bad-unique"]);
}

#[test]
fn relations_name_their_target() {
    assert_eq!(codes("ref"), ["missing-key"]);
    assert_eq!(codes("{ type: ref }"), ["missing-key"]);
    let (f, c) = field("{ type: inverse, of: task, via: project }");
    assert!(c.is_empty(), "{c:?}");
    let f = f.unwrap();
    assert_eq!(f.target.map(|t| t.name).as_deref(), Some("task"));
    assert_eq!(f.via.map(|t| t.name).as_deref(), Some("project"));
    assert_eq!(codes("{ type: inverse, of: task }"), ["missing-key"]);
    assert_eq!(
        codes("{ type: many, of: skill, required: true }"),
        ["key-not-for-type"]
    );
    assert_eq!(
        codes("{ type: ref, to: org, required: true, on_delete: set_null }"),
        ["set-null-on-required"]
    );
}

#[test]
fn editor_schema_lists_exactly_the_accepted_keys() {
    for (name, ty) in FieldType::ALL {
        let keys = rules(ty).editor_keys();
        let mut documented: Vec<&str> = keys
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        documented.sort_unstable();
        let mut accepted: Vec<&str> = rules(ty).keys().to_vec();
        accepted.sort_unstable();
        assert_eq!(documented, accepted, "{name}");
    }
}

#[test]
fn links_are_the_relation_types() {
    let links: Vec<FieldType> = FieldType::ALL
        .iter()
        .map(|(_, t)| *t)
        .filter(|t| t.is_link())
        .collect();
    assert_eq!(links, [FieldType::Ref, FieldType::Many, FieldType::Inverse]);
    assert!(FieldType::Url.is_textual() && !FieldType::Enum.is_textual());
    assert!(FieldType::Decimal.is_numeric() && !FieldType::Date.is_numeric());
}

#[test]
fn file_options() {
    use crate::spec::field::{DEFAULT_MAX_FILE_SIZE, ThumbSize as Thumb};
    let (f, c) = field(
        "{ type: file, accept: [image/png, image/jpeg, image/webp], max_size: 5MiB, thumbs: [100x100, 640x0] }",
    );
    assert!(c.is_empty(), "{c:?}");
    let o = f.unwrap().file.unwrap();
    assert!(!o.multiple);
    assert_eq!(o.max_size, 5 * 1024 * 1024);
    assert_eq!(o.accept, ["image/png", "image/jpeg", "image/webp"]);
    assert_eq!(
        o.thumbs,
        [
            Thumb {
                width: 100,
                height: 100
            },
            Thumb {
                width: 640,
                height: 0
            }
        ]
    );
    assert_eq!(o.limit(), 1);
    assert!(o.accepts("image/png") && !o.accepts("application/pdf"));
    assert_eq!(FieldType::File.storage(0, 0), Some(Storage::Json));

    let (f, c) = field("{ type: file, multiple: true, max_count: 10, max_size: 25MB }");
    assert!(c.is_empty(), "{c:?}");
    let o = f.unwrap().file.unwrap();
    assert!(o.multiple);
    assert_eq!((o.limit(), o.max_size), (10, 25_000_000));
    assert!(o.accepts("application/x-anything"));

    let (f, _) = field("file");
    assert_eq!(f.unwrap().ty, FieldType::File);
    let (f, c) = field("{ type: file, accept: 'image/*', max_size: 1000 }");
    assert!(c.is_empty(), "{c:?}");
    let o = f.unwrap().file.unwrap();
    assert_eq!(o.max_size, 1000);
    assert!(o.accepts("image/gif") && o.accepts("IMAGE/PNG; x=y"));
    assert!(!o.accepts("image/") && !o.accepts("imagex/png") && !o.accepts("text/plain"));
    let (f, _) = field("{ type: file }");
    assert_eq!(f.unwrap().file.unwrap().max_size, DEFAULT_MAX_FILE_SIZE);
}

#[test]
fn wrong_file_options_are_diagnostics() {
    for (yaml, code) in [
        ("{ type: file, max_count: 3 }", "max-count-without-multiple"),
        (
            "{ type: file, multiple: true, max_count: 0 }",
            "bad-max-count",
        ),
        (
            "{ type: file, multiple: true, max_count: many }",
            "wrong-value-type",
        ),
        ("{ type: file, multiple: yes }", "wrong-value-type"),
        ("{ type: file, max_size: 5 MeB }", "bad-size"),
        ("{ type: file, max_size: 0 }", "bad-size"),
        ("{ type: file, max_size: -3 }", "bad-size"),
        ("{ type: file, max_size: 65GiB }", "bad-size"),
        (
            "{ type: file, accept: [image/png], thumbs: ['010x10'] }",
            "bad-thumb",
        ),
        ("{ type: file, max_size: [1] }", "wrong-value-type"),
        ("{ type: file, accept: [.pdf] }", "bad-mime-type"),
        ("{ type: file, accept: [Image/PNG] }", "bad-mime-type"),
        ("{ type: file, accept: [] }", "empty-list"),
        (
            "{ type: file, accept: [image/png, image/png] }",
            "duplicate-name",
        ),
        ("{ type: file, accept: 3 }", "wrong-value-type"),
        (
            "{ type: file, accept: [image/png], thumbs: ['100'] }",
            "bad-thumb",
        ),
        (
            "{ type: file, accept: [image/png], thumbs: ['0x0'] }",
            "bad-thumb",
        ),
        (
            "{ type: file, accept: [image/png], thumbs: [0x10] }",
            "wrong-value-type",
        ),
        (
            "{ type: file, accept: [image/png], thumbs: [9000x10] }",
            "bad-thumb",
        ),
        (
            "{ type: file, accept: [image/png], thumbs: [10x10, 10x10] }",
            "duplicate-name",
        ),
        ("{ type: file, thumbs: [100x100] }", "thumbs-need-images"),
        (
            "{ type: file, accept: [image/png, application/pdf], thumbs: [100x100] }",
            "thumbs-need-images",
        ),
        (
            "{ type: file, accept: [image/svg+xml], thumbs: [100x100] }",
            "thumbs-need-images",
        ),
        (
            "{ type: file, multiple: true, required: true }",
            "required-multiple-file",
        ),
        ("{ type: file, unique: true }", "bad-unique"),
        ("{ type: file, default: x }", "key-not-for-type"),
        ("{ type: file, min: 1 }", "key-not-for-type"),
        ("{ type: string, accept: [image/png] }", "key-not-for-type"),
        ("{ type: file, acept: [image/png] }", "unknown-key"),
    ] {
        assert_eq!(codes(yaml), [code], "{yaml}");
    }
}

#[test]
fn file_diagnostics_have_lines_and_hints() {
    let node = parse("type: file\naccept: [pdf]\nthumbs: [100x100]\n").expect("yaml");
    let mut out: Vec<Diagnostic> = Vec::new();
    let mut sink = Sink {
        file: "models/x.yaml",
        out: &mut out,
    };
    let name = Named {
        name: "cv".into(),
        pos: Pos::default(),
    };
    parse_field(&mut sink, &name, &node);
    let bad = out
        .iter()
        .find(|d| d.code == "bad-mime-type")
        .expect("bad-mime-type");
    assert_eq!(bad.line, 2);
    assert!(
        bad.hint
            .as_deref()
            .unwrap_or("")
            .contains("application/pdf"),
        "{bad:?}"
    );
    let thumbs = out
        .iter()
        .find(|d| d.code == "thumbs-need-images")
        .expect("thumbs");
    assert_eq!(thumbs.line, 3);
    assert!(thumbs.hint.is_some());
}

#[test]
fn sizes() {
    use super::file::parse_size;
    assert_eq!(parse_size("5MiB"), Some(5 << 20));
    assert_eq!(parse_size("5 MiB"), Some(5 << 20));
    assert_eq!(parse_size("64GiB"), Some(64 << 30));
    assert_eq!(parse_size("2GB"), Some(2_000_000_000));
    assert_eq!(parse_size("10"), Some(10));
    assert_eq!(parse_size("10B"), Some(10));
    for bad in [
        "", "MiB", "5 mib", "1.5KiB", ".5MB", "0", "5XB", "-1MB", "65GiB",
    ] {
        assert_eq!(parse_size(bad), None, "{bad}");
    }
}

#[test]
fn max_size_never_above_max_upload() {
    use crate::spec::migration::load_texts;
    let files = |max_size: &str| {
        [
            (
                "trellis.yaml".to_string(),
                "files: { max_upload: 1MiB }\n".to_string(),
            ),
            (
                "models/doc.yaml".to_string(),
                format!(
                    "entity: doc\nfields:\n  title: string\n  scan: {{ type: file{max_size} }}\n"
                ),
            ),
        ]
        .into_iter()
        .collect::<std::collections::BTreeMap<_, _>>()
    };
    let loaded = load_texts(&files(", max_size: 2MiB"));
    let d = loaded
        .diagnostics
        .iter()
        .find(|d| d.code == "max-size-above-max-upload")
        .expect("diagnostic");
    assert_eq!((d.file.as_str(), d.line), ("models/doc.yaml", 4));
    assert!(d.hint.is_some());
    // Unsaid, the default (10 MiB) is capped by max_upload.
    let loaded = load_texts(&files(""));
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let engine = crate::engine::Engine::build(&loaded).expect("engine");
    let f = engine
        .entity("doc")
        .expect("doc")
        .field("scan")
        .expect("scan");
    assert_eq!(f.file.as_ref().map(|o| o.max_size), Some(1 << 20));
}
