//! The parser against the AWS VPC user guide's "Flow log record examples" and against every real
//! sample in ../shared/realdata/vpcflow.

mod common;

use std::path::PathBuf;

use flowmerge_core::formats::vpcflow::{
    Combiner, ParseOptions, ParsedObject, combine_object, parse_object, parse_text,
};
use flowmerge_core::merge::{Finish, merge_frames};
use polars::prelude::*;

fn parse(text: &str) -> ParsedObject {
    parse_text("example", text.as_bytes(), &ParseOptions::default())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn parse_with(text: &str, format: &str) -> ParsedObject {
    let opts = ParseOptions::with_format(Some(format)).unwrap();
    parse_text("example", text.as_bytes(), &opts).unwrap_or_else(|e| panic!("{e}"))
}

fn i64s(df: &DataFrame, c: &str) -> Vec<Option<i64>> {
    let ca = df.column(c).unwrap().i64().unwrap();
    (0..ca.len()).map(|i| ca.get(i)).collect()
}
fn i32s(df: &DataFrame, c: &str) -> Vec<Option<i32>> {
    let ca = df.column(c).unwrap().i32().unwrap();
    (0..ca.len()).map(|i| ca.get(i)).collect()
}
fn strs(df: &DataFrame, c: &str) -> Vec<Option<String>> {
    let ca = df.column(c).unwrap().str().unwrap();
    (0..ca.len())
        .map(|i| ca.get(i).map(str::to_owned))
        .collect()
}

const V2_HEADER: &str = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status";

#[test]
fn aws_example_accepted_and_rejected_traffic() {
    let p = parse(
        "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK\n\
         2 123456789010 eni-1235b8ca123456789 172.31.9.69 172.31.9.12 49761 3389 6 20 4249 1418530010 1418530070 REJECT OK\n",
    );
    let df = &p.frames[0];
    assert_eq!(p.records, 2);
    assert_eq!(i32s(df, "dstport"), vec![Some(22), Some(3389)]);
    assert_eq!(i64s(df, "bytes"), vec![Some(4249), Some(4249)]);
    assert_eq!(
        strs(df, "action"),
        vec![Some("ACCEPT".into()), Some("REJECT".into())]
    );
    assert_eq!(df.column("version").unwrap().dtype(), &DataType::Int32);
    assert_eq!(df.column("start").unwrap().dtype(), &DataType::Int64);
}

#[test]
fn aws_example_no_data_and_skipped_records() {
    let p = parse(
        "2 123456789010 eni-1235b8ca123456789 - - - - - - - 1431280876 1431280934 - NODATA\n\
         2 123456789010 eni-11111111aaaaaaaaa - - - - - - - 1431280876 1431280934 - SKIPDATA\n",
    );
    let df = &p.frames[0];
    assert_eq!(
        i64s(df, "packets"),
        vec![None, None],
        "'-' is null, never 0"
    );
    assert_eq!(i32s(df, "srcport"), vec![None, None]);
    assert_eq!(strs(df, "action"), vec![None, None]);
    assert_eq!(i64s(df, "start"), vec![Some(1431280876); 2]);
    assert_eq!(
        strs(df, "log_status"),
        vec![Some("NODATA".into()), Some("SKIPDATA".into())]
    );
    // Merged, the null metrics stay null.
    let m = merge_frames(p.frames, Finish::Final).unwrap();
    assert_eq!(i64s(&m, "packets"), vec![None, None]);
    assert_eq!(i64s(&m, "merged_records"), vec![Some(1), Some(1)]);
}

#[test]
fn aws_example_security_group_and_network_acl_rules() {
    let p = parse(
        "2 123456789010 eni-1235b8ca123456789 203.0.113.12 172.31.16.139 0 0 1 4 336 1432917027 1432917142 ACCEPT OK\n\
         2 123456789010 eni-1235b8ca123456789 172.31.16.139 203.0.113.12 0 0 1 4 336 1432917094 1432917142 REJECT OK\n",
    );
    assert_eq!(i32s(&p.frames[0], "protocol"), vec![Some(1), Some(1)]);
}

#[test]
fn aws_example_ipv6_traffic() {
    let p = parse(
        "2 123456789010 eni-1235b8ca123456789 2001:db8:1234:a100:8d6e:3477:df66:f105 2001:db8:1234:a102:3304:8879:34cf:4071 34892 22 6 54 8855 1477913708 1477913820 ACCEPT OK\n",
    );
    assert_eq!(
        strs(&p.frames[0], "srcaddr"),
        vec![Some("2001:db8:1234:a100:8d6e:3477:df66:f105".into())]
    );
}

#[test]
fn aws_example_tcp_flag_sequence_merges_with_bit_or() {
    let text = "version vpc-id subnet-id instance-id interface-id account-id type srcaddr dstaddr srcport dstport pkt-srcaddr pkt-dstaddr protocol bytes packets start end action tcp-flags log-status\n\
        3 vpc-abcdefab012345678 subnet-aaaaaaaa012345678 i-01234567890123456 eni-1235b8ca123456789 123456789010 IPv4 52.213.180.42 10.0.0.62 43416 5001 52.213.180.42 10.0.0.62 6 568 8 1566848875 1566848933 ACCEPT 2 OK\n\
        3 vpc-abcdefab012345678 subnet-aaaaaaaa012345678 i-01234567890123456 eni-1235b8ca123456789 123456789010 IPv4 10.0.0.62 52.213.180.42 5001 43416 10.0.0.62 52.213.180.42 6 376 7 1566848875 1566848933 ACCEPT 18 OK\n\
        3 vpc-abcdefab012345678 subnet-aaaaaaaa012345678 i-01234567890123456 eni-1235b8ca123456789 123456789010 IPv4 52.213.180.42 10.0.0.62 43416 5001 52.213.180.42 10.0.0.62 6 100701 70 1566848875 1566848933 ACCEPT 2 OK\n\
        3 vpc-abcdefab012345678 subnet-aaaaaaaa012345678 i-01234567890123456 eni-1235b8ca123456789 123456789010 IPv4 10.0.0.62 52.213.180.42 5001 43416 10.0.0.62 52.213.180.42 6 632 12 1566848875 1566848933 ACCEPT 1 OK\n";
    let p = parse(text);
    assert_eq!(p.records, 4);
    let m = merge_frames(p.frames, Finish::Final).unwrap();
    assert_eq!(m.height(), 2, "two directions of one connection");
    // Sorted by srcaddr: 10.0.0.62 first (flags 18|1), then 52.213.180.42 (2|2).
    assert_eq!(i32s(&m, "tcp_flags"), vec![Some(19), Some(2)]);
    assert_eq!(i64s(&m, "bytes"), vec![Some(376 + 632), Some(568 + 100701)]);
    assert_eq!(i64s(&m, "merged_records"), vec![Some(2), Some(2)]);
}

#[test]
fn aws_example_traffic_through_a_nat_gateway() {
    let p = parse(
        "instance-id interface-id srcaddr dstaddr pkt-srcaddr pkt-dstaddr\n\
         - eni-1235b8ca123456789 10.0.1.5 10.0.0.220 10.0.1.5 203.0.113.5\n\
         - eni-1235b8ca123456789 10.0.0.220 203.0.113.5 10.0.0.220 203.0.113.5\n\
         - eni-1235b8ca123456789 203.0.113.5 10.0.0.220 203.0.113.5 10.0.0.220\n\
         - eni-1235b8ca123456789 10.0.0.220 10.0.1.5 203.0.113.5 10.0.1.5\n\
         i-01234567890123456 eni-1111aaaa2222bbbb3 10.0.1.5 203.0.113.5 10.0.1.5 203.0.113.5\n\
         i-01234567890123456 eni-1111aaaa2222bbbb3 203.0.113.5 10.0.1.5 203.0.113.5 10.0.1.5\n",
    );
    let df = &p.frames[0];
    assert_eq!(df.width(), 6, "no version column: only the named fields");
    assert_eq!(strs(df, "instance_id")[0], None);
    assert_eq!(
        strs(df, "instance_id")[4].as_deref(),
        Some("i-01234567890123456")
    );
}

#[test]
fn aws_example_traffic_through_a_transit_gateway() {
    let format = "${version} ${interface-id} ${account-id} ${vpc-id} ${subnet-id} ${instance-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${tcp-flags} ${type} ${pkt-srcaddr} ${pkt-dstaddr} ${action} ${log-status}";
    let p = parse_with(
        "3 eni-33333333333333333 123456789010 vpc-abcdefab012345678 subnet-22222222bbbbbbbbb i-01234567890123456 10.20.33.164 10.40.2.236 39812 80 6 3 IPv4 10.20.33.164 10.40.2.236 ACCEPT OK\n\
         3 eni-33333333333333333 123456789010 vpc-abcdefab012345678 subnet-22222222bbbbbbbbb i-01234567890123456 10.40.2.236 10.20.33.164 80 39812 6 19 IPv4 10.40.2.236 10.20.33.164 ACCEPT OK\n\
         3 eni-11111111111111111 123456789010 vpc-abcdefab012345678 subnet-11111111aaaaaaaaa - 10.40.1.175 10.40.2.236 39812 80 6 3 IPv4 10.20.33.164 10.40.2.236 ACCEPT OK\n",
        format,
    );
    assert_eq!(p.records, 3);
    assert_eq!(
        i32s(&p.frames[0], "tcp_flags"),
        vec![Some(3), Some(19), Some(3)]
    );
}

#[test]
fn aws_example_service_name_traffic_path_and_flow_direction() {
    let p = parse(
        "version srcaddr dstaddr srcport dstport protocol start end type packets bytes account-id vpc-id subnet-id instance-id interface-id region az-id sublocation-type sublocation-id pkt-srcaddr pkt-dstaddr pkt-src-aws-service pkt-dst-aws-service flow-direction traffic-path action log-status\n\
         5 52.95.128.179 10.0.0.71 80 34210 6 1616729292 1616729349 IPv4 14 15044 123456789012 vpc-abcdefab012345678 subnet-0c50d5a8a2fc8b2d6 i-0a0a0a0a0a0a0a0a0 eni-0a0a0a0a0a0a0a0a0 us-east-1 use1-az5 - - 52.95.128.179 10.0.0.71 S3 - ingress - ACCEPT OK\n\
         5 10.0.0.71 52.95.128.179 34210 80 6 1616729292 1616729349 IPv4 7 471 123456789012 vpc-abcdefab012345678 subnet-0c50d5a8a2fc8b2d6 i-0a0a0a0a0a0a0a0a0 eni-0a0a0a0a0a0a0a0a0 us-east-1 use1-az5 - - 10.0.0.71 52.95.128.179 - S3 egress 8 ACCEPT OK\n",
    );
    let df = &p.frames[0];
    assert_eq!(i32s(df, "traffic_path"), vec![None, Some(8)]);
    assert_eq!(strs(df, "pkt_src_aws_service")[0].as_deref(), Some("S3"));
    assert_eq!(strs(df, "flow_direction")[1].as_deref(), Some("egress"));
}

// ---- real samples ----

fn realdata() -> PathBuf {
    common::realdata("vpcflow")
}

/// Field lists of the header-less custom samples, from their sources.
const TGW_FORMAT: &str = "version resource-type account-id tgw-id tgw-attachment-id tgw-src-vpc-account-id tgw-dst-vpc-account-id tgw-src-vpc-id tgw-dst-vpc-id tgw-src-subnet-id tgw-dst-subnet-id tgw-src-eni tgw-dst-eni tgw-src-az-id tgw-dst-az-id tgw-pair-attachment-id srcaddr dstaddr srcport dstport protocol packets bytes start end log-status type packets-lost-no-route packets-lost-blackhole packets-lost-mtu-exceeded packets-lost-ttl-expired tcp-flags region flow-direction pkt-src-aws-service pkt-dst-aws-service";
const V5_ALL: &str = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status vpc-id subnet-id instance-id tcp-flags type pkt-srcaddr pkt-dstaddr region az-id sublocation-type sublocation-id pkt-src-aws-service pkt-dst-aws-service flow-direction traffic-path";
const TRANSIT_EXAMPLE: &str = "version interface-id account-id vpc-id subnet-id instance-id srcaddr dstaddr srcport dstport protocol tcp-flags type pkt-srcaddr pkt-dstaddr action log-status";

fn v8_all() -> String {
    format!(
        "{V5_ALL} ecs-cluster-arn ecs-cluster-name ecs-container-instance-arn ecs-container-instance-id ecs-container-id ecs-second-container-id ecs-service-name ecs-task-definition-arn ecs-task-arn ecs-task-id reject-reason"
    )
}

#[test]
fn every_real_vpcflow_sample_parses_and_conserves() {
    let dir = realdata();
    let v8 = v8_all();
    // (file, field list for header-less custom formats, records)
    let cases: &[(&str, Option<&str>, u64)] = &[
        (
            "cribl/216782312663_vpcflowlogs_us-east-1_fl-01b07217476488e53_20210902T2145Z_c2ed8707.first100.log",
            None,
            99,
        ),
        ("loki/vpcflowlog.log.gz", None, 3),
        ("elastic-beats/accept-reject-traffic.log", None, 4),
        ("elastic-beats/no-data-skip-data.log", None, 2),
        ("elastic-beats/ipv6.log", None, 1),
        ("elastic-beats/tcp-flag-sequence.log", None, 1),
        ("elastic-beats/tcp-flag-sequence-skip-data.log", None, 2),
        ("elastic-beats/custom-nat-gateway.log", None, 2),
        (
            "elastic-beats/custom-transit-gateway.log",
            Some(TRANSIT_EXAMPLE),
            1,
        ),
        (
            "elastic-integrations/test-v5-all-fields.log",
            Some(V5_ALL),
            1,
        ),
        ("elastic-integrations/test-v8-samples.log", Some(&v8), 1),
        (
            "elastic-integrations/test-tgw-samples.log",
            Some(TGW_FORMAT),
            10,
        ),
    ];
    let mut seen = 0;
    for (file, format, records) in cases {
        let raw = std::fs::read(dir.join(file)).unwrap();
        let opts = ParseOptions::with_format(*format).unwrap();
        let p = parse_object(file, &raw, &opts).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.records, *records, "{file}");
        let input_rows: usize = p.frames.iter().map(DataFrame::height).sum();
        assert_eq!(input_rows as u64, *records, "{file}");
        let sum = |frames: &[DataFrame], c: &str| -> i64 {
            frames
                .iter()
                .filter_map(|f| f.column(c).ok())
                .map(|s| s.as_materialized_series().sum::<i64>().unwrap_or(0))
                .sum()
        };
        let (packets, bytes) = (sum(&p.frames, "packets"), sum(&p.frames, "bytes"));
        let m = merge_frames(p.frames, Finish::Final).unwrap();
        assert_eq!(
            sum(std::slice::from_ref(&m), "merged_records"),
            *records as i64,
            "{file}"
        );
        assert_eq!(sum(std::slice::from_ref(&m), "packets"), packets, "{file}");
        assert_eq!(sum(std::slice::from_ref(&m), "bytes"), bytes, "{file}");
        // The path batches take: records folded by the combiner first, then the same merge.
        let combine = || {
            let mut c = Combiner::default();
            let limits = flowmerge_core::formats::decode::DecodeLimits::default();
            let stats = combine_object(file, &raw, &opts, &limits, &mut c)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(stats.records, *records, "{file}");
            c
        };
        let c = combine();
        // And as a batch finishes: the table absorbed into another, then (one layout) only sorted.
        let mut all = Combiner::default();
        all.absorb(combine());
        let finish = match all.single_layout() {
            true => Finish::Sorted,
            false => Finish::Final,
        };
        let absorbed = merge_frames(all.into_frames().unwrap(), finish).unwrap();
        assert!(
            absorbed.equals_missing(&m),
            "{file}: absorbed\n{absorbed}\nplain\n{m}"
        );
        let combined = merge_frames(c.into_frames().unwrap(), Finish::Final).unwrap();
        assert!(
            combined.equals_missing(&m),
            "{file}: combined\n{combined}\nplain\n{m}"
        );
        seen += 1;
    }
    // Every flow log sample in the folder is covered (the Cribl JSON is checked below).
    let on_disk = walk(&dir)
        .into_iter()
        .filter(|p| !p.ends_with(".json"))
        .count();
    assert_eq!(seen, on_disk, "a new sample was added: list it here");
}

