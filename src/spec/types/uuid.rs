//! `uuid`.

use super::{FieldRules, string_default};
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
            |s| ::uuid::Uuid::parse_str(s).is_ok(),
            "a UUID",
        )
    }
}
