"""`egress-auditor replay`: audit capture files, print the summary, decide the exit code.

With `--metrics-port` the metrics are served while it runs; `--serve-after` keeps serving the
final metrics until SIGTERM, `--loop S` replays again every S seconds, each pass continuing the
capture's clock (the demo dashboards).
"""
from __future__ import annotations

import signal
import sys
import time

from auditor import assemble
from auditor.commands.inputs import open_captures, settings_from_args
from auditor.errors import EXIT_FAIL_ON, EXIT_INTERRUPTED, EXIT_OK, AuditorError, UsageError
from auditor.lifecycle import (Progress, StopOnSignal, feed_file, serve_metrics, settle_heap,
                               sleep_unless_stopped)
from auditor.sinks import textfile
from auditor.sinks.summary import Summary


def main(args) -> int:
    return Replay(args).run()


class Replay:
    def __init__(self, args) -> None:
        self.args = args
        self.loop = args.loop                       # seconds between passes, or None
        self.serve_after = args.serve_after or self.loop is not None
        if self.serve_after and args.metrics_port is None:
            raise UsageError("--serve-after and --loop need --metrics-port")
        self.settings = settings_from_args(args)
        if self.settings.metrics_file:
            textfile.check(self.settings.metrics_file)
        self.files = open_captures(args.pcaps)
        self.stop = StopOnSignal()          # before the build opens the events file
        try:
            self.audit = assemble.build(self.settings)
        except BaseException:
            self.stop.restore()
            raise
        for notice in self.audit.notices:
            print(notice, file=sys.stderr)
        self.pipeline = self.audit.pipeline
        self.stop.attach(self.pipeline)
        self.lingered = self.loop is not None

    def run(self) -> int:
        args, pipeline = self.args, self.pipeline
        server = (serve_metrics(self.audit.registry, self.settings.metrics_listen, args.metrics_port)
                  if args.metrics_port is not None else None)
        stop = self.stop
        settle_heap()
        started = time.monotonic()
        output_failed = False
        try:
            try:
                self._passes()
            finally:
                pipeline.close("shutdown" if pipeline.stopping else "end_of_capture")
            elapsed = time.monotonic() - started
            if self.settings.metrics_file:
                try:
                    textfile.write(self.settings.metrics_file, self.audit.registry)
                except AuditorError as exc:     # the summary and --fail-on still count
                    print(f"egress-auditor: {exc}", file=sys.stderr)
                    output_failed = True
            if not args.quiet:
                out = sys.stderr if self.settings.events == "-" else sys.stdout
                self.audit.summary.render(out, elapsed=elapsed)
            if self.serve_after and not pipeline.stopping:
                self.lingered = True
                if not args.quiet:
                    print(f"egress-auditor: replay done; serving metrics on :{args.metrics_port}"
                          "/metrics until SIGTERM", file=sys.stderr)
                sleep_unless_stopped(pipeline, None)
        finally:
            stop.restore()
            if server:
                server.shutdown()
        if stop.signal is not None and not (self.lingered and stop.signal == signal.SIGTERM):
            return EXIT_INTERRUPTED
        code = fail_on(args.fail_on, self.audit.summary)
        return code if code != EXIT_OK or not output_failed else AuditorError.exit_code

    def _passes(self) -> None:
        """One pass over the files, or (--loop) one every `loop` seconds until a signal."""
        pipeline, files = self.pipeline, self.files
        offset, first_ts = 0.0, None
        while True:
            self._one_pass(files, offset)
            if self.loop is None or not sleep_unless_stopped(pipeline, self.loop):
                return
            # The next pass continues 1 s after this one's last packet, so flow timeouts
            # and detector windows see one long capture, never time going back.
            t = pipeline.telemetry
            first_ts = t.first_packet_ts if first_ts is None else first_ts
            if first_ts is not None:
                offset = t.last_packet_ts + 1.0 - first_ts
            files = open_captures(self.args.pcaps)

    def _one_pass(self, files, offset: float) -> None:
        progress = Progress(files, enabled=sys.stderr.isatty() and not self.args.quiet)
        try:
            for i, capture in enumerate(files):
                if self.pipeline.stopping:      # a signal before this file began
                    break
                progress.next_file(i)
                warnings = feed_file(self.pipeline, capture,
                                     _shifted(capture, offset) if offset else None, progress)
                for warning in warnings:
                    progress.clear()
                    print(f"egress-auditor: warning: {warning}", file=sys.stderr)
                if self.pipeline.stopping:
                    break
        finally:
            progress.clear()


def _shifted(frames, offset: float):
    """Frames `offset` seconds later (file timestamps are int nanoseconds: shifted exactly)."""
    offset_ns = round(offset * 1e9)
    for ts, linktype, data, wire_len in frames:
        yield (ts + offset_ns if ts.__class__ is int else ts + offset), linktype, data, wire_len


def fail_on(condition: str, summary: Summary) -> int:
    """Exit 3 when the `--fail-on` condition holds, saying which and how many."""
    if condition == "denied" and summary.violations:
        why = f"{summary.violations} flow(s) denied by the policy"
    elif condition == "finding" and summary.findings.total():
        why = f"{summary.findings.total()} finding(s) raised"
    else:
        return EXIT_OK
    print(f"egress-auditor: --fail-on {condition}: {why}; exit {EXIT_FAIL_ON}", file=sys.stderr)
    return EXIT_FAIL_ON
