"""Microsoft's own files, read as Microsoft's tools read them (tests/data/azure/SOURCES.md).

Real `show`/`list` responses recorded by Azure CLI's tests, the REST API spec examples, the
Foundry and AVM and quickstart templates, the docs' YAML blocks: each is loaded unmodified and
what the auditor then enforces is checked against what that network really has.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from auditor.policy.azure import load_policy, load_policy_lenient
from auditor.policy.model import Category, FqdnRule, IsolationMode, PrivateEndpointRule, ServiceTagRule
from auditor.policy.render import to_json
from auditor.policy.verdict import Judge

DATA = Path(__file__).resolve().parents[1] / "data" / "azure"
AAD_IP = "4.149.98.193"          # AzureActiveDirectory
AML_IP = "20.42.0.241"           # AzureMachineLearning.EastUS
BATCH_WESTUS3 = "BatchNodeManagement.WestUS3"


def spec_body(name: str, which: str, tmp_path: Path) -> Path:
    """One body of a REST spec example: the request (`parameters.body`) or a response."""
    doc = json.loads((DATA / name).read_text())
    body = doc["parameters"]["body"] if which == "request" else doc["responses"][which]["body"]
    out = tmp_path / f"{which}-{name}"
    out.write_text(json.dumps(body))
    return out


# -- the Foundry resource's own managed network (V2) ---------------------------------------

def test_real_v2_show_is_authoritative_and_adds_nothing(tags):
    """Azure CLI's recorded `managed-network show` of a V2 approved-only account: one required
    rule (AAD). The auditor must enforce exactly that — not the 9 V1 built-ins."""
    p = load_policy(DATA / "azure-cli-recording-cogsvc-managed-network-show-V2-AOAO.body.json")
    assert p.kind == "V2" and p.authoritative and p.isolation_mode is IsolationMode.ALLOW_ONLY_APPROVED_OUTBOUND
    assert [r.name for r in p.rules] == ["__SYS_ST_AzureActiveDirectory_TCP"]
    aad = p.rules[0]
    assert isinstance(aad, ServiceTagRule) and aad.ports_text() == "80, 443" and aad.status == "Active"
    judge = Judge(p, tags)
    assert judge.judge(AAD_IP, 443, "tcp", None, "none").allowed
    # The V1 set would have allowed these: the real network does not.
    assert not judge.judge(AML_IP, 443, "tcp", None, "none").allowed
    assert not judge.judge("13.107.42.14", 443, "tcp", None, "none").allowed   # AzureFrontDoor.FirstParty
    info = dict(p.info)
    assert info["firewall_sku"] == "Standard" and info["enable_network_monitor"] == "false"
    assert info["network_id"].startswith("aa0fd993") and info["provision_network_now"] == "true"
    assert info["network_status"] == "Active" and info["managed_network_kind"] == "V2"


def test_real_v2_allow_internet_outbound_show():
    p = load_policy(DATA / "azure-cli-recording-cogsvc-managed-network-show-V2-AllowInternetOutbound.body.json")
    assert p.isolation_mode is IsolationMode.ALLOW_INTERNET_OUTBOUND and p.rules == () and p.kind == "V2"


def test_real_outbound_rule_list_has_no_names():
    p = load_policy(DATA / "azure-cli-recording-cogsvc-outbound-rule-list-V2-AOAO.body.json")
    assert [r.name for r in p.rules] == ["#1", "#2", "#3"] and p.authoritative
    assert [r.destination for r in p.rules[:2]] == ["*.openai.azure.com", "*.cognitiveservices.azure.com"]
    assert any("omits names" in w.reason for w in p.warnings)


def test_foundry_arm_template_with_comment_and_capital_isolation_mode(tags):
    """foundry-samples 18: starts with a /* */ comment, writes `IsolationMode` (capital I),
    `managedNetworkKind: V2`, account location uaenorth."""
    p = load_policy(DATA / "foundry-samples-18-mvnet-sample_mvnet.json")
    assert (p.resource, p.kind, p.location, p.dialect) == ("foundry", "V2", "uaenorth", "arm")
    assert p.isolation_mode is IsolationMode.ALLOW_ONLY_APPROVED_OUTBOUND and not p.authoritative
    assert [(r.name, r.ports_text()) for r in p.rules] == [
        ("__SYS_ST_AzureActiveDirectory_TCP", "80, 443"), ("__SYS_ST_AzureMachineLearning_TCP", "80, 443")]
    assert Judge(p, tags).judge(AML_IP, 443, "tcp", None, "none").allowed


@pytest.mark.parametrize("name,sub,rule_name", [("storage", "blob", "test-rule-str"),
                                                ("cosmosdb", "Sql", "test-rule-cdb"),
                                                ("search", "searchService", "test-rule-search")])
def test_single_rule_put_bodies(name, sub, rule_name):
    p = load_policy(DATA / f"foundry-samples-fork-18-az-rest-put-rule-{name}.json")
    (rule,) = p.file_rules
    assert isinstance(rule, PrivateEndpointRule) and rule.subresource_target == sub
    assert rule.name == rule_name
    assert p.resource == "foundry" and p.kind == "V2"
    assert any("single outbound rule" in w.reason for w in p.warnings)


@pytest.mark.parametrize("name", ["azure-cli-cogsvc-bulk-set-rules.json",
                                  "azure-cli-cogsvc-bulk-set-rules.managed_network.yaml"])
def test_bulk_set_files(name):
    p = load_policy(DATA / name)
    assert p.dialect == "cli_rules" and p.resource == "foundry" and len(p.file_rules) == 2
    st = [r for r in p.file_rules if isinstance(r, ServiceTagRule)]
    if st:    # `destination: AzureActiveDirectory`: the CLI fills in TCP 443
        assert (st[0].service_tag, st[0].protocol, st[0].ports_text()) == ("AzureActiveDirectory", "tcp", "443")
        assert st[0].category is Category.DEPENDENCY and not p.authoritative


def test_bulk_set_older_file_reports_the_missing_subresource():
    p, problems = load_policy_lenient(DATA / "azure-cli-cogsvc-bulk-set-rules.older.yaml")
    errors = [str(x) for x in problems if x.level == "error"]
    assert len(errors) == 1 and "rule 'pe-rule-1': destination.subresourceTarget: missing" in errors[0]
    assert {r.name for r in p.file_rules} == {"fqdn-rule-1", "st-rule-1"}


def test_rest_spec_examples(tmp_path):
    batch = load_policy(spec_body("specs-cogsvc-2025-10-01-preview-postOutboundRulesV2.json", "request", tmp_path))
    assert batch.resource == "foundry" and batch.kind == "V2" and not batch.authoritative
    assert [r.name for r in batch.file_rules] == ["rule_name_1"]
    answer = load_policy(spec_body("specs-cogsvc-2025-10-01-preview-postOutboundRulesV2.json", "200", tmp_path))
    assert answer.authoritative and [r.name for r in answer.rules] == ["rule_name_1"]
    listed = load_policy(spec_body("specs-cogsvc-2025-10-01-preview-listRuleV2.json", "200", tmp_path))
    assert listed.resource == "foundry" and all(not r.name.startswith("#") for r in listed.rules)
    patched = load_policy(spec_body("specs-cogsvc-2025-10-01-preview-patchManagedNetworkV2.json", "200", tmp_path))
    assert patched.resource == "foundry" and patched.kind == "V2"
    request = load_policy(spec_body("specs-cogsvc-2025-10-01-preview-patchManagedNetworkV2.json", "request", tmp_path))
    assert any("cannot tell an Azure ML workspace" in w.reason for w in request.warnings)
    networks = load_policy(spec_body("specs-mls-2025-12-01-listManagedNetworkV2.json", "200", tmp_path))
    assert networks.resource == "workspace" and networks.file_rules


# -- Azure ML workspaces (V1) -------------------------------------------------------------

def test_v1_show_dump_is_authoritative_no_regional_batch_rule(tags):
    """The westus3 dump lists the *global* BatchNodeManagement tag; the auditor used to add
    BatchNodeManagement.westus3 as well, a rule the network does not have."""
    p = load_policy(DATA / "constructed-az-ml-workspace-show-westus3-v1.json")
    assert p.authoritative and p.location == "westus3" and p.dialect == "az_json"
    names = [r.name for r in p.rules]
    assert "__SYS_ST_BatchNodeManagement.westus3_TCP" not in names
    assert "__SYS_ST_BatchNodeManagement_TCP" in names
    assert len(p.rules) == 13                       # 14 listed, the Failed one not enforced
    aad = next(r for r in p.file_rules if r.name == "__SYS_ST_AzureActiveDirectory_TCP")
    assert aad.status == "Active"                   # rendered `RuleStatus.ACTIVE` by the SDK
    failed = next(r for r in p.file_rules if r.name == "pypi")
    assert failed.status == "Failed" and not failed.enforced and failed not in p.rules
    assert dict(failed.info)["error_information"] == "Azure Firewall could not be created"
    assert not Judge(p, tags).judge("1.2.3.4", 443, "tcp", "pypi.org", "sni").allowed
    shown = to_json(p)
    assert shown["authoritative"] and not shown["required_added"]
    assert [r["name"] for r in shown["rules"] if not r["enforced"]] == ["pypi"]
    assert shown["info"]["network_spark_ready"] == "false" and shown["info"]["firewall_sku"] == "standard"


def test_shadow_mode_of_an_authoritative_dump_adds_the_required_set(tags, tmp_path):
    """An allow-internet dump judged --as-mode approved-only: Azure would create its required
    rules on the switch, so the auditor adds them."""
    doc = json.loads((DATA / "constructed-az-ml-workspace-show-westus3-v1.json").read_text())
    doc["managed_network"]["isolation_mode"] = "allow_internet_outbound"
    path = tmp_path / "aio.json"
    path.write_text(json.dumps(doc))
    p = load_policy(path)
    shadow = Judge(p, tags, as_mode="allow_only_approved_outbound")
    assert "__SYS_ST_BatchNodeManagement.westus3_TCP" in [r.name for r in shadow.rules]


@pytest.mark.parametrize("name,mode,rules", [
    ("azureml-examples-mvnet-allow-internet-outbound.yml", "allow_internet_outbound", 2),
    ("azureml-examples-mvnet-allow-only-approved-outbound.yml", "allow_only_approved_outbound", 3),
    ("azureml-examples-ws-allow-only-approved-outbound.yml", "allow_only_approved_outbound", 3),
    ("docs-aml-how-to-managed-network.block01-aio-minimal.yml", "allow_internet_outbound", 0),
    ("docs-aml-how-to-managed-network.block02-aio-perule.yml", "allow_internet_outbound", 1),
    ("docs-aml-how-to-managed-network.block03-aio-workspace.yml", "allow_internet_outbound", 0),
    ("docs-aml-how-to-managed-network.block04-aoao-all-three-types.yaml", "allow_only_approved_outbound", 3),
    ("docs-aml-how-to-managed-network.block05-aoao-workspace-dep.yaml", "allow_only_approved_outbound", 3),
])
def test_azureml_cli_yaml_samples(name, mode, rules):
    p, problems = load_policy_lenient(DATA / name)
    assert not [x for x in problems if x.level == "error"], problems
    assert p.isolation_mode.value == mode and len(p.file_rules) == rules and p.kind == "V1"
    assert p.dialect == "cli_yaml" and not p.authoritative
    if mode == "allow_only_approved_outbound":
        assert len(p.rules) == rules + 9            # Azure adds its V1 required set


def test_docs_yaml_with_user_written_category_required():
    """The docs' firewall_sku example writes `category: required` on a user rule: the SDK drops
    it (the rule is UserDefined), so the file is a user file, not Azure's view."""
    p = load_policy(DATA / "docs-aml-how-to-managed-network.firewall-sku.yaml")
    assert not p.authoritative and p.file_rules[0].category is Category.USER_DEFINED
    assert len(p.rules) == 10 and dict(p.info)["firewall_sku"] == "basic"
    assert any("category dropped" in w.reason for w in p.warnings)


