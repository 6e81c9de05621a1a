"""Floods (issue #6): a node opening flows to huge numbers of random destinations (SYN scan),
a flood of tiny UDP flows, a DNS flood of unique names. Each is a deterministic capture
replayed through the real CLI in a child process, whose own peak RSS comes from `os.wait4`.

What must hold: memory is bounded by the configured caps (flow table, name cache, pending
queries, detector state), every cap overflow is counted in `table_evictions_total`,
`denied_destinations_total` has at most `max_destination_labels` + "other" label values,
every flow is reported exactly once (flow events == `flows_total`). Throughput under floods
is measured by bench/bench_floods.py (and a slow ratio check here), never by default.

Memory bounds (MiB, ru_maxrss): the baseline is the same command on a 1,000-packet scan —
interpreter, imports, parsed policy and the bundled service-tags prefix table, ~90 MiB on
this machine. On top of that the caps allow, with the defaults: 100k flows at ~0.9 KiB
(Flow with its slots, two 5-tuple keys, address strings, two table entries) ~= 90 MiB, and
detector state at 50k keys per table (direct_ip and bulk_upload fill under a scan) plus the
two 65,536-entry address caches ~= 30 MiB; with allocator slack under LRU churn that is the
~140 MiB of growth `GROWTH_DEFAULTS` allows. The issue's absolute bound is 250 MB for a
600k-flow scan (`-m slow`); measured figures are in docs/hardening.md.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.hardening import floods

GROWTH_DEFAULTS = 140     # MiB over the baseline, default caps (see above)
ABSOLUTE = 250            # MiB, the bound for the 600k scan


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("floods")


@pytest.fixture(scope="module")
def baseline(work) -> floods.Run:
    d = work / "baseline"
    d.mkdir()
    floods.syn_scan(d / "tiny.pcap", 1_000)
    run = floods.replay(d, d / "tiny.pcap")
    assert run.returncode == 0, run.stderr
    return run


def caps_config(path: Path, **caps) -> Path:
    lines = [f"{k}: {v}" for k, v in caps.items() if k != "max_keys"]
    if "max_keys" in caps:
        lines.append(f"detectors: {{max_keys: {caps['max_keys']}}}")
    path.write_text("\n".join(lines) + "\n")
    return path


def check_accounting(run: floods.Run, events: Path, labels_cap: int = 100) -> None:
    """Every flow reported once; bounded destination labels; nothing malformed or internal."""
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    flows_total = run.metric("egress_auditor_flows_total")
    assert flows_total > 0 and floods.flow_events(events) == flows_total
    dests = run.label_values("egress_auditor_denied_destinations_total", "destination")
    assert len(dests) <= labels_cap + 1
    assert len(dests - {"other"}) <= labels_cap
    assert run.metric("egress_auditor_packets_malformed_total") == 0


def pps(run: floods.Run, packets: int) -> float:
    return packets / run.wall


@pytest.mark.parametrize("size,cap", [
    pytest.param(24_000, 20_000, id="24k-past-a-20k-cap"),
    pytest.param(120_000, None, id="120k-past-the-default-100k-cap", marks=pytest.mark.slow)])
def test_syn_scan_past_the_flow_cap_stays_bounded_and_reports_every_flow(work, baseline, size, cap):
    d = work / f"syn{size}"
    d.mkdir()
    n = floods.syn_scan(d / "scan.pcap", size)          # 20% past the flow cap
    extra = ["--config", str(caps_config(d / "caps.yaml", max_flows=cap, max_keys=cap // 2))] if cap else []
    run = floods.replay(d, d / "scan.pcap", *extra)
    check_accounting(run, d / "events.jsonl")
    assert run.metric("egress_auditor_flows_total") == n
    assert run.metric("egress_auditor_table_evictions_total", table="flows") == n - (cap or 100_000)
    assert run.metric("egress_auditor_table_evictions_total", table="detector_state") > 0
    assert len(run.label_values("egress_auditor_denied_destinations_total", "destination")) == 101
    # Nearly all denied (a few random addresses fall in Azure service-tag ranges); every
    # violation is counted under some destination label, the overflow under "other".
    denied = run.metric("egress_auditor_violations_total")
    assert denied > 0.99 * n
    assert run.metric("egress_auditor_denied_destinations_total") == denied
    assert run.metric("egress_auditor_denied_destinations_total", destination="other") == denied - 100
    growth = run.peak_rss_mib - baseline.peak_rss_mib
    print(f"syn scan {n:,} flows: peak RSS {run.peak_rss_mib:.0f} MiB "
          f"(baseline {baseline.peak_rss_mib:.0f}), {pps(run, n):,.0f} packets/s")
    assert growth < GROWTH_DEFAULTS, (run.peak_rss_mib, baseline.peak_rss_mib)
    assert run.peak_rss_mib < ABSOLUTE


def test_memory_plateaus_once_the_caps_are_full(work):
    """With small caps, a 3x longer flood must not cost more memory: nothing grows past a cap.
    (Caps this small are full after a few thousand flows; 15k vs 45k flows isolates growth.)"""
    d = work / "plateau"
    d.mkdir()
    cfg = caps_config(d / "caps.yaml", max_flows=5_000, max_dns_cache=5_000, max_pending_queries=1_000,
                      max_keys=5_000)
    peaks, rates = [], []
    for n in (15_000, 45_000):
        floods.udp_flood(d / f"udp{n}.pcap", n)
        run = floods.replay(d, d / f"udp{n}.pcap", "--config", str(cfg))
        check_accounting(run, d / "events.jsonl")
        assert run.metric("egress_auditor_flows_total") == n
        assert run.metric("egress_auditor_table_evictions_total", table="flows") == n - 5_000
        assert run.metric("egress_auditor_table_evictions_total", table="detector_state") > 0
        peaks.append(run.peak_rss_mib)
        rates.append(pps(run, n))
    print(f"tiny UDP flows, small caps: peak RSS {peaks[0]:.0f} MiB at 15k, {peaks[1]:.0f} MiB at 45k; "
          f"{rates[0]:,.0f} vs {rates[1]:,.0f} packets/s (throughput: bench/bench_floods.py)")
    assert peaks[1] - peaks[0] < 12, peaks      # allocator noise only, not per-flow growth


def test_dns_flood_of_unique_names_caps_cache_pending_and_detector_state(work):
    d = work / "dns"
    d.mkdir()
    cfg = caps_config(d / "caps.yaml", max_dns_cache=4_000, max_pending_queries=2_000, max_keys=3_000)
    names = 30_000
    n = floods.dns_flood(d / "dns.pcap", names)
    run = floods.replay(d, d / "dns.pcap", "--config", str(cfg))
    check_accounting(run, d / "events.jsonl")
    answered = (names + 1) // 2
    # Each answered query teaches one (client, IP) entry; the cache keeps the newest 4,000.
    assert run.metric("egress_auditor_table_evictions_total", table="dns_cache") == answered - 4_000
    assert run.metric("egress_auditor_dns_cache_entries") <= 4_000
    # Unanswered queries stay pending (30 s timeout; the flood sends 5,000/s) and overflow.
    assert run.metric("egress_auditor_table_evictions_total", table="dns_pending") > 0
    # One dns_tunneling key per (querier, registered domain): all unique, so capped.
    assert run.metric("egress_auditor_table_evictions_total", table="detector_state") > 0
    assert run.metric("egress_auditor_dns_responses_total") == answered
    print(f"dns flood {names:,} names ({n:,} packets): peak RSS {run.peak_rss_mib:.0f} MiB, "
          f"{pps(run, n):,.0f} packets/s")
    assert run.peak_rss_mib < ABSOLUTE


@pytest.mark.slow     # a timing ratio: a benchmark's job (bench/bench_floods.py), kept as a slow check
def test_flood_throughput_against_the_normal_mix(work, baseline):
    """Packets/s of a flood vs the realistic mix of the same size, same machine, same run.

    A scan packet is a whole flow: judged, denied (a violation event), a direct_ip finding
    and a flow event — three JSON documents — where the mix has one flow per ~75 packets.
    So the fair floor is not the mix's rate; what must not happen is a collapse (per-packet
    cost growing with table size). 0.03x the mix would be ~3,000 packets/s here; measured
    ~0.1x (docs/hardening.md)."""
    d = work / "mix"
    d.mkdir()
    n = 60_000
    floods.normal_mix(d / "mix.pcap", n)
    floods.syn_scan(d / "scan.pcap", n)
    mix = floods.replay(d, d / "mix.pcap")
    assert mix.returncode == 0, mix.stderr
    scan = floods.replay(d, d / "scan.pcap")
    check_accounting(scan, d / "events.jsonl")
    ratio = pps(scan, n) / pps(mix, n)
    print(f"{n:,} packets: mix {pps(mix, n):,.0f}/s, scan {pps(scan, n):,.0f}/s, ratio {ratio:.2f}")
    assert ratio >= 0.03, ratio


@pytest.mark.slow
def test_600k_flow_syn_scan_with_default_caps_stays_under_250_mb(work, baseline):
    d = work / "syn600"
    d.mkdir()
    n = floods.syn_scan(d / "scan.pcap", 600_000)
    run = floods.replay(d, d / "scan.pcap", timeout=900)
    check_accounting(run, d / "events.jsonl")
    assert run.metric("egress_auditor_flows_total") == n
    assert run.metric("egress_auditor_table_evictions_total", table="flows") == n - 100_000
    print(f"syn scan {n:,} flows: peak RSS {run.peak_rss_mib:.0f} MiB, {pps(run, n):,.0f} packets/s")
    assert run.peak_rss_mib < ABSOLUTE


@pytest.mark.slow
def test_600k_tiny_udp_flows_and_200k_name_dns_flood_with_default_caps(work):
    d = work / "big"
    d.mkdir()
    n = floods.udp_flood(d / "udp.pcap", 600_000)
    run = floods.replay(d, d / "udp.pcap", timeout=900)
    check_accounting(run, d / "events.jsonl")
    assert run.metric("egress_auditor_table_evictions_total", table="flows") == n - 100_000
    print(f"udp flood {n:,} flows: peak RSS {run.peak_rss_mib:.0f} MiB, {pps(run, n):,.0f} packets/s")
    assert run.peak_rss_mib < ABSOLUTE
    names = 240_000
    n = floods.dns_flood(d / "dns.pcap", names)
    run = floods.replay(d, d / "dns.pcap", timeout=900)
    check_accounting(run, d / "events.jsonl")
    # (random answer addresses may repeat a few times in 120k draws, so not an exact count)
    assert run.metric("egress_auditor_table_evictions_total", table="dns_cache") > 0
    assert run.metric("egress_auditor_dns_cache_entries") <= 100_000
    assert run.metric("egress_auditor_table_evictions_total", table="dns_pending") > 0
    assert run.metric("egress_auditor_table_evictions_total", table="detector_state") > 0
    print(f"dns flood {names:,} names: peak RSS {run.peak_rss_mib:.0f} MiB, {pps(run, n):,.0f} packets/s")
    assert run.peak_rss_mib < ABSOLUTE


def test_long_cname_chains_cannot_grow_the_name_cache_past_its_byte_cap():
    # 16-name chains of 250-character names: 65,536 such entries held 329 MiB under the
    # entry cap alone (the sidecar's memory limit is 384 MiB). Capped in bytes too, least
    # recent out first, every eviction counted.
    from auditor.telemetry import Table, Telemetry
    from auditor.track import names
    tel = Telemetry()
    cache = names.NameCache(100_000, tel, max_bytes=1 << 20)
    for i in range(2_000):
        chain = tuple(f"{i:08d}{'x' * 230}.ex{k:02d}.com" for k in range(16))
        cache.learn("10.0.0.5", {f"198.51.{i // 256}.{i % 256}": chain}, {}, 0.0)
        assert cache.bytes <= 1 << 20
    assert 0 < len(cache) < 2_000 and tel.evictions[Table.DNS_CACHE] == 2_000 - len(cache)
    newest = cache.lookup("10.0.0.5", "198.51.7.207", 1.0)        # i = 1999: kept
    assert newest is not None and newest[0].startswith("00001999")
    assert cache.lookup("10.0.0.5", "198.51.0.0", 1.0) is None      # i = 0: evicted
    cache.expire(10_000.0)
    assert len(cache) == 0 and cache.bytes == 0
