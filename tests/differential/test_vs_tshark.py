"""Differential tests: our JSONL audit events vs tshark 4.0, over every bundled real capture.

For each capture in ``pcaps/real/`` we run ``egress-auditor replay FILE --events OUT.jsonl
--node-network 0.0.0.0/0 --node-network ::/0`` (every flow is egress) once, then compare:

- TLS / QUIC SNI per flow key                (``tls.client.server_name`` on ``flow`` events)
- first HTTP Host per flow key               (``url.domain`` on ``flow`` events)
- the multiset of DNS answer sets            (``dns`` events)
- packets and IP bytes each way per conversation (``source/destination.packets/bytes``)

Where tshark is wrong or decodes something we deliberately do not, the comparison is narrowed
by an explicit entry in ``KNOWN_DIFFERENCES`` (evidence in README.md). A capture with no facts
of a kind is still compared (both sides must be empty). ``test_harness_*`` check the reference
side alone, against what ``pcaps/real/SOURCES.md`` says each capture contains.
"""
from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

import pytest

from . import tshark as ts

REAL = Path(__file__).resolve().parents[2] / "pcaps" / "real"
# Shapes no public capture covers, made by the generator beside them and compared the same way
# (kept apart so pcaps/real/ stays recordings): tunnels (pcaps/tunnels/make_tunnels.py) and
# DNS/time edge cases (pcaps/crafted/gen_dns_edges.py).
SYNTHETIC = REAL.parent / "tunnels"
CRAFTED = REAL.parent / "crafted"
_REAL_CAPTURES = sorted(p.name for p in REAL.iterdir() if p.is_file() and p.name != "SOURCES.md")
_CRAFTED_CAPTURES = sorted(p.name for p in CRAFTED.glob("*.pcap"))
PATHS = {name: REAL / name for name in _REAL_CAPTURES}
PATHS.update({p.name: p for d in (SYNTHETIC, CRAFTED) for p in d.glob("*.pcap")})
CAPTURES = sorted(PATHS)


def path(capture: str) -> Path:
    return PATHS[capture]

# tshark (Wireshark 4.0) is the reference peer: without it these tests fail, never skip.
assert shutil.which("tshark"), "tshark is required (bash scripts/install-test-deps.sh)"

# file -> {aspect: reason}. Aspects: "dns", "quic_sni". Each entry narrows exactly one comparison,
# as implemented where the aspect is read below; README.md has the evidence for each.
KNOWN_DIFFERENCES: dict[str, dict[str, str]] = {
    "dnstunnel-iodine-null.pcap": {
        "dns": "iodine labels carry raw bytes >= 0x80; tshark prints invalid UTF-8 as U+FFFD "
               "(and valid sequences as characters), we escape each byte (\\DDD). For those "
               "names the ASCII characters must match and each non-ASCII character of "
               "tshark's matches a run of escaped bytes of ours",
    },
    "ppp-linktype9-ipv4.pcap": {
        "quic_sni": "the one frame is a QUIC draft-29 (0xff00001d) Initial; tshark decrypts "
                    "drafts, we read QUIC v1 and v2 only (RFC 9000/9369), so its SNI 'server4' "
                    "is not compared (the PPP framing, addresses and bytes are)",
    },
}
# DNS carriers compared: on UDP/TCP and inside cleartext HTTP/2 (DoH over h2c, track.h2c).
DNS_CARRIERS = ("udp", "tcp", "http2")
TIME_TOLERANCE = 0.001  # seconds, for matching a conversation's start
EDGE_TOLERANCE = 2e-6   # seconds: event.start/end are printed to the microsecond


def known(capture: str, aspect: str) -> bool:
    return aspect in KNOWN_DIFFERENCES.get(capture, {})


# --------------------------------------------------------------------------- running ours

_RUNS: dict[str, list[dict]] = {}


@pytest.fixture(scope="session")
def replay_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("replay")


