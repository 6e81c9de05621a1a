"""Runs source -> decode -> track -> components, and flushes everything on exit.

The same `feed` loop serves replay and live capture: a source is any iterable of frames
`(ts, linktype, bytes, wire_len)` (`ts` int nanoseconds, or float seconds); a live source also yields `None` when the interface is
quiet, so timers run and a shutdown request is noticed without waiting for traffic.

What the pipeline is made of (settings, policy, sinks) is decided in `assemble.py`; this
module knows nothing about files, signals or terminals.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable

from auditor import addresses, core
from auditor.addresses import Networks
from auditor.components import Component, Dispatcher
from auditor.decode import packet
from auditor.events import TICK_EVERY, Tick
from auditor.telemetry import Layer, Telemetry
from auditor.track.tracker import Limits, Tracker

Frame = tuple[float, int, bytes, int]
# The compiled twin of `feed` (cpipeline.pyx: this loop plus the tracker's known-flow fast
# path in C), when it was built; `feed` below is its reference.
_compiled = core.compiled("cpipeline")
PLATFORM_RESOLVER = "168.63.129.16"     # Azure DNS, always trusted


class Pipeline:
    def __init__(self, components: list[Component], telemetry: Telemetry, *,
                 node_networks: Iterable[str], limits: Limits = Limits(),
                 dns_servers: Iterable[str] = (PLATFORM_RESOLVER,), judge_loopback: bool = False,
                 vxlan_ports: Iterable[int] = (4789, 8472)):
        self.telemetry = telemetry
        packet.set_tunnel_ports(vxlan_ports)   # one pipeline per process decodes at a time
        self.dispatch = Dispatcher(components, telemetry)
        self.dispatch.bind_all()
        telemetry.expect_component("tracker", ["packet"])
        trusted = frozenset(addresses.canonical(s) or s for s in (*dns_servers, PLATFORM_RESOLVER))
        self.tracker = Tracker(Networks(node_networks), self.dispatch, telemetry, limits,
                               trusted_resolvers=trusted, judge_loopback=judge_loopback)
        self.stopping = False
        self._closed = False
        self._next_tick = 0.0

    def _tick(self) -> None:
        now = time.monotonic()
        if now >= self._next_tick:
            self._next_tick = now + TICK_EVERY
            if self.dispatch.wants(Tick):
                self.dispatch(Tick(now))

    @property
    def components(self) -> list[Component]:
        return self.dispatch.components

    def feed(self, frames: Iterable[Frame | None], *, check_every: int = 4096,
             on_check: Callable[[Pipeline], None] | None = None) -> None:
        """Run frames through the pipeline until the source ends or `stopping` is set.
        The packet count is published per packet; every `check_every` packets (and on every
        None from the source) the capture time is too, `on_check` runs (progress, drop
        counters, signals) and the stop flag is honoured."""
        if _compiled is not None:
            return _compiled.feed(self, frames, check_every, on_check)
        decode, Packet, Fragment, Tunnel = (packet.decode, packet.Packet, packet.Fragment,
                                            packet.Tunnel)
        track, fragment, tunnel = self.tracker.packet, self.tracker.fragment, self.tracker.tunnel
        tel = self.telemetry
        malformed = tel.malformed
        n = tel.packets
        check_at = n + check_every
        ts = tel.last_packet_ts
        try:
            for frame in frames:
                if frame is None:  # live source, quiet interface
                    tel.packets = n
                    self.tracker.tick(max(self.tracker.now, time.time()))
                    self._tick()
                    if on_check:
                        on_check(self)
                    if self.stopping:
                        break
                    continue
                ts, linktype, data, wire_len = frame
                if ts.__class__ is int:     # capture files: exact nanoseconds
                    ts_ns, ts = ts, ts / 1_000_000_000
                else:
                    ts_ns = None
                n += 1
                tel.packets = n     # per packet: a scrape never shows events of unread packets
                try:
                    pkt = decode(linktype, data, ts, wire_len)
                    cls = pkt.__class__
                    if cls is Packet:
                        pkt.ts_ns = ts_ns
                        track(pkt)
                    elif cls is Layer:
                        malformed[pkt] += 1
                    elif cls is Fragment:
                        pkt.ts_ns = ts_ns
                        fragment(pkt)
                    elif cls is Tunnel:
                        pkt.ts_ns = ts_ns
                        tunnel(pkt)
                except Exception as exc:  # noqa: BLE001 - a bug must not lose what came before
                    tel.component_failed("tracker", "packet", exc)
                if n >= check_at:
                    check_at = n + check_every
                    tel.packets, tel.last_packet_ts = n, ts
                    self._tick()
                    if on_check:
                        on_check(self)
                    if self.stopping:
                        break
        finally:
            tel.packets = n
            if n:
                tel.last_packet_ts = ts

    def feed_capture(self, capture, *, check_every: int = 4096,
                     on_check: Callable[[Pipeline], None] | None = None) -> None:
        """`feed(capture)` for a capture file (a `sources.pcap.CaptureFile`). The compiled
        core reads a classic pcap's records straight from the file's buffers
        (`cpipeline.feed_pcap`); the effects are the same."""
        if _compiled is not None and capture.kind == "pcap":
            return _compiled.feed_pcap(self, capture, check_every, on_check)
        return self.feed(capture, check_every=check_every, on_check=on_check)

    def close(self, reason: str = "end_of_capture") -> None:
        """End every open flow (each becomes a flow event), then close every component
        (one failing never keeps the others from closing). Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.tracker.flush(reason)
        finally:
            self.dispatch.close()
