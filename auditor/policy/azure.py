"""Every Azure dialect, normalised into one `Policy`; values read as Microsoft's tools read them.

`locate.py` finds the managed network in the document; this module reads its fields and rules.
Keys match whatever their case or underscores (`IsolationMode`, `isolation_mode`), enum values
likewise (`AllowInternetOutBound`, `allow_internet_outbound`, `RuleStatus.ACTIVE`). The Azure ML
SDK v2 (`load_workspace`) is the model for CLI YAML: `spark_enabled: 'true'` is true, read-only
fields a user wrote (`category`, `status`) are dropped, the destination's shape decides the rule
type. Unknown keys are warnings; invalid values are errors naming the file, the line (YAML and
Bicep), the rule and the field. Fields Azure reports that change no verdict (`firewallSku`,
`networkId`, ...) are kept as `info` and shown by `policy show`.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from . import builtin
from .bicep import Expression
from .endpoints import parse_resource_id
from .loader import read_document, sha256
from .locate import Located, fold, get, line_of, locate, value
from .match import PatternError, normalise_pattern
from .model import (STATUSES, Category, FqdnRule, IsolationMode, Policy, PolicyError,
                    PortRange, PrivateEndpointRule, Problem, Rule, RuleType, ServiceTagRule)
from .servicetags import normalise_region, parse_prefix

# Fields of the current REST API's ManagedNetworkSettings(Ex) that change no verdict, with the
# name `policy show` gives them. `status` (the network's own) is read apart: it is a mapping.
_NETWORK_INFO = {"firewallsku": "firewall_sku", "firewallpublicipaddress": "firewall_public_ip_address",
                 "networkid": "network_id", "managednetworkkind": "managed_network_kind",
                 "changeableisolationmodes": "changeable_isolation_modes",
                 "provisioningstate": "provisioning_state", "enablenetworkmonitor": "enable_network_monitor",
                 "enablefirewalllog": "enable_firewall_log", "provisionnetworknow": "provision_network_now",
                 "sparkready": "spark_ready"}
_NETWORK_USED = {"isolationmode", "outboundrules", "status"}
_RULE_INFO = {"errorinformation": "error_information", "parentrulenames": "parent_rule_names"}
_RULE_USED = {"name", "type", "destination", "category", "status", "fqdns", "id",
              "subresourcetarget"}
_ST_KEYS = {"servicetag", "protocol", "portranges", "addressprefixes", "action"}
_PE_KEYS = {"serviceresourceid", "subresourcetarget", "sparkenabled", "sparkstatus", "fqdns"}
ACTION_IN_CLI_YAML = ("az ml rejects 'action' in a CLI YAML destination (it exists only in "
                      "ARM/REST files): Azure will not apply this file; audits judge it as written")
_PROTOCOLS = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "*": "*", "any": "*", "all": "*"}
_TYPES = {"fqdn": RuleType.FQDN, "servicetag": RuleType.SERVICE_TAG,
          "privateendpoint": RuleType.PRIVATE_ENDPOINT}
_CATEGORIES = {fold(c.value): c for c in Category if c is not Category.BUILT_IN}
_MODES = {fold(m.value): m for m in IsolationMode}
# marshmallow's Boolean (what `load_workspace` uses for spark_enabled), exactly.
_TRUTHY = {"t", "true", "on", "y", "yes", "1"}
_FALSY = {"f", "false", "off", "n", "no", "0"}


def snake(text: str) -> str:
    """`serviceResourceId` -> `service_resource_id`, `AllowOnlyApprovedOutbound` -> `allow_only_...`."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", text).lower()


def is_expression(val: Any) -> bool:
    """A value computed at deployment time: a Bicep expression or an ARM `[...]` string."""
    return isinstance(val, Expression) or (isinstance(val, str) and val.startswith("[")
                                           and not val.startswith("[[") and val.endswith("]"))


