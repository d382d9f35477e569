//! The condition language (`filter=`, policy `where:`, workflow `where:` guards):
//! `trellis::engine::cond::parse` on arbitrary UTF-8. Mirrors
//! `tests/cond_props.rs::the_parser_never_panics`.
//!
//! Property: no panic, no hang; the parser returns `Ok(Cond)` or `Err(ParseError)`.
//! A condition that parses is also printed and parsed again (its `Display` is how
//! Trellis shows conditions back to people), again only for "no panic".
#![no_main]

use libfuzzer_sys::fuzz_target;
use trellis::engine::cond::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text) {
        Ok(cond) => {
            let printed = cond.to_string();
            let _ = parse(&printed);
        }
        Err(err) => {
            // The error is a value that can be shown to the user.
            let _ = format!("{err:?}");
        }
    }
});
