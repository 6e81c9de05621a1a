"""Alert rules (grafana/prometheus/rules) and the Alertmanager/Prometheus configs of the compose
stack: promtool and amtool accept them, every alert is unit-tested firing and not firing,
every metric an alert reads is one the exporter exports, and every severity is routed."""
from __future__ import annotations

import re

import yaml

from .helpers import (ALERTMANAGER_YML, PROMETHEUS_YML, RULE_TESTS, RULES, alert_rules, demo_exposition,
                      exported_names, metric_names_in, run, tool)

# Issue #5 / SPEC §11: the alerts users get, by what they are about.
REQUIRED = {
    "EgressDenied": "egress denied",
    "EgressExfiltrationFindingHigh": "exfiltration finding (high, critical)",
    "EgressExfiltrationFinding": "exfiltration finding (low, medium)",
    "EgressAuditorDown": "auditor down (up)",
    "EgressAuditorCaptureDropping": "capture dropping packets",
    "EgressAuditorStalled": "auditor stalled (no packets)",
    "EgressAuditorDeniedDestinationsOverflow": "denied-destination labels overflowing",
    "EgressAuditorEventSinkErrors": "event sink errors",
}


def test_promtool_check_rules():
    assert RULES
    r = run(tool("promtool"), "check", "rules", *RULES)
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_test_rules():
    assert RULE_TESTS
    r = run(tool("promtool"), "test", "rules", *RULE_TESTS)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_every_required_alert_exists_with_severity_and_help():
    rules = {r["alert"]: r for r in alert_rules()}
    assert set(REQUIRED) <= set(rules), set(REQUIRED) - set(rules)
    for name, rule in rules.items():
        assert rule.get("labels", {}).get("severity") in {"critical", "warning"}, name
        assert {"summary", "description"} <= set(rule.get("annotations", {})), name


def test_every_alert_is_tested_firing_and_not_firing():
    fires, silent = set(), set()
    for f in RULE_TESTS:
        for case in yaml.safe_load(f.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert names - fires == set(), f"never tested firing: {names - fires}"
    assert names - silent == set(), f"never tested silent: {names - silent}"


def test_alerts_read_only_metrics_the_exporter_exports(tmp_path):
    exported = exported_names(demo_exposition(tmp_path)) | {"up"}
    for rule in alert_rules():
        used = metric_names_in(rule["expr"])
        assert used, rule["alert"]
        assert used <= exported, f"{rule['alert']} reads {used - exported}, which the exporter does not export"


def test_alertmanager_config_is_valid_and_routes_every_severity():
    r = run(tool("amtool"), "check-config", ALERTMANAGER_YML)
    assert r.returncode == 0, r.stdout + r.stderr
    config = yaml.safe_load(ALERTMANAGER_YML.read_text())
    receivers = {rc["name"] for rc in config["receivers"]}
    routed = {}
    for route in config["route"]["routes"]:
        assert route["receiver"] in receivers
        for matcher in route["matchers"]:
            m = re.fullmatch(r'severity="(\w+)"', matcher)
            if m:
                routed[m.group(1)] = route["receiver"]
    used = {r["labels"]["severity"] for r in alert_rules()}
    assert used <= set(routed), f"severities with no route: {used - set(routed)}"
    assert routed["critical"] != routed["warning"]


def test_compose_prometheus_config_is_valid_with_the_rules(tmp_path):
    """deploy/prometheus.yml names the container path of the rules; point it at the repo's."""
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    assert [j["job_name"] for j in config["scrape_configs"]][0] == "egress-auditor"
    config["rule_files"] = [str(p) for p in RULES]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    r = run(tool("promtool"), "check", "config", local)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in r.stdout