class _Ctx:
    """Collects problems; in strict mode the first error is raised as PolicyError."""

    def __init__(self, file: str, strict: bool, found: Located) -> None:
        self.file, self.strict, self.found = file, strict, found
        self.problems: list[Problem] = []

    @property
    def sdk_yaml(self) -> bool:
        """A CLI v2 YAML file a user wrote: read exactly as `az ml` / the SDK read it."""
        return self.found.dialect == "cli_yaml" and self.found.user_written

    def error(self, reason: str, *, line=None, rule=None, field=None) -> None:
        if self.strict:
            raise PolicyError(self.file, reason, line=line, rule=rule, field=field)
        self.problems.append(Problem(level="error", file=self.file, reason=reason, line=line,
                                     rule=rule, field=field))

    def refused(self, reason: str, **where) -> None:
        """Azure would refuse this file, yet what it means is clear: an audit judges it as
        written (warning), `policy check` reports an error."""
        (self.warn if self.strict else self.error)(reason, **where)

    def warn(self, reason: str, *, line=None, rule=None, field=None) -> None:
        self.problems.append(Problem(level="warning", file=self.file, reason=reason, line=line,
                                     rule=rule, field=field))


class _Bad(Exception):
    """One rule is unusable; already reported."""


def _enum(val: Any, table: dict[str, Any], ctx: _Ctx, **where) -> Any:
    if isinstance(val, str) and not is_expression(val):
        hit = table.get(fold(val.strip().rsplit(".", 1)[-1]))    # RuleStatus.ACTIVE -> active
        if hit is not None:
            return hit
    if is_expression(val):
        shown = f"{val!r} is a template expression; the auditor needs the literal value"
    else:
        shown = "missing" if val is None else f"{val!r} is not valid"
    names = sorted({getattr(v, "value", v) for v in table.values()})
    ctx.error(f"{shown}; expected one of {', '.join(names)}", **where)
    raise _Bad


def parse_port_ranges(val: Any) -> tuple[PortRange, ...]:
    """"80, 8080-8089" / 443 / ["80", "443"] / "*" -> ranges (() = any). ValueError names the part."""
    parts = val if isinstance(val, list) else [val]
    out: list[PortRange] = []
    for part in parts:
        for piece in (str(part).split(",") if not isinstance(part, bool) else [repr(part)]):
            piece = piece.strip()
            if piece == "*":
                return ()
            lo, dash, hi = piece.partition("-")
            if not (lo.isdigit() and (hi.isdigit() if dash else True)):
                raise ValueError(f"{piece!r} is not a port range")
            a, b = int(lo), int(hi) if dash else int(lo)
            if not (1 <= a <= b <= 65535):
                raise ValueError(f"{piece!r} is not a port range")
            out.append(PortRange(lo=a, hi=b))
    if not out:
        raise ValueError("empty port range")
    return tuple(out)


def _bool(val: Any) -> bool | None:
    """marshmallow's reading of a boolean: True/False, 1/0, 'true'/'yes'/'on'/'1'..., or None."""
    if isinstance(val, bool):
        return val
    if isinstance(val, int) and val in (0, 1):
        return bool(val)
    if isinstance(val, str):
        low = val.strip().lower()
        if low in _TRUTHY:
            return True
        if low in _FALSY:
            return False
    return None


def _info(obj: dict, table: dict[str, str]) -> tuple[tuple[str, str], ...]:
    out = []
    for key, val in obj.items():
        shown = table.get(fold(key)) if isinstance(key, str) else None
        if shown and val not in (None, "", [], {}):
            out.append((shown, ", ".join(map(str, val)) if isinstance(val, list) else
                        json.dumps(val) if isinstance(val, bool) else str(val)))
    return tuple(out)


# -- one rule ------------------------------------------------------------------------------

def _shape(dest: Any) -> RuleType | None:
    if isinstance(dest, str):
        return RuleType.FQDN
    if isinstance(dest, dict):
        if get(dest, "serviceResourceId") is not None:
            return RuleType.PRIVATE_ENDPOINT
        if get(dest, "serviceTag") is not None or get(dest, "addressPrefixes") is not None:
            return RuleType.SERVICE_TAG
    return None


