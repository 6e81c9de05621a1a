"""The detectors the auditor runs, and what is derived from that list.

Adding a detector is one new module (a `Detector` subclass with its name, severities and
`Settings` model) and one line in `DETECTORS`. From the tuple follow: the `detectors:`
section of the settings (one sub-model per detector, plus `disabled` and `max_keys`), the
pre-created `findings_total{detector,severity}` series, and which detectors are built.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from auditor.detect.base import Context, Detector
from auditor.detect.bulk_upload import BulkUpload
from auditor.detect.conflicting_retransmission import ConflictingRetransmission
from auditor.detect.direct_ip import DirectIp
from auditor.detect.dns_tunnel import DnsTunneling
from auditor.detect.encrypted_dns import EncryptedDns
from auditor.detect.exfil_service import ExfilService
from auditor.detect.resolver import DnsResolverBypass
from auditor.detect.sni_mismatch import SniMismatch
from auditor.detect.sni_unresolved import SniUnresolved

DETECTORS: tuple[type[Detector], ...] = (
    DnsTunneling,
    DirectIp,
    DnsResolverBypass,
    EncryptedDns,
    SniMismatch,
    BulkUpload,
    SniUnresolved,
    ExfilService,
    ConflictingRetransmission,
)


@lru_cache(maxsize=16)
def settings_model(detectors: tuple[type[Detector], ...] = DETECTORS) -> type[BaseModel]:
    """The `detectors:` settings section for these detector classes."""
    names = tuple(d.name for d in detectors)

    def known(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(names))
        if unknown:
            raise ValueError(f"unknown detector {unknown[0]!r}; known: {', '.join(names)}")
        return v

    fields: dict[str, Any] = {
        d.name: (d.Settings, Field(default_factory=d.Settings,
                                   description=(d.__doc__ or d.name).strip().splitlines()[0]))
        for d in detectors}
    fields["disabled"] = (list[str], Field(default_factory=list, description="detectors not to run"))
    fields["max_keys"] = (int, Field(20_000, ge=1, description="cap on each detector's per-key state"))
    model = create_model(
        "DetectorsSettings", __config__=ConfigDict(extra="forbid"),
        __validators__={"_known": field_validator("disabled")(classmethod(known))},  # type: ignore[dict-item]
        **fields)
    model.classes = detectors  # type: ignore[attr-defined]
    return model


def build(section: BaseModel, context: Context) -> list[Detector]:
    """The enabled detectors of a `detectors:` settings section, in registry order."""
    disabled = set(getattr(section, "disabled"))
    return [d(getattr(section, d.name), context)
            for d in section.classes if d.name not in disabled]  # type: ignore[attr-defined]
