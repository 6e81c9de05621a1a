"""`sni_mismatch`: the TLS/QUIC SNI names a host that DNS never resolved to the flow's
address, while DNS did resolve other names to it (SPEC §8), keyed by destination IP. The
pattern of a client that connects to one place while presenting an allowlisted name to get
past SNI-based FQDN rules.

What DNS resolved to an IP is learned from solicited answers of every client on the node
(a capped LRU of IP -> names, each name of every chain that led to the IP: the queried name
and its CNAMEs): the node is one trust domain, and the more it knows the fewer CDN false
positives. The SNI matches (compare case-insensitively, trailing dot ignored) when it is
one of those names, or shares their registered domain (eTLD+1): one operator's hosts on one
address behind one wildcard or shared certificate (`www.example.com` resolved, SNI
`api.example.com`) are not a mismatch. Remaining false positives: a multi-tenant CDN edge
(Cloudflare, Akamai, Azure Front Door) whose address the client reached through a name
resolved before the capture started or via a cache the auditor cannot see, while another
client resolved an unrelated tenant to the same edge. Hence medium severity, and the
evidence says whether the SNI name was resolved to other addresses (CDN rotation) or never.
SOCKS flows are left out: their address is the proxy's, the SNI is for the target behind it.
Through an HTTP CONNECT (the one flow with both a Host and an SNI) the SNI is compared with
the CONNECT target instead, by registered domain: `CONNECT pypi.org` carrying a ClientHello
for another site is fronting through the proxy (the proxy's own name, what DNS resolved, is
never the SNI's business).
"""
from __future__ import annotations

from auditor.detect.base import Context, Detector, DetectorSettings, Evidence, NameTable
from auditor.events import DnsAnswered, FlowNamed
from auditor.hostnames import http_host, normalise, registered_domain

NAMES_PER_IP = 32
# What both tables may hold in all, whatever the key cap: a flood of answers with long
# CNAME chains (16 names of ~1,000 characters of escapes each) for thousands of addresses
# held 20,000 x 32 fresh copies (24 crafted frames peaked at 722 MB).
MAX_NAMES = 200_000
MAX_NAME_CHARS = 16 << 20


def _weigh_names(_ip: str, names: dict[str, None]) -> tuple[int, int]:
    return len(names), sum(map(len, names))


def _weigh_name(name: str, _value: None) -> tuple[int, int]:
    return 1, len(name)


class SniMismatchEvidence(Evidence):
    client: str
    sni: str
    resolved_names: list[str]
    resolved_name_count: int
    sni_resolved_elsewhere: bool
    transport: str
    port: int
    connect_host: str | None = None


class SniMismatch(Detector):
    """The SNI names a host DNS never resolved to this address, while DNS named it otherwise."""
    name = "sni_mismatch"
    severities = ("medium",)
    Settings = DetectorSettings
    Evidence = SniMismatchEvidence

    def __init__(self, settings: DetectorSettings, context: Context) -> None:
        super().__init__(settings, context)
        # IP -> {name: None} (insertion-ordered, capped)
        self.by_ip = NameTable(self.max_keys, self._evicted, _weigh_names, MAX_NAMES, MAX_NAME_CHARS)
        # name -> None: names any solicited answer gave an IP
        self.resolved = NameTable(self.max_keys, self._evicted, _weigh_name, MAX_NAMES, MAX_NAME_CHARS)

    def dns_answered(self, ev: DnsAnswered) -> None:
        if not ev.solicited:
            return
        scope = ev.flow.name_scope      # a tunnel's answers speak only for that tunnel's flows
        by_ip, resolved = self.by_ip, self.resolved
        normal: dict[tuple[str, ...], list[str]] = {}   # one copy per chain, shared by its IPs
        for ip, chain in ev.chains.items():
            chain_names = normal.get(chain)
            if chain_names is None:
                chain_names = normal[chain] = [normalise(n) for n in chain]
            names = by_ip.touch(ip + scope, dict)
            for n in chain_names:
                if n in names:
                    del names[n]                    # re-inserted: dict order is recency order
                else:
                    by_ip.hold(len(n))
                names[n] = None
                key = n + scope
                if key not in resolved:
                    resolved.hold(len(key))
                resolved.put(key, None)
            while len(names) > NAMES_PER_IP:
                old = next(iter(names))
                del names[old]
                by_ip.release(len(old))
            by_ip.trim()
        resolved.trim()

    def flow_named(self, ev: FlowNamed) -> None:
        flow = ev.flow
        sni = normalise(flow.sni or flow.quic_sni)
        # Through a SOCKS proxy the SNI is meant for the proxy's target, never for the
        # proxy's address, and it names nothing the policy accepts (name source `socks`).
        if not flow.egress or not sni or flow.socks is not None:
            return
        if flow.http_host is not None:
            host = http_host(flow.http_host)        # the CONNECT target without its port
            if host is not None:
                self._through_connect(flow, sni, host)
            return
        ip = flow.server_ip + flow.name_scope
        names = self.by_ip.get(ip)
        if not names:
            return  # DNS never named this address: nothing to contradict (see direct_ip)
        self.by_ip.move_to_end(ip)
        if sni in names or sni in (normalise(n) for n in flow.dns_chain):
            return
        reg = registered_domain(sni)
        if any(registered_domain(n) == reg for n in names):
            return
        evidence = {
            "client": flow.client_ip,
            "sni": sni,
            "resolved_names": list(names)[-5:],
            "resolved_name_count": len(names),
            "sni_resolved_elsewhere": sni + flow.name_scope in self.resolved,
            "transport": flow.transport,
            "port": flow.server_port,
        }
        self.fire(flow.last, "medium", flow.server_ip, evidence, flow, destination_domain=sni)

    def _through_connect(self, flow, sni: str, host: str) -> None:
        if sni == host or registered_domain(sni) == registered_domain(host):
            return
        evidence = {
            "client": flow.client_ip,
            "sni": sni,
            "resolved_names": [],
            "resolved_name_count": 0,
            "sni_resolved_elsewhere": sni + flow.name_scope in self.resolved,
            "transport": flow.transport,
            "port": flow.server_port,
            "connect_host": host,
        }
        self.fire(flow.last, "medium", flow.server_ip, evidence, flow, destination_domain=sni)
