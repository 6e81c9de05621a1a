"""The Grafana dashboards, as a function of the mixin's Config.

Importable anywhere: every query goes through the `$datasource` variable (type datasource,
plugin prometheus), declared in `__inputs` as DS_PROMETHEUS so Grafana's import dialog (and
Azure Managed Grafana's) asks which Prometheus to use; provisioned from files, the variable
falls back to the default datasource. `$job` and `$instance` narrow every query; the job
variable lists only series matching the Config's selector. Annotations mark policy reloads,
failed reloads and auditor restarts.
"""
from __future__ import annotations

from config import Config

DS = {"type": "prometheus", "uid": "${datasource}"}
F = 'job=~"$job", instance=~"$instance"'            # every query's own filter
TS_DEFAULTS = {"drawStyle": "line", "fillOpacity": 10, "lineWidth": 1, "stacking": {"mode": "none"}}
TS_OPTIONS = {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]},
              "tooltip": {"mode": "multi", "sort": "desc"}}
GRAFANA_VERSION = "10.0.0"                          # the oldest Grafana these were written for


def q(expr: str, legend: str = "__auto", instant: bool = False) -> dict:
    t = {"expr": expr, "legendFormat": legend, "range": not instant, "instant": instant}
    if instant:
        t["format"] = "table"
    return t


