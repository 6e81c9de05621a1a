# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled twin of `Pipeline.feed`, with the tracker's known-flow fast path in C.

Most packets of a capture belong to a flow that is already known and named and need nothing
but its counters moved: this loop reads such a packet's headers straight from the frame
(Ethernet or Linux SLL, IPv4 or IPv6 without extension headers, TCP without SYN or RST, or
UDP; or such a packet inside VXLAN, whose carrier flow is counted too), finds its flow in the
tracker's tables and counts it (and marks a FIN, as `Tracker._tcp_flags` does), without
building a `Packet`.
Every other frame, and any packet of a flow the tracker must look at (a payload that may name
it, DNS, a watch on retransmissions, an idle sweep due or a time before the last sweep, a
tunnel), goes the ordinary way: `decode` and the tracker, exactly as in `pipeline.py`. The
fast path changes nothing before it has decided to take the packet, so giving up at any
point is always safe.

`feed_pcap` is the same loop over a classic pcap file's records, read in place from the
file's buffers: a packet the fast path takes then costs no frame tuple and no copy of its
bytes (the copy and the tuple were half of reading a capture).

What the fast path does is what `Tracker.packet` does for the same packet (it is that
method's first half, with the same conditions); tests/test_twins.py replays captures through
both and compares every event and metric, and audits every classic capture, damaged ones and
random record streams through `feed_pcap` and through `feed` over the file's frames. Built by
setup.py when a C compiler is there.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_SIZE
from libc.string cimport memcmp, memcpy

import time

from auditor.decode import packet as _packet
from auditor.decode import tunnel as _tunnel
from auditor.telemetry import Layer

ctypedef const unsigned char* buf_t

cdef unsigned int SYN_RST = 0x06
cdef unsigned int FIN = 0x01
cdef object _ANY_PORT = -1
cdef object _LINK = Layer.LINK
cdef object _TUNNEL = Layer.TUNNEL


cdef inline unsigned int _u16(buf_t b, Py_ssize_t o):
    return (b[o] << 8) | b[o + 1]


cdef class Hdr:
    """One parsed IP packet header, as the fast path needs it."""
    cdef object src, dst
    cdef unsigned int proto, sport, dport
    cdef bint fin                                        # TCP: the FIN flag
    cdef Py_ssize_t ip_len, payload, data_at, data_end   # payload length; where it is
    cdef Py_ssize_t addr_at, addr_len                    # the source address, then the destination


cdef bint _parse(buf_t b, Py_ssize_t n, Py_ssize_t off, unsigned int et, Hdr h):
    """IPv4 (no fragment) or IPv6 (no extension header) at b[off:n] carrying TCP without
    SYN/RST or UDP, valid as `decode` reads it: fill `h`; else False (the ordinary way)."""
    cdef unsigned int vihl, ihl, offb, doff, ulen
    cdef Py_ssize_t total, end, stated_end, p
    if et == 0x0800:
        if n < off + 20:
            return False
        vihl = b[off]
        ihl = (vihl & 15) << 2
        if vihl >> 4 != 4 or ihl < 20 or n < off + ihl:
            return False
        total = _u16(b, off + 2)
        if total == 0:
            total = n - off
        elif total < ihl:
            return False
        if _u16(b, off + 6) & 0x3FFF:          # a fragment
            return False
        h.proto = b[off + 9]
        if h.proto != 6 and h.proto != 17:
            return False
        h.addr_at, h.addr_len = off + 12, 4
        p = off + ihl
    elif et == 0x86DD:
        if n < off + 40 or b[off] >> 4 != 6:
            return False
        total = _u16(b, off + 4)
        if total == 0:
            total = n - off - 40
        total += 40
        h.proto = b[off + 6]                     # extension headers: the ordinary way
        if h.proto != 6 and h.proto != 17:
            return False
        h.addr_at, h.addr_len = off + 8, 16
        p = off + 40
    else:
        return False
    stated_end = off + total
    end = stated_end if stated_end < n else n
    h.ip_len = total
    if h.proto == 6:
        if end - p < 20:
            return False
        offb = b[p + 12]
        doff = (offb >> 4) << 2
        if doff < 20 or p + doff > stated_end or b[p + 13] & SYN_RST:
            return False
        h.fin = b[p + 13] & FIN
        h.data_at = p + doff
    else:
        h.fin = False
        if end - p < 8:
            return False
        ulen = _u16(b, p + 4)
        if ulen < 8:
            return False
        if p + ulen < end:
            end = p + ulen
        h.data_at = p + 8
    h.data_end = end
    h.payload = end - h.data_at if end > h.data_at else 0
    h.sport = _u16(b, p)
    h.dport = _u16(b, p + 2)
    h.src = PyBytes_FromStringAndSize(<const char*>b + h.addr_at, h.addr_len)
    h.dst = PyBytes_FromStringAndSize(<const char*>b + h.addr_at + h.addr_len, h.addr_len)
    return True


cdef class FastPath:
    """Counts packets of known flows; `take` says whether it did. Plain packets, and VXLAN
    frames whose carrier and inner flows are both known (`Tracker.tunnel`'s common case)."""
    cdef object tracker, table, touch, vxlan_hops, ethernet, Packet, Fragment, Tunnel
    cdef Hdr outer, inner
    cdef public long long taken
    cdef unsigned char tunnel_port[65536]
    cdef unsigned char vxlan_port[65536]
    # The last VXLAN tunnel seen (VNI, port, outer addresses as raw bytes) -> its hop and its
    # carrier's key: consecutive frames mostly share one, and this saves two lookups.
    cdef unsigned char last_tunnel[40]
    cdef Py_ssize_t last_tunnel_len
    cdef object last_hop, last_carrier_key

    def __init__(self, tracker):
        self.tracker = tracker
        self.table = tracker.flows._table
        self.touch = self.table.move_to_end
        self.vxlan_hops = _tunnel._VXLAN_HOPS
        self.ethernet = _packet.ethernet
        self.Packet, self.Fragment, self.Tunnel = _packet.Packet, _packet.Fragment, _packet.Tunnel
        self.outer, self.inner = Hdr(), Hdr()
        cdef int p
        for p in range(65536):
            kind = _packet.TUNNEL_PORTS.get(p)
            self.tunnel_port[p] = kind is not None
            self.vxlan_port[p] = kind == "vxlan"

    cdef object _find(self, tuple key, bint* from_client):
        """The flow of this key (either direction) or None."""
        cdef PyObject* found = PyDict_GetItem(self.table, key)
        if found is not NULL:
            from_client[0] = True
            return <object>found
        # a server's packet: its key reversed is its flow's (flows.FlowTable keeps one index)
        if PyTuple_GET_SIZE(key) == 5:
            rkey = (key[0], key[3], key[4], key[1], key[2])
        else:
            rkey = (key[0], key[3], key[4], key[1], key[2], key[5])
        found = PyDict_GetItem(self.table, rkey)
        if found is not NULL:
            from_client[0] = False
            return <object>found
        return None

    cdef bint _plain(self, object flow, bint from_client, Py_ssize_t payload) except -1:
        """Does `Tracker.packet` only count this packet of `flow`?"""
        st = flow.track_state
        h2 = None
        if st is not None:
            if st.watch is not None:
                return False
            h2 = st.h2
        if payload > 0:
            if (flow.server_port == 53 or flow.client_port == 53) and not flow.carrier:
                return False
            if h2 is not None:
                return False
            if from_client and not flow.named:
                return False
        return True

    cdef int _count(self, object flow, object key, bint from_client, Py_ssize_t ip_len,
                    object ts, object ts_ns, bint fin=False) except -1:
        self.touch(key if from_client else flow.key)
        if ts > flow.last:
            flow.last = ts
            flow.last_ns = ts_ns
        if from_client:
            flow.c_packets += 1
            flow.c_bytes += ip_len
            if fin:                         # Tracker._tcp_flags for a FIN
                flow.fin_c = True
        else:
            flow.s_packets += 1
            flow.s_bytes += ip_len
            flow.server_seen = True
            if fin:
                flow.fin_s = True
        return 0

    cdef bint take(self, int linktype, object frame, object ts, object ts_ns) except -1:
        if type(frame) is not bytes:
            return False
        return self.take_at(linktype, <buf_t>PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame),
                            ts, ts_ns)

    cdef bint take_at(self, int linktype, buf_t b, Py_ssize_t n, object ts,
                      object ts_ns) except -1:
        """`take` of the n-byte frame at b (in a capture file's buffer: no copy made)."""
        cdef buf_t d
        cdef Py_ssize_t off, dn, rl
        cdef unsigned char raw[40]
        cdef PyObject* found
        cdef unsigned int et
        cdef bint from_client = True, inner_from_client = True
        cdef Hdr h = self.outer, i = self.inner
        if linktype == 1:
            if n < 14:
                return False
            et, off = _u16(b, 12), 14
        elif linktype == 113:
            if n < 16:
                return False
            et, off = _u16(b, 14), 16
        else:
            return False
        if not _parse(b, n, off, et, h):
            return False
        if ts >= self.tracker._next_sweep or ts < self.tracker.now:   # (see FlowTable.expire)
            return False
        if h.proto == 17 and (self.tunnel_port[h.dport] or self.tunnel_port[h.sport]):
            # VXLAN to its port from a higher (entropy) port: `Tracker.tunnel` opens it,
            # counts the carrier (keyed by the tunnel port alone) and tracks the inner packet.
            if not self.vxlan_port[h.dport] or h.sport <= h.dport or h.payload < 22:
                return False
            d = b + h.data_at
            dn = h.payload
            # (VNI, tunnel port, outer addresses): the hop and the carrier key, cached
            rl = 5 + 2 * h.addr_len
            memcpy(raw, d + 4, 3)
            raw[3], raw[4] = h.dport >> 8, h.dport & 0xFF
            memcpy(raw + 5, b + h.addr_at, 2 * h.addr_len)
            if rl == self.last_tunnel_len and memcmp(raw, self.last_tunnel, rl) == 0:
                hop, carrier_key = self.last_hop, self.last_carrier_key
            else:
                found = PyDict_GetItem(self.vxlan_hops,
                                       (PyBytes_FromStringAndSize(<const char*>d + 4, 3),
                                        h.src, h.dst, None))
                if found is NULL:
                    return False
                hop = <object>found
                carrier_key = (17, h.src, _ANY_PORT, h.dst, h.dport)
                memcpy(self.last_tunnel, raw, rl)
                self.last_tunnel_len = rl
                self.last_hop, self.last_carrier_key = hop, carrier_key
            found = PyDict_GetItem(self.table, carrier_key)
            if found is NULL:
                return False
            carrier = <object>found
            if not carrier.named:
                return False
            if _parse(d, dn, 22, _u16(d, 20), i) and not (
                    i.proto == 17 and (self.tunnel_port[i.dport] or self.tunnel_port[i.sport])):
                key = (i.proto, i.src, i.sport, i.dst, i.dport, hop.scope)
                flow = self._find(key, &inner_from_client)
                if flow is not None and self._plain(flow, inner_from_client, i.payload):
                    # Taken: the carrier, then the inner packet, as Tracker.tunnel does.
                    self.taken += 1
                    self._count(carrier, carrier_key, True, h.ip_len, ts, ts_ns)
                    self._count(flow, key, inner_from_client, i.ip_len, ts, ts_ns, i.fin)
                    return True
            # The inner packet needs the tracker (a handshake, DNS, a new flow, a fragment):
            # the carrier is still counted here and the inner packet handed over as
            # Tracker.tunnel hands it over (tunnel.open_one's results), unless it is
            # itself a tunnel (then all of it goes the ordinary way).
            try:
                inner = self.ethernet(PyBytes_FromStringAndSize(<const char*>d, dn), 8, ts)
            except IndexError:
                inner = _TUNNEL
            if inner is _LINK:
                inner = _TUNNEL
            cls = type(inner)
            if cls is self.Tunnel:
                return False
            self._count(carrier, carrier_key, True, h.ip_len, ts, ts_ns)
            if cls is self.Packet:
                inner.tunnel, inner.ts_ns = hop, ts_ns
                self.tracker.packet(inner)
            elif cls is self.Fragment:
                inner.tunnel, inner.ts_ns = hop, ts_ns
                self.tracker.fragment(inner)
            elif inner is not None:
                self.tracker.telemetry.bad(inner)
            return True
        key = (h.proto, h.src, h.sport, h.dst, h.dport)
        flow = self._find(key, &from_client)
        if flow is None or not self._plain(flow, from_client, h.payload):
            return False
        # Taken: from here on, what Tracker.packet does for it.
        self.taken += 1
        self._count(flow, key, from_client, h.ip_len, ts, ts_ns, h.fin)
        return True


