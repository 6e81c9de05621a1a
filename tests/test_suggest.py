"""`egress-auditor suggest`: the suggested CLI v2 YAML re-loads through the policy engine and,
applied to the same capture, lets every non-suspicious flow through (except those it reports
as breaking) and none of the suspicious ones."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from auditor import audit
from auditor.cli import main
from auditor.commands.suggest import suggest
from auditor.hostnames import registered_domain
from auditor.policy import load_policy
from auditor.settings import load as load_settings
from auditor.suggest.document import render
from auditor.suggest.observe import Dest
from auditor.suggest.rules import group_fqdns, port_ranges, private_link_target, wildcard_ok

APPROVED = "allow_only_approved_outbound"

ROOT = Path(__file__).resolve().parent.parent


def dest_of(ev: dict) -> Dest:
    """The `Dest` an ECS flow event describes (to compare runs in these tests)."""
    d, ea = ev.get("destination", {}), ev.get("egress_auditor", {})
    return Dest(d.get("ip", ""), int(d.get("port") or 0), ev.get("network", {}).get("transport", ""),
                d.get("domain"), ea.get("name_source", "none"), tuple(ea.get("dns_chain") or ()))
DEMO, SCEN, REAL = ROOT / "pcaps/demo", ROOT / "pcaps/scenarios", ROOT / "pcaps/real"


def roundtrip(pcaps, policy, tmp_path, **cfg):
    settings = load_settings(None, policy=policy, **cfg)
    before = {dest_of(f).label(): f for f in
              audit(pcaps, settings, as_mode=APPROVED).flows}
    sug = suggest(pcaps, settings)
    out = tmp_path / "suggested.yaml"
    out.write_text(render(sug))
    doc = yaml.safe_load(out.read_text())
    assert doc["managed_network"]["isolation_mode"] == APPROVED
    pol = load_policy(out)
    assert pol.dialect == "cli_yaml" and pol.isolation_mode.value == APPROVED
    after = audit(pcaps, settings, policy=out, as_mode=APPROVED)
    for f in after.flows:
        label = dest_of(f).label()
        denied = f["egress_auditor"]["verdict"] == "denied"
        if label in sug.suspicious:
            if before[label]["egress_auditor"]["verdict"] == "denied":
                assert denied, f"suspicious {label} let through by {f['rule']}"
        elif denied:
            assert label in sug.breaks, f"{label} still denied ({f['egress_auditor']['reason']}), not reported"
    return sug, doc


def added(doc, kind=None):
    rules = doc["managed_network"].get("outbound_rules") or []
    return {r["name"]: r for r in rules if r["name"].startswith(("fqdn-", "st-", "pe-"))
            and (kind is None or r["type"] == kind)}


def test_demo_minus_rules(tmp_path):
    pol = yaml.safe_load((DEMO / "policy.yaml").read_text())
    keep = {"huggingface", "mlstorage-blob"}   # without its private endpoint, the checkpoint
    # upload to blob is a bulk_upload finding (only private endpoints are exempt), so never suggested
    pol["managed_network"]["outbound_rules"] = [r for r in pol["managed_network"]["outbound_rules"]
                                                if r["name"] in keep]
    path = tmp_path / "current.yaml"
    path.write_text(yaml.safe_dump(pol))
    sug, doc = roundtrip(sorted(DEMO.glob("*.pcap")), path, tmp_path, node_networks=["10.1.0.0/16"])
    rules = added(doc)
    dests = {r["type"]: [] for r in rules.values()}
    for r in rules.values():
        dests[r["type"]].append(r["destination"])
    assert "pypi.org" in dests["fqdn"] and "pastebin.com" not in dests["fqdn"]
    assert set(dests) == {"fqdn"}                     # control plane: required rules cover it
    assert sorted(dests["fqdn"]) == ["cdn-lfs.huggingface.co", "files.pythonhosted.org",
                                     "pypi.org"]   # one name each: no wildcard
    # the paste site is an exfil_service finding: left out, never suggested
    assert any("exfil_service" in dets for label, dets in sug.suspicious.items() if "pastebin" in label)
    assert doc["name"] == "demo-training-ws" and doc["location"] == "eastus"
    assert [r["name"] for r in doc["managed_network"]["outbound_rules"]][:2] == ["huggingface", "mlstorage-blob"]
    assert ("dns_tunneling", "tunnel-demo.net", "high") in sug.findings
    assert "tunnel-demo.net" in render(sug)            # listed in the commented section
    assert "not allowed: pastebin.com" in render(sug)  # pastebin flagged, in the comments


def test_required_rule_traffic_adds_nothing(tmp_path):
    sug, doc = roundtrip([DEMO / "03-azureml-control.pcap"], DEMO / "policy.yaml", tmp_path,
                         node_networks=["10.1.0.0/16"])
    assert sug.rules == [] and not added(doc)


SCENARIOS = ["bulk_upload", "direct_ip", "dns_resolver_bypass", "encrypted_dns", "fqdn_port_not_supported",
             "modes", "no_matching_rule", "private_endpoint", "service_tag", "sni_mismatch",
             "storage_requires_private_endpoint", "fqdn_needs_sni_or_host"]


@pytest.mark.parametrize("case", SCENARIOS)
def test_scenarios(case, tmp_path):
    sug, doc = roundtrip([SCEN / f"{case}.pcap"], SCEN / "policy.yaml", tmp_path,
                         node_networks=["10.1.0.0/16"])
    names = {r["name"] for r in doc["managed_network"]["outbound_rules"]}
    assert len(names) == len(doc["managed_network"]["outbound_rules"])
    text = render(sug)
    for det, key, _ in sug.findings:
        assert key in text
    fq = [r["destination"] for r in added(doc, "fqdn").values()]
    if case == "bulk_upload":
        assert "bulk.exfil.example" not in fq and "*.exfil.example" not in fq
    if case == "storage_requires_private_endpoint":
        assert [r["destination"] for r in added(doc, "private_endpoint").values()] == [{
            "service_resource_id": "/subscriptions/<subscription-id>/resourceGroups/<resource-group>"
                                   "/providers/Microsoft.Storage/storageAccounts/other",
            "subresource_target": "blob", "spark_enabled": False}]
        assert not added(doc, "fqdn")
    if case == "fqdn_port_not_supported":
        assert any("QUIC" in why and "fall back to TCP" in why for why in sug.breaks.values())
    if case == "service_tag":
        st = [r["destination"] for r in added(doc, "service_tag").values()]
        assert st == [{"service_tag": "AzureMachineLearning.EastUS", "protocol": "UDP", "port_ranges": "5832"}]
    if case == "private_endpoint":
        assert not added(doc, "private_endpoint")      # acct-blob exists already


REAL_CASES = [
    ("mixed-windows-host-dns-tls-http.pcap", ["192.168.100.206/32"], ["192.168.100.2"], ["192.168.100.0/24"]),
    ("tls13-curl-with-dns.pcap", ["192.168.65.3/32"], ["192.168.65.1"], []),
    ("quic-chrome-with-dns.pcap", ["10.31.38.171/32"], None, []),
    ("dnstunnel-dnscat2.pcap", None, None, []),
    ("tls-and-quic-ipv6-cloudflare.pcap", None, None, []),
]


@pytest.mark.parametrize("pcap,nets,dns,vnet", REAL_CASES)
def test_real_captures(pcap, nets, dns, vnet, tmp_path):
    cfg = {"virtual_network": vnet}
    if nets:
        cfg["node_networks"] = nets
    if dns:
        cfg["dns_servers"] = dns
    sug, doc = roundtrip([REAL / pcap], DEMO / "policy.yaml", tmp_path, **cfg)
    fq = [r["destination"] for r in added(doc, "fqdn").values()]
    if pcap.startswith("tls13-curl"):
        assert fq == ["enabled.tls13.com"] and not sug.breaks
    if pcap.startswith("quic-chrome"):
        assert {"b1.nel.goog", "csp.withgoogle.com"} <= set(fq)
        assert any("QUIC" in why for why in sug.breaks.values())
        assert any("direct_ip" in d for d in sug.suspicious.values())
    if pcap.startswith("dnstunnel"):
        # the DNS flows go to a resolver outside dns_servers: that finding's key is its IP
        assert not sug.rules and any("dns_resolver_bypass" in d for d in sug.suspicious.values())
        assert any(det == "dns_tunneling" for det, _, _ in sug.findings)
    if pcap.startswith("mixed-windows"):
        assert "*.microsoft.com" in fq and len(sug.rules) > 10


def test_wildcard_grouping():
    g = group_fqdns({"files.pythonhosted.org", "bin.pythonhosted.org", "pypi.org"}, registered_domain)
    assert g == {"*.pythonhosted.org": {"files.pythonhosted.org", "bin.pythonhosted.org"},
                 "pypi.org": {"pypi.org"}}
    # shared platform suffixes: never wildcarded
    for names in ({"a.blob.core.windows.net", "b.blob.core.windows.net"},
                  {"d1.cloudfront.net", "d2.cloudfront.net"}, {"x.y.azureedge.net", "z.y.azureedge.net"},
                  {"login.windows.net", "foo.servicebus.windows.net"}):
        assert not any(p.startswith("*") for p in group_fqdns(names, registered_domain)), names
    assert not wildcard_ok("azureedge.net") and not wildcard_ok("windows.net") and wildcard_ok("pytorch.org")
    # a single name stays exact; the apex is not covered by *.domain and stays exact
    assert group_fqdns({"download.pytorch.org"}, registered_domain) == {"download.pytorch.org": {"download.pytorch.org"}}
    g = group_fqdns({"a.example.com", "b.example.com", "example.com"}, registered_domain)
    assert set(g) == {"*.example.com", "example.com"}
    # no wildcard over a name a finding points at
    g = group_fqdns({"a.exfil.example", "b.exfil.example"}, registered_domain, {"bulk.exfil.example"})
    assert set(g) == {"a.exfil.example", "b.exfil.example"}


def test_helpers():
    assert port_ranges({443, 80, 8080, 8081, 8082}) == "80, 443, 8080-8082"
    assert private_link_target("acct.blob.core.windows.net") == ("microsoft.storage/storageaccounts", "blob", "acct")
    assert private_link_target("acct.privatelink.dfs.core.windows.net")[1:] == ("dfs", "acct")
    assert private_link_target("kv1.vault.azure.net")[1:] == ("vault", "kv1")
    assert private_link_target("myreg.eastus.data.azurecr.io")[1:] == ("registry", "myreg")
    assert private_link_target("pypi.org") is None


def test_cli(tmp_path, capsys):
    out = tmp_path / "s.yaml"
    assert main(["suggest", str(SCEN / "modes.pcap"), "--policy", str(SCEN / "policy.yaml"),
                 "--node-network", "10.1.0.0/16", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "rules added" in err and "FQDN rules" in err and "would break" in err
    assert load_policy(out).isolation_mode.value == APPROVED
    assert main(["suggest", str(SCEN / "modes.pcap")]) == 2    # a usage error: --policy missing
    assert "suggest needs --policy" in capsys.readouterr().err
    for argv in (["suggest", str(tmp_path / "missing.pcap"), "--policy", str(SCEN / "policy.yaml")],
                 ["suggest", str(SCEN / "modes.pcap"), "--policy", str(tmp_path / "nope.yaml")],
                 ["suggest", str(SCEN / "modes.pcap"), "--policy", str(SCEN / "policy.yaml"),
                  "--service-tags", str(SCEN / "policy.yaml")]):
        assert main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("egress-auditor: ") and "\n" not in err and "Traceback" not in err


def test_other_dialect_gives_cli_yaml(tmp_path):
    arm = {"location": "eastus", "properties": {"managedNetwork": {
        "isolationMode": "AllowInternetOutbound",
        "outboundRules": {"pypi": {"type": "FQDN", "destination": "pypi.org", "category": "UserDefined"}}}}}
    import json
    path = tmp_path / "ws.json"
    path.write_text(json.dumps(arm))
    sug, doc = roundtrip([SCEN / "fqdn.pcap"], path, tmp_path, node_networks=["10.1.0.0/16"])
    assert doc["location"] == "eastus"
    assert doc["managed_network"]["outbound_rules"][0] == {"name": "pypi", "type": "fqdn", "destination": "pypi.org"}
    assert "# was allow_internet_outbound" in render(sug)
