"""Reference facts from tshark (Wireshark 4.0) for one capture, normalised for comparison.

This module owns the *reference peer*: it runs ``tshark -T fields`` over a capture and turns
its output into small, hashable facts that the differential tests compare with our JSONL
audit events (SPEC section 9). It never imports ``auditor``; tshark is the only source of truth
here, and every place where we deliberately read tshark differently is written down below and
in ``README.md``.

Facts:

- :func:`sni_by_flow` -- ``{FlowKey: SNI}`` for TLS ClientHellos over TCP and QUIC Initial
  ClientHellos over UDP (the first SNI of each flow key).
- :func:`http_requests` / :func:`first_http_host_by_flow` -- HTTP request Hosts per flow
  (HTTP/1.x ``http.host`` and HTTP/2 ``:authority``, ``http2.headers.authority``).
- :func:`socks_targets` -- ``{FlowKey: (version, host, port)}`` from the first SOCKS request
  of each flow (SOCKS4 address, SOCKS4a domain, SOCKS5 domain or address).
- :func:`dns_responses` / :func:`dns_answer_sets` -- every DNS response, and the multiset of
  ``(id, lower-cased query name, frozenset((type, data)) of A/AAAA/CNAME answers)``.
- :func:`conversations` -- per ``tcp.stream`` / ``udp.stream``: flow key (initiator = SYN
  sender for TCP, else the first packet's sender), frames and IP-layer bytes each way, first
  and last timestamp.

Normalisation decisions (all deliberate, see README.md):

- Flow key = ``FlowKey(transport, client_ip, client_port, server_ip, server_port)``; IPs as
  Python's :mod:`ipaddress` prints them (IPv6 compressed, lower case), ports as ``int``.
- When a frame carries several IP headers (tunnels), SNI, HTTP and DNS facts take the
  innermost; conversations are per layer (``_layers``): the outer UDP of VXLAN/Geneve/Teredo
  and every TCP/UDP inside are each a conversation with the bytes of their own IP header.
  A UDP tunnel's carrier is aggregated as the auditor keys it: one conversation per sender,
  receiver and tunnel port, whatever the source port (``_carrier_stream``), so the outer
  UDP of a VXLAN overlay is one conversation each way, not one per inner flow.
  What follows ICMP in a frame is a quoted header, excluded from conversations.
- IP bytes: ``ip.len``, or ``ipv6.plen + 40`` (header-stated, so snaplen-truncated frames count
  their on-wire size). tshark puts a reassembled IP datagram into its ``udp.stream`` only on
  the *last* fragment's frame; we add every fragment frame (``ip.fragment`` /
  ``ipv6.fragment``), because SPEC section 9 counts frames and header-stated bytes.
- DNS answers come only from the answer section (the RR type list is split per message using
  ``dns.count.*``), so glue in the additional section never leaks in. DNS inside ICMP errors is
  ignored; DNS carried by HTTP/2 (DoH) is reported with ``carrier == "http2"``.
- tshark refuses damaged files midway: it prints what it read and exits nonzero (2). That
  output is accepted; only a run with no output *and* a nonzero exit is an error.
"""
from __future__ import annotations

import functools
import ipaddress
import os
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

TSHARK = shutil.which("tshark") or "tshark"
# Unit separator: tshark joins repeated field occurrences with it. A comma (the usual
# aggregator) can legally appear inside tunnelled DNS labels; 0x1f cannot be confused with
# anything tshark prints for the fields we read.
AGG = "\x1f"
PREFS = (
    "-o", "tls.desegment_ssl_records:TRUE",
    "-o", "tcp.desegment_tcp_streams:TRUE",
    # MicroSocks in socks5-userpass-curl-microsocks-tls.pcap listens on 1081, which tshark
    # does not take for SOCKS (1080 it does); nothing else in the corpus uses the port.
    "-d", "tcp.port==1081,socks",
    # We read VXLAN on Linux's port 8472 by default too; tshark only on 4789 unless told.
    "-d", "udp.port==8472,vxlan",
)
# stderr lines that are noise, not errors
_NOISE = ('Running as user "root"',)
# stderr fragments that mean "damaged file, output up to that point is valid"
_DAMAGED = ("appears to be damaged or corrupt", "cut short in the middle of a packet")

DNS_TYPES = {1: "A", 28: "AAAA", 5: "CNAME"}


class TsharkError(RuntimeError):
    """tshark failed on a capture and produced nothing usable."""


