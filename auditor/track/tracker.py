"""The track stage: turns decoded packets into flow and DNS facts.

Per packet this is the hot path (a dict lookup, a few integer updates); everything else —
payload decoding, DNS parsing, event dispatch — happens only for the first client payload of
a flow or for port-53 traffic, a few percent of packets.
"""
from __future__ import annotations

from dataclasses import dataclass

from auditor.addresses import Networks, is_loopback_packed
from auditor.addresses import text as ip_text
from auditor.components import Dispatcher
from auditor.decode import ja4
from auditor.decode.packet import Fragment, Packet, Tunnel, decode_l4, tunnel_port
from auditor.decode.tunnel import open_one as open_tunnel
from auditor.events import ConflictingCopies, FlowEnded, FlowNamed, FlowStarted
from auditor.flow import Flow
from auditor.telemetry import Layer, Table, Telemetry
from auditor.track import naming
from auditor.track.defrag import Defragmenter
from auditor.track.dnswatch import DnsWatch
from auditor.track.h2c import H2Watch
from auditor.track.flows import ACK, ANY_PORT, FIN, RST, SYN, TCP, FlowTable, Timeouts
from auditor.track.names import NameCache, PendingQueries
from auditor.track.state import state
from auditor.track.streams import Budget

DNS_PORT = 53
SWEEP_EVERY = 1.0  # seconds of capture time between idle sweeps
NAME_SWEEP_EVERY = 30.0  # the name cache is capped anyway; expiring it is housekeeping
# Characters of DNS chains the open flows may hold in all. A flow keeps the chain that named
# it after the name cache (capped in bytes) lets go of it: 20,000 flows, each after its own
# answer with a 16-name chain of long names, held 800 MB. Past this, the least recently
# active flows are ended ("evicted", table_evictions_total{table="flows"}). Ordinary chains
# (a few names, ~200 characters) let ~150,000 flows in, more than max_flows.
MAX_CHAIN_CHARS = 32 << 20


@dataclass(frozen=True)
class Limits:
    """Caps that keep memory bounded under floods; each overflow is counted as an eviction."""
    max_flows: int = 100_000
    max_dns_cache: int = 100_000
    max_pending_queries: int = 20_000
    max_reassembly_bytes: int = 64 << 20     # all TCP prefix buffers together
    dns_min_ttl: float = 30.0
    dns_query_timeout: float = 30.0


