"""`run` in a real two-host network made of namespaces: the node (10.203.7.1) and a remote
(10.203.7.2) joined by a veth pair. The sidecar captures the node's veth and leaves out only its
own metrics socket: a 4 MiB upload from the node to the *remote's* port 19807 (the sidecar's
default metrics port) is audited like any other flow."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .loopback import wait_for

assert os.geteuid() == 0, "the network-namespace tests need root"

NODE_NS, REMOTE_NS = f"ea-node-{os.getpid()}", f"ea-remote-{os.getpid()}"
NODE_IF, REMOTE_IF = f"ean{os.getpid() % 10000}", f"ear{os.getpid() % 10000}"
NODE_IP, REMOTE_IP = "10.203.7.1", "10.203.7.2"
PORT = 19807
ROOT = Path(__file__).resolve().parents[2]


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


def in_ns(ns: str, *cmd: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", ns, *cmd], cwd=ROOT, **kw)


@pytest.fixture(scope="module")
def netns():
    sh("ip", "netns", "add", NODE_NS)
    sh("ip", "netns", "add", REMOTE_NS)
    try:
        sh("ip", "link", "add", NODE_IF, "type", "veth", "peer", "name", REMOTE_IF)
        sh("ip", "link", "set", NODE_IF, "netns", NODE_NS)
        sh("ip", "link", "set", REMOTE_IF, "netns", REMOTE_NS)
        for ns, ifname, ip in ((NODE_NS, NODE_IF, NODE_IP), (REMOTE_NS, REMOTE_IF, REMOTE_IP)):
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ip}/24", "dev", ifname)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", ifname, "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield
    finally:
        for ns in (NODE_NS, REMOTE_NS):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=60)


SINK = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(4); print("ready", flush=True)
while True:
    c, _ = s.accept()
    while c.recv(65536): pass
    c.close()
"""
UPLOAD = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60) as c:
    c.sendall(b"x" * (4 << 20))
    c.shutdown(socket.SHUT_WR)
    c.recv(1)
"""


def test_tcp_to_the_metrics_port_of_another_host_is_captured(netns, tmp_path):
    events = tmp_path / "events.jsonl"
    sink = in_ns(REMOTE_NS, sys.executable, "-c", SINK, REMOTE_IP, str(PORT),
                 stdout=subprocess.PIPE, text=True)
    car = in_ns(NODE_NS, sys.executable, "-m", "auditor", "run", "--interface", NODE_IF,
                "--node-network", f"{NODE_IP}/32", "--events", str(events), "--no-dns-events",
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                env={k: v for k, v in os.environ.items() if not k.startswith("EGRESS_AUDITOR_")})
    try:
        assert sink.stdout.readline().strip() == "ready"
        line = car.stderr.readline()
        assert "capturing on" in line, line + car.stderr.read() if car.poll() is not None else line
        up = in_ns(NODE_NS, sys.executable, "-c", UPLOAD, REMOTE_IP, str(PORT))
        assert up.wait(120) == 0
        car.send_signal(signal.SIGTERM)
        err = car.communicate(timeout=120)[1]
        assert car.returncode == 0, err
    finally:
        for p in (car, sink):
            if p.poll() is None:
                p.kill()
                p.wait(30)

    def uploads():
        docs = [json.loads(x) for x in events.read_text().splitlines()] if events.exists() else []
        return [d for d in docs if d["event"]["action"] == "flow"
                and d["destination"]["ip"] == REMOTE_IP and d["destination"]["port"] == PORT] or None
    (flow,) = wait_for(uploads, 30, "the upload's flow event")
    assert flow["source"]["ip"] == NODE_IP and flow["source"]["bytes"] >= 4 << 20
