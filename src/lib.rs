//! Trellis: a schema-driven backend engine. YAML definitions become database tables
//! and a REST API at runtime.
//!
//! Layers, in dependency order: [`spec`] → [`engine`] → [`store`] → [`runtime`] →
//! [`http`]; the binary adds the command line (`src/cli/`). A module imports only
//! from its own layer and the layers before it.
#![forbid(unsafe_code)]

pub mod engine;
pub mod http;
pub mod runtime;
pub mod spec;
pub mod store;
