"""The alert rules, as a function of the mixin's Config.

Every rule keeps the `job` and `instance` of the auditor it is about, carries a `severity`
that Alertmanager routes on (critical pages, warning opens a ticket, info notifies), a
`runbook_url` to its section of docs/runbooks.md and, where a dashboard helps, an absolute
`dashboard` link. Each alert is unit-tested firing and resolving in
grafana/prometheus/tests/ (`promtool test rules`).
"""
from __future__ import annotations

from config import Config

OVERVIEW = "egress-auditor-overview"
HEALTH = "egress-auditor-health"


def _rule(c: Config, name: str, severity: str, expr: str, summary: str, description: str,
          dashboard: str | None = None, for_: str | None = None) -> dict:
    rule: dict = {"alert": name, "expr": expr.strip() + "\n"}
    if for_:
        rule["for"] = for_
    rule["labels"] = {"severity": severity}
    annotations = {"summary": summary, "description": " ".join(description.split()),
                   "runbook_url": c.runbook(name)}
    if dashboard:
        annotations["dashboard"] = c.dashboard(dashboard)
    rule["annotations"] = annotations
    return rule


def _new_or_increased(c: Config, metric: str, window: str, by: str, *matchers: str) -> str:
    """Series that increased within `window`, or appeared with a non-zero value within it
    (increase() needs two samples of a series; a label value first seen with its first event
    has one). Resolves once nothing new happened for `window`."""
    s = c.sel(*matchers)
    return f"""
sum by ({by}) (
    increase({metric}{s}[{window}]) > 0
  or
    ({metric}{s} > 0 unless {metric}{s} offset {window})
)"""


