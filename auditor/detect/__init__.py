"""Exfiltration-risk detectors (SPEC §8), one module each.

A detector is a component: it defines handlers for the events it needs (`dns_query`,
`dns_answered`, `flow_named`, `flow_ended`) and raises `Finding`s through the emit function
it is bound to. Each fires at most once per key per window and keeps capped state; state
evictions are counted under `detector_state` in the `evictions` table given here (the
tracker's, so they reach `table_evictions_total`). Thresholds and their reasons:
docs/detectors.md.
"""
from __future__ import annotations

from auditor.detect.bulk_upload import BulkUpload
from auditor.detect.direct_ip import DirectIp
from auditor.detect.dns_tunnel import DnsTunneling
from auditor.detect.encrypted_dns import EncryptedDns
from auditor.detect.resolver import DnsResolverBypass
from auditor.detect.sni_mismatch import SniMismatch
from auditor.settings import Settings
from auditor.track.names import Evictions


def build_detectors(settings: Settings, evictions: Evictions | None = None) -> list[object]:
    """The enabled detectors, sharing one evictions table (the pipeline's, so their state
    evictions reach `table_evictions_total`; a fresh one if none is given)."""
    d = settings.detectors
    ev = evictions if evictions is not None else Evictions()
    window, cap = d.window_seconds, d.max_keys
    detectors = [
        DnsTunneling(d.dns_tunneling, cap, ev),
        DirectIp(window, cap, settings.dns_servers, ev),
        DnsResolverBypass(window, cap, settings.dns_servers, ev),
        EncryptedDns(window, cap, d.doh_resolvers, d.doh_resolver_ips, ev),
        SniMismatch(window, cap, ev),
        BulkUpload(d.bulk_upload, cap, ev),
    ]
    return [x for x in detectors if x.name not in d.disabled]

