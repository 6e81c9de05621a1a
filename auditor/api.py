"""The Python API: audit captures from a user's own code or test suite.

    from auditor import audit
    report = audit(["job.pcap"], {"policy": "workspace.yml", "node_networks": ["10.0.0.0/16"]})
    assert not report.violations, report.summary()

Events in the report are the same ECS documents the JSON-lines log would hold. Bad input
raises `auditor.errors.AuditorError` (a `ValueError`) with the one-line message the command
line prints.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from auditor import assemble
from auditor import settings as settings_mod
from auditor.components import Component
from auditor.events import Finding, FlowEnded, Violation
from auditor.lifecycle import feed_file
from auditor.sinks import ecs
from auditor.sources.pcap import CaptureFile


@dataclass
class Report:
    flows: list[dict] = field(default_factory=list)
    violations: list[dict] = field(default_factory=list)
    findings: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    _text: str = ""

    @property
    def denied(self) -> list[dict]:
        """Flow events (final counts) whose verdict was `denied`."""
        return [f for f in self.flows if f["egress_auditor"].get("verdict") == "denied"]

    def summary(self) -> str:
        return self._text


class _Collect(Component):
    name = "api"

    def __init__(self) -> None:
        self.report = Report()
        self.ecs: ecs.EcsFormatter = ecs.EcsFormatter()

    def flow_ended(self, ev: FlowEnded) -> None:
        if ev.flow.egress:
            self.report.flows.append(self.ecs.flow(ev.flow))

    def violation(self, ev: Violation) -> None:
        self.report.violations.append(self.ecs.flow(ev.flow, "violation", ts=ev.ts))

    def finding(self, ev: Finding) -> None:
        self.report.findings.append(self.ecs.finding(ev))


def load_settings(config: Any = None, **overrides: Any):
    """Settings from a Settings object, a mapping of settings or a settings YAML path."""
    if isinstance(config, settings_mod.BaseAuditorSettings):
        return config.model_copy(update=overrides)
    if isinstance(config, (str, Path)):
        return settings_mod.load(Path(config), **overrides)
    return settings_mod.load(None, **{**dict(config or {}), **overrides})


def audit(pcaps: Iterable[str | Path] | str | Path,
          config: Any | Mapping[str, Any] | str | Path | None = None, **overrides: Any) -> Report:
    """Audit capture files in order. `config` is a Settings, a mapping of settings, or the
    path of a settings YAML; keyword overrides win over it."""
    if isinstance(pcaps, (str, Path)):
        pcaps = [pcaps]
    settings = load_settings(config, **overrides).model_copy(update={"events": None})
    collector = _Collect()
    built = assemble.build(settings, extra=[collector], process_metrics=False)
    collector.ecs = built.ecs
    collector.report.warnings += built.notices
    files = [CaptureFile(p) for p in pcaps]
    for capture in files:
        collector.report.warnings += feed_file(built.pipeline, capture)
    built.pipeline.close()
    out = io.StringIO()
    built.summary.render(out)
    collector.report._text = out.getvalue()
    return collector.report
