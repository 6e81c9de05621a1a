"""IP fragment reassembly, bounded: enough to read fragmented DNS responses and QUIC/UDP
datagrams that cross the MTU, never enough to let a fragment flood grow memory.

Datagrams are keyed as RFC 791/8200 say (addresses, protocol, identification). Overlapping
fragments keep the first copy (the policy of most stacks, and of Suricata's default); a
datagram that does not complete within `timeout` seconds, or is pushed out by the cap, is
dropped and counted in `table_evictions_total{table="fragments"}`.
"""
from __future__ import annotations

from collections import OrderedDict

from auditor.decode.packet import Fragment
from auditor.telemetry import Table, Telemetry

MAX_DATAGRAM = 65535


class _Pending:
    __slots__ = ("pieces", "size", "total", "frames", "ip_len", "first_ts")

    def __init__(self, ts: float):
        self.pieces: dict[int, bytes] = {}
        self.size = 0
        self.total: int | None = None
        self.frames = 0
        self.ip_len = 0
        self.first_ts = ts


class Defragmenter:
    def __init__(self, telemetry: Telemetry, max_datagrams: int = 1024, timeout: float = 30.0):
        self.telemetry = telemetry
        self.max_datagrams = max_datagrams
        self.timeout = timeout
        self._pending: OrderedDict[tuple, _Pending] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, frag: Fragment) -> tuple[bytes, int, int] | None:
        """Store one fragment; when its datagram is complete, return (L4 bytes, frames,
        IP bytes of all its fragments) and forget it."""
        key = (frag.version, frag.src, frag.dst, frag.proto, frag.ident)
        entry = self._pending.get(key)
        if entry is None:
            self._expire(frag.ts)
            if len(self._pending) >= self.max_datagrams:
                self._pending.popitem(last=False)
                self.telemetry.evicted(Table.FRAGMENTS)
            entry = self._pending[key] = _Pending(frag.ts)
        entry.frames += 1
        entry.ip_len += frag.ip_len
        end = frag.offset + len(frag.data)
        if end > MAX_DATAGRAM:  # a datagram cannot be this large: drop it as hostile
            del self._pending[key]
            self.telemetry.evicted(Table.FRAGMENTS)
            return None
        if frag.offset not in entry.pieces:
            entry.pieces[frag.offset] = frag.data
            entry.size += len(frag.data)
        if not frag.more:
            entry.total = end
        if entry.total is None or entry.size < entry.total:
            return None
        data = _assemble(entry.pieces, entry.total)
        if data is None:
            return None
        del self._pending[key]
        return data, entry.frames, entry.ip_len

    def _expire(self, now: float) -> None:
        pending = self._pending
        while pending:
            key, entry = next(iter(pending.items()))
            if now - entry.first_ts <= self.timeout:
                break
            del pending[key]
            self.telemetry.evicted(Table.FRAGMENTS)


def _assemble(pieces: dict[int, bytes], total: int) -> bytes | None:
    """The datagram if the pieces cover [0, total) without a gap, else None."""
    out = bytearray()
    for offset in sorted(pieces):
        if offset > len(out):
            return None
        out += pieces[offset][len(out) - offset:]
    return bytes(out[:total]) if len(out) >= total else None
