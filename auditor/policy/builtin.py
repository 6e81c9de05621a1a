"""Built-in rule sets: Azure's `required` rules per network kind and the opt-in scenario sets.

Every list cites the Microsoft document it was copied from, with the document's `ms.date`
and the commit of the MicrosoftDocs/azure-ai-docs copy read (docs/policy.md has the same
table). Required rules are named as Azure names them in `show` output
(`__SYS_ST_<Tag>_<PROTO>`, no suffix when the protocol is `*`).
"""
from __future__ import annotations

from .model import (Category, Protocol, FqdnRule, IsolationMode, Kind, Policy, PortRange,
                    PrivateEndpointRule, Rule, ServiceTagRule)
from .match import normalise_pattern

PLATFORM_IPS = ("168.63.129.16", "169.254.169.254")   # Azure wire server / DNS, IMDS
DEFAULT_DNS_SERVERS = ("168.63.129.16",)


def _st(tag: str, protocol: Protocol, ports: tuple[tuple[int, int], ...]) -> ServiceTagRule:
    suffix = "" if protocol == "*" else f"_{protocol.upper()}"
    return ServiceTagRule(name=f"__SYS_ST_{tag}{suffix}", category=Category.REQUIRED,
                          service_tag=tag, protocol=protocol,
                          port_ranges=tuple(PortRange(lo=a, hi=b) for a, b in ports))


def required_rules(region: str | None, kind: Kind = "V1") -> tuple[ServiceTagRule, ...]:
    """The service-tag rules Azure creates in approved-only mode for a network of `kind`.

    V1 (Azure ML workspaces, hub-based Foundry): "Workspace Managed Virtual Network Isolation",
    learn.microsoft.com/azure/machine-learning/how-to-managed-network (ms.date 05/23/2025,
    azure-ai-docs d675e2ff), required service tags table; ports as the auditor's contract fixes
    them (the docs give only 5831 and 18881). Without a region the regional tags fall back to
    the global ones.

    V2 (the Foundry resource's managed network): "Configure managed virtual network for Microsoft
    Foundry", learn.microsoft.com/azure/foundry/how-to/managed-virtual-network (ms.date
    03/19/2026 include, azure-ai-docs 0982fa7b) lists AzureActiveDirectory and
    AzureMachineLearning; a real V2 `managed-network show` (2026-05) carries exactly
    `__SYS_ST_AzureActiveDirectory_TCP` and `__SYS_ST_AzureMachineLearning_TCP`, both TCP 80, 443.
    (A bare account with no agent capability host showed only the first: Azure CLI's recorded
    test, 2026-04; the auditor keeps both, as the docs do.)
    """
    if kind == "V2":
        return (_st("AzureActiveDirectory", "tcp", ((80, 80), (443, 443))),
                _st("AzureMachineLearning", "tcp", ((80, 80), (443, 443))))
    mcr = f"MicrosoftContainerRegistry.{region}" if region else "MicrosoftContainerRegistry"
    batch = f"BatchNodeManagement.{region}" if region else "BatchNodeManagement"
    return (
        _st("AzureActiveDirectory", "tcp", ((80, 80), (443, 443))),
        _st("AzureMachineLearning", "tcp", ((443, 443),)),
        _st("AzureMachineLearning", "udp", ((5831, 5831),)),
        _st("AzureResourceManager", "tcp", ((443, 443),)),
        _st(mcr, "tcp", ((443, 443),)),
        _st(batch, "tcp", ((443, 443),)),
        _st("AzureMonitor", "tcp", ((443, 443),)),
        _st("AzureFrontDoor.FirstParty", "*", ()),
        _st("VirtualNetwork", "*", ()),
    )


# Scenario sets, as the current docs list them (source: the Microsoft Learn page, its ms.date,
# and the MicrosoftDocs/azure-ai-docs commit read).
_AML_DOC = ("learn.microsoft.com/azure/machine-learning/how-to-managed-network "
            "(ms.date 05/23/2025; azure-ai-docs d675e2ff)")
_HUB_DOC = ("learn.microsoft.com/azure/ai-foundry/how-to/configure-managed-network "
            "(ms.date 02/02/2026; azure-ai-docs 698cda43)")
# "Scenario: Access public machine learning packages" (AML, through the include
# recommended-network-outbound.md ms.date 02/10/2025, and the hub doc: the same list).
_PYTHON = ("anaconda.com", "*.anaconda.com", "*.anaconda.org", "pypi.org", "*.pythonhosted.org",
           "pytorch.org", "*.pytorch.org", "*.tensorflow.org")
# "Scenario: Use Visual Studio Code" (AML and hub: the same 12 hosts; the GitHub entries of
# the older lists are gone — the docs now say to add the hosts your repositories need).
_VSCODE = ("*.vscode.dev", "*.vscode-unpkg.net", "*.vscode-cdn.net",
           "*.vscodeexperiments.azureedge.net", "default.exp-tas.com", "code.visualstudio.com",
           "update.code.visualstudio.com", "*.vo.msecnd.net", "marketplace.visualstudio.com",
           "vscode.blob.core.windows.net", "*.gallerycdn.vsassets.io",
           "vscode.download.prss.microsoft.com")
