"""The shared detector plumbing: capped LRU tables, the once-per-window gate, the builder."""
import pytest

from auditor.detect import build_detectors
from auditor.detect.window import Capped, Detector
from auditor.events import Finding
from auditor.settings import ConfigError, Settings, load
from auditor.track.names import Evictions


def test_capped_evicts_least_recently_touched_and_counts():
    evicted = []
    t = Capped(2, evicted.append)
    t.touch("a", list)
    t.touch("b", list)
    t.touch("a", list)          # a is now the most recent
    t.touch("c", list)
    assert list(t) == ["a", "c"] and evicted == [1]


def test_gate_fires_once_per_key_per_window():
    raised = []
    d = Detector(window_seconds=60, max_keys=10)
    d.bind(raised.append)
    assert d.fire(0, "low", "k", {}) and not d.fire(59, "low", "k", {}) and d.fire(0.5, "low", "j", {})
    assert d.fire(60, "low", "k", {})
    assert [(f.key, f.ts) for f in raised] == [("k", 0), ("j", 0.5), ("k", 60)]
    assert all(isinstance(f, Finding) and f.detector == "detector" for f in raised)


def test_build_detectors_default_call_and_shared_evictions():
    dets = build_detectors(Settings())
    assert [d.name for d in dets] == ["dns_tunneling", "direct_ip", "dns_resolver_bypass",
                                      "encrypted_dns", "sni_mismatch", "bulk_upload"]
    ev = Evictions()
    dets = build_detectors(Settings(detectors={"disabled": ["sni_mismatch"]}), evictions=ev)
    assert "sni_mismatch" not in [d.name for d in dets] and all(d.evictions is ev for d in dets)


def test_detector_evictions_reach_the_pipeline_metric():
    from prometheus_client import CollectorRegistry
    from auditor.app import build
    audit = build(Settings(detectors={"max_keys": 1}), CollectorRegistry())
    dets = [c for c in audit.pipeline.components if hasattr(c, "keys")]
    dets[0].keys.touch("a", dict)
    dets[0].keys.touch("b", dict)
    assert audit.registry.get_sample_value(
        "egress_auditor_table_evictions_total", {"table": "detector_state"}) == 1


def test_unknown_detector_name_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown detector 'dns_tunnel'"):
        load(detectors={"disabled": ["dns_tunnel"]})
