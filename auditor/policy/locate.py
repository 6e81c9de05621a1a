"""Where the managed network sits in a document, whichever Microsoft tool wrote it.

One function, `locate`, turns any accepted document into a `Located`: the managed-network
mapping (keys in any case), the rules found outside it (single outbound-rule resources, list
output), which resource it belongs to, and whether the shape is one only Azure itself writes.
The dialects (docs/policy.md has one example of each):

- Azure ML CLI v2 YAML / `az ml workspace show` (snake_case, top-level `managed_network`);
- ARM templates (also nested deployments, and JSON compiled from Bicep) with an ML workspace,
  a `workspaces/managedNetworks` or a Foundry `accounts/managedNetworks` resource, plus any
  `.../outboundRules` resources; ARM parameter files and AVM `managedNetworkSettings`;
- Bicep source (see `bicep.py`);
- REST bodies and `az ... show` output: `properties.managedNetwork` (workspace GET,
  `managedNetworks/default`), the Foundry batch body `properties.{isolationMode, outboundRules}`,
  a single rule `properties.{type, destination}`, a list `{value: [...]}` or `[...]`;
- `az cognitiveservices account managed-network outbound-rule bulk-set` files: a map (or
  `rules:`) of rule name -> rule.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .lines import LineDict
from .model import PolicyError

_ML = "microsoft.machinelearningservices"
_CS = "microsoft.cognitiveservices"
MAX_NESTED_DEPLOYMENTS = 4


def fold(key: str) -> str:
    """`IsolationMode`, `isolation_mode`, `isolationMode` -> `isolationmode`."""
    return key.replace("_", "").replace("-", "").lower()


def get(obj: Any, name: str) -> tuple[str, Any] | None:
    """(key as written, value) of the key that folds to `name`, or None."""
    if isinstance(obj, dict):
        want = fold(name)
        for key, value in obj.items():
            if isinstance(key, str) and fold(key) == want:
                return key, value
    return None


def value(obj: Any, name: str) -> Any:
    hit = get(obj, name)
    return hit[1] if hit else None


def line_of(obj: Any, key: str | None = None) -> int | None:
    if isinstance(obj, LineDict):
        return obj.line_of(key) if key else obj.line
    return getattr(obj, "line", None)


RawRule = tuple[str | None, Any, int | None]   # (name, body, line); name None = none written


@dataclass
class Located:
    dialect: str                     # cli_yaml | az_json | arm | bicep | cli_rules
    network: dict                    # the managed-network mapping ({} when only rules were found)
    top: dict = field(default_factory=dict)   # the object holding location / name / id
    rules: list[RawRule] = field(default_factory=list)   # rules found outside `network`
    resource: str | None = None      # "workspace" | "foundry" | None (cannot tell)
    user_written: bool = True        # a file users write (template, CLI YAML, bulk-set ...)
    mode_absent_reason: str | None = None  # rules-only documents: why no isolation mode
    notes: list[str] = field(default_factory=list)


def _resource_of(*texts: Any) -> str | None:
    for text in texts:
        if isinstance(text, str):
            low = text.lower()
            if _CS in low:
                return "foundry"
            if _ML in low:
                return "workspace"
    return None


def _tail(name: Any) -> str | None:
    """`acct/default/allow-pypi` or a rule's resource id -> `allow-pypi`. An ARM expression
    (`[format('{0}/{1}', parameters('ws'), 'allow-pypi')]`) gives its last string literal's
    last segment; None when there is nothing literal to take."""
    if not isinstance(name, str) or not name.strip():
        return None
    text = name.strip()
    if text.startswith("["):
        literals = [lit for lit in re.findall(r"'([^']*)'", text) if lit.strip("/") and "{" not in lit]
        if not literals:
            return None
        text = literals[-1]
    return text.rstrip("/").rsplit("/", 1)[-1] or None


def _is_rule(obj: Any) -> bool:
    return isinstance(obj, dict) and get(obj, "destination") is not None


def locate(doc: Any, fmt: str, file: str) -> Located:
    if isinstance(doc, list):
        return _list(doc, fmt, file)
    if not isinstance(doc, dict):
        raise PolicyError(file, "not an Azure managed network policy (expected a mapping)")
    if fmt == "bicep":
        found = _arm_template(doc, file) if "resources" in doc else _avm(doc, file)
        found.dialect = "bicep"
        return found
    schema = str(doc.get("$schema", "")).lower()
    if "deploymentparameters" in schema or (isinstance(doc.get("parameters"), dict)
                                            and "resources" not in doc
                                            and "deploymenttemplate" not in schema):
        return _parameters(doc, file)
    if "resources" in doc:
        return _arm_template(doc, file)
    if isinstance(doc.get("value"), list):                   # REST / az list output
        networks = [item for item in doc["value"]
                    if get(value(item, "properties"), "managedNetwork") is not None]
        if len(networks) > 1:
            raise PolicyError(file, f"the list holds {len(networks)} managed networks; give "
                                    "the auditor one")
        if networks:                                         # `.../managedNetworks` list
            return locate(networks[0], fmt, file)
        return _list(doc["value"], fmt, file)
    hit = get(doc, "managed_network")
    if hit is not None:
        key, mn = hit
        snake = key == "managed_network"
        written = fmt == "yaml" and not _shows_azure_view(mn)
        return Located("cli_yaml" if snake and fmt == "yaml" else "az_json" if snake else "arm",
                       mn, doc, resource=_resource_of(doc.get("id"), doc.get("type")) or
                       ("workspace" if snake else None), user_written=written)
    props = value(doc, "properties")
    if isinstance(props, dict):
        inner = get(props, "managedNetwork")
        if inner is not None:                                # workspace / managedNetworks body
            return Located("arm", inner[1], doc, resource=_resource_of(doc.get("id"), doc.get("type")),
                           user_written=False)
        if get(props, "isolationMode") or get(props, "outboundRules"):
            # The Foundry `batchOutboundRules` body (a request users write): no
            # `managedNetwork` level.
            return Located("arm", props, doc, resource="foundry")
        if _is_rule(props):                                  # one outbound rule (GET / PUT body)
            name = doc.get("name") if isinstance(doc.get("name"), str) else _tail(doc.get("id"))
            return Located("arm", {}, {}, [(name, props, line_of(doc))],
                           resource=_resource_of(doc.get("id"), doc.get("type")), user_written=False,
                           mode_absent_reason="a single outbound rule")
    if get(doc, "managedNetworkSettings"):
        return _avm(doc, file)
    if get(doc, "isolation_mode") is not None or get(doc, "outbound_rules") is not None:
        snake = "isolation_mode" in doc or "outbound_rules" in doc
        dialect = ("cli_yaml" if fmt == "yaml" else "az_json") if snake else "arm"
        return Located(dialect, doc, {}, resource="workspace" if snake else None,
                       user_written=fmt == "yaml" and not _shows_azure_view(doc))
    rules = get(doc, "rules")
    body = rules[1] if rules is not None and isinstance(rules[1], (dict, list)) else doc
    if isinstance(body, list) or (body and all(_is_rule(v) for v in body.values())):
        found = _list(body, fmt, file) if isinstance(body, list) else Located(
            "cli_rules", {}, {}, [(str(k), v, line_of(body, k)) for k, v in body.items()],
            mode_absent_reason="an outbound-rule bulk-set file")
        found.dialect, found.resource, found.user_written = "cli_rules", "foundry", True
        return found
    raise PolicyError(file, "not an Azure managed network policy: found no managed_network, "
                            "properties.managedNetwork, managedNetworkSettings, isolation mode, "
                            "outbound rules or ARM resources")


def _shows_azure_view(mn: Any) -> bool:
    """YAML written by `az ml workspace show -o yaml` rather than by hand: it carries the
    read-only network fields or Azure's own `__SYS_` rules."""
    if not isinstance(mn, dict):
        return False
    if get(mn, "network_id") or isinstance(value(mn, "status"), dict):
        return True
    rules = value(mn, "outbound_rules")
    items = rules.values() if isinstance(rules, dict) else rules if isinstance(rules, list) else ()
    return any(isinstance(r, dict) and str(r.get("name", "")).startswith("__SYS_") for r in items)


