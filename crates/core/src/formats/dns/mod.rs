//! DNS captures (pcap/pcapng from name servers, as ENTRADA reads them) → one row per query joined
//! with its response, in ENTRADA 2's column names.
//!
//! Join key: client address and port, DNS id and the first question's name (case-insensitive).
//! A response joins the earliest open query with its key. A query without a response within
//! [`DnsOptions::timeout_ns`] of capture time becomes a row with `dns_rcode` = -1; a response without
//! a query a row with `dns_rcode` = -2 and its own fields. State does not cross objects: a query
//! whose response is in the next capture file is a -1 row and the response a -2 row, which keeps
//! the output of a retried batch a function of its objects alone.

pub mod capture;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use chrono::{DateTime, Datelike, Utc};
use domain::base::Message;
use domain::base::opt::UnknownOptData;
use polars::prelude::*;

use self::capture::{CaptureStats, Wire, read_capture};

/// The dataset folder under the output prefix.
pub const DATASET: &str = "dns";

/// How captures are read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsOptions {
    /// UDP and TCP ports DNS is read on.
    pub ports: Vec<u16>,
    /// How long a query waits for its response, in capture time.
    pub timeout_ns: i64,
    /// The folder whose child names the capture server (`dns` in `…/dns/<server>/…`).
    pub server_folder: String,
}

impl Default for DnsOptions {
    fn default() -> Self {
        Self {
            ports: vec![53],
            timeout_ns: 2_000_000_000,
            server_folder: "dns".into(),
        }
    }
}

impl DnsOptions {
    /// Ports from a comma-separated list (`53,5353`).
    pub fn parse_ports(text: &str) -> Result<Vec<u16>, String> {
        let ports: Result<Vec<u16>, String> = text
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{p:?} is not a port (1-65535)"))
            })
            .collect();
        match ports {
            Ok(p) if p.is_empty() => Err("no port given (example: 53,5353)".into()),
            other => other,
        }
    }
}

/// The capture server of an object: the path segment after the first `folder` folder (`dns`
/// by default, as ENTRADA's `input/<server>/`), else the folder holding the file, else
/// `unknown`. Characters other than letters, digits, `.`, `-` and `_` become `_` (it is a
/// partition value).
pub fn server_of(key: &str, folder: &str) -> String {
    let parts: Vec<&str> = key.split('/').collect();
    let folders = &parts[..parts.len().saturating_sub(1)];
    let server = folders
        .iter()
        .position(|p| p.eq_ignore_ascii_case(folder))
        .and_then(|i| folders.get(i + 1))
        .or(folders.last())
        .copied()
        .unwrap_or("unknown");
    let clean: String = server
        .chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                true => c,
                false => '_',
            },
        )
        .collect();
    match clean.is_empty() {
        true => "unknown".into(),
        false => clean,
    }
}

/// A parsed DNS message with what the row needs.
#[derive(Clone, Debug)]
struct Dns {
    wire: Wire,
    id: u16,
    qr: bool,
    opcode: u8,
    rcode: i32,
    aa: bool,
    tc: bool,
    rd: bool,
    ra: bool,
    ad: bool,
    cd: bool,
    qdcount: u16,
    ancount: u16,
    nscount: u16,
    arcount: u16,
    /// Lower case, no trailing dot; `None` without a question.
    qname: Option<String>,
    qtype: Option<u16>,
    qclass: Option<u16>,
    edns: Option<Edns>,
}

#[derive(Clone, Debug, Default)]
struct Edns {
    udp: u16,
    version: u8,
    do_bit: bool,
    options: Vec<u16>,
    ecs: Option<String>,
    ext_errors: Vec<u16>,
}

fn parse_dns(wire: Wire) -> Option<Dns> {
    let msg = Message::from_octets(wire.message.clone()).ok()?;
    let h = msg.header();
    let counts = msg.header_counts();
    let question = match counts.qdcount() {
        0 => None,
        // A message that claims a question but whose question does not parse is malformed.
        _ => Some(msg.first_question()?),
    };
    let edns = msg.opt().map(|opt| {
        let mut e = Edns {
            udp: opt.udp_payload_size(),
            version: opt.version(),
            do_bit: opt.dnssec_ok(),
            ..Edns::default()
        };
        for o in opt.opt().iter::<UnknownOptData<_>>().flatten() {
            let code = o.code().to_int();
            e.options.push(code);
            let data: &[u8] = o.as_ref();
            match code {
                8 => e.ecs = client_subnet(data),
                15 if data.len() >= 2 => e.ext_errors.push(u16::from_be_bytes([data[0], data[1]])),
                _ => {}
            }
        }
        e
    });
    Some(Dns {
        id: h.id(),
        qr: h.qr(),
        opcode: h.opcode().to_int(),
        rcode: msg.opt_rcode().to_int() as i32,
        aa: h.aa(),
        tc: h.tc(),
        rd: h.rd(),
        ra: h.ra(),
        ad: h.ad(),
        cd: h.cd(),
        qdcount: counts.qdcount(),
        ancount: counts.ancount(),
        nscount: counts.nscount(),
        arcount: counts.arcount(),
        qname: question.as_ref().map(|q| {
            let name = q.qname().to_string().to_ascii_lowercase();
            match name.as_str() {
                "." => String::new(),
                _ => name.trim_end_matches('.').to_owned(),
            }
        }),
        qtype: question.as_ref().map(|q| q.qtype().to_int()),
        qclass: question.as_ref().map(|q| q.qclass().to_int()),
        edns,
        wire,
    })
}

