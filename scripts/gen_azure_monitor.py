#!/usr/bin/env python3
"""Render the Azure Monitor Logs side of the fleet: a custom table for the audit events and
the data collection rule (DCR) that makes the Azure Monitor Agent ship
/var/log/egress-auditor/*.jsonl into it, as one ARM template
(deploy/azure-monitor/egress-auditor-logs.json); and, for Kubernetes, where Container
Insights already collects the DaemonSet's stdout into ContainerLogV2, a query that gives
those lines the same columns (deploy/azure-monitor/egress-auditor-containerlogv2.kql: save it
as a workspace function named EgressAuditor).

The columns are derived from the events' JSON Schema (`auditor.schema.json_schema()`, what
`egress-auditor schema` prints): one column per top-level field of any event type, typed from
the schema (objects and arrays -> dynamic, strings -> string, date-time strings -> datetime,
integers -> long, numbers -> real, booleans -> boolean; a field typed differently by
different events -> dynamic). `@timestamp` becomes TimeGenerated. The agent reads each line
as text (stream Custom-EgressAuditorRaw: TimeGenerated, RawData); the DCR's transformation
parses the JSON and projects exactly the table's columns.

    python3 scripts/gen_azure_monitor.py            # rewrite the committed files
    python3 scripts/gen_azure_monitor.py --check    # exit 1 if one is stale (tests run this)
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "deploy" / "azure-monitor" / "egress-auditor-logs.json"
CONTAINER_QUERY = ROOT / "deploy" / "azure-monitor" / "egress-auditor-containerlogv2.kql"
K8S_NAMESPACE, K8S_CONTAINER = "egress-auditor", "auditor"      # deploy/kubernetes/base
TABLE = "EgressAuditor_CL"
RAW_STREAM = "Custom-EgressAuditorRaw"
LOG_FILES = ["/var/log/egress-auditor/*.jsonl"]
TIME_FIELD = "@timestamp"
# Column names Log Analytics keeps for itself (compared case-insensitively).
RESERVED = {"id", "type", "tenantid", "timegenerated", "_resourceid", "_subscriptionid", "_itemid",
            "_billedsize", "_isbillable", "sourcesystem", "mg", "managementgroupname", "rawdata"}
CONVERT = {"string": "tostring", "long": "tolong", "real": "toreal", "boolean": "tobool",
           "datetime": "todatetime", "dynamic": "todynamic"}


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        path = node["$ref"].removeprefix("#/").split("/")
        target = schema
        for part in path:
            target = target[part]
        node = target
    return node


def _kind(schema: dict, node: dict) -> str:
    """The Log Analytics column type of one JSON Schema node."""
    node = _resolve(schema, node)
    for union in ("anyOf", "oneOf"):
        if union in node:
            kinds = {_kind(schema, n) for n in node[union] if _resolve(schema, n).get("type") != "null"}
            return kinds.pop() if len(kinds) == 1 else "dynamic"
    t = node.get("type")
    if isinstance(t, list):
        t = [x for x in t if x != "null"]
        t = t[0] if len(t) == 1 else "mixed"
    if t == "string":
        return "datetime" if node.get("format") == "date-time" else "string"
    return {"integer": "long", "number": "real", "boolean": "boolean"}.get(t, "dynamic")


def event_types(schema: dict) -> list[dict]:
    """The event models a line can be: the root's union members, or the root itself."""
    for union in ("anyOf", "oneOf"):
        if union in schema:
            return [_resolve(schema, n) for n in schema[union]]
    return [schema]


def column_name(field: str) -> str:
    if field == TIME_FIELD:
        return "TimeGenerated"
    name = re.sub(r"[^A-Za-z0-9_]", "_", field)
    if not name[:1].isalpha():
        name = "f_" + name
    if name.lower() in RESERVED:
        name += "_"
    return name


def columns(schema: dict) -> list[dict]:
    """[{name, type, field}] for every top-level field of any event type, in first-seen order."""
    kinds: dict[str, set[str]] = {}
    for model in event_types(schema):
        for field, node in model.get("properties", {}).items():
            kinds.setdefault(field, set()).add(_kind(schema, node))
    out = [{"name": "TimeGenerated", "type": "datetime", "field": TIME_FIELD}]
    for field, ks in kinds.items():
        if field == TIME_FIELD:
            continue
        out.append({"name": column_name(field), "type": ks.pop() if len(ks) == 1 else "dynamic", "field": field})
    names = [c["name"] for c in out]
    assert len(names) == len(set(names)), f"two fields map to one column: {names}"
    assert all(re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,44}", n) for n in names), names
    return out


