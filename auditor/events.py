"""The typed facts that flow through the pipeline.

Decoders and the tracker report facts; components (the judge, detectors, sinks) react to
them. As in mitmproxy's hook model, each event class carries its handler name (`FlowEnded`
-> `flow_ended`), and a component handles an event by defining a method of that name. The
registry of event types is built from the classes themselves (`EVENT_TYPES`): defining a
subclass of `Event` is all it takes. Events are created per flow or per DNS message (and a
`Tick` a few times a second), never per packet, so dispatch stays off the per-packet hot path.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # annotations only: events must not import the tracker or decoders
    from auditor.decode.dns import DnsMessage
    from auditor.flow import Flow

_EVENTS: dict[str, type[Event]] = {}


class Event:
    """Base of every event. `handler` is the method name a component defines to receive it."""
    __slots__ = ()
    handler: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.handler = re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()
        # dataclass(slots=True) re-creates the class: the later one replaces the first.
        _EVENTS[cls.handler] = cls


def event_types() -> tuple[type[Event], ...]:
    """Every event class defined so far, in definition order."""
    return tuple(_EVENTS.values())


@dataclass(slots=True)
class FlowStarted(Event):
    """A new flow entered the table (first packet of a 5-tuple, or a SYN after close)."""
    flow: Flow


@dataclass(slots=True)
class FlowNamed(Event):
    """The flow's name is settled: its first client payload was decoded (SNI, Host, or
    nothing useful), or it ended without one. Verdicts are decided on this event."""
    flow: Flow


@dataclass(slots=True)
class FlowEnded(Event):
    """The flow left the table. `reason`: close, idle, end_of_capture, evicted, shutdown."""
    flow: Flow
    reason: str


@dataclass(slots=True)
class DnsQuery(Event):
    """A DNS query seen on the wire (UDP, TCP, or cleartext DoH). `from_client`: it was sent
    by `flow.client`; False when the flow's client is the DNS server (a node's DNS service
    asked by a remote: the node end is the client)."""
    ts: float
    flow: Flow
    message: DnsMessage
    from_client: bool = True


@dataclass(slots=True)
class DnsAnswered(Event):
    """A DNS response seen on the wire. `solicited` is True only when it answers a query
    this client actually sent (same transaction id, 5-tuple, before the query timed out);
    only solicited answers name flows. `chains` maps each answered IP to the names that
    led to it, queried name first. `to_client`: the response went to `flow.client`, the
    querier; False when the flow's client is the DNS server (its first packet was the
    response, or a node's DNS service answered a remote: the node end is the client)."""
    ts: float
    flow: Flow
    message: DnsMessage
    solicited: bool
    chains: dict[str, tuple[str, ...]]
    to_client: bool = True


@dataclass(slots=True)
class ConflictingCopies(Event):
    """The same bytes were sent twice with different contents: a TCP retransmission that
    disagrees with the copy that named the flow (`kind="tcp"`, `flow` set), or overlapping
    IP fragments that disagree (`kind="fragment"`, the datagram was dropped)."""
    ts: float
    kind: str
    flow: Flow | None
    key: str
    evidence: dict[str, Any]


@dataclass(slots=True)
class Violation(Event):
    """A flow was denied by the policy; raised as soon as the verdict is decided."""
    ts: float
    flow: Flow


@dataclass(slots=True)
class Finding(Event):
    """An exfiltration-risk detector fired (once per key per window)."""
    ts: float
    detector: str
    severity: str  # low | medium | high | critical
    key: str
    evidence: dict[str, Any]
    flow: Flow | None = None
    source_ip: str | None = None
    destination_ip: str | None = None
    destination_port: int | None = None
    destination_domain: str | None = None
    key_kind: str = "ip"        # what `key` names: ip, name, domain (registered), flow


@dataclass(slots=True)
class Tick(Event):
    """Time passes: sent by the pipeline at most every `TICK_EVERY` seconds of wall time
    (with traffic and when the interface is quiet), so a component holding output (the
    events file's batch) can let it go without waiting for the next event."""
    monotonic: float


TICK_EVERY = 0.25
