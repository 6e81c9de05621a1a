# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# cython: cdivision=True, embedsignature=True
"""The compiled twin of `pypacket.py`: L2-L4 decoding of one frame, same classes' shape, same
results for every frame (tests/test_twins.py compares the two on every capture in the
test suite and on random frames). `pypacket.py` is the reference and holds the decisions
(what is malformed where, what tshark does differently); this file follows it line for line,
with bounds checked on a C pointer instead of by Python's IndexError.

Where the pure code would raise IndexError (a length that runs past the captured bytes, caught
by `decode`, `decode_l4` and `tunnel.open_one`), this code raises IndexError too, so the
callers' handling is the same.

Built by `pip install .` when a C compiler is there (setup.py); without one, `packet.py` uses
`pypacket` and says so.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memset

from auditor.addresses import text as ip_text
from auditor.telemetry import Layer

cdef object _LINK = Layer.LINK
cdef object _LINKTYPE = Layer.LINKTYPE
cdef object _IP = Layer.IP
cdef object _IPV6 = Layer.IPV6
cdef object _TCP = Layer.TCP
cdef object _UDP = Layer.UDP
cdef object _ICMP = Layer.ICMP

ctypedef const unsigned char* buf_t

# 1 for a UDP port that carries a tunnel (set_tunnel_ports); one byte per port.
cdef unsigned char _tunnel_port[65536]
memset(_tunnel_port, 0, sizeof(_tunnel_port))


def set_tunnel_ports(ports):
    """The UDP ports that carry a tunnel (all kinds), as `pypacket.TUNNEL_PORTS` has them."""
    memset(_tunnel_port, 0, sizeof(_tunnel_port))
    for p in ports:
        if 0 <= p < 65536:
            _tunnel_port[p] = 1


cdef class Packet:
    """Facts about one IP packet. Addresses are packed bytes (4 or 16)."""
    cdef public object ts, version, src, dst, proto, sport, dport, ip_len, tcp_flags, seq
    cdef public object payload, ack, ts_ns, tunnel

    def __init__(self, ts, version, src, dst, proto, sport, dport, ip_len, tcp_flags, seq,
                 payload, ack=0, ts_ns=None, tunnel=None):
        self.ts, self.version, self.src, self.dst, self.proto = ts, version, src, dst, proto
        self.sport, self.dport, self.ip_len, self.tcp_flags = sport, dport, ip_len, tcp_flags
        self.seq, self.payload, self.ack, self.ts_ns, self.tunnel = seq, payload, ack, ts_ns, tunnel

    def __repr__(self):
        return (f"{self.__class__.__name__}(ts={self.ts!r}, {ip_text(self.src)}:{self.sport} -> "
                f"{ip_text(self.dst)}:{self.dport} proto={self.proto} ip_len={self.ip_len} "
                f"flags={self.tcp_flags:#x} seq={self.seq} payload={len(self.payload)}B)")


cdef class Tunnel(Packet):
    """A packet whose payload is another packet (see `pypacket.Tunnel`)."""
    cdef public object entropy_port


cdef class Fragment:
    """One IP fragment: `data` is its share of the datagram's L4 bytes, at byte `offset`."""
    cdef public object ts, version, src, dst, proto, ident, offset, more, ip_len, data
    cdef public object ts_ns, tunnel

    def __init__(self, ts, version, src, dst, proto, ident, offset, more, ip_len, data,
                 ts_ns=None, tunnel=None):
        self.ts, self.version, self.src, self.dst, self.proto = ts, version, src, dst, proto
        self.ident, self.offset, self.more, self.ip_len, self.data = ident, offset, more, ip_len, data
        self.ts_ns, self.tunnel = ts_ns, tunnel

    def __repr__(self):
        return (f"Fragment({ip_text(self.src)} -> {ip_text(self.dst)} proto={self.proto} "
                f"id={self.ident} offset={self.offset} more={self.more} {len(self.data)}B)")


cdef inline object _slice(buf_t b, Py_ssize_t start, Py_ssize_t end):
    """bytes b[start:end] as Python slices them (empty when end <= start)."""
    if end <= start:
        return b""
    return PyBytes_FromStringAndSize(<const char*>b + start, end - start)


