//! `flowmerge gen OUTPUT`: realistic, deterministic VPC flow logs for demos and benchmarks — AWS's
//! object layout and names, several accounts and ENIs, long-lived flows that recur across the
//! files of a window, NODATA/SKIPDATA records, IPv6, and v2 or v5 (custom field order) formats.

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use flate2::Compression;
use flate2::write::GzEncoder;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::Serialize;

use crate::store;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GenFormat {
    /// The default format, with its header.
    V2,
    /// Every v5 field in a custom (alphabetical) order, with its header.
    V5,
}

/// How often a flow key recurs within a window: what decides how much a merge folds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GenProfile {
    /// Every record picks a flow from a pool of 1.5× the records per object: a key recurs about
    /// ten times per 5-minute window (records ≈ 10× rows).
    Repeat,
    /// As real VPCs look with 1-minute aggregation: long-lived connections recur once a minute
    /// (about a fifth of the records) beside short ones on ephemeral ports that occur once
    /// (records ≈ 1.2× rows per 5-minute window).
    Real,
    /// No key recurs: every record a flow of its own (records = rows).
    Unique,
}

#[derive(Args, Debug)]
pub struct GenArgs {
    /// Directory or object-store URL to write the raw objects to.
    pub output: String,
    #[arg(long, default_value_t = 8)]
    pub accounts: u32,
    /// Minutes of traffic (one object timestamp per minute).
    #[arg(long, default_value_t = 30)]
    pub minutes: u32,
    /// Objects per account and minute.
    #[arg(long, default_value_t = 3)]
    pub files_per_minute: u32,
    /// Records per object.
    #[arg(long, default_value_t = 2000)]
    pub records_per_file: u32,
    #[arg(long, value_enum, default_value_t = GenFormat::V2)]
    pub format: GenFormat,
    /// How often flow keys recur within a window.
    #[arg(long, value_enum, default_value_t = GenProfile::Repeat)]
    pub profile: GenProfile,
    /// Seed: the same seed and flags give byte-identical objects.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// First minute, RFC 3339.
    #[arg(long, default_value = "2026-11-01T00:00:00Z")]
    pub start: String,
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
}

#[derive(Debug, Serialize)]
pub struct GenSummary {
    pub objects: u64,
    pub records: u64,
    pub bytes: u64,
}

/// SplitMix64: tiny, fast, and stable forever (unlike a library RNG's stream across versions).
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

struct Flow {
    eni: usize,
    src: String,
    dst: String,
    srcport: u32,
    dstport: u32,
    protocol: u32,
    action: &'static str,
    ipv6: bool,
}

struct Account {
    id: String,
    flow_log_id: String,
    enis: Vec<String>,
    vpc: String,
    subnet: String,
    flows: Vec<Flow>,
}

fn ipv4(r: &mut Rng, private: bool) -> String {
    if private {
        format!("10.{}.{}.{}", r.below(4), r.below(256), 1 + r.below(254))
    } else {
        format!(
            "{}.{}.{}.{}",
            3 + r.below(220),
            r.below(256),
            r.below(256),
            1 + r.below(254)
        )
    }
}

fn ipv6_addr(r: &mut Rng) -> String {
    format!(
        "2001:db8:{:x}:{:x}::{:x}",
        r.below(0xffff),
        r.below(0xffff),
        1 + r.below(0xfffe)
    )
}

/// A flow between a local address and a remote one, on a service port and an ephemeral one.
fn random_flow(r: &mut Rng) -> Flow {
    let ipv6 = r.chance(10);
    let inbound = r.chance(50);
    let (local, remote) = if ipv6 {
        (ipv6_addr(r), ipv6_addr(r))
    } else {
        {
            let public = r.chance(30);
            (ipv4(r, true), ipv4(r, !public))
        }
    };
    let service_port = [443, 80, 22, 53, 3306, 5432, 6379, 8080][r.below(8) as usize];
    let ephemeral = 32768 + r.below(28000) as u32;
    let protocol = [6, 6, 6, 17, 1][r.below(5) as usize];
    let (srcport, dstport) = match (protocol, inbound) {
        (1, _) => (0, 0),
        (_, true) => (ephemeral, service_port),
        (_, false) => (service_port, ephemeral),
    };
    let (src, dst) = if inbound {
        (remote, local)
    } else {
        (local, remote)
    };
    Flow {
        eni: r.below(4) as usize,
        src,
        dst,
        srcport,
        dstport,
        protocol,
        action: if r.chance(15) { "REJECT" } else { "ACCEPT" },
        ipv6,
    }
}

