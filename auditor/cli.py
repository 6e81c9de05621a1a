"""The `egress-auditor` command line: the argument tree, and the one place errors become exit
codes.

Each subcommand names the module that drives it (`auditor.commands.<name>`); it is imported
only when that subcommand runs, so `policy explain` never pays for the capture stack.
Exit codes: 0 ok, 1 bad input (one line on stderr, never a traceback), 2 usage error,
3 a `--fail-on` condition was met, 130 interrupted.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

# pydantic scans every installed distribution for plugins at its first model (tens of ms with
# a large environment); the command line uses none. A user who wants them sets the variable.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from auditor import __version__, core  # noqa: E402 - after the environment default above
from auditor.commands import policy as policy_commands  # noqa: E402
from auditor.errors import EXIT_INTERRUPTED, EXIT_OK, AuditorError  # noqa: E402
from auditor.sources.ring import RING_BYTES  # noqa: E402

MODES = ["disabled", "allow_internet_outbound", "allow_only_approved_outbound"]


def port(text: str) -> int:
    """argparse type: a TCP port number (a bad one is a usage error, never a traceback)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0-65535)")
    return value


def ring_mib(text: str) -> int:
    """argparse type: the receive ring's size in MiB, 0 (no ring) or 2 to 1024."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of MiB") from None
    if value != 0 and not 2 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"{value}: 0 (no ring) or 2 to 1024 MiB")
    return value


def _input_options(p: argparse.ArgumentParser) -> None:
    """What every command that audits traffic reads: settings, policy, tags, the node's side."""
    p.add_argument("--config", type=Path, help="auditor settings YAML (default: none; see README: Settings)")
    p.add_argument("--policy", type=Path, help="the workspace's managed-network policy, any Azure "
                   "dialect (default: none, flows are named but not judged)")
    p.add_argument("--service-tags", type=Path, help="ServiceTags_Public_*.json (default: the bundled file)")
    p.add_argument("--region", help="Azure region for regional service tags (default: the policy's location)")
    p.add_argument("--node-network", action="append", metavar="CIDR",
                   help="address range of this node/VNet side; repeatable (default: RFC 1918 + ULA)")


def _audit_options(p: argparse.ArgumentParser) -> None:
    _input_options(p)
    p.add_argument("--events", metavar="FILE|-", help="append JSON-lines audit events here, '-' = "
                   "stdout (default: none)")
    p.add_argument("--no-dns-events", action="store_true", help="no `dns` event per DNS response "
                   "(default: written)")
    p.add_argument("--metrics-port", type=port, metavar="N", help="serve Prometheus metrics on this "
                   "port (default: replay none, run 19807)")
    p.add_argument("--as-mode", choices=MODES, help="shadow audit: judge as if the workspace were in "
                   "this isolation mode (default: the policy's own)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="egress-auditor",
        description="Audit a node's real egress traffic against an Azure managed-network allowlist.")
    parser.add_argument("--version", action="version", version=f"egress-auditor {__version__} (core: {core.describe()})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    replay = sub.add_parser("replay", help="audit pcap/pcapng files")
    replay.add_argument("pcaps", nargs="+", type=Path, metavar="PCAP")
    _audit_options(replay)
    replay.add_argument("--metrics-file", type=Path, help="write the final metrics in textfile-"
                        "collector format (default: none)")
    replay.add_argument("--fail-on", choices=["denied", "finding", "none"], default="none",
                        help="exit 3 if any flow was denied / any finding fired (default: none)")
    replay.add_argument("--quiet", action="store_true", help="no progress line and no summary (default: both, the progress line on a terminal only)")
    replay.add_argument("--serve-after", action="store_true",
                        help="with --metrics-port: keep serving the final metrics until SIGTERM "
                        "(default: exit when done)")
    replay.add_argument("--loop", type=float, metavar="SECONDS",
                        help="with --metrics-port: replay again every SECONDS until SIGTERM, each pass "
                        "continuing the capture's clock (demo dashboards; default: one pass)")
    replay.set_defaults(module="auditor.commands.replay")

    run = sub.add_parser("run", help="live sidecar: capture on an interface and serve metrics")
    run.add_argument("--interface", "-i", required=True,
                     help="the interface to capture, e.g. eth0 (required; no default)")
    _audit_options(run)
    run.add_argument("--bpf", help="extra kernel capture filter, tcpdump syntax (default: none)")
    run.add_argument("--no-attribution", action="store_true",
                     help="do not look up the process/container/pod that opened each flow "
                     "(default: looked up, from /proc and the kernel's sock_diag)")
    run.add_argument("--ring-mib", type=ring_mib, default=RING_BYTES >> 20, metavar="N",
                     help="the kernel receive ring (TPACKET_V3) in MiB: what the kernel holds "
                     "while the auditor is busy; resident memory; 0 reads one packet per system "
                     f"call instead (default: {RING_BYTES >> 20})")
    run.add_argument("--web-config-file", type=Path, metavar="F",
                     help="TLS and basic auth for /metrics, Prometheus exporter-toolkit format "
                     "(default: plain HTTP, no auth)")
    run.set_defaults(module="auditor.commands.run")

    policy = sub.add_parser("policy", help="check, explain or show a managed-network policy")
    policy_commands.add_arguments(policy.add_subparsers(dest="policy_command", required=True,
                                                        metavar="ACTION"))
    policy.set_defaults(module="auditor.commands.policy")

    suggest = sub.add_parser("suggest", help="the outbound rules observed egress needs before "
                             "switching to allow_only_approved_outbound (CLI v2 workspace YAML)")
    suggest.add_argument("pcaps", nargs="+", type=Path, metavar="PCAP")
    _input_options(suggest)  # --policy is required there; suggest says so in one line if missing
    suggest.add_argument("--output", "-o", type=Path, help="write the YAML here (default: stdout)")
    suggest.set_defaults(module="auditor.commands.suggest")

    schema = sub.add_parser("schema", help="print the JSON Schema of the audit events")
    what = schema.add_mutually_exclusive_group()
    what.add_argument("--settings", action="store_true",
                      help="print the JSON Schema of the settings file instead (default: of the events)")
    what.add_argument("--index-template", action="store_true",
                      help="print the Elasticsearch index template instead (default: the events' schema)")
    what.add_argument("--ecs-custom-fields", action="store_true",
                      help="print the ECS custom-field definition (schemas/*.yml format) instead "
                      "(default: the events' schema)")
    schema.set_defaults(module="auditor.commands.schema")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        handler = getattr(args, "func", None) or importlib.import_module(args.module).main
        return handler(args)
    except AuditorError as exc:
        print(f"egress-auditor: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `replay ... --events - | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
