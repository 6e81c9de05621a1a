#!/usr/bin/env python3
"""Throughput and peak-memory benchmark: ``egress-auditor replay`` vs ``tshark`` (and nfstream) on pcaps.

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
    pip install '.[bench]'    # nfstream, the flow-metering peer (C + nDPI)
    python bench/bench_replay.py --suite --runs 3                   # the five captures below

`--suite` builds (once, into --suite-dir) and measures: the 1M-packet mix, a 3M mix, a
DNS-heavy mix (200,000 names: a DNS exchange before nearly every flow), a 1M-packet SYN scan
and a 1M-packet unique-name DNS flood; each row gives median/min/max packets/s and peak RSS
per tool and the ratios ours/tshark and ours/nfstream.
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


def nfstream_cmd(pcap: str) -> list[str]:
    """nfstream's flow metering in one meter process (its default would use every core)."""
    code = ("import sys\nfrom nfstream import NFStreamer\nn = 0\n"
            "for _ in NFStreamer(source=sys.argv[1], n_meters=1):\n    n += 1\n")
    return [sys.executable, "-c", code, pcap]


def have_nfstream() -> bool:
    return subprocess.run([sys.executable, "-c", "import nfstream"], capture_output=True).returncode == 0


SUITE = [  # (label, file name, how to make it: a Python expression over `path`)
    ("mix 1M", "mix1m.pcap", "gen_mix.generate(1_000_000, path)"),
    ("mix 3M", "mix3m.pcap", "gen_mix.generate(3_000_000, path)"),
    ("DNS-heavy 1M", "dnsheavy.pcap", "gen_mix.generate(1_000_000, path, names=200_000)"),
    ("SYN scan 1M", "synscan.pcap", "floods.syn_scan(pathlib.Path(path), 1_000_000)"),
    ("DNS flood 1M", "dnsflood.pcap", "floods.dns_flood(pathlib.Path(path), 500_000)"),
]


def suite_captures(directory: Path) -> list[tuple[str, Path]]:
    """(label, path) of the five benchmark captures, generated on first use.

    Each is generated in a child process: generating in this one would leave its memory
    resident here, and every tool started after it would inherit that resident set at fork
    and report it as its own peak (ru_maxrss counts the moment before exec).
    """
    root = Path(__file__).resolve().parent.parent
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for label, name, make in SUITE:
        path = directory / name
        if not path.exists():
            print(f"  generating {path} ...", file=sys.stderr)
            part = path.with_name(path.name + ".part")   # an interrupted run leaves no half file
            code = ("import pathlib, sys; sys.path.insert(0, sys.argv[1]); from bench import gen_mix; "
                    f"from tests.hardening import floods; path = sys.argv[2]; {make}")
            subprocess.run([sys.executable, "-c", code, str(root), str(part)], check=True)
            part.rename(path)
        out.append((label, path))
    return out


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


def bench_one(pcap: str, runs: int, sides: dict) -> dict[str, tuple]:
    """Alternating runs of every side on one capture; {side: (n, [pkt/s], [MB], ok)}."""
    n = count_packets(pcap)
    results: dict[str, list[tuple[float, float, int]]] = {k: [] for k in sides}
    for r in range(runs):
        for name, cmd in sides.items():
            wall, rss, rc = measure(cmd(pcap))
            results[name].append((wall, rss, rc))
            print(f"  run {r + 1} {name:8}: {wall:7.2f}s  {n / wall:10.0f} pkt/s  "
                  f"peak RSS {rss:7.1f} MB  exit {rc}", file=sys.stderr)
    return {name: (n, [n / x[0] for x in rs], [x[1] for x in rs], all(x[2] in (0, 3) for x in rs))
            for name, rs in results.items()}


def table(rows: list[tuple[str, dict]]) -> str:
    """Markdown: median (min-max) pkt/s and peak RSS per tool, ratios against the peers."""
    tools = list(rows[0][1])
    head = "| capture | " + " | ".join(f"{t} pkt/s median (min-max) | {t} peak RSS MB" for t in tools)
    ratios = [t for t in ("tshark", "nfstream") if t in tools and "ours" in tools]
    head += "".join(f" | ours/{t}" for t in ratios) + " |"
    lines = [head, "|" + "---|" * (1 + 2 * len(tools) + len(ratios))]
    for label, res in rows:
        cells = [label]
        for t in tools:
            _n, rates, rss, ok = res[t]
            cells.append(f"{statistics.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f})"
                         f"{'' if ok else ' FAILED'}")
            cells.append(f"{statistics.median(rss):.0f}")
        for t in ratios:
            cells.append(f"{statistics.median(res['ours'][1]) / statistics.median(res[t][1]):.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pcap", default="/tmp/mix.pcap")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--events", default="/tmp/ev.jsonl")
    ap.add_argument("--metrics-file", default="/tmp/m.prom")
    ap.add_argument("--only", choices=("ours", "tshark", "nfstream"), help="measure one side only")
    ap.add_argument("--no-nfstream", action="store_true", help="leave nfstream out")
    ap.add_argument("--profile", action="store_true", help="run ours once under cProfile")
    ap.add_argument("--policy", default=POLICY, help="policy for ours ('' = no policy: name flows only)")
    ap.add_argument("--suite", action="store_true", help="the five benchmark captures (see above)")
    ap.add_argument("--suite-dir", default="/tmp/egress-bench")
    a = ap.parse_args(argv)

    if a.profile:
        profile(a.pcap, a.events, a.metrics_file)
        return 0

    sides = {"ours": lambda p: ours_cmd(p, a.events, a.metrics_file, a.policy or None),
             "tshark": tshark_cmd, "nfstream": nfstream_cmd}
    if a.no_nfstream or not have_nfstream():
        if not a.no_nfstream:
            print("nfstream is not installed (pip install '.[bench]'): measured without it",
                  file=sys.stderr)
        sides.pop("nfstream")
    if a.only:
        sides = {a.only: sides[a.only]}
    captures = suite_captures(Path(a.suite_dir)) if a.suite else [(Path(a.pcap).name, Path(a.pcap))]
    print(f"{len(captures)} capture(s), {os.cpu_count()} CPUs, {a.runs} alternating runs of "
          f"{', '.join(sides)}", file=sys.stderr)
    rows = []
    for label, path in captures:
        print(f"{label}: {path} ({os.path.getsize(path) / 1e6:.1f} MB)", file=sys.stderr)
        rows.append((label, bench_one(str(path), a.runs, sides)))
    print(table(rows))
    if not a.suite and "ours" in sides and "tshark" in sides:
        res = rows[0][1]
        speed = statistics.median(res["ours"][1]) / statistics.median(res["tshark"][1])
        rss_o = statistics.median(res["ours"][2])
        good = res["ours"][3] and speed >= TARGET_SPEEDUP and rss_o <= TARGET_RSS_MB
        print(f"verdict: {'PASS' if good else 'FAIL'} -- throughput {speed:.2f}x tshark "
              f"(target >= {TARGET_SPEEDUP}x), peak RSS {rss_o:.0f} MB (target <= "
              f"{TARGET_RSS_MB:.0f} MB)")
        return 0 if good else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
