"""TLS ClientHello decoder: SNI, ALPN, ECH presence and versions from a client's first bytes.

Owns the record layer (reassembling one handshake message carried by several records) and
the ClientHello body. Pure; answers with a `ClientHello` or a `Status` (see `outcome.py`)
so the tracker can tell "wait for more bytes" from "not TLS" from "lying lengths".
With Encrypted Client Hello (extension 0xfe0d) the SNI read here is the outer, public one:
the only name on the wire, and the one a firewall sees too.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from auditor import core
from auditor.decode.outcome import MALFORMED, NEED_MORE, NOT_THIS, UNDECODABLE, DecodeError, Status
from auditor.decode.text import wire_text as _text

MAX_HELLO = 64 * 1024        # larger handshake messages are not a real ClientHello
MAX_RECORD = (1 << 14) + 2048  # RFC 8446 5.2 ceiling on a record's length

_EXT_SNI = 0x0000
_EXT_ALPN = 0x0010
_EXT_SUPPORTED_VERSIONS = 0x002B
_EXT_ECH = 0xFE0D
_EXT_SIGNATURE_ALGORITHMS = 0x000D


@dataclass(slots=True, repr=False)
class ClientHello:
    """What the auditor needs from a ClientHello."""
    sni: str | None
    alpn: tuple[str, ...]
    ech: bool
    version: int
    supported_versions: tuple[int, ...]
    # For the JA4 fingerprint (`ja4.py`): wire order, duplicates and GREASE included.
    ciphers: tuple[int, ...] = ()
    extensions: tuple[int, ...] = ()
    signature_algorithms: tuple[int, ...] = ()
    alpn_first: bytes = b""      # the first ALPN protocol as raw bytes

    def __repr__(self) -> str:
        return (f"ClientHello(sni={self.sni!r}, alpn={self.alpn!r}, ech={self.ech}, "
                f"version=0x{self.version:04x}, supported_versions="
                f"{tuple(hex(v) for v in self.supported_versions)})")


def parse_records(buf: bytes) -> ClientHello | Status:
    """Parse a client's first TCP bytes: TLS records carrying one ClientHello."""
    try:
        return _parse_records(bytes(buf))
    except UNDECODABLE:
        return MALFORMED


def _parse_records(buf: bytes) -> ClientHello | Status:
    n = len(buf)
    if n == 0:
        return NEED_MORE
    if buf[0] != 0x16:
        return NOT_THIS
    # Record versions seen in ClientHellos: 0x0300 (SSL 3 compatible) to 0x0304.
    if n >= 2 and buf[1] != 0x03:
        return NOT_THIS
    if n >= 3 and buf[2] > 0x04:
        return NOT_THIS
    frags: list[bytes] = []   # joined once at the end: += would be quadratic
    have = 0
    off = 0
    need = -1  # full handshake message length once its 4-byte header is in
    while True:
        if off + 5 > n:
            return NEED_MORE
        if buf[off] != 0x16:
            return MALFORMED  # e.g. an alert or application data before the hello ended
        if buf[off + 1] != 0x03 or buf[off + 2] > 0x04:
            return NOT_THIS if off == 0 else MALFORMED
        rlen = (buf[off + 3] << 8) | buf[off + 4]
        if rlen == 0 or rlen > MAX_RECORD:
            return MALFORMED  # RFC 8446 5.1: no zero-length handshake fragments
        frag = buf[off + 5:off + 5 + rlen]
        frags.append(frag)
        have += len(frag)
        if need < 0 and have >= 4:
            hs = b"".join(frags)
            if hs[0] != 1:
                return MALFORMED  # a handshake, but not a ClientHello, opening a stream
            need = 4 + ((hs[1] << 16) | (hs[2] << 8) | hs[3])
            if need > MAX_HELLO:
                return MALFORMED
        if need >= 0 and have >= need:
            return _hello_body(b"".join(frags), need)
        if len(frag) < rlen:
            return NEED_MORE
        off += 5 + rlen


class RecordWalk:
    """How far a client's records have been walked, kept between its segments so that a
    longer prefix goes to `parse_records` again only when the parse could end otherwise than
    NEED_MORE: a hello cut into thousands of one-byte records (a 6-byte record per segment)
    was read again from its first byte at every segment, 850 us a segment at 62 kB.

    `undecided(buf)` is True only when `parse_records(buf[base:])` is sure to answer NEED_MORE:
    every record from where the last walk stopped is a well-formed handshake record, the
    handshake header (once in) opens a ClientHello of an allowed length, and the bytes in are
    fewer than it announces. Anything else, and any prefix shorter than a record header, is
    left to the parser. `buf` only ever grows at its end (a stream prefix)."""
    __slots__ = ("base", "off", "have", "head", "need")

    def __init__(self, base: int = 0) -> None:
        self.base = base
        self.off = base      # the first record not yet walked to its end
        self.have = 0        # handshake bytes in the records before it
        self.head = b""      # the handshake header's first bytes (up to 4)
        self.need = -1       # the whole handshake message's length, once its header is in

    def undecided(self, buf: bytes | bytearray) -> bool:
        n = len(buf)
        if n < self.base + 5:
            return False
        off = self.off
        while off + 5 <= n:
            if buf[off] != 0x16 or buf[off + 1] != 0x03 or buf[off + 2] > 0x04:
                return False
            rlen = (buf[off + 3] << 8) | buf[off + 4]
            if rlen == 0 or rlen > MAX_RECORD:
                return False
            got = min(rlen, n - off - 5)
            head, need = self.head, self.need
            if need < 0:
                head += bytes(buf[off + 5:off + 5 + min(got, 4 - len(head))])
                if len(head) == 4:
                    if head[0] != 1:
                        return False
                    need = 4 + ((head[1] << 16) | (head[2] << 8) | head[3])
                    if need > MAX_HELLO:
                        return False
            have = self.have + got
            if need >= 0 and have >= need:
                return False
            if got < rlen:
                return True          # inside a record: the parser waits for it too
            off += 5 + rlen
            self.off, self.have, self.head, self.need = off, have, head, need
        return True


