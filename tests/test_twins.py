"""The compiled core and its pure-Python twin give identical results.

`auditor/decode/cpacket.pyx` against `auditor/decode/pypacket.py`, `auditor/sources/cpcap.pyx`
against `pcap.py_records`: on every frame of every capture in the repository (and on every
layer inside their tunnels), on random and on header-shaped random frames, and end to end (the
same events from a replay under either core). Skipped when the compiled core was not built,
except where `EGRESS_AUDITOR_REQUIRE_COMPILED=1` says it must have been (CI sets it).
"""
from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from auditor.decode import pypacket
from auditor.sources import pcap
from auditor.telemetry import Layer

ROOT = Path(__file__).resolve().parent.parent
try:
    from auditor.decode import cpacket  # type: ignore[attr-defined]
    from auditor.sources import cpcap  # type: ignore[attr-defined]
except ImportError:
    if os.environ.get("EGRESS_AUDITOR_REQUIRE_COMPILED") == "1":
        raise
    pytest.skip("the compiled core was not built (no C compiler at install)",
                allow_module_level=True)

LINKTYPES = sorted(pypacket.LINKTYPES) + [2, 147]
CAPTURES = sorted(p for p in ROOT.glob("pcaps/**/*") if p.suffix in (".pcap", ".pcapng"))
_FIELDS = {
    "Packet": ("ts", "version", "src", "dst", "proto", "sport", "dport", "ip_len", "tcp_flags",
               "seq", "payload", "ack", "ts_ns", "tunnel"),
    "Fragment": ("ts", "version", "src", "dst", "proto", "ident", "offset", "more", "ip_len",
                 "data", "ts_ns", "tunnel"),
}
_FIELDS["Tunnel"] = _FIELDS["Packet"]


def facts(result):
    """What a decode result says, comparable across the two implementations' classes."""
    if result is None or isinstance(result, Layer):
        return result
    name = type(result).__name__
    return (name, tuple((f, getattr(result, f)) for f in _FIELDS[name]))


def both(name: str, *args):
    """facts() of the pure and the compiled entry point `name` on the same arguments (an
    IndexError, which the callers catch as "ran past the frame", is a result too)."""
    out = []
    for impl in (pypacket, cpacket):
        try:
            out.append(facts(getattr(impl, name)(*args)))
        except IndexError:
            out.append("IndexError")
    return out


def assert_same(name: str, *args) -> None:
    py, c = both(name, *args)
    assert py == c, f"{name}{args[:2]}: pure {py!r} != compiled {c!r}"


def _inner_entry_points(t) -> None:
    """Every entry point tunnel.py calls, at the offsets it uses, on a carrier's payload."""
    data = t.payload
    for off in (0, 4, 8, 12, 22):
        assert_same("ipv4", data, off, 0.0)
        assert_same("ipv6", data, off, 0.0)
        assert_same("ethernet", data, off, 0.0)
        assert_same("ppp", data, off, 0.0)
        if len(data) >= off + 2:
            assert_same("by_ethertype", data, off + 2, (data[off] << 8) | data[off + 1], 0.0)


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_every_frame_of_every_capture_decodes_the_same(path):
    frames = 0
    for ts_ns, linktype, frame, wirelen in pcap.CaptureFile(path):
        ts = ts_ns / 1e9
        py, c = both("decode", linktype, frame, ts, wirelen)
        assert py == c, f"{path.name} frame {frames + 1}: pure {py!r} != compiled {c!r}"
        if py is not None and py[0] == "Tunnel":
            _inner_entry_points(pypacket.decode(linktype, frame, ts, wirelen))
        frames += 1
    assert frames


def test_the_captures_reach_every_kind_of_result():
    """The capture test above is only as good as what the captures hold."""
    kinds = set()
    for path in CAPTURES:
        for ts_ns, linktype, frame, wirelen in pcap.CaptureFile(path):
            r = pypacket.decode(linktype, frame, 0.0, wirelen)
            kinds.add(type(r).__name__ if not isinstance(r, Layer) else r.value)
    assert {"Packet", "Fragment", "Tunnel", "NoneType"} <= kinds


@given(st.sampled_from(LINKTYPES), st.binary(max_size=120))
def test_random_frames_decode_the_same(linktype, frame):
    assert_same("decode", linktype, frame, 1.5, len(frame))


