//! Any bytes through the capture reader, TCP/IP reassembly, the DNS parser and the join: never a
//! panic, and every row lands in a partition of the right shape.
#![no_main]

use flowmerge_core::formats::decode::DecodeLimits;
use flowmerge_core::formats::dns::{DnsOptions, merge, read_object};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(read) = read_object("dns/ns1/fuzz.pcap", data, &DnsOptions::default(), &DecodeLimits::default()) else {
        return;
    };
    let rows = read.rows.len();
    let parts = merge(read.rows).expect("merge of read rows");
    assert_eq!(parts.iter().map(|(_, df)| df.height()).sum::<usize>(), rows);
    for (p, _) in &parts {
        assert!(p.starts_with("year=") && p.contains("/server=ns1"), "{p}");
    }
});