fn account(r: &mut Rng, index: u32, pool: usize) -> Account {
    let id = format!(
        "{:012}",
        100_000_000_000u64 + u64::from(index) * 7_919_113 + r.below(1000)
    );
    let enis: Vec<String> = (0..4)
        .map(|_| format!("eni-{:017x}", r.next() >> 4))
        .collect();
    let flows = (0..pool).map(|_| random_flow(r)).collect();
    Account {
        id,
        flow_log_id: format!("fl-{:017x}", r.next() >> 4),
        enis,
        vpc: format!("vpc-{:017x}", r.next() >> 4),
        subnet: format!("subnet-{:017x}", r.next() >> 4),
        flows,
    }
}

const V5_ORDER: &[&str] = &[
    "account-id",
    "action",
    "az-id",
    "bytes",
    "dstaddr",
    "dstport",
    "end",
    "flow-direction",
    "instance-id",
    "interface-id",
    "log-status",
    "packets",
    "pkt-dst-aws-service",
    "pkt-dstaddr",
    "pkt-src-aws-service",
    "pkt-srcaddr",
    "protocol",
    "region",
    "srcaddr",
    "srcport",
    "start",
    "subnet-id",
    "sublocation-id",
    "sublocation-type",
    "tcp-flags",
    "traffic-path",
    "type",
    "version",
    "vpc-id",
];

/// Long-lived flows per account under [`GenProfile::Real`]: each is in one object of every
/// minute, so over a 5-minute window they are 5/24 of the records and the records are 1.2× the
/// rows.
fn long_lived(args: &GenArgs) -> usize {
    (args.records_per_file as usize * args.files_per_minute as usize * 5 / 24)
        .min(args.records_per_file as usize * 3 / 2)
}

/// One object's text: object `file` of its account's minute.
fn render_object(
    r: &mut Rng,
    a: &Account,
    args: &GenArgs,
    minute: i64,
    file: u32,
) -> (String, u64) {
    let mut out = String::with_capacity(args.records_per_file as usize * 110);
    let header: Vec<&str> = match args.format {
        GenFormat::V2 => flowmerge_core::formats::vpcflow::fields::DEFAULT_V2.to_vec(),
        GenFormat::V5 => V5_ORDER.to_vec(),
    };
    out.push_str(&header.join(" "));
    out.push('\n');
    let mut records = 0;
    // Real: this object's share of the long-lived flows, then short ones.
    let files = args.files_per_minute as usize;
    let mut long = (file as usize..long_lived(args)).step_by(files.max(1));
    let mut short;
    for _ in 0..args.records_per_file {
        let start = minute + r.below(50) as i64;
        let end = start + 1 + r.below(59) as i64;
        let nodata = r.chance(1);
        let long_flow = match args.profile {
            GenProfile::Real => long.next(),
            _ => None,
        };
        let flow = match (args.profile, long_flow) {
            (GenProfile::Repeat, _) => &a.flows[r.below(a.flows.len() as u64) as usize],
            (_, Some(i)) => &a.flows[i],
            _ => {
                short = random_flow(r);
                &short
            }
        };
        let eni = &a.enis[if nodata {
            r.below(4) as usize
        } else {
            flow.eni
        }];
        let packets = 1 + r.below(if flow.protocol == 6 { 500 } else { 20 });
        let bytes = packets * (40 + r.below(1400));
        let status = if !nodata {
            "OK"
        } else if r.chance(50) {
            "NODATA"
        } else {
            "SKIPDATA"
        };
        let value = |name: &str| -> String {
            let dash = || "-".to_string();
            match name {
                "version" => (if args.format == GenFormat::V2 {
                    "2"
                } else {
                    "5"
                })
                .into(),
                "account-id" => a.id.clone(),
                "interface-id" => eni.clone(),
                "start" => start.to_string(),
                "end" => end.to_string(),
                "log-status" => status.into(),
                _ if nodata => dash(),
                "srcaddr" | "pkt-srcaddr" => flow.src.clone(),
                "dstaddr" | "pkt-dstaddr" => flow.dst.clone(),
                "srcport" => flow.srcport.to_string(),
                "dstport" => flow.dstport.to_string(),
                "protocol" => flow.protocol.to_string(),
                "packets" => packets.to_string(),
                "bytes" => bytes.to_string(),
                "action" => flow.action.into(),
                "vpc-id" => a.vpc.clone(),
                "subnet-id" => a.subnet.clone(),
                "instance-id" => format!("i-{}", &eni[4..]),
                "tcp-flags" if flow.protocol == 6 => {
                    ["2", "18", "19", "3", "1"][(start % 5) as usize].into()
                }
                "type" => (if flow.ipv6 { "IPv6" } else { "IPv4" }).into(),
                "region" => args.region.clone(),
                "az-id" => "use1-az1".into(),
                "flow-direction" => (if flow.dst.starts_with("10.") {
                    "ingress"
                } else {
                    "egress"
                })
                .into(),
                "traffic-path" if !flow.dst.starts_with("10.") => "1".into(),
                "pkt-dst-aws-service" if flow.dstport == 443 && flow.dst.starts_with("52.") => {
                    "S3".into()
                }
                _ => dash(),
            }
        };
        let line: Vec<String> = header.iter().map(|h| value(h)).collect();
        out.push_str(&line.join(" "));
        out.push('\n');
        records += 1;
    }
    (out, records)
}

