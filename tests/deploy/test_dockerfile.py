"""The Dockerfile cannot be built here (no Docker engine), so: its choices are checked by
reading it, its build stage is reproduced (the wheel is built from exactly the files the
Dockerfile copies), and the demo entrypoint script is run for real."""
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

from .helpers import DEMO, DOCKERFILE, ROOT, free_port, run

TEXT = DOCKERFILE.read_text()
# Instructions, with backslash continuations joined and comments dropped.
INSTRUCTIONS = [re.sub(r"\\\n\s*", " ", m.group(0)).strip()
                for m in re.finditer(r"^(?!#)\S.*?(?<!\\)$", re.sub(r"^#.*\n", "", TEXT, flags=re.M),
                                     re.M | re.S)]


def instructions(op: str) -> list[str]:
    return [i[len(op):].strip() for i in INSTRUCTIONS if i.upper().startswith(op + " ")]


def test_slim_python_base_and_a_wheel_install():
    froms = instructions("FROM")
    assert len(froms) == 2
    assert all(re.match(r"python:\$\{PYTHON_VERSION\}-slim", f) for f in froms), froms
    assert "ARG PYTHON_VERSION=3.11" in TEXT
    runs = instructions("RUN")
    assert any("pip wheel" in r and "--wheel-dir /wheels" in r for r in runs)
    assert any("pip install" in r and ".whl" in r for r in runs)
    assert not any(re.search(r"pip install\s+(-e|\.)", r) for r in runs), "install the wheel, not the tree"


def test_root_without_extra_capabilities_and_read_only_root_friendly():
    assert instructions("USER") == ["root"]            # compose drops all but NET_RAW/NET_ADMIN
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


def test_the_build_stage_makes_a_complete_wheel(tmp_path):
    """The build stage's context: pyproject.toml, README.md, auditor/ — nothing else."""
    ctx = tmp_path / "src"
    ctx.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, ctx / name)
    shutil.copytree(ROOT / "auditor", ctx / "auditor", ignore=shutil.ignore_patterns("__pycache__"))
    r = run(sys.executable, "-m", "pip", "wheel", "-q", "--no-cache-dir", "--no-deps",
            "--wheel-dir", tmp_path / "wheels", ctx)
    assert r.returncode == 0, r.stdout + r.stderr
    [wheel] = (tmp_path / "wheels").glob("egress_auditor-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "auditor/cli.py" in names
    assert any(n.startswith("auditor/data/servicetags/ServiceTags_Public_") for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "egress-auditor = auditor.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_demo_entrypoint_serves_looping_metrics_and_stops_on_sigterm(tmp_path):
    """deploy/demo-loop.sh as the demo container runs it, against the repo's pcaps/demo."""
    port = free_port()
    env = dict(os.environ, EGRESS_AUDITOR_DEMO_DIR=str(DEMO), EGRESS_AUDITOR_DEMO_EVERY="0.5",
               EGRESS_AUDITOR_METRICS_LISTEN=f"127.0.0.1:{port}")
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
