"""L2-L4 decoding of one captured frame into a `Packet`: the pure-Python implementation.

The reference: `cpacket.pyx` is its compiled twin, which must give identical results for every
frame (tests/test_twins.py holds them together on every capture in the test suite and on
random frames); `packet.py` picks one of the two at import.

Owns: link-layer framing (Ethernet + VLAN/QinQ/PPPoE, NULL/LOOP, RAW, IPv4/IPv6 link types,
Linux SLL/SLL2, NFLOG, PPP and PPP-in-HDLC), IPv4/IPv6 (with IPv6 extension headers and
fragments), TCP/UDP/ICMP header facts. `decode` returns a `Packet`, a `Fragment`, a `Tunnel`
(a packet that carries another one: `decode/tunnel.py` opens it), the malformed `Layer` (for
`packets_malformed_total{layer}`; a link type we do not read is "linktype"), or None for valid
frames that carry no IP. Reading past the end of a frame is "malformed link"; any other
exception is a bug and surfaces.

Speed matters more than elegance here (budget ~1 us/packet): byte indexing and precompiled
`struct.Struct` instead of per-layer objects; addresses stay packed bytes until a flow needs
text (`ip_text`).

Decisions (compared with tshark 4.0):
- `ip_len` is what the IP header states (IPv4 total length, IPv6 40 + payload length), so it is
  the on-wire size even for snaplen-truncated frames. IPv4 total length 0 (TSO/GRO captures)
  and IPv6 payload length 0 (jumbogram) fall back to the captured IP bytes.
- payload is trimmed to the IP length (drops Ethernet padding) and, for UDP, to the UDP length.
  A UDP length larger than the IP payload is kept as "what is there" (tshark flags it as a bad
  length but still dissects the datagram; so do we); a UDP length < 8 is malformed ("udp").
- TCP: fewer than 20 captured header bytes, a data offset < 20, or one beyond the IP-stated
  segment is malformed ("tcp"); options cut short only by the snaplen just leave payload empty.
- ICMP/ICMPv6: ports 0, payload = the whole ICMP message (type and code are its first bytes).
- IP fragments (IPv4 MF or offset, IPv6 fragment header) are reported as a `Fragment` with
  the raw fragment data; `track/defrag.py` reassembles them and `decode_l4` finishes the job,
  so a fragmented DNS response is still read (tshark reassembles by default too).
- Tunnels cost the common case nothing: only UDP to a tunnel port, or from one to a higher
  port (an answer), IP protocol 4/41/47
  and the MPLS ethertypes return a `Tunnel` instead of a `Packet`, and `Tunnel` is a
  `Packet` (the carrier, tracked like any other), so one class test routes it.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Iterable

from auditor.addresses import text as ip_text
from auditor.telemetry import Layer

__all__ = [
    "Packet", "Fragment", "decode", "decode_l4", "ip_text",
    "LINKTYPE_NULL", "LINKTYPE_ETHERNET", "LINKTYPE_RAW", "LINKTYPE_LOOP",
    "LINKTYPE_LINUX_SLL", "LINKTYPE_IPV4", "LINKTYPE_IPV6", "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_PPP", "LINKTYPE_PPP_HDLC", "LINKTYPE_NFLOG", "LINKTYPES", "Tunnel",
    "set_tunnel_ports", "tunnel_port", "ethernet", "by_ethertype", "ppp",
]

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
LINKTYPE_PPP = 9
LINKTYPE_PPP_HDLC = 50
LINKTYPE_NFLOG = 239
LINKTYPES = frozenset((0, 1, 9, 50, 101, 108, 113, 228, 229, 239, 276))   # what `decode` reads

_VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))
_ETH_IPV4 = 0x0800
_ETH_IPV6 = 0x86DD
_ETH_PPPOE_SESSION = 0x8864
_ETH_MPLS = frozenset((0x8847, 0x8848))
_ETH_TEB = 0x6558          # transparent Ethernet bridging (GRE, Geneve)
_PPP_IPV4, _PPP_IPV6 = 0x0021, 0x0057
_PPP_MPLS = frozenset((0x0281, 0x0283))
# UDP ports that carry a tunnel -> its kind. The one set the UDP fast path looks at; the
# VXLAN ports come from settings (`set_tunnel_ports`), hence a module global: a frozenset
# lookup is the cheapest test there is on that path.
TUNNEL_PORTS: dict[int, str] = {4789: "vxlan", 8472: "vxlan", 6081: "geneve", 3544: "teredo"}
_TUNNEL_PORTS = frozenset(TUNNEL_PORTS)
_IP_TUNNELS = frozenset((4, 41, 47))   # IPv4-in-IP, IPv6-in-IP, GRE
# BSD AF_INET6 differs per OS (24 NetBSD/OpenBSD, 28 FreeBSD, 30 macOS; 10 is Linux).
_NULL_AF_INET6 = frozenset((24, 28, 30, 10))
# IPv6 extension headers we walk through; ESP (50) and No Next Header (59) end the walk.
_V6_EXT = frozenset((0, 43, 44, 51, 60))

_LINK, _IP, _IPV6, _TCP, _UDP, _ICMP = (Layer.LINK, Layer.IP, Layer.IPV6, Layer.TCP, Layer.UDP,
                                        Layer.ICMP)
_LINKTYPE = Layer.LINKTYPE
_U16 = struct.Struct("!H").unpack_from
_U32 = struct.Struct("!I").unpack_from
_U32LE = struct.Struct("<I").unpack_from
_TCP_HDR = struct.Struct("!HHIIBB").unpack_from   # sport, dport, seq, ack, offset byte, flags byte
_UDP_HDR = struct.Struct("!HHH").unpack_from      # sport, dport, length
_V4_HDR = struct.Struct("!BxHHHxB").unpack_from   # ver/ihl, total len, id, frag, proto
_V6_HDR = struct.Struct("!4xHB").unpack_from      # payload length, next header


@dataclass(slots=True, repr=False, eq=False)
class Packet:
    """Facts about one IP packet. Addresses are packed bytes (4 or 16)."""
    ts: float
    version: int
    src: bytes
    dst: bytes
    proto: int
    sport: int
    dport: int
    ip_len: int
    tcp_flags: int
    seq: int
    payload: bytes
    ack: int = 0
    ts_ns: int | None = None     # exact capture time when the source has it (capture files)
    tunnel: Any = None     # the `tunnel.Encap` that carried it; None for a plain packet

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(ts={self.ts!r}, {ip_text(self.src)}:{self.sport} -> "
                f"{ip_text(self.dst)}:{self.dport} proto={self.proto} ip_len={self.ip_len} "
                f"flags={self.tcp_flags:#x} seq={self.seq} payload={len(self.payload)}B)")


@dataclass(slots=True, repr=False, eq=False)
class Fragment:
    """One IP fragment: `data` is its share of the datagram's L4 bytes, at byte `offset`."""
    ts: float
    version: int
    src: bytes
    dst: bytes
    proto: int
    ident: int
    offset: int
    more: bool
    ip_len: int
    data: bytes
    ts_ns: int | None = None
    tunnel: Any = None

    def __repr__(self) -> str:
        return (f"Fragment({ip_text(self.src)} -> {ip_text(self.dst)} proto={self.proto} "
                f"id={self.ident} offset={self.offset} more={self.more} {len(self.data)}B)")


