"""`egress-auditor replay` as a user runs it: exit codes, one-line errors, events, metrics."""
import json
import subprocess
import sys

import pytest

from auditor import schema
from tests.conftest import REAL_PCAPS

CLI = [sys.executable, "-m", "auditor"]
ALL = ["--node-network", "0.0.0.0/0", "--node-network", "::/0"]


def cli(*args, **kw):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=120, **kw)


def tshark_count(path):
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.number"],
                         capture_output=True, text=True)
    return len(out.stdout.split())


def test_replay_writes_valid_events_and_metrics(tmp_path):
    pcap = REAL_PCAPS / "mixed-windows-host-dns-tls-http.pcap"
    events, metrics = tmp_path / "ev.jsonl", tmp_path / "m.prom"
    r = cli("replay", pcap, "--events", events, "--metrics-file", metrics, *ALL)
    assert r.returncode == 0, r.stderr
    assert "egress-auditor summary" in r.stdout
    docs = [json.loads(line) for line in events.read_text().splitlines()]
    for doc in docs:
        schema.validate(doc)
    flows = [d for d in docs if d["event"]["action"] == "flow"]
    assert flows and all(d["network"]["direction"] == "egress" for d in flows)
    text = metrics.read_text()
    assert f"egress_auditor_packets_total {float(tshark_count(pcap))}" in text
    flows_total = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                      if line.startswith("egress_auditor_flows_total{"))
    assert flows_total == len(flows)


@pytest.mark.parametrize("name", ["truncated-file-cut-mid-packet-http.pcap", "corrupt-fuzzed-record-header.pcap"])
def test_damaged_capture_warns_once_and_exits_zero(name, tmp_path):
    r = cli("replay", REAL_PCAPS / name, "--events", tmp_path / "ev.jsonl", "--quiet", *ALL)
    assert r.returncode == 0
    warnings = [line for line in r.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "offset" in warnings[0] and name in warnings[0]


@pytest.mark.parametrize("make, expect", [
    (lambda d: d / "missing.pcap", "missing.pcap"),
    (lambda d: (d / "notes.pcap").write_text("not a capture") and d / "notes.pcap", "notes.pcap"),
])
def test_bad_capture_is_one_line_exit_1(tmp_path, make, expect):
    r = cli("replay", make(tmp_path))
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and expect in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_config_names_file_and_field(tmp_path):
    cfg = tmp_path / "auditor.yaml"
    cfg.write_text("max_flows: lots\n")
    r = cli("replay", REAL_PCAPS / "dns-udp-google-a-aaaa-mx.pcap", "--config", cfg)
    assert r.returncode == 1 and "auditor.yaml" in r.stderr and "max_flows" in r.stderr
    assert "Traceback" not in r.stderr


def test_environment_overrides_config_file(tmp_path):
    cfg = tmp_path / "auditor.yaml"
    cfg.write_text("max_flows: lots\n")
    r = cli("replay", REAL_PCAPS / "dns-udp-google-a-aaaa-mx.pcap", "--config", cfg, "--quiet",
            env={"EGRESS_AUDITOR_MAX_FLOWS": "5000", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr


def test_events_to_stdout_keeps_summary_off_stdout():
    r = cli("replay", REAL_PCAPS / "tls13-curl-with-dns.pcap", "--events", "-", *ALL)
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines and all(json.loads(line) for line in lines)
    assert "summary" in r.stderr


def test_schema_command_prints_json_schema():
    r = cli("schema")
    s = json.loads(r.stdout)
    assert r.returncode == 0 and "FlowEvent" in s["$defs"] and "DnsEvent" in s["$defs"]


def test_progress_line_on_a_terminal(tmp_path):
    """On a TTY a long replay shows a self-rewriting progress line, then clears it."""
    import os
    import pty
    pcap = tmp_path / "mix.pcap"
    subprocess.run([sys.executable, "bench/gen_mix.py", "--packets", "20000", "--out", str(pcap)],
                   check=True, capture_output=True, cwd=REAL_PCAPS.parent.parent)
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([*CLI, "replay", str(pcap), "--node-network", "10.0.0.0/8"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal)
    os.close(terminal)
    out, _ = proc.communicate(timeout=120)
    seen = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        seen += chunk
    os.close(controller)
    assert proc.returncode == 0, seen.decode(errors="replace")
    assert b"Traceback" not in seen
    assert b"\r  mix.pcap (1/1)" in seen and b"packets/s" not in seen  # the line, not the summary
    assert b"egress-auditor summary" in out


def test_the_events_file_is_appended_to_never_truncated(tmp_path):
    """A sidecar that restarts (compose `restart: unless-stopped`) keeps its history."""
    import json
    from auditor.cli import main
    from pathlib import Path
    demo = Path(__file__).resolve().parents[1] / "pcaps" / "demo" / "01-pip-install.pcap"
    out = tmp_path / "events.jsonl"
    out.write_text('{"earlier": true}\n')
    assert main(["replay", str(demo), "--events", str(out), "--quiet"]) == 0
    once = out.read_text().splitlines()
    assert main(["replay", str(demo), "--events", str(out), "--quiet"]) == 0
    twice = out.read_text().splitlines()
    assert twice[0] == '{"earlier": true}' and len(twice) == 2 * len(once) - 1
    ids = [json.loads(x)["event"]["id"] for x in twice[1:]]
    assert len(set(ids)) == len(ids)                     # unique across the two runs


def test_every_option_says_its_default():
    import argparse
    from auditor.cli import build_parser
    missing = []

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, path + [name])
            elif action.option_strings and action.dest not in ("help", "version") \
                    and "default" not in (action.help or ""):
                missing.append(f"{' '.join(path)} {action.option_strings[0]}")
    walk(build_parser(), [])
    assert not missing, missing
