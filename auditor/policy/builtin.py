"""Built-in rule sets: Azure's `required` rules and the opt-in scenario sets of the Azure docs.

Host lists are copied exactly from the source document (shared/seeds/004_*.txt, "List of
scenario specific outbound rules"); required rules are named as Azure names them in
`az ml workspace show` output (`__SYS_ST_<Tag>_<PROTO>`, no suffix when the protocol is `*`).
"""
from __future__ import annotations

from .model import (Category, Protocol, FqdnRule, IsolationMode, PortRange, PrivateEndpointRule, Rule,
                    ServiceTagRule)
from .match import normalise_pattern

PLATFORM_IPS = ("168.63.129.16", "169.254.169.254")   # Azure wire server / DNS, IMDS
DEFAULT_DNS_SERVERS = ("168.63.129.16",)


def _st(tag: str, protocol: Protocol, ports: tuple[tuple[int, int], ...]) -> ServiceTagRule:
    suffix = "" if protocol == "*" else f"_{protocol.upper()}"
    return ServiceTagRule(name=f"__SYS_ST_{tag}{suffix}", category=Category.REQUIRED,
                          service_tag=tag, protocol=protocol,
                          port_ranges=tuple(PortRange(lo=a, hi=b) for a, b in ports))


def required_rules(region: str | None) -> tuple[ServiceTagRule, ...]:
    """SPEC §4 `required` set. Without a region the regional tags fall back to the global ones."""
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


_PYTHON = ("anaconda.com", "*.anaconda.com", "*.anaconda.org", "pypi.org", "*.pythonhosted.org",
           "pytorch.org", "*.pytorch.org", "*.tensorflow.org")
_VSCODE = ("*.vscode.dev", "*.vscode-unpkg.net", "*.vscode-cdn.net",
           "*.vscodeexperiments.azureedge.net", "default.exp-tas.com", "code.visualstudio.com",
           "update.code.visualstudio.com", "*.vo.msecnd.net", "marketplace.visualstudio.com",
           "vscode.blob.core.windows.net", "*.gallerycdn.vsassets.io",
           "https://github.com/microsoft/vscode-tools-for-ai/tree/master/azureml_remote_websocket_server/*",
           "raw.githubusercontent.com", "vscode.download.prss.microsoft.com")
_HUGGINGFACE = ("docker.io", "*.docker.io", "*.docker.com", "production.cloudflare.docker.com",
                "cnd.auth0.com", "cdn-lfs.huggingface.co")   # "cnd" sic: as the Azure doc lists it
_CURATED = ("*.anaconda.org", "*.anaconda.com", "anaconda.com", "pypi.org", "*.pythonhosted.org",
            "*.pytorch.org", "pytorch.org")

SCENARIOS: dict[str, tuple[str, ...]] = {
    "python-packages": _PYTHON, "vscode": _VSCODE, "huggingface": _HUGGINGFACE,
    "curated-models": _CURATED,
}
SCENARIO_NOTES = {
    "vscode": "VS Code server also needs ports 8704-8710 on the compute instance (the server "
              "picks the first free one); that is not an outbound FQDN rule.",
}
_URL_NOTE = ("listed by Azure as a URL path; FQDN rules see only the TLS SNI / HTTP Host, so it "
             "is enforced as the host github.com (all of it)")
_STORAGE_NOTE = ("an Azure Storage endpoint: in approved-only mode Azure never allows storage "
                 "through FQDN rules, so this entry never allows (storage_requires_private_endpoint)")


def scenario_rules(name: str) -> tuple[FqdnRule, ...]:
    """The FQDN rules of one scenario set; KeyError for an unknown name."""
    rules = []
    for i, entry in enumerate(SCENARIOS[name], 1):
        note = None
        dest = entry
        if entry.startswith("https://"):
            dest, note = entry.split("/")[2], _URL_NOTE
        elif entry.endswith(".blob.core.windows.net"):
            note = _STORAGE_NOTE
        rules.append(FqdnRule(name=f"__BUILTIN_{name}_{i:02d}", category=Category.BUILT_IN,
                              destination=normalise_pattern(dest), note=note))
    return tuple(rules)


def effective_rules(file_rules: tuple[Rule, ...], mode: IsolationMode, region: str | None,
                    include: tuple[str, ...] = ()) -> tuple[Rule, ...]:
    """File rules, then the required built-ins Azure adds in approved-only mode (unless the file
    already lists a rule of that name, e.g. an `az ml workspace show` dump), then `include` sets."""
    out: list[Rule] = list(file_rules)
    if mode is IsolationMode.ALLOW_ONLY_APPROVED_OUTBOUND:
        names = {r.name.lower() for r in file_rules}
        out += [r for r in required_rules(region) if r.name.lower() not in names]
    for name in include:
        out += scenario_rules(name)
    return tuple(out)


def private_endpoint_rules(rules: tuple[Rule, ...]) -> list[PrivateEndpointRule]:
    return [r for r in rules if isinstance(r, PrivateEndpointRule)]
