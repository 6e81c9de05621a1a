"""DNS wire decoder for the hot path: header, questions and the answer section.

Owns turning one untrusted DNS payload into a `DnsMessage` (and a TCP byte stream into
payloads). It is pure; `parse` answers a `DnsMessage` or `Status.MALFORMED`.
`dns.message.from_wire` costs ~100 us per response, too slow for line rate, so the common
rdata types (A, AAAA, CNAME, NS, PTR, DNAME, MX, TXT,
SOA, SRV) are decoded here with `struct`; any other type hands only that RR to dnspython for
its text form, falling back to the RFC 3597 generic form (`\\# len hex`).

Decisions (documented because the tracker and detectors rely on them):
- Names are text without the trailing dot (root is "."), case as on the wire, escaped
  exactly as dnspython escapes (`\\.`, `\\DDD`), so they compare equal to dnspython's.
- Name decompression follows dnspython's rules for backward pointers (strictly before the
  previous pointer target; a followed target may not run into the part of the name already
  read), at most 16 pointer hops, at most 255 bytes on the wire (so at most 127 labels),
  label types 0x40/0x80 rejected. Unlike dnspython, a *forward* pointer (to a later offset of
  the message) is followed, as tshark and real resolvers do; one that revisits a segment
  (a loop) or points past the message is malformed.
- HTTPS/SVCB answers: besides their text, the `ipv4hint`/`ipv6hint` addresses are kept
  (`hints`) and join the addresses that name flows, after the A/AAAA records.
- Authority and additional sections are not read: they never name a flow, and stopping
  early is both faster and more tolerant than dnspython (which rejects a whole message for
  a bad OPT record in the additional section).
- A header or question that does not parse -> MALFORMED. An answer RR that runs past the end
  of the payload -> MALFORMED, unless the TC bit is set: then the answers that parsed completely are
  kept (tshark also shows them; a truncated UDP answer is still an answer the client may
  use). An RR whose rdata does not fit its type (an A with rdlen 5) is kept with the generic
  text form rather than discarding the whole message.
- `rcode` is the 4-bit header rcode (EDNS extended rcode bits live in the OPT record of the
  additional section, which is not read).
"""
from __future__ import annotations

import socket
import struct
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple

from auditor import core
from auditor.decode.outcome import MALFORMED, UNDECODABLE, DecodeError, Status

_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_U16 = struct.Struct("!H")
_SOA_NUMS = struct.Struct("!IIIII")
_SRV_NUMS = struct.Struct("!HHH")

MAX_HOPS = 16        # dnspython's MAX_COMPRESSION_POINTER_CHAIN
MAX_NAME_WIRE = 255  # RFC 1035 3.1, counting the root byte
MAX_CHAIN = 16       # resolved_chain: CNAME hops followed

# Label bytes that dnspython prints as themselves; everything else is escaped.
_SAFE = bytes(c for c in range(0x21, 0x7F) if c not in b'"().;\\@$')
_LABEL_ESC = [("\\" + chr(c)) if c in b'"().;\\@$' else chr(c) if 0x20 < c < 0x7F
              else f"\\{c:03d}" for c in range(256)]
_TXT_ESC = [("\\" + chr(c)) if c in b'"\\' else chr(c) if 0x20 <= c < 0x7F
            else f"\\{c:03d}" for c in range(256)]
_TXT_SAFE = bytes(c for c in range(0x20, 0x7F) if c not in b'"\\')


class DnsRecord(NamedTuple):
    """One answer RR as text. A NamedTuple: immutable, slotted, and cheap to build."""
    name: str
    rtype: int
    ttl: int
    data: str


@dataclass(slots=True, eq=False)
class DnsMessage:
    """The parts of a DNS message the auditor uses (answer section only)."""
    id: int
    is_response: bool
    opcode: int
    rcode: int
    truncated: bool
    questions: list[tuple[str, int]]
    answers: list[DnsRecord]
    raw_len: int = field(repr=False)
    # (owner, address, ttl) from the ipv4hint/ipv6hint of HTTPS/SVCB answers (RFC 9460):
    # browsers connect to them without an A/AAAA lookup, so they name flows too.
    hints: list[tuple[str, str, int]] = field(default_factory=list)