def replay(capture: str, out_dir: Path) -> list[dict]:
    """Our events for one capture (the replay runs once per session per capture)."""
    if capture in _RUNS:
        return _RUNS[capture]
    out = out_dir / (capture + ".jsonl")
    exe = shutil.which("egress-auditor")
    base = [exe] if exe else [sys.executable, "-m", "auditor"]
    cmd = [*base, "replay", str(PATHS[capture]), "--events", str(out),
           "--node-network", "0.0.0.0/0", "--node-network", "::/0"]
    # Several captures are loopback traffic standing in for remote hosts: judge it as egress.
    env = dict(os.environ, EGRESS_AUDITOR_JUDGE_LOOPBACK="true")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    # Damaged files too: every readable packet is audited, a warning is printed, exit 0.
    if proc.returncode != 0 or not out.exists():
        pytest.fail(f"{capture}: `{' '.join(cmd)}` exited {proc.returncode}"
                    f"{'' if out.exists() else ' and wrote no events file'}\n"
                    f"stderr: {proc.stderr[-1500:]}", pytrace=False)
    events = []
    for n, line in enumerate(out.read_text().splitlines(), 1):
        if line.strip():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError as e:
                pytest.fail(f"{capture}: {out}:{n} is not JSON ({e}): {line[:200]}",
                            pytrace=False)
    _RUNS[capture] = events
    return events


def get(ev: dict, dotted: str, default=None):
    """ECS field from a nested event (a literal dotted key is accepted too)."""
    if dotted in ev:
        return ev[dotted]
    cur = ev
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur


def action(ev: dict) -> str | None:
    return get(ev, "event.action")


def our_key(ev: dict) -> ts.FlowKey | None:
    try:
        return ts.FlowKey(str(get(ev, "network.transport")).lower(),
                          ts._ip(get(ev, "source.ip")), int(get(ev, "source.port")),
                          ts._ip(get(ev, "destination.ip")), int(get(ev, "destination.port")))
    except (TypeError, ValueError):
        return None


def _ts(value) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def flows(events) -> list[dict]:
    return [e for e in events if action(e) == "flow"]


def _diff(capture, what, theirs, ours, limit=15) -> str:
    lines = [f"{capture}: {what} differ"]
    for key in sorted(set(theirs) | set(ours), key=str)[:200]:
        t, o = theirs.get(key), ours.get(key)
        if t != o:
            lines.append(f"  flow {key}: tshark said {t!r}, we said {o!r}")
            if len(lines) > limit:
                lines.append("  ...")
                break
    return "\n".join(lines)


# --------------------------------------------------------------------------- differential

@pytest.mark.parametrize("capture", CAPTURES)
def test_sni_matches_tshark(capture, replay_dir):
    theirs = ts.sni_by_flow(PATHS[capture])
    if known(capture, "quic_sni"):
        theirs = {k: v for k, v in theirs.items() if k.transport != "udp"}
    ours: dict = {}
    bad_source = []
    for ev in flows(replay(capture, replay_dir)):
        sni = get(ev, "tls.client.server_name")
        key = our_key(ev)
        if not sni or key is None or key in ours:
            continue
        ours[key] = str(sni).lower().rstrip(".")
        src = get(ev, "egress_auditor.name_source")
        # Through a SOCKS proxy the flow is named `socks`, through an HTTP CONNECT by its
        # Host (what starts the stream); the SNI is recorded all the same.
        want = ("quic_sni" if key.transport == "udp" else "socks" if get(ev, "egress_auditor.socks")
                else "http_host" if get(ev, "url.domain") else "sni")
        if src != want:
            bad_source.append(f"  flow {key}: name_source {src!r}, expected {want!r}")
    assert ours == theirs, _diff(capture, "TLS/QUIC SNIs", theirs, ours)
    assert not bad_source, f"{capture}: wrong egress_auditor.name_source\n" + "\n".join(bad_source)


