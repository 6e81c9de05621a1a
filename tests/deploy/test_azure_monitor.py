"""Azure Monitor Logs (scripts/gen_azure_monitor.py -> deploy/azure-monitor/): the custom
table has a column for every top-level field of every event type in the events' JSON Schema,
derived, not listed (a field added to the schema becomes a column); the DCR's stream
declaration, log-file source, data flow and transformation fit together; the transformation
and the ContainerLogV2 query are parsed and type-checked by Microsoft's Kusto language
service (tests/deploy/kql, installed by scripts/install-test-deps.sh) against their input
tables and yield exactly the table's columns and types; and real audit events lose no
top-level field on the way. The ARM template itself cannot be deployed or schema-checked here
(no Azure, no ARM schemas offline)."""
from __future__ import annotations

import copy
import fnmatch
import importlib.util
import json
import sys

import pytest

from .helpers import DEMO_PCAPS, DEMO_POLICY, ROOT, run, tool

GEN = ROOT / "scripts" / "gen_azure_monitor.py"
KQL_CHECK = ROOT / "tests" / "deploy" / "kql" / "check-kql.js"
KQL_TYPES = {"bool": "boolean", "long": "long", "real": "real", "string": "string", "datetime": "datetime",
             "dynamic": "dynamic", "int": "long"}


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("gen_azure_monitor", GEN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def schema(gen):
    return gen.event_schema()


@pytest.fixture(scope="module")
def committed(gen):
    return json.loads(gen.OUT.read_text())


def resources(template):
    return {r["type"]: r for r in template["resources"]}


def table_columns(template) -> dict[str, str]:
    cols = resources(template)["Microsoft.OperationalInsights/workspaces/tables"]["properties"]["schema"]["columns"]
    return {c["name"]: c["type"] for c in cols}


def top_level_fields(schema) -> dict[str, set]:
    """Independently of the generator: each event type's top-level properties."""
    def resolve(node):
        while "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
        return node
    roots = [resolve(n) for n in schema.get("anyOf", schema.get("oneOf", []))] or [schema]
    fields: dict[str, set] = {}
    for r in roots:
        for name, node in r["properties"].items():
            fields.setdefault(name, set()).add(json.dumps(node, sort_keys=True))
    return fields


def kql(query: str, table: str, columns: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    schema = "(" + ", ".join(f"{n}:{t}" for n, t in columns.items()) + ")"
    r = run(tool("node"), KQL_CHECK, query, table, schema, cwd=KQL_CHECK.parent)
    assert "Cannot find module" not in r.stderr, "run scripts/install-test-deps.sh (npm ci in tests/deploy/kql)"
    lines = r.stdout.splitlines()
    out = dict(line.removeprefix("column ").split(":", 1) for line in lines if line.startswith("column "))
    return [line for line in lines if not line.startswith("column ")], out


def test_the_committed_files_are_a_fresh_render():
    r = run(sys.executable, GEN, "--check")
    assert r.returncode == 0, r.stderr


def test_a_column_for_every_top_level_field_of_every_event_type(schema, committed):
    cols = table_columns(committed)
    fields = top_level_fields(schema)
    assert "@timestamp" in fields and cols["TimeGenerated"] == "datetime"
    for field in fields:
        name = "TimeGenerated" if field == "@timestamp" else field
        assert name in cols, f"no column for the events' top-level field {field!r}"
    assert set(cols) == {"TimeGenerated"} | (set(fields) - {"@timestamp"})
    for name in ("event", "source", "destination", "egress_auditor"):
        assert cols[name] == "dynamic", name


def test_the_columns_follow_the_schema_not_a_list(gen, schema):
    grown = copy.deepcopy(schema)
    flow = grown["$defs"]["FlowEvent"]["properties"]
    flow["process"] = {"anyOf": [{"$ref": "#/$defs/Observer"}, {"type": "null"}]}
    flow["message"] = {"type": "string"}
    flow["event_count"] = {"type": "integer"}
    flow["seen_at"] = {"type": "string", "format": "date-time"}
    grown["$defs"]["DnsEvent"]["properties"]["message"] = {"type": "integer"}      # two types: dynamic
    t = gen.template(grown)
    cols = table_columns(t)
    assert cols["process"] == "dynamic" and cols["event_count"] == "long" and cols["seen_at"] == "datetime"
    assert cols["message"] == "dynamic"
    transform = resources(t)["Microsoft.Insights/dataCollectionRules"]["properties"]["dataFlows"][0]["transformKql"]
    assert "['event_count'] = tolong(e['event_count'])" in transform
    assert "['seen_at'] = todatetime(e['seen_at'])" in transform


def test_the_dcr_reads_the_units_log_file_into_the_table(committed, gen):
    dcr = resources(committed)["Microsoft.Insights/dataCollectionRules"]["properties"]
    [stream] = dcr["streamDeclarations"]
    assert dcr["streamDeclarations"][stream]["columns"] == [{"name": "TimeGenerated", "type": "datetime"},
                                                           {"name": "RawData", "type": "string"}]
    [source] = dcr["dataSources"]["logFiles"]
    assert source["streams"] == [stream] and source["format"] == "text"
    events_path = "/var/log/egress-auditor/audit.jsonl"          # deploy/systemd/egress-auditor.service
    assert events_path in (ROOT / "deploy/systemd/egress-auditor.service").read_text()
    assert any(fnmatch.fnmatch(events_path, p) for p in source["filePatterns"])
    [flow] = dcr["dataFlows"]
    destinations = {d["name"] for kind in dcr["destinations"].values() for d in kind}
    assert flow["streams"] == [stream] and set(flow["destinations"]) <= destinations
    table = resources(committed)["Microsoft.OperationalInsights/workspaces/tables"]["properties"]["schema"]["name"]
    assert table.endswith("_CL") and flow["outputStream"] == f"Custom-{table}"


def test_the_transformation_type_checks_and_yields_the_table(committed):
    dcr = resources(committed)["Microsoft.Insights/dataCollectionRules"]["properties"]
    [stream] = dcr["streamDeclarations"].values()
    inputs = {c["name"]: c["type"] for c in stream["columns"]}
    diagnostics, out = kql(dcr["dataFlows"][0]["transformKql"], "source", inputs)
    assert diagnostics == [], diagnostics
    assert {n: KQL_TYPES[t] for n, t in out.items()} == table_columns(committed)


def test_the_kql_check_is_not_vacuous(committed):
    transform = resources(committed)["Microsoft.Insights/dataCollectionRules"]["properties"]["dataFlows"][0]["transformKql"]
    diagnostics, _ = kql(transform.replace("RawData", "RawDta").replace("tolong", "tolonng"), "source",
                         {"TimeGenerated": "datetime", "RawData": "string"})
    assert any("RawDta" in d for d in diagnostics), diagnostics


def test_the_container_insights_query_yields_the_same_columns(gen, committed):
    query = gen.CONTAINER_QUERY.read_text()
    container_log_v2 = {"TimeGenerated": "datetime", "Computer": "string", "ContainerId": "string",
                        "ContainerName": "string", "PodName": "string", "PodNamespace": "string",
                        "LogMessage": "dynamic", "LogSource": "string", "KubernetesMetadata": "dynamic"}
    diagnostics, out = kql(query, "ContainerLogV2", container_log_v2)
    assert diagnostics == [], diagnostics
    assert {n: KQL_TYPES[t] for n, t in out.items()} == table_columns(committed)
    ds = (ROOT / "deploy/kubernetes/base/daemonset.yaml").read_text()
    assert "name: auditor" in ds and '"-"' in ds                 # the container, writing events to stdout
    assert "PodNamespace == 'egress-auditor'" in query


def test_real_events_keep_every_top_level_field(committed, tmp_path):
    events = tmp_path / "events.jsonl"
    r = run(sys.executable, "-m", "auditor", "replay", *DEMO_PCAPS, "--policy", DEMO_POLICY, "--events", events,
            "--quiet")
    assert r.returncode == 0, r.stderr
    cols = table_columns(committed)
    seen = set()
    for line in events.read_text().splitlines():
        seen |= set(json.loads(line))
    assert seen and {("TimeGenerated" if k == "@timestamp" else k) for k in seen} <= set(cols), seen
