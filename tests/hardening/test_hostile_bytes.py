"""Hostile bytes (issue #6), through the whole pipeline rather than one decoder at a time
(tests/property/ fuzzes each decoder alone): hypothesis payloads placed where each decoder
will parse them (L2-L4 frames, DNS on UDP 53, TLS and HTTP as a TCP flow's first payload,
QUIC as a UDP 443 long-header datagram), byte-flipped and truncated copies of every real
capture, DNS names that are oversized or loop through compression pointers, ClientHellos
whose lengths lie. Nothing may raise out of the pipeline, no unit may hit the pipeline's
internal-error guard (`layer="internal"` would mean a decoder raised), and bad units are
counted in `packets_malformed_total{layer}`.

Example counts: a quarter of the hypothesis profile's (tests/conftest.py; ci: 250 per test,
each example a few whole-pipeline flows; the per-decoder property tests run the full 1,000);
the `-m slow` variants run 100,000 per decoder (the `long` profile).
"""
from __future__ import annotations

import random
import struct
from pathlib import Path

import hpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.assemble import build
from auditor.decode.packet import LINKTYPE_ETHERNET
from auditor.settings import Settings
from auditor.sources.pcap import CaptureFileError, CaptureFile
from tests.conftest import REAL_PCAPS
from tests.hardening.floods import ETH_IN, ETH_OUT, NODE, POLICY, RESOLVER, ipv4, tcp, udp
from tests.util import Recorder

