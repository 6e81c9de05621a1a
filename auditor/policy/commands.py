"""The `policy check|explain|show` subcommands. Argument parsing and printing only.

`add_arguments(subparsers)` registers them on the lead's `egress-auditor policy` parser;
`main(argv)` builds a stand-alone `policy` parser (tests, `python -m auditor.policy.commands`).
Every handler returns an exit code: 0 ok, 1 bad input or lint errors. Bad input is one line
on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys

from . import builtin
from .azure import load_policy
from .endpoints import derive_fqdns, privatelink_forms
from .lint import check
from .model import FqdnRule, Policy, PolicyError, PrivateEndpointRule, ServiceTagRule
from .servicetags import ServiceTags, parse_address
from .verdict import Judge


def _common(p: argparse.ArgumentParser, tags: bool = True) -> None:
    p.add_argument("policy", metavar="F", help="policy file (any of the three Azure dialects)")
    if tags:
        p.add_argument("--service-tags", metavar="F", default=None,
                       help="ServiceTags_*.json (default: the bundled file)")
    p.add_argument("--region", default=None, help="region for Tag.Region (default: location)")
    p.add_argument("--include", action="append", default=[], metavar="SET",
                   choices=sorted(builtin.SCENARIOS),
                   help="add a built-in scenario rule set (repeatable)")


def add_arguments(subparsers) -> None:
    """Register check, explain and show on an argparse subparsers object."""
    p = subparsers.add_parser("check", help="validate and lint a policy")
    _common(p)
    p.set_defaults(func=_guard(cmd_check))

    p = subparsers.add_parser("explain", help="which rule allows DEST, or why nothing does")
    _common(p)
    p.add_argument("dest", metavar="DEST", help="host name (as SNI/Host) or IP address")
    p.add_argument("--port", type=int, default=443)
    p.add_argument("--proto", choices=("tcp", "udp"), default="tcp")
    p.add_argument("--as-mode", default=None,
                   choices=("disabled", "allow_internet_outbound", "allow_only_approved_outbound"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guard(cmd_explain))

    p = subparsers.add_parser("show", help="the effective rule set, built-ins marked")
    _common(p, tags=False)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guard(cmd_show))


def _tags(args, policy: Policy | None = None) -> ServiceTags:
    region = args.region or (policy.location if policy else None)
    return ServiceTags.load(args.service_tags, region=region)


def _warn(policy: Policy) -> None:
    for w in policy.warnings:
        print(str(w), file=sys.stderr)


def cmd_check(args) -> int:
    from .azure import load_policy_lenient
    policy, _ = load_policy_lenient(args.policy, region=args.region)
    problems = check(args.policy, _tags(args, policy), region=args.region,
                     include=tuple(args.include))
    for p in problems:
        print(str(p))
    errors = sum(p.level == "error" for p in problems)
    warnings = len(problems) - errors
    print(f"{args.policy}: {len(policy.file_rules)} rules, {errors} error(s), "
          f"{warnings} warning(s)", file=sys.stderr)
    return 1 if errors else 0


def cmd_explain(args) -> int:
    if not 0 <= args.port <= 65535:
        raise PolicyError(args.policy, f"--port {args.port} is not a port")
    policy = load_policy(args.policy, region=args.region)
    _warn(policy)
    judge = Judge(policy, _tags(args, policy), include=tuple(args.include), as_mode=args.as_mode)
    dest = args.dest.strip()
    if parse_address(dest) is not None:
        verdict = judge.judge(dest, args.port, args.proto, None, "none")
    else:
        source = {("tcp", 443): "sni", ("tcp", 80): "http_host",
                  ("udp", 443): "quic_sni"}.get((args.proto, args.port), "sni")
        # A name with no IP: taken as the SNI/Host, and as resolved by DNS (for private endpoints).
        verdict = judge.judge("", args.port, args.proto, dest, source, (dest,))
    out = {"verdict": "allowed" if verdict.allowed else "denied", "reason": verdict.reason,
           "rule": verdict.rule, "rule_type": verdict.rule_type,
           "service_tag": verdict.service_tag, "private_endpoint": verdict.private_endpoint,
           "destination": dest, "port": args.port, "proto": args.proto}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    via = f" by rule {verdict.rule!r} ({verdict.rule_type})" if verdict.rule else ""
    extra = f", service tag {verdict.service_tag}" if verdict.service_tag else ""
    print(f"{out['verdict'].upper()}: {dest} {args.proto}/{args.port}: {verdict.reason}{via}{extra}")
    print(f"  {_EXPLAIN[verdict.reason]}")
    return 0


_EXPLAIN = {
    "platform": "Azure platform endpoint (DNS, wire server 168.63.129.16, IMDS): always allowed.",
    "isolation_disabled": "isolation_mode is disabled: outbound traffic is not restricted.",
    "private_endpoint": "the name resolves to a private endpoint of the managed network.",
    "internet_outbound": "allow_internet_outbound: all internet outbound traffic is allowed.",
    "service_tag_deny": "a service-tag rule with action Deny matches this address and port.",
    "service_tag": "the address is in a service tag (or address prefix) an outbound rule allows.",
    "fqdn": "an FQDN outbound rule matches the TLS SNI / HTTP Host.",
    "fqdn_needs_sni_or_host": "a rule matches the name only through DNS; Azure Firewall needs "
                              "the TLS SNI (443) or HTTP Host (80) to match.",
    "fqdn_port_not_supported": "FQDN rules only apply to TCP 80 and 443 (not QUIC/UDP, not "
                               "other ports).",
    "storage_requires_private_endpoint": "Azure Storage cannot be reached through FQDN rules in "
                                         "approved-only mode; add a private endpoint rule.",
    "no_matching_rule": "no outbound rule allows it.",
}


def rule_json(rule, policy: Policy, file_ids: frozenset = frozenset()) -> dict:
    out = {"name": rule.name, "type": rule.type.value, "category": rule.category.value,
           "status": rule.status}
    if isinstance(rule, FqdnRule):
        out["destination"] = rule.destination
    elif isinstance(rule, ServiceTagRule):
        out["destination"] = {"service_tag": rule.service_tag, "protocol": rule.protocol.upper(),
                              "port_ranges": rule.ports_text(),
                              "address_prefixes": list(rule.address_prefixes),
                              "action": rule.action.capitalize()}
    elif isinstance(rule, PrivateEndpointRule):
        derived = derive_fqdns(rule.service_resource_id, rule.subresource_target,
                               region=policy.location, workspace_id=policy.workspace_id)
        explicit = [n for f in rule.fqdns for n in (privatelink_forms(f) if "*" not in f else (f,))]
        out["destination"] = {"service_resource_id": rule.service_resource_id,
                              "subresource_target": rule.subresource_target,
                              "spark_enabled": rule.spark_enabled,
                              "fqdns": list(dict.fromkeys(explicit + list(derived)))}
    out["built_in"] = id(rule) not in file_ids
    if rule.note:
        out["note"] = rule.note
    return out


def show_json(policy: Policy, include: tuple[str, ...] = ()) -> dict:
    rules = builtin.effective_rules(policy.file_rules, policy.isolation_mode, policy.location,
                                    include)
    file_ids = frozenset(id(r) for r in policy.file_rules)
    return {"isolation_mode": policy.isolation_mode.value, "location": policy.location,
            "rules": [rule_json(r, policy, file_ids) for r in rules],
            "platform": {"dns_servers": list(builtin.DEFAULT_DNS_SERVERS),
                         "always_allowed": list(builtin.PLATFORM_IPS)},
            "notes": [builtin.SCENARIO_NOTES[n] for n in include if n in builtin.SCENARIO_NOTES]}


def cmd_show(args) -> int:
    policy = load_policy(args.policy, region=args.region)
    _warn(policy)
    data = show_json(policy, tuple(args.include))
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=False))
        return 0
    print(f"isolation_mode: {data['isolation_mode']}   location: {data['location'] or '-'}")
    print(f"{'NAME':40} {'TYPE':16} {'CATEGORY':12} {'STATUS':8} DESTINATION")
    for r in data["rules"]:
        d = r["destination"]
        if isinstance(d, dict) and "service_tag" in d:
            text = (f"{d['service_tag'] or ','.join(d['address_prefixes'])} "
                    f"{d['protocol']}/{d['port_ranges']}" + (" DENY" if d["action"] == "Deny" else ""))
        elif isinstance(d, dict):
            text = f"{d['service_resource_id'].rsplit('/', 1)[-1]}/{d['subresource_target']}"
        else:
            text = d
        mark = "*" if r["built_in"] else " "
        print(f"{mark}{r['name'][:39]:39} {r['type']:16} {r['category']:12} "
              f"{r['status'] or '-':8} {text}")
    print("(* = built in; always allowed: DNS to the dns_servers (default "
          f"{', '.join(builtin.DEFAULT_DNS_SERVERS)}) and any traffic to "
          f"{' and '.join(builtin.PLATFORM_IPS)})")
    for note in data["notes"]:
        print(f"note: {note}")
    return 0


def _guard(handler):
    """Wrap a handler so PolicyError becomes one line on stderr and exit code 1."""
    def run(args) -> int:
        try:
            return handler(args)
        except PolicyError as exc:
            print(str(exc), file=sys.stderr)
            return 1
        except BrokenPipeError:        # `... | head`: the reader left, nothing to report
            import os
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    run.__name__ = handler.__name__
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="egress-auditor policy",
                                     description="Inspect an Azure managed-network policy.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_arguments(sub)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:          # argparse already printed usage
        return int(exc.code or 0) and 1
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
