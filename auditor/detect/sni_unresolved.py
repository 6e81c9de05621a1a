"""`sni_unresolved`: the flow presents a name (TLS/QUIC SNI or HTTP Host) but goes to a public
address that no solicited DNS answer ever gave, keyed by destination IP.

Domain fronting's usual shape: the client connects straight to an address it chose and
presents an allowlisted name, which an SNI-based FQDN rule then allows. Low severity: an
address resolved before the capture started (or from a cache the auditor cannot see) looks
the same, so flows already running when capture began (`midstream`) are exempt, and the
finding is evidence to weigh, not a verdict.
"""
from __future__ import annotations

from auditor import addresses
from auditor.detect.base import DetectorSettings, Evidence
from auditor.detect.resolved import ResolvedAddresses
from auditor.events import FlowNamed

NAMED_BY_PAYLOAD = ("sni", "quic_sni", "http_host")


class SniUnresolvedEvidence(Evidence):
    client: str
    name: str
    name_source: str
    transport: str
    port: int


class SniUnresolved(ResolvedAddresses):
    """SNI/Host names a host, but no solicited DNS answer ever gave the destination address."""
    name = "sni_unresolved"
    severities = ("low",)
    key_kind = "ip"
    Settings = DetectorSettings
    Evidence = SniUnresolvedEvidence

    def flow_named(self, ev: FlowNamed) -> None:
        flow = ev.flow
        if not flow.egress or flow.midstream or flow.name_source not in NAMED_BY_PAYLOAD \
                or addresses.is_ip(flow.domain):
            return
        ip = self.unresolved(flow)
        if ip is None:
            return
        self.fire(flow.last, "low", ip, {"client": flow.client_ip, "name": flow.domain,
                                         "name_source": flow.name_source,
                                         "transport": flow.transport, "port": flow.server_port},
                  flow)