class FlowKey(NamedTuple):
    transport: str  # "tcp" | "udp"
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int

    def __str__(self) -> str:
        c = f"[{self.client_ip}]" if ":" in self.client_ip else self.client_ip
        s = f"[{self.server_ip}]" if ":" in self.server_ip else self.server_ip
        return f"{self.transport} {c}:{self.client_port} -> {s}:{self.server_port}"


class DnsResponse(NamedTuple):
    frame: int
    id: int
    name: str  # lower-cased query name ("" if the message has no question)
    qtype: int | None
    rcode: int | None
    answers: frozenset  # {(type, data)} for A/AAAA/CNAME in the answer section
    carrier: str  # "udp" | "tcp" | "http2" | ...
    flow: FlowKey | None  # client = the querier (destination of the response)


@dataclass
class Conversation:
    key: FlowKey
    stream: int | tuple  # tcp.stream / udp.stream; an aggregated tunnel carrier: its key
    first_ts: float
    last_ts: float
    packets_c2s: int = 0
    packets_s2c: int = 0
    bytes_c2s: int = 0
    bytes_s2c: int = 0
    frames: list = field(default_factory=list, repr=False)

    @property
    def packets(self) -> int:
        return self.packets_c2s + self.packets_s2c

    @property
    def bytes(self) -> int:
        return self.bytes_c2s + self.bytes_s2c


# --------------------------------------------------------------------------- running tshark

def run_fields(path, fields, display_filter=None, prefs=PREFS) -> list[list[list[str]]]:
    """Run ``tshark -T fields`` and return rows; each row is one list of values per field
    (every occurrence, in frame order; empty list when the field is absent)."""
    cmd = [TSHARK, "-n", "-r", os.fspath(path), *prefs, "-T", "fields",
           "-E", "separator=/t", "-E", "occurrence=a", "-E", f"aggregator={AGG}",
           "-E", "quote=n"]
    if display_filter:
        cmd += ["-Y", display_filter]
    for f in fields:
        cmd += ["-e", f]
    proc = subprocess.run(cmd, capture_output=True, env={**os.environ, "LC_ALL": "C.UTF-8"})
    out = proc.stdout.decode("utf-8", "replace")
    err = "\n".join(line for line in proc.stderr.decode("utf-8", "replace").splitlines()
                    if line.strip() and not any(n in line for n in _NOISE))
    if proc.returncode != 0:
        damaged = any(d in err for d in _DAMAGED)
        if not damaged and not out:
            raise TsharkError(f"{path}: tshark exit {proc.returncode}: {err or '(no stderr)'}\n"
                              f"command: {' '.join(cmd)}")
    rows = []
    for line in out.splitlines():
        cols = line.split("\t")
        cols += [""] * (len(fields) - len(cols))
        rows.append([c.split(AGG) if c else [] for c in cols[:len(fields)]])
    return rows


def file_status(path) -> str:
    """'ok', or tshark's one-line complaint about a damaged file (still partially readable)."""
    proc = subprocess.run([TSHARK, "-n", "-r", os.fspath(path), "-T", "fields", "-e",
                           "frame.number"], capture_output=True)
    err = proc.stderr.decode("utf-8", "replace")
    for d in _DAMAGED:
        if d in err:
            return d
    return "ok"


def _ip(text: str) -> str:
    return str(ipaddress.ip_address(text))


def _int(text: str) -> int:
    return int(text, 0)


_ADDR_FIELDS = ["frame.protocols", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
                "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport"]


def _endpoints(row, base=0):
    """(transport, src, sport, dst, dport) from the _ADDR_FIELDS columns at row[base:];
    the innermost IP header wins, None if the frame is not TCP/UDP over IP."""
    protos, ip_s, ip_d, ip6_s, ip6_d, tsp, tdp, usp, udp_ = row[base:base + 9]
    stack = protos[0].split(":") if protos else []
    ip_layers = [p for p in stack if p in ("ip", "ipv6")]
    if not ip_layers:
        return None
    if ip_layers[-1] == "ipv6" and ip6_s:
        src, dst = ip6_s[-1], ip6_d[-1]
    elif ip_s:
        src, dst = ip_s[-1], ip_d[-1]
    else:
        return None
    if tsp:
        return "tcp", _ip(src), int(tsp[-1]), _ip(dst), int(tdp[-1])
    if usp:
        return "udp", _ip(src), int(usp[-1]), _ip(dst), int(udp_[-1])
    return None


