"""The compiled DNS and ClientHello parsers give what their pure-Python references give.

`auditor/decode/cdns.pyx` against `dns.py_parse`, `auditor/decode/ctls.pyx` against
`tls.py_parse_records` / `tls.py_parse_handshake`: on every UDP and TCP payload of every
capture in the repository, and on hypothesis-written input shaped to hit the corners (DNS
names made of labels and pointers pointing anywhere, mutated real messages, hellos cut and
split across records). Skipped, like tests/test_twins.py, when the compiled core was not built,
unless `EGRESS_AUDITOR_REQUIRE_COMPILED=1` says it must have been.
"""
from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings, strategies as st

from auditor.decode import dns, pypacket, tls
from auditor.sources import pcap
from tests.property.test_app_decoders_props import (_vec, dns_budget, dns_wires, hellos,
                                                    mutated, records)
from tests.test_twins import CAPTURES

if dns.parse is dns.py_parse or tls.parse_records is tls.py_parse_records:
    if os.environ.get("EGRESS_AUDITOR_REQUIRE_COMPILED") == "1":
        raise ImportError("the compiled DNS/TLS parsers were not built")
    pytest.skip("the compiled core was not built (no C compiler at install)",
                allow_module_level=True)


def facts(result):
    """Every field of a parse result (the classes compare by identity or skip fields)."""
    if hasattr(result, "__slots__"):
        return (type(result).__name__,) + tuple(getattr(result, f) for f in result.__slots__)
    return result


def assert_same(payload: bytes) -> None:
    for pure, fast in ((dns.py_parse, dns.parse), (tls.py_parse_records, tls.parse_records),
                       (tls.py_parse_handshake, tls.parse_handshake)):
        want, got = facts(pure(payload)), facts(fast(payload))
        assert want == got, f"{pure.__name__}({payload!r}): pure {want!r} != compiled {got!r}"


def _payloads():
    """Every distinct UDP/TCP payload of every capture (a tunnel's carrier payload too)."""
    seen: set[bytes] = set()
    for path in CAPTURES:
        for ts_ns, linktype, frame, wirelen in pcap.CaptureFile(path):
            p = pypacket.decode(linktype, frame, 0.0, wirelen)
            if isinstance(p, (pypacket.Packet, pypacket.Tunnel)) and p.payload:
                seen.add(p.payload)
    return seen


def test_every_payload_of_every_capture_parses_the_same():
    payloads = _payloads()
    kinds = {"dns": 0, "hello": 0}
    for payload in payloads:
        assert_same(payload)
        kinds["dns"] += isinstance(dns.py_parse(payload), dns.DnsMessage)
        kinds["hello"] += isinstance(tls.py_parse_records(payload), tls.ClientHello)
    # The comparison is only as good as what the captures hold.
    assert kinds["dns"] > 200 and kinds["hello"] > 50, kinds


# A DNS name made of pieces chosen to hit every rule: labels of every length class (escaped
# bytes too), pointers backwards, forwards, to themselves and past the end, reserved label
# types; most pointers aim a few bytes around where they stand, so targets overlap the name
# being read (the rule that a backward target may not run into it) and label lengths straddle
# pointers.
@st.composite
def _name_bytes(draw, at: int, pieces: int) -> bytes:
    out = b""
    for _ in range(draw(st.integers(0, pieces))):
        kind = draw(st.sampled_from(["label", "near", "far", "odd"]))
        if kind == "label":
            b = draw(st.binary(min_size=1, max_size=draw(st.sampled_from([3, 12, 63]))))
            out += bytes([len(b)]) + b
        elif kind == "near":
            target = max(0, at + len(out) + draw(st.integers(-14, 14)))
            out += struct.pack("!H", 0xC000 | (target & 0x3FFF))
        elif kind == "far":
            out += struct.pack("!H", 0xC000 | draw(st.integers(0, 0x3FFF)))
        else:
            out += draw(st.sampled_from([b"\x00", b"\x40", b"\x80\x01", b"\x01\x00"]))
    return out


@st.composite
def pointer_messages(draw):
    flags = draw(st.sampled_from([0x8180, 0x8380, 0x0100]))
    qd, an = draw(st.integers(0, 2)), draw(st.integers(0, 6))
    body = b""
    for _ in range(qd):
        body += draw(_name_bytes(12 + len(body), 6)) + b"\x00" + b"\x00\x01\x00\x01"
    for _ in range(an):
        body += draw(_name_bytes(12 + len(body), 4)) + draw(st.sampled_from([b"\x00", b""]))
        rtype = draw(st.sampled_from([1, 28, 5, 2, 12, 39, 15, 16, 6, 33, 64, 65, 99]))
        rdata = draw(st.one_of(st.binary(max_size=24),
                               _name_bytes(12 + len(body) + 10, 4).map(lambda b: b + b"\x00")))
        rdlen = draw(st.sampled_from([len(rdata), len(rdata) + 3, max(len(rdata) - 1, 0)]))
        body += struct.pack("!HHIH", rtype, draw(st.sampled_from([1, 3])), 300, rdlen) + rdata
    return struct.pack("!HHHHHH", 7, flags, qd, an, 0, 0) + body


