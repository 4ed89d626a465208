//! Feeds arbitrary bytes (as lossy UTF-8) to the Dockerfile parser; any panic is a bug.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(parsed) = kiln::dockerfile::parser::parse(&text) {
        for node in &parsed.nodes {
            assert!(node.start_line <= node.end_line);
            let _ = kiln::dockerfile::parser::dump(node);
        }
    }
});
