#!/usr/bin/env python3
"""Highest sustained packet rate the live sidecar captures with zero kernel drops.

Runs `python -m auditor run --interface lo` (root / CAP_NET_RAW) and, at increasing rates, a
paced UDP sender on loopback for `--seconds` each: small datagrams from 127.0.0.1 to
127.0.0.2 across `--flows` source ports (a realistic flow count rather than one flow).
After each step it scrapes `capture_dropped_packets_total` and `packets_total` and reports
the highest rate with no drops. Loopback only: every socket binds and sends to 127.0.0.0/8.
Bounded: at most `--max-rate` packets/s, `--seconds` per step, `len(rates)` steps.

    python bench/bench_live.py --seconds 30 --rates 5000,10000,20000,40000,60000
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC, DST = "127.0.0.1", "127.0.0.2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((SRC, 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(f"http://{SRC}:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[s.name] = out.get(s.name, 0.0) + s.value
    return out


def send(rate: int, seconds: float, dport: int, flows: int) -> int:
    """Paced sender: `rate` datagrams/s for `seconds`, in 1 ms batches. Returns how many sent."""
    socks = []
    for _ in range(flows):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((SRC, 0))
        socks.append(s)
    payload = b"x" * 64
    sent, start = 0, time.monotonic()
    end = start + seconds
    try:
        while True:
            now = time.monotonic()
            if now >= end:
                break
            due = int((now - start) * rate)
            while sent < due:
                socks[sent % flows].sendto(payload, (DST, dport))
                sent += 1
            time.sleep(0.001)
    finally:
        for s in socks:
            s.close()
    return sent


class Sidecar:
    def __init__(self, metrics_port: int, dport: int, ring_mib: int | None = None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("EGRESS_AUDITOR_")}
        self.port = metrics_port
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "auditor", "run", "--interface", "lo", "--metrics-port", str(metrics_port),
             "--node-network", f"{SRC}/32", "--bpf", f"udp and dst port {dport}", "--events", os.devnull,
             "--no-attribution", *(["--ring-mib", str(ring_mib)] if ring_mib is not None else [])],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while True:
            try:
                scrape(metrics_port)
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"sidecar did not start: {self.proc.stderr.read().decode()[-2000:]}")
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def step(rate: int, seconds: float, flows: int, patient: bool = False,
         ring_mib: int | None = None) -> dict:
    """One fresh sidecar, one paced run; waits for the sidecar to catch up before reading.
    `patient` (tests): wait until every packet sent was read (or 5 minutes), never judging
    "it has drained" from a pause, which a busy machine can make long."""
    dport, mport = free_port(), free_port()
    car = Sidecar(mport, dport, ring_mib)
    try:
        before = scrape(mport)
        sent = send(rate, seconds, dport, flows)
        base = before.get("egress_auditor_packets_total", 0)
        deadline, last, still = time.monotonic() + (300 if patient else 60), -1.0, 0
        while time.monotonic() < deadline:        # let it drain its socket buffer
            m = scrape(mport)
            got = m.get("egress_auditor_packets_total", 0)
            if got - base >= sent:
                break
            still = still + 1 if got == last else 0   # no progress for ~3 s: it has drained
            if still >= 10 and not patient:
                break
            last = got
            time.sleep(0.3)
        m = scrape(mport)
    finally:
        car.stop()
    read = m.get("egress_auditor_packets_total", 0) - before.get("egress_auditor_packets_total", 0)
    cpu = m.get("process_cpu_seconds_total", 0.0) - before.get("process_cpu_seconds_total", 0.0)
    return {"rate": rate, "sent": sent, "achieved": sent / seconds, "read": int(read),
            "dropped": int(m.get("egress_auditor_capture_dropped_packets_total", 0)),
            "cpu_us_per_packet": cpu / read * 1e6 if read else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rates", default="2000,5000,10000,20000,30000,40000,60000")
    ap.add_argument("--flows", type=int, default=64)
    ap.add_argument("--max-rate", type=int, default=200_000)
    ap.add_argument("--ring-mib", type=int, default=None,
                    help="the sidecar's --ring-mib (default: its own default; 0: recvmsg)")
    args = ap.parse_args(argv)
    rates = [min(int(r), args.max_rate) for r in args.rates.split(",")]
    best = None
    for rate in rates:
        r = step(rate, args.seconds, args.flows, ring_mib=args.ring_mib)
        ok = r["dropped"] == 0 and r["read"] >= r["sent"]
        print(f"target {r['rate']:>7,}/s  sent {r['sent']:>9,} ({r['achieved']:,.0f}/s)  read {r['read']:>9,}  "
              f"dropped {r['dropped']:>8,}  {'ok' if ok else 'DROPS'}  sidecar CPU "
              f"{r['cpu_us_per_packet'] or 0:.1f} us/packet", flush=True)
        if ok:
            best = r["achieved"]
        else:
            break
    print(f"highest drop-free rate: {best:,.0f} packets/s" if best else "drops at every rate tried")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
