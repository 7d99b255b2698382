//! Captures to transport payloads: pcap (both byte orders, µs and ns) and pcapng (several
//! sections and interfaces, `if_tsresol`, `if_tsoffset`) read with `pcap-parser` over the object's
//! bytes; frames sliced with `etherparse` (Ethernet with 802.1Q/QinQ, Linux cooked SLL and SLL2,
//! raw IPv4/IPv6, BSD NULL/loopback); IP fragments reassembled (bounded, with a timeout in capture
//! time); TCP reassembled per flow by sequence number into DNS messages (length-prefixed, whatever
//! the segmentation and PSH flags).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use etherparse::defrag::IpDefragPool;
use etherparse::{EtherType, NetSlice, SlicedPacket, TcpSlice, TransportSlice, UdpSlice};
use pcap_parser::pcapng::Block;

/// Link types read (pcap's LINKTYPE_* values).
const LINK_NULL: i32 = 0;
const LINK_ETHERNET: i32 = 1;
const LINK_RAW: i32 = 101;
const LINK_LOOP: i32 = 108;
const LINK_SLL: i32 = 113;
const LINK_IPV4: i32 = 228;
const LINK_IPV6: i32 = 229;
const LINK_SLL2: i32 = 276;

/// Fragments pending reassembly before stale ones (older than the timeout) are dropped; at twice
/// this, all pending reassembly state is dropped.
const MAX_FRAGMENT_STREAMS: usize = 4096;
/// Capture time after which an unfinished reassembly (IP or TCP) is dropped, in nanoseconds.
const REASSEMBLY_TIMEOUT_NS: i64 = 30_000_000_000;
/// TCP flows followed at once, and bytes buffered per flow (a DNS message is at most 65,535
/// bytes plus its 2-byte length; out-of-order segments count too).
const MAX_TCP_FLOWS: usize = 16_384;
const MAX_TCP_BUFFER: usize = 2 * 65_537;

/// One DNS message as it crossed the wire.
#[derive(Clone, Debug)]
pub struct Wire {
    /// Capture time, nanoseconds since the epoch.
    pub ts_ns: i64,
    pub ip_version: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    /// 17 (UDP) or 6 (TCP).
    pub prot: u8,
    pub sport: u16,
    pub dport: u16,
    pub message: Vec<u8>,
}

/// What a capture held besides DNS messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    pub packets: u64,
    /// Packets that are not DNS on the configured ports (ARP, ICMP, other ports, …), or could
    /// not be sliced.
    pub skipped_packets: u64,
    /// The capture ends inside a block: the packets before it were read.
    pub truncated: bool,
}

/// Why a capture could not be read at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CaptureError {
    #[error("not a pcap or pcapng capture (unknown magic {0:02x?})")]
    NotACapture(Vec<u8>),
    #[error("corrupt {0} header")]
    CorruptHeader(&'static str),
}

/// Whether these bytes start like a capture (pcap in either byte order or precision, pcapng).
pub fn is_capture_magic(head: &[u8]) -> bool {
    matches!(
        head.get(..4),
        Some([0xd4, 0xc3, 0xb2, 0xa1])
            | Some([0xa1, 0xb2, 0xc3, 0xd4])
            | Some([0x4d, 0x3c, 0xb2, 0xa1])
            | Some([0xa1, 0xb2, 0x3c, 0x4d])
            | Some([0x0a, 0x0d, 0x0d, 0x0a])
    )
}

/// A frame of a capture: link type, time (ns) and bytes.
struct Frame<'a> {
    link: i32,
    ts_ns: i64,
    data: &'a [u8],
}

/// Calls `f` for every frame of a capture, in file order.
fn frames<'a>(
    data: &'a [u8],
    stats: &mut CaptureStats,
    mut f: impl FnMut(Frame<'a>),
) -> Result<(), CaptureError> {
    if !is_capture_magic(data) {
        return Err(CaptureError::NotACapture(
            data.iter().take(4).copied().collect(),
        ));
    }
    if data.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        return pcapng_frames(data, stats, f);
    }
    let (mut rest, header) =
        pcap_parser::parse_pcap_header(data).map_err(|_| CaptureError::CorruptHeader("pcap"))?;
    let nanos = header.is_nanosecond_precision();
    let link = header.network.0;
    loop {
        if rest.is_empty() {
            return Ok(());
        }
        let parsed = match header.is_bigendian() {
            true => pcap_parser::pcap::parse_pcap_frame_be(rest),
            false => pcap_parser::pcap::parse_pcap_frame(rest),
        };
        match parsed {
            Ok((next, block)) => {
                let frac = match nanos {
                    true => block.ts_usec as i64,
                    false => block.ts_usec as i64 * 1_000,
                };
                f(Frame {
                    link,
                    ts_ns: block.ts_sec as i64 * 1_000_000_000 + frac,
                    data: block.data,
                });
                rest = next;
            }
            // A capture cut off mid-packet (or garbage after the last one): keep what was read.
            Err(_) => {
                stats.truncated = true;
                return Ok(());
            }
        }
    }
}

