"""Differential test: our L2-L4 decoder against tshark 4.0 over all 51 real captures.

Compared per frame: IP length (ip.len / 40 + ipv6.plen), L4 protocol, TCP/UDP ports, TCP
flags and raw sequence number. Defragmentation is off in tshark so a fragment shows what
the fragment itself carries (like our decoder). The first disagreement of each file is shown.
Tunnels: the outermost IP header is compared (tshark's first occurrence); an MPLS frame has
none of its own, so the IP packet after its label stack is.
"""
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from auditor.decode import tunnel
from auditor.decode.packet import Fragment, Packet, Tunnel, decode
from auditor.sources.pcap import read_frames

FIELDS = ["frame.number", "ip.len", "ip.proto", "ipv6.plen", "ipv6.nxt", "tcp.srcport",
          "tcp.dstport", "udp.srcport", "udp.dstport", "tcp.flags", "tcp.seq_raw"]


def tshark_rows(path):
    if shutil.which("tshark") is None:
        pytest.fail("tshark is not installed: install it (apt-get install tshark) to run "
                    "the differential tests")
    cmd = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "occurrence=f",
           "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE"]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout   # stderr: root warning
    return [dict(zip(FIELDS, line.split("\t"))) for line in out.splitlines()]


def _num(s):
    return int(s, 0) if s else 0


def disagreements(pk, t):
    """Ways our decode of one frame differs from tshark's fields for it."""
    if isinstance(pk, Fragment):  # compare the IP facts; L4 waits for reassembly
        stated = _num(t["ip.len"]) if pk.version == 4 else _num(t["ipv6.plen"]) + 40
        return [] if stated == pk.ip_len else [f"fragment ip_len {pk.ip_len} != {stated}"]
    if not isinstance(pk, Packet):
        if t["ip.len"] or t["ipv6.plen"]:
            return [f"we return {pk!r}, tshark decodes IP (ip.len={t['ip.len']!r}, "
                    f"ipv6.plen={t['ipv6.plen']!r})"]
        return []
    out = []
    if pk.version == 4:
        if _num(t["ip.len"]) not in (pk.ip_len, 0):    # 0: TSO, we fall back to captured
            out.append(f"ip_len {pk.ip_len} != ip.len {t['ip.len']}")
        if _num(t["ip.proto"]) != pk.proto:
            out.append(f"proto {pk.proto} != ip.proto {t['ip.proto']}")
    else:
        if t["ipv6.plen"] and _num(t["ipv6.plen"]) and _num(t["ipv6.plen"]) + 40 != pk.ip_len:
            out.append(f"ip_len {pk.ip_len} != 40 + ipv6.plen {t['ipv6.plen']}")
    if pk.proto == 6:
        theirs = (_num(t["tcp.srcport"]), _num(t["tcp.dstport"]), _num(t["tcp.flags"]),
                  _num(t["tcp.seq_raw"]))
        if (pk.sport, pk.dport, pk.tcp_flags, pk.seq) != theirs:
            out.append(f"tcp (sport, dport, flags, seq) {(pk.sport, pk.dport, pk.tcp_flags, pk.seq)}"
                       f" != tshark {theirs}")
    elif pk.proto == 17:
        theirs = (_num(t["udp.srcport"]), _num(t["udp.dstport"]))
        if (pk.sport, pk.dport) != theirs:
            out.append(f"udp ports {(pk.sport, pk.dport)} != tshark {theirs}")
    return out


def test_decoder_agrees_with_tshark_on_all_real_captures(real_pcaps):
    files = sorted(real_pcaps.glob("*.pcap*"))
    assert len(files) == 54          # pcaps/real/SOURCES.md: 51 third-party + 3 recorded here
    with ThreadPoolExecutor(4) as pool:
        all_rows = dict(zip(files, pool.map(tshark_rows, files)))
    problems = []
    compared = 0
    for path in files:
        rows = all_rows[path]
        frames = list(read_frames(path))
        if len(frames) != len(rows):
            problems.append(f"{path.name}: {len(frames)} frames, tshark {len(rows)}")
            continue
        for (ts, lt, frame, wirelen), t in zip(frames, rows):
            pk = decode(lt, frame, ts, wirelen)
            if pk.__class__ is Tunnel and pk.proto == -1:     # MPLS: no carrier of its own
                pk = tunnel.layers(pk)[0] if tunnel.layers(pk) else None
            diff = disagreements(pk, t)
            compared += 1
            if diff:
                problems.append(f"{path.name} frame {t['frame.number']}: " + "; ".join(diff))
                break
    assert not problems, "decoder disagrees with tshark:\n" + "\n".join(problems)
    assert compared > 10_000
