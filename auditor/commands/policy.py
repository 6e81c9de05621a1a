"""`egress-auditor policy check|explain|show`: argument parsing and printing only; the
answers come from `auditor.policy`.

Every handler returns an exit code: 0 ok, 1 lint errors (bad input raises PolicyError, which
`cli.main` prints as one line), 3 for `explain --exit-code` when the destination is denied.
"""
from __future__ import annotations

import argparse
import json
import sys

from auditor.errors import EXIT_FAIL_ON, PolicyError
from auditor.policy import builtin, render
from auditor.policy.azure import load_policy, load_policy_lenient
from auditor.policy.lint import lint
from auditor.policy.model import Policy
from auditor.policy.servicetags import ServiceTags, parse_address
from auditor.policy.verdict import Judge
from auditor.terminal import printable


def _common(p: argparse.ArgumentParser, tags: bool = True) -> None:
    p.add_argument("policy", metavar="F", help="policy file (any of the Azure dialects)")
    if tags:
        p.add_argument("--service-tags", metavar="F", default=None,
                       help="ServiceTags_*.json (default: the bundled file)")
    p.add_argument("--region", default=None, help="region for Tag.Region (default: the policy's location)")
    p.add_argument("--include", action="append", default=[], metavar="SET",
                   choices=sorted(builtin.SCENARIOS),
                   help="add a built-in scenario rule set (repeatable; default: none)")


def add_arguments(subparsers) -> None:
    """Register check, explain and show on the `policy` parser's subparsers."""
    p = subparsers.add_parser("check", help="validate and lint a policy")
    _common(p)
    p.set_defaults(func=cmd_check)

    p = subparsers.add_parser("explain", help="which rule allows DEST, or why nothing does")
    _common(p)
    p.add_argument("dest", metavar="DEST", help="host name (as SNI/Host) or IP address")
    p.add_argument("--port", type=int, default=443, help="destination port (default: 443)")
    p.add_argument("--proto", choices=("tcp", "udp"), default="tcp", help="default: tcp")
    p.add_argument("--as-mode", default=None,
                   choices=("disabled", "allow_internet_outbound", "allow_only_approved_outbound"),
                   help="judge as if in this isolation mode (default: the policy's own)")
    p.add_argument("--json", action="store_true", help="print {verdict, reason, rule, ...} (default: two lines of text)")
    p.add_argument("--exit-code", action="store_true", help="exit 3 when the destination is denied (default: exit 0 either way)")
    p.set_defaults(func=cmd_explain)

    p = subparsers.add_parser("show", help="the effective rule set, built-ins marked")
    _common(p, tags=False)
    p.add_argument("--json", action="store_true", help="print the rules as JSON (default: a table)")
    p.set_defaults(func=cmd_show)


def _tags(args, policy: Policy | None = None) -> ServiceTags:
    region = args.region or (policy.location if policy else None)
    return ServiceTags.load(args.service_tags, region=region)


def _warn(policy: Policy) -> None:
    for w in policy.warnings:
        print(printable(w), file=sys.stderr)


def cmd_check(args) -> int:
    policy, problems = load_policy_lenient(args.policy, region=args.region)
    problems = list(problems) + lint(policy, _tags(args, policy), tuple(args.include))
    for p in problems:
        print(printable(p))
    errors = sum(p.level == "error" for p in problems)
    warnings = len(problems) - errors
    print(f"{printable(args.policy)}: {len(policy.file_rules)} rules, {errors} error(s), "
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
    out = {"verdict": "allowed" if verdict.allowed else "denied", "reason": verdict.reason.value,
           "rule": verdict.rule, "rule_type": verdict.rule_type,
           "service_tag": verdict.service_tag, "private_endpoint": verdict.private_endpoint,
           "destination": dest, "port": args.port, "proto": args.proto}
    code = EXIT_FAIL_ON if args.exit_code and not verdict.allowed else 0
    if args.json:
        print(json.dumps(out, indent=2))
        return code
    via = f" by rule {printable(verdict.rule)!r} ({verdict.rule_type})" if verdict.rule else ""
    extra = f", service tag {verdict.service_tag}" if verdict.service_tag else ""
    print(f"{out['verdict'].upper()}: {printable(dest)} {args.proto}/{args.port}: "
          f"{verdict.reason.value}{via}{extra}")
    print(f"  {verdict.reason.explain}")
    return code


def cmd_show(args) -> int:
    policy = load_policy(args.policy, region=args.region)
    _warn(policy)
    data = render.to_json(policy, tuple(args.include))
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
        print(printable(f"{mark}{r['name'][:39]:39} {r['type']:16} {r['category']:12} "
                        f"{r['status'] or '-':8} {text}"))
    print("(* = built in; always allowed: DNS to the dns_servers (default "
          f"{', '.join(builtin.DEFAULT_DNS_SERVERS)}) and any traffic to "
          f"{' and '.join(builtin.PLATFORM_IPS)})")
    for note in data["notes"]:
        print(f"note: {note}")
    return 0
