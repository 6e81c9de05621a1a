"""Dashboard JSON and Grafana provisioning, statically: fixed uids, `$job`/`$instance`
variables used by every query, the provisioned datasource, the panels issue #5 lists, and no
query naming a metric the exporter does not export (the live check is in
test_prometheus_integration.py)."""
from __future__ import annotations

import json
import re

import pytest
import yaml

from .helpers import DASHBOARDS, ROOT, dashboard_queries, demo_exposition, exported_names, metric_names_in, panels

UIDS = {"egress-auditor-overview", "egress-auditor-health"}
# Issue #5's panel list, as the metrics that must be charted somewhere.
CHARTED = {
    "egress_auditor_flows_total", "egress_auditor_violations_total", "egress_auditor_denied_destinations_total",
    "egress_auditor_findings_total", "egress_auditor_egress_bytes_total", "egress_auditor_ingress_bytes_total",
    "egress_auditor_dns_responses_total", "egress_auditor_packets_total",
    "egress_auditor_capture_dropped_packets_total", "egress_auditor_packets_malformed_total",
    "egress_auditor_active_flows", "egress_auditor_dns_cache_entries", "egress_auditor_table_evictions_total",
    "egress_auditor_policy_info", "egress_auditor_last_packet_timestamp_seconds", "up",
}


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
        assert {"job", "instance"} <= set(variables), f.name
        assert "egress_auditor_build_info" in variables["job"]["definition"]
        assert '$job' in variables["instance"]["definition"]
        ids = [p["id"] for p in panels(d)]
        assert len(ids) == len(set(ids)), f"{f.name}: duplicate panel ids"


def test_every_query_filters_on_job_and_instance_and_uses_rate_interval():
    for uid, title, expr in dashboard_queries():
        selectors = re.findall(r"\b(?:egress_auditor_\w+|up)\{([^}]*)\}", expr)
        assert selectors, (uid, title, expr)
        for s in selectors:
            assert 'job=~"$job"' in s and 'instance=~"$instance"' in s, (uid, title, expr)
        for window in re.findall(r"\[([^\]]+)\]", expr):
            assert window in ("$__rate_interval", "$__range"), f"{uid}/{title}: fixed window [{window}]"


def test_every_panel_uses_the_provisioned_datasource():
    sources = yaml.safe_load((ROOT / "grafana/provisioning/datasources/egress-auditor.yaml").read_text())
    prometheus = next(d for d in sources["datasources"] if d["type"] == "prometheus")
    for f in DASHBOARDS:
        for p in panels(load(f)):
            if p["type"] == "row":
                continue
            assert p["datasource"] == {"type": "prometheus", "uid": prometheus["uid"]}, p["title"]
            for t in p["targets"]:
                assert t["datasource"]["uid"] == prometheus["uid"], p["title"]


def test_the_panels_issue_5_asks_for_are_there():
    charted = set().union(*(metric_names_in(e) for _, _, e in dashboard_queries()))
    assert CHARTED <= charted, CHARTED - charted
    titles = {t for _, t, _ in dashboard_queries()}
    for want in ("Egress flows by verdict", "Egress flows by rule", "Denials by reason", "Top denied destinations",
                 "Findings by detector and severity", "Egress and ingress bytes by verdict",
                 "DNS responses by rcode", "Packets per second", "Kernel drops per second",
                 "Malformed units by layer", "Active flows", "Cache sizes", "Evictions by table", "Policy",
                 "Last packet age"):
        assert want in titles, want


def test_no_query_names_a_metric_the_exporter_does_not_export(exported):
    for uid, title, expr in dashboard_queries():
        missing = metric_names_in(expr) - exported
        assert not missing, f"{uid} / {title}: {sorted(missing)} not exported"


def test_the_name_check_catches_a_misspelt_metric(exported):
    expr = 'sum(rate(egress_auditor_flow_total{job=~"$job", instance=~"$instance"}[$__rate_interval]))'
    assert metric_names_in(expr) - exported == {"egress_auditor_flow_total"}
