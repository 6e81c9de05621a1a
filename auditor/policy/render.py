"""Writing a policy back out: the pair of the dialect parser in `azure.py`.

- `to_json` / `rule_to_json`: the effective rule set as `policy show --json` prints it.
- `rule_to_cli` / `to_cli_yaml`: Azure ML CLI v2 workspace YAML (`managed_network:`), the
  form `az ml workspace update --file` applies; comments can be attached to the whole file
  and to each rule (`suggest` explains every rule it adds).

YAML is written by hand, block style, two-space indent, strings quoted whenever a plain
scalar could be misread (`*.x`, `443`, `yes`, `<placeholder>` ...): PyYAML's dumper cannot
write comments. JSON string syntax is valid YAML double-quoted syntax, so `json.dumps` does
the quoting; a comment never carries a newline (or any control character) into the file.
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterable

from . import builtin
from .endpoints import rule_names
from .model import FqdnRule, Policy, PrivateEndpointRule, Rule, ServiceTagRule

_PLAIN = re.compile(r"^[A-Za-z_/$][A-Za-z0-9_./$-]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


# -- JSON (policy show --json) ----------------------------------------------------------------

def rule_to_json(rule: Rule, policy: Policy, built_in: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": rule.name, "type": rule.type.value,
                           "category": rule.category.value, "status": rule.status}
    if isinstance(rule, FqdnRule):
        out["destination"] = rule.destination
    elif isinstance(rule, ServiceTagRule):
        out["destination"] = {"service_tag": rule.service_tag, "protocol": rule.protocol.upper(),
                              "port_ranges": rule.ports_text(),
                              "address_prefixes": list(rule.address_prefixes),
                              "action": rule.action.capitalize()}
    elif isinstance(rule, PrivateEndpointRule):
        out["destination"] = {"service_resource_id": rule.service_resource_id,
                              "subresource_target": rule.subresource_target,
                              "spark_enabled": rule.spark_enabled,
                              "fqdns": list(rule_names(rule, region=policy.location,
                                                       workspace_id=policy.workspace_id))}
    out["built_in"] = built_in
    out["enforced"] = rule.enforced
    if rule.note:
        out["note"] = rule.note
    if rule.info:
        out["info"] = dict(rule.info)
    return out


def to_json(policy: Policy, include: tuple[str, ...] = ()) -> dict[str, Any]:
    """The effective rule set (file rules, required built-ins, `include` sets), built-ins marked,
    then the file's rules Azure does not enforce (status Deleting/Failed), marked so; with the
    informational fields of the network."""
    rules = builtin.effective_rules(policy, include=include)
    file_ids = frozenset(id(r) for r in policy.file_rules)
    idle = [r for r in policy.file_rules if not r.enforced]
    return {"isolation_mode": policy.isolation_mode.value, "location": policy.location,
            "dialect": policy.dialect, "resource": policy.resource, "kind": policy.kind,
            "authoritative": policy.authoritative,
            "required_added": builtin.adds_required(policy, policy.isolation_mode),
            "info": dict(policy.info),
            "rules": [rule_to_json(r, policy, id(r) not in file_ids) for r in (*rules, *idle)],
            "platform": {"dns_servers": list(builtin.DEFAULT_DNS_SERVERS),
                         "always_allowed": list(builtin.PLATFORM_IPS)},
            "notes": [builtin.SCENARIO_NOTES[n] for n in include if n in builtin.SCENARIO_NOTES]}


# -- CLI v2 YAML -----------------------------------------------------------------------------

def rule_to_cli(rule: Rule) -> dict[str, Any]:
    """A normalised rule (from any dialect) as a CLI v2 `outbound_rules` entry."""
    out: dict[str, Any] = {"name": rule.name, "type": rule.type.value}
    if isinstance(rule, FqdnRule):
        out["destination"] = rule.destination
    elif isinstance(rule, ServiceTagRule):
        dest: dict[str, Any] = {}
        if rule.service_tag:
            dest["service_tag"] = rule.service_tag
        dest["protocol"] = rule.protocol.upper()
        dest["port_ranges"] = rule.ports_text()
        if rule.address_prefixes:
            dest["address_prefixes"] = list(rule.address_prefixes)
        if rule.action == "deny":
            dest["action"] = "Deny"
        out["destination"] = dest
    else:
        out["destination"] = {"service_resource_id": rule.service_resource_id,
                              "subresource_target": rule.subresource_target,
                              "spark_enabled": rule.spark_enabled}
        if rule.fqdns:
            out["fqdns"] = list(rule.fqdns)
    return out


def to_cli_yaml(top: dict[str, Any], managed_network: dict[str, Any],
                rules: Iterable[tuple[list[str], dict[str, Any]]], *,
                header: Iterable[str] = (), trailer: Iterable[str] = (),
                mode_comment: str = "") -> str:
    """A workspace YAML: `header` comment lines, the `top` keys in order with
    `managed_network` in its place (its other keys, `isolation_mode` first, then
    `outbound_rules`, each rule preceded by its comment lines), then `trailer` comments."""
    mn = dict(managed_network)
    mode = mn.pop("isolation_mode", None)
    lines_mn: list[str] = []
    if mode is not None:
        lines_mn.append("  isolation_mode: " + scalar(mode)
                        + (f"   # {clean(mode_comment)}" if mode_comment else ""))
    lines_mn += emit(mn, 2) if mn else []
    body: list[str] = []
    for notes, rule in rules:
        body += [line for note in notes for line in comment(note, 4)]
        if rule:
            body += emit([rule], 4)
    lines_mn.append("  outbound_rules:" if body else "  outbound_rules: []")
    lines_mn += body
    out = [line for h in header for line in comment(h)]
    placed = False
    for key, value in top.items():
        if key == "managed_network":
            out += ["managed_network:"] + lines_mn
            placed = True
        else:
            out += _entry(scalar(key) + ":", value, 0)
    if not placed:
        out += ["managed_network:"] + lines_mn
    out += [line for t in trailer for line in (comment(t) if t else [""])]
    return "\n".join(out) + "\n"


def clean(text: str) -> str:
    """A comment-safe line: control characters (incl. CR, LF, ESC) shown as `\\xNN`."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def comment(text: str, indent: int = 0) -> list[str]:
    """`# text`, one line per input line; each line is cleaned of control characters."""
    pad = " " * indent
    return [(pad + "# " + clean(line)).rstrip() for line in text.split("\n")]


def scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _RESERVED and not text.endswith(":"):
        return text
    return json.dumps(text, ensure_ascii=True)


def emit(value: Any, indent: int = 0) -> list[str]:
    """Lines for a mapping or sequence (block style) at `indent` spaces."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        if not value:
            return [pad + "{}"]
        for k, v in value.items():
            lines += _entry(pad + scalar(k) + ":", v, indent)
    elif isinstance(value, list):
        if not value:
            return [pad + "[]"]
        for item in value:
            if isinstance(item, dict) and item:
                sub = emit(item, indent + 2)
                lines.append(pad + "- " + sub[0][indent + 2:])
                lines += sub[1:]
            elif isinstance(item, list) and item:
                lines.append(pad + "-")
                lines += emit(item, indent + 2)
            else:
                lines.append(pad + "- " + _inline(item))
    else:
        lines.append(pad + _inline(value))
    return lines


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return scalar(value)


def _entry(head: str, value: Any, indent: int) -> list[str]:
    if isinstance(value, (dict, list)) and value:
        return [head] + emit(value, indent + 2)
    return [f"{head} {_inline(value)}"]


def plain(obj: Any) -> Any:
    """LineDict/LineList and other subclasses -> plain dicts and lists."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj
