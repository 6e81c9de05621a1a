"""Opening tunnels: VXLAN, Geneve, Teredo, GRE, IPv4/IPv6-in-IP and MPLS, nested to a cap.

`packet.decode` returns a `Tunnel` (a `Packet` subclass) for the few packets that may carry
another one; `layers` turns it into everything the frame holds, outermost first: each carrier
`Packet` (tracked as a flow of its own: the VXLAN UDP flow to a remote VTEP is egress like any
other), then the innermost result (`Packet`, `Fragment`, malformed `Layer`, or nothing when the
payload is not IP, e.g. ARP inside VXLAN). Every packet found inside a tunnel has `tunnel` set
to its `Encap`: the chain of hops that carried it, which the tracker puts into the flow key so
an inner flow never shares state with a real flow of the node that has the same 5-tuple.

Decisions (compared with tshark 4.0):
- A header that is cut short, a GRE routing list that does not end, an MPLS stack of more than
  `MAX_LABELS` entries, or a nesting deeper than `MAX_DEPTH` is malformed "tunnel"; the
  carrier is still tracked (a crafted tunnel cannot make its outer flow disappear).
  Malformed inner IP/TCP/UDP counts under its own layer; a cut inner Ethernet under "tunnel".
- VXLAN flags and Geneve/GRE reserved bits are not checked (tshark decodes the payload
  regardless, and so must we: a flag must not be a way to hide the inner packet).
- MPLS: after the bottom-of-stack label the first nibble decides, 4 IPv4, 6 IPv6 (tshark's
  guess), 0 an Ethernet pseudowire behind its 4-byte control word (RFC 4385; tshark asks
  for a decode-as); anything else (a PW associated channel, a pseudowire without a control
  word) carries no IP we read. MPLS has no carrier flow of its own.
- Teredo (RFC 4380): the authentication and origin-indication headers are skipped.
- GRE: version 0 (RFC 2784/2890: checksum, key, sequence; RFC 1701 routing) and version 1
  (PPTP, RFC 2637: key = payload length + call id, optional sequence and ack); protocol
  0x6558 is an Ethernet frame, 0x880B a PPP frame, anything else an ethertype.
"""
from __future__ import annotations

import struct

from auditor.decode import packet
from auditor.decode.packet import Fragment, Packet, Tunnel
from auditor.telemetry import Layer

__all__ = ["Encap", "layers", "open_one", "MAX_DEPTH", "MAX_LABELS"]

MAX_DEPTH = 8          # nested encapsulations; a deeper one is malformed "tunnel"
MAX_LABELS = 16        # MPLS label stack entries
_TUNNEL = Layer.TUNNEL
_GRE_PPP = 0x880B
_KIND_BY_PROTO = {4: "ip-in-ip", 41: "ipv6-in-ip", 47: "gre"}


class Encap:
    """One encapsulation hop and the hops outside it. `src`/`dst` are the carrier's packed
    addresses (None for MPLS), `ident` the VNI, GRE key or bottom MPLS label (None when the
    header has none). `scope` identifies the tunnel the same way in both directions: each
    hop's kind and addresses as an unordered pair. The VNI/key/label is recorded but left
    out: real tunnels use a different one per direction (MPLS always, OVS Geneve/VXLAN
    often), and a flow must not split in two halves. It is what the flow key, the
    fragment key and the DNS state of an inner flow are scoped by."""
    __slots__ = ("kind", "ident", "src", "dst", "parent", "depth", "scope")

    def __init__(self, kind: str, ident: int | None, src: bytes | None, dst: bytes | None,
                 parent: Encap | None) -> None:
        self.kind, self.ident, self.src, self.dst, self.parent = kind, ident, src, dst, parent
        self.depth: int = 1 if parent is None else parent.depth + 1
        # bytes, not a tuple: a bytes object caches its hash, and the scope is hashed as
        # part of the flow key on every inner packet. Kind code, address length, addresses.
        head = (b"" if parent is None else parent.scope) + bytes((_KIND_CODES[kind],))
        if src is None or dst is None:
            self.scope: bytes = head + b"\0"
        else:
            self.scope = head + bytes((len(src),)) + (src + dst if src <= dst else dst + src)

    def reversed(self) -> Encap:
        """The same chain seen from the other end (outer source and destination swapped)."""
        parent = self.parent.reversed() if self.parent is not None else None
        return Encap(self.kind, self.ident, self.dst, self.src, parent)

    def chain(self) -> list[Encap]:
        """Outermost hop first."""
        hops: list[Encap] = []
        hop: Encap | None = self
        while hop is not None:
            hops.append(hop)
            hop = hop.parent
        return hops[::-1]

    def __repr__(self) -> str:
        return "/".join(f"{h.kind}{'' if h.ident is None else f'[{h.ident}]'}" for h in self.chain())