@pytest.mark.parametrize("capture", CAPTURES)
def test_first_http_host_matches_tshark(capture, replay_dir):
    """url.domain = the first request's Host, compared lower-cased with port/brackets stripped
    on both sides (ECS url.domain carries no port)."""
    theirs = ts.first_http_host_by_flow(PATHS[capture])
    ours = {}
    for ev in flows(replay(capture, replay_dir)):
        dom, key = get(ev, "url.domain"), our_key(ev)
        if dom and key is not None and key not in ours:
            ours[key] = ts.normalise_host(str(dom))
    assert ours == theirs, _diff(capture, "first HTTP Host per flow", theirs, ours)


@pytest.mark.parametrize("capture", CAPTURES)
def test_socks_targets_match_tshark(capture, replay_dir):
    """egress_auditor.socks (version, target, port) = tshark's first SOCKS request per flow."""
    theirs = ts.socks_targets(path(capture))
    ours = {}
    for ev in flows(replay(capture, replay_dir)):
        socks, key = get(ev, "egress_auditor.socks"), our_key(ev)
        if socks and key is not None and key not in ours:
            ours[key] = (socks["version"], socks["target"], socks["target_port"])
    assert ours == theirs, _diff(capture, "SOCKS targets", theirs, ours)


def _our_dns(ev) -> tuple:
    answers = set()
    for ans in get(ev, "dns.answers") or []:
        rtype = ans.get("type")
        if isinstance(rtype, int):
            rtype = ts.DNS_TYPES.get(rtype, str(rtype))
        rtype = str(rtype).upper()
        if rtype in ("A", "AAAA", "CNAME") and ans.get("data") is not None:
            answers.add(ts._norm_rdata(rtype, str(ans["data"])))
    name = ts.norm_name(str(get(ev, "dns.question.name") or ""))
    return get(ev, "dns.id"), name, frozenset(answers)


_RAW_RUN_THEIRS = re.compile(r"[^\x00-\x7f]+")
_RAW_RUN_OURS = re.compile(r"(?:\\\d{3}|\\x[0-9a-fA-F]{2}|[^\x00-\x7f])+")


def _non_ascii_match(tname: str, oname: str) -> bool:
    """tshark's rendering of a label with raw bytes (invalid UTF-8 -> U+FFFD, valid sequences
    -> the character, then lower-cased by us) vs ours (each byte escaped, \\DDD as dig prints
    it, or \\xHH): every run of non-ASCII characters on either side becomes one placeholder,
    and the ASCII skeletons must be equal (linear time, no regex backtracking)."""
    return (_RAW_RUN_THEIRS.sub("\0", tname) == _RAW_RUN_OURS.sub("\0", oname.lower()))


@pytest.mark.parametrize("capture", CAPTURES)
def test_dns_answer_sets_match_tshark(capture, replay_dir):
    responses = ts.dns_responses(PATHS[capture])
    carriers = Counter(r.carrier for r in responses)
    other = {c: n for c, n in carriers.items() if c not in DNS_CARRIERS}
    assert not other or known(capture, "dns"), (
        f"{capture}: tshark decodes DNS over {other}; add a KNOWN_DIFFERENCES entry or decode it")
    ours_raw = [_our_dns(e) for e in replay(capture, replay_dir) if action(e) == "dns"]
    with_id = bool(ours_raw) and all(i is not None for i, _n, _a in ours_raw)
    strip = (lambda t: t) if with_id else (lambda t: t[1:])
    theirs = Counter(strip((r.id, r.name, r.answers)) for r in responses
                     if r.carrier in DNS_CARRIERS)
    ours = Counter(strip((int(i) if i is not None else None, n, a)) for i, n, a in ours_raw)
    missing, extra = theirs - ours, ours - theirs
    if known(capture, "dns") and missing:  # non-ASCII names: pair by id/answers + pattern
        for t in list(missing.elements()):
            if t[-2].isascii():
                continue
            for o in list(extra.elements()):
                if extra[o] > 0 and o[:-2] == t[:-2] and o[-1] == t[-1] \
                        and _non_ascii_match(t[-2], o[-2]):
                    missing[t] -= 1
                    extra[o] -= 1
                    break
        missing, extra = +missing, +extra
    msg = [f"{capture}: DNS answer sets differ ({sum(theirs.values())} from tshark, "
           f"{sum(ours.values())} from us; compared {'with' if with_id else 'without'} dns.id)"]
    msg += [f"  tshark said {t} x{n}, we did not" for t, n in list(missing.items())[:10]]
    msg += [f"  we said {o} x{n}, tshark did not" for o, n in list(extra.items())[:10]]
    assert not missing and not extra, "\n".join(msg)


