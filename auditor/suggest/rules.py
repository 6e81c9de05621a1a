"""The rule-building half of `suggest`: which destinations may share a `*.` wildcard, which
Azure names need a private endpoint, which service tag is the most specific, and the typed
policy rules (names unique and stable) for each kind. Pure: no I/O, no pipeline.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from auditor.detect.exfil_service import category as exfil_category
from auditor.hostnames import is_public_suffix, wire_host
from auditor.policy import endpoints
from auditor.policy.azure import parse_port_ranges
from auditor.policy.match import is_storage_name, normalise_pattern, pattern_matches
from auditor.policy.model import FqdnRule, PrivateEndpointRule, Rule, ServiceTagRule
from auditor.suggest.observe import Implicated

# Names under these are shared by many tenants: a wildcard would allow everyone's endpoints.
SHARED_SUFFIXES = (
    "core.windows.net", "blob.core.windows.net", "azureedge.net", "azurefd.net", "azurewebsites.net",
    "cloudapp.net", "cloudapp.azure.com", "trafficmanager.net", "azure-api.net", "azurecr.io",
    "vault.azure.net", "azurestaticapps.net", "windows.net", "msedge.net",
    "cloudfront.net", "amazonaws.com", "awsglobalaccelerator.com", "elb.amazonaws.com",
    "akamai.net", "akamaiedge.net", "akamaized.net", "akamaihd.net", "edgekey.net", "edgesuite.net",
    "fastly.net", "fastlylb.net", "cloudflare.net", "workers.dev", "pages.dev", "r2.dev",
    "googleusercontent.com", "googleapis.com", "appspot.com", "web.app", "firebaseapp.com",
    "github.io", "githubusercontent.com", "herokuapp.com", "netlify.app", "vercel.app",
    "ngrok.io", "ngrok-free.app", "b-cdn.net", "digitaloceanspaces.com", "edgecastcdn.net",
)
# Tags too broad to be a meaningful allowlist entry (all of Azure, incl. any tenant's VMs).
BROAD_TAGS = ("azurecloud",)
# The workspace's own private endpoint is created by Azure; never suggest one for it.
_SKIP_PE = frozenset({"microsoft.machinelearningservices/workspaces"})
_PROVIDER_CASE = {
    "microsoft.storage/storageaccounts": "Microsoft.Storage/storageAccounts",
    "microsoft.keyvault/vaults": "Microsoft.KeyVault/vaults",
    "microsoft.containerregistry/registries": "Microsoft.ContainerRegistry/registries",
    "microsoft.cognitiveservices/accounts": "Microsoft.CognitiveServices/accounts",
    "microsoft.search/searchservices": "Microsoft.Search/searchServices",
    "microsoft.sql/servers": "Microsoft.Sql/servers",
    "microsoft.cache/redis": "Microsoft.Cache/redis",
    "microsoft.documentdb/databaseaccounts": "Microsoft.DocumentDB/databaseAccounts",
    "microsoft.eventhub/namespaces": "Microsoft.EventHub/namespaces",
    "microsoft.datafactory/factories": "Microsoft.DataFactory/factories",
    "microsoft.dbformysql/flexibleservers": "Microsoft.DBforMySQL/flexibleServers",
    "microsoft.dbformysql/servers": "Microsoft.DBforMySQL/servers",
    "microsoft.dbformariadb/servers": "Microsoft.DBforMariaDB/servers",
    "microsoft.dbforpostgresql/flexibleservers": "Microsoft.DBforPostgreSQL/flexibleServers",
    "microsoft.dbforpostgresql/servers": "Microsoft.DBforPostgreSQL/servers",
    "microsoft.apimanagement/service": "Microsoft.ApiManagement/service",
}
RID_PREFIX = "/subscriptions/<subscription-id>/resourceGroups/<resource-group>/providers/"


@dataclass
class NewRule:
    rule: Rule                            # typed, as the policy engine reads it
    why: str                              # one comment line of evidence
    covers: set[str] = field(default_factory=set)   # labels of flows it is for
    active: bool = True                   # False: written commented out, with `why`

    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def type(self) -> str:
        return self.rule.type.value


# -- classification helpers ------------------------------------------------------------------

def private_link_target(name: str) -> tuple[str, str, str] | None:
    """(provider type lower, subresource, resource name) for a private-link-able Azure name."""
    return endpoints.private_link_target(name, skip=_SKIP_PE)


def _slug(text: str) -> str:
    out = "".join(ch if ch.isalnum() else "-" for ch in text.lower())
    return "-".join(p for p in out.split("-") if p)


def port_ranges(ports: set[int]) -> str:
    """{80, 443, 8080, 8081} -> "80, 443, 8080-8081"."""
    out: list[str] = []
    for p in sorted(ports):
        if out and "-" not in out[-1] and int(out[-1]) == p - 1:
            out[-1] = f"{out[-1]}-{p}"
        elif out and "-" in out[-1] and int(out[-1].split("-")[1]) == p - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{p}"
        else:
            out.append(str(p))
    return ", ".join(out)


def choose_tag(tags, ip: str) -> str | None:
    """The most specific (fewest addresses) non-broad service tag holding an IP."""
    found = [t for t in tags.tags_for(ip)
             if t.split(".")[0].lower() not in BROAD_TAGS and t != "VirtualNetwork"]
    if not found:
        return None
    return min(found, key=lambda t: (tags.sizes.get(t, 1 << 130), "." not in t, t))


def _unique(base: str, taken: set[str]) -> str:
    name, i = base, 2
    while name.lower() in taken:
        name, i = f"{base}-{i}", i + 1
    taken.add(name.lower())
    return name


def wildcard_ok(domain: str) -> bool:
    """May `*.domain` be suggested? Never over a public suffix (`*.com`, `*.co.uk`, and the
    Public Suffix List's shared hosting suffixes), nor a shared platform suffix (or anything
    above one)."""
    if "." not in domain or is_public_suffix(domain) or wire_host(domain) is None:
        return False
    return not any(domain == s or domain.endswith("." + s) or s.endswith("." + domain)
                   for s in SHARED_SUFFIXES)


def group_fqdns(names: set[str], registered, forbidden: set[str] | frozenset[str] = frozenset()
                ) -> dict[str, set[str]]:
    """pattern -> the names it is for: `*.domain` when ≥2 sibling subdomains of one
    registrable domain were seen, the domain is not shared, and no `forbidden` name falls under."""
    by_domain: dict[str, set[str]] = defaultdict(set)
    for n in names:
        by_domain[registered(n) or n].add(n)
    out: dict[str, set[str]] = {}
    for dom, group in by_domain.items():
        subs = {n for n in group if n != dom and n.endswith("." + dom)}
        pattern = "*." + dom
        if (len(subs) >= 2 and wildcard_ok(dom) and not any(is_storage_name(n) for n in subs)
                and not any(pattern_matches(pattern, f) for f in forbidden)):
            out[pattern] = subs
            group = group - subs
        for n in group:
            out[n] = {n}
    return out


def fqdn_rules(fqdn, implicated: Implicated, suspicious_names, registered, taken) -> list[NewRule]:
    forbidden = set(suspicious_names) | set(implicated.names)
    forbidden |= {"x." + d for d in implicated.domains}     # a name under each tunnel domain
    rules = []
    for pattern, names in sorted(group_fqdns(set(fqdn), registered, forbidden).items()):
        labels = set().union(*(fqdn[n] for n in names))
        slug = ("wildcard-" + _slug(pattern[2:])) if pattern.startswith("*.") else _slug(pattern)
        seen = ", ".join(sorted(names)[:4]) + (" ..." if len(names) > 4 else "")
        why = f"seen: {seen}" if pattern.startswith("*.") else ""
        base = pattern[2:] if pattern.startswith("*.") else pattern
        listed = exfil_category(base)
        if listed:
            why = (f"not suggested: {listed[0]} is a {listed[1].replace('_', ' ')} service, a "
                   "common exfiltration channel; uncomment only if the job really needs it"
                   + (f"; {why}" if why else ""))
        rules.append(NewRule(FqdnRule(name=_unique("fqdn-" + slug, taken),
                                      destination=normalise_pattern(pattern)), why, labels,
                             active=listed is None))
    return rules


def pe_rules(pe, taken) -> list[NewRule]:
    rules = []
    for (rtype, sub, name), labels in sorted(pe.items()):
        provider = _PROVIDER_CASE.get(rtype, rtype)
        rule = PrivateEndpointRule(name=_unique(f"pe-{_slug(name)}-{_slug(sub)}", taken),
                                   service_resource_id=f"{RID_PREFIX}{provider}/{name}",
                                   subresource_target=sub, spark_enabled=False)
        why = f"{name} ({sub}); fill in <subscription-id> and <resource-group>"
        rules.append(NewRule(rule, why, labels))
    return rules


def st_rules(st, taken) -> list[NewRule]:
    rules = []
    for (tag, proto), (ports, labels) in sorted(st.items()):
        text = port_ranges(ports) if ports else "*"
        pslug = "-".join(p.replace("-", "to") for p in text.split(", ")) if ports else "any"
        if len(ports) > 4:
            pslug = f"{len(ports)}ports"
        rule = ServiceTagRule(
            name=_unique(f"st-{_slug(tag)}-{proto if proto != '*' else 'any'}-{pslug}", taken),
            service_tag=tag, protocol=proto, port_ranges=parse_port_ranges(text) if ports else ())
        rules.append(NewRule(rule, "", labels))
    return rules
