from hypothesis import given, strategies as st
from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.dns import DNS, DNSQR, DNSRR

from auditor.events import DnsAnswered, FlowEnded
from auditor.decode.packet import Fragment
from auditor.track.defrag import Defragmenter
from auditor.telemetry import Table, Telemetry
from tests.util import dns_query, run

C, R = "10.0.0.5", "168.63.129.16"


def big_answer(qid):
    an = [DNSRR(rrname="big.example", type="A", rdata=f"192.0.2.{i}", ttl=60) for i in range(1, 120)]
    return IP(src=R, dst=C, id=4242) / UDP(sport=53, dport=33333) / DNS(id=qid, qr=1, qd=DNSQR(qname="big.example"), an=an)


def test_fragmented_dns_response_is_reassembled_and_counted_per_frame():
    frags = fragment(big_answer(7), fragsize=512)
    assert len(frags) >= 3
    pkts = [dns_query(C, R, "big.example", 7)] + list(reversed(frags))   # out of order too
    _, rec = run(pkts)
    (ans,) = rec.of(DnsAnswered)
    assert ans.solicited and len(ans.message.answers) == 119
    (flow,) = [e.flow for e in rec.of(FlowEnded)]
    assert flow.s_packets == len(frags)
    assert flow.s_bytes == sum(len(f) for f in frags)


def _frag(offset, data, more, ident=1):
    return Fragment(0.0, 4, b"\1\2\3\4", b"\5\6\7\x08", 17, ident, offset, more, 20 + len(data), data)


def test_incomplete_datagrams_are_capped_and_counted():
    ev = Telemetry()
    d = Defragmenter(ev, max_datagrams=4)
    for i in range(10):
        assert d.add(_frag(8, b"x" * 8, True, ident=i)) is None
    assert len(d) == 4 and ev.evictions[Table.FRAGMENTS] == 6


def test_oversized_datagram_is_dropped():
    ev = Telemetry()
    d = Defragmenter(ev)
    assert d.add(_frag(65528, b"y" * 16, False)) is None
    assert len(d) == 0 and ev.evictions[Table.FRAGMENTS] == 1


@given(st.binary(min_size=1, max_size=600), st.lists(st.integers(1, 7), min_size=1, max_size=20), st.randoms())
def test_any_fragmentation_and_order_reassembles(data, sizes, rnd):
    cuts, pos = [], 0
    for s in sizes * 100:
        if pos >= len(data):
            break
        n = s * 8
        cuts.append((pos, data[pos:pos + n]))
        pos += n
    rnd.shuffle(cuts)
    d = Defragmenter(Telemetry())
    done = None
    for offset, piece in cuts:
        r = d.add(_frag(offset, piece, offset + len(piece) < len(data)))
        done = r or done
    assert done is not None and done[0] == data and done[1] == len(cuts)
