"""The `egress-auditor` command line: argument parsing and exit codes, nothing else.

Exit codes (SPEC §2): 0 ok, 1 bad input (one line on stderr, never a traceback),
3 a `--fail-on` condition was met, 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from auditor import __version__

EXIT_OK, EXIT_BAD_INPUT, EXIT_FAIL_ON, EXIT_INTERRUPTED = 0, 1, 3, 130


class BadInput(Exception):
    """Anything the user can fix: the message is printed as one line."""


def port(text: str) -> int:
    """argparse type: a TCP port number (a bad one is a usage error, never a traceback)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0-65535)")
    return value


def _input_options(p: argparse.ArgumentParser) -> None:
    """What every command that audits traffic reads: settings, policy, tags, the node's side."""
    p.add_argument("--config", type=Path, help="auditor settings YAML (see README: Settings)")
    p.add_argument("--policy", type=Path, help="the workspace's managed-network policy (any Azure dialect)")
    p.add_argument("--service-tags", type=Path, help="ServiceTags_Public_*.json (default: the bundled file)")
    p.add_argument("--region", help="Azure region for regional service tags (default: the policy's location)")
    p.add_argument("--node-network", action="append", metavar="CIDR",
                   help="address range of this node/VNet side; repeatable (default: RFC 1918 + ULA)")


def _audit_options(p: argparse.ArgumentParser) -> None:
    _input_options(p)
    p.add_argument("--events", metavar="FILE|-", help="write JSON-lines audit events here ('-' = stdout)")
    p.add_argument("--no-dns-events", action="store_true", help="do not write a `dns` event per DNS response")
    p.add_argument("--metrics-port", type=port, metavar="N", help="serve Prometheus metrics on this port")
    p.add_argument("--as-mode", choices=["disabled", "allow_internet_outbound", "allow_only_approved_outbound"],
                   help="shadow audit: judge as if the workspace were in this isolation mode")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="egress-auditor",
        description="Audit a node's real egress traffic against an Azure managed-network allowlist.")
    parser.add_argument("--version", action="version", version=f"egress-auditor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    replay = sub.add_parser("replay", help="audit pcap/pcapng files")
    replay.add_argument("pcaps", nargs="+", type=Path, metavar="PCAP")
    _audit_options(replay)
    replay.add_argument("--metrics-file", type=Path, help="write the final metrics (textfile-collector format)")
    replay.add_argument("--fail-on", choices=["denied", "finding", "none"], default="none",
                        help="exit 3 if any flow was denied / any finding fired")
    replay.add_argument("--quiet", action="store_true", help="no progress line and no summary")
    replay.add_argument("--serve-after", action="store_true",
                        help="with --metrics-port: keep serving the final metrics until SIGTERM")
    replay.add_argument("--loop", type=float, metavar="SECONDS",
                        help="with --metrics-port: replay again every SECONDS until SIGTERM, each pass "
                        "continuing the capture's clock (demo dashboards)")
    replay.set_defaults(func=_replay)

    run = sub.add_parser("run", help="live sidecar: capture on an interface and serve metrics")
    run.add_argument("--interface", "-i", required=True)
    _audit_options(run)
    run.add_argument("--bpf", help="extra kernel capture filter (tcpdump syntax)")
    run.set_defaults(func=_run)

    policy = sub.add_parser("policy", help="check, explain or show a managed-network policy")
    from auditor.policy import commands as policy_commands
    policy_commands.add_arguments(policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION"))

    suggest = sub.add_parser("suggest", help="the outbound rules observed egress needs before switching "
                             "to allow_only_approved_outbound (CLI v2 workspace YAML)")
    suggest.add_argument("pcaps", nargs="+", type=Path, metavar="PCAP")
    _input_options(suggest)  # --policy is required there; suggest says so in one line if missing
    suggest.add_argument("--output", "-o", type=Path, help="write the YAML here (default: stdout)")
    suggest.set_defaults(func=_suggest)

    schema = sub.add_parser("schema", help="print the JSON Schema of the audit events")
    schema.set_defaults(func=_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BadInput as exc:
        print(f"egress-auditor: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `replay ... --events - | head`
        return EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    from auditor import app
    return app.replay(args)


def _run(args: argparse.Namespace) -> int:
    from auditor import app
    return app.run(args)


def _suggest(args: argparse.Namespace) -> int:
    from auditor import suggest
    return suggest.main(args)


def _schema(args: argparse.Namespace) -> int:
    from auditor import schema
    print(json.dumps(schema.json_schema(), indent=2))
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
