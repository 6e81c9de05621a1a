"""Builds source -> decode -> track -> judge/detect -> sinks, runs it, flushes on exit.

The same `feed` loop serves replay and live capture: a source is any iterable of frames
`(ts, linktype, bytes, wire_len)`; a live source also yields `None` when the interface is
quiet, so timers run and a shutdown request is noticed without waiting for traffic.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry

from auditor.decode import packet
from auditor.events import Dispatcher
from auditor.settings import Settings
from auditor.track.names import Evictions
from auditor.track.tracker import Limits, NodeNetworks, Tracker

Frame = tuple[float, int, bytes, int]


class Pipeline:
    def __init__(self, settings: Settings, components: list[object],
                 registry: CollectorRegistry | None = None, evictions: Evictions | None = None):
        self.settings = settings
        self.registry = registry
        self.components = components
        self.dispatch = Dispatcher(list(components))
        for c in components:  # components that raise events of their own (judge, detectors)
            bind = getattr(c, "bind", None)
            if callable(bind):
                bind(self.dispatch)
        self.tracker = Tracker(
            NodeNetworks(settings.node_networks), self.dispatch,
            Limits(max_flows=settings.max_flows, max_dns_cache=settings.max_dns_cache,
                   max_pending_queries=settings.max_pending_queries),
            evictions=evictions)
        self.packets = 0
        self.decode_malformed: dict[str, int] = {}
        self.capture_dropped = 0
        self.last_packet_ts = 0.0
        self.stopping = False
        self.internal_errors = 0
        self._closed = False

    # -- counters read by the metrics collector and the summary -----------------------
    def malformed_by_layer(self) -> dict[str, int]:
        merged = dict(self.decode_malformed)
        for layer, n in list(self.tracker.malformed.items()):
            merged[layer] = merged.get(layer, 0) + n
        return merged

    @property
    def first_packet_ts(self) -> float | None:
        return self.tracker.first_tick

    def sink_errors(self) -> int:
        return sum(getattr(c, "errors", 0) for c in self.components)

    # -- the loop -----------------------------------------------------------------------
    def feed(self, frames: Iterable[Frame | None], *, check_every: int = 4096,
             on_check: Callable[[Pipeline], None] | None = None) -> None:
        """Run frames through the pipeline until the source ends or `stopping` is set.
        Every `check_every` packets (and on every idle tick) counters are published,
        `on_check` runs (progress, drop counters) and the stop flag is honoured."""
        decode, Packet = packet.decode, packet.Packet
        track = self.tracker.packet
        malformed = self.decode_malformed
        n = self.packets
        check_at = n + check_every
        ts = self.last_packet_ts
        try:
            for frame in frames:
                if frame is None:  # live source, quiet interface
                    self.packets = n
                    self.tracker.tick(max(self.tracker.now, time.time()))
                    if on_check:
                        on_check(self)
                    if self.stopping:
                        break
                    continue
                ts, linktype, data, wire_len = frame
                n += 1
                try:
                    pkt = decode(linktype, data, ts, wire_len)
                    if pkt.__class__ is Packet:
                        track(pkt)
                    elif pkt.__class__ is str:
                        malformed[pkt] = malformed.get(pkt, 0) + 1
                    elif pkt is not None:
                        self.tracker.fragment(pkt)
                except Exception as exc:  # a bug in one unit must not lose what came before
                    self._internal_error(exc)
                if n >= check_at:
                    check_at = n + check_every
                    self.packets, self.last_packet_ts = n, ts
                    if on_check:
                        on_check(self)
                    if self.stopping:
                        break
        finally:
            self.packets = n
            if n:
                self.last_packet_ts = ts

    def _internal_error(self, exc: Exception) -> None:
        self.internal_errors += 1
        self.decode_malformed["internal"] = self.decode_malformed.get("internal", 0) + 1
        if self.internal_errors == 1:
            print(f"egress-auditor: internal error on packet {self.packets + 1}: "
                  f"{type(exc).__name__}: {exc} (packet skipped; counted as malformed layer=internal)",
                  file=sys.stderr)

    def close(self, reason: str = "end_of_capture") -> None:
        """End every open flow (each becomes a flow event) and close the sinks. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.tracker.flush(reason)
        for c in self.components:
            close = getattr(c, "close", None)
            if callable(close):
                close()
