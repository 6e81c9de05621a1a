"""The flow table: one entry per bidirectional 5-tuple conversation.

Who is the client (the initiator) is read from packets a job on the node can forge, so it
is decided the way that cannot hide the node's traffic:
- a pure SYN makes its sender the client and starts a new flow, whatever was seen on that
  5-tuple before (a SYN-ACK forged ahead of the real handshake cannot turn the node into the
  "server" of its own upload);
- any other first packet (SYN-ACK, a TCP flow already running, UDP, ICMP): when exactly one
  end is a node address, the node end is the client, so node->remote traffic is judged even
  when the first datagram of a 5-tuple came from the remote; a TCP flow already running
  whose node end uses a port below 1024 and remote end one above is taken as inbound to a
  node service; between two node (or two remote) addresses, the SYN-ACK receiver or the
  first packet's sender is the client.
Bytes are IP-layer bytes as
the IP headers state them, so they are the on-wire sizes even when the capture's snaplen
cut the frame. A closed TCP flow (FIN both ways, or RST) lingers briefly so that late ACKs
do not start phantom flows, and a new SYN on it starts a new flow, as tshark's stream index
does. The table is an LRU (OrderedDict, most recently active last): idle expiry walks it
from the front (and not again before the soonest flow it passed is due), and when it is full
the least recently active flow is evicted and counted.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterator

from auditor.addresses import text as ip_text
from auditor.decode.packet import Packet, Tunnel
from auditor.flow import TRANSPORT_NAMES, Flow

TCP, UDP, ICMP, ICMP6 = 6, 17, 1, 58
# In a UDP tunnel carrier's key, the port that is per-inner-flow entropy (never a real port).
ANY_PORT = -1
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
                 on_evict: Callable[[int], None], is_node: Callable[[bytes], bool] = lambda a: False):
        self.max_flows = max_flows
        self._is_node = is_node
        self.timeouts = timeouts
        self._started = started
        self._ended = ended
        self._on_evict = on_evict
        # client->server key -> flow. A server's packet finds its flow by its key reversed:
        # a second index by server key would cost a tuple and a dict slot per flow (~15% of
        # a SYN flood's flow memory) to save building that tuple for a server's packet.
        self._table: OrderedDict[tuple, Flow] = OrderedDict()
        self._min_timeout = min(timeouts.tcp_closed, timeouts.udp_idle, timeouts.other_idle,
                                timeouts.tcp_attempt, timeouts.tcp_idle)
        # No flow can be due before this capture time: `expire` skips its walk until then.
        self._quiet_until = float("-inf")
        self.flows_created = 0

    def __len__(self) -> int:
        return len(self._table)

    def by_server_key(self, key: tuple) -> Flow | None:
        """The flow a packet with this key, sent by its flow's server, belongs to."""
        return self._table.get(_reverse(key))

    def __iter__(self) -> Iterator[Flow]:
        return iter(list(self._table.values()))

    def lookup(self, pkt: Packet) -> tuple[Flow, bool]:
        """The packet's flow and whether the packet travels client -> server."""
        key: tuple = (pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport)
        if pkt.tunnel is not None:
            key += (pkt.tunnel.scope,)
        flow = self._table.get(key)
        if flow is not None:
            from_client = True
        else:
            flow = self.by_server_key(key)
            if flow is None:
                flow = self._create(pkt)
                return flow, flow.key[1] == pkt.src and flow.key[2] == pkt.sport
            from_client = False
        if pkt.tcp_flags & (SYN | ACK) == SYN and (flow.closed or not from_client):
            # A fresh SYN on a finished 5-tuple is a new connection (port reuse); a SYN from
            # the flow's "server" means whatever came first did not come from this initiator.
            self._remove(flow)
            self._ended(flow, "close" if flow.closed else "superseded")
            return self._create(pkt), True
        self._table.move_to_end(flow.key)
        return flow, from_client

    def _create(self, pkt: Packet) -> Flow:
        if len(self._table) >= self.max_flows:
            self.evict_oldest()
        flow = new_flow(pkt, from_src=self._sender_is_client(pkt))
        self._table[flow.key] = flow
        self.flows_created += 1
        self._started(flow)
        return flow

    def evict_oldest(self) -> None:
        """End the least recently active flow, counted as an eviction (the table is full, or
        what its flows hold is over a budget)."""
        _, victim = self._table.popitem(last=False)
        self._on_evict(1)
        self._ended(victim, "evicted")

    def _sender_is_client(self, pkt: Packet) -> bool:
        """Is the first packet's sender the client? (rules in the module docstring)"""
        flags = pkt.tcp_flags & (SYN | ACK) if pkt.proto == TCP else 0
        if flags == SYN or pkt.sport == ANY_PORT:   # a SYN; a datagram to a tunnel port
            return True
        src_node, dst_node = self._is_node(pkt.src), self._is_node(pkt.dst)
        if src_node != dst_node:
            if pkt.proto == TCP and not flags & SYN:
                node_port, remote_port = (pkt.sport, pkt.dport) if src_node else (pkt.dport, pkt.sport)
                if node_port < 1024 <= remote_port:
                    return not src_node         # running flow into a node service
            return src_node
        return flags != SYN | ACK

    def _remove(self, flow: Flow) -> None:
        del self._table[flow.key]

    def expire(self, now: float) -> None:
        """End flows idle past their timeout. Walks from the least recently active flow and
        stops at the first one too recent to expire under any timeout.

        Long-lived quiet flows (keep-alive connections, 300 s) would be walked again at every
        sweep, once a second; instead the walk notes when the soonest of the flows it passed
        is due, and the next walks are skipped until then. A flow touched later by a packet
        no older than `now` is due no sooner than `now + min timeout`, so that bounds it too;
        a packet older than `now` (a capture whose timestamps step back) calls `wake`."""
        if now <= self._quiet_until:
            return
        table, t = self._table, self.timeouts
        horizon = now - self._min_timeout
        soonest = now + self._min_timeout
        dead = []
        for key, flow in table.items():
            if flow.last > horizon:
                soonest = min(soonest, flow.last + self._min_timeout)
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
            elif flow.last + limit < soonest:
                soonest = flow.last + limit
        # `idle > limit` is exact where `last + limit` may round: keep a margin of many ulps
        self._quiet_until = soonest - (abs(soonest) * 1e-12 + 1e-6)
        for key in dead:
            flow = table[key]
            self._remove(flow)
            self._ended(flow, "idle")

    def wake(self) -> None:
        """A packet older than the last sweep: the next sweep walks (see `expire`)."""
        self._quiet_until = float("-inf")

    def flush(self, reason: str) -> None:
        """End every flow still in the table (end of capture, shutdown)."""
        while self._table:
            _, flow = self._table.popitem(last=False)
            self._ended(flow, reason)


