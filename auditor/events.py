"""The typed facts that flow through the pipeline, and the dispatcher that delivers them.

Decoders and trackers report facts; components (the judge, detectors, sinks) react to
them. As in mitmproxy's addon model, a component handles an event by defining a method
named after the event class in snake_case (`FlowEnded` -> `flow_ended(self, ev)`): adding a
detector is adding one file, with no registration. Events are plain slotted dataclasses;
they are created per flow or per DNS message, never per packet, so dispatch stays off the
per-packet hot path.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # only for annotations: events.py must not import the tracker at runtime
    from auditor.decode.dns import DnsMessage
    from auditor.track.flows import Flow


@dataclass(slots=True)
class FlowStarted:
    """A new flow entered the table (first packet of a 5-tuple, or a SYN after close)."""
    flow: Flow


@dataclass(slots=True)
class FlowNamed:
    """The flow's name is settled: its first client payload was decoded (SNI, Host, or
    nothing useful), or it ended without one. Verdicts are decided on this event."""
    flow: Flow


@dataclass(slots=True)
class FlowEnded:
    """The flow left the table. `reason`: close, idle, end_of_capture, evicted, shutdown."""
    flow: Flow
    reason: str


@dataclass(slots=True)
class DnsQuery:
    """A DNS query sent by `flow.client` (UDP or TCP)."""
    ts: float
    flow: Flow
    message: DnsMessage


@dataclass(slots=True)
class DnsAnswered:
    """A DNS response seen on the wire. `solicited` is True only when it answers a query
    this client actually sent (same transaction id, 5-tuple, before the query timed out);
    only solicited answers name flows. `chains` maps each answered IP to the names that
    led to it, queried name first."""
    ts: float
    flow: Flow
    message: DnsMessage
    solicited: bool
    chains: dict[str, tuple[str, ...]]


@dataclass(slots=True)
class Violation:
    """A flow was denied by the policy; raised as soon as the verdict is decided."""
    ts: float
    flow: Flow


@dataclass(slots=True)
class Finding:
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


def handler_name(event_type: type) -> str:
    """`FlowEnded` -> `flow_ended`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", event_type.__name__).lower()


EVENT_TYPES = (FlowStarted, FlowNamed, FlowEnded, DnsQuery, DnsAnswered, Violation, Finding)


@dataclass
class Dispatcher:
    """Delivers each event to every component that has a handler for it, in component
    order (judge before detectors before sinks, so sinks see verdicts and findings)."""
    components: list[object] = field(default_factory=list)
    _handlers: dict[type, list[Callable[[Any], None]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rebuild()

    def rebuild(self) -> None:
        self._handlers = {
            et: [getattr(c, handler_name(et)) for c in self.components
                 if callable(getattr(c, handler_name(et), None))]
            for et in EVENT_TYPES
        }

    def add(self, component: object) -> None:
        self.components.append(component)
        self.rebuild()

    def wants(self, event_type: type) -> bool:
        return bool(self._handlers.get(event_type))

    def __call__(self, event: object) -> None:
        for handle in self._handlers[type(event)]:
            handle(event)
