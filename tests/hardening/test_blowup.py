"""Blow-up and bad files: buffers bounded in bytes, impossible timestamps skipped, outputs that
are not regular files refused, and a metrics endpoint that idle clients cannot exhaust."""
from __future__ import annotations

import base64
import datetime
import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from scapy.layers.inet import IP, TCP
from scapy.packet import Raw

from auditor import cli
from auditor.errors import OutputError, SettingsError
from auditor.settings import Settings
from auditor.sinks import exporter, textfile
from auditor.sinks.collector import registry_for
from auditor.sinks.metrics import Metrics
from auditor.sinks.web_config import WebConfig
from auditor.telemetry import Telemetry
from auditor.track.streams import StreamPrefix
from tests.hardening.crafted import NODE, SERVER, Conn, flows_to, hello, write
from tests.hardening.crafted import run as audit_crafted
from tests.util import frames, run


def _out_of_order_flows(n_flows: int, segments: int, size: int) -> list:
    packets = []
    for f in range(n_flows):
        c = Conn(server=f"93.184.{f // 250}.{f % 250 + 1}", sport=30000 + f).handshake()
        # The first segment never comes: everything after it waits out of order.
        for i in range(1, segments + 1):
            packets_seq = c.cseq + i * size
            c.packets.append(IP(src=NODE, dst=c.s) / TCP(sport=c.sp, dport=c.dp, flags="PA",
                                                         seq=packets_seq) / Raw(b"z" * size))
        packets += c.packets
    return packets


def test_reassembly_is_bounded_per_flow_and_in_total():
    s = Settings(max_reassembly_bytes=256 * 1024)
    pipe, _ = run(_out_of_order_flows(40, 16, 8000), max_reassembly_bytes=s.max_reassembly_bytes)
    assert pipe.tracker.budget.held == 0                    # every byte given back at flow end
    assert pipe.telemetry.evictions["reassembly"] > 0
    one = StreamPrefix(cap=65536, isn=0)
    for i in range(1, 17):
        one.add(1 + i * 60_000, b"q" * 60_000)
    assert one.held <= 65536                                # one flow: at most its cap


def test_the_budget_is_never_exceeded_while_flows_are_open():
    pipe, _ = run([], max_reassembly_bytes=64 * 1024)
    peak = 0
    for fr in frames(_out_of_order_flows(20, 8, 4000)):
        pipe.feed([fr])
        peak = max(peak, pipe.tracker.budget.held)
    pipe.close()
    assert 0 < peak <= 64 * 1024


def _pcapng_with_timestamps(path, stamps, tsoffset: int = 0):
    def block(btype, body):
        body += b"\x00" * (-len(body) % 4)
        n = 12 + len(body)
        return struct.pack("<II", btype, n) + body + struct.pack("<I", n)
    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    opts = struct.pack("<HHq", 14, 8, tsoffset) if tsoffset else b""
    idb = block(1, struct.pack("<HHI", 1, 0, 65535) + opts + (struct.pack("<HH", 0, 0) if opts else b""))
    pkt = bytes.fromhex("ffffffffffff000000000001" "0800") + bytes(
        IP(src=NODE, dst=SERVER) / TCP(sport=40000, dport=443, flags="S"))
    epbs = b"".join(block(6, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(pkt), len(pkt)) + pkt)
                    for ts in stamps)
    path.write_bytes(shb + idb + epbs)
    return path


def _hello_with(sni: bytes, alpn: list[bytes]) -> bytes:
    """A TLS 1.2 ClientHello record of any size: `sni` and the ALPN list as given."""
    def vec(b: bytes, n: int) -> bytes:
        return len(b).to_bytes(n, "big") + b
    exts = b"\x00\x00" + vec(vec(b"\x00" + vec(sni, 2), 2), 2)
    exts += b"\x00\x10" + vec(vec(b"".join(vec(p, 1) for p in alpn), 2), 2)
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + vec(exts, 2)
    hs = b"\x01" + vec(body, 3)
    return b"".join(b"\x16\x03\x01" + vec(hs[i:i + 16384], 2) for i in range(0, len(hs), 16384))


