"""Built-in sets match the Azure source document exactly and carry Azure's rule names."""
import re
from pathlib import Path

import pytest

from auditor.policy import builtin

# The Azure document the built-in sets come from, kept in the repository (docs/sources/).
SEED = next(iter(sorted((Path(__file__).resolve().parents[2] / "docs" / "sources").glob("004_*.txt"))))


def _between(text: str, start: str, end: str) -> str:
    return text[text.index(start):text.index(end, text.index(start))]


def test_scenarios_match_seed_document():
    text = SEED.read_text()
    host = re.compile(r"^\s*(?:•\s*)?(\*?[\w.-]+\.[a-z]{2,}|https://\S+)(?:\s|$)", re.M)

    def hosts(section: str) -> list[str]:
        return [m.group(1) for m in host.finditer(section)]
    py = _between(text, "Scenario: Access public machine learning packages", "Scenario: Use Visual")
    # the table lists eight hosts, one of them (*.pythonhosted.org) inside pypi.org's purpose text
    anywhere = re.findall(r"(?<![\w.*])(?:\*\.)?[a-z][\w-]*(?:\.[\w-]+)*\.(?:org|com)\b", py)
    assert set(anywhere) == set(builtin.SCENARIOS["python-packages"])
    assert len(builtin.SCENARIOS["python-packages"]) == 8
    vs = _between(text, "Host name Purpose\n*.vscode.dev", "Ports")
    assert hosts(vs) == list(builtin.SCENARIOS["vscode"])
    hf = _between(text, "Scenario: Use HuggingFace models", "Scenario: Curated")
    assert hosts(hf) == list(builtin.SCENARIOS["huggingface"])
    cur = _between(text, "Scenario: Curated by Azure AI", "Private endpoints")
    assert cur.split("hosts:")[1].split() == list(builtin.SCENARIOS["curated-models"])


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


def test_vscode_url_and_storage_entries():
    rules = builtin.scenario_rules("vscode")
    gh = [r for r in rules if r.destination == "github.com"]
    assert len(gh) == 1 and "URL path" in gh[0].note
    blob = [r for r in rules if r.destination == "vscode.blob.core.windows.net"]
    assert len(blob) == 1 and "storage_requires_private_endpoint" in blob[0].note
    assert len(rules) == len(builtin.SCENARIOS["vscode"]) == 14