def test_avm_bicep_module_parameters():
    p = load_policy(DATA / "avm-mls-workspace-e2e-waf-aligned.main.test.bicep")
    assert p.dialect == "bicep" and p.isolation_mode is IsolationMode.ALLOW_ONLY_APPROVED_OUTBOUND
    by_name = {r.name: r for r in p.file_rules}
    assert isinstance(by_name["rule2"], FqdnRule) and by_name["rule2"].destination == "pypi.org"
    st = by_name["rule3"]
    assert isinstance(st, ServiceTagRule) and (st.service_tag, st.ports_text()) == ("AppService", "80, 443")
    pe = by_name["rule1"]
    assert isinstance(pe, PrivateEndpointRule) and pe.spark_enabled
    assert any("template expression" in w.reason and w.rule == "rule1" for w in p.warnings)


def test_quickstart_bicep_capital_b_mode():
    p = load_policy(DATA / "quickstart-mls-network-restricted.modules.aml-workspace.bicep")
    assert p.isolation_mode is IsolationMode.ALLOW_INTERNET_OUTBOUND and p.dialect == "bicep"


def test_every_sample_loads_or_fails_in_one_line():
    for path in sorted(DATA.iterdir()):
        if path.name == "SOURCES.md" or "excerpt" in path.name or path.name.startswith("specs-"):
            continue
        policy, problems = load_policy_lenient(path)
        assert all("\n" not in str(x) for x in problems)