class Tunnel(Packet):
    """A packet whose payload is another packet (VXLAN/Geneve/Teredo UDP, GRE, IP-in-IP), or
    an MPLS frame (then `proto` is -1 and no flow is kept for it: there is no outer IP).

    A UDP carrier's port on the side away from the tunnel port is per-inner-flow entropy; the
    tracker keys the carrier by the tunnel port alone (`ANY_PORT` in the other place) and
    keeps the real port it replaced in `entropy_port` (set only then)."""
    __slots__ = ("entropy_port",)
    entropy_port: int


def tunnel_port(sport: int, dport: int) -> int:
    """The port that makes a UDP `Tunnel` one: the destination port when it is a tunnel
    port (what the receiver decapsulates), else the source port (an answer)."""
    return dport if dport in TUNNEL_PORTS else sport


def set_tunnel_ports(vxlan: Iterable[int]) -> None:
    """The UDP ports read as VXLAN (settings `tunnels.vxlan_ports`); the others are fixed."""
    global _TUNNEL_PORTS
    TUNNEL_PORTS.clear()
    TUNNEL_PORTS.update({6081: "geneve", 3544: "teredo"})
    TUNNEL_PORTS.update((p, "vxlan") for p in vxlan)
    _TUNNEL_PORTS = frozenset(TUNNEL_PORTS)


