"""deploy/systemd for compute instances and other VMs: the unit passes `systemd-analyze verify`
with no message and scores "OK" in `systemd-analyze security --offline`, alone and with its
opt-in attribution drop-in; alone it captures only (CAP_NET_RAW/CAP_NET_ADMIN, --no-attribution)
with the hardening issue #15 asks for, and the drop-in adds exactly what attribution needs; the
logrotate file really rotates (a forced rotation by logrotate itself in a scratch directory) and
signals the unit to reopen its log. There is no running systemd here: nothing is started (the setup-script test in
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
DROPIN = ROOT / "deploy" / "systemd" / "egress-auditor.service.d" / "attribution.conf"
LOGROTATE = ROOT / "deploy" / "systemd" / "egress-auditor.logrotate"
PREFIX = "/opt/egress-auditor"
CAPTURE_CAPS = ["CAP_NET_RAW", "CAP_NET_ADMIN"]
ATTRIBUTION_CAPS = ["CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"]     # tests/attribution/test_privileges.py


def unit(path: Path = UNIT) -> configparser.ConfigParser:
    """The file's settings; a key set twice (`ExecStart=` then `ExecStart=...`) keeps its last value."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read_string(text)
    return parser


def installed(tmp_path: Path, text: str, dropin: str | None = None) -> Path:
    """The unit (and the drop-in, as /etc/systemd/system/egress-auditor.service.d/attribution.conf
    would hold it) in a scratch directory, the install prefix moved there holding an
    executable (verify checks that every command exists); nothing else changes."""
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True, exist_ok=True)
    exe = prefix / "bin" / "egress-auditor"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert text.count(PREFIX) == 2            # ExecStartPre and ExecStart, nowhere else
    f = tmp_path / "egress-auditor.service"
    f.write_text(text.replace(PREFIX, str(prefix)))
    if dropin is not None:
        assert dropin.count(PREFIX) == 1      # its ExecStart
        (tmp_path / "egress-auditor.service.d").mkdir(exist_ok=True)
        (tmp_path / "egress-auditor.service.d" / "attribution.conf").write_text(dropin.replace(PREFIX, str(prefix)))
    return f


def verify(text: str, tmp_path: Path, dropin: str | None = None):
    """systemd-analyze verify on the unit as installed() lays it out; the scratch directory is
    put first on the unit search path, so that verify reads the drop-in too."""
    f = installed(tmp_path, text, dropin)
    env = dict(os.environ, SYSTEMD_UNIT_PATH=f"{tmp_path}:")
    return run(tool("systemd-analyze"), "verify", f, env=env)


def security(f: Path) -> tuple[float, str, str]:
    """systemd-analyze security --offline on a unit file (it reads the drop-ins beside it)."""
    r = run(tool("systemd-analyze"), "security", "--offline=yes", "--no-pager", f)
    m = re.search(r"Overall exposure level for egress-auditor\.service: (\d+\.\d+) (\w+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    return float(m.group(1)), m.group(2), r.stdout


def test_systemd_analyze_verify_is_silent(tmp_path):
    r = verify(UNIT.read_text(), tmp_path)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


def test_systemd_analyze_verify_is_silent_with_the_attribution_dropin(tmp_path):
    r = verify(UNIT.read_text(), tmp_path, DROPIN.read_text())
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


def test_verify_catches_a_misspelt_directive(tmp_path):
    r = verify(UNIT.read_text().replace("ProtectClock=yes", "ProtectClok=yes"), tmp_path)
    assert "Unknown key 'ProtectClok'" in r.stdout + r.stderr


def test_verify_reads_the_dropin(tmp_path):
    """The check above is not vacuous for the drop-in: a misspelt key in it is reported."""
    r = verify(UNIT.read_text(), tmp_path, DROPIN.read_text().replace("ProtectProc=", "ProtectPorc="))
    assert "attribution.conf" in r.stdout + r.stderr and "Unknown key 'ProtectPorc'" in r.stdout + r.stderr


def test_exposure_is_ok_in_systemd_analyze_security(tmp_path):
    alone = tmp_path / "alone"
    alone.mkdir()
    level, word, out = security(installed(alone, UNIT.read_text()))
    assert level <= 2.5 and word == "OK", (level, word)
    assert re.search(r"✓ CapabilityBoundingSet=~CAP_SYS_PTRACE ", out) and re.search(r"✓ ProtectProc= ", out), out
    with_dropin = tmp_path / "attribution"
    with_dropin.mkdir()
    level2, word2, out2 = security(installed(with_dropin, UNIT.read_text(), DROPIN.read_text()))
    assert level2 <= 3.0 and word2 == "OK", (level2, word2)
    # the drop-in's capabilities add to the unit's (not replace them), and /proc is whole again
    assert re.search(r"✗ CapabilityBoundingSet=~CAP_SYS_PTRACE ", out2) and re.search(r"✗ ProtectProc= ", out2), out2
    assert re.search(r"✗ CapabilityBoundingSet=~CAP_NET_ADMIN ", out2), out2
    assert level2 > level


def test_capture_capabilities_only_and_the_hardening_capture_allows():
    s = unit()["Service"]
    assert s["AmbientCapabilities"].split() == CAPTURE_CAPS   # issue #15
    assert s["CapabilityBoundingSet"].split() == CAPTURE_CAPS
    assert s["ProtectProc"] == "invisible"
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
    assert "PrivateUsers" not in s and "PrivateNetwork" not in s      # capture: the host's network namespace
    start = s["ExecStart"].split()
    assert start[:2] == [f"{PREFIX}/bin/egress-auditor", "run"]
    assert start[start.index("--interface") + 1] == "${CAPTURE_INTERFACE}"
    assert start[start.index("--events") + 1] == "/var/log/egress-auditor/audit.jsonl"    # LogsDirectory
    assert start.count("--no-attribution") == 1
    assert s["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert unit()["Install"]["WantedBy"] == "multi-user.target"


def test_the_attribution_dropin_adds_only_what_attribution_needs():
    raw = DROPIN.read_text()
    d = unit(DROPIN)
    assert d.sections() == ["Service"]
    s = d["Service"]
    assert set(s) == {"AmbientCapabilities", "CapabilityBoundingSet", "ProtectProc", "ExecStart"}
    assert s["AmbientCapabilities"].split() == ATTRIBUTION_CAPS     # added to the unit's two
    assert s["CapabilityBoundingSet"].split() == ATTRIBUTION_CAPS
    assert s["ProtectProc"] == "default"                            # other processes' /proc/PID
    # ExecStart is cleared, then the unit's own command line without --no-attribution
    assert re.search(r"^ExecStart=\n", raw, re.M) and raw.count("ExecStart=") == 2
    assert raw.index("ExecStart=\n") < raw.index("ExecStart=/")
    base = unit()["Service"]["ExecStart"].split()
    base.remove("--no-attribution")
    assert s["ExecStart"].split() == base


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
