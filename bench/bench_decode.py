"""Measure read and decode cost per packet (ns/packet). Not a test.

    python bench/bench_decode.py [PCAP ...]          # default: the largest mixed real capture
    python bench/bench_decode.py --synthetic 1000000 # also build and time a 1M-packet pcap
"""
import argparse
import os
import random
import struct
import sys
import tempfile
import time

# CPU time of this process: the shared 2-core box runs other people's tshark at the same time.
_clock = time.process_time

from auditor.decode.packet import decode
from auditor.sources.pcap import read_frames

DEFAULT = os.path.join(os.path.dirname(__file__), "..", "pcaps", "real",
                       "mixed-windows-host-dns-tls-http.pcap")


def synthetic(path, n):
    """A pcap of n Ethernet frames: 60% TCP, 35% UDP, 5% IPv6 TCP, sizes 60..1514."""
    rnd = random.Random(1)
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(n):
            size = rnd.choice((60, 66, 120, 590, 1514, 1514))
            r = rnd.random()
            if r < 0.05:
                pl = size - 14 - 40 - 20
                l4 = struct.pack("!HHIIBBHHH", 50000 + i % 1000, 443, i, 0, 0x50, 0x18, 0, 0, 0)
                ip = struct.pack("!IHBB16s16s", 0x60000000, 20 + pl, 6, 64, b"\x20" * 16,
                                 b"\x21" * 16)
                frame = b"\0" * 12 + b"\x86\xdd" + ip + l4 + b"x" * pl
            else:
                tcp = r < 0.65
                hl = 20 if tcp else 8
                pl = max(0, size - 14 - 20 - hl)
                l4 = (struct.pack("!HHIIBBHHH", 50000 + i % 1000, 443, i, 0, 0x50, 0x18, 0, 0, 0)
                      if tcp else struct.pack("!HHHH", 50000 + i % 1000, 53, 8 + pl, 0))
                ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + hl + pl, 0, 0, 64,
                                 6 if tcp else 17, 0, b"\n\0\0\1", b"\x5d\xb8\xd8\x22")
                frame = b"\0" * 12 + b"\x08\x00" + ip + l4 + b"x" * pl
            f.write(struct.pack("<IIII", 1_700_000_000 + i // 1000, i % 1000, len(frame),
                                len(frame)) + frame)


def measure(path, rounds=3):
    best_read = best_total = float("inf")
    n = 0
    for _ in range(rounds):
        t0 = _clock()
        n = 0
        for _fr in read_frames(path):
            n += 1
        best_read = min(best_read, _clock() - t0)
        t0 = _clock()
        for ts, lt, frame, wirelen in read_frames(path):
            decode(lt, frame, ts, wirelen)
        best_total = min(best_total, _clock() - t0)
    read_ns = best_read / n * 1e9
    total_ns = best_total / n * 1e9
    print(f"{os.path.basename(path)}: {n} packets; read {read_ns:.0f} ns/pkt, "
          f"decode {total_ns - read_ns:.0f} ns/pkt, read+decode {total_ns:.0f} ns/pkt "
          f"({n / best_total / 1e3:.0f}k pkt/s)")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("pcaps", nargs="*")
    ap.add_argument("--synthetic", type=int, default=0, metavar="N")
    args = ap.parse_args(argv)
    for p in args.pcaps or [DEFAULT]:
        measure(p)
    if args.synthetic:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "synthetic.pcap")
            synthetic(path, args.synthetic)
            measure(path, rounds=2)


if __name__ == "__main__":
    sys.exit(main())
