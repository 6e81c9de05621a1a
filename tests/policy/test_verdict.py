"""Every SPEC §6 step, in order, with the reasons spelled exactly."""
import pytest

from auditor.policy import load_policy
from auditor.policy.verdict import REASONS, Judge, Verdict

POLICY = """\
location: eastus
workspace_id: 11111111-2222-3333-4444-555555555555
name: ws1
managed_network:
  isolation_mode: {mode}
  outbound_rules:
    - {{name: pypi, type: fqdn, destination: pypi.org}}
    - {{name: hosted, type: fqdn, destination: "*.pythonhosted.org"}}
    - {{name: loose, type: fqdn, destination: "*contoso.com"}}
    - {{name: blobs, type: fqdn, destination: "*.blob.core.windows.net"}}
    - name: no-aad-udp
      type: service_tag
      destination: {{service_tag: AzureActiveDirectory, protocol: TCP, port_ranges: "80", action: Deny}}
    - name: partner
      type: service_tag
      destination: {{service_tag: partner, protocol: TCP, port_ranges: "22", address_prefixes: ["203.0.113.0/24", "2001:db8::/32"]}}
    - name: lake
      type: private_endpoint
      destination:
        service_resource_id: /subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/lake1
        subresource_target: blob
    - name: kv
      type: private_endpoint
      destination:
        service_resource_id: /subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv1
        subresource_target: vault
    - name: ws
      type: private_endpoint
      destination:
        service_resource_id: /subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws1
        subresource_target: amlworkspace
    - name: custom
      type: private_endpoint
      destination:
        service_resource_id: /subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app1
        subresource_target: sites
      fqdns: [app1.azurewebsites.net]
"""
AML_IP = "20.42.0.241"          # AzureMachineLearning.EastUS
AAD_IP = "4.149.98.193"         # AzureActiveDirectory


@pytest.fixture
def judge_for(write, tags):
    def make(mode="allow_only_approved_outbound", **kw) -> Judge:
        return Judge(load_policy(write(POLICY.format(mode=mode))), tags, **kw)
    return make


@pytest.fixture
def j(judge_for):
    return judge_for()


def test_reasons_complete():
    assert len(REASONS) == 11 and REASONS[0] == "platform" and REASONS[-1] == "no_matching_rule"


def test_verdict_is_frozen_slots():
    v = Verdict(True, "fqdn", "r", "fqdn")
    with pytest.raises(Exception):
        v.allowed = False
    assert not hasattr(v, "__dict__")


def test_1_platform(j, judge_for):
    assert j.judge("168.63.129.16", 80, "tcp", None, "none").reason == "platform"
    assert j.judge("169.254.169.254", 80, "tcp", None, "none").rule_type == "platform"
    j2 = judge_for(dns_servers=("10.9.0.4",))
    assert j2.judge("10.9.0.4", 53, "udp", None, "none").reason == "platform"
    assert j2.judge("10.9.0.4", 443, "tcp", None, "none").reason == "no_matching_rule"
    assert judge_for(mode="disabled").judge("169.254.169.254", 80, "tcp", None, "none").reason == "platform"


def test_2_disabled(judge_for):
    v = judge_for(mode="disabled").judge("8.8.8.8", 443, "tcp", "evil.com", "sni")
    assert (v.allowed, v.reason, v.rule_type) == (True, "isolation_disabled", "mode")


def test_3_private_endpoint(j):
    v = j.judge("10.1.2.3", 443, "tcp", "lake1.blob.core.windows.net", "sni",
                ("lake1.blob.core.windows.net", "lake1.privatelink.blob.core.windows.net"))
    assert (v.allowed, v.reason, v.rule, v.rule_type) == (True, "private_endpoint", "lake", "private_endpoint")
    assert v.private_endpoint.endswith("storageAccounts/lake1")
    assert j.judge("10.1.2.4", 443, "tcp", None, "none",
                   ("kv1.privatelink.vaultcore.azure.net",)).rule == "kv"
    assert j.judge("10.1.2.5", 443, "tcp", None, "none",
                   ("11111111-2222-3333-4444-555555555555.workspace.eastus.api.azureml.ms",)).rule == "ws"
    assert j.judge("10.1.2.6", 443, "tcp", None, "none",
                   ("app1.privatelink.azurewebsites.net",)).reason == "no_matching_rule"
    assert j.judge("10.1.2.6", 443, "tcp", None, "none", ("APP1.azurewebsites.net.",)).rule == "custom"
    # SNI alone (no DNS evidence) does not make a public IP a private endpoint
    v = j.judge("52.1.1.1", 443, "tcp", "lake1.blob.core.windows.net", "sni")
    assert v.reason == "storage_requires_private_endpoint"


