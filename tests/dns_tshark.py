"""DNS captures made with scapy, and flowmerge's rows compared with tshark's reading of them.

Run by tests/aws.rs (`dns_rows_agree_with_tshark_query_by_query`):

  dns_tshark.py write CAPTURE SEED   writes a capture (pcapng when CAPTURE ends so, else pcap)
                                     and prints, as JSON, what it put in it;
  dns_tshark.py compare OUTPUT KEY CAPTURE...
                                     reads OUTPUT/dns/**/*.parquet with DuckDB and each CAPTURE
                                     with `tshark -2`, and prints as JSON per capture: tshark's
                                     queries, flowmerge's rows for them, the rows only one side
                                     has, the responses without a query on each side, and
                                     flowmerge's rows with a client subnet.

A capture holds what a name server's traffic holds: UDP queries over IPv4 and IPv6 with their
responses (0-3 answers, several rcodes), EDNS and client-subnet options, queries never answered,
responses whose query is not in the capture, large responses in IPv4 fragments sent out of
order, TCP connections carrying two pipelined queries in one segment and each response split
into three segments (its length prefix alone in the first), and junk on port 53.

A query is compared by client address and port, DNS id, name (lower case), type, and the joined
response's rcode and answer count (-1 and none when unanswered), as tshark's `dns.response_in`
joins them.
"""

import collections
import json
import random
import subprocess
import sys

SERVER4, SERVER6, JUNK = "10.0.0.53", "2001:db8::53", "10.9.9.9"


def write(path, seed):
    from scapy.all import (  # noqa: PLC0415 - only this command needs scapy
        DNS, DNSQR, DNSRR, DNSRROPT, IP, TCP, UDP, EDNS0ClientSubnet, Ether, IPv6, Raw,
        fragment, wrpcap, wrpcapng)

    rng = random.Random(seed)
    packets = []
    clock = [1_700_000_000.0]

    def at(packet, dt):
        clock[0] += dt
        packet.time = clock[0]
        packets.append(packet)

    def name():
        labels = [rng.choice(["www", "api", "mail", "cdn", "a", "x"]) + str(rng.randint(0, 99))
                  for _ in range(rng.randint(1, 3))]
        suffix = rng.choice(["example.com", "example.co.uk", "test.org", "xn--bcher-kva.de"])
        return ".".join(labels + [suffix])

    def query(qtype="A", edns=False, ecs=False):
        opt = None
        if edns or ecs:
            options = [EDNS0ClientSubnet(source_plen=24, address="203.0.113.0")] if ecs else []
            opt = DNSRROPT(rclass=1232, rdata=options)
        return DNS(id=rng.randint(0, 65535), rd=1, qd=DNSQR(qname=name(), qtype=qtype), ar=opt)

    def response(q, answers=1, rcode=0):
        an = [DNSRR(rrname=q[DNSQR].qname, type="A", ttl=300, rdata=f"192.0.2.{i % 250 + 1}")
              for i in range(answers)]
        return DNS(id=q.id, qr=1, aa=1, rd=q.rd, ra=1, rcode=rcode, qd=q.qd, an=an or None)

    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    made = collections.Counter()
    for _ in range(600):
        client = f"10.1.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        port = rng.randint(1024, 65535)
        ecs = rng.random() < 0.2
        q = query(rng.choice(["A", "AAAA", "MX", "TXT"]), edns=rng.random() < 0.5, ecs=ecs)
        made["client_subnet"] += ecs
        at(eth / IP(src=client, dst=SERVER4, ttl=64) / UDP(sport=port, dport=53) / q, 0.003)
        r = rng.random()
        if r < 0.06:
            made["unanswered"] += 1
            continue
        made["udp4"] += 1
        if r < 0.09:
            big = IP(src=SERVER4, dst=client, id=rng.randint(0, 65535)) / UDP(sport=53, dport=port)
            pieces = fragment(big / response(q, 90), fragsize=480)
            rng.shuffle(pieces)
            for piece in pieces:
                at(eth / piece, 0.0005)
            made["fragmented"] += 1
            continue
        answer = response(q, rng.randint(0, 3), rng.choice([0, 0, 0, 2, 3]))
        at(eth / IP(src=SERVER4, dst=client) / UDP(sport=53, dport=port) / answer,
           rng.uniform(0.0001, 0.05))
    for _ in range(80):
        client = f"2001:db8:1::{rng.randint(1, 0xffff):x}"
        port = rng.randint(1024, 65535)
        q = query("AAAA", edns=True)
        at(eth / IPv6(src=client, dst=SERVER6) / UDP(sport=port, dport=53) / q, 0.002)
        at(eth / IPv6(src=SERVER6, dst=client) / UDP(sport=53, dport=port) / response(q), 0.01)
        made["udp6"] += 1
    for i in range(15):
        q = query()
        at(eth / IP(src=SERVER4, dst=f"10.2.0.{i + 1}") / UDP(sport=53, dport=40000 + i)
           / response(q), 0.004)
        made["orphans"] += 1
    for i in range(25):
        client, port = f"10.3.0.{i + 1}", 50000 + i
        cseq, sseq = 1000, 5000
        at(eth / IP(src=client, dst=SERVER4) / TCP(sport=port, dport=53, flags="S", seq=cseq - 1),
           0.001)
        at(eth / IP(src=SERVER4, dst=client)
           / TCP(sport=53, dport=port, flags="SA", seq=sseq - 1, ack=cseq), 0.001)
        queries = [query() for _ in range(2)]
        payload = b"".join(len(bytes(q)).to_bytes(2, "big") + bytes(q) for q in queries)
        at(eth / IP(src=client, dst=SERVER4)
           / TCP(sport=port, dport=53, flags="PA", seq=cseq, ack=sseq) / Raw(payload), 0.001)
        cseq += len(payload)
        for q in queries:
            body = bytes(response(q, 2))
            for piece in [len(body).to_bytes(2, "big"), body[:20], body[20:]]:
                at(eth / IP(src=SERVER4, dst=client)
                   / TCP(sport=53, dport=port, flags="PA", seq=sseq, ack=cseq) / Raw(piece), 0.001)
                sseq += len(piece)
            made["tcp"] += 1
        at(eth / IP(src=client, dst=SERVER4)
           / TCP(sport=port, dport=53, flags="FA", seq=cseq, ack=sseq), 0.001)
    for _ in range(10):
        junk = bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 11)))
        at(eth / IP(src=JUNK, dst=SERVER4) / UDP(sport=1234, dport=53) / Raw(junk), 0.001)
        made["junk"] += 1
    packets.sort(key=lambda p: p.time)
    (wrpcapng if path.endswith(".pcapng") else wrpcap)(path, packets)
    print(json.dumps(made, sort_keys=True))