struct Interface {
    link: i32,
    /// Units per second.
    resolution: u64,
    offset_s: i64,
}

fn pcapng_frames<'a>(
    data: &'a [u8],
    stats: &mut CaptureStats,
    mut f: impl FnMut(Frame<'a>),
) -> Result<(), CaptureError> {
    let mut rest = data;
    let mut big_endian = false;
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut first = true;
    while !rest.is_empty() {
        let parsed = if rest.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
            pcap_parser::pcapng::parse_sectionheaderblock(rest).map(|(r, shb)| {
                big_endian = shb.big_endian();
                interfaces.clear();
                (r, None)
            })
        } else if big_endian {
            pcap_parser::pcapng::parse_block_be(rest).map(|(r, b)| (r, Some(b)))
        } else {
            pcap_parser::pcapng::parse_block_le(rest).map(|(r, b)| (r, Some(b)))
        };
        let (next, block) = match parsed {
            Ok(ok) => ok,
            Err(_) if first => return Err(CaptureError::CorruptHeader("pcapng section")),
            Err(_) => {
                stats.truncated = true;
                return Ok(());
            }
        };
        first = false;
        match block {
            Some(Block::InterfaceDescription(idb)) => interfaces.push(Interface {
                link: idb.linktype.0,
                resolution: idb.ts_resolution().unwrap_or(1_000_000).max(1),
                offset_s: idb.ts_offset(),
            }),
            Some(Block::EnhancedPacket(epb)) => {
                if let Some(i) = interfaces.get(epb.if_id as usize) {
                    let ts = ((epb.ts_high as u64) << 32) | epb.ts_low as u64;
                    let ns = (ts as u128 * 1_000_000_000 / i.resolution as u128) as i64;
                    f(Frame {
                        link: i.link,
                        ts_ns: ns.saturating_add(i.offset_s.saturating_mul(1_000_000_000)),
                        data: &epb.data[..(epb.caplen as usize).min(epb.data.len())],
                    });
                } else {
                    stats.packets += 1;
                    stats.skipped_packets += 1;
                }
            }
            Some(Block::SimplePacket(spb)) => {
                // No timestamp in a simple packet block: it takes the section's start (0).
                if let Some(i) = interfaces.first() {
                    f(Frame {
                        link: i.link,
                        ts_ns: 0,
                        data: &spb.data[..(spb.origlen as usize).min(spb.data.len())],
                    });
                }
            }
            _ => {}
        }
        rest = next;
    }
    Ok(())
}

/// A transport payload of an IP packet.
struct Packet<'a> {
    ts_ns: i64,
    ip_version: u8,
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    transport: Transport<'a>,
}

enum Transport<'a> {
    Udp(UdpSlice<'a>),
    Tcp(TcpSlice<'a>),
}

/// BSD NULL/loopback families: AF_INET, and AF_INET6 as BSDs number it.
fn ip_of_family(family: u32, rest: &[u8]) -> Option<SlicedPacket<'_>> {
    match family {
        2 | 24 | 28 | 30 => SlicedPacket::from_ip(rest).ok(),
        _ => None,
    }
}

fn slice(link: i32, data: &[u8]) -> Option<SlicedPacket<'_>> {
    match link {
        LINK_ETHERNET => SlicedPacket::from_ethernet(data).ok(),
        LINK_SLL => SlicedPacket::from_linux_sll(data).ok(),
        LINK_SLL2 => {
            let proto = u16::from_be_bytes([*data.first()?, *data.get(1)?]);
            SlicedPacket::from_ether_type(EtherType(proto), data.get(20..)?).ok()
        }
        LINK_RAW | LINK_IPV4 | LINK_IPV6 => SlicedPacket::from_ip(data).ok(),
        LINK_NULL => {
            // The family in the capturing host's byte order.
            let b: [u8; 4] = data.get(..4)?.try_into().ok()?;
            let family = match u32::from_le_bytes(b) {
                f if f < 256 => f,
                _ => u32::from_be_bytes(b),
            };
            ip_of_family(family, data.get(4..)?)
        }
        LINK_LOOP => {
            let b: [u8; 4] = data.get(..4)?.try_into().ok()?;
            ip_of_family(u32::from_be_bytes(b), data.get(4..)?)
        }
        _ => None,
    }
}

