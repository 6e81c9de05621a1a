"""Naming a flow from its first client payload (SPEC §7).

TLS ClientHello SNI (reassembled across TCP segments) > QUIC Initial SNI (CRYPTO frames
reassembled across Initial packets) > HTTP Host (HTTP/1.x, or the first cleartext HTTP/2
request's `:authority`; an HTTP CONNECT, the one flow with both, is named by its Host) > the
client's most recent unexpired DNS answer for the server IP
(the queried name, not the CNAME target) > none. The name is settled once — at the first
client payload that decodes to a verdict-worthy answer, or when the flow ends without one —
and the per-flow buffers are released right away (an h2c connection is handed to
`track.h2c`, which keeps reading it for DNS over HTTPS).

Proxies: after an HTTP CONNECT or a SOCKS request, the bytes the client sends through the
tunnel are read for a ClientHello too. A CONNECT flow is named by its Host, as any HTTP flow
(what the firewall reads at the start of the stream); the SNI inside is kept as evidence. A SOCKS flow is named `socks`: by the domain it asked
for, else the SNI inside, else as any flow. It goes to the proxy, and that is what the
managed network's firewall sees and judges (its address, its port, no SNI or Host at the
start of the stream), so `socks` never satisfies an FQDN rule; the target is recorded.
"""
from __future__ import annotations

from auditor import hostnames
from auditor import addresses
from auditor.decode import h2, http, ja4, quic, socks, tls
from auditor.decode.outcome import MALFORMED, NEED_MORE, NOT_THIS
from auditor.decode.text import clipped, clipped_protocols
from auditor.flow import Flow
from auditor.telemetry import Layer, Telemetry
from auditor.track.flows import TCP, UDP
from auditor.track.h2c import H2Conn
from auditor.track.names import NameCache
from auditor.track.state import state
from auditor.track.streams import Budget, StreamPrefix