cdef inline unsigned int _u16(buf_t b, Py_ssize_t o):
    return (b[o] << 8) | b[o + 1]


cdef inline unsigned int _u32(buf_t b, Py_ssize_t o):
    return (<unsigned int>b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]


cdef inline Packet _packet(bint tunnel, object ts, int version, object src, object dst, int proto,
                           int sport, int dport, long ip_len, int flags, unsigned int seq,
                           object payload, unsigned int ack):
    cdef Packet p = Tunnel.__new__(Tunnel) if tunnel else Packet.__new__(Packet)
    p.ts, p.version, p.src, p.dst, p.proto = ts, version, src, dst, proto
    p.sport, p.dport, p.ip_len, p.tcp_flags, p.seq = sport, dport, ip_len, flags, seq
    p.payload, p.ack = payload, ack
    return p


cdef inline object _bytes(object frame):
    return frame if type(frame) is bytes else bytes(frame)


# -- entry points (the names `packet.py` exports) --------------------------------------

def decode(int linktype, frame, ts, wirelen):
    """Decode one frame: `Packet`, `Fragment`, `Tunnel`, the malformed `Layer`, or None."""
    frame = _bytes(frame)
    cdef buf_t b = <buf_t>PyBytes_AS_STRING(frame)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(frame)
    cdef unsigned int fam, v
    try:
        if linktype == 1:
            if n < 14:
                return _LINK
            return _ethertype(b, n, 14, _u16(b, 12), ts)
        if linktype == 113:
            if n < 16:
                return _LINK
            return _ethertype(b, n, 16, _u16(b, 14), ts)
        if linktype == 276:
            if n < 20:
                return _LINK
            return _ethertype(b, n, 20, _u16(b, 0), ts)
        if linktype == 0 or linktype == 108:
            if n < 4:
                return _LINK
            fam = _u32(b, 0)
            if linktype == 0 and fam > 0xFFFF:   # the capturing host's byte order
                fam = (<unsigned int>b[3] << 24) | (b[2] << 16) | (b[1] << 8) | b[0]
            if fam == 2:
                return _ipv4(b, n, 4, ts)
            if fam == 24 or fam == 28 or fam == 30 or fam == 10:
                return _ipv6(b, n, 4, ts)
            return None
        if linktype == 101 or linktype == 228 or linktype == 229:
            if n == 0:
                return _IP if linktype != 229 else _IPV6
            v = b[0] >> 4
            if linktype == 228 or (linktype == 101 and v == 4):
                return _ipv4(b, n, 0, ts)
            if linktype == 229 or v == 6:
                return _ipv6(b, n, 0, ts)
            return _IP
        if linktype == 9 or linktype == 50:
            return _ppp(b, n, 0, ts)
        if linktype == 239:
            return _nflog(b, n, ts)
        return _LINKTYPE
    except IndexError:
        return _LINK


def decode_l4(ts, version, src, dst, proto, data, ip_len):
    """L4 facts of a reassembled datagram: `Packet` or the malformed `Layer`."""
    data = _bytes(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    try:
        return _l4(<buf_t>PyBytes_AS_STRING(data), 0, n, n, ts, version, src, dst, proto, ip_len)
    except IndexError:
        return _IP


def ipv4(frame, Py_ssize_t off, ts):
    frame = _bytes(frame)
    return _ipv4(<buf_t>PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame), off, ts)


def ipv6(frame, Py_ssize_t off, ts):
    frame = _bytes(frame)
    return _ipv6(<buf_t>PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame), off, ts)


def ethernet(frame, Py_ssize_t off, ts):
    """An Ethernet frame at frame[off:] (VXLAN, Geneve/GRE transparent bridging)."""
    frame = _bytes(frame)
    return _ethernet(<buf_t>PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame), off, ts)


def by_ethertype(frame, Py_ssize_t off, unsigned int et, ts):
    """The packet at frame[off:] by its ethertype (GRE and Geneve carry one)."""
    frame = _bytes(frame)
    cdef buf_t b = <buf_t>PyBytes_AS_STRING(frame)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(frame)
    if et == 0x6558:
        return _ethernet(b, n, off, ts)
    return _ethertype(b, n, off, et, ts)


