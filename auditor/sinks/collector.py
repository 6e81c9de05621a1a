"""Prometheus exposition of the auditor's counters: the one module that imports prometheus_client.

`AuditorCollector` reads `Metrics` (events) and `Telemetry` (stages) at scrape time and yields
metric families; `registry_for` is what the metrics endpoint and the textfile writer use. Only
built when metrics are exported (`--metrics-port`, `--metrics-file`, `run`).
"""
from __future__ import annotations

import time
from typing import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from auditor import __version__
from auditor.sinks.metrics import MAX_WORKLOADS, P, Metrics
from auditor.telemetry import Telemetry


def _counter(name: str, doc: str, labels: list[str], values: dict) -> CounterMetricFamily:
    family = CounterMetricFamily(P + name, doc, labels=labels)
    for key, n in sorted(dict(values).items()):   # copy first: the capture thread writes
        family.add_metric(list(key) if isinstance(key, tuple) else [key], n)
    return family


class AuditorCollector:
    """Reads `Metrics` and `Telemetry` at scrape time."""

    def __init__(self, metrics: Metrics, telemetry: Telemetry) -> None:
        self.m, self.t = metrics, telemetry

    def collect(self) -> Iterator[Metric]:
        m, t = self.m, self.t
        yield from self._traffic(m, t)
        yield from self._configuration(m)

    def _traffic(self, m: Metrics, t: Telemetry) -> Iterator[Metric]:
        yield CounterMetricFamily(P + "packets", "Packets read from the source", value=t.packets)
        yield _counter("packets_malformed", "Malformed units skipped, by layer", ["layer"],
                       {k.value: v for k, v in t.malformed.items()})
        yield CounterMetricFamily(P + "capture_dropped_packets",
                                  "Packets the kernel dropped before we read them", value=t.capture_dropped)
        yield _counter("flows", "Egress flows ended, by verdict and the rule that decided it",
                       ["verdict", "rule_type", "rule"], m.flows)
        yield _counter("egress_bytes", "IP-layer bytes sent by the node on egress flows",
                       ["verdict", "rule_type"], m.egress_bytes)
        yield _counter("ingress_bytes", "IP-layer bytes received on egress flows",
                       ["verdict", "rule_type"], m.ingress_bytes)
        yield _counter("violations", "Egress flows denied by the policy, by reason", ["reason"],
                       m.violations)
        yield _counter("findings", "Exfiltration-risk findings", ["detector", "severity"], m.findings)
        yield _counter("denied_destinations", "Denied flows by destination (name, else IP); "
                       "capped, the rest as 'other'", ["destination"], m.denied_destinations)
        yield _counter("dns_responses", "DNS responses seen", ["qtype", "rcode"], m.dns_responses)
        yield _counter("workload_egress_bytes", "Egress bytes by the workload that opened the "
                       f"flow (live; at most {MAX_WORKLOADS} names, the rest 'other')",
                       ["workload"], m.workload_bytes)
        yield GaugeMetricFamily(P + "active_flows", "Flows in the flow table",
                                value=t.read_gauge("active_flows"))
        yield GaugeMetricFamily(P + "dns_cache_entries", "Entries in the DNS name cache",
                                value=t.read_gauge("dns_cache_entries"))
        yield _counter("table_evictions", "Entries evicted from a capped table", ["table"],
                       {k.value: v for k, v in t.evictions.items()})
        yield GaugeMetricFamily(P + "last_packet_timestamp_seconds",
                                "Capture timestamp of the last packet read", value=t.last_packet_ts)
        yield CounterMetricFamily(P + "event_sink_errors", "Audit events that could not be written",
                                  value=t.sink_errors)
        yield _counter("flow_attributions", "Owner lookups of egress flows (live), by result: "
                       "known = a process was found", ["result"], t.attributions)
        yield _counter("component_errors", "Exceptions raised inside a component (bugs), by "
                       "component and event", ["component", "event"], t.component_errors)

    def _configuration(self, m: Metrics) -> Iterator[Metric]:
        build = GaugeMetricFamily(P + "build_info", "egress-auditor build", labels=["version"])
        build.add_metric([__version__], 1)
        yield build
        rules = GaugeMetricFamily(P + "policy_rules", "Effective policy rules by type", labels=["type"])
        for rtype, n in sorted(m.policy_rules.items()):
            rules.add_metric([rtype], n)
        yield rules
        info = GaugeMetricFamily(P + "policy_info", "The loaded policy",
                                 labels=["isolation_mode", "policy_sha256"])
        if m.policy_info:
            info.add_metric(list(m.policy_info), 1)
        yield info
        tags = GaugeMetricFamily(P + "service_tags_info", "The service-tags file in use",
                                 labels=["change_number", "cloud"])
        if m.service_tags:
            tags.add_metric(list(m.service_tags), 1)
        yield tags
        if m.service_tags_date is not None:
            yield GaugeMetricFamily(P + "service_tags_age_seconds",
                                    "Age of the service-tags file in use (from its publication date)",
                                    value=max(0.0, time.time() - m.service_tags_date))
        yield GaugeMetricFamily(P + "config_last_reload_successful",
                                "Whether the last policy (re)load succeeded", value=m.reload_ok)
        yield GaugeMetricFamily(P + "config_last_reload_success_timestamp_seconds",
                                "When the policy was last loaded successfully",
                                value=m.reload_success_ts)


def registry_for(metrics: Metrics, telemetry: Telemetry, *, process: bool = True) -> CollectorRegistry:
    """A registry holding the auditor's collector (and the process_* metrics of this process)."""
    registry = CollectorRegistry()
    registry.register(AuditorCollector(metrics, telemetry))
    if process:
        ProcessCollector(registry=registry)
    return registry
