"""Property tests: on noise and on mutated valid input the application decoders' inner
parsers raise nothing but the one decode error and truncation errors (so a real bug, say a
TypeError, fails here), their public functions answer a result or a `Status`, and the DNS
parser agrees with dnspython on every message dnspython itself builds."""
import dns.flags
import dns.message
import dns.name
import dns.rrset
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor import hostnames
from auditor.decode import dns as d
from auditor.decode import http, quic, tls
from auditor.decode.outcome import UNDECODABLE, Status

# ---- generators of valid inputs -----------------------------------------------------------
label = st.binary(min_size=1, max_size=20) | st.from_regex(r"[a-zA-Z0-9-]{1,20}", fullmatch=True)
dname = st.lists(label, min_size=0, max_size=5).map(
    lambda ls: dns.name.Name([x if isinstance(x, bytes) else x.encode() for x in ls] + [b""]))


@st.composite
def rdatas(draw):
    kind = draw(st.sampled_from(["A", "AAAA", "CNAME", "NS", "PTR", "MX", "TXT", "SOA", "SRV",
                                 "CAA", "HINFO", "TYPE4321", "HTTPS", "SVCB"]))
    n = draw(dname).to_text()
    txt = draw(st.lists(st.binary(max_size=30), min_size=1, max_size=3))
    quoted = " ".join('"' + "".join(f"\\{c:03d}" for c in s) + '"' for s in txt)
    text = {
        "A": lambda: ".".join(str(draw(st.integers(0, 255))) for _ in range(4)),
        "AAAA": lambda: ":".join(f"{draw(st.integers(0, 0xFFFF)):x}" for _ in range(8)),
        "MX": lambda: f"{draw(st.integers(0, 65535))} {n}",
        "TXT": lambda: quoted,
        "SOA": lambda: f"{n} {n} 1 2 3 4 {draw(st.integers(0, 2**32 - 1))}",
        "SRV": lambda: f"1 2 {draw(st.integers(0, 65535))} {n}",
        "CAA": lambda: '0 issue "ca.example"',
        "HINFO": lambda: quoted.split(" ")[0] + ' "x"',
        "TYPE4321": lambda: f"\\# 3 {draw(st.binary(min_size=3, max_size=3)).hex()}",
        "HTTPS": lambda: svcb(draw, n), "SVCB": lambda: svcb(draw, n),
    }.get(kind, lambda: n)()
    return kind, text


def svcb(draw, target: str) -> str:
    """SVCB/HTTPS presentation text: ServiceMode with address hints, or AliasMode."""
    if draw(st.booleans()):
        return f"0 {target}"
    v4 = draw(st.lists(st.ip_addresses(v=4).map(str), max_size=3))
    v6 = draw(st.lists(st.ip_addresses(v=6).map(str), max_size=2))
    params = ['alpn="h3,h2"'] + ([f'ipv4hint="{",".join(v4)}"'] if v4 else []) \
        + ([f'ipv6hint="{",".join(v6)}"'] if v6 else [])
    return f"1 {draw(st.sampled_from(['.', target]))} " + " ".join(params)


@st.composite
def dns_wires(draw):
    q = dns.message.make_query(draw(dname), draw(st.sampled_from(["A", "AAAA", "TXT", "MX"])))
    m = dns.message.make_response(q)
    m.id = draw(st.integers(0, 65535))
    if draw(st.booleans()):
        m.flags |= dns.flags.TC
    m.set_rcode(draw(st.sampled_from([0, 2, 3, 5])))
    for _ in range(draw(st.integers(0, 6))):
        kind, text = draw(rdatas())
        m.answer.append(dns.rrset.from_text(draw(dname), draw(st.integers(0, 2**31 - 1)),
                                            "IN", kind, text))
    return m.to_wire()


@st.composite
def mutated(draw, base):
    b = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "extend", "set"]))
        if op == "flip" and b:
            b[draw(st.integers(0, len(b) - 1))] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and b:
            b[draw(st.integers(0, len(b) - 1))] = draw(st.sampled_from([0, 0xC0, 0xFF, 0x3F]))
        elif op == "cut":
            b = b[:draw(st.integers(0, len(b)))]
        else:
            b += draw(st.binary(max_size=20))
    return bytes(b)


def _vec(b: bytes, n: int) -> bytes:
    return len(b).to_bytes(n, "big") + b


@st.composite
def hellos(draw):
    exts = b""
    sni = draw(st.from_regex(r"[a-z0-9.-]{1,40}", fullmatch=True)).encode()
    exts += b"\x00\x00" + _vec(_vec(b"\x00" + _vec(sni, 2), 2), 2)
    alpn = draw(st.lists(st.binary(min_size=1, max_size=10), max_size=3))
    if alpn:
        exts += b"\x00\x10" + _vec(_vec(b"".join(_vec(p, 1) for p in alpn), 2), 2)
    if draw(st.booleans()):
        exts += b"\x00\x2b" + _vec(_vec(b"\x03\x04\x03\x03", 1), 2)
    if draw(st.booleans()):
        exts += b"\xfe\x0d" + _vec(draw(st.binary(max_size=40)), 2)
    body = b"\x03\x03" + bytes(32) + _vec(b"", 1) + _vec(b"\x13\x01", 2) + _vec(b"\x00", 1) \
        + _vec(exts, 2)
    return b"\x01" + _vec(body, 3)


