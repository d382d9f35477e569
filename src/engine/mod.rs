//! `engine`: the validated, compiled form of a project, built once per load and shared
//! by every request as `Arc<Engine>`. Nothing here does I/O.

pub mod access;
pub mod aggregate;
pub mod cond;
pub mod diagram;
pub mod input;
pub mod migration;
pub mod openapi;
pub mod query;
pub mod schema_diff;
pub mod schemas;
pub mod transition;
pub mod types;
pub mod workflow;

use std::collections::HashMap;
use std::sync::Arc;

use regex::Regex;

use crate::spec::model::Default as SpecDefault;
use crate::spec::{self, FieldType, Loaded, OnDelete, Spec};

pub use input::{Cell, FieldError, Input};
pub use transition::Refusal;

/// Why an engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the project has {0} error(s); run `trellis check` to see them")]
    Invalid(usize),
    #[error("internal: could not compile the request schema of `{entity}`: {message}")]
    Schema { entity: String, message: String },
    /// Problems found while compiling (policy conditions), with positions.
    #[error("the project has {} error(s) in its policies", .0.len())]
    Diagnostics(Vec<crate::spec::Diagnostic>),
}

/// A field of an entity, ready for use.
#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub ty: FieldType,
    pub required: bool,
    pub unique: bool,
    pub default: Option<SpecDefault>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub pattern: Option<Regex>,
    pub values: Vec<String>,
    /// The entity a ref, many or inverse field points to.
    pub target: Option<String>,
    /// For an inverse: the ref field on `target` that points back.
    pub via: Option<String>,
    pub on_delete: OnDelete,
    pub scale: u32,
    pub precision: u32,
    pub label: Option<String>,
    pub description: Option<String>,
    /// The field's former name, whose column is renamed rather than replaced.
    pub renamed_from: Option<String>,
}

impl Field {
    /// A field of this name and type with nothing else set: optional, no limits, no
    /// default, no target (the rest is filled in with struct update syntax).
    pub fn plain(name: &str, ty: FieldType) -> Field {
        Field {
            name: name.to_string(),
            ty,
            required: false,
            unique: false,
            default: None,
            min: None,
            max: None,
            pattern: None,
            values: Vec::new(),
            target: None,
            via: None,
            on_delete: OnDelete::Restrict,
            scale: 0,
            precision: 0,
            label: None,
            description: None,
            renamed_from: None,
        }
    }

    pub fn has_column(&self) -> bool {
        self.ty.has_column()
    }

    /// How the field's values are kept in its column (`None` without a column).
    pub fn storage(&self) -> Option<crate::spec::Storage> {
        self.ty.storage(self.precision, self.scale)
    }

    /// Is a create allowed to leave this field out?
    pub fn must_be_given(&self) -> bool {
        self.required && self.default.is_none() && self.has_column()
    }
}

/// The system fields every entity has, as fields (for filters and sorting).
static SYSTEM: std::sync::LazyLock<Vec<Field>> = std::sync::LazyLock::new(|| {
    [
        ("id", FieldType::Uuid),
        ("created_at", FieldType::Datetime),
        ("updated_at", FieldType::Datetime),
        ("version", FieldType::Integer),
    ]
    .into_iter()
    .map(|(name, ty)| Field {
        required: true,
        unique: name == "id",
        ..Field::plain(name, ty)
    })
    .collect()
});

/// `id`, `created_at`, `updated_at` or `version` as a field.
pub fn system_field(name: &str) -> Option<&'static Field> {
    SYSTEM.iter().find(|f| f.name == name)
}

/// An entity: one table, one REST collection.
#[derive(Debug)]
pub struct Entity {
    pub name: String,
    pub plural: String,
    pub label: String,
    pub description: Option<String>,
    pub fields: Vec<Field>,
    pub indexes: Vec<Vec<String>>,
    pub unique: Vec<Vec<String>>,
    pub search: Vec<String>,
    /// JSON Schemas of the request bodies and the record, and compiled validators.
    pub schemas: schemas::EntitySchemas,
    /// The state field of the entity's workflow: set on create, changed only by
    /// transitions.
    pub workflow_field: Option<String>,
}

