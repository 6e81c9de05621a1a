"""The Python API: audit captures from a user's own code or test suite.

    from auditor import audit
    report = audit(["job.pcap"], {"policy": "workspace.yml", "node_networks": ["10.0.0.0/16"]})
    assert not report.violations, report.summary()

Events in the report are the same ECS documents the JSON-lines log would hold.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from auditor import settings as settings_mod
from auditor.events import Finding, FlowEnded, Violation
from auditor.settings import Settings
from auditor.sinks import ecs


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


class _Collect:
    def __init__(self, ruleset: str | None):
        self.report = Report()
        self.ruleset = ruleset

    def flow_ended(self, ev: FlowEnded) -> None:
        if ev.flow.egress:
            self.report.flows.append(ecs.flow_event(ev.flow, ruleset=self.ruleset))

    def violation(self, ev: Violation) -> None:
        self.report.violations.append(ecs.flow_event(ev.flow, "violation", ts=ev.ts, ruleset=self.ruleset))

    def finding(self, ev: Finding) -> None:
        self.report.findings.append(ecs.finding_event(ev))


def audit(pcaps: Iterable[str | Path] | str | Path,
          config: Settings | Mapping[str, Any] | str | Path | None = None, **overrides: Any) -> Report:
    """Audit capture files in order. `config` is a Settings, a mapping of settings, or the
    path of a settings YAML; keyword overrides win over it. Raises `ValueError` with the
    same one-line message the CLI prints for bad input."""
    from auditor.app import build
    from auditor.cli import BadInput
    from auditor.sources.pcap import CaptureError, CaptureFile

    if isinstance(pcaps, (str, Path)):
        pcaps = [pcaps]
    try:
        if isinstance(config, Settings):
            settings = config.model_copy(update=overrides)
        elif isinstance(config, (str, Path)):
            settings = settings_mod.load(Path(config), **overrides)
        else:
            settings = settings_mod.load(None, **{**dict(config or {}), **overrides})
        settings = settings.model_copy(update={"events": None})
        audit_ = build(settings)
        collector = _Collect(audit_.verdicts.ruleset if audit_.verdicts else None)
        audit_.pipeline.dispatch.add(collector)
        files = [CaptureFile(p) for p in pcaps]
    except (BadInput, CaptureError, settings_mod.ConfigError) as exc:
        raise ValueError(str(exc)) from None
    for capture in files:
        audit_.pipeline.feed(capture)
        collector.report.warnings += capture.warnings
    audit_.pipeline.close()
    out = io.StringIO()
    audit_.summary.render(audit_.pipeline, out)
    collector.report._text = out.getvalue()
    return collector.report
