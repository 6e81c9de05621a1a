"""The shared detector plumbing: capped LRU tables, the once-per-window gate, the registry,
and the promise that a new detector is one file: a toy detector defined here, and nowhere
else, gets its settings section, env override, metric series, switch and findings."""
import pytest
from pydantic import Field

from auditor import assemble
from auditor import settings as settings_mod
from auditor.detect import registry
from auditor.detect.base import Capped, Context, Detector, DetectorSettings, Evidence, evidence_fields
from auditor.errors import SettingsError
from auditor.events import Finding, FlowNamed
from auditor.settings import Settings, load
from auditor.telemetry import Telemetry
from tests.detect._helpers import CLIENT, tcp_session, tls_hello
from tests.util import Recorder, frames


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
    d = Detector(DetectorSettings(window_seconds=60), Context(Telemetry(), max_keys=10))
    d.bind(raised.append)
    assert d.fire(0, "low", "k", {}) and not d.fire(59, "low", "k", {}) and d.fire(0.5, "low", "j", {})
    assert d.fire(60, "low", "k", {})
    assert [(f.key, f.ts) for f in raised] == [("k", 0), ("j", 0.5), ("k", 60)]
    assert all(isinstance(f, Finding) and f.detector == "detector" for f in raised)


def test_registry_builds_every_detector_in_order_and_honours_disabled():
    s = Settings()
    ctx = Context(Telemetry())
    assert [d.name for d in registry.build(s.detectors, ctx)] == [d.name for d in registry.DETECTORS]
    s = Settings(detectors={"disabled": ["sni_mismatch"]})
    assert "sni_mismatch" not in [d.name for d in registry.build(s.detectors, ctx)]


def test_detector_evictions_reach_the_pipeline_metric():
    audit = assemble.build(Settings(detectors={"max_keys": 1}))
    dets = [c for c in audit.pipeline.components if hasattr(c, "_fired")]
    dets[0]._fired.put("a", 0.0)
    dets[0]._fired.put("b", 0.0)
    assert audit.registry.get_sample_value(
        "egress_auditor_table_evictions_total", {"table": "detector_state"}) == 1


def test_unknown_detector_name_is_a_settings_error():
    with pytest.raises(SettingsError, match="unknown detector 'dns_tunnel'"):
        load(detectors={"disabled": ["dns_tunnel"]})


# -- a seventh detector, defined only here --------------------------------------------------

class PortSevenSettings(DetectorSettings):
    port: int = Field(7, ge=1, le=65535, description="the port that is suspicious")


class PortSevenEvidence(Evidence):
    port: int


class PortSeven(Detector):
    """Egress to one configurable port (a toy)."""
    name = "port_seven"
    severities = ("low",)
    Settings = PortSevenSettings
    Evidence = PortSevenEvidence

    def flow_named(self, ev: FlowNamed) -> None:
        if ev.flow.egress and ev.flow.server_port == self.settings.port:
            self.fire(ev.flow.last, "low", ev.flow.server_ip, {"port": ev.flow.server_port}, ev.flow)


TOYS = (*registry.DETECTORS, PortSeven)


def test_a_new_detector_is_one_class_plus_one_tuple_entry(monkeypatch):
    monkeypatch.setenv("EGRESS_AUDITOR_DETECTORS__PORT_SEVEN__PORT", "8443")
    s = settings_mod.load(None, detector_classes=TOYS)
    assert s.detectors.port_seven.port == 8443                     # settings + env override
    schema = settings_mod.settings_class(TOYS).model_json_schema()
    assert "port_seven" in str(schema) and "the port that is suspicious" in str(schema)
    rec = Recorder()
    audit = assemble.build(s, extra=[rec])
    assert audit.registry.get_sample_value(                          # series exists from the start
        "egress_auditor_findings_total", {"detector": "port_seven", "severity": "low"}) == 0
    audit.pipeline.feed(frames(tcp_session(CLIENT, "93.184.216.34", 40000, 8443, tls_hello("x.example"))))
    audit.pipeline.close()
    assert [(f.detector, f.key) for f in rec.of(Finding) if f.detector == "port_seven"] == [
        ("port_seven", "93.184.216.34")]
    assert audit.registry.get_sample_value(
        "egress_auditor_findings_total", {"detector": "port_seven", "severity": "low"}) == 1

    off = settings_mod.load(None, detector_classes=TOYS, detectors={"disabled": ["port_seven"]})
    assert "port_seven" not in [c.name for c in assemble.build(off).pipeline.components]
    with pytest.raises(SettingsError):       # the default registry does not know the toy
        load(detectors={"port_seven": {"port": 1}})


def _evidence_models(cls=Evidence):
    for sub in cls.__subclasses__():
        yield sub
        yield from _evidence_models(sub)


_SAMPLES = {str: "x", int: 7, float: 2.5, bool: True}


def _sample(annotation, with_none):
    """A value of the field's type (None for an optional one when `with_none`)."""
    args = getattr(annotation, "__args__", ())
    if type(None) in args:
        if with_none:
            return None
        annotation = next(a for a in args if a is not type(None))
    origin = getattr(annotation, "__origin__", None)
    if origin is list:
        return ["a", "b"]
    if origin is dict:
        return {"a": "b"} if annotation.__args__[1] is str else {"a": 1}
    return _SAMPLES[annotation]


@pytest.mark.parametrize("with_none", [False, True])
def test_evidence_fields_are_what_model_dump_excluding_none_gives(with_none):
    # Detector.fire keeps a finding's validated fields without pydantic's dump (a third of its
    # cost, once per finding): for every detector's evidence model, the same dict, in order.
    assert registry.DETECTORS                   # (every detector module is imported)
    models = list(_evidence_models())
    assert len(models) >= 10
    for model in models:
        fields = {n: _sample(f.annotation, with_none) for n, f in model.model_fields.items()}
        validated = model.model_validate(fields)
        ours, theirs = evidence_fields(validated), validated.model_dump(exclude_none=True)
        assert ours == theirs and list(ours) == list(theirs), model.__name__
