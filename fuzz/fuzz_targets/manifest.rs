//! Any bytes as a manifest blob: the parsers return, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regsweep::model::manifest;

fuzz_target!(|data: &[u8]| {
    let _ = manifest::parse(data);
    let _ = manifest::foreign_layers(data);
    let _ = manifest::parse_created(data);
});
