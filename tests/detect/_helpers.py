"""Shared by the detector tests: run scapy packets through a real pipeline with the
detectors and collect what they raise."""
from __future__ import annotations

from scapy.layers.inet import IP, TCP, UDP
from scapy.packet import Raw

from auditor.detect import registry
from auditor.detect.base import Context
from auditor.events import Finding
from auditor.settings import Settings
from auditor.telemetry import Table, Telemetry
from tests.util import Recorder, frames, pipeline_for

CLIENT = "10.0.0.5"


def detect(packets, *, only: str | None = None, start=1000.0, step=0.01, **settings):
    """Findings raised (optionally by one detector) and the evictions by table."""
    s = Settings(**settings)
    telemetry = Telemetry()
    context = Context(telemetry, tuple(s.dns_servers), s.detectors.max_keys)
    detectors = [d for d in registry.build(s.detectors, context) if only is None or d.name == only]
    rec = Recorder()
    pipe = pipeline_for([*detectors, rec], s, telemetry)
    pipe.feed(frames(packets, start=start, step=step))
    pipe.close()
    found = [f for f in rec.of(Finding) if only is None or f.detector == only]
    return found, {t.value: n for t, n in telemetry.evictions.items() if n}


def build_detector(name: str, packets, *, start=1000.0, step=0.01, **settings):
    """The detector `name` after the packets went through a real pipeline, and the
    evictions by table: for looking at what its tables hold."""
    s = Settings(**settings)
    telemetry = Telemetry()
    context = Context(telemetry, tuple(s.dns_servers), s.detectors.max_keys)
    (det,) = [d for d in registry.build(s.detectors, context) if d.name == name]
    pipe = pipeline_for([det], s, telemetry)
    pipe.feed(frames(packets, start=start, step=step))
    pipe.close()
    return det, {t.value: n for t, n in telemetry.evictions.items() if n}


def tls_hello(sni: str) -> bytes:
    """A minimal TLS 1.2 ClientHello record carrying `sni`."""
    name = sni.encode()
    sni_ext = (b"\x00\x00" + (len(name) + 5).to_bytes(2, "big") + (len(name) + 3).to_bytes(2, "big")
               + b"\x00" + len(name).to_bytes(2, "big") + name)
    body = (b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
            + len(sni_ext).to_bytes(2, "big") + sni_ext)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(hs).to_bytes(2, "big") + hs


def tcp_session(client, server, sport, dport, payload: bytes = b"", *, up: int = 0, down: int = 0,
                seg: int = 1400, isn=1000, sisn=5000):
    """Handshake, an optional first payload, `up`/`down` more bytes in `seg`-byte segments,
    then FIN both ways."""
    pk = [IP(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="S", seq=isn),
          IP(src=server, dst=client) / TCP(sport=dport, dport=sport, flags="SA", seq=sisn, ack=isn + 1),
          IP(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="A", seq=isn + 1, ack=sisn + 1)]
    cseq, sseq = isn + 1, sisn + 1
    if payload:
        pk.append(IP(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="PA", seq=cseq, ack=sseq) / Raw(payload))
        cseq += len(payload)
    for n in range(0, up, seg):
        data = b"u" * min(seg, up - n)
        pk.append(IP(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="A", seq=cseq, ack=sseq) / Raw(data))
        cseq += len(data)
    for n in range(0, down, seg):
        data = b"d" * min(seg, down - n)
        pk.append(IP(src=server, dst=client) / TCP(sport=dport, dport=sport, flags="A", seq=sseq, ack=cseq) / Raw(data))
        sseq += len(data)
    pk += [IP(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="FA", seq=cseq, ack=sseq),
           IP(src=server, dst=client) / TCP(sport=dport, dport=sport, flags="FA", seq=sseq, ack=cseq + 1)]
    return pk


def udp(client, server, sport, dport, payload=b"x" * 40):
    return IP(src=client, dst=server) / UDP(sport=sport, dport=dport) / Raw(payload)
