//! DNS captures, checked from outside the module: every real sample against tshark's count of
//! DNS queries on port 53, and generated captures (UDP over IPv4 and IPv6, VLAN tags, EDNS with
//! DO and client subnet, NXDOMAIN/SERVFAIL, unanswered queries, a fragmented response, TCP with
//! the length prefix in its own segment, pipelined and split messages, noise; pcap µs and ns,
//! pcapng, gzip) whose rows must be exactly what was generated.

// The capture writer's helpers take a packet's fields as they are: a struct would only rename them.
#![allow(clippy::too_many_arguments)]

mod common;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;

use etherparse::PacketBuilder;
use flowmerge_core::formats::decode::DecodeLimits;
use flowmerge_core::formats::dns::{DnsOptions, merge, read_object};
use polars::prelude::*;

fn realdata() -> PathBuf {
    common::realdata("dns_pcap")
}

/// tshark's count of DNS messages on port 53, queries or responses: one value per message, so a
/// TCP segment with two pipelined messages counts two.
fn tshark_count(file: &std::path::Path, response: bool) -> usize {
    let out = Command::new("tshark")
        .args([
            "-r",
            file.to_str().unwrap(),
            "-Y",
            "dns && (udp.port == 53 || tcp.port == 53)",
        ])
        .args(["-T", "fields", "-e", "dns.flags.response"])
        .output()
        .expect("tshark (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = if response {
        ["1", "True"]
    } else {
        ["0", "False"]
    };
    String::from_utf8_lossy(&out.stdout)
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|v| want.contains(v))
        .count()
}

fn values<T>(df: &DataFrame, c: &str, f: impl Fn(AnyValue<'_>) -> Option<T>) -> Vec<Option<T>> {
    let col = df.column(c).unwrap();
    (0..df.height()).map(|i| f(col.get(i).unwrap())).collect()
}

fn column_i32(df: &DataFrame, c: &str) -> Vec<Option<i32>> {
    values(df, c, |v| match v {
        AnyValue::Int32(x) => Some(x),
        _ => None,
    })
}

fn column_str(df: &DataFrame, c: &str) -> Vec<Option<String>> {
    values(df, c, |v| match v {
        AnyValue::String(x) => Some(x.to_owned()),
        _ => None,
    })
}

fn column_bool(df: &DataFrame, c: &str) -> Vec<Option<bool>> {
    values(df, c, |v| match v {
        AnyValue::Boolean(x) => Some(x),
        _ => None,
    })
}

#[test]
fn every_real_capture_is_read_with_as_many_queries_as_tshark_counts() {
    let dir = realdata();
    let mut files: Vec<PathBuf> = Vec::new();
    for sub in std::fs::read_dir(&dir).unwrap() {
        for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            files.push(f.unwrap().path());
        }
    }
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    for f in files {
        let key = format!("dns/sample/{}", f.file_name().unwrap().to_str().unwrap());
        let raw = std::fs::read(&f).unwrap();
        let read = read_object(&key, &raw, &DnsOptions::default(), &DecodeLimits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let queries = read.rows.len() - read.rows_unsolicited();
        let answered = read.rows.len() - read.rows_unsolicited() - read.rows_unanswered();
        assert!(
            queries >= tshark_count(&f, false),
            "{}: {queries} query rows, tshark counts {}",
            f.display(),
            tshark_count(&f, false)
        );
        assert!(
            answered + read.rows_unsolicited() >= tshark_count(&f, true),
            "{}: responses",
            f.display()
        );
        assert!(!read.stats.truncated, "{}", f.display());
    }
}

// ---- generated captures ----

/// A DNS message: header, one question, optionally an OPT record (DO, client subnet).
fn dns_message(
    id: u16,
    response: bool,
    rcode: u8,
    qname: &str,
    qtype: u16,
    edns: Option<(bool, Option<[u8; 3]>)>,
) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend(id.to_be_bytes());
    let flags: u16 =
        ((response as u16) << 15) | 0x0100 | (rcode as u16 & 0xf) | ((response as u16) << 7);
    m.extend(flags.to_be_bytes());
    m.extend(1u16.to_be_bytes());
    m.extend(0u16.to_be_bytes());
    m.extend(0u16.to_be_bytes());
    m.extend((edns.is_some() as u16).to_be_bytes());
    for label in qname.split('.') {
        m.push(label.len() as u8);
        m.extend(label.as_bytes());
    }
    m.push(0);
    m.extend(qtype.to_be_bytes());
    m.extend(1u16.to_be_bytes());
    if let Some((do_bit, ecs)) = edns {
        m.push(0); // root
        m.extend(41u16.to_be_bytes());
        m.extend(1232u16.to_be_bytes());
        m.extend([0u8, 0]); // extended rcode, version
        m.extend(((do_bit as u16) << 15).to_be_bytes());
        let mut rdata = Vec::new();
        if let Some(net) = ecs {
            rdata.extend(8u16.to_be_bytes());
            rdata.extend(7u16.to_be_bytes());
            rdata.extend([0u8, 1, 24, 0]);
            rdata.extend(net);
        }
        m.extend((rdata.len() as u16).to_be_bytes());
        m.extend(rdata);
    }
    m
}

