"""The offline install, for real: requirements.lock pins every runtime dependency with
hashes; scripts/build-wheelhouse.sh downloads exactly those files (pip checks each hash) and
builds the project's wheel; a fresh venv installs egress-auditor from the wheelhouse with
`pip install --no-index` and none of this machine's pip configuration, and runs the README's
demo. Then the Azure ML compute-instance setup script installs the same wheelhouse and starts
the systemd unit, under a stand-in service manager that runs the unit's own command lines
(there is no systemd here), capturing on loopback: it succeeds capturing only, or with
`--attribution` with the attribution drop-in and without --no-attribution, and fails loudly
when capture cannot start. The `--image` route's generated drop-in is checked without a Docker
engine (a stand-in `docker`) and passes `systemd-analyze verify`.

Building the wheelhouse needs PyPI (about 10 s, 13 MB); everything after it is offline.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from .helpers import DEMO_POLICY, ROOT, free_port, run, tool

LOCK = ROOT / "requirements.lock"
SETUP = ROOT / "deploy" / "azureml" / "setup-compute-instance.sh"
UNIT = ROOT / "deploy" / "systemd" / "egress-auditor.service"
DROPIN = ROOT / "deploy" / "systemd" / "egress-auditor.service.d" / "attribution.conf"


def clean_env(**extra) -> dict:
    """The environment minus every PIP_* variable, with no pip configuration file: on this
    machine pip.conf adds local indexes and find-links that would hide a missing wheel."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


def locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) from requirements.lock."""
    out = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text()):
        m = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", block)
        if m:
            out[m.group(1).lower().replace("_", "-")] = (m.group(2), re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    return out


def runtime_dependencies() -> list[Requirement]:
    import tomllib
    return [Requirement(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]


def test_the_lock_pins_every_runtime_dependency_with_hashes():
    lock = locked()
    assert "Python 3.11" in LOCK.read_text().split("\n", 3)[1]
    for req in runtime_dependencies():
        name = req.name.lower().replace("_", "-")
        assert name in lock, f"{req.name} is not in requirements.lock: run scripts/update-lock.sh"
        version, _ = lock[name]
        assert req.specifier.contains(version, prereleases=True), f"{req} but the lock pins {version}"
    for name, (version, hashes) in lock.items():
        assert hashes, f"{name}=={version} has no hash"
    assert not re.search(r"^\s*--(extra-)?index-url|^\s*--find-links", LOCK.read_text(), re.M)


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheelhouse")
    r = subprocess.run(["bash", str(ROOT / "scripts" / "build-wheelhouse.sh"), str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600, env=clean_env())
    assert r.returncode == 0, r.stdout + r.stderr
    return out


@pytest.mark.slow     # builds a wheelhouse / fresh venvs: .ci/run runs the slow set too
def test_the_wheelhouse_holds_exactly_the_locked_files(wheelhouse):
    lock = locked()
    wheels = sorted(wheelhouse.glob("*.whl"))
    names = {re.sub(r"[-_.]+", "-", w.name.split("-")[0]).lower(): w.name.split("-")[1] for w in wheels}
    project = names.pop("egress-auditor")
    assert project == re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert names == {n: v for n, (v, _) in lock.items()}, "the wheelhouse and the lock disagree"
    sums = (wheelhouse / "SHA256SUMS").read_text()
    assert all(w.name in sums for w in wheels) and "requirements.lock" in sums
    r = subprocess.run(["sha256sum", "--check", "--quiet", "SHA256SUMS"], cwd=wheelhouse, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.slow     # builds a wheelhouse / fresh venvs: .ci/run runs the slow set too
def test_pip_install_no_index_in_a_fresh_venv_runs_the_demo(wheelhouse, tmp_path):
    venv = tmp_path / "venv"
    r = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    py = venv / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "--no-index", "--find-links", str(wheelhouse),
                        "egress-auditor"], capture_output=True, text=True, timeout=300, env=clean_env())
    assert r.returncode == 0, r.stdout + r.stderr
    # what got installed is the lock, to the version
    r = subprocess.run([str(py), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True,
                       env=clean_env())
    installed = dict(line.lower().replace("_", "-").split("==") for line in r.stdout.split())
    for name, (version, _) in locked().items():
        assert installed.get(name) == version, (name, installed.get(name), version)
    # The README's demo, from a directory without the source tree (nothing imported from it).
    demo = ROOT / "pcaps" / "demo"
    r = subprocess.run([str(venv / "bin" / "egress-auditor"), "replay", *map(str, sorted(demo.glob("*.pcap"))),
                        "--policy", str(demo / "policy.yaml")], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path, env=clean_env())
    assert r.returncode == 0, r.stderr
    assert re.search(r"egress flows\s+61\b", r.stdout), r.stdout
    assert "pastebin.com" in r.stdout and "dns_tunneling" in r.stdout and "exfil_service" in r.stdout
    r = subprocess.run([str(py), "-c", "import auditor; print(auditor.__file__)"], capture_output=True, text=True,
                       cwd=tmp_path)
    assert str(venv) in r.stdout, r.stdout


# -- the compute-instance setup script ---------------------------------------------------------
FAKE_SYSTEMCTL = """\
#!{python}
# A stand-in for systemctl: runs the unit's ExecStartPre/ExecStart under
# EGRESS_AUDITOR_SETUP_ROOT, with the unit's EnvironmentFile, as systemd would.
import os, re, shlex, signal, subprocess, sys, time
from pathlib import Path
root = Path(os.environ["EGRESS_AUDITOR_SETUP_ROOT"])
state = root / "run" / "fake-systemd"
state.mkdir(parents=True, exist_ok=True)
def unit_lines(unit):
    text = (root / "etc/systemd/system" / unit).read_text()
    for dropin in sorted((root / "etc/systemd/system" / (unit + ".d")).glob("*.conf")):
        text += "\\n" + dropin.read_text()
    return re.sub(r"\\\\\\n\\s*", " ", text).splitlines()