/// EDNS client subnet (RFC 7871) as `address/prefix`, e.g. `203.0.113.0/24`.
fn client_subnet(data: &[u8]) -> Option<String> {
    let family = u16::from_be_bytes([*data.first()?, *data.get(1)?]);
    let prefix = *data.get(2)?;
    let addr = data.get(4..)?;
    let ip = match family {
        1 => {
            let mut b = [0u8; 4];
            b[..addr.len().min(4)].copy_from_slice(&addr[..addr.len().min(4)]);
            IpAddr::from(b)
        }
        2 => {
            let mut b = [0u8; 16];
            b[..addr.len().min(16)].copy_from_slice(&addr[..addr.len().min(16)]);
            IpAddr::from(b)
        }
        _ => return None,
    };
    Some(format!("{ip}/{prefix}"))
}

/// One output row.
#[derive(Clone, Debug)]
pub struct Row {
    /// Nanoseconds since the epoch (query time, or the response's for a -2 row).
    time_ns: i64,
    pair: Pair,
    /// `dns_domainname`, looked up once: rows are sorted by it and it is a column.
    domain: Option<String>,
    server: String,
    pcap_file: String,
}

/// The messages of a row.
#[derive(Clone, Debug)]
enum Pair {
    Joined(Box<Dns>, Box<Dns>),
    /// No response within the timeout: `dns_rcode` -1.
    Unanswered(Box<Dns>),
    /// No query: `dns_rcode` -2.
    Unsolicited(Box<Dns>),
}

impl Pair {
    /// The query, or the lone response.
    fn main(&self) -> &Dns {
        match self {
            Pair::Joined(q, _) | Pair::Unanswered(q) => q,
            Pair::Unsolicited(r) => r,
        }
    }
}

impl Row {
    fn query(&self) -> Option<&Dns> {
        match &self.pair {
            Pair::Joined(q, _) | Pair::Unanswered(q) => Some(q),
            Pair::Unsolicited(_) => None,
        }
    }

    fn response(&self) -> Option<&Dns> {
        match &self.pair {
            Pair::Joined(_, r) | Pair::Unsolicited(r) => Some(r),
            Pair::Unanswered(_) => None,
        }
    }

    /// The message that gives the row its question and client side.
    fn main(&self) -> &Dns {
        self.pair.main()
    }

    fn rcode(&self) -> i32 {
        match &self.pair {
            Pair::Joined(_, r) => r.rcode,
            Pair::Unanswered(_) => -1,
            Pair::Unsolicited(_) => -2,
        }
    }

    /// `year=YYYY/month=MM/day=DD/server=S` of the row.
    pub fn partition(&self) -> String {
        let t = DateTime::<Utc>::from_timestamp_nanos(self.time_ns);
        format!(
            "year={:04}/month={:02}/day={:02}/server={}",
            t.year(),
            t.month(),
            t.day(),
            self.server
        )
    }
}

/// The registered domain of a name, by the public suffix list.
fn domainname(qname: Option<&str>) -> Option<String> {
    psl::domain_str(qname?).map(str::to_owned)
}

/// What a capture held.
#[derive(Debug, Default)]
pub struct ReadCapture {
    pub rows: Vec<Row>,
    pub stats: CaptureStats,
    /// DNS-port payloads that are not DNS messages (counted, never an error).
    pub malformed: u64,
    pub queries: u64,
    pub responses: u64,
    /// Bytes of the capture after decompression.
    pub decoded_bytes: u64,
}

impl ReadCapture {
    /// Rows of queries that had no response (`dns_rcode` -1).
    pub fn rows_unanswered(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| matches!(r.pair, Pair::Unanswered(_)))
            .count()
    }

    /// Rows of responses that had no query (`dns_rcode` -2).
    pub fn rows_unsolicited(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| matches!(r.pair, Pair::Unsolicited(_)))
            .count()
    }
}

