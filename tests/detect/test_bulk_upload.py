"""bulk_upload: >= min_bytes sent to one destination in the window with PCR >= min_pcr."""
from auditor.settings import Settings
from tests.detect._helpers import CLIENT, detect, tcp_session, tls_hello

SMALL = {"bulk_upload": {"min_bytes": 200_000}}   # scaled down so the test builds few frames
DEST = "93.184.216.34"


def test_upload_fires_at_flow_end_with_evidence():
    pk = tcp_session(CLIENT, DEST, 40000, 443, tls_hello("upload.example.com"), up=250_000, down=2_000)
    found, _ = detect(pk, only="bulk_upload", detectors=SMALL)
    assert [(f.key, f.severity) for f in found] == [("upload.example.com", "high")]
    ev = found[0].evidence
    assert ev["bytes_sent"] > 250_000 and ev["pcr"] > 0.9 and ev["flows"] == 1


def test_download_or_balanced_transfer_does_not_fire():
    down = tcp_session(CLIENT, DEST, 40000, 443, tls_hello("dl.example.com"), up=10_000, down=400_000)
    both = tcp_session(CLIENT, DEST, 40001, 443, tls_hello("sync.example.com"), up=250_000, down=200_000)
    assert detect(down + both, only="bulk_upload", detectors=SMALL)[0] == []


def test_small_flows_add_up_per_destination_keyed_by_ip_when_unnamed():
    pk = []
    for i in range(5):
        pk += tcp_session(CLIENT, DEST, 40000 + i, 8443, b"\x00\x01", up=40_000)  # ~41 kB each
    found, _ = detect(pk, only="bulk_upload", detectors=SMALL)
    assert [(f.key, f.evidence["flows"]) for f in found] == [(DEST, 5)]


def test_window_forgets_old_bytes():
    pk = tcp_session(CLIENT, DEST, 40000, 8443, b"\x00", up=120_000)
    pk += [(2000.0 + i * 0.01, p) for i, p in enumerate(tcp_session(CLIENT, DEST, 40001, 8443, b"\x00", up=120_000))]
    assert detect(pk, only="bulk_upload", detectors=SMALL)[0] == []


def test_once_per_destination_per_window():
    pk = []
    for i in range(3):
        pk += tcp_session(CLIENT, DEST, 40000 + i, 8443, b"\x00", up=220_000)
    pk += [(2000.0 + i * 0.01, p) for i, p in enumerate(tcp_session(CLIENT, DEST, 41000, 8443, b"\x00", up=220_000))]
    found, _ = detect(pk, only="bulk_upload", detectors=SMALL)
    assert [f.ts >= 2000 for f in found] == [False, True]


def test_private_endpoint_destination_is_exempt():
    from auditor.detect.bulk_upload import BulkUpload
    from auditor.events import FlowEnded
    from auditor.detect.base import Context
    from auditor.policy.verdict import Reason, Verdict
    from auditor.telemetry import Telemetry
    from tests.util import run
    det = BulkUpload(Settings(detectors=SMALL).detectors.bulk_upload, Context(Telemetry(), max_keys=100))
    _, rec = run(tcp_session(CLIENT, DEST, 40000, 443, tls_hello("acct.blob.core.windows.net"), up=250_000))
    flow = rec.of(FlowEnded)[0].flow
    raised = []
    det.bind(raised.append)
    flow.verdict = Verdict(True, Reason.PRIVATE_ENDPOINT, "pe", "private_endpoint")
    det.flow_ended(FlowEnded(flow, "close"))
    assert raised == []
    flow.verdict = Verdict(True, Reason.SERVICE_TAG, "Storage", "service_tag")
    det.flow_ended(FlowEnded(flow, "close"))
    assert [f.key for f in raised] == ["acct.blob.core.windows.net"]


def test_state_is_capped_and_evictions_counted():
    pk = []
    for i in range(5):
        pk += tcp_session(CLIENT, f"93.184.216.{10 + i}", 40000 + i, 8443, b"\x00\x01", up=1_000)
    found, ev = detect(pk, only="bulk_upload", detectors={**SMALL, "max_keys": 2})
    assert found == [] and ev["detector_state"] == 3


def test_default_thresholds_are_the_spec_ones():
    s = Settings().detectors
    assert (s.bulk_upload.min_bytes, s.bulk_upload.min_pcr, s.bulk_upload.window_seconds) == (20 * 2**20, 0.5, 600)
    t = s.dns_tunneling
    assert (t.window_seconds, t.min_queries, t.long_subdomain, t.entropy_bits, t.entropy_min_length,
            t.min_distinct_names) == (300, 25, 50, 3.5, 20, 15)
