//! `json`: any value; it cannot be unique.

use serde_json::{Value, json};

use super::{FieldRules, default_doc};
use crate::spec::diag::Sink;
use crate::spec::field::{Default, FieldDef, Storage};
use crate::spec::yaml::Node;

pub struct Json;

impl FieldRules for Json {
    fn keys(&self) -> &'static [&'static str] {
        &[]
    }

    fn storage(&self, _precision: u32, _scale: u32) -> Option<Storage> {
        Some(Storage::Json)
    }

    fn check_default(
        &self,
        _sink: &mut Sink<'_>,
        _field: &FieldDef,
        node: &Node,
    ) -> Option<Default> {
        Some(Default::Value(node.to_json()))
    }

    fn default_schema(&self) -> Option<Value> {
        Some(default_doc(json!({}), "{ theme: light }"))
    }

    fn may_be_unique(&self) -> bool {
        false
    }
}
