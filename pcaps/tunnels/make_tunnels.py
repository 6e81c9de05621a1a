#!/usr/bin/env python3
"""Generate the tunnel captures no public capture covers (see README.md beside this file).

Each file wraps ordinary traffic (a DNS lookup, a TCP handshake with a TLS ClientHello, an
HTTP request) in one kind of encapsulation, so the differential tests compare SNI, Host, DNS
answers and per-layer conversation totals with tshark through the tunnel. Deterministic:
fixed timestamps, addresses, ports, ISNs and TLS randoms (re-running reproduces every file
byte for byte).

    python pcaps/tunnels/make_tunnels.py [--out DIR]
"""
from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

from scapy.config import conf
from scapy.contrib.mpls import MPLS
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import GRE, Ether
from scapy.layers.vxlan import VXLAN

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "scenarios"))
from make_scenarios import client_hello, tls_record  # noqa: E402

conf.verb = 0
T0 = 1762765200            # 2025-11-10T09:00:00Z
NODE, VTEP = "10.1.0.4", "52.160.10.20"       # the node and a remote tunnel end (public)
POD, SERVER = "10.244.1.7", "151.101.0.223"   # inside the tunnel: a pod and a web server
RESOLVER = "10.0.0.10"


class Capture:
    def __init__(self, linktype: int = 1):
        self.linktype = linktype
        self.us = T0 * 1_000_000
        self.records: list[tuple[int, bytes]] = []

    def add(self, frame) -> None:
        self.records.append((self.us, bytes(frame)))
        self.us += 700

    def write(self, path: Path) -> None:
        out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, self.linktype)]
        for us, data in self.records:
            out.append(struct.pack("<IIII", us // 1_000_000, us % 1_000_000, len(data), len(data)))
            out.append(data)
        path.write_bytes(b"".join(out))


def conversation(client: str, server: str, v6: bool = False, seed: str = ""):
    """Inner packets, each (packet, from_client): DNS lookup, TCP handshake, ClientHello,
    an HTTP request on a second connection, and the closes."""
    ip = IPv6 if v6 else IP
    dns_q = DNS(id=0x2a2a, rd=1, qd=DNSQR(qname="pypi.org"))
    yield ip(src=client, dst=RESOLVER if not v6 else "fd00::10") / UDP(sport=40001, dport=53) / dns_q, True
    yield ip(src=RESOLVER if not v6 else "fd00::10", dst=client) / UDP(sport=53, dport=40001) / DNS(
        id=0x2a2a, qr=1, rd=1, ra=1, qd=DNSQR(qname="pypi.org"),
        an=DNSRR(rrname="pypi.org", rdata=server if not v6 else "151.101.0.223", ttl=60)), False
    for sport, dport, data in ((40100, 443, tls_record(client_hello("pypi.org", seed=seed))),
                               (40102, 80, b"GET /simple/ HTTP/1.1\r\nHost: files.pythonhosted.org"
                                           b"\r\n\r\n")):
        c, s = 1000, 5000
        yield ip(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="S", seq=c), True
        yield ip(src=server, dst=client) / TCP(sport=dport, dport=sport, flags="SA", seq=s, ack=c + 1), False
        yield ip(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="A", seq=c + 1, ack=s + 1), True
        yield ip(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="PA", seq=c + 1,
                                               ack=s + 1) / data, True
        c += 1 + len(data)
        yield ip(src=server, dst=client) / TCP(sport=dport, dport=sport, flags="A", seq=s + 1, ack=c), False
        yield ip(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="FA", seq=c, ack=s + 1), True
        yield ip(src=server, dst=client) / TCP(sport=dport, dport=sport, flags="FA", seq=s + 1, ack=c + 1), False
        yield ip(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="A", seq=c + 1, ack=s + 2), True


def outer(from_client: bool, v6: bool = False):
    a, b = (NODE, VTEP) if not v6 else ("fd00:1::4", "2603:1030::20")
    src, dst = (a, b) if from_client else (b, a)
    return Ether(src="00:0d:3a:10:00:04", dst="12:34:56:78:9a:bc") / (IPv6 if v6 else IP)(src=src, dst=dst)


def vxlan_8472() -> Capture:
    """VXLAN on Linux's port 8472 (flannel), VNI 1; the outer source port varies per inner
    flow, as the kernel's flow hash makes it."""
    cap = Capture()
    for inner, fc in conversation(POD, SERVER, seed="vxlan"):
        cap.add(outer(fc) / UDP(sport=33000 + inner.payload.sport % 97, dport=8472)
                / VXLAN(vni=1, flags=0x08)
                / Ether(src="0a:58:0a:f4:01:07", dst="0a:58:0a:f4:01:01") / inner)
    return cap


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def gre_variants() -> Capture:
    """GRE built by hand (scapy's layer rewrites flags): checksum + key + sequence around
    IPv4, transparent Ethernet bridging (0x6558, key 7), and PPTP-style version 1 around PPP
    (0x880B, call id 42, sequence numbers), rotating per packet so each flow sees all three."""
    cap = Capture()
    for n, (inner, fc) in enumerate(conversation(POD, SERVER, seed="gre"), 1):
        kind = n % 3
        if kind == 0:
            body = bytes(inner)
            head = struct.pack("!HHHHII", 0xB000, 0x0800, 0, 0, 0x1234, n)
            csum = _checksum(head + body)
            gre = head[:4] + struct.pack("!H", csum) + head[6:] + body
        elif kind == 1:
            body = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / inner)
            gre = struct.pack("!HHI", 0x2000, 0x6558, 7) + body
        else:
            ppp = b"\xff\x03\x00\x21" + bytes(inner)
            gre = struct.pack("!HHHHI", 0x3001, 0x880B, len(ppp), 42, n) + ppp
        cap.add(Ether(src="00:0d:3a:10:00:04", dst="12:34:56:78:9a:bc")
                / IP(src=NODE if fc else VTEP, dst=VTEP if fc else NODE, proto=47) / gre)
    return cap


def mpls_stack() -> Capture:
    """A three-label MPLS stack over Ethernet carrying IPv4 TCP/UDP, and one label carrying
    IPv6 (first nibble decides, as tshark guesses)."""
    cap = Capture()
    for inner, fc in conversation(POD, SERVER, seed="mpls"):
        labels = (MPLS(label=16001, s=0, ttl=64) / MPLS(label=24005, s=0, ttl=64)
                  / MPLS(label=300 if fc else 301, s=1, ttl=64))
        cap.add(Ether(src="00:0d:3a:10:00:04", dst="12:34:56:78:9a:bc", type=0x8847) / labels / inner)
    for inner, fc in conversation("fd00:244::7", "2a04:4e42::223", v6=True, seed="mpls6"):
        cap.add(Ether(src="00:0d:3a:10:00:04", dst="12:34:56:78:9a:bc", type=0x8847)
                / MPLS(label=17, s=1, ttl=64) / inner)
    return cap


def nested() -> Capture:
    """Depth 3: IPv6-in-IPv4 around GRE (key 99) around VXLAN (VNI 5001) around the flows."""
    cap = Capture()
    for inner, fc in conversation(POD, SERVER, seed="nested"):
        a, b = ("fd00:1::4", "fd00:2::9") if fc else ("fd00:2::9", "fd00:1::4")
        vx = (IP(src="192.168.50.1" if fc else "192.168.50.2", dst="192.168.50.2" if fc else "192.168.50.1")
              / UDP(sport=45000 + inner.payload.sport % 50, dport=4789) / VXLAN(vni=5001, flags=0x08)
              / Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b") / inner)
        g = GRE(key_present=1, key=99, proto=0x0800) / vx
        cap.add(outer(fc) / IPv6(src=a, dst=b, nh=47) / bytes(g))
    return cap


def ppp_hdlc() -> Capture:
    """LINKTYPE_PPP_HDLC (50): address 0xFF, control 0x03, protocol, then IPv4/IPv6."""
    cap = Capture(linktype=50)
    for inner, fc in conversation(POD, SERVER, seed="ppp"):
        cap.add(b"\xff\x03\x00\x21" + bytes(inner))
    return cap


FILES = {
    "tunnel-vxlan8472-dns-tls-http.pcap": vxlan_8472,
    "tunnel-gre-key-seq-csum-teb-ppp.pcap": gre_variants,
    "tunnel-mpls-stack-tcp-ipv6.pcap": mpls_stack,
    "tunnel-nested-6in4-gre-vxlan.pcap": nested,
    "linktype50-ppp-hdlc-tcp.pcap": ppp_hdlc,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    for name, make in FILES.items():
        make().write(args.out / name)
        print(args.out / name)


if __name__ == "__main__":
    main()
