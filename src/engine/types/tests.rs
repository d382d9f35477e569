//! Each type's definition on its own: conversion accepts and rejects, condition
//! literals, claims, cursors, schemas. No database.

use chrono::NaiveDate;
use serde_json::{Value, json};

use super::{Cell, Literal, Reject, kind};
use crate::engine::Field;
use crate::spec::FieldType;

fn field(ty: FieldType) -> Field {
    Field {
        scale: 2,
        precision: 18,
        ..Field::plain("f", ty)
    }
}

fn convert(f: &Field, v: Value) -> Result<Cell, String> {
    f.kind().convert(f, &v)
}

#[test]
fn every_type_has_a_definition() {
    for (_, ty) in FieldType::ALL {
        let f = field(ty);
        assert!(!kind(ty).words(&f).is_empty());
        assert!(!kind(ty).expectation(&f).is_empty());
    }
}

#[test]
fn text_checks_length_pattern_and_nul() {
    let mut f = field(FieldType::String);
    f.min = Some(2.0);
    f.max = Some(4.0);
    f.pattern = Some(regex::Regex::new("^[a-z]+$").unwrap());
    assert_eq!(convert(&f, json!("abc")), Ok(Cell::Text("abc".into())));
    assert_eq!(
        convert(&f, json!("a")),
        Err("must be at least 2 characters".into())
    );
    assert_eq!(
        convert(&f, json!("abcde")),
        Err("must be at most 4 characters".into())
    );
    assert_eq!(
        convert(&f, json!("AB")),
        Err("must match the pattern ^[a-z]+$".into())
    );
    assert_eq!(
        convert(&f, json!("a\0b")),
        Err("must not contain the NUL character (\\u0000)".into())
    );
    assert_eq!(convert(&f, json!(3)), Err("must be text".into()));
}

#[test]
fn email_and_url_are_trimmed_and_checked() {
    let e = field(FieldType::Email);
    assert_eq!(
        convert(&e, json!(" a@b.io ")),
        Ok(Cell::Text("a@b.io".into()))
    );
    for bad in ["a@b", "@b.io", "a@.io", "a b@c.io", "a@b.io."] {
        assert!(convert(&e, json!(bad)).is_err(), "{bad}");
    }
    let u = field(FieldType::Url);
    assert_eq!(
        convert(&u, json!("https://x.io")),
        Ok(Cell::Text("https://x.io".into()))
    );
    for bad in ["ftp://x.io", "https://", "http://a b"] {
        assert!(convert(&u, json!(bad)).is_err(), "{bad}");
    }
}

#[test]
fn integers_accept_whole_floats_and_check_ranges() {
    let mut f = field(FieldType::Integer);
    f.max = Some(10.0);
    assert_eq!(convert(&f, json!(3)), Ok(Cell::Int(3)));
    assert_eq!(convert(&f, json!(4.0)), Ok(Cell::Int(4)));
    assert_eq!(
        convert(&f, json!(4.5)),
        Err("must be a whole number".into())
    );
    assert_eq!(convert(&f, json!(11)), Err("must be at most 10".into()));
    let n = field(FieldType::Number);
    assert_eq!(convert(&n, json!(1.5)), Ok(Cell::Float(1.5)));
    assert_eq!(convert(&n, json!("1.5")), Err("must be a number".into()));
}

#[test]
fn decimals_keep_their_scale_and_precision() {
    let mut f = field(FieldType::Decimal);
    f.precision = 5;
    let d = |s: &str| Cell::Decimal(s.parse().unwrap());
    assert_eq!(convert(&f, json!("12.5")), Ok(d("12.50")));
    assert_eq!(convert(&f, json!(12)), Ok(d("12.00")));
    assert_eq!(
        convert(&f, json!("1.234")),
        Err("may have at most 2 digits after the decimal point".into())
    );
    assert_eq!(
        convert(&f, json!("1000")),
        Err("must have at most 3 digits before the decimal point".into())
    );
    assert!(
        convert(&f, json!("1e3"))
            .unwrap_err()
            .starts_with("must be a decimal number")
    );
    assert_eq!(f.kind().literal(&f, Literal::Float(1.5)), Ok(d("1.50")));
    assert!(matches!(
        f.kind().literal(&f, Literal::Str("1.001")),
        Err(Reject::Invalid { .. })
    ));
    assert_eq!(f.kind().cursor_value(2, &json!("3.1")), Some(d("3.10")));
}

