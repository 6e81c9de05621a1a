"""Capture-file reader: packet counts equal tshark's, formats, damage, and CaptureFileError."""
import shutil
import struct
import subprocess

import pytest

from auditor.sources.pcap import CaptureFileError, CaptureFile, read_frames

ALL = None  # filled lazily from the fixture directory


def tshark_count(path) -> int:
    if shutil.which("tshark") is None:
        pytest.fail("tshark is not installed: install it (apt-get install tshark) to run "
                    "the differential tests")
    out = subprocess.run(["tshark", "-n", "-r", str(path), "-T", "fields", "-e", "frame.number"],
                         capture_output=True, text=True).stdout   # stderr: root warning
    return len(out.split())


def test_counts_equal_tshark_on_all_real_captures(real_pcaps):
    files = sorted(real_pcaps.glob("*.pcap*"))
    assert len(files) == 54          # pcaps/real/SOURCES.md: 51 third-party + 3 recorded here
    wrong = []
    for path in files:
        ours = sum(1 for _ in read_frames(path))
        theirs = tshark_count(path)
        if ours != theirs:
            wrong.append(f"{path.name}: ours {ours}, tshark {theirs}")
    assert not wrong, "packet counts differ from tshark:\n" + "\n".join(wrong)


def test_pcapng_sniffed_by_magic_not_extension(real_pcaps):
    frames = list(read_frames(real_pcaps / "dns-cname-chains-espn.pcap"))
    assert len(frames) == 7 and all(lt == 1 for _, lt, _, _ in frames)


def test_pcapng_multi_interface(real_pcaps):
    cf = CaptureFile(real_pcaps / "dns-pcapng-multi-interface.pcapng")
    frames = list(cf)
    assert len(frames) == 6 and not cf.warnings
    ts = [f[0] for f in frames]
    assert all(1.0e18 < t < 2.0e18 for t in ts)  # if_tsresol applied per interface (ns)


def test_linktypes_recorded(real_pcaps):
    expect = {"tls13-illustrated-loopback.pcap": 0, "tls13-sll2-openjdk.pcap": 276,
              "http-sll-log4shell.pcap": 113, "tls-rawipv4-linktype228.pcap": 228,
              "http-vlan120-host-with-port.pcap": 1}
    for name, lt in expect.items():
        assert {f[1] for f in read_frames(real_pcaps / name)} == {lt}, name


def test_snaplen_truncated_frames_keep_wire_length(real_pcaps):
    frames = list(read_frames(real_pcaps / "snaplen96-bulk-tcp.pcap"))
    assert sum(1 for f in frames if len(f[2]) < f[3]) == 691
    assert max(len(f[2]) for f in frames) <= 96


def test_truncated_file(real_pcaps):
    cf = CaptureFile(real_pcaps / "truncated-file-cut-mid-packet-http.pcap")
    assert sum(1 for _ in cf) == 2696
    assert len(cf.warnings) == 1
    w = cf.warnings[0]
    assert w.startswith("truncated-file-cut-mid-packet-http.pcap: truncated record at offset ")
    assert "stopped after 2696 packets" in w and "\n" not in w
    assert cf.bytes_read == cf.size == 2715460


def test_corrupt_record_header(real_pcaps):
    cf = CaptureFile(real_pcaps / "corrupt-fuzzed-record-header.pcap")
    assert sum(1 for _ in cf) == 2           # as tshark: wiretap picks the 24-byte variant
    assert cf.warnings == ["corrupt-fuzzed-record-header.pcap: corrupt record header at "
                           "offset 261 (caplen 16711424 > 262144); stopped after 2 packets"]


def test_missing_file(tmp_path):
    with pytest.raises(CaptureFileError, match="nope.pcap: cannot read"):
        read_frames(tmp_path / "nope.pcap")


def test_not_a_capture(tmp_path):
    p = tmp_path / "notes.pcap"
    p.write_text("hello, this is text and not a capture file\n")
    with pytest.raises(CaptureFileError) as e:
        read_frames(p)
    assert "notes.pcap" in str(e.value) and "not a capture" in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("content", [b"", b"\xd4\xc3", b"\xd4\xc3\xb2\xa1" + b"\0" * 10,
                                     b"\x0a\x0d\x0d\x0a" + b"\0" * 20])
def test_short_or_bad_headers(tmp_path, content):
    p = tmp_path / "x.pcap"
    p.write_bytes(content)
    with pytest.raises(CaptureFileError, match="x.pcap"):
        read_frames(p)


