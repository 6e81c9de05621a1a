"""Components and the dispatcher that delivers events to them, one component at a time.

A component is anything downstream of the tracker: the judge, a detector, a sink. It names
itself (`name`, for error counting), handles an event by defining the method the event class
names (`flow_ended(self, ev)`), and declares its lifecycle by overriding two methods of
`Component`: `bind(emit)` to receive the function that raises events of its own (the judge,
detectors), `close()` to release what it holds at the end.

Each handler call is isolated: an exception in one component is a bug in that component,
not in the traffic. It is counted in `component_errors_total{component,event}` and said once
on stderr, and every other component still receives the event; one sink failing to close
never keeps the others from closing.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar

from auditor.events import Event, event_types
from auditor.telemetry import Telemetry

Emit = Callable[[Event], None]


class Component:
    """Base of every pipeline component."""
    name: ClassVar[str] = "component"

    def bind(self, emit: Emit) -> None:
        """Receive the function that raises events; components that raise none ignore it."""

    def close(self) -> None:
        """End of the run: flush and release. Must not raise for ordinary I/O trouble."""


class Dispatcher:
    """Delivers each event to every component that handles it, in component order (judge
    before detectors before sinks, so sinks see verdicts and findings)."""

    def __init__(self, components: list[Component], telemetry: Telemetry) -> None:
        self.components = list(components)
        self.telemetry = telemetry
        self._handlers: dict[type, list[tuple[str, Callable[[Any], None]]]] = {}
        self._rebuild()

    def _rebuild(self) -> None:
        self._handlers = {}
        for et in event_types():
            handlers = []
            for c in self.components:
                handle = getattr(c, et.handler, None)
                if handle is not None:
                    handlers.append((c.name, handle))
            self._handlers[et] = handlers
        for c in self.components:
            self.telemetry.expect_component(
                c.name, [et.handler for et in event_types() if getattr(c, et.handler, None)]
                + ["close"])

    def add(self, component: Component) -> None:
        """Add a component (after the ones already there) and bind it."""
        self.components.append(component)
        component.bind(self)
        self._rebuild()

    def bind_all(self) -> None:
        for c in self.components:
            c.bind(self)

    def wants(self, event_type: type) -> bool:
        return bool(self._handlers.get(event_type))

    def __call__(self, event: Event) -> None:
        for name, handle in self._handlers[type(event)]:
            try:
                handle(event)
            except Exception as exc:  # noqa: BLE001 - isolation is the point: see the docstring
                self.telemetry.component_failed(name, type(event).handler, exc)

    def close(self) -> None:
        for c in self.components:
            try:
                c.close()
            except Exception as exc:  # noqa: BLE001
                self.telemetry.component_failed(c.name, "close", exc)
