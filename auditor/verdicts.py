"""The judge stage: one policy verdict per egress flow, decided when its name is settled.

The policy engine (`auditor.policy.verdict.Judge`) is pure; this component applies it to
flows, raises a `Violation` the moment a flow is denied, and can swap in a new judge on
SIGHUP without touching the flow table. Because the judge is pure, its verdicts are cached
by everything it reads (address, port, transport, name and where it came from, DNS chain,
whether that chain is trusted): the same few hundred destinations come up for every flow.
The cache is capped (`VERDICT_CACHE` entries, oldest out first, counted in
`table_evictions_total{table="verdict_cache"}`) and emptied when a new policy is loaded.
"""
from __future__ import annotations

from collections import OrderedDict

from auditor.components import Component, Emit
from auditor.events import ConflictingCopies, FlowNamed, Violation
from auditor.policy.verdict import Judge, Verdict
from auditor.telemetry import Table, Telemetry

VERDICT_CACHE = 8192
# A verdict whose key holds a longer DNS chain is decided but not kept: a key holds its chain,
# so 8,192 crafted 16-name chains of long names would keep ~130 MB after the flows and the
# name cache let go of them. Ordinary chains are a few names, ~200 characters.
CACHEABLE_CHAIN_CHARS = 1024


class Verdicts(Component):
    name = "judge"

    def __init__(self, judge: Judge, telemetry: Telemetry | None = None):
        self.telemetry = telemetry or Telemetry()
        # An OrderedDict: evicting the oldest entry of a plain dict scans the slots that
        # earlier evictions left behind (~5 us at this size), which a flood of new
        # destinations would pay on every flow.
        self._cache: OrderedDict[tuple, Verdict] = OrderedDict()
        self.judge = judge
        self._emit: Emit | None = None

    @property
    def judge(self) -> Judge:
        return self._judge

    @judge.setter
    def judge(self, judge: Judge) -> None:
        """A new policy generation: no verdict of the old one may be reused."""
        self._judge = judge
        self._cache = OrderedDict()

    @property
    def ruleset(self) -> str:
        return self.judge.mode.value

    def bind(self, emit: Emit) -> None:
        self._emit = emit

    def flow_named(self, ev: FlowNamed) -> None:
        flow = ev.flow
        if not flow.egress or flow.verdict is not None:
            return
        key = (flow.server_ip, flow.server_port, flow.transport, flow.domain, flow.name_source,
               flow.dns_chain, flow.dns_trusted)
        verdict = self._cache.get(key)
        if verdict is None:
            verdict = self._judge.judge(*key)
            if not flow.dns_chain or sum(map(len, flow.dns_chain)) <= CACHEABLE_CHAIN_CHARS:
                cache = self._cache
                if len(cache) >= VERDICT_CACHE:
                    cache.popitem(last=False)
                    self.telemetry.evicted(Table.VERDICT_CACHE)
                cache[key] = verdict
        flow.verdict = verdict
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
