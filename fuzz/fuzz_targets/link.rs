//! Any bytes as the content of a link file or a digest in a manifest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regsweep::model::digest::Digest;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(d) = Digest::parse(text) {
            // What parses must print back to exactly the input.
            assert_eq!(d.to_string(), text);
        }
        let _ = Digest::parse_reference(text);
        let _ = Digest::from_hex(text);
    }
});
