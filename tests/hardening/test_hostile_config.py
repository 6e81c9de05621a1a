"""Hostile configuration (issue #6): huge or deeply nested YAML, YAML tags, alias bombs, and
service-tags files with bad prefixes or wrong types. Each is given to the real CLI in a
subprocess and must be rejected with exit 1 and one line on stderr naming the file — never
a traceback, and never executed (a `!!python/...` tag that ran would leave a marker file).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SERVICE_TAGS

ROOT = Path(__file__).resolve().parents[2]
PCAP = ROOT / "pcaps" / "demo" / "01-pip-install.pcap"
POLICY = ROOT / "examples" / "policies" / "workspace-approved.yaml"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "auditor", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, stdin=subprocess.DEVNULL)


def assert_rejected(proc: subprocess.CompletedProcess, path: Path, *words: str) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr[-2000:]
    line = lines[0]
    assert line.startswith("egress-auditor: ") and path.name in line, line
    assert len(line) < 400, line
    for w in words:
        assert w in line, line
    return line


def _tag(marker: Path) -> str:
    return f'!!python/object/apply:os.system ["touch {marker}"]'


def _alias_bomb(key: str) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return "\n".join(lines) + f"\n{key}: *a9\n"


# -- auditor settings (--config) -----------------------------------------------------------
SETTINGS_CASES = {
    "python-tag": (lambda m: f"policy: {_tag(m)}\n", "tag"),
    "python-tag-top": (lambda m: f"{_tag(m)}\n", "tag"),
    "deep-sequence": (lambda m: "node_networks: " + "[" * 20_000 + "]" * 20_000 + "\n", "nested deeper"),
    "deep-mapping": (lambda m: "detectors: " + "{a: " * 5_000 + "1" + "}" * 5_000 + "\n", "nested deeper"),
    "huge": (lambda m: "include:\n" + "".join(f"  - name{i}\n" for i in range(150_000)), "larger than"),
    "alias-bomb": (lambda m: _alias_bomb("include"), ""),
    "not-a-mapping": (lambda m: "- just\n- a list\n", "mapping"),
    "binary": (lambda m: "\x00\x01\x02\ufffe", ""),
    "unknown-key": (lambda m: "max_flow: 10\n", "max_flow"),
    "bad-cidr": (lambda m: "node_networks: [10.0.0.0/33]\n", "node_networks"),
    "negative-cap": (lambda m: "max_flows: -1\n", "max_flows"),
}


@pytest.mark.parametrize("case", sorted(SETTINGS_CASES))
def test_hostile_settings_file_is_one_line_exit_1(tmp_path, case):
    build, word = SETTINGS_CASES[case]
    marker = tmp_path / "executed"
    cfg = tmp_path / f"{case}.yaml"
    cfg.write_text(build(marker))
    proc = cli("replay", str(PCAP), "--config", str(cfg), "--quiet", cwd=tmp_path)
    assert_rejected(proc, cfg, word)
    assert not marker.exists(), "a YAML tag was executed"


# -- policy files (--policy) ---------------------------------------------------------------
POLICY_CASES = {
    "python-tag.yaml": (lambda m: f"managed_network: {_tag(m)}\n", "tags are not accepted"),
    "set-tag.yaml": (lambda m: "managed_network:\n  isolation_mode: allow_only_approved_outbound\n"
                               "  outbound_rules: !!set {a, b}\n", ""),
    "deep.yaml": (lambda m: "managed_network: " + "[" * 20_000 + "]" * 20_000 + "\n", "nested deeper"),
    "deep.json": (lambda m: '{"managed_network": ' + "[" * 200_000 + "]" * 200_000 + "}", "nested deeper"),
    "alias-bomb.yaml": (lambda m: _alias_bomb("managed_network"), "aliases"),
    "huge.yaml": (lambda m: "managed_network:\n  outbound_rules:\n" + "    - {name: r, type: fqdn, "
                            "destination: example.com}\n" * 250_000, "larger than"),
    "duplicate.yaml": (lambda m: "managed_network: {}\nmanaged_network: {}\n", "duplicate"),
    "binary.yaml": (lambda m: "\udcff", "UTF-8"),
}


@pytest.mark.parametrize("case", sorted(POLICY_CASES))
def test_hostile_policy_file_is_one_line_exit_1(tmp_path, case):
    build, word = POLICY_CASES[case]
    marker = tmp_path / "executed"
    pol = tmp_path / case
    pol.write_bytes(build(marker).encode("utf-8", "surrogateescape"))
    proc = cli("replay", str(PCAP), "--policy", str(pol), "--quiet", cwd=tmp_path)
    assert_rejected(proc, pol, word)
    # `policy check` lists each problem (file:line: reason) and ends with a count line.
    proc = cli("policy", "check", str(pol), cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out, out[-2000:]
    problems = [line for line in out.splitlines() if line.strip() and "error(s)" not in line
                and "warning: service tags ServiceTags_Public_" not in line]   # the bundled file's age
    assert len(problems) == 1 and pol.name in problems[0] and word in problems[0], out[-2000:]
    assert not marker.exists(), "a YAML tag was executed"


# -- service tags (--service-tags) ---------------------------------------------------------
def _tags(prefixes, **props) -> dict:
    entry = {"name": "AzureCloud", "id": "AzureCloud",
             "properties": {"changeNumber": 1, "region": "", "platform": "Azure",
                            "systemService": "", "addressPrefixes": prefixes, **props}}
    return {"changeNumber": 1, "cloud": "Public", "values": [entry]}


TAG_CASES = {
    "prefix-length": (_tags(["10.0.0.0/33"]), "invalid prefix length"),
    "v6-prefix-length": (_tags(["2001:db8::/129"]), "invalid prefix length"),
    "not-an-ip": (_tags(["not-an-ip/8"]), "not an IP prefix"),
    "prefix-is-int": (_tags([1234]), "values[0]"),
    "prefixes-is-string": (_tags("1.2.3.0/24"), "values[0]"),
    "prefixes-is-mapping": (_tags({"a": 1}), "values[0]"),
    "properties-null": ({"values": [{"name": "X", "properties": None}]}, "values[0]"),
    "name-not-string": ({"values": [{"name": 7, "properties": {"addressPrefixes": []}}]}, "values[0]"),
    "entry-not-object": ({"values": [5]}, "values[0]"),
    "no-values": ({"something": []}, "values"),
    "top-level-list": ([1, 2, 3], "values"),
}


@pytest.mark.parametrize("case", sorted(TAG_CASES))
def test_bad_service_tags_file_is_one_line_exit_1(tmp_path, case):
    doc, word = TAG_CASES[case]
    tags = tmp_path / f"{case}.json"
    tags.write_text(json.dumps(doc))
    proc = cli("replay", str(PCAP), "--policy", str(POLICY), "--service-tags", str(tags), "--quiet",
               cwd=tmp_path)
    assert_rejected(proc, tags, word)


@pytest.mark.parametrize("case", ["deep", "garbage", "truncated-real"])
def test_unparseable_service_tags_file_is_one_line_exit_1(tmp_path, case):
    tags = tmp_path / f"{case}.json"
    if case == "deep":
        tags.write_text('{"values": ' + "[" * 200_000 + "]" * 200_000 + "}")
    elif case == "garbage":
        tags.write_bytes(b"\xff\xfe\x00garbage")
    else:
        tags.write_bytes(SERVICE_TAGS.read_bytes()[:100_000])
    proc = cli("replay", str(PCAP), "--policy", str(POLICY), "--service-tags", str(tags), "--quiet",
               cwd=tmp_path)
    assert_rejected(proc, tags)


def test_huge_service_tags_file_is_refused_before_it_is_parsed(tmp_path):
    tags = tmp_path / "huge.json"
    with open(tags, "wb") as fh:   # sparse: 65 MiB of nothing, beyond the 64 MiB cap
        fh.truncate(65 * 1024 * 1024)
    proc = cli("replay", str(PCAP), "--policy", str(POLICY), "--service-tags", str(tags), "--quiet",
               cwd=tmp_path)
    assert_rejected(proc, tags, "larger than")
