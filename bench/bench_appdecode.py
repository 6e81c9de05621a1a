"""Micro-benchmark of the application decoders on real capture payloads (a script, not a test).

    python bench/bench_appdecode.py

Prints microseconds per message: our DNS parser (the compiled twin when built, and the
pure-Python reference) vs dns.message.from_wire on every DNS response of the real captures
and of the benchmark mix, ClientHello parsing (both twins) on the captures' and the mix's
hellos, and QUIC Initial decrypt+parse.
"""
import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

import dns.message

import gen_mix
from auditor.decode import dns as d
from auditor.decode import quic, tls

REAL = Path(__file__).resolve().parent.parent / "pcaps" / "real"


def mix_payloads(names: int = 200) -> tuple[list[bytes], list[bytes]]:
    """The mix's own DNS messages (query and answer, CNAME chains of 0-3 hops) and hellos."""
    dns_msgs, hellos = [], []
    for i in range(names):
        name = f"svc{i}.example{i % 7}.com"
        dns_msgs += gen_mix.dns_pair(name, [f"c{j}.{name}" for j in range(i % 4)],
                                     f"20.{i % 250}.1.{i % 200}")
        if i < 50:
            hellos.append(gen_mix.client_hello(name))
    return dns_msgs, hellos


def fields(path, flt, field):
    out = subprocess.run(["tshark", "-r", str(path), "-Y", flt, "-T", "fields", "-e", field],
                         capture_output=True, text=True, check=False).stdout
    # One line per packet; a field that occurs twice in one packet is joined by commas.
    return [bytes.fromhex(x.replace(":", "")) for x in re.split(r"[\s,]+", out) if x]


def per_call(fn, items, min_time=1.0):
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < min_time:
        for x in items:
            fn(x)
        n += len(items)
    return (time.perf_counter() - t0) / n * 1e6


def main():
    files = sorted(p for p in REAL.iterdir() if p.suffix != ".md")
    responses = [p for f in files for p in fields(f, "udp.port == 53 && dns.flags.response == 1",
                                                  "udp.payload")]
    typical = [p for p in responses
               if (m := d.parse(p)) and m.answers and {a.rtype for a in m.answers} <= {1, 5, 28}]
    mix_dns, mix_hellos = mix_payloads()
    compiled = "compiled" if d.parse is not d.py_parse else "pure (not built)"
    for label, items in (("all DNS responses", responses), ("A/AAAA/CNAME only", typical),
                         ("benchmark mix", mix_dns)):
        ours = per_call(d.parse, items)
        pure = per_call(d.py_parse, items)
        theirs = per_call(lambda p: dns.message.from_wire(p, keyring=False), items, 0.5)
        print(f"DNS {label:20s} n={len(items):4d}  ours {ours:6.2f} us/msg ({compiled}), "
              f"pure {pure:6.2f}   dnspython {theirs:7.1f} us/msg   x{theirs / ours:.0f}")
    hellos = [p for f in files for p in fields(f, "tls.handshake.type == 1 && tcp",
                                               "tcp.payload")]
    hellos = [h for h in hellos if isinstance(tls.parse_records(h), tls.ClientHello)]
    for label, items in (("captures", hellos), ("benchmark mix", mix_hellos)):
        print(f"TLS {label:20s} n={len(items):4d}  ours {per_call(tls.parse_records, items):6.2f}"
              f" us/hello ({compiled}), pure {per_call(tls.py_parse_records, items):6.2f}")
    initials = [p for f in files if "quic" in f.name
                for p in fields(f, "quic.long.packet_type == 0 && quic.version != 0",
                                "udp.payload")]
    initials = [p for p in initials if isinstance(quic.parse_initial(p), quic.QuicInitial)]
    print(f"QUIC parse_initial     n={len(initials):4d}  "
          f"{per_call(quic.parse_initial, initials):6.2f} us/datagram (keys cached)")
    print(f"python {sys.version.split()[0]}")


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    main()
