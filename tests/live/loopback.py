"""Real traffic on the loopback interface for the live-sidecar tests.

A dnspython DNS responder, TCP listeners that read what a client sends, a TLS client whose
handshake only has to get its ClientHello onto the wire, and a wrapper that runs
`python -m auditor run --interface lo` as a subprocess and always kills it in the end.
Everything binds to 127.0.0.0/8; nothing leaves the host.
"""
from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset

CLIENT_IP = "127.0.0.1"     # the "node": the only --node-network
HARD_TIMEOUT = 300.0        # a sidecar subprocess never outlives this


def wait_for(predicate, timeout: float = 90.0, what: str = "condition", interval: float = 0.05):
    """Poll until `predicate()` is truthy; return its value or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((CLIENT_IP, 0))
        return s.getsockname()[1]


# -- servers ------------------------------------------------------------------------------
class DnsResponder:
    """UDP DNS server on `ip:53` answering A queries from `records` (name -> IP), else NXDOMAIN."""

    def __init__(self, ip: str, records: dict[str, str], ttl: int = 300):
        self.ip = ip
        self.records = {k.rstrip(".").lower(): v for k, v in records.items()}
        self.ttl = ttl
        self.queries: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 53))
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dns-responder", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(wire)
            except Exception:
                continue
            response = dns.message.make_response(query)
            q = query.question[0]
            name = q.name.to_text().rstrip(".").lower()
            self.queries.append(name)
            ip = self.records.get(name)
            if ip is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif q.rdtype == dns.rdatatype.A:
                response.answer.append(dns.rrset.from_text(q.name, self.ttl, "IN", "A", ip))
            self.sock.sendto(response.to_wire(), peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


class Listener:
    """TCP server on `ip:port`: accepts, reads what the client sends first (a whole TLS
    record, or an HTTP request head) and keeps it in `received`. With `hold=True` the
    accepted connections stay open until `close()`; otherwise each is closed after reading,
    which makes a TLS client's handshake fail (after its ClientHello was sent)."""

    def __init__(self, ip: str, port: int, hold: bool = False):
        self.ip, self.port, self.hold = ip, port, hold
        self.received: list[bytes] = []
        self._conns: list[socket.socket] = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, port))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"listener-{ip}:{port}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(30)
            try:
                self.received.append(_read_first_message(conn))
            except OSError:
                self.received.append(b"")
            if self.hold:
                self._conns.append(conn)
            else:
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for c in self._conns:
            c.close()
        self.sock.close()


def _read_first_message(conn: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
        if data[:1] == b"\x16" and len(data) >= 5:          # a TLS record: read all of it
            if len(data) >= 5 + int.from_bytes(data[3:5], "big"):
                return data
        elif data[:1] != b"\x16" and (b"\r\n\r\n" in data or data.endswith(b"\n")):
            return data                                      # an HTTP head, or a line


# -- clients ------------------------------------------------------------------------------
def resolve(server: str, name: str) -> str:
    """The A record for `name` from `server`, asked from the node's address."""
    query = dns.message.make_query(name, "A")
    response = dns.query.udp(query, server, timeout=30, source=CLIENT_IP)
    assert response.rcode() == dns.rcode.NOERROR, (name, dns.rcode.to_text(response.rcode()))
    return response.answer[0][0].address


def tls_hello(ip: str, server_name: str, port: int = 443) -> int:
    """Send a real ClientHello with SNI `server_name`; the server hangs up, so the handshake
    fails, which is fine. Returns the client's source port."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.socket()
    raw.settimeout(30)
    raw.bind((CLIENT_IP, 0))
    raw.connect((ip, port))
    sport = raw.getsockname()[1]
    try:
        with ctx.wrap_socket(raw, server_hostname=server_name) as tls:
            tls.do_handshake()
    except (ssl.SSLError, OSError):
        pass
    finally:
        raw.close()
    return sport


def http_get(ip: str, host: str, port: int = 80) -> socket.socket:
    """Send `GET /` with `Host: host` and return the still-open socket (the caller closes)."""
    s = socket.socket()
    s.settimeout(30)
    s.bind((CLIENT_IP, 0))
    s.connect((ip, port))
    s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: live-test\r\n\r\n".encode())
    return s


def tcp_payload(ip: str, port: int, payload: bytes = b"hello, no name here\n") -> socket.socket:
    """A TCP connection that sends bytes carrying no SNI or Host; returned still open."""
    s = socket.socket()
    s.settimeout(30)
    s.bind((CLIENT_IP, 0))
    s.connect((ip, port))
    s.sendall(payload)
    return s


# -- the sidecar --------------------------------------------------------------------------
class Sidecar:
    """`python -m auditor run ...` as a subprocess; stderr is collected line by line."""

    def __init__(self, args: list[str], metrics_port: int | None = None, cwd: Path | None = None,
                 env: dict[str, str] | None = None):
        self.metrics_port = metrics_port
        inherited = dict(os.environ, PYTHONUNBUFFERED="1")
        env = {**{k: v for k, v in inherited.items() if not k.startswith("EGRESS_AUDITOR_")}, **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "auditor", "run", *args], cwd=cwd, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.stderr_lines: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self._watchdog = threading.Timer(HARD_TIMEOUT, self.kill)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip("\n"))

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)

    def url(self, path: str = "/") -> str:
        return f"http://{CLIENT_IP}:{self.metrics_port}{path}"

    def get(self, path: str = "/") -> str:
        with urllib.request.urlopen(self.url(path), timeout=30) as resp:
            assert resp.status == 200
            return resp.read().decode()

    def wait_ready(self, timeout: float = 90.0) -> str:
        """Wait until the landing page answers (the capture socket is open by then)."""
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"sidecar exited {self.proc.returncode} before serving:\n{self.stderr}")
            try:
                return self.get("/")
            except OSError:
                return None
        return wait_for(ready, timeout, "the metrics endpoint")

    def wait_stderr(self, needle: str, timeout: float = 90.0, start: int = 0) -> str:
        def seen():
            for line in self.stderr_lines[start:]:
                if needle in line:
                    return line
            if self.proc.poll() is not None:
                raise AssertionError(f"sidecar exited {self.proc.returncode}; no {needle!r}:\n{self.stderr}")
            return None
        return wait_for(seen, timeout, f"{needle!r} on stderr")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 90.0) -> int:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"sidecar did not exit within {timeout:.0f} s:\n{self.stderr}")
        self._reader.join(5)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()

    def close(self) -> None:
        self._watchdog.cancel()
        self.kill()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._reader.join(5)
        if self.proc.stderr:
            self.proc.stderr.close()


def metric(text: str, name: str, **labels: str) -> float | None:
    """The sum of the samples of `name` (exact) whose labels include `labels`; None if absent."""
    from prometheus_client.parser import text_string_to_metric_families
    total, found = 0.0, False
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
                found = True
    return total if found else None


def term(sidecar: Sidecar, sig: int = signal.SIGTERM) -> int:
    sidecar.signal(sig)
    return sidecar.wait()
