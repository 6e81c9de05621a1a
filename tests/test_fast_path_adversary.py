"""The compiled fast path against packets a job on the node chooses.

The fast path counts a packet of a known, named flow in C and skips the Python tracker, so a
job that could make it take the wrong packets would hide them: a FIN or RST that must end the
flow, a first client payload that names it, DNS on a carrier, IPv4 options or fragments that
move the headers, the same 5-tuple inside and outside VXLAN. Hypothesis writes sequences of such
packets over a few reused 5-tuples, IPv4 and IPv6, over Ethernet or Linux SLL (after a DNS answer that names the servers, so the fast
path is live) and the whole replay must give the same events and metrics under either core.
The capture is built here with scapy; nothing is stored.
"""
from __future__ import annotations

import ssl

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP, IPOption_NOP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import CookedLinux, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw
from scapy.utils import wrpcap

# (importing test_twins skips this module where the compiled core was not built, and fails
# it where EGRESS_AUDITOR_REQUIRE_COMPILED=1 says it must have been)
from tests.test_twins import _same_under_either_core, telemetry_of_audit

NODE, NODE6 = "10.0.0.5", "fd00::5"
SERVERS = ["20.1.2.3", "52.4.5.6", "151.101.0.223", "2606:4700::6810:1", "2a04:4e42::223"]
NAMES = ["pypi.org", "files.pythonhosted.org", "evil.example", "huggingface.co", "cdn.example"]


def _client_hello(name: str) -> bytes:
    """A real OpenSSL ClientHello record for `name` (what a client sends first)."""
    context = ssl.create_default_context()
    tls = context.wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname=name)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


HELLO = _client_hello("pypi.org")

packet = st.fixed_dictionaries({
    "server": st.integers(0, len(SERVERS) - 1),
    # mostly the handshaken flows' own ports, so most packets land on a known, named flow
    "sport": st.sampled_from([40000, 40000, 40000, 40001, 53, 4789]),
    "dport": st.sampled_from([443, 443, 443, 443, 80, 53, 4789, 8472, 8080]),
    "udp": st.sampled_from([False, False, False, True]),
    "outbound": st.booleans(),
    "flags": st.sampled_from(["S", "SA", "A", "PA", "FA", "R", "RA", ""]),
    "payload": st.sampled_from([b"", b"GET / HTTP/1.1\r\nHost: pypi.org\r\n\r\n", HELLO,
                                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"\x05\x01\x00", b"x" * 700]),
    "options": st.booleans(),
    "fragment": st.sampled_from([0, 0, 0, 1, 2]),
    "vxlan": st.booleans(),
    # seconds since the packet before: past the closed-flow linger (10 s) and the idle timeouts,
    # so a FIN or RST the fast path missed would change when and why a flow ends
    "gap": st.sampled_from([0.001, 0.001, 0.001, 12.0, 700.0]),
})


def _ether():
    # explicit addresses: scapy would otherwise look up (and wait for) each neighbour
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def _link(link: str, outbound: bool):
    """The capture's own link layer: Ethernet, or Linux cooked capture (`tcpdump -i any`)."""
    if link == "sll":
        return CookedLinux(pkttype=4 if outbound else 0, lladdrtype=1, lladdrlen=6,
                           src=b"\x02\x00\x00\x00\x00\x01\x00\x00")
    return _ether()


def _ip(src: str, dst: str, options: bool, fragment: int):
    """IPv4 with options or fragment fields, or IPv6 with a hop-by-hop or fragment header."""
    if ":" not in src:
        ip = IP(src=src, dst=dst, options=[IPOption_NOP()] * 4 if options else [])
        if fragment == 1:
            ip.flags = "MF"
        elif fragment == 2:
            ip.frag = 8
        return ip
    ip6 = IPv6(src=src, dst=dst)
    if options:
        ip6 = ip6 / IPv6ExtHdrHopByHop()
    if fragment:
        ip6 = ip6 / IPv6ExtHdrFragment(m=int(fragment == 1), offset=int(fragment == 2), id=9)
    return ip6


