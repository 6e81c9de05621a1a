"""Properties: the L2-L4 decoder and the capture readers never fail on hostile bytes."""
import struct

from hypothesis import given, strategies as st

from auditor.decode import tunnel
from auditor.decode.packet import Fragment, Packet, Tunnel, decode
from auditor.sources.pcap import CaptureFileError, CaptureFile

LINKTYPES = [0, 1, 9, 50, 101, 108, 113, 228, 229, 239, 276, 147]
LAYERS = {"link", "linktype", "ip", "ipv6", "tcp", "udp", "icmp", "tunnel"}


def _check(result, frame, opened=False):
    if isinstance(result, Tunnel) and not opened:       # and everything inside it
        for layer in tunnel.layers(result):
            _check(layer, frame, opened=True)
        if result.proto == -1:                          # MPLS: no carrier of its own
            return
    assert result is None or result in LAYERS or isinstance(result, (Packet, Fragment))
    if isinstance(result, Fragment):
        assert len(result.data) <= len(frame) and result.offset % 8 == 0
    if isinstance(result, Packet):
        assert len(result.src) == len(result.dst) in (4, 16)
        assert len(result.payload) <= len(frame)
        assert 0 <= result.sport < 65536 and 0 <= result.dport < 65536


@given(st.sampled_from(LINKTYPES), st.binary(max_size=200))
def test_decode_never_raises_on_arbitrary_bytes(linktype, frame):
    _check(decode(linktype, frame, 0.0, len(frame)), frame)


@st.composite
def l4(draw, proto):
    payload = draw(st.binary(max_size=40))
    if proto == 6:
        return struct.pack("!HHIIBBHHH", draw(st.integers(0, 65535)), 443,
                           draw(st.integers(0, 2**32 - 1)), 0, 0x50, draw(st.integers(0, 255)),
                           0, 0, 0) + payload
    if proto == 17:
        return struct.pack("!HHHH", 53, 53, 8 + len(payload), 0) + payload
    return b"\x08\0\0\0" + payload


@st.composite
def frames(draw):
    proto = draw(st.sampled_from([6, 17, 1, 58, 47]))
    body = draw(l4(proto))
    if draw(st.booleans()):
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0,
                         draw(st.sampled_from([0, 0x2000, 0x4000, 3])), 64, proto, 0,
                         b"\n\0\0\1", b"\n\0\0\2") + body
        et = 0x0800
    else:
        exts = draw(st.lists(st.sampled_from([0, 43, 60, 44, 51]), max_size=3))
        chain = b""
        nhs = exts + [proto]
        for i, e in enumerate(exts):
            chain += bytes([nhs[i + 1], 0 if e != 51 else 0]) + b"\0" * (6 if e != 51 else 6)
        ip = struct.pack("!IHBB16s16s", 0x60000000, len(chain) + len(body), nhs[0], 64,
                         b"\x20" * 16, b"\x21" * 16) + chain + body
        et = 0x86DD
    link = draw(st.sampled_from(["eth", "vlan", "pppoe", "null", "raw", "sll", "sll2"]))
    if link == "eth":
        return 1, b"\0" * 12 + struct.pack("!H", et) + ip
    if link == "vlan":
        return 1, b"\0" * 12 + struct.pack("!HHHHH", 0x88A8, 1, 0x8100, 2, et) + ip
    if link == "pppoe":
        ppp = 0x21 if et == 0x0800 else 0x57
        return 1, b"\0" * 12 + struct.pack("!HBBHHH", 0x8864, 0x11, 0, 1, len(ip) + 2, ppp) + ip
    if link == "null":
        return 0, struct.pack("<I", 2 if et == 0x0800 else 30) + ip
    if link == "raw":
        return 101, ip
    if link == "sll":
        return 113, struct.pack("!HHH8sH", 0, 1, 6, b"\0" * 8, et) + ip
    return 276, struct.pack("!HHIHBB8s", et, 0, 1, 1, 0, 6, b"\0" * 8) + ip


@given(frames(), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
       st.integers(0, 400))
def test_decode_never_raises_on_mutated_valid_frames(lt_frame, flips, cut):
    linktype, frame = lt_frame
    assert isinstance(decode(linktype, frame, 0.0, len(frame)), (Packet, Fragment))   # unmutated
    b = bytearray(frame)
    for pos, val in flips:
        if b:
            b[pos % len(b)] = val
    mutated = bytes(b[:cut])
    _check(decode(linktype, mutated, 0.0, len(frame)), mutated)


PCAP_HDR = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
PCAPNG_HDR = struct.pack("<II", 0x0A0D0D0A, 28) + struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + \
    struct.pack("<I", 28)


def _read_all(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("fuzz") / "f.pcap"
    p.write_bytes(data)
    try:
        cf = CaptureFile(p)
    except CaptureFileError as e:
        assert "f.pcap" in str(e) and "\n" not in str(e)
        return
    for ts, lt, fr, wl in cf:
        assert isinstance(fr, bytes) and isinstance(lt, int)
    assert len(cf.warnings) <= 1


@given(st.binary(max_size=300))
def test_reader_arbitrary_bytes(tmp_path_factory, data):
    _read_all(tmp_path_factory, data)


@given(st.sampled_from([PCAP_HDR, PCAPNG_HDR,
                        struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]),
       st.binary(max_size=400))
def test_reader_valid_header_then_garbage(tmp_path_factory, header, data):
    _read_all(tmp_path_factory, header + data)
