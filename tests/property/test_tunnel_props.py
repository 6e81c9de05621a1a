"""Property tests for the tunnel decapsulation and the new link types (hostile bytes).

For every encapsulation we build (VXLAN, Geneve with options, Teredo, GRE v0/v1 with every
optional field, IPv4/IPv6-in-IP, MPLS stacks, nested to any depth): opening it gives back the
inner packet exactly (addresses, ports, payload) with the hops in order; cutting the frame at
any offset gives a carrier plus a malformed count, never an exception; noise and mutations
never raise; nesting past the cap is one malformed "tunnel", with every carrier still there.
"""
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.decode import packet, tunnel
from auditor.decode.packet import Fragment, Packet, Tunnel, decode
from auditor.telemetry import Layer

ETH = b"\x02" * 6 + b"\x04" * 6


def ipv4(src: bytes, dst: bytes, proto: int, body: bytes) -> bytes:
    return struct.pack("!BBHHHBB2x4s4s", 0x45, 0, 20 + len(body), 1, 0, 64, proto, src, dst) + body


def ipv6(src: bytes, dst: bytes, nh: int, body: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 0x60000000, len(body), nh, 64, src, dst) + body


def udp(sport: int, dport: int, body: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(body), 0) + body


def tcp(sport: int, dport: int, body: bytes) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 7, 0, 0x50, 0x18, 1024, 0, 0) + body


v4 = st.binary(min_size=4, max_size=4)
v6 = st.binary(min_size=16, max_size=16)
port = st.integers(1024, 65535).filter(lambda p: p not in packet.TUNNEL_PORTS)
# A tunnel's other port: above the tunnel port, as a VTEP's hashed source port or a Teredo
# client's is (a datagram to a tunnel port is one whatever its source port).
high = st.integers(10000, 65535)


@st.composite
def inner_packets(draw):
    """(IP packet bytes, version, src, dst, proto, sport, dport, payload)."""
    version = draw(st.sampled_from([4, 6]))
    src, dst = draw(v4 if version == 4 else v6), draw(v4 if version == 4 else v6)
    proto = draw(st.sampled_from([6, 17]))
    sp, dp, body = draw(port), draw(port), draw(st.binary(max_size=40))
    l4 = (tcp if proto == 6 else udp)(sp, dp, body)
    raw = ipv4(src, dst, proto, l4) if version == 4 else ipv6(src, dst, proto, l4)
    return raw, (version, src, dst, proto, sp, dp, body)


def _gre(flags_draw, ptype: int, body: bytes) -> bytes:
    csum, key, seq = flags_draw
    flags = (0x8000 if csum else 0) | (0x2000 if key is not None else 0) | (0x1000 if seq else 0)
    head = struct.pack("!HH", flags, ptype)
    if csum:
        head += b"\0\0\0\0"
    if key is not None:
        head += struct.pack("!I", key)
    if seq:
        head += struct.pack("!I", 5)
    return head + body


@st.composite
def wraps(draw, ip_packet: bytes, version: int):
    """One encapsulation around an IP packet: (IP packet or Ethernet payload bytes of the
    carrier, ethertype of the result or None for an IP packet, kind, ident)."""
    kind = draw(st.sampled_from(["vxlan", "geneve", "teredo", "gre", "gre-teb", "gre-ppp",
                                 "ipip", "mpls"]))
    osrc, odst = draw(v4), draw(v4)
    et = 0x0800 if version == 4 else 0x86DD
    if kind == "vxlan":
        vni = draw(st.integers(0, 0xFFFFFF))
        body = struct.pack("!II", 0x08000000, vni << 8) + ETH + struct.pack("!H", et) + ip_packet
        return ipv4(osrc, odst, 17, udp(draw(high), 4789, body)), "vxlan", vni
    if kind == "geneve":
        vni, opts = draw(st.integers(0, 0xFFFFFF)), draw(st.integers(0, 4))
        body = (struct.pack("!BBHI", opts, 0, et, vni << 8) + b"\0" * (4 * opts) + ip_packet)
        return ipv4(osrc, odst, 17, udp(6081, draw(high), body)), "geneve", vni
    if kind == "teredo":
        if version != 6:
            return None
        origin = draw(st.booleans())
        body = (b"\x00\x00" + b"\x12\x34" + b"\x01\x02\x03\x04" if origin else b"") + ip_packet
        return ipv4(osrc, odst, 17, udp(3544, draw(high), body)), "teredo", None
    if kind.startswith("gre"):
        key = draw(st.none() | st.integers(0, 0xFFFFFFFF))
        fl = (draw(st.booleans()), key, draw(st.booleans()))
        if kind == "gre":
            body = _gre(fl, et, ip_packet)
        elif kind == "gre-teb":
            body = _gre(fl, 0x6558, ETH + struct.pack("!H", et) + ip_packet)
        else:
            ppp = b"\xff\x03" + (b"\x00\x21" if version == 4 else b"\x00\x57") + ip_packet
            call = draw(st.integers(0, 0xFFFF))
            body = struct.pack("!HHHH", 0x3001, 0x880B, len(ppp), call) + b"\0\0\0\1" + ppp
            key = call
        return ipv4(osrc, odst, 47, body), "gre", key
    if kind == "ipip":
        return ipv4(osrc, odst, 4 if version == 4 else 41, ip_packet), \
            "ip-in-ip" if version == 4 else "ipv6-in-ip", None
    labels = draw(st.lists(st.integers(16, 0xFFFFF), min_size=1, max_size=6))
    stack = b"".join(struct.pack("!I", (lab << 12) | (0x100 if i == len(labels) - 1 else 0) | 64)
                     for i, lab in enumerate(labels))
    return ("mpls", stack + ip_packet), "mpls", labels[-1]