def records(hs: bytes, size: int) -> bytes:
    return b"".join(b"\x16\x03\x01" + _vec(hs[i:i + size], 2) for i in range(0, len(hs), size))


requests = st.builds(
    lambda m, t, h: f"{m} {t} HTTP/1.1\r\nHost: {h}\r\nAccept: */*\r\n\r\n".encode(),
    st.sampled_from(sorted(x.decode() for x in http.METHODS)),
    st.from_regex(r"/[a-z0-9/?=&.]{0,30}", fullmatch=True),
    st.from_regex(r"[a-z0-9.-]{1,30}(:[0-9]{1,5})?", fullmatch=True))


def protect_initial(version: int, dcid: bytes, payload: bytes, pn: int = 0) -> bytes:
    """A client Initial as a sender builds it (RFC 9001 5.3-5.4): the inverse of the decoder."""
    key, iv, hp = quic.client_initial_keys(version, dcid)
    type_bits = 0 if version == quic.V1 else 1
    pn_bytes = pn.to_bytes(2, "big")
    length = len(pn_bytes) + len(payload) + 16
    header = bytes([0xC0 | type_bits << 4 | 1]) + version.to_bytes(4, "big") + _vec(dcid, 1) \
        + _vec(b"\x01\x02", 1) + b"\x00" + (0x4000 | length).to_bytes(2, "big") + pn_bytes
    nonce = (int.from_bytes(iv, "big") ^ pn).to_bytes(12, "big")
    ct = AESGCM(key).encrypt(nonce, payload, header)
    pn_off = len(header) - 2
    sample = ct[4 - 2:4 - 2 + 16]
    mask = Cipher(algorithms.AES(hp), modes.ECB()).encryptor().update(sample)
    out = bytearray(header + ct)
    out[0] ^= mask[0] & 0x0F
    out[pn_off] ^= mask[1]
    out[pn_off + 1] ^= mask[2]
    return bytes(out)


@st.composite
def initials(draw):
    version = draw(st.sampled_from([quic.V1, quic.V2]))
    dcid = draw(st.binary(min_size=8, max_size=20))
    hs = draw(hellos())
    cut = draw(st.integers(0, len(hs)))
    frames = b"\x06\x00" + (0x4000 | cut).to_bytes(2, "big") + hs[:cut] + b"\x01"
    frames += b"\x06" + (0x4000 | cut).to_bytes(2, "big") + (0x4000 | (len(hs) - cut)) \
        .to_bytes(2, "big") + hs[cut:]
    return protect_initial(version, dcid, frames + bytes(draw(st.integers(0, 50))),
                           draw(st.integers(0, 300))), hs


