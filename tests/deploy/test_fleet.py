"""The fleet view (deploy/fleet, deploy/azure-monitor): every node's metrics to a central
store with Prometheus remote_write, the alert rules as an Azure Monitor rule group, the audit
log to Elasticsearch (Filebeat) and Loki (Fluent Bit).

Checked with the tools' own checkers where one is installable here: `promtool check config
--agent` on each remote-write config (Debian's Prometheus 2.42 predates the `azuread` block,
which is therefore checked against its documented shape, the rest by promtool), and a real
chain: the auditor replaying the demo, a Prometheus agent running the Mimir config (its
endpoint pointed at a local Prometheus receiving remote writes, the only change), and the
alert rules evaluated on the receiving side. Filebeat and Fluent Bit are not installable here
and publish no JSON schema: their configs are checked against what they must agree with.
"""
from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys

import pytest
import yaml

from .helpers import DEMO_PCAPS, DEMO_POLICY, JOB, RULES, ROOT, Prometheus, alert_rules, free_port, run, tool

FLEET = ROOT / "deploy" / "fleet"
AGENTS = sorted((FLEET / "prometheus").glob("agent-*.yml"))
RULE_GROUP = ROOT / "deploy" / "azure-monitor" / "egress-auditor-rule-group.json"
EVENTS_PATH = "/var/log/egress-auditor/audit.jsonl"            # deploy/systemd/egress-auditor.service
GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def agent_config(path, node="node-a") -> dict:
    text = path.read_text()
    assert text.count("__NODE__") >= 2, "the node-name placeholder (and its sed line)"
    return yaml.safe_load(text.replace("__NODE__", node))


def promtool_check(config: dict, tmp_path) -> subprocess.CompletedProcess:
    f = tmp_path / "agent.yml"
    f.write_text(yaml.safe_dump(config))
    return run(tool("promtool"), "check", "config", "--agent", f)


def test_there_is_a_config_per_store():
    assert {p.stem for p in AGENTS} == {"agent-azure-monitor", "agent-thanos", "agent-mimir"}


@pytest.mark.parametrize("path", AGENTS, ids=lambda p: p.stem)
def test_remote_write_config_passes_promtool(path, tmp_path):
    config = agent_config(path)
    [job] = config["scrape_configs"]
    assert job["job_name"] == JOB                              # what the rules and dashboards select
    [static] = job["static_configs"]
    assert static["targets"] == ["127.0.0.1:19807"] and static["labels"]["instance"] == "node-a"
    assert "rule_files" not in config and "alerting" not in config      # agent mode has neither
    [rw] = config["remote_write"]
    if path.stem == "agent-azure-monitor":
        azuread = rw.pop("azuread")
        assert azuread["cloud"] in {"AzurePublic", "AzureChina", "AzureGovernment"}
        assert set(azuread) == {"cloud", "managed_identity"} and re.fullmatch(GUID, azuread["managed_identity"]["client_id"])
        assert re.fullmatch(r"https://[\w.-]+\.metrics\.ingest\.monitor\.azure\.com/dataCollectionRules/dcr-[0-9a-f]{32}"
                            r"/streams/Microsoft-PrometheusMetrics/api/v1/write\?api-version=\d{4}-\d{2}-\d{2}", rw["url"])
    r = promtool_check(config, tmp_path)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_promtool_rejects_a_misspelt_remote_write_key(tmp_path):
    config = agent_config(FLEET / "prometheus" / "agent-mimir.yml")
    config["remote_write"][0]["header"] = config["remote_write"][0].pop("headers")
    r = promtool_check(config, tmp_path)
    assert r.returncode != 0 and "header" in r.stdout + r.stderr