@st.composite
def shaped_frames(draw):
    """Frames whose headers are mostly right, so the decoders' deeper branches are reached:
    a link layer, VLAN/PPPoE/MPLS around it, an IPv4 or IPv6 header with hostile lengths,
    flags and extension headers, a TCP/UDP/ICMP/tunnel header, random bytes after."""
    u8, u16 = st.integers(0, 255), st.integers(0, 65535)
    if draw(st.booleans()):
        ihl = draw(st.sampled_from([5, 5, 5, 6, 15, 4, 0]))
        ip = bytes([draw(st.sampled_from([0x40, 0x40, 0x60])) | ihl, 0])
        ip += struct.pack("!HHH", draw(st.sampled_from([0, 20, 40, 60, 1500]) | u16),
                          draw(u16), draw(st.sampled_from([0, 0, 0x2000, 0x4000, 8]) | u16))
        ip += bytes([64, draw(st.sampled_from([6, 17, 1, 58, 4, 41, 47, 0]) | u8)]) + b"\0\0"
        ip += bytes(range(1, 9)) + b"\xaa" * (ihl * 4 - 20 if ihl > 5 else 0)
        et, version = 0x0800, 4
    else:
        nh = draw(st.sampled_from([6, 17, 58, 0, 43, 44, 51, 60, 59, 4, 41]) | u8)
        ip = b"\x60\0\0\0" + struct.pack("!HBB", draw(st.sampled_from([0, 8, 20, 40]) | u16), nh,
                                         64) + bytes(range(32))
        for _ in range(draw(st.integers(0, 3))):
            ip += bytes([draw(st.sampled_from([6, 17, 44, 0]) | u8), draw(st.integers(0, 3))])
            ip += struct.pack("!H", draw(st.sampled_from([0, 1, 8, 9]) | u16)) + b"\1\2\3\4"
        et, version = 0x86DD, 6
    l4 = struct.pack("!HHHH", draw(st.sampled_from([53, 4789, 6081, 3544, 40000]) | u16),
                     draw(st.sampled_from([53, 443, 4789, 8472, 6081, 3544]) | u16),
                     draw(st.sampled_from([0, 8, 16, 100]) | u16), 0)
    l4 += bytes([draw(u8), draw(u8)]) + draw(st.binary(max_size=30))
    packet = ip + l4
    link = draw(st.sampled_from(["eth", "vlan", "pppoe", "mpls", "sll", "sll2", "null", "raw",
                                 "ppp", "nflog"]))
    if link == "eth":
        frame, lt = b"\0" * 12 + struct.pack("!H", et) + packet, 1
    elif link == "vlan":
        frame, lt = b"\0" * 12 + b"\x81\x00\0\x01\x88\xa8\0\x02" + struct.pack("!H", et) + packet, 1
    elif link == "pppoe":
        proto = b"\x00\x21" if version == 4 else b"\x00\x57"
        frame = b"\0" * 12 + b"\x88\x64\x11\0\0\x01" + struct.pack(
            "!H", draw(st.sampled_from([len(packet) + 2, 0, 1, 2, 30]) | u16)) + proto + packet
        lt = 1
    elif link == "mpls":
        frame, lt = b"\0" * 12 + b"\x88\x47\0\x01\x01\x40" + packet, 1
    elif link == "sll":
        frame, lt = b"\0" * 14 + struct.pack("!H", et) + packet, 113
    elif link == "sll2":
        frame, lt = struct.pack("!H", et) + b"\0" * 18 + packet, 276
    elif link == "null":
        frame, lt = struct.pack("<I", 2 if version == 4 else 30) + packet, 0
    elif link == "raw":
        frame, lt = packet, draw(st.sampled_from([101, 228, 229]))
    elif link == "ppp":
        frame, lt = (b"\xff\x03" if draw(st.booleans()) else b"") + (
            b"\x00\x21" if version == 4 else b"\x00\x57") + packet, draw(st.sampled_from([9, 50]))
    else:
        tlv = struct.pack("<HH", len(packet) + 4, 9) + packet
        frame, lt = bytes([2 if version == 4 else 10, 0, 0, 0]) + b"\x08\0\x01\0\0\0\0\0" + tlv, 239
    cut = draw(st.integers(0, len(frame)))
    return lt, frame if draw(st.booleans()) else frame[:cut]