_ALL_FIELDS = [
    "frame.number", "frame.time_epoch", *_ADDR_FIELDS,             # 0, 1, 2..10
    "ip.len", "ipv6.plen", "tcp.stream", "udp.stream",              # 11..14
    "tcp.flags.syn", "tcp.flags.ack", "ip.fragment", "ipv6.fragment",  # 15..18
    "tls.handshake.type", "tls.handshake.extensions_server_name", "quic.version",  # 19..21
    "http.request.method", "http.host",                             # 22, 23
    "dns.flags.response", "dns.id", "dns.count.queries", "dns.count.answers",  # 24..27
    "dns.count.auth_rr", "dns.count.add_rr", "dns.qry.name", "dns.qry.type",   # 28..31
    "dns.flags.rcode", "dns.resp.type", "dns.a", "dns.aaaa", "dns.cname",      # 32..36
    "http2.headers.authority",                                                  # 37
    "socks.version", "socks.command", "socks.dst", "socks.dstV6",              # 38..41
    "socks.v4a_dns_name", "socks.remote_name", "socks.dstport", "socks.port",  # 42..45
    "tcp.len", "udp.length", "frame.len", "frame.cap_len",                     # 46..49
]
_F = {name: i for i, name in enumerate(_ALL_FIELDS)}


def _cache(fn):
    """Memoise per (path, mtime, size): every fact is computed once per test session."""
    @functools.lru_cache(maxsize=None)
    def cached(path, _stamp):
        return fn(path)

    @functools.wraps(fn)
    def wrapper(path):
        st = os.stat(path)
        return cached(os.fspath(path), (st.st_mtime_ns, st.st_size))
    return wrapper


@_cache
def frames(path) -> list[list[list[str]]]:
    """One tshark pass over the capture with every field any fact needs (tshark start-up
    dominates on small files, so each capture is read exactly once)."""
    return run_fields(path, _ALL_FIELDS)


def _protos(row) -> list[str]:
    return row[2][0].split(":") if row[2] else []


def _is_icmp(row) -> bool:
    p = _protos(row)
    return "icmp" in p or "icmpv6" in p


# --------------------------------------------------------------------------- TLS / QUIC SNI

@_cache
def client_hellos(path) -> list[tuple[int, FlowKey, str, str]]:
    """Every ClientHello with an SNI: (frame, flow key, sni, kind) where kind is 'sni' for
    TLS over TCP and 'quic_sni' for a QUIC Initial."""
    out = []
    for row in frames(path):
        if "1" not in row[19] or _is_icmp(row):
            continue
        ep = _endpoints(row, 2)
        names = row[20]
        if ep is None or not names:
            continue
        kind = "quic_sni" if ep[0] == "udp" else "sni"
        for name in names:
            out.append((int(row[0][0]), FlowKey(*ep), name.lower().rstrip("."), kind))
    return out


def sni_by_flow(path) -> dict[FlowKey, str]:
    """{flow key -> SNI} of the first ClientHello of each TLS (TCP) and QUIC (UDP) flow."""
    res: dict[FlowKey, str] = {}
    for _frame, key, name, _kind in client_hellos(path):
        res.setdefault(key, name)
    return res


# --------------------------------------------------------------------------- HTTP

@_cache
def http_requests(path) -> list[tuple[int, FlowKey, str, str]]:
    """Every HTTP/1.x request tshark decodes: (frame, flow key, method, Host as sent), and
    every HTTP/2 request's `:authority` (method ''; tshark puts the field only on requests).
    A request without a Host header has host ''."""
    out = []
    for row in frames(path):
        if not (row[22] or row[37]) or _is_icmp(row):
            continue
        ep = _endpoints(row, 2)
        if ep is None:
            continue
        methods, hosts = row[22], row[23]
        for i, method in enumerate(methods):
            host = hosts[i] if i < len(hosts) else ""
            out.append((int(row[0][0]), FlowKey(*ep), method, host))
        for authority in row[37]:
            out.append((int(row[0][0]), FlowKey(*ep), "", authority))
    return out


def http_hosts(path) -> Counter:
    """Multiset of (flow key, Host as sent) over all requests."""
    return Counter((key, host) for _f, key, _m, host in http_requests(path))


def normalise_host(host: str) -> str:
    """HTTP Host -> ECS ``url.domain``: lower case, port and IPv6 brackets stripped,
    trailing dot removed. '[2001:db8::1]:8080' -> '2001:db8::1', 'a.b:8000' -> 'a.b'."""
    h = host.strip().lower()
    if h.startswith("["):
        h = h[1:].split("]", 1)[0]
    elif h.count(":") == 1:
        h = h.split(":", 1)[0]
    return h.rstrip(".")