impl Entity {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Fields stored in this entity's own table, in declaration order.
    pub fn column_fields(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(|f| f.has_column())
    }

    pub fn many_fields(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(|f| f.ty == FieldType::Many)
    }

    pub fn join_table(&self, field: &Field) -> String {
        spec::join_table(&self.name, &field.name)
    }
}

/// A reference from one entity's field to another entity.
#[derive(Debug, Clone)]
pub struct Referrer {
    pub entity: String,
    pub field: String,
    pub on_delete: OnDelete,
}

/// The compiled project.
#[derive(Debug)]
pub struct Engine {
    pub title: String,
    pub description: Option<String>,
    pub cors_origins: Vec<String>,
    pub database_url: Option<String>,
    entities: Vec<Arc<Entity>>,
    by_name: HashMap<String, usize>,
    by_plural: HashMap<String, usize>,
    /// For each entity, the ref fields elsewhere that point to it.
    referrers: HashMap<String, Vec<Referrer>>,
    /// The OpenAPI document, serialized once per load.
    pub openapi_json: bytes::Bytes,
    /// Who may do what.
    pub access: access::Access,
    /// How callers authenticate (from `trellis.yaml`).
    pub auth: crate::spec::settings::AuthSettings,
    /// State machines, by entity name.
    pub workflows: HashMap<String, Arc<workflow::Workflow>>,
    /// Webhook endpoints that workflow effects post to.
    pub webhooks: Vec<crate::spec::settings::WebhookDef>,
    /// `mode: production` in trellis.yaml.
    pub production: bool,
    /// Abuse limits (`limits` in trellis.yaml); read when the server starts.
    pub limits: crate::spec::settings::LimitSettings,
    /// File storage (`files` in trellis.yaml); read when the server starts.
    pub files: crate::spec::settings::FileSettings,
}

impl Engine {
    /// Builds the engine from a loaded project, refusing one with errors.
    pub fn build(loaded: &Loaded) -> Result<Engine, Error> {
        let errors = loaded.errors().count();
        if errors > 0 {
            return Err(Error::Invalid(errors));
        }
        let mut engine = Self::from_spec(&loaded.spec)?;
        let (access, problems) = access::compile(&engine, &loaded.spec);
        if !problems.is_empty() {
            return Err(Error::Diagnostics(problems));
        }
        engine.access = access;
        let (workflows, problems) = workflow::compile(&engine, &loaded.spec);
        if !problems.is_empty() {
            return Err(Error::Diagnostics(problems));
        }
        engine.workflows = workflows;
        engine.webhooks = loaded.spec.settings.webhooks.clone();
        engine.auth = loaded.spec.settings.auth.clone();
        let doc = openapi::document(&engine);
        // Compact: it is served on every client build (`trellis openapi` prints it pretty).
        engine.openapi_json = bytes::Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
        Ok(engine)
    }

    fn from_spec(spec: &Spec) -> Result<Engine, Error> {
        let mut entities = Vec::new();
        for model in &spec.models {
            let wf = spec.workflow(&model.entity.name);
            let mut fields: Vec<Field> = model.fields.iter().map(field_from_def).collect();
            // The state field starts in the workflow's initial state.
            if let Some(wf) = wf
                && let Some(f) = fields.iter_mut().find(|f| f.name == wf.field.name)
            {
                f.default = Some(SpecDefault::Value(serde_json::Value::String(
                    wf.initial.name.clone(),
                )));
            }
            let workflow_field = wf.map(|w| w.field.name.clone());
            let name = model.entity.name.clone();
            let label = model.label.clone().unwrap_or_else(|| title_case(&name));
            let schemas =
                schemas::EntitySchemas::build(&name, &label, &fields, workflow_field.as_deref())
                    .map_err(|message| Error::Schema {
                        entity: name.clone(),
                        message,
                    })?;
            entities.push(Arc::new(Entity {
                plural: spec::plural_of(model),
                name,
                label,
                description: model.description.clone(),
                fields,
                indexes: names(&model.indexes),
                unique: names(&model.unique),
                search: model.search.iter().map(|n| n.name.clone()).collect(),
                schemas,
                workflow_field,
            }));
        }
        let by_name = entities
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        let by_plural = entities
            .iter()
            .enumerate()
            .map(|(i, e)| (e.plural.clone(), i))
            .collect();
        let mut referrers: HashMap<String, Vec<Referrer>> = HashMap::new();
        for e in &entities {
            for f in e.fields.iter().filter(|f| f.ty == FieldType::Ref) {
                if let Some(target) = &f.target {
                    referrers.entry(target.clone()).or_default().push(Referrer {
                        entity: e.name.clone(),
                        field: f.name.clone(),
                        on_delete: f.on_delete,
                    });
                }
            }
        }
        let mut engine = Engine {
            title: spec
                .settings
                .name
                .clone()
                .unwrap_or_else(|| "Trellis API".to_string()),
            description: spec.settings.description.clone(),
            cors_origins: spec.settings.cors_origins.clone(),
            database_url: spec.settings.database_url.clone(),
            entities,
            by_name,
            by_plural,
            referrers,
            openapi_json: bytes::Bytes::new(),
            access: access::Access::default(),
            auth: Default::default(),
            workflows: HashMap::new(),
            webhooks: Vec::new(),
            production: spec.settings.production,
            limits: spec.settings.limits.clone(),
            files: spec.settings.files.clone(),
        };
        let doc = openapi::document(&engine);
        // Compact: it is served on every client build (`trellis openapi` prints it pretty).
        engine.openapi_json = bytes::Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
        Ok(engine)
    }