@given(pointer_messages() | st.binary(max_size=80))
def test_pointer_mazes_parse_the_same(wire):
    assert facts(dns.py_parse(wire)) == facts(dns.parse(wire))


@dns_budget
@given(mutated(dns_wires()) | dns_wires())
def test_real_shaped_dns_messages_parse_the_same(wire):
    assert facts(dns.py_parse(wire)) == facts(dns.parse(wire))


# Each hello example checks six inputs under three parsers: a quarter of the profile is plenty.
hello_budget = settings(max_examples=max(100, settings.default.max_examples // 4))


@hello_budget
@given(hellos(), st.integers(1, 300), st.integers(0, 400))
def test_hellos_split_and_cut_parse_the_same(hs, size, cut):
    full = records(hs, size)
    for payload in (full, full[:cut], hs, hs[:cut]):
        assert_same(payload)


_u16s = st.lists(st.integers(0, 0xFFFF), max_size=6).map(lambda v: b"".join(x.to_bytes(2, "big") for x in v))
# Extension bodies, well-formed or a byte off, of every type the parser reads (and others).
_extension = st.one_of(
    st.tuples(st.just(0x0000), st.lists(st.tuples(st.sampled_from([0, 0, 1]), st.binary(max_size=12)),
                                        max_size=3).map(lambda ns: _vec(b"".join(
                                            bytes([t]) + _vec(n, 2) for t, n in ns), 2))),
    st.tuples(st.just(0x0010), st.lists(st.binary(max_size=6), max_size=3).map(
        lambda ps: _vec(b"".join(_vec(p, 1) for p in ps), 2))),
    st.tuples(st.just(0x002B), _u16s.map(lambda v: _vec(v, 1))),
    st.tuples(st.just(0x000D), _u16s.map(lambda v: _vec(v, 2))),
    st.tuples(st.sampled_from([0xFE0D, 0x0A0A, 0x0017, 0xFFFF]), st.binary(max_size=8)),
).flatmap(lambda te: st.tuples(st.just(te[0]), st.sampled_from(
    [te[1], te[1][:-1], te[1] + b"\x00", b""])))


@st.composite
def wild_hellos(draw):
    """ClientHellos whose extensions repeat, come in any order, are empty or a byte off."""
    exts = b"".join(t.to_bytes(2, "big") + _vec(body, 2)
                    for t, body in draw(st.lists(_extension, max_size=8)))
    ciphers = draw(st.sampled_from([b"\x13\x01", b"", b"\x13", b"\x0a\x0a\x13\x01\xc0\x2b"]))
    tail = draw(st.sampled_from([_vec(exts, 2), b"", _vec(exts, 2) + b"\x00"]))
    body = b"\x03\x03" + bytes(32) + _vec(draw(st.binary(max_size=3)), 1) + _vec(ciphers, 2) \
        + _vec(draw(st.sampled_from([b"\x00", b""])), 1) + tail
    return b"\x01" + _vec(body, 3)


@hello_budget
@given(wild_hellos(), st.integers(1, 100))
def test_hellos_with_repeated_and_broken_extensions_parse_the_same(hs, size):
    assert_same(hs)
    assert_same(records(hs, size))


@hello_budget
@given(mutated(hellos()) | mutated(hellos().map(lambda h: records(h, 40))) | st.binary(max_size=80))
def test_mutated_hellos_parse_the_same(b):
    assert_same(b)


def test_every_input_type_is_accepted_alike():
    wire = bytes.fromhex("00078180000100010000000001610000010001c00c000100010000012c00040a000001")
    hello = records(hellos_example(), 30)
    for kind in (bytes, bytearray, memoryview):
        assert facts(dns.parse(kind(wire))) == facts(dns.py_parse(wire))
        assert isinstance(dns.parse(kind(wire)), dns.DnsMessage)
        assert facts(tls.parse_records(kind(hello))) == facts(tls.py_parse_records(hello))
        assert isinstance(tls.parse_records(kind(hello)), tls.ClientHello)


def hellos_example() -> bytes:
    """A ClientHello handshake message with SNI example.com and ALPN h2."""
    exts = b"\x00\x00" + _vec(_vec(b"\x00" + _vec(b"example.com", 2), 2), 2) \
        + b"\x00\x10" + _vec(_vec(_vec(b"h2", 1), 2), 2)
    body = b"\x03\x03" + bytes(32) + _vec(b"", 1) + _vec(b"\x13\x01", 2) + _vec(b"\x00", 1) \
        + _vec(exts, 2)
    return b"\x01" + _vec(body, 3)