#[test]
fn temporal_values() {
    let date = field(FieldType::Date);
    assert_eq!(
        convert(&date, json!("2025-01-31")),
        Ok(Cell::Date(NaiveDate::from_ymd_opt(2025, 1, 31).unwrap()))
    );
    assert_eq!(
        convert(&date, json!("2025-02-30")),
        Err("must be a date like \"2025-01-31\" (a real calendar date)".into())
    );
    let dt = field(FieldType::Datetime);
    let Ok(Cell::DateTime(v)) = convert(&dt, json!("2025-01-31T09:00:00.1234567+01:00")) else {
        panic!("not a datetime");
    };
    assert_eq!(v.to_rfc3339(), "2025-01-31T08:00:00.123456+00:00");
    assert!(convert(&dt, json!("2025-01-31T09:00:00")).is_err());
    // A date compares with a datetime as its midnight.
    assert!(matches!(
        dt.kind().literal(
            &dt,
            Literal::Date(NaiveDate::from_ymd_opt(2025, 1, 1).unwrap())
        ),
        Ok(Cell::DateTime(_))
    ));
    assert!(date.kind().temporal() && dt.kind().temporal());
    assert!(!field(FieldType::Integer).kind().temporal());
}

#[test]
fn enums_list_their_values() {
    let mut f = field(FieldType::Enum);
    f.values = vec!["open".into(), "closed".into()];
    assert_eq!(convert(&f, json!("open")), Ok(Cell::Text("open".into())));
    assert_eq!(
        convert(&f, json!("opne")),
        Err("must be one of: open, closed".into())
    );
    assert_eq!(
        f.kind().literal(&f, Literal::Word("open")),
        Ok(Cell::Text("open".into()))
    );
    let Err(Reject::Invalid { message, hint }) = f.kind().literal(&f, Literal::Word("opne")) else {
        panic!("accepted a wrong value");
    };
    assert_eq!(message, "`opne` is not a value of `f`");
    assert_eq!(hint.as_deref(), Some("did you mean `open`?"));
    assert!(!f.kind().ordered());
    assert_eq!(f.kind().example_filter(&f).as_deref(), Some("f = 'open'"));
}

#[test]
fn ids_refs_and_links() {
    let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
    let mut r = field(FieldType::Ref);
    r.target = Some("organization".into());
    assert!(matches!(convert(&r, json!(id)), Ok(Cell::Uuid(_))));
    assert_eq!(
        convert(&r, json!("x")),
        Err("must be the id of an organization record (a UUID string)".into())
    );
    assert!(r.kind().is_id() && field(FieldType::Uuid).kind().is_id());
    assert!(matches!(
        r.kind().claim_value(&json!(id)),
        Some(Cell::Uuid(_))
    ));
    assert_eq!(r.kind().claim_value(&json!(7)), None);

    let mut m = field(FieldType::Many);
    m.target = Some("skill".into());
    let Ok(Cell::Ids(ids)) = convert(&m, json!([id, id])) else {
        panic!("not ids");
    };
    assert_eq!(ids.len(), 1, "duplicates are dropped");
    assert_eq!(
        convert(&m, json!(["x"])),
        Err("each entry must be the id of a skill record (a UUID string)".into())
    );
    assert!(!m.kind().comparable() && !m.kind().nullable());

    let mut inv = field(FieldType::Inverse);
    inv.target = Some("task".into());
    inv.via = Some("project".into());
    assert_eq!(
        convert(&inv, json!([])),
        Err("`f` is read-only; write `project` on the task records instead".into())
    );
}