def _rule_type(raw: dict, dest: Any, ctx: _Ctx, where: dict) -> RuleType:
    hit = get(raw, "type")
    shape = _shape(dest)
    if hit is None or hit[1] is None:
        if ctx.found.dialect == "cli_rules":
            return RuleType.FQDN                      # `bulk-set`: type defaults to FQDN
        if shape is None:
            ctx.error("missing; expected one of fqdn, private_endpoint, service_tag",
                      line=line_of(raw, "type"), field="type", **where)
            raise _Bad
        # Older azure-cli output prints `type: null` for private-endpoint and service-tag
        # rules (its model mapped only FQDN); the destination says which it is.
        ctx.warn(f"no type; taken as {shape.value} from the destination", line=line_of(raw),
                 field="type", **where)
        return shape
    rtype = _enum(hit[1], _TYPES, ctx, line=line_of(raw, hit[0]), field=hit[0], **where)
    if ctx.sdk_yaml and shape is not None and shape is not rtype:
        # The SDK picks the rule schema by the destination's shape and ignores `type`.
        ctx.warn(f"type says {rtype.value} but the destination is a {shape.value} "
                 f"destination; az ml reads it as {shape.value}",
                 line=line_of(raw, hit[0]), field=hit[0], **where)
        return shape
    return rtype


def _common(raw: dict, name: str, line: int | None, ctx: _Ctx, where: dict) -> dict[str, Any]:
    common: dict[str, Any] = {"name": name, "line": line, "info": _info(raw, _RULE_INFO)}
    cat, status = get(raw, "category"), get(raw, "status")
    if ctx.sdk_yaml:
        written = [h[0] for h in (cat, status) if h is not None and h[1] is not None]
        if written:
            ctx.warn(f"{' and '.join(written)} dropped: read-only in Azure; az ml ignores "
                     "what a file says (the rule is user_defined)",
                     line=line_of(raw, written[0]), field=written[0], **where)
        return common
    if cat is not None and cat[1] is not None:
        common["category"] = _enum(cat[1], _CATEGORIES, ctx, line=line_of(raw, cat[0]),
                                   field=cat[0], **where)
    if status is not None and status[1] is not None:
        canon = _enum(status[1], {fold(s): s for s in STATUSES}, ctx,
                      line=line_of(raw, status[0]), field=status[0], **where)
        common["status"] = canon
        if canon in ("Failed", "Deleting"):
            why = dict(common["info"]).get("error_information")
            ctx.warn(f"status {canon}: Azure does not enforce this rule, so it allows nothing"
                     + (f" (Azure says: {why})" if why else ""),
                     line=line_of(raw, status[0]), field=status[0], **where)
    return common


def _rule(raw: Any, name: str, line: int | None, ctx: _Ctx) -> Rule:
    where = {"rule": name}
    if not isinstance(raw, dict):
        ctx.error("rule must be a mapping", line=line, **where)
        raise _Bad
    for key in raw:
        if isinstance(key, str) and fold(key) not in _RULE_USED | set(_RULE_INFO):
            ctx.warn(f"unknown key {key!r} ignored", line=line_of(raw, key), field=key, **where)
    dest_key, dest = get(raw, "destination") or ("destination", None)
    dline = line_of(raw, dest_key) or line
    rtype = _rule_type(raw, dest, ctx, where)
    common = _common(raw, name, line, ctx, where)
    if rtype is RuleType.FQDN:
        if not isinstance(dest, str) or is_expression(dest):
            why = ("is a template expression; the auditor needs the literal host name"
                   if is_expression(dest) else "FQDN rule destination must be a host name string")
            ctx.error(why, line=dline, field="destination", **where)
            raise _Bad
        try:
            return FqdnRule(destination=normalise_pattern(dest), **common)
        except PatternError as exc:
            ctx.error(str(exc), line=dline, field="destination", **where)
            raise _Bad from None
    if ctx.found.dialect == "cli_rules" and isinstance(dest, str):
        dest = _bulk_set_destination(dest, rtype, raw)
    if not isinstance(dest, dict):
        ctx.error(f"{rtype.value} rule destination must be a mapping", line=dline,
                  field="destination", **where)
        raise _Bad
    known = _ST_KEYS if rtype is RuleType.SERVICE_TAG else _PE_KEYS
    for key in dest:
        if isinstance(key, str) and fold(key) not in known:
            tail = "; az ml rejects unknown keys in a destination" if ctx.sdk_yaml else ""
            ctx.warn(f"unknown key {key!r} ignored{tail}", line=line_of(dest, key),
                     field=f"destination.{key}", **where)

    def fld(key: str) -> dict:
        orig = (get(dest, key) or (snake(key),))[0]
        return {"line": line_of(dest, orig) or dline, "field": f"destination.{orig}", **where}

    if rtype is RuleType.SERVICE_TAG:
        return ServiceTagRule(**_service_tag(dest, ctx, fld), **common)
    spark_status = value(dest, "sparkStatus")
    if spark_status:
        common["info"] += (("spark_status", str(spark_status)),)
    return PrivateEndpointRule(**_private_endpoint(raw, dest, ctx, fld, where, dline), **common)


