"""Peak memory of `egress-auditor replay` under the byte floods: reassembly buffers and IP
fragments (docs/hardening.md). Each flood is generated with tests/hardening/floods.py and
replayed in a fresh process; the figure is that process's own peak RSS (ru_maxrss).

    python bench/bench_floods.py                       # 250 flows x 16 x 64 kB; 20,000 datagrams
    python bench/bench_floods.py --flows 1000 --datagrams 50000
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.hardening import floods  # noqa: E402


def replay(pcap: Path) -> tuple[float, float, str]:
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "auditor", "replay", str(pcap), "--quiet",
                             "--metrics-file", str(pcap.with_suffix(".prom")),
                             "--node-network", "10.0.0.0/8"], cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit(f"replay of {pcap} failed ({status})")
    prom = pcap.with_suffix(".prom").read_text()
    evictions = [line for line in prom.splitlines()
                 if line.startswith("egress_auditor_table_evictions_total") and not line.endswith(" 0.0")]
    return usage.ru_maxrss / 1024, time.monotonic() - start, "; ".join(evictions)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=250)
    ap.add_argument("--datagrams", type=int, default=20_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        n = floods.reassembly_flood(d / "reassembly.pcap", args.flows)
        rss, secs, ev = replay(d / "reassembly.pcap")
        print(f"reassembly flood: {args.flows} flows x 16 x 64 kB out of order ({n:,} packets): "
              f"peak RSS {rss:.0f} MiB, {secs:.1f} s; {ev}")
        n = floods.fragment_flood(d / "fragments.pcap", args.datagrams)
        rss, secs, ev = replay(d / "fragments.pcap")
        print(f"fragment flood: {args.datagrams:,} incomplete datagrams x 39 fragments "
              f"({n:,} packets): peak RSS {rss:.0f} MiB, {secs:.1f} s; {ev}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
