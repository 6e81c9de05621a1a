"""Policy engine throughput: service-tags load time, and judgements/s for names and for IPs.

    python bench/bench_policy.py [--n 1000000] [--runs 5] [--service-tags F]

Deterministic (seed 2025). Names mix exact hits, wildcard hits (any depth) and misses; IPs mix
addresses inside service tags (v4 and v6) and outside any tag. Targets on a 2-core machine:
load < 1 s, >= 200k judgements/s for each kind.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from auditor.policy import load_policy
from auditor.policy import servicetags
from auditor.policy.servicetags import ServiceTags, default_path, parse_prefix
from auditor.policy.verdict import Judge

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "policies" / "workspace-approved.yaml"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--service-tags", default=None)
    args = ap.parse_args()
    path = Path(args.service_tags) if args.service_tags else default_path()

    parse_times, load_times = [], []
    for _ in range(args.runs):
        t = time.perf_counter()
        json.loads(path.read_bytes())
        parse_times.append(time.perf_counter() - t)
        servicetags._LOADED.clear()      # time a real parse, not the in-process cache
        t = time.perf_counter()
        tags = ServiceTags.load(path, region="eastus")
        load_times.append(time.perf_counter() - t)
    print(f"service tags: {path.name} ({path.stat().st_size / 1e6:.1f} MB), "
          f"{len(tags.table)} intervals")
    print(f"  json.loads alone: median {statistics.median(parse_times) * 1000:.0f} ms")
    print(f"  full load:        median {statistics.median(load_times) * 1000:.0f} ms "
          f"(min {min(load_times) * 1000:.0f}, max {max(load_times) * 1000:.0f}) over {args.runs} runs")

    judge = Judge(load_policy(EXAMPLE), tags, include=("python-packages", "vscode", "huggingface"))
    rng = random.Random(2025)
    hits = ["pypi.org", "serpapi.com", "anaconda.com", "docker.io", "code.visualstudio.com"]
    wild = ["files.pythonhosted.org", "a.b.c.huggingface.co", "repo.anaconda.org",
            "x.y.vscode-cdn.net", "download.pytorch.org", "z.gallerycdn.vsassets.io"]
    miss = ["example.org", "evil.attacker.net", "a.b.c.d.e.f.example.com", "pypi.org.evil.com",
            "contoso.com", "storage.blob.core.windows.net"]

    def name() -> str:
        r = rng.random()
        pool = hits if r < 0.3 else wild if r < 0.6 else miss
        base = rng.choice(pool)
        return base if rng.random() < 0.5 or pool is hits else f"n{rng.randrange(10**6)}.{base}"
    names = [name() for _ in range(args.n)]

    doc = json.loads(path.read_bytes())
    inside = [p for v in doc["values"] if v["name"].startswith(("AzureMachineLearning", "AzureCloud",
              "AzureActiveDirectory", "Storage")) for p in v["properties"]["addressPrefixes"]]
    import ipaddress

    def ip() -> str:
        if rng.random() < 0.5:
            bits, first, last = parse_prefix(rng.choice(inside))
            return str(ipaddress.ip_address(rng.randint(first, last)))
        if rng.random() < 0.8:
            return ".".join(str(rng.randrange(256)) for _ in range(4))
        return str(ipaddress.IPv6Address(rng.getrandbits(128)))
    ips = [ip() for _ in range(args.n)]

    j = judge.judge
    t = time.perf_counter()
    allowed = sum(j("", 443, "tcp", n, "sni").allowed for n in names)
    dt = time.perf_counter() - t
    print(f"names: {args.n / dt:,.0f} judgements/s ({allowed / args.n:.0%} allowed)")
    t = time.perf_counter()
    allowed = sum(j(a, 443, "tcp", None, "none").allowed for a in ips)
    dt = time.perf_counter() - t
    print(f"IPs:   {args.n / dt:,.0f} judgements/s ({allowed / args.n:.0%} allowed)")


if __name__ == "__main__":
    main()
