"""`encrypted_dns`: DNS the auditor (and Azure DNS logging) cannot read (SPEC §8), keyed by
server IP. Judged when an egress flow's name is settled:
- TCP or UDP port 853: DNS over TLS / DNS over QUIC;
- a cleartext HTTP/2 request on it asked for DNS over HTTPS (`flow.doh`: the `/dns-query`
  path, a `dns=` GET parameter, or `application/dns-message` as content type or accept), or
  the first HTTP/1 request's target has that path or parameter,
  whatever its name — also when that request is not the connection's first (then at its
  first DNS query, or at flow end); the DNS inside is also decoded (track.h2c);
- the flow's name (TLS or QUIC SNI, HTTP Host, or the DNS name it was reached by) is a known
  DoH resolver from `resolvers` or a subdomain of one;
- the server is a well-known public resolver address (`resolver_ips`) on TCP/UDP 443 or
  TCP 80. Those anycast addresses serve nothing but DNS, so HTTP(S) to them is DoH even when
  no name is visible (TLS with ECH, or a client that sends no SNI), and a hard-coded
  resolver address needs no lookup to name it.
Severity high: the node's name resolution leaves the audited channel entirely.
"""
from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator

from auditor import addresses
from auditor.detect.base import Context, Detector, DetectorSettings, Evidence
from auditor.events import DnsQuery, FlowEnded, FlowNamed
from auditor.flow import Flow
from auditor.hostnames import matches_any, normalise

DOT_PORT = 853
WEB_PORTS = {("tcp", 443), ("udp", 443), ("tcp", 80)}


class EncryptedDnsSettings(DetectorSettings):
    """Known DNS-over-HTTPS resolvers, by name and by address."""
    resolvers: list[str] = Field(default_factory=lambda: [
        "dns.google", "dns.google.com", "cloudflare-dns.com", "mozilla.cloudflare-dns.com",
        "one.one.one.one", "1dot1dot1dot1.cloudflare-dns.com", "dns.quad9.net", "dns9.quad9.net",
        "dns11.quad9.net", "doh.opendns.com", "doh.familyshield.opendns.com", "dns.adguard.com",
        "dns.adguard-dns.com", "doh.cleanbrowsing.org", "dns.nextdns.io", "doh.dns.sb",
        "chrome.cloudflare-dns.com", "doh.mullvad.net"],
        description="DoH resolver names (a subdomain of one counts too)")
    resolver_ips: list[str] = Field(default_factory=lambda: [
        # Google, Cloudflare, Quad9, OpenDNS, AdGuard public resolvers (v4 and v6 anycast):
        # HTTP(S) to these is DoH whatever name it carries, or none.
        "8.8.8.8", "8.8.4.4", "2001:4860:4860::8888", "2001:4860:4860::8844",
        "1.1.1.1", "1.0.0.1", "2606:4700:4700::1111", "2606:4700:4700::1001",
        "9.9.9.9", "149.112.112.112", "2620:fe::fe", "2620:fe::9",
        "208.67.222.222", "208.67.220.220", "94.140.14.14", "94.140.15.15"],
        description="public resolver addresses whose port 443/80 traffic is DoH")

    @field_validator("resolver_ips")
    @classmethod
    def _ips(cls, v: list[str]) -> list[str]:
        return [str(ipaddress.ip_address(x)) for x in v]


class EncryptedDnsEvidence(Evidence):
    via: str = Field(description="dot, doq, doh_request, doh_name_<source>, doh_name_dns_chain, "
                     "doh_resolver_ip")
    client: str
    transport: str
    port: int
    name: str | None = None
    name_source: str
    app_protocol: str | None = None
    client_bytes: int
    server_bytes: int


class EncryptedDns(Detector):
    """DNS the auditor (and Azure DNS logging) cannot read: DoT, DoQ, DoH."""
    name = "encrypted_dns"
    severities = ("high",)
    Settings = EncryptedDnsSettings
    Evidence = EncryptedDnsEvidence

    def __init__(self, settings: EncryptedDnsSettings, context: Context) -> None:
        super().__init__(settings, context)
        self.resolvers = frozenset(normalise(r) for r in settings.resolvers)
        self.resolver_ips = frozenset(settings.resolver_ips)

    def flow_named(self, ev: FlowNamed) -> None:
        self._judge(ev.flow)

    # A DoH request after an h2c connection's first one sets `flow.doh` after naming: judged
    # again at its first DNS query, and at the end in case none decoded (one finding per key).
    def dns_query(self, ev: DnsQuery) -> None:
        if ev.flow.doh and ev.flow.named:      # before naming, flow_named judges it
            self._judge(ev.flow)

    def flow_ended(self, ev: FlowEnded) -> None:
        if ev.flow.doh:
            self._judge(ev.flow)

    def _judge(self, flow: Flow) -> None:
        if not flow.egress or flow.transport not in ("tcp", "udp"):
            return
        name = normalise(flow.domain)
        chain = [normalise(n) for n in flow.dns_chain]
        if flow.server_port == DOT_PORT:
            via = "dot" if flow.transport == "tcp" else "doq"
        elif flow.doh:
            via = "doh_request"
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
    return addresses.canonical(ip) or ip
