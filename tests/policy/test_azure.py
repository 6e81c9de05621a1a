"""The three dialects, golden `policy show --json`, warnings and one-line errors."""
import json
import os
from pathlib import Path

import pytest

from auditor.policy import PolicyError, load_policy
from auditor.policy.render import to_json as show_json
from auditor.policy.model import IsolationMode, RuleType

GOLDEN = Path(__file__).resolve().parent / "golden"
DIALECTS = ["same-rules.cli.yaml", "same-rules.az.json", "same-rules.arm.json"]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"


@pytest.mark.parametrize("name", DIALECTS)
def test_golden_show_json(name):
    got = show_json(load_policy(GOLDEN / name))
    # what differs by dialect: which file it was, and what the file says about itself
    assert got.pop("dialect") == {"cli": "cli_yaml", "az": "az_json", "arm": "arm"}[name.split(".")[1]]
    got.pop("resource"), got.pop("info")
    expected_file = GOLDEN / "same-rules.show.json"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        expected_file.write_text(json.dumps(got, indent=2) + "\n")
    assert got == json.loads(expected_file.read_text())


def test_dialects_detected():
    assert [load_policy(GOLDEN / n).dialect for n in DIALECTS] == ["cli_yaml", "az_json", "arm"]


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*")))
def test_examples_load(name):
    policy = load_policy(EXAMPLES / name)
    assert policy.rules and not [w for w in policy.warnings if "unknown" in w.reason]


def test_bare_managed_network_mapping(write):
    p = load_policy(write("isolation_mode: allow_internet_outbound\noutbound_rules: []\n"))
    assert p.isolation_mode is IsolationMode.ALLOW_INTERNET_OUTBOUND and p.rules == ()


def test_outbound_rule_list_json(write):
    p = load_policy(write(json.dumps([
        {"name": "__SYS_ST_AzureMonitor_TCP", "type": "service_tag", "category": "required",
         "status": "Inactive", "destination": {"service_tag": "AzureMonitor", "protocol": "TCP",
                                               "port_ranges": "443", "address_prefixes": []}}]),
        "rules.json"))
    assert p.isolation_mode is IsolationMode.ALLOW_ONLY_APPROVED_OUTBOUND
    assert any("assuming" in w.reason for w in p.warnings)
    mon = [r for r in p.rules if r.name == "__SYS_ST_AzureMonitor_TCP"]
    assert len(mon) == 1 and mon[0].status == "Inactive"   # the file's rule, not a second copy


def test_rule_counts_and_sha(write):
    path = write("managed_network:\n  isolation_mode: allow_only_approved_outbound\n"
                 "  outbound_rules:\n  - {name: a, type: fqdn, destination: a.com}\n")
    p = load_policy(path)
    counts = p.rule_counts()
    assert counts[RuleType.FQDN] == 1 and counts[RuleType.SERVICE_TAG] == 9
    import hashlib
    assert p.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_unknown_keys_warn(write):
    p = load_policy(write("managed_network:\n  isolation_mode: allow_only_approved_outbound\n"
                          "  colour: blue\n  outbound_rules:\n"
                          "  - {name: a, type: fqdn, destination: a.com, priority: 3}\n"))
    reasons = [str(w) for w in p.warnings]
    assert any("policy.yaml:3: warning: colour: unknown key 'colour'" in r for r in reasons)
    assert any("rule 'a': priority: unknown key" in r for r in reasons)


def test_arm_location_expression_warns(write):
    doc = {"resources": [{"type": "Microsoft.MachineLearningServices/workspaces",
                          "location": "[parameters('location')]",
                          "properties": {"managedNetwork": {"isolationMode": "Disabled"}}}]}
    p = load_policy(write(json.dumps(doc), "t.json"))
    assert p.location is None and any("ARM expression" in w.reason for w in p.warnings)
    assert load_policy(write(json.dumps(doc), "t.json"), region="East US").location == "eastus"


HEAD = "managed_network:\n  isolation_mode: allow_only_approved_outbound\n  outbound_rules:\n"