/// A capture being written: (time ns, frame).
#[derive(Default)]
struct Capture {
    frames: Vec<(i64, Vec<u8>)>,
}

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

impl Capture {
    fn udp(
        &mut self,
        t: i64,
        src: IpAddr,
        dst: IpAddr,
        sp: u16,
        dp: u16,
        vlan: bool,
        payload: &[u8],
    ) {
        let eth = PacketBuilder::ethernet2(MAC_A, MAC_B);
        let mut out = Vec::new();
        match (src, dst, vlan) {
            (IpAddr::V4(s), IpAddr::V4(d), false) => eth
                .ipv4(s.octets(), d.octets(), 64)
                .udp(sp, dp)
                .write(&mut out, payload),
            (IpAddr::V4(s), IpAddr::V4(d), true) => eth
                .single_vlan(etherparse::VlanId::try_new(42).unwrap())
                .ipv4(s.octets(), d.octets(), 64)
                .udp(sp, dp)
                .write(&mut out, payload),
            (IpAddr::V6(s), IpAddr::V6(d), _) => eth
                .ipv6(s.octets(), d.octets(), 64)
                .udp(sp, dp)
                .write(&mut out, payload),
            _ => panic!("mixed families"),
        }
        .unwrap();
        self.frames.push((t, out));
    }

    fn tcp(
        &mut self,
        t: i64,
        src: IpAddr,
        dst: IpAddr,
        sp: u16,
        dp: u16,
        seq: u32,
        syn: bool,
        payload: &[u8],
    ) {
        let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else {
            panic!("v4 only")
        };
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(s.octets(), d.octets(), 64)
            .tcp(sp, dp, seq, 65535);
        let b = if syn { b.syn() } else { b.psh() };
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        self.frames.push((t, out));
    }

    /// A UDP datagram over IPv4 in two fragments.
    fn udp_fragmented(
        &mut self,
        t: i64,
        src: [u8; 4],
        dst: [u8; 4],
        sp: u16,
        dp: u16,
        payload: &[u8],
    ) {
        let mut udp = Vec::new();
        udp.extend(sp.to_be_bytes());
        udp.extend(dp.to_be_bytes());
        udp.extend(((payload.len() + 8) as u16).to_be_bytes());
        udp.extend([0u8, 0]);
        udp.extend(payload);
        let cut = (udp.len() / 2) & !7;
        for (offset, part, more) in [(0, &udp[..cut], true), (cut, &udp[cut..], false)] {
            let mut h = etherparse::Ipv4Header::new(
                part.len() as u16,
                64,
                etherparse::IpNumber::UDP,
                src,
                dst,
            )
            .unwrap();
            h.identification = 4242;
            h.more_fragments = more;
            h.fragment_offset = etherparse::IpFragOffset::try_new((offset / 8) as u16).unwrap();
            h.header_checksum = h.calc_header_checksum();
            let mut out = Vec::new();
            out.extend(MAC_B);
            out.extend(MAC_A);
            out.extend(0x0800u16.to_be_bytes());
            h.write(&mut out).unwrap();
            out.extend(part);
            self.frames.push((t, out));
        }
    }

