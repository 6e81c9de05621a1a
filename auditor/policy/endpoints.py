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


# (provider type or "*", subresource lower) -> [(host template, public zone, privatelink zone)].
# Templates: {name} resource name, {region} workspace region, {wsid} workspace GUID.
_ZONES: dict[tuple[str, str], list[tuple[str, str, str]]] = {}


def _add(rtype: str, sub: str, *entries: tuple[str, str, str]) -> None:
    _ZONES[(rtype, sub)] = list(entries)


for _sub in ("blob", "file", "queue", "table", "dfs", "web"):
    _add("microsoft.storage/storageaccounts", _sub,
         ("{name}", f"{_sub}.core.windows.net", f"privatelink.{_sub}.core.windows.net"))
_add("microsoft.keyvault/vaults", "vault",
     ("{name}", "vault.azure.net", "privatelink.vaultcore.azure.net"))
_add("microsoft.containerregistry/registries", "registry",
     ("{name}", "azurecr.io", "privatelink.azurecr.io"),
     ("{name}.{region}.data", "azurecr.io", "privatelink.azurecr.io"))
_add("microsoft.machinelearningservices/workspaces", "amlworkspace",
     ("{wsid}.workspace.{region}", "api.azureml.ms", "privatelink.api.azureml.ms"),
     ("{wsid}.workspace.{region}.cert", "api.azureml.ms", "privatelink.api.azureml.ms"),
     ("ml-{name}-{region}-{wsid}.{region}", "notebooks.azure.net", "privatelink.notebooks.azure.net"))
_add("microsoft.cognitiveservices/accounts", "account",
     ("{name}", "cognitiveservices.azure.com", "privatelink.cognitiveservices.azure.com"),
     ("{name}", "openai.azure.com", "privatelink.openai.azure.com"),
     ("{name}", "services.ai.azure.com", "privatelink.services.ai.azure.com"))
_add("microsoft.search/searchservices", "searchservice",
     ("{name}", "search.windows.net", "privatelink.search.windows.net"))
_add("microsoft.sql/servers", "sqlserver",
     ("{name}", "database.windows.net", "privatelink.database.windows.net"))
_add("microsoft.cache/redis", "rediscache",
     ("{name}", "redis.cache.windows.net", "privatelink.redis.cache.windows.net"))
_add("microsoft.documentdb/databaseaccounts", "sql",
     ("{name}", "documents.azure.com", "privatelink.documents.azure.com"),
     ("{name}-{region}", "documents.azure.com", "privatelink.documents.azure.com"))
_add("microsoft.documentdb/databaseaccounts", "mongodb",
     ("{name}", "mongo.cosmos.azure.com", "privatelink.mongo.cosmos.azure.com"))
_add("microsoft.documentdb/databaseaccounts", "cassandra",
     ("{name}", "cassandra.cosmos.azure.com", "privatelink.cassandra.cosmos.azure.com"))
_add("microsoft.documentdb/databaseaccounts", "gremlin",
     ("{name}", "gremlin.cosmos.azure.com", "privatelink.gremlin.cosmos.azure.com"))
_add("microsoft.documentdb/databaseaccounts", "table",
     ("{name}", "table.cosmos.azure.com", "privatelink.table.cosmos.azure.com"))
_add("microsoft.eventhub/namespaces", "namespace",
     ("{name}", "servicebus.windows.net", "privatelink.servicebus.windows.net"))
_add("microsoft.datafactory/factories", "datafactory",
     ("{name}.{region}", "datafactory.azure.net", "privatelink.datafactory.azure.net"))
_add("microsoft.dbformysql/servers", "mysqlserver",
     ("{name}", "mysql.database.azure.com", "privatelink.mysql.database.azure.com"))
_add("microsoft.dbformysql/flexibleservers", "mysqlserver",
     ("{name}", "mysql.database.azure.com", "privatelink.mysql.database.azure.com"))
_add("microsoft.dbformariadb/servers", "mariadbserver",
     ("{name}", "mariadb.database.azure.com", "privatelink.mariadb.database.azure.com"))
_add("microsoft.dbforpostgresql/servers", "postgresqlserver",
     ("{name}", "postgres.database.azure.com", "privatelink.postgres.database.azure.com"))
_add("microsoft.dbforpostgresql/flexibleservers", "postgresqlserver",
     ("{name}", "postgres.database.azure.com", "privatelink.postgres.database.azure.com"))
_add("microsoft.apimanagement/service", "gateway",
     ("{name}", "azure-api.net", "privatelink.azure-api.net"))


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
        out.append(f"{host}.{private}")
    return tuple(dict.fromkeys(out))


def privatelink_forms(fqdn: str) -> tuple[str, ...]:
    """For an explicit `fqdns` entry, the CNAME target in the privatelink zone as well."""
    fqdn = fqdn.lower().rstrip(".")
    for zones in _ZONES.values():
        for _, public, private in zones:
            if fqdn.endswith("." + public) and ".privatelink." not in fqdn:
                return fqdn, fqdn[: -len(public)] + private
    return (fqdn,)
