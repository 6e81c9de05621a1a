"""Names a private endpoint answers to, derived from its resource id and subresource.

A client reaches a private endpoint by resolving the public name (`acct.blob.core.windows.net`),
which Azure CNAMEs to the `privatelink` zone (`acct.privatelink.blob.core.windows.net`) whose
A record is the endpoint's private IP. Both forms are returned, lower case.
"""
from __future__ import annotations

import re

# /subscriptions/<sub>/resourceGroups/<rg>/providers/<Namespace>/<type>/<name>[/<type>/<name>...]
_RESOURCE_ID = re.compile(
    r"^/subscriptions/[^/]+/resourcegroups/[^/]+/providers/([a-z0-9.]+)/([a-z0-9]+)/([^/]+)"
    r"((?:/[^/]+/[^/]+)*)$", re.IGNORECASE)


def parse_resource_id(rid: str) -> tuple[str, str, str] | None:
    """(namespace/type lower case, resource name, whole id) or None when malformed."""
    m = _RESOURCE_ID.match(rid.strip())
    if not m:
        return None
    return f"{m.group(1)}/{m.group(2)}".lower(), m.group(3), rid


# (provider type, subresource lower, host template, public zone, privatelink zone or None), one
# row per name: Microsoft's "Azure Private Endpoint private DNS zone values" table
# (learn.microsoft.com/azure/private-link/private-endpoint-dns, ms.date 08/04/2025), for every
# target the managed networks support ("Private endpoints" lists of the Azure ML, hub and Foundry
# managed-network docs). Templates: {name} resource name, {region} workspace region, {wsid}
# workspace GUID. A name the resource id cannot give (a compute instance, an online endpoint,
# a Databricks workspace URL) is a left-most wildcard: it still only counts for an address a
# trusted resolver gave and that is not public (docs/policy.md, private endpoints).
_DB, _ML, _CS = ("microsoft.documentdb/databaseaccounts", "microsoft.machinelearningservices/workspaces",
                 "microsoft.cognitiveservices/accounts")