def test_3_private_endpoint_beats_internet_mode(judge_for):
    j = judge_for(mode="allow_internet_outbound")
    assert j.judge("10.1.2.3", 443, "tcp", None, "none", ("lake1.blob.core.windows.net",)).reason == "private_endpoint"
    v = j.judge("8.8.8.8", 443, "tcp", "evil.com", "sni")
    assert (v.allowed, v.reason, v.rule_type) == (True, "internet_outbound", "mode")


def test_5_service_tag_deny(j):
    v = j.judge(AAD_IP, 80, "tcp", None, "none")
    assert (v.allowed, v.reason, v.rule, v.service_tag) == (False, "service_tag_deny", "no-aad-udp", "AzureActiveDirectory")


def test_6_service_tag(j):
    v = j.judge(AAD_IP, 443, "tcp", None, "none")        # required rule, port 443 not denied
    assert (v.allowed, v.reason, v.rule) == (True, "service_tag", "__SYS_ST_AzureActiveDirectory_TCP")
    v = j.judge(AML_IP, 5831, "udp", None, "none")
    assert v.rule == "__SYS_ST_AzureMachineLearning_UDP" and v.service_tag == "AzureMachineLearning"
    assert j.judge(AML_IP, 5831, "tcp", None, "none").reason == "no_matching_rule"
    assert j.judge("40.71.10.209", 443, "tcp", None, "none").rule == "__SYS_ST_MicrosoftContainerRegistry.eastus_TCP"
    assert j.judge("13.107.3.7", 12345, "udp", None, "none").rule == "__SYS_ST_AzureFrontDoor.FirstParty"
    assert j.judge("10.0.9.9", 22, "tcp", None, "none").rule == "__SYS_ST_VirtualNetwork"
    assert j.judge("10.0.9.9", 0, "icmp", None, "none").rule == "__SYS_ST_VirtualNetwork"
    assert j.judge("203.0.113.9", 22, "tcp", None, "none").rule == "partner"
    assert j.judge("2001:db8::1", 22, "tcp", None, "none").rule == "partner"
    assert j.judge("203.0.113.9", 23, "tcp", None, "none").reason == "no_matching_rule"


def test_7_fqdn(j):
    assert j.judge("1.2.3.4", 443, "tcp", "pypi.org", "sni").reason == "fqdn"
    assert j.judge("1.2.3.4", 80, "tcp", "files.pythonhosted.org", "http_host").rule == "hosted"
    assert j.judge("1.2.3.4", 443, "tcp", "PyPI.org.", "sni").allowed
    assert j.judge("1.2.3.4", 443, "tcp", "xcontoso.com", "sni").rule == "loose"
    assert j.judge("1.2.3.4", 443, "tcp", "pythonhosted.org", "sni").reason == "no_matching_rule"


def test_7_needs_sni_or_host(j):
    v = j.judge("1.2.3.4", 443, "tcp", "pypi.org", "dns", ("pypi.org",))
    assert (v.allowed, v.reason, v.rule) == (False, "fqdn_needs_sni_or_host", "pypi")
    assert j.judge("1.2.3.4", 80, "tcp", None, "none", ("pypi.org",)).reason == "fqdn_needs_sni_or_host"
    # the Host header does not count on 443, nor the SNI on 80
    assert j.judge("1.2.3.4", 443, "tcp", "pypi.org", "http_host").reason == "fqdn_needs_sni_or_host"
    # an SNI that names no rule is not rescued by DNS attribution
    assert j.judge("1.2.3.4", 443, "tcp", "evil.com", "sni", ("pypi.org",)).reason == "no_matching_rule"


def test_7_port_not_supported(j):
    assert j.judge("1.2.3.4", 443, "udp", "pypi.org", "quic_sni").reason == "fqdn_port_not_supported"
    assert j.judge("1.2.3.4", 8443, "tcp", "pypi.org", "sni").reason == "fqdn_port_not_supported"
    assert j.judge("1.2.3.4", 22, "tcp", None, "none", ("pypi.org",)).rule == "pypi"


def test_7_storage(j):
    v = j.judge("52.1.1.1", 443, "tcp", "other.blob.core.windows.net", "sni")
    assert (v.allowed, v.reason, v.rule) == (False, "storage_requires_private_endpoint", "blobs")


def test_8_no_match(j):
    v = j.judge("8.8.8.8", 443, "tcp", "evil.com", "sni", ("evil.com",))
    assert (v.allowed, v.reason, v.rule, v.rule_type) == (False, "no_matching_rule", None, "none")