def _bulk_set_destination(dest: str, rtype: RuleType, raw: dict) -> Any:
    """`az cognitiveservices ... outbound-rule bulk-set` shorthand: a JSON string, a bare
    service tag (TCP 443, as the CLI fills it in), or a bare resource id."""
    text = dest.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            return dest
    if rtype is RuleType.SERVICE_TAG:
        return {"serviceTag": text, "protocol": "TCP", "portRanges": "443"}
    return {"serviceResourceId": text, "subresourceTarget": value(raw, "subresourceTarget")}


def _service_tag(dest: dict, ctx: _Ctx, fld) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    tag = value(dest, "serviceTag")
    if tag is not None and not (isinstance(tag, str) and tag.strip() and not is_expression(tag)):
        ctx.error(f"{tag!r} is not a service tag name", **fld("serviceTag"))
        raise _Bad
    kw["service_tag"] = tag.strip() if tag else None
    proto = value(dest, "protocol")
    proto = "*" if proto is None else proto
    if str(proto).strip().lower() not in _PROTOCOLS:
        ctx.error(f"{proto!r} is not a protocol (TCP, UDP, ICMP or *)", **fld("protocol"))
        raise _Bad
    kw["protocol"] = _PROTOCOLS[str(proto).strip().lower()]
    ports = value(dest, "portRanges")
    try:
        kw["port_ranges"] = () if ports is None else parse_port_ranges(ports)
    except ValueError as exc:
        ctx.error(str(exc), **fld("portRanges"))
        raise _Bad from None
    prefixes = value(dest, "addressPrefixes") or []
    prefixes = prefixes if isinstance(prefixes, list) else [prefixes]
    for p in prefixes:
        try:
            parse_prefix(str(p))
        except ValueError as exc:
            ctx.error(str(exc), **fld("addressPrefixes"))
            raise _Bad from None
    kw["address_prefixes"] = tuple(str(p).strip() for p in prefixes)
    if not kw["service_tag"] and not kw["address_prefixes"]:
        ctx.error("needs service_tag or address_prefixes", **fld("serviceTag"))
        raise _Bad
    action = get(dest, "action")
    if action is not None and action[1] is not None:
        if ctx.sdk_yaml:
            # Dropping it would turn a Deny into an Allow, so the rule is judged as written;
            # but Azure never accepts this file.
            ctx.refused(ACTION_IN_CLI_YAML, **fld("action"))
        kw["action"] = _enum(action[1], {"allow": "allow", "deny": "deny"}, ctx, **fld("action"))
    if ctx.sdk_yaml:
        for key in ("serviceTag", "protocol", "portRanges"):
            if value(dest, key) is None:        # the SDK's schema requires all three
                ctx.error("missing; az ml requires service_tag, protocol and port_ranges",
                          **fld(key))
                raise _Bad
    return kw


def _private_endpoint(raw: dict, dest: dict, ctx: _Ctx, fld, where: dict,
                      dline: int | None) -> dict[str, Any]:
    rid = value(dest, "serviceResourceId")
    if is_expression(rid):
        ctx.warn(f"service_resource_id {str(rid)!r} is a template expression: the endpoint's "
                 "names cannot be derived; add 'fqdns', or audit with the deployed network's "
                 "`show` output", **fld("serviceResourceId"))
    elif not isinstance(rid, str) or parse_resource_id(rid) is None:
        ctx.error(f"{rid!r} is not an Azure resource id (/subscriptions/<id>/resourceGroups/<rg>/"
                  "providers/<namespace>/<type>/<name>)", **fld("serviceResourceId"))
        raise _Bad
    sub = value(dest, "subresourceTarget")
    if not isinstance(sub, str) or not sub.strip() or is_expression(sub):
        ctx.error("missing" if sub is None else f"{sub!r} is not a subresource name",
                  **fld("subresourceTarget"))
        raise _Bad
    spark_hit = get(dest, "sparkEnabled")
    written = spark_hit[1] if spark_hit else None
    spark = False if written is None else _bool(written)
    if spark is None:
        ctx.error(f"{written!r} is not true or false", **fld("sparkEnabled"))
        raise _Bad
    if ctx.sdk_yaml and spark_hit is None:
        ctx.warn("no spark_enabled; az ml requires it (taken as false)", **fld("sparkEnabled"))
    fqdns = value(dest, "fqdns") or value(raw, "fqdns") or []
    if not isinstance(fqdns, list):
        ctx.error("fqdns must be a list of host names", line=dline, field="fqdns", **where)
        raise _Bad
    try:
        norm = tuple(normalise_pattern(str(x)) for x in fqdns)
    except PatternError as exc:
        ctx.error(str(exc), line=dline, field="fqdns", **where)
        raise _Bad from None
    return {"service_resource_id": str(rid).strip(), "subresource_target": sub.strip(),
            "spark_enabled": spark, "fqdns": norm}