/// Addresses, TTL and version of an IP layer.
fn ip_of(net: &NetSlice<'_>) -> Option<(u8, IpAddr, IpAddr, u8)> {
    match net {
        NetSlice::Ipv4(v4) => {
            let h = v4.header();
            Some((
                4,
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                h.ttl(),
            ))
        }
        NetSlice::Ipv6(v6) => {
            let h = v6.header();
            Some((
                6,
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                h.hop_limit(),
            ))
        }
        NetSlice::Arp(_) => None,
    }
}

/// TCP flow key: (src, dst, sport, dport).
type FlowKey = (IpAddr, IpAddr, u16, u16);

#[derive(Default)]
struct Flow {
    /// The next sequence number expected.
    next: Option<u32>,
    /// Bytes in order, not yet cut into messages.
    buf: Vec<u8>,
    /// Segments ahead of `next`, by sequence number.
    ahead: BTreeMap<u32, Vec<u8>>,
    ahead_bytes: usize,
    last_ns: i64,
}

impl Flow {
    /// Adds a segment; returns the DNS messages it completes.
    fn add(&mut self, seq: u32, syn: bool, payload: &[u8]) -> Vec<Vec<u8>> {
        let seq = match (syn, self.next) {
            (true, _) => {
                self.next = Some(seq.wrapping_add(1));
                seq.wrapping_add(1)
            }
            (false, None) => {
                self.next = Some(seq);
                seq
            }
            (false, Some(_)) => seq,
        };
        if !payload.is_empty() {
            self.place(seq, payload);
        }
        let mut out = Vec::new();
        loop {
            if self.buf.len() < 2 {
                break;
            }
            let len = u16::from_be_bytes([self.buf[0], self.buf[1]]) as usize;
            if self.buf.len() < 2 + len {
                break;
            }
            out.push(self.buf[2..2 + len].to_vec());
            self.buf.drain(..2 + len);
        }
        out
    }

    fn place(&mut self, seq: u32, payload: &[u8]) {
        let Some(next) = self.next else { return };
        let offset = seq.wrapping_sub(next) as i32;
        if offset > 0 {
            // Ahead of what we have: keep it for later, bounded.
            if self.ahead_bytes + payload.len() <= MAX_TCP_BUFFER {
                self.ahead_bytes += payload.len();
                let old = self.ahead.insert(seq, payload.to_vec());
                self.ahead_bytes -= old.map_or(0, |o| o.len());
            }
            return;
        }
        // A retransmission may overlap what we have: keep only the new tail.
        let skip = (-(offset as i64)) as usize;
        if skip < payload.len() {
            self.append(&payload[skip..]);
        }
        // Segments that now fit.
        while let Some((&s, _)) = self.ahead.iter().next() {
            let Some(next) = self.next else { break };
            let off = s.wrapping_sub(next) as i32;
            if off > 0 {
                break;
            }
            let Some(data) = self.ahead.remove(&s) else {
                break;
            };
            self.ahead_bytes -= data.len();
            let skip = (-(off as i64)) as usize;
            if skip < data.len() {
                self.append(&data[skip..]);
            }
        }
    }

    fn append(&mut self, data: &[u8]) {
        if let Some(n) = self.next.as_mut() {
            *n = n.wrapping_add(data.len() as u32);
        }
        if self.buf.len() + data.len() > MAX_TCP_BUFFER {
            // Not DNS (or hostile): start over rather than grow.
            self.buf.clear();
            return;
        }
        self.buf.extend_from_slice(data);
    }
}