def ppp(frame, Py_ssize_t off, ts):
    """PPP, with or without HDLC-like address/control bytes."""
    frame = _bytes(frame)
    return _ppp(<buf_t>PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame), off, ts)


# -- the layers ------------------------------------------------------------------------

cdef object _ethernet(buf_t b, Py_ssize_t n, Py_ssize_t off, object ts):
    if n < off + 14:
        return _LINK
    return _ethertype(b, n, off + 14, _u16(b, off + 12), ts)


cdef object _ethertype(buf_t b, Py_ssize_t n, Py_ssize_t off, unsigned int et, object ts):
    cdef Py_ssize_t end
    cdef unsigned int proto
    if et == 0x0800:
        return _ipv4(b, n, off, ts)
    while et == 0x8100 or et == 0x88A8 or et == 0x9100:   # 802.1Q / QinQ, any depth
        if n < off + 4:
            return _LINK
        et = _u16(b, off + 2)
        off += 4
    if et == 0x0800:
        return _ipv4(b, n, off, ts)
    if et == 0x86DD:
        return _ipv6(b, n, off, ts)
    if et == 0x8864:          # PPPoE session: the IP packet ends with the PPPoE payload
        if n < off + 8:
            return _LINK
        end = off + 6 + _u16(b, off + 4)
        if end < n:
            n = end
        if n < off + 8:       # pypacket indexes past its cut frame here
            raise IndexError("PPPoE payload shorter than its PPP protocol field")
        proto = _u16(b, off + 6)
        if proto == 0x0021:
            return _ipv4(b, n, off + 8, ts)
        if proto == 0x0057:
            return _ipv6(b, n, off + 8, ts)
        return None
    if et == 0x8847 or et == 0x8848:
        return _mpls(b, n, off, ts)
    return None


cdef object _ipv4(buf_t b, Py_ssize_t n, Py_ssize_t off, object ts):
    cdef unsigned int vihl, ihl, frag, proto
    cdef Py_ssize_t total, end
    if n < off + 20:
        return _IP
    vihl = b[off]
    ihl = (vihl & 15) << 2
    if vihl >> 4 != 4 or ihl < 20 or n < off + ihl:
        return _IP
    total = _u16(b, off + 2)
    frag = _u16(b, off + 6)
    proto = b[off + 9]
    if total == 0:            # TSO/GRO: the NIC fills the length in later
        total = n - off
    elif total < ihl:
        return _IP
    end = off + total
    if end > n:
        end = n
    src = PyBytes_FromStringAndSize(<const char*>b + off + 12, 4)
    dst = PyBytes_FromStringAndSize(<const char*>b + off + 16, 4)
    if frag & 0x3FFF:
        return Fragment(ts, 4, src, dst, proto, _u16(b, off + 4), (frag & 0x1FFF) << 3,
                        bool(frag & 0x2000), total, _slice(b, off + ihl, end))
    return _l4(b, off + ihl, end, off + total, ts, 4, src, dst, proto, total)


cdef object _ipv6(buf_t b, Py_ssize_t n, Py_ssize_t off, object ts):
    cdef Py_ssize_t plen, total, end, p
    cdef unsigned int nh, fo
    if n < off + 40:
        return _IPV6
    if b[off] >> 4 != 6:
        return _IPV6
    plen = _u16(b, off + 4)
    nh = b[off + 6]
    if plen == 0:
        plen = n - off - 40
    total = 40 + plen
    end = off + total
    if end > n:
        end = n
    src = PyBytes_FromStringAndSize(<const char*>b + off + 8, 16)
    dst = PyBytes_FromStringAndSize(<const char*>b + off + 24, 16)
    p = off + 40
    while nh == 0 or nh == 43 or nh == 44 or nh == 51 or nh == 60:
        if p + 8 > end:
            return _IPV6
        if nh == 44:
            fo = _u16(b, p + 2)
            if fo & 0xFFF9:
                return Fragment(ts, 6, src, dst, b[p], _u32(b, p + 4), fo & 0xFFF8,
                                bool(fo & 1), total, _slice(b, p + 8, end))
            nh = b[p]
            p += 8
        elif nh == 51:
            nh, p = b[p], p + ((b[p + 1] + 2) << 2)
        else:
            nh, p = b[p], p + ((b[p + 1] + 1) << 3)
    if p > end:
        return _IPV6
    return _l4(b, p, end, off + total, ts, 6, src, dst, nh, total)


