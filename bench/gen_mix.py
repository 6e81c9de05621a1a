#!/usr/bin/env python3
"""Generate a deterministic egress mix as a classic pcap, for throughput benchmarks.

A compute node in 10.0.0.0/16 talks to public IPs the way a training job does: every
connection is preceded by a DNS A lookup to the Azure resolver 168.63.129.16 (some answers
through CNAME chains of 1-3 hops), then

- TLS over TCP/443 (handshake, a real ClientHello with the looked-up name as SNI built once
  per name with Python's ``ssl`` memory BIO, bulk data both ways in full-size segments, some
  flows upload-heavy, FIN close),
- plain HTTP/80 GET with Host, then a download,
- QUIC v1 on UDP/443: a real client Initial copied verbatim from
  ``pcaps/real/quic-chrome-with-dns.pcap`` (the DCID fixes the Initial keys, so the bytes are
  reused unchanged, only addresses and ports are patched), then short-header packets.

Frames are written with ``struct`` from per-name templates; IPv4, TCP and UDP checksums are
correct. The same ``--seed`` and ``--packets`` always give the same bytes.

    python bench/gen_mix.py --packets 1000000 --out /tmp/mix.pcap [--seed 1]
"""
from __future__ import annotations

import argparse
import array
import ipaddress
import os
import random
import ssl
import struct
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUIC_SOURCE = ROOT / "pcaps" / "real" / "quic-chrome-with-dns.pcap"

RESOLVER = "168.63.129.16"
NODE_NET = ipaddress.ip_network("10.0.0.0/16")
MSS = 1448
CONCURRENCY = 64  # flows interleaved at any moment
DOMAINS = [
    "blob.core.windows.net", "azurecr.io", "vault.azure.net", "pythonhosted.org", "pypi.org",
    "huggingface.co", "githubusercontent.com", "anaconda.org", "login.microsoftonline.com",
    "management.azure.com", "ml.azure.com", "monitor.azure.com", "docker.io", "pytorch.org",
    "tensorflow.org", "servicebus.windows.net", "table.core.windows.net", "wandb.ai",
]
CNAME_SUFFIXES = ["edgekey.net", "akamaiedge.net", "trafficmanager.net", "azureedge.net",
                  "cloudapp.azure.com", "privatelink.blob.core.windows.net", "cdn.cloudflare.net"]
PUBLIC_PREFIXES = ["20.", "40.", "52.", "104.", "13.", "151.101.", "185.199.", "140.82."]

ETH_HDR = bytes.fromhex("00155d000001" "123456789abc" "0800")  # dst=gateway, src=node
ETH_HDR_IN = bytes.fromhex("123456789abc" "00155d000001" "0800")


# --------------------------------------------------------------------------- checksums

def _sum16(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    a = array.array("H", data)
    if sys.byteorder == "little":
        a.byteswap()
    return sum(a)


def _fold(s: int) -> int:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


class Payload:
    """Bytes plus their precomputed 16-bit one's-complement partial sum (even offsets)."""
    __slots__ = ("data", "sum")

    def __init__(self, data: bytes):
        self.data = data
        self.sum = _sum16(data)


# --------------------------------------------------------------------------- frame builder

class Writer:
    def __init__(self, path: str):
        self.f = open(path, "wb")
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        self.buf: list[bytes] = []
        self.count = 0
        self.kinds: Counter = Counter()
        self.ip_id = 0

    def frame(self, ts: float, src: bytes, dst: bytes, proto: int, l4: bytes, payload: Payload,
              outbound: bool, kind: str):
        """l4 = TCP/UDP header with checksum 0; fill checksums and append the record."""
        plen = len(l4) + len(payload.data)
        pseudo = (_sum16(src + dst) + proto + plen)
        csum = _fold(pseudo + _sum16(l4) + payload.sum)
        if proto == 17 and csum == 0:
            csum = 0xFFFF
        off = 16 if proto == 6 else 6
        l4 = l4[:off] + struct.pack("!H", csum) + l4[off + 2:]
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + plen, self.ip_id, 0x4000, 64, proto, 0,
                          src, dst)
        iph = iph[:10] + struct.pack("!H", _fold(_sum16(iph))) + iph[12:]
        body = (ETH_HDR if outbound else ETH_HDR_IN) + iph + l4 + payload.data
        sec = int(ts)
        self.buf.append(struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(body), len(body)))
        self.buf.append(body)
        self.count += 1
        self.kinds[kind] += 1
        if len(self.buf) >= 8192:
            self.flush()

    def flush(self):
        self.f.write(b"".join(self.buf))
        self.buf.clear()

    def close(self):
        self.flush()
        self.f.close()