# -- the rule list and the network ---------------------------------------------------------

def _entries(raw_rules: Any, ctx: _Ctx, mn: Any, key: str) -> list[tuple[str | None, Any, int | None]]:
    if raw_rules is None:
        return []
    if isinstance(raw_rules, dict):                       # ARM/REST: map keyed by rule name
        return [(str(name), body, line_of(raw_rules, name)) for name, body in raw_rules.items()]
    if isinstance(raw_rules, list):
        lines = getattr(raw_rules, "item_lines", None)
        out: list[tuple[str | None, Any, int | None]] = []
        for i, body in enumerate(raw_rules):
            line = lines[i] if lines else None
            name = value(body, "name") if isinstance(body, dict) else None
            if not isinstance(name, str) or not name.strip():
                ctx.error(f"outbound rule #{i + 1} has no name", line=line, field=f"{key}[{i}].name")
                continue
            out.append((name.strip(), body, line))
        return out
    ctx.error(f"{key} must be a list or a mapping", line=line_of(mn, key), field=key)
    return []


def _rules(entries: list[tuple[str | None, Any, int | None]], ctx: _Ctx) -> list[Rule]:
    out: list[Rule] = []
    seen: dict[str, int | None] = {}
    for pos, (name, body, line) in enumerate(entries, 1):
        name = name if name else f"#{pos}"
        if name.lower() in seen:
            first = seen[name.lower()]
            ctx.error("duplicate rule name" + (f" (first at line {first})" if first else ""),
                      line=line, rule=name, field="name")
            continue
        seen[name.lower()] = line
        try:
            out.append(_rule(body, name, line, ctx))
        except _Bad:
            continue
    return out


def _mode(mn: dict, found: Located, ctx: _Ctx) -> IsolationMode:
    hit = get(mn, "isolationMode")
    if hit is None or hit[1] is None:
        if found.mode_absent_reason:
            mode = IsolationMode.ALLOW_ONLY_APPROVED_OUTBOUND
            ctx.warn(f"no isolation mode in {found.mode_absent_reason}; assuming {mode.value}",
                     field="isolation_mode")
        else:
            mode = IsolationMode.DISABLED
            ctx.warn(f"no isolation_mode; assuming {mode.value} (the Azure default)",
                     field="isolation_mode")
        return mode
    try:
        return _enum(hit[1], _MODES, ctx, line=line_of(mn, hit[0]), field=hit[0])
    except _Bad:
        return IsolationMode.ALLOW_ONLY_APPROVED_OUTBOUND


def _kind(mn: dict, found: Located, ctx: _Ctx) -> str:
    hit = get(mn, "managedNetworkKind")
    if hit is not None and hit[1] is not None:
        try:
            return _enum(hit[1], {"v1": "V1", "v2": "V2"}, ctx, line=line_of(mn, hit[0]),
                         field=hit[0])
        except _Bad:
            pass
    # Azure creates new Foundry resources' networks as V2 (observed in Azure CLI's recorded
    # tests, 2026-04); workspaces and hubs are V1 unless the file says otherwise.
    return "V2" if found.resource == "foundry" else "V1"