def _name(buf: bytes, off: int, end: int, memo: dict) -> tuple[str, int]:
    """Read a possibly compressed name at `off`; return (text, offset after the name).

    Works a segment (a run of labels up to a pointer or the root) at a time: one slice, the
    length bytes overwritten with dots, one safety check, one decode. `memo` maps a label
    offset to the suffix decoded there before, with what is needed to re-check dnspython's
    limits (wire length, hops, end of its first segment), so `c0 0c` costs a dict lookup.
    """
    n = buf[off] if off < end else 0
    if n >= 192 and off + 2 <= end:
        # Fast path: the whole name is one pointer to a suffix decoded before.
        ptr = ((n & 0x3F) << 8) | buf[off + 1]
        m = memo.get(ptr)
        if m is not None and ptr < off and m[3] <= off and m[2] < MAX_HOPS:
            return m[0], off + 2
    texts: list[str] = []
    segs: list[tuple] = []  # (start, label starts or None, text index, wire, hops, end)
    total = 0               # wire bytes of the labels so far (root byte not counted)
    hops = 0
    biggest = off           # pointers must point strictly below this (no loops)
    limit = end             # reads must stay below this (dnspython's restrict_end)
    after = -1              # offset just after the name in its original position
    visited = [off]         # where each segment started (forward pointers may not revisit)
    while True:
        p = off
        found: list[int] = []
        while True:
            if p >= limit:
                raise DecodeError
            n = buf[p]
            if n == 0 or n >= 64:
                break
            found.append(p)
            p += n + 1
        starts: list[int] | None = found
        before = total
        ti = len(texts)
        total += p - off
        if total >= MAX_NAME_WIRE:
            raise DecodeError
        if starts:
            raw = bytearray(buf[off + 1:p])
            for q in starts[1:]:
                raw[q - off - 1] = 0x2E
            # Every byte outside _SAFE must be one of the dots just written; otherwise some
            # label needs dnspython's escaping (and the char offsets no longer match bytes).
            if raw.translate(None, _SAFE) == b"." * (len(starts) - 1):
                texts.append(raw.decode("ascii"))
            else:
                texts.append(".".join([
                    "".join([_LABEL_ESC[c] for c in buf[q + 1:q + 1 + buf[q]]])
                    for q in starts]))
                starts = None
        if n == 0:
            seg_end = p + 1
            if after < 0:
                after = seg_end
            if ti < len(texts):
                segs.append((off, starts, ti, before, hops, seg_end))
            break
        if n < 192 or p + 2 > limit:
            raise DecodeError  # 0x40/0x80 label types, or a pointer cut short
        ptr = ((n & 0x3F) << 8) | buf[p + 1]
        hops += 1
        if hops > MAX_HOPS:
            raise DecodeError
        if ptr < biggest:
            next_limit = off        # dnspython's rule: the target may not run into this name
        elif ptr < end and ptr not in visited:
            # A forward pointer: dnspython refuses it, tshark and resolvers follow it. A
            # target already visited is a loop; the hop cap and the 255-byte cap bound the rest.
            next_limit = end
        else:
            raise DecodeError       # a self pointer, a loop, or a pointer past the message
        visited.append(ptr)
        seg_end = p + 2
        if after < 0:
            after = seg_end
        if ti < len(texts):
            segs.append((off, starts, ti, before, hops - 1, seg_end))
        biggest = ptr
        limit = next_limit
        off = ptr
        m = memo.get(ptr)
        if m is not None and m[3] <= limit and total + m[1] < MAX_NAME_WIRE \
                and hops + m[2] <= MAX_HOPS:
            texts.append(m[0])
            total += m[1]
            hops += m[2]
            break
    text = ".".join(texts) if len(texts) > 1 else texts[0] if texts else "."
    for s, starts, ti, before, h, seg_end in segs:
        if starts is None:
            if s not in memo:
                memo[s] = (".".join(texts[ti:]), total - before, hops - h, seg_end)
            continue
        suffix = ".".join(texts[ti:]) if ti else text
        for q in starts:
            if q not in memo:
                memo[q] = (suffix[q - s:], total - before - (q - s), hops - h, seg_end)
    return text, after


