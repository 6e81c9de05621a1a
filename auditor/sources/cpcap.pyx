# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled twins of `pcap.records` (classic pcap record walking) and of the common case
of `CaptureFile._pcapng` (a run of plain enhanced packet blocks): same results as the Python
reader (tests/test_twins.py). Built by setup.py when a C compiler is there."""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint32_t, uint64_t


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


cdef enum:
    MAX_IFACES = 64
cdef int64_t EXACT = 1 << 62    # timestamps are computed here only while they stay below this
# (so every one is within |ts| < 2^63 ns, inside pcap.MIN_NS..MAX_NS: none is a bad timestamp)


def epbs(bytes buf, Py_ssize_t pos, bint little, list ifaces, uint32_t max_block):
    """pcapng: the run of enhanced packet blocks in buf from pos that need nothing but their
    frame read (whole in buf, lengths consistent, a known interface, a timestamp this code
    computes exactly): (frames, where the first block not read starts). It stops at any
    other block, and at an EPB that is anything but plain: `CaptureFile._pcapng` reads that
    one itself (and says what is wrong with it), so the frames are what it would make.
    `ifaces` is its list of (linktype, mul, div, offset ns)."""
    cdef const unsigned char* b = <const unsigned char*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
    cdef uint32_t blen, ifid, caplen
    cdef uint64_t ticks
    cdef int64_t mul[MAX_IFACES]
    cdef int64_t div[MAX_IFACES]
    cdef int64_t off[MAX_IFACES]
    cdef bint usable[MAX_IFACES]
    cdef Py_ssize_t nif = min(len(ifaces), MAX_IFACES), i
    cdef list out = []
    for i in range(nif):
        _lt, m, d, o = ifaces[i]
        # Python computes ticks * mul // div + off in exact integers; so does this, in int64,
        # for the resolutions and offsets that fit (others are left to Python)
        usable[i] = 0 < m <= 1_000_000_000 and 0 < d < EXACT and -EXACT <= o <= EXACT
        if usable[i]:
            mul[i], div[i], off[i] = m, d, o
    while pos + 12 <= n and _u32(b, pos, little) == 6:
        blen = _u32(b, pos + 4, little)
        if blen < 32 or blen % 4 or blen > max_block or pos + blen > n:
            break
        if _u32(b, pos + blen - 4, little) != blen:
            break
        ifid = _u32(b, pos + 8, little)
        caplen = _u32(b, pos + 20, little)
        if ifid >= nif or not usable[ifid] or caplen > blen - 32:
            break
        ticks = (<uint64_t>_u32(b, pos + 12, little) << 32) | _u32(b, pos + 16, little)
        if ticks >= <uint64_t>(EXACT // mul[ifid]):
            break
        out.append((<int64_t>ticks * mul[ifid] // div[ifid] + off[ifid], ifaces[ifid][0],
                    PyBytes_FromStringAndSize(<const char*>b + pos + 28, caplen),
                    _u32(b, pos + 24, little)))
        pos += blen
    return out, pos
