"""The end-of-run summary: what a person reads after a replay (or a sidecar's shutdown).

Counts are kept per event as they pass; the table of denied destinations is capped (a
flood of unique names must not grow it without bound) and says how many it folded away.
"""
from __future__ import annotations

from collections import Counter
from typing import TextIO

from auditor import core
from auditor.components import Component
from auditor.events import DnsAnswered, Finding, FlowEnded, Violation
from auditor.telemetry import Telemetry
from auditor.terminal import printable

MAX_TRACKED_DESTINATIONS = 10_000


class Summary(Component):
    name = "summary"

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        self.flows = 0
        self.egress_bytes = 0
        self.ingress_bytes = 0
        self.carriers = self.carrier_bytes = 0          # egress tunnel carriers
        self.tunnelled = self.tunnelled_bytes = 0       # egress flows inside a tunnel
        self.verdicts: Counter[tuple[str, str]] = Counter()      # (verdict, reason)
        self.rules: Counter[str] = Counter()                     # rule name -> flows
        self.platform_flows = 0                                  # one line, not one per service
        self.attributed = False
        self.sources: Counter[str] = Counter()                   # workload or client IP -> bytes sent
        self.denied: Counter[str] = Counter()
        self.denied_folded = 0
        self.findings: Counter[tuple[str, str]] = Counter()      # (detector, severity)
        self.finding_samples: dict[str, str] = {}
        self.dns_responses = 0
        self.unsolicited_dns = 0
        self.violations = 0
        self.policy: str | None = None  # one line describing the policy judged against

    def flow_ended(self, ev: FlowEnded) -> None:
        f = ev.flow
        if not f.egress:
            return
        self.flows += 1
        self.egress_bytes += f.c_bytes
        self.ingress_bytes += f.s_bytes
        # Tunnelled bytes are in the totals twice (inside the carrier, and as the flows
        # inside it), said on a line of their own. Never left out instead: a carrier whose
        # payload opens to nothing (junk to UDP 4789) would then hide an upload.
        if f.carrier:
            self.carriers += 1
            self.carrier_bytes += f.c_bytes
        elif f.tunnel is not None:
            self.tunnelled += 1
            self.tunnelled_bytes += f.c_bytes
        known = f.owner is not None and f.owner.known
        self.attributed = self.attributed or known
        who = f.owner.workload() if known else f.client_ip
        if who in self.sources or len(self.sources) < MAX_TRACKED_DESTINATIONS:
            self.sources[who] += f.c_bytes
        v = f.verdict
        if v is not None:
            self.verdicts["allowed" if v.allowed else "denied", str(v.reason)] += 1
            if v.rule:
                self.rules[v.rule] += 1
            elif v.reason == "platform":
                self.platform_flows += 1

    def violation(self, ev: Violation) -> None:
        self.violations += 1
        dest = f"{ev.flow.domain or ev.flow.server_ip}:{ev.flow.server_port}/{ev.flow.transport}"
        if dest in self.denied or len(self.denied) < MAX_TRACKED_DESTINATIONS:
            self.denied[dest] += 1
        else:
            self.denied_folded += 1

    def finding(self, ev: Finding) -> None:
        self.findings[ev.detector, ev.severity] += 1
        self.finding_samples.setdefault(ev.detector, ev.key)

    def dns_answered(self, ev: DnsAnswered) -> None:
        self.dns_responses += 1
        if not ev.solicited:
            self.unsolicited_dns += 1

    def render(self, out: TextIO, *, top: int = 10, elapsed: float | None = None) -> None:
        w = out.write
        t = self.telemetry
        span = ""
        if t.first_packet_ts is not None and t.last_packet_ts >= t.first_packet_ts:
            span = f" over {t.last_packet_ts - t.first_packet_ts:,.1f} s of capture"
        rate = f" in {elapsed:.2f} s ({t.packets / elapsed:,.0f} packets/s)" if elapsed else ""
        if rate and (slow := core.notice()):
            rate += f" [{slow}]"        # the rate a user sees is the place to say why it is low
        w("\negress-auditor summary\n")
        w(f"  packets        {t.packets:,}{span}{rate}\n")
        if self.policy:
            w(f"  policy         {printable(self.policy)}\n")
        malformed = {k.value: v for k, v in t.malformed.items() if v}
        if malformed:
            w("  malformed      " + ", ".join(f"{k}={v:,}" for k, v in sorted(malformed.items())) + "\n")
        w(f"  egress flows   {self.flows:,}  (sent {_size(self.egress_bytes)}, received {_size(self.ingress_bytes)})\n")
        if self.carriers or self.tunnelled:
            w(f"  tunnels        {self.carriers:,} carrier{'s' if self.carriers != 1 else ''} sent "
              f"{_size(self.carrier_bytes)}; {self.tunnelled:,} flow{'s' if self.tunnelled != 1 else ''} "
              f"inside tunnels sent {_size(self.tunnelled_bytes)} (both are in the totals)\n")
        w(f"  dns responses  {self.dns_responses:,}"
          + (f"  ({self.unsolicited_dns:,} unsolicited, not trusted for naming)" if self.unsolicited_dns else "") + "\n")
        ev = {k.value: v for k, v in t.evictions.items() if v}
        if ev:
            w("  evictions      " + ", ".join(f"{k}={v:,}" for k, v in sorted(ev.items())) + "\n")
        if self.verdicts:
            w("\n  verdict   reason                               flows\n")
            for (verdict, reason), n in sorted(self.verdicts.items(), key=lambda kv: (-kv[1], kv[0])):
                w(f"  {verdict:<9} {reason:<36} {n:>6,}\n")
            w("\n  rule                                          flows\n")
            if self.platform_flows:
                w(f"  {'(platform: Azure DNS, wire server, IMDS)':<44} {self.platform_flows:>6,}\n")
            for rule, n in self.rules.most_common(top):
                w(f"  {printable(rule)[:44]:<44} {n:>6,}\n")
        elif self.flows:
            w("  verdicts       none (no --policy given: flows are named, not judged)\n")
        if len(self.sources) > 1 or self.attributed:
            w("\n  top sources (bytes sent)\n")
            for who, n in self.sources.most_common(5):
                w(f"  {printable(who)[:44]:<44} {_size(n):>12}\n")
        if self.denied:
            w(f"\n  top denied destinations ({self.violations:,} violation{'s' if self.violations != 1 else ''})\n")
            for dest, n in self.denied.most_common(top):
                w(f"  {printable(dest)[:60]:<60} {n:>6,}\n")
            if self.denied_folded:
                w(f"  ... and {self.denied_folded:,} more beyond the {MAX_TRACKED_DESTINATIONS:,} tracked\n")
        if self.findings:
            w("\n  findings  detector                   severity   count  e.g.\n")
            for (det, sev), n in sorted(self.findings.items()):
                sample = printable(self.finding_samples.get(det, ""))[:40]
                w(f"            {det:<26} {sev:<9} {n:>6,}  {sample}\n")
        else:
            w("  findings       none\n")
        if t.sink_errors:
            w(f"  event sink     {t.sink_errors:,} events could not be written\n")
        if t.errors_total():
            failing = sorted({c for (c, _), n in t.component_errors.items() if n})
            w(f"  internal errors {t.errors_total():,} in {', '.join(failing)} (a bug: please report)\n")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)
