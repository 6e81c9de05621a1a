"""Every real capture in pcaps/real through the real pipeline (`assemble.build`, node networks
0.0.0.0/0 and ::/0, default detector settings): the exact set of detectors that fire per
file. Why each fires is in docs/detectors.md ("Real captures")."""
import pytest

from auditor.assemble import build
from auditor.events import Finding
from auditor.settings import Settings
from auditor.sources.pcap import CaptureFile
from tests.conftest import REAL_PCAPS
from tests.util import Recorder

BYPASS = {"dns_resolver_bypass"}   # none of these were captured behind Azure DNS
TUNNEL = {"dns_resolver_bypass", "dns_tunneling"}
# A name presented to an address no DNS answer in the capture gave (the capture holds no lookup).
UNRESOLVED = {"sni_unresolved"}
EXPECTED = {
    "corrupt-fuzzed-record-header.pcap": set(),
    "dns-cname-chains-espn.pcap": set(),           # responses only: no egress query flow
    # Answers from port 53 whose queries the capture lacks: UDP from port 53 to a public
    # address is not exempt from direct_ip (an upload can pose as DNS replies).
    "dns-edns-ecs-v4v6-udp-tcp.pcap": BYPASS | {"direct_ip"},
    "dns-over-ipv6-kame.pcap": BYPASS,
    "dns-pcapng-multi-interface.pcapng": BYPASS,
    "dns-tcp-multi-message-per-segment.pcap": BYPASS,
    "dns-tcp-simple.pcapng": BYPASS,
    "dns-udp-google-a-aaaa-mx.pcap": BYPASS,
    "dns-wireshark-sample.pcap": BYPASS,
    "dnstunnel-dns2tcp-txt-suricata.pcap": TUNNEL,
    "dnstunnel-dns2tcp.pcap": TUNNEL,
    "dnstunnel-dnscat2.pcap": TUNNEL,
    "dnstunnel-dnsexfiltrator.pcap": TUNNEL,
    "dnstunnel-iodine-null.pcap": TUNNEL,
    "dnstunnel-sods.pcap": TUNNEL,
    # :authority dns.google names it (h2c); no lookup of dns.google in the capture.
    "doh-h2c-cleartext.pcap": {"encrypted_dns"} | UNRESOLVED,
    "http-connect-proxy-tls-ipv6-loopback.pcap": set(),
    # Loopback (not egress unless judge_loopback): nothing is judged.
    "socks-curl-dante-v4-v4a-v5-tls.pcap": set(),
    "socks5-userpass-curl-microsocks-tls.pcap": set(),
    "h2c-prior-knowledge-nghttp.pcap": set(),
    "http-ipv4-and-ipv6.pcapng": set(),
    "http-sll-log4shell.pcap": set(),
    "http-vlan120-host-with-port.pcap": set(),
    "mixed-espn-browsing-dns-http.pcapng": BYPASS,
    "mixed-windows-host-dns-tls-http.pcap": BYPASS,
    "quic-chrome-with-dns.pcap": BYPASS | {"direct_ip"},   # flows already running at capture start
    "quic-chromium-google-de-ipv6.pcap": UNRESOLVED,
    "quic-illustrated-loopback.pcap": set(),
    "quic-kyber-clienthello-multi-initial-ipv6.pcapng": UNRESOLVED,
    "quic-vlan-ipv6-single-initial.pcap": UNRESOLVED,
    "quicv2-echo-loopback.pcap": set(),
    "sll2-http-download-large.pcap": set(),
    "snaplen96-bulk-tcp.pcap": set(),
    "tls-and-quic-ipv6-cloudflare.pcap": UNRESOLVED,
    "tls-clienthello-split-segments.pcap": UNRESOLVED,
    "tls-pppoe-over-qinq.pcap": UNRESOLVED,
    "tls-rawipv4-linktype228.pcap": set(),
    "tls12-clienthello-mtu300.pcap": UNRESOLVED,
    "tls13-curl-with-dns.pcap": BYPASS,
    "tls13-ech-cloudflare.pcap": {"direct_ip"} | UNRESOLVED,            # a TLS flow already running at capture start
    "tls13-illustrated-loopback.pcap": set(),
    "tls13-sll2-openjdk.pcap": UNRESOLVED,
    "truncated-file-cut-mid-packet-http.pcap": UNRESOLVED,
    # Tunnels and link types: the carrier flows to public tunnel ends and the lab flows
    # inside them go to addresses no DNS answer in the capture gave.
    "nflog-dns-linktype239.pcap": set(),                 # queries to a private resolver
    "ppp-linktype9-ipv4.pcap": {"direct_ip"},
    "ppp-mpls-bgp-tcp-lsp-ping.pcap": {"direct_ip"},     # BGP/LSP ping between routers
    "tunnel-geneve-options-ssh-icmp.pcap": {"direct_ip"},
    "tunnel-gre-pptp-ppp.pcap": set(),                   # private addresses only
    "tunnel-ipip-4in4.pcap": set(),
    "tunnel-ipip-4in6.pcap": set(),
    "tunnel-ipip-6in4.pcap": {"direct_ip", "dns_resolver_bypass", "sni_unresolved"},
    "tunnel-ipip-6in6.pcap": {"direct_ip"},
    "tunnel-teredo.pcap": {"direct_ip"},                 # to the Teredo server
    "tunnel-vxlan-icmp-arp.pcap": set(),
}
TUNNEL_DOMAINS = {
    "dnstunnel-dns2tcp-txt-suricata.pcap": ("tunnel.com", "long_txt"),
    "dnstunnel-dns2tcp.pcap": ("hsc.fr", "long_txt"),
    "dnstunnel-dnscat2.pcap": ("biillpi.com", "long_txt"),
    "dnstunnel-dnsexfiltrator.pcap": ("hsc.fr", "long_txt"),
    "dnstunnel-iodine-null.pcap": ("pirate.sea", "null_query"),
    "dnstunnel-sods.pcap": ("hsc.fr", "volume"),
}

_cache: dict[str, list[Finding]] = {}


def findings(name: str, **settings) -> list[Finding]:
    if name not in _cache or settings:
        rec = Recorder()
        audit = build(Settings(node_networks=["0.0.0.0/0", "::/0"], **settings), extra=[rec])
        try:
            audit.pipeline.feed(CaptureFile(REAL_PCAPS / name))
        finally:
            audit.pipeline.close()
        if settings:
            return rec.of(Finding)
        _cache[name] = rec.of(Finding)
    return _cache[name]


def test_table_covers_every_capture():
    on_disk = {p.name for p in REAL_PCAPS.iterdir() if p.suffix in (".pcap", ".pcapng")}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_detectors_that_fire(name):
    assert {f.detector for f in findings(name)} == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(TUNNEL_DOMAINS))
def test_tunnel_key_and_reason(name):
    tunnel = [f for f in findings(name) if f.detector == "dns_tunneling"]
    domain, reason = TUNNEL_DOMAINS[name]
    assert [(f.key, f.evidence["reasons"][0]) for f in tunnel] == [(domain, reason)]
    assert tunnel[0].severity in ("high", "critical")


def test_doh_h2c_is_seen_by_its_requests():
    enc = [f for f in findings("doh-h2c-cleartext.pcap") if f.detector == "encrypted_dns"]
    assert [(f.key, f.evidence["via"], f.evidence.get("name")) for f in enc] == [
        ("8.8.4.4", "doh_request", "dns.google")]


def test_bypass_is_silent_when_the_capture_resolver_is_configured():
    assert findings("dns-udp-google-a-aaaa-mx.pcap", dns_servers=["8.8.8.8"]) == []