def _projection(cols: list[dict]) -> str:
    return ", ".join(f"['{c['name']}'] = {CONVERT[c['type']]}(e['{c['field']}'])" for c in cols)


def transform_kql(cols: list[dict]) -> str:
    return "source | extend e = parse_json(RawData) | project " + _projection(cols)


def container_query(cols: list[dict]) -> str:
    return (f"// GENERATED by scripts/gen_azure_monitor.py: the DaemonSet's audit events (its stdout) from\n"
            f"// Container Insights, with the columns of the {TABLE} table. Save as a function: EgressAuditor.\n"
            f"ContainerLogV2\n"
            f"| where PodNamespace == '{K8S_NAMESPACE}' and ContainerName == '{K8S_CONTAINER}' and LogSource == 'stdout'\n"
            f"| extend e = todynamic(LogMessage)\n"
            f"| where isnotempty(e['@timestamp'])\n"
            f"| project {_projection(cols)}\n")


def template(schema: dict) -> dict:
    cols = columns(schema)
    table_columns = [{"name": c["name"], "type": c["type"]} for c in cols]
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "metadata": {"description": "egress-auditor audit events into Azure Monitor Logs: the custom table "
                                    f"{TABLE} and the data collection rule for the Azure Monitor Agent. "
                                    "GENERATED by scripts/gen_azure_monitor.py from the events' JSON Schema."},
        "parameters": {
            "workspaceName": {"type": "string", "metadata": {"description": "Log Analytics workspace (same resource group)"}},
            "location": {"type": "string", "defaultValue": "[resourceGroup().location]"},
            "dataCollectionRuleName": {"type": "string", "defaultValue": "dcr-egress-auditor"},
            "dataCollectionEndpointId": {"type": "string", "defaultValue": "", "metadata": {
                "description": "A data collection endpoint's resource id: needed when the agents reach Azure Monitor "
                               "through a private link scope (approved-only workspaces)"}},
            "retentionInDays": {"type": "int", "defaultValue": 90},
        },
        "resources": [
            {
                "type": "Microsoft.OperationalInsights/workspaces/tables",
                "apiVersion": "2022-10-01",
                "name": f"[format('{{0}}/{TABLE}', parameters('workspaceName'))]",
                "properties": {"plan": "Analytics", "retentionInDays": "[parameters('retentionInDays')]",
                               "schema": {"name": TABLE, "columns": table_columns}},
            },
            {
                "type": "Microsoft.Insights/dataCollectionRules",
                "apiVersion": "2023-03-11",
                "name": "[parameters('dataCollectionRuleName')]",
                "location": "[parameters('location')]",
                "kind": "Linux",
                "dependsOn": [f"[resourceId('Microsoft.OperationalInsights/workspaces/tables', "
                              f"parameters('workspaceName'), '{TABLE}')]"],
                "properties": {
                    "dataCollectionEndpointId": "[if(empty(parameters('dataCollectionEndpointId')), null(), "
                                                "parameters('dataCollectionEndpointId'))]",
                    "streamDeclarations": {RAW_STREAM: {"columns": [{"name": "TimeGenerated", "type": "datetime"},
                                                                    {"name": "RawData", "type": "string"}]}},
                    "dataSources": {"logFiles": [{"name": "egressAuditorEvents", "streams": [RAW_STREAM],
                                                  "filePatterns": LOG_FILES, "format": "text"}]},
                    "destinations": {"logAnalytics": [{
                        "name": "workspace",
                        "workspaceResourceId": "[resourceId('Microsoft.OperationalInsights/workspaces', "
                                               "parameters('workspaceName'))]"}]},
                    "dataFlows": [{"streams": [RAW_STREAM], "destinations": ["workspace"],
                                   "transformKql": transform_kql(cols), "outputStream": f"Custom-{TABLE}"}],
                },
            },
        ],
        "outputs": {"dataCollectionRuleId": {"type": "string", "value": "[resourceId('Microsoft.Insights/"
                                             "dataCollectionRules', parameters('dataCollectionRuleName'))]"}},
    }


def event_schema() -> dict:
    sys.path.insert(0, str(ROOT))
    from auditor.schema import json_schema
    return json_schema()


def render(schema: dict | None = None) -> dict[Path, str]:
    schema = event_schema() if schema is None else schema
    return {OUT: json.dumps(template(schema), indent=2) + "\n", CONTAINER_QUERY: container_query(columns(schema))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 if a committed file is stale")
    a = p.parse_args(argv)
    stale = []
    for path, text in render().items():
        if a.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if stale:
        print(f"stale (run python3 scripts/gen_azure_monitor.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
