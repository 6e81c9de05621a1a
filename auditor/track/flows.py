"""The flow table: one entry per bidirectional 5-tuple conversation.

Initiator (the flow's `client`) is the SYN sender for TCP, the SYN-ACK receiver if the
capture starts there, otherwise whoever sent the first packet. Bytes are IP-layer bytes as
the IP headers state them, so they are the on-wire sizes even when the capture's snaplen
cut the frame. A closed TCP flow (FIN both ways, or RST) lingers briefly so that late ACKs
do not start phantom flows, and a new SYN on it starts a new flow, as tshark's stream index
does. The table is an LRU (OrderedDict, most recently active last): idle expiry walks it
from the front, and when it is full the least recently active flow is evicted and counted.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterator

from auditor.addresses import text as ip_text
from auditor.decode.packet import Packet
from auditor.flow import TRANSPORT_NAMES, Flow

TCP, UDP, ICMP, ICMP6 = 6, 17, 1, 58
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds of capture time (wall time when live) before a quiet flow is ended."""
    tcp_idle: float = 300.0      # an established TCP flow with no packets
    tcp_attempt: float = 60.0    # a TCP flow whose server never answered (scans)
    tcp_closed: float = 10.0     # after FIN both ways or RST, linger for stray ACKs
    udp_idle: float = 60.0
    other_idle: float = 60.0


class FlowTable:
    """Finds or creates the flow of each packet; ends flows on expiry, eviction and flush.

    `ended(flow, reason)` is called for every flow that leaves the table, exactly once.
    """

    def __init__(self, max_flows: int, timeouts: Timeouts,
                 started: Callable[[Flow], None], ended: Callable[[Flow, str], None],
                 on_evict: Callable[[int], None]):
        self.max_flows = max_flows
        self.timeouts = timeouts
        self._started = started
        self._ended = ended
        self._on_evict = on_evict
        self._table: OrderedDict[tuple, Flow] = OrderedDict()  # client->server key -> flow
        self._rev: dict[tuple, Flow] = {}  # server->client key -> flow: one lookup per packet
        self._min_timeout = min(timeouts.tcp_closed, timeouts.udp_idle, timeouts.other_idle,
                                timeouts.tcp_attempt, timeouts.tcp_idle)
        self.flows_created = 0

    def __len__(self) -> int:
        return len(self._table)

    def __iter__(self) -> Iterator[Flow]:
        return iter(list(self._table.values()))

    def lookup(self, pkt: Packet) -> tuple[Flow, bool]:
        """The packet's flow and whether the packet travels client -> server."""
        key = (pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport)
        flow = self._table.get(key)
        if flow is not None:
            from_client = True
        else:
            flow = self._rev.get(key)
            if flow is None:
                return self._create(pkt), not _is_synack(pkt)
            from_client = False
        if pkt.tcp_flags & (SYN | ACK) == SYN and flow.closed:
            # A fresh SYN on a finished 5-tuple is a new connection (port reuse).
            self._remove(flow)
            self._ended(flow, "close")
            return self._create(pkt), True
        self._table.move_to_end(flow.key)
        return flow, from_client

    def _create(self, pkt: Packet) -> Flow:
        if len(self._table) >= self.max_flows:
            _, victim = self._table.popitem(last=False)
            del self._rev[_reverse(victim.key)]
            self._on_evict(1)
            self._ended(victim, "evicted")
        flow = new_flow(pkt, from_src=not _is_synack(pkt))
        self._table[flow.key] = flow
        self._rev[_reverse(flow.key)] = flow
        self.flows_created += 1
        self._started(flow)
        return flow

    def _remove(self, flow: Flow) -> None:
        del self._table[flow.key]
        del self._rev[_reverse(flow.key)]

    def expire(self, now: float) -> None:
        """End flows idle past their timeout. Walks from the least recently active flow and
        stops at the first one too recent to expire under any timeout."""
        table, t = self._table, self.timeouts
        horizon = now - self._min_timeout
        dead = []
        for key, flow in table.items():
            if flow.last > horizon:
                break
            idle = now - flow.last
            if flow.proto == TCP:
                limit = (t.tcp_closed if flow.closed else
                         t.tcp_idle if flow.server_seen else t.tcp_attempt)
            elif flow.proto == UDP:
                limit = t.udp_idle
            else:
                limit = t.other_idle
            if idle > limit:
                dead.append(key)
        for key in dead:
            flow = table[key]
            self._remove(flow)
            self._ended(flow, "idle")

    def flush(self, reason: str) -> None:
        """End every flow still in the table (end of capture, shutdown)."""
        while self._table:
            _, flow = self._table.popitem(last=False)
            del self._rev[_reverse(flow.key)]
            self._ended(flow, reason)


def new_flow(pkt: Packet, from_src: bool = True) -> Flow:
    """The record of a flow whose first packet is `pkt` (sent by the client if `from_src`)."""
    if from_src:
        c, cp, s, sp = pkt.src, pkt.sport, pkt.dst, pkt.dport
    else:
        c, cp, s, sp = pkt.dst, pkt.dport, pkt.src, pkt.sport
    flow = Flow(transport=TRANSPORT_NAMES.get(pkt.proto, str(pkt.proto)),
                client_ip=ip_text(c), client_port=cp, server_ip=ip_text(s), server_port=sp,
                start=pkt.ts, key=(pkt.proto, c, cp, s, sp),
                midstream=pkt.proto == TCP and not pkt.tcp_flags & SYN)
    flow.proto = pkt.proto
    return flow


def _reverse(key: tuple) -> tuple:
    proto, c, cp, s, sp = key
    return proto, s, sp, c, cp


def _is_synack(pkt: Packet) -> bool:
    return pkt.proto == TCP and pkt.tcp_flags & (SYN | ACK) == SYN | ACK
