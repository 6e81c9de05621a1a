"""Just enough TCP reassembly to read the first bytes of one direction of a stream.

We only ever need a prefix: a ClientHello split over segments, an HTTP request header, DNS
messages over TCP. So the buffer is capped, out-of-order segments are held in a small
bounded map, and anything beyond the cap is dropped; full stream reassembly (as Zeek or
Suricata do it) would cost memory per flow that a sidecar cannot afford under a flood.
"""
from __future__ import annotations

_SEQ_MOD = 1 << 32
_HALF = 1 << 31


class StreamPrefix:
    """In-order bytes of one TCP direction, starting at the first payload (or SYN + 1)."""

    __slots__ = ("next_seq", "data", "_ooo", "cap", "overflowed")

    MAX_OUT_OF_ORDER = 16

    def __init__(self, cap: int = 65536, isn: int | None = None):
        self.next_seq = None if isn is None else (isn + 1) % _SEQ_MOD
        self.data = bytearray()
        self._ooo: dict[int, bytes] = {}
        self.cap = cap
        self.overflowed = False

    def add(self, seq: int, payload: bytes) -> bool:
        """Add one segment; True when the contiguous prefix grew."""
        if self.next_seq is None:
            self.next_seq = seq
        ahead = (seq - self.next_seq) % _SEQ_MOD
        if ahead >= _HALF:  # starts before what we have: retransmission or overlap
            behind = _SEQ_MOD - ahead
            if behind >= len(payload):
                return False
            payload = payload[behind:]
            ahead = 0
        if ahead:
            if len(self._ooo) < self.MAX_OUT_OF_ORDER:
                self._ooo.setdefault(seq, payload)
            return False
        self._append(payload)
        while self._ooo:  # pull in segments that now fit
            grown = False
            for s in list(self._ooo):
                off = (s - self.next_seq) % _SEQ_MOD
                if off == 0 or off >= _HALF:
                    seg = self._ooo.pop(s)
                    skip = 0 if off == 0 else _SEQ_MOD - off
                    if skip < len(seg):
                        self._append(seg[skip:])
                        grown = True
            if not grown:
                break
        return True

    def _append(self, payload: bytes) -> None:
        room = self.cap - len(self.data)
        if len(payload) > room:
            payload = payload[:max(room, 0)]
            self.overflowed = True
        self.data += payload
        self.next_seq = ((self.next_seq or 0) + len(payload)) % _SEQ_MOD

    def consume(self, n: int) -> None:
        """Forget the first n bytes (already decoded), keeping the sequence position."""
        del self.data[:n]