def _rdata_text(buf: bytes, off: int, end: int, rtype: int, rclass: int, memo: dict) -> str:
    """Text form of one RR's rdata; the common types here, the rest via dnspython."""
    rdlen = end - off
    try:
        if rtype == 1 and rclass == 1 and rdlen == 4:
            return socket.inet_ntop(socket.AF_INET, buf[off:end])
        if rtype == 28 and rclass == 1 and rdlen == 16:
            return socket.inet_ntop(socket.AF_INET6, buf[off:end])
        if rtype == 5 or rtype == 2 or rtype == 12 or rtype == 39:
            text, p = _name(buf, off, end, memo)
            if p == end:
                return text
        elif rtype == 15 and rdlen >= 3:
            text, p = _name(buf, off + 2, end, memo)
            if p == end:
                return f"{_U16.unpack_from(buf, off)[0]} {text}"
        elif rtype == 16 and rdlen > 0:
            out = []
            p = off
            while p < end:
                e = p + 1 + buf[p]
                if e > end:
                    raise DecodeError
                s = buf[p + 1:e]
                out.append('"' + ("".join([_TXT_ESC[c] for c in s])
                                  if s.translate(None, _TXT_SAFE) else s.decode("ascii")) + '"')
                p = e
            return " ".join(out)
        elif rtype == 6:
            mname, p = _name(buf, off, end, memo)
            rname, p = _name(buf, p, end, memo)
            if p + 20 == end:
                return "%s %s %d %d %d %d %d" % ((mname, rname) + _SOA_NUMS.unpack_from(buf, p))
        elif rtype == 33 and rclass == 1 and rdlen >= 7:
            target, p = _name(buf, off + 6, end, memo)
            if p == end:
                return "%d %d %d %s" % (_SRV_NUMS.unpack_from(buf, off) + (target,))
    except DecodeError:
        pass
    return _slow_text(buf, off, rdlen, rtype, rclass)


def _slow_text(buf: bytes, off: int, rdlen: int, rtype: int, rclass: int) -> str:
    """dnspython's text for this RR's rdata; RFC 3597 generic form if it cannot parse it."""
    import dns.rdata  # imported lazily: only uncommon types reach this

    try:
        return dns.rdata.from_wire(rclass, rtype, buf, off, rdlen).to_text()  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - dnspython's boundary: any error of its means "generic form"
        data = bytes(buf[off:off + rdlen])
        return f"\\# {rdlen} {data.hex()}" if data else "\\# 0"


def parse(payload: bytes) -> DnsMessage | Status:
    """Decode one DNS message (UDP payload, or a TCP message without its length prefix)."""
    try:
        return _parse(payload)
    except UNDECODABLE:
        return MALFORMED


def _parse(buf: bytes) -> DnsMessage | Status:
    n = len(buf)
    if n < 12:
        return MALFORMED
    ident, flags, qd, an, _ns, _ar = _HEADER.unpack_from(buf, 0)
    truncated = bool(flags & 0x0200)
    memo: dict = {}
    off = 12
    questions = []
    try:
        for _ in range(qd):
            qname, off = _name(buf, off, n, memo)
            if off + 4 > n:
                return MALFORMED
            questions.append((qname, _U16.unpack_from(buf, off)[0]))
            off += 4
    except DecodeError:
        return MALFORMED
    answers = []
    hints: list[tuple[str, str, int]] = []
    try:
        for _ in range(an):
            rname, off = _name(buf, off, n, memo)
            if off + 10 > n:
                raise DecodeError
            rtype, rclass, ttl, rdlen = _RR.unpack_from(buf, off)
            off += 10
            end = off + rdlen
            if end > n:
                raise DecodeError
            answers.append(DnsRecord(rname, rtype, ttl, _rdata_text(buf, off, end, rtype,
                                                                    rclass, memo)))
            if (rtype == 64 or rtype == 65) and rclass == 1:
                hints.extend((rname, ip, ttl) for ip in _svcb_hints(buf, off, end, memo))
            off = end
    except DecodeError:
        if not truncated:
            return MALFORMED
    return DnsMessage(ident, bool(flags & 0x8000), (flags >> 11) & 0xF, flags & 0xF,
                      truncated, questions, answers, n, hints)


_SVC_IPV4HINT, _SVC_IPV6HINT = 4, 6


