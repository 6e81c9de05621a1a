"""Alert rules (rendered by deploy/mixin into grafana/prometheus/rules and the Kubernetes
PrometheusRule) and the Alertmanager/Prometheus configs of the compose stack: promtool and
amtool accept them, every alert is unit-tested firing and not firing, every metric an alert
reads is one the exporter exports, every severity is routed, every alert links to its
runbook section and to a dashboard, the committed files are a fresh render, and the job
selector really is a parameter."""
from __future__ import annotations

import re
import sys

import pytest
import yaml

from .helpers import (ALERTMANAGER_YML, MIXIN, PROMETHEUS_YML, ROOT, RULE_TESTS, RULES, RUNBOOKS, alert_rules,
                      demo_exposition, exported_names, metric_names_in, run, tool)

# Issues #5 and #15 / the alerts users get, by what they are about.
REQUIRED = {
    "EgressDenied": "egress denied",
    "EgressExfiltrationFindingHigh": "exfiltration finding (high, critical)",
    "EgressExfiltrationFinding": "exfiltration finding (low, medium)",
    "EgressAuditorDown": "auditor down (up == 0, or absent)",
    "EgressAuditorCaptureDropping": "capture dropping packets",
    "EgressAuditorStalled": "auditor stalled (no packets)",
    "EgressAuditorDeniedDestinationsOverflow": "denied-destination labels overflowing (resolves)",
    "EgressAuditorEventSinkErrors": "event sink errors",
    "EgressAuditorTableEvictions": "table evictions",
    "EgressAuditorPolicyReloadFailed": "policy reload failed",
    "EgressAuditorPolicyChanged": "policy changed",
    "EgressAuditorServiceTagsStale": "service tags stale",
    "EgressAuditorMalformedInputSurge": "malformed-input surge",
}
SEVERITIES = {"critical", "warning", "info"}
OPERATOR_RULE = ROOT / "deploy" / "kubernetes" / "prometheusrule.yaml"


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a document's headings (lower case, punctuation dropped)."""
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#{1,6} (.+)$", markdown, re.M)}


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
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        assert {"summary", "description", "runbook_url"} <= set(rule.get("annotations", {})), name


def test_every_alert_is_tested_firing_and_not_firing():
    fires, silent = set(), set()
    for f in RULE_TESTS:
        for case in yaml.safe_load(f.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert names - fires == set(), f"never tested firing: {names - fires}"
    assert names - silent == set(), f"never tested silent: {names - silent}"


def test_alerts_that_must_resolve_use_increase_not_a_running_total():
    """A counter never goes down: `x > 0` on it fires for ever. The overflow alert once did."""
    rules = {r["alert"]: r for r in alert_rules()}
    for name in ("EgressDenied", "EgressAuditorDeniedDestinationsOverflow", "EgressAuditorEventSinkErrors",
                 "EgressAuditorTableEvictions", "EgressAuditorComponentErrors"):
        assert "increase(" in rules[name]["expr"], name
    assert "absent(up{" in rules["EgressAuditorDown"]["expr"]


def test_every_alert_links_its_runbook_section_and_an_absolute_dashboard():
    anchors = github_anchors(RUNBOOKS.read_text())
    uids = {p.stem for p in (ROOT / "grafana" / "dashboards").glob("*.json")}
    for rule in alert_rules():
        url = rule["annotations"]["runbook_url"]
        assert url.startswith("https://") and url.split("#")[0].endswith("/docs/runbooks.md"), url
        assert url.split("#")[1] in anchors, f"{rule['alert']}: no section #{url.split('#')[1]} in docs/runbooks.md"
        link = rule["annotations"]["dashboard"]
        m = re.fullmatch(r"https?://[^/]+/d/([\w-]+)\?var-job=\{\{ \$labels\.job \}\}&var-instance=\{\{ \$labels\.instance \}\}",
                         link)
        assert m and m.group(1) in uids, (rule["alert"], link)


def test_the_committed_rules_and_dashboards_are_a_fresh_render():
    r = run(sys.executable, MIXIN, "--check")
    assert r.returncode == 0, r.stderr


def test_the_prometheus_rule_holds_the_same_groups():
    operator = yaml.safe_load(OPERATOR_RULE.read_text())
    assert operator["kind"] == "PrometheusRule"
    assert operator["spec"] == yaml.safe_load(RULES[0].read_text())


def _selectors(expr: str) -> list[str]:
    """The matchers `{...}` of every selector of our metrics or `up` in an expression."""
    out = []
    for m in re.finditer(r"\b(?:egress_auditor_\w+|up)\b(\{[^}]*\})?", expr):
        out.append(m.group(1) or "")
    return out


@pytest.mark.parametrize("selector", ['job="egress-auditor"', 'job="ea-prod", cluster="aks-weu-1"'])
def test_the_job_selector_is_a_parameter(tmp_path, selector):
    r = run(sys.executable, MIXIN, "--out", tmp_path, "--selector", selector,
            "--dashboard-url", "https://grafana.contoso.example", "--runbook-url", "https://wiki.contoso.example/rb")
    assert r.returncode == 0, r.stderr
    rules_file = tmp_path / "grafana/prometheus/rules/egress-auditor.rules.yml"
    r = run(tool("promtool"), "check", "rules", rules_file)
    assert r.returncode == 0, r.stdout + r.stderr
    rules = [x for g in yaml.safe_load(rules_file.read_text())["groups"] for x in g["rules"]]
    for rule in rules:
        sels = _selectors(rule["expr"])
        assert sels and all(selector in s for s in sels), (rule["alert"], rule["expr"])
        assert rule["annotations"]["runbook_url"].startswith("https://wiki.contoso.example/rb#")
        assert rule["annotations"]["dashboard"].startswith("https://grafana.contoso.example/d/")
    dashboards = "".join(p.read_text() for p in (tmp_path / "grafana/dashboards").glob("*.json"))
    assert f"label_values(egress_auditor_build_info{{{selector}}}, job)".replace('"', '\\"') in dashboards


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
    assert len({routed["critical"], routed["warning"], routed["info"]}) == 3


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
