"""The three Azure dialects, auto-detected, normalised into one `Policy`.

1. CLI v2 workspace YAML (`managed_network:` or just that mapping), snake_case.
2. `az ml workspace show` / `outbound-rule list` JSON: snake_case keys, enum values in
   PascalCase or snake_case, read-only `category`/`status`.
3. ARM/Bicep `properties.managedNetwork` (also inside a template's `resources[]`): camelCase,
   `outboundRules` a map keyed by rule name, PascalCase enums.
Keys are folded to snake_case and enum values to snake_case before validation, so one code
path checks all three. Unknown keys are warnings; invalid values are errors naming the file,
the line (YAML), the rule and the field.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from . import builtin
from .endpoints import parse_resource_id
from .loader import LineDict, read_document, sha256
from .match import PatternError, normalise_pattern
from .model import (Category, FqdnRule, IsolationMode, Policy, PolicyError, PortRange,
                    PrivateEndpointRule, Problem, Rule, RuleType, ServiceTagRule)
from .servicetags import normalise_region, parse_prefix

_MN_KEYS = {"isolation_mode", "outbound_rules", "firewall_sku", "network_id", "status",
            "managed_network_kind", "changeable_isolation_modes", "firewall_public_ip_address",
            "provisioning_state", "enable_network_monitor", "spark_ready"}
_RULE_KEYS = {"name", "type", "destination", "category", "status", "fqdns",
              "error_information", "parent_rule_names", "id"}
_ST_KEYS = {"service_tag", "protocol", "port_ranges", "address_prefixes", "action"}
_PE_KEYS = {"service_resource_id", "subresource_target", "spark_enabled", "spark_status", "fqdns"}
_PROTOCOLS = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "*": "*", "any": "*", "all": "*"}


def snake(text: str) -> str:
    """`serviceResourceId` -> `service_resource_id`, `AllowOnlyApprovedOutbound` -> `allow_only_...`."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", text).lower()


def _line(obj: Any, key: str | None = None) -> int | None:
    if isinstance(obj, LineDict):
        return obj.line_of(key) if key else obj.line
    return getattr(obj, "line", None)


class _Ctx:
    """Collects problems; in strict mode the first error is raised as PolicyError."""

    def __init__(self, file: str, strict: bool) -> None:
        self.file, self.strict = file, strict
        self.problems: list[Problem] = []

    def error(self, reason: str, *, line=None, rule=None, field=None) -> None:
        if self.strict:
            raise PolicyError(self.file, reason, line=line, rule=rule, field=field)
        self.problems.append(Problem(level="error", file=self.file, reason=reason, line=line,
                                     rule=rule, field=field))

    def warn(self, reason: str, *, line=None, rule=None, field=None) -> None:
        self.problems.append(Problem(level="warning", file=self.file, reason=reason, line=line,
                                     rule=rule, field=field))


class _Bad(Exception):
    """One rule is unusable; already reported."""


def _folded(obj: LineDict | dict) -> dict[str, tuple[str, Any]]:
    """snake_case key -> (original key, value)."""
    return {snake(k): (k, v) for k, v in obj.items()}


def _locate(doc: Any, fmt: str, ctx: _Ctx) -> tuple[str, Any, dict]:
    """(dialect, managed network mapping, the workspace object holding location/name)."""
    if isinstance(doc, list):                               # `az ml workspace outbound-rule list`
        return "az_json", {"outbound_rules": doc, "__implicit_mode": True}, {}
    if not isinstance(doc, dict):
        raise PolicyError(ctx.file, "not an Azure managed network policy (expected a mapping)")
    snake_dialect = "cli_yaml" if fmt == "yaml" else "az_json"
    if "managed_network" in doc:
        return snake_dialect, doc["managed_network"], doc
    if isinstance(doc.get("resources"), list):
        for res in doc["resources"]:
            if (isinstance(res, dict) and str(res.get("type", "")).lower()
                    == "microsoft.machinelearningservices/workspaces"):
                props = res.get("properties")
                if isinstance(props, dict) and "managedNetwork" in props:
                    return "arm", props["managedNetwork"], res
        raise PolicyError(ctx.file, "ARM template has no Microsoft.MachineLearningServices/"
                                    "workspaces resource with properties.managedNetwork")
    props = doc.get("properties")
    if isinstance(props, dict) and "managedNetwork" in props:
        return "arm", props["managedNetwork"], doc
    if "managedNetwork" in doc:
        return "arm", doc["managedNetwork"], doc
    if "isolation_mode" in doc or "outbound_rules" in doc:
        return snake_dialect, doc, {}
    if "isolationMode" in doc or "outboundRules" in doc:
        return "arm", doc, {}
    raise PolicyError(ctx.file, "not an Azure managed network policy: no managed_network, "
                                "properties.managedNetwork, isolation_mode or outbound_rules")