# Building messages with dnspython costs ~30 ms per example: the DNS-generating tests run a tenth
# of the profile's examples so the ci profile stays near two minutes in all.
dns_budget = settings(max_examples=max(50, settings.default.max_examples // 10))

# ---- never raise ----------------------------------------------------------------------------
noise = st.binary(max_size=600)


def only_decode_errors(parse, *args):
    """Call an inner parser: it returns, or raises one of the errors its wrapper catches."""
    try:
        return parse(*args)
    except UNDECODABLE:
        return Status.MALFORMED


@dns_budget
@given(noise | mutated(dns_wires()))
def test_dns_raises_only_decode_errors(b):
    m = only_decode_errors(d._parse, b)
    assert isinstance(m, (d.DnsMessage, Status)) and isinstance(d.parse(b), (d.DnsMessage, Status))
    if isinstance(m, d.DnsMessage):
        d.resolved_chain(m)
    d.split_tcp(b)


@given(noise | mutated(hellos()) | mutated(hellos().map(lambda h: records(h, 50))))
def test_tls_raises_only_decode_errors(b):
    assert isinstance(only_decode_errors(tls._parse_records, b), (tls.ClientHello, Status))
    assert isinstance(tls.parse_records(b), (tls.ClientHello, Status))
    assert isinstance(tls.parse_handshake(b), (tls.ClientHello, Status))


@given(noise | mutated(requests))
def test_http_raises_only_decode_errors(b):
    r = only_decode_errors(http._parse, b)
    assert isinstance(r, (http.HttpRequest, Status))
    if isinstance(r, http.HttpRequest):
        hostnames.http_host(r.host)
        hostnames.http_host(r.target)


@given(noise | mutated(initials().map(lambda x: x[0])), st.none() | st.binary(max_size=21))
def test_quic_raises_only_decode_errors(b, key_dcid):
    assert isinstance(only_decode_errors(quic._parse, b, key_dcid), (quic.QuicInitial, Status))
    assert isinstance(quic.parse_initial(b, key_dcid), (quic.QuicInitial, Status))


@given(st.lists(st.tuples(st.integers(-10, 70_000), st.binary(max_size=300)), max_size=40))
def test_assembler_never_raises_and_is_prefix_consistent(pieces):
    a = quic.CryptoAssembler()
    for off, data in pieces:
        a.add(off, data)
    out = a.contiguous()
    assert len(out) <= quic.MAX_CRYPTO
    for off, data in pieces:                   # first copy wins; an exact replay agrees
        if 0 <= off and off + len(data) <= len(out) and all(
                o2 >= off + len(data) or o2 + len(d2) <= off or (o2, d2) == (off, data)
                for o2, d2 in pieces):
            assert out[off:off + len(data)] == data


class _SortingAssembler(quic.CryptoAssembler):
    """The assembler as it was: every pending offset sorted again at each drain."""

    def _drain(self) -> None:
        progressed = True
        while progressed and self._pending:
            progressed = False
            have = len(self._data)
            for off in sorted(self._pending):
                if off > have:
                    break
                piece = self._pending.pop(off)
                if off + len(piece) > have:
                    self._data += piece[have - off:]
                    have = len(self._data)
                progressed = True


# Pieces anywhere, or on a 4-byte grid so that they often start exactly where others end.
_pieces = st.tuples(st.integers(0, 120), st.binary(min_size=1, max_size=24)) | st.builds(
    lambda k, m, v: (4 * k, bytes([v]) * 4 * m), st.integers(0, 30), st.integers(1, 6),
    st.integers(0, 255))


@st.composite
def _cut_stream(draw):
    """A stream cut into consecutive pieces (each starts where one ends), shuffled, some
    repeated: the shape of a real Initial's CRYPTO frames sent out of order."""
    sizes = draw(st.lists(st.integers(1, 12), min_size=1, max_size=20))
    data = draw(st.binary(min_size=sum(sizes), max_size=sum(sizes)))
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    pieces = [(o, data[o:o + n]) for o, n in zip(starts, sizes)]
    pieces += draw(st.lists(st.sampled_from(pieces), max_size=4))
    return draw(st.permutations(pieces))


@given(_cut_stream() | st.lists(_pieces, max_size=80),
       st.sampled_from([8, 64, 100, quic.MAX_CRYPTO]), st.sampled_from([2, 8, 512]))
def test_assembler_drains_as_the_sorting_one_did(pieces, cap, max_pending):
    """Out of order, overlapping, repeated, over the cap, past the pending limit: after every
    piece the heap-draining assembler holds what re-sorting every pending offset gave."""
    ours, ref = quic.CryptoAssembler(cap), _SortingAssembler(cap)
    ours.MAX_PENDING = ref.MAX_PENDING = max_pending
    for off, data in pieces:
        ours.add(off, data)
        ref.add(off, data)
        assert (ours.contiguous(), ours.overflow, ours._pending) == (ref.contiguous(), ref.overflow, ref._pending)
        assert sorted(ours._offsets) == sorted(ours._pending)


# ---- round trips and differential ---------------------------------------------------------
@dns_budget
@given(dns_wires())
def test_dns_agrees_with_dnspython(wire):
    ref = dns.message.from_wire(wire, one_rr_per_rrset=True)
    ours = d.parse(wire)
    assert isinstance(ours, d.DnsMessage) and ours.id == ref.id and ours.rcode == ref.rcode()
    assert ours.questions == [(q.name.to_text(True), q.rdtype) for q in ref.question]
    theirs = []
    for rr in ref.answer:
        for rd in rr:
            text = rd.to_text()
            if rd.rdtype in (2, 5, 12, 15, 6, 33):  # ours drops names' trailing dots
                text = " ".join(w[:-1] if w.endswith(".") and w != "." else w
                                for w in text.split(" "))
            theirs.append((rr.name.to_text(True), rr.rdtype, rr.ttl, text))
    assert [tuple(a) for a in ours.answers] == theirs
    hints = [(rr.name.to_text(True), ip.address if hasattr(ip, "address") else str(ip), rr.ttl)
             for rr in ref.answer if rr.rdtype in (64, 65) for rd in rr if rd.priority
             for key in (4, 6) if key in rd.params for ip in rd.params[key].addresses]
    assert ours.hints == hints


@given(hellos(), st.integers(1, 300))
def test_tls_any_record_split_and_every_prefix(hs, size):
    full = records(hs, size)
    hello = tls.parse_records(full)
    assert isinstance(hello, tls.ClientHello) and hello.sni
    assert tls.parse_handshake(hs).sni == hello.sni
    for cut in (0, 1, 5, len(full) // 2, len(full) - 1):
        assert tls.parse_records(full[:cut]) == tls.NEED_MORE


@given(requests)
def test_http_round_trip(raw):
    r = http.parse_request(raw)
    assert raw.split(b"\r\n")[1] == b"Host: " + r.host.encode()
    assert http.parse_request(raw[:-1]) == http.NEED_MORE


@given(initials())
def test_quic_round_trip(x):
    datagram, hs = x
    r = quic.parse_initial(datagram)
    a = quic.CryptoAssembler()
    for off, data in r.crypto:
        a.add(off, data)
    assert a.contiguous() == hs