def decode_l4(ts, version, src, dst, proto, data, ip_len):
    """L4 facts of a reassembled datagram: `Packet` or the malformed `Layer`."""
    try:
        return _l4(data, 0, len(data), len(data), ts, version, src, dst, proto, ip_len)
    except (IndexError, struct.error):
        return _IP


def decode(linktype: int, frame: bytes, ts: float, wirelen: int):
    """Decode one frame: `Packet`, `Fragment`, the malformed `Layer`, or None (not IP)."""
    try:
        if linktype == 1:
            if len(frame) < 14:
                return _LINK
            et = (frame[12] << 8) | frame[13]
            if et == 0x0800:      # the common case, without the VLAN/PPPoE walk
                return _ipv4(frame, 14, ts)
            return _ethertype(frame, 14, et, ts)
        if linktype == 113:
            if len(frame) < 16:
                return _LINK
            return _ethertype(frame, 16, (frame[14] << 8) | frame[15], ts)
        if linktype == 276:
            if len(frame) < 20:
                return _LINK
            return _ethertype(frame, 20, (frame[0] << 8) | frame[1], ts)
        if linktype == 0 or linktype == 108:
            if len(frame) < 4:
                return _LINK
            fam = _U32(frame, 0)[0]
            if linktype == 0 and fam > 0xFFFF:
                fam = _U32LE(frame, 0)[0]   # written in the capturing host's byte order
            if fam == 2:
                return _ipv4(frame, 4, ts)
            if fam in _NULL_AF_INET6:
                return _ipv6(frame, 4, ts)
            return None
        if linktype == 101 or linktype == 228 or linktype == 229:
            if not frame:
                return _IP if linktype != 229 else _IPV6
            v = frame[0] >> 4
            if linktype == 228 or (linktype == 101 and v == 4):
                return _ipv4(frame, 0, ts)
            if linktype == 229 or v == 6:
                return _ipv6(frame, 0, ts)
            return _IP
        if linktype == 9 or linktype == 50:
            return ppp(frame, 0, ts)
        if linktype == 239:
            return _nflog(frame, ts)
        return _LINKTYPE   # counted: a link type we do not read (the source warns once)
    except (IndexError, struct.error):   # a length that ran past the captured bytes
        return _LINK


def _ethertype(frame, off, et, ts):
    n = len(frame)
    while et in _VLAN_TPIDS:   # 802.1Q / QinQ, any depth
        if n < off + 4:
            return _LINK
        et = (frame[off + 2] << 8) | frame[off + 3]
        off += 4
    if et == _ETH_IPV4:
        return _ipv4(frame, off, ts)
    if et == _ETH_IPV6:
        return _ipv6(frame, off, ts)
    if et == _ETH_PPPOE_SESSION:
        # PPPoE header (6 bytes) + PPP protocol (2): 0x0021 IPv4, 0x0057 IPv6.
        if n < off + 8:
            return _LINK
        # RFC 2516 section 4: LENGTH is the PPPoE payload's; what follows is Ethernet padding,
        # even when the IP header claims it (tls-pppoe-over-qinq.pcap frame 19: PPPoE 42, IP
        # total 46, 6 pad bytes that a later segment overwrites). As tshark: the IP packet
        # ends with the PPPoE payload, short of its stated length (counted as stated).
        end = off + 6 + _U16(frame, off + 4)[0]
        if end < n:
            frame = frame[:end]
        ppp = (frame[off + 6] << 8) | frame[off + 7]
        if ppp == 0x0021:
            return _ipv4(frame, off + 8, ts)
        if ppp == 0x0057:
            return _ipv6(frame, off + 8, ts)
    if et in _ETH_MPLS:
        return _mpls(frame, off, ts)
    return None   # ARP, LLDP, STP (802.3 length field), PPPoE discovery, PPP control, ...


