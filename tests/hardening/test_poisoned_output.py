"""What an operator reads or applies must not be steerable from the wire: the suggested
allowlist, the terminal, the metrics."""
from __future__ import annotations

import subprocess
import sys

import yaml
from prometheus_client.parser import text_string_to_metric_families

from auditor.commands.suggest import suggest
from auditor.settings import load as load_settings
from auditor.suggest.document import render, summary
from auditor.suggest.rules import wildcard_ok
from tests.hardening.crafted import POLICY, SERVER, Conn, dns_pair, hello, write

HOSTILE_SNIS = [b"*", b"evil.com:443", b"a b.com", b"x\x1b[8m.com", b"\xff\xfe.com",
                b"ok.com\r\nfindings       none", b"*.com"]


def _suggest(tmp_path, packets, **cfg):
    pcap = write(tmp_path / "s.pcap", packets)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    settings = load_settings(None, policy=str(policy), node_networks=["10.0.0.0/8"], **cfg)
    sug = suggest([pcap], settings)
    return sug, yaml.safe_load(render(sug))


def _rules(doc) -> list[dict]:
    return doc["managed_network"].get("outbound_rules") or []


def test_hostile_names_never_become_rules_and_never_crash(tmp_path):
    packets = []
    for i, sni in enumerate(HOSTILE_SNIS):
        packets += Conn(sport=42000 + i).handshake().send(hello(sni)).ack().close().packets
    # a DNS answer for a wildcard name, then a connection it "names"
    packets += dns_pair("*", "93.184.216.99") + Conn(server="93.184.216.99").handshake().send(
        b"\x00\x01").ack().close().packets
    sug, doc = _suggest(tmp_path, packets)
    dests = [r["destination"] for r in _rules(doc) if r["type"] == "fqdn"]
    assert dests == ["pypi.org"]                       # only the policy's own rule
    assert "*" not in str(dests)
    text = render(sug) + summary(sug)
    assert "\x1b" not in text and "\r" not in text and "\ufffd" not in text
    assert any("not a valid host name" in why for why in sug.suspicious.values())


def test_no_wildcard_over_a_public_suffix():
    for suffix in ("com", "co.uk", "github.io", "blob.core.windows.net", "azurewebsites.net"):
        assert not wildcard_ok(suffix), suffix
    assert wildcard_ok("pytorch.org")


def test_a_finding_implicates_only_its_own_key(tmp_path):
    legit = dns_pair("pypi.org", "151.101.0.223", qid=1) + Conn(server="151.101.0.223").handshake() \
        .send(hello(b"pypi.org")).ack().close().packets
    # DNS names 203.0.113.9 other.example, yet a flow to it presents pypi.org: sni_mismatch on the IP
    fronting = dns_pair("other.example", "203.0.113.9", qid=2, sport=33334) + \
        Conn(server="203.0.113.9", sport=40001).handshake().send(hello(b"pypi.org")).ack().close().packets
    plain = dns_pair("files.pythonhosted.org", "151.101.1.223", qid=3, sport=33335) + \
        Conn(server="151.101.1.223", sport=40002).handshake().send(
            hello(b"files.pythonhosted.org")).ack().close().packets
    policy_less = tmp_path / "p.yaml"
    policy_less.write_text("managed_network: {isolation_mode: allow_internet_outbound}\n")
    pcap = write(tmp_path / "f.pcap", legit + fronting + plain)
    sug = suggest([pcap], load_settings(None, policy=str(policy_less), node_networks=["10.0.0.0/8"]))
    assert any(det == "sni_mismatch" for det, _, _ in sug.findings)
    dests = {r.rule.destination for r in sug.rules if r.type == "fqdn"}
    assert "pypi.org" in dests and "files.pythonhosted.org" in dests
    assert any("sni_mismatch" in d and "203.0.113.9" in label for label, d in sug.suspicious.items())


def test_exfil_services_are_never_active_rules_even_without_a_finding(tmp_path):
    packets = dns_pair("transfer.sh", SERVER) + Conn().handshake().send(hello(b"transfer.sh")).ack().close().packets
    sug, doc = _suggest(tmp_path, packets, detectors={"disabled": ["exfil_service"]})
    assert "transfer.sh" not in [r["destination"] for r in _rules(doc)]
    text = render(sug)
    assert "not suggested: transfer.sh is a file drop service" in text
    assert "#     destination: transfer.sh" in text      # written, but commented out


def _replay(tmp_path, packets, *extra):
    pcap = write(tmp_path / "t.pcap", packets)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return subprocess.run([sys.executable, "-m", "auditor", "replay", str(pcap), "--policy", str(policy),
                           "--node-network", "10.0.0.0/8", *extra],
                          capture_output=True, timeout=120)


def test_terminal_output_escapes_what_came_from_the_wire(tmp_path):
    packets = []
    for i, host in enumerate([b"x\x1b[8m.example", b"a.example\r\n  findings       none"]):
        packets += Conn(sport=43000 + i, dport=80).handshake().send(
            b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n").ack().close().packets
    packets += dns_pair("t\x1b[2J.example", SERVER, qid=9)   # DNS names are escaped by the decoder
    proc = _replay(tmp_path, packets)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert b"\x1b" not in out and b"\r" not in out
    assert out.count(b"findings") == 1
    explain = subprocess.run([sys.executable, "-m", "auditor", "policy", "explain",
                              str(tmp_path / "policy.yaml"), "p\x1b[8mypi.org"], capture_output=True)
    assert b"\x1b" not in explain.stdout + explain.stderr and b"\\x1b" in explain.stdout


def test_metric_label_values_are_length_capped(tmp_path):
    packets = []
    for i in range(100):
        host = (f"h{i}." + "a" * 60 + ".") * 100 + "example"     # 6 kB Hosts, all distinct
        packets += Conn(sport=44000 + i, dport=80).handshake().send(
            b"GET / HTTP/1.1\r\nHost: " + host.encode() + b"\r\n\r\n").ack().close().packets
    prom = tmp_path / "m.prom"
    proc = _replay(tmp_path, packets, "--metrics-file", str(prom))
    assert proc.returncode == 0, proc.stderr
    text = prom.read_text()
    assert len(text) < 200_000
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert all(len(v) <= 128 for v in sample.labels.values()), sample


def test_an_invalid_name_is_cut_in_findings_as_in_flow_events(tmp_path):
    """A 6 kB Host that names nothing is evidence, cut to the same MAX_NAME_TEXT characters
    and an ellipsis in the `direct_ip` finding as in the flow event (not 16 kB a finding, one
    per flow)."""
    from auditor.decode.text import CUT, MAX_NAME_TEXT
    from tests.hardening.crafted import flows_to, run
    c = Conn(dport=80).handshake().send(b"GET / HTTP/1.1\r\nHost: " + b"a" * 6000 + b"\r\n\r\n")
    report = run(tmp_path, c.ack().close().packets)
    (finding,) = [f for f in report.findings if f["rule"]["name"] == "direct_ip"]
    cut = "a" * MAX_NAME_TEXT + CUT
    assert finding["egress_auditor"]["evidence"]["invalid_name"] == cut
    (flow,) = flows_to(report, SERVER)
    assert flow["egress_auditor"]["invalid_name"] == cut
