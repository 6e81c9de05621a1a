"""What a long-running command shares: stop on signals, serve metrics, show progress.

Used by `replay` and `run` alike; knows nothing about what the pipeline contains.
"""
from __future__ import annotations

import gc
import signal
import sys
import time
from typing import Callable

from auditor.errors import OutputError
from auditor.pipeline import Pipeline
from auditor.sinks.web_config import WebConfig
from auditor.telemetry import Layer
from auditor.terminal import printable


# First-generation collection threshold while packets flow (CPython's default is 700).
GC_THRESHOLD = 10_000


def settle_heap() -> None:
    """Call once everything long-lived is built, just before packets flow.

    What exists by then (modules, the policy, the service-tag index, the public suffix list)
    lives for the whole run: `gc.freeze` keeps the cyclic collector from walking it again at
    every older-generation collection. Flows, in turn, are created by the ten thousand and
    freed by reference counting (a 200k-packet replay leaves ~900 objects in cycles in all),
    so collections triggered by their allocation are mostly wasted: the higher threshold
    makes them rarer. Memory stays
    bounded by the tables' caps either way; this is ~4 % of a replay's CPU (bench/README).
    """
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, gen1, gen2)


class StopOnSignal:
    """SIGTERM/SIGINT ask the loop to stop at the next check; the pipeline then flushes
    every open flow, so nothing already captured is lost. A second signal interrupts.

    Installed before the audit is built (building it opens the events file), and given the
    pipeline once there is one: a signal in between stops the pipeline before its first
    packet, and the run still ends with its metrics file and exit code, where the default
    action used to kill it with neither."""

    def __init__(self, pipeline: Pipeline | None = None):
        self.pipeline = pipeline
        self.signal: int | None = None
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}

    def attach(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        if self.signal is not None:
            pipeline.stopping = True

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:  # second signal: the user means it
            raise KeyboardInterrupt
        self.signal = signum
        if self.pipeline is not None:
            self.pipeline.stopping = True

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


class OnSignal:
    """Remembers that a signal arrived (SIGHUP, SIGUSR1) for the loop to act on later."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.pending = False
        self._old = signal.signal(signum, self._handle)

    def _handle(self, signum, frame) -> None:
        self.pending = True

    def take(self) -> bool:
        pending, self.pending = self.pending, False
        return pending

    def restore(self) -> None:
        signal.signal(self.signum, self._old)


def serve_metrics(registry, listen: str, port: int | None, web_config: WebConfig | None = None):
    """Start the metrics endpoint (None when no port); OutputError if it cannot listen."""
    if port is None:
        return None
    host = listen.rsplit(":", 1)[0].strip("[]") or "0.0.0.0"
    from auditor.sinks.exporter import serve   # here: http.server is ~9 ms a replay rarely needs
    try:
        return serve(registry, host, port, web_config=web_config)
    except OSError as exc:
        raise OutputError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None


def feed_file(pipeline: Pipeline, capture, frames=None, on_check=None) -> list[str]:
    """Run one capture file through the pipeline; its warnings (already escaped for a
    terminal). Records the reader skipped for an impossible timestamp count as malformed."""
    if frames is None:
        pipeline.feed_capture(capture, on_check=on_check)
    else:
        pipeline.feed(frames, on_check=on_check)
    pipeline.telemetry.bad(Layer.TIMESTAMP, capture.bad_timestamps)
    return [printable(w) for w in capture.warnings]


def sleep_unless_stopped(pipeline: Pipeline, seconds: float | None,
                         tick: Callable[[], None] | None = None) -> bool:
    """Sleep `seconds` (None: until a signal); False if a signal asked us to stop."""
    deadline = None if seconds is None else time.monotonic() + seconds
    while not pipeline.stopping and (deadline is None or time.monotonic() < deadline):
        if tick:
            tick()
        time.sleep(0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic())))
    return not pipeline.stopping


class Progress:
    """A single self-rewriting status line on a terminal, at most every half second."""

    def __init__(self, files: list, enabled: bool, out=sys.stderr):
        self.files = files
        self.enabled = enabled
        self.out = out
        self.index = 0
        self.started = time.monotonic()
        self._last = 0.0
        self._total = sum(f.size for f in files) or 1
        self._done = 0

    def next_file(self, i: int) -> None:
        if i:
            self._done += self.files[i - 1].size
        self.index = i

    def __call__(self, pipeline: Pipeline) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last < 0.5:
            return
        self._last = now
        t = pipeline.telemetry
        cur = self.files[self.index]
        pct = 100 * (self._done + cur.bytes_read) / self._total
        rate = t.packets / max(now - self.started, 1e-9)
        flows = t.read_gauge("active_flows")
        self.out.write(f"\r  {printable(cur.name)[:40]} ({self.index + 1}/{len(self.files)})  "
                       f"{pct:5.1f}%  {t.packets:,} packets  {rate:,.0f}/s  {flows:,} flows ")
        self.out.flush()

    def clear(self) -> None:
        if self.enabled and self._last:
            self.out.write("\r" + " " * 100 + "\r")
