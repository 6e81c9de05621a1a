"""The Dockerfile cannot be built here (no Docker engine), so: hadolint (from PyPI) lints it,
its choices are checked by reading it (base pinned by digest, dependencies from the lock with
hashes), its build stage is reproduced (the wheelhouse and the wheel are built from exactly
the files the Dockerfile copies), and the demo entrypoint script is run for real."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile

import pytest

from auditor import core

from .helpers import DEMO, DOCKERFILE, ROOT, free_port, run, tool

TEXT = DOCKERFILE.read_text()
# Instructions, with backslash continuations joined and comments dropped.
INSTRUCTIONS = [re.sub(r"\\\n\s*", " ", m.group(0)).strip()
                for m in re.finditer(r"^(?!#)\S.*?(?<!\\)$", re.sub(r"^#.*\n", "", TEXT, flags=re.M),
                                     re.M | re.S)]


def instructions(op: str) -> list[str]:
    return [i[len(op):].strip() for i in INSTRUCTIONS if i.upper().startswith(op + " ")]


def test_hadolint_is_clean():
    r = run(tool("hadolint"), "--no-color", DOCKERFILE)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


def test_hadolint_is_not_vacuous(tmp_path):
    """An unpinned apt package, which hadolint must flag (so the clean run above means something)."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(TEXT.replace("libpcap0.8=1.10.3-1", "libpcap0.8"))
    r = run(tool("hadolint"), "--no-color", bad)
    assert r.returncode != 0 and "DL3008" in r.stdout, r.stdout + r.stderr


def test_slim_python_base_pinned_by_digest():
    froms = instructions("FROM")
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"], froms
    [arg] = [a for a in instructions("ARG") if a.startswith("PYTHON_IMAGE=")]
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", arg), arg
    assert (ROOT / "scripts" / "refresh-base-digest.sh").is_file()


def test_dependencies_come_from_the_lock_with_hashes():
    runs = instructions("RUN")
    assert any(r.startswith("bash scripts/build-wheelhouse.sh /wheels") for r in runs)  # --require-hashes
    [install] = [r for r in runs if "pip install" in r]
    assert "--require-hashes -r /tmp/wheels/requirements.lock" in install
    assert install.count("--no-index") == 2 and "--no-deps" in install and "egress_auditor-*.whl" in install
    assert not any(re.search(r"pip install\s+(-e|\.)", r) for r in runs), "install the wheel, not the tree"
    assert any(re.search(r"apt-get install .*libpcap0\.8=\S+", r) for r in runs)


def test_root_without_extra_capabilities_and_read_only_root_friendly():
    assert instructions("USER") == ["0:0"]             # compose/k8s drop all but NET_RAW/NET_ADMIN
    env = " ".join(instructions("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "HOME=/tmp" in env
    assert any("--compile" in r for r in instructions("RUN")), "bytecode is compiled at build time"
    assert instructions("VOLUME") == ['["/var/log/egress-auditor"]']
    assert instructions("ENTRYPOINT") == ['["egress-auditor"]']
    assert "19807" in instructions("HEALTHCHECK")[0] and instructions("EXPOSE") == ["19807"]
    assert any("libpcap0.8" in r and "rm -rf /var/lib/apt/lists" in r for r in instructions("RUN"))


def _copied_sources() -> list[str]:
    out = []
    for c in instructions("COPY"):
        parts = [p for p in c.split() if not p.startswith("--")]
        if not c.startswith("--from"):
            out += parts[:-1]
    return out


def test_copy_sources_exist_and_pass_the_dockerignore():
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    assert "*" in ignore
    for src in _copied_sources():
        matches = list(ROOT.glob(src))
        assert matches, f"COPY {src}: nothing matches"
        assert any(src == a or src.startswith(a + "/") for a in allowed), f"{src} is excluded by .dockerignore"


@pytest.mark.slow     # runs the build stage's pip steps for real: .ci/run runs the slow set too
def test_the_build_stage_makes_the_locked_wheelhouse_and_a_complete_wheel(tmp_path):
    """The build stage's context is exactly what it COPYs: run its RUN line there (needs PyPI)."""
    ctx = tmp_path / "src"
    for src in ("pyproject.toml", "setup.py", "README.md", "requirements.lock",
                "scripts/build-wheelhouse.sh"):
        (ctx / src).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / src, ctx / src)
    shutil.copytree(ROOT / "auditor", ctx / "auditor",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c"))
    build_copies = [c for c in instructions("COPY") if not c.startswith("--from")][:3]
    copied = {p for c in build_copies for p in c.split()[:-1]}
    assert copied == {"pyproject.toml", "setup.py", "README.md", "requirements.lock",
                      "scripts/build-wheelhouse.sh", "auditor"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    r = subprocess.run(["bash", "scripts/build-wheelhouse.sh", str(tmp_path / "wheels")], cwd=ctx, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    [wheel] = (tmp_path / "wheels").glob("egress_auditor-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "auditor/cli.py" in names
    # the compiled core is built into the wheel (this machine has a C compiler, as the stage has)
    for twin in core.TWINS:
        assert any(n.startswith(f"auditor/{twin.replace('.', '/')}.") and n.endswith(".so")
                   for n in names), twin
    # ... and the image's own check counts exactly those (RUN ... | grep -cE ... -eq N)
    [line] = [x for x in TEXT.splitlines() if "zipfile -l" in x]
    counted = re.findall(r"grep -cE '(.+)'\)\" -eq (\d+)$", line)
    assert counted and int(counted[0][1]) == len(core.TWINS), line
    listing = subprocess.run([sys.executable, "-m", "zipfile", "-l", str(wheel)], capture_output=True,
                             text=True, check=True).stdout
    assert len(re.findall(counted[0][0], listing, re.M)) == len(core.TWINS), listing
    assert any(n.startswith("auditor/data/servicetags/ServiceTags_Public_") for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "egress-auditor = auditor.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
    assert (tmp_path / "wheels" / "requirements.lock").read_text() == (ROOT / "requirements.lock").read_text()


def test_demo_entrypoint_serves_looping_metrics_and_stops_on_sigterm(tmp_path):
    """deploy/demo-loop.sh as the demo container runs it, against the repo's pcaps/demo. The
    `egress-auditor` it execs is this tree's (an installed console script may be another's)."""
    port = free_port()
    shim = tmp_path / "bin" / "egress-auditor"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\ncd {ROOT} && exec {sys.executable} -m auditor "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ, EGRESS_AUDITOR_DEMO_DIR=str(DEMO), EGRESS_AUDITOR_DEMO_EVERY="0.5",
               EGRESS_AUDITOR_METRICS_LISTEN=f"127.0.0.1:{port}", PATH=f"{shim.parent}:{os.environ['PATH']}")
    proc = subprocess.Popen(["sh", str(ROOT / "deploy" / "demo-loop.sh")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        packets = []
        deadline = time.monotonic() + 120
        while len(set(packets)) < 2 and time.monotonic() < deadline:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                packets.append(float(re.search(r"^egress_auditor_packets_total (\S+)", body, re.M).group(1)))
            except OSError:
                assert proc.poll() is None, proc.communicate()
            time.sleep(0.3)
        assert len(set(packets)) >= 2 and packets == sorted(packets), packets   # it loops
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
