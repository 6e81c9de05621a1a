#!/usr/bin/env python3
"""Wrap every Ethernet frame of a classic pcap in Ethernet/IPv4/UDP 4789/VXLAN (VNI 100).

For the tunnel throughput figure (bench/README.md): the same mix, but every packet takes the
decapsulation path. The outer addresses follow the inner direction (node VTEP 10.0.1.1 when
the inner source is in 10.0.0.0/16, else the remote VTEP 20.1.0.1). The outer source port
is a hash of the inner addresses and ports, as the Linux kernel picks it, so each inner flow
has its own outer UDP flow (twice the flows of the plain mix); `--fixed-port` uses one
source port per direction instead (one outer flow each way, as a VTEP with a fixed source
port makes them), which isolates the per-packet cost of decapsulation.

    python bench/wrap_vxlan.py /tmp/mix.pcap /tmp/mix-vxlan.pcap [--fixed-port]
"""
from __future__ import annotations

import argparse
import struct
import sys
import zlib

NODE_VTEP, REMOTE_VTEP = bytes([10, 0, 1, 1]), bytes([20, 1, 0, 1])
ETH = bytes.fromhex("123456789abc" "000d3a100004") + b"\x08\x00"
ETH_BACK = bytes.fromhex("000d3a100004" "123456789abc") + b"\x08\x00"
VXLAN = struct.pack("!II", 0x08000000, 100 << 8)


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack("!10H", header))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def wrap(frame: bytes, ident: int, fixed_port: bool = False) -> bytes:
    inner_ip = frame[14:34]
    outbound = inner_ip[12] == 10 and inner_ip[13] == 0 if len(inner_ip) == 20 else True
    src, dst = (NODE_VTEP, REMOTE_VTEP) if outbound else (REMOTE_VTEP, NODE_VTEP)
    ports = frame[34:38] if len(frame) >= 38 else b""
    sport = 4789 if fixed_port else 49152 + zlib.crc32(inner_ip[12:20] + ports) % 16384
    udp_len = 8 + len(VXLAN) + len(frame)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, ident & 0xFFFF, 0x4000, 64, 17, 0,
                     src, dst)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    udp = struct.pack("!HHHH", sport, 4789, udp_len, 0)     # checksum 0: allowed over IPv4
    return (ETH if outbound else ETH_BACK) + ip + udp + VXLAN + frame


def main(src: str, dst: str, fixed_port: bool = False) -> None:
    with open(src, "rb") as f, open(dst, "wb") as out:
        head = f.read(24)
        if struct.unpack_from("<I", head)[0] != 0xA1B2C3D4 or struct.unpack_from("<I", head, 20)[0] != 1:
            sys.exit("expects a little-endian microsecond pcap of Ethernet frames")
        out.write(head[:16] + struct.pack("<I", 262144) + head[20:])
        n = 0
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                break
            sec, usec, caplen, wirelen = struct.unpack("<IIII", rec)
            frame = wrap(f.read(caplen), n, fixed_port)
            extra = len(frame) - caplen
            out.write(struct.pack("<IIII", sec, usec, len(frame), wirelen + extra) + frame)
            n += 1
    print(f"{dst}: {n} frames wrapped in VXLAN")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", help="a little-endian microsecond pcap of Ethernet frames")
    ap.add_argument("dst")
    ap.add_argument("--fixed-port", action="store_true",
                    help="one outer source port per direction instead of one per inner flow")
    args = ap.parse_args()
    try:
        main(args.src, args.dst, args.fixed_port)
    except OSError as e:
        sys.exit(f"wrap_vxlan: {e.filename}: {e.strerror}")
