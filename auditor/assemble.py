"""Builds one audit: settings -> policy and service tags -> components -> pipeline.

The one place that decides what a run is made of, for every driver alike (`replay`, `run`,
`suggest`, the Python API). Nothing here drives: no signals, no terminal, no loop.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from auditor.components import Component
from auditor.detect import registry as detectors
from auditor.detect.base import Context
from auditor.pipeline import Pipeline
from auditor.policy import load_policy
from auditor.policy.servicetags import ServiceTags
from auditor.policy.verdict import Judge
from auditor.sinks.ecs import EcsFormatter
from auditor.sinks.identity import PRODUCT, Ids
from auditor.sinks.jsonl import JsonlSink
from auditor.sinks.metrics import Metrics
from auditor.sinks.summary import Summary
from auditor.telemetry import Telemetry
from auditor.terminal import printable
from auditor.track.tracker import Limits
from auditor.verdicts import Verdicts

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from auditor.attribution.component import Attribution


@dataclass
class Audit:
    """A built pipeline and the components its driver talks to afterwards."""
    settings: object
    pipeline: Pipeline
    telemetry: Telemetry
    summary: Summary
    metrics: Metrics
    verdicts: Verdicts | None = None
    events: JsonlSink | None = None
    tags: ServiceTags | None = None
    extra: list[Component] = field(default_factory=list)
    ecs: EcsFormatter = field(default_factory=EcsFormatter)
    attribution: Attribution | None = None
    notices: list[str] = field(default_factory=list)   # policy and service-tags warnings
    process_metrics: bool = True          # export the process_* metrics of this process
    _registry: CollectorRegistry | None = None

    @property
    def registry(self) -> CollectorRegistry:
        """The Prometheus registry, built (and prometheus_client imported) on first use: a
        replay that exports no metrics never pays for it."""
        if self._registry is None:
            from auditor.sinks.collector import registry_for   # noqa: PLC0415 - on demand
            self._registry = registry_for(self.metrics, self.telemetry, process=self.process_metrics)
        return self._registry


def load_judge(settings) -> tuple[Judge, ServiceTags] | None:
    """The policy judge and the service tags it uses, or None when no policy is configured
    (flows are then named, not judged). Raises PolicyError on a bad file."""
    if settings.policy is None:
        return None
    policy = load_policy(settings.policy, region=settings.region)
    tags = ServiceTags.load(settings.service_tags, region=settings.region or policy.location,
                            virtual_network=settings.virtual_network)
    judge = Judge(policy, tags, dns_servers=tuple(settings.dns_servers),
                  include=tuple(settings.include), as_mode=settings.as_mode)
    return judge, tags


OBSERVER_ENV = {"pod_name": "EGRESS_AUDITOR_OBSERVER_POD_NAME",
                "pod_namespace": "EGRESS_AUDITOR_OBSERVER_POD_NAMESPACE",
                "node_name": "EGRESS_AUDITOR_OBSERVER_NODE_NAME"}


def ecs_formatter(settings, judge: Judge | None) -> EcsFormatter:
    """Who observed, on which host and cloud, under which policy: what every event carries.
    A Kubernetes DaemonSet passes its pod's identity through the downward API
    (EGRESS_AUDITOR_OBSERVER_POD_NAME, _POD_NAMESPACE, _NODE_NAME)."""
    hostname = socket.gethostname()
    mine = {k: os.environ[v] for k, v in OBSERVER_ENV.items() if os.environ.get(v)}
    observer = {"hostname": hostname, "name": mine.get("node_name", hostname), **PRODUCT}
    host = {"hostname": settings.host_name or hostname, "name": settings.host_name or hostname}
    c = settings.cloud
    region = c.region or settings.region or (judge.policy.location if judge else None)
    cloud = {k: v for k, v in (("provider", c.provider or ("azure" if region or c.instance_id else None)),
                               ("region", region)) if v}
    if c.instance_id:
        cloud["instance"] = {"id": c.instance_id}
    fmt = EcsFormatter(ids=Ids(), observer=observer, host=host, cloud=cloud or None,
                       tool_observer=mine or None)
    name_policy(fmt, judge)
    return fmt


def name_policy(fmt: EcsFormatter, judge: Judge | None) -> None:
    if judge is not None:
        fmt.ruleset = judge.policy.workspace_name or Path(judge.policy.path).name
        fmt.isolation_mode = judge.mode.value


def notices(judge: Judge, tags: ServiceTags, now: float) -> list[str]:
    """What the operator should read before trusting the verdicts: the policy's warnings
    (unknown keys, rules Azure reports Failed ...) and a stale or partial tags file."""
    out = [printable(str(w)) for w in judge.policy.warnings]
    for note in [*tags.notes, tags.staleness(now)]:
        if note:
            out.append(f"egress-auditor: warning: {printable(note)}")
    return out


def publish_policy(metrics: Metrics, judge: Judge, tags: ServiceTags) -> None:
    """Tell the metrics which policy and tags are in force (at start and after SIGHUP)."""
    counts: dict[str, int] = {}
    series = [("allowed", "platform", "platform"), ("denied", "none", "no_matching_rule")]
    for rule in judge.rules:
        counts[rule.type.value] = counts.get(rule.type.value, 0) + 1
        deny = getattr(rule, "action", "allow") == "deny"
        series.append(("denied" if deny else "allowed", rule.type.value, rule.name))
    metrics.set_policy(judge.mode.value, judge.policy.sha256, series, counts)
    metrics.set_service_tags(tags.change_number, tags.cloud, tags.published)


def build(settings, *, extra: Iterable[Component] = (), process_metrics: bool = True,
          attribution: bool = False) -> Audit:
    """Assemble the pipeline for `settings`; `extra` components go after the sinks.
    `attribution` (live only): look up which workload opened each egress flow."""
    telemetry = Telemetry()
    loaded = load_judge(settings)
    verdicts = Verdicts(loaded[0], telemetry) if loaded else None
    section = settings.detectors
    found = detectors.build(section, Context(telemetry, tuple(settings.dns_servers),
                                             section.max_keys))
    metrics = Metrics(settings.max_destination_labels,
                      [(d.name, d.severities) for d in section.classes])
    summary = Summary(telemetry)
    if loaded:
        judge, tags = loaded
        publish_policy(metrics, judge, tags)
        shadow = " (shadow audit)" if settings.as_mode else ""
        summary.policy = (f"{settings.policy} ({judge.mode.value}{shadow}, "
                          f"{len(judge.rules)} effective rules)")
    fmt = ecs_formatter(settings, loaded[0] if loaded else None)
    events = None
    if settings.events:
        events = JsonlSink(settings.events, telemetry, fmt, dns_events=settings.dns_events)
    extra = list(extra)
    owners = None
    if attribution:
        # Live only, so imported here: its Docker client (http.client) is ~15 ms of start-up.
        from auditor.attribution.component import Attribution
        owners = Attribution(telemetry)
    components: list[Component] = ([owners] if owners else []) + ([verdicts] if verdicts else [])
    components += list(found)
    components += [metrics, summary] + ([events] if events else []) + extra
    pipeline = pipeline_for(settings, components, telemetry)
    said = notices(*loaded, time.time()) if loaded else []
    return Audit(settings, pipeline, telemetry, summary, metrics, verdicts, events,
                 loaded[1] if loaded else None, extra, fmt, attribution=owners, notices=said,
                 process_metrics=process_metrics)


def pipeline_for(settings, components: list[Component], telemetry: Telemetry) -> Pipeline:
    """The tracker and dispatcher for these components, with the settings' caps and networks."""
    limits = Limits(max_flows=settings.max_flows, max_dns_cache=settings.max_dns_cache,
                    max_pending_queries=settings.max_pending_queries,
                    max_reassembly_bytes=settings.max_reassembly_bytes)
    return Pipeline(components, telemetry, node_networks=settings.node_networks, limits=limits,
                    dns_servers=settings.dns_servers, judge_loopback=settings.judge_loopback,
                    vxlan_ports=settings.vxlan_ports)


def reload_policy(audit: Audit) -> Judge:
    """Re-read the policy and service tags and swap the judge in place (flow table, DNS
    cache and detector state are kept). Raises PolicyError and leaves the old one in force."""
    loaded = load_judge(audit.settings)
    if loaded is None or audit.verdicts is None:
        raise RuntimeError("reload_policy needs an audit that was built with a policy")
    judge, tags = loaded
    audit.verdicts.judge = judge
    audit.tags = tags
    publish_policy(audit.metrics, judge, tags)
    name_policy(audit.ecs, judge)
    audit.notices = notices(judge, tags, time.time())
    return judge
