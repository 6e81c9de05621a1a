"""Generator of dns-edge-cases.pcap (scapy; run: python3 pcaps/crafted/gen_dns_edges.py).

No third-party capture was found with these shapes, so they are built here, written as a
nanosecond-resolution pcap, and compared with tshark in tests/differential:
1. a DNS response whose question name is a *forward* compression pointer into its answer
   (dnspython refuses it, tshark and resolvers accept it), then a TCP flow to the answer;
2. an HTTPS (type 65) answer whose ipv4hint/ipv6hint name the flows a browser opens to them
   without an A/AAAA lookup; a hint for an owner nobody asked about names nothing;
3. an ICMPv6 echo exchange (ECS `network.transport: ipv6-icmp`);
4. a TCP flow whose packets are 1,234,567 ns apart (nanosecond durations).
"""
from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import dns.message
import dns.rrset
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import PcapWriter

CLIENT, RESOLVER = "10.1.0.5", "168.63.129.16"
CLIENT6, RESOLVER6 = "2001:db8:1::5", "2001:db8:53::53"
T0 = Decimal("1764547200.000000001")      # 2025-12-01T00:00:00.000000001Z


def handshake(src, dst, sport, dport, isn=1000, sisn=9000):
    return [IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="S", seq=isn),
            IP(src=dst, dst=src) / TCP(sport=dport, dport=sport, flags="SA", seq=sisn, ack=isn + 1),
            IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="A", seq=isn + 1, ack=sisn + 1)]


def forward_pointer_response(qid: int) -> bytes:
    """Question name = pointer to the answer's rdata (a TXT carrying the name's labels)."""
    name = b"\x05files\x07example\x03net\x00"
    header = qid.to_bytes(2, "big") + b"\x81\x80\x00\x01\x00\x02\x00\x00\x00\x00"
    question_len = 2 + 4
    txt_rr_start = 12 + question_len
    name_at = txt_rr_start + 2 + 10 + 1          # after owner ptr, fixed fields, TXT length
    question = (0xC000 | name_at).to_bytes(2, "big") + b"\x00\x01\x00\x01"
    txt = b"\xc0\x0c\x00\x10\x00\x01\x00\x00\x00\x3c" + (len(name) + 1).to_bytes(2, "big") \
        + len(name).to_bytes(1, "big") + name
    a = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04" + bytes([203, 0, 113, 21])
    return header + question + txt + a


def https_response(qid: int) -> bytes:
    q = dns.message.make_query("svc.example.org", "HTTPS")
    q.id = qid
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text(
        "svc.example.org.", 300, "IN", "HTTPS",
        '1 . alpn="h2" ipv4hint="203.0.113.31,203.0.113.32" ipv6hint="2001:db8:31::1"'))
    r.answer.append(dns.rrset.from_text("other.example.", 300, "IN", "HTTPS",
                                        '1 . ipv4hint="203.0.113.99"'))
    return r.to_wire()


def packets():
    q1 = dns.message.make_query("files.example.net", "A")
    q1.id = 0x4141
    yield IP(src=CLIENT, dst=RESOLVER) / UDP(sport=40001, dport=53) / Raw(q1.to_wire())
    yield IP(src=RESOLVER, dst=CLIENT) / UDP(sport=53, dport=40001) / Raw(forward_pointer_response(0x4141))
    yield from handshake(CLIENT, "203.0.113.21", 41001, 8443)
    q2 = dns.message.make_query("svc.example.org", "HTTPS")
    q2.id = 0x4242
    yield IP(src=CLIENT, dst=RESOLVER) / UDP(sport=40002, dport=53) / Raw(q2.to_wire())
    yield IP(src=RESOLVER, dst=CLIENT) / UDP(sport=53, dport=40002) / Raw(https_response(0x4242))
    yield from handshake(CLIENT, "203.0.113.32", 41002, 8443)
    yield from handshake(CLIENT, "203.0.113.99", 41003, 8443)
    yield IPv6(src=CLIENT6, dst=RESOLVER6) / ICMPv6EchoRequest(id=7, seq=1)
    yield IPv6(src=RESOLVER6, dst=CLIENT6) / ICMPv6EchoReply(id=7, seq=1)


def main(out: Path) -> None:
    writer = PcapWriter(str(out), nano=True, linktype=1, sync=True)
    ts = T0
    for p in packets():
        frame = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / p
        frame.time = ts
        writer.write(frame)
        ts += Decimal("0.001234567")
    # The nanosecond flow: three packets 1,234,567 ns apart (already the step above).
    for p in handshake(CLIENT, "203.0.113.41", 41004, 22):
        frame = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / p
        frame.time = ts
        writer.write(frame)
        ts += Decimal("0.001234567")
    writer.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("dns-edge-cases.pcap"))
