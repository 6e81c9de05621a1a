"""`egress-auditor run --interface lo`, for real: a subprocess capturing the loopback
interface while these tests make real DNS lookups, TLS ClientHellos and HTTP requests
against servers on 127.0.0.x, scrape its metrics over HTTP and signal it.

On loopback the node is 127.0.0.1 (the only --node-network) and "the internet" is the rest of
127.0.0.0/8. No service tag covers those addresses, so under the approved-only test policy
(SPEC §6) a flow is allowed only as `platform` (DNS to the configured resolver) or by the
FQDN rule through the SNI/Host the client presents; everything else is `no_matching_rule`.

Needs root or CAP_NET_RAW (as the live-capture tests in tests/sources do) and libpcap for
the kernel BPF filter. Every sidecar is killed in the end, whatever happens.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .loopback import (CLIENT_IP, DnsResponder, Listener, Sidecar, free_port, http_get, metric,
                       resolve, tcp_payload, term, tls_hello, wait_for)

HERE = Path(__file__).resolve().parent
POLICY = HERE / "policy-allowed.yaml"

ALLOWED, ALLOWED_IP = "allowed.example.com", "127.0.0.10"
DENIED, DENIED_IP = "denied.example.net", "127.0.0.20"
PLAIN, PLAIN_IP = "plain.example.org", "127.0.0.30"
RECORDS = {ALLOWED: ALLOWED_IP, DENIED: DENIED_IP, PLAIN: PLAIN_IP}

# Live capture needs root (or CAP_NET_RAW): without it these tests fail, never skip.
assert os.geteuid() == 0, "the live sidecar tests capture on lo: run them as root"


@pytest.fixture(scope="module")
def net():
    """The loopback "internet": a resolver and the servers its answers point at."""
    try:
        resolver = DnsResponder("127.0.0.53", RECORDS)
    except OSError:   # a local systemd-resolved owns 127.0.0.53:53; any 127/8 address will do
        resolver = DnsResponder("127.0.0.153", RECORDS)
    servers = [Listener(ALLOWED_IP, 443), Listener(DENIED_IP, 443),
               Listener(ALLOWED_IP, 8443, hold=True), Listener(PLAIN_IP, 80, hold=True)]
    try:
        yield resolver
    finally:
        for s in servers:
            s.close()
        resolver.close()


def start(tmp_path: Path, resolver: DnsResponder, policy: Path = POLICY, *extra: str,
          env: dict[str, str] | None = None) -> Sidecar:
    config = tmp_path / "auditor.yaml"
    # On lo the "remote hosts" are loopback addresses: judge them as egress.
    config.write_text(f"dns_servers: [{resolver.ip}]\nmetrics_listen: '127.0.0.1:19807'\n"
                      "judge_loopback: true\n")
    port = free_port()
    # Only our own servers: other tests on this host also talk over lo, and the flow count
    # below must be exact.
    bpf = " or ".join(f"host {ip}" for ip in (resolver.ip, ALLOWED_IP, DENIED_IP, PLAIN_IP))
    sidecar = Sidecar(["--interface", "lo", "--metrics-port", str(port),
                       "--events", str(tmp_path / "events.jsonl"), "--policy", str(policy),
                       "--node-network", f"{CLIENT_IP}/32", "--config", str(config),
                       "--bpf", bpf, *extra], metrics_port=port, env=env)
    try:
        sidecar.wait_ready()
    except BaseException:
        sidecar.close()
        raise
    return sidecar


def events(tmp_path: Path) -> list[dict]:
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def of(evs: list[dict], action: str, **where) -> list[dict]:
    def get(doc, dotted):
        for part in dotted.split("."):
            doc = doc.get(part, {}) if isinstance(doc, dict) else {}
        return doc
    return [e for e in evs if e["event"]["action"] == action
            and all(get(e, k.replace("__", ".")) == v for k, v in where.items())]


def scrape_when(sidecar: Sidecar, what: str, ok, timeout: float = 90.0) -> str:
    """Scrape /metrics until `ok(text)` holds."""
    def attempt():
        text = sidecar.get("/metrics")
        return text if ok(text) else None
    return wait_for(attempt, timeout, what, interval=0.2)


def quiet_metrics(sidecar: Sidecar) -> str:
    """Scrape until two scrapes at least one idle tick apart agree on packets_total: nothing
    is in flight or unread, so the next SIGTERM finds exactly what this scrape shows."""
    last = [None]

    def settled():
        text = sidecar.get("/metrics")
        n = metric(text, "egress_auditor_packets_total")
        same = n == last[0]
        last[0] = n
        return text if same else None
    return wait_for(settled, 20, "the packet count to settle", interval=0.7)


# -- 1. the whole sidecar ------------------------------------------------------------------
def test_run_audits_real_loopback_traffic_and_flushes_every_flow_on_sigterm(tmp_path, net):
    sidecar = start(tmp_path, net)
    held = []
    try:
        landing = sidecar.get("/")
        assert 'href="/metrics"' in landing

        # Real lookups from the node's address, answered by the loopback resolver.
        assert resolve(net.ip, ALLOWED) == ALLOWED_IP
        assert resolve(net.ip, DENIED) == DENIED_IP
        assert resolve(net.ip, PLAIN) == PLAIN_IP
        allowed_port = tls_hello(ALLOWED_IP, ALLOWED)
        denied_port = tls_hello(DENIED_IP, DENIED)
        held.append(http_get(PLAIN_IP, PLAIN))           # left open: flushed at SIGTERM
        plain_port = held[0].getsockname()[1]

        text = scrape_when(sidecar, "2 violations and 3 DNS responses", lambda t: (
            (metric(t, "egress_auditor_violations_total", reason="no_matching_rule") or 0) >= 2
            and (metric(t, "egress_auditor_dns_responses_total", qtype="A", rcode="NOERROR") or 0) >= 3))
        assert metric(text, "egress_auditor_packets_total") > 0
        assert metric(text, "egress_auditor_active_flows") is not None
        assert metric(text, "egress_auditor_dns_cache_entries") >= 3
        dropped = metric(text, "egress_auditor_capture_dropped_packets_total")
        assert dropped is not None and dropped >= 0 and dropped == int(dropped)
        assert metric(text, "egress_auditor_denied_destinations_total", destination=DENIED) == 1
        assert metric(text, "egress_auditor_policy_info",
                      isolation_mode="allow_only_approved_outbound") == 1
        assert metric(text, "egress_auditor_build_info") == 1

        # Flow conservation. Flows already ended are in flows_total; the rest are in the
        # table (active_flows) and must each become a flow event when SIGTERM flushes them.
        # Metrics and events are both fed by the same FlowEnded events, so comparing the
        # *final* flows_total with the events would prove little (and the endpoint is gone
        # by then); instead: events == flows ended before + flows open at SIGTERM, with the
        # capture quiet in between, and every flow this test opened is there exactly once.
        text = quiet_metrics(sidecar)
        ended_before = metric(text, "egress_auditor_flows_total") or 0
        open_at_term = metric(text, "egress_auditor_active_flows")
        assert open_at_term >= 1                          # at least the held HTTP flow
        assert term(sidecar) == 0, sidecar.stderr
    finally:
        for s in held:
            s.close()
        sidecar.close()

    evs = events(tmp_path)
    flows = of(evs, "flow")
    assert len(flows) == ended_before + open_at_term == 6, [
        (f["destination"]["ip"], f["destination"]["port"]) for f in flows]
    mine = {(f["source"]["port"], f["destination"]["ip"], f["destination"]["port"]) for f in flows}
    assert len(mine) == len(flows)                        # no flow twice
    assert {(allowed_port, ALLOWED_IP, 443), (denied_port, DENIED_IP, 443),
            (plain_port, PLAIN_IP, 80)} <= mine
    assert all(f["network"]["direction"] == "egress" and f["source"]["ip"] == CLIENT_IP for f in flows)
    assert f"egress flows   {len(flows)}" in sidecar.stderr    # the shutdown summary agrees

    (ok,) = of(flows, "flow", tls__client__server_name=ALLOWED)
    assert ok["destination"]["ip"] == ALLOWED_IP and ok["destination"]["domain"] == ALLOWED
    assert ok["event"]["type"] == ["connection", "end", "allowed"]
    assert (ok["egress_auditor"]["verdict"], ok["egress_auditor"]["reason"]) == ("allowed", "fqdn")
    assert ok["rule"] == {"name": "allowed-site", "ruleset": "live-test"}   # the policy's name
    assert ok["egress_auditor"]["isolation_mode"] == "allow_only_approved_outbound"
    assert ok["network"]["protocol"] == "tls" and ok["egress_auditor"]["name_source"] == "sni"
    assert ok["source"]["bytes"] > 517 and ok["source"]["packets"] >= 3   # the ClientHello went out

    (bad,) = of(flows, "flow", tls__client__server_name=DENIED)
    assert bad["event"]["type"] == ["connection", "end", "denied"]
    assert (bad["egress_auditor"]["verdict"], bad["egress_auditor"]["reason"]) == ("denied", "no_matching_rule")

    (web,) = of(flows, "flow", url__domain=PLAIN)
    assert web["network"]["protocol"] == "http" and web["egress_auditor"]["name_source"] == "http_host"
    assert web["egress_auditor"]["reason"] == "no_matching_rule"

    dns_flows = of(flows, "flow", destination__ip=net.ip, destination__port=53)
    assert len(dns_flows) == 3 and all(f["egress_auditor"]["reason"] == "platform" for f in dns_flows)

    violations = of(evs, "violation")
    assert {v["destination"].get("domain") for v in violations} == {DENIED, PLAIN}
    (v,) = of(violations, "violation", destination__domain=DENIED)
    assert v["event"]["kind"] == "alert" and v["egress_auditor"]["reason"] == "no_matching_rule"
    assert v["tls"]["client"]["server_name"] == DENIED and "bytes" not in v["source"]

    answers = {e["dns"]["question"]["name"]: e["dns"] for e in of(evs, "dns")}
    assert set(answers) == {ALLOWED, DENIED, PLAIN}
    for name, ip in RECORDS.items():
        d = answers[name]
        assert d["response_code"] == "NOERROR" and d["question"]["type"] == "A"
        assert d["answers"] == [{"name": name, "type": "A", "data": ip, "ttl": 300}]
        assert d["resolved_ip"] == [ip]


# -- 2. SIGHUP -----------------------------------------------------------------------------
def _policy(allowed_names: list[str]) -> str:
    rules = "".join(f"    - name: rule-{i}\n      type: fqdn\n      destination: {n}\n"
                    for i, n in enumerate(allowed_names))
    return ("location: eastus\nmanaged_network:\n  isolation_mode: allow_only_approved_outbound\n"
            f"  outbound_rules:\n{rules}")


def _replace(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)      # the sidecar never reads a half-written file


def test_sighup_reloads_policy_keeps_dns_cache_and_survives_a_broken_policy(tmp_path, net):
    policy = tmp_path / "policy.yaml"
    policy.write_text(_policy(["unrelated.example.com"]))
    sidecar = start(tmp_path, net, policy)
    held = []
    try:
        assert resolve(net.ip, ALLOWED) == ALLOWED_IP      # cached before the reload
        before = tls_hello(ALLOWED_IP, ALLOWED)
        scrape_when(sidecar, "the first flow to be denied", lambda t: (
            metric(t, "egress_auditor_violations_total", reason="no_matching_rule") or 0) >= 1)

        _replace(policy, _policy(["unrelated.example.com", ALLOWED]))
        mark = len(sidecar.stderr_lines)
        sidecar.signal(signal.SIGHUP)
        line = sidecar.wait_stderr("SIGHUP: policy reloaded", start=mark)
        assert "allow_only_approved_outbound" in line
        text = sidecar.get("/metrics")
        sha = hashlib.sha256(policy.read_bytes()).hexdigest()
        assert metric(text, "egress_auditor_policy_info", policy_sha256=sha) == 1
        assert metric(text, "egress_auditor_policy_rules", type="fqdn") == 2
        assert metric(text, "egress_auditor_dns_cache_entries") >= 1

        after = tls_hello(ALLOWED_IP, ALLOWED)
        held.append(tcp_payload(ALLOWED_IP, 8443))         # no SNI, no new lookup
        no_sni = held[0].getsockname()[1]

        # A broken policy: the old one stays in force and the sidecar stays up.
        _replace(policy, "managed_network:\n  isolation_mode: sometimes\n")
        mark = len(sidecar.stderr_lines)
        sidecar.signal(signal.SIGHUP)
        line = sidecar.wait_stderr("SIGHUP: keeping the previous policy", start=mark)
        assert str(policy) in line
        assert sidecar.proc.poll() is None
        text = sidecar.get("/metrics")
        assert metric(text, "egress_auditor_policy_info", policy_sha256=sha) == 1
        still = tls_hello(ALLOWED_IP, ALLOWED)
        scrape_when(sidecar, "the 8443 flow to be judged", lambda t: (
            metric(t, "egress_auditor_violations_total", reason="fqdn_port_not_supported") or 0) >= 1)
        quiet_metrics(sidecar)
        assert term(sidecar) == 0, sidecar.stderr
    finally:
        for s in held:
            s.close()
        sidecar.close()

    flows = {f["source"]["port"]: f for f in of(events(tmp_path), "flow")}
    verdict = {p: (flows[p]["egress_auditor"]["verdict"], flows[p]["egress_auditor"]["reason"])
               for p in (before, after, still, no_sni)}
    assert verdict[before] == ("denied", "no_matching_rule")
    assert verdict[after] == verdict[still] == ("allowed", "fqdn")
    assert flows[after]["rule"]["name"] == flows[still]["rule"]["name"] == "rule-1"
    # Named from the DNS answer seen before the reload: the name cache survived it. The FQDN
    # rule now names it, but not on port 8443 (SPEC §6 step 7).
    dns_named = flows[no_sni]
    assert dns_named["destination"]["domain"] == ALLOWED
    assert dns_named["egress_auditor"]["name_source"] == "dns"
    assert verdict[no_sni] == ("denied", "fqdn_port_not_supported")


# -- the events file: appended to, reopened for logrotate -----------------------------------
def test_events_are_appended_and_reopened_on_sigusr1_and_sighup(tmp_path, net):
    log = tmp_path / "events.jsonl"
    log.write_text('{"kept": "from an earlier run"}\n')
    sidecar = start(tmp_path, net)
    held = []

    def violation_in(path: Path, port: int) -> bool:
        if not path.exists():
            return False
        docs = [json.loads(x) for x in path.read_text().splitlines()]
        return any(d.get("event", {}).get("action") == "violation" and d["source"]["port"] == port
                   for d in docs)

    try:
        held.append(http_get(PLAIN_IP, PLAIN))
        first = held[-1].getsockname()[1]
        wait_for(lambda: violation_in(log, first), 90, "the first violation")
        log.rename(tmp_path / "events.jsonl.1")             # logrotate moves the file away ...
        sidecar.signal(signal.SIGUSR1)                       # ... and tells the sidecar
        wait_for(log.exists, 90, "a new events file after SIGUSR1")
        held.append(http_get(PLAIN_IP, PLAIN))
        second = held[-1].getsockname()[1]
        wait_for(lambda: violation_in(log, second), 90, "the second violation, in the new file")
        log.rename(tmp_path / "events.jsonl.2")
        mark = len(sidecar.stderr_lines)
        sidecar.signal(signal.SIGHUP)                        # reload reopens too
        sidecar.wait_stderr("SIGHUP: policy reloaded", start=mark)
        wait_for(log.exists, 90, "a new events file after SIGHUP")
        held.append(http_get(PLAIN_IP, PLAIN))
        third = held[-1].getsockname()[1]
        wait_for(lambda: violation_in(log, third), 90, "the third violation, in the newest file")
        assert term(sidecar) == 0, sidecar.stderr
    finally:
        for sock in held:
            sock.close()
        sidecar.close()
    rotated = (tmp_path / "events.jsonl.1").read_text().splitlines()
    assert rotated[0] == '{"kept": "from an earlier run"}'       # appended, never truncated
    assert violation_in(tmp_path / "events.jsonl.1", first) and not violation_in(tmp_path / "events.jsonl.1", second)
    assert violation_in(tmp_path / "events.jsonl.2", second)
    # SIGTERM flushed every open flow into the newest file: flow events == flows_total.
    flows = [json.loads(x) for x in log.read_text().splitlines() if '"action":"flow"' in x]
    assert {f["source"]["port"] for f in flows} >= {first, second, third}


# -- attribution: which process opened the flow ---------------------------------------------
CLIENT = f"""
import socket, sys
s = socket.socket(); s.settimeout(30); s.bind(({CLIENT_IP!r}, 0)); s.connect(({PLAIN_IP!r}, 80))
s.sendall(b"GET / HTTP/1.1\\r\\nHost: {PLAIN}\\r\\n\\r\\n")
print(s.getsockname()[1], flush=True)
sys.stdin.readline()
"""


def test_flows_name_the_process_that_opened_them(tmp_path, net):
    sidecar = start(tmp_path, net)
    client = subprocess.Popen([sys.executable, "-c", CLIENT], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        port = int(client.stdout.readline())
        scrape_when(sidecar, "the client's flow to be denied", lambda t: (
            metric(t, "egress_auditor_violations_total", reason="no_matching_rule") or 0) >= 1)
        # The owner is looked up off the capture thread: the client holds its socket until then.
        scrape_when(sidecar, "the client's flow to be attributed", lambda t: (
            metric(t, "egress_auditor_flow_attributions_total", result="known") or 0) >= 1)
        client.stdin.close()
        assert client.wait(60) == 0
        assert term(sidecar) == 0, sidecar.stderr
    finally:
        if client.poll() is None:
            client.kill()
        sidecar.close()
    (flow,) = [f for f in of(events(tmp_path), "flow") if f["source"]["port"] == port]
    assert flow["egress_auditor"]["attribution"] == "known"
    assert flow["process"]["pid"] == client.pid
    assert flow["process"]["executable"] == os.path.realpath(sys.executable)
    assert flow["user"]["id"] == str(os.getuid())
    assert "attribution" in sidecar.stderr and "us per flow" in sidecar.stderr


# The Kubernetes DaemonSet's default: capture only, and its own identity from the downward API.
DOWNWARD_API = {"EGRESS_AUDITOR_OBSERVER_POD_NAME": "egress-auditor-x7k2p",
                "EGRESS_AUDITOR_OBSERVER_POD_NAMESPACE": "egress-auditor",
                "EGRESS_AUDITOR_OBSERVER_NODE_NAME": "aks-gpu-12345678-vmss000003"}
OWNER_FIELDS = ("process", "user", "container")


def test_no_attribution_says_nothing_of_owners_and_keeps_the_observer(tmp_path, net):
    """With --no-attribution the same flow (its process holding the socket throughout) carries
    no process, user, container or pod field, not even `attribution: unknown`: nothing was
    looked up, so nothing is stale or guessed. The auditor's own pod, namespace and node, from
    the downward API, are on every event."""
    sidecar = start(tmp_path, net, POLICY, "--no-attribution", env=DOWNWARD_API)
    client = subprocess.Popen([sys.executable, "-c", CLIENT], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        port = int(client.stdout.readline())
        scrape_when(sidecar, "the client's flow to be denied", lambda t: (
            metric(t, "egress_auditor_violations_total", reason="no_matching_rule") or 0) >= 1)
        client.stdin.close()
        assert client.wait(60) == 0
        text = quiet_metrics(sidecar)          # a lookup, were there one, would be done by now
        assert term(sidecar) == 0, sidecar.stderr
    finally:
        if client.poll() is None:
            client.kill()
        sidecar.close()
    assert metric(text, "egress_auditor_flow_attributions_total", result="known") == 0
    assert metric(text, "egress_auditor_flow_attributions_total", result="unknown") == 0
    assert "egress_auditor_workload_egress_bytes_total{" not in text
    evs = events(tmp_path)
    (flow,) = [f for f in of(evs, "flow") if f["source"]["port"] == port]
    assert of(evs, "violation", source__port=port)
    for e in evs:
        assert not set(OWNER_FIELDS) & set(e), e
        assert "attribution" not in e["egress_auditor"] and "kubernetes" not in e["egress_auditor"], e
        assert e["egress_auditor"]["observer"] == {"pod_name": "egress-auditor-x7k2p",
                                                   "pod_namespace": "egress-auditor",
                                                   "node_name": "aks-gpu-12345678-vmss000003"}
        assert e["observer"]["name"] == "aks-gpu-12345678-vmss000003"
        assert e["observer"]["hostname"] == socket.gethostname()
    assert {e["event"]["action"] for e in evs} >= {"flow", "violation"}
    assert "us per flow" not in sidecar.stderr


# -- 3. SIGINT and a bad interface ----------------------------------------------------------
def test_sigint_exits_130_and_still_flushes_open_flows(tmp_path, net):
    sidecar = start(tmp_path, net)
    held = []
    try:
        held.append(http_get(PLAIN_IP, PLAIN))
        port = held[0].getsockname()[1]
        scrape_when(sidecar, "the HTTP flow to be denied", lambda t: (
            metric(t, "egress_auditor_violations_total", reason="no_matching_rule") or 0) >= 1)
        assert term(sidecar, signal.SIGINT) == 130, sidecar.stderr
    finally:
        for s in held:
            s.close()
        sidecar.close()
    (flow,) = [f for f in of(events(tmp_path), "flow") if f["source"]["port"] == port]
    assert flow["url"]["domain"] == PLAIN and flow["egress_auditor"]["verdict"] == "denied"
    assert "Traceback" not in sidecar.stderr


def test_nonexistent_interface_exits_1_with_one_line_naming_it(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "auditor", "run", "--interface", "nosuch0",
                           "--metrics-port", str(free_port())],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "nosuch0" in lines[0] and lines[0].startswith("egress-auditor: "), proc.stderr
    assert proc.stdout == ""


# -- 4. the kernel's drop counter -------------------------------------------------------------
def _burst(cap, port: int, n: int) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        for _ in range(n):
            u.sendto(b"x" * 1000, (CLIENT_IP, port))
    read = 0
    for frame in cap.frames(0.2):
        if frame is None:
            return read
        read += 1
    return read


@pytest.mark.parametrize("reader", ["ring", "recvmsg"])
def test_kernel_drop_counter_counts_real_drops_and_the_buffer_rides_out_a_burst(reader):
    from auditor.sources.live import RING_BYTES, LiveCapture
    port = free_port()
    ring = RING_BYTES if reader == "ring" else 0
    with LiveCapture("lo", bpf=f"udp dst port {port}", ring_bytes=ring) as cap:
        assert cap.reader.startswith("TPACKET_V3" if ring else "recvmsg"), cap.ring_error
        assert _burst(cap, port, 2000) == 2000              # nothing lost to a small buffer
        assert cap.stats()[1] == 0
    # Force an overflow: the smallest ring (two 1-MiB blocks), or a 4-KiB socket buffer.
    with LiveCapture("lo", bpf=f"udp dst port {port}", ring_bytes=1 if ring else 0) as cap:
        if not ring:
            cap._raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sent = 6000 if ring else 500
        read = _burst(cap, port, sent)
        received, dropped = cap.stats()
        assert 0 < read < sent and dropped > 0
        assert received >= read + dropped