def mapped(path):
    for p in ("/opt/egress-auditor", "/etc/egress-auditor", "/var/log/egress-auditor", "/etc/default/"):
        path = path.replace(p, str(root) + p)
    return path
def start(unit):
    env, pre, start = dict(os.environ), [], None
    for line in unit_lines(unit):
        key, _, value = line.partition("=")
        if key == "EnvironmentFile":
            for l in Path(mapped(value)).read_text().splitlines():
                if l and not l.startswith("#"):
                    k, _, v = l.partition("=")
                    env[k] = v
        elif key == "ExecStartPre":
            pre.append(value)
        elif key == "ExecStart":
            start = value
    (root / "var/log/egress-auditor").mkdir(parents=True, exist_ok=True)      # LogsDirectory=
    log = open(state / (unit + ".log"), "a")
    expand = lambda cmd: [re.sub(r"\\$\\{{(\\w+)\\}}", lambda m: env[m.group(1)], mapped(a)) for a in shlex.split(cmd)]
    for cmd in pre:
        if subprocess.call(expand(cmd), env=env, stdout=log, stderr=log) != 0:
            (state / (unit + ".pid")).write_text("0")
            return
    proc = subprocess.Popen(expand(start), env=env, stdout=log, stderr=log, start_new_session=True)
    (state / (unit + ".pid")).write_text(str(proc.pid))
def alive(unit):
    f = state / (unit + ".pid")
    pid = int(f.read_text()) if f.exists() else 0
    if pid <= 0:
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        done = 0
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not done and not Path(f"/proc/{{pid}}/stat").read_text().split()[2] == "Z"
args = [a for a in sys.argv[1:] if not a.startswith("--")]
cmd, unit = args[0], (args[-1] if len(args) > 1 else "")
if cmd in ("daemon-reload", "enable"):
    sys.exit(0)
if cmd == "restart":
    start(unit); sys.exit(0)
if cmd == "is-active":
    sys.exit(0 if alive(unit) else 3)
if cmd == "show":       # NRestarts: Restart=always would keep restarting a dead unit
    print(0 if alive(unit) else 5); sys.exit(0)
if cmd == "stop":
    pid = int((state / (unit + ".pid")).read_text())
    if pid > 0:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    sys.exit(0)
sys.exit("fake systemctl: unsupported " + " ".join(sys.argv[1:]))
"""
FAKE_JOURNALCTL = """\
#!/bin/sh
cat "$EGRESS_AUDITOR_SETUP_ROOT/run/fake-systemd/egress-auditor.service.log"
"""


@pytest.fixture
def node(tmp_path):
    """A node's root, with a stand-in systemctl/journalctl; the started unit is always stopped."""
    root = tmp_path / "root"
    root.mkdir()
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "systemctl").write_text(FAKE_SYSTEMCTL.format(python=sys.executable))
    (bin_ / "journalctl").write_text(FAKE_JOURNALCTL)
    for f in bin_.iterdir():
        f.chmod(0o755)
    env = clean_env(EGRESS_AUDITOR_SETUP_ROOT=str(root), SYSTEMCTL=str(bin_ / "systemctl"),
                    JOURNALCTL=str(bin_ / "journalctl"))
    yield root, env
    subprocess.run([str(bin_ / "systemctl"), "stop", "egress-auditor.service"], env=env, capture_output=True)