def _frame(p: dict, ts: float, link: str = "ether"):
    server = SERVERS[p["server"]]
    node = NODE6 if ":" in server else NODE
    src, dst = (node, server) if p["outbound"] else (server, node)
    sport, dport = (p["sport"], p["dport"]) if p["outbound"] else (p["dport"], p["sport"])
    ip = _ip(src, dst, p["options"], p["fragment"])
    l4 = UDP(sport=sport, dport=dport) if p["udp"] else TCP(sport=sport, dport=dport, flags=p["flags"])
    if p["vxlan"]:
        outer = (_link(link, True) / IP(src="10.0.1.1", dst="20.9.0.1")
                 / UDP(sport=50000 + p["server"], dport=4789))
        inner = outer / VXLAN(vni=100) / _ether() / ip / l4 / Raw(p["payload"])
    else:
        inner = _link(link, p["outbound"]) / ip / l4 / Raw(p["payload"])
    inner.time = ts
    return inner


def _names(ts: float, link: str):
    answers = None
    for name, address in zip(NAMES, SERVERS):
        rr = DNSRR(rrname=name, type="AAAA" if ":" in address else "A", ttl=300, rdata=address)
        answers = rr if answers is None else answers / rr
    frame = (_link(link, False) / IP(src="168.63.129.16", dst=NODE) / UDP(sport=53, dport=33333)
             / DNS(id=7, qr=1, rd=1, ra=1, qd=DNSQR(qname=NAMES[0]), an=answers))
    frame.time = ts
    return frame


def _check(tmp_path, packets, link: str = "ether"):
    frames = [_names(1_000.0, link)]
    # a handshake and a ClientHello first on every server, so flows are known and named
    # before the noise (and the fast path takes their packets: asserted below)
    for i in range(len(SERVERS)):
        for flags, out, payload in (("S", True, b""), ("SA", False, b""), ("A", True, b""),
                                    ("PA", True, HELLO), ("PA", False, b"\x16\x03\x03" + b"s" * 90),
                                    ("A", True, b"")):
            frames.append(_frame({"server": i, "sport": 40000, "dport": 443, "udp": False,
                                  "outbound": out, "flags": flags, "payload": payload,
                                  "options": False, "fragment": 0, "vxlan": False},
                                 1_000.1 + len(frames) / 1000, link))
    ts = 1_001.0
    for p in packets:
        ts += p.get("gap", 0.001)
        frames.append(_frame(p, ts, link))
    capture = tmp_path / "adversary.pcap"
    wrpcap(str(capture), frames)
    _same_under_either_core(tmp_path, [capture], "--node-network", "10.0.0.0/16",
                            "--node-network", "fd00::/8")
    return capture


_KNOWN = {"server": 0, "sport": 40000, "dport": 443, "udp": False, "outbound": True, "flags": "A",
          "payload": b"x" * 700, "options": False, "fragment": 0, "vxlan": False, "gap": 0.001}


# The capture's link type: the fast path parses Ethernet and Linux SLL headers itself.
links = st.sampled_from(["ether", "ether", "sll"])


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(packet, min_size=1, max_size=40), links)
@example([_KNOWN, dict(_KNOWN, flags="R"), dict(_KNOWN, gap=12.0), dict(_KNOWN)], "ether")  # RST
@example([_KNOWN, dict(_KNOWN, flags="FA"), dict(_KNOWN, flags="FA", outbound=False),
          dict(_KNOWN, gap=12.0)], "ether")                                           # FIN both ways
@example([dict(_KNOWN, vxlan=True), dict(_KNOWN, vxlan=True, flags="R"), dict(_KNOWN, gap=12.0)],
         "ether")
@example([dict(_KNOWN, server=3), dict(_KNOWN, server=3, flags="R"), dict(_KNOWN, server=3, gap=12.0)],
         "ether")
@example([_KNOWN, dict(_KNOWN, flags="R", outbound=False), dict(_KNOWN, vxlan=True),
          dict(_KNOWN, server=3, flags="FA"), dict(_KNOWN, gap=12.0)], "sll")
def test_chosen_packets_give_the_same_audit_under_either_core(tmp_path, packets, link):
    _check(tmp_path, packets, link)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(packet, min_size=1, max_size=80), links)
def test_chosen_packets_give_the_same_audit_under_either_core_at_length(tmp_path, packets, link):
    _check(tmp_path, packets, link)


@pytest.mark.parametrize("link", ["ether", "sll"])
def test_the_fast_path_is_live_in_these_captures(tmp_path, link):
    """(Else the comparison above would compare the ordinary path with itself.)"""
    capture = _check(tmp_path, [_KNOWN] * 20 + [dict(_KNOWN, vxlan=True)] * 10
                     + [dict(_KNOWN, server=3)] * 10, link)
    tel = telemetry_of_audit(capture, ["10.0.0.0/16", "fd00::/8"])
    assert tel.fast_path_packets >= 30, (tel.fast_path_packets, tel.packets)   # IPv4 and IPv6
