"""`policy check|explain|show` through main() and through a real subprocess."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from auditor.cli import main as cli_main


def main(argv):
    return cli_main(["policy", *argv])

GOLDEN = Path(__file__).resolve().parent / "golden"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policies" / "workspace-approved.yaml"

LINT_POLICY = """\
location: eastus
managed_network:
  isolation_mode: allow_only_approved_outbound
  outbound_rules:
    - {name: blobs, type: fqdn, destination: "*.blob.core.windows.net"}
    - {name: loose, type: fqdn, destination: "*contoso.com"}
    - {name: mid, type: fqdn, destination: "www.*.com"}
    - {name: ports, type: service_tag, destination: {service_tag: Storage, port_ranges: "443-80"}}
    - {name: dup, type: fqdn, destination: a.com}
    - {name: dup, type: fqdn, destination: b.com}
    - name: badpe
      type: private_endpoint
      destination: {service_resource_id: "/subscriptions/x", subresource_target: blob}
    - {name: notag, type: service_tag, destination: {service_tag: NoSuchTag, protocol: TCP, port_ranges: "443"}}
    - {name: okpe, type: private_endpoint, destination: {service_resource_id: /subscriptions/s/resourceGroups/r/providers/Microsoft.Web/sites/app, subresource_target: sites}}
