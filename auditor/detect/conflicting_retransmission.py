"""`conflicting_retransmission`: the same bytes sent twice with different contents, keyed by
flow. TCP data re-sent with other bytes than the copy that named the flow, or overlapping IP
fragments that disagree: the classic insertion trick (one copy dies before the server, say
with a small TTL, the other arrives), used to show a monitor an allowed name while the server
gets another. The tracker has already stopped trusting the flow's SNI/Host (the judge looks
again) or dropped the datagram (as Linux does); this raises the alert. Severity high: no
ordinary stack retransmits different bytes.
"""
from __future__ import annotations

from pydantic import Field

from auditor.detect.base import Detector, DetectorSettings, Evidence
from auditor.events import ConflictingCopies


class ConflictingRetransmissionEvidence(Evidence):
    kind: str = Field(description="tcp or fragment")
    client: str | None = None
    seq: int | None = None
    length: int | None = None
    first_name: str | None = Field(None, description="the name the first copy presented")
    source: str | None = None
    destination: str | None = None
    proto: int | None = None
    ident: int | None = None
    offset: int | None = None


class ConflictingRetransmission(Detector):
    """TCP data or IP fragments re-sent with different bytes (insertion, evasion)."""
    name = "conflicting_retransmission"
    severities = ("high",)
    key_kind = "flow"
    Settings = DetectorSettings
    Evidence = ConflictingRetransmissionEvidence

    def conflicting_copies(self, ev: ConflictingCopies) -> None:
        flow = ev.flow
        evidence = {"kind": ev.kind, **ev.evidence}
        if flow is not None:
            evidence["client"] = flow.client_ip
            self.fire(ev.ts, "high", ev.key, evidence, flow)
        else:
            self.fire(ev.ts, "high", ev.key, evidence, source_ip=ev.evidence.get("source"),
                      destination_ip=ev.evidence.get("destination"))
