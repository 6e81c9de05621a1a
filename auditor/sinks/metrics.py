"""Every Prometheus metric the auditor exports, and their bounded label values.

Nothing here touches a metric object per event: the `Metrics` component counts events into
plain dicts, the pipeline's stages count into `Telemetry`, and one collector
(`sinks/collector.py`, the only module that imports prometheus_client) turns both into metric
families when Prometheus scrapes or the textfile is written — a replay that exports no metrics
never loads the client library. So there are no
`*_created` series, every labelled counter exists from the start for its known label values,
and the hot path never takes a lock.

Labels never carry raw IPs or names, except `denied_destinations_total{destination}`, which
admits at most `max_destination_labels` distinct values and folds the rest into "other";
every label value is cut to `MAX_LABEL` characters.
"""
from __future__ import annotations

import time
from typing import Iterable

from auditor.components import Component
from auditor.decode import dns
from auditor.events import DnsAnswered, Finding, FlowEnded, Violation
from auditor.policy.verdict import Reason

P = "egress_auditor_"
MAX_LABEL = 128
MAX_WORKLOADS = 20
KNOWN_QTYPES = ("A", "AAAA", "CNAME", "MX", "TXT", "NS", "PTR", "SOA", "SRV", "HTTPS", "SVCB",
                "NULL", "ANY", "CAA", "DS", "DNSKEY", "RRSIG", "NAPTR", "none", "other")
KNOWN_RCODES = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "other")
VERDICTS = ("allowed", "denied", "unjudged")
RULE_TYPES = ("platform", "mode", "private_endpoint", "service_tag", "fqdn", "none")
DENY_REASONS = tuple(r.value for r in Reason if r in (
    Reason.SERVICE_TAG_DENY, Reason.FQDN_NEEDS_SNI_OR_HOST, Reason.FQDN_PORT_NOT_SUPPORTED,
    Reason.STORAGE_REQUIRES_PRIVATE_ENDPOINT, Reason.NO_MATCHING_RULE))


def label(value: object) -> str:
    """A label value: text, at most MAX_LABEL characters."""
    text = str(value)
    return text if len(text) <= MAX_LABEL else text[:MAX_LABEL - 3] + "..."


class Metrics(Component):
    """Counts flows, verdicts, findings and DNS responses for the collector."""
    name = "metrics"

    def __init__(self, max_destination_labels: int = 100,
                 detectors: Iterable[tuple[str, tuple[str, ...]]] = ()) -> None:
        self.max_destination_labels = max_destination_labels
        self.flows: dict[tuple[str, str, str], int] = {}
        self.egress_bytes = dict.fromkeys(((v, t) for v in VERDICTS for t in RULE_TYPES), 0)
        self.ingress_bytes = dict(self.egress_bytes)
        self.violations = dict.fromkeys(DENY_REASONS, 0)
        self.findings = {(name, sev): 0 for name, sevs in detectors for sev in sevs}
        self.denied_destinations: dict[str, int] = {}
        self.workload_bytes: dict[str, int] = {}     # live: egress bytes by workload, capped
        self.dns_responses = dict.fromkeys(((q, r) for q in KNOWN_QTYPES for r in KNOWN_RCODES), 0)
        self.flows[("unjudged", "none", "")] = 0
        # Policy and configuration state (set by the assembly and on SIGHUP).
        self.policy_rules: dict[str, int] = {}
        self.policy_info: tuple[str, str] | None = None
        self.service_tags: tuple[str, str] | None = None
        self.service_tags_date: float | None = None
        self.reload_ok = 1
        self.reload_success_ts = time.time()

    # -- configuration ----------------------------------------------------------------------
    def set_policy(self, isolation_mode: str, sha256: str, rules: Iterable[tuple[str, str, str]],
                   rule_counts: dict[str, int]) -> None:
        """The loaded policy; `rules` are (verdict, rule_type, rule) series to pre-create."""
        self.policy_info = (isolation_mode, sha256)
        self.policy_rules = dict(rule_counts)
        for key in rules:
            self.flows.setdefault(tuple(label(k) for k in key), 0)  # type: ignore[arg-type]

    def set_service_tags(self, change_number: object, cloud: object, published: float | None) -> None:
        self.service_tags = (label(change_number), label(cloud))
        self.service_tags_date = published

    def reloaded(self, ok: bool) -> None:
        self.reload_ok = int(ok)
        if ok:
            self.reload_success_ts = time.time()

    # -- events -----------------------------------------------------------------------------
    def flow_ended(self, ev: FlowEnded) -> None:
        flow = ev.flow
        if not flow.egress:
            return
        v = flow.verdict
        if v is None:
            verdict, rule_type, rule = "unjudged", "none", ""
        else:
            verdict, rule_type = ("allowed" if v.allowed else "denied"), v.rule_type
            rule = label(v.rule or v.reason)
        key = (verdict, rule_type, rule)
        self.flows[key] = self.flows.get(key, 0) + 1
        self.egress_bytes[verdict, rule_type] += flow.c_bytes
        self.ingress_bytes[verdict, rule_type] += flow.s_bytes
        if flow.owner is not None:
            who = label(flow.owner.workload())
            known = self.workload_bytes
            if who not in known and len(known) >= MAX_WORKLOADS:
                who = "other"
            known[who] = known.get(who, 0) + flow.c_bytes

    def violation(self, ev: Violation) -> None:
        flow = ev.flow
        reason = flow.verdict.reason.value
        self.violations[reason] = self.violations.get(reason, 0) + 1
        dest = label(flow.domain or flow.server_ip)
        known = self.denied_destinations
        if dest not in known and len(known) >= self.max_destination_labels:
            dest = "other"
        known[dest] = known.get(dest, 0) + 1

    def finding(self, ev: Finding) -> None:
        key = (ev.detector, ev.severity)
        self.findings[key] = self.findings.get(key, 0) + 1

    def dns_answered(self, ev: DnsAnswered) -> None:
        msg = ev.message
        qtype = dns.type_name(msg.questions[0][1]) if msg.questions else "none"
        rcode = dns.rcode_name(msg.rcode)
        key = (qtype if qtype in KNOWN_QTYPES else "other", rcode if rcode in KNOWN_RCODES else "other")
        self.dns_responses[key] += 1