def _svcb_hints(buf: bytes, off: int, end: int, memo: dict) -> list[str]:
    """Addresses of the ipv4hint/ipv6hint SvcParams of one SVCB/HTTPS rdata (RFC 9460
    section 2.2: priority, target name, then key/length/value). AliasMode (priority 0) has
    no hints; a malformed rdata gives none (its text form is dnspython's business)."""
    if end - off < 3 or _U16.unpack_from(buf, off)[0] == 0:
        return []
    try:
        _target, p = _name(buf, off + 2, end, memo)
    except DecodeError:
        return []
    out: list[str] = []
    while p + 4 <= end:
        key, length = _U16.unpack_from(buf, p)[0], _U16.unpack_from(buf, p + 2)[0]
        p += 4
        if p + length > end:
            return out
        if key == _SVC_IPV4HINT and length % 4 == 0:
            out += [socket.inet_ntop(socket.AF_INET, buf[q:q + 4]) for q in range(p, p + length, 4)]
        elif key == _SVC_IPV6HINT and length % 16 == 0:
            out += [socket.inet_ntop(socket.AF_INET6, buf[q:q + 16])
                    for q in range(p, p + length, 16)]
        p += length
    return out


def split_tcp(buf: bytes) -> tuple[list[bytes], int]:
    """Split a DNS-over-TCP byte stream into whole messages; return them and bytes used.

    The caller keeps `buf[used:]` and prepends it to the next segment. Zero-length
    messages are consumed and dropped (they cannot be DNS).
    """
    out: list[bytes] = []
    off = 0
    n = len(buf)
    while off + 2 <= n:
        ln = (buf[off] << 8) | buf[off + 1]
        if off + 2 + ln > n:
            break
        if ln:
            out.append(bytes(buf[off + 2:off + 2 + ln]))
        off += 2 + ln
    return out, off


def resolved_chain(msg: DnsMessage) -> dict[str, tuple[str, ...]]:
    """Map each A/AAAA address (and HTTPS/SVCB address hint) of a response to (queried
    name, CNAME targets..., owner).

    CNAMEs are followed from the first question's name, case-insensitively, at most
    MAX_CHAIN hops, stopping at a loop. Addresses whose owner is not on that chain are left
    out: an answer nobody asked for must not name a flow (cache-poisoning shape).
    """
    if not msg.is_response or not msg.questions:
        return {}
    chain = [msg.questions[0][0]]
    pos = {chain[0].lower(): 0}
    cnames: dict[str, str] = {}
    for r in msg.answers:
        if r.rtype == 5:
            cnames.setdefault(r.name.lower(), r.data)
    cur = chain[0].lower()
    while cur in cnames and len(chain) < MAX_CHAIN:
        target = cnames[cur]
        cur = target.lower()
        if cur in pos:
            break
        pos[cur] = len(chain)
        chain.append(target)
    out: dict[str, tuple[str, ...]] = {}
    for r in msg.answers:
        if (r.rtype == 1 or r.rtype == 28) and not r.data.startswith("\\"):
            i = pos.get(r.name.lower())
            if i is not None and r.data not in out:
                out[r.data] = tuple(chain[:i + 1])
    for owner, ip, _ttl in msg.hints:       # after A/AAAA: a real address record wins
        i = pos.get(owner.lower())
        if i is not None and ip not in out:
            out[ip] = tuple(chain[:i + 1])
    return out


@lru_cache(maxsize=4096)      # the types in use; a flood of made-up ones cycles it
def type_name(rtype: int) -> str:
    """dnspython's mnemonic for an RR type ("A", "HTTPS"), "TYPEnnn" when it has none."""
    import dns.rdatatype
    try:
        return dns.rdatatype.to_text(rtype)  # type: ignore[arg-type]
    except ValueError:   # out of the 16-bit range
        return f"TYPE{rtype}"


@lru_cache(maxsize=4096)      # a message's rcode is 12 bits: every value fits
def rcode_name(rcode: int) -> str:
    """dnspython's mnemonic for an rcode ("NXDOMAIN"); "RCODEnn" for unassigned values."""
    import dns.rcode
    try:
        name = dns.rcode.to_text(rcode)  # type: ignore[arg-type]
    except ValueError:   # out of the 12-bit range
        return f"RCODE{rcode}"
    return f"RCODE{rcode}" if name.isdigit() else name


# The compiled twin (`cdns.pyx`) replaces `parse` when it was built; `py_parse` stays the
# reference it is tested against. The twin is handed this module's classes (`bind`).
py_parse = parse
if not TYPE_CHECKING:
    _compiled = core.compiled("decode.cdns")
    if _compiled is not None:
        _compiled.bind(sys.modules[__name__])
        parse = _compiled.parse