def frame_of(carrier) -> bytes:
    if isinstance(carrier, tuple):          # MPLS: straight on Ethernet
        return ETH + b"\x88\x47" + carrier[1]
    return ETH + b"\x08\x00" + carrier


def opened(frame: bytes) -> list:
    r = decode(1, frame, 1.0, len(frame))
    return tunnel.layers(r) if r.__class__ is Tunnel else [r]


@given(st.data())
def test_decap_of_encap_is_the_inner_packet(data):
    raw, (version, src, dst, proto, sp, dp, body) = data.draw(inner_packets())
    depth = data.draw(st.integers(1, 3))
    kinds = []
    ip_packet = raw
    frame = None
    for _ in range(depth):
        w = data.draw(wraps(ip_packet, version if not kinds else 4))
        if w is None:
            w = data.draw(wraps(ip_packet, version if not kinds else 4).filter(lambda x: x))
        carrier, kind, _ident = w
        kinds.insert(0, kind)
        if isinstance(carrier, tuple):       # MPLS cannot be put in IP here: it ends the stack
            frame = frame_of(carrier)
            break
        ip_packet = carrier
    frame = frame or frame_of(ip_packet)
    got = opened(frame)
    inner = got[-1]
    assert inner.__class__ is Packet, got
    assert (inner.version, inner.src, inner.dst, inner.proto, inner.sport, inner.dport,
            bytes(inner.payload)) == (version, src, dst, proto, sp, dp, body)
    assert [h.kind for h in inner.tunnel.chain()] == kinds
    assert all(c.__class__ is Tunnel for c in got[:-1])     # every carrier is kept


@given(st.data())
def test_truncation_at_every_offset_is_counted_never_raises(data):
    raw, _ = data.draw(inner_packets())
    carrier, _kind, _ = data.draw(wraps(raw, 4).filter(lambda x: x))
    frame = frame_of(carrier)
    for cut in range(len(frame)):
        got = opened(frame[:cut])
        for layer in got:
            assert layer is None or isinstance(layer, (Packet, Fragment, Layer)), layer


@given(st.data())
def test_depth_past_the_cap_is_one_malformed_tunnel(data):
    raw, _ = data.draw(inner_packets().filter(lambda x: x[1][0] == 4))
    extra = data.draw(st.integers(1, 4))
    ip_packet = raw
    for _ in range(tunnel.MAX_DEPTH + extra):
        ip_packet = ipv4(b"\x0a\0\0\1", b"\x14\0\0\2", 4, ip_packet)
    got = opened(frame_of(ip_packet))
    assert got[-1] is Layer.TUNNEL
    # the outer carrier and one per level up to the cap, then the one malformed count
    assert len(got) == tunnel.MAX_DEPTH + 2 and all(c.__class__ is Tunnel for c in got[:-1])
    assert got[-2].tunnel.depth == tunnel.MAX_DEPTH


tunnel_headers = st.sampled_from([
    (17, 4789), (17, 8472), (17, 6081), (17, 3544), (47, 0), (4, 0), (41, 0)])


@settings(max_examples=300)
@given(tunnel_headers, st.binary(max_size=120))
def test_noise_inside_any_tunnel_never_raises(which, noise):
    proto, dport = which
    body = udp(40000, dport, noise) if proto == 17 else noise
    got = opened(frame_of(ipv4(b"\x0a\0\0\1", b"\x14\0\0\2", proto, body)))
    assert got[0].__class__ is Tunnel                    # the carrier is always tracked
    assert all(x is None or isinstance(x, (Packet, Fragment, Layer)) for x in got)
    mpls = opened(ETH + b"\x88\x47" + noise)
    assert all(x is None or isinstance(x, (Packet, Fragment, Layer)) for x in mpls)


@settings(max_examples=300)
@given(st.sampled_from([9, 50, 239]), st.binary(max_size=100))
def test_new_link_types_never_raise_on_noise(linktype, noise):
    r = decode(linktype, noise, 0.0, len(noise))
    assert r is None or isinstance(r, (Packet, Fragment, Layer))


@given(inner_packets(), st.sampled_from(["le", "be"]), st.lists(st.binary(max_size=11), max_size=4))
def test_nflog_finds_the_payload_after_any_tlvs(pkt, order, tlvs):
    raw, (version, src, dst, proto, sp, dp, body) = pkt
    fmt = "<HH" if order == "le" else ">HH"

    def tlv(kind: int, value: bytes) -> bytes:
        return struct.pack(fmt, 4 + len(value), kind) + value + b"\0" * (-len(value) % 4)
    frame = bytes([2 if version == 4 else 10, 0, 0, 1]) + b"".join(
        tlv(1 + i, v) for i, v in enumerate(tlvs)) + tlv(9, raw)
    r = decode(239, frame, 0.0, len(frame))
    assert r.__class__ is Packet and (r.src, r.dst, r.sport, r.dport, bytes(r.payload)) == (
        src, dst, sp, dp, body)
