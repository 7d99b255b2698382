//! Any bytes (plain or gzip) through the flow-log parser and combiner: an error or records,
//! never a panic, and both paths agree — on the error, or on the record count and the merged
//! rows. The combiner's path has the fast paths (whole-object inflate, one-pass staging) and the
//! plain parse has none, so this checks that the fast paths read what the general ones read.
#![no_main]

use flowmerge_core::formats::decode::DecodeLimits;
use flowmerge_core::formats::vpcflow::{Combiner, ParseOptions, combine_object, parse_object};
use flowmerge_core::merge::{Finish, merge_frames};
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
            if p.frames.is_empty() {
                return;
            }
            let plain = merge_frames(p.frames, Finish::Final).expect("the plain merge");
            let frames = combiner.into_frames().expect("the combiner's frames");
            let folded = merge_frames(frames, Finish::Final).expect("the combined merge");
            assert!(plain.equals_missing(&folded), "{plain}\n{folded}");
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!(
            "parse and combine disagree: {:?} vs {:?}",
            a.map(|p| p.records),
            b.map(|c| c.records)
        ),
    }
});