# "Scenario: Use HuggingFace models" (hub doc: 8 hosts; the AML page still shows the older 6,
# without huggingface.co and cas-bridge.xethub.hf.co — the superset is what downloads need).
_HUGGINGFACE = ("docker.io", "*.docker.io", "*.docker.com", "production.cloudflare.docker.com",
                "cdn.auth0.com", "huggingface.co", "cas-bridge.xethub.hf.co",
                "cdn-lfs.huggingface.co")
# "Scenario: Models sold directly by Azure" (hub doc; formerly "Curated by Azure AI").
_CURATED = ("*.anaconda.org", "*.anaconda.com", "anaconda.com", "pypi.org", "*.pythonhosted.org",
            "*.pytorch.org", "pytorch.org")

# The Foundry resource's managed network (V2), "Outbound rules per scenario":
# learn.microsoft.com/azure/foundry/how-to/managed-virtual-network (include ms.date 05/12/2026;
# azure-ai-docs 46826729). Agents: "... or AAD Service Tag" (the required AzureActiveDirectory
# rule covers the login hosts; mcr.microsoft.com still needs its FQDN rule).
_FOUNDRY_DOC = ("learn.microsoft.com/azure/foundry/how-to/managed-virtual-network "
                "(ms.date 05/12/2026; azure-ai-docs 46826729)")
_FOUNDRY_AGENTS = ("*.identity.azure.net", "login.microsoftonline.com", "*.login.microsoftonline.com",
                   "*.login.microsoft.com", "mcr.microsoft.com")
_FOUNDRY_EVALUATIONS = ("settings.sdk.monitor.azure.com", "*.livediagnostics.monitor.azure.com",
                        "*.in.applicationinsights.azure.com")
_FOUNDRY_FINETUNING = ("raw.githubusercontent.com",)

SCENARIOS: dict[str, tuple[str, ...]] = {
    "python-packages": _PYTHON, "vscode": _VSCODE, "huggingface": _HUGGINGFACE,
    "curated-models": _CURATED, "foundry-agents": _FOUNDRY_AGENTS,
    "foundry-evaluations": _FOUNDRY_EVALUATIONS, "foundry-finetuning": _FOUNDRY_FINETUNING,
}
SCENARIO_SOURCES: dict[str, str] = {
    "python-packages": f"{_AML_DOC}; {_HUB_DOC}", "vscode": f"{_AML_DOC}; {_HUB_DOC}",
    "huggingface": _HUB_DOC, "curated-models": _HUB_DOC, "foundry-agents": _FOUNDRY_DOC,
    "foundry-evaluations": _FOUNDRY_DOC, "foundry-finetuning": _FOUNDRY_DOC,
}
SCENARIO_NOTES = {
    "vscode": "VS Code server also needs ports 8704-8710 on the compute instance (the server "
              "picks the first free one); that is not an outbound FQDN rule.",
}
_STORAGE_NOTE = ("an Azure Storage endpoint: in approved-only mode Azure never allows storage "
                 "through FQDN rules, so this entry never allows (storage_requires_private_endpoint)")


def scenario_rules(name: str) -> tuple[FqdnRule, ...]:
    """The FQDN rules of one scenario set; KeyError for an unknown name."""
    rules = []
    for i, entry in enumerate(SCENARIOS[name], 1):
        note = _STORAGE_NOTE if entry.endswith(".blob.core.windows.net") else None
        rules.append(FqdnRule(name=f"__BUILTIN_{name}_{i:02d}", category=Category.BUILT_IN,
                              destination=normalise_pattern(entry), note=note))
    return tuple(rules)


def adds_required(policy: Policy, mode: IsolationMode) -> bool:
    """Azure adds its required rules in approved-only mode; a file that is Azure's own view
    already lists them, unless it is judged in another mode than its own (`--as-mode`)."""
    return (mode is IsolationMode.ALLOW_ONLY_APPROVED_OUTBOUND
            and not (policy.authoritative and mode is policy.isolation_mode))


def effective_rules(policy: Policy, mode: IsolationMode | None = None,
                    include: tuple[str, ...] = ()) -> tuple[Rule, ...]:
    """The rules in force: the file's enforced rules (not Deleting/Failed), then the required
    built-ins of the network's kind that the file does not already name, then `include` sets."""
    mode = mode or policy.isolation_mode
    out: list[Rule] = [r for r in policy.file_rules if r.enforced]
    if adds_required(policy, mode):
        names = {r.name.lower() for r in policy.file_rules}
        out += [r for r in required_rules(policy.location, policy.kind) if r.name.lower() not in names]
    for name in include:
        out += scenario_rules(name)
    return tuple(out)


def private_endpoint_rules(rules: tuple[Rule, ...]) -> list[PrivateEndpointRule]:
    return [r for r in rules if isinstance(r, PrivateEndpointRule)]
