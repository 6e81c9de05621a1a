"""Writing the `suggest` result as Azure ML CLI v2 workspace YAML, comments included.

Written by hand (PyYAML's dumper drops comments and would reorder nothing we care about
anyway): block style, two-space indent, strings quoted whenever a plain scalar could be
misread (`*.x`, `443`, `yes`, `<placeholder>` ...). JSON string syntax is valid YAML double-quoted
syntax, so `json.dumps` does the quoting.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable

APPROVED = "allow_only_approved_outbound"

_PLAIN = re.compile(r"^[A-Za-z_/$][A-Za-z0-9_./$-]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


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
    return json.dumps(text, ensure_ascii=False)


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


def comment(text: str, indent: int = 0) -> list[str]:
    """`# text`, one line per input line (a comment never carries a newline into YAML)."""
    pad = " " * indent
    return [(pad + "# " + line).rstrip() for line in text.splitlines() or [""]]


def plain(obj: Any) -> Any:
    """LineDict/LineList and other subclasses -> plain dicts and lists."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def document(top: dict[str, Any], managed_network_lines: Iterable[str], header: Iterable[str],
             trailer: Iterable[str]) -> str:
    """The workspace YAML: header comments, `top` keys in order with `managed_network` (given
    as ready lines) in its place, then trailing comments."""
    out = list(header)
    placed = False
    for key, value in top.items():
        if key == "managed_network":
            out.append("managed_network:")
            out += managed_network_lines
            placed = True
        else:
            out += _entry(scalar(key) + ":", value, 0)
    if not placed:
        out.append("managed_network:")
        out += managed_network_lines
    out += list(trailer)
    return "\n".join(out) + "\n"


# -- the suggestion as a workspace file, and as a summary ------------------------------------

_READ_ONLY_MN = {"status", "network_id", "changeable_isolation_modes", "firewall_public_ip_address",
                 "provisioning_state", "spark_ready", "outbound_rules", "isolation_mode"}


def rule_mapping(rule) -> dict[str, Any]:
    """A normalised rule (any dialect) in CLI v2 YAML form."""
    from auditor.policy.model import FqdnRule, ServiceTagRule
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


def _current(sug) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]], list[str]]:
    """(top-level keys, other managed_network keys, current rules as mappings, notes)."""
    from auditor.policy.model import Category
    policy, raw = sug.policy, plain(sug.raw)
    notes: list[str] = []
    if policy.dialect == "cli_yaml" and isinstance(raw, dict):
        mn = raw.get("managed_network") if "managed_network" in raw else raw
        top = raw if "managed_network" in raw else {}
        extra = {k: v for k, v in mn.items() if k not in _READ_ONLY_MN} if isinstance(mn, dict) else {}
        rules = mn.get("outbound_rules") if isinstance(mn, dict) else None
        if isinstance(rules, dict):     # tolerated by the loader; Azure wants a list
            rules = [{"name": k, **v} for k, v in rules.items()]
        return top, extra, list(rules or []), notes
    top: dict[str, Any] = {"$schema": "https://azuremlschemas.azureedge.net/latest/workspace.schema.json"}
    if policy.workspace_name:
        top["name"] = policy.workspace_name
    if policy.location:
        top["location"] = policy.location
    rules = []
    for rule in policy.file_rules:
        if rule.category is Category.REQUIRED:
            notes.append(f"left out {rule.name}: a required rule, Azure adds it itself")
            continue
        rules.append(rule_mapping(rule))
    return top, {}, rules, notes