@pytest.mark.parametrize("capture", CAPTURES)
def test_dns_querier_and_server_match_tshark(capture, replay_dir):
    """`dns` events: `source` is the querier (the response's receiver), `destination` the
    server, whichever end our flow calls its client (docs/events.md). tshark: the response
    frame's destination and source."""
    theirs = Counter((r.id, *r.flow[1:]) for r in ts.dns_responses(PATHS[capture])
                     if r.carrier in DNS_CARRIERS and r.flow is not None)
    ours = Counter((int(get(e, "dns.id")), ts._ip(get(e, "source.ip")), int(get(e, "source.port")),
                    ts._ip(get(e, "destination.ip")), int(get(e, "destination.port")))
                   for e in replay(capture, replay_dir) if action(e) == "dns")
    missing, extra = theirs - ours, ours - theirs
    msg = [f"{capture}: DNS querier/server differ (id, querier ip, port, server ip, port)"]
    msg += [f"  tshark said {t} x{n}, we did not" for t, n in list(missing.items())[:8]]
    msg += [f"  we said {o} x{n}, tshark did not" for o, n in list(extra.items())[:8]]
    assert not missing and not extra, "\n".join(msg)


@pytest.mark.parametrize("capture", CAPTURES)
def test_conversation_totals_match_tshark(capture, replay_dir):
    """Per tcp.stream / udp.stream: frames and IP bytes each way. A tshark conversation may
    be several of our flows when our idle timeout split it: consecutive flows with the same
    key inside the conversation's time span are summed."""
    convs = ts.conversations(PATHS[capture])
    ours = defaultdict(list)
    for ev in flows(replay(capture, replay_dir)):
        key = our_key(ev)
        if key is not None and key.transport in ("tcp", "udp"):
            ours[key].append(ev)
    for evs in ours.values():
        evs.sort(key=lambda e: _ts(get(e, "event.start")))
    problems = []
    for c in convs:
        cands = ours.get(c.key, [])
        span = [e for e in cands
                if c.first_ts - TIME_TOLERANCE <= _ts(get(e, "event.start"))
                <= c.last_ts + TIME_TOLERANCE]
        if not span or abs(_ts(get(span[0], "event.start")) - c.first_ts) > TIME_TOLERANCE:
            problems.append(f"  flow {c.key} (tcp/udp.stream {c.stream}) starting {c.first_ts:.6f}:"
                            f" tshark has it, we have no flow starting within 1 ms")
            continue
        for e in span:
            cands.remove(e)
        if c.key.transport == "tcp" and len(span) > 1:
            # Only an idle timeout may split a conversation, and TCP's (300 s) never does on
            # these files: one tcp.stream is one connection, so one flow (a split one is
            # named twice, each part on its own evidence).
            problems.append(f"  flow {c.key} (tcp.stream {c.stream}): tshark has one "
                            f"connection, we split it into {len(span)} flows")
        first = _ts(get(span[0], "event.start"))
        last = max(_ts(get(e, "event.end")) for e in span)
        if abs(first - c.first_ts) > EDGE_TOLERANCE or abs(last - c.last_ts) > EDGE_TOLERANCE:
            problems.append(f"  flow {c.key} (stream {c.stream}): tshark first/last frame "
                            f"{c.first_ts:.6f}/{c.last_ts:.6f}, we said {first:.6f}/{last:.6f}")
        got = tuple(sum(int(get(e, f) or 0) for e in span) for f in
                    ("source.packets", "destination.packets", "source.bytes", "destination.bytes"))
        want = (c.packets_c2s, c.packets_s2c, c.bytes_c2s, c.bytes_s2c)
        if got != want:
            problems.append(f"  flow {c.key} (stream {c.stream}): tshark said packets "
                            f"{want[0]}/{want[1]} bytes {want[2]}/{want[3]} (client/server), "
                            f"we said packets {got[0]}/{got[1]} bytes {got[2]}/{got[3]}"
                            f"{f' over {len(span)} flows' if len(span) > 1 else ''}")
    for key, rest in ours.items():
        for e in rest:
            problems.append(f"  flow {key} starting {get(e, 'event.start')}: we have it, "
                            f"tshark has no such conversation")
    assert not problems, (f"{capture}: {len(problems)} conversation differences "
                          f"({len(convs)} tshark conversations)\n" + "\n".join(problems[:20]))


