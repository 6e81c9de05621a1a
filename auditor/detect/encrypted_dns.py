"""`encrypted_dns`: DNS the auditor (and Azure DNS logging) cannot read (SPEC §8), keyed by
server IP. Judged when an egress flow's name is settled:
- TCP or UDP port 853: DNS over TLS / DNS over QUIC;
- the flow's name (TLS or QUIC SNI, HTTP Host, or the DNS name it was reached by) is a known
  DoH resolver from `doh_resolvers` or a subdomain of one;
- the server is a well-known public resolver address (`doh_resolver_ips`) on TCP/UDP 443 or
  TCP 80. Those anycast addresses serve nothing but DNS, so HTTP(S) to them is DoH even when
  no name is visible: cleartext HTTP/2 (h2c) opens with `PRI * HTTP/2.0` and carries
  `:authority` HPACK-encoded, which is not an HTTP/1 Host the decoder reads, and a hard-coded
  resolver address needs no lookup to name it.
Severity high: the node's name resolution leaves the audited channel entirely.
"""
from __future__ import annotations

import ipaddress

from auditor.detect.dnsnames import canonical_ip, matches_any, normal
from auditor.detect.window import Detector
from auditor.events import FlowNamed
from auditor.track.names import Evictions

DOT_PORT = 853
WEB_PORTS = {("tcp", 443), ("udp", 443), ("tcp", 80)}


class EncryptedDns(Detector):
    name = "encrypted_dns"

    def __init__(self, window_seconds: float, max_keys: int, resolvers=(), resolver_ips=(),
                 evictions: Evictions | None = None):
        super().__init__(window_seconds, max_keys, evictions)
        self.resolvers = frozenset(normal(r) for r in resolvers)
        self.resolver_ips = frozenset(str(ipaddress.ip_address(i)) for i in resolver_ips)

    def flow_named(self, ev: FlowNamed) -> None:
        flow = ev.flow
        if not flow.egress or flow.transport not in ("tcp", "udp"):
            return
        name = normal(flow.domain)
        chain = [normal(n) for n in flow.dns_chain]
        if flow.server_port == DOT_PORT:
            via = "dot" if flow.transport == "tcp" else "doq"
        elif name and matches_any(name, self.resolvers):
            via = f"doh_name_{flow.name_source}"
        elif chain and any(matches_any(n, self.resolvers) for n in chain):
            via = "doh_name_dns_chain"
        elif (flow.transport, flow.server_port) in WEB_PORTS and _norm(flow.server_ip) in self.resolver_ips:
            via = "doh_resolver_ip"
        else:
            return
        evidence = {"via": via, "client": flow.client_ip, "transport": flow.transport,
                    "port": flow.server_port, "name": name or None,
                    "name_source": flow.name_source, "app_protocol": flow.app_protocol,
                    "client_bytes": flow.c_bytes, "server_bytes": flow.s_bytes}
        self.fire(flow.last, "high", flow.server_ip, evidence, flow)


def _norm(ip: str) -> str:
    return canonical_ip(ip) or ip