_KIND_CODES = {k: i for i, k in enumerate(
    ("vxlan", "geneve", "teredo", "gre", "ip-in-ip", "ipv6-in-ip", "mpls"), 1)}
_HOPS: dict[tuple, Encap] = {}
_VXLAN_HOPS: dict[tuple, Encap] = {}
_MAX_HOPS = 4096


def _hop(kind: str, ident: int | None, src: bytes | None, dst: bytes | None,
         parent: Encap | None) -> Encap:
    """The `Encap` for these values, shared by every packet of one tunnel (its scope and
    the scope's hash are computed once). Bounded: a flood of made-up tunnels only clears
    the cache, and equal scopes compare equal whichever object holds them."""
    key = (kind, ident, src, dst, parent)
    hop = _HOPS.get(key)
    if hop is None:
        if len(_HOPS) >= _MAX_HOPS:
            _HOPS.clear()
        hop = _HOPS[key] = Encap(kind, ident, src, dst, parent)
    return hop


def layers(t: Tunnel) -> list:
    """Everything the frame holds: carriers outermost first, then the innermost result.
    Never raises on hostile bytes."""
    out: list = []
    while True:
        if t.proto != -1:              # MPLS has no carrier packet of its own
            out.append(t)
        inner = open_one(t)
        if inner.__class__ is Tunnel:
            t = inner
            continue
        if inner is not None:
            out.append(inner)
        return out


def open_one(t: Tunnel):
    """What one carrier holds, `tunnel` set to its hop: another `Tunnel`, a `Packet`, a
    `Fragment`, the malformed `Layer`, or None (not IP, e.g. ARP inside VXLAN). The
    tracker's loop over a frame's layers; never raises on hostile bytes."""
    parent = t.tunnel
    if parent is not None and parent.depth >= MAX_DEPTH:
        return _TUNNEL
    try:
        inner, hop = _open(t, parent)
    except (IndexError, struct.error):   # a length that ran past the captured bytes
        return _TUNNEL
    cls = inner.__class__
    if cls is Tunnel or cls is Packet or cls is Fragment:
        inner.tunnel = hop
        return inner
    if inner is Layer.LINK:
        return _TUNNEL                 # a cut Ethernet/PPP frame inside the tunnel
    return inner


def _open(t: Tunnel, parent: Encap | None):
    """(what the payload decodes to, the hop that carried it)."""
    data, ts = t.payload, t.ts
    proto = t.proto
    if proto == -1:
        return _mpls(data, ts, parent)
    if proto == 17:
        kind = packet.TUNNEL_PORTS.get(packet.tunnel_port(t.sport, t.dport))
        if kind == "vxlan":
            if len(data) < 8:
                return _TUNNEL, None
            # Most tunnelled frames are VXLAN: its hops are found by the raw VNI bytes, one
            # lookup without building the integer (same bound as `_hop`).
            vkey = (data[4:7], t.src, t.dst, parent)
            hop = _VXLAN_HOPS.get(vkey)
            if hop is None:
                if len(_VXLAN_HOPS) >= _MAX_HOPS:
                    _VXLAN_HOPS.clear()
                hop = _VXLAN_HOPS[vkey] = _hop("vxlan", int.from_bytes(vkey[0], "big"), t.src,
                                               t.dst, parent)
            if len(data) >= 22 and data[20] == 8 and data[21] == 0:   # the usual: IPv4
                return packet.ipv4(data, 22, ts), hop
            return packet.ethernet(data, 8, ts), hop
        if kind == "geneve":
            if len(data) < 8:
                return _TUNNEL, None
            hlen = 8 + ((data[0] & 0x3F) << 2)
            if len(data) < hlen:
                return _TUNNEL, None
            hop = _hop("geneve", int.from_bytes(data[4:7], "big"), t.src, t.dst, parent)
            return packet.by_ethertype(data, hlen, (data[2] << 8) | data[3], ts), hop
        if kind == "teredo":
            return _teredo(data, ts), _hop("teredo", None, t.src, t.dst, parent)
        return None, None              # the port set changed under us: nothing to open
    hop_kind = _KIND_BY_PROTO[proto]
    if proto == 4:
        return packet.ipv4(data, 0, ts), _hop(hop_kind, None, t.src, t.dst, parent)
    if proto == 41:
        return packet.ipv6(data, 0, ts), _hop(hop_kind, None, t.src, t.dst, parent)
    return _gre(t, data, ts, parent)


