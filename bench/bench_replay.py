#!/usr/bin/env python3
"""Throughput and peak-memory benchmark: ``egress-auditor replay`` vs ``tshark`` on one pcap.

Runs the two tools alternately (ours, tshark, ours, tshark, ...) so that both see the same
page-cache and CPU-frequency conditions, measures wall time (-> packets/s, the packet count
read from the pcap itself) and the peak RSS of *that child alone* (``os.wait4`` on the child's
pid returns its own ``ru_maxrss``, KiB on Linux; ``RUSAGE_CHILDREN`` would accumulate over
all children and is not used). Prints medians, the ratios ours/tshark, and a verdict against
the targets: throughput >= 2.5x tshark, peak RSS <= 150 MB.

    python bench/gen_mix.py --packets 1000000 --out /tmp/mix.pcap
    python bench/bench_replay.py --pcap /tmp/mix.pcap --runs 3
    python bench/bench_replay.py --pcap /tmp/mix.pcap --profile     # where the time goes
    python bench/bench_replay.py --pcap /tmp/mix.pcap --only tshark  # reference figures only
"""
from __future__ import annotations

import argparse
from pathlib import Path
import os
import shutil
import statistics
import struct
import subprocess
import sys
import time

TARGET_SPEEDUP = 2.5
TARGET_RSS_MB = 150.0


def count_packets(path: str) -> int:
    """Records in a classic pcap (fast header walk); pcapng falls back to capinfos."""
    with open(path, "rb") as f:
        head = f.read(24)
        magic = head[:4]
        if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            endian = "<"
        elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
            endian = ">"
        else:
            out = subprocess.run(["capinfos", "-Mc", path], capture_output=True, text=True).stdout
            return int(out.split(":")[-1].strip())
        n = 0
        rec = struct.Struct(endian + "IIII")
        while True:
            h = f.read(16)
            if len(h) < 16:
                return n
            incl = rec.unpack(h)[2]
            f.seek(incl, 1)
            n += 1


POLICY = str(Path(__file__).resolve().parent.parent / "examples" / "policies" / "workspace-approved.yaml")


def ours_cmd(pcap: str, events: str, metrics: str, policy: str | None = POLICY) -> list[str]:
    """The full audit: verdicts against a real approved-only policy (with the bundled service
    tags), all detectors, events to a file, metrics written at the end."""
    exe = shutil.which("egress-auditor")
    base = [exe] if exe else [sys.executable, "-m", "auditor"]
    return [*base, "replay", pcap, "--events", events, "--metrics-file", metrics,
            "--node-network", "10.0.0.0/8", "--quiet"] + (["--policy", policy] if policy else [])


def tshark_cmd(pcap: str) -> list[str]:
    return ["tshark", "-r", pcap, "-T", "fields", "-e", "dns.qry.name", "-e", "dns.a",
            "-e", "tls.handshake.extensions_server_name", "-e", "http.host"]


def measure(cmd: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB of this child alone, exit code)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # wait4 reaps the child and returns *its* rusage; stderr is small, read after exit
    _pid, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode("utf-8", "replace")
    proc.stderr.close()
    if proc.returncode not in (0, 3):
        tail = "\n".join(l for l in err.splitlines() if "Running as user" not in l)[-800:]
        print(f"  ! {cmd[0]} exited {proc.returncode}: {tail}", file=sys.stderr)
    return wall, ru.ru_maxrss / 1024.0, proc.returncode


def profile(pcap: str, events: str, metrics: str, top: int = 25) -> None:
    """Run ours once in-process under cProfile; print top entries by cumulative and tottime."""
    import cProfile
    import pstats
    from auditor.cli import main as cli_main
    argv = ours_cmd(pcap, events, metrics)
    argv = argv[argv.index("replay"):]
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    try:
        rc = cli_main(argv)
    except SystemExit as e:  # a CLI may exit instead of returning
        rc = e.code
    prof.disable()
    print(f"ours under cProfile: {time.perf_counter() - t0:.1f}s, exit {rc}")
    st = pstats.Stats(prof)
    for key in ("cumulative", "tottime"):
        print(f"\n--- top {top} by {key} ---")
        st.sort_stats(key).print_stats(top)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pcap", default="/tmp/mix.pcap")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--events", default="/tmp/ev.jsonl")
    ap.add_argument("--metrics-file", default="/tmp/m.prom")
    ap.add_argument("--only", choices=("ours", "tshark"), help="measure one side only")
    ap.add_argument("--profile", action="store_true", help="run ours once under cProfile")
    ap.add_argument("--policy", default=POLICY, help="policy for ours ('' = no policy: name flows only)")
    a = ap.parse_args(argv)

    if a.profile:
        profile(a.pcap, a.events, a.metrics_file)
        return 0

    n = count_packets(a.pcap)
    size_mb = os.path.getsize(a.pcap) / 1e6
    print(f"{a.pcap}: {n} packets, {size_mb:.1f} MB, {os.cpu_count()} CPUs, "
          f"{a.runs} alternating runs")
    sides = {"ours": lambda: ours_cmd(a.pcap, a.events, a.metrics_file, a.policy or None),
             "tshark": lambda: tshark_cmd(a.pcap)}
    if a.only:
        sides = {a.only: sides[a.only]}
    results: dict[str, list[tuple[float, float, int]]] = {k: [] for k in sides}
    for r in range(a.runs):
        for name, cmd in sides.items():
            wall, rss, rc = measure(cmd())
            results[name].append((wall, rss, rc))
            print(f"  run {r + 1} {name:6}: {wall:7.2f}s  {n / wall:10.0f} pkt/s  "
                  f"peak RSS {rss:7.1f} MB  exit {rc}")

    med = {}
    for name, rs in results.items():
        wall = statistics.median(x[0] for x in rs)
        rss = statistics.median(x[1] for x in rs)
        ok = all(x[2] in (0, 3) for x in rs)
        med[name] = (n / wall, rss, ok)
        print(f"median {name:6}: {n / wall:10.0f} pkt/s  ({wall:.2f}s)  peak RSS {rss:.1f} MB"
              f"{'' if ok else '  (FAILED runs)'}")
    if len(med) == 2:
        (tp_o, rss_o, ok_o), (tp_t, rss_t, _) = med["ours"], med["tshark"]
        speed, mem = tp_o / tp_t, rss_o / rss_t
        print(f"ratio ours/tshark: throughput {speed:.2f}x, peak RSS {mem:.2f}x")
        good = ok_o and speed >= TARGET_SPEEDUP and rss_o <= TARGET_RSS_MB
        print(f"verdict: {'PASS' if good else 'FAIL'} -- throughput {speed:.2f}x tshark "
              f"(target >= {TARGET_SPEEDUP}x), peak RSS {rss_o:.0f} MB (target <= "
              f"{TARGET_RSS_MB:.0f} MB){'' if ok_o else ', ours exited with an error'}")
        return 0 if good else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
