//! `trellis.yaml`: project settings. Every key is optional.

use super::diag::Sink;
use super::walk::{get, map_with_keys, name_list, opt_string};
use super::yaml::{Node, Value};

#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Shown as the API's title.
    pub name: Option<String>,
    pub description: Option<String>,
    /// As written: may contain `${VAR}`, expanded when the server starts.
    pub database_url: Option<String>,
    /// Browser origins allowed to call the API.
    pub cors_origins: Vec<String>,
}

pub const SETTINGS_KEYS: [&str; 4] = ["name", "description", "database", "cors"];

pub fn parse_settings(sink: &mut Sink<'_>, root: &Node) -> Settings {
    let mut settings = Settings::default();
    if matches!(root.value, Value::Null) {
        return settings;
    }
    let Some(map) = map_with_keys(sink, root, "trellis.yaml", &SETTINGS_KEYS) else {
        return settings;
    };
    settings.name = opt_string(sink, map, "name", "`name`").map(|n| n.name);
    settings.description = opt_string(sink, map, "description", "`description`").map(|n| n.name);
    if let Some(db) = get(map, "database")
        && let Some(db_map) = map_with_keys(sink, db, "`database`", &["url"])
    {
        settings.database_url = opt_string(sink, db_map, "url", "`database.url`").map(|n| n.name);
    }
    if let Some(cors) = get(map, "cors")
        && let Some(cors_map) = map_with_keys(sink, cors, "`cors`", &["origins"])
        && let Some(origins) = get(cors_map, "origins")
    {
        for origin in name_list(sink, origins, "`cors.origins`") {
            let ok = origin.name == "*"
                || ((origin.name.starts_with("http://") || origin.name.starts_with("https://"))
                    && !origin.name.ends_with('/'));
            if ok {
                settings.cors_origins.push(origin.name);
            } else {
                sink.error_hint(
                    origin.pos,
                    "invalid-origin",
                    format!("`{}` is not a browser origin", origin.name),
                    "write it like `http://localhost:5173` (scheme, host, optional port, no path)",
                );
            }
        }
    }
    settings
}
