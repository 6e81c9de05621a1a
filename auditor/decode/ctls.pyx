# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# cython: cdivision=True, embedsignature=True
"""The compiled twin of `tls.parse_records` and `tls.parse_handshake`: the same `ClientHello`
or `Status` for every input (tests/test_twins.py compares the two on every client's first
bytes in the test captures and on hypothesis-written hellos). `tls.py` is the reference and
holds the decisions (which lengths must nest, which duplicate counts, what is NEED_MORE); this
file follows it with bounds checked on a C pointer instead of by exceptions.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

from auditor.decode.outcome import MALFORMED, NEED_MORE, NOT_THIS
from auditor.decode.text import wire_text

cdef object _MALFORMED = MALFORMED
cdef object _NEED_MORE = NEED_MORE
cdef object _NOT_THIS = NOT_THIS
cdef object _wire_text = wire_text
# Handed over by `tls.py` itself (`bind`): importing it from here would be circular.
cdef object _ClientHello = None
cdef Py_ssize_t MAX_HELLO = 0, MAX_RECORD = 0


def bind(pure):
    """Take the result class and the size limits from `auditor.decode.tls`."""
    global _ClientHello, MAX_HELLO, MAX_RECORD
    _ClientHello, MAX_HELLO, MAX_RECORD = pure.ClientHello, pure.MAX_HELLO, pure.MAX_RECORD


cdef inline bint _vec(const unsigned char *b, Py_ssize_t off, int size, Py_ssize_t end,
                      Py_ssize_t *start, Py_ssize_t *stop):
    """A length-prefixed vector at off (size 1 or 2): its contents are [start, stop). False
    when it does not fit (where the pure code raises DecodeError)."""
    cdef Py_ssize_t ln
    if off + size > end:
        return False
    ln = b[off] if size == 1 else (b[off] << 8) | b[off + 1]
    if off + size + ln > end:
        return False
    start[0] = off + size
    stop[0] = off + size + ln
    return True


cdef tuple _u16s(const unsigned char *b, Py_ssize_t start, Py_ssize_t stop):
    cdef Py_ssize_t i
    return tuple([(b[i] << 8) | b[i + 1] for i in range(start, stop, 2)])


cdef object _text(const unsigned char *b, Py_ssize_t start, Py_ssize_t stop):
    cdef Py_ssize_t i
    for i in range(start, stop):
        if b[i] >= 0x80:
            return _wire_text(b[start:stop])
    return b[start:stop].decode("ascii")


def parse_records(buf):
    """Parse a client's first TCP bytes, exactly as `tls.parse_records` does."""
    cdef bytes data = buf if type(buf) is bytes else bytes(buf)
    cdef const unsigned char *b = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data), have = 0, off = 0, need = -1, rlen, flen
    cdef list frags = []
    cdef bytes hs
    if n == 0:
        return _NEED_MORE
    if b[0] != 0x16:
        return _NOT_THIS
    if n >= 2 and b[1] != 0x03:
        return _NOT_THIS
    if n >= 3 and b[2] > 0x04:
        return _NOT_THIS
    while True:
        if off + 5 > n:
            return _NEED_MORE
        if b[off] != 0x16:
            return _MALFORMED
        if b[off + 1] != 0x03 or b[off + 2] > 0x04:
            return _NOT_THIS if off == 0 else _MALFORMED
        rlen = (b[off + 3] << 8) | b[off + 4]
        if rlen == 0 or rlen > MAX_RECORD:
            return _MALFORMED
        flen = min(rlen, n - off - 5)
        frags.append(data[off + 5:off + 5 + flen])
        have += flen
        if need < 0 and have >= 4:
            hs = frags[0] if len(frags) == 1 else b"".join(frags)
            if hs[0] != 1:
                return _MALFORMED
            need = 4 + ((hs[1] << 16) | (hs[2] << 8) | hs[3])
            if need > MAX_HELLO:
                return _MALFORMED
        if need >= 0 and have >= need:
            hs = frags[0] if len(frags) == 1 else b"".join(frags)
            return _hello_body(hs, need)
        if flen < rlen:
            return _NEED_MORE
        off += 5 + rlen