@given(shaped_frames())
def test_header_shaped_frames_decode_the_same(case):
    linktype, frame = case
    assert_same("decode", linktype, frame, 2.0, len(frame))
    r = pypacket.decode(linktype, frame, 2.0, len(frame))
    if isinstance(r, pypacket.Tunnel):
        _inner_entry_points(r)


@given(st.binary(max_size=100), st.integers(0, 40))
def test_reassembled_datagrams_decode_the_same(data, proto_pick):
    proto = (6, 17, 1, 58, 47, 4, 99)[proto_pick % 7]
    assert_same("decode_l4", 3.0, 4, b"\1\2\3\4", b"\5\6\7\x08", proto, data, 20 + len(data))


def test_tunnel_ports_follow_the_settings_in_both():
    frame = (b"\0" * 12 + b"\x08\x00" + bytes([0x45, 0]) + struct.pack("!H", 36) + b"\0" * 4
             + b"\x40\x11\0\0" + b"\x0a\0\0\x01\x14\0\0\x01" + struct.pack("!HHHH", 40000, 9999, 16, 0)
             + b"\0" * 8)
    from auditor.decode import packet
    try:
        packet.set_tunnel_ports([9999])
        py, c = both("decode", 1, frame, 0.0, len(frame))
        assert py == c and py[0] == "Tunnel"
    finally:
        packet.set_tunnel_ports([4789, 8472])
    py, c = both("decode", 1, frame, 0.0, len(frame))
    assert py == c and py[0] == "Packet"


# -- the classic pcap record walk ------------------------------------------------------

def _records_both(buf, pos, rsize, little, scale, linktype=1, max_caplen=pcap.MAX_CAPLEN):
    py = pcap.py_records(buf, pos, rsize, little, scale, linktype, max_caplen)
    c = cpcap.records(buf, pos, rsize, little, scale, linktype, max_caplen)
    assert py == c
    return py


def _magic(path: Path) -> int:
    return struct.unpack("<I", path.read_bytes()[:4])[0]


# classic pcap by its magic, whatever the suffix says (some ".pcap" files are pcapng)
@pytest.mark.parametrize("path", [p for p in CAPTURES if _magic(p) in pcap._PCAP_MAGICS],
                         ids=lambda p: p.name)
def test_pcap_records_are_read_the_same(path):
    buf = path.read_bytes()
    order, scale, sizes = pcap._PCAP_MAGICS[_magic(path)]
    for rsize in sizes:   # every record-header size the reader may pick for this magic
        _records_both(buf, 24, rsize, order == "<", scale)
    frames, pos, corrupt = _records_both(buf, 24, sizes[0], order == "<", scale)
    assert frames or corrupt


@given(st.binary(max_size=300), st.integers(0, 40), st.sampled_from([16, 20, 24, 32]),
       st.booleans(), st.sampled_from([1, 1000]), st.sampled_from([0, 64, 262144]))
def test_random_record_buffers_are_read_the_same(buf, pos, rsize, little, scale, max_caplen):
    # seconds and fractions up to 2**32 - 1: the compiled walk's int64 must not overflow
    _records_both(buf, pos, rsize, little, scale, 1, max_caplen)


def test_largest_timestamps_are_exact_in_both():
    rec = struct.pack("<IIII", 0xFFFFFFFF, 0xFFFFFFFF, 1, 1) + b"x"
    frames, _, _ = _records_both(rec, 0, 16, True, 1000)
    assert frames[0][0] == 0xFFFFFFFF * 10**9 + 0xFFFFFFFF * 1000


# -- pcapng: runs of enhanced packet blocks read by cpcap.epbs ---------------------------

def _read_both(path: Path, monkeypatch):
    """(frames, warnings) of a pcapng file read with the compiled EPB walk and without it."""
    out = []
    for walk in (cpcap.epbs, None):
        monkeypatch.setattr(pcap, "epbs", walk)
        cf = pcap.CaptureFile(path)
        out.append((list(cf), cf.warnings, cf.bad_timestamps))
    assert out[0] == out[1]
    return out[0]


_PCAPNG = [p for p in CAPTURES if _magic(p) == pcap._SHB]


@pytest.mark.parametrize("path", _PCAPNG, ids=lambda p: p.name)
def test_every_pcapng_capture_reads_the_same_with_the_compiled_walk(path, monkeypatch):
    frames, warnings, _ = _read_both(path, monkeypatch)
    assert frames and not warnings


