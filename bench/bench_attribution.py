"""Cost of live attribution per flow (the worker thread's CPU time, not the capture loop's):
new real TCP connections on loopback, each looked up as the sidecar would (sock_diag ->
/proc scan when the inode is new -> /proc/<pid> -> cgroup). Prints microseconds per flow for
flows whose inode is already known, and for brand-new sockets (which need a /proc scan,
rate-limited to MAX_SCANS_PER_SECOND and shared by every flow waiting for it).

    python bench/bench_attribution.py --flows 2000
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from auditor.attribution.component import Attribution  # noqa: E402
from auditor.flow import Flow  # noqa: E402
from auditor.telemetry import Telemetry  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=100, help="new sockets per scan period")
    args = ap.parse_args()
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4096)
    port = srv.getsockname()[1]
    a = Attribution(Telemetry())
    fds = sum(len(os.listdir(f"/proc/{p}/fd")) for p in os.listdir("/proc")
              if p.isdigit() and os.access(f"/proc/{p}/fd", os.R_OK))
    new_cost, known_cost, told = [], [], 0
    conns = []
    for start in range(0, args.flows, args.batch):
        batch = []
        for _ in range(min(args.batch, args.flows - start)):
            c = socket.create_connection(("127.0.0.1", port))
            conns.append(c)
            f = Flow(transport="tcp", client_ip="127.0.0.1", client_port=c.getsockname()[1],
                     server_ip="127.0.0.1", server_port=port)
            batch.append(f)
        time.sleep(a.owners.due())
        t = time.process_time()
        owners = [a.lookup(f) for f in batch]          # the first one pays for the scan
        new_cost.append((time.process_time() - t) / len(batch))
        told += sum(o.known for o in owners)
        t = time.process_time()
        for f in batch:
            a.lookup(f)
        known_cost.append((time.process_time() - t) / len(batch))
    med = lambda xs: sorted(xs)[len(xs) // 2] * 1e6  # noqa: E731
    print(f"{args.flows} flows in batches of {args.batch}, {fds} open fds on this machine: "
          f"new socket {med(new_cost):.0f} us per flow (one /proc scan per batch), "
          f"known socket {med(known_cost):.0f} us per flow; told {told}/{args.flows}")
    for c in conns:
        c.close()
    a.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