EMPTY = Payload(b"")


def tcp_hdr(sport, dport, seq, ack, flags, win=502) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50,
                       flags, win, 0, 0)


def udp_hdr(sport, dport, length) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + length, 0)


SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01


# --------------------------------------------------------------------------- content

def client_hello(name: str) -> bytes:
    """A real TLS ClientHello for ``name`` as OpenSSL would send it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out := ssl.MemoryBIO(), server_hostname=name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def dns_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"


def dns_pair(name: str, chain: list[str], ip: str) -> tuple[bytes, bytes]:
    """(query, response) DNS messages with id 0 (patched per lookup)."""
    q = struct.pack("!HHHHHH", 0, 0x0100, 1, 0, 0, 0) + dns_name(name) + struct.pack("!HH", 1, 1)
    answers = b""
    owner = b"\xc0\x0c"
    for target in chain:
        rdata = dns_name(target)
        answers += owner + struct.pack("!HHIH", 5, 1, 300, len(rdata)) + rdata
        owner = rdata
    answers += owner + struct.pack("!HHIH", 1, 1, 60, 4) + ipaddress.ip_address(ip).packed
    r = (struct.pack("!HHHHHH", 0, 0x8180, 1, 1 + len(chain), 0, 0) + q[12:] + answers)
    return q, r


def quic_initials() -> list[tuple[str, bytes]]:
    """(SNI, UDP payload) of the client Initials in the bundled Chrome capture."""
    from scapy.all import UDP, rdpcap  # only at start-up, three packets
    wanted = {32: "beacons.gvt2.com", 33: "csp.withgoogle.com", 35: "b1.nel.goog"}
    out = []
    for i, pkt in enumerate(rdpcap(str(QUIC_SOURCE)), start=1):
        if i in wanted:
            out.append((wanted[i], bytes(pkt[UDP].payload)))
    return out


class Name:
    __slots__ = ("name", "chain", "ip", "query", "response", "hello", "kind", "quic")

    def __init__(self, rng: random.Random, idx: int, kind: str, quic=None):
        if quic:
            self.name = quic[0]
        else:
            dom = DOMAINS[idx % len(DOMAINS)]
            self.name = f"{rng.choice(['ws', 'api', 'cdn', 'files', 'acct', 'prod'])}{idx}.{dom}"
        hops = rng.choice([0, 0, 0, 1, 1, 2, 3])
        self.chain = [f"{self.name.split('.')[0]}-h{h}.{rng.choice(CNAME_SUFFIXES)}"
                      for h in range(hops)]
        p = rng.choice(PUBLIC_PREFIXES)
        self.ip = p + ".".join(str(rng.randrange(1, 255)) for _ in range(4 - p.count(".")))
        self.query, self.response = dns_pair(self.name, self.chain, self.ip)
        self.kind = kind
        self.hello = Payload(client_hello(self.name)) if kind == "tls" else None
        self.quic = Payload(quic[1]) if quic else None


# --------------------------------------------------------------------------- flows

def flow(w: Writer, rng: random.Random, nm: Name, client: bytes, cport: int, t0: float,
         upload_heavy: bool, blocks: dict[str, list[Payload]], http_req: Payload | None):
    """Generator: emits one lookup + one connection, yielding between packets."""
    resolver = ipaddress.ip_address(RESOLVER).packed
    server = ipaddress.ip_address(nm.ip).packed
    t = t0
    # DNS lookup (patch a fresh id; the id bytes change the checksum, so rebuild the Payload)
    qid = rng.randrange(65536)
    dport = 1024 + rng.randrange(60000)
    q = Payload(struct.pack("!H", qid) + nm.query[2:])
    r = Payload(struct.pack("!H", qid) + nm.response[2:])
    w.frame(t, client, resolver, 17, udp_hdr(dport, 53, len(q.data)), q, True, "dns")
    yield
    t += 0.0008
    w.frame(t, resolver, client, 17, udp_hdr(53, dport, len(r.data)), r, False, "dns")
    yield
    t += 0.0004

    if nm.kind == "quic":
        qblocks = blocks["quic"]
        w.frame(t, client, server, 17, udp_hdr(cport, 443, len(nm.quic.data)), nm.quic, True,
                "quic")
        yield
        for i in range(rng.randrange(6, 60)):
            t += 0.0003
            down = rng.random() < 0.8
            body = qblocks[i % len(qblocks)]
            if down:
                w.frame(t, server, client, 17, udp_hdr(443, cport, len(body.data)), body, False,
                        "quic")
            else:
                w.frame(t, client, server, 17, udp_hdr(cport, 443, len(body.data)), body, True,
                        "quic")
            yield
        return

    sport = 443 if nm.kind == "tls" else 80
    cs, ss = rng.randrange(1 << 32), rng.randrange(1 << 32)
    kind = nm.kind
    w.frame(t, client, server, 6, tcp_hdr(cport, sport, cs, 0, SYN, 64240), EMPTY, True, kind)
    yield
    t += 0.0009
    w.frame(t, server, client, 6, tcp_hdr(sport, cport, ss, cs + 1, SYN | ACK, 65535), EMPTY,
            False, kind)
    yield
    t += 0.0001
    cs += 1
    ss += 1
    w.frame(t, client, server, 6, tcp_hdr(cport, sport, cs, ss, ACK), EMPTY, True, kind)
    yield
    first = nm.hello if kind == "tls" else http_req
    w.frame(t, client, server, 6, tcp_hdr(cport, sport, cs, ss, ACK | PSH), first, True, kind)
    cs += len(first.data)
    yield
    # bulk: n data segments in the heavy direction, a few in the other, one ACK per 2 segments
    n = rng.randrange(4, 80)
    light = max(1, n // 10) if kind == "tls" else 0
    blks = blocks[kind]
    if kind == "http":  # response header, then n full segments of body
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n" \
               f"Content-Length: {n * MSS}\r\n\r\n".encode()
        w.frame(t, server, client, 6, tcp_hdr(sport, cport, ss, cs, ACK | PSH), Payload(head),
                False, kind)
        ss += len(head)
        yield
    up, down = (n, light) if upload_heavy else (light, n)
    plan = ["u"] * up + ["d"] * down
    if not upload_heavy:
        plan = ["d"] * down + ["u"] * up
    pending = {"u": 0, "d": 0}
    for i, d in enumerate(plan):
        t += 0.00012
        blk = blks[i % len(blks)]
        if d == "u":
            w.frame(t, client, server, 6, tcp_hdr(cport, sport, cs, ss, ACK), blk, True, kind)
            cs += len(blk.data)
        else:
            w.frame(t, server, client, 6, tcp_hdr(sport, cport, ss, cs, ACK), blk, False, kind)
            ss += len(blk.data)
        pending[d] += 1
        yield
        if pending[d] == 2:
            pending[d] = 0
            if d == "u":
                w.frame(t, server, client, 6, tcp_hdr(sport, cport, ss, cs, ACK), EMPTY, False,
                        kind)
            else:
                w.frame(t, client, server, 6, tcp_hdr(cport, sport, cs, ss, ACK), EMPTY, True,
                        kind)
            yield
    t += 0.001
    w.frame(t, client, server, 6, tcp_hdr(cport, sport, cs, ss, FIN | ACK), EMPTY, True, kind)
    yield
    t += 0.0008
    w.frame(t, server, client, 6, tcp_hdr(sport, cport, ss, cs + 1, FIN | ACK), EMPTY, False,
            kind)
    yield
    w.frame(t, client, server, 6, tcp_hdr(cport, sport, cs + 1, ss + 1, ACK), EMPTY, True, kind)


def generate(packets: int, out: str, seed: int = 1, names: int = 400) -> dict:
    rng = random.Random(seed)
    quic = quic_initials()
    table: list[Name] = []
    for i in range(names):
        r = rng.random()
        if r < 0.06:
            table.append(Name(rng, i, "quic", quic=quic[i % len(quic)]))
        elif r < 0.16:
            table.append(Name(rng, i, "http"))
        else:
            table.append(Name(rng, i, "tls"))
    # TLS bulk: each segment is one whole application_data record; QUIC: short-header packets
    blocks = {
        "tls": [Payload(b"\x17\x03\x03" + struct.pack("!H", MSS - 5) + rng.randbytes(MSS - 5))
                for _ in range(32)],
        "http": [Payload(rng.randbytes(MSS)) for _ in range(32)],
        "quic": [Payload(bytes([0x40 | rng.randrange(64)]) + rng.randbytes(1199))
                 for _ in range(32)],
    }
    clients = [ipaddress.ip_address(int(NODE_NET.network_address) + 1 + i).packed
               for i in range(8)]
    w = Writer(out)
    active: list = []
    t = 1_700_000_000.0
    port = 32768
    flows = Counter()
    upload_heavy = 0
    while w.count < packets:
        while len(active) < CONCURRENCY:
            nm = table[int(rng.paretovariate(1.2)) % len(table)] if rng.random() < 0.5 \
                else rng.choice(table)
            port = 32768 + (port - 32768 + 1) % 28000
            heavy = nm.kind == "tls" and rng.random() < 0.15
            upload_heavy += heavy
            req = None
            if nm.kind == "http":
                req = Payload((f"GET /pkg/{rng.randrange(10**6)}.whl HTTP/1.1\r\nHost: {nm.name}\r\n"
                               "User-Agent: pip/24.0\r\nAccept: */*\r\n\r\n").encode())
            t += 0.00005
            active.append(flow(w, rng, nm, rng.choice(clients), port, t, heavy, blocks, req))
            flows[nm.kind] += 1
        i = rng.randrange(len(active))
        try:
            next(active[i])
        except StopIteration:
            active[i] = active[-1]
            active.pop()
    w.close()  # flows still open at the end stay open (realistic for a capture cut)
    return {"packets": w.count, "by_kind": dict(w.kinds), "flows": dict(flows),
            "upload_heavy_flows": upload_heavy, "names": len(table),
            "cname_names": sum(1 for n in table if n.chain)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--out", default="/tmp/mix.pcap")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--names", type=int, default=400)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    info = generate(a.packets, a.out, a.seed, a.names)
    dt = time.perf_counter() - t0
    size = os.path.getsize(a.out)
    n = info["packets"]
    print(f"wrote {a.out}: {n} packets, {size / 1e6:.1f} MB in {dt:.1f}s (seed {a.seed})")
    for k, v in sorted(info["by_kind"].items(), key=lambda kv: -kv[1]):
        print(f"  {k:5} packets {v:9d}  {100 * v / n:5.1f} %")
    print(f"  flows {info['flows']}  upload-heavy {info['upload_heavy_flows']}")
    print(f"  names {info['names']} ({info['cname_names']} answered through CNAME chains)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
