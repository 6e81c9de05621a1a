"""L2-L4 decoder: each link type, encapsulation, IPv6 extension and edge case."""
import socket
import struct

import pytest

from auditor.decode.packet import (Fragment, LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6,
                                   LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_LOOP,
                                   LINKTYPE_NULL, LINKTYPE_RAW, Packet, decode, ip_text)
from auditor.sources.pcap import read_frames
from auditor.telemetry import Layer

A4, B4 = socket.inet_aton("10.0.0.1"), socket.inet_aton("93.184.216.34")
A6, B6 = socket.inet_pton(socket.AF_INET6, "2001:db8::1"), socket.inet_pton(socket.AF_INET6, "2001:db8::2")


def tcp(sport=40000, dport=443, seq=7, flags=0x18, payload=b"", doff=5):
    return struct.pack("!HHIIBBHHH", sport, dport, seq, 0, doff << 4, flags, 1024, 0, 0) + \
        b"\0" * ((doff - 5) * 4) + payload


def udp(sport=5353, dport=53, payload=b"", ulen=None):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload) if ulen is None else ulen, 0) + payload


def ipv4(l4, proto=6, total=None, frag=0, ihl=5):
    total = 4 * ihl + len(l4) if total is None else total
    return struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, 1, frag, 64, proto, 0, A4, B4) + \
        b"\0" * (4 * (ihl - 5)) + l4


def ipv6(l4, nh=6, plen=None):
    return struct.pack("!IHBB16s16s", 0x60000000, len(l4) if plen is None else plen, nh, 64,
                       A6, B6) + l4


def eth(payload, et=0x0800):
    return b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", et) + payload


def test_ethernet_ipv4_tcp_and_padding_dropped():
    p = decode(LINKTYPE_ETHERNET, eth(ipv4(tcp(payload=b"hi"))) + b"\0" * 10, 1.5, 70)
    assert isinstance(p, Packet)
    assert (p.ts, p.version, p.src, p.dst, p.proto) == (1.5, 4, A4, B4, 6)
    assert (p.sport, p.dport, p.seq, p.tcp_flags, p.ip_len, p.payload) == (40000, 443, 7, 0x18, 42, b"hi")
    assert ip_text(p.src) == "10.0.0.1" and ip_text(B6) == "2001:db8::2"


def test_tcp_options_skipped():
    p = decode(LINKTYPE_ETHERNET, eth(ipv4(tcp(doff=8, payload=b"data"))), 0, 0)
    assert p.payload == b"data"


@pytest.mark.parametrize("tags", [[0x8100], [0x88A8, 0x8100], [0x9100, 0x8100, 0x8100]])
def test_vlan_and_qinq(tags):
    body = b"".join(struct.pack("!HH", 120, nxt) for nxt in tags[1:] + [0x86DD])
    p = decode(1, eth(body + ipv6(udp(payload=b"q"), nh=17), tags[0]), 0, 0)
    assert (p.version, p.proto, p.sport, p.dport, p.payload, p.ip_len) == (6, 17, 5353, 53, b"q", 49)


@pytest.mark.parametrize("ppp,ip,version", [(0x0021, ipv4(udp(), 17), 4), (0x0057, ipv6(udp(), 17), 6)])
def test_pppoe_session(ppp, ip, version):
    hdr = struct.pack("!BBHHH", 0x11, 0, 1, len(ip) + 2, ppp)
    p = decode(1, eth(hdr + ip, 0x8864), 0, 0)
    assert p.version == version and p.dport == 53


def test_pppoe_length_ends_the_packet_before_padding():
    """RFC 2516: bytes after the PPPoE payload are padding, even when the IP total length
    claims them (tls-pppoe-over-qinq.pcap frame 19): no payload, IP bytes as stated."""
    ip = ipv4(tcp(flags=0x10), total=46)
    hdr = struct.pack("!BBHHH", 0x11, 0, 1, len(ip) + 2, 0x0021)
    p = decode(1, eth(hdr + ip + b"\0" * 6, 0x8864), 0, 0)
    assert (p.payload, p.ip_len) == (b"", 46)


