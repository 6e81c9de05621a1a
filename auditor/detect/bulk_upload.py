"""`bulk_upload`: a node pushing much more than it pulls to one destination, counted per
destination name, per destination IP and per registered domain (each its own key).

Per destination over a sliding window (default 10 min): >= `min_bytes` sent (client->server
IP-layer bytes) and producer-consumer ratio PCR = (up - down) / (up + down) >= `min_pcr`
(+1 pure upload, 0 balanced, -1 pure download; a TCP upload's returning ACKs keep it near
0.95). Flows to private endpoints (verdict reason `private_endpoint`) are exempt: that is
the sanctioned way to write to storage.

Bytes are counted when a flow ends: the tracker raises no per-packet events, so an upload
held open on one long connection is reported when it closes, idles out, or at shutdown or
end-of-capture flush — and all its bytes count at that moment. Per destination the window is kept as
`BUCKETS` time buckets (sliding at a tenth of the window), so state stays small however many
flows there are, and many small flows cannot dodge the sum. Severity high.
"""
from __future__ import annotations

from pydantic import Field

from auditor.detect.base import Context, Detector, DetectorSettings, Evidence
from auditor.events import FlowEnded
from auditor.hostnames import registered_domain

BUCKETS = 10
MIB = 1024 * 1024


class BulkUploadSettings(DetectorSettings):
    """`bulk_upload` thresholds."""
    window_seconds: float = Field(600.0, gt=0, description="sliding window bytes are summed over")
    min_bytes: int = Field(20 * MIB, ge=1, description="bytes sent to one destination in the window")
    min_pcr: float = Field(0.5, ge=-1, le=1, description="producer-consumer ratio (up-down)/(up+down)")


class BulkUploadEvidence(Evidence):
    client: str
    key_kind: str = Field(description="name, ip or domain: which count crossed")
    bytes_sent: int
    bytes_received: int
    mib_sent: float
    pcr: float
    flows: int
    window_seconds: float
    verdict: str | None = None
    also: dict[str, str] = Field(default_factory=dict, description="other keys the same upload crossed")


class BulkUpload(Detector):
    """A node pushing much more than it pulls to one destination."""
    name = "bulk_upload"
    severities = ("high",)
    key_kind = "name"
    Settings = BulkUploadSettings
    Evidence = BulkUploadEvidence

    def __init__(self, settings: BulkUploadSettings, context: Context) -> None:
        super().__init__(settings, context)
        self.s = settings
        self.dest = self.table()   # key -> list of [bucket start, up, down, flows]

    def flow_ended(self, ev: FlowEnded) -> None:
        flow = ev.flow
        if not flow.egress or (flow.c_bytes == 0 and flow.s_bytes == 0):
            return
        verdict = flow.verdict
        if verdict is not None and verdict.reason == "private_endpoint":
            return
        # Counted three ways, so neither many names for one address nor many addresses for
        # one name (nor many subdomains of one domain) splits an upload below the threshold.
        keys: dict[tuple[str, str], None] = {}
        if flow.domain:
            keys[("name", flow.domain)] = None
            keys.setdefault(("domain", registered_domain(flow.domain)), None)
        keys[("ip", flow.server_ip)] = None
        crossed = []
        for kind, value in keys:
            if ("name", value) in keys and kind == "domain":
                continue                           # the name is its own registered domain
            up, down, flows = self._count((kind, value), flow)
            pcr = (up - down) / (up + down) if up + down else 0.0
            if up >= self.s.min_bytes and pcr >= self.s.min_pcr:
                crossed.append((kind, value, up, down, flows, pcr))
        if not crossed:
            return
        kind, key, up, down, flows, pcr = crossed[0]    # the most specific key names it
        evidence = {
            "client": flow.client_ip,
            "key_kind": kind,
            "bytes_sent": up,
            "bytes_received": down,
            "mib_sent": round(up / MIB, 1),
            "pcr": round(pcr, 3),
            "flows": flows,
            "window_seconds": self.window,
            "verdict": getattr(verdict, "reason", None),
            "also": {k: v for k, v, *_ in crossed[1:]},
        }
        if self.fire(flow.last, "high", key, evidence, flow, key_kind=kind):
            for _, other, *_rest in crossed[1:]:
                self.due(other, flow.last)          # one upload, one finding

    def _count(self, key: tuple[str, str], flow) -> tuple[int, int, int]:
        """Add the flow to `key`'s window; (bytes up, bytes down, flows) in the window."""
        ts = flow.last
        # A list, not a deque: at most BUCKETS + 1 items, and an empty deque costs 600 bytes,
        # which times `max_keys` destinations is most of a scan's detector state.
        hist = self.dest.touch(key, list)   # of [bucket start, up, down, flows]
        step = self.window / BUCKETS
        if hist and ts < hist[-1][0] + step:
            last = hist[-1]
            last[1] += flow.c_bytes
            last[2] += flow.s_bytes
            last[3] += 1
        else:
            hist.append([ts, flow.c_bytes, flow.s_bytes, 1])
        while hist[0][0] + step <= ts - self.window:  # bucket wholly older than the window
            del hist[0]
        return sum(h[1] for h in hist), sum(h[2] for h in hist), sum(h[3] for h in hist)