def first_http_host_by_flow(path) -> dict[FlowKey, str]:
    """{flow key -> normalised Host of the first request on that flow key}."""
    res: dict[FlowKey, str] = {}
    for _f, key, _m, host in http_requests(path):
        res.setdefault(key, normalise_host(host))
    return res


# --------------------------------------------------------------------------- SOCKS

@_cache
def socks_targets(path) -> dict[FlowKey, tuple[int, str, int]]:
    """{flow key -> (version, host, port)} of the first frame per flow with a SOCKS command
    (the client's request; tshark also shows later tunnelled bytes as SOCKS fields, so only
    the first counts). Host: SOCKS4a/SOCKS5 domain as sent, else the address."""
    res: dict[FlowKey, tuple[int, str, int]] = {}
    clients = {c.key for c in conversations(path)}      # client -> server frames only
    for row in frames(path):
        if not row[39] or _is_icmp(row):
            continue
        ep = _endpoints(row, 2)
        if ep is None or FlowKey(*ep) in res or FlowKey(*ep) not in clients:
            continue
        version = _int(row[38][0])
        host = (row[42] or row[43] or row[40] or row[41] or [""])[0]
        if not host:        # a reply, or tunnelled bytes shown as SOCKS: not a request
            continue
        port = (row[44] if version == 4 else row[45]) or ["-1"]
        res[FlowKey(*ep)] = (version, _ip(host) if not (row[42] or row[43]) else host,
                             _int(port[0]))
    return res


# --------------------------------------------------------------------------- DNS

@_cache
def dns_responses(path) -> list[DnsResponse]:
    """Every DNS response message (several per frame for DNS over TCP), in frame order."""
    out = []
    for row in frames(path):
        if "1" not in row[24] or _is_icmp(row):
            continue
        frame = int(row[0][0])
        ep = _endpoints(row, 2)
        (resp, ids, nq, nan, nns, nar, qnames, qtypes, rcodes, rtypes,
         a_vals, aaaa_vals, cname_vals) = row[24:37]
        protos = _protos(row)
        carrier = next((p for p in ("http2", "http", "mdns", "llmnr") if p in protos),
                       ep[0] if ep else "?")
        flow = None
        if ep is not None:  # response: server -> client
            flow = FlowKey(ep[0], ep[3], ep[4], ep[1], ep[2])
        q_i = rr_i = a_i = aaaa_i = cname_i = 0
        for m, is_resp in enumerate(resp):
            n_q = _int(nq[m]) if m < len(nq) else 0
            n_rr = sum(_int(c[m]) if m < len(c) else 0 for c in (nan, nns, nar))
            n_an = _int(nan[m]) if m < len(nan) else 0
            msg_qnames = qnames[q_i:q_i + n_q]
            msg_qtypes = qtypes[q_i:q_i + n_q]
            q_i += n_q
            msg_types = rtypes[rr_i:rr_i + n_rr]
            rr_i += n_rr
            answers = set()
            for j, t in enumerate(msg_types):
                t = int(t)
                if t == 1:
                    data, a_i = (a_vals[a_i] if a_i < len(a_vals) else None), a_i + 1
                elif t == 28:
                    data, aaaa_i = (aaaa_vals[aaaa_i] if aaaa_i < len(aaaa_vals) else None), aaaa_i + 1
                elif t == 5:
                    data, cname_i = (cname_vals[cname_i] if cname_i < len(cname_vals) else None), cname_i + 1
                else:
                    continue
                if j < n_an and data is not None:
                    answers.add(_norm_rdata(DNS_TYPES[t], data))
            if is_resp not in ("1", "True", "true"):
                continue
            out.append(DnsResponse(
                frame=frame, id=_int(ids[m]) if m < len(ids) else -1,
                name=norm_name(msg_qnames[0]) if msg_qnames else "",
                qtype=int(msg_qtypes[0]) if msg_qtypes else None,
                rcode=int(rcodes[m]) if m < len(rcodes) else None,
                answers=frozenset(answers), carrier=carrier, flow=flow))
    return out


def norm_name(name: str) -> str:
    """DNS name as compared: lower case, no trailing dot; tshark's "<Root>" is the root ""."""
    name = name.lower().rstrip(".")
    return "" if name == "<root>" else name


def _norm_rdata(rtype: str, data: str) -> tuple[str, str]:
    if rtype in ("A", "AAAA"):
        return rtype, _ip(data)
    return rtype, norm_name(data)