def _list(items: list, fmt: str, file: str) -> Located:
    """`[rule, ...]` (named, snake or camel) or REST `[{name?, id?, properties: rule}, ...]`."""
    rules: list[RawRule] = []
    resource = None
    unnamed = 0
    lines = getattr(items, "item_lines", None)
    for i, item in enumerate(items):
        line = lines[i] if lines and i < len(lines) else None
        props = value(item, "properties")
        if isinstance(props, dict) and not _is_rule(item):
            name = item.get("name") if isinstance(item.get("name"), str) else _tail(item.get("id"))
            resource = resource or _resource_of(item.get("id"), item.get("type"))
            unnamed += name is None
            rules.append((name, props, line))
        else:
            name = item.get("name") if isinstance(item, dict) else None
            rules.append((name if isinstance(name, str) else None, item, line))
    found = Located("az_json" if fmt == "json" else "cli_rules", {}, {}, rules, resource=resource,
                    user_written=fmt != "json" and not resource,
                    mode_absent_reason="a list of outbound rules")
    if unnamed:
        found.notes.append(f"{unnamed} rule(s) carry no name (Azure's outbound-rule list output "
                           "omits names); they are named '#<position>' — the `managed-network "
                           "show` output carries the names")
    return found


def _arm_template(doc: dict, file: str) -> Located:
    networks: list[tuple[str, dict, dict]] = []    # (resource kind, network mapping, resource)
    rules: list[RawRule] = []
    owners: list[dict] = []                         # workspace / account resources (location)
    rule_kinds: list[str] = []                      # the resource kind of each rule resource

    def walk(resources: Any, depth: int) -> None:
        # languageVersion 2.0 templates key resources by symbolic name
        items = list(resources.values()) if isinstance(resources, dict) else \
            resources if isinstance(resources, list) else []
        for res in items:
            if not isinstance(res, dict):
                continue
            rtype = str(res.get("type", "")).lower()
            props = value(res, "properties")
            if rtype == "microsoft.resources/deployments" and depth < MAX_NESTED_DEPLOYMENTS:
                template = value(props, "template")
                if isinstance(template, dict):
                    walk(template.get("resources"), depth + 1)
                continue
            if rtype in (f"{_ML}/workspaces", f"{_CS}/accounts"):
                owners.append(res)
            kind = _resource_of(rtype)
            if rtype.endswith("/outboundrules") and kind:
                rules.append((_tail(res.get("name")), props, line_of(res)))
                rule_kinds.append(kind)
                continue
            inner = get(props, "managedNetwork") if isinstance(props, dict) else None
            if kind and inner is not None:
                networks.append((kind, inner[1], res))

    walk(doc.get("resources"), 0)
    if len(networks) > 1:
        raise PolicyError(file, f"ARM template defines {len(networks)} managed networks; "
                                "give the auditor one workspace's or account's file")
    if not networks and not rules:
        raise PolicyError(file, "ARM template has no Microsoft.MachineLearningServices/workspaces "
                                "or Microsoft.CognitiveServices/accounts managed network and no "
                                "outboundRules resource")
    kind, mn, res = networks[0] if networks else (None, {}, {})
    owner = res if str(res.get("type", "")).count("/") == 1 else (owners[0] if owners else res)
    top = {"location": value(owner, "location"), "name": value(owner, "name")}
    if not isinstance(top["location"], str) and isinstance(value(res, "location"), str):
        top["location"] = value(res, "location")
    kind = kind or (_resource_of(owner.get("type")) if owner else None) or \
        (rule_kinds[0] if rule_kinds else None)
    return Located("arm", mn, _resolve_parameters(top, doc), rules, resource=kind,
                   mode_absent_reason=None if networks else "outbound-rule resources only")


