"""Naming a flow from its first client payload (SPEC §7).

TLS ClientHello SNI (reassembled across TCP segments) > QUIC Initial SNI (CRYPTO frames
reassembled across Initial packets) > HTTP Host > the client's most recent unexpired DNS
answer for the server IP (the queried name, not the CNAME target) > none. The name is
settled once — at the first client payload that decodes to a verdict-worthy answer, or when
the flow ends without one — and the per-flow buffers are released right away.
"""
from __future__ import annotations

from auditor.decode import http, quic, tls
from auditor.track.flows import TCP, UDP, Flow
from auditor.track.names import NameCache
from auditor.track.streams import StreamPrefix

MAX_CLIENT_PREFIX = 65536   # a ClientHello with post-quantum key shares is ~2 KB; HTTP headers 16 KB
MAX_QUIC_DATAGRAMS = 8      # a ClientHello never needs more Initial packets than this


class QuicState:
    """Per-flow QUIC Initial state: the DCID the client's Initial keys derive from, and the
    CRYPTO stream being reassembled."""
    __slots__ = ("key_dcid", "crypto", "datagrams")

    def __init__(self, key_dcid: bytes):
        self.key_dcid = key_dcid
        self.crypto = quic.CryptoAssembler()
        self.datagrams = 0


def settle(flow: Flow, names: NameCache, now: float) -> None:
    """Fix the flow's name and name source; attach the DNS chain whatever named the flow
    (the policy needs it for private endpoints, the SNI-mismatch detector for evidence)."""
    hit = names.lookup(flow.client_ip, flow.server_ip, now)
    if hit is not None:
        flow.dns_chain = hit[1]
    if flow.sni:
        flow.domain, flow.name_source = flow.sni, "sni"
    elif flow.quic_sni:
        flow.domain, flow.name_source = flow.quic_sni, "quic_sni"
    elif flow.http_host:
        flow.domain, flow.name_source = http.host_name(flow.http_host), "http_host"
    elif hit is not None:
        flow.domain, flow.name_source = hit[0], "dns"
    flow.named = True
    flow.quic = None
    if flow.app_protocol != "dns":
        flow.client_stream = None


def client_payload(flow: Flow, seq: int, payload: bytes, malformed: dict[str, int]) -> bool:
    """Feed one client->server payload of an unnamed flow; True once the name is settled."""
    if flow.proto == TCP:
        return _tcp(flow, seq, payload, malformed)
    if flow.proto == UDP and payload and payload[0] & 0xC0 == 0xC0:  # QUIC long header
        return _quic(flow, payload, malformed)
    return True


def _tcp(flow: Flow, seq: int, payload: bytes, malformed: dict[str, int]) -> bool:
    stream = flow.client_stream
    if stream is None:
        stream = flow.client_stream = StreamPrefix(MAX_CLIENT_PREFIX, isn=flow.client_isn)
    if not stream.add(seq, payload):
        return False
    buf = bytes(stream.data)
    if flow.tunnel_at:
        return _tunnel(flow, buf[flow.tunnel_at:], stream.overflowed, malformed)
    if buf[0] == 0x16:
        hello = tls.parse_records(buf)
        if isinstance(hello, tls.ClientHello):
            flow.sni, flow.ech, flow.app_protocol = hello.sni, hello.ech, "tls"
            return True
        if hello == tls.NEED_MORE and not stream.overflowed:
            return False
        if hello == tls.MALFORMED or hello == tls.NEED_MORE:
            malformed["tls"] = malformed.get("tls", 0) + 1
        return True
    request = http.parse_request(buf)
    if isinstance(request, http.HttpRequest):
        flow.http_host, flow.app_protocol = request.host, "http"
        if request.method == "CONNECT":  # a proxy tunnel: the TLS inside names the real peer
            flow.tunnel_at = buf.find(b"\r\n\r\n") + 4
            return _tunnel(flow, buf[flow.tunnel_at:], stream.overflowed, malformed)
        return True
    if request == http.NEED_MORE and not stream.overflowed:
        return False
    if request == http.MALFORMED:
        malformed["http"] = malformed.get("http", 0) + 1
    return True


def _tunnel(flow: Flow, data: bytes, overflowed: bool, malformed: dict[str, int]) -> bool:
    """Bytes the client sent through an HTTP CONNECT tunnel: look for a ClientHello."""
    if not data:
        return overflowed
    if data[0] != 0x16:
        return True
    hello = tls.parse_records(data)
    if isinstance(hello, tls.ClientHello):
        flow.sni, flow.ech = hello.sni, hello.ech
        return True
    if hello == tls.NEED_MORE and not overflowed:
        return False
    if hello == tls.MALFORMED:
        malformed["tls"] = malformed.get("tls", 0) + 1
    return True


def _quic(flow: Flow, datagram: bytes, malformed: dict[str, int]) -> bool:
    state = flow.quic
    initial = quic.parse_initial(datagram, state.key_dcid if state else None)
    if not isinstance(initial, quic.QuicInitial):
        # Not an Initial: either not QUIC at all, or the handshake moved on without a
        # complete ClientHello; either way nothing more will name this flow.
        if initial == quic.MALFORMED:
            malformed["quic"] = malformed.get("quic", 0) + 1
        return True
    if state is None:
        state = flow.quic = QuicState(initial.dcid)
    state.datagrams += 1
    flow.app_protocol = "quic"
    for offset, data in initial.crypto:
        state.crypto.add(offset, data)
    hello = tls.parse_handshake(state.crypto.contiguous())
    if isinstance(hello, tls.ClientHello):
        flow.quic_sni, flow.ech = hello.sni, hello.ech
        return True
    if hello == tls.NEED_MORE:
        return state.datagrams >= MAX_QUIC_DATAGRAMS
    malformed["quic"] = malformed.get("quic", 0) + 1
    return True