def dns_answer_sets(path, carriers=("udp", "tcp")) -> Counter:
    """Multiset of (id, lower-cased query name, frozenset((type, data))) for every DNS
    response carried directly over UDP/TCP (pass ``carriers=None`` for all, incl. DoH)."""
    return Counter((r.id, r.name, r.answers) for r in dns_responses(path)
                   if carriers is None or r.carrier in carriers)


# --------------------------------------------------------------------------- conversations

def _layers(row):
    """Every TCP/UDP layer of a frame, outermost first, each as (endpoints, stream index,
    syn, ack, header-stated IP bytes of the IP header around it). The occurrences of each
    field are consumed in frame.protocols order, so a tunnel's outer UDP and its inner
    TCP/UDP each get their own addresses and bytes; what follows ICMP is a quote, not a
    layer."""
    protos = row[2][0].split(":") if row[2] else []
    ip_s, ip_d, ip6_s, ip6_d, tsp, tdp, usp, udp_ = row[3:11]
    ip_len, ip6_plen, tstream, ustream, syn, ack = row[11], row[12], row[13], row[14], row[15], row[16]
    n = {"ip": 0, "ipv6": 0, "tcp": 0, "udp": 0}
    ip = None
    out = []
    for p in protos:
        if p in ("icmp", "icmpv6"):
            break
        if p == "ip" and n["ip"] < len(ip_s):
            i = n["ip"]
            ip = (ip_s[i], ip_d[i], int(ip_len[i]) if i < len(ip_len) else 0)
            n["ip"] += 1
        elif p == "ipv6" and n["ipv6"] < len(ip6_s):
            i = n["ipv6"]
            ip = (ip6_s[i], ip6_d[i], int(ip6_plen[i]) + 40 if i < len(ip6_plen) else 0)
            n["ipv6"] += 1
        elif p in ("tcp", "udp") and ip is not None:
            i = n[p]
            n[p] += 1
            sports, dports, streams = (tsp, tdp, tstream) if p == "tcp" else (usp, udp_, ustream)
            if i >= len(sports) or i >= len(streams):
                continue
            ep = (p, _ip(ip[0]), int(sports[i]), _ip(ip[1]), int(dports[i]))
            is_syn = p == "tcp" and i < len(syn) and syn[i] in ("1", "True")
            is_ack = p == "tcp" and i < len(ack) and ack[i] in ("1", "True")
            out.append((ep, (p, int(streams[i])), is_syn, is_ack, ip[2]))
    return out


_UDP_TUNNEL_PORTS = frozenset((4789, 8472, 6081, 3544))   # the auditor's defaults


def _carrier_stream(ep, sk, depth, carriers):
    """A UDP tunnel carrier as the auditor keys it (track/tracker.py `_carrier`): a datagram
    to the tunnel port (the lower port, as the auditor decides even where tshark opens no
    tunnel) belongs to one flow per (sender, receiver, tunnel port), whatever its source
    port (per-inner-flow entropy); a datagram from the tunnel port is that flow's answer if
    the flow already exists (every address is a node address in this harness, so the
    auditor's exception for the node's sends on a non-egress flow never applies)."""
    transport, src, sport, dst, dport = ep
    if transport != "udp" or sport == dport:
        return ep, sk
    if dport < sport and dport in _UDP_TUNNEL_PORTS:
        agg = (src, dst, dport, depth)
        carriers.setdefault(agg, sport)
        return ("udp", src, -1, dst, dport), ("udp", agg)
    if sport < dport and sport in _UDP_TUNNEL_PORTS and (dst, src, sport, depth) in carriers:
        return ("udp", src, sport, dst, -1), ("udp", (dst, src, sport, depth))
    return ep, sk