def _enum(value: Any, allowed: set[str], ctx: _Ctx, **where) -> str:
    if isinstance(value, str) and snake(value.strip()) in allowed:
        return snake(value.strip())
    shown = "missing" if value is None else f"{value!r} is not valid"
    ctx.error(f"{shown}; expected one of {', '.join(sorted(allowed))}", **where)
    raise _Bad


def parse_port_ranges(value: Any) -> tuple[PortRange, ...]:
    """"80, 8080-8089" / 443 / ["80", "443"] / "*" -> ranges (() = any). ValueError names the part."""
    parts = value if isinstance(value, list) else [value]
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


def _rule(raw: Any, name: str, line: int | None, ctx: _Ctx) -> Rule:
    where = {"rule": name}
    if not isinstance(raw, dict):
        ctx.error("rule must be a mapping", line=line, **where)
        raise _Bad
    f = _folded(raw)
    for key, (orig, _) in f.items():
        if key not in _RULE_KEYS:
            ctx.warn(f"unknown key {orig!r} ignored", line=_line(raw, orig), field=orig, **where)
    rtype = _enum(f.get("type", (None, None))[1], {t.value for t in RuleType}, ctx,
                  line=_line(raw, f.get("type", ("type",))[0]), field="type", **where)
    common: dict[str, Any] = {"name": name, "line": line}
    if "category" in f and f["category"][1] is not None:
        common["category"] = Category(_enum(f["category"][1], {c.value for c in Category}, ctx,
                                            line=_line(raw, f["category"][0]), field="category",
                                            **where))
    if "status" in f and f["status"][1] is not None:
        status = _enum(f["status"][1], {"active", "inactive"}, ctx,
                       line=_line(raw, f["status"][0]), field="status", **where)
        common["status"] = status.capitalize()
    dest_key, dest = f.get("destination", ("destination", None))
    dline = _line(raw, dest_key)
    if rtype == "fqdn":
        if not isinstance(dest, str):
            ctx.error("FQDN rule destination must be a host name string", line=dline,
                      field="destination", **where)
            raise _Bad
        try:
            return FqdnRule(destination=normalise_pattern(dest), **common)
        except PatternError as exc:
            ctx.error(str(exc), line=dline, field="destination", **where)
            raise _Bad from None
    if not isinstance(dest, dict):
        ctx.error(f"{rtype} rule destination must be a mapping", line=dline or line,
                  field="destination", **where)
        raise _Bad
    d = _folded(dest)
    known = _ST_KEYS if rtype == "service_tag" else _PE_KEYS
    for key, (orig, _) in d.items():
        if key not in known:
            ctx.warn(f"unknown key {orig!r} ignored", line=_line(dest, orig),
                     field=f"destination.{orig}", **where)

    def fld(key: str) -> dict:
        orig = d.get(key, (key,))[0]
        return {"line": _line(dest, orig), "field": f"destination.{orig}", **where}

    if rtype == "service_tag":
        kw: dict[str, Any] = {}
        tag = d.get("service_tag", (None, None))[1]
        if tag is not None and not (isinstance(tag, str) and tag.strip()):
            ctx.error(f"{tag!r} is not a service tag name", **fld("service_tag")); raise _Bad
        kw["service_tag"] = tag.strip() if tag else None
        proto = d.get("protocol", (None, "*"))[1]
        if str(proto).strip().lower() not in _PROTOCOLS:
            ctx.error(f"{proto!r} is not a protocol (TCP, UDP, ICMP or *)", **fld("protocol"))
            raise _Bad
        kw["protocol"] = _PROTOCOLS[str(proto).strip().lower()]
        ports = d.get("port_ranges", (None, "*"))[1]
        try:
            kw["port_ranges"] = () if ports is None else parse_port_ranges(ports)
        except ValueError as exc:
            ctx.error(str(exc), **fld("port_ranges")); raise _Bad from None
        prefixes = d.get("address_prefixes", (None, None))[1] or []
        if not isinstance(prefixes, list):
            prefixes = [prefixes]
        for p in prefixes:
            try:
                parse_prefix(str(p))
            except ValueError as exc:
                ctx.error(str(exc), **fld("address_prefixes")); raise _Bad from None
        kw["address_prefixes"] = tuple(str(p).strip() for p in prefixes)
        if not kw["service_tag"] and not kw["address_prefixes"]:
            ctx.error("needs service_tag or address_prefixes", **fld("service_tag")); raise _Bad
        if "action" in d and d["action"][1] is not None:
            kw["action"] = _enum(d["action"][1], {"allow", "deny"}, ctx, **fld("action"))
        return ServiceTagRule(**kw, **common)

    rid = d.get("service_resource_id", (None, None))[1]
    if not isinstance(rid, str) or parse_resource_id(rid) is None:
        ctx.error(f"{rid!r} is not an Azure resource id (/subscriptions/<id>/resourceGroups/<rg>/"
                  "providers/<namespace>/<type>/<name>)", **fld("service_resource_id"))
        raise _Bad
    sub = d.get("subresource_target", (None, None))[1]
    if not isinstance(sub, str) or not sub.strip():
        ctx.error(f"{sub!r} is not a subresource name", **fld("subresource_target")); raise _Bad
    spark = d.get("spark_enabled", (None, False))[1]
    if not isinstance(spark, bool) and spark is not None:
        ctx.error(f"{spark!r} is not true or false", **fld("spark_enabled")); raise _Bad
    fqdn_src = d.get("fqdns") or f.get("fqdns") or (None, None)
    fqdns = fqdn_src[1] or []
    if not isinstance(fqdns, list):
        ctx.error("fqdns must be a list of host names", line=dline, field="fqdns", **where)
        raise _Bad
    try:
        norm = tuple(normalise_pattern(str(x)) for x in fqdns)
    except PatternError as exc:
        ctx.error(str(exc), line=dline, field="fqdns", **where); raise _Bad from None
    return PrivateEndpointRule(service_resource_id=rid.strip(), subresource_target=sub.strip(),
                               spark_enabled=bool(spark), fqdns=norm, **common)


