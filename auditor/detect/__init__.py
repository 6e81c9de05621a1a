"""Exfiltration-risk detectors (SPEC §8), one module each.

A detector is a component: it defines handlers for the events it needs (`dns_query`,
`dns_answered`, `flow_named`, `flow_ended`) and raises `Finding`s through the emit function
it is bound to. Each fires at most once per key per window and keeps capped state.
"""
from __future__ import annotations

from auditor.settings import Settings


def build_detectors(settings: Settings) -> list[object]:
    return []