def setup(env, *args, cwd=None):
    return subprocess.run(["bash", str(SETUP), *map(str, args)], capture_output=True, text=True, timeout=300,
                          env=env, cwd=cwd)


def test_setup_script_is_shellcheck_clean():
    scripts = [SETUP, *sorted((ROOT / "scripts").glob("*.sh")), *sorted((ROOT / "deploy").glob("*.sh"))]
    r = run(tool("shellcheck"), *scripts)
    assert r.returncode == 0, r.stdout + r.stderr


def test_setup_script_refuses_bad_arguments_with_one_line(node, tmp_path):
    root, env = node
    r = setup(env, "--policy", DEMO_POLICY)
    assert r.returncode == 1 and "give --wheelhouse DIR or --image REF" in r.stderr
    r = setup(env, "--wheelhouse", tmp_path, "--policy", tmp_path / "missing.yaml", "--interface", "lo")
    assert r.returncode == 1 and "policy file" in r.stderr and "not found" in r.stderr
    r = setup(env, "--wheelhouse", tmp_path, "--policy", DEMO_POLICY, "--interface", "lo")
    assert r.returncode == 1 and "no egress_auditor-*.whl" in r.stderr


@pytest.mark.slow     # builds a wheelhouse / fresh venvs: .ci/run runs the slow set too
def test_setup_script_installs_the_wheelhouse_and_capture_starts(node, wheelhouse, tmp_path):
    root, env = node
    port = free_port()
    r = setup(env, "--wheelhouse", wheelhouse, "--policy", DEMO_POLICY, "--interface", "lo",
              "--metrics-listen", f"127.0.0.1:{port}", "--python", sys.executable, "--timeout", "60")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"capturing on lo; metrics on http://127.0.0.1:{port}/metrics" in r.stderr
    assert (root / "etc/systemd/system/egress-auditor.service").read_text() == UNIT.read_text()
    assert (root / "etc/egress-auditor/policy.yaml").read_text() == DEMO_POLICY.read_text()
    default = (root / "etc/default/egress-auditor").read_text()
    assert "CAPTURE_INTERFACE=lo" in default and f"EGRESS_AUDITOR_METRICS_LISTEN=127.0.0.1:{port}" in default
    assert (root / "opt/egress-auditor/bin/egress-auditor").is_file()
    assert (root / "etc/logrotate.d/egress-auditor").is_file()
    assert not (root / "etc/systemd/system/egress-auditor.service.d").exists()
    assert r.stderr.rstrip().endswith("capture only (no attribution)"), r.stderr
    # The unit's own ExecStart is what runs: the events file is where the unit says.
    events = root / "var/log/egress-auditor/audit.jsonl"
    deadline = time.monotonic() + 30
    while not events.exists():
        assert time.monotonic() < deadline, "the unit's --events file was never opened"
        time.sleep(0.2)
    assert started_argv(root)[-1] == "--no-attribution"


def started_argv(root: Path) -> list[str]:
    """The command line of the process the stand-in service manager started for the unit (the
    console script's interpreter first)."""
    pid = int((root / "run/fake-systemd/egress-auditor.service.pid").read_text())
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