def normalized(config: dict) -> dict:
    c = copy.deepcopy(config)
    for key in ("scrape_interval", "scrape_timeout"):
        c["global"].pop(key)
    c["scrape_configs"][0]["static_configs"][0].pop("targets")
    for key in ("url", "basic_auth"):
        c["remote_write"][0].pop(key, None)
    c["remote_write"][0]["queue_config"].pop("batch_send_deadline", None)
    return c


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """auditor (replay --loop) -> Prometheus agent (agent-mimir.yml) -> Prometheus with the rules."""
    tmp = tmp_path_factory.mktemp("fleet")
    port = free_port()
    target = f"127.0.0.1:{port}"
    auditor = subprocess.Popen(
        [sys.executable, "-m", "auditor", "replay", *map(str, DEMO_PCAPS), "--policy", str(DEMO_POLICY),
         "--metrics-port", str(port), "--loop", "1", "--quiet"],
        env=dict(os.environ, EGRESS_AUDITOR_METRICS_LISTEN=target),
        stdout=subprocess.DEVNULL, stderr=open(tmp / "auditor.log", "w"))
    (tmp / "central").mkdir()
    (tmp / "agent").mkdir()
    try:
        central_config = {"global": {"evaluation_interval": "1s"}, "rule_files": [str(p) for p in RULES]}
        with Prometheus(tmp / "central", [], RULES, config=central_config,
                        extra_args=("--web.enable-remote-write-receiver",)) as central:
            shipped = agent_config(FLEET / "prometheus" / "agent-mimir.yml")
            config = copy.deepcopy(shipped)
            config["global"].update(scrape_interval="1s", scrape_timeout="1s")
            config["scrape_configs"][0]["static_configs"][0]["targets"] = [target]
            config["remote_write"][0]["url"] = f"{central.url}/api/v1/write"
            config["remote_write"][0]["queue_config"]["batch_send_deadline"] = "1s"
            del config["remote_write"][0]["basic_auth"]
            assert normalized(config) == normalized(shipped), "only the endpoint, its credentials and the pace differ"
            with Prometheus(tmp / "agent", [], [], config=config, agent=True):
                def arrived():
                    assert auditor.poll() is None, (tmp / "auditor.log").read_text()
                    q = 'increase(egress_auditor_findings_total{job="egress-auditor",instance="node-a",severity="high"}[1m]) > 0'
                    return central.query('up{job="egress-auditor",instance="node-a"} == 1') and central.query(q)
                central.wait(arrived, 60, "the node's metrics in the central store")
                yield central
    finally:
        auditor.send_signal(signal.SIGTERM)
        try:
            auditor.wait(15)
        except subprocess.TimeoutExpired:
            auditor.kill()
            auditor.wait()


def test_the_central_store_has_the_node_under_its_own_name(chain):
    [series] = chain.query('egress_auditor_build_info{job="egress-auditor"}')
    assert series["metric"]["instance"] == "node-a" and series["metric"]["fleet"] == "egress-auditor"
    assert chain.query('egress_auditor_packets_total{instance="node-a"} > 0')
    assert chain.query('process_resident_memory_bytes{job="egress-auditor",instance="node-a"}')


def test_the_alert_rules_work_on_the_central_store(chain):
    def firing():
        return {(a["labels"]["alertname"], a["labels"].get("instance")) for a in chain.api("alerts")["alerts"]
                if a["state"] == "firing"}
    want = {("EgressDenied", "node-a"), ("EgressExfiltrationFindingHigh", "node-a")}
    chain.wait(lambda: firing() >= want, 20, f"{want} firing centrally")
    assert {name for name, _ in firing()} <= {r["alert"] for r in alert_rules()}
    assert ("EgressAuditorDown", None) not in firing()


