"""The DNS chains open flows hold are bounded in characters: a flow keeps the chain that named
it after the name cache (capped in bytes) lets go of it, so a flood of flows each after its
own long chain would hold them all. Past the budget the least recently active flows are ended
as evicted; what is counted is always exactly what the flows in the table hold."""
from __future__ import annotations

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP
from scapy.packet import Raw

from auditor.events import FlowEnded
from auditor.settings import Settings
from auditor.telemetry import Table
from auditor.track import tracker as tracker_module
from tests.util import Recorder, frames, pipeline_for

CLIENT, RESOLVER = "10.0.0.5", "168.63.129.16"


def _named_after_a_chain(i: int, hops: int) -> list:
    names = [f"h{k}-{'x' * 50}.n{i}.example" for k in range(hops)]
    ip = f"198.51.{i // 250}.{i % 250 + 1}"
    an = [DNSRR(rrname=a, type="CNAME", rdata=b, ttl=300) for a, b in zip(names, names[1:])]
    an.append(DNSRR(rrname=names[-1], type="A", rdata=ip, ttl=300))
    sport = 20000 + i
    return [IP(src=CLIENT, dst=RESOLVER) / UDP(sport=sport, dport=53) / DNS(id=i, rd=1, qd=DNSQR(qname=names[0])),
            IP(src=RESOLVER, dst=CLIENT) / UDP(sport=53, dport=sport) / DNS(id=i, qr=1, rd=1, ra=1,
                                                                          qd=DNSQR(qname=names[0]), an=an),
            IP(src=CLIENT, dst=ip) / TCP(sport=40000 + i, dport=8080, flags="S", seq=1),
            IP(src=CLIENT, dst=ip) / TCP(sport=40000 + i, dport=8080, flags="PA", seq=2) / Raw(b"x")]


def test_chains_held_by_open_flows_stay_within_the_budget():
    rec = Recorder()
    pipe = pipeline_for([rec], Settings(node_networks=["10.0.0.0/8"]))
    tr = pipe.tracker
    seen = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tracker_module, "MAX_CHAIN_CHARS", 4_000)
        for i in range(60):
            pipe.feed(frames(_named_after_a_chain(i, 4), start=1000.0 + i))
            held = sum(f.chain_chars for f in tr.flows)
            assert tr.chain_chars == held == sum(sum(map(len, f.dns_chain)) for f in tr.flows)
            assert held <= 4_000
            seen.append(len(tr.flows))
        assert pipe.telemetry.evictions[Table.FLOWS] > 0
        pipe.close()
    assert tr.chain_chars == 0
    ended = [e for e in rec.of(FlowEnded) if e.flow.server_port == 8080]
    assert len(ended) == 60 and {e.reason for e in ended} == {"evicted", "end_of_capture"}
    assert all(len(e.flow.dns_chain) == 4 for e in ended)        # every one was named by it


def test_ordinary_chains_are_not_evicted():
    _, rec = None, Recorder()
    pipe = pipeline_for([rec], Settings(node_networks=["10.0.0.0/8"]))
    for i in range(60):
        pipe.feed(frames(_named_after_a_chain(i, 3), start=1000.0 + i))
    assert pipe.telemetry.evictions[Table.FLOWS] == 0
    pipe.close()
    assert pipe.tracker.chain_chars == 0


def test_a_flow_named_again_after_a_conflict_is_counted_once():
    """A retransmission that contradicts the SNI names the flow again (same chain): its chain
    is counted once, and given back when it ends."""
    from tests.hardening.crafted import NODE, SERVER, Conn, dns_pair, hello
    c = Conn().handshake()
    start = c.cseq
    c.send(hello(b"files.example")).resend_at(start, hello(b"other.example")).ack().close()
    pipe = pipeline_for([Recorder()], Settings(node_networks=["10.0.0.0/8"]))
    pipe.feed(frames(dns_pair("files.example", SERVER) + c.packets[:-2]))
    (flow,) = [f for f in pipe.tracker.flows if f.server_ip == SERVER and f.server_port == 443]
    assert flow.ambiguous and flow.dns_chain == ("files.example",)
    assert pipe.tracker.chain_chars == len("files.example") + sum(
        f.chain_chars for f in pipe.tracker.flows if f is not flow)
    pipe.feed(frames(c.packets[-2:], start=2000.0))
    pipe.close()
    assert pipe.tracker.chain_chars == 0
