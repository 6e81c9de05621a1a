"""What `replay` and `run` do: assemble settings, policy, pipeline and sinks, then drive them.

Kept apart from `cli.py` (which only parses arguments) and from `pipeline.py` (which knows
nothing about files, signals or terminals).
"""
from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, write_to_textfile

from auditor import settings as settings_mod
from auditor.cli import EXIT_FAIL_ON, EXIT_INTERRUPTED, EXIT_OK, BadInput
from auditor.detect import build_detectors
from auditor.pipeline import Pipeline
from auditor.settings import ConfigError, Settings
from auditor.sinks.jsonl import JsonlSink
from auditor.sinks.metrics import Metrics, PipelineCollector
from auditor.sinks.summary import Summary
from auditor.sources.pcap import CaptureError, CaptureFile
from auditor.track.names import Evictions
from auditor.verdicts import Verdicts


@dataclass
class Audit:
    """A built pipeline and the components the caller needs to talk to afterwards."""
    settings: Settings
    pipeline: Pipeline
    summary: Summary
    metrics: Metrics
    registry: CollectorRegistry
    verdicts: Verdicts | None
    events: JsonlSink | None


def settings_from_args(args) -> Settings:
    try:
        return settings_mod.load(
            args.config, policy=args.policy, service_tags=args.service_tags, region=args.region,
            node_networks=args.node_network, events=args.events, as_mode=args.as_mode,
            dns_events=False if args.no_dns_events else None,
            metrics_file=getattr(args, "metrics_file", None))
    except ConfigError as exc:
        raise BadInput(str(exc)) from None


def load_judge(settings: Settings):
    """The policy judge, or None when no policy is configured (flows are named, not judged)."""
    if settings.policy is None:
        return None
    from auditor.policy import PolicyError, load_policy
    from auditor.policy.servicetags import ServiceTags
    from auditor.policy.verdict import Judge
    try:
        policy = load_policy(settings.policy, region=settings.region)
        tags = ServiceTags.load(settings.service_tags, region=settings.region or policy.location,
                                virtual_network=settings.virtual_network)
        return Judge(policy, tags, dns_servers=tuple(settings.dns_servers),
                     include=tuple(settings.include), as_mode=settings.as_mode)
    except PolicyError as exc:
        raise BadInput(str(exc)) from None


def build(settings: Settings, registry: CollectorRegistry | None = None) -> Audit:
    registry = registry or CollectorRegistry()
    judge = load_judge(settings)
    verdicts = Verdicts(judge) if judge else None
    metrics = Metrics(registry, settings.max_destination_labels)
    if judge is not None:
        _publish_policy(metrics, judge)
    summary = Summary()
    if judge is not None:
        shadow = " (shadow audit)" if settings.as_mode else ""
        summary.policy = (f"{settings.policy} ({verdicts.ruleset}{shadow}, "
                          f"{len(judge.rules)} effective rules)")
    events = None
    if settings.events:
        try:
            events = JsonlSink(settings.events, dns_events=settings.dns_events,
                               ruleset=verdicts.ruleset if verdicts else None)
        except OSError as exc:
            raise BadInput(f"{settings.events}: cannot write events: {exc.strerror or exc}") from None
    # One evictions table for every capped structure, so all reach table_evictions_total.
    evictions = Evictions()
    components: list[object] = [c for c in (verdicts,) if c]
    components += build_detectors(settings, evictions)
    components += [metrics, summary] + ([events] if events else [])
    pipeline = Pipeline(settings, components, registry, evictions)
    registry.register(PipelineCollector(pipeline))
    return Audit(settings, pipeline, summary, metrics, registry, verdicts, events)


def _publish_policy(metrics: Metrics, judge) -> None:
    policy = judge.policy
    counts: dict[str, int] = {}
    for rule in judge.rules:
        kind = str(getattr(rule.type, "value", rule.type))
        counts[kind] = counts.get(kind, 0) + 1
    metrics.set_policy(str(getattr(judge.mode, "value", judge.mode)), policy.sha256, counts)


class _Progress:
    """A single self-rewriting status line on a terminal, at most every half second."""

    def __init__(self, files: list[CaptureFile], enabled: bool):
        self.files = files
        self.enabled = enabled
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
        cur = self.files[self.index]
        pct = 100 * (self._done + cur.bytes_read) / self._total
        rate = pipeline.packets / max(now - self.started, 1e-9)
        sys.stderr.write(f"\r  {cur.name[:40]} ({self.index + 1}/{len(self.files)})  {pct:5.1f}%  "
                         f"{pipeline.packets:,} packets  {rate:,.0f}/s  {len(pipeline.tracker.flows):,} flows ")
        sys.stderr.flush()

    def clear(self) -> None:
        if self.enabled and self._last:
            sys.stderr.write("\r" + " " * 100 + "\r")


