import pytest
from hypothesis import given, strategies as st
from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.dns import DNS, DNSQR, DNSRR

from auditor.events import DnsAnswered, FlowEnded
from auditor.decode.packet import Fragment
from auditor.track.defrag import Defragmenter
from auditor.telemetry import Layer, Table, Telemetry
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


class _ByteMap:
    """The reassembly rules over single bytes: a byte once held never changes (a fragment
    disagreeing with one drops the datagram), the datagram is done when every byte below the
    last fragment's end is held, and no more than MAX_RUNS separate runs are ever held."""

    def __init__(self):
        self.held, self.total, self.frames = {}, None, 0

    def add(self, offset, data, more, max_runs):
        self.frames += 1
        end = offset + len(data)
        if any(self.held.get(offset + i, b) != b for i, b in enumerate(data)):
            self.__init__()
            return "conflict"
        after = set(self.held) | set(range(offset, end))
        runs = sum(1 for p in after if p - 1 not in after)
        if runs > max_runs:
            self.__init__()
            return "evicted"
        self.held.update((offset + i, b) for i, b in enumerate(data))
        if not more:
            self.total = end
        if self.total is not None and all(p in self.held for p in range(self.total)):
            done = bytes(self.held[p] for p in range(self.total)), self.frames
            self.__init__()
            return done
        return None


@given(st.binary(min_size=1, max_size=200),
       st.lists(st.tuples(st.integers(0, 25), st.integers(0, 8), st.booleans(), st.integers(0, 3)),
                min_size=1, max_size=60),
       st.sampled_from([1, 2, 256]))
def test_reassembly_matches_the_byte_map(data, cuts, max_runs):
    """Fragments in any order, duplicated, overlapping by any amount, some disagreeing, some
    claiming to be last: the result, the drop reasons and the bytes held are the byte map's."""
    import auditor.track.defrag as defrag
    ev = Telemetry()
    d = Defragmenter(ev)
    model = _ByteMap()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(defrag, "MAX_RUNS", max_runs)
        for start8, length8, corrupt, last_hint in cuts:
            offset = min(start8 * 8, len(data) - 1)
            piece = data[offset:offset + length8 * 8 + (last_hint if length8 == 0 else 0)]
            if not piece:
                continue
            if corrupt:
                piece = bytes([piece[0] ^ 0xFF]) + piece[1:]
            more = offset + len(piece) < len(data) or last_hint == 0
            bad, evicted = ev.malformed[Layer.FRAGMENT], ev.evictions[Table.FRAGMENTS]
            expected = model.add(offset, piece, more, max_runs)
            got = d.add(_frag(offset, piece, more))
            if expected == "conflict":
                assert got is None and ev.malformed[Layer.FRAGMENT] == bad + 1 and len(d) == 0
            elif expected == "evicted":
                assert got is None and ev.evictions[Table.FRAGMENTS] == evicted + 1 and len(d) == 0
            elif expected is None:
                assert got is None and d.held == len(model.held)
            else:
                assert got is not None and (got[0], got[1]) == expected and len(d) == 0
            assert d.held == len(model.held)


def test_a_fragment_replayed_or_overlapped_is_held_once():
    """A long first fragment then thousands of tiny identical overlaps and replays: the
    datagram is held as one run of its bytes, each byte counted once."""
    ev = Telemetry()
    d = Defragmenter(ev)
    d.add(_frag(0, b"\0" * 6000, True))
    for i in range(1, 700):
        assert d.add(_frag(8 * i, b"\0" * 8, True)) is None
        assert d.add(_frag(8, b"\0" * 8, True)) is None
    (entry,) = d._pending.values()
    assert d.held == entry.size == 6000 and list(entry.runs) == [0]
    done = d.add(_frag(6000, b"\1" * 8, False))
    assert done is not None and done[0] == b"\0" * 6000 + b"\1" * 8 and done[1] == 2 * 699 + 2
