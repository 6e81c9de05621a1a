"""A real Prometheus (started here, on a free loopback port, scraping every second, loading
the project's alert rules) scrapes a running `egress-auditor replay --loop` over the demo
captures; then every dashboard query and every alert expression is evaluated through the
HTTP API.

Grafana's `$__rate_interval` and `$__range` are replaced by `1m` (helpers.WINDOW), `$job` and
`$instance` by the test target. Each query must name only exported metrics and return data,
except those listed in QUIET (the demo traffic cannot produce data for them). Each alert must
fire exactly when the demo traffic should make it fire.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request

import pytest

from .helpers import (DEMO_PCAPS, DEMO_POLICY, JOB, RULES, Prometheus, alert_rules, dashboard_annotations,
                      dashboard_queries, exported_names, free_port, metric_names_in, substitute)

# Panels that stay empty on the demo captures, and why.
QUIET: dict[str, str] = {}   # panels whose series all stay at zero on the demo traffic
ZERO = {
    "Malformed units by layer": "the demo captures are well-formed: every `layer` series exists "
                                "from the start (pre-created) and stays at zero",
}
# Alerts the demo traffic fires: one denied flow (pastebin.com) and a high dns_tunneling finding
# per pass; and the bundled service-tags file is older than 30 days (it ages with the release).
# Everything else (down, drops, stalled, overflow, sink errors, low findings, evictions,
# reloads, policy changes, malformed input) must not.
FIRES_ON_DEMO = {"EgressDenied", "EgressExfiltrationFindingHigh", "EgressAuditorServiceTagsStale"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prom")
    port = free_port()
    target = f"127.0.0.1:{port}"
    env = dict(os.environ, EGRESS_AUDITOR_METRICS_LISTEN=target)
    auditor = subprocess.Popen(
        [sys.executable, "-m", "auditor", "replay", *map(str, DEMO_PCAPS), "--policy", str(DEMO_POLICY),
         "--metrics-port", str(port), "--loop", "1", "--quiet"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "auditor.log", "w"))
    try:
        with Prometheus(tmp, [target], RULES) as prom:
            def ready():
                assert auditor.poll() is None, (tmp / "auditor.log").read_text()
                # two scrapes spanning at least one more pass: rates and increases are non-zero
                q = f'increase(egress_auditor_findings_total{{job="{JOB}",severity="high"}}[1m]) > 0'
                return prom.query(f'up{{job="{JOB}"}} == 1') and prom.query(q)
            prom.wait(ready, 45, "the auditor scraped, with a pass between two scrapes")
            exposition = urllib.request.urlopen(f"http://{target}/metrics", timeout=5).read().decode()
            yield prom, target, exported_names(exposition) | {"up"}
    finally:
        auditor.send_signal(signal.SIGTERM)
        try:
            auditor.wait(15)
        except subprocess.TimeoutExpired:
            auditor.kill()
            auditor.wait()


QUERIES = dashboard_queries()


@pytest.mark.parametrize("uid,title,expr", QUERIES, ids=[f"{u}:{t}:{i}" for i, (u, t, _) in enumerate(QUERIES)])
def test_dashboard_query_returns_data(stack, uid, title, expr):
    prom, target, exported = stack
    missing = metric_names_in(expr) - exported
    assert not missing, f"{uid} / {title} names {sorted(missing)}, which the exporter does not export"
    query = substitute(expr, JOB, target)
    if title in QUIET:
        assert prom.query(query) == [], f"{title}: data on the demo traffic? update QUIET"
        return
    if title in ZERO:
        got: list = []
        prom.wait(lambda: got.extend(prom.query(query)) or got, 10, f"series for {title}")
        assert all(float(r["value"][1]) == 0 for r in got), f"{title}: non-zero on the demo traffic"
        return
    result = []
    prom.wait(lambda: result.extend(prom.query(query)) or result, 10, f"data for {uid} / {title}: {query}")


ANNOTATIONS = dashboard_annotations()


@pytest.mark.parametrize("uid,name,expr", ANNOTATIONS, ids=[f"{u}:{n}" for u, n, _ in ANNOTATIONS])
def test_dashboard_annotation_query_is_valid_and_quiet_on_the_demo(stack, uid, name, expr):
    """The demo never reloads, fails a reload or restarts: every annotation query must be
    accepted by Prometheus and return nothing."""
    prom, target, exported = stack
    assert metric_names_in(expr) <= exported, (uid, name)
    assert prom.query(substitute(expr, JOB, target)) == [], (uid, name)


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_expression_on_demo_traffic(stack, rule):
    prom, target, exported = stack
    missing = metric_names_in(rule["expr"]) - exported
    assert not missing, f"{rule['alert']} reads {sorted(missing)}, which the exporter does not export"
    result = prom.query(rule["expr"])
    if rule["alert"] in FIRES_ON_DEMO:
        assert result, f"{rule['alert']} should fire on the demo traffic"
        assert all(r["metric"]["instance"] == target and r["metric"]["job"] == JOB for r in result)
    else:
        assert result == [], f"{rule['alert']} fires on the demo traffic: {result}"


def test_prometheus_loaded_every_rule_and_fires_the_demo_alerts(stack):
    prom, target, _ = stack
    groups = prom.api("rules")["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(loaded) == {r["alert"] for r in alert_rules()}
    assert all(r["health"] == "ok" for r in loaded.values()), {n: r.get("lastError") for n, r in loaded.items()}

    def firing():
        return {a["labels"]["alertname"] for a in prom.api("alerts")["alerts"] if a["state"] == "firing"}
    prom.wait(lambda: firing() >= FIRES_ON_DEMO, 10, f"{FIRES_ON_DEMO} firing")
    assert firing() == FIRES_ON_DEMO
