"""The exporter's real output passes `promtool check metrics`, and `replay --serve-after` /
`--loop` keep serving it for Prometheus (the compose demo and the integration test use them)."""
from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import sys
import time
import urllib.request

from .helpers import DEMO_PCAPS, DEMO_POLICY, demo_exposition, free_port, run, tool


def _promtool_check_metrics(text: str) -> None:
    r = run(tool("promtool"), "check", "metrics", input=text)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


def test_promtool_check_metrics_on_the_metrics_file(tmp_path):
    text = demo_exposition(tmp_path)
    assert "egress_auditor_flows_total" in text
    _promtool_check_metrics(text)


def _start(*extra, port):
    env = dict(os.environ, EGRESS_AUDITOR_METRICS_LISTEN=f"127.0.0.1:{port}")
    return subprocess.Popen([sys.executable, "-m", "auditor", "replay", *map(str, DEMO_PCAPS), "--policy",
                             str(DEMO_POLICY), "--metrics-port", str(port), "--quiet", *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _scrape(proc, port, path="/metrics", timeout=120.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30).read().decode()
        except OSError:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"nothing served on {port}"
            time.sleep(0.2)


def _value(text: str, sample: str) -> float:
    return float(re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M).group(1))


def test_serve_after_keeps_the_final_metrics_up_until_sigterm():
    port = free_port()
    proc = _start("--serve-after", "--fail-on", "denied", port=port)
    try:
        deadline = time.monotonic() + 120
        while _value(text := _scrape(proc, port), "egress_auditor_packets_total") < 1506:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(1.0)                                  # and it stays up, unchanged, after the replay
        text = _scrape(proc, port)
        assert _value(text, "egress_auditor_packets_total") == 1506
        assert _value(text, 'egress_auditor_violations_total{reason="no_matching_rule"}') == 1
        assert "/metrics" in _scrape(proc, port, "/")
        _promtool_check_metrics(text)                    # the live HTTP exposition, too
        assert proc.poll() is None, "exited although --serve-after"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    assert proc.returncode == 3                          # SIGTERM ends it normally; --fail-on still applies


def test_loop_replays_again_with_the_clock_moving_forward():
    port = free_port()
    proc = _start("--loop", "0.3", port=port)
    tunnel = 'egress_auditor_findings_total{detector="dns_tunneling",severity="high"}'
    try:
        first = _scrape(proc, port)
        deadline = time.monotonic() + 120
        # Two passes done: one dns_tunneling finding per pass (each pass is a new window).
        while _value(later := _scrape(proc, port), tunnel) < 2:
            assert time.monotonic() < deadline, "no second pass"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert _value(later, "egress_auditor_packets_total") > _value(first, "egress_auditor_packets_total")
    assert (_value(later, "egress_auditor_last_packet_timestamp_seconds")
            > _value(first, "egress_auditor_last_packet_timestamp_seconds"))


def test_serve_after_and_loop_need_a_metrics_port():
    for flag in (["--serve-after"], ["--loop", "1"]):
        r = run(sys.executable, "-m", "auditor", "replay", *DEMO_PCAPS, *flag)
        assert r.returncode == 2 and "need --metrics-port" in r.stderr, r.stderr   # usage error


def test_hygiene_on_an_empty_capture(tmp_path):
    """What the dashboards and alerts rely on (issue #15): no *_created series; the process_*
    metrics of the sidecar itself; every labelled counter present from the start, at zero, for
    each of its known label values (an alert on increase() or a panel never meets "no data")."""
    pcap = tmp_path / "empty.pcap"
    pcap.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    out = tmp_path / "empty.prom"
    r = run(sys.executable, "-m", "auditor", "replay", pcap, "--metrics-file", out, "--quiet")
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    _promtool_check_metrics(text)
    assert "_created" not in text
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_start_time_seconds"):
        assert re.search(rf"^{name} \S+$", text, re.M), name

    def values(family: str, label: str) -> set[str]:
        found = re.findall(rf'^egress_auditor_{family}\{{[^}}]*\b{label}="([^"]*)"[^}}]*\}} 0\.0$', text, re.M)
        return set(found)
    assert values("packets_malformed_total", "layer") >= {
        "link", "linktype", "ip", "ipv6", "tcp", "udp", "icmp", "fragment", "tunnel", "dns", "tls", "http", "quic",
        "socks", "timestamp"}
    assert values("table_evictions_total", "table") >= {
        "flows", "dns_cache", "dns_pending", "fragments", "reassembly", "detector_state", "attribution"}
    assert values("findings_total", "detector") >= {
        "dns_tunneling", "direct_ip", "dns_resolver_bypass", "encrypted_dns", "sni_mismatch", "bulk_upload",
        "sni_unresolved", "exfil_service", "conflicting_retransmission"}
    assert values("violations_total", "reason") >= {
        "no_matching_rule", "fqdn_needs_sni_or_host", "fqdn_port_not_supported", "storage_requires_private_endpoint",
        "service_tag_deny"}
    assert values("egress_bytes_total", "verdict") and values("dns_responses_total", "rcode")
    for gauge in ("config_last_reload_successful", "config_last_reload_success_timestamp_seconds", "active_flows"):
        assert re.search(rf"^egress_auditor_{gauge} \S+$", text, re.M), gauge
