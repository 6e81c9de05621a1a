"""IP fragment reassembly, bounded: enough to read fragmented DNS responses and QUIC/UDP
datagrams that cross the MTU, never enough to let a fragment flood grow memory.

Datagrams are keyed as RFC 791/8200 say (addresses, protocol, identification). Fragments that
overlap are accepted only when the overlapping bytes are identical (a plain duplicate); any
other overlap drops the whole datagram, as Linux does since its FragmentSmack fixes and as
RFC 5722 requires for IPv6: a sender that makes two copies disagree is choosing which one the
receiver sees. The drop is counted (`packets_malformed_total{layer="fragment"}`) and reported
to `on_conflict` (the `conflicting_retransmission` detector raises it).

What is held of a datagram is its disjoint runs of bytes, merged as fragments fill the gaps
between them, so a fragment is checked against the runs it meets and not against every
fragment that came before (a long first fragment followed by thousands of tiny identical
overlaps, or one fragment replayed forever, made each check a walk over everything held),
and a repeated byte is held and counted once.

Caps: 65,535 bytes per datagram, `MAX_RUNS` gaps' worth of runs per datagram (an ordinary
datagram arrives in a few dozen fragments; only a sender splitting it on purpose leaves
hundreds of holes), `max_datagrams` pending, `max_bytes` held in all. A datagram that does
not complete within `timeout` seconds, or is pushed out by a cap, is dropped and counted in
`table_evictions_total{table="fragments"}`.
"""
from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from typing import Callable

from auditor.decode.packet import Fragment
from auditor.telemetry import Layer, Table, Telemetry

MAX_DATAGRAM = 65535
MAX_RUNS = 256


class _Pending:
    __slots__ = ("starts", "runs", "size", "total", "frames", "ip_len", "first_ts", "first_ns")

    def __init__(self, ts: float, ts_ns: int | None = None):
        self.starts: list[int] = []               # sorted offsets of the runs
        self.runs: dict[int, bytearray] = {}      # offset -> bytes; disjoint, never adjacent
        self.size = 0                             # bytes held (covered once each)
        self.total: int | None = None
        self.frames = 0
        self.ip_len = 0
        self.first_ts = ts
        self.first_ns = ts_ns     # exact time of the first fragment seen (capture files)


class Defragmenter:
    def __init__(self, telemetry: Telemetry, max_datagrams: int = 1024, timeout: float = 30.0,
                 max_bytes: int = 8 << 20, on_conflict: Callable[[Fragment], None] | None = None):
        self.telemetry = telemetry
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.on_conflict = on_conflict
        self.held = 0
        self._pending: OrderedDict[tuple, _Pending] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, frag: Fragment) -> tuple[bytes, int, int, float, int | None] | None:
        """Store one fragment; when its datagram is complete, return (L4 bytes, frames,
        IP bytes of all its fragments, time of the first fragment seen, the same in int ns
        or None) and forget it."""
        key = (frag.version, frag.src, frag.dst, frag.proto, frag.ident,
               None if frag.tunnel is None else frag.tunnel.scope)   # inner: never the node's
        entry = self._pending.get(key)
        if entry is None:
            self._expire(frag.ts)
            if len(self._pending) >= self.max_datagrams:
                self._evict_oldest()
            entry = self._pending[key] = _Pending(frag.ts, frag.ts_ns)
        entry.frames += 1
        entry.ip_len += frag.ip_len
        end = frag.offset + len(frag.data)
        if end > MAX_DATAGRAM:  # a datagram cannot be this large: drop it as hostile
            self._drop(key)
            self.telemetry.evicted(Table.FRAGMENTS)
            return None
        met = _meet(entry, frag.offset, frag.data)
        if met is None:
            self._drop(key)
            self.telemetry.bad(Layer.FRAGMENT)
            if self.on_conflict is not None:
                self.on_conflict(frag)
            return None
        first, last, new = met
        if len(entry.starts) - (last - first) + 1 > MAX_RUNS:   # split on purpose: hostile
            self._drop(key)
            self.telemetry.evicted(Table.FRAGMENTS)
            return None
        if new:
            while self.held + new > self.max_bytes and len(self._pending) > 1:
                self._evict_oldest(keep=key)
            _merge(entry, frag.offset, frag.data, first, last)
            entry.size += new
            self.held += new
        if not frag.more:
            entry.total = end
        total = entry.total
        if total is None or entry.size < total or not entry.starts or entry.starts[0] != 0:
            return None
        run = entry.runs[0]
        if len(run) < total:
            return None
        self._drop(key)
        return bytes(run[:total]), entry.frames, entry.ip_len, entry.first_ts, entry.first_ns

    def _drop(self, key: tuple) -> None:
        entry = self._pending.pop(key)
        self.held -= entry.size

    def _evict_oldest(self, keep: tuple | None = None) -> None:
        for key in self._pending:
            if key != keep:
                self._drop(key)
                self.telemetry.evicted(Table.FRAGMENTS)
                return

    def _expire(self, now: float) -> None:
        pending = self._pending
        while pending:
            key, entry = next(iter(pending.items()))
            if now - entry.first_ts <= self.timeout:
                break
            self._drop(key)
            self.telemetry.evicted(Table.FRAGMENTS)


def _meet(entry: _Pending, offset: int, data: bytes) -> tuple[int, int, int] | None:
    """The runs `data` at `offset` overlaps or touches, as `entry.starts[first:last]`, and how
    many of its bytes are new; None if an overlapped byte differs from the one held."""
    end = offset + len(data)
    starts, runs = entry.starts, entry.runs
    first = bisect_right(starts, offset) - 1
    if first < 0 or starts[first] + len(runs[starts[first]]) < offset:
        first += 1      # the run before `offset` ends short of it
    last = bisect_right(starts, end)
    new = end - offset
    for i in range(first, last):
        start = starts[i]
        run = runs[start]
        lo, hi = max(start, offset), min(start + len(run), end)
        if lo < hi:
            if run[lo - start:hi - start] != data[lo - offset:hi - offset]:
                return None
            new -= hi - lo
    return first, last, new


def _merge(entry: _Pending, offset: int, data: bytes, first: int, last: int) -> None:
    """Put `data` into the runs, joining it and the runs it meets (`starts[first:last]`, all
    agreeing with it) into one. Bytes are appended to the leftmost run in place, so a
    datagram arriving in order costs its length once, not once per fragment."""
    starts, runs = entry.starts, entry.runs
    if first < last and starts[first] <= offset:
        base_start = starts[first]
        base = runs[base_start]
        have = base_start + len(base)
        if offset + len(data) > have:
            base += data[have - offset:]
        merged = starts[first + 1:last]
        del starts[first + 1:last]
    else:
        base_start, base = offset, bytearray(data)
        merged = starts[first:last]
        starts[first:last] = [offset]
        runs[offset] = base
    for start in merged:
        run = runs.pop(start)
        have = base_start + len(base)
        if start + len(run) > have:
            base += run[have - start:]
