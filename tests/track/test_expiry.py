"""Idle expiry skips its walk while no flow can be due (`FlowTable.expire`): flows must end
at the very sweep, with the very reason and counts, that a walk at every sweep gives, whatever
timestamps the capture holds (a job on the node chooses them, and a pcap may step back)."""
import struct

import pytest
from hypothesis import example, given, settings, strategies as st
from scapy.layers.tls.extensions import ServerName, TLS_Ext_ServerName
from scapy.layers.tls.handshake import TLSClientHello
from scapy.layers.tls.record import TLS

from auditor import pipeline as pipeline_mod
from auditor.components import Component
from auditor.events import FlowEnded
from auditor.settings import Settings
from auditor.telemetry import Telemetry
from auditor.track import flows as flows_mod
from tests.hardening.floods import ETH_IN, ETH_OUT, NODE, ipv4, udp
from tests.util import pipeline_for

REMOTES = [bytes([20, 0, 0, i]) for i in range(1, 4)]
SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08
# Steps around every timeout (closed 10 s, attempt 60, UDP 60, established 300) and the 1 s
# sweep, forward and back.
STEPS = [0.0, 0.4, 1.0, 5.0, 10.0, 10.5, 30.0, 60.5, 301.0, -0.5, -5.0, -12.0, -70.0]
# A ClientHello naming the flow, so that the packets after it (once the server has
# acknowledged it) take the compiled core's fast path, which must also see a step back.
HELLO = bytes(TLS(msg=[TLSClientHello(ext=[TLS_Ext_ServerName(
    servernames=[ServerName(servername=b"pypi.org")])])]))
C_ISN, S_ISN = 1000, 5000
C_NEXT = C_ISN + 1 + len(HELLO)
_TCP = struct.Struct("!HHIIBBHHH")
# kind -> (sent by the node, flags, seq, ack, payload)
KINDS = {"syn": (True, SYN, C_ISN, 0, b""), "synack": (False, SYN | ACK, S_ISN, C_ISN + 1, b""),
         "hello": (True, PSH | ACK, C_ISN + 1, S_ISN + 1, HELLO),
         "ack": (False, ACK, S_ISN + 1, C_NEXT, b""),
         "data": (True, PSH | ACK, C_NEXT, S_ISN + 1, b"z"),
         "reply": (False, PSH | ACK, S_ISN + 1, C_NEXT, b"y"),
         "fin": (True, FIN | ACK, C_NEXT, S_ISN + 1, b""),
         "finback": (False, FIN | ACK, S_ISN + 1, C_NEXT + 1, b""),
         "rst": (False, RST, S_ISN + 1, 0, b"")}


def _frame(remote: int, port: int, kind: str) -> bytes:
    """One packet of the node's conversation `port` with remote `remote`."""
    dst, sport = REMOTES[remote], 40000 + port
    if kind == "udp":
        return ETH_OUT + ipv4(NODE, dst, 17, udp(sport, 5000, b"x"))
    if kind == "udpback":
        return ETH_IN + ipv4(dst, NODE, 17, udp(5000, sport, b"y"))
    out, flags, seq, ack, body = KINDS[kind]
    ports = (sport, 443) if out else (443, sport)
    l4 = _TCP.pack(*ports, seq, ack, 5 << 4, flags, 65535, 0, 0) + body
    return ETH_OUT + ipv4(NODE, dst, 6, l4) if out else ETH_IN + ipv4(dst, NODE, 6, l4)


packets = st.lists(st.tuples(st.sampled_from(STEPS), st.integers(0, 2), st.integers(0, 3),
                             st.sampled_from([*KINDS, "hello", "ack", "reply", "udp", "udpback"])),
                   max_size=60)


class _Ends(Component):
    """Each flow that ends, and how many packets had been read when it did."""
    name = "ends"

    def __init__(self, telemetry: Telemetry):
        self.telemetry, self.seen = telemetry, []

    def flow_ended(self, ev: FlowEnded) -> None:
        f = ev.flow
        self.seen.append((ev.reason, f.key, f.last, f.c_packets, f.s_packets,
                          self.telemetry.packets))


def _ended(seq, walk_always: bool, pure: bool) -> list[tuple]:
    with pytest.MonkeyPatch.context() as mp:
        if pure:          # the pure-Python packet loop instead of the compiled core's
            mp.setattr(pipeline_mod, "_compiled", None)
        if walk_always:   # the reference: every sweep walks, as before the skip existed
            plain = flows_mod.FlowTable.expire

            def expire(self, now):
                self._quiet_until = float("-inf")
                plain(self, now)
            mp.setattr(flows_mod.FlowTable, "expire", expire)
        telemetry = Telemetry()
        ends = _Ends(telemetry)
        pipe = pipeline_for([ends], Settings(node_networks=["10.0.0.0/8"]), telemetry)
        ts, frames = 1_700_000_000.0, []
        for step, remote, port, kind in seq:
            ts += step
            raw = _frame(remote, port, kind)
            frames.append((ts, 1, raw, len(raw)))
        pipe.feed(frames)
        pipe.close()
    return ends.seen


# A named flow closed by FINs stamped before the last sweep: the compiled fast path counts
# FINs of known flows, so it too must hand a packet older than the sweep to the tracker.
_FAST_PATH_STEP_BACK = [(0.0, 0, 0, "syn"), (0.0, 0, 0, "synack"), (0.1, 0, 0, "hello"),
                        (0.1, 0, 0, "ack"), (30.0, 1, 1, "udp"), (-12.0, 0, 0, "fin"),
                        (0.0, 0, 0, "finback"), (10.0, 1, 1, "udp"), (5.0, 1, 1, "udp")]


@settings(max_examples=400)
@given(packets, st.booleans())
@example(_FAST_PATH_STEP_BACK, False)
@example(_FAST_PATH_STEP_BACK, True)
def test_skipped_sweeps_end_the_same_flows_at_the_same_moments(seq, pure):
    assert _ended(seq, False, pure) == _ended(seq, True, pure)