def test_as_mode_shadow_audit(write, tags):
    policy = load_policy(write(POLICY.format(mode="allow_internet_outbound")))
    assert Judge(policy, tags).judge(AML_IP, 443, "tcp", None, "none").reason == "internet_outbound"
    shadow = Judge(policy, tags, as_mode="allow_only_approved_outbound")
    assert shadow.judge(AML_IP, 443, "tcp", None, "none").rule == "__SYS_ST_AzureMachineLearning_TCP"
    assert shadow.judge("8.8.8.8", 443, "tcp", "evil.com", "sni").reason == "no_matching_rule"


def test_include_scenarios(judge_for):
    j = judge_for(include=("vscode", "huggingface"))
    assert j.judge("1.2.3.4", 443, "tcp", "x.vscode-cdn.net", "sni").rule.startswith("__BUILTIN_vscode")
    assert not j.judge("1.2.3.4", 443, "tcp", "github.com", "sni").allowed   # gone from the docs
    assert j.judge("1.2.3.4", 443, "tcp", "cas-bridge.xethub.hf.co", "sni").allowed
    assert j.judge("1.2.3.4", 443, "tcp", "vscode.blob.core.windows.net", "sni").reason == \
        "storage_requires_private_endpoint"
    assert j.judge("1.2.3.4", 443, "tcp", "cdn-lfs.huggingface.co", "sni").allowed
    assert not judge_for().judge("1.2.3.4", 443, "tcp", "cdn-lfs.huggingface.co", "sni").allowed


def test_required_without_location_uses_global_tags(write, tags):
    p = load_policy(write("managed_network: {isolation_mode: allow_only_approved_outbound}\n"))
    names = {r.name for r in p.rules}
    assert "__SYS_ST_MicrosoftContainerRegistry_TCP" in names
    assert Judge(p, tags).judge("40.71.10.209", 443, "tcp", None, "none").allowed


def test_cached_verdicts_are_the_judges_and_a_new_policy_empties_the_cache(monkeypatch, judge_for):
    """The judge stage caches verdicts by everything the judge reads: a cached verdict equals
    a fresh one for every key; the cache stays capped (evictions counted); loading another
    policy never reuses a verdict of the old one."""
    from auditor import verdicts as stage
    from auditor.events import FlowNamed
    from auditor.flow import Flow
    from auditor.telemetry import Table, Telemetry
    monkeypatch.setattr(stage, "VERDICT_CACHE", 4)
    approved, internet = judge_for(), judge_for("allow_internet_outbound")
    telemetry = Telemetry()
    judge = stage.Verdicts(approved, telemetry)
    keys = [("151.101.0.223", 443, "pypi.org", "sni"), ("198.51.100.9", 443, None, "none"),
            ("198.51.100.9", 8443, None, "none"), ("203.0.113.5", 22, None, "none"),
            ("198.51.100.10", 443, "evil.example", "sni"), ("151.101.0.223", 443, "pypi.org", "sni")]

    def judged(ip, port, name, source):
        flow = Flow(server_ip=ip, server_port=port, domain=name, name_source=source)
        judge.flow_named(FlowNamed(flow))
        return flow.verdict

    for round_ in range(3):
        for ip, port, name, source in keys:
            want = judge.judge.judge(ip, port, "tcp", name, source, (), False)
            assert judged(ip, port, name, source) == want, (round_, ip, port, name)
    assert len(judge._cache) <= 4 and telemetry.evictions[Table.VERDICT_CACHE] > 0
    assert not judged("198.51.100.9", 443, None, "none").allowed
    judge.judge = internet                      # SIGHUP: a new policy generation
    assert judge._cache == {} and judged("198.51.100.9", 443, None, "none").allowed


def test_a_verdict_whose_chain_is_long_is_decided_but_not_kept(judge_for):
    """A cache key holds its DNS chain: a crafted chain of long names is judged like any
    other, and not kept once flows and the name cache let go of it."""
    from auditor import verdicts as stage
    from auditor.events import FlowNamed
    from auditor.flow import Flow
    judge = stage.Verdicts(judge_for())
    long_chain = tuple(f"h{k}-{'x' * 200}.cdn.example" for k in range(8))
    for chain in (long_chain, ("pypi.org",)):
        flow = Flow(server_ip="151.101.0.223", server_port=443, domain="pypi.org",
                    name_source="sni", dns_chain=chain)
        judge.flow_named(FlowNamed(flow))
        assert flow.verdict == judge.judge.judge("151.101.0.223", 443, "tcp", "pypi.org", "sni", chain, True)
    assert [k[5] for k in judge._cache] == [("pypi.org",)]