pub async fn run(args: GenArgs) -> Result<GenSummary> {
    let start: DateTime<Utc> = DateTime::parse_from_rfc3339(&args.start)
        .with_context(|| format!("--start {}: not RFC 3339", args.start))?
        .with_timezone(&Utc);
    let start = start.timestamp().div_euclid(60) * 60;
    let loc = store::open("OUTPUT", &args.output, true)?;
    let mut seeder = Rng::new(args.seed);
    let pool = (args.records_per_file as usize * 3 / 2).max(1);
    let accounts: Arc<Vec<Account>> = Arc::new(
        (0..args.accounts)
            .map(|i| account(&mut seeder, i, pool))
            .collect(),
    );
    let args = Arc::new(args);

    // One task per (account, minute, file), each with its own seed: output is independent of
    // scheduling.
    let (minutes, files) = (args.minutes, args.files_per_minute);
    let jobs: Vec<(usize, u32, u32)> = (0..accounts.len())
        .flat_map(|a| (0..minutes).flat_map(move |m| (0..files).map(move |f| (a, m, f))))
        .collect();
    let results: Vec<(u64, u64)> = futures::stream::iter(jobs)
        .map(|(ai, m, f)| {
            let (accounts, args, store, prefix) =
                (Arc::clone(&accounts), Arc::clone(&args), Arc::clone(&loc.store), loc.prefix.clone());
            async move {
                let minute = start + i64::from(m) * 60;
                let seed = args.seed ^ ((ai as u64) << 40) ^ (u64::from(m) << 20) ^ u64::from(f);
                let (key, body, records) = tokio::task::spawn_blocking(move || {
                    let mut r = Rng::new(seed);
                    let a = &accounts[ai];
                    let (text, records) = render_object(&mut r, a, &args, minute, f);
                    let mut gz = GzEncoder::new(Vec::with_capacity(text.len() / 4), Compression::default());
                    gz.write_all(text.as_bytes())?;
                    let t = DateTime::from_timestamp(minute, 0).unwrap_or_default();
                    let key = format!(
                        "AWSLogs/{id}/vpcflowlogs/{region}/{date}/{id}_vpcflowlogs_{region}_{fl}_{stamp}_{hash:08x}.log.gz",
                        id = a.id,
                        region = args.region,
                        date = t.format("%Y/%m/%d"),
                        fl = a.flow_log_id,
                        stamp = t.format("%Y%m%dT%H%MZ"),
                        hash = r.next() as u32,
                    );
                    Ok::<_, std::io::Error>((key, gz.finish()?, records))
                })
                .await??;
                let full = if prefix.is_empty() { key } else { format!("{prefix}/{key}") };
                let len = body.len() as u64;
                put(&*store, &full, body).await?;
                Ok::<_, anyhow::Error>((records, len))
            }
        })
        .buffer_unordered(4)
        .try_collect()
        .await?;
    Ok(GenSummary {
        objects: results.len() as u64,
        records: results.iter().map(|r| r.0).sum(),
        bytes: results.iter().map(|r| r.1).sum(),
    })
}

async fn put(store: &dyn ObjectStore, key: &str, body: Vec<u8>) -> Result<()> {
    store
        .put(&Path::from(key), PutPayload::from(body))
        .await
        .with_context(|| format!("writing {key}"))?;
    Ok(())
}