def test_non_ip_frames_are_none():
    assert decode(1, eth(b"\0" * 28, 0x0806), 0, 0) is None                 # ARP
    assert decode(1, eth(b"\x42\x42\x03" + b"\0" * 40, 0x0026), 0, 0) is None  # STP (802.3)
    assert decode(1, eth(b"\x11\x09" + b"\0" * 20, 0x8863), 0, 0) is None   # PPPoE discovery
    assert decode(1, eth(struct.pack("!BBHHH", 0x11, 0, 1, 2, 0xC021), 0x8864), 0, 0) is None
    assert decode(999, b"whatever", 0, 0) is Layer.LINKTYPE   # counted, never silent


@pytest.mark.parametrize("fam", [struct.pack("<I", 2), struct.pack(">I", 2)])
def test_null_both_byte_orders_v4(fam):
    assert decode(LINKTYPE_NULL, fam + ipv4(tcp()), 0, 0).version == 4


@pytest.mark.parametrize("af", [24, 28, 30])
def test_null_v6_families(af):
    assert decode(LINKTYPE_NULL, struct.pack("<I", af) + ipv6(tcp()), 0, 0).version == 6
    assert decode(LINKTYPE_LOOP, struct.pack(">I", af) + ipv6(tcp()), 0, 0).version == 6


def test_raw_link_types():
    assert decode(LINKTYPE_RAW, ipv4(tcp()), 0, 0).version == 4
    assert decode(LINKTYPE_RAW, ipv6(tcp()), 0, 0).version == 6
    assert decode(LINKTYPE_IPV4, ipv4(tcp()), 0, 0).version == 4
    assert decode(LINKTYPE_IPV6, ipv6(tcp()), 0, 0).version == 6
    assert decode(LINKTYPE_RAW, b"\x50" + b"\0" * 40, 0, 0) == "ip"


def test_sll_and_sll2():
    sll = struct.pack("!HHH8sH", 0, 1, 6, b"\0" * 8, 0x0800)
    assert decode(LINKTYPE_LINUX_SLL, sll + ipv4(udp(), 17), 0, 0).dport == 53
    sll2 = struct.pack("!HHIHBB8s", 0x86DD, 0, 2, 1, 4, 6, b"\0" * 8)
    assert decode(LINKTYPE_LINUX_SLL2, sll2 + ipv6(udp(), 17), 0, 0).dport == 53


def test_ipv6_extension_headers():
    hop = bytes([60, 0]) + b"\0" * 6                 # hop-by-hop -> destination options
    dst = bytes([43, 1]) + b"\0" * 14                # 16 bytes -> routing
    rt = bytes([51, 0]) + b"\0" * 6                  # routing -> AH
    ah = bytes([6, 1]) + b"\0" * 10                  # AH: (1 + 2) * 4 = 12 bytes -> TCP
    p = decode(229, ipv6(hop + dst + rt + ah + tcp(payload=b"x"), nh=0), 0, 0)
    assert (p.proto, p.dport, p.payload) == (6, 443, b"x")


def test_ipv6_fragments_and_esp():
    first = bytes([17, 0, 0, 1]) + b"\0\0\0\1"
    p = decode(229, ipv6(first + udp(payload=b"a"), nh=44), 0, 0)
    assert isinstance(p, Fragment) and (p.proto, p.offset, p.more) == (17, 0, True)
    atomic = bytes([17, 0, 0, 0]) + b"\0\0\0\1"            # offset 0, M clear: not really fragmented
    p = decode(229, ipv6(atomic + udp(payload=b"a"), nh=44), 0, 0)
    assert (p.proto, p.dport) == (17, 53)
    later = bytes([17, 0, 0, 8 << 3 | 1]) + b"\0\0\0\1"
    p = decode(229, ipv6(later + b"more data", nh=44), 0, 0)
    assert isinstance(p, Fragment)
    assert (p.proto, p.offset, p.more, p.ident, p.data) == (17, 64, True, 1, b"more data")
    p = decode(229, ipv6(b"\0\0\0\1" + b"esp", nh=50), 0, 0)
    assert p.proto == 50 and p.payload == b"\0\0\0\1esp"


def test_ipv4_fragments():
    first = decode(228, ipv4(udp(payload=b"abc", ulen=1000), 17, frag=0x2000), 0, 0)
    assert isinstance(first, Fragment) and (first.offset, first.more) == (0, True)
    assert first.data[8:] == b"abc"
    later = decode(228, ipv4(b"rest of datagram", 17, frag=185), 0, 0)
    assert isinstance(later, Fragment)
    assert (later.proto, later.offset, later.more, later.data, later.ip_len) == (17, 1480, False, b"rest of datagram", 36)


