"""The metrics endpoint: `/metrics` in Prometheus text format, `/` a landing page.

A plain WSGI app on prometheus_client's threaded server, so scrapes run beside the capture
loop without blocking it.
"""
from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from auditor import __version__

LANDING = f"""<!doctype html><html><head><title>egress-auditor</title></head><body>
<h1>egress-auditor {__version__}</h1>
<p>Egress traffic auditor for Azure managed networks.</p>
<p><a href="/metrics">/metrics</a> &mdash; Prometheus metrics</p>
</body></html>
""".encode()


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args) -> None:  # one line per scrape on stderr is noise
        pass


def serve(registry: CollectorRegistry, host: str, port: int, web_config=None):
    """Start serving in a daemon thread; returns the server (call .shutdown() to stop)."""
    metrics = make_wsgi_app(registry)

    def app(environ, start_response):
        if environ.get("PATH_INFO", "/") in ("/", "/index.html"):
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [LANDING]
        if environ.get("PATH_INFO") == "/metrics":
            return metrics(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found; metrics are at /metrics\n"]

    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