#[test]
fn header_less_custom_samples_fail_without_their_field_list() {
    let dir = realdata();
    for file in [
        "elastic-beats/custom-transit-gateway.log",
        "elastic-integrations/test-tgw-samples.log",
    ] {
        let raw = std::fs::read(dir.join(file)).unwrap();
        let e = parse_object(file, &raw, &ParseOptions::default()).unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
        assert!(e.to_string().contains("--format"), "{e}");
    }
}

#[test]
fn transit_gateway_sample_types() {
    let raw = std::fs::read(realdata().join("elastic-integrations/test-tgw-samples.log")).unwrap();
    let p = parse_object(
        "tgw",
        &raw,
        &ParseOptions::with_format(Some(TGW_FORMAT)).unwrap(),
    )
    .unwrap();
    let df = &p.frames[0];
    assert_eq!(df.width(), 36);
    assert_eq!(
        df.column("packets_lost_no_route").unwrap().dtype(),
        &DataType::Int64
    );
    assert_eq!(
        strs(df, "tgw_id")[0].as_deref(),
        Some("tgw-0a12bc34de56f7890")
    );
    assert_eq!(strs(df, "resource_type")[0], None);
}

#[test]
fn cribl_capture_raw_lines_are_the_derived_log() {
    let dir = realdata();
    let events: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.join("cribl/ZP04h5.json")).unwrap()).unwrap();
    let text: String = events
        .iter()
        .map(|e| format!("{}\n", e["_raw"].as_str().unwrap()))
        .collect();
    let p = parse(&text);
    assert_eq!(p.records, 99);
    assert_eq!(
        strs(&p.frames[0], "srcaddr")[0].as_deref(),
        Some("89.248.165.164")
    );
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

