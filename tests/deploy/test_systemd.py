"""deploy/systemd for compute instances and other VMs: the unit passes `systemd-analyze verify`
with no message and scores "OK" in `systemd-analyze security --offline`, it holds the
capabilities and hardening issue #15 asks for, and the logrotate file really rotates (a
forced rotation by logrotate itself in a scratch directory) and signals the unit to reopen
its log. There is no running systemd here: nothing is started (the setup-script test in
test_offline_install.py runs the unit's command lines)."""
from __future__ import annotations

import configparser
import os
import re
import shutil
from pathlib import Path

import pytest

from .helpers import ROOT, run, tool

UNIT = ROOT / "deploy" / "systemd" / "egress-auditor.service"
LOGROTATE = ROOT / "deploy" / "systemd" / "egress-auditor.logrotate"
PREFIX = "/opt/egress-auditor"


def unit() -> configparser.ConfigParser:
    text = re.sub(r"\\\n\s*", " ", UNIT.read_text())
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read_string(text)
    return parser


def verify(text: str, tmp_path: Path):
    """systemd-analyze verify on the unit, its install prefix moved to a scratch directory
    holding an executable (verify checks that every command exists); nothing else changes."""
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    exe = prefix / "bin" / "egress-auditor"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert text.count(PREFIX) == 2            # ExecStartPre and ExecStart, nowhere else
    f = tmp_path / "egress-auditor.service"
    f.write_text(text.replace(PREFIX, str(prefix)))
    return run(tool("systemd-analyze"), "verify", f)


def test_systemd_analyze_verify_is_silent(tmp_path):
    r = verify(UNIT.read_text(), tmp_path)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


def test_verify_catches_a_misspelt_directive(tmp_path):
    r = verify(UNIT.read_text().replace("ProtectClock=yes", "ProtectClok=yes"), tmp_path)
    assert "Unknown key 'ProtectClok'" in r.stdout + r.stderr


def test_exposure_is_ok_in_systemd_analyze_security():
    r = run(tool("systemd-analyze"), "security", "--offline=yes", "--no-pager", UNIT)
    m = re.search(r"Overall exposure level for egress-auditor\.service: (\d+\.\d+) (\w+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 3.0 and m.group(2) == "OK", m.group(0)


def test_capture_capabilities_only_and_the_hardening_capture_allows():
    s = unit()["Service"]
    caps = ["CAP_NET_RAW", "CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"]
    assert s["AmbientCapabilities"].split() == caps   # tests/attribution/test_privileges.py
    assert s["CapabilityBoundingSet"].split() == caps
    assert s["User"] == "egress-auditor" and s["NoNewPrivileges"] == "yes"
    assert s["Restart"] == "always"
    assert s["StateDirectory"] == "egress-auditor" and s["LogsDirectory"] == "egress-auditor"
    for key in ("ProtectHome", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules",
                "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock", "ProtectHostname", "RestrictNamespaces",
                "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality"):
        assert s[key] == "yes", key
    assert s["ProtectSystem"] == "strict"
    assert set(s["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_PACKET", "AF_NETLINK"}
    assert s["IPAddressDeny"] == "any" and s["IPAddressAllow"] == "localhost"
    assert s["SystemCallFilter"] == "@system-service"
    assert "ProtectProc" not in s and "PrivateNetwork" not in s      # attribution; the real interface
    start = s["ExecStart"].split()
    assert start[:2] == [f"{PREFIX}/bin/egress-auditor", "run"]
    assert start[start.index("--interface") + 1] == "${CAPTURE_INTERFACE}"
    assert start[start.index("--events") + 1] == "/var/log/egress-auditor/audit.jsonl"    # LogsDirectory
    assert s["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert unit()["Install"]["WantedBy"] == "multi-user.target"


@pytest.fixture
def rotation(tmp_path):
    """The logrotate file with its directory moved to a scratch one and its user made root
    (the only changes), a state file, and a `systemctl` stand-in that records its call."""
    logs = tmp_path / "log"
    logs.mkdir()
    text = LOGROTATE.read_text()
    assert text.count("/var/log/egress-auditor/") == 1 and text.count("egress-auditor egress-auditor") == 2
    conf = tmp_path / "egress-auditor.logrotate"
    conf.write_text(text.replace("/var/log/egress-auditor/", f"{logs}/").replace("egress-auditor egress-auditor",
                                                                                 "root root"))
    conf.chmod(0o644)
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "systemctl").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/systemctl.calls\n')
    (bin_ / "systemctl").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_}:{os.environ['PATH']}")
    return logs, conf, tmp_path / "state", env, tmp_path / "systemctl.calls"


def test_logrotate_parses_the_file(rotation):
    logs, conf, state, env, _ = rotation
    (logs / "audit.jsonl").write_text('{"event": 1}\n')
    r = run(tool("logrotate"), "--debug", "--state", state, conf, env=env)
    assert r.returncode == 0 and "error:" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert "rotating pattern" in r.stdout + r.stderr


def test_logrotate_rotates_and_signals_the_unit_to_reopen(rotation):
    logs, conf, state, env, calls = rotation
    (logs / "audit.jsonl").write_text('{"event": 1}\n' * 100)
    (logs / "notes.txt").write_text("not ours\n")
    r = run(tool("logrotate"), "--force", "--state", state, conf, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    rotated = [p.name for p in logs.iterdir() if p.name.startswith("audit.jsonl.")]
    assert rotated == ["audit.jsonl.1"], rotated                               # delaycompress
    assert (logs / "audit.jsonl").stat().st_size == 0                          # `create`d afresh
    assert oct((logs / "audit.jsonl").stat().st_mode & 0o777) == "0o640"
    assert (logs / "notes.txt").exists()
    assert calls.read_text().split() == ["kill", "--kill-whom=main", "--signal=USR1", "egress-auditor.service"]
    # the next rotation compresses the previous one
    (logs / "audit.jsonl").write_text('{"event": 2}\n')
    r = run(tool("logrotate"), "--force", "--state", state, conf, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert {p.name for p in logs.iterdir()} == {"audit.jsonl", "audit.jsonl.1", "audit.jsonl.2.gz", "notes.txt"}


def test_the_setup_script_installs_these_files():
    text = (ROOT / "deploy" / "azureml" / "setup-compute-instance.sh").read_text()
    assert '"$HERE/../systemd/egress-auditor.service"' in text
    assert '"$HERE/../systemd/egress-auditor.logrotate"' in text
    assert shutil.which("bash")
