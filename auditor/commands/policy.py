"""`egress-auditor policy check|explain|show`: argument parsing and printing only; the
answers come from `auditor.policy`.

Every handler returns an exit code: 0 ok, 1 lint errors (bad input raises PolicyError, which
`cli.main` prints as one line), 3 for `explain --exit-code` when the destination is denied.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from auditor.errors import EXIT_FAIL_ON, PolicyError
from auditor.policy import builtin, render
from auditor.policy.advice import advise
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
    tags = ServiceTags.load(args.service_tags, region=region)
    for note in [*tags.notes, tags.staleness(time.time())]:
        if note:
            print(f"egress-auditor: warning: {printable(note)}", file=sys.stderr)
    return tags


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


def _judge_dest(judge: Judge, dest: str, port: int, proto: str):
    if parse_address(dest) is not None:
        return judge.judge(dest, port, proto, None, "none")
    source = {("tcp", 443): "sni", ("tcp", 80): "http_host",
              ("udp", 443): "quic_sni"}.get((proto, port), "sni")
    # A name with no IP: taken as the SNI/Host, and as resolved by DNS (for private endpoints).
    return judge.judge("", port, proto, dest, source, (dest,))


def _idle_rule_would_allow(policy: Policy, tags: ServiceTags, args, dest: str) -> str | None:
    """The not-enforced rule (status Failed/Deleting) that would allow `dest` if Azure had it."""
    idle = [r for r in policy.file_rules if not r.enforced]
    for rule in idle:
        revived = policy.model_copy(update={"file_rules": tuple(
            r.model_copy(update={"status": "Active"}) if r is rule else r for r in policy.file_rules)})
        judge = Judge(revived, tags, include=tuple(args.include), as_mode=args.as_mode)
        if _judge_dest(judge, dest, args.port, args.proto).allowed:
            why = dict(rule.info).get("error_information")
            return (f"rule {rule.name!r} would allow it, but Azure reports it {rule.status}"
                    + (f" ({why})" if why else "") + "; fix or re-create that rule")
    return None


def cmd_explain(args) -> int:
    if not 0 <= args.port <= 65535:
        raise PolicyError(args.policy, f"--port {args.port} is not a port")
    policy = load_policy(args.policy, region=args.region)
    _warn(policy)
    tags = _tags(args, policy)
    judge = Judge(policy, tags, include=tuple(args.include), as_mode=args.as_mode)
    dest = args.dest.strip()
    is_ip = parse_address(dest) is not None
    verdict = _judge_dest(judge, dest, args.port, args.proto)
    advice = advise(verdict, tags, ip=dest if is_ip else None, name=None if is_ip else dest,
                    port=args.port, proto=args.proto)
    if not verdict.allowed:
        advice["fix"] = _idle_rule_would_allow(policy, tags, args, dest) or advice["fix"]
    out = {"verdict": "allowed" if verdict.allowed else "denied", "reason": verdict.reason.value,
           "rule": verdict.rule, "rule_type": verdict.rule_type,
           "service_tag": verdict.service_tag, "private_endpoint": verdict.private_endpoint,
           "destination": dest, "port": args.port, "proto": args.proto, **advice}
    code = EXIT_FAIL_ON if args.exit_code and not verdict.allowed else 0
    if args.json:
        print(json.dumps(out, indent=2))
        return code
    via = f" by rule {printable(verdict.rule)!r} ({verdict.rule_type})" if verdict.rule else ""
    extra = f", service tag {verdict.service_tag}" if verdict.service_tag else ""
    print(f"{out['verdict'].upper()}: {printable(dest)} {args.proto}/{args.port}: "
          f"{verdict.reason.value}{via}{extra}")
    print(f"  {verdict.reason.explain}")
    if advice["service_tags"]:
        service = f" ({advice['azure_service']})" if advice["azure_service"] else ""
        print(f"  address: {', '.join(advice['service_tags'])}{service}")
    if advice["fix"]:
        print(f"  fix: {printable(advice['fix'])}")
    return code


def cmd_show(args) -> int:
    policy = load_policy(args.policy, region=args.region)
    _warn(policy)
    data = render.to_json(policy, tuple(args.include))
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=False))
        return 0
    view = "Azure's own view: judged by the rules it lists" if data["authoritative"] else \
        "a file you wrote" + (": Azure adds its required rules" if data["required_added"] else "")
    print(f"isolation_mode: {data['isolation_mode']}   location: {data['location'] or '-'}   "
          f"kind: {data['kind']}   dialect: {data['dialect']} ({view})")
    print(f"{'NAME':40} {'TYPE':16} {'CATEGORY':12} {'STATUS':12} DESTINATION")
    for r in data["rules"]:
        d = r["destination"]
        if isinstance(d, dict) and "service_tag" in d:
            text = (f"{d['service_tag'] or ','.join(d['address_prefixes'])} "
                    f"{d['protocol']}/{d['port_ranges']}" + (" DENY" if d["action"] == "Deny" else ""))
        elif isinstance(d, dict):
            text = f"{d['service_resource_id'].rsplit('/', 1)[-1]}/{d['subresource_target']}"
        else:
            text = d
        mark = "*" if r["built_in"] else "!" if not r["enforced"] else " "
        print(printable(f"{mark}{r['name'][:39]:39} {r['type']:16} {r['category']:12} "
                        f"{r['status'] or '-':12} {text}"))
    print("(* = built in; ! = not enforced: Azure reports the rule Failed or Deleting; always "
          f"allowed: DNS to the dns_servers (default {', '.join(builtin.DEFAULT_DNS_SERVERS)}) "
          f"and any traffic to {' and '.join(builtin.PLATFORM_IPS)})")
    for key, val in data["info"].items():
        print(printable(f"info: {key}: {val}"))
    for note in data["notes"]:
        print(f"note: {note}")
    return 0