#[test]
fn liberal_with_spaces_blank_lines_crlf_and_repeated_headers() {
    let text = format!(
        "{V2_HEADER}\r\n\
         2  123456789010   eni-1 10.0.0.1 10.0.0.2 1 2 6 3 120 100 160 ACCEPT OK\r\n\
         \r\n\
         \n\
         {V2_HEADER}\n\
         2 123456789010 eni-1 10.0.0.1 10.0.0.2 1 2 6 4 160 110 170 ACCEPT OK"
    );
    let p = parse(&text);
    assert_eq!(p.records, 2);
    assert_eq!(
        p.frames.len(),
        1,
        "an identical header does not start a new segment"
    );
    let m = merge_frames(p.frames, Finish::Final).unwrap();
    assert_eq!(i64s(&m, "packets"), vec![Some(7)]);
    assert_eq!(i64s(&m, "start"), vec![Some(100)]);
    assert_eq!(i64s(&m, "end"), vec![Some(170)]);

    // A different header mid-object starts a new segment with its own columns.
    let p = parse(&format!(
        "{V2_HEADER}\n2 1 eni-1 a b 1 2 6 3 120 100 160 ACCEPT OK\n\
         interface-id packets\neni-2 5\n"
    ));
    assert_eq!(p.frames.len(), 2);
    assert_eq!(p.frames[1].width(), 2);
}
