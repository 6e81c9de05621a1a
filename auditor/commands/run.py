"""`egress-auditor run`: the live sidecar.

Captures on one interface, serves metrics, and runs until SIGTERM/SIGINT, when every open
flow is flushed as an event (flow events equal `flows_total`). SIGHUP re-reads the policy
and service tags and swaps the judge in place: the flow table, DNS cache and detector state
are kept, and a bad new policy leaves the old one in force (said once on stderr).
"""
from __future__ import annotations

import ipaddress
import signal
import sys
import time

from auditor import assemble
from auditor.commands.inputs import settings_from_args
from auditor.errors import EXIT_INTERRUPTED, EXIT_OK, PolicyError
from auditor.lifecycle import OnSignal, StopOnSignal, serve_metrics
from auditor.settings import DEFAULT_NODE_NETWORKS
from auditor.sinks.web_config import WebConfig
from auditor.sources.live import LiveCapture

STATS_EVERY = 1.0  # seconds between reads of the kernel's drop counters


def interface_networks(interface: str) -> list[str]:
    """The interface's own addresses as /32 and /128 networks (best effort)."""
    nets: list[str] = []
    try:
        from scapy.arch import get_if_addr
        from scapy.arch.linux import in6_getifaddr
        v4 = get_if_addr(interface)
        if v4 and v4 != "0.0.0.0":
            nets.append(f"{v4}/32")
        nets += [f"{addr}/128" for addr, _scope, iface in in6_getifaddr() if iface == interface]
    except Exception:  # noqa: BLE001 - an interface without addresses is still capturable
        pass
    return [n for n in nets if ipaddress.ip_network(n, strict=False)]


def own_socket_filter(listen: str, port: int, interface: str) -> str:
    """A capture filter that leaves out exactly the sidecar's own metrics socket (Prometheus
    scraping us is not the node's egress) and nothing else: TCP to port `port` on any other
    host, or from another local address, is still captured and judged."""
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host in ("", "0.0.0.0", "::"):
        mine = [n.split("/")[0] for n in interface_networks(interface)] or ["127.0.0.1"]
    else:
        mine = [host]
    parts = [f"(dst host {a} and dst port {port}) or (src host {a} and src port {port})" for a in mine]
    return f"not (tcp and ({' or '.join(parts)}))"


def main(args) -> int:
    node_networks = args.node_network or DEFAULT_NODE_NETWORKS + interface_networks(args.interface)
    settings = settings_from_args(args, node_networks=node_networks)
    port = args.metrics_port if args.metrics_port is not None else \
        int(settings.metrics_listen.rsplit(":", 1)[1])
    web = WebConfig(args.web_config_file) if args.web_config_file else None
    bpf = own_socket_filter(settings.metrics_listen, port, args.interface)
    if args.bpf:
        bpf = f"({bpf}) and ({args.bpf})"
    capture = LiveCapture(args.interface, bpf=bpf)
    audit = assemble.build(settings)
    pipeline = audit.pipeline
    server = serve_metrics(audit.registry, settings.metrics_listen, port, web)
    stop = StopOnSignal(pipeline)
    hup = OnSignal(signal.SIGHUP)
    next_stats = 0.0

    def on_check(p) -> None:
        nonlocal next_stats
        now = time.monotonic()
        if now >= next_stats:
            next_stats = now + STATS_EVERY
            p.telemetry.capture_dropped = capture.stats()[1]
        if hup.take():
            _reload(audit)

    print(f"egress-auditor: capturing on {args.interface}, metrics on :{port}/metrics", file=sys.stderr)
    try:
        pipeline.feed(capture.frames(0.5), check_every=1, on_check=on_check)
    finally:
        pipeline.telemetry.capture_dropped = capture.stats()[1]
        pipeline.close("shutdown")
        capture.close()
        stop.restore()
        hup.restore()
        if server:
            server.shutdown()
    audit.summary.render(sys.stderr)
    return EXIT_INTERRUPTED if stop.signal == signal.SIGINT else EXIT_OK


def _reload(audit: assemble.Audit) -> None:
    if audit.verdicts is None:
        print("egress-auditor: SIGHUP: no --policy was given at start; nothing to reload", file=sys.stderr)
        return
    try:
        judge = assemble.reload_policy(audit)
    except PolicyError as exc:
        audit.metrics.reloaded(False)
        print(f"egress-auditor: SIGHUP: keeping the previous policy: {exc}", file=sys.stderr)
        return
    audit.metrics.reloaded(True)
    print(f"egress-auditor: SIGHUP: policy reloaded ({len(judge.rules)} rules, "
          f"mode {judge.mode.value})", file=sys.stderr)
