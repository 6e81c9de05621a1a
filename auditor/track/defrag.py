"""IP fragment reassembly, bounded: enough to read fragmented DNS responses and QUIC/UDP
datagrams that cross the MTU, never enough to let a fragment flood grow memory.

Datagrams are keyed as RFC 791/8200 say (addresses, protocol, identification). Fragments that
overlap are accepted only when the overlapping bytes are identical (a plain duplicate); any
other overlap drops the whole datagram, as Linux does since its FragmentSmack fixes and as
RFC 5722 requires for IPv6: a sender that makes two copies disagree is choosing which one the
receiver sees. The drop is counted (`packets_malformed_total{layer="fragment"}`) and reported
to `on_conflict` (the `conflicting_retransmission` detector raises it).

Caps: 65,535 bytes per datagram, `max_datagrams` pending, `max_bytes` held in all. A datagram
that does not complete within `timeout` seconds, or is pushed out by a cap, is dropped and
counted in `table_evictions_total{table="fragments"}`.
"""
from __future__ import annotations

from bisect import bisect_left, insort
from collections import OrderedDict
from typing import Callable

from auditor.decode.packet import Fragment
from auditor.telemetry import Layer, Table, Telemetry

MAX_DATAGRAM = 65535


class _Pending:
    __slots__ = ("pieces", "starts", "longest", "size", "total", "frames", "ip_len", "first_ts",
                 "first_ns")

    def __init__(self, ts: float, ts_ns: int | None = None):
        self.pieces: dict[int, bytes] = {}
        self.starts: list[int] = []       # sorted offsets, to find overlaps without a scan
        self.longest = 0
        self.size = 0
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
        if _disagrees(entry, frag.offset, frag.data):
            self._drop(key)
            self.telemetry.bad(Layer.FRAGMENT)
            if self.on_conflict is not None:
                self.on_conflict(frag)
            return None
        if frag.offset not in entry.pieces:
            while self.held + len(frag.data) > self.max_bytes and len(self._pending) > 1:
                self._evict_oldest(keep=key)
            entry.pieces[frag.offset] = frag.data
            insort(entry.starts, frag.offset)
            entry.longest = max(entry.longest, len(frag.data))
            entry.size += len(frag.data)
            self.held += len(frag.data)
        if not frag.more:
            entry.total = end
        if entry.total is None or entry.size < entry.total:
            return None
        data = _assemble(entry.pieces, entry.total)
        if data is None:
            return None
        self._drop(key)
        return data, entry.frames, entry.ip_len, entry.first_ts, entry.first_ns

    def _drop(self, key: tuple) -> None:
        entry = self._pending.pop(key)
        self.held -= sum(len(p) for p in entry.pieces.values())

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


def _disagrees(entry: _Pending, offset: int, data: bytes) -> bool:
    """Does `data` at `offset` overlap a held piece with different bytes?"""
    end = offset + len(data)
    starts = entry.starts
    for i in range(bisect_left(starts, offset - entry.longest), bisect_left(starts, end)):
        off = starts[i]
        piece = entry.pieces[off]
        lo, hi = max(off, offset), min(off + len(piece), end)
        if lo < hi and piece[lo - off:hi - off] != data[lo - offset:hi - offset]:
            return True
    return False


def _assemble(pieces: dict[int, bytes], total: int) -> bytes | None:
    """The datagram if the pieces cover [0, total) without a gap, else None."""
    out = bytearray()
    for offset in sorted(pieces):
        if offset > len(out):
            return None
        out += pieces[offset][len(out) - offset:]
    return bytes(out[:total]) if len(out) >= total else None
