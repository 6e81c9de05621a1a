"""Components are isolated: a bug in one is counted and reported once, every other component
still receives every event, and every component is closed. The event registry is built from
the event classes themselves."""
from __future__ import annotations

import io
import json

from auditor import assemble, events
from auditor.components import Component, Dispatcher
from auditor.events import Event, FlowEnded
from auditor.settings import Settings
from auditor.telemetry import Telemetry
from tests.detect._helpers import CLIENT, tcp_session, tls_hello
from tests.util import frames


class FailsOnSecondFlow(Component):
    name = "flaky"

    def __init__(self) -> None:
        self.seen = 0
        self.closed = False

    def flow_ended(self, ev: FlowEnded) -> None:
        self.seen += 1
        if self.seen == 2:
            raise RuntimeError("bug on the second flow")

    def close(self) -> None:
        self.closed = True
        raise OSError("and closing fails too")


class Closes(Component):
    name = "closes"

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def six_flows():
    pk = []
    for i in range(6):
        pk += tcp_session(CLIENT, f"93.184.216.{10 + i}", 40000 + i, 443, tls_hello(f"h{i}.example.com"))
    return frames(pk)


def test_a_component_that_raises_on_its_second_flow_hurts_nobody_else(tmp_path, capsys):
    flaky, after = FailsOnSecondFlow(), Closes()
    events_file = tmp_path / "events.jsonl"
    audit = assemble.build(Settings(events=str(events_file), node_networks=["10.0.0.0/8"]),
                           extra=[flaky, after])
    # The flaky component sits before the sinks: put it first so it would starve them.
    audit.pipeline.dispatch.components.insert(0, audit.pipeline.dispatch.components.pop(-2))
    audit.pipeline.dispatch._rebuild()
    audit.pipeline.feed(six_flows())
    audit.pipeline.close()
    assert audit.summary.flows == 6                         # not 1 of 6
    lines = [json.loads(x) for x in events_file.read_text().splitlines()]
    assert sum(1 for x in lines if x["event"]["action"] == "flow") == 6
    assert flaky.seen == 6 and flaky.closed and after.closed  # all closed despite flaky.close()
    t = audit.telemetry
    assert t.component_errors[("flaky", "flow_ended")] == 1
    assert t.component_errors[("flaky", "close")] == 1
    assert t.malformed_total() == 0                          # a bug is not malformed input
    assert audit.registry.get_sample_value("egress_auditor_component_errors_total",
                                           {"component": "flaky", "event": "flow_ended"}) == 1
    assert audit.registry.get_sample_value("egress_auditor_flows_total", {
        "verdict": "unjudged", "rule_type": "none", "rule": ""}) == 6
    err = capsys.readouterr().err
    assert err.count("internal error in flaky") == 1          # said once
    out = io.StringIO()
    audit.summary.render(out)
    assert "internal errors 2 in flaky" in out.getvalue()


def test_error_series_exist_before_any_error():
    audit = assemble.build(Settings())
    assert audit.registry.get_sample_value("egress_auditor_component_errors_total",
                                           {"component": "summary", "event": "flow_ended"}) == 0


def test_event_registry_is_built_from_the_classes():
    names = {et.__name__ for et in events.event_types()}
    assert {"FlowStarted", "FlowNamed", "FlowEnded", "DnsQuery", "DnsAnswered", "Violation",
            "Finding"} <= names
    assert all(et.handler and issubclass(et, Event) for et in events.event_types())

    class SomethingHappened(Event):      # a new event type needs nothing but its class
        __slots__ = ()

    got = []

    class Listener(Component):
        name = "listener"

        def something_happened(self, ev) -> None:
            got.append(ev)

    d = Dispatcher([Listener()], Telemetry())
    d(SomethingHappened())
    assert SomethingHappened.handler == "something_happened" and len(got) == 1