/// Reads one capture object (gzip or plain) into joined rows.
pub fn read_object(
    key: &str,
    raw: &[u8],
    opts: &DnsOptions,
    limits: &crate::formats::decode::DecodeLimits,
) -> Result<ReadCapture, crate::error::ParseError> {
    crate::formats::decode::with_text(key, raw, limits, |data| {
        let (wires, stats) = read_capture(data, &opts.ports)
            .map_err(|e| crate::error::ParseError::whole(key, e.to_string()))?;
        let mut read = join(key, wires, stats, opts);
        read.decoded_bytes = data.len() as u64;
        Ok(read)
    })
}

type JoinKey = (IpAddr, u16, u16, Option<String>);

fn join(key: &str, wires: Vec<Wire>, stats: CaptureStats, opts: &DnsOptions) -> ReadCapture {
    let server = server_of(key, &opts.server_folder);
    let mut out = ReadCapture {
        stats,
        ..ReadCapture::default()
    };
    let mut open: HashMap<JoinKey, VecDeque<Dns>> = HashMap::new();
    // Queries in arrival order, for timeouts: (time, key).
    let mut order: VecDeque<(i64, JoinKey)> = VecDeque::new();
    let row = |pair: Pair| Row {
        time_ns: pair.main().wire.ts_ns,
        domain: domainname(pair.main().qname.as_deref()),
        pair,
        server: server.clone(),
        pcap_file: key.to_owned(),
    };
    let expire = |now: i64,
                  open: &mut HashMap<JoinKey, VecDeque<Dns>>,
                  order: &mut VecDeque<(i64, JoinKey)>,
                  rows: &mut Vec<Row>| {
        while let Some((t, _)) = order.front() {
            if now - *t <= opts.timeout_ns {
                break;
            }
            let Some((t, k)) = order.pop_front() else {
                break;
            };
            if let Some(q) = open.get_mut(&k)
                && q.front().is_some_and(|d| d.wire.ts_ns == t)
            {
                let d = q.pop_front();
                if q.is_empty() {
                    open.remove(&k);
                }
                if let Some(d) = d {
                    rows.push(row(Pair::Unanswered(Box::new(d))));
                }
            }
        }
    };
    let mut wires = wires;
    // Capture order is file order; interfaces of a pcapng may interleave: order by time, stably.
    wires.sort_by_key(|w| w.ts_ns);
    for wire in wires {
        let now = wire.ts_ns;
        expire(now, &mut open, &mut order, &mut out.rows);
        let Some(dns) = parse_dns(wire) else {
            out.malformed += 1;
            continue;
        };
        match dns.qr {
            false => {
                out.queries += 1;
                let k = (dns.wire.src, dns.wire.sport, dns.id, dns.qname.clone());
                order.push_back((dns.wire.ts_ns, k.clone()));
                open.entry(k).or_default().push_back(dns);
            }
            true => {
                out.responses += 1;
                let k = (dns.wire.dst, dns.wire.dport, dns.id, dns.qname.clone());
                let query = open.get_mut(&k).and_then(VecDeque::pop_front);
                if open.get(&k).is_some_and(VecDeque::is_empty) {
                    open.remove(&k);
                }
                out.rows.push(match query {
                    Some(q) => row(Pair::Joined(Box::new(q), Box::new(dns))),
                    None => row(Pair::Unsolicited(Box::new(dns))),
                });
            }
        }
    }
    // The end of the object: what is still open had no response in it.
    let mut rest: Vec<Dns> = open.into_values().flatten().collect();
    rest.sort_by_key(|d| d.wire.ts_ns);
    out.rows
        .extend(rest.into_iter().map(|q| row(Pair::Unanswered(Box::new(q)))));
    out
}

/// Every column of the output, in order, with its Athena type.
pub fn athena_columns() -> Vec<(&'static str, &'static str)> {
    COLUMNS.iter().map(|(c, t)| (*c, t.athena())).collect()
}

#[derive(Clone, Copy)]
enum Ty {
    Time,
    Int,
    Str,
    Bool,
}

impl Ty {
    fn athena(self) -> &'static str {
        match self {
            Ty::Time => "timestamp",
            Ty::Int => "int",
            Ty::Str => "string",
            Ty::Bool => "boolean",
        }
    }
}