def _pcap(order, magic, records, linktype=1):
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for sec, frac, data in records:
        out += struct.pack(order + "IIII", sec, frac, len(data), len(data) + 4) + data
    return out


@pytest.mark.parametrize("order,magic,unit_ns", [("<", 0xA1B2C3D4, 1000), (">", 0xA1B2C3D4, 1000),
                                                 ("<", 0xA1B23C4D, 1), (">", 0xA1B23C4D, 1)])
def test_classic_byte_orders_and_resolutions(tmp_path, order, magic, unit_ns):
    """Timestamps come out as exact int nanoseconds, whatever the file's resolution."""
    p = tmp_path / "a.cap"
    p.write_bytes(_pcap(order, magic, [(1764547200, 500, b"abc"), (1764547201, 7, b"x" * 2000)], 228))
    frames = list(read_frames(p))
    assert frames == [(1764547200 * 10**9 + 500 * unit_ns, 228, b"abc", 7),
                      (1764547201 * 10**9 + 7 * unit_ns, 228, b"x" * 2000, 2004)]


def _block(order, btype, body):
    blen = 12 + len(body) + (-len(body)) % 4
    body += b"\0" * ((-len(body)) % 4)
    return struct.pack(order + "II", btype, blen) + body + struct.pack(order + "I", blen)


def _shb(order):
    return _block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def _idb(order, lt, tsresol=None):
    opts = b""
    if tsresol is not None:
        opts = struct.pack(order + "HH", 9, 1) + bytes([tsresol]) + b"\0\0\0" + b"\0" * 4
    return _block(order, 1, struct.pack(order + "HHI", lt, 0, 0) + opts)


def _epb(order, ifid, ts, data):
    return _block(order, 6, struct.pack(order + "IIIII", ifid, ts >> 32, ts & 0xFFFFFFFF,
                                        len(data), len(data)) + data)


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_sections_interfaces_and_block_types(tmp_path, order):
    other = "<" if order == ">" else ">"
    data = (_shb(order) + _idb(order, 1) + _idb(order, 101, 9)
            + _block(order, 5, b"statistics")                         # ISB: skipped
            + _epb(order, 0, 1_500_000_000_000_000, b"eth")
            + _epb(order, 1, 1_500_000_000_000_000_123, b"raw!!")
            + _block(order, 3, struct.pack(order + "I", 6) + b"simple")   # SPB, iface 0
            + _block(order, 0x80000001, b"custom")                   # unknown: skipped
            + _shb(other) + _idb(other, 113, 0x80 | 10)               # new section, other order
            + _epb(other, 0, 1024 * 5, b"sll"))
    p = tmp_path / "b.pcap"
    p.write_bytes(data)
    cf = CaptureFile(p)
    frames = list(cf)
    assert not cf.warnings
    assert [(lt, fr, wl) for _, lt, fr, wl in frames] == [
        (1, b"eth", 3), (101, b"raw!!", 5), (1, b"simple", 6), (113, b"sll", 3)]
    assert frames[0][0] == 1_500_000_000 * 10**9               # microseconds (the default)
    assert frames[1][0] == 1_500_000_000_000_000_123           # if_tsresol 9: nanoseconds, exact
    assert frames[3][0] == 5 * 10**9                           # if_tsresol 2^-10


def test_pcapng_damage_stops_with_one_warning(tmp_path):
    good = _shb("<") + _idb("<", 1) + _epb("<", 0, 0, b"one")
    p = tmp_path / "c.pcapng"
    p.write_bytes(good + _epb("<", 3, 0, b"bad interface") + _epb("<", 0, 0, b"two"))
    cf = CaptureFile(p)
    assert [f[2] for f in cf] == [b"one"]
    assert cf.warnings == [f"c.pcapng: corrupt packet block at offset {len(good)} "
                           "(interface 3, caplen 13); stopped after 1 packets"]
    p.write_bytes(good + _epb("<", 0, 0, b"two")[:-5])
    cf = CaptureFile(p)
    assert len(list(cf)) == 1 and len(cf.warnings) == 1 and "truncated block" in cf.warnings[0]


def test_progress_counters(real_pcaps):
    cf = CaptureFile(real_pcaps / "mixed-windows-host-dns-tls-http.pcap")
    assert cf.size == 1601060
    n = sum(1 for _ in cf)
    assert n == 3138 and cf.bytes_read == cf.size and cf.warnings == []