    /// The workflow of an entity, if it has one.
    pub fn workflow(&self, entity: &str) -> Option<&Arc<workflow::Workflow>> {
        self.workflows.get(entity)
    }

    pub fn entities(&self) -> &[Arc<Entity>] {
        &self.entities
    }

    pub fn entity(&self, name: &str) -> Option<&Arc<Entity>> {
        self.by_name.get(name).map(|&i| &self.entities[i])
    }

    pub fn entity_by_plural(&self, plural: &str) -> Option<&Arc<Entity>> {
        self.by_plural.get(plural).map(|&i| &self.entities[i])
    }

    /// The ref fields (on any entity) that point to `entity`.
    pub fn referrers(&self, entity: &str) -> &[Referrer] {
        self.referrers.get(entity).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The OpenAPI document as a JSON value.
    pub fn openapi(&self) -> serde_json::Value {
        serde_json::from_slice(&self.openapi_json).unwrap_or_default()
    }
}

/// A field of the model as the engine uses it.
pub(crate) fn field_from_def(f: &spec::FieldDef) -> Field {
    Field {
        name: f.name.clone(),
        ty: f.ty,
        required: f.required,
        unique: f.unique,
        default: f.default.as_ref().map(|(d, _)| d.clone()),
        min: f.min,
        max: f.max,
        pattern: f.pattern.as_ref().and_then(|p| Regex::new(p).ok()),
        values: f.values.clone(),
        target: f.target.as_ref().map(|t| t.name.clone()),
        via: f.via.as_ref().map(|v| v.name.clone()),
        on_delete: f.on_delete,
        scale: f.scale,
        precision: f.precision,
        label: f.label.clone(),
        description: f.description.clone(),
        renamed_from: f.renamed_from.as_ref().map(|r| r.name.clone()),
    }
}

fn names(groups: &[Vec<spec::walk::Named>]) -> Vec<Vec<String>> {
    groups
        .iter()
        .map(|g| g.iter().map(|n| n.name.clone()).collect())
        .collect()
}

/// `due_date` -> `Due date`
pub fn title_case(name: &str) -> String {
    let spaced = name.replace('_', " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `due_date` -> `DueDate` (schema names in the OpenAPI document).
pub fn pascal_case(name: &str) -> String {
    name.split('_')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(c) => c.to_uppercase().chain(chars).collect::<String>(),
                None => String::new(),
            }
        })
        .collect()
}

/// An engine from model files given as texts (`("models/x.yaml", "…")`), for unit
/// tests; panics on definitions with errors.
#[cfg(test)]
pub(crate) fn engine_from_texts(files: &[(&str, &str)]) -> Engine {
    let files: std::collections::BTreeMap<String, String> = files
        .iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect();
    let loaded = crate::spec::migration::load_texts(&files);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    Engine::build(&loaded).expect("engine")
}