const COLUMNS: &[(&str, Ty)] = &[
    ("time", Ty::Time),
    ("dns_id", Ty::Int),
    ("dns_qname", Ty::Str),
    ("dns_domainname", Ty::Str),
    ("dns_tld", Ty::Str),
    ("dns_labels", Ty::Int),
    ("dns_qtype", Ty::Int),
    ("dns_qclass", Ty::Int),
    ("dns_opcode", Ty::Int),
    ("dns_rcode", Ty::Int),
    ("dns_aa", Ty::Bool),
    ("dns_tc", Ty::Bool),
    ("dns_rd", Ty::Bool),
    ("dns_ra", Ty::Bool),
    ("dns_ad", Ty::Bool),
    ("dns_cd", Ty::Bool),
    ("dns_ancount", Ty::Int),
    ("dns_nscount", Ty::Int),
    ("dns_arcount", Ty::Int),
    ("dns_qdcount", Ty::Int),
    ("ip_version", Ty::Int),
    ("prot", Ty::Int),
    ("ip_src", Ty::Str),
    ("ip_dst", Ty::Str),
    ("prot_src_port", Ty::Int),
    ("prot_dst_port", Ty::Int),
    ("ip_ttl", Ty::Int),
    ("edns_udp", Ty::Int),
    ("edns_version", Ty::Int),
    ("edns_do", Ty::Bool),
    ("edns_options", Ty::Str),
    ("edns_ecs", Ty::Str),
    ("edns_ext_error", Ty::Str),
    ("dns_req_len", Ty::Int),
    ("dns_res_len", Ty::Int),
    ("dns_proc_time", Ty::Int),
    ("pcap_file", Ty::Str),
];

/// A cell of a row.
enum Cell {
    Int(Option<i32>),
    Str(Option<String>),
    Bool(Option<bool>),
}

fn codes(c: &[u16]) -> Option<String> {
    (!c.is_empty()).then(|| c.iter().map(u16::to_string).collect::<Vec<_>>().join(","))
}

fn cell(r: &Row, column: &str) -> Cell {
    let m = r.main();
    let q = r.query();
    let s = r.response();
    // The client is the query's source (a lone response's destination).
    let (client, server, cport, sport) = match q {
        Some(q) => (q.wire.src, q.wire.dst, q.wire.sport, q.wire.dport),
        None => (m.wire.dst, m.wire.src, m.wire.dport, m.wire.sport),
    };
    let i = |v: Option<i64>| Cell::Int(v.map(|v| v as i32));
    let b = |v: Option<bool>| Cell::Bool(v);
    // Flags the server sets come from the response; the client's from the query.
    let resp_or_main = s.unwrap_or(m);
    match column {
        "dns_id" => i(Some(m.id as i64)),
        "dns_qname" => Cell::Str(m.qname.clone()),
        "dns_domainname" => Cell::Str(r.domain.clone()),
        "dns_tld" => Cell::Str(
            m.qname
                .as_deref()
                .and_then(psl::suffix_str)
                .map(str::to_owned),
        ),
        "dns_labels" => i(m
            .qname
            .as_deref()
            .map(|n| n.split('.').filter(|l| !l.is_empty()).count() as i64)),
        "dns_qtype" => i(m.qtype.map(i64::from)),
        "dns_qclass" => i(m.qclass.map(i64::from)),
        "dns_opcode" => i(Some(m.opcode as i64)),
        "dns_rcode" => i(Some(r.rcode() as i64)),
        "dns_aa" => b(s.map(|s| s.aa)),
        "dns_tc" => b(s.map(|s| s.tc)),
        "dns_rd" => b(Some(m.rd)),
        "dns_ra" => b(s.map(|s| s.ra)),
        "dns_ad" => b(Some(resp_or_main.ad)),
        "dns_cd" => b(Some(m.cd)),
        "dns_ancount" => i(s.map(|s| s.ancount as i64)),
        "dns_nscount" => i(s.map(|s| s.nscount as i64)),
        "dns_arcount" => i(s.map(|s| s.arcount as i64)),
        "dns_qdcount" => i(Some(m.qdcount as i64)),
        "ip_version" => i(Some(m.wire.ip_version as i64)),
        "prot" => i(Some(m.wire.prot as i64)),
        "ip_src" => Cell::Str(Some(client.to_string())),
        "ip_dst" => Cell::Str(Some(server.to_string())),
        "prot_src_port" => i(Some(cport as i64)),
        "prot_dst_port" => i(Some(sport as i64)),
        "ip_ttl" => i(Some(m.wire.ttl as i64)),
        "edns_udp" => i(q.and_then(|q| q.edns.as_ref()).map(|e| e.udp as i64)),
        "edns_version" => i(q.and_then(|q| q.edns.as_ref()).map(|e| e.version as i64)),
        "edns_do" => b(q.and_then(|q| q.edns.as_ref()).map(|e| e.do_bit)),
        "edns_options" => Cell::Str(
            q.and_then(|q| q.edns.as_ref())
                .and_then(|e| codes(&e.options)),
        ),
        "edns_ecs" => Cell::Str(q.and_then(|q| q.edns.as_ref()).and_then(|e| e.ecs.clone())),
        "edns_ext_error" => Cell::Str(
            s.and_then(|s| s.edns.as_ref())
                .and_then(|e| codes(&e.ext_errors)),
        ),
        "dns_req_len" => i(q.map(|q| q.wire.message.len() as i64)),
        "dns_res_len" => i(s.map(|s| s.wire.message.len() as i64)),
        "dns_proc_time" => i(match (q, s) {
            (Some(q), Some(s)) => Some((s.wire.ts_ns - q.wire.ts_ns) / 1_000_000),
            _ => None,
        }),
        "pcap_file" => Cell::Str(Some(r.pcap_file.clone())),
        _ => Cell::Str(None),
    }
}