def stat(title, description, target, unit=None, thresholds=None, mappings=None, color="none"):
    defaults: dict = {}
    if unit:
        defaults["unit"] = unit
    if thresholds:
        defaults["thresholds"] = {"mode": "absolute", "steps": [{"color": "green", "value": None}] + [
            {"color": c, "value": v} for c, v in thresholds]}
    if mappings:
        defaults["mappings"] = mappings
    return {"type": "stat", "title": title, "description": description, "targets": [target], "size": (6, 5),
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": color}}


def ts(title, description, *targets, unit=None, bars=False):
    custom = dict(TS_DEFAULTS, **({"drawStyle": "bars", "fillOpacity": 80, "stacking": {"mode": "normal"}}
                                  if bars else {}))
    defaults: dict = {"custom": custom}
    if unit:
        defaults = {"unit": unit, "custom": custom}
    return {"type": "timeseries", "title": title, "description": description, "targets": list(targets),
            "size": (12, 8), "fieldConfig": {"defaults": defaults, "overrides": []}, "options": TS_OPTIONS}


def table(title, description, *targets, size=(12, 8)):
    return {"type": "table", "title": title, "description": description, "targets": list(targets),
            "size": size, "fieldConfig": {"defaults": {}, "overrides": []}, "options": {}}


def bargauge(title, description, target):
    return {"type": "bargauge", "title": title, "description": description, "targets": [target], "size": (12, 8),
            "fieldConfig": {"defaults": {}, "overrides": []},
            "options": {"orientation": "horizontal", "displayMode": "basic",
                        "reduceOptions": {"calcs": ["lastNotNull"], "values": False}}}


def rate(metric: str, by: str, extra: str = "") -> str:
    sel = F + (", " + extra if extra else "")
    return f"sum by ({by}) (rate({metric}{{{sel}}}[$__rate_interval]))"


def layout(rows: list[tuple[str, list[dict]]]) -> list[dict]:
    """Rows of panels laid out left to right, 24 columns wide; ids in order."""
    out, y, pid = [], 0, 0
    for title, members in rows:
        pid += 1
        out.append({"type": "row", "title": title, "id": pid, "collapsed": False, "panels": [],
                    "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
        y += 1
        x, row_h = 0, 0
        for p in members:
            w, h = p.pop("size")
            if x + w > 24:
                x, y, row_h = 0, y + row_h, 0
            pid += 1
            targets = [dict({"refId": chr(ord("A") + i), "datasource": DS}, **t) for i, t in enumerate(p.pop("targets"))]
            out.append({"type": p.pop("type"), "title": p.pop("title"), "id": pid, "datasource": DS,
                        "description": p.pop("description"), "gridPos": {"h": h, "w": w, "x": x, "y": y},
                        "targets": targets, **p})
            x += w
            row_h = max(row_h, h)
        y += row_h
    return out


def variables(c: Config) -> list[dict]:
    def query_var(name: str, query: str) -> dict:
        return {"name": name, "label": name, "type": "query", "datasource": DS,
                "query": {"query": query, "refId": name}, "definition": query, "refresh": 2,
                "includeAll": True, "multi": True, "allValue": ".*",
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "sort": 1}
    return [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {"selected": True, "text": "${DS_PROMETHEUS}", "value": "${DS_PROMETHEUS}"},
         "hide": 0, "refresh": 1, "regex": "", "options": []},
        query_var("job", f"label_values(egress_auditor_build_info{{{c.selector}}}, job)"),
        query_var("instance", f'label_values(egress_auditor_build_info{{{c.selector}, job=~"$job"}}, instance)'),
    ]


def annotations() -> list[dict]:
    def prom(name, expr, color, title, text):
        return {"name": name, "datasource": DS, "enable": True, "iconColor": color, "expr": expr,
                "step": "60s", "titleFormat": title, "textFormat": text, "tagKeys": "instance",
                "useValueForTime": False}
    return [
        {"name": "Annotations & Alerts", "builtIn": 1, "type": "dashboard", "enable": True, "hide": True,
         "iconColor": "rgba(0, 211, 255, 1)", "datasource": {"type": "grafana", "uid": "-- Grafana --"}},
        prom("Policy reloads",
             f"changes(egress_auditor_config_last_reload_success_timestamp_seconds{{{F}}}[$__rate_interval]) > 0",
             "blue", "Policy reloaded", "{{instance}} loaded a policy (SIGHUP)"),
        prom("Failed policy reloads", f"egress_auditor_config_last_reload_successful{{{F}}} == 0",
             "red", "Policy reload failed", "{{instance}} kept its previous policy"),
        prom("Auditor restarts", f"changes(process_start_time_seconds{{{F}}}[$__rate_interval]) > 0",
             "orange", "Auditor restarted", "{{instance}}"),
    ]


def dashboard(c: Config, uid: str, title: str, description: str, rows, links_to: tuple[str, str]) -> dict:
    other_uid, other_title = links_to
    return {
        "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "description": "", "type": "datasource",
                      "pluginId": "prometheus", "pluginName": "Prometheus"}],
        "__requires": [{"type": "grafana", "id": "grafana", "name": "Grafana", "version": GRAFANA_VERSION},
                       {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"}]
                      + [{"type": "panel", "id": t, "name": t, "version": ""}
                         for t in sorted({p["type"] for _, ps in rows for p in ps})],
        "uid": uid, "title": title, "description": description, "tags": ["egress-auditor"],
        "editable": False, "schemaVersion": 39, "version": 1, "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"}, "timezone": "", "graphTooltip": 1,
        "fiscalYearStartMonth": 0, "liveNow": False,
        "annotations": {"list": annotations()},
        "links": [{"title": other_title, "type": "link", "url": f"/d/{other_uid}", "icon": "dashboard",
                   "targetBlank": False, "asDropdown": False, "includeVars": True, "keepTime": True, "tags": []}],
        "templating": {"list": variables(c)},
        "panels": layout(rows),
    }


def overview(c: Config) -> dict:
    flows = f"egress_auditor_flows_total{{{F}}}"
    rows = [
        ("Verdicts", [
            stat("Egress flows", "Egress flows ended in the time range.",
                 q(f"sum(increase({flows}[$__range]))", "flows")),
            stat("Denied flows", "Egress flows the policy denies (would break, or broke, in the managed network).",
                 q(f'sum(increase(egress_auditor_flows_total{{{F}, verdict="denied"}}[$__range]))', "denied"),
                 thresholds=[("red", 1)], color="background"),
            stat("Findings", "Exfiltration-risk findings in the time range.",
                 q(f"sum(increase(egress_auditor_findings_total{{{F}}}[$__range]))", "findings"),
                 thresholds=[("orange", 1)], color="background"),
            stat("Egress sent", "IP-layer bytes the node sent on egress flows.",
                 q(f"sum(increase(egress_auditor_egress_bytes_total{{{F}}}[$__range]))", "sent"), unit="bytes"),
            ts("Egress flows by verdict", "Flows ended per second, allowed / denied / unjudged (no policy).",
               q(rate("egress_auditor_flows_total", "verdict"), "{{verdict}}"), unit="ops"),
            ts("Egress flows by rule", "Which outbound rule (or denial reason) decided each flow.",
               q(rate("egress_auditor_flows_total", "verdict, rule_type, rule"), "{{verdict}} {{rule_type}} {{rule}}"),
               unit="ops"),
        ]),
        ("Denials", [
            ts("Denials by reason", "Reasons: no_matching_rule, fqdn_needs_sni_or_host, fqdn_port_not_supported, "
                                    "storage_requires_private_endpoint, service_tag_deny.",
               q(rate("egress_auditor_violations_total", "reason"), "{{reason}}"), unit="ops"),
            bargauge("Top denied destinations",
                     "Denied flows by destination name (else IP) over the time range. At most max_destination_labels "
                     "names; the rest are counted as \"other\" (alert EgressAuditorDeniedDestinationsOverflow).",
                     q(f"topk(15, sum by (destination) (increase(egress_auditor_denied_destinations_total{{{F}}}"
                       "[$__range])) > 0)", "{{destination}}", instant=True)),
        ]),
        ("Exfiltration risk", [
            ts("Findings by detector and severity",
               "Findings raised per detector and severity (each fires once per key per window).",
               q(f"sum by (detector, severity) (increase(egress_auditor_findings_total{{{F}}}[$__rate_interval])) > 0",
                 "{{detector}} ({{severity}})"), bars=True),
            table("Findings in range", "Count of findings per detector and severity in the time range; evidence is "
                                       "in the audit log (event.action: finding).",
                  q(f"sum by (detector, severity) (increase(egress_auditor_findings_total{{{F}}}[$__range])) > 0",
                    instant=True)),
        ]),
        ("Fleet", [
            ts("Denied flows by node", "Denied egress flows per second on each auditor: which nodes run jobs the "
                                       "policy does not cover.",
               q(rate("egress_auditor_flows_total", "instance", 'verdict="denied"'), "{{instance}}"), unit="ops"),
            table("Nodes by findings in range", "Auditors with findings in the time range, most first.",
                  q(f"sort_desc(sum by (instance) (increase(egress_auditor_findings_total{{{F}}}[$__range])) > 0)",
                    instant=True)),
        ]),
        ("Traffic", [
            ts("Egress and ingress bytes by verdict",
               "IP-layer bytes per second on egress flows: sent above the axis, received below.",
               q(rate("egress_auditor_egress_bytes_total", "verdict"), "sent {{verdict}}"),
               q("-" + rate("egress_auditor_ingress_bytes_total", "verdict"), "received {{verdict}}"), unit="Bps"),
            ts("Bytes by rule type", "fqdn, service_tag, private_endpoint, platform, none (denied).",
               q(rate("egress_auditor_egress_bytes_total", "rule_type"), "sent {{rule_type}}"),
               q(rate("egress_auditor_ingress_bytes_total", "rule_type"), "received {{rule_type}}"), unit="Bps"),
            ts("DNS responses by rcode", "A burst of NXDOMAIN is typical of DNS tunnelling and of misconfigured "
                                         "resolvers.",
               q(rate("egress_auditor_dns_responses_total", "rcode"), "{{rcode}}"), unit="ops"),
            ts("DNS responses by query type", "TXT and NULL queries are what DNS tunnels use.",
               q(rate("egress_auditor_dns_responses_total", "qtype"), "{{qtype}}"), unit="ops"),
        ]),
    ]
    return dashboard(c, "egress-auditor-overview", "egress-auditor / Egress overview",
                     "Egress flows judged against the Azure managed-network policy, denials and exfiltration-risk "
                     "findings.", rows, ("egress-auditor-health", "Capture health"))


def health(c: Config) -> dict:
    ts_inst = "{{instance}}"
    rows = [
        ("Capture", [
            stat("Auditor up", "Prometheus scrape status of the auditor (alert EgressAuditorDown).",
                 q(f"min(up{{{F}}})", "up"), color="background",
                 mappings=[{"type": "value", "options": {"0": {"text": "DOWN", "color": "red"},
                                                         "1": {"text": "UP", "color": "green"}}}]),
            stat("Last packet age", "Now minus the capture timestamp of the last packet read. Live: should stay "
                                    "within seconds. Replays (demo) show the capture's own, old, clock.",
                 q(f"time() - max(egress_auditor_last_packet_timestamp_seconds{{{F}}})", "age"), unit="s"),
            table("Policy", "The loaded policy: isolation mode, SHA-256 of the file, effective rule count. Changes on "
                            "SIGHUP reload (annotations mark reloads).",
                  q(f"max by (instance, isolation_mode, policy_sha256) (egress_auditor_policy_info{{{F}}})", instant=True),
                  q(f"sum by (instance) (egress_auditor_policy_rules{{{F}}})", instant=True), size=(12, 5)),
            ts("Packets per second", "Packets read from the capture (alert EgressAuditorStalled when zero).",
               q(rate("egress_auditor_packets_total", "instance"), ts_inst), unit="pps"),
            ts("Kernel drops per second", "Packets the kernel dropped before the auditor read them (alert "
                                          "EgressAuditorCaptureDropping).",
               q(rate("egress_auditor_capture_dropped_packets_total", "instance"), ts_inst), unit="pps"),
            ts("Malformed units by layer", "Undecodable frames, headers and messages skipped, by layer (alert "
                                           "EgressAuditorMalformedInputSurge).",
               q(rate("egress_auditor_packets_malformed_total", "layer"), "{{layer}}"), unit="ops"),
            ts("Event sink errors", "Audit events that could not be written (alert EgressAuditorEventSinkErrors).",
               q(rate("egress_auditor_event_sink_errors_total", "instance"), ts_inst), unit="ops"),
        ]),
        ("Sidecar", [
            ts("Sidecar CPU", "CPU seconds per second the auditor process uses (1 = one core). Live capture is one "
                              "Python thread: near 1 means it cannot keep up (kernel drops follow).",
               q(f"sum by (instance) (rate(process_cpu_seconds_total{{{F}}}[$__rate_interval]))", ts_inst),
               unit="percentunit"),
            ts("Sidecar memory", "Resident memory of the auditor process. The tables are capped (max_flows, "
                                 "max_dns_cache, ...): memory levels off; compare with the container's limit.",
               q(f"sum by (instance) (process_resident_memory_bytes{{{F}}})", ts_inst), unit="bytes"),
        ]),
        ("Tables", [
            ts("Active flows", "Flows in the flow table (capped by max_flows).",
               q(f"sum by (instance) (egress_auditor_active_flows{{{F}}})", ts_inst)),
            ts("Cache sizes", "DNS name cache entries (max_dns_cache) and flow table entries (max_flows).",
               q(f"sum by (instance) (egress_auditor_dns_cache_entries{{{F}}})", "dns cache {{instance}}"),
               q(f"sum by (instance) (egress_auditor_active_flows{{{F}}})", "flows {{instance}}")),
            ts("Evictions by table", "Entries evicted from a capped table: steady evictions mean a cap is too low for "
                                     "this node (alert EgressAuditorTableEvictions).",
               q(rate("egress_auditor_table_evictions_total", "table"), "{{table}}"), unit="ops"),
            ts("Component errors", "Exceptions inside a component (a bug; the others went on: alert "
                                   "EgressAuditorComponentErrors).",
               q(rate("egress_auditor_component_errors_total", "component"), "{{component}}"), unit="ops"),
        ]),
        ("Configuration", [
            table("Build", "egress-auditor version per instance.",
                  q(f"max by (instance, version) (egress_auditor_build_info{{{F}}})", instant=True), size=(8, 8)),
            table("Service tags", "The service-tags file in use: change number, cloud, age (alert "
                                  "EgressAuditorServiceTagsStale past the threshold).",
                  q(f"max by (instance, change_number, cloud) (egress_auditor_service_tags_info{{{F}}})", instant=True),
                  q(f"max by (instance) (egress_auditor_service_tags_age_seconds{{{F}}})", instant=True), size=(8, 8)),
            table("Last policy load", "1 when the last (re)load succeeded, and when the policy in force was loaded "
                                      "(alert EgressAuditorPolicyReloadFailed).",
                  q(f"max by (instance) (egress_auditor_config_last_reload_successful{{{F}}})", instant=True),
                  q(f"max by (instance) (egress_auditor_config_last_reload_success_timestamp_seconds{{{F}}})",
                    instant=True), size=(8, 8)),
        ]),
    ]
    return dashboard(c, "egress-auditor-health", "egress-auditor / Capture health",
                     "Is the auditor seeing all the traffic? Packets, drops, malformed input, the sidecar's CPU and "
                     "memory, table sizes, evictions, policy and service tags.", rows,
                     ("egress-auditor-overview", "Egress overview"))


def dashboards(c: Config) -> dict[str, dict]:
    return {d["uid"]: d for d in (overview(c), health(c))}
