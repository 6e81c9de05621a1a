"""Container name and image from the Docker Engine API, when its socket is readable
(`GET /containers/<id>/json` over /var/run/docker.sock). containerd and CRI-O speak gRPC: their
containers are named by id (and pod UID) only."""
from __future__ import annotations

import http.client
import json
import socket
from collections import OrderedDict

MAX_CONTAINERS = 1024


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class DockerNames:
    def __init__(self, path: str = "/var/run/docker.sock", timeout: float = 1.0) -> None:
        self.path, self.timeout = path, timeout
        self._cache: OrderedDict[str, tuple[str | None, str | None]] = OrderedDict()
        self.available = True

    def lookup(self, container_id: str) -> tuple[str | None, str | None]:
        """(name, image) of a container, (None, None) when Docker cannot say."""
        hit = self._cache.get(container_id)
        if hit is not None:
            return hit
        if not self.available:
            return None, None
        try:
            conn = _UnixHTTPConnection(self.path, self.timeout)
            conn.request("GET", f"/containers/{container_id}/json")
            resp = conn.getresponse()
            body = resp.read(1 << 20)
            conn.close()
        except (FileNotFoundError, PermissionError, ConnectionRefusedError):
            self.available = False              # no Docker here: do not ask again
            return None, None
        except OSError:
            return None, None
        result: tuple[str | None, str | None] = (None, None)
        if resp.status == 200:
            try:
                doc = json.loads(body)
                result = ((doc.get("Name") or "").lstrip("/") or None,
                          (doc.get("Config") or {}).get("Image"))
            except (ValueError, AttributeError):
                pass
        self._cache[container_id] = result
        if len(self._cache) > MAX_CONTAINERS:
            self._cache.popitem(last=False)
        return result
