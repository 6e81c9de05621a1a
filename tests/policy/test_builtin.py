"""Built-in sets match the current Microsoft documents exactly and carry Azure's rule names.

The documents are kept verbatim (excerpts) in docs/sources/ with their commit and ms.date."""
import re
from pathlib import Path

import pytest

from auditor.policy import builtin

SOURCES = Path(__file__).resolve().parents[2] / "docs" / "sources"
HUB = (SOURCES / "foundry-hub-configure-managed-network.2026-02-02.md").read_text()
AML = (SOURCES / "azure-ml-how-to-managed-network.2025-05-23.md").read_text()
FOUNDRY = (SOURCES / "foundry-managed-virtual-network.2026-05-12.md").read_text()
SEED = next(iter(sorted(SOURCES.glob("004_*.txt")))).read_text()


def _between(text: str, start: str, end: str) -> str:
    return text[text.index(start):text.index(end, text.index(start))]


def _hosts(section: str) -> list[str]:
    """Every `host` the markdown section puts in backticks, in order."""
    return [h for h in re.findall(r"`([^`]+)`", section) if "." in h and " " not in h]


@pytest.mark.parametrize("name,doc,start,end", [
    ("python-packages", HUB, "### Scenario: Access public machine learning packages", "### Scenario: Use Visual"),
    ("vscode", HUB, "#### Hosts", "#### Ports"),
    ("huggingface", HUB, "### Scenario: Use Hugging Face models", "### Scenario: Models sold"),
    ("curated-models", HUB, "### Scenario: Models sold directly by Azure", "## Private endpoints"),
    ("vscode", AML, "### Scenario: Use Visual Studio Code", "### Scenario: Use HuggingFace"),
])
def test_scenarios_match_current_documents(name, doc, start, end):
    got = _hosts(_between(doc, start, end))
    if name == "python-packages":   # the table names *.pythonhosted.org in pypi.org's purpose text
        assert set(got) == set(builtin.SCENARIOS[name]) and len(builtin.SCENARIOS[name]) == 8
    else:
        assert got == list(builtin.SCENARIOS[name])


def test_foundry_scenarios_match_the_foundry_document():
    rows = {line.split("|")[1].strip(): _hosts(line.split("|")[2])
            for line in (FOUNDRY[FOUNDRY.index("| Agents"):] + "\n").splitlines()
            if line.startswith("|")}
    assert rows["Agents"] == list(builtin.SCENARIOS["foundry-agents"])
    assert rows["Evaluations & Traces with an Application Insights resource"] == \
        list(builtin.SCENARIOS["foundry-evaluations"])
    assert rows["Finetuning"] == list(builtin.SCENARIOS["foundry-finetuning"])


def test_documents_changed_since_the_seed_and_the_code_follows_the_new_ones():
    # The seed copy had the `cnd.auth0.com` typo and a GitHub URL in the VS Code list.
    assert "cnd.auth0.com" in SEED and "cdn.auth0.com" in builtin.SCENARIOS["huggingface"]
    assert "cnd.auth0.com" not in builtin.SCENARIOS["huggingface"]
    assert {"huggingface.co", "cas-bridge.xethub.hf.co"} <= set(builtin.SCENARIOS["huggingface"])
    assert not [h for h in builtin.SCENARIOS["vscode"] if "github" in h]
    # The Azure ML page still lists the older six HuggingFace hosts; the hub page is newer.
    aml_hf = _hosts(_between(AML, "### Scenario: Use HuggingFace models", "## Private endpoints"))
    assert set(aml_hf) < set(builtin.SCENARIOS["huggingface"]) and len(aml_hf) == 6


def test_every_set_cites_its_document():
    assert set(builtin.SCENARIO_SOURCES) == set(builtin.SCENARIOS)
    assert all("ms.date" in builtin.SCENARIO_SOURCES[n] for n in builtin.SCENARIOS)


def test_required_tags_are_the_documents_tables():
    for doc in (AML, HUB):
        table = _between(doc, "| Service tag rule", "\n\n")
        tags = {t.replace(".region", "") for t in re.findall(r"`([A-Za-z.]+)`", table)}
        ours = {r.service_tag.split(".")[0] if r.service_tag.startswith(("MicrosoftContainer", "BatchNode"))
                else r.service_tag for r in builtin.required_rules(None)}
        assert tags == ours
    v2 = {r.service_tag for r in builtin.required_rules(None, "V2")}
    listed = set(re.findall(r"ServiceTag to (\w+)", FOUNDRY))
    assert v2 == listed == {"AzureActiveDirectory", "AzureMachineLearning"}


def test_required_rule_names_and_ports():
    rules = {r.name: r for r in builtin.required_rules("westus3")}
    assert list(rules) == [
        "__SYS_ST_AzureActiveDirectory_TCP", "__SYS_ST_AzureMachineLearning_TCP",
        "__SYS_ST_AzureMachineLearning_UDP", "__SYS_ST_AzureResourceManager_TCP",
        "__SYS_ST_MicrosoftContainerRegistry.westus3_TCP", "__SYS_ST_BatchNodeManagement.westus3_TCP",
        "__SYS_ST_AzureMonitor_TCP", "__SYS_ST_AzureFrontDoor.FirstParty", "__SYS_ST_VirtualNetwork"]
    assert rules["__SYS_ST_AzureActiveDirectory_TCP"].ports_text() == "80, 443"
    assert rules["__SYS_ST_AzureMachineLearning_UDP"].ports_text() == "5831"
    assert rules["__SYS_ST_AzureMachineLearning_UDP"].protocol == "udp"
    assert rules["__SYS_ST_VirtualNetwork"].protocol == "*"
    assert all(r.category.value == "required" for r in rules.values())


def test_vscode_storage_entry_is_marked():
    rules = builtin.scenario_rules("vscode")
    blob = [r for r in rules if r.destination == "vscode.blob.core.windows.net"]
    assert len(blob) == 1 and "storage_requires_private_endpoint" in blob[0].note
    assert len(rules) == len(builtin.SCENARIOS["vscode"]) == 12


def test_v2_required_rules_are_the_real_dumps():
    rules = builtin.required_rules("westus3", "V2")
    assert [(r.name, r.protocol, r.ports_text()) for r in rules] == [
        ("__SYS_ST_AzureActiveDirectory_TCP", "tcp", "80, 443"),
        ("__SYS_ST_AzureMachineLearning_TCP", "tcp", "80, 443")]
