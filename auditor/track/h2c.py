"""Following a cleartext HTTP/2 connection (h2c with prior knowledge, RFC 9113 3.3).

Its first request's `:authority` names the flow as an HTTP/1 Host would (SPEC §7); a request
that looks like DNS over HTTPS (RFC 8484) marks the flow (`flow.doh`, read by the
`encrypted_dns` detector), and the DNS messages it carries — a GET's `?dns=`, a POST body,
the response body, in DATA frames — are handed to DnsWatch, so they become the same
`DnsQuery`/`DnsAnswered` facts as DNS on port 53.

An HTTP/1.1 request with `Upgrade: h2c` (RFC 7540 3.2) is named by its Host and then followed
the same way, from the client's preface and from after the server's 101 head.

Both directions are followed after naming (the answers come later), which is why this is
bounded per connection and not only by the shared reassembly budget: at most `MAX_BYTES`
read, `MAX_FRAMES` frames and `MAX_HEADER_BYTES` of header blocks (then the connection is
dropped from following, counted as a reassembly eviction), at most `MAX_STREAMS` DoH exchanges collected at once, each body at
most `MAX_BODY` (a DNS message's own limit) and charged to the shared reassembly budget, as
are both HPACK tables (`TABLE_COST` per byte the peer allowed): a connection the budget
cannot hold is not followed. Anything that breaks framing or HPACK stops
that connection (counted malformed under `http`): with its HPACK table out of step nothing
after it can be read. The server side starts at the first server segment after the client's
preface (a server preface sent before it is not seen; its frames are skipped, not misread).
"""
from __future__ import annotations

from typing import Callable

from auditor.decode import h2
from auditor.decode.outcome import UNDECODABLE, DecodeError
from auditor.decode.text import clipped
from auditor.flow import Flow
from auditor.telemetry import Layer, Table, Telemetry
from auditor.track.streams import Budget, StreamPrefix

MAX_BYTES = 4 << 20
MAX_FRAMES = 4096
# HPACK decoding is the costly part (~5 ms per 16 KiB block of Huffman literals, measured):
# header-block bytes per connection are capped apart, ~85 ms of CPU at most. A DoH request's
# headers take ~100-200 bytes once the table is warm, so this is thousands of lookups.
MAX_HEADER_BYTES = 256 << 10
MAX_STREAMS = 32
MAX_BODY = 65535
# Python bytes an HPACK table holds per byte of its RFC 7541 size, at worst: a 32-byte entry
# (empty name and value) is ~130 bytes of objects (measured: 4x). Both tables are charged to
# the shared reassembly budget at that rate, so a flood of connections that fill 64 KiB
# tables with empty entries is bounded by the budget, not only by the flow table's size.
TABLE_COST = 4
BUFFER = h2.MAX_FRAME + 9 + 4096          # one largest frame plus what trails it in a segment

# (flow, raw DNS message, from_client, ts, HTTP/2 stream id)
Deliver = Callable[[Flow, bytes, bool, float, int], None]


class H2Conn:
    """One h2c connection's reading state: both byte streams, both HPACK tables, and the
    bodies of the DoH exchanges in progress, keyed (stream id, from_client)."""
    __slots__ = ("client", "server", "blocks", "bodies", "preface", "frames", "read",
                 "header_bytes", "request_seen", "done", "upgraded", "server_head", "budget",
                 "tables")

    def __init__(self, client: StreamPrefix, budget: Budget | None, upgraded: bool = False) -> None:
        client.cap = max(client.cap, BUFFER)
        self.client = client
        self.server = StreamPrefix(BUFFER, budget=budget)
        self.blocks = (h2.HeaderBlocks(), h2.HeaderBlocks())     # server's, client's
        # Charged to the shared reassembly budget like any buffered stream byte: 32 bodies
        # of 64 KiB per connection, over many connections, would otherwise escape it.
        self.bodies: dict[tuple[int, bool], bytearray] = {}
        self.budget = budget
        self.preface = False
        self.frames = self.read = self.header_bytes = 0
        self.request_seen = False
        self.done = False
        # After an HTTP/1.1 `Upgrade: h2c` the server's side starts with its 101 head.
        self.upgraded = self.server_head = upgraded
        self.tables = [0, 0]        # budget bytes held for each HPACK table (server's, client's)
        if not (self.allow_table(False, h2.HPACK_TABLE) and self.allow_table(True, h2.HPACK_TABLE)):
            self.release()          # the budget is spent: this connection is not followed

    def allow_table(self, side: bool, size: int) -> bool:
        """Let `side`'s encoder use a table of `size` (its peer's SETTINGS said so), charged
        to the budget; False when the budget cannot hold it (counted as an eviction)."""
        size = min(size, h2.MAX_TABLE)
        want, held = TABLE_COST * size, self.tables[side]
        if self.budget is not None:
            if want > held:
                granted = self.budget.take(want - held)
                if granted < want - held:
                    self.budget.give(granted)
                    return False
            else:
                self.budget.give(held - want)
        self.tables[side] = want
        self.blocks[side].allow_table(size)
        return True

    def release(self) -> None:
        self.client.release()
        self.server.release()
        for key in list(self.bodies):
            self.drop_body(key)
        if self.budget is not None:
            self.budget.give(self.tables[0] + self.tables[1])
        self.tables = [0, 0]
        self.done = True

    def grow_body(self, key: tuple[int, bool], data: bytes) -> bool:
        """Add to a body; False (the body dropped) when the budget cannot hold it."""
        if self.budget is not None:
            granted = self.budget.take(len(data))
            if granted < len(data):     # counted as an eviction by the budget
                self.budget.give(granted)
                return False
        self.bodies[key] += data
        return True

    def drop_body(self, key: tuple[int, bool]) -> bytearray:
        body = self.bodies.pop(key)
        if self.budget is not None:
            self.budget.give(len(body))
        return body