LONG = settings(settings.get_profile("long"))
# Each example runs several flows through the whole pipeline (~10 ms): a quarter of the
# profile keeps the default suite within its time, and -m slow runs the long profile.
PIPELINE_BUDGET = settings(max_examples=max(50, settings.default.max_examples // 4))
SERVER = bytes([93, 184, 216, 34])


def pipeline():
    """The real component chain (judge, detectors, metrics, summary) plus a recorder (the
    service tags are parsed once per process: `ServiceTags.load` keeps them)."""
    rec = Recorder()
    audit = build(Settings(policy=POLICY, node_networks=["10.0.0.0/8"], events=None), extra=[rec],
                  process_metrics=False)
    return audit.pipeline, rec


_SHARED: dict = {}


def feed(frames, fresh: bool = False):
    """Feed frames to a pipeline and check no unit hit the internal-error guard. Fuzz examples
    share one long-lived pipeline (state carries over, as it would live; building one per
    example would cost more than the fuzzing); `fresh` builds a new one and closes it."""
    if fresh or "pipe" not in _SHARED:
        _SHARED["pipe"], _SHARED["ts"] = pipeline()[0], 1000.0
    pipe = _SHARED["pipe"]
    ts = _SHARED["ts"]
    pipe.feed([(ts + i * 0.001, LINKTYPE_ETHERNET, f, len(f)) for i, f in enumerate(frames)])
    _SHARED["ts"] = ts + 0.01 * (len(frames) + 1)
    if fresh:
        pipe.close()
        del _SHARED["pipe"]
    assert pipe.telemetry.errors_total() == 0, pipe.telemetry.component_errors
    return pipe


def tcp_flow_with(payload: bytes, dport: int) -> list[bytes]:
    return [ETH_OUT + ipv4(NODE, SERVER, 6, tcp(40000, dport, 0x02, seq=999)),
            ETH_IN + ipv4(SERVER, NODE, 6, tcp(dport, 40000, 0x12, seq=5000)),
            ETH_OUT + ipv4(NODE, SERVER, 6, tcp(40000, dport, 0x18, seq=1000, payload=payload))]


# -- one body per decoder; each is run under the active profile and, with -m slow, `long` --
def _l2_l4(frame: bytes) -> None:
    feed([frame, ETH_OUT + frame[:60], frame[:14] + b"\x45" + frame[15:]])


def _dns(payload: bytes) -> None:
    pipe = feed([ETH_OUT + ipv4(NODE, RESOLVER, 17, udp(33333, 53, payload)),
                 ETH_IN + ipv4(RESOLVER, NODE, 17, udp(53, 33333, payload))])
    assert pipe.tracker.dns is not None


def _tls(payload: bytes) -> None:
    feed(tcp_flow_with(b"\x16\x03\x01" + payload, 443))


def _http(payload: bytes) -> None:
    feed(tcp_flow_with(b"GET / HTTP/1.1\r\nHost: " + payload, 80))
    feed(tcp_flow_with(payload, 80))


def _socks(payload: bytes) -> None:
    feed(tcp_flow_with(b"\x05" + payload, 1080))
    feed(tcp_flow_with(b"\x04\x01" + payload, 1080))
    feed(tcp_flow_with(b"\x05\x01\x00\x05\x01\x00\x03\x04a.bc\x01\xbb\x16\x03\x01" + payload, 1080))


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _h2c(payload: bytes) -> None:
    """After the preface: noise, and noise inside a HEADERS frame (HPACK) and a DATA frame
    answering a DoH request, from both ends."""
    headers = len(payload).to_bytes(3, "big") + b"\x01\x05\x00\x00\x00\x01" + payload
    block = hpack.Encoder().encode([(":method", "POST"), (":path", "/dns-query")])
    doh = len(block).to_bytes(3, "big") + b"\x01\x04\x00\x00\x00\x01" + block   # a DoH POST, open
    doh += len(payload).to_bytes(3, "big") + b"\x00\x01\x00\x00\x00\x01" + payload  # its body
    frames = tcp_flow_with(H2_PREFACE + payload, 80) + tcp_flow_with(H2_PREFACE + headers, 80)
    reply = ETH_IN + ipv4(SERVER, NODE, 6, tcp(80, 40000, 0x18, seq=5001, payload=payload))
    feed(frames + [reply])
    feed(tcp_flow_with(H2_PREFACE + doh, 80) + [reply])


def _quic(payload: bytes) -> None:
    feed([ETH_OUT + ipv4(NODE, SERVER, 17, udp(40001, 443, b"\xc0\x00\x00\x00\x01" + payload)),
          ETH_OUT + ipv4(NODE, SERVER, 17, udp(40001, 443, b"\xc3" + payload))])


BODIES = {"l2_l4": (_l2_l4, st.binary(min_size=14, max_size=200)),
          "dns": (_dns, st.binary(max_size=300)),
          "tls": (_tls, st.binary(max_size=300)),
          "http": (_http, st.binary(max_size=300)),
          "quic": (_quic, st.binary(max_size=300)),
          "socks": (_socks, st.binary(max_size=300)),
          "h2c": (_h2c, st.binary(max_size=300))}


def _make(name: str, long: bool):
    body, strategy = BODIES[name]
    test = given(strategy)(body)          # a fresh wrapper each time: own settings
    return pytest.mark.slow(LONG(test)) if long else PIPELINE_BUDGET(test)


test_fuzz_l2_l4 = _make("l2_l4", False)
test_fuzz_dns = _make("dns", False)
test_fuzz_tls = _make("tls", False)
test_fuzz_http = _make("http", False)
test_fuzz_quic = _make("quic", False)
test_fuzz_socks = _make("socks", False)
test_fuzz_h2c = _make("h2c", False)
test_fuzz_l2_l4_long = _make("l2_l4", True)
test_fuzz_dns_long = _make("dns", True)
test_fuzz_tls_long = _make("tls", True)
test_fuzz_http_long = _make("http", True)
test_fuzz_quic_long = _make("quic", True)
test_fuzz_socks_long = _make("socks", True)
test_fuzz_h2c_long = _make("h2c", True)


# -- crafted hostile units ---------------------------------------------------------------
def _dns_frames(payload: bytes) -> list[bytes]:
    return [ETH_OUT + ipv4(NODE, RESOLVER, 17, udp(33333, 53, payload))]


def test_compression_pointer_loops_and_oversized_names_are_malformed_dns():
    header = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0)
    self_loop = header + b"\xc0\x0c" + b"\x00\x01\x00\x01"                # name points at itself
    # a -> (forward) b -> (back) a: forward pointers are followed, loops are not
    two_loop = header + b"\x01a\xc0\x14" + b"\x00\x01\x00\x01" + b"\x01b\xc0\x0c"
    forward = header + b"\xc0\xff" + b"\x00\x01\x00\x01"                   # points past the end
    too_long = header + b"".join(b"\x3f" + b"a" * 63 for _ in range(5)) + b"\x00\x00\x01\x00\x01"
    bad_label = header + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01"     # 0x40: reserved label type
    units = [self_loop, two_loop, forward, too_long, bad_label]
    pipe = feed([f for u in units for f in _dns_frames(u)], fresh=True)
    assert pipe.telemetry.malformed["dns"] == len(units)


def _hello(length_lie: int = 0, record_lie: int = 0, ext_lie: int = 0) -> bytes:
    sni = b"lying.example"
    server_name = struct.pack("!HBH", len(sni) + 3, 0, len(sni)) + sni
    ext = struct.pack("!HH", 0, len(server_name) + ext_lie) + server_name
    body = (b"\x03\x03" + b"\x00" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
            + struct.pack("!H", len(ext)) + ext)
    hs = b"\x01" + (len(body) + length_lie).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs) + record_lie) + hs