def feed(pipeline, frames, int check_every, on_check):
    """`Pipeline.feed` (same arguments, same effects), with the fast path in front of
    `decode`."""
    cdef FastPath fast = FastPath(pipeline.tracker)
    cdef long long n, check_at
    decode = _packet.decode
    Packet, Fragment, Tunnel = _packet.Packet, _packet.Fragment, _packet.Tunnel
    tracker = pipeline.tracker
    track, fragment, tunnel = tracker.packet, tracker.fragment, tracker.tunnel
    tel = pipeline.telemetry
    malformed = tel.malformed
    n = tel.packets
    check_at = n + check_every
    ts = tel.last_packet_ts
    try:
        for frame in frames:
            if frame is None:
                tel.packets = n
                tracker.tick(max(tracker.now, time.time()))
                pipeline._tick()
                if on_check is not None:
                    on_check(pipeline)
                if pipeline.stopping:
                    break
                continue
            ts, linktype, data, wire_len = frame
            if type(ts) is int:
                ts_ns, ts = ts, ts / 1_000_000_000
            else:
                ts_ns = None
            n += 1
            tel.packets = n
            try:
                if not fast.take(linktype, data, ts, ts_ns):
                    pkt = decode(linktype, data, ts, wire_len)
                    cls = type(pkt)
                    if cls is Packet:
                        pkt.ts_ns = ts_ns
                        track(pkt)
                    elif cls is Layer:
                        malformed[pkt] += 1
                    elif cls is Fragment:
                        pkt.ts_ns = ts_ns
                        fragment(pkt)
                    elif cls is Tunnel:
                        pkt.ts_ns = ts_ns
                        tunnel(pkt)
            except Exception as exc:
                tel.component_failed("tracker", "packet", exc)
            if n >= check_at:
                check_at = n + check_every
                tel.packets, tel.last_packet_ts = n, ts
                pipeline._tick()
                if on_check is not None:
                    on_check(pipeline)
                if pipeline.stopping:
                    break
    finally:
        tel.packets = n
        tel.fast_path_packets += fast.taken
        if n:
            tel.last_packet_ts = ts


