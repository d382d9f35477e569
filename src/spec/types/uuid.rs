//! `uuid`.

use serde_json::Value;

use super::{FieldRules, UUID_PATTERN, string_default, string_default_schema};
use crate::spec::diag::Sink;
use crate::spec::field::{Default, FieldDef, Storage};
use crate::spec::yaml::Node;

pub struct Uuid;

impl FieldRules for Uuid {
    fn keys(&self) -> &'static [&'static str] {
        &[]
    }

    fn storage(&self, _precision: u32, _scale: u32) -> Option<Storage> {
        Some(Storage::Uuid)
    }

    fn check_default(&self, sink: &mut Sink<'_>, field: &FieldDef, node: &Node) -> Option<Default> {
        string_default(
            sink,
            field,
            node,
            None,
            UUID_PATTERN,
            |s| ::uuid::Uuid::parse_str(s).is_ok(),
            "a UUID like 0190a5b4-7c1e-7d2a-9b3f-2a1c4e5d6f70",
        )
    }

    fn default_schema(&self) -> Option<Value> {
        Some(string_default_schema(
            UUID_PATTERN,
            None,
            "0190a5b4-7c1e-7d2a-9b3f-2a1c4e5d6f70",
        ))
    }
}