class Tracker:
    def __init__(self, node_networks: Networks, emit: Dispatcher, telemetry: Telemetry,
                 limits: Limits = Limits(), timeouts: Timeouts = Timeouts(),
                 trusted_resolvers: frozenset[str] = frozenset({"168.63.129.16"}),
                 judge_loopback: bool = False):
        self.judge_loopback = judge_loopback
        self.node_networks = node_networks
        self.emit = emit
        self.telemetry = telemetry
        self.names = NameCache(limits.max_dns_cache, telemetry, limits.dns_min_ttl)
        self.pending = PendingQueries(limits.max_pending_queries, telemetry,
                                      limits.dns_query_timeout)
        self.budget = Budget(limits.max_reassembly_bytes, telemetry)
        self.fingerprints = ja4.Fingerprints(lambda n: telemetry.evicted(Table.FINGERPRINTS, n))
        self.chain_chars = 0      # of the DNS chains the flows in the table hold
        self.flows = FlowTable(limits.max_flows, timeouts, self._started, self._ended,
                               lambda n: telemetry.evicted(Table.FLOWS, n),
                               node_networks.__contains__)
        self.dns = DnsWatch(self.names, self.pending, emit, telemetry, self.budget,
                            trusted_resolvers)
        self.h2c = H2Watch(self.dns.doh_message, telemetry)
        self.defrag = Defragmenter(telemetry, on_conflict=self._fragment_conflict)
        telemetry.gauge("active_flows", self.flows.__len__)
        telemetry.gauge("dns_cache_entries", self.names.__len__)
        self._announce_start = emit.wants(FlowStarted)
        # Bound once: the fast path below is most of the per-packet cost.
        self._by_client_key = self.flows._table.get
        self._by_server_key = self.flows.by_server_key
        self._touch = self.flows._table.move_to_end
        self._next_sweep = float("-inf")
        self._next_name_sweep = float("-inf")
        self.now = 0.0

    # -- per packet -----------------------------------------------------------------
    def packet(self, pkt: Packet) -> None:
        ts = pkt.ts
        if ts >= self._next_sweep:  # expire first, so idle flows leave before any eviction
            self.tick(ts)
        elif ts < self.now:         # older than the last sweep: its flow may be due sooner
            self.flows.wake()
        flags = pkt.tcp_flags  # 0 unless TCP
        # Fast path: a known flow and no SYN (a SYN may start a new flow on a closed 5-tuple).
        key: tuple = (pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport)
        if pkt.tunnel is not None:      # inside a tunnel: never the node's own flow
            key += (pkt.tunnel.scope,)
        flow = self._by_client_key(key)
        if flow is not None and not flags & SYN:
            from_client = True
            self._touch(key)
        else:
            flow = self._by_server_key(key)
            if flow is not None and not flags & SYN:
                from_client = False
                self._touch(flow.key)
            else:
                flow, from_client = self.flows.lookup(pkt)
        if ts > flow.last:
            flow.last = ts
            flow.last_ns = pkt.ts_ns
        if from_client:
            flow.c_packets += 1
            flow.c_bytes += pkt.ip_len
        else:
            flow.s_packets += 1
            flow.s_bytes += pkt.ip_len
            flow.server_seen = True
        seq = pkt.seq
        if flags & (FIN | RST | SYN):
            self._tcp_flags(flow, flags, from_client, seq)
            if flags & SYN:
                seq = (seq + 1) & 0xFFFFFFFF    # data on a SYN (TCP Fast Open) starts at ISN + 1
        st = flow.track_state
        if st is not None and st.watch is not None:
            self._watch(flow, st, pkt, seq, from_client)
        payload = pkt.payload
        if payload:
            if (flow.server_port == DNS_PORT or flow.client_port == DNS_PORT) \
                    and not flow.carrier:
                # (A tunnel carrier's client port is the first datagram's entropy port: a
                # first one from port 53 must not make every later datagram "DNS".)
                self._dns(flow, pkt, seq, from_client)
            elif st is not None and st.h2 is not None:
                self._h2(flow, st, seq, payload, from_client, ts)
            elif from_client and not flow.named:
                if naming.client_payload(flow, seq, payload, self.telemetry, self.budget,
                                         self.fingerprints):
                    self._settle(flow)
                    st = flow.track_state       # an h2c upgrade: what followed the head
                    if st is not None and st.h2 is not None:
                        self.h2c.pump(flow, st.h2, True, ts)
                else:
                    st = flow.track_state
                    if st is not None and st.h2 is not None \
                            and self.h2c.pump(flow, st.h2, True, ts):
                        self._settle(flow)

    def _h2(self, flow: Flow, st, seq: int, payload: bytes, from_client: bool, ts: float) -> None:
        """A cleartext HTTP/2 connection: followed both ways, after naming too (DoH)."""
        conn = st.h2
        if from_client and not flow.named and st.client_stream is not None:
            st.client_stream.add(seq, payload)  # what names it is watched once it is named
        if self.h2c.segment(flow, conn, seq, payload, from_client, ts) and not flow.named:
            self._settle(flow)
        if conn.done:
            st.h2 = None

    def _watch(self, flow: Flow, st, pkt: Packet, seq: int, from_client: bool) -> None:
        """After naming, keep comparing client retransmissions of the bytes that named the
        flow until the server acknowledges them: up to then, the copy we read may not be the
        copy the server got."""
        watch = st.watch
        if from_client:
            if pkt.payload:
                watch.add(seq, pkt.payload)
                if watch.conflict is not None:
                    self._conflict(flow, watch, pkt.ts)
        elif pkt.tcp_flags & ACK and watch.next_seq is not None \
                and (pkt.ack - watch.next_seq) & 0xFFFFFFFF < 0x80000000:
            watch.release()                     # the server has what it will act on
            st.watch = None

    def tunnel(self, t: Tunnel) -> None:
        """A packet that carries another: the carrier and every packet inside it are
        tracked, outermost first (each inner one scoped by its encapsulation), malformed
        layers counted."""
        if t.sport < t.dport and t.proto == 17 and self._answers_a_node_flow(t):
            self.packet(t)
            return
        ts_ns = t.ts_ns
        while True:
            inner = open_tunnel(t)      # before `_carrier`, which rekeys a UDP carrier
            if t.proto != -1:           # MPLS has no carrier packet of its own
                self._carrier(t)
            cls = inner.__class__
            if cls is Tunnel:
                inner.ts_ns = ts_ns
                t = inner
                continue
            if cls is Packet:
                inner.ts_ns = ts_ns
                self.packet(inner)
            elif cls is Fragment:
                inner.ts_ns = ts_ns
                self.fragment(inner)
            elif inner is not None:
                self.telemetry.bad(inner)
            return

    def _answers_a_node_flow(self, t: Tunnel) -> bool:
        """Is this datagram to a tunnel port, from a lower port, the answer to a flow the
        node started from that port (a DNS answer to a resolver that picked source port
        4789)? Then it is no tunnel: the node's own socket gets it. Only for a sender that is
        not a node address: what the node sends to a tunnel port is always opened (the
        receiver decapsulates it), so a job cannot hide an inner packet behind a forged
        "query" from the peer."""
        if t.src in self.node_networks or tunnel_port(t.sport, t.dport) != t.dport:
            return False
        key: tuple = (17, t.dst, t.dport, t.src, t.sport)
        if t.tunnel is not None:
            key += (t.tunnel.scope,)
        return self._by_client_key(key) is not None

    def _carrier(self, pkt: Tunnel) -> None:
        """A tunnel's carrier packet. A UDP carrier is keyed by the tunnel port alone: the
        other port is entropy the sender hashes from the inner headers (RFC 7348 section 5,
        RFC 8926 section 3.3), so one carrier flow per tunnel and direction stands for all
        the inner flows, and the sender of a datagram *to* a tunnel port is the client (a
        remote VTEP sending to the node's port 4789 is not egress to its own random port).
        A datagram *from* a tunnel port joins such a flow as its answer, except when the
        node sends it on a flow that is not egress: otherwise a forged datagram to the node's
        tunnel port would make the node's own sends to that host look like answers.
        Carrier packets of a named flow take a counters-only path: every tunnelled frame
        passes here, so this is the tunnel path's share of the hot path."""
        if pkt.ts >= self._next_sweep:
            self.tick(pkt.ts)       # before the lookups below: expiry must not follow them
        elif pkt.ts < self.now:
            self.flows.wake()
        from_client = True
        sport, dport = pkt.sport, pkt.dport
        if pkt.proto == 17 and sport != dport and tunnel_port(sport, dport) == dport:   # to it
            key: tuple = (17, pkt.src, ANY_PORT, pkt.dst, dport)
            if pkt.tunnel is not None:
                key += (pkt.tunnel.scope,)
            pkt.entropy_port, pkt.sport = sport, ANY_PORT
            flow = self._by_client_key(key)
        elif pkt.proto == 17 and sport < dport:   # from the tunnel port: an answer, if its flow is there
            key = (17, pkt.src, sport, pkt.dst, ANY_PORT)
            if pkt.tunnel is not None:
                key += (pkt.tunnel.scope,)
            flow = self._by_server_key(key)
            if flow is not None and (flow.egress or pkt.src not in self.node_networks):
                pkt.entropy_port, pkt.dport = dport, ANY_PORT
                from_client = False
            else:
                flow = None
        else:   # the tunnel port both ways, or GRE/IP-in-IP (ports 0): a 5-tuple like any other
            key = (pkt.proto, pkt.src, sport, pkt.dst, dport)
            if pkt.tunnel is not None:
                key += (pkt.tunnel.scope,)
            flow = self._by_client_key(key)
            if flow is None:
                flow = self._by_server_key(key)
                from_client = False
        # (Every flow found here is a carrier: never DNS, see `packet`.)
        if flow is None or not flow.named:
            self.packet(pkt)
            return
        self._touch(flow.key)
        # The counting of `packet`, repeated rather than shared: a call per packet costs more
        # than these lines, on both paths.
        if pkt.ts > flow.last:
            flow.last = pkt.ts
            flow.last_ns = pkt.ts_ns
        if from_client:
            flow.c_packets += 1
            flow.c_bytes += pkt.ip_len
        else:
            flow.s_packets += 1
            flow.s_bytes += pkt.ip_len
            flow.server_seen = True

    def fragment(self, frag: Fragment) -> None:
        """One IP fragment; the reassembled datagram is tracked as one packet whose bytes are
        all its fragments' and whose frame count is the number of fragments."""
        done = self.defrag.add(frag)
        if done is None:
            return
        data, frames, ip_len, first_ts, first_ns = done
        pkt = decode_l4(frag.ts, frag.version, frag.src, frag.dst, frag.proto, data, ip_len)
        cls = pkt.__class__
        if cls is not Packet and cls is not Tunnel:
            self.telemetry.bad(pkt if isinstance(pkt, Layer) else Layer.IP)
            return
        pkt.ts_ns = frag.ts_ns
        pkt.tunnel = frag.tunnel
        if cls is Tunnel:
            self.tunnel(pkt)
        else:
            self.packet(pkt)
        flow, from_client = self.flows.lookup(pkt)
        if from_client:
            flow.c_packets += frames - 1
        else:
            flow.s_packets += frames - 1
        # The datagram is tracked at its last fragment, but its first fragment is the flow's
        # first packet if the datagram opened it (event.start; tshark's first frame of the
        # conversation once the fragments are counted: dns-edns-ecs-v4v6-udp-tcp.pcap
        # frames 53+54 start at frame 53, 17 us before the datagram completes).
        if first_ts < flow.start:
            flow.start, flow.start_ns = first_ts, first_ns

    def _fragment_conflict(self, frag: Fragment) -> None:
        src, dst = ip_text(frag.src), ip_text(frag.dst)
        self.emit(ConflictingCopies(frag.ts, "fragment", None, f"ip {src} -> {dst} proto "
                                    f"{frag.proto} id {frag.ident}",
                                    {"source": src, "destination": dst, "proto": frag.proto,
                                     "ident": frag.ident, "offset": frag.offset}))

    def _tcp_flags(self, flow: Flow, flags: int, from_client: bool, seq: int) -> None:
        if flags & RST:
            if not (from_client and self._syn_sent_reset(flow, seq)):
                flow.rst = True
        elif flags & FIN:
            if from_client:
                flow.fin_c = True
            else:
                flow.fin_s = True
        if flags & SYN:
            # Streams start at SYN + 1, so a reordered first segment still lines up.
            if from_client:
                state(flow).client_isn = seq
            else:
                state(flow).server_isn = seq

    @staticmethod
    def _syn_sent_reset(flow: Flow, seq: int) -> bool:
        """A client RST before any SYN-ACK, outside the client's own sequence space: RFC 9293
        section 3.10.7.3 (SYN-SENT) answers an unacceptable ACK (a middlebox's stale state)
        with <SEQ=SEG.ACK><CTL=RST> and stays in SYN-SENT, so the client retransmits the
        same SYN and the connection goes on (tshark: one tcp.stream). Such a RST ends
        nothing; one with SEQ = ISN + 1 is the client aborting, and does."""
        st = flow.track_state
        return (st is not None and st.client_isn is not None and st.server_isn is None
                and seq != (st.client_isn + 1) & 0xFFFFFFFF)

    def _dns(self, flow: Flow, pkt: Packet, seq: int, from_client: bool) -> None:
        if flow.proto == TCP:
            self.dns.segment(flow, seq, pkt.payload, from_client, pkt.ts)
        else:
            self.dns.datagram(flow, pkt.payload, from_client, pkt.ts)
        if not flow.named:
            flow.app_protocol = "dns"
            self._settle(flow)

    # -- flow lifecycle -------------------------------------------------------------
    def _started(self, flow: Flow) -> None:
        client, server = flow.key[1], flow.key[3]
        # The node talking to itself (loopback, or one of its own addresses to itself) is
        # not egress unless `judge_loopback` says so.
        flow.egress = client in self.node_networks and (
            self.judge_loopback or not (is_loopback_packed(server) or client == server))
        if self._announce_start:
            self.emit(FlowStarted(flow))

    def _settle(self, flow: Flow, live: bool = True) -> None:
        """Name the flow and announce it; `live`: it stays in the table (not ending)."""
        st = flow.track_state
        stream = st.client_stream if st is not None else None
        if stream is None and st is not None and st.h2 is not None:
            stream = st.h2.client
        if stream is not None and stream.conflict is not None:
            flow.ambiguous = True
        naming.settle(flow, self.names, flow.last)
        if live:
            self._hold_chain(flow)
        if stream is not None and stream.conflict is not None:
            self._report_conflict(flow, stream, flow.last)
        self.emit(FlowNamed(flow))

    def _hold_chain(self, flow: Flow) -> None:
        """Count the chain a flow in the table holds; past the budget, end the least
        recently active flows (this one, just active, last)."""
        chars = sum(map(len, flow.dns_chain))
        self.chain_chars += chars - flow.chain_chars
        flow.chain_chars = chars
        while self.chain_chars > MAX_CHAIN_CHARS and len(self.flows) > 1:
            self.flows.evict_oldest()

    def _conflict(self, flow: Flow, stream, ts: float) -> None:
        """Retransmitted bytes differ from what named the flow: it is named no longer."""
        st = flow.track_state
        if st is not None and st.watch is stream:
            st.watch = None
        stream.release()
        flow.ambiguous = True
        naming.settle(flow, self.names, ts)
        self._hold_chain(flow)
        self._report_conflict(flow, stream, ts)

    def _report_conflict(self, flow: Flow, stream, ts: float) -> None:
        seq, length = stream.conflict
        self.emit(ConflictingCopies(ts, "tcp", flow, f"{flow.transport} {flow.client_ip}:"
                                    f"{flow.client_port} -> {flow.server_ip}:{flow.server_port}",
                                    {"seq": seq, "length": length,
                                     "first_name": flow.sni or flow.http_host}))

    def _ended(self, flow: Flow, reason: str) -> None:
        if not flow.named:
            self._settle(flow, live=False)
        self.chain_chars -= flow.chain_chars
        flow.chain_chars = 0
        st = flow.track_state
        if st is not None:
            st.release()
            flow.track_state = None
        self.emit(FlowEnded(flow, reason))

    # -- time -----------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Run idle expiry; called from the packet path once a second of capture time,
        and by the live source when the interface is quiet."""
        if self.telemetry.first_packet_ts is None:
            self.telemetry.first_packet_ts = now
        self.now = now
        self._next_sweep = now + SWEEP_EVERY
        self.flows.expire(now)
        self.pending.expire(now)
        if now >= self._next_name_sweep:
            self._next_name_sweep = now + NAME_SWEEP_EVERY
            self.names.expire(now)

    def flush(self, reason: str = "end_of_capture") -> None:
        self.flows.flush(reason)