def _rules(raw_rules: Any, ctx: _Ctx, mn: Any, key: str) -> list[Rule]:
    entries: list[tuple[str, Any, int | None]] = []
    if raw_rules is None:
        return []
    if isinstance(raw_rules, dict):                       # ARM: map keyed by rule name
        for name, body in raw_rules.items():
            entries.append((str(name), body, _line(raw_rules, name)))
    elif isinstance(raw_rules, list):
        for i, body in enumerate(raw_rules):
            line = raw_rules.item_lines[i] if hasattr(raw_rules, "item_lines") else None
            name = body.get("name") if isinstance(body, dict) else None
            if not isinstance(name, str) or not name.strip():
                ctx.error(f"outbound rule #{i + 1} has no name", line=line,
                          field=f"{key}[{i}].name")
                continue
            entries.append((name.strip(), body, line))
    else:
        ctx.error(f"{key} must be a list or a mapping", line=_line(mn, key), field=key)
        return []
    out: list[Rule] = []
    seen: dict[str, int | None] = {}
    for name, body, line in entries:
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


def parse(doc: Any, raw: bytes, fmt: str, path: str, *, region: str | None = None,
          strict: bool = True) -> tuple[Policy, list[Problem]]:
    """Normalise a parsed document. Returns the policy and every warning (and, when not
    strict, every error, with the bad rules left out)."""
    ctx = _Ctx(path, strict)
    dialect, mn, top = _locate(doc, fmt, ctx)
    if not isinstance(mn, dict):
        raise PolicyError(path, "managed network must be a mapping", line=_line(mn),
                          field="managed_network")
    implicit = mn.pop("__implicit_mode", False) if isinstance(mn, dict) else False
    f = _folded(mn)
    for key, (orig, _) in f.items():
        if key not in _MN_KEYS:
            ctx.warn(f"unknown key {orig!r} ignored", line=_line(mn, orig), field=orig)
    mode_raw = f.get("isolation_mode", (None, None))[1]
    if mode_raw is None:
        mode = (IsolationMode.ALLOW_ONLY_APPROVED_OUTBOUND if implicit
                else IsolationMode.DISABLED)
        ctx.warn(f"no isolation_mode; assuming {mode.value}"
                 + ("" if implicit else " (the Azure default)"), field="isolation_mode")
    else:
        try:
            mode = IsolationMode(_enum(mode_raw, {m.value for m in IsolationMode}, ctx,
                                       line=_line(mn, f["isolation_mode"][0]),
                                       field="isolation_mode"))
        except _Bad:
            mode = IsolationMode.ALLOW_ONLY_APPROVED_OUTBOUND
    rules_key, raw_rules = f.get("outbound_rules", ("outbound_rules", None))
    file_rules = tuple(_rules(raw_rules, ctx, mn, rules_key))

    location = None
    loc = top.get("location") if isinstance(top, dict) else None
    if isinstance(loc, str) and loc.strip() and not loc.strip().startswith("["):
        location = normalise_region(loc)
    elif isinstance(loc, str) and loc.strip().startswith("["):
        ctx.warn(f"location is an ARM expression ({loc}); pass --region", field="location")
    if region:
        location = normalise_region(region)
    props = top.get("properties") if isinstance(top, dict) else None
    wsid = (top.get("workspace_id") if isinstance(top, dict) else None) or \
        (props.get("workspaceId") if isinstance(props, dict) else None)
    wsname = top.get("name") if isinstance(top, dict) else None
    policy = Policy(
        path=path, dialect=dialect, isolation_mode=mode, location=location,
        workspace_name=wsname if isinstance(wsname, str) and not wsname.startswith("[") else None,
        workspace_id=str(wsid) if wsid else None, file_rules=file_rules,
        rules=builtin.effective_rules(file_rules, mode, location), sha256=sha256(raw),
        warnings=tuple(p for p in ctx.problems if p.level == "warning"))
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