/// Rows of a batch grouped by partition (day and server), each sorted by domain name and time.
pub fn merge(rows: Vec<Row>) -> PolarsResult<Vec<(String, DataFrame)>> {
    let mut parts: HashMap<String, Vec<Row>> = HashMap::new();
    for r in rows {
        parts.entry(r.partition()).or_default().push(r);
    }
    let mut parts: Vec<(String, Vec<Row>)> = parts.into_iter().collect();
    parts.sort_by(|a, b| a.0.cmp(&b.0));
    parts
        .into_iter()
        .map(|(p, mut rows)| {
            let mut keyed: Vec<(Option<String>, i64, String, u64, Row)> = rows
                .drain(..)
                .enumerate()
                .map(|(i, r)| {
                    (
                        r.domain.clone(),
                        r.time_ns,
                        r.pcap_file.clone(),
                        i as u64,
                        r,
                    )
                })
                .collect();
            // Domain, time, then file and position: a total order, so a retry writes the same bytes.
            keyed.sort_by(|a, b| (&a.0, a.1, &a.2, a.3).cmp(&(&b.0, b.1, &b.2, b.3)));
            let rows: Vec<Row> = keyed.into_iter().map(|k| k.4).collect();
            Ok((p, frame(&rows)?))
        })
        .collect()
}

fn frame(rows: &[Row]) -> PolarsResult<DataFrame> {
    let mut columns = Vec::with_capacity(COLUMNS.len());
    for (name, ty) in COLUMNS {
        let column = match ty {
            Ty::Time => rows
                .iter()
                .map(|r| Some(r.time_ns / 1_000))
                .collect::<Int64Chunked>()
                .with_name((*name).into())
                .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                .into_column(),
            Ty::Int => rows
                .iter()
                .map(|r| match cell(r, name) {
                    Cell::Int(v) => v,
                    _ => None,
                })
                .collect::<Int32Chunked>()
                .with_name((*name).into())
                .into_column(),
            Ty::Bool => rows
                .iter()
                .map(|r| match cell(r, name) {
                    Cell::Bool(v) => v,
                    _ => None,
                })
                .collect::<BooleanChunked>()
                .with_name((*name).into())
                .into_column(),
            Ty::Str => rows
                .iter()
                .map(|r| match cell(r, name) {
                    Cell::Str(v) => v,
                    _ => None,
                })
                .collect::<StringChunked>()
                .with_name((*name).into())
                .into_column(),
        };
        columns.push(column);
    }
    DataFrame::new(rows.len(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_come_from_the_key() {
        assert_eq!(
            server_of("captures/dns/ns1.example/2026/x.pcap", "dns"),
            "ns1.example"
        );
        assert_eq!(server_of("ns2/x.pcap.gz", "dns"), "ns2");
        assert_eq!(server_of("x.pcap", "dns"), "unknown");
        assert_eq!(server_of("dns/ns 3/x.pcap", "dns"), "ns_3");
        assert_eq!(server_of("input/ns4/2026/x.pcap", "input"), "ns4");
        assert_eq!(DnsOptions::parse_ports("53, 5353"), Ok(vec![53, 5353]));
        assert!(DnsOptions::parse_ports("53,x").is_err());
        assert!(DnsOptions::parse_ports("").is_err());
    }

    #[test]
    fn client_subnets_are_formatted() {
        assert_eq!(
            client_subnet(&[0, 1, 24, 0, 203, 0, 113]).as_deref(),
            Some("203.0.113.0/24")
        );
        assert_eq!(
            client_subnet(&[0, 2, 56, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0]).as_deref(),
            Some("2001:db8::/56")
        );
    }
}
