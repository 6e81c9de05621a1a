"""What every detector shares: its settings model, the context it is built with, capped
per-key state, the fire-once-per-window gate, and the plumbing to raise a `Finding`.

A detector is one file: a `Detector` subclass that declares its `name`, the `severities` it
can raise, its own `Settings` model (thresholds with defaults and descriptions), and
handlers for the events it needs. Every detector takes the same constructor
`(settings, context)`. The settings schema, the pre-created metric series and the
enable/disable switch are derived from the classes listed in `registry.DETECTORS`.

All per-key state lives in `Capped` tables: LRU dicts bounded by `detectors.max_keys`. When
one is full the least recently touched key is dropped and counted under `detector_state`
in `table_evictions_total`, so a flood of distinct keys shows up there instead of in memory.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from auditor.components import Component, Emit
from auditor.events import Finding
from auditor.flow import Flow
from auditor.telemetry import Table, Telemetry

SEVERITIES = ("low", "medium", "high", "critical")


class Evidence(BaseModel):
    """What a finding says; each detector declares its own fields (subclass)."""
    model_config = ConfigDict(extra="forbid")


def evidence_fields(evidence: Evidence) -> dict[str, Any]:
    """`evidence.model_dump(exclude_none=True)` for an Evidence, whose fields are flat (no
    nested models): a third of the cost, paid once per finding (a flow's worth on a flood)."""
    return {k: v for k, v in evidence.__dict__.items() if v is not None}


class DetectorSettings(BaseModel):
    """Thresholds of one detector; subclasses add their own fields."""
    model_config = ConfigDict(extra="forbid")
    window_seconds: float = Field(300.0, gt=0, description="a key fires at most once per window")


@dataclass(frozen=True)
class Context:
    """What the pipeline hands every detector besides its own settings."""
    telemetry: Telemetry
    dns_servers: tuple[str, ...] = ("168.63.129.16",)
    max_keys: int = 20_000


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


class NameTable(Capped):
    """A Capped table whose items hold names read from the wire, bounded in names and in
    their characters across all items as well as in keys: a flood of long names (a DNS name
    is up to ~1,000 characters of escapes) under every key multiplied the key cap by what
    each key holds. The owner reports what an item gains or loses (`hold`, `release`) and
    calls `trim` after; `weigh(key, value)` says what a whole item holds, (names, characters),
    for when it is evicted. Evictions from the cold end are counted like any other."""

    def __init__(self, max_keys: int, on_evict: Callable[[int], None],
                 weigh: Callable[[Any, Any], tuple[int, int]], max_names: int, max_chars: int):
        super().__init__(max_keys, on_evict)
        self._weigh = weigh
        self.max_names, self.max_chars = max_names, max_chars
        self.names = self.chars = 0

    def hold(self, chars: int, names: int = 1) -> None:
        self.names += names
        self.chars += chars

    def release(self, chars: int, names: int = 1) -> None:
        self.names -= names
        self.chars -= chars

    def popitem(self, last: bool = True) -> tuple[Any, Any]:
        key, value = super().popitem(last)
        names, chars = self._weigh(key, value)
        self.release(chars, names)
        return key, value

    def trim(self) -> None:
        """Evict the coldest items while over a budget; the hottest (just touched) stays."""
        evicted = 0
        while (self.names > self.max_names or self.chars > self.max_chars) and len(self) > 1:
            self.popitem(last=False)
            evicted += 1
        if evicted:
            self._on_evict(evicted)


class Detector(Component):
    """Base of the detectors: a name, a bound emit function, a re-fire window per key."""
    name: ClassVar[str] = "detector"
    severities: ClassVar[tuple[str, ...]] = SEVERITIES
    # What a key names, so `suggest` leaves out exactly that: ip, name, domain (registered), flow.
    key_kind: ClassVar[str] = "ip"
    Settings: ClassVar[type[DetectorSettings]] = DetectorSettings
    Evidence: ClassVar[type[Evidence]] = Evidence

    def __init__(self, settings: DetectorSettings, context: Context) -> None:
        self.settings = settings
        self.context = context
        self.window = settings.window_seconds
        self.max_keys = context.max_keys
        self._emit: Emit | None = None
        self._fired = self.table()  # key -> ts it last fired
        self.fired = 0

    def table(self) -> Capped:
        return Capped(self.max_keys, self._evicted)

    def _evicted(self, n: int) -> None:
        self.context.telemetry.evicted(Table.DETECTOR_STATE, n)

    def bind(self, emit: Emit) -> None:
        self._emit = emit

    def quiet(self, key: str, ts: float) -> bool:
        """Did `key` fire less than a window ago (so `fire` would raise nothing now)? A
        detector asks before building evidence it would throw away."""
        last = self._fired.get(key)
        return last is not None and 0 <= ts - last < self.window

    def due(self, key: str, ts: float) -> bool:
        """True (and the window starts) unless `key` fired less than a window ago."""
        if self.quiet(key, ts):
            return False
        self._fired.put(key, ts)
        return True

    def fire(self, ts: float, severity: str, key: str, evidence: dict[str, Any],
             flow: Flow | None = None, *, source_ip: str | None = None,
             destination_ip: str | None = None, destination_port: int | None = None,
             destination_domain: str | None = None, key_kind: str | None = None) -> bool:
        """Raise a finding unless `key` already fired in this window; True if raised."""
        if not self.due(key, ts):
            return False
        # Typed: a detector that reports a field its Evidence model does not declare is a bug.
        evidence = evidence_fields(self.Evidence.model_validate(evidence))
        if flow is not None:
            source_ip = source_ip or flow.client_ip
            destination_ip = destination_ip or flow.server_ip
            destination_port = destination_port if destination_port is not None else flow.server_port
            destination_domain = destination_domain or flow.domain
        self.fired += 1
        if self._emit is not None:
            self._emit(Finding(ts, self.name, severity, key, evidence, flow, source_ip=source_ip,
                               destination_ip=destination_ip, destination_port=destination_port,
                               destination_domain=destination_domain,
                               key_kind=key_kind or self.key_kind))
        return True