class _StopOnSignal:
    """SIGTERM/SIGINT ask the loop to stop at the next check; the pipeline then flushes
    every open flow, so nothing already captured is lost."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline
        self.signal: int | None = None
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:  # second signal: the user means it
            raise KeyboardInterrupt
        self.signal = signum
        self.pipeline.stopping = True

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def replay(args) -> int:
    settings = settings_from_args(args)
    loop = getattr(args, "loop", None)                # seconds between passes, or None
    serve_after = getattr(args, "serve_after", False) or loop is not None
    if serve_after and args.metrics_port is None:
        raise BadInput("--serve-after and --loop need --metrics-port")
    files = _open_captures(args.pcaps)
    audit = build(settings)
    pipeline = audit.pipeline
    server = _serve(audit, args.metrics_port)
    stop = _StopOnSignal(pipeline)
    started = time.monotonic()
    offset, first_ts, lingered = 0.0, None, loop is not None
    try:
        try:
            while True:
                progress = _Progress(files, enabled=sys.stderr.isatty() and not args.quiet)
                try:
                    for i, capture in enumerate(files):
                        progress.next_file(i)
                        pipeline.feed(_shifted(capture, offset) if offset else capture, on_check=progress)
                        for warning in capture.warnings:
                            progress.clear()
                            print(f"egress-auditor: warning: {warning}", file=sys.stderr)
                        if pipeline.stopping:
                            break
                finally:
                    progress.clear()
                if loop is None or not _sleep_unless_stopped(pipeline, loop):
                    break
                # --loop: the next pass continues the capture 1 s after this one's last packet,
                # so flow timeouts and detector windows see one long capture, never time going back.
                first_ts = pipeline.first_packet_ts if first_ts is None else first_ts
                if first_ts is not None:
                    offset = pipeline.last_packet_ts + 1.0 - first_ts
                files = _open_captures(args.pcaps)
        finally:
            pipeline.close("shutdown" if pipeline.stopping else "end_of_capture")
        elapsed = time.monotonic() - started
        if settings.metrics_file:
            try:
                write_to_textfile(str(settings.metrics_file), audit.registry)
            except OSError as exc:
                raise BadInput(f"{settings.metrics_file}: cannot write metrics: {exc.strerror or exc}") from None
        if not args.quiet:
            out = sys.stderr if settings.events == "-" else sys.stdout
            audit.summary.render(pipeline, out, elapsed=elapsed)
        if serve_after and not pipeline.stopping:   # --serve-after: keep /metrics up until SIGTERM
            lingered = True
            if not args.quiet:
                print(f"egress-auditor: replay done; serving metrics on :{args.metrics_port}/metrics "
                      "until SIGTERM", file=sys.stderr)
            _sleep_unless_stopped(pipeline, None)
    finally:
        stop.restore()
        if server:
            server.shutdown()
    if stop.signal is not None and not (lingered and stop.signal == signal.SIGTERM):
        return EXIT_INTERRUPTED
    return _fail_on(args.fail_on, audit.summary)


def _open_captures(paths) -> list[CaptureFile]:
    try:
        return [CaptureFile(path) for path in paths]
    except CaptureError as exc:
        raise BadInput(str(exc)) from None


def _shifted(frames, offset: float):
    for ts, linktype, data, wire_len in frames:
        yield ts + offset, linktype, data, wire_len


def _sleep_unless_stopped(pipeline: Pipeline, seconds: float | None) -> bool:
    """Sleep `seconds` (None: until a signal); False if a signal asked us to stop."""
    deadline = None if seconds is None else time.monotonic() + seconds
    while not pipeline.stopping and (deadline is None or time.monotonic() < deadline):
        time.sleep(0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic())))
    return not pipeline.stopping


def _fail_on(condition: str, summary: Summary) -> int:
    if condition == "denied" and summary.violations:
        return EXIT_FAIL_ON
    if condition == "finding" and summary.findings:
        return EXIT_FAIL_ON
    return EXIT_OK


def _serve(audit: Audit, port: int | None):
    if port is None:
        return None
    from auditor.sinks.exporter import serve
    host = audit.settings.metrics_listen.rsplit(":", 1)[0] or "0.0.0.0"
    try:
        return serve(audit.registry, host, port)
    except OSError as exc:
        raise BadInput(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None


def run(args) -> int:
    from auditor.live import run_live
    return run_live(args)