def _ipv4(frame, off, ts):
    n = len(frame)
    if n < off + 20:
        return _IP
    vihl, total, ident, frag, proto = _V4_HDR(frame, off)
    ihl = (vihl & 15) << 2
    if vihl >> 4 != 4 or ihl < 20 or n < off + ihl:
        return _IP
    if total == 0:        # TSO/GRO: the NIC fills the length in later
        total = n - off
    elif total < ihl:
        return _IP
    end = off + total     # drops link-layer padding and trailers
    if end > n:
        end = n           # snaplen-truncated: keep what was captured
    src = frame[off + 12:off + 16]
    dst = frame[off + 16:off + 20]
    if frag & 0x3FFF:     # MF set or a non-zero offset: one piece of a larger datagram
        return Fragment(ts, 4, src, dst, proto, ident, (frag & 0x1FFF) << 3, bool(frag & 0x2000),
                        total, frame[off + ihl:end])
    return _l4(frame, off + ihl, end, off + total, ts, 4, src, dst, proto, total)


def _ipv6(frame, off, ts):
    n = len(frame)
    if n < off + 40:
        return _IPV6
    if frame[off] >> 4 != 6:
        return _IPV6
    plen, nh = _V6_HDR(frame, off)
    if plen == 0:         # jumbogram (or a GRO capture): use what was captured
        plen = n - off - 40
    total = 40 + plen
    end = off + total
    if end > n:
        end = n
    src = frame[off + 8:off + 24]
    dst = frame[off + 24:off + 40]
    p = off + 40
    while nh in _V6_EXT:
        if p + 8 > end:
            return _IPV6
        if nh == 44:      # fragment header: the rest is one piece of a larger datagram
            fo = (frame[p + 2] << 8) | frame[p + 3]
            if fo & 0xFFF9:   # offset or M flag set: a real fragment (else an "atomic" one)
                return Fragment(ts, 6, src, dst, frame[p], _U32(frame, p + 4)[0], fo & 0xFFF8,
                                bool(fo & 1), total, frame[p + 8:end])
            nh = frame[p]
            p += 8
        elif nh == 51:    # AH length is in 4-octet units minus 2
            nh, p = frame[p], p + ((frame[p + 1] + 2) << 2)
        else:
            nh, p = frame[p], p + ((frame[p + 1] + 1) << 3)
    if p > end:
        return _IPV6
    return _l4(frame, p, end, off + total, ts, 6, src, dst, nh, total)


def _l4(frame, p, end, stated_end, ts, version, src, dst, proto, ip_len):
    """L4 at frame[p:end]; stated_end is where the IP header says the packet ends."""
    if proto == 6:
        if end - p < 20:
            return _TCP
        sport, dport, seq, ack, offb, flags = _TCP_HDR(frame, p)
        doff = (offb >> 4) << 2
        if doff < 20 or p + doff > stated_end:
            return _TCP
        return Packet(ts, version, src, dst, 6, sport, dport, ip_len,
                      ((offb & 0x0F) << 8) | flags, seq, frame[p + doff:end], ack)
    if proto == 17:
        if end - p < 8:
            return _UDP
        sport, dport, ulen = _UDP_HDR(frame, p)
        if ulen < 8:
            if ulen != 0 or version != 6:   # 0 is legal only for IPv6 jumbograms
                return _UDP
        elif p + ulen < end:
            end = p + ulen    # bytes after the UDP datagram are a trailer, not payload
        # To a tunnel port is a tunnel whatever the source port: the receiving VTEP
        # decapsulates by destination port, so tshark's "the lower port decides" would let a
        # sender hide the inner packet behind a source port below it (53 -> 8472). From a
        # tunnel port, only to a higher port (an answer; a DNS query from port 4789 is DNS).
        # Both tests fail fast for every other packet.
        if dport in _TUNNEL_PORTS or (sport in _TUNNEL_PORTS and sport <= dport):
            return Tunnel(ts, version, src, dst, 17, sport, dport, ip_len, 0, 0, frame[p + 8:end])
        return Packet(ts, version, src, dst, 17, sport, dport, ip_len, 0, 0, frame[p + 8:end])
    if proto == 1 or proto == 58:
        if stated_end - p < 4:
            return _ICMP
        return Packet(ts, version, src, dst, proto, 0, 0, ip_len, 0, 0, frame[p:end])
    if proto in _IP_TUNNELS:
        return Tunnel(ts, version, src, dst, proto, 0, 0, ip_len, 0, 0, frame[p:end])
    return Packet(ts, version, src, dst, proto, 0, 0, ip_len, 0, 0, frame[p:end])