def rules(c: Config) -> list[dict]:
    days = c.service_tags_max_age_days
    return [
        _rule(c, "EgressDenied", "warning",
              _new_or_increased(c, "egress_auditor_violations_total", c.denied_window, "job, instance, reason"),
              "Egress denied by the policy ({{ $labels.reason }}) on {{ $labels.instance }}",
              f"""{{{{ $value | humanize }}}} egress flow(s) in the last {_human(c.denied_window)} were denied with
              reason {{{{ $labels.reason }}}}. See the audit log (event.action: violation) or the "Top
              denied destinations" panel for the names.""", OVERVIEW),
        _rule(c, "EgressExfiltrationFindingHigh", "critical", _finding(c, "high|critical"),
              "{{ $labels.detector }} finding ({{ $labels.finding_severity }}) on {{ $labels.instance }}",
              f"""{{{{ $value | humanize }}}} {{{{ $labels.detector }}}} finding(s) of severity
              {{{{ $labels.finding_severity }}}} in the last {_human(c.finding_window)}. The audit log's finding
              events (event.action: finding) carry the key and the evidence.""", OVERVIEW),
        _rule(c, "EgressExfiltrationFinding", "warning", _finding(c, "low|medium"),
              "{{ $labels.detector }} finding ({{ $labels.finding_severity }}) on {{ $labels.instance }}",
              f"""{{{{ $value | humanize }}}} {{{{ $labels.detector }}}} finding(s) of severity
              {{{{ $labels.finding_severity }}}} in the last {_human(c.finding_window)}; see the finding events in
              the audit log.""", OVERVIEW),
        _rule(c, "EgressAuditorDown", "critical",
              f"up{c.sel()} == 0\nor\nabsent(up{c.sel()})",
              "{{ if $labels.instance }}egress-auditor on {{ $labels.instance }} is down"
              "{{ else }}no egress-auditor target is scraped{{ end }}",
              f"""{{{{ if $labels.instance }}}}Prometheus has not scraped {{{{ $labels.instance }}}} for
              {_human(c.down_for)}.{{{{ else }}}}Prometheus has had no target matching {c.selector} for
              {_human(c.down_for)}: every auditor is gone, or service discovery lost them.{{{{ end }}}} Egress is
              not audited there.""", HEALTH, for_=c.down_for),
        _rule(c, "EgressAuditorCaptureDropping", "warning",
              f"sum by (job, instance) (rate(egress_auditor_capture_dropped_packets_total{c.sel()}[5m])) > 0",
              "egress-auditor on {{ $labels.instance }} drops packets",
              """The capture socket drops {{ $value | humanize }} packets/s: the audit is incomplete.
              Give the auditor more CPU, or narrow the capture with --bpf.""", HEALTH, for_="5m"),
        _rule(c, "EgressAuditorStalled", "warning",
              f"sum by (job, instance) (rate(egress_auditor_packets_total{c.sel()}[{c.stalled_window}])) == 0\n"
              f"  and on (job, instance) up{c.sel()} == 1",
              "egress-auditor on {{ $labels.instance }} reads no packets",
              f"""Scraped, but no packet read in {2 * _minutes(c.stalled_window)} minutes. Check that
              --interface names the node's egress interface and that the auditor has CAP_NET_RAW.""",
              HEALTH, for_=c.stalled_window),
        _rule(c, "EgressAuditorDeniedDestinationsOverflow", "warning",
              _new_or_increased(c, "egress_auditor_denied_destinations_total", c.overflow_window,
                                "job, instance", 'destination="other"'),
              "Denied destinations overflow the label cap on {{ $labels.instance }}",
              f"""{{{{ $value | humanize }}}} denied flow(s) in the last {_human(c.overflow_window)} went to
              destinations beyond max_destination_labels and are counted as "other". The audit log has
              every name; raise max_destination_labels only if the number of distinct names is
              bounded.""", OVERVIEW),
        _rule(c, "EgressAuditorEventSinkErrors", "warning",
              f"sum by (job, instance) (increase(egress_auditor_event_sink_errors_total{c.sel()}[10m])) > 0",
              "egress-auditor on {{ $labels.instance }} cannot write audit events",
              """{{ $value | humanize }} audit event(s) lost in the last 10 minutes. Check the events
              file's volume (free space, permissions, read-only mount).""", HEALTH),
        _rule(c, "EgressAuditorTableEvictions", "warning",
              f"sum by (job, instance, table) (increase(egress_auditor_table_evictions_total{c.sel()}"
              f"[{c.eviction_window}])) > 0",
              "egress-auditor on {{ $labels.instance }} evicts from its {{ $labels.table }} table",
              f"""{{{{ $value | humanize }}}} entries evicted from the {{{{ $labels.table }}}} table in the last
              {_human(c.eviction_window)}: it is full. Evicted flows are ended before they finish, and what follows
              on them is seen mid-stream; evicted DNS state can leave flows unnamed.""", HEALTH),
        _rule(c, "EgressAuditorComponentErrors", "warning",
              f"sum by (job, instance, component) (increase(egress_auditor_component_errors_total{c.sel()}"
              "[15m])) > 0",
              "egress-auditor component {{ $labels.component }} fails on {{ $labels.instance }}",
              """{{ $value | humanize }} exception(s) in the {{ $labels.component }} component in the last 15
              minutes (a bug: the other components went on). The auditor's log has the traceback.""",
              HEALTH),
        _rule(c, "EgressAuditorPolicyReloadFailed", "warning",
              f"(time() - egress_auditor_config_last_reload_success_timestamp_seconds{c.sel()})\n"
              f"  and on (job, instance) egress_auditor_config_last_reload_successful{c.sel()} == 0",
              "egress-auditor on {{ $labels.instance }} could not reload its policy",
              """The last policy reload (SIGHUP) failed, so the auditor still judges by the policy it
              loaded {{ $value | humanizeDuration }} ago. Its log says which file and field are
              wrong; fix the file and reload again.""", HEALTH),
        _rule(c, "EgressAuditorPolicyChanged", "info",
              f"count by (job, instance) (max_over_time(egress_auditor_policy_info{c.sel()}"
              f"[{c.policy_change_window}])) > 1",
              "The policy egress-auditor judges by changed on {{ $labels.instance }}",
              f"""{{{{ $value }}}} different policies (file SHA-256 or isolation mode) were in force in the
              last {_human(c.policy_change_window)}. Check that the change was intended: the Policy panel shows
              the one loaded now.""", HEALTH),
        _rule(c, "EgressAuditorServiceTagsStale", "warning",
              f"egress_auditor_service_tags_age_seconds{c.sel()} > {days} * 86400",
              "egress-auditor on {{ $labels.instance }} uses service tags older than " f"{days} days",
              f"""The service-tags file in use is {{{{ $value | humanizeDuration }}}} old. Microsoft
              republishes it weekly; with an old file, addresses Azure added since are judged
              no_matching_rule. Install a current ServiceTags_Public file (--service-tags) and
              reload.""", HEALTH),
        _rule(c, "EgressAuditorMalformedInputSurge", "warning",
              f"""
(
    sum by (job, instance) (rate(egress_auditor_packets_malformed_total{c.sel()}[10m]))
  /
    sum by (job, instance) (rate(egress_auditor_packets_total{c.sel()}[10m]))
) > {c.malformed_ratio}
  and on (job, instance)
sum by (job, instance) (rate(egress_auditor_packets_malformed_total{c.sel()}[10m])) > {c.malformed_min_rate}""",
              "Malformed input surges on {{ $labels.instance }}",
              f"""{{{{ $value | humanizePercentage }}}} of the packets read in the last 10 minutes had a
              malformed layer (at least {c.malformed_min_rate:g} per second). A new protocol or
              encapsulation the decoders do not know, a capture on the wrong interface, or traffic
              crafted to evade the audit: see the "Malformed units by layer" panel.""", HEALTH,
              for_="10m"),
    ]


def _minutes(duration: str) -> int:
    assert duration.endswith("m"), duration
    return int(duration[:-1])


def _human(duration: str) -> str:
    return f"{_minutes(duration)} minutes"


def _finding(c: Config, severities: str) -> str:
    return f"""
label_replace(
  sum by (job, instance, detector, severity) (
    increase(egress_auditor_findings_total{c.sel(f'severity=~"{severities}"')}[{c.finding_window}])
  ) > 0,
  "finding_severity", "$1", "severity", "(.*)")"""


def rule_file(c: Config) -> dict:
    return {"groups": [{"name": "egress-auditor", "rules": rules(c)}]}
