"""Live load (issue #6): the sidecar on loopback at a sustained rate loses nothing — zero
kernel drops and every datagram read. The 30-s search for the highest drop-free rate on
this machine is bench/bench_live.py (figures in docs/hardening.md); this is its short CI
form, at a rate well below the measured ceiling. Loopback only."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import bench_live  # noqa: E402

# Live capture needs root (or CAP_NET_RAW): without it these tests fail, never skip.
assert os.geteuid() == 0, "the live load tests capture on lo: run them as root"


def test_five_seconds_at_2000_packets_per_second_without_a_drop():
    # 2,000/s is a twentieth of the drop-free rate measured on this machine (40,000/s), so a
    # busy CI neighbour cannot make it flaky; the search for the ceiling is bench_live.py.
    r = bench_live.step(2_000, 5.0, flows=32, patient=True)
    assert r["sent"] > 0          # however many a busy machine managed to send: all are read
    assert r["dropped"] == 0 and r["read"] == r["sent"], r


@pytest.mark.slow
def test_thirty_seconds_at_20000_packets_per_second_without_a_drop():
    r = bench_live.step(20_000, 30.0, flows=64, patient=True)
    assert r["dropped"] == 0 and r["read"] == r["sent"], r