cdef object _l4(buf_t b, Py_ssize_t p, Py_ssize_t end, Py_ssize_t stated_end, object ts,
                int version, object src, object dst, int proto, Py_ssize_t ip_len):
    cdef unsigned int sport, dport, ulen, offb, doff
    if proto == 6:
        if end - p < 20:
            return _TCP
        offb = b[p + 12]
        doff = (offb >> 4) << 2
        if doff < 20 or p + doff > stated_end:
            return _TCP
        return _packet(False, ts, version, src, dst, 6, _u16(b, p), _u16(b, p + 2), ip_len,
                       ((offb & 0x0F) << 8) | b[p + 13], _u32(b, p + 4),
                       _slice(b, p + doff, end), _u32(b, p + 8))
    if proto == 17:
        if end - p < 8:
            return _UDP
        sport = _u16(b, p)
        dport = _u16(b, p + 2)
        ulen = _u16(b, p + 4)
        if ulen < 8:
            if ulen != 0 or version != 6:
                return _UDP
        elif p + ulen < end:
            end = p + ulen
        # pypacket: to a tunnel port whatever the source port; from one only to a higher port.
        if _tunnel_port[dport] or (_tunnel_port[sport] and sport <= dport):
            return _packet(True, ts, version, src, dst, 17, sport, dport, ip_len, 0, 0,
                           _slice(b, p + 8, end), 0)
        return _packet(False, ts, version, src, dst, 17, sport, dport, ip_len, 0, 0,
                       _slice(b, p + 8, end), 0)
    if proto == 1 or proto == 58:
        if stated_end - p < 4:
            return _ICMP
        return _packet(False, ts, version, src, dst, proto, 0, 0, ip_len, 0, 0,
                       _slice(b, p, end), 0)
    if proto == 4 or proto == 41 or proto == 47:
        return _packet(True, ts, version, src, dst, proto, 0, 0, ip_len, 0, 0,
                       _slice(b, p, end), 0)
    return _packet(False, ts, version, src, dst, proto, 0, 0, ip_len, 0, 0,
                   _slice(b, p, end), 0)


cdef object _ppp(buf_t b, Py_ssize_t n, Py_ssize_t off, object ts):
    cdef unsigned int proto
    if n >= off + 2 and b[off] == 0xFF and b[off + 1] == 0x03:
        off += 2
    if n < off + 1:
        return _LINK
    if b[off] & 1:
        proto = b[off]
        off += 1
    elif n < off + 2:
        return _LINK
    else:
        proto = _u16(b, off)
        off += 2
    if proto == 0x0021:
        return _ipv4(b, n, off, ts)
    if proto == 0x0057:
        return _ipv6(b, n, off, ts)
    if proto == 0x0281 or proto == 0x0283:
        return _mpls(b, n, off, ts)
    return None


cdef object _nflog(buf_t b, Py_ssize_t n, object ts):
    cdef unsigned int fam, length, tlv
    cdef Py_ssize_t off
    cdef bint little
    if n < 4:
        return _LINK
    fam = b[0]
    if fam != 2 and fam != 10:
        return None
    little = n < 8 or (4 <= (b[4] | (b[5] << 8)) <= n - 4
                       and ((b[6] | (b[7] << 8)) & 0x3FFF) < 0x100)
    off = 4
    while off + 4 <= n:
        if little:
            length, tlv = b[off] | (b[off + 1] << 8), b[off + 2] | (b[off + 3] << 8)
        else:
            length, tlv = (b[off] << 8) | b[off + 1], (b[off + 2] << 8) | b[off + 3]
        if length < 4 or off + length > n:
            return _LINK
        if (tlv & 0x3FFF) == 9:
            if fam == 2:
                return _ipv4(b + off + 4, length - 4, 0, ts)
            return _ipv6(b + off + 4, length - 4, 0, ts)
        off += (length + 3) & ~3
    return None


cdef object _mpls(buf_t b, Py_ssize_t n, Py_ssize_t off, object ts):
    return _packet(True, ts, 0, b"", b"", -1, 0, 0, 0, 0, 0, _slice(b, off, n), 0)
