//! Key classification and content sniffing take any input without panicking.
#![no_main]

use flowmerge_core::source::{classify_key, sniff};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sniff(data);
    if let Ok(key) = std::str::from_utf8(data) {
        let _ = classify_key(key);
    }
});
