"""Shared by the deploy tests: paths, tools, the exporter's metric names, PromQL in the
dashboards and rule files, and a throw-away Prometheus server on loopback.

The tools (promtool, prometheus, amtool, check-jsonschema, docker-compose) come from
scripts/install-test-deps.sh; a missing one fails the test, it is never skipped.
"""
from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "pcaps" / "demo"
DEMO_PCAPS = sorted(DEMO.glob("*.pcap"))
DEMO_POLICY = DEMO / "policy.yaml"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
RULES = sorted((ROOT / "grafana" / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = sorted((ROOT / "grafana" / "prometheus" / "tests").glob("*.yml"))
PROMETHEUS_YML = ROOT / "deploy" / "prometheus.yml"
ALERTMANAGER_YML = ROOT / "deploy" / "alertmanager.yml"
MIXIN = ROOT / "deploy" / "mixin" / "render.py"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
JOB = "egress-auditor"          # the scrape job name the rules and docs expect

# Grafana's range macros become this concrete window when the tests evaluate a panel.
# With the test Prometheus scraping every second, a minute holds ~60 samples.
WINDOW = "1m"


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: run scripts/install-test-deps.sh"
    return path


def run(*argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the exporter's metric names ----------------------------------------------------------------
def exported_names(exposition: str) -> set[str]:
    """Every sample name a Prometheus text exposition declares (`# TYPE` lines): families
    without samples yet (e.g. packets_malformed_total on clean traffic) count too."""
    names = set()
    for m in re.finditer(r"^# TYPE (\S+) (\S+)$", exposition, re.M):
        name, kind = m.groups()
        names.add(name)
        if kind == "counter" and not name.endswith("_total"):
            names.add(name + "_total")
    return names


def demo_exposition(tmp_path: Path) -> str:
    """The exporter's final output for a replay of the demo captures (--metrics-file)."""
    out = tmp_path / "demo.prom"
    r = run(sys.executable, "-m", "auditor", "replay", *DEMO_PCAPS, "--policy", DEMO_POLICY,
            "--metrics-file", out, "--quiet")
    assert r.returncode == 0, r.stderr
    return out.read_text()


# -- PromQL in dashboards and rules -------------------------------------------------------------
def metric_names_in(expr: str) -> set[str]:
    """The metrics an expression selects (ours by prefix, the process_* ones, plus `up`)."""
    names = set(re.findall(r"\b((?:egress_auditor|process)_[a-zA-Z0-9_]+)", expr))
    if re.search(r"\bup\s*\{", expr):
        names.add("up")
    return names


def panels(dashboard: dict):
    for p in dashboard.get("panels", []):
        yield p
        yield from p.get("panels", [])        # collapsed rows hold their panels


def dashboard_annotations() -> list[tuple[str, str, str]]:
    """(dashboard uid, annotation name, expr) for every Prometheus annotation query."""
    return [(d["uid"], a["name"], a["expr"]) for f in DASHBOARDS for d in [json.loads(f.read_text())]
            for a in d["annotations"]["list"] if a.get("expr")]


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, expr) for every query target of every panel."""
    out = []
    for f in DASHBOARDS:
        d = json.loads(f.read_text())
        for p in panels(d):
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((d["uid"], p["title"], t["expr"]))
    return out


def substitute(expr: str, job: str, instance: str) -> str:
    """A panel query as Grafana would send it, for one target: template variables become
    regexes matching it, and `$__rate_interval` / `$__range` the fixed WINDOW."""
    for var, value in (("$__rate_interval", WINDOW), ("$__range", WINDOW), ("$__interval", WINDOW),
                       ("$job", job), ("$instance", instance)):
        expr = expr.replace("${" + var[1:] + "}", value).replace(var, value)
    assert "$" not in expr.replace("$1", ""), f"unsubstituted variable in {expr}"
    return expr


def alert_rules() -> list[dict]:
    rules = []
    for f in RULES:
        for group in yaml.safe_load(f.read_text())["groups"]:
            rules += [r for r in group["rules"] if "alert" in r]
    return rules


# -- a Prometheus server for one test ------------------------------------------------------------
class Prometheus:
    """`prometheus` on 127.0.0.1:<free port>, scraping `targets` every second, loading
    `rule_files`. Use as a context manager: the process is always killed on exit."""

    def __init__(self, workdir: Path, targets: list[str], rule_files: list[Path], config: dict | None = None,
                 agent: bool = False, extra_args: tuple[str, ...] = ()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if config is None:
            config = {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
                "rule_files": [str(p) for p in rule_files],
                "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": targets}]}] if targets else [],
            }
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        storage = f"--storage.agent.path={workdir / 'wal'}" if agent else f"--storage.tsdb.path={workdir / 'tsdb'}"
        self.argv = [tool("prometheus"), f"--config.file={self.config}", storage,
                     f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
                     *(["--enable-feature=agent"] if agent else []), *extra_args]
        self.log = workdir / "prometheus.log"
        self.proc = None

    def __enter__(self):
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=open(self.log, "w"))
        try:
            self.wait(lambda: self._get("/-/ready") is not None, 30, "Prometheus /-/ready")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def _get(self, path: str, **params):
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read().decode()
        except OSError:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited: {self.log.read_text()[-2000:]}") from None
            return None

    def api(self, path: str, **params):
        body = self._get("/api/v1/" + path, **params)
        assert body is not None, f"GET /api/v1/{path} {params} failed"
        doc = json.loads(body)
        assert doc["status"] == "success", doc
        return doc["data"]

    def query(self, expr: str) -> list[dict]:
        data = self.api("query", query=expr)
        return data["result"] if data["resultType"] in ("vector", "matrix") else [data["result"]]

    def wait(self, ok, seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if ok():
                return
            time.sleep(0.25)
        raise AssertionError(f"timed out after {seconds}s waiting for {what}")
