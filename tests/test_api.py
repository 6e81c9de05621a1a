"""The Python API as the README shows it: a user's own pytest asserting on a captured job."""
import pytest

from auditor import audit, schema
from tests.conftest import ROOT

DEMO = sorted((ROOT / "pcaps" / "demo").glob("*.pcap"))
POLICY = ROOT / "pcaps" / "demo" / "policy.yaml"


def test_audit_reports_flows_violations_and_findings():
    report = audit(DEMO, {"policy": str(POLICY), "node_networks": ["10.1.0.0/16"]})
    assert len(report.flows) == 61
    assert [v["destination"]["domain"] for v in report.violations] == ["pastebin.com"]
    assert sorted(f["rule"]["name"] for f in report.findings) == ["dns_tunneling", "exfil_service"]
    assert [f["destination"]["domain"] for f in report.denied] == ["pastebin.com"]
    for doc in report.flows + report.violations + report.findings:
        schema.validate(doc)
    pypi = [f for f in report.flows if f["destination"].get("domain") == "pypi.org"]
    assert pypi and all(f["egress_auditor"]["verdict"] == "allowed" for f in pypi)
    assert "pastebin.com" in report.summary()


def test_keyword_overrides_win_over_config(tmp_path):
    cfg = tmp_path / "auditor.yaml"
    cfg.write_text(f"policy: {POLICY}\nnode_networks: [192.0.2.0/24]\n")
    assert audit(DEMO, cfg).flows == []                      # nothing is egress from 192.0.2.0/24
    assert len(audit(DEMO, cfg, node_networks=["10.1.0.0/16"]).flows) == 61


def test_bad_input_is_a_value_error_with_the_cli_message(tmp_path):
    with pytest.raises(ValueError, match="missing.pcap"):
        audit(tmp_path / "missing.pcap")
    with pytest.raises(ValueError, match="max_flows"):
        audit(DEMO, {"max_flows": "lots"})