def _network_info(mn: dict, kind: str, found: Located, ctx: _Ctx) -> tuple[tuple[str, str], ...]:
    for key in mn:
        if isinstance(key, str) and fold(key) not in _NETWORK_USED | set(_NETWORK_INFO):
            ctx.warn(f"unknown key {key!r} ignored", line=line_of(mn, key), field=key)
    info = [("resource", {"workspace": "Azure ML workspace / Foundry hub",
                          "foundry": "Foundry resource (Cognitive Services account)"}.get(
                              found.resource or "", "unknown"))]
    info += [(k, v) for k, v in _info(mn, _NETWORK_INFO) if k != "managed_network_kind"]
    stated = get(mn, "managedNetworkKind") is not None
    info.append(("managed_network_kind", kind + ("" if stated else " (not stated; the default)")))
    status = value(mn, "status")
    if isinstance(status, dict):
        info += [(f"network_{k}", v) for k, v in _info(status, {"status": "status",
                                                               "sparkready": "spark_ready"})]
    elif status is not None:
        info.append(("network_status", str(status)))
    return tuple(info)


def _location(top: dict, region: str | None, ctx: _Ctx) -> str | None:
    if region:
        return normalise_region(region)
    loc = top.get("location") if isinstance(top, dict) else None
    if isinstance(loc, str) and loc.strip() and not is_expression(loc):
        return normalise_region(loc)
    if loc is not None and (is_expression(loc) or isinstance(loc, str)):
        lang = "a Bicep" if ctx.found.dialect == "bicep" else "an ARM"
        ctx.warn(f"location is {lang} expression ({loc}); pass --region", field="location")
    return None


def parse(doc: Any, raw: bytes, fmt: str, path: str, *, region: str | None = None,
          strict: bool = True) -> tuple[Policy, list[Problem]]:
    """Normalise a parsed document. Returns the policy and every warning (and, when not
    strict, every error, with the bad rules left out)."""
    found = locate(doc, fmt, path)
    ctx = _Ctx(path, strict, found)
    mn = found.network
    if not isinstance(mn, dict):
        raise PolicyError(path, "managed network must be a mapping", line=line_of(mn),
                          field="managed_network")
    for note in found.notes:
        ctx.warn(note)
    mode = _mode(mn, found, ctx)
    kind = _kind(mn, found, ctx)
    rules_key, raw_rules = get(mn, "outboundRules") or ("outbound_rules", None)
    entries = _entries(raw_rules, ctx, mn, rules_key) + list(found.rules)
    file_rules = tuple(_rules(entries, ctx))
    top = found.top
    props = value(top, "properties")
    wsid = value(top, "workspace_id") or (value(props, "workspaceId") if isinstance(props, dict) else None)
    wsname = top.get("name") if isinstance(top, dict) else None
    authoritative = not found.user_written and any(r.category is Category.REQUIRED
                                                   for r in file_rules)
    policy = Policy(
        path=path, dialect=found.dialect, isolation_mode=mode, resource=found.resource,
        kind=kind, authoritative=authoritative, location=_location(top, region, ctx),
        workspace_name=wsname if isinstance(wsname, str) and not is_expression(wsname) else None,
        workspace_id=str(wsid) if wsid else None, file_rules=file_rules, sha256=sha256(raw),
        info=_network_info(mn, kind, found, ctx))
    if (found.resource is None and get(mn, "managedNetworkKind") is None
            and builtin.adds_required(policy, mode)):
        ctx.warn("cannot tell an Azure ML workspace / hub network (V1) from a Foundry "
                 "resource's (V2) in this file; adding the V1 required rules — state "
                 "managedNetworkKind to choose", field="managedNetworkKind")
    policy = policy.model_copy(update={
        "rules": builtin.effective_rules(policy),
        "warnings": tuple(p for p in ctx.problems if p.level == "warning")})
    return policy, ctx.problems


def load_policy(path: str | Path, *, region: str | None = None) -> Policy:
    """Read and normalise a policy file; PolicyError (one line) on anything invalid."""
    doc, raw, fmt = read_document(path)
    policy, _ = parse(doc, raw, fmt, str(path), region=region, strict=True)
    return policy


def load_policy_lenient(path: str | Path, *, region: str | None = None
                        ) -> tuple[Policy, list[Problem]]:
    """Like load_policy but reports every rule error instead of stopping at the first
    (for `policy check`); unreadable or unrecognisable files still raise PolicyError."""
    doc, raw, fmt = read_document(path)
    return parse(doc, raw, fmt, str(path), region=region, strict=False)