def _tsoffset_idb(order: str, lt: int, tsresol: int | None, offset: int | None) -> bytes:
    from tests.sources.test_pcap import _block
    opts = b""
    if tsresol is not None:
        opts += struct.pack(order + "HH", 9, 1) + bytes([tsresol]) + b"\0\0\0"
    if offset is not None:
        opts += struct.pack(order + "HHq", 14, 8, offset)
    return _block(order, 1, struct.pack(order + "HHI", lt, 0, 0) + opts + b"\0" * 4)


_idb_blocks = st.tuples(st.just("idb"), st.sampled_from([1, 101, 113]),
              # if_tsresol: 10^-n or 2^-n; 0xFF (2^-127) is beyond what the walk computes
              st.none() | st.sampled_from([0, 3, 6, 9, 10, 12, 19, 0x80 | 10, 0x80 | 30, 0xFF]),
              # if_tsoffset, seconds: mostly none or small; 4611686018 s is the walk's limit
              st.none() | st.none() | st.sampled_from([0, 1, -1, 3600, -10**9, 4611686018])
              | st.sampled_from([4611686019, 2**40, -2**40, 2**62, -2**63]))
# Weighted towards plain blocks: the first damaged one ends the read.
_epb_blocks = st.tuples(st.just("epb"), st.sampled_from([0] * 8 + [1, 3]),
              # realistic micro- and nanosecond counts; both sides of where the compiled walk
              # stops computing (2^62 ns, at the default microseconds and at nanoseconds); any
              st.integers(1_700_000_000 * 10**6, 1_800_000_000 * 10**6)
              | st.integers(1_700_000_000 * 10**6, 1_800_000_000 * 10**6)
              | st.integers(1_700_000_000 * 10**9, 1_800_000_000 * 10**9)
              | st.sampled_from([0, 2**62 // 1000 - 1, 2**62 // 1000, 2**62 - 1, 2**62, 2**63])
              | st.integers(0, 2**64 - 1),
              st.binary(max_size=40),
              st.sampled_from(["ok"] * 12 + ["caplen", "trailer", "cut", "short"]),
              st.sampled_from([1, 4, 31, 32, 64]))
_spb_blocks = st.tuples(st.just("spb"), st.binary(max_size=20))
# mostly packet blocks (the walk's work), some interfaces, a simple packet block now and then
_blocks = st.one_of(_idb_blocks, _epb_blocks, _epb_blocks, _epb_blocks, _spb_blocks)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["<", ">"]), _idb_blocks, st.lists(_blocks, max_size=12),
       st.binary(max_size=24))