@pytest.mark.parametrize("sni, alpn", [
    (b"\xff" * 30_000, [b"h2"]),                       # 120,000 characters of escapes
    (b"files.example", [b"\xff"] * 15_000),            # 15,000 ALPN values of 4 characters
    (b"files.example", [b"\xfe" * 255, b"h2"]),         # one long protocol
], ids=["long-sni", "many-protocols", "long-protocol"])
def test_a_hello_s_names_and_protocols_are_kept_in_bounded_text(tmp_path, sni, alpn):
    """What a flow keeps of its hello is bounded whatever the hello lists: a name longer than
    any valid one is cut to MAX_NAME_TEXT characters and an ellipsis (it names nothing either
    way), the ALPN list to MAX_PROTOCOLS values of at most MAX_PROTOCOL_TEXT characters."""
    from auditor.decode import text
    c = Conn().handshake().send(_hello_with(sni, alpn)).ack().close()
    (flow,) = flows_to(audit_crafted(tmp_path, c.packets), SERVER)
    server_name = flow["tls"]["client"]["server_name"]
    assert len(server_name) <= text.MAX_NAME_TEXT + 1
    assert len(flow["tls"]["next_protocol"]) <= text.MAX_PROTOCOL_TEXT + 1
    if len(sni) > 253:
        assert server_name.endswith(text.CUT) and flow["destination"].get("domain") is None
        assert flow["egress_auditor"]["invalid_name"] == server_name
    else:
        assert server_name == sni.decode() == flow["destination"]["domain"]
    from auditor.events import FlowEnded
    _, rec = run(c.packets, node_networks=["10.0.0.0/8"])
    (tracked,) = [e.flow for e in rec.of(FlowEnded) if e.flow.server_ip == SERVER]
    assert len(tracked.sni) <= text.MAX_NAME_TEXT + 1
    assert 1 <= len(tracked.alpn) <= text.MAX_PROTOCOLS
    assert max(map(len, tracked.alpn)) <= text.MAX_PROTOCOL_TEXT + 1


def test_clipping_never_makes_a_name_valid():
    """Cut text ends in an ellipsis: no host name, Host value or address can hold one."""
    from auditor import hostnames
    from auditor.decode.text import MAX_NAME_TEXT, clipped
    for long in ("a" * 400, "a." * 200, "a.com:" + "0" * 400, "[::1]:" + "8" * 400,
                 "x" * (MAX_NAME_TEXT - 1) + ".com"):
        cut = clipped(long)
        assert hostnames.wire_host(cut) is None and hostnames.http_host(cut) is None
    assert clipped("a" * MAX_NAME_TEXT) == "a" * MAX_NAME_TEXT


@pytest.mark.parametrize("stamps,tsoffset", [([1_700_000_000_000_000, (1 << 64) - 1, 1_700_000_001_000_000], 0),
                                             ([1_700_000_000_000_000], 1 << 62),
                                             ([1_700_000_000_000_000], -(1 << 62))])