def new_flow(pkt: Packet, from_src: bool = True) -> Flow:
    """The record of a flow whose first packet is `pkt` (sent by the client if `from_src`)."""
    if from_src:
        (c, c_text), cp, (s, s_text), sp = _shared(pkt.src), pkt.sport, _shared(pkt.dst), pkt.dport
    else:
        (c, c_text), cp, (s, s_text), sp = _shared(pkt.dst), pkt.dport, _shared(pkt.src), pkt.sport
    key: tuple = (pkt.proto, c, cp, s, sp)
    tunnel = pkt.tunnel
    if tunnel is not None:
        key += (tunnel.scope,)
    if cp == ANY_PORT:              # a tunnel carrier: the event shows the first real port
        assert isinstance(pkt, Tunnel)
        cp = pkt.entropy_port
    flow = Flow(transport=TRANSPORT_NAMES.get(pkt.proto, str(pkt.proto)),
                client_ip=c_text, client_port=cp, server_ip=s_text, server_port=sp,
                start=pkt.ts, key=key, midstream=pkt.proto == TCP and not pkt.tcp_flags & SYN)
    flow.proto = pkt.proto
    flow.start_ns = flow.last_ns = pkt.ts_ns
    flow.carrier = pkt.__class__ is Tunnel
    if tunnel is not None:
        # Oriented like the flow: the first outer source is on the client's side.
        flow.tunnel = tunnel if from_src else tunnel.reversed()
        flow.name_scope = "%" + tunnel.scope.hex()
    if (pkt.proto == ICMP or pkt.proto == ICMP6) and len(pkt.payload) >= 2:
        flow.icmp_type, flow.icmp_code = pkt.payload[0], pkt.payload[1]
    return flow


@lru_cache(maxsize=4096)
def _shared(packed: bytes) -> tuple[bytes, str]:
    """An address as flows keep it (packed in the key, text for the sinks), one copy of each
    for all the flows of an address they repeat: the node's own, its resolver (~100 bytes a
    flow). A scan of ever-new addresses only cycles the cache."""
    return packed, ip_text(packed)


def _reverse(key: tuple) -> tuple:
    """The key as the other end's packets spell it (an inner flow's tunnel scope is the same
    both ways, so it stays last)."""
    if len(key) == 5:
        return (key[0], key[3], key[4], key[1], key[2])
    return (key[0], key[3], key[4], key[1], key[2], key[5])

