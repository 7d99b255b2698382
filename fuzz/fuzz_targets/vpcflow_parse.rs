//! Any bytes (plain or gzip) through the flow-log parser and combiner: an error or records,
//! never a panic, and both paths agree on the record count.
#![no_main]

use flowmerge_core::formats::decode::DecodeLimits;
use flowmerge_core::formats::vpcflow::{Combiner, ParseOptions, combine_object, parse_object};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let opts = ParseOptions::default();
    let parsed = parse_object("fuzz.log", data, &opts);
    let mut combiner = Combiner::default();
    let combined = combine_object("fuzz.log", data, &opts, &DecodeLimits::default(), &mut combiner);
    match (parsed, combined) {
        (Ok(p), Ok(c)) => {
            assert_eq!(p.records, c.records);
            assert_eq!(combiner.records(), c.records);
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!(
            "parse and combine disagree: {:?} vs {:?}",
            a.map(|p| p.records),
            b.map(|c| c.records)
        ),
    }
});
