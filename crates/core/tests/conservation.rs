//! Conservation (docs/contracts.md §6.2) as a property: for random records with nulls anywhere, split into
//! random objects and merged in random partial chunks, the per-key sums of packets, bytes and
//! merged_records equal those of the input, and all-null metrics stay null. The same holds when
//! records are folded by the combiner first (as a batch runs), whatever objects each thread gets,
//! and the result is the very frame the plain merge gives.

use std::collections::HashMap;

use flowmerge_core::formats::vpcflow::{Combiner, ParseOptions, combine_object, parse_text};
use flowmerge_core::merge::{Finish, merge_frames};
use polars::prelude::*;
use proptest::prelude::*;

const HEADER: &str = "version account-id interface-id srcaddr dstaddr srcport protocol packets bytes start end action tcp-flags log-status";

#[derive(Clone, Debug)]
struct Rec {
    account: Option<u8>,
    src: Option<u8>,
    port: Option<u16>,
    action: Option<bool>,
    packets: Option<i64>,
    bytes: Option<i64>,
    flags: Option<i32>,
}

type Key = (Option<u8>, Option<u8>, Option<u16>, Option<bool>);

fn rec() -> impl Strategy<Value = Rec> {
    (
        proptest::option::weighted(0.9, 0u8..3),
        proptest::option::weighted(0.9, 0u8..4),
        proptest::option::weighted(0.9, 0u16..3),
        proptest::option::weighted(0.9, any::<bool>()),
        proptest::option::weighted(0.8, 0i64..1_000_000),
        proptest::option::weighted(0.8, 0i64..1_000_000_000),
        proptest::option::weighted(0.5, 0i32..64),
    )
        .prop_map(|(account, src, port, action, packets, bytes, flags)| Rec {
            account,
            src,
            port,
            action,
            packets,
            bytes,
            flags,
        })
}

fn dash<T: ToString>(v: Option<T>) -> String {
    v.map_or("-".to_string(), |v| v.to_string())
}

fn line(r: &Rec) -> String {
    format!(
        "2 {} eni-1 {} 10.0.0.9 {} 6 {} {} 100 160 {} {} OK",
        dash(r.account.map(|a| format!("11111111111{a}"))),
        dash(r.src.map(|s| format!("10.1.0.{s}"))),
        dash(r.port),
        dash(r.packets),
        dash(r.bytes),
        dash(r.action.map(|a| if a { "ACCEPT" } else { "REJECT" })),
        dash(r.flags),
    )
}

#[derive(Debug, Default, PartialEq)]
struct Sums {
    packets: Option<i64>,
    bytes: Option<i64>,
    flags: Option<i32>,
    records: i64,
}

fn add(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    }
}

fn oracle(recs: &[Rec]) -> HashMap<Key, Sums> {
    let mut m: HashMap<Key, Sums> = HashMap::new();
    for r in recs {
        let s = m.entry((r.account, r.src, r.port, r.action)).or_default();
        s.packets = add(s.packets, r.packets);
        s.bytes = add(s.bytes, r.bytes);
        s.flags = match (s.flags, r.flags) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) | b.unwrap_or(0)),
        };
        s.records += 1;
    }
    m
}

