"""The judge stage: one policy verdict per egress flow, decided when its name is settled.

The policy engine (`auditor.policy.verdict.Judge`) is pure; this component applies it to
flows, raises a `Violation` the moment a flow is denied, and can swap in a new judge on
SIGHUP without touching the flow table.
"""
from __future__ import annotations

from auditor.components import Component, Emit
from auditor.events import ConflictingCopies, FlowNamed, Violation
from auditor.policy.verdict import Judge


class Verdicts(Component):
    name = "judge"

    def __init__(self, judge: Judge):
        self.judge = judge
        self._emit: Emit | None = None

    @property
    def ruleset(self) -> str:
        return self.judge.mode.value

    def bind(self, emit: Emit) -> None:
        self._emit = emit

    def flow_named(self, ev: FlowNamed) -> None:
        flow = ev.flow
        if not flow.egress or flow.verdict is not None:
            return
        flow.verdict = verdict = self.judge.judge(
            flow.server_ip, flow.server_port, flow.transport, flow.domain, flow.name_source,
            flow.dns_chain, flow.dns_trusted)
        if not verdict.allowed and self._emit is not None:
            self._emit(Violation(flow.last, flow))

    def conflicting_copies(self, ev: ConflictingCopies) -> None:
        """The name that allowed a flow may not be what the server got: judge it again on
        what is left (its DNS name can no longer satisfy an FQDN rule)."""
        flow = ev.flow
        if flow is None or not flow.egress or flow.verdict is None or not flow.verdict.allowed:
            return
        flow.verdict = None
        self.flow_named(FlowNamed(flow))