_ST, _REDIS_E = "microsoft.storage/storageaccounts", "microsoft.cache/redisenterprise"
_ROWS: tuple[tuple[str, str, str, str, str | None], ...] = (
    *((_ST, sub, "{name}", f"{sub}.core.windows.net", f"privatelink.{sub}.core.windows.net")
      for sub in ("blob", "file", "queue", "table", "dfs", "web")),
    # Read-access geo-redundant storage: the secondary endpoint is <account>-secondary.
    *((_ST, f"{sub}_secondary", "{name}-secondary", f"{sub}.core.windows.net",
       f"privatelink.{sub}.core.windows.net") for sub in ("blob", "queue", "table", "dfs", "web")),
    ("microsoft.keyvault/vaults", "vault", "{name}", "vault.azure.net", "privatelink.vaultcore.azure.net"),
    ("microsoft.keyvault/vaults", "vault", "{name}", "vaultcore.azure.net", "privatelink.vaultcore.azure.net"),
    ("microsoft.containerregistry/registries", "registry", "{name}", "azurecr.io", "privatelink.azurecr.io"),
    ("microsoft.containerregistry/registries", "registry", "{name}.{region}.data", "azurecr.io",
     "privatelink.azurecr.io"),
    (_ML, "amlworkspace", "{wsid}.workspace.{region}", "api.azureml.ms", "privatelink.api.azureml.ms"),
    (_ML, "amlworkspace", "{wsid}.workspace.{region}.cert", "api.azureml.ms", "privatelink.api.azureml.ms"),
    (_ML, "amlworkspace", "ml-{name}-{region}-{wsid}.{region}", "notebooks.azure.net",
     "privatelink.notebooks.azure.net"),
    (_ML, "amlworkspace", "*.{region}", "instances.azureml.ms", None),       # compute instances
    (_ML, "amlworkspace", "*", "aznbcontent.net", None),                    # notebook content
    (_ML, "amlworkspace", "*.{region}", "inference.ml.azure.com", None),    # online endpoints
    ("microsoft.machinelearningservices/registries", "amlregistry", "*.registry.{region}",
     "api.azureml.ms", "privatelink.api.azureml.ms"),
    (_CS, "account", "{name}", "cognitiveservices.azure.com", "privatelink.cognitiveservices.azure.com"),
    (_CS, "account", "{name}", "openai.azure.com", "privatelink.openai.azure.com"),
    (_CS, "account", "{name}", "services.ai.azure.com", "privatelink.services.ai.azure.com"),
    ("microsoft.search/searchservices", "searchservice", "{name}", "search.windows.net",
     "privatelink.search.windows.net"),
    ("microsoft.sql/servers", "sqlserver", "{name}", "database.windows.net", "privatelink.database.windows.net"),
    ("microsoft.cache/redis", "rediscache", "{name}", "redis.cache.windows.net",
     "privatelink.redis.cache.windows.net"),
    (_REDIS_E, "redisenterprise", "{name}.{region}", "redisenterprise.cache.azure.net",
     "privatelink.redisenterprise.cache.azure.net"),
    (_REDIS_E, "redisenterprise", "{name}.{region}", "redis.azure.net", "privatelink.redis.azure.net"),
    (_DB, "sql", "{name}", "documents.azure.com", "privatelink.documents.azure.com"),
    (_DB, "sql", "{name}-{region}", "documents.azure.com", "privatelink.documents.azure.com"),
    (_DB, "mongodb", "{name}", "mongo.cosmos.azure.com", "privatelink.mongo.cosmos.azure.com"),
    (_DB, "cassandra", "{name}", "cassandra.cosmos.azure.com", "privatelink.cassandra.cosmos.azure.com"),
    (_DB, "gremlin", "{name}", "gremlin.cosmos.azure.com", "privatelink.gremlin.cosmos.azure.com"),
    (_DB, "table", "{name}", "table.cosmos.azure.com", "privatelink.table.cosmos.azure.com"),
    (_DB, "analytical", "{name}", "analytics.cosmos.azure.com", "privatelink.analytics.cosmos.azure.com"),
    ("microsoft.eventhub/namespaces", "namespace", "{name}", "servicebus.windows.net",
     "privatelink.servicebus.windows.net"),
    ("microsoft.datafactory/factories", "datafactory", "{name}.{region}", "datafactory.azure.net",
     "privatelink.datafactory.azure.net"),
    ("microsoft.datafactory/factories", "portal", "adf", "azure.com", "privatelink.adf.azure.com"),
    *(("microsoft.databricks/workspaces", sub, "*", "azuredatabricks.net",
       "privatelink.azuredatabricks.net") for sub in ("databricks_ui_api", "browser_authentication")),
    ("microsoft.dbformysql/servers", "mysqlserver", "{name}", "mysql.database.azure.com",
     "privatelink.mysql.database.azure.com"),
    ("microsoft.dbformysql/flexibleservers", "mysqlserver", "{name}", "mysql.database.azure.com",
     "privatelink.mysql.database.azure.com"),
    ("microsoft.dbformariadb/servers", "mariadbserver", "{name}", "mariadb.database.azure.com",
     "privatelink.mariadb.database.azure.com"),
    ("microsoft.dbforpostgresql/servers", "postgresqlserver", "{name}", "postgres.database.azure.com",
     "privatelink.postgres.database.azure.com"),
    ("microsoft.dbforpostgresql/flexibleservers", "postgresqlserver", "{name}",
     "postgres.database.azure.com", "privatelink.postgres.database.azure.com"),
    ("microsoft.apimanagement/service", "gateway", "{name}", "azure-api.net", "privatelink.azure-api.net"),
    # Application Insights / Azure Monitor through a private link scope: the scope carries the
    # whole monitoring surface, so the names are the zones themselves.
    *(("microsoft.insights/privatelinkscopes", "azuremonitor", "*", zone, f"privatelink.{zone}")
      for zone in ("monitor.azure.com", "oms.opinsights.azure.com", "ods.opinsights.azure.com",
                   "agentsvc.azure-automation.net")),
    *(("microsoft.insights/privatelinkscopes", "azuremonitor", "*", zone, None)
      for zone in ("applicationinsights.azure.com", "services.visualstudio.com")),
)
# (provider type, subresource) -> [(host template, public zone, privatelink zone)]
_ZONES: dict[tuple[str, str], list[tuple[str, str, str | None]]] = {}
for _rtype, _sub, _template, _public, _private in _ROWS:
    _ZONES.setdefault((_rtype, _sub), []).append((_template, _public, _private))