@pytest.mark.parametrize("body,expected", [
    ("  - name: pypi\n    type: service_tag\n    destination:\n      service_tag: X\n"
     "      port_ranges: '70000'\n",
     "policy.yaml:8: rule 'pypi': destination.port_ranges: '70000' is not a port range"),
    ("  - name: pypi\n    type: fqdn\n    destination: www.*.org\n",
     "policy.yaml:6: rule 'pypi': destination: 'www.*.org': '*' is only allowed as the left-most"),
    ("  - name: pe\n    type: private_endpoint\n    destination:\n"
     "      service_resource_id: /subscriptions/x/storageAccounts/y\n      subresource_target: blob\n",
     "policy.yaml:7: rule 'pe': destination.service_resource_id: '/subscriptions/x/storageAccounts/y'"
     " is not an Azure resource id"),
    ("  - {name: a, type: fqdn, destination: a.com}\n  - {name: a, type: fqdn, destination: b.com}\n",
     "policy.yaml:5: rule 'a': name: duplicate rule name (first at line 4)"),
    ("  - {name: a, type: firewall, destination: a.com}\n",
     "policy.yaml:4: rule 'a': type: 'firewall' is not valid; expected one of fqdn,"),
    ("  - name: st\n    type: service_tag\n    destination: {service_tag: X, protocol: SCTP}\n",
     "policy.yaml:6: rule 'st': destination.protocol: 'SCTP' is not a protocol"),
    ("  - {type: fqdn, destination: a.com}\n", "policy.yaml:4: outbound_rules[0].name: outbound rule #1 has no name"),
])
def test_error_lines(write, body, expected):
    with pytest.raises(PolicyError) as exc:
        load_policy(write(HEAD + body))
    assert str(exc.value).startswith(expected)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("text,expected", [
    ("managed_network: [\n", "policy.yaml:2: invalid YAML"),
    ("a: !!python/object:os.system x\n", "policy.yaml:1: invalid YAML: YAML tags are not accepted"),
    ("a: &x [1]\nb: *x\n", "policy.yaml:2: invalid YAML: YAML aliases are not accepted"),
    ("a: 1\na: 2\n", "policy.yaml:2: invalid YAML: duplicate key 'a'"),
    ("- " * 100 + "x\n", "policy.yaml"),
    ("just a string\n", "policy.yaml: not an Azure managed network policy"),
    ("{}\n", "policy.yaml: not an Azure managed network policy"),
    ('{"managed_network": {"isolation_mode": "sometimes"}}', "policy.yaml: isolation_mode: 'sometimes' is not valid"),
    ('{"a": 1,}', "policy.yaml:1: invalid JSON"),
])
def test_bad_documents(write, text, expected):
    with pytest.raises(PolicyError) as exc:
        load_policy(write(text))
    assert str(exc.value).startswith(expected), str(exc.value)


def test_missing_and_oversized(tmp_path):
    with pytest.raises(PolicyError, match=r"nope.yaml: cannot read: No such file"):
        load_policy(tmp_path / "nope.yaml")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (10 * 1024 * 1024 + 1))
    with pytest.raises(PolicyError, match="larger than 10 MB"):
        load_policy(big)


def test_status_inactive_kept_and_enforced(write):
    rule = {"name": "a", "type": "fqdn", "destination": "a.com", "status": "Inactive",
            "category": "UserDefined"}
    p = load_policy(write(json.dumps({"managed_network": {
        "isolation_mode": "allow_only_approved_outbound", "outbound_rules": [rule]}}), "show.json"))
    assert p.file_rules[0].status == "Inactive" and p.file_rules[0] in p.rules


