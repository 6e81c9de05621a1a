"""The DNS name cache: which name a client used to reach an IP, and the pending queries
that decide whether a response may be trusted at all.

Keyed by (client, answered IP), because two clients of one node may resolve the same CDN
address under different names, and the name that matters is the one *this* client asked
for. Entries are usable for max(TTL, `min_ttl`) seconds: clients routinely connect a moment
after a TTL-0 answer. Both tables are LRU-capped; evictions are counted per table so a
flood shows up in `table_evictions_total` instead of in memory. The name cache is capped in
bytes too: an entry holds a CNAME chain of up to 16 names of up to 253 characters (a tunnel's
scope lengthens the client key), so 100,000 crafted entries would hold ~500 MiB.
"""
from __future__ import annotations

from collections import OrderedDict

from auditor.telemetry import Table, Telemetry


ENTRY_OVERHEAD = 150        # bytes of objects per entry besides its strings (tuples, dict slot)
MAX_BYTES = 32 << 20        # ~6x what 100,000 ordinary entries take (~250 bytes each)


def _size(key: tuple[str, str], chain: tuple[str, ...]) -> int:
    return ENTRY_OVERHEAD + len(key[0]) + len(key[1]) + sum(map(len, chain))


class NameCache:
    """(client ip, answered ip) -> (queried name, full chain, expiry, from a trusted resolver).
    At most `max_entries` entries and `max_bytes` of them (`_size`), least recent out first."""

    def __init__(self, max_entries: int, telemetry: Telemetry, min_ttl: float = 30.0,
                 max_bytes: int = MAX_BYTES):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self.min_ttl = min_ttl
        self._telemetry = telemetry
        self._entries: OrderedDict[tuple[str, str], tuple[str, tuple[str, ...], float, bool]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def learn(self, client: str, chains: dict[str, tuple[str, ...]], ttls: dict[str, int], now: float,
              trusted: bool = False) -> None:
        entries = self._entries
        for ip, chain in chains.items():
            key = (client, ip)
            old = entries.get(key)
            if old is not None:
                self.bytes -= _size(key, old[1])
            entries[key] = (chain[0], chain, now + max(ttls.get(ip, 0), self.min_ttl), trusted)
            entries.move_to_end(key)
            self.bytes += _size(key, chain)
        evicted = 0
        while entries and (len(entries) > self.max_entries or self.bytes > self.max_bytes):
            key, value = entries.popitem(last=False)
            self.bytes -= _size(key, value[1])
            evicted += 1
        if evicted:
            self._telemetry.evicted(Table.DNS_CACHE, evicted)

    def lookup(self, client: str, ip: str, now: float) -> tuple[str, tuple[str, ...], bool] | None:
        """The most recent unexpired answer naming `ip` for `client` (queried name, chain,
        trusted), else None."""
        hit = self._entries.get((client, ip))
        if hit is None or hit[2] < now:
            return None
        return hit[0], hit[1], hit[3]

    def expire(self, now: float) -> None:
        # Entries are in learn order, not expiry order (TTLs differ); a full pass is cheap
        # relative to how rarely the pipeline calls it.
        dead = [(k, v) for k, v in self._entries.items() if v[2] < now]
        for k, v in dead:
            del self._entries[k]
            self.bytes -= _size(k, v[1])


class PendingQueries:
    """Queries awaiting their response: (client, client port, server, server port, id) -> sent ts.

    A response is trusted only if it matches one of these within `timeout` seconds; the
    entry is consumed so a second (spoofed or duplicated) answer is not trusted either.
    """

    def __init__(self, max_entries: int, telemetry: Telemetry, timeout: float = 30.0):
        self.max_entries = max_entries
        self.timeout = timeout
        self._telemetry = telemetry
        self._pending: OrderedDict[tuple, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def sent(self, key: tuple, now: float) -> None:
        self._pending[key] = now
        self._pending.move_to_end(key)
        if len(self._pending) > self.max_entries:
            self._pending.popitem(last=False)
            self._telemetry.evicted(Table.DNS_PENDING)

    def answered(self, key: tuple, now: float) -> bool:
        sent_at = self._pending.pop(key, None)
        return sent_at is not None and now - sent_at <= self.timeout

    def expire(self, now: float) -> None:
        pending = self._pending
        while pending:
            key, sent_at = next(iter(pending.items()))
            if now - sent_at <= self.timeout:
                break
            del pending[key]
