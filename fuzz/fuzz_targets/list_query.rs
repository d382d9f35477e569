//! The query strings of `GET /api/{plural}` (and, on the same input, of
//! `GET /api/{plural}/{id}` and `GET /api/{plural}/aggregate`): the raw query
//! string is split as the HTTP layer splits it (`serde_urlencoded`, see
//! `http::query_pairs`), then read by `engine::query::list_request`,
//! `engine::query::get_request` and `engine::aggregate::aggregate_request` for
//! every entity of the repository's root project, once as an unrestricted caller
//! and once with the fields a signed-in contractor may not query (the real
//! `Access::hidden_everywhere`). Mirrors `tests/input_props.rs::query_strings_never_panic`.
//!
//! Property: no panic, no hang; each call returns `Ok(request)` or `Err(ParamError)`.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use trellis::engine::Engine;
use trellis::engine::access::Principal;
use trellis::engine::aggregate::aggregate_request;
use trellis::engine::query::{get_request, list_request};
use trellis::spec;

struct Fixture {
    engine: Engine,
    /// (entity, field) pairs a contractor may not use in a query.
    hidden: Vec<(String, String)>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let loaded = spec::load(&root);
        let engine = Engine::build(&loaded).expect("the repository's root project builds");
        let who = Principal::user("fuzz-user", &["contractor"], Default::default());
        let hidden = engine.access.hidden_everywhere(&who);
        Fixture { engine, hidden }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    // What `http::query_pairs` does with the raw query string.
    let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(raw) else {
        return;
    };
    let none: &[(String, String)] = &[];
    for hidden in [none, f.hidden.as_slice()] {
        for e in f.engine.entities() {
            let _ = list_request(&f.engine, e, &pairs, hidden);
            let _ = get_request(&f.engine, e, &pairs, hidden);
            let _ = aggregate_request(&f.engine, e, &pairs, hidden);
        }
    }
});