MAX_CLIENT_PREFIX = 65536   # a ClientHello with post-quantum key shares is ~2 KB; HTTP headers 16 KB
MAX_QUIC_DATAGRAMS = 8      # a ClientHello never needs more Initial packets than this
# An invalid name is kept as evidence, cut here once for every reader (the flow event and
# the `direct_ip` finding): a Host may be 16 KiB, an :authority as long, an SNI 64 KiB.
MAX_INVALID_NAME = 512


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
    (the policy needs it for private endpoints, the SNI-mismatch detector for evidence).
    Called again if a conflicting retransmission makes the presented name untrustworthy."""
    hit = names.lookup(flow.client_ip + flow.name_scope, flow.server_ip, now)
    if hit is not None:
        flow.dns_chain, flow.dns_trusted = hit[1], hit[2]
    flow.domain, flow.name_source = None, "none"
    presented = None if flow.ambiguous else _presented(flow)
    if presented is not None:
        flow.domain, flow.name_source = presented
    elif hit is not None:
        flow.domain, flow.name_source = hit[0], "dns"
    flow.named = True
    st = flow.track_state
    if st is not None:
        st.quic = None
        stream = st.client_stream
        if stream is not None and flow.app_protocol != "dns":
            st.client_stream = None
            if flow.proto == TCP and not flow.ambiguous:
                stream.freeze()                 # compared against until the server ACKs it
                st.watch = stream
            else:
                stream.release()


def _presented(flow: Flow) -> tuple[str, str] | None:
    """The name the client presented (SNI, QUIC SNI, HTTP Host, SOCKS target), if it
    strictly is one."""
    if flow.socks is not None:
        return _socks_name(flow)
    if flow.http_host:
        # Before the SNI: a flow with both started with an HTTP CONNECT, and the firewall
        # judges what starts the stream (the request's Host); the ClientHello after it goes
        # through the proxy unseen, so it is kept as evidence only. Otherwise a CONNECT to
        # any proxy on port 443 followed by an allowed SNI would pass for that SNI.
        host = hostnames.http_host(flow.http_host)
        if host is None:
            flow.invalid_name = flow.http_host[:MAX_INVALID_NAME]
            return None
        return host, "http_host"
    for raw, source in ((flow.sni, "sni"), (flow.quic_sni, "quic_sni")):
        if raw:
            return _strict(flow, raw, source)
    return None


def _socks_name(flow: Flow) -> tuple[str, str] | None:
    """The SOCKS target domain, else the SNI sent through the tunnel; an address target
    names nothing here (the proxy's own DNS name may still name the flow)."""
    req = flow.socks
    if req.domain and not addresses.is_ip(req.host):
        return _strict(flow, req.host, "socks")
    if flow.sni:
        return _strict(flow, flow.sni, "socks")
    return None


def _strict(flow: Flow, raw: str, source: str) -> tuple[str, str] | None:
    """`raw` as a strict host name from `source`; one that is not names nothing and is kept
    as evidence."""
    name = hostnames.wire_host(raw)
    if name is None:
        flow.invalid_name = raw[:MAX_INVALID_NAME]
        return None
    return name, source


def _hello(flow: Flow, hello: tls.ClientHello, transport: str, fingerprints: ja4.Fingerprints) -> None:
    """What the events record of a ClientHello: version, ALPN, ECH, the JA4 fingerprint."""
    flow.ech, flow.alpn = hello.ech, clipped_protocols(hello.alpn)
    flow.tls_version = ja4.tls_version(hello)
    flow.ja4 = fingerprints.ja4(hello, transport)


def client_payload(flow: Flow, seq: int, payload: bytes, telemetry: Telemetry,
                   budget: Budget | None = None,
                   fingerprints: ja4.Fingerprints | None = None) -> bool:
    """Feed one client->server payload of an unnamed flow; True once the name is settled.
    `fingerprints` is the run's JA4 cache (a private one when not given)."""
    if fingerprints is None:
        fingerprints = ja4.Fingerprints()
    if flow.proto == TCP:
        return _tcp(flow, seq, payload, telemetry, budget, fingerprints)
    if flow.proto == UDP and payload and payload[0] & 0xC0 == 0xC0:  # QUIC long header
        return _quic(flow, payload, telemetry, fingerprints)
    return True


def _tcp(flow: Flow, seq: int, payload: bytes, telemetry: Telemetry, budget: Budget | None,
         fingerprints: ja4.Fingerprints) -> bool:
    st = state(flow)
    stream = st.client_stream
    if stream is None:
        stream = st.client_stream = StreamPrefix(MAX_CLIENT_PREFIX, isn=st.client_isn, budget=budget)
    if not stream.add(seq, payload):
        return False
    walk = st.hello_walk
    if walk is not None and not stream.overflowed and walk.undecided(stream.data):
        return False
    buf = bytes(stream.data)
    if st.tunnel_at:
        return _tunnel(flow, buf[st.tunnel_at:], stream.overflowed, telemetry, fingerprints)
    if buf[:len(h2.PREFACE)] == h2.PREFACE[:len(buf)]:       # h2c with prior knowledge
        if len(buf) < len(h2.PREFACE):
            return stream.overflowed
        # Read on a stream of its own from here on (the tracker feeds both); this one keeps
        # the bytes up to the request that names the flow, watched for retransmissions after.
        st.h2 = H2Conn(_copy_from(stream, 0, budget), budget)
        flow.app_protocol = "http"
        return False
    if buf[0] in (4, 5):
        return _socks(flow, buf, stream.overflowed, telemetry, fingerprints)
    if buf[0] == 0x16:
        hello = tls.parse_records(buf)
        if isinstance(hello, tls.ClientHello):
            _hello(flow, hello, "t", fingerprints)
            flow.sni, flow.app_protocol = clipped(hello.sni), "tls"
            return True
        if hello is NEED_MORE and not stream.overflowed:
            if st.hello_walk is None:
                st.hello_walk = tls.RecordWalk()
            return False
        if hello is MALFORMED or hello is NEED_MORE:
            telemetry.bad(Layer.TLS)
        return True
    request = http.parse_request(buf)
    if isinstance(request, http.HttpRequest):
        flow.http_host, flow.app_protocol = clipped(request.host), "http"
        flow.doh = h2.doh_path(request.target)      # DoH over HTTP/1: flagged, not decoded
        if request.method == "CONNECT":  # a proxy tunnel: the TLS inside is read as evidence
            st.tunnel_at = buf.find(b"\r\n\r\n") + 4
            return _tunnel(flow, buf[st.tunnel_at:], stream.overflowed, telemetry, fingerprints)
        if request.h2c_upgrade and b"\r\n\r\n" in buf:
            # HTTP/2 follows the server's 101: followed as h2c with prior knowledge is (DoH
            # inside must not hide behind an upgrade), on a stream of its own from the byte
            # after this head; this one stays the flow's, watched for retransmissions.
            st.h2 = H2Conn(_copy_from(stream, buf.find(b"\r\n\r\n") + 4, budget), budget,
                           upgraded=True)
        return True
    if request is NEED_MORE and not stream.overflowed:
        return False
    if request is MALFORMED:
        telemetry.bad(Layer.HTTP)
    return True


def _copy_from(stream: StreamPrefix, offset: int, budget: Budget | None) -> StreamPrefix:
    """A new stream holding `stream`'s bytes from `offset` on, at the same sequence numbers."""
    assert stream.base_seq is not None         # set by the first `add`
    at = (stream.base_seq + offset) & 0xFFFFFFFF
    copy = StreamPrefix(MAX_CLIENT_PREFIX, isn=(at - 1) & 0xFFFFFFFF, budget=budget)
    if len(stream.data) > offset:
        copy.add(at, bytes(stream.data[offset:]))
    return copy


def _socks(flow: Flow, buf: bytes, overflowed: bool, telemetry: Telemetry,
           fingerprints: ja4.Fingerprints) -> bool:
    request = socks.parse_client(buf)
    if isinstance(request, socks.SocksRequest):
        flow.socks = request
        state(flow).tunnel_at = request.data_at
        return _tunnel(flow, buf[request.data_at:], overflowed, telemetry, fingerprints)
    if request is NEED_MORE and not overflowed:
        return False
    if request is not NOT_THIS:
        telemetry.bad(Layer.SOCKS)
    return True


def _tunnel(flow: Flow, data: bytes, overflowed: bool, telemetry: Telemetry,
            fingerprints: ja4.Fingerprints) -> bool:
    """Bytes the client sent through an HTTP CONNECT or SOCKS tunnel: look for a ClientHello."""
    if not data:
        return overflowed
    if data[0] != 0x16:
        return True
    hello = tls.parse_records(data)
    if isinstance(hello, tls.ClientHello):
        _hello(flow, hello, "t", fingerprints)
        flow.sni = clipped(hello.sni)
        if flow.socks is not None:
            flow.app_protocol = "tls"
        return True
    if hello is NEED_MORE and not overflowed:
        st = state(flow)
        if st.hello_walk is None:
            st.hello_walk = tls.RecordWalk(st.tunnel_at)
        return False
    if hello is MALFORMED:
        telemetry.bad(Layer.TLS)
    return True


def _quic(flow: Flow, datagram: bytes, telemetry: Telemetry, fingerprints: ja4.Fingerprints) -> bool:
    st = state(flow)
    qs = st.quic
    initial = quic.parse_initial(datagram, qs.key_dcid if qs else None)
    if not isinstance(initial, quic.QuicInitial):
        # Not an Initial: either not QUIC at all, or the handshake moved on without a
        # complete ClientHello; either way nothing more will name this flow.
        if initial is MALFORMED:
            telemetry.bad(Layer.QUIC)
        return True
    if qs is None:
        qs = st.quic = QuicState(initial.dcid)
    qs.datagrams += 1
    flow.app_protocol = "quic"
    for offset, data in initial.crypto:
        qs.crypto.add(offset, data)
    hello = tls.parse_handshake(qs.crypto.contiguous())
    if isinstance(hello, tls.ClientHello):
        _hello(flow, hello, "q", fingerprints)
        flow.quic_sni = clipped(hello.sni)
        return True
    if hello is NEED_MORE:
        return qs.datagrams >= MAX_QUIC_DATAGRAMS
    telemetry.bad(Layer.QUIC)
    return True
