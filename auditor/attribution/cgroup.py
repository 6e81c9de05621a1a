"""Container id and Kubernetes pod UID from /proc/<pid>/cgroup.

The formats seen in the wild (one line per hierarchy, `id:controllers:path`; cgroup v2 is the
single `0::path` line):
- Docker, cgroupfs driver: `/docker/<64 hex>`; systemd driver: `/system.slice/docker-<64 hex>.scope`
- containerd under Kubernetes, systemd driver:
  `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with _>.slice/cri-containerd-<64 hex>.scope`;
  cgroupfs driver: `/kubepods/burstable/pod<uid>/<64 hex>`
- CRI-O: `.../crio-<64 hex>.scope` (and `crio-conmon-<hex>` for its monitor process)
- podman: `/machine.slice/libpod-<64 hex>.scope` or `/libpod_parent/libpod-<64 hex>`
A process outside any container gives nothing. Only the path's last container-looking part
counts, so a nested cgroup names the innermost container.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_CONTAINER = re.compile(r"(?:^|/|[-:])(?:docker|cri-containerd|containerd|crio|libpod)?-?([0-9a-f]{64})(?:\.scope)?$")
_RUNTIME = re.compile(r"(docker|cri-containerd|crio|libpod)-[0-9a-f]{64}")
_POD = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")


@dataclass(frozen=True)
class CgroupIdentity:
    container_id: str | None = None
    runtime: str | None = None          # docker, containerd, cri-o, podman (when the path says)
    pod_uid: str | None = None


def parse(text: str) -> CgroupIdentity:
    """What the cgroup file of one process says about its container and pod."""
    container = runtime = pod = None
    for line in text.splitlines():
        path = line.split(":", 2)[-1].strip()
        if not path or path == "/":
            continue
        for part in reversed(path.split("/")):
            m = _CONTAINER.search(part)
            if m and "conmon" not in part:
                container = container or m.group(1)
                r = _RUNTIME.search(part)
                if r and runtime is None:
                    runtime = {"docker": "docker", "cri-containerd": "containerd",
                               "crio": "cri-o", "libpod": "podman"}[r.group(1)]
                break
        p = _POD.search(path)
        if p and pod is None:
            pod = p.group(1).replace("_", "-")
    if container and runtime is None and "/docker/" in text:
        runtime = "docker"
    return CgroupIdentity(container, runtime, pod)
