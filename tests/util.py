"""Helpers for tests: build real frames with scapy, run them through a real pipeline."""
from __future__ import annotations

import json
from pathlib import Path

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from auditor.components import Component
from auditor.decode.packet import LINKTYPE_ETHERNET
from auditor.events import event_types
from auditor.pipeline import Pipeline
from auditor.settings import Settings
from auditor.telemetry import Telemetry


class Recorder(Component):
    """A component that keeps every event it is handed (whatever event types exist)."""
    name = "recorder"

    def __init__(self):
        self.events = []

    def __getattr__(self, name):
        if name in {et.handler for et in event_types()}:
            return self.events.append
        raise AttributeError(name)

    def of(self, cls):
        return [e for e in self.events if isinstance(e, cls)]


def frames(packets, start=1000.0, step=0.01):
    """(ts, linktype, bytes, wirelen) for scapy packets, `step` seconds apart unless a
    packet carries its own `.time` override via a (seconds, packet) tuple."""
    out, ts = [], start
    for p in packets:
        if isinstance(p, tuple):
            ts, p = p
        raw = bytes(Ether() / p) if not isinstance(p, Ether) else bytes(p)
        out.append((ts, LINKTYPE_ETHERNET, raw, len(raw)))
        ts += step
    return out


def pipeline_for(components, settings=None, telemetry=None) -> Pipeline:
    """A real pipeline (tracker and dispatcher) around `components`."""
    from auditor.assemble import pipeline_for as build
    return build(settings if settings is not None else Settings(), list(components),
                 telemetry or Telemetry())


def run(packets, components=(), **settings):
    rec = Recorder()
    pipe = pipeline_for([*components, rec], Settings(**settings))
    pipe.feed(frames(packets))
    pipe.close()
    return pipe, rec


def dns_query(client, server, name, qid, sport=33333, qtype="A"):
    return IP(src=client, dst=server) / UDP(sport=sport, dport=53) / DNS(id=qid, rd=1, qd=DNSQR(qname=name, qtype=qtype))


def dns_answer(client, server, name, ip, qid, sport=33333, ttl=300, cname=None):
    if cname:
        an = [DNSRR(rrname=name, type="CNAME", rdata=cname, ttl=ttl), DNSRR(rrname=cname, type="A", rdata=ip, ttl=ttl)]
    else:
        an = DNSRR(rrname=name, type="A", rdata=ip, ttl=ttl)
    return IP(src=server, dst=client) / UDP(sport=53, dport=sport) / DNS(
        id=qid, qr=1, rd=1, ra=1, qd=DNSQR(qname=name), an=an)


def tcp_handshake(client, server, sport, dport=443, isn=1000, sisn=5000):
    return [IP(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="S", seq=isn),
            IP(src=server, dst=client) / TCP(sport=dport, dport=sport, flags="SA", seq=sisn, ack=isn + 1),
            IP(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="A", seq=isn + 1, ack=sisn + 1)]


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]