def parse_handshake(buf):
    """Parse raw handshake bytes (no record layer), exactly as `tls.parse_handshake` does."""
    cdef bytes data = buf if type(buf) is bytes else bytes(buf)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data), need
    if n < 4:
        return _NEED_MORE if (n == 0 or data[0] == 1) else _MALFORMED
    if data[0] != 1:
        return _MALFORMED
    need = 4 + ((data[1] << 16) | (data[2] << 8) | data[3])
    if need > MAX_HELLO:
        return _MALFORMED
    if n < need:
        return _NEED_MORE
    return _hello_body(data, need)


cdef object _hello_body(bytes data, Py_ssize_t end):
    """The ClientHello body in data[4:end], or MALFORMED when its lengths do not nest."""
    cdef const unsigned char *hs = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t off = 4, s, e, es, ee, stop, vs, ve, ns
    cdef unsigned int etype, version
    cdef bint seen_sni = False, seen_alpn = False, seen_sig = False, seen_ver = False
    cdef bint ech = False
    sni = None
    alpn = ()
    versions = ()
    sigalgs = ()
    alpn_first = b""
    cdef list extensions = []
    if off + 34 > end:
        return _MALFORMED
    version = (hs[off] << 8) | hs[off + 1]
    off += 34
    if not _vec(hs, off, 1, end, &s, &off):                  # legacy_session_id
        return _MALFORMED
    if not _vec(hs, off, 2, end, &s, &off) or off == s or (off - s) & 1:   # cipher_suites
        return _MALFORMED
    ciphers = _u16s(hs, s, off)
    if not _vec(hs, off, 1, end, &s, &off) or off == s:      # legacy_compression_methods
        return _MALFORMED
    if off < end:
        if not _vec(hs, off, 2, end, &s, &stop) or stop != end:
            return _MALFORMED
        off = s
        while off < stop:
            if off + 4 > stop:
                return _MALFORMED
            etype = (hs[off] << 8) | hs[off + 1]
            if not _vec(hs, off + 2, 2, stop, &es, &ee):
                return _MALFORMED
            off = ee
            extensions.append(etype)
            if etype == 0x0000:
                if seen_sni:
                    continue
                seen_sni = True
                if es != ee:
                    if not _vec(hs, es, 2, ee, &vs, &ve) or ve != ee:
                        return _MALFORMED
                    s = vs
                    while s < ve:
                        if s + 3 > ve:
                            return _MALFORMED
                        if not _vec(hs, s + 1, 2, ve, &ns, &e):
                            return _MALFORMED
                        if hs[s] == 0 and e > ns:
                            sni = _text(hs, ns, e)
                            break
                        s = e
            elif etype == 0x0010:
                if seen_alpn:
                    continue
                seen_alpn = True
                if not _vec(hs, es, 2, ee, &vs, &ve) or ve != ee:
                    return _MALFORMED
                protocols = []
                s = vs
                while s < ve:
                    if not _vec(hs, s, 1, ve, &ns, &e):
                        return _MALFORMED
                    protocols.append(_text(hs, ns, e))
                    s = e
                alpn = tuple(protocols)
                if ee - es > 3 and hs[es + 2]:
                    alpn_first = data[es + 3:es + 3 + hs[es + 2]]
            elif etype == 0x000D:
                if seen_sig:
                    continue
                seen_sig = True
                if not _vec(hs, es, 2, ee, &vs, &ve) or ve != ee or (ve - vs) & 1:
                    return _MALFORMED
                sigalgs = _u16s(hs, vs, ve)
            elif etype == 0x002B:
                if seen_ver:
                    continue
                seen_ver = True
                if not _vec(hs, es, 1, ee, &vs, &ve) or ve != ee or (ve - vs) & 1:
                    return _MALFORMED
                versions = _u16s(hs, vs, ve)
            elif etype == 0xFE0D:
                ech = True
    return _ClientHello(sni, alpn, ech, version, versions, ciphers, tuple(extensions), sigalgs,
                        alpn_first)
