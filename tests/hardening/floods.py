"""Deterministic hostile captures written with `struct` (a scapy packet per frame would take
minutes at these sizes), and a runner for the real CLI that measures the child's peak RSS.

Every capture is a classic pcap, Ethernet, with the node at 10.0.0.5 (inside the
`--node-network 10.0.0.0/8` the tests pass) and correct IPv4 header lengths. Checksums are
left zero: the decoder does not validate them (a capture taken with offload has them wrong).
"""
from __future__ import annotations

import os
import random
import re
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "examples" / "policies" / "workspace-approved.yaml"
NODE = bytes([10, 0, 0, 5])
RESOLVER = bytes([168, 63, 129, 16])
ETH_OUT = bytes.fromhex("00155d000001" "123456789abc" "0800")
ETH_IN = bytes.fromhex("123456789abc" "00155d000001" "0800")
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
_REC = struct.Struct("<IIII")
_IP = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")


class PcapWriter:
    def __init__(self, path: Path):
        self.fh = open(path, "wb", buffering=1 << 20)
        self.fh.write(PCAP_HEADER)
        self.count = 0

    def frame(self, ts: float, data: bytes) -> None:
        sec = int(ts)
        self.fh.write(_REC.pack(sec, int((ts - sec) * 1e6), len(data), len(data)))
        self.fh.write(data)
        self.count += 1

    def close(self) -> None:
        self.fh.close()


def ipv4(src: bytes, dst: bytes, proto: int, l4: bytes) -> bytes:
    return _IP.pack(0x45, 0, 20 + len(l4), 0, 0, 64, proto, 0, src, dst) + l4


def tcp(sport: int, dport: int, flags: int, seq: int = 0, payload: bytes = b"") -> bytes:
    return _TCP.pack(sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0) + payload


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return _UDP.pack(sport, dport, 8 + len(payload), 0) + payload


def public_ip(rng: random.Random) -> bytes:
    """A random unicast address outside 10/8, 127/8, 168.63/16 and 169.254/16."""
    while True:
        first = rng.randrange(1, 224)
        if first not in (10, 127, 168, 169, 172, 192):
            return bytes([first, rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)])


def dns_name(labels: list[str]) -> bytes:
    return b"".join(bytes([len(x)]) + x.encode() for x in labels) + b"\0"


def dns_query(qid: int, qname: bytes, qtype: int = 1) -> bytes:
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", qtype, 1)


def dns_answer(qid: int, qname: bytes, ip: bytes, ttl: int = 300) -> bytes:
    return (struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0) + qname + struct.pack("!HH", 1, 1)
            + b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, ttl, 4) + ip)


# -- the floods ----------------------------------------------------------------------------
def syn_scan(path: Path, flows: int, rate: float = 10_000.0, seed: int = 1) -> int:
    """`flows` SYNs from the node to distinct random public destinations (port 443), `rate`
    per second of capture time: every one a new, never-answered flow."""
    rng = random.Random(seed)
    w = PcapWriter(path)
    step = 1.0 / rate
    for i in range(flows):
        l4 = tcp(1024 + i % 64000, 443, 0x02, seq=i)
        w.frame(1_700_000_000 + i * step, ETH_OUT + ipv4(NODE, public_ip(rng), 6, l4))
    w.close()
    return w.count


_TUNNEL_PORTS = (3544, 4789, 6081, 8472)


def udp_flood(path: Path, flows: int, rate: float = 10_000.0, seed: int = 2) -> int:
    """One 1-byte UDP datagram per flow to a random public destination and port."""
    rng = random.Random(seed)
    w = PcapWriter(path)
    step = 1.0 / rate
    for i in range(flows):
        # keep it a flood of plain UDP flows: no DNS/QUIC/DoT port, no tunnel port (a 1-byte
        # VXLAN/Geneve/Teredo datagram is a malformed tunnel)
        sport = 1024 + i % 64000
        if sport in _TUNNEL_PORTS:
            sport += 1
        l4 = udp(sport, rng.randrange(1, 65536) or 9, b"x")
        if (l4[2] << 8 | l4[3]) in (53, 443, 853, *_TUNNEL_PORTS):
            l4 = udp(sport, 9, b"x")
        w.frame(1_700_000_000 + i * step, ETH_OUT + ipv4(NODE, public_ip(rng), 17, l4))
    w.close()
    return w.count


def dns_flood(path: Path, names: int, rate: float = 5_000.0, seed: int = 3,
              answered_every: int = 2) -> int:
    """`names` queries for unique long random names under unique registered domains, from
    random source ports to the Azure resolver; every `answered_every`-th is answered with a
    unique public IP (so the name cache fills), the rest stay pending."""
    rng = random.Random(seed)
    w = PcapWriter(path)
    step = 1.0 / rate
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    for i in range(names):
        ts = 1_700_000_000 + i * step
        sub = "".join(rng.choice(alphabet) for _ in range(40))
        qname = dns_name([sub, f"d{i}x{rng.randrange(1 << 30):x}", "com"])
        sport, qid = 1024 + i % 64000, i & 0xFFFF
        w.frame(ts, ETH_OUT + ipv4(NODE, RESOLVER, 17, udp(sport, 53, dns_query(qid, qname))))
        if i % answered_every == 0:
            w.frame(ts + step / 2, ETH_IN + ipv4(RESOLVER, NODE, 17,
                                                 udp(53, sport, dns_answer(qid, qname, public_ip(rng)))))
    w.close()
    return w.count