@_cache
def conversations(path) -> list[Conversation]:
    """One entry per tshark ``tcp.stream`` and ``udp.stream``, in stream-start order; a
    tunnel's outer UDP flow and the flows inside it are conversations of their own."""
    rows = frames(path)
    carriers: dict[tuple, int] = {}   # aggregated UDP tunnel carrier -> its first real port
    frame_info: dict[int, tuple[float, int]] = {}  # frame -> (ts, header-stated IP bytes)
    per_stream: dict[tuple[str, int], list] = {}
    for row in rows:
        frame, ts = int(row[0][0]), float(row[1][0])
        protos = row[2][0].split(":") if row[2] else []
        ip_len, ip6_plen = row[11], row[12]
        frame_info[frame] = (ts, _ip_bytes(protos, ip_len, ip6_plen))
        frags = [int(x) for x in (row[17] or row[18])]
        for depth, (ep, sk, syn, ack, ipb) in enumerate(_layers(row)):
            ep, sk = _carrier_stream(ep, sk, depth, carriers)
            # tshark reassembles only the outermost IP; inner layers are never fragments here
            per_stream.setdefault(sk, []).append((frame, ts, ep, syn, ack, ipb,
                                                  frags if depth == 0 else []))

    convs = []
    for (transport, stream), pkts in per_stream.items():
        client = None
        if transport == "tcp":
            for _f, _ts, ep, syn, ack, _b, _fr in pkts:
                if syn and not ack:
                    client = (ep[1], ep[2])
                    break
            if client is None:
                for _f, _ts, ep, syn, ack, _b, _fr in pkts:
                    if syn and ack:
                        client = (ep[3], ep[4])
                        break
        if client is None:
            ep = pkts[0][2]
            client = (ep[1], ep[2])
        any_ep = pkts[0][2]
        if (any_ep[1], any_ep[2]) == client:
            key = FlowKey(transport, any_ep[1], any_ep[2], any_ep[3], any_ep[4])
        else:
            key = FlowKey(transport, any_ep[3], any_ep[4], any_ep[1], any_ep[2])
        conv = Conversation(key=key, stream=stream, first_ts=pkts[0][1], last_ts=pkts[-1][1])
        if isinstance(stream, tuple):          # an aggregated carrier: its first real port
            conv.key = key._replace(client_port=carriers[stream])
        for frame, ts, ep, _syn, _ack, ipb, frags in pkts:
            members = frags if frags else [frame]
            n = len(members)
            b = sum(frame_info.get(f, (ts, 0))[1] for f in members) if frags else ipb
            for f in members:
                t = frame_info.get(f, (ts, 0))[0]
                conv.first_ts = min(conv.first_ts, t)
                conv.last_ts = max(conv.last_ts, t)
            if (ep[1], ep[2]) == (key.client_ip, key.client_port):
                conv.packets_c2s += n
                conv.bytes_c2s += b
            else:
                conv.packets_s2c += n
                conv.bytes_s2c += b
            conv.frames.extend(members)
        convs.append(conv)
    convs.sort(key=lambda c: (c.first_ts, c.key.transport,
                             c.stream if isinstance(c.stream, int) else -1))
    return convs


def _ip_bytes(protos, ip_len, ip6_plen) -> int:
    """Header-stated IP length of the outermost IP header of a frame (0 if none)."""
    for p in protos:
        if p == "ip" and ip_len:
            return int(ip_len[0])
        if p == "ipv6" and ip6_plen:
            return int(ip6_plen[0]) + 40
    return 0


# --------------------------------------------------------------------------- L4 payloads

@_cache
def l4_payload_lengths(path) -> dict[int, tuple[str, int]]:
    """{frame -> (transport, payload bytes)} for frames with one TCP or UDP header over one
    IP header, neither an IP fragment nor a quoted header (ICMP), and not cut by the snaplen:
    ``tcp.len`` (what the IP, TCP and link lengths leave), ``udp.length`` - 8."""
    out = {}
    for row in frames(path):
        p = _protos(row)
        if _is_icmp(row) or p.count("ip") + p.count("ipv6") != 1 or row[17] or row[18]:
            continue
        if not row[48] or row[48] != row[49]:
            continue
        if "tcp" in p and len(row[46]) == 1:
            out[int(row[0][0])] = ("tcp", int(row[46][0]))
        elif "udp" in p and len(row[47]) == 1:
            out[int(row[0][0])] = ("udp", int(row[47][0]) - 8)
    return out


# --------------------------------------------------------------------------- summary

def summary(path) -> dict[str, int]:
    """Counts of each kind of fact, for reports and harness sanity tests."""
    return {
        "sni": len(sni_by_flow(path)),
        "http_requests": len(http_requests(path)),
        "http_flows": len(first_http_host_by_flow(path)),
        "dns_responses": sum(dns_answer_sets(path).values()),
        "dns_doh": sum(1 for r in dns_responses(path) if r.carrier not in ("udp", "tcp")),
        "conversations": len(conversations(path)),
    }


if __name__ == "__main__":  # python tests/differential/tshark.py FILE... -> fact counts
    import sys
    for p in sys.argv[1:]:
        print(os.path.basename(p), summary(p))
