"""`dns_resolver_bypass`: DNS (UDP or TCP port 53) from the node to a server that is not
one of the configured `dns_servers` (SPEC §8), keyed by server IP. Azure's managed network
forces names through Azure DNS; a resolver elsewhere escapes its logging and is the usual
carrier for DNS tunnels.

Fires on the first query to such a server (`dns_query`, so the evidence names what was
asked) or, for a port-53 flow that never carried a parsable query, when its name is settled
(`flow_named`: first payload or flow end). Loopback servers are a local stub resolver, not a
bypass; what the stub forwards upstream is seen and judged on its own. Severity medium.
"""
from __future__ import annotations

from auditor import addresses
from auditor.detect.base import Context, Detector, DetectorSettings, Evidence
from auditor.events import DnsQuery, FlowNamed
from auditor.flow import Flow

DNS_PORT = 53


class ResolverBypassEvidence(Evidence):
    first_query: str | None = None
    qtype: int | None = None
    client: str
    transport: str
    configured_dns_servers: list[str]


class DnsResolverBypass(Detector):
    """DNS to a server that is not one of the configured `dns_servers`."""
    name = "dns_resolver_bypass"
    severities = ("medium",)
    Settings = DetectorSettings
    Evidence = ResolverBypassEvidence

    def __init__(self, settings: DetectorSettings, context: Context) -> None:
        super().__init__(settings, context)
        self.allowed = frozenset(addresses.canonical(s) or s for s in context.dns_servers)

    def _bypass(self, flow: Flow) -> bool:
        if not flow.egress or flow.server_port != DNS_PORT or flow.transport not in ("tcp", "udp"):
            return False
        addr = addresses.canonical(flow.server_ip)
        return addr is not None and addr not in self.allowed and not addresses.is_loopback(addr)

    def dns_query(self, ev: DnsQuery) -> None:
        flow = ev.flow
        if self._bypass(flow):
            q = ev.message.questions[0] if ev.message.questions else ("", 0)
            self._fire(ev.ts, flow, {"first_query": q[0], "qtype": q[1]})

    def flow_named(self, ev: FlowNamed) -> None:
        flow = ev.flow
        if self._bypass(flow):
            self._fire(flow.last, flow, {"first_query": None, "qtype": None})

    def _fire(self, ts: float, flow: Flow, evidence: dict) -> None:
        evidence.update({"client": flow.client_ip, "transport": flow.transport,
                         "configured_dns_servers": sorted(self.allowed)})
        self.fire(ts, "medium", flow.server_ip, evidence, flow, destination_domain=None)