#[test]
fn json_keeps_null_and_refuses_nul() {
    let f = field(FieldType::Json);
    assert_eq!(f.kind().null_cell(), Cell::Json(Value::Null));
    assert_eq!(
        convert(&f, json!({"a": [1]})),
        Ok(Cell::Json(json!({"a": [1]})))
    );
    assert!(convert(&f, json!({"a\u{0}": 1})).is_err());
    assert!(!f.kind().comparable());
    assert_eq!(
        f.kind().literal(&f, Literal::Int(1)),
        Err(Reject::NotA("nothing".into()))
    );
}

#[test]
fn literals_of_the_wrong_type_say_what_is_expected() {
    let b = field(FieldType::Boolean);
    assert_eq!(
        b.kind().literal(&b, Literal::Bool(true)),
        Ok(Cell::Bool(true))
    );
    assert_eq!(
        b.kind().literal(&b, Literal::Int(1)),
        Err(Reject::NotA("true or false".into()))
    );
    let s = field(FieldType::Text);
    assert_eq!(
        s.kind().literal(&s, Literal::Word("x")),
        Err(Reject::NotA("a quoted text".into()))
    );
    let i = field(FieldType::Integer);
    assert_eq!(
        i.kind().literal(&i, Literal::Float(1.5)),
        Ok(Cell::Float(1.5))
    );
}

#[test]
fn value_schemas() {
    let mut s = field(FieldType::Email);
    s.max = Some(80.0);
    assert_eq!(
        s.kind().input_schema(&s, true),
        json!({ "type": "string", "maxLength": 80, "format": "email" })
    );
    assert_eq!(
        s.kind().input_schema(&s, false),
        json!({ "type": "string", "maxLength": 80 })
    );
    let mut n = field(FieldType::Number);
    n.min = Some(0.5);
    assert_eq!(
        n.kind().input_schema(&n, true),
        json!({ "type": "number", "minimum": 0.5 })
    );
    assert!(
        field(FieldType::Decimal)
            .kind()
            .record_schema(&field(FieldType::Decimal))
            .is_some()
    );
    assert!(s.kind().record_schema(&s).is_none());
}

#[test]
fn only_long_text_json_and_inverse_are_not_grouped() {
    let not_grouped: Vec<FieldType> = FieldType::ALL
        .iter()
        .map(|(_, t)| *t)
        .filter(|t| !kind(*t).groupable())
        .collect();
    assert_eq!(
        not_grouped,
        [
            FieldType::Text,
            FieldType::Json,
            FieldType::Inverse,
            FieldType::File
        ]
    );
}

#[test]
fn now_is_a_date_for_dates_and_an_instant_otherwise() {
    let now = chrono::DateTime::parse_from_rfc3339("2025-01-31T23:30:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert_eq!(
        kind(FieldType::Date).at(now),
        Cell::Date(NaiveDate::from_ymd_opt(2025, 1, 31).unwrap())
    );
    assert_eq!(kind(FieldType::Datetime).at(now), Cell::DateTime(now));
}

#[test]
fn the_article_follows_the_sound() {
    for (noun, expected) in [
        ("user", "a user"),
        ("unit", "a unit"),
        ("organization", "an organization"),
        ("application", "an application"),
        ("update", "an update"),
        ("hour_log", "an hour_log"),
        ("project", "a project"),
        ("euro_rate", "a euro_rate"),
    ] {
        assert_eq!(super::a_or_an(noun), expected);
    }
}

#[test]
fn a_file_fields_max_size_is_capped_by_max_upload() {
    let files: std::collections::BTreeMap<String, String> = [
        ("trellis.yaml", "files: { max_upload: 1MiB }\n"),
        ("models/doc.yaml", "entity: doc\nfields:\n  scan: file\n"),
    ]
    .iter()
    .map(|(p, t)| (p.to_string(), t.to_string()))
    .collect();
    let loaded = crate::spec::migration::load_texts(&files);
    let engine = crate::engine::Engine::build(&loaded).expect("engine");
    let f = engine
        .entity("doc")
        .expect("doc")
        .field("scan")
        .expect("scan");
    assert_eq!(f.file.as_ref().map(|o| o.max_size), Some(1 << 20));
}
