"""Every Prometheus metric the auditor exports (SPEC §10), and their bounded label values.

Event-driven counters (flows, verdicts, findings, DNS responses) are ordinary
prometheus_client metrics updated by this component's handlers. Per-packet figures
(packets, malformed, table sizes, evictions) are plain integers owned by the pipeline and
read at scrape time by a collector, so the hot path never takes a metric lock.

Labels never carry raw IPs or names, except `denied_destinations_total{destination}`, which
admits at most `max_destination_labels` distinct values and folds the rest into "other".
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from auditor import __version__
from auditor.decode import dns
from auditor.events import DnsAnswered, Finding, FlowEnded, Violation

if TYPE_CHECKING:
    from auditor.pipeline import Pipeline

P = "egress_auditor_"
KNOWN_QTYPES = frozenset({"A", "AAAA", "CNAME", "MX", "TXT", "NS", "PTR", "SOA", "SRV", "HTTPS", "SVCB",
                          "NULL", "ANY", "CAA", "DS", "DNSKEY", "RRSIG", "NAPTR"})
DETECTORS = ("dns_tunneling", "direct_ip", "dns_resolver_bypass", "encrypted_dns", "sni_mismatch",
             "bulk_upload")
SEVERITIES = ("low", "medium", "high", "critical")
EVICTION_TABLES = ("flows", "dns_cache", "dns_pending", "fragments", "detector_state")
KNOWN_RCODES = frozenset({"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"})


class Metrics:
    """Component: counts events into the registry it was given."""

    def __init__(self, registry: CollectorRegistry, max_destination_labels: int = 100):
        self.registry = registry
        self.max_destination_labels = max_destination_labels
        self._destinations: set[str] = set()
        self.flows = Counter(P + "flows", "Egress flows ended, by verdict and the rule that decided it",
                             ["verdict", "rule_type", "rule"], registry=registry)
        self.egress_bytes = Counter(P + "egress_bytes", "IP-layer bytes sent by the node on egress flows",
                                    ["verdict", "rule_type"], registry=registry)
        self.ingress_bytes = Counter(P + "ingress_bytes", "IP-layer bytes received on egress flows",
                                     ["verdict", "rule_type"], registry=registry)
        self.violations = Counter(P + "violations", "Egress flows denied by the policy, by reason",
                                  ["reason"], registry=registry)
        self.findings = Counter(P + "findings", "Exfiltration-risk findings", ["detector", "severity"],
                                registry=registry)
        self.denied_destinations = Counter(
            P + "denied_destinations", "Denied flows by destination (name, else IP); capped, rest as 'other'",
            ["destination"], registry=registry)
        self.dns_responses = Counter(P + "dns_responses", "DNS responses seen", ["qtype", "rcode"],
                                     registry=registry)
        self.policy_rules = Gauge(P + "policy_rules", "Effective policy rules by type", ["type"], registry=registry)
        self.policy_info = Gauge(P + "policy_info", "The loaded policy", ["isolation_mode", "policy_sha256"],
                                 registry=registry)
        Info(P + "build", "egress-auditor build", registry=registry).info({"version": __version__})
        # Pre-create so dashboards see zeros rather than absent series.
        self.violations.labels("no_matching_rule")
        for detector in DETECTORS:
            for severity in SEVERITIES:
                self.findings.labels(detector, severity)

    def set_policy(self, isolation_mode: str, sha256: str, rule_counts: dict[str, int]) -> None:
        self.policy_info.clear()
        self.policy_info.labels(isolation_mode, sha256).set(1)
        self.policy_rules.clear()
        for rtype, n in rule_counts.items():
            self.policy_rules.labels(rtype).set(n)

    def flow_ended(self, ev: FlowEnded) -> None:
        flow = ev.flow
        if not flow.egress:
            return
        v = flow.verdict
        verdict = "unjudged" if v is None else ("allowed" if v.allowed else "denied")
        rule_type = "none" if v is None else v.rule_type
        rule = "" if v is None else (v.rule or v.reason)
        self.flows.labels(verdict, rule_type, rule).inc()
        self.egress_bytes.labels(verdict, rule_type).inc(flow.c_bytes)
        self.ingress_bytes.labels(verdict, rule_type).inc(flow.s_bytes)

    def violation(self, ev: Violation) -> None:
        flow = ev.flow
        self.violations.labels(flow.verdict.reason).inc()
        dest = flow.domain or flow.server_ip
        if dest not in self._destinations:
            if len(self._destinations) >= self.max_destination_labels:
                dest = "other"
            else:
                self._destinations.add(dest)
        self.denied_destinations.labels(dest).inc()

    def finding(self, ev: Finding) -> None:
        self.findings.labels(ev.detector, ev.severity).inc()

    def dns_answered(self, ev: DnsAnswered) -> None:
        msg = ev.message
        qtype = dns.type_name(msg.questions[0][1]) if msg.questions else "none"
        rcode = dns.rcode_name(msg.rcode)
        self.dns_responses.labels(qtype if qtype in KNOWN_QTYPES else "other",
                                  rcode if rcode in KNOWN_RCODES else "other").inc()


class PipelineCollector:
    """Reads the pipeline's own counters at scrape time."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline

    def collect(self):
        p = self.pipeline
        yield CounterMetricFamily(P + "packets", "Packets read from the source", value=p.packets)
        m = CounterMetricFamily(P + "packets_malformed", "Malformed units skipped, by layer", labels=["layer"])
        for layer, n in sorted(dict(p.malformed_by_layer()).items()):
            m.add_metric([layer], n)
        yield m
        yield CounterMetricFamily(P + "capture_dropped_packets", "Packets the kernel dropped before we read them",
                                  value=p.capture_dropped)
        yield GaugeMetricFamily(P + "active_flows", "Flows in the flow table", value=len(p.tracker.flows))
        yield GaugeMetricFamily(P + "dns_cache_entries", "Entries in the DNS name cache",
                                value=len(p.tracker.names))
        e = CounterMetricFamily(P + "table_evictions", "Entries evicted from a capped table", labels=["table"])
        evictions = dict(p.tracker.evictions)
        for table in sorted(set(EVICTION_TABLES) | set(evictions)):
            e.add_metric([table], evictions.get(table, 0))
        yield e
        yield GaugeMetricFamily(P + "last_packet_timestamp_seconds",
                                "Capture timestamp of the last packet read", value=p.last_packet_ts)
        yield CounterMetricFamily(P + "event_sink_errors", "Audit events that could not be written",
                                  value=p.sink_errors())


def sha256_of(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()
