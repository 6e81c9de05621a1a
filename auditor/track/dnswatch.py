"""DNS on the wire (UDP and TCP port 53): queries become pending entries, responses are
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
from auditor.events import DnsAnswered, DnsQuery
from auditor.track.flows import Flow
from auditor.track.names import NameCache, PendingQueries
from auditor.track.streams import StreamPrefix

A, AAAA = 1, 28
MAX_TCP_DNS_BUFFER = 65536 + 2


class DnsWatch:
    def __init__(self, names: NameCache, pending: PendingQueries, emit: Callable[[object], None],
                 malformed: dict[str, int]):
        self.names = names
        self.pending = pending
        self.emit = emit
        self.malformed = malformed
        self.responses = 0

    def datagram(self, flow: Flow, payload: bytes, from_client: bool, ts: float) -> None:
        self._message(flow, dns.parse(payload), from_client, ts)

    def segment(self, flow: Flow, seq: int, payload: bytes, from_client: bool, ts: float) -> None:
        attr = "client_stream" if from_client else "server_stream"
        stream = getattr(flow, attr)
        if stream is None:
            stream = StreamPrefix(MAX_TCP_DNS_BUFFER,
                                  isn=flow.client_isn if from_client else flow.server_isn)
            setattr(flow, attr, stream)
        if not stream.add(seq, payload):
            return
        messages, used = dns.split_tcp(bytes(stream.data))
        stream.consume(used)
        for raw in messages:
            self._message(flow, dns.parse(raw), from_client, ts)

    def _message(self, flow: Flow, msg: dns.DnsMessage | None, from_client: bool, ts: float) -> None:
        if msg is None:
            self.malformed["dns"] = self.malformed.get("dns", 0) + 1
            return
        if from_client:
            sender = (flow.client_ip, flow.client_port)
            receiver = (flow.server_ip, flow.server_port)
        else:
            sender = (flow.server_ip, flow.server_port)
            receiver = (flow.client_ip, flow.client_port)
        if not msg.is_response:
            self.pending.sent((*sender, *receiver, msg.id), ts)
            self.emit(DnsQuery(ts, flow, msg))
            return
        self.responses += 1
        # The querier is whoever receives the response.
        solicited = self.pending.answered((*receiver, *sender, msg.id), ts)
        chains = dns.resolved_chain(msg) if msg.answers else {}
        if solicited and chains:
            ttls = {r.data: r.ttl for r in msg.answers if r.rtype == A or r.rtype == AAAA}
            self.names.learn(receiver[0], chains, ttls, ts)
        self.emit(DnsAnswered(ts, flow, msg, solicited, chains))
