//! Trellis: a schema-driven backend engine. YAML definitions become database tables
//! and a REST API at runtime.
//!
//! Layers, in dependency order: [`spec`] → [`engine`] → [`store`] → [`http`]; the
//! binary adds the command line.
#![forbid(unsafe_code)]

pub mod engine;
pub mod feed;
pub mod http;
pub mod outbox;
pub mod reload;
pub mod spec;
pub mod store;
pub mod verify;
