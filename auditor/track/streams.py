"""Just enough TCP reassembly to read the first bytes of one direction of a stream, and to
notice when the sender says two different things about the same bytes.

We only ever need a prefix: a ClientHello split over segments, an HTTP request header, DNS
messages over TCP. So the buffer is capped per flow (in-order and out-of-order bytes
together) and all buffers share one byte budget; what does not fit is dropped and counted
(`table_evictions_total{table="reassembly"}`). Full stream reassembly (as Zeek or Suricata
do it) would cost memory per flow that a sidecar cannot afford under a flood.

A retransmission must repeat the bytes it retransmits. A sender that can make one copy die
before the server (a small TTL) and another arrive can show us one name and the server
another; so every byte of a new segment that overlaps bytes already held is compared, and a
difference is recorded in `conflict` (the first copy is kept, but nothing read from this
stream can be trusted to be what the server got).
"""
from __future__ import annotations

from auditor.telemetry import Table, Telemetry

_SEQ_MOD = 1 << 32
_HALF = 1 << 31


class Budget:
    """Bytes held by all reassembly buffers together, at most `limit`."""
    __slots__ = ("limit", "held", "telemetry")

    def __init__(self, limit: int, telemetry: Telemetry) -> None:
        self.limit, self.held, self.telemetry = limit, 0, telemetry

    def take(self, n: int) -> int:
        """Reserve up to n bytes; returns how many were granted (the rest is an eviction)."""
        granted = max(0, min(n, self.limit - self.held))
        self.held += granted
        if granted < n:
            self.telemetry.evicted(Table.REASSEMBLY)
        return granted

    def give(self, n: int) -> None:
        self.held -= n


class StreamPrefix:
    """In-order bytes of one TCP direction, starting at the first payload (or SYN + 1)."""

    __slots__ = ("base_seq", "next_seq", "data", "_ooo", "_ooo_bytes", "cap", "overflowed",
                 "conflict", "budget")

    MAX_OUT_OF_ORDER = 16

    def __init__(self, cap: int = 65536, isn: int | None = None, budget: Budget | None = None):
        self.next_seq: int | None = None if isn is None else (isn + 1) % _SEQ_MOD
        self.base_seq = self.next_seq        # sequence number of data[0]
        self.data = bytearray()
        self._ooo: dict[int, bytes] = {}
        self._ooo_bytes = 0
        self.cap = cap
        self.overflowed = False
        self.conflict: tuple[int, int] | None = None   # (seq, length) of the first disagreement
        self.budget = budget

    @property
    def held(self) -> int:
        return len(self.data) + self._ooo_bytes

    def add(self, seq: int, payload: bytes) -> bool:
        """Add one segment; True when the contiguous prefix grew."""
        if self.next_seq is None:
            self.next_seq = self.base_seq = seq
        self._compare(seq, payload)
        ahead = (seq - self.next_seq) % _SEQ_MOD
        if ahead >= _HALF:  # starts before what we have: retransmission or overlap
            behind = _SEQ_MOD - ahead
            if behind >= len(payload):
                return False
            payload = payload[behind:]
            ahead = 0
        if ahead:
            self._hold(seq, payload)
            return False
        self._append(payload)
        while self._ooo:  # pull in segments that now fit
            grown = False
            for s in list(self._ooo):
                off = (s - self.next_seq) % _SEQ_MOD
                if off == 0 or off >= _HALF:
                    seg = self._ooo.pop(s)
                    self._release(len(seg))
                    skip = 0 if off == 0 else _SEQ_MOD - off
                    if skip < len(seg):
                        self._append(seg[skip:])
                        grown = True
            if not grown:
                break
        return True

    def _compare(self, seq: int, payload: bytes) -> None:
        """Record a conflict if `payload` disagrees with any byte already held."""
        if self.conflict is not None or not payload:
            return
        base = self.base_seq if self.base_seq is not None else seq
        start = (seq - base) % _SEQ_MOD
        if start >= _HALF:
            start -= _SEQ_MOD                   # begins before what we hold
        lo, hi = max(start, 0), min(start + len(payload), len(self.data))
        if lo < hi and self.data[lo:hi] != payload[lo - start:hi - start]:
            self.conflict = (seq, len(payload))
            return
        for s, seg in self._ooo.items():
            off = (s - seq) % _SEQ_MOD
            if off >= _HALF:
                off -= _SEQ_MOD                 # the held segment starts before this one
            lo, hi = max(off, 0), min(off + len(seg), len(payload))
            if lo < hi and payload[lo:hi] != seg[lo - off:hi - off]:
                self.conflict = (seq, len(payload))
                return

    def _hold(self, seq: int, payload: bytes) -> None:
        if len(self._ooo) >= self.MAX_OUT_OF_ORDER or seq in self._ooo:
            return
        room = self.cap - self.held
        if len(payload) > room:
            payload = payload[:max(room, 0)]
            self.overflowed = True
        n = self._reserve(len(payload))
        if n:
            self._ooo[seq] = payload[:n]
            self._ooo_bytes += n

    def _append(self, payload: bytes) -> None:
        room = self.cap - self.held
        if len(payload) > room:
            payload = payload[:max(room, 0)]
            self.overflowed = True
        n = self._reserve(len(payload))
        self.data += payload[:n]
        self.next_seq = ((self.next_seq or 0) + n) % _SEQ_MOD

    def _reserve(self, n: int) -> int:
        if self.budget is None or not n:
            return n
        granted = self.budget.take(n)
        if granted < n:
            self.overflowed = True
        return granted

    def _release(self, n: int) -> None:
        self._ooo_bytes -= n
        if self.budget is not None:
            self.budget.give(n)

    def consume(self, n: int) -> None:
        """Forget the first n bytes (already decoded), keeping the sequence position."""
        del self.data[:n]
        if self.base_seq is not None:
            self.base_seq = (self.base_seq + n) % _SEQ_MOD
        if self.budget is not None:
            self.budget.give(n)

    def freeze(self) -> None:
        """Hold what is here, take no new bytes, but still compare every retransmission."""
        self.cap = len(self.data)
        for seg in self._ooo.values():
            self._release(len(seg))
        self._ooo.clear()

    def release(self) -> None:
        """Give every byte back to the budget (the stream is dropped)."""
        if self.budget is not None:
            self.budget.give(len(self.data) + self._ooo_bytes)
        self.data = bytearray()
        self._ooo.clear()
        self._ooo_bytes = 0