def tshark(capture, display_filter, fields):
    args = ["tshark", "-2", "-r", capture, "-Y", display_filter, "-T", "fields", "-E",
            "separator=|"]
    for field in fields:
        args += ["-e", field]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [line.split("|") for line in out.splitlines()]


def split(value, n):
    return value.split(",") if value else [""] * n


def tshark_reading(capture):
    """tshark's queries as comparison keys, and its count of responses without a query."""
    responses, orphans = {}, 0
    for frame, rcodes, answers, ids, to in tshark(
            capture, f"dns.flags.response == 1 && !(ip.src == {JUNK})",
            ["frame.number", "dns.flags.rcode", "dns.count.answers", "dns.id", "dns.response_to"]):
        rcodes, answers, ids = rcodes.split(","), answers.split(","), ids.split(",")
        for rcode, count, qid, joined in zip(rcodes, answers, ids, split(to, len(ids))):
            responses.setdefault(frame, {})[int(qid, 0)] = (int(rcode), int(count))
            orphans += not joined
    queries = collections.Counter()
    for src4, src6, udp, tcp, ids, names, types, response_in in tshark(
            capture, f"dns.flags.response == 0 && !(ip.src == {JUNK})",
            ["ip.src", "ipv6.src", "udp.srcport", "tcp.srcport", "dns.id", "dns.qry.name",
             "dns.qry.type", "dns.response_in"]):
        ids = ids.split(",")
        for qid, name, qtype, frame in zip(ids, names.split(","), types.split(","),
                                           split(response_in, len(ids))):
            rcode, count = responses.get(frame, {}).get(int(qid, 0), (-1, None))
            key = (src4 or src6, int(udp or tcp), int(qid, 0), name.lower(), int(qtype), rcode,
                   count)
            queries[key] += 1
    return queries, orphans


def compare(output, key_prefix, captures):
    import duckdb  # noqa: PLC0415

    table = f"read_parquet('{output}/dns/**/*.parquet')"
    report = {}
    for capture in captures:
        key = key_prefix + capture.rsplit("/", 1)[1]
        want, want_orphans = tshark_reading(capture)
        got = collections.Counter(duckdb.sql(
            f"SELECT ip_src, prot_src_port, dns_id, dns_qname, dns_qtype, dns_rcode, dns_ancount "
            f"FROM {table} WHERE pcap_file = '{key}' AND dns_rcode <> -2").fetchall())
        got_orphans = duckdb.sql(
            f"SELECT count(*) FROM {table} WHERE pcap_file = '{key}' AND dns_rcode = -2"
        ).fetchall()[0][0]
        client_subnet = duckdb.sql(
            f"SELECT count(edns_ecs) FROM {table} WHERE pcap_file = '{key}'").fetchall()[0][0]
        report[key] = {
            "flowmerge_client_subnet": client_subnet,
            "tshark_queries": sum(want.values()),
            "flowmerge_rows": sum(got.values()),
            "only_tshark": [list(k) for k in (want - got)],
            "only_flowmerge": [list(k) for k in (got - want)],
            "tshark_orphans": want_orphans,
            "flowmerge_orphans": got_orphans,
        }
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], int(sys.argv[3]))
    else:
        compare(sys.argv[2], sys.argv[3], sys.argv[4:])
