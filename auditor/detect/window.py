"""What every detector shares: capped per-key state, the fire-once-per-window gate, and
the plumbing to raise a `Finding`.

All per-key state lives in `Capped` tables: LRU dicts bounded by `detectors.max_keys`. When
one is full the least recently touched key is dropped and counted under `detector_state`
in the evictions table (the tracker's, when the pipeline hands it over), so a flood of
distinct keys shows up in `table_evictions_total` instead of in memory.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable

from auditor.events import Finding
from auditor.track.flows import Flow
from auditor.track.names import Evictions

EVICTION_TABLE = "detector_state"


class Capped(OrderedDict):
    """An LRU dict of at most `max_keys` entries; `touch` marks a key recently used and
    evicts from the cold end, reporting how many went through `on_evict(n)`."""

    def __init__(self, max_keys: int, on_evict: Callable[[int], None]):
        super().__init__()
        self.max_keys = max_keys
        self._on_evict = on_evict

    def touch(self, key: Any, default_factory: Callable[[], Any]) -> Any:
        """The value for `key` (created with `default_factory` if absent), now most recent."""
        value = self.get(key)
        if value is None:
            value = self[key] = default_factory()
            if len(self) > self.max_keys:
                self.popitem(last=False)
                self._on_evict(1)
        else:
            self.move_to_end(key)
        return value

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.max_keys:
            self.popitem(last=False)
            self._on_evict(1)


class Detector:
    """Base of the six detectors: a name, a bound emit function, a re-fire window per key.

    `evictions` may be reassigned after construction (the tracker that owns the shared
    table is built after the components); the tables report through `self.evictions`.
    """
    name = "detector"

    def __init__(self, window_seconds: float, max_keys: int, evictions: Evictions | None = None):
        self.window = window_seconds
        self.max_keys = max_keys
        self.evictions = evictions if evictions is not None else Evictions()
        self._emit: Callable[[object], None] | None = None
        self._fired = self.table()  # key -> ts it last fired
        self.fired = 0

    def table(self) -> Capped:
        return Capped(self.max_keys, self._evicted)

    def _evicted(self, n: int) -> None:
        self.evictions.add(EVICTION_TABLE, n)

    def bind(self, emit: Callable[[object], None]) -> None:
        self._emit = emit

    def due(self, key: str, ts: float) -> bool:
        """True (and the window starts) unless `key` fired less than a window ago."""
        last = self._fired.get(key)
        if last is not None and 0 <= ts - last < self.window:
            return False
        self._fired.put(key, ts)
        return True

    def fire(self, ts: float, severity: str, key: str, evidence: dict[str, Any],
             flow: Flow | None = None, *, source_ip: str | None = None,
             destination_ip: str | None = None, destination_port: int | None = None,
             destination_domain: str | None = None) -> bool:
        """Raise a finding unless `key` already fired in this window; True if raised."""
        if not self.due(key, ts):
            return False
        if flow is not None:
            source_ip = source_ip or flow.client_ip
            destination_ip = destination_ip or flow.server_ip
            destination_port = destination_port if destination_port is not None else flow.server_port
            destination_domain = destination_domain or flow.domain
        self.fired += 1
        if self._emit is not None:
            self._emit(Finding(ts, self.name, severity, key, evidence, flow, source_ip=source_ip,
                               destination_ip=destination_ip, destination_port=destination_port,
                               destination_domain=destination_domain))
        return True