def test_random_pcapng_block_streams_read_the_same_with_the_compiled_walk(order, first, blocks,
                                                                        junk):
    """Block lengths, interfaces, resolutions, offsets and timestamps are the file writer's:
    the compiled walk must stop wherever the Python reader would do anything but read a
    frame, and hand it that block."""
    import tempfile

    from tests.sources.test_pcap import _block, _epb, _shb
    data = _shb(order)
    for b in [first, *blocks]:
        if b[0] == "idb":
            data += _tsoffset_idb(order, *b[1:])
        elif b[0] == "epb":
            _k, ifid, ts, body, damage, by = b
            block = _epb(order, ifid, ts, body)
            if damage == "caplen":      # a frame running past its block (by the padding or more)
                block = block[:20] + struct.pack(order + "I", len(body) + by) + block[24:]
            elif damage == "short":     # a block length too small for an EPB, consistent
                block = struct.pack(order + "II", 6, 28) + block[8:24] + struct.pack(order + "I", 28)
            elif damage == "trailer":
                block = block[:-4] + struct.pack(order + "I", len(block) + 4)
            elif damage == "cut":
                block = block[:len(block) // 2]
            data += block
        else:
            data += _block(order, 3, struct.pack(order + "I", len(b[1])) + b[1])
    data += junk     # whatever follows the last block
    with pytest.MonkeyPatch.context() as mp, tempfile.TemporaryDirectory() as d:
        path = Path(d) / "random.pcapng"
        path.write_bytes(data)
        _read_both(path, mp)


# -- the known-flow fast path -----------------------------------------------------------

def telemetry_of_audit(capture: Path, node_networks: list[str]):
    """The `Telemetry` of one in-process audit of `capture` (its fast-path count, its packets)."""
    import auditor.telemetry as telemetry
    from auditor import audit
    seen = []
    real_init = telemetry.Telemetry.__init__

    def spy(self):
        real_init(self)
        seen.append(self)
    telemetry.Telemetry.__init__ = spy
    try:
        audit([capture], {"node_networks": node_networks})
    finally:
        telemetry.Telemetry.__init__ = real_init
    [tel] = seen
    return tel


@pytest.mark.parametrize("name, least", [("pcaps/demo/04-checkpoint-to-blob.pcap", 0.5),
                                         ("pcaps/tunnels/tunnel-vxlan8472-dns-tls-http.pcap", 0.2)])
def test_the_fast_path_is_taken_on_the_captures_the_replays_compare(name, least):
    """(Else the end-to-end comparison below would compare the ordinary path with itself.)"""
    tel = telemetry_of_audit(ROOT / name, ["10.0.0.0/8", "192.168.0.0/16", "172.16.0.0/12"])
    assert tel.fast_path_packets >= least * tel.packets, (tel.fast_path_packets, tel.packets)


# -- reading a classic pcap straight from its buffers ----------------------------------

def _fed(path: Path, how: str, stop_after: int | None = None):
    """What one in-process audit of `path` ends with, read as `frames` (Pipeline.feed over
    the file's frames, the reference) or as `buffers` (cpipeline.feed_pcap)."""
    from auditor import cpipeline  # type: ignore[attr-defined]
    from auditor.settings import Settings
    from auditor.telemetry import Telemetry
    from tests.util import Recorder, pipeline_for
    rec, tel = Recorder(), Telemetry()
    pipe = pipeline_for([rec], Settings(node_networks=["10.0.0.0/8", "192.168.0.0/16",
                                                       "172.16.0.0/12"]), tel)
    capture = pcap.CaptureFile(path)

    def on_check(p):    # a signal arriving: the stop is honoured at the next check
        p.stopping = stop_after is not None and tel.packets >= stop_after
    if how == "frames":
        pipe.feed(capture, check_every=7, on_check=on_check)
    else:
        cpipeline.feed_pcap(pipe, capture, 7, on_check)
    pipe.close()
    events = []
    for ev in rec.events:
        flow = getattr(ev, "flow", None)
        events.append((type(ev).__name__, getattr(ev, "ts", None), flow and (
            flow.key, flow.c_packets, flow.c_bytes, flow.s_packets, flow.s_bytes, flow.domain,
            flow.name_source, flow.start_ns, flow.last_ns)))
    return (events, tel.packets, tel.fast_path_packets, tel.last_packet_ts, dict(tel.malformed),
            capture.warnings, capture._f.closed)


def _same_read(path: Path, stop_after: int | None = None):
    frames, buffers = _fed(path, "frames", stop_after), _fed(path, "buffers", stop_after)
    assert frames == buffers
    return buffers


_CLASSIC = [p for p in CAPTURES if _magic(p) in pcap._PCAP_MAGICS]


@pytest.mark.parametrize("path", _CLASSIC, ids=lambda p: p.name)
def test_a_classic_pcap_read_from_its_buffers_is_audited_as_its_frames(path):
    events, packets, _fast, _last, _bad, warnings, closed = _same_read(path)
    assert closed and (packets or warnings)


def test_damage_and_a_stop_end_the_buffered_read_as_they_end_iteration(tmp_path):
    """A record cut short, a corrupt record length, a stop asked mid-file: the same packets
    audited, the same warning, the file closed."""
    raw = (ROOT / "pcaps/demo/04-checkpoint-to-blob.pcap").read_bytes()
    first_caplen = struct.unpack_from("<I", raw, 24 + 8)[0]
    fifth = 24
    for _ in range(4):
        fifth += 16 + struct.unpack_from("<I", raw, fifth + 8)[0]
    variants = {
        "cut-mid-data": raw[:len(raw) // 2],
        "cut-mid-header": raw[:24 + 16 + first_caplen + 9],
        "corrupt-caplen": raw[:fifth + 8] + struct.pack("<I", 0x7FFFFFFF) + raw[fifth + 12:],
        "header-only": raw[:24],
    }
    for name, data in variants.items():
        path = tmp_path / f"{name}.pcap"
        path.write_bytes(data)
        *_, warnings, closed = _same_read(path)
        assert closed and (name == "header-only" or len(warnings) == 1), (name, warnings)
    events, packets, *_ = _same_read(ROOT / "pcaps/demo/04-checkpoint-to-blob.pcap", stop_after=20)
    assert 20 <= packets < 28


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
                          st.integers(0, 80), st.integers(0, 2**32 - 1), st.binary(max_size=80)),
                max_size=6),
       st.booleans(), st.sampled_from([0xA1B2C3D4, 0xA1B23C4D]), st.binary(max_size=20))