    fn noise(&mut self, t: i64) {
        // ARP, and UDP to another port.
        let mut arp = Vec::new();
        arp.extend(MAC_B);
        arp.extend(MAC_A);
        arp.extend(0x0806u16.to_be_bytes());
        arp.extend([0u8; 28]);
        self.frames.push((t, arp));
        self.udp(
            t,
            ip("10.0.0.9"),
            ip("10.0.0.1"),
            5353,
            5353,
            false,
            b"not dns at all",
        );
    }

    fn pcap(&self, nanos: bool) -> Vec<u8> {
        self.pcap_as(nanos, false, 1)
    }

    /// The frames re-framed for another link type: 101 raw IP, 0 BSD NULL, 276 Linux SLL2
    /// (ARP frames have no IP layer and are kept only on Ethernet).
    fn relinked(&self, link: u32) -> Vec<(i64, Vec<u8>)> {
        self.frames
            .iter()
            .filter_map(|(t, f)| {
                let (ethertype, ip) = match u16::from_be_bytes([f[12], f[13]]) {
                    0x8100 => (u16::from_be_bytes([f[16], f[17]]), &f[18..]),
                    e => (e, &f[14..]),
                };
                if ethertype != 0x0800 && ethertype != 0x86dd {
                    return None;
                }
                let framed = match link {
                    101 => ip.to_vec(),
                    0 => {
                        let family: u32 = if ethertype == 0x0800 { 2 } else { 30 };
                        [family.to_le_bytes().as_slice(), ip].concat()
                    }
                    276 => {
                        let mut h = Vec::new();
                        h.extend(ethertype.to_be_bytes());
                        h.extend([0u8; 2]);
                        h.extend(2u32.to_be_bytes()); // interface index
                        h.extend(1u16.to_be_bytes()); // ARPHRD_ETHER
                        h.extend([0u8, 6]);
                        h.extend([0u8; 8]);
                        [h.as_slice(), ip].concat()
                    }
                    _ => f.clone(),
                };
                Some((*t, framed))
            })
            .collect()
    }

    /// Classic pcap: µs or ns, little- or big-endian, any link type.
    fn pcap_as(&self, nanos: bool, big_endian: bool, link: u32) -> Vec<u8> {
        let u32b = |v: u32| match big_endian {
            true => v.to_be_bytes(),
            false => v.to_le_bytes(),
        };
        let u16b = |v: u16| match big_endian {
            true => v.to_be_bytes(),
            false => v.to_le_bytes(),
        };
        let mut out = Vec::new();
        out.extend(u32b(if nanos { 0xa1b23c4d } else { 0xa1b2c3d4 }));
        out.extend(u16b(2));
        out.extend(u16b(4));
        out.extend([0u8; 8]);
        out.extend(u32b(65535));
        out.extend(u32b(link));
        let frames = match link {
            1 => self.frames.clone(),
            other => self.relinked(other),
        };
        for (t, f) in &frames {
            let frac = match nanos {
                true => t % 1_000_000_000,
                false => (t % 1_000_000_000) / 1_000,
            };
            out.extend(u32b((t / 1_000_000_000) as u32));
            out.extend(u32b(frac as u32));
            out.extend(u32b(f.len() as u32));
            out.extend(u32b(f.len() as u32));
            out.extend(f);
        }
        out
    }

    fn pcapng(&self) -> Vec<u8> {
        let block = |out: &mut Vec<u8>, kind: u32, body: &[u8]| {
            let mut body = body.to_vec();
            while !body.len().is_multiple_of(4) {
                body.push(0);
            }
            let len = (body.len() + 12) as u32;
            out.extend(kind.to_le_bytes());
            out.extend(len.to_le_bytes());
            out.extend(&body);
            out.extend(len.to_le_bytes());
        };
        let mut out = Vec::new();
        let mut shb = Vec::new();
        shb.extend(0x1a2b3c4du32.to_le_bytes());
        shb.extend(1u16.to_le_bytes());
        shb.extend(0u16.to_le_bytes());
        shb.extend((-1i64).to_le_bytes());
        block(&mut out, 0x0a0d0d0a, &shb);
        // Interface 0: an unused one with µs; interface 1: Ethernet with if_tsresol = 9 (ns).
        let mut idb = Vec::new();
        idb.extend(1u16.to_le_bytes());
        idb.extend(0u16.to_le_bytes());
        idb.extend(65535u32.to_le_bytes());
        block(&mut out, 1, &idb);
        let mut idb = idb.clone();
        idb.extend(9u16.to_le_bytes());
        idb.extend(1u16.to_le_bytes());
        idb.extend([9u8, 0, 0, 0]);
        idb.extend([0u8; 4]);
        block(&mut out, 1, &idb);
        for (t, f) in &self.frames {
            let mut epb = Vec::new();
            epb.extend(1u32.to_le_bytes());
            epb.extend(((*t as u64 >> 32) as u32).to_le_bytes());
            epb.extend((*t as u64 as u32).to_le_bytes());
            epb.extend((f.len() as u32).to_le_bytes());
            epb.extend((f.len() as u32).to_le_bytes());
            epb.extend(f);
            block(&mut out, 6, &epb);
        }
        out
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// What a row must say: (server, qname, qtype, rcode, prot, ip version, client ip, client port,
/// id, DO).
type Expected = (
    String,
    String,
    i32,
    i32,
    i32,
    i32,
    String,
    i32,
    i32,
    Option<bool>,
);

/// Writes a capture of every case; returns it with the rows it must give.
fn generated() -> (Capture, Vec<Expected>) {
    let mut c = Capture::default();
    let mut want = Vec::new();
    let server4 = ip("192.0.2.53");
    let server6 = ip("2001:db8::53");
    let t0 = 1_764_547_200_000_000_000i64; // 2025-12-01T00:00:00Z
    let ms = 1_000_000i64;
    let row = |name: &str,
               qtype: i32,
               rcode: i32,
               prot: i32,
               v: i32,
               client: &str,
               port: i32,
               id: i32,
               dnssec: Option<bool>| {
        (
            "ns1".to_string(),
            name.to_string(),
            qtype,
            rcode,
            prot,
            v,
            client.to_string(),
            port,
            id,
            dnssec,
        )
    };
    // UDP/IPv4, answered; one with a VLAN tag, EDNS DO and client subnet, NXDOMAIN.
    for i in 0..20u16 {
        let client = ip(&format!("198.51.100.{}", i + 1));
        let name = format!("host{i}.Example.NL");
        let edns = (i % 2 == 0).then_some((i % 4 == 0, (i % 4 == 0).then_some([203, 0, 113])));
        let q = dns_message(1000 + i, false, 0, &name, 1, edns);
        let rcode = if i % 5 == 0 { 3 } else { 0 };
        let r = dns_message(
            1000 + i,
            true,
            rcode,
            &name,
            1,
            edns.map(|(d, _)| (d, None)),
        );
        let t = t0 + i as i64 * 10 * ms;
        c.udp(t, client, server4, 40000 + i, 53, i % 3 == 0, &q);
        c.udp(t + 3 * ms, server4, client, 53, 40000 + i, i % 3 == 0, &r);
        want.push(row(
            &name.to_lowercase(),
            1,
            rcode as i32,
            17,
            4,
            &client.to_string(),
            40000 + i as i32,
            1000 + i as i32,
            edns.map(|(d, _)| d),
        ));
    }
    // UDP/IPv6, SERVFAIL.
    let client6 = ip("2001:db8:1::7");
    c.udp(
        t0 + 300 * ms,
        client6,
        server6,
        50001,
        53,
        false,
        &dns_message(7, false, 0, "v6.example.org", 28, None),
    );
    c.udp(
        t0 + 301 * ms,
        server6,
        client6,
        53,
        50001,
        false,
        &dns_message(7, true, 2, "v6.example.org", 28, None),
    );
    want.push(row(
        "v6.example.org",
        28,
        2,
        17,
        6,
        "2001:db8:1::7",
        50001,
        7,
        None,
    ));
    // Unanswered (the timeout is 2 s of capture time; later packets move the clock).
    c.udp(
        t0 + 400 * ms,
        ip("198.51.100.200"),
        server4,
        50002,
        53,
        false,
        &dns_message(8, false, 0, "lost.example.com", 1, None),
    );
    want.push(row(
        "lost.example.com",
        1,
        -1,
        17,
        4,
        "198.51.100.200",
        50002,
        8,
        None,
    ));
    // A large response in two IP fragments.
    let big_name = "big.example.net";
    c.udp(
        t0 + 500 * ms,
        ip("198.51.100.201"),
        server4,
        50003,
        53,
        false,
        &dns_message(9, false, 0, big_name, 16, None),
    );
    let mut big = dns_message(9, true, 0, big_name, 16, None);
    big.extend(vec![0u8; 0]); // the message itself stays valid; its datagram is fragmented below
    c.udp_fragmented(
        t0 + 501 * ms,
        [192, 0, 2, 53],
        [198, 51, 100, 201],
        53,
        50003,
        &big,
    );
    want.push(row(
        big_name,
        16,
        0,
        17,
        4,
        "198.51.100.201",
        50003,
        9,
        None,
    ));
    // TCP: the length prefix in its own segment, a query split; two pipelined queries in one
    // segment; the responses split over segments.
    let tc = ip("198.51.100.202");
    let (cp, seq_c, seq_s) = (50004u16, 1000u32, 9000u32);
    c.tcp(t0 + 600 * ms, tc, server4, cp, 53, seq_c, true, &[]);
    c.tcp(t0 + 600 * ms, server4, tc, 53, cp, seq_s, true, &[]);
    let q1 = dns_message(21, false, 0, "tcp1.example.nl", 1, None);
    let q2 = dns_message(22, false, 0, "tcp2.example.nl", 1, None);
    let q3 = dns_message(23, false, 0, "tcp3.example.nl", 1, None);
    let framed = |m: &[u8]| [(m.len() as u16).to_be_bytes().as_slice(), m].concat();
    let mut sc = seq_c + 1;
    for seg in [
        framed(&q1)[..2].to_vec(),
        framed(&q1)[2..10].to_vec(),
        framed(&q1)[10..].to_vec(),
        [framed(&q2), framed(&q3)].concat(),
    ] {
        c.tcp(t0 + 601 * ms, tc, server4, cp, 53, sc, false, &seg);
        sc += seg.len() as u32;
    }
    let mut ss = seq_s + 1;
    let responses: Vec<u8> = [21u16, 22, 23]
        .iter()
        .flat_map(|id| {
            framed(&dns_message(
                *id,
                true,
                0,
                &format!("tcp{}.example.nl", id - 20),
                1,
                None,
            ))
        })
        .collect();
    for seg in [&responses[..5], &responses[5..40], &responses[40..]] {
        c.tcp(t0 + 602 * ms, server4, tc, 53, cp, ss, false, seg);
        ss += seg.len() as u32;
    }
    for id in [21, 22, 23] {
        want.push(row(
            &format!("tcp{}.example.nl", id - 20),
            1,
            0,
            6,
            4,
            "198.51.100.202",
            50004,
            id,
            None,
        ));
    }
    // A response nobody asked for, and noise.
    c.udp(
        t0 + 700 * ms,
        server4,
        ip("198.51.100.203"),
        53,
        50005,
        false,
        &dns_message(31, true, 0, "unasked.example.nl", 1, None),
    );
    want.push(row(
        "unasked.example.nl",
        1,
        -2,
        17,
        4,
        "198.51.100.203",
        50005,
        31,
        None,
    ));
    c.noise(t0 + 800 * ms);
    // Something late, so the unanswered query times out before the end of the file.
    c.udp(
        t0 + 5_000 * ms,
        ip("198.51.100.204"),
        server4,
        50006,
        53,
        false,
        &dns_message(41, false, 0, "late.example.nl", 1, None),
    );
    c.udp(
        t0 + 5_001 * ms,
        server4,
        ip("198.51.100.204"),
        53,
        50006,
        false,
        &dns_message(41, true, 0, "late.example.nl", 1, None),
    );
    want.push(row(
        "late.example.nl",
        1,
        0,
        17,
        4,
        "198.51.100.204",
        50006,
        41,
        None,
    ));
    want.sort();
    (c, want)
}

fn observed(key: &str, raw: &[u8]) -> (Vec<Expected>, DataFrame) {
    let read = read_object(key, raw, &DnsOptions::default(), &DecodeLimits::default())
        .unwrap_or_else(|e| panic!("{key}: {e}"));
    assert!(
        read.stats.skipped_packets >= 1,
        "noise counted: {:?}",
        read.stats
    );
    let parts = merge(read.rows).unwrap();
    assert_eq!(parts.len(), 1, "one day, one server");
    assert_eq!(parts[0].0, "year=2025/month=12/day=01/server=ns1");
    let df = parts[0].1.clone();
    let server = "ns1".to_string();
    let (qname, qtype, rcode, prot, v, src, port, id, dnssec) = (
        column_str(&df, "dns_qname"),
        column_i32(&df, "dns_qtype"),
        column_i32(&df, "dns_rcode"),
        column_i32(&df, "prot"),
        column_i32(&df, "ip_version"),
        column_str(&df, "ip_src"),
        column_i32(&df, "prot_src_port"),
        column_i32(&df, "dns_id"),
        column_bool(&df, "edns_do"),
    );
    let mut got: Vec<Expected> = (0..df.height())
        .map(|i| {
            (
                server.clone(),
                qname[i].clone().unwrap(),
                qtype[i].unwrap(),
                rcode[i].unwrap(),
                prot[i].unwrap(),
                v[i].unwrap(),
                src[i].clone().unwrap(),
                port[i].unwrap(),
                id[i].unwrap(),
                dnssec[i],
            )
        })
        .collect();
    got.sort();
    (got, df)
}

#[test]
fn generated_captures_give_exactly_the_generated_rows_in_every_container() {
    let (capture, want) = generated();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &capture.pcap(false)).unwrap();
    let gz = gz.finish().unwrap();
    for (name, raw) in [
        ("dns/ns1/a.pcap", capture.pcap(false)),
        ("dns/ns1/a-ns.pcap", capture.pcap(true)),
        ("dns/ns1/a.pcapng", capture.pcapng()),
        ("dns/ns1/a.pcap.gz", gz.clone()),
        ("dns/ns1/a-be.pcap", capture.pcap_as(true, true, 1)),
        ("dns/ns1/a-raw.pcap", capture.pcap_as(false, false, 101)),
        ("dns/ns1/a-null.pcap", capture.pcap_as(false, false, 0)),
        ("dns/ns1/a-sll2.pcap", capture.pcap_as(false, true, 276)),
    ] {
        let (got, df) = observed(name, &raw);
        assert_eq!(got, want, "{name}");
        // Sorted by registered domain, then time; ECS and the domain as the PSL says.
        let domains = column_str(&df, "dns_domainname");
        let mut sorted = domains.clone();
        sorted.sort();
        assert_eq!(domains, sorted, "{name}: sorted by domain");
        let ecs = column_str(&df, "edns_ecs");
        assert!(ecs.contains(&Some("203.0.113.0/24".into())), "{name}");
        assert!(domains.contains(&Some("example.nl".into())));
        let tld = column_str(&df, "dns_tld");
        assert!(tld.contains(&Some("nl".into())));
    }
    // tshark reads the generated capture as the rows say: the generator is right too.
    let file = std::env::temp_dir().join(format!("flowmerge-dns-{}.pcap", std::process::id()));
    std::fs::write(&file, capture.pcap(false)).unwrap();
    let asked = want.iter().filter(|w| w.3 != -2).count();
    let answered = want.iter().filter(|w| w.3 != -1).count();
    assert_eq!(
        (tshark_count(&file, false), tshark_count(&file, true)),
        (asked, answered)
    );
    std::fs::remove_file(&file).ok();
    // A capture cut off mid-packet keeps every complete packet and says so.
    let full = capture.pcap(false);
    let cut = &full[..full.len() - 10];
    let read = read_object(
        "dns/ns1/cut.pcap",
        cut,
        &DnsOptions::default(),
        &DecodeLimits::default(),
    )
    .unwrap();
    assert!(read.stats.truncated);
    // Not a capture: an error naming the object.
    let err = read_object(
        "dns/ns1/x.pcap",
        b"GET / HTTP/1.1\r\n",
        &DnsOptions::default(),
        &DecodeLimits::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().starts_with("dns/ns1/x.pcap: not a pcap"),
        "{err}"
    );
}
