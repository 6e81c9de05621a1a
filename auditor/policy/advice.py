"""What stands behind a denied destination and which rule would let it through, in the
words `policy explain` prints: "Storage.EastUS (AzureStorage): storage needs a private endpoint".

Pure: a verdict, the service tags and the destination in, a small dict out. It never suggests
a rule Azure would refuse (an FQDN rule for storage, an FQDN rule off TCP 80/443) or one that
opens the door wide (a service-tag rule for AzureCloud, which is every Azure customer).
"""
from __future__ import annotations

from typing import Any

from auditor.hostnames import normalise

from .match import is_storage_name
from .servicetags import ServiceTags
from .verdict import Reason, Verdict

# Services reached through a private endpoint (tag base -> what to add). Managed networks
# support private endpoints for these (docs/policy.md, private endpoints).
_BY_PRIVATE_ENDPOINT = {
    "Storage": "storage needs a private endpoint (subresource blob, file, queue, table or dfs); "
               "FQDN rules never reach storage in approved-only mode",
    "AzureKeyVault": "add a private-endpoint rule to the vault (subresource vault)",
    "Sql": "add a private-endpoint rule to the server (subresource sqlServer)",
    "AzureCosmosDB": "add a private-endpoint rule to the account (subresource Sql, MongoDB, ...)",
    "AzureContainerRegistry": "add a private-endpoint rule to the registry (subresource registry)",
    "CognitiveServicesFrontend": "add a private-endpoint rule to the Foundry Tools account "
                                 "(subresource account)",
    "EventHub": "add a private-endpoint rule to the namespace (subresource namespace)",
    "DataFactory": "add a private-endpoint rule to the factory (subresource dataFactory)",
    "AzureDatabricks": "add a private-endpoint rule to the workspace (subresource databricks_ui_api)",
}
_TOO_BROAD = ("AzureCloud", "Internet")


def owners(tags: ServiceTags, ip: str) -> list[str]:
    """The tags holding `ip`, most specific (fewest addresses) first."""
    return sorted(tags.tags_for(ip), key=lambda t: (tags.sizes.get(t, 0), t))


def _service(tags: ServiceTags, tag: str) -> str | None:
    return tags.services.get(tag) or tags.services.get(tag.partition(".")[0])


def advise(verdict: Verdict, tags: ServiceTags, *, ip: str | None, name: str | None,
           port: int, proto: str) -> dict[str, Any]:
    """{service_tags, azure_service, fix}: fix is None when the destination is allowed."""
    found = owners(tags, ip) if ip else []
    narrow = [t for t in found if t.partition(".")[0] not in _TOO_BROAD]
    tag: str | None = (narrow or found)[0] if (narrow or found) else None
    out: dict[str, Any] = {"service_tags": found[:4], "azure_service": _service(tags, tag) if tag else None,
                           "fix": None}
    if verdict.allowed:
        return out
    reason = verdict.reason
    if reason is Reason.SERVICE_TAG_DENY:
        out["fix"] = f"rule {verdict.rule!r} denies it on purpose (action Deny)"
    elif reason is Reason.STORAGE_REQUIRES_PRIVATE_ENDPOINT:
        out["fix"] = _BY_PRIVATE_ENDPOINT["Storage"]
    elif reason is Reason.FQDN_PORT_NOT_SUPPORTED:
        out["fix"] = (f"FQDN rules only cover TCP 80 and 443; reach it on TCP 443, or allow its "
                      f"addresses with a service-tag or address_prefixes rule ({proto}/{port})")
    elif reason is Reason.FQDN_NEEDS_SNI_OR_HOST:
        out["fix"] = ("the client must send the name (TLS SNI on 443, HTTP Host on 80): Azure "
                      "Firewall matches nothing else")
    elif tag is not None and tag.partition(".")[0] in _BY_PRIVATE_ENDPOINT:
        out["fix"] = f"{tag}: {_BY_PRIVATE_ENDPOINT[tag.partition('.')[0]]}"
    elif narrow:
        out["fix"] = (f"add a service-tag rule for {tag} ({proto.upper()} {port}); it allows every "
                      f"address of the tag, so prefer a private endpoint if {tag} offers one")
    elif name and is_storage_name(normalise(name)):
        out["fix"] = _BY_PRIVATE_ENDPOINT["Storage"]
    elif name and proto == "tcp" and port in (80, 443):
        out["fix"] = f"add an FQDN rule for {normalise(name)!r}"
    elif name:
        out["fix"] = (f"FQDN rules only cover TCP 80 and 443; allow {proto}/{port} with a "
                      "service-tag or address_prefixes rule for its addresses")
    elif found:
        out["fix"] = (f"{tag} is shared by every Azure customer: a rule for it would open the "
                      "network to all of Azure; allow the destination by name (FQDN rule) instead")
    else:
        out["fix"] = ("not an Azure service address: allow its host name with an FQDN rule "
                      "(TCP 80/443), or its addresses with an address_prefixes rule")
    return out