@pytest.mark.slow     # builds a wheelhouse / fresh venvs: .ci/run runs the slow set too
def test_setup_script_with_attribution_installs_the_dropin(node, wheelhouse, tmp_path):
    """--attribution: the drop-in from deploy/systemd, byte for byte, and the process runs
    the drop-in's command line (no --no-attribution); run again without it, capture only."""
    root, env = node
    port = free_port()
    args = ("--wheelhouse", wheelhouse, "--policy", DEMO_POLICY, "--interface", "lo",
            "--metrics-listen", f"127.0.0.1:{port}", "--python", sys.executable, "--timeout", "60")
    mine = root / "etc/systemd/system/egress-auditor.service.d/override.conf"    # `systemctl edit`'s
    mine.parent.mkdir(parents=True)
    mine.write_text("[Service]\nNice=5\n")
    r = setup(env, *args, "--attribution")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr.rstrip().endswith("flows attributed to their process"), r.stderr
    assert (root / "etc/systemd/system/egress-auditor.service").read_text() == UNIT.read_text()
    installed = root / "etc/systemd/system/egress-auditor.service.d/attribution.conf"
    assert installed.read_text() == DROPIN.read_text()
    argv = started_argv(root)
    assert argv[argv.index("run") + 1] == "--interface" and "--no-attribution" not in argv, argv
    assert argv[-2:] == ["--events", str(root / "var/log/egress-auditor/audit.jsonl")]
    subprocess.run([env["SYSTEMCTL"], "stop", "egress-auditor.service"], env=env, capture_output=True)
    r = setup(env, *args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not installed.exists() and mine.read_text() == "[Service]\nNice=5\n"
    assert started_argv(root)[-1] == "--no-attribution"


@pytest.mark.parametrize("attribution", [False, True])
def test_setup_script_image_drop_in(node, tmp_path, attribution):
    """--image on a node without a Docker engine: a stand-in `docker` that accepts the pull,
    a service manager whose unit never comes up (so the script fails, after writing the
    drop-in). The container gets capture's two capabilities and --no-attribution, or with
    --attribution the host PID namespace, the two more and no --no-attribution; the unit with
    that drop-in passes systemd-analyze verify."""
    root, env = node
    bin_ = tmp_path / "stub-bin"
    bin_.mkdir()
    (bin_ / "docker").write_text("#!/bin/sh\nexit 0\n")
    (bin_ / "systemctl").write_text('#!/bin/sh\ncase "$1" in is-active) exit 3 ;; show) echo 5 ;; esac\n')
    for f in bin_.iterdir():
        f.chmod(0o755)
    env = dict(env, PATH=f"{bin_}:{env['PATH']}", SYSTEMCTL=str(bin_ / "systemctl"))
    image = "contoso.example/egress-auditor@sha256:" + "0" * 64
    r = setup(env, "--image", image, "--policy", DEMO_POLICY, "--interface", "lo", "--metrics-listen",
              f"127.0.0.1:{free_port()}", "--timeout", "1", *(["--attribution"] if attribution else []))
    assert r.returncode == 1 and "FAILED: capture did not start on lo" in r.stderr, r.stderr
    dropins = root / "etc/systemd/system/egress-auditor.service.d"
    assert sorted(p.name for p in dropins.iterdir()) == ["container.conf"]
    text = (dropins / "container.conf").read_text()
    [start] = [line for line in re.sub(r"\\\n\s*", " ", text).splitlines() if line.startswith("ExecStart=/")]
    argv = start.split("=", 1)[1].split()
    caps = [argv[i + 1] for i, a in enumerate(argv) if a == "--cap-add"]
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    run_args = argv[argv.index(image) + 1:]
    assert run_args[0] == "run" and run_args[run_args.index("--interface") + 1] == "${CAPTURE_INTERFACE}"
    if attribution:
        assert caps == ["NET_RAW", "NET_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH"]
        assert argv[argv.index("--pid") + 1] == "host" and "--no-attribution" not in run_args
    else:
        assert caps == ["NET_RAW", "NET_ADMIN"]
        assert "--pid" not in argv and run_args[-1] == "--no-attribution"
    # systemd-analyze verify on the unit with it: the commands' paths moved to executables
    unit_dir = tmp_path / "units"
    (unit_dir / "egress-auditor.service.d").mkdir(parents=True)
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    for exe in (prefix / "bin" / "egress-auditor", prefix / "bin" / "docker"):
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    (unit_dir / "egress-auditor.service").write_text(UNIT.read_text().replace("/opt/egress-auditor", str(prefix)))
    (unit_dir / "egress-auditor.service.d" / "container.conf").write_text(text.replace("/usr/bin/docker", str(prefix / "bin" / "docker")))
    r = run(tool("systemd-analyze"), "verify", unit_dir / "egress-auditor.service",
            env=dict(os.environ, SYSTEMD_UNIT_PATH=f"{unit_dir}:"))
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


@pytest.mark.slow     # builds a wheelhouse / fresh venvs: .ci/run runs the slow set too
def test_setup_script_fails_loudly_when_capture_cannot_start(node, wheelhouse):
    root, env = node
    r = setup(env, "--wheelhouse", wheelhouse, "--policy", DEMO_POLICY, "--interface", "nosuchif0",
              "--metrics-listen", f"127.0.0.1:{free_port()}", "--python", sys.executable, "--timeout", "60")
    assert r.returncode == 1
    assert "FAILED: capture did not start on nosuchif0" in r.stderr and "NOT audited" in r.stderr
    assert "nosuchif0" in r.stderr.split("last messages:")[1], "the auditor's own error is shown"