@pytest.mark.parametrize("capture", CAPTURES)
def test_l4_payload_lengths_match_tshark(capture):
    """Per frame: the TCP/UDP payload the decoder hands on has tshark's length (link-layer
    padding and trailers are not payload, whatever the IP header claims: a PPPoE length that
    ends the packet early wins, RFC 2516 section 4)."""
    from auditor.decode.packet import Packet, decode
    from auditor.sources.pcap import read_frames
    want = ts.l4_payload_lengths(PATHS[capture])
    problems = []
    for n, (t, linktype, frame, wire_len) in enumerate(read_frames(PATHS[capture]), 1):
        if n not in want:
            continue
        pkt = decode(linktype, frame, t, wire_len)
        got = (pkt.__class__ is Packet) and len(pkt.payload)
        if got is not False and (pkt.proto == 6) == (want[n][0] == "tcp") and got != want[n][1]:
            problems.append(f"  frame {n}: tshark {want[n][0]} payload {want[n][1]} B, ours {got} B")
    assert not problems, f"{capture}: {len(problems)} frames differ\n" + "\n".join(problems[:10])


# --------------------------------------------------------------------------- harness itself

def test_generated_tunnel_captures_are_reproducible(tmp_path):
    subprocess.run([sys.executable, str(SYNTHETIC / "make_tunnels.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True, timeout=120)
    for p in SYNTHETIC.glob("*.pcap"):
        assert (tmp_path / p.name).read_bytes() == p.read_bytes(), p.name


def test_harness_tunnel_layers():
    """Per-layer conversations: VXLAN's outer UDP and the inner flows are each one, with the
    bytes of their own IP header; Geneve's inner SSH is one stream across both VNIs. The
    capture's four outer udp.streams (two source ports each way) are one carrier per
    direction, as the auditor keys them."""
    vx = ts.conversations(PATHS["tunnel-vxlan-icmp-arp.pcap"])
    assert {c.key.server_port for c in vx} == {4789} and len(vx) == 2
    assert {(c.key.client_ip, c.key.server_ip) for c in vx} == {
        ("192.168.203.1", "192.168.202.1"), ("192.168.202.1", "192.168.203.1")}
    gen = [c for c in ts.conversations(PATHS["tunnel-geneve-options-ssh-icmp.pcap"])
           if c.key.transport == "tcp"]
    assert len(gen) == 1 and gen[0].key.server_port == 22
    nested = ts.conversations(PATHS["tunnel-nested-6in4-gre-vxlan.pcap"])
    assert {c.key.transport for c in nested} == {"udp", "tcp"}


def test_harness_covers_every_capture():
    assert len(_REAL_CAPTURES) == 54, _REAL_CAPTURES   # 51 third-party + 3 recorded here (SOURCES.md)
    assert len(CAPTURES) == 54 + 5 + len(_CRAFTED_CAPTURES), CAPTURES    # + 5 generated tunnels
    for name in _CRAFTED_CAPTURES:        # each crafted capture has its generator beside it
        assert (CRAFTED / "SOURCES.md").read_text().count(name), name
    for cap in KNOWN_DIFFERENCES:
        assert cap in CAPTURES, f"KNOWN_DIFFERENCES names a missing capture {cap}"


@pytest.mark.parametrize("capture", CAPTURES)
def test_harness_reads_every_capture(capture):
    """tshark output is usable for every file, damaged ones included (partial output)."""
    s = ts.summary(PATHS[capture])
    assert all(v >= 0 for v in s.values())
    if capture != "corrupt-fuzzed-record-header.pcap":
        assert s["conversations"] > 0, (capture, s)


def test_harness_split_clienthello_sni():
    assert set(ts.sni_by_flow(REAL / "tls-clienthello-split-segments.pcap").values()) == {
        "clients2.google.com"}
    assert set(ts.sni_by_flow(REAL / "tls12-clienthello-mtu300.pcap").values()) == {
        "www.google.com"}


def test_harness_quic_snis_incl_v2_and_multi_initial():
    snis = ts.sni_by_flow(REAL / "quic-chrome-with-dns.pcap")
    assert sorted(snis.values()) == ["b1.nel.goog", "beacons.gvt2.com", "csp.withgoogle.com"]
    assert all(k.transport == "udp" and k.server_port == 443 for k in snis)
    assert list(ts.sni_by_flow(REAL / "quicv2-echo-loopback.pcap").values()) == ["localhost"]
    assert list(ts.sni_by_flow(REAL / "quic-kyber-clienthello-multi-initial-ipv6.pcapng")
                .values()) == ["encrypted-tbn0.gstatic.com"]
    both = ts.sni_by_flow(REAL / "tls-and-quic-ipv6-cloudflare.pcap")
    assert sorted(k.transport for k in both) == ["tcp", "udp"]
    assert set(both.values()) == {"cloudflare-quic.com"}


def test_harness_sni_on_odd_link_types():
    for cap, name in [("tls-pppoe-over-qinq.pcap", "xp.apple.com"),
                      ("tls-rawipv4-linktype228.pcap", "www.perdu.com"),
                      ("tls13-sll2-openjdk.pcap", "zeek.org"),
                      ("tls13-illustrated-loopback.pcap", "example.ulfheim.net"),
                      ("quic-vlan-ipv6-single-initial.pcap", "ssl.gstatic.com")]:
        assert list(ts.sni_by_flow(REAL / cap).values()) == [name], cap


def test_harness_espn_cname_chains():
    sets = {r.name: r.answers for r in ts.dns_responses(REAL / "dns-cname-chains-espn.pcap")}
    assert len(sets) == 7
    assert sets["cdn.optimizely.com"] == {("CNAME", "wac.946a.edgecastcdn.net"),
                                          ("CNAME", "gp1.wac.v2cdn.net"), ("A", "72.21.91.8")}
    assert sum(1 for a in sets.values() if any(t == "CNAME" for t, _ in a)) == 7


def test_harness_dns_answer_section_only_and_multi_message_tcp():
    # glue A/AAAA in the additional section must not leak into the answer set
    r = next(r for r in ts.dns_responses(REAL / "dns-edns-ecs-v4v6-udp-tcp.pcap")
             if r.id == 0xbc8d)
    assert r.answers == frozenset()
    tcp = ts.dns_responses(REAL / "dns-tcp-multi-message-per-segment.pcap")
    assert sorted(r.name for r in tcp) == sorted(f"{i}.google.com" for i in range(20))
    assert {r.rcode for r in tcp} == {3} and {r.carrier for r in tcp} == {"tcp"}
    sample = ts.dns_responses(REAL / "dns-wireshark-sample.pcap")
    assert len(sample) == 19
    aaaa = [r for r in sample if r.name == "www.google.com" and r.qtype == 28]
    assert aaaa and all({t for t, _ in r.answers} == {"CNAME"} for r in aaaa)


def test_harness_dns_tunnels():
    iodine = ts.dns_responses(REAL / "dnstunnel-iodine-null.pcap")
    assert len(iodine) == 212
    assert sum("\ufffd" in r.name for r in iodine) == 32
    assert len(ts.dns_responses(REAL / "dnstunnel-sods.pcap")) == 493
    assert len(ts.conversations(REAL / "dnstunnel-sods.pcap")) == 487
    assert len(ts.dns_responses(REAL / "dnstunnel-dns2tcp-txt-suricata.pcap")) == 80


def test_harness_doh_is_reported_as_http2():
    doh = ts.dns_responses(REAL / "doh-h2c-cleartext.pcap")
    assert len(doh) == 4 and {r.carrier for r in doh} == {"http2"}
    assert ts.dns_answer_sets(REAL / "doh-h2c-cleartext.pcap") == Counter()
    assert sum(ts.dns_answer_sets(REAL / "doh-h2c-cleartext.pcap", carriers=None).values()) == 4
    assert set(ts.first_http_host_by_flow(REAL / "doh-h2c-cleartext.pcap").values()) == {"dns.google"}


def test_harness_socks_and_h2c():
    """What SOURCES.md says the proxy captures recorded here hold."""
    dante = ts.socks_targets(REAL / "socks-curl-dante-v4-v4a-v5-tls.pcap")
    assert sorted(dante.values()) == [(4, "127.0.0.1", 8443), (4, "localhost", 8443),
                                      (5, "127.0.0.1", 8443), (5, "localhost", 8443)]
    assert sorted(ts.sni_by_flow(REAL / "socks-curl-dante-v4-v4a-v5-tls.pcap").values()) == ["localhost"] * 3
    micro = ts.socks_targets(REAL / "socks5-userpass-curl-microsocks-tls.pcap")
    assert list(micro.values()) == [(5, "localhost", 8443)]
    assert list(ts.first_http_host_by_flow(REAL / "h2c-prior-knowledge-nghttp.pcap").values()) == ["localhost"]


def test_harness_http_hosts():
    hosts = ts.first_http_host_by_flow(REAL / "http-ipv4-and-ipv6.pcapng")
    assert sorted(hosts.values()) == ["172.16.16.139", "2001:db8:1:2::1000"]
    vlan = ts.http_requests(REAL / "http-vlan120-host-with-port.pcap")
    assert len(vlan) == 11 and {h for *_x, h in vlan} == {"192.168.28.253:8000"}
    assert list(ts.first_http_host_by_flow(REAL / "http-vlan120-host-with-port.pcap")
                .values()) == ["192.168.28.253"]
    assert len(ts.http_requests(REAL / "mixed-espn-browsing-dns-http.pcapng")) == 61
    assert len(ts.http_requests(REAL / "truncated-file-cut-mid-packet-http.pcap")) == 8
    assert ts.normalise_host("[2001:DB8::1]:8080") == "2001:db8::1"
    assert ts.normalise_host("Example.COM.:80") == "example.com"


def test_harness_mixed_windows_counts():
    cap = REAL / "mixed-windows-host-dns-tls-http.pcap"
    s = ts.summary(cap)
    assert (s["sni"], s["http_requests"], s["dns_responses"], s["conversations"]) == (
        40, 37, 37, 108)


def test_harness_conversation_bytes():
    (big,) = ts.conversations(REAL / "sll2-http-download-large.pcap")
    assert big.packets == 159 and 2_500_000 < big.bytes_s2c < 2_700_000
    assert big.key.server_port == 80 and big.key.client_ip == "192.168.1.253"
    (snap,) = ts.conversations(REAL / "snaplen96-bulk-tcp.pcap")
    assert snap.packets == 878 and snap.bytes > 900_000  # header-stated, not 92 kB captured
    (trunc,) = ts.conversations(REAL / "truncated-file-cut-mid-packet-http.pcap")
    assert trunc.packets == 2696 and trunc.bytes_s2c > 2_400_000


def test_harness_fragments_and_icmp():
    frag = [c for c in ts.conversations(REAL / "dns-edns-ecs-v4v6-udp-tcp.pcap")
            if 53 in c.frames]
    assert len(frag) == 1 and frag[0].frames == [53, 54] and frag[0].bytes == 1500 + 250
    kame = ts.conversations(REAL / "dns-over-ipv6-kame.pcap")  # ICMPv6 errors excluded
    assert Counter(c.key.transport for c in kame) == {"udp": 31, "tcp": 1}


def test_harness_damaged_files_partial_output():
    assert ts.file_status(REAL / "corrupt-fuzzed-record-header.pcap") != "ok"
    assert ts.file_status(REAL / "truncated-file-cut-mid-packet-http.pcap") != "ok"
    assert len(ts.frames(REAL / "corrupt-fuzzed-record-header.pcap")) == 2
    assert ts.summary(REAL / "corrupt-fuzzed-record-header.pcap")["conversations"] == 0


@pytest.mark.parametrize("capture", CAPTURES)
def test_community_ids_match_the_reference_implementation(capture, replay_dir):
    """network.community_id of every flow equals Corelight's reference (`communityid`, the
    test extra only) for the same tuple; ICMP from the type and code of the flow's first
    packet."""
    import communityid
    ref = communityid.CommunityID()
    checked = 0
    for ev in flows(replay(capture, replay_dir)):
        src, dst, transport = ev["source"], ev["destination"], ev["network"]["transport"]
        if transport == "tcp":
            tpl = communityid.FlowTuple.make_tcp(src["ip"], dst["ip"], src["port"], dst["port"])
        elif transport == "udp":
            tpl = communityid.FlowTuple.make_udp(src["ip"], dst["ip"], src["port"], dst["port"])
        elif transport in ("icmp", "ipv6-icmp"):
            icmp = ev["egress_auditor"]["icmp"]
            make = communityid.FlowTuple.make_icmp6 if ":" in src["ip"] else communityid.FlowTuple.make_icmp
            tpl = make(src["ip"], dst["ip"], icmp["type"], icmp["code"])
        else:
            tpl = communityid.FlowTuple.make_ip(src["ip"], dst["ip"], int(ev["network"]["iana_number"]))
        assert ev["network"]["community_id"] == ref.calc(tpl), (capture, src, dst, transport)
        checked += 1
    assert checked == len(flows(replay(capture, replay_dir)))


def test_nanosecond_durations_and_svcb_hints_match_tshark(replay_dir):
    """dns-edge-cases.pcap (nanosecond pcap): each flow's duration equals tshark's last minus
    first frame time of that conversation, to the nanosecond (a float of seconds cannot hold
    that); the flow to an HTTPS record's ipv4hint is named by the queried name."""
    from decimal import Decimal
    cap = "dns-edge-cases.pcap"
    out = subprocess.run(["tshark", "-r", str(path(cap)), "-T", "fields", "-e", "frame.time_epoch",
                          "-e", "ip.src", "-e", "ipv6.src", "-e", "ip.dst", "-e", "ipv6.dst"],
                         capture_output=True, text=True, check=True).stdout
    times: dict[frozenset, list[Decimal]] = defaultdict(list)
    for line in out.splitlines():
        t, s4, s6, d4, d6 = line.split("\t")
        times[frozenset((s4 or s6, d4 or d6))].append(Decimal(t))
    events = flows(replay(cap, replay_dir))
    tcp = [e for e in events if get(e, "network.transport") == "tcp"]
    assert len(tcp) == 4
    for e in tcp:
        pair = frozenset((get(e, "source.ip"), get(e, "destination.ip")))
        ts_ = times[pair]
        assert get(e, "event.duration") == int((max(ts_) - min(ts_)) * 10**9), e
    hinted = [e for e in tcp if get(e, "destination.ip") == "203.0.113.32"]
    assert get(hinted[0], "destination.domain") == "svc.example.org"
    (icmp6,) = [e for e in events if get(e, "network.iana_number") == "58"]
    assert get(icmp6, "network.transport") == "ipv6-icmp"