def private_link_target(name: str, skip: frozenset[str] = frozenset()
                        ) -> tuple[str, str, str] | None:
    """(provider type lower, subresource, resource name) of the private endpoint that would
    serve `name` (`acct.blob.core.windows.net` -> storage account `acct`, blob), for the
    templates that name the resource itself; None when the name says nothing that certain."""
    for wanted in ("{name}-secondary", "{name}", "{name}.{region}.data"):
        for (rtype, sub), zones in _ZONES.items():
            if rtype in skip:
                continue
            for template, public, private in zones:
                if template != wanted:
                    continue
                for zone in (z for z in (private, public) if z):
                    if not name.endswith("." + zone):
                        continue
                    host = name[: -len(zone) - 1]
                    if wanted == "{name}-secondary" and host.endswith("-secondary") \
                            and "." not in host:
                        return rtype, sub, host[: -len("-secondary")]
                    if wanted == "{name}" and "." not in host:
                        return rtype, sub, host
                    if wanted == "{name}.{region}.data" and host.endswith(".data"):
                        return rtype, sub, host.split(".", 1)[0]
    return None


def known_subresource(rtype: str, sub: str) -> bool:
    return (rtype.lower(), sub.lower()) in _ZONES


def derive_fqdns(resource_id: str, subresource: str, *, region: str | None = None,
                 workspace_id: str | None = None) -> tuple[str, ...]:
    """Public and privatelink names of a private endpoint; () when nothing can be derived.

    Templates that need the region or the workspace GUID are skipped when those are unknown
    (`policy check` warns, and the rule's explicit `fqdns` still apply).
    """
    parsed = parse_resource_id(resource_id)
    if parsed is None:
        return ()
    rtype, name, _ = parsed
    out: list[str] = []
    for template, public, private in _ZONES.get((rtype, subresource.lower()), ()):
        if ("{region}" in template and not region) or ("{wsid}" in template and not workspace_id):
            continue
        host = template.format(name=name, region=region or "", wsid=workspace_id or "").lower()
        out.append(f"{host}.{public}")
        if private:
            out.append(f"{host}.{private}")
    return tuple(dict.fromkeys(out))


def privatelink_forms(fqdn: str) -> tuple[str, ...]:
    """For an explicit `fqdns` entry, the CNAME target in the privatelink zone as well."""
    fqdn = fqdn.lower().rstrip(".")
    for zones in _ZONES.values():
        for _, public, private in zones:
            if private and fqdn.endswith("." + public) and ".privatelink." not in fqdn:
                return fqdn, fqdn[: -len(public)] + private
    return (fqdn,)


def rule_names(rule, *, region: str | None = None, workspace_id: str | None = None) -> tuple[str, ...]:
    """Every name a private-endpoint rule answers to: derived from its resource id and
    subresource, plus its explicit `fqdns` with their privatelink CNAME forms. The one place
    that decides which names reach a private endpoint (judge, `policy show`, `suggest`)."""
    names = list(derive_fqdns(rule.service_resource_id, rule.subresource_target,
                              region=region, workspace_id=workspace_id))
    for fq in rule.fqdns:
        names += privatelink_forms(fq) if "*" not in fq else (fq,)
    return tuple(dict.fromkeys(names))