# -- entry points for link layers inside tunnels, and the rarer link types ---------------

def ethernet(frame, off, ts):
    """An Ethernet frame at frame[off:] (VXLAN, Geneve/GRE transparent bridging)."""
    if len(frame) < off + 14:
        return _LINK
    return _ethertype(frame, off + 14, (frame[off + 12] << 8) | frame[off + 13], ts)


def by_ethertype(frame, off, et, ts):
    """The packet at frame[off:] by its ethertype (GRE and Geneve carry one)."""
    if et == _ETH_TEB:
        return ethernet(frame, off, ts)
    return _ethertype(frame, off, et, ts)


def ppp(frame, off, ts):
    """PPP (RFC 1661), with or without HDLC-like address/control bytes (RFC 1662), as
    LINKTYPE_PPP says; protocol-field compression (one odd byte) is honoured."""
    n = len(frame)
    if n >= off + 2 and frame[off] == 0xFF and frame[off + 1] == 0x03:
        off += 2
    if n < off + 1:
        return _LINK
    if frame[off] & 1:        # a compressed one-byte protocol field
        proto, off = frame[off], off + 1
    elif n < off + 2:
        return _LINK
    else:
        proto, off = (frame[off] << 8) | frame[off + 1], off + 2
    if proto == _PPP_IPV4:
        return _ipv4(frame, off, ts)
    if proto == _PPP_IPV6:
        return _ipv6(frame, off, ts)
    if proto in _PPP_MPLS:
        return _mpls(frame, off, ts)
    return None               # LCP, IPCP, CCP, ...: link control, no IP


_NFULA_PAYLOAD = 9
_NFPROTO_IPV4, _NFPROTO_IPV6 = 2, 10


def _nflog(frame, ts):
    """LINKTYPE_NFLOG: a 4-byte header (address family, version, resource id), then
    netlink TLVs (length incl. the 4-byte TLV header, type; host byte order, 4-byte
    aligned) up to NFULA_PAYLOAD, which holds the IP packet. The byte order is the
    capturing host's: little-endian unless that gives an impossible first TLV."""
    n = len(frame)
    if n < 4:
        return _LINK
    fam = frame[0]
    if fam != _NFPROTO_IPV4 and fam != _NFPROTO_IPV6:
        return None           # bridge/ARP families: no IP header to read
    # A big-endian TLV read little-endian has a length and a type >= 256: impossible here.
    little = n < 8 or (4 <= (frame[4] | frame[5] << 8) <= n - 4
                       and (frame[6] | frame[7] << 8) & 0x3FFF < 0x100)
    off = 4
    while off + 4 <= n:
        if little:
            length, tlv = frame[off] | frame[off + 1] << 8, frame[off + 2] | frame[off + 3] << 8
        else:
            length, tlv = frame[off] << 8 | frame[off + 1], frame[off + 2] << 8 | frame[off + 3]
        if length < 4 or off + length > n:
            return _LINK
        if tlv & 0x3FFF == _NFULA_PAYLOAD:   # top bits: netlink's nested/byte-order flags
            data = frame[off + 4:off + length]
            return _ipv4(data, 0, ts) if fam == _NFPROTO_IPV4 else _ipv6(data, 0, ts)
        off += (length + 3) & ~3
    return None               # a log record without the packet (e.g. copy mode "none")


def _mpls(frame, off, ts):
    """An MPLS label stack: a `Tunnel` whose payload starts at the first label entry (the
    tunnel module walks it, so its depth cap and malformed counts apply)."""
    return Tunnel(ts, 0, b"", b"", -1, 0, 0, 0, 0, 0, frame[off:])


# The names `packet.py` exports from whichever implementation it picked (tunnel.py's entry points).
ipv4, ipv6 = _ipv4, _ipv6