cdef inline unsigned int _u32(buf_t b, Py_ssize_t o, bint little):
    if little:
        return (<unsigned int>b[o + 3] << 24) | (b[o + 2] << 16) | (b[o + 1] << 8) | b[o]
    return (<unsigned int>b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]


def feed_pcap(pipeline, capture, int check_every, on_check):
    """`Pipeline.feed(capture)` for a classic pcap file (same effects), reading its records
    straight from the file's buffers (`CaptureFile.buffers`): a packet the fast path takes
    costs no frame tuple and no copy of its bytes. The record walk is `cpcap.records`'."""
    cdef FastPath fast = FastPath(pipeline.tracker)
    cdef long long n, check_at
    cdef Py_ssize_t pos, nbuf, start, end, rsize, taken
    cdef unsigned int caplen, max_caplen
    cdef long long scale, ns
    cdef object ts_ns, wire_len
    cdef bint little, corrupt, stop = False
    cdef int linktype
    cdef buf_t b
    decode = _packet.decode
    Packet, Fragment, Tunnel = _packet.Packet, _packet.Fragment, _packet.Tunnel
    tracker = pipeline.tracker
    track, fragment, tunnel = tracker.packet, tracker.fragment, tracker.tunnel
    tel = pipeline.telemetry
    malformed = tel.malformed
    n = tel.packets
    check_at = n + check_every
    ts = tel.last_packet_ts
    buffers = capture.buffers()
    try:
        buf, layout = next(buffers)
        rsize, little, scale, linktype_obj, max_caplen = layout
        linktype = linktype_obj
        while True:
            b = <buf_t>PyBytes_AS_STRING(buf)
            nbuf = PyBytes_GET_SIZE(buf)
            pos = taken = 0
            corrupt = False
            while pos + rsize <= nbuf:
                caplen = _u32(b, pos + 8, little)
                if caplen > max_caplen:
                    corrupt = True
                    break
                start = pos + rsize
                end = start + caplen
                if end > nbuf:
                    break
                # int64 holds any u32 seconds * 1e9 + u32 fraction * 1000; the float is
                # Python's division of the exact int, as `feed` does it
                ns = (<long long>_u32(b, pos, little) * 1000000000
                      + <long long>_u32(b, pos + 4, little) * scale)
                ts_ns = ns
                wire_len = _u32(b, pos + 12, little)
                pos = end
                taken += 1
                ts = ts_ns / 1_000_000_000
                n += 1
                tel.packets = n
                try:
                    if not fast.take_at(linktype, b + start, caplen, ts, ts_ns):
                        data = PyBytes_FromStringAndSize(<const char*>b + start, caplen)
                        pkt = decode(linktype_obj, data, ts, wire_len)
                        cls = type(pkt)
                        if cls is Packet:
                            pkt.ts_ns = ts_ns
                            track(pkt)
                        elif cls is Layer:
                            malformed[pkt] += 1
                        elif cls is Fragment:
                            pkt.ts_ns = ts_ns
                            fragment(pkt)
                        elif cls is Tunnel:
                            pkt.ts_ns = ts_ns
                            tunnel(pkt)
                except Exception as exc:
                    tel.component_failed("tracker", "packet", exc)
                if n >= check_at:
                    check_at = n + check_every
                    tel.packets, tel.last_packet_ts = n, ts
                    pipeline._tick()
                    if on_check is not None:
                        on_check(pipeline)
                    if pipeline.stopping:
                        stop = True
                        break
            if stop:
                break
            buf, layout = buffers.send((taken, pos, corrupt))
    except StopIteration:
        pass
    finally:
        buffers.close()
        tel.packets = n
        tel.fast_path_packets += fast.taken
        if n:
            tel.last_packet_ts = ts
