//! Any bytes through the CloudTrail reader, and what it accepts through the merge: never a panic,
//! every event once, each in the partition of its own time.
#![no_main]

use std::collections::HashSet;

use flowmerge_core::formats::decode::DecodeLimits;
use flowmerge_core::formats::cloudtrail::{merge, read_object};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(read) = read_object("fuzz.json", data, &DecodeLimits::default()) else {
        return;
    };
    let ids: HashSet<String> = read.events.iter().map(|e| e.event_id.clone()).collect();
    let days = merge(vec![("fuzz.json".into(), read.events)]).expect("merge of read events");
    let rows: usize = days.iter().map(|(_, df)| df.height()).sum();
    assert_eq!(rows, ids.len(), "each eventID once");
    for (day, _) in &days {
        assert!(day.starts_with("year=") && day.len() == 25, "{day}");
    }
});