def test_arm_template_with_rule_resources_nested_and_symbolic(write):
    """Rules as their own resources (`workspaces/outboundRules`), a nested deployment, and a
    languageVersion 2.0 template whose resources are keyed by symbolic name."""
    rule = {"type": "Microsoft.MachineLearningServices/workspaces/outboundRules",
            "apiVersion": "2024-10-01",
            "name": "[format('{0}/{1}', parameters('ws'), 'allow-pypi')]",
            "properties": {"type": "FQDN", "destination": "pypi.org", "category": "UserDefined"}}
    ws = {"type": "Microsoft.MachineLearningServices/workspaces", "apiVersion": "2024-10-01",
          "name": "[parameters('ws')]", "location": "[parameters('location')]",
          "properties": {"managedNetwork": {"isolationMode": "AllowOnlyApprovedOutbound"}}}
    nested = {"type": "Microsoft.Resources/deployments", "name": "inner",
              "properties": {"template": {"resources": [ws, rule]}}}
    doc = {"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
           "languageVersion": "2.0",
           "parameters": {"ws": {"type": "string", "defaultValue": "mlws"},
                          "location": {"type": "string", "defaultValue": "westeurope"}},
           "resources": {"deploy": nested}}
    p = load_policy(write("// ARM allows comments\n" + json.dumps(doc, indent=1), "t.json"))
    assert p.dialect == "arm" and p.resource == "workspace" and p.location == "westeurope"
    assert p.workspace_name == "mlws" and [r.name for r in p.file_rules] == ["allow-pypi"]
    assert len(p.rules) == 10


def test_foundry_template_with_only_rule_resources(write):
    doc = {"resources": [{"type": "Microsoft.CognitiveServices/accounts/managedNetworks/outboundRules",
                          "name": "acct/default/search",
                          "properties": {"type": "PrivateEndpoint", "destination": {
                              "serviceResourceId": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Search/searchServices/srch",
                              "subresourceTarget": "searchService"}}}]}
    p = load_policy(write(json.dumps(doc), "t.json"))
    assert p.resource == "foundry" and p.kind == "V2" and [r.name for r in p.file_rules] == ["search"]
    assert any("outbound-rule resources only" in w.reason for w in p.warnings)


@pytest.mark.parametrize("text,reason", [
    ('{"resources": [{"type": "Microsoft.MachineLearningServices/workspaces", "properties": '
     '{"managedNetwork": {}}}, {"type": "Microsoft.CognitiveServices/accounts/managedNetworks", '
     '"properties": {"managedNetwork": {}}}]}', "defines 2 managed networks"),
    ('{"$schema": "https://x/deploymentParameters.json#", "parameters": {"a": {"value": 1}}}',
     "no managedNetworkSettings or managedNetwork parameter"),
    ('/* unterminated', "not an Azure managed network policy"),
])
def test_arm_shapes_that_are_errors(write, text, reason):
    with pytest.raises(PolicyError, match=reason):
        load_policy(write(text, "t.json"))


def test_arm_parameters_file_with_avm_settings(write):
    doc = {"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#",
           "parameters": {"name": {"value": "ws1"}, "location": {"value": "eastus"},
                          "managedNetworkSettings": {"value": {
                              "isolationMode": "AllowOnlyApprovedOutbound",
                              "outboundRules": {"pypi": {"type": "FQDN", "destination": "pypi.org"}}}}}}
    p = load_policy(write(json.dumps(doc), "params.json"))
    assert (p.location, p.workspace_name, [r.name for r in p.file_rules]) == ("eastus", "ws1", ["pypi"])


@pytest.mark.parametrize("status,enforced", [("Inactive", True), ("Active", True), ("Provisioning", True),
                                             ("Deleting", False), ("Failed", False),
                                             ("RuleStatus.FAILED", False), ("rulestatus.active", True)])
def test_every_rest_status(write, status, enforced):
    doc = {"properties": {"managedNetwork": {"isolationMode": "AllowOnlyApprovedOutbound", "outboundRules": {
        "a": {"type": "FQDN", "destination": "a.com", "status": status}}}}}
    p = load_policy(write(json.dumps(doc), "show.json"))
    assert p.file_rules[0].enforced is enforced and (p.file_rules[0] in p.rules) is enforced
    assert any("Azure does not enforce" in w.reason for w in p.warnings) is not enforced


def test_bicep_errors_name_the_line(write):
    with pytest.raises(PolicyError, match=r"ws.bicep:4: invalid Bicep: unterminated string"):
        load_policy(write("resource w 'Microsoft.MachineLearningServices/workspaces@2024-04-01' = {\n"
                          "  properties: {\n    managedNetwork: {\n      isolationMode: 'Allow\n", "ws.bicep"))
    with pytest.raises(PolicyError, match="no managedNetwork or managedNetworkSettings"):
        load_policy(write("param x string\n", "ws.bicep"))
