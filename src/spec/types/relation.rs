//! `ref` (`to` one record of an entity, with `on_delete`), `many` (links `of` an entity,
//! kept in a link table) and `inverse` (the records `of` an entity whose ref `via`
//! points here; no storage of its own).

use serde_json::{Value, json};

use super::{FieldRules, Keys};
use crate::spec::diag::Sink;
use crate::spec::field::{FieldDef, FieldType, Storage};
use crate::spec::walk::{Named, get, string};

pub struct Ref;
pub struct Many;
pub struct Inverse;

/// `to` (a ref) or `of` (many, inverse): the entity the field points to.
fn parse_target(sink: &mut Sink<'_>, name: &Named, map: &Keys, field: &mut FieldDef) {
    let key = if field.ty == FieldType::Ref {
        "to"
    } else {
        "of"
    };
    match get(map, key) {
        None => sink.error_hint(
            name.pos,
            "missing-key",
            format!(
                "the {} field `{}` has no `{key}`",
                field.ty.name(),
                name.name
            ),
            format!("add `{key}:` with the name of the entity it points to"),
        ),
        Some(node) => field.target = string(sink, node, &format!("`{key}`")),
    }
}

impl FieldRules for Ref {
    fn links(&self) -> bool {
        true
    }

    fn keys(&self) -> &'static [&'static str] {
        &["to", "on_delete"]
    }

    fn required_keys(&self) -> &'static [&'static str] {
        &["to"]
    }

    fn shorthand_example(&self) -> Option<&'static str> {
        Some("write e.g. `{ type: ref, to: organization }`")
    }

    fn storage(&self, _precision: u32, _scale: u32) -> Option<Storage> {
        Some(Storage::Uuid)
    }

    fn parse_options(&self, sink: &mut Sink<'_>, name: &Named, map: &Keys, field: &mut FieldDef) {
        parse_target(sink, name, map, field);
    }

    fn editor_keys(&self) -> Value {
        json!({
            "to": { "$ref": "#/$defs/identifier", "description": "The entity this field points to (its name, as in its `entity:`)." },
            "on_delete": {
                "enum": ["restrict", "cascade", "set_null"],
                "description": "What happens to this record when the record it points to is deleted: restrict (default) refuses that delete while this record points to it; cascade deletes this record too; set_null empties this field (not for a required field).",
                "markdownDescription": "What happens to this record when the record it points to is deleted:\n\n- `restrict` (default): that delete is refused while this record points to it\n- `cascade`: this record is deleted too\n- `set_null`: this field is emptied (not for a required field)\n\n```yaml\nclient: { type: ref, to: organization, on_delete: cascade }\n```"
            }
        })
    }
}

impl FieldRules for Many {
    fn links(&self) -> bool {
        true
    }

    fn keys(&self) -> &'static [&'static str] {
        &["of"]
    }

    fn required_keys(&self) -> &'static [&'static str] {
        &["of"]
    }

    fn common_keys(&self) -> bool {
        false
    }

    fn shorthand_example(&self) -> Option<&'static str> {
        Some("write e.g. `{ type: many, of: skill }`")
    }

    fn storage(&self, _precision: u32, _scale: u32) -> Option<Storage> {
        None
    }

    fn parse_options(&self, sink: &mut Sink<'_>, name: &Named, map: &Keys, field: &mut FieldDef) {
        parse_target(sink, name, map, field);
    }

    fn editor_keys(&self) -> Value {
        json!({
            "of": { "$ref": "#/$defs/identifier", "description": "The entity whose records this field links to, any number of them (a many-to-many link table)." }
        })
    }
}

impl FieldRules for Inverse {
    fn links(&self) -> bool {
        true
    }

    fn keys(&self) -> &'static [&'static str] {
        &["of", "via"]
    }

    fn required_keys(&self) -> &'static [&'static str] {
        &["of", "via"]
    }

    fn common_keys(&self) -> bool {
        false
    }

    fn shorthand_example(&self) -> Option<&'static str> {
        Some("write e.g. `{ type: inverse, of: application, via: project }`")
    }

    fn storage(&self, _precision: u32, _scale: u32) -> Option<Storage> {
        None
    }

    fn parse_options(&self, sink: &mut Sink<'_>, name: &Named, map: &Keys, field: &mut FieldDef) {
        parse_target(sink, name, map, field);
        match get(map, "via") {
            None => sink.error_hint(
                name.pos,
                "missing-key",
                format!("the inverse field `{}` has no `via`", name.name),
                "add `via:` with the ref field of the other entity that points back here",
            ),
            Some(node) => field.via = string(sink, node, "`via`"),
        }
    }

    fn editor_keys(&self) -> Value {
        json!({
            "of": { "$ref": "#/$defs/identifier", "description": "The entity whose records point to this one." },
            "via": {
                "$ref": "#/$defs/identifier",
                "description": "The ref field of that entity that points to this entity.",
                "markdownDescription": "The ref field of that entity that points to this entity.\n\n```yaml\n# models/project.yaml\napplications: { type: inverse, of: application, via: project }\n```"
            }
        })
    }
}