def _gre(t: Tunnel, data: bytes, ts: float, parent: Encap | None):
    if len(data) < 4:
        return _TUNNEL, None
    flags = (data[0] << 8) | data[1]
    ptype = (data[2] << 8) | data[3]
    version = flags & 7
    off = 4
    key = None
    if version == 0:
        if flags & 0xC000:             # checksum present or routing present: checksum + offset
            off += 4
        if flags & 0x2000:
            key = int.from_bytes(data[off:off + 4], "big")
            off += 4
        if flags & 0x1000:
            off += 4
        if flags & 0x4000:             # RFC 1701 source routing: SREs up to a null one
            for _ in range(64):
                if off + 4 > len(data):
                    return _TUNNEL, None
                sre_len = data[off + 3]
                off += 4 + sre_len
                if sre_len == 0 and data[off - 4] == 0 and data[off - 3] == 0:
                    break
            else:
                return _TUNNEL, None
    elif version == 1:                 # PPTP: key = payload length (2) + call id (2)
        if not flags & 0x2000:
            return _TUNNEL, None
        key = (data[6] << 8) | data[7]
        off += 4
        if flags & 0x1000:
            off += 4
        if flags & 0x0080:             # acknowledgment number
            off += 4
    else:
        return _TUNNEL, None
    if off > len(data):
        return _TUNNEL, None
    hop = _hop("gre", key, t.src, t.dst, parent)
    if ptype == _GRE_PPP:
        if off == len(data):           # PPTP: a bare acknowledgment carries no packet
            return None, hop
        return packet.ppp(data, off, ts), hop
    return packet.by_ethertype(data, off, ptype, ts), hop


def _teredo(data: bytes, ts: float):
    off = 0
    if data[0:2] == b"\x00\x01":       # authentication: id len, auth len, id, auth, nonce, conf
        if len(data) < 4:
            return _TUNNEL
        off = 13 + data[2] + data[3]
    if data[off:off + 2] == b"\x00\x00":   # origin indication: 2 + port 2 + address 4
        off += 8
    if len(data) < off + 40:
        return _TUNNEL
    return packet.ipv6(data, off, ts)


def _mpls(data: bytes, ts: float, parent: Encap | None):
    off = 0
    for _ in range(MAX_LABELS):
        if len(data) < off + 4:
            return _TUNNEL, None
        entry = int.from_bytes(data[off:off + 4], "big")
        off += 4
        if entry & 0x100:              # bottom of stack
            hop = _hop("mpls", entry >> 12, None, None, parent)
            if len(data) <= off:
                return _TUNNEL, None
            nibble = data[off] >> 4
            if nibble == 4:
                return packet.ipv4(data, off, ts), hop
            if nibble == 6:
                return packet.ipv6(data, off, ts), hop
            if nibble == 0:            # an Ethernet pseudowire's control word (RFC 4385 s3)
                return packet.ethernet(data, off + 4, ts), hop
            return None, hop           # a PW associated channel (1) or another payload
    return _TUNNEL, None
