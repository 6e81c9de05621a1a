"""DNS on the wire (UDP and TCP port 53, and cleartext DoH from track.h2c): queries become pending entries, responses are
checked against them and, only when solicited, teach the name cache.

An answer counts for attribution only when it answers a query the node actually sent: same
transaction id and 5-tuple, within the query timeout, consumed on first use. Unsolicited,
late, wrong-id or wrong-server answers are still reported (as `DnsAnswered` with
`solicited=False`) so the audit log shows them, but they never name a flow — otherwise
anyone who can put a packet on the wire could launder a connection under a trusted name.
"""
from __future__ import annotations

from typing import Callable

from auditor.decode import dns
from auditor.events import DnsAnswered, DnsQuery, Event
from auditor.flow import Flow
from auditor.telemetry import Layer, Telemetry
from auditor.track.names import NameCache, PendingQueries
from auditor.track.state import state
from auditor.track.streams import Budget, StreamPrefix

A, AAAA = 1, 28
MAX_TCP_DNS_BUFFER = 65536 + 2


class DnsWatch:
    def __init__(self, names: NameCache, pending: PendingQueries, emit: Callable[[Event], None],
                 telemetry: Telemetry, budget: Budget | None = None,
                 trusted: frozenset[str] = frozenset()):
        self.budget = budget
        self.trusted = trusted      # resolvers whose answers may lead to private endpoints
        self.names = names
        self.pending = pending
        self.emit = emit
        self.telemetry = telemetry
        self.responses = 0

    def datagram(self, flow: Flow, payload: bytes, from_client: bool, ts: float) -> None:
        self._message(flow, dns.parse(payload), from_client, ts)

    def segment(self, flow: Flow, seq: int, payload: bytes, from_client: bool, ts: float) -> None:
        st = state(flow)
        stream = st.client_stream if from_client else st.server_stream
        if stream is None:
            stream = StreamPrefix(MAX_TCP_DNS_BUFFER,
                                  isn=st.client_isn if from_client else st.server_isn,
                                  budget=self.budget)
            if from_client:
                st.client_stream = stream
            else:
                st.server_stream = stream
        if not stream.add(seq, payload):
            return
        messages, used = dns.split_tcp(bytes(stream.data))
        stream.consume(used)
        for raw in messages:
            self._message(flow, dns.parse(raw), from_client, ts)

    def doh_message(self, flow: Flow, raw: bytes, from_client: bool, ts: float,
                    stream: int) -> None:
        """A DNS message carried by cleartext DNS over HTTPS (track.h2c). RFC 8484 asks for
        id 0 on every query, so the HTTP/2 stream, not the id alone, pairs it with its answer."""
        self._message(flow, dns.parse(raw), from_client, ts, (stream,))

    def _message(self, flow: Flow, msg: dns.DnsMessage | dns.Status, from_client: bool,
                 ts: float, tag: tuple = ()) -> None:
        if not isinstance(msg, dns.DnsMessage):
            self.telemetry.bad(Layer.DNS)
            return
        # Inside a tunnel both ends are scoped to it: its queries, answers and learnt names
        # are its own, and no tunnelled answer comes from a trusted resolver.
        scope = flow.name_scope
        if from_client:
            sender = (flow.client_ip + scope, flow.client_port)
            receiver = (flow.server_ip + scope, flow.server_port)
        else:
            sender = (flow.server_ip + scope, flow.server_port)
            receiver = (flow.client_ip + scope, flow.client_port)
        if not msg.is_response:
            self.pending.sent((*sender, *receiver, msg.id, *tag), ts)
            self.emit(DnsQuery(ts, flow, msg, from_client))
            return
        self.responses += 1
        # The querier is whoever receives the response.
        solicited = self.pending.answered((*receiver, *sender, msg.id, *tag), ts)
        chains = dns.resolved_chain(msg) if msg.answers else {}
        if solicited and chains:
            ttls = {ip: ttl for _owner, ip, ttl in msg.hints}
            ttls.update((r.data, r.ttl) for r in msg.answers if r.rtype == A or r.rtype == AAAA)
            self.names.learn(receiver[0], chains, ttls, ts, trusted=sender[0] in self.trusted)
        self.emit(DnsAnswered(ts, flow, msg, solicited, chains, not from_client))
