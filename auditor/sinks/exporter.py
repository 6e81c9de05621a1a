"""The metrics endpoint: `/metrics` in Prometheus text format, `/` a landing page.

A small threaded HTTP server that a job on the node (or anyone who can reach the port) cannot
exhaust: a normal accept backlog, at most `MAX_CONNECTIONS` connections served at once (more
are closed at once, counted), and a read timeout on every connection, so idle or trickling
clients cost a bounded number of threads. TLS and basic auth come from a web config file in
the Prometheus exporter-toolkit format that node_exporter users already have (`web_config.py`).
"""
from __future__ import annotations

import base64
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from typing import TYPE_CHECKING

from auditor import __version__
from auditor.sinks.web_config import WebConfig

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

MAX_CONNECTIONS = 32
READ_TIMEOUT = 10.0      # seconds for a client to send its request (and take the answer)
BACKLOG = 128

LANDING = f"""<!doctype html><html><head><title>egress-auditor</title></head><body>
<h1>egress-auditor {__version__}</h1>
<p>Egress traffic auditor for Azure managed networks.</p>
<p><a href="/metrics">/metrics</a> &mdash; Prometheus metrics</p>
</body></html>
""".encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = BACKLOG

    def __init__(self, address, registry: CollectorRegistry, config: WebConfig | None):
        self.registry = registry
        self.config = config
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.rejected = 0                 # connections closed at once: every slot was busy
        self.served = 0                   # connections given a handler thread
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, _Handler)

    def get_request(self):
        sock, addr = super().get_request()
        sock.settimeout(READ_TIMEOUT)
        if self.config is not None and self.config.tls is not None:
            # The handshake happens on the first read, in the handler's thread, under the timeout.
            sock = self.config.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            self.rejected += 1            # over the cap: close, do not queue a thread
            self.shutdown_request(request)
            return
        self.served += 1
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address) -> None:
        pass                              # a client that vanished is not worth a traceback


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = READ_TIMEOUT
    protocol_version = "HTTP/1.1"
    server_version = f"egress-auditor/{__version__}"

    def log_message(self, *args) -> None:  # one line per scrape on stderr is noise
        pass

    def do_GET(self) -> None:  # noqa: N802 - the http.server naming
        config = self.server.config
        if config is not None and config.users and not self._authorised(config):
            self._send(401, b"unauthorized\n", "text/plain",
                       {"WWW-Authenticate": 'Basic realm="egress-auditor"'})
            return
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(200, LANDING, "text/html; charset=utf-8")
        elif path == "/metrics":
            # prometheus_client is imported when metrics are exported, not at start-up
            from prometheus_client.exposition import choose_encoder  # noqa: PLC0415
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, encoder(self.server.registry), content_type)
        else:
            self._send(404, b"not found; metrics are at /metrics\n", "text/plain")

    def _authorised(self, config: WebConfig) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return config.check(user, password)

    def _send(self, status: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        config = self.server.config
        for name, value in {**(config.headers if config else {}), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def serve(registry: CollectorRegistry, host: str, port: int, web_config: WebConfig | None = None):
    """Start serving in a daemon thread; returns the server (call .shutdown() to stop)."""
    server = _Server((host, port), registry, web_config)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server

