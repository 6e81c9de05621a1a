"""`egress-auditor run`: the live sidecar.

Captures on one interface, serves metrics, and runs until SIGTERM/SIGINT, when every open
flow is flushed as an event (flow events equal `flows_total`). SIGHUP re-reads the policy
and service tags and swaps the judge in place (the flow table, DNS cache and detector state
are kept, and a bad new policy leaves the old one in force, said once on stderr), and reopens
the events file; SIGUSR1 only reopens it (logrotate's `postrotate`).
"""
from __future__ import annotations

import ipaddress
import json
import signal
import sys
import time
import urllib.request

from auditor import assemble, core
from auditor.commands.inputs import settings_from_args
from auditor.errors import EXIT_INTERRUPTED, EXIT_OK, PolicyError
from auditor.lifecycle import OnSignal, StopOnSignal, serve_metrics, settle_heap
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


IMDS = "http://169.254.169.254/metadata/instance/compute?api-version=2021-02-01"


def with_imds(settings):
    """`cloud.imds: true`: fill region and VM id from the Azure instance metadata service
    (one request at start, 2 s timeout; said on stderr and skipped when it does not answer)."""
    c = settings.cloud
    if not c.imds:
        return settings
    try:
        req = urllib.request.Request(IMDS, headers={"Metadata": "true"})
        with urllib.request.urlopen(req, timeout=2) as resp:
            doc = json.loads(resp.read(1 << 16))
    except (OSError, ValueError) as exc:
        print(f"egress-auditor: instance metadata not available ({exc}); cloud fields from "
              "settings only", file=sys.stderr)
        return settings
    cloud = c.model_copy(update={"provider": c.provider or "azure",
                                 "region": c.region or doc.get("location"),
                                 "instance_id": c.instance_id or doc.get("vmId")})
    return settings.model_copy(update={"cloud": cloud})


def main(args) -> int:
    node_networks = args.node_network or DEFAULT_NODE_NETWORKS + interface_networks(args.interface)
    settings = with_imds(settings_from_args(args, node_networks=node_networks))
    port = args.metrics_port if args.metrics_port is not None else \
        int(settings.metrics_listen.rsplit(":", 1)[1])
    web = WebConfig(args.web_config_file) if args.web_config_file else None
    bpf = own_socket_filter(settings.metrics_listen, port, args.interface)
    if args.bpf:
        bpf = f"({bpf}) and ({args.bpf})"
    capture = LiveCapture(args.interface, bpf=bpf, ring_bytes=args.ring_mib << 20)
    stop = StopOnSignal()                   # before the build opens the events file
    try:
        audit = assemble.build(settings, attribution=not args.no_attribution)
    except BaseException:
        stop.restore()
        capture.close()
        raise
    for notice in audit.notices:
        print(notice, file=sys.stderr)
    attribution = audit.attribution
    pipeline = audit.pipeline
    stop.attach(pipeline)
    server = serve_metrics(audit.registry, settings.metrics_listen, port, web)
    hup = OnSignal(signal.SIGHUP)           # reload the policy and reopen the events file
    usr1 = OnSignal(signal.SIGUSR1)         # reopen the events file only (logrotate)
    next_stats = 0.0

    def on_check(p) -> None:
        nonlocal next_stats
        now = time.monotonic()
        if now >= next_stats:
            next_stats = now + STATS_EVERY
            p.telemetry.capture_dropped = capture.stats()[1]
        if hup.take():
            _reload(audit)
            if audit.events is not None:
                audit.events.reopen()
        if usr1.take() and audit.events is not None:
            audit.events.reopen()

    if capture.ring_error:
        print(f"egress-auditor: notice: {args.interface}: no receive ring ({capture.ring_error}); "
              f"reading one packet per system call", file=sys.stderr)
    print(f"egress-auditor: capturing on {args.interface} ({capture.reader}, "
          f"{core.describe()} core), metrics on :{port}/metrics", file=sys.stderr)
    settle_heap()
    try:
        # The source yields None at least every 0.5 s, so signals, counters and timers are
        # looked at that often whatever the rate; between those, every 1,024 packets.
        pipeline.feed(capture.frames(0.5), check_every=1024, on_check=on_check)
    finally:
        pipeline.telemetry.capture_dropped = capture.stats()[1]
        pipeline.close("shutdown")
        capture.close()
        stop.restore()
        hup.restore()
        usr1.restore()
        if server:
            server.shutdown()
    audit.summary.render(sys.stderr)
    if attribution is not None and attribution.resolved + attribution.unknown:
        n = attribution.resolved + attribution.unknown
        print(f"  attribution   {attribution.resolved:,} of {n:,} flows told "
              f"({attribution.busy_seconds / n * 1e6:,.0f} us per flow, off the capture thread)",
              file=sys.stderr)
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
    for notice in audit.notices:
        print(notice, file=sys.stderr)