fn observed(df: &DataFrame) -> HashMap<Key, Sums> {
    let acc = df.column("account_id").unwrap().str().unwrap().clone();
    let src = df.column("srcaddr").unwrap().str().unwrap().clone();
    let port = df.column("srcport").unwrap().i32().unwrap().clone();
    let action = df.column("action").unwrap().str().unwrap().clone();
    let packets = df.column("packets").unwrap().i64().unwrap().clone();
    let bytes = df.column("bytes").unwrap().i64().unwrap().clone();
    let flags = df.column("tcp_flags").unwrap().i32().unwrap().clone();
    let merged = df.column("merged_records").unwrap().i64().unwrap().clone();
    let mut m = HashMap::new();
    for i in 0..df.height() {
        let key = (
            acc.get(i).map(|a| a[11..].parse().unwrap()),
            src.get(i).map(|s| s[7..].parse().unwrap()),
            port.get(i).map(|p| p as u16),
            action.get(i).map(|a| a == "ACCEPT"),
        );
        let s = Sums {
            packets: packets.get(i),
            bytes: bytes.get(i),
            flags: flags.get(i),
            records: merged.get(i).unwrap(),
        };
        assert!(
            m.insert(key, s).is_none(),
            "key {key:?} twice in the output"
        );
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn merge_conserves_per_key_sums(
        recs in proptest::collection::vec(rec(), 1..300),
        objects in 1usize..8,
        chunk in 1usize..4,
    ) {
        // Split records round-robin into objects, each with its header.
        let texts: Vec<String> = (0..objects)
            .map(|o| {
                let body: String = recs.iter().skip(o).step_by(objects).map(|r| line(r) + "\n").collect();
                format!("{HEADER}\n{body}")
            })
            .collect();
        let frames: Vec<DataFrame> = texts
            .iter()
            .flat_map(|t| parse_text("p", t.as_bytes(), &ParseOptions::default()).unwrap().frames)
            .collect();
        // Partial merges of chunks, then the final merge: as a batch runs.
        let partials: Vec<DataFrame> = frames
            .chunks(chunk)
            .map(|c| merge_frames(c.to_vec(), Finish::Partial).unwrap())
            .collect();
        let merged = merge_frames(partials, Finish::Final).unwrap();
        prop_assert_eq!(observed(&merged), oracle(&recs));
    }

    #[test]
    fn combining_first_gives_the_plain_merge(
        recs in proptest::collection::vec(rec(), 1..300),
        objects in 1usize..12,
        // Past 4 threads, absorbing inserts into a table kept before (Combiner::absorb).
        threads in 1usize..8,
        spellings in any::<bool>(),
    ) {
        let texts: Vec<String> = (0..objects)
            .map(|o| {
                let body: String = recs.iter().skip(o).step_by(objects).map(|r| line(r) + "\n").collect();
                // Another spelling of the same numbers: the combiner spells them one way, as the merge types them.
                let body = if spellings && o % 2 == 1 { body.replace(" 6 ", " +6 ") } else { body };
                format!("{HEADER}\n{body}")
            })
            .collect();
        let fold = || {
            let mut combiners: Vec<Combiner> = (0..threads).map(|_| Combiner::default()).collect();
            for (i, t) in texts.iter().enumerate() {
                combine_object("p", t.as_bytes(), &ParseOptions::default(), &flowmerge_core::formats::decode::DecodeLimits::default(), &mut combiners[i % threads]).unwrap();
            }
            combiners
        };
        let combiners = fold();
        prop_assert_eq!(combiners.iter().map(Combiner::records).sum::<u64>(), recs.len() as u64);
        // As a batch does: the threads' tables folded into one, whose rows only need ordering.
        let mut all = Combiner::default();
        for c in fold() {
            all.absorb(c);
        }
        prop_assert!(all.single_layout());
        prop_assert_eq!(all.records(), recs.len() as u64);
        let absorbed = merge_frames(all.into_frames().unwrap(), Finish::Sorted).unwrap();
        let frames: Vec<DataFrame> = combiners.into_iter().flat_map(|c| c.into_frames().unwrap()).collect();
        let combined = merge_frames(frames, Finish::Final).unwrap();
        prop_assert_eq!(observed(&combined), oracle(&recs));
        prop_assert!(absorbed.equals_missing(&combined), "{absorbed}\n{combined}");

        let plain: Vec<DataFrame> = texts
            .iter()
            .flat_map(|t| parse_text("p", t.as_bytes(), &ParseOptions::default()).unwrap().frames)
            .collect();
        let plain = merge_frames(plain, Finish::Final).unwrap();
        prop_assert!(combined.equals_missing(&plain), "{combined}\n{plain}");
    }
}
