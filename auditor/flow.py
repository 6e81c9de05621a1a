"""The flow record: one bidirectional conversation as every stage after the tracker sees it.

Identity (transport and both endpoints, the client being the initiator), counters, what named
it, and the verdict. A plain slotted object that a test can build from keyword fields
(`Flow(transport="tcp", client_ip="10.0.0.5", server_ip="20.1.2.3", server_port=443,
sni="pypi.org")`); the tracker's private reassembly state hangs off `track_state` and is
released once the flow is named.

Written by the tracker (counts, names), the judge (`verdict`); read by detectors and sinks.
"""
from __future__ import annotations

from typing import Any

# ECS `network.transport` keywords (IANA names, lower case): ICMPv6 is "ipv6-icmp"; GRE,
# IPv4 (IP-in-IP) and IPv6 (IPv6-in-IP) name tunnel carriers.
TRANSPORT_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "ipv6-icmp", 47: "gre", 4: "ipv4", 41: "ipv6"}
PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1, "ipv6-icmp": 58, "gre": 47, "ipv4": 4, "ipv6": 41}


class Flow:
    __slots__ = (
        "key", "proto", "transport", "client_ip", "client_port", "server_ip", "server_port",
        "start", "last", "start_ns", "last_ns", "c_packets", "c_bytes", "s_packets", "s_bytes",
        "fin_c", "fin_s", "rst", "server_seen", "egress", "midstream",
        "named", "sni", "quic_sni", "http_host", "domain", "name_source", "app_protocol",
        "dns_chain", "dns_trusted", "ech", "ambiguous", "invalid_name", "tls_version", "alpn",
        "ja4", "socks", "doh", "icmp_type", "icmp_code", "flow_id", "community_id", "owner", "verdict",
        "track_state", "tunnel", "name_scope", "carrier", "chain_chars",
    )

    def __init__(self, *, transport: str = "tcp", client_ip: str = "", client_port: int = 0,
                 server_ip: str = "", server_port: int = 0, start: float = 0.0,
                 last: float | None = None, key: tuple | None = None, egress: bool = True,
                 midstream: bool = False, **fields: Any) -> None:
        self.proto = PROTOCOL_NUMBERS.get(transport, 0)
        self.transport = transport
        self.key = key if key is not None else (self.proto, client_ip, client_port, server_ip,
                                                server_port)
        self.client_ip, self.client_port = client_ip, client_port
        self.server_ip, self.server_port = server_ip, server_port
        self.start = start
        self.last = start if last is None else last
        # Exact capture times (int ns) when the source has them: durations from these.
        self.start_ns: int | None = None
        self.last_ns: int | None = None
        self.c_packets = self.c_bytes = self.s_packets = self.s_bytes = 0
        self.fin_c = self.fin_s = self.rst = self.server_seen = False
        self.egress = egress
        # Began before the capture (a TCP flow first seen without its SYN): its name may
        # have been settled (SNI, DNS) before we could see it.
        self.midstream = midstream
        self.named = False
        self.sni: str | None = None
        self.quic_sni: str | None = None
        self.http_host: str | None = None
        self.domain: str | None = None
        self.name_source = "none"
        self.app_protocol: str | None = None
        self.dns_chain: tuple[str, ...] = ()
        # The DNS answer that named it came from a configured resolver (dns_servers, or the
        # platform resolver): only such an answer may lead to a private endpoint.
        self.dns_trusted = False
        self.ech = False
        # Retransmitted bytes disagreed with the copy that named the flow: its SNI/Host
        # cannot be trusted to be what the server got, so they name nothing.
        self.ambiguous = False
        # An SNI or Host that is not a strictly valid host name (kept as evidence).
        self.invalid_name: str | None = None
        # From the ClientHello, where one was seen.
        self.tls_version: str | None = None
        self.alpn: tuple[str, ...] = ()
        self.ja4: str | None = None
        # What the client asked a SOCKS proxy to connect to (decode.socks.SocksRequest): the
        # flow itself goes to the proxy, which is what the policy judges.
        self.socks: Any = None
        # A cleartext HTTP/2 request on it looked like DNS over HTTPS (path, content type).
        self.doh = False
        self.icmp_type: int | None = None      # ICMP flows: from the first packet
        self.icmp_code: int | None = None
        self.flow_id: str | None = None        # assigned by the event sinks on first use
        self.community_id: str | None = None
        self.owner: Any = None                 # the workload that opened it (live attribution)
        self.verdict: Any = None
        self.track_state: Any = None
        # Inside a tunnel: the `decode.tunnel.Encap` chain (outer source on the client's
        # side), and the suffix that scopes the flow's DNS state to that tunnel, so a crafted
        # inner DNS answer cannot name the node's own flows.
        self.tunnel: Any = None
        self.name_scope = ""
        # It carries a tunnel (VXLAN/Geneve/Teredo UDP, GRE, IP-in-IP): the packets inside
        # are flows of their own, so its bytes are those bytes again plus the headers.
        self.carrier = False
        # Characters of the DNS chain it holds, counted against the tracker's budget for
        # chains the name cache may already have let go of.
        self.chain_chars = 0
        for name, value in fields.items():
            setattr(self, name, value)

    @property
    def closed(self) -> bool:
        return self.rst or (self.fin_c and self.fin_s)

    def __repr__(self) -> str:
        return (f"Flow({self.transport} {self.client_ip}:{self.client_port} -> "
                f"{self.server_ip}:{self.server_port} name={self.domain!r} via {self.name_source})")
