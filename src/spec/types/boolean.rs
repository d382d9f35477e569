//! `boolean`.

use serde_json::{Value, json};

use super::{FieldRules, bad_default, default_doc};
use crate::spec::diag::Sink;
use crate::spec::field::{Default, FieldDef, Storage};
use crate::spec::yaml::{self, Node};

pub struct Boolean;

impl FieldRules for Boolean {
    fn keys(&self) -> &'static [&'static str] {
        &[]
    }

    fn storage(&self, _precision: u32, _scale: u32) -> Option<Storage> {
        Some(Storage::Boolean)
    }

    fn check_default(&self, sink: &mut Sink<'_>, field: &FieldDef, node: &Node) -> Option<Default> {
        match &node.value {
            yaml::Value::Bool(b) => Some(Default::Value((*b).into())),
            _ => bad_default(sink, field, node, "true or false"),
        }
    }

    fn default_schema(&self) -> Option<Value> {
        Some(default_doc(json!({ "type": "boolean" }), "false"))
    }
}