def test_snaplen_truncated_uses_stated_length():
    frame = eth(ipv4(tcp(payload=b"x" * 1000)))[:96]
    p = decode(1, frame, 0, 1054)
    assert p.ip_len == 1040 and p.payload == b"x" * 42


def test_tso_zero_total_length_falls_back_to_captured():
    p = decode(228, ipv4(tcp(payload=b"y" * 3000), total=0), 0, 0)
    assert p.ip_len == 3040 and len(p.payload) == 3000


def test_udp_lengths():
    assert decode(228, ipv4(udp(payload=b"abcdef", ulen=10), 17), 0, 0).payload == b"ab"
    # longer than the IP payload: keep what is there (tshark flags it, still dissects)
    assert decode(228, ipv4(udp(payload=b"abc", ulen=500), 17), 0, 0).payload == b"abc"
    assert decode(228, ipv4(udp(payload=b"abc", ulen=4), 17), 0, 0) == "udp"


def test_icmp():
    p = decode(228, ipv4(b"\x08\x00\0\0\0\1\0\1ping", 1), 0, 0)
    assert (p.proto, p.sport, p.dport, p.payload[:1]) == (1, 0, 0, b"\x08")
    assert decode(229, ipv6(b"\x80\x00\0\0", nh=58), 0, 0).proto == 58
    assert decode(228, ipv4(b"\x08", 1), 0, 0) == "icmp"


def test_other_l4_protocols_have_no_ports():
    p = decode(228, ipv4(b"gre-data", 47), 0, 0)
    assert (p.proto, p.sport, p.dport, p.tcp_flags, p.seq, p.payload) == (47, 0, 0, 0, 0, b"gre-data")


@pytest.mark.parametrize("frame,layer", [
    (b"\0" * 13, "link"),
    (eth(b"\0" * 3, 0x8100), "link"),
    (eth(b"\x45" + b"\0" * 10), "ip"),
    (eth(b"\x65" + b"\0" * 40), "ip"),                       # version 6 in an IPv4 ethertype
    (eth(b"\x44" + b"\0" * 40), "ip"),                       # IHL < 5
    (eth(ipv4(b"", total=10)), "ip"),                        # total length < header
    (eth(b"\x60" + b"\0" * 20, 0x86DD), "ipv6"),
    (eth(ipv6(bytes([6, 200]) + b"\0" * 6, nh=0), 0x86DD), "ipv6"),   # ext header past the end
    (eth(ipv4(tcp()[:12])), "tcp"),
    (eth(ipv4(tcp(doff=3))), "tcp"),
    (eth(ipv4(tcp()[:12] + b"\xf0" + tcp()[13:])), "tcp"),   # data offset beyond the segment
    (eth(ipv4(b"\0\1\0", 17)), "udp"),
])
def test_malformed_layers(frame, layer):
    assert decode(1, frame, 0, 0) == layer


def test_real_captures_per_link_type(real_pcaps):
    def first(name):
        ts, lt, fr, wl = next(iter(read_frames(real_pcaps / name)))
        return decode(lt, fr, ts, wl)
    p = first("tls13-illustrated-loopback.pcap")          # NULL
    assert (ip_text(p.src), p.dport, p.tcp_flags) == ("127.0.0.1", 8400, 0x002)
    p = first("tls-rawipv4-linktype228.pcap")             # IPv4 link type
    assert p.dport == 443 and p.tcp_flags == 0x002
    p = first("tls13-sll2-openjdk.pcap")                  # SLL2
    assert p.proto == 6 and p.dport == 443
    p = first("tls-pppoe-over-qinq.pcap")                 # QinQ + PPPoE
    assert p.version == 4 and 443 in (p.sport, p.dport)
    p = first("quic-vlan-ipv6-single-initial.pcap")      # VLAN + IPv6
    assert p.version == 6 and p.dport == 443 and p.payload[0] & 0xC0 == 0xC0
    p = first("http-connect-proxy-tls-ipv6-loopback.pcap")
    assert ip_text(p.src) == "::1"
