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
    p = load_policy(write(HEAD + "  - {name: a, type: fqdn, destination: a.com, status: Inactive,"
                                 " category: UserDefined}\n"))
    assert p.file_rules[0].status == "Inactive"
