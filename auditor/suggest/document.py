"""The suggestion as an Azure ML CLI v2 workspace YAML (ready for `az ml workspace update
--file`), with a comment on every added rule and what was left out, and a short summary.

Every name in these texts may come from the wire: the YAML writer (`policy.render`) quotes
scalars and strips control characters from comments; the summary goes through `printable`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from auditor import __version__
from auditor.policy.model import Category
from auditor.policy.render import emit, plain, rule_to_cli, to_cli_yaml
from auditor.suggest.plan import APPROVED, Suggestion
from auditor.terminal import printable

_READ_ONLY_MN = {"status", "network_id", "changeable_isolation_modes", "firewall_public_ip_address",
                 "provisioning_state", "spark_ready", "outbound_rules", "isolation_mode"}


def _current(sug: Suggestion) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]], list[str]]:
    """(top-level keys, other managed_network keys, current rules as mappings, notes)."""
    policy, raw = sug.policy, plain(sug.raw)
    notes: list[str] = []
    if policy.dialect == "cli_yaml" and isinstance(raw, dict):
        mn = raw.get("managed_network") if "managed_network" in raw else raw
        top: dict[str, Any] = raw if "managed_network" in raw else {}
        extra = {k: v for k, v in mn.items() if k not in _READ_ONLY_MN} if isinstance(mn, dict) else {}
        rules = mn.get("outbound_rules") if isinstance(mn, dict) else None
        if isinstance(rules, dict):     # tolerated by the loader; Azure wants a list
            rules = [{"name": k, **v} for k, v in rules.items()]
        return top, extra, list(rules or []), notes
    top = {"$schema": "https://azuremlschemas.azureedge.net/latest/workspace.schema.json"}
    if policy.workspace_name:
        top["name"] = policy.workspace_name
    if policy.location:
        top["location"] = policy.location
    rules = []
    for rule in policy.file_rules:
        if rule.category is Category.REQUIRED:
            notes.append(f"left out {rule.name}: a required rule, Azure adds it itself")
            continue
        rules.append(rule_to_cli(rule))
    return top, {}, rules, notes


def render(sug: Suggestion) -> str:
    """The suggested CLI v2 workspace YAML."""
    top, extra, current, notes = _current(sug)
    policy = sug.policy
    header = [
        f"Suggested by egress-auditor {__version__} `suggest` from {len(sug.captures)} capture(s): "
        f"{', '.join(Path(c).name for c in sug.captures)}",
        f"Current policy: {policy.path} ({policy.dialect}, {policy.isolation_mode.value}).",
        "Review it, fill in every <placeholder>, then apply (the switch to approved-only is one-way):",
        "  az ml workspace update --resource-group <resource-group> --name <workspace> --file THIS_FILE",
        f"FQDN rules: {sug.fqdn_total()} (each FQDN rule means the managed network runs Azure "
        "Firewall, billed to you)."]
    if "name" not in top:
        header.append("name: <workspace-name>   (not known from the current policy)")
    if "location" not in top:
        header.append("location: <region>   (not known from the current policy)")
    rules: list[tuple[list[str], dict[str, Any]]] = []
    for i, rule in enumerate(current):
        rules.append(([f"current rules ({len(current)}), as in {Path(policy.path).name}"] if i == 0
                      else [], rule))
    active = [r for r in sug.rules if r.active]
    for i, r in enumerate(active):
        head = [f"--- added by egress-auditor suggest: {len(active)} rule(s) ---"] if i == 0 else []
        n = sug.flows_of(r.covers)
        head.append(f"{n} denied flow(s)" + (f"; {r.why}" if r.why else ""))
        rules.append((head, rule_to_cli(r.rule)))
    for r in sug.rules:
        if not r.active:      # written as a comment: never applied by accident
            n = sug.flows_of(r.covers)
            rules.append(([f"{n} denied flow(s); {r.why}"]
                          + ["  " + line for line in emit([rule_to_cli(r.rule)])], {}))
    mode_note = ("" if policy.isolation_mode is APPROVED else
                 f"was {policy.isolation_mode.value}: this switch cannot be undone")
    return to_cli_yaml(top, {"isolation_mode": APPROVED.value, **extra}, rules,
                       header=header, trailer=trailer(sug, notes), mode_comment=mode_note)


def trailer(sug: Suggestion, notes: list[str] | tuple[str, ...] = ()) -> list[str]:
    out: list[str] = ["", "--- Not suggested: traffic that raised an exfiltration-risk finding ---"]
    if not sug.findings and not sug.suspicious:
        out.append("(none)")
    for det, key, sev in sug.findings:
        out.append(f"finding {det} ({sev}): {key}")
    for label, dets in sorted(sug.suspicious.items()):
        out.append(f"  not allowed: {label} [{sug.counts.get(label, 1)} flow(s)]: "
                   f"{', '.join(sorted(dets))}")
    if sug.breaks:
        out += ["", "--- Would still be denied after the switch ---"]
        for label, why in sorted(sug.breaks.items()):
            out.append(f"{label} [{sug.counts.get(label, 1)} flow(s)]: {why}")
    all_notes = list(notes) + list(sug.notes)
    if all_notes:
        out += ["", "--- Notes ---"] + all_notes
    return out


def summary(sug: Suggestion) -> str:
    c = sug.by_type()
    lines = [f"egress-auditor suggest: {sug.flows} egress flows; {sug.denied} denied as "
             f"{APPROVED.value} with the current rules",
             f"  rules added    {sum(c.values())}: {c['fqdn']} fqdn, {c['service_tag']} service_tag, "
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
        if not r.active:
            lines.append(f"  commented out: {r.name} ({getattr(r.rule, 'destination', '')}): "
                         f"{r.why.split(';')[0]}")
    for note in _current(sug)[3] + sug.notes:
        lines.append(f"  note: {note}")
    return "\n".join(printable(line) for line in lines) + "\n"