def idle_connections(path: Path, flows: int, ticks: int, seed: int = 5) -> int:
    """`flows` TCP handshakes (SYN, SYN-ACK) to random public servers within one second, then
    quiet (established flows idle out after 300 s), then `ticks` packets one second apart on
    one other flow: each packet is an idle sweep over every quiet flow, unless the table
    knows that none of them can be due yet (`FlowTable.expire`)."""
    rng = random.Random(seed)
    w = PcapWriter(path)
    t = 1_700_000_000.0
    for i in range(flows):
        dst, sport = public_ip(rng), 1024 + i % 60000
        w.frame(t + i * 1e-5, ETH_OUT + ipv4(NODE, dst, 6, tcp(sport, 443, 0x02, seq=i)))
        w.frame(t + i * 1e-5, ETH_IN + ipv4(dst, NODE, 6, tcp(443, sport, 0x12, seq=7)))
    dst = public_ip(rng)
    for k in range(ticks):
        w.frame(t + 2 + k, ETH_OUT + ipv4(NODE, dst, 6, tcp(65001, 443, 0x10, seq=k)))
    w.close()
    return w.count


def reassembly_flood(path: Path, flows: int, segments: int = 16, size: int = 64_000,
                     seed: int = 4) -> int:
    """`flows` TCP connections to port 443 whose first client segment never comes: each then
    sends `segments` segments of `size` bytes out of order (what a reassembler must hold)."""
    rng = random.Random(seed)
    w = PcapWriter(path)
    ts = 1_700_000_000.0
    for i in range(flows):
        dst, sport = public_ip(rng), 1024 + i % 64000
        w.frame(ts, ETH_OUT + ipv4(NODE, dst, 6, tcp(sport, 443, 0x02, seq=1000)))
        w.frame(ts, ETH_IN + ipv4(dst, NODE, 6, tcp(443, sport, 0x12, seq=5000)))
        for k in range(1, segments + 1):
            ts += 0.0001
            w.frame(ts, ETH_OUT + ipv4(NODE, dst, 6, tcp(sport, 443, 0x18, seq=1001 + k * size,
                                                         payload=b"z" * size)))
    w.close()
    return w.count


def fragment_flood(path: Path, datagrams: int, pieces: int = 40, seed: int = 5) -> int:
    """`datagrams` UDP datagrams cut into `pieces` 1,480-byte fragments, the last one never
    sent: each stays pending in the defragmenter until a cap or the timeout drops it."""
    rng = random.Random(seed)
    w = PcapWriter(path)
    ts = 1_700_000_000.0
    for i in range(datagrams):
        dst = public_ip(rng)
        for k in range(pieces - 1):
            ts += 0.00001
            hdr = _IP.pack(0x45, 0, 20 + 1480, i & 0xFFFF, 0x2000 | (k * 185), 64, 17, 0, NODE, dst)
            w.frame(ts, ETH_OUT + hdr + b"f" * 1480)
    w.close()
    return w.count


def normal_mix(path: Path, packets: int, seed: int = 1) -> int:
    """The benchmark's realistic egress mix (bench/gen_mix.py), same size as a flood."""
    subprocess.run([sys.executable, str(ROOT / "bench" / "gen_mix.py"), "--packets", str(packets),
                    "--out", str(path), "--seed", str(seed)], check=True, capture_output=True,
                   timeout=300)
    return packets


# -- running the CLI -----------------------------------------------------------------------
@dataclass
class Run:
    returncode: int
    peak_rss_mib: float
    wall: float
    stdout: str
    stderr: str
    metrics: str

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels` (0 if none)."""
        from prometheus_client.parser import text_string_to_metric_families
        total = 0.0
        for family in text_string_to_metric_families(self.metrics):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total

    def label_values(self, name: str, label: str) -> set[str]:
        from prometheus_client.parser import text_string_to_metric_families
        return {s.labels[label] for f in text_string_to_metric_families(self.metrics)
                for s in f.samples if s.name == name and label in s.labels}


def replay(tmp: Path, pcap: Path, *extra: str, policy: Path | None = POLICY,
           timeout: float = 600) -> Run:
    """`python -m auditor replay PCAP` in a child, and the child's own peak RSS: the kernel's
    high-water mark of its address space after exec (`VmHWM`, written by the child at exit).
    `ru_maxrss` from `wait4` would not do: a child forked from a large pytest process starts
    out charged with the parent's pages."""
    events, metrics, hwm = tmp / "events.jsonl", tmp / "metrics.prom", tmp / "status.txt"
    for p in (events, metrics, hwm):
        p.unlink(missing_ok=True)
    args = ["replay", str(pcap), "--events", str(events),
            "--metrics-file", str(metrics), "--node-network", "10.0.0.0/8", "--no-dns-events",
            *(["--policy", str(policy)] if policy else []), *extra]
    wrapper = ("import atexit, runpy, sys\n"
               f"atexit.register(lambda: open({str(hwm)!r}, 'w').write(open('/proc/self/status').read()))\n"
               f"sys.argv = ['egress-auditor', *{args!r}]\n"
               "runpy.run_module('auditor', run_name='__main__')\n")
    cmd = [sys.executable, "-c", wrapper]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EGRESS_AUDITOR_")}
    out, err = tmp / "stdout.txt", tmp / "stderr.txt"
    started = time.monotonic()
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, env=env, cwd=ROOT)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss / 1024
    if hwm.exists():
        line = next(x for x in hwm.read_text().splitlines() if x.startswith("VmHWM:"))
        peak = int(line.split()[1]) / 1024
    return Run(proc.returncode, peak, wall, out.read_text(), err.read_text(),
               metrics.read_text() if metrics.exists() else "")


def flow_events(events: Path) -> int:
    """Flow events in a JSONL file (counted without parsing every line)."""
    pattern = re.compile(rb'"action":"flow"')
    n = 0
    with open(events, "rb") as fh:
        for line in fh:
            if pattern.search(line):
                n += 1
    return n