@pytest.mark.parametrize("lie", [dict(length_lie=-20), dict(length_lie=+0x7FFF), dict(ext_lie=+200),
                                 dict(ext_lie=-3), dict(record_lie=-10)])
def test_client_hellos_with_lying_lengths_never_raise_and_never_name_the_flow_wrongly(lie):
    pipe, rec = pipeline()
    frames = tcp_flow_with(_hello(**lie), 443)
    frames.append(ETH_OUT + ipv4(NODE, SERVER, 6, tcp(40000, 443, 0x11, seq=5000)))
    pipe.feed([(1000.0 + i, LINKTYPE_ETHERNET, f, len(f)) for i, f in enumerate(frames)])
    pipe.close()
    assert pipe.telemetry.errors_total() == 0
    flows = [e.flow for e in rec.events if type(e).__name__ == "FlowEnded"]
    assert len(flows) == 1
    # Either the hello still parses to the right name, or it is counted malformed / unnamed.
    if flows[0].sni is None:
        assert flows[0].name_source == "none"
    else:
        assert flows[0].sni == "lying.example"


def test_an_honest_hello_names_the_flow():   # the control for the lying-length cases above
    pipe, rec = pipeline()
    pipe.feed([(1000.0 + i, LINKTYPE_ETHERNET, f, len(f)) for i, f in enumerate(tcp_flow_with(_hello(), 443))])
    pipe.close()
    assert [e.flow.sni for e in rec.events if type(e).__name__ == "FlowEnded"] == ["lying.example"]


# -- mutated real captures ---------------------------------------------------------------
REAL = sorted(p for p in REAL_PCAPS.iterdir() if p.suffix in (".pcap", ".pcapng"))


def mutate(raw: bytes, seed: int, kind: str) -> bytes:
    rng = random.Random(seed)
    if kind == "truncate":
        return raw[:rng.randrange(24, max(25, len(raw)))]
    out = bytearray(raw)
    for _ in range(max(1, len(out) // 200)):   # ~0.5% of bytes, past the file header
        i = rng.randrange(24, len(out)) if len(out) > 24 else 0
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def replay_file(path: Path):
    pipe, rec = pipeline()
    try:
        capture = CaptureFile(path)
    except CaptureFileError:
        return None, rec      # a clean refusal of the whole file is fine (exit 1 in the CLI)
    pipe.feed(capture)
    pipe.close()
    return pipe, rec


@pytest.mark.parametrize("pcap", REAL, ids=lambda p: p.name)
def test_byte_flipped_and_truncated_real_captures(tmp_path, pcap):
    raw = pcap.read_bytes()
    clean, clean_rec = replay_file(pcap)
    moved = 0
    for seed in range(3):
        for kind in ("flip", "truncate"):
            bad = tmp_path / f"{kind}{seed}{pcap.suffix}"
            bad.write_bytes(mutate(raw, hash((pcap.name, seed)) & 0xFFFF, kind))
            pipe, rec = replay_file(bad)
            if pipe is None:
                continue
            assert pipe.telemetry.errors_total() == 0, (bad, pipe.telemetry.component_errors)
            # Every flow that started was reported; events raised before the damage are kept.
            started = pipe.tracker.flows.flows_created
            assert len([e for e in rec.events if type(e).__name__ == "FlowEnded"]) == started
            moved += pipe.telemetry.malformed_total() > clean.telemetry.malformed_total() \
                if clean else 0
    MOVED[pcap.name] = moved


MOVED: dict[str, int] = {}


def test_mutations_of_the_real_captures_are_counted_as_malformed():
    """Runs after the per-file test: flips mostly land in payloads nobody parses, but over
    the whole set most files' mutations must show up in packets_malformed_total."""
    assert len(MOVED) == len(REAL), "run with the per-file test"
    assert sum(1 for n in MOVED.values() if n) >= len(REAL) // 2, MOVED