def test_out_of_range_pcapng_timestamps_are_skipped_with_a_warning(tmp_path, stamps, tsoffset):
    pcap = _pcapng_with_timestamps(tmp_path / "ts.pcapng", stamps, tsoffset)
    prom = tmp_path / "m.prom"
    proc = subprocess.run([sys.executable, "-m", "auditor", "replay", str(pcap), "--metrics-file", str(prom)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "ts.pcapng: packet" in proc.stderr and "timestamp out of range" in proc.stderr
    assert "egress-auditor summary" in proc.stdout
    bad = sum(1 for t in stamps if tsoffset or t >= 1 << 63)
    assert f'egress_auditor_packets_malformed_total{{layer="timestamp"}} {float(bad)}' in prom.read_text()


def test_metrics_file_that_is_a_symlink_fifo_or_device_is_refused(tmp_path, capsys):
    target = tmp_path / "precious"
    target.write_text("keep me")
    link = tmp_path / "link.prom"
    link.symlink_to(target)
    fifo = tmp_path / "fifo.prom"
    os.mkfifo(fifo)
    for path in (link, fifo, "/dev/full", "/dev/null"):
        with pytest.raises(OutputError, match="cannot write metrics"):
            textfile.check(__import__("pathlib").Path(path))
    assert target.read_text() == "keep me" and link.is_symlink()
    pcap = write(tmp_path / "x.pcap", Conn().handshake().close().packets)
    assert cli.main(["replay", str(pcap), "--metrics-file", str(link), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "a symlink" in err and target.read_text() == "keep me"


def test_a_failed_metrics_write_still_prints_the_summary_and_keeps_fail_on(tmp_path, monkeypatch, capsys):
    pcap = write(tmp_path / "x.pcap", Conn().handshake().send(hello(b"evil.example")).close().packets)
    policy = tmp_path / "p.yaml"
    policy.write_text("managed_network: {isolation_mode: allow_only_approved_outbound}\n")

    def broken(path, registry):
        raise OutputError(f"{path}: cannot write metrics: No space left on device")
    monkeypatch.setattr(textfile, "write", broken)
    code = cli.main(["replay", str(pcap), "--policy", str(policy), "--node-network", "10.0.0.0/8",
                     "--metrics-file", str(tmp_path / "m.prom"), "--fail-on", "denied"])
    out = capsys.readouterr()
    assert code == 3 and "egress-auditor summary" in out.out
    assert "No space left on device" in out.err and "--fail-on denied: 1 flow(s) denied" in out.err


# -- the metrics endpoint ------------------------------------------------------------------

def _registry():
    t = Telemetry()
    return registry_for(Metrics(), t, process=False)


def _threads() -> int:
    return threading.active_count()


def test_idle_connections_cost_a_bounded_number_of_threads_and_time_out(monkeypatch):
    monkeypatch.setattr(exporter, "READ_TIMEOUT", 2.0)
    monkeypatch.setattr(exporter._Handler, "timeout", 2.0)
    server = exporter.serve(_registry(), "127.0.0.1", 0)
    port = server.server_address[1]
    before = _threads()
    idle = []
    try:
        peak = 0
        for _ in range(300):
            idle.append(socket.create_connection(("127.0.0.1", port)))
            peak = max(peak, _threads())
        # Wait until the server has dealt with all 300 (each was served or refused); idle ones
        # timing out meanwhile free slots, so how many were refused depends on the machine's
        # speed — what may not happen is a thread per connection.
        while server.served + server.rejected < 300:
            peak = max(peak, _threads())
            time.sleep(0.01)
        assert peak <= before + exporter.MAX_CONNECTIONS + 1
        assert server.rejected > 0 and server.served >= exporter.MAX_CONNECTIONS
        # the idle ones time out, and a real scrape then works
        deadline = time.monotonic() + 60
        while True:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read()
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert b"egress_auditor_packets_total" in body
    finally:
        for s in idle:
            s.close()
        server.shutdown()


def _cert(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))


def test_tls_and_basic_auth_from_an_exporter_toolkit_web_config(tmp_path):
    import bcrypt
    _cert(tmp_path)
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$")
    cfg = tmp_path / "web.yml"
    cfg.write_text(f"tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n"
                   f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    server = exporter.serve(_registry(), "127.0.0.1", 0, WebConfig(cfg))
    port = server.server_address[1]
    ctx = ssl.create_default_context(cafile=str(tmp_path / "tls.crt"))
    url = f"https://localhost:{port}/metrics"

    def get(auth: bytes | None):
        req = urllib.request.Request(url)
        if auth:
            req.add_header("Authorization", "Basic " + base64.b64encode(auth).decode())
        try:
            return urllib.request.urlopen(req, context=ctx, timeout=30).status
        except urllib.error.HTTPError as e:
            return e.code
    try:
        assert get(b"prometheus:s3cret") == 200
        assert get(None) == 401 and get(b"prometheus:wrong") == 401 and get(b"nobody:s3cret") == 401
        with pytest.raises((urllib.error.URLError, ConnectionError)):   # no plain HTTP
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30)
    finally:
        server.shutdown()


def test_bad_web_configs_are_one_line_errors(tmp_path):
    for text, needle in (("nope: 1\n", "nope: unknown key"),
                         ("basic_auth_users: {a: plain}\n", "not a bcrypt hash"),
                         ("tls_server_config: {cert_file: missing.crt, key_file: k}\n", "no such file"),
                         ("tls_server_config: {client_allowed_sans: [x]}\n", "cert_file")):
        cfg = tmp_path / "w.yml"
        cfg.write_text(text)
        with pytest.raises(SettingsError, match=needle):
            WebConfig(cfg)
