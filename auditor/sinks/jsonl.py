"""The audit log: one ECS JSON document per line, to a file or stdout.

A sink that cannot write (full disk, closed pipe) must not stop the audit: the error is
counted in `event_sink_errors_total`, said once on stderr, and judging and metrics go on.
Lines are flushed one by one, so a failure surfaces on the event it hits and the counter is
the exact number of events lost (a block buffer would lose many events per counted error);
events are per flow, not per packet, so the extra write calls are cheap.
"""
from __future__ import annotations

import json
import sys
from typing import IO

from auditor.events import DnsAnswered, Finding, FlowEnded, Violation
from auditor.sinks import ecs


class JsonlSink:
    def __init__(self, target: str, *, dns_events: bool = True, ruleset: str | None = None):
        self.target = target
        self.ruleset = ruleset
        self.errors = 0
        self.written = 0
        self._warned = False
        if target == "-":
            self._out: IO[str] = sys.stdout
            sys.stdout.reconfigure(line_buffering=True)
        else:
            self._out = open(target, "w", encoding="utf-8", buffering=1)
        if not dns_events:
            self.dns_answered = None  # type: ignore[assignment]  # the dispatcher skips it

    def _write(self, doc: dict) -> None:
        try:
            self._out.write(json.dumps(doc, separators=(",", ":"), ensure_ascii=False) + "\n")
            self.written += 1
        except (OSError, ValueError) as exc:  # ValueError: write to a closed file
            self.errors += 1
            if not self._warned:
                self._warned = True
                print(f"egress-auditor: event sink {self.target}: {exc}; "
                      "events are being dropped (counted in event_sink_errors_total)", file=sys.stderr)

    def flow_ended(self, ev: FlowEnded) -> None:
        if ev.flow.egress:
            self._write(ecs.flow_event(ev.flow, "flow", ruleset=self.ruleset))

    def violation(self, ev: Violation) -> None:
        self._write(ecs.flow_event(ev.flow, "violation", ts=ev.ts, ruleset=self.ruleset))

    def dns_answered(self, ev: DnsAnswered) -> None:
        self._write(ecs.dns_event(ev))

    def finding(self, ev: Finding) -> None:
        self._write(ecs.finding_event(ev))

    def close(self) -> None:
        try:
            self._out.flush()
            if self._out is not sys.stdout:
                self._out.close()
        except (OSError, ValueError) as exc:
            # After a failed write, what is left in the buffer is that already-counted line.
            if not self.errors:
                self.errors += 1
            if not self._warned:
                self._warned = True
                print(f"egress-auditor: event sink {self.target}: {exc}", file=sys.stderr)
