"""Decapsulation and the new link types on scapy-built frames: what each header yields, the
hops recorded, and the malformed counts for cut or impossible headers."""
import struct

from scapy.contrib.geneve import GENEVE
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import GRE, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN

from auditor.decode import tunnel
from auditor.decode.packet import Packet, Tunnel, decode
from auditor.sources.pcap import CaptureFile
from auditor.telemetry import Layer

INNER = IP(src="10.244.1.7", dst="151.101.0.223") / TCP(sport=41000, dport=443, flags="S")


def opened(pkt, linktype=1):
    raw = bytes(pkt)
    r = decode(linktype, raw, 1.0, len(raw))
    return tunnel.layers(r) if r.__class__ is Tunnel else [r]


def inner_of(got):
    p = got[-1]
    assert p.__class__ is Packet, got
    return (p.sport, p.dport, [h.kind for h in p.tunnel.chain()], p.tunnel.ident)


def test_vxlan_geneve_teredo():
    vx = Ether() / IP(src="10.0.0.5", dst="52.1.1.1") / UDP(sport=50005, dport=4789) / VXLAN(vni=77) / Ether() / INNER
    assert inner_of(opened(vx)) == (41000, 443, ["vxlan"], 77)
    gen = (Ether() / IP(src="10.0.0.5", dst="52.1.1.1") / UDP(sport=50005, dport=6081)
           / GENEVE(vni=9, proto=0x6558, optionlen=2, options=b"\x01" * 8) / Ether() / INNER)
    assert inner_of(opened(gen)) == (41000, 443, ["geneve"], 9)
    six = IPv6(src="2001::1", dst="2001::2") / UDP(sport=7, dport=8)
    origin = b"\x00\x00" + b"\xab\xcd" + b"\x01\x02\x03\x04"
    ter = Ether() / IP(src="10.0.0.5", dst="52.1.1.1") / UDP(sport=3544, dport=50000) / (origin + bytes(six))
    assert inner_of(opened(ter)) == (7, 8, ["teredo"], None)


def test_gre_fields_and_payloads():
    plain = Ether() / IP(src="10.0.0.5", dst="52.1.1.1") / GRE() / INNER
    assert inner_of(opened(plain)) == (41000, 443, ["gre"], None)
    head = struct.pack("!HHHHII", 0xB000, 0x6558, 0, 0, 0xCAFE, 3)        # C, K, S + TEB
    teb = Ether() / IP(src="10.0.0.5", dst="52.1.1.1", proto=47) / (head + bytes(Ether() / INNER))
    assert inner_of(opened(teb)) == (41000, 443, ["gre"], 0xCAFE)
    ppp = b"\xff\x03\x00\x21" + bytes(INNER)
    pptp = struct.pack("!HHHHI", 0x3001, 0x880B, len(ppp), 42, 1) + ppp    # version 1, S
    got = opened(Ether() / IP(src="10.0.0.5", dst="52.1.1.1", proto=47) / pptp)
    assert inner_of(got) == (41000, 443, ["gre"], 42)
    assert got[0].__class__ is Tunnel and got[0].proto == 47


def test_ip_in_ip_both_ways_and_mpls():
    assert inner_of(opened(Ether() / IPv6(src="fd00::1", dst="fd00::2") / INNER)) == (
        41000, 443, ["ip-in-ip"], None)
    six = IPv6(src="2001::1", dst="2001::2") / UDP(sport=7, dport=8)
    assert inner_of(opened(Ether() / IP(src="10.0.0.5", dst="52.1.1.1") / six)) == (
        7, 8, ["ipv6-in-ip"], None)
    stack = Ether(type=0x8847) / MPLS(label=16, s=0) / MPLS(label=17, s=0) / MPLS(label=300, s=1) / INNER
    got = opened(stack)
    assert len(got) == 1 and inner_of(got) == (41000, 443, ["mpls"], 300)     # no carrier
    pw = Ether(type=0x8847) / MPLS(label=5, s=1) / (b"\x00\x00\x00\x00" + bytes(Ether()))
    assert opened(pw) == []                       # a pseudowire: no IP we read, not malformed


