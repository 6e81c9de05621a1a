"""Dashboard JSON (rendered by deploy/mixin) and Grafana provisioning, statically: fixed
uids, `$job`/`$instance` variables used by every query, a `$datasource` variable and
`__inputs` instead of a fixed datasource uid (importable into any Grafana, Azure Managed
Grafana included), the panels issues #5 and #15 list, reload annotations, and no query naming
a metric the exporter does not export (the live check is in test_prometheus_integration.py)."""
from __future__ import annotations

import json
import re

import pytest
import yaml

from .helpers import (DASHBOARDS, ROOT, dashboard_annotations, dashboard_queries, demo_exposition, exported_names,
                      metric_names_in, panels)

UIDS = {"egress-auditor-overview", "egress-auditor-health"}
# Issue #5's panel list, as the metrics that must be charted somewhere.
CHARTED = {
    "egress_auditor_flows_total", "egress_auditor_violations_total", "egress_auditor_denied_destinations_total",
    "egress_auditor_findings_total", "egress_auditor_egress_bytes_total", "egress_auditor_ingress_bytes_total",
    "egress_auditor_dns_responses_total", "egress_auditor_packets_total",
    "egress_auditor_capture_dropped_packets_total", "egress_auditor_packets_malformed_total",
    "egress_auditor_active_flows", "egress_auditor_dns_cache_entries", "egress_auditor_table_evictions_total",
    "egress_auditor_policy_info", "egress_auditor_last_packet_timestamp_seconds", "up",
    # issue #15: the sidecar's own CPU and memory, configuration state
    "process_cpu_seconds_total", "process_resident_memory_bytes", "egress_auditor_component_errors_total",
    "egress_auditor_service_tags_age_seconds", "egress_auditor_service_tags_info",
    "egress_auditor_config_last_reload_successful", "egress_auditor_config_last_reload_success_timestamp_seconds",
}
DS_VAR = {"type": "prometheus", "uid": "${datasource}"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> set[str]:
    return exported_names(demo_exposition(tmp_path_factory.mktemp("expo"))) | {"up"}


def load(f):
    return json.loads(f.read_text())


def test_fixed_unique_uids_and_variables():
    assert {load(f)["uid"] for f in DASHBOARDS} == UIDS
    for f in DASHBOARDS:
        d = load(f)
        assert f.stem == d["uid"]
        variables = {v["name"]: v for v in d["templating"]["list"]}
        assert {"datasource", "job", "instance"} <= set(variables), f.name
        assert "egress_auditor_build_info" in variables["job"]["definition"]
        assert '$job' in variables["instance"]["definition"]
        ids = [p["id"] for p in panels(d)]
        assert len(ids) == len(set(ids)), f"{f.name}: duplicate panel ids"


def test_every_query_filters_on_job_and_instance_and_uses_rate_interval():
    for uid, title, expr in dashboard_queries():
        selectors = re.findall(r"\b(?:egress_auditor_\w+|process_\w+|up)\{([^}]*)\}", expr)
        assert selectors, (uid, title, expr)
        for s in selectors:
            assert 'job=~"$job"' in s and 'instance=~"$instance"' in s, (uid, title, expr)
        for window in re.findall(r"\[([^\]]+)\]", expr):
            assert window in ("$__rate_interval", "$__range"), f"{uid}/{title}: fixed window [{window}]"


def test_every_query_goes_through_the_datasource_variable():
    """No fixed uid: `$datasource` everywhere, declared for import as DS_PROMETHEUS."""
    for f in DASHBOARDS:
        d = load(f)
        assert d["__inputs"] == [{"name": "DS_PROMETHEUS", "label": "Prometheus", "description": "",
                                  "type": "datasource", "pluginId": "prometheus", "pluginName": "Prometheus"}]
        required = {(r["type"], r["id"]) for r in d["__requires"]}
        assert {("grafana", "grafana"), ("datasource", "prometheus")} <= required
        assert {("panel", p["type"]) for p in panels(d) if p["type"] != "row"} <= required
        variables = {v["name"]: v for v in d["templating"]["list"]}
        ds = variables["datasource"]
        assert ds["type"] == "datasource" and ds["query"] == "prometheus"
        for name in ("job", "instance"):
            assert variables[name]["datasource"] == DS_VAR, name
        for p in panels(d):
            if p["type"] == "row":
                continue
            assert p["datasource"] == DS_VAR, p["title"]
            for t in p["targets"]:
                assert t["datasource"] == DS_VAR, p["title"]
        for a in d["annotations"]["list"]:
            if a.get("expr"):
                assert a["datasource"] == DS_VAR, a["name"]
        # The import input is used only as the variable's initial choice: a provisioned copy
        # (no import step) never refers to an unresolved ${DS_PROMETHEUS} in a query.
        text = f.read_text()
        assert text.count("${DS_PROMETHEUS}") == 2 and ds["current"]["value"] == "${DS_PROMETHEUS}"
        assert '"uid": "prometheus"' not in text


def test_provisioning_makes_the_stack_prometheus_the_default_datasource():
    sources = yaml.safe_load((ROOT / "grafana/provisioning/datasources/egress-auditor.yaml").read_text())
    prometheus = [d for d in sources["datasources"] if d["type"] == "prometheus"]
    assert len(prometheus) == 1 and prometheus[0]["isDefault"] is True


def test_policy_reloads_and_restarts_are_annotated(exported):
    names = {(uid, name) for uid, name, _ in dashboard_annotations()}
    for uid in UIDS:
        assert {(uid, "Policy reloads"), (uid, "Failed policy reloads"), (uid, "Auditor restarts")} <= names
    for uid, name, expr in dashboard_annotations():
        assert 'job=~"$job"' in expr and 'instance=~"$instance"' in expr, (uid, name)
        assert metric_names_in(expr) <= exported, (uid, name, expr)


def test_the_panels_the_issues_ask_for_are_there():
    charted = set().union(*(metric_names_in(e) for _, _, e in dashboard_queries()))
    assert CHARTED <= charted, CHARTED - charted
    titles = {t for _, t, _ in dashboard_queries()}
    for want in ("Egress flows by verdict", "Egress flows by rule", "Denials by reason", "Top denied destinations",
                 "Findings by detector and severity", "Egress and ingress bytes by verdict",
                 "DNS responses by rcode", "Packets per second", "Kernel drops per second",
                 "Malformed units by layer", "Active flows", "Cache sizes", "Evictions by table", "Policy",
                 "Last packet age", "Sidecar CPU", "Sidecar memory", "Denied flows by node", "Service tags",
                 "Last policy load"):
        assert want in titles, want


def test_no_query_names_a_metric_the_exporter_does_not_export(exported):
    for uid, title, expr in dashboard_queries():
        missing = metric_names_in(expr) - exported
        assert not missing, f"{uid} / {title}: {sorted(missing)} not exported"


def test_the_name_check_catches_a_misspelt_metric(exported):
    expr = 'sum(rate(egress_auditor_flow_total{job=~"$job", instance=~"$instance"}[$__rate_interval]))'
    assert metric_names_in(expr) - exported == {"egress_auditor_flow_total"}