class H2Watch:
    """The tracker's h2c reader: `segment` for every payload of a followed connection."""

    def __init__(self, deliver: Deliver, telemetry: Telemetry) -> None:
        self.deliver = deliver
        self.telemetry = telemetry

    def segment(self, flow: Flow, conn: H2Conn, seq: int, payload: bytes, from_client: bool,
                ts: float) -> bool:
        """Add one segment; True once nothing more will name the flow (its first request was
        read, or the connection cannot be read)."""
        stream = conn.client if from_client else conn.server
        if not conn.done and stream.add(seq, payload):
            self.pump(flow, conn, from_client, ts)
        return conn.request_seen or conn.done

    def pump(self, flow: Flow, conn: H2Conn, from_client: bool, ts: float) -> bool:
        """Read the complete frames one direction holds; True as `segment`."""
        stream = conn.client if from_client else conn.server
        buf = bytes(stream.data)
        off = 0
        try:
            if from_client and not conn.preface:
                if len(buf) < len(h2.PREFACE):
                    return conn.done
                if not buf.startswith(h2.PREFACE):
                    if conn.upgraded:           # refused (no 101): HTTP/1 goes on, unread
                        conn.release()
                        return True
                    raise DecodeError("not the HTTP/2 client preface")
                conn.preface, off = True, len(h2.PREFACE)
            if not from_client and conn.server_head:
                end = buf.find(b"\r\n\r\n")
                if end < 0 and len(buf) < h2.MAX_BLOCK:
                    return conn.done
                if end < 0 or buf[9:12] != b"101":   # refused: an HTTP/1 response
                    conn.release()
                    return True
                conn.server_head, off = False, end + 4
            frames, used = h2.split_frames(buf[off:] if off else buf)
            stream.consume(off + used)
            conn.read += off + used
            conn.frames += len(frames)
            for frame in frames:
                self._frame(flow, conn, frame, from_client, ts)
                if conn.done:
                    break
        except UNDECODABLE:
            self.telemetry.bad(Layer.HTTP)
            conn.release()
            return True
        if not conn.done and (conn.read > MAX_BYTES or conn.frames > MAX_FRAMES
                              or stream.overflowed):
            self.telemetry.evicted(Table.REASSEMBLY)
            conn.release()
        return conn.request_seen or conn.done

    def _frame(self, flow: Flow, conn: H2Conn, frame: h2.Frame, from_client: bool,
               ts: float) -> None:
        blocks = conn.blocks[from_client]
        if frame.type in (h2.HEADERS, h2.CONTINUATION) or (frame.type == h2.PUSH_PROMISE
                                                           and not from_client):
            conn.header_bytes += len(frame.payload)
            if conn.header_bytes > MAX_HEADER_BYTES:
                self.telemetry.evicted(Table.REASSEMBLY)
                conn.release()
                return
            headers = blocks.add(frame)
            if headers is not None and not headers.promise:
                self._headers(flow, conn, headers, from_client, ts)
            return
        if blocks.open:
            raise DecodeError("a frame inside a header block")
        if frame.type == h2.SETTINGS:
            size = h2.settings(frame).get(h2.HEADER_TABLE_SIZE)
            if size is not None and not conn.allow_table(not from_client, size):
                conn.release()      # what the other side's encoder may now use: unaffordable
        elif frame.type == h2.DATA:
            key = (frame.stream, from_client)
            body = conn.bodies.get(key)
            if body is None:
                return
            data = h2.unpad(frame)
            if len(body) + len(data) > MAX_BODY:
                conn.drop_body(key)         # larger than any DNS message: not one
                self.telemetry.bad(Layer.DNS)
            elif not conn.grow_body(key, data):
                conn.drop_body(key)
            elif frame.flags & h2.END_STREAM:
                self._complete(flow, conn, key, ts)

    def _headers(self, flow: Flow, conn: H2Conn, headers: h2.Headers, from_client: bool,
                 ts: float) -> None:
        sid = headers.stream
        if from_client:
            if (sid, True) in conn.bodies or (sid, False) in conn.bodies:
                if headers.end_stream and (sid, True) in conn.bodies:   # trailers end a body
                    self._complete(flow, conn, (sid, True), ts)
                return
            if not conn.request_seen:
                conn.request_seen = True
                host = h2.authority(headers)
                if not flow.named and host is not None:
                    flow.http_host, flow.app_protocol = clipped(host), "http"
            if not h2.is_doh(headers):
                return
            flow.doh = True
            if len(conn.bodies) >= MAX_STREAMS:
                self.telemetry.evicted(Table.REASSEMBLY)
                return
            conn.bodies[(sid, False)] = bytearray()         # the answer comes back on it
            method = headers.get(":method")
            if method == "GET":
                query = h2.doh_get_query(headers.get(":path") or "")
                if query is not None:
                    self.deliver(flow, query, True, ts, sid)
            elif not headers.end_stream:
                conn.bodies[(sid, True)] = bytearray()
            return
        key = (sid, False)
        if key not in conn.bodies:
            return
        status = headers.get(":status")
        if status is not None and status.startswith("1"):
            return                                          # informational; more follow
        ctype = (headers.get("content-type") or "").lower()
        if status is not None and (status != "200" or h2.DOH_TYPE not in ctype):
            conn.drop_body(key)                             # not a DNS answer
        elif headers.end_stream:
            self._complete(flow, conn, key, ts)

    def _complete(self, flow: Flow, conn: H2Conn, key: tuple[int, bool], ts: float) -> None:
        body = conn.drop_body(key)
        if body:
            self.deliver(flow, bytes(body), key[1], ts, key[0])