def test_nesting_is_recorded_outermost_first():
    vx = IP(src="192.168.0.1", dst="192.168.0.2") / UDP(sport=50005, dport=4789) / VXLAN(vni=1) / Ether() / INNER
    got = opened(Ether() / IP(src="10.0.0.5", dst="52.1.1.1") / GRE(key_present=1, key=5) / vx)
    assert [x.__class__.__name__ for x in got] == ["Tunnel", "Tunnel", "Packet"]
    assert inner_of(got) == (41000, 443, ["gre", "vxlan"], 1)
    assert got[1].tunnel.kind == "gre" and got[-1].tunnel.depth == 2


def test_cut_headers_are_malformed_tunnel_and_keep_the_carrier():
    for body in (b"\x08\x00\x00", bytes(VXLAN(vni=1)) + b"\x00" * 10):    # VXLAN, inner Ethernet cut
        got = opened(Ether() / IP(src="10.0.0.5", dst="52.1.1.1") / UDP(sport=50005, dport=4789) / body)
        assert got[0].__class__ is Tunnel and got[-1] is Layer.TUNNEL
    got = opened(Ether() / IP(src="10.0.0.5", dst="52.1.1.1", proto=47) / b"\x80\x00")   # GRE
    assert got[-1] is Layer.TUNNEL
    got = opened(Ether() / IP(src="10.0.0.5", dst="52.1.1.1", proto=47) / struct.pack("!HH", 0x0002, 0x0800))
    assert got[-1] is Layer.TUNNEL                  # GRE version 2 does not exist
    got = opened(Ether(type=0x8847) / (struct.pack("!I", 16 << 12) * 17))        # no bottom label
    assert got == [Layer.TUNNEL]
    got = opened(Ether() / IP(src="10.0.0.5", dst="52.1.1.1", proto=4) / bytes(INNER)[:30])  # inner TCP cut
    assert got[-1] is Layer.TCP      # counted under its own layer


def test_the_lower_port_decides_as_in_tshark():
    """A DNS query from source port 4789 is DNS, not VXLAN (tshark tries the lower port)."""
    q = Ether() / IP(src="10.0.0.5", dst="168.63.129.16") / UDP(sport=4789, dport=53) / b"\x12\x34"
    assert decode(1, bytes(q), 0, 0).__class__ is Packet
    teredo_reply = Ether() / IP(src="52.1.1.1", dst="10.0.0.5") / UDP(sport=3544, dport=50000)
    assert decode(1, bytes(teredo_reply), 0, 0).__class__ is Tunnel


def test_ppp_link_types():
    v4 = bytes(INNER)
    assert decode(9, b"\xff\x03\x00\x21" + v4, 0, 0).dport == 443      # HDLC-like framing
    assert decode(9, b"\x00\x21" + v4, 0, 0).dport == 443              # without
    assert decode(9, b"\x21" + v4, 0, 0).dport == 443                  # protocol compressed
    assert decode(50, b"\xff\x03\x00\x57" + bytes(IPv6() / UDP(dport=53)), 0, 0).dport == 53
    assert decode(9, b"\xff\x03\xc0\x21\x01\x01\x00\x04", 0, 0) is None  # LCP: no IP
    assert decode(9, b"\xff\x03", 0, 0) is Layer.LINK


def test_nflog_family_and_missing_payload():
    tlv = struct.pack("<HH", 4 + len(bytes(INNER)), 9) + bytes(INNER)
    assert decode(239, b"\x02\x00\x00\x00" + tlv, 0, 0).dport == 443
    assert decode(239, b"\x07\x00\x00\x00" + tlv, 0, 0) is None           # bridge family
    assert decode(239, b"\x02\x00\x00\x00" + struct.pack("<HH", 8, 1) + b"\0" * 4, 0, 0) is None
    assert decode(239, b"\x02\x00\x00\x00" + struct.pack("<HH", 200, 9), 0, 0) is Layer.LINK


def test_unsupported_link_type_is_counted_and_warned_once(tmp_path):
    path = tmp_path / "chdlc.pcap"
    recs = b"".join(struct.pack("<IIII", 1, 0, 4, 4) + b"\x0f\x00\x08\x00" for _ in range(3))
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 104) + recs)
    cap = CaptureFile(path)
    frames = list(cap)
    assert [decode(lt, f, ts, w) for ts, lt, f, w in frames] == [Layer.LINKTYPE] * 3
    assert cap.warnings == ["chdlc.pcap: link type 104 is not decoded; its packets are counted "
                            "as malformed (layer=linktype)"]
