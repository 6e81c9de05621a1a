# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# cython: cdivision=True, embedsignature=True
"""The compiled twin of `dns.parse`: one DNS payload into the same `DnsMessage`, for every
payload (tests/test_twins.py compares the two on every DNS payload of the test captures and on
hypothesis-written messages). `dns.py` is the reference and holds the decisions (pointer
rules, escaping, what truncation keeps); this file follows it with bounds checked on a C
pointer.

Only the parts every response has are here: header, questions, owner names, and the rdata of
A, AAAA and the name-only types (CNAME, NS, PTR, DNAME). Every other rdata type, and the
SVCB/HTTPS address hints, go to the pure code's own functions, so their text cannot drift.
The pure code memoises name suffixes (a speed trick that never changes a result); here each
name is decoded in full, which is cheaper in C than the memo.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeASCII

from auditor.decode.outcome import MALFORMED

cdef object _MALFORMED = MALFORMED
# The pure module's classes and helpers, handed over by `dns.py` itself (`bind`): importing
# it from here would be circular, whichever of the two is imported first.
cdef object _DnsMessage = None, _DnsRecord = None, _rdata_text = None, _svcb_hints = None


def bind(pure):
    """Take the result classes and the rdata helpers from `auditor.decode.dns`."""
    global _DnsMessage, _DnsRecord, _rdata_text, _svcb_hints
    _DnsMessage, _DnsRecord = pure.DnsMessage, pure.DnsRecord
    _rdata_text, _svcb_hints = pure._rdata_text, pure._svcb_hints

cdef extern from "arpa/inet.h":
    const char *inet_ntop(int af, const void *src, char *dst, unsigned int size)

cdef extern from "sys/socket.h":
    int AF_INET
    int AF_INET6

cdef enum:
    MAX_HOPS = 16        # as dns.MAX_HOPS
    MAX_NAME_WIRE = 255  # as dns.MAX_NAME_WIRE
    # A name's text: at most 254 label bytes, each at most 4 characters (\DDD), plus dots.
    TEXT_MAX = 1100

# 0: print the byte as itself; 1: backslash before it; 2: \DDD (dnspython's escaping).
cdef unsigned char _esc[256]
for _c in range(256):
    _esc[_c] = 1 if _c in b'"().;\\@$' else 0 if 0x20 < _c < 0x7F else 2


cdef Py_ssize_t _name(const unsigned char *buf, Py_ssize_t off, Py_ssize_t end,
                      list out) except -2:
    """Decode the name at `off`, append its text to `out`; return the offset after it, or -1
    when it is malformed (the pure code's DecodeError)."""
    cdef char text[TEXT_MAX]
    cdef Py_ssize_t tlen = 0, total = 0, hops = 0, biggest = off, limit = end, after = -1
    cdef Py_ssize_t p, q, ptr, next_limit, nvis = 1, i
    cdef Py_ssize_t visited[MAX_HOPS + 1]
    cdef unsigned int n, c
    cdef bint seen
    visited[0] = off
    while True:
        p = off
        while True:
            if p >= limit:
                return -1
            n = buf[p]
            if n == 0 or n >= 64:
                break
            p += n + 1
        total += p - off
        if total >= MAX_NAME_WIRE:
            return -1
        # The labels of this segment, now known to lie below `limit`.
        q = off
        while q < p:
            n = buf[q]
            if tlen:
                text[tlen] = 46   # '.'
                tlen += 1
            for i in range(q + 1, q + 1 + n):
                c = buf[i]
                if _esc[c] == 0:
                    text[tlen] = c
                    tlen += 1
                elif _esc[c] == 1:
                    text[tlen] = 92
                    text[tlen + 1] = c
                    tlen += 2
                else:
                    text[tlen] = 92
                    text[tlen + 1] = 48 + c // 100
                    text[tlen + 2] = 48 + (c // 10) % 10
                    text[tlen + 3] = 48 + c % 10
                    tlen += 4
            q += n + 1
        n = buf[p]
        if n == 0:
            if after < 0:
                after = p + 1
            break
        if n < 192 or p + 2 > limit:
            return -1
        ptr = ((n & 0x3F) << 8) | buf[p + 1]
        hops += 1
        if hops > MAX_HOPS:
            return -1
        if ptr < biggest:
            next_limit = off
        else:
            seen = False
            for i in range(nvis):
                if visited[i] == ptr:
                    seen = True
                    break
            if ptr < end and not seen:
                next_limit = end
            else:
                return -1
        visited[nvis] = ptr
        nvis += 1
        if after < 0:
            after = p + 2
        biggest = ptr
        limit = next_limit
        off = ptr
    if tlen == 0:
        out.append(".")
    else:
        out.append(PyUnicode_DecodeASCII(text, tlen, NULL))
    return after


cdef object _address(int af, const unsigned char *src):
    cdef char text[64]
    inet_ntop(af, src, text, 64)
    return text.decode("ascii")


def parse(payload):
    """Decode one DNS message, exactly as `dns.parse` does."""
    cdef bytes data = payload if type(payload) is bytes else bytes(payload)
    cdef const unsigned char *buf = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data), off = 12, end
    cdef unsigned int flags, qd, an, rtype, rclass, rdlen, k
    cdef unsigned long ttl
    cdef bint truncated, cut = False
    cdef list names = []
    if n < 12:
        return _MALFORMED
    flags = (buf[2] << 8) | buf[3]
    qd = (buf[4] << 8) | buf[5]
    an = (buf[6] << 8) | buf[7]
    truncated = (flags & 0x0200) != 0
    questions = []
    for k in range(qd):
        off = _name(buf, off, n, names)
        if off < 0 or off + 4 > n:
            return _MALFORMED
        questions.append((names.pop(), (buf[off] << 8) | buf[off + 1]))
        off += 4
    answers = []
    hints = []
    for k in range(an):
        off = _name(buf, off, n, names)
        if off < 0 or off + 10 > n:
            cut = True
            break
        rtype = (buf[off] << 8) | buf[off + 1]
        rclass = (buf[off + 2] << 8) | buf[off + 3]
        ttl = ((<unsigned long>buf[off + 4] << 24) | (buf[off + 5] << 16) | (buf[off + 6] << 8)
               | buf[off + 7])
        rdlen = (buf[off + 8] << 8) | buf[off + 9]
        off += 10
        end = off + rdlen
        if end > n:
            cut = True
            break
        rname = names.pop()
        if rtype == 1 and rclass == 1 and rdlen == 4:
            data_text = _address(AF_INET, buf + off)
        elif rtype == 28 and rclass == 1 and rdlen == 16:
            data_text = _address(AF_INET6, buf + off)
        elif (rtype == 5 or rtype == 2 or rtype == 12 or rtype == 39) \
                and _name(buf, off, end, names) == end:
            data_text = names.pop()
        else:
            del names[:]
            data_text = _rdata_text(data, off, end, rtype, rclass, {})
        answers.append(_DnsRecord(rname, rtype, ttl, data_text))
        if (rtype == 64 or rtype == 65) and rclass == 1:
            hints.extend([(rname, ip, ttl) for ip in _svcb_hints(data, off, end, {})])
        off = end
    if cut and not truncated:
        return _MALFORMED
    return _DnsMessage((buf[0] << 8) | buf[1], (flags & 0x8000) != 0, (flags >> 11) & 0xF,
                       flags & 0xF, truncated, questions, answers, n, hints)