def parse_handshake(buf: bytes) -> ClientHello | Status:
    """Parse raw handshake bytes (no record layer), e.g. reassembled QUIC CRYPTO data."""
    buf = bytes(buf)
    try:
        if len(buf) < 4:
            return NEED_MORE if (not buf or buf[0] == 1) else MALFORMED
        if buf[0] != 1:
            return MALFORMED
        need = 4 + ((buf[1] << 16) | (buf[2] << 8) | buf[3])
        if need > MAX_HELLO:
            return MALFORMED
        if len(buf) < need:
            return NEED_MORE
        return _hello_body(buf, need)
    except UNDECODABLE:
        return MALFORMED


def _vec(buf: bytes, off: int, size: int, end: int) -> tuple[int, int]:
    """A length-prefixed vector at off: return (start, stop) of its contents."""
    if off + size > end:
        raise DecodeError
    ln = int.from_bytes(buf[off:off + size], "big")
    stop = off + size + ln
    if stop > end:
        raise DecodeError
    return off + size, stop


def _hello_body(hs: bytes, end: int) -> ClientHello:
    """Decode the ClientHello body in hs[4:end]; lengths must nest exactly."""
    off = 4
    if off + 34 > end:
        raise DecodeError
    version = (hs[off] << 8) | hs[off + 1]
    off += 34                                   # legacy_version + random
    _, off = _vec(hs, off, 1, end)              # legacy_session_id
    s, off = _vec(hs, off, 2, end)              # cipher_suites
    if off == s or (off - s) & 1:
        raise DecodeError
    ciphers = tuple((hs[i] << 8) | hs[i + 1] for i in range(s, off, 2))
    s, off = _vec(hs, off, 1, end)              # legacy_compression_methods
    if off == s:
        raise DecodeError
    sni = None
    alpn: tuple[str, ...] = ()
    ech = False
    versions: tuple[int, ...] = ()
    sigalgs: tuple[int, ...] = ()
    alpn_first = b""
    extensions: list[int] = []
    seen: set[int] = set()
    if off < end:                               # extensions are optional before TLS 1.3
        s, stop = _vec(hs, off, 2, end)
        if stop != end:
            raise DecodeError
        off = s
        while off < stop:
            if off + 4 > stop:
                raise DecodeError
            etype = (hs[off] << 8) | hs[off + 1]
            es, ee = _vec(hs, off + 2, 2, stop)
            off = ee
            extensions.append(etype)
            if etype in seen:
                continue                        # duplicates: the first one counts
            seen.add(etype)
            if etype == _EXT_SNI:
                sni = _sni(hs, es, ee)
            elif etype == _EXT_ALPN:
                alpn = _alpn(hs, es, ee)
                if ee - es > 3 and hs[es + 2]:
                    alpn_first = hs[es + 3:es + 3 + hs[es + 2]]
            elif etype == _EXT_SIGNATURE_ALGORITHMS:
                vs, ve = _vec(hs, es, 2, ee)
                if ve != ee or (ve - vs) & 1:
                    raise DecodeError
                sigalgs = tuple((hs[i] << 8) | hs[i + 1] for i in range(vs, ve, 2))
            elif etype == _EXT_SUPPORTED_VERSIONS:
                vs, ve = _vec(hs, es, 1, ee)
                if ve != ee or (ve - vs) & 1:
                    raise DecodeError
                versions = tuple((hs[i] << 8) | hs[i + 1] for i in range(vs, ve, 2))
            elif etype == _EXT_ECH:
                ech = True
    return ClientHello(sni, alpn, ech, version, versions, ciphers, tuple(extensions), sigalgs,
                       alpn_first)


def _sni(hs: bytes, start: int, end: int) -> str | None:
    if start == end:
        return None                             # empty SNI ext (a server's echo, RFC 6066)
    s, stop = _vec(hs, start, 2, end)
    if stop != end:
        raise DecodeError
    off = s
    while off < stop:
        if off + 3 > stop:
            raise DecodeError
        ntype = hs[off]
        ns, ne = _vec(hs, off + 1, 2, stop)
        off = ne
        if ntype == 0 and ne > ns:
            return _text(hs[ns:ne])
    return None


def _alpn(hs: bytes, start: int, end: int) -> tuple[str, ...]:
    s, stop = _vec(hs, start, 2, end)
    if stop != end:
        raise DecodeError
    out = []
    off = s
    while off < stop:
        ps, pe = _vec(hs, off, 1, stop)
        out.append(_text(hs[ps:pe]))
        off = pe
    return tuple(out)


# The compiled twin (`ctls.pyx`) replaces both parsers when it was built; the `py_` names stay
# the reference it is tested against. The twin is handed this module's class (`bind`).
py_parse_records, py_parse_handshake = parse_records, parse_handshake
if not TYPE_CHECKING:
    _compiled = core.compiled("decode.ctls")
    if _compiled is not None:
        _compiled.bind(sys.modules[__name__])
        parse_records, parse_handshake = _compiled.parse_records, _compiled.parse_handshake
