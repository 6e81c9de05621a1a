"""Container id and pod UID from cgroup files in the formats real systems write (one file per
runtime and driver in tests/data/cgroup: Docker with the systemd and cgroupfs drivers,
containerd and Docker under Kubernetes, CRI-O and its conmon, podman, a plain user session),
plus this machine's own /proc/self/cgroup."""
from __future__ import annotations

from pathlib import Path

import pytest

from auditor.attribution.cgroup import parse

DATA = Path(__file__).resolve().parents[1] / "data" / "cgroup"
EXPECTED = {
    "docker-systemd-v2.txt": ("4d8e3b0a5c1f", "docker", None),
    "docker-cgroupfs-v1.txt": ("9f2c1a7e5b3d", "docker", None),
    "k8s-containerd-systemd-v2.txt": ("3b7e1d9c2a4f", "containerd", "6a3f2c1e-8b4d-4e5f-9a0b-1c2d3e4f5a6b"),
    "k8s-docker-cgroupfs-v1.txt": ("7c2e4a6b8d0f", None, "0e1f2a3b-4c5d-6e7f-8a9b-0c1d2e3f4a5b"),
    "k8s-crio-v2.txt": ("5e9c3a1f7b2d", "cri-o", "1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d"),
    "crio-conmon-v2.txt": (None, None, None),          # the monitor, not the container
    "podman-v2.txt": ("8a1b3c5d7e9f", "podman", None),
    "host-user-session-v2.txt": (None, None, None),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_container_and_pod_from_real_formats(name):
    got = parse((DATA / name).read_text())
    cid, runtime, pod = EXPECTED[name]
    assert (got.container_id[:12] if got.container_id else None, got.runtime, got.pod_uid) == (cid, runtime, pod)
    assert got.container_id is None or len(got.container_id) == 64


def test_this_machine_parses():
    parse(Path("/proc/self/cgroup").read_text())          # whatever it is, no exception
