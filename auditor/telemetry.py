"""The auditor's own counters: what every stage received, dropped, evicted and failed.

Stages write plain integers here (no locks, no metric objects on the hot path); the metrics
collector and the summary read them. The label values are closed sets (`Layer`, `Table`),
so every series can exist from the start and none can grow without bound; component names
come from the pipeline's own components, never from the wire.

Imports nothing of the project: decoders, the tracker, detectors and sinks all write here.
"""
from __future__ import annotations

import enum
import sys
from typing import Callable


class Layer(str, enum.Enum):
    """Where a malformed unit was found (`packets_malformed_total{layer}`)."""
    LINK = "link"
    LINKTYPE = "linktype"      # a link type the decoder does not read
    IP = "ip"
    IPV6 = "ipv6"
    TCP = "tcp"
    UDP = "udp"
    ICMP = "icmp"
    FRAGMENT = "fragment"      # overlapping IP fragments that disagree, hostile offsets
    TUNNEL = "tunnel"
    DNS = "dns"
    TLS = "tls"
    HTTP = "http"
    QUIC = "quic"
    SOCKS = "socks"
    TIMESTAMP = "timestamp"    # a capture record whose timestamp is out of range


class Table(str, enum.Enum):
    """A capped table (`table_evictions_total{table}`)."""
    FLOWS = "flows"
    DNS_CACHE = "dns_cache"
    DNS_PENDING = "dns_pending"
    FRAGMENTS = "fragments"
    REASSEMBLY = "reassembly"      # TCP bytes held for naming
    DETECTOR_STATE = "detector_state"
    ATTRIBUTION = "attribution"
    VERDICT_CACHE = "verdict_cache"
    FINGERPRINTS = "fingerprints"  # JA4 of recent ClientHellos


class Telemetry:
    """Counters of one pipeline run. Plain attributes and dicts, read at scrape time."""

    def __init__(self) -> None:
        self.packets = 0
        self.fast_path_packets = 0      # of those, counted by the compiled known-flow fast path
        self.capture_dropped = 0
        self.first_packet_ts: float | None = None
        self.last_packet_ts = 0.0
        self.malformed: dict[Layer, int] = dict.fromkeys(Layer, 0)
        self.evictions: dict[Table, int] = dict.fromkeys(Table, 0)
        self.sink_errors = 0
        self.component_errors: dict[tuple[str, str], int] = {}
        self.attributions = {"known": 0, "unknown": 0}    # live owner lookups, by result
        self._gauges: dict[str, Callable[[], int]] = {}
        self._reported: set[str] = set()

    # -- writers ------------------------------------------------------------------------
    def bad(self, layer: Layer, n: int = 1) -> None:
        self.malformed[layer] += n

    def evicted(self, table: Table, n: int = 1) -> None:
        self.evictions[table] += n

    def expect_component(self, component: str, events: list[str]) -> None:
        """Pre-create the error series of a component for the events it handles."""
        for event in events:
            self.component_errors.setdefault((component, event), 0)

    def component_failed(self, component: str, event: str, exc: BaseException) -> None:
        """A bug in one component: counted, said once on stderr, never fatal."""
        key = (component, event)
        self.component_errors[key] = self.component_errors.get(key, 0) + 1
        if component not in self._reported:
            self._reported.add(component)
            print(f"egress-auditor: internal error in {component} ({event}): "
                  f"{type(exc).__name__}: {exc}; the other components go on "
                  "(counted in component_errors_total)", file=sys.stderr)

    def gauge(self, name: str, read: Callable[[], int]) -> None:
        """Register a size read at scrape time (e.g. the flow table's length)."""
        self._gauges[name] = read

    # -- readers ------------------------------------------------------------------------
    def read_gauge(self, name: str) -> int:
        read = self._gauges.get(name)
        return read() if read else 0

    def malformed_total(self) -> int:
        return sum(self.malformed.values())

    def errors_total(self) -> int:
        return sum(self.component_errors.values())
