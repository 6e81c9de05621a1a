"""`direct_ip`: egress to a public address that no DNS answer gave, with no SNI or Host
naming it (SPEC §8), keyed by destination IP. Hard-coded addresses are how implants reach
home while staying invisible to name-based allowlists.

"No DNS answer gave it" means no *solicited* answer (to a query this node sent) named the
IP, for any client, since the auditor started (a capped LRU set): an unsolicited answer is
exactly what an attacker would inject to make an address look resolved. Judged when the
flow's name is settled (first client payload, or flow end for flows that never sent one).

Not judged: DNS itself (port 53: that is `dns_resolver_bypass`), the platform endpoints and
configured DNS servers, non-global addresses (private, loopback, link-local, multicast,
reserved), ICMP (no name is ever expected for a ping), port 0 (non-first IP fragments carry
no ports). An SNI or Host that is an IP literal names nothing and does not exempt the flow.

Severity medium. A flow already running when capture started (a TCP flow without its SYN)
also looks unnamed: its SNI and its lookup went by before the capture; such flows
(`flow.midstream`) are reported as low.
"""
from __future__ import annotations

from auditor import addresses
from auditor.detect.base import DetectorSettings, Evidence
from auditor.detect.resolved import ResolvedAddresses
from auditor.events import FlowNamed

DNS_PORT = 53
NAMED_BY_PAYLOAD = ("sni", "quic_sni", "http_host")


class DirectIpEvidence(Evidence):
    client: str
    transport: str
    port: int
    app_protocol: str | None = None
    client_bytes: int
    server_bytes: int
    name_source: str
    midstream: bool
    ip_literal_name: str | None = None
    invalid_name: str | None = None


class DirectIp(ResolvedAddresses):
    """Egress to a public address no DNS answer gave, with no SNI or Host naming it."""
    name = "direct_ip"
    severities = ("low", "medium")
    key_kind = "ip"
    Settings = DetectorSettings
    Evidence = DirectIpEvidence

    def flow_named(self, ev: FlowNamed) -> None:
        flow = ev.flow
        # A flow *from* port 53 is not DNS to a resolver: only the server port exempts.
        if not flow.egress or flow.transport not in ("tcp", "udp") or flow.server_port in (DNS_PORT, 0):
            return
        if flow.name_source == "dns" or (flow.name_source in NAMED_BY_PAYLOAD
                                         and not addresses.is_ip(flow.domain)):
            return
        ip = self.unresolved(flow)
        if ip is None:
            return
        evidence = {
            "client": flow.client_ip,
            "transport": flow.transport,
            "port": flow.server_port,
            "app_protocol": flow.app_protocol,
            "client_bytes": flow.c_bytes,
            "server_bytes": flow.s_bytes,
            "name_source": flow.name_source,
        }
        midstream = flow.midstream
        evidence["midstream"] = midstream
        if flow.name_source in NAMED_BY_PAYLOAD:
            evidence["ip_literal_name"] = flow.domain
        if flow.invalid_name:
            evidence["invalid_name"] = flow.invalid_name
        self.fire(flow.last, "low" if midstream else "medium", ip, evidence, flow)