def test_random_records_are_audited_alike_from_buffers_and_frames(records, big, magic, tail):
    """Record headers are chosen by whoever wrote the file: any length, any timestamp, any
    stated size, garbage after the last record."""
    import tempfile
    order = ">" if big else "<"
    data = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1)   # micro or nanoseconds
    for sec, frac, caplen, wire, body in records:
        data += struct.pack(order + "IIII", sec, frac, min(caplen, len(body)), wire) \
            + body[:caplen]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "random.pcap"
        path.write_bytes(data + tail)
        _same_read(path)


# -- end to end ------------------------------------------------------------------------

_VOLATILE = re.compile(r"^(process_|egress_auditor_(config_last_reload_success_timestamp|service_tags_age)_)")


def _replay(tmp_path, pure: bool, pcaps: list, *options: str) -> tuple[list[str], list[str]]:
    """(events, metrics) of one replay under the pure or the compiled core."""
    tag = "pure" if pure else "compiled"
    events, metrics = tmp_path / f"{tag}.jsonl", tmp_path / f"{tag}.prom"
    env = dict(os.environ)
    env.pop("EGRESS_AUDITOR_PURE_PYTHON", None)
    if pure:
        env["EGRESS_AUDITOR_PURE_PYTHON"] = "1"
    subprocess.run([sys.executable, "-m", "auditor", "replay", *map(str, pcaps), "--quiet",
                    "--events", str(events), "--metrics-file", str(metrics), *options],
                   check=True, env=env, cwd=ROOT, capture_output=True)
    # the run's own id differs between runs, and the process's own figures; nothing else may
    return ([re.sub(r'"[0-9a-f]{12}-', '"RUN-', line) for line in events.read_text().splitlines()],
            [line for line in metrics.read_text().splitlines() if not _VOLATILE.match(line)])


def _same_under_either_core(tmp_path, pcaps, *options) -> list[str]:
    compiled = _replay(tmp_path, False, pcaps, *options)
    pure = _replay(tmp_path, True, pcaps, *options)
    assert compiled[1] == pure[1], "metrics differ"
    assert len(compiled[0]) == len(pure[0])
    for i, (c, p) in enumerate(zip(*(compiled[0], pure[0]))):
        assert c == p, f"event {i + 1} differs"
    return compiled[0]


def test_a_replay_gives_the_same_events_and_metrics_under_either_core(tmp_path):
    pcaps = sorted(p for p in CAPTURES if "demo" in p.parts or "tunnels" in p.parts)
    events = _same_under_either_core(tmp_path, pcaps, "--policy", str(ROOT / "pcaps/demo/policy.yaml"))
    assert len(events) > 100


def test_every_real_capture_gives_the_same_events_under_either_core(tmp_path):
    pcaps = sorted(p for p in CAPTURES if "real" in p.parts)
    assert len(pcaps) > 30
    _same_under_either_core(tmp_path, pcaps, "--node-network", "10.0.0.0/8",
                            "--node-network", "192.168.0.0/16", "--node-network", "172.16.0.0/12")


@pytest.mark.parametrize("vxlan", [False, True], ids=["plain", "vxlan"])
def test_the_benchmark_mix_gives_the_same_events_under_either_core(tmp_path, vxlan):
    """The bench mix (bench/gen_mix.py, 20,000 packets), and its VXLAN-wrapped copy
    (bench/wrap_vxlan.py): where the fast path takes almost every packet."""
    mix = tmp_path / "mix.pcap"
    subprocess.run([sys.executable, str(ROOT / "bench/gen_mix.py"), "--packets", "20000",
                    "--out", str(mix), "--seed", "3"], check=True, capture_output=True)
    if vxlan:
        subprocess.run([sys.executable, str(ROOT / "bench/wrap_vxlan.py"), str(mix),
                        str(tmp_path / "vx.pcap")], check=True, capture_output=True)
        mix = tmp_path / "vx.pcap"
    events = _same_under_either_core(tmp_path, [mix], "--node-network", "10.0.0.0/16", "--policy",
                                     str(ROOT / "examples/policies/workspace-approved.yaml"))
    assert len(events) > 500
