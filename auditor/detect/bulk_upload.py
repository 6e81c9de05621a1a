"""`bulk_upload`: a node pushing much more than it pulls to one destination (SPEC §8), keyed
by destination domain, else IP.

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

from auditor.detect.base import Context, Detector, DetectorSettings
from auditor.events import FlowEnded

BUCKETS = 10
MIB = 1024 * 1024


class BulkUploadSettings(DetectorSettings):
    """`bulk_upload` thresholds."""
    window_seconds: float = Field(600.0, gt=0, description="sliding window bytes are summed over")
    min_bytes: int = Field(20 * MIB, ge=1, description="bytes sent to one destination in the window")
    min_pcr: float = Field(0.5, ge=-1, le=1, description="producer-consumer ratio (up-down)/(up+down)")


class BulkUpload(Detector):
    """A node pushing much more than it pulls to one destination."""
    name = "bulk_upload"
    severities = ("high",)
    Settings = BulkUploadSettings

    def __init__(self, settings: BulkUploadSettings, context: Context) -> None:
        super().__init__(settings, context)
        self.s = settings
        self.dest = self.table()   # key -> list of [bucket start, up, down, flows]

    def flow_ended(self, ev: FlowEnded) -> None:
        flow = ev.flow
        if not flow.egress or (flow.c_bytes == 0 and flow.s_bytes == 0):
            return
        verdict = flow.verdict
        if verdict is not None and getattr(verdict, "reason", None) == "private_endpoint":
            return
        key = flow.domain or flow.server_ip
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
        up = sum(h[1] for h in hist)
        down = sum(h[2] for h in hist)
        pcr = (up - down) / (up + down) if up + down else 0.0
        if up < self.s.min_bytes or pcr < self.s.min_pcr:
            return
        evidence = {
            "client": flow.client_ip,
            "bytes_sent": up,
            "bytes_received": down,
            "mib_sent": round(up / MIB, 1),
            "pcr": round(pcr, 3),
            "flows": sum(h[3] for h in hist),
            "window_seconds": self.window,
            "verdict": getattr(verdict, "reason", None),
        }
        self.fire(ts, "high", key, evidence, flow)