"""


def run(*argv):
    return subprocess.run([sys.executable, "-m", "auditor", "policy", *map(str, argv)],
                          capture_output=True, text=True, timeout=60)


def test_check_reports_every_problem(write, capsys):
    path = write(LINT_POLICY)
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    expected = [
        "policy.yaml:7: error: rule 'mid': destination: 'www.*.com': '*' is only allowed as the left-most character",
        "policy.yaml:8: error: rule 'ports': destination.port_ranges: '443-80' is not a port range",
        "policy.yaml:10: error: rule 'dup': name: duplicate rule name (first at line 9)",
        "policy.yaml:13: error: rule 'badpe': destination.service_resource_id: '/subscriptions/x' is not an Azure resource id",
        "policy.yaml:5: error: rule 'blobs': destination: '*.blob.core.windows.net' is an Azure Storage endpoint",
        "policy.yaml:6: warning: rule 'loose': destination: '*contoso.com' matches any name ending in 'contoso.com'",
        "policy.yaml:14: error: rule 'notag': destination.service_tag: service tag 'NoSuchTag' is not in ServiceTags_Public_20251109.json",
        "policy.yaml:15: warning: rule 'okpe': destination.subresource_target: cannot derive",
        "policy.yaml:15: warning: rule 'okpe': destination.spark_enabled: no spark_enabled; az ml requires it",
    ]
    for want in expected:
        assert any(line.startswith(want) for line in out), (want, out)
    assert len(out) == len(expected)


def test_check_errs_on_rules_azure_refuses_and_warns_on_useless_ones(write, capsys):
    path = write("managed_network:\n  isolation_mode: allow_internet_outbound\n  outbound_rules:\n"
                 "  - {name: a, type: fqdn, destination: a.com}\n")
    assert main(["check", str(path)]) == 1
    assert "error: rule 'a': type: Azure refuses fqdn rules in allow_internet_outbound" \
        in capsys.readouterr().out
    path = write("managed_network:\n  isolation_mode: disabled\n  outbound_rules:\n"
                 "  - {name: a, type: fqdn, destination: a.com}\n")
    assert main(["check", str(path)]) == 0
    assert "warning: rule 'a': type: fqdn rules have no effect in disabled mode" \
        in capsys.readouterr().out


def test_check_warns_when_a_wildcard_misses_the_apex(write, capsys):
    path = write("managed_network:\n  isolation_mode: allow_only_approved_outbound\n  outbound_rules:\n"
                 "  - {name: pip, type: fqdn, destination: '*.pypi.org'}\n")
    assert main(["check", str(path)]) == 0
    assert ("warning: rule 'pip': destination: '*.pypi.org' does not cover 'pypi.org' itself"
            in capsys.readouterr().out)
    path = write("managed_network:\n  isolation_mode: allow_only_approved_outbound\n  outbound_rules:\n"
                 "  - {name: pip, type: fqdn, destination: '*.pypi.org'}\n"
                 "  - {name: pip2, type: fqdn, destination: pypi.org}\n")
    assert main(["check", str(path)]) == 0
    assert "does not cover" not in capsys.readouterr().out


def test_check_errs_on_action_in_cli_yaml_but_audits_judge_it(write, capsys):
    path = write("name: w\nmanaged_network:\n  isolation_mode: allow_only_approved_outbound\n"
                 "  outbound_rules:\n  - name: d\n    type: service_tag\n    destination:\n"
                 "      {service_tag: Storage, protocol: TCP, port_ranges: '443', action: Deny}\n")
    assert main(["check", str(path)]) == 1
    assert "error: rule 'd': destination.action: az ml rejects 'action'" in capsys.readouterr().out
    from auditor.policy import load_policy
    assert load_policy(path).file_rules[0].action == "deny"


def test_check_clean_example(capsys):
    assert main(["check", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out == ""


def test_explain_json(capsys):
    assert main(["explain", str(EXAMPLE), "files.pythonhosted.org", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"verdict": "allowed", "reason": "fqdn", "rule": "pythonhosted", "rule_type": "fqdn",
                   "service_tag": None, "private_endpoint": None,
                   "destination": "files.pythonhosted.org", "port": 443, "proto": "tcp",
                   "service_tags": [], "azure_service": None, "fix": None}


@pytest.mark.parametrize("dest,argv,tags,fix", [
    ("20.60.0.10", [], "Storage.EastUS", "Storage.EastUS: storage needs a private endpoint"),
    ("8.8.8.8", [], None, "not an Azure service address"),
    ("example.org", [], None, "add an FQDN rule for 'example.org'"),
    ("example.org", ["--port", "22"], None, "FQDN rules only cover TCP 80 and 443"),
    ("pypi.org", ["--proto", "udp"], None, "FQDN rules only cover TCP 80 and 443"),
    ("acct.blob.core.windows.net", [], None, "storage needs a private endpoint"),
])
def test_explain_names_the_service_and_the_fix(capsys, dest, argv, tags, fix):
    assert main(["explain", str(EXAMPLE), dest, "--json", "--exit-code", *argv]) == 3
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "denied" and out["fix"].startswith(fix), out
    if tags:
        assert out["service_tags"][0] == tags and out["azure_service"] == "AzureStorage"


def test_explain_says_when_a_failed_rule_would_have_allowed_it(write, capsys):
    path = write(json.dumps({"properties": {"managedNetwork": {
        "isolationMode": "AllowOnlyApprovedOutbound", "outboundRules": {
            "pypi": {"type": "FQDN", "destination": "pypi.org", "category": "UserDefined",
                     "status": "Failed", "errorInformation": "firewall provisioning failed"}}}}}),
        "show.json")
    assert main(["explain", str(path), "pypi.org", "--exit-code"]) == 3
    out = capsys.readouterr()
    assert "fix: rule 'pypi' would allow it, but Azure reports it Failed (firewall provisioning failed)" in out.out
    assert "status Failed: Azure does not enforce this rule" in out.err


@pytest.mark.parametrize("argv,reason", [
    (["pypi.org", "--proto", "udp"], "fqdn_port_not_supported"),
    (["pypi.org", "--port", "80"], "fqdn"),
    (["contosodatalake.privatelink.blob.core.windows.net"], "private_endpoint"),
    (["20.42.0.241"], "service_tag"),
    (["168.63.129.16", "--port", "53", "--proto", "udp"], "platform"),
    (["example.org"], "no_matching_rule"),
    (["x.vscode-cdn.net", "--include", "vscode"], "fqdn"),
    (["example.org", "--as-mode", "allow_internet_outbound"], "internet_outbound"),
])
def test_explain_reasons(capsys, argv, reason):
    assert main(["explain", str(EXAMPLE), *argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["reason"] == reason


def test_show_text_marks_builtins(capsys):
    assert main(["show", str(EXAMPLE), "--include", "vscode"]) == 0
    out = capsys.readouterr().out
    assert "*__SYS_ST_AzureMachineLearning_UDP" in out and " pypi " in out
    assert "8704-8710" in out


def test_show_json_shape(capsys):
    assert main(["show", str(GOLDEN / "same-rules.arm.json"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"name", "type", "category", "status", "destination"} <= set(data["rules"][0])
    lake = next(r for r in data["rules"] if r["name"] == "lake")
    assert "goldenlake.privatelink.dfs.core.windows.net" in lake["destination"]["fqdns"]
    acr = next(r for r in data["rules"] if r["name"] == "acr")
    assert "goldenacr.westus3.data.privatelink.azurecr.io" in acr["destination"]["fqdns"]


def test_subprocess_error_is_one_line(write):
    path = write("managed_network:\n  isolation_mode: allow_only_approved_outbound\n"
                 "  outbound_rules:\n  - name: pypi\n    type: service_tag\n    destination:\n"
                 "      service_tag: X\n      port_ranges: '70000'\n")
    for cmd in ("check", "show"):
        proc = run(cmd, path)
        assert proc.returncode == 1
        assert "Traceback" not in proc.stderr + proc.stdout
        err = (proc.stderr + proc.stdout).strip()
        assert "policy.yaml:8: " in err and "rule 'pypi': destination.port_ranges: '70000' is not a port range" in err


@pytest.mark.parametrize("text", ["a: [\n", "x: !!python/name:os.system\n", "{\"managed_network\": 3}"])
def test_subprocess_bad_files(write, text):
    path = write(text)
    proc = run("explain", path, "pypi.org")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("egress-auditor: policy.yaml") and len(proc.stderr.strip().splitlines()) == 1


def test_subprocess_missing_file_and_bad_tags(tmp_path):
    proc = run("show", tmp_path / "nope.yaml")
    assert proc.returncode == 1 and "nope.yaml: cannot read" in proc.stderr and "Traceback" not in proc.stderr
    bad = tmp_path / "tags.json"
    bad.write_text("[]")
    proc = run("check", EXAMPLE, "--service-tags", bad)
    assert proc.returncode == 1 and "tags.json: not a service tags file" in proc.stderr


def test_policy_errors_reach_cli_main_as_one_line(capsys):
    assert main(["show", "/nonexistent.yaml"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("egress-auditor: /nonexistent.yaml: cannot read") and err.count("\n") == 1


def test_audits_print_the_policy_and_tags_warnings_first(write, tmp_path):
    """`replay` tells the operator, before the summary, what may make its verdicts wrong."""
    path = write(json.dumps({"properties": {"managedNetwork": {
        "isolationMode": "AllowOnlyApprovedOutbound", "outboundRules": {
            "pypi": {"type": "FQDN", "destination": "pypi.org", "category": "UserDefined",
                     "status": "Deleting"}}}}}), "show.json")
    pcap = Path(__file__).resolve().parents[2] / "pcaps" / "demo" / "01-pip-install.pcap"
    proc = subprocess.run([sys.executable, "-m", "auditor", "replay", str(pcap), "--policy", str(path),
                           "--quiet"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "rule 'pypi': status: status Deleting: Azure does not enforce this rule" in proc.stderr
    assert "warning: service tags ServiceTags_Public_20251109.json is" in proc.stderr