def _resolve_parameters(top: dict, doc: dict) -> dict:
    """`[parameters('x')]` -> the parameter's literal defaultValue, when it has one."""
    found = doc.get("parameters")
    params: dict = found if isinstance(found, dict) else {}
    out = {}
    for key, val in top.items():
        if isinstance(val, str) and val.startswith("[parameters('") and val.endswith("')]"):
            default = value(params.get(val[13:-3]), "defaultValue")
            if isinstance(default, str) and not default.startswith("["):
                val = default
        out[key] = val
    return out


def _parameters(doc: dict, file: str) -> Located:
    """An ARM parameters file: the parameter holding the managed network (an AVM module's
    `managedNetworkSettings`, or a template's own `managedNetwork` parameter)."""
    params = doc.get("parameters") if isinstance(doc.get("parameters"), dict) else {}
    for name in ("managedNetworkSettings", "managedNetwork"):
        hit = get(params, name)
        if hit is not None:
            mn = value(hit[1], "value")
            if isinstance(mn, dict):
                loc = value(value(params, "location"), "value")
                wsname = value(value(params, "name"), "value")
                return Located("arm", mn, {"location": loc, "name": wsname}, resource="workspace")
    raise PolicyError(file, "ARM parameters file has no managedNetworkSettings or managedNetwork "
                            "parameter with a value")


def _avm(doc: dict, file: str) -> Located:
    hit = get(doc, "managedNetworkSettings")
    if hit is None or not isinstance(hit[1], dict):
        raise PolicyError(file, "managedNetworkSettings must be a mapping")
    return Located("arm", hit[1], doc, resource="workspace")
