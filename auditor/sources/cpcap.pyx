# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled twin of `pcap.records` (classic pcap record walking): same arguments, same
results (tests/test_twins.py). Built by setup.py when a C compiler is there."""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint32_t


cdef inline uint32_t _u32(const unsigned char* b, Py_ssize_t o, bint little):
    if little:
        return (<uint32_t>b[o + 3] << 24) | (b[o + 2] << 16) | (b[o + 1] << 8) | b[o]
    return (<uint32_t>b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]


def records(bytes buf, Py_ssize_t pos, Py_ssize_t rsize, bint little, int64_t scale,
            linktype, uint32_t max_caplen):
    """The whole records in buf from pos: (frames, where the first record not read starts,
    whether that record is corrupt: caplen > max_caplen)."""
    cdef const unsigned char* b = <const unsigned char*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
    cdef Py_ssize_t start, end
    cdef uint32_t caplen
    cdef list out = []
    while pos + rsize <= n:
        caplen = _u32(b, pos + 8, little)
        if caplen > max_caplen:
            return out, pos, True
        start = pos + rsize
        end = start + caplen
        if end > n:
            break
        # int64 holds any u32 seconds * 1e9 + u32 fraction * 1000 (< 4.3e18 < 9.2e18)
        out.append((<int64_t>_u32(b, pos, little) * 1000000000
                    + <int64_t>_u32(b, pos + 4, little) * scale,
                    linktype, PyBytes_FromStringAndSize(<const char*>b + start, caplen),
                    _u32(b, pos + 12, little)))
        pos = end
    return out, pos, False