def render(sug) -> str:
    """The suggested CLI v2 workspace YAML."""
    from auditor import __version__
    top, extra, current, notes = _current(sug)
    policy = sug.policy
    header = comment(
        f"Suggested by egress-auditor {__version__} `suggest` from {len(sug.captures)} capture(s): "
        f"{', '.join(Path(c).name for c in sug.captures)}\n"
        f"Current policy: {policy.path} ({policy.dialect}, {policy.isolation_mode.value}).\n"
        "Review it, fill in every <placeholder>, then apply (the switch to approved-only is one-way):\n"
        "  az ml workspace update --resource-group <resource-group> --name <workspace> --file THIS_FILE\n"
        f"FQDN rules: {sug.fqdn_total()} (each FQDN rule means the managed network runs Azure "
        "Firewall, billed to you).")
    if "name" not in top:
        header += comment("name: <workspace-name>   (not known from the current policy)")
    if "location" not in top:
        header += comment("location: <region>   (not known from the current policy)")
    mn = ["  isolation_mode: " + APPROVED
          + ("" if policy.isolation_mode.value == APPROVED else
             f"   # was {policy.isolation_mode.value}: this switch cannot be undone")]
    mn += emit(extra, 2) if extra else []
    if not current and not sug.rules:
        mn.append("  outbound_rules: []")
    else:
        mn.append("  outbound_rules:")
        if current:
            mn += comment(f"current rules ({len(current)}), as in {Path(policy.path).name}", 4)
            mn += emit(current, 4)
        if sug.rules:
            mn += comment(f"--- added by egress-auditor suggest: {len(sug.rules)} rule(s) ---", 4)
            for r in sug.rules:
                n = sug.flows_of(r.covers)
                mn += comment(f"{n} denied flow(s)" + (f"; {r.why}" if r.why else ""), 4)
                mn += emit([{"name": r.name, "type": r.type, "destination": r.destination}], 4)
    return document(top, mn, header, trailer(sug, notes))


def trailer(sug, notes: list[str] = ()) -> list[str]:
    out: list[str] = [""]
    out += comment("--- Not suggested: traffic that raised an exfiltration-risk finding ---")
    if not sug.findings and not sug.suspicious:
        out += comment("(none)")
    for det, key, sev in sug.findings:
        out += comment(f"finding {det} ({sev}): {key}")
    for label, dets in sorted(sug.suspicious.items()):
        out += comment(f"  not allowed: {label} [{sug.counts.get(label, 1)} flow(s)]: "
                       f"{', '.join(sorted(dets))}")
    if sug.breaks:
        out += [""] + comment("--- Would still be denied after the switch ---")
        for label, why in sorted(sug.breaks.items()):
            out += comment(f"{label} [{sug.counts.get(label, 1)} flow(s)]: {why}")
    all_notes = list(notes) + list(sug.notes)
    if all_notes:
        out += [""] + comment("--- Notes ---")
        for note in all_notes:
            out += comment(note)
    return out


def suggested_policy(sug):
    """The rendered suggestion loaded back through the policy engine (CLI v2 dialect)."""
    from auditor.policy.azure import parse
    from auditor.policy.loader import read_document
    import tempfile
    text = render(sug)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write(text)
    try:
        doc, raw, fmt = read_document(fh.name)
        policy, _ = parse(doc, raw, fmt, "suggested.yaml", region=sug.policy.location)
    finally:
        Path(fh.name).unlink(missing_ok=True)
    return policy


def summary(sug) -> str:
    c = sug.by_type()
    lines = [f"egress-auditor suggest: {sug.flows} egress flows; {sug.denied} denied as "
             f"{APPROVED} with the current rules",
             f"  rules added    {len(sug.rules)}: {c['fqdn']} fqdn, {c['service_tag']} service_tag, "
             f"{c['private_endpoint']} private_endpoint (current rules kept: {len(sug.policy.file_rules)})",
             f"  FQDN rules     {sug.fqdn_total()} in total: each one means Azure Firewall in the managed "
             "network, billed to you"]
    if c["private_endpoint"]:
        lines.append("  private endpoints: fill in <subscription-id> and <resource-group> before applying")
    lines.append(f"  would break    {len(sug.breaks)} destination(s)")
    for label, why in sorted(sug.breaks.items()):
        lines.append(f"    {label}: {why}")
    lines.append(f"  left out      {len(sug.suspicious)} destination(s) that raised a finding "
                 f"({len(sug.findings)} finding(s))")
    for label, dets in sorted(sug.suspicious.items()):
        lines.append(f"    {label}: {', '.join(sorted(dets))}")
    for det, key, sev in sug.findings:
        lines.append(f"    finding {det} ({sev}): {key}")
    for r in sug.rules:
        if r.why.startswith("REVIEW"):
            lines.append(f"  review: {r.name} ({r.destination}): {r.why.split(';')[0][8:]}")
    for note in _current(sug)[3] + sug.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines) + "\n"