/// Reads a capture into the DNS messages it carries on `ports` (UDP or TCP), in capture order.
pub fn read_capture(data: &[u8], ports: &[u16]) -> Result<(Vec<Wire>, CaptureStats), CaptureError> {
    let mut stats = CaptureStats::default();
    let mut frames_seen: Vec<Frame<'_>> = Vec::new();
    frames(data, &mut stats, |f| frames_seen.push(f))?;
    let mut out = Vec::new();
    let mut defrag: IpDefragPool<i64, ()> = IpDefragPool::new();
    let mut fragment_streams = 0usize;
    let mut flows: HashMap<FlowKey, Flow> = HashMap::new();
    let is_dns = |sport: u16, dport: u16| ports.contains(&sport) || ports.contains(&dport);
    for frame in frames_seen {
        stats.packets += 1;
        let Some(sliced) = slice(frame.link, frame.data) else {
            stats.skipped_packets += 1;
            continue;
        };
        let Some((ip_version, src, dst, ttl)) = sliced.net.as_ref().and_then(ip_of) else {
            stats.skipped_packets += 1;
            continue;
        };
        // A fragment: reassemble; the datagram is read once its last piece arrives.
        let reassembled;
        let transport = match &sliced.transport {
            Some(TransportSlice::Udp(u)) => Some(Transport::Udp(u.clone())),
            Some(TransportSlice::Tcp(t)) => Some(Transport::Tcp(t.clone())),
            Some(_) => None,
            None => match defrag.process_sliced_packet(&sliced, frame.ts_ns, ()) {
                Ok(Some(datagram)) => {
                    fragment_streams = fragment_streams.saturating_sub(1);
                    reassembled = datagram.payload;
                    match datagram.ip_number {
                        etherparse::IpNumber::UDP => UdpSlice::from_slice_lax(&reassembled)
                            .ok()
                            .map(Transport::Udp),
                        etherparse::IpNumber::TCP => {
                            TcpSlice::from_slice(&reassembled).ok().map(Transport::Tcp)
                        }
                        _ => None,
                    }
                }
                Ok(None) => {
                    // Fragments pending since the last reassembly finished. Past the bound the
                    // pool is emptied: endless fragments that never complete cannot grow it.
                    fragment_streams += 1;
                    if fragment_streams > MAX_FRAGMENT_STREAMS {
                        let cutoff = frame.ts_ns - REASSEMBLY_TIMEOUT_NS;
                        defrag.retain(|t| *t >= cutoff);
                        if fragment_streams > 2 * MAX_FRAGMENT_STREAMS {
                            defrag.retain(|_| false);
                            fragment_streams = 0;
                        }
                    }
                    continue;
                }
                Err(_) => None,
            },
        };
        let packet = match transport {
            Some(t) => Packet {
                ts_ns: frame.ts_ns,
                ip_version,
                src,
                dst,
                ttl,
                transport: t,
            },
            None => {
                stats.skipped_packets += 1;
                continue;
            }
        };
        match packet.transport {
            Transport::Udp(u) => {
                let (sport, dport) = (u.source_port(), u.destination_port());
                if !is_dns(sport, dport) {
                    stats.skipped_packets += 1;
                    continue;
                }
                out.push(Wire {
                    ts_ns: packet.ts_ns,
                    ip_version: packet.ip_version,
                    src: packet.src,
                    dst: packet.dst,
                    ttl: packet.ttl,
                    prot: 17,
                    sport,
                    dport,
                    message: u.payload().to_vec(),
                });
            }
            Transport::Tcp(t) => {
                let (sport, dport) = (t.source_port(), t.destination_port());
                if !is_dns(sport, dport) {
                    stats.skipped_packets += 1;
                    continue;
                }
                let key = (packet.src, packet.dst, sport, dport);
                if !flows.contains_key(&key) && flows.len() >= MAX_TCP_FLOWS {
                    let cutoff = packet.ts_ns - REASSEMBLY_TIMEOUT_NS;
                    flows.retain(|_, f| f.last_ns >= cutoff);
                    if flows.len() >= MAX_TCP_FLOWS {
                        stats.skipped_packets += 1;
                        continue;
                    }
                }
                let flow = flows.entry(key).or_default();
                flow.last_ns = packet.ts_ns;
                for message in flow.add(t.sequence_number(), t.syn(), t.payload()) {
                    out.push(Wire {
                        ts_ns: packet.ts_ns,
                        ip_version: packet.ip_version,
                        src: packet.src,
                        dst: packet.dst,
                        ttl: packet.ttl,
                        prot: 6,
                        sport,
                        dport,
                        message,
                    });
                }
                if t.fin() || t.rst() {
                    flows.remove(&key);
                }
            }
        }
    }
    Ok((out, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_messages_come_out_whatever_the_segmentation() {
        let q1 = [0u8, 3, b'a', b'b', b'c'];
        let q2 = [0u8, 2, b'x', b'y'];
        // The length prefix alone, then the message split, then two pipelined in one segment.
        let mut f = Flow::default();
        assert!(f.add(1000, true, &[]).is_empty());
        assert!(f.add(1001, false, &q1[..2]).is_empty());
        assert!(f.add(1003, false, &q1[2..4]).is_empty());
        assert_eq!(f.add(1005, false, &q1[4..]), vec![b"abc".to_vec()]);
        let both = [q1.as_slice(), q2.as_slice()].concat();
        assert_eq!(
            f.add(1006, false, &both),
            vec![b"abc".to_vec(), b"xy".to_vec()]
        );
        // Out of order and retransmitted.
        let mut g = Flow::default();
        g.add(5000, true, &[]);
        assert!(g.add(5003, false, &q1[2..]).is_empty());
        assert_eq!(g.add(5001, false, &q1[..3]), vec![b"abc".to_vec()]);
        assert!(
            g.add(5001, false, &q1).is_empty(),
            "a retransmission adds nothing"
        );
    }

    #[test]
    fn not_a_capture_is_an_error() {
        assert!(matches!(
            read_capture(b"hello world", &[53]),
            Err(CaptureError::NotACapture(_))
        ));
        assert!(is_capture_magic(&[0xd4, 0xc3, 0xb2, 0xa1, 0]));
    }
}
