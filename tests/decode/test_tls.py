"""TLS ClientHello decoder: real captures against tshark, split hellos, ECH, lying lengths."""
import subprocess
from pathlib import Path
from collections import defaultdict

import pytest

from auditor.decode import tls
from auditor.decode.http import parse_request

REAL_PCAPS = Path(__file__).resolve().parents[2] / "pcaps" / "real"
TLS_FILES = sorted(p.name for p in REAL_PCAPS.iterdir()
                   if p.name.startswith(("tls", "mixed-windows", "http-connect")))


def client_streams(path) -> dict[str, bytes]:
    """Client->server TCP payload of each stream, reassembled in sequence order."""
    out = subprocess.run(
        ["tshark", "-r", str(path), "-Y", "tcp", "-T", "fields", "-E", "separator=|",
         "-e", "tcp.stream", "-e", "tcp.flags.syn", "-e", "tcp.flags.ack", "-e", "ip.src",
         "-e", "ipv6.src", "-e", "tcp.srcport", "-e", "tcp.seq", "-e", "tcp.payload"],
        capture_output=True, text=True, check=False).stdout
    client: dict[str, tuple] = {}
    segs: dict[str, dict[int, bytes]] = defaultdict(dict)
    for line in out.splitlines():
        st, syn, ack, a4, a6, sport, seq, payload = line.split("|")
        who = (a4 or a6, sport)
        if st not in client and syn == "1" and ack == "0":
            client[st] = who
        if client.get(st) == who and payload:
            segs[st].setdefault(int(seq), bytes.fromhex(payload.replace(":", "")))
    streams = {}
    for st, pieces in segs.items():
        data = b""
        for seq in sorted(pieces):
            if seq - 1 <= len(data):          # tshark's relative seq starts at 1
                data += pieces[seq][len(data) - (seq - 1):]
        streams[st] = data
    return streams


def tshark_snis(path) -> dict[str, str]:
    out = subprocess.run(
        ["tshark", "-r", str(path), "-Y", "tcp && tls.handshake.type == 1", "-T", "fields",
         "-e", "tcp.stream", "-e", "tls.handshake.extensions_server_name"],
        capture_output=True, text=True, check=False).stdout
    snis = {}
    for line in out.splitlines():
        st, _, sni = line.partition("\t")
        snis.setdefault(st, sni)
    return snis


def first_hello(data: bytes):
    """The tracker's view: TLS at the start, or after an HTTP CONNECT request head."""
    res = tls.parse_records(data)
    if res == tls.NOT_THIS and not isinstance(parse_request(data), str):
        res = tls.parse_records(data[data.find(b"\r\n\r\n") + 4:])
    return res


@pytest.mark.parametrize("name", TLS_FILES)
def test_sni_matches_tshark(name):
    path = REAL_PCAPS / name
    expected = tshark_snis(path)
    streams = client_streams(path)
    assert expected, "tshark found no ClientHello"
    for st, sni in expected.items():
        res = first_hello(streams[st])
        assert isinstance(res, tls.ClientHello), (st, res)
        assert (res.sni or "") == sni, st
    # Streams tshark saw no ClientHello in must not produce one either.
    for st, data in streams.items():
        if st not in expected:
            assert not isinstance(first_hello(data), tls.ClientHello), st


@pytest.mark.parametrize("name,sni", [("tls-clienthello-split-segments.pcap",
                                       "clients2.google.com"),
                                      ("tls12-clienthello-mtu300.pcap", "www.google.com")])
def test_split_hello_needs_more_on_every_prefix(name, sni):
    data = next(d for d in client_streams(REAL_PCAPS / name).values()
                if isinstance(tls.parse_records(d), tls.ClientHello))
    hello = tls.parse_records(data)
    assert hello.sni == sni
    total = None
    for cut in range(0, len(data)):
        res = tls.parse_records(data[:cut])
        if isinstance(res, tls.ClientHello):
            total = cut
            break
        assert res == tls.NEED_MORE, cut
    assert total is not None and total > 300


def test_ech_reports_outer_sni():
    streams = client_streams(REAL_PCAPS / "tls13-ech-cloudflare.pcap")
    hellos = [h for h in map(tls.parse_records, streams.values())
              if isinstance(h, tls.ClientHello)]
    assert len(hellos) == 2
    for h in hellos:
        assert h.ech and h.sni == "cloudflare-ech.com"
        assert 0x0304 in h.supported_versions and h.version == 0x0303


def test_tls12_hello_fields():
    data = next(iter(client_streams(REAL_PCAPS / "tls12-clienthello-mtu300.pcap").values()))
    h = tls.parse_records(data)
    assert h.supported_versions == () and not h.ech and h.version == 0x0303


def _hello(ext: bytes) -> bytes:
    body = (b"\x03\x03" + b"\x00" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
            + len(ext).to_bytes(2, "big") + ext)
    return b"\x01" + len(body).to_bytes(3, "big") + body


def _sni_ext(name: bytes) -> bytes:
    entry = b"\x00" + len(name).to_bytes(2, "big") + name
    lst = len(entry).to_bytes(2, "big") + entry
    return b"\x00\x00" + len(lst).to_bytes(2, "big") + lst


def _record(hs: bytes) -> bytes:
    return b"\x16\x03\x01" + len(hs).to_bytes(2, "big") + hs


def test_synthetic_hello_and_alpn():
    alpn = b"\x00\x10\x00\x0e\x00\x0c\x02h2\x08http/1.1"
    h = tls.parse_records(_record(_hello(_sni_ext(b"Example.COM") + alpn)))
    assert h.sni == "Example.COM" and h.alpn == ("h2", "http/1.1")
    assert tls.parse_handshake(_hello(_sni_ext(b"a.b"))).sni == "a.b"


def test_lying_lengths_are_malformed():
    good = _hello(_sni_ext(b"example.com"))
    ext_at = 4 + 2 + 32 + 1 + 4 + 2
    bad_ext = bytearray(good)
    bad_ext[ext_at + 1] += 1                    # extensions block longer than the body
    assert tls.parse_handshake(bytes(bad_ext)) == tls.MALFORMED
    bad_sni = bytearray(good)
    bad_sni[ext_at + 2 + 4 + 1] += 7            # server_name_list longer than the ext
    assert tls.parse_handshake(bytes(bad_sni)) == tls.MALFORMED
    assert tls.parse_records(_record(b"\x02" + good[1:])) == tls.MALFORMED
    assert tls.parse_records(b"\x16\x03\x01\x00\x00") == tls.MALFORMED
    huge = b"\x01\x01\x00\x01" + b"\x00" * 10   # claims 65537 bytes: over the cap
    assert tls.parse_handshake(huge) == tls.MALFORMED
    assert tls.parse_records(_record(huge)) == tls.MALFORMED
    # a record that ends before the hello, followed by an alert record
    rec = _record(good[:20]) + b"\x15\x03\x03\x00\x02\x02\x28"
    assert tls.parse_records(rec) == tls.MALFORMED


def test_not_tls_and_need_more():
    assert tls.parse_records(b"GET / HTTP/1.1\r\n") == tls.NOT_THIS
    assert tls.parse_records(b"\x16\x09") == tls.NOT_THIS
    assert tls.parse_records(b"SSH-2.0-OpenSSH") == tls.NOT_THIS
    assert tls.parse_records(b"") == tls.NEED_MORE
    assert tls.parse_records(b"\x16\x03") == tls.NEED_MORE
    assert tls.parse_handshake(b"\x01\x00") == tls.NEED_MORE