def test_the_azure_rule_group_carries_every_alert():
    template = json.loads(RULE_GROUP.read_text())
    [group] = template["resources"]
    assert group["type"] == "Microsoft.AlertsManagement/prometheusRuleGroups"
    props = group["properties"]
    assert props["scopes"] == ["[parameters('azureMonitorWorkspaceId')]"] and re.fullmatch(r"PT\d+[MH]", props["interval"])
    ours = {r["alert"]: r for r in alert_rules()}
    theirs = {r["alert"]: r for r in props["rules"]}
    assert set(theirs) == set(ours)
    for name, r in theirs.items():
        assert r["expression"] == ours[name]["expr"].strip() and r["annotations"] == ours[name]["annotations"]
        assert r["severity"] == {"critical": 1, "warning": 3, "info": 4}[ours[name]["labels"]["severity"]]
        if "for" in ours[name]:
            assert r["for"] == "PT" + ours[name]["for"].upper()
        assert r["actions"] == [{"actionGroupId": "[parameters('actionGroupId')]"}]

    def strings(node):
        if isinstance(node, dict):
            for v in node.values():
                yield from strings(v)
        elif isinstance(node, list):
            for v in node:
                yield from strings(v)
        elif isinstance(node, str):
            yield node
    # ARM evaluates a string that starts with "[" as an expression: only the intended ones may.
    expressions = [s for s in strings(props["rules"]) if s.startswith("[")]
    assert set(expressions) == {"[parameters('actionGroupId')]"}


def test_filebeat_ships_the_units_log_as_ecs_into_the_projects_template():
    config = yaml.safe_load((FLEET / "logs" / "filebeat.yml").read_text())
    [inp] = config["filebeat.inputs"]
    assert inp["type"] == "filestream" and inp["id"]
    assert any(re.fullmatch(p.replace(".", r"\.").replace("*", "[^/]*"), EVENTS_PATH) for p in inp["paths"])
    [parser] = inp["parsers"]
    assert parser["ndjson"]["target"] == "" and parser["ndjson"]["overwrite_keys"] is True
    assert config["setup.template.enabled"] is False           # the project's template, not Filebeat's
    assert config["output.elasticsearch"]["index"].startswith("logs-egress_auditor")
    assert "deploy/elasticsearch/egress-auditor-template.json" in (FLEET / "logs" / "filebeat.yml").read_text()


def test_fluent_bit_ships_to_loki_with_bounded_labels_only():
    config = yaml.safe_load((FLEET / "logs" / "fluent-bit.yaml").read_text())
    [inp] = config["pipeline"]["inputs"]
    assert inp["name"] == "tail" and inp["db"] and inp["parser"] == config["parsers"][0]["name"]
    assert any(re.fullmatch(inp["path"].replace(".", r"\.").replace("*", "[^/]*"), EVENTS_PATH) for _ in [0])
    assert config["parsers"][0]["time_key"] == "@timestamp"
    [out] = config["pipeline"]["outputs"]
    assert out["name"] == "loki" and out["match"] == inp["tag"] and out["line_format"] == "json"
    labels = dict(part.strip().split("=", 1) for part in out["labels"].split(","))
    assert set(labels) == {"job", "host", "action", "kind"}
    assert labels["job"] == JOB
    # event.action and event.kind have four and two values; nothing from the wire is a label
    assert labels["action"] == "$event['action']" and labels["kind"] == "$event['kind']"
    assert not re.search(r"ip|domain|port|id\b|key|name", out["labels"])


def test_fluent_bit_to_azure_monitor_sends_the_dcrs_stream():
    config = yaml.safe_load((FLEET / "logs" / "fluent-bit-azure-monitor.yaml").read_text())
    [inp] = config["pipeline"]["inputs"]
    [out] = config["pipeline"]["outputs"]
    assert out["name"] == "azure_logs_ingestion" and out["match"] == inp["tag"]
    assert any(re.fullmatch(inp["path"].replace(".", r"\.").replace("*", "[^/]*"), EVENTS_PATH) for _ in [0])
    template = json.loads((ROOT / "deploy/azure-monitor/egress-auditor-logs.json").read_text())
    dcr = next(r for r in template["resources"] if r["type"] == "Microsoft.Insights/dataCollectionRules")
    [(stream, declaration)] = dcr["properties"]["streamDeclarations"].items()
    assert stream == "Custom-" + out["table_name"]
    sent = {inp["key"], out["time_key"]}                     # the record's fields as posted
    assert sent == {c["name"] for c in declaration["columns"]}
    assert out["time_generated"] is True and re.fullmatch(r"dcr-[0-9a-f]{32}", out["dcr_id"])
