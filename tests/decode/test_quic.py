"""QUIC Initial decoder: RFC test vectors, every QUIC SNI in the real captures vs tshark."""
import subprocess
from collections import OrderedDict
from pathlib import Path

import pytest

from auditor.decode import quic, tls

REAL_PCAPS = Path(__file__).resolve().parents[2] / "pcaps" / "real"
QUIC_FILES = sorted(p.name for p in REAL_PCAPS.iterdir() if "quic" in p.name)
RFC_DCID = bytes.fromhex("8394c8f03e515708")


def test_rfc9001_appendix_a1_client_keys():
    key, iv, hp = quic.client_initial_keys(quic.V1, RFC_DCID)
    assert key.hex() == "1f369613dd76d5467730efcbe3b1a22d"
    assert iv.hex() == "fa044b2f42a3fd3b46fb255c"
    assert hp.hex() == "9f50449e04a0e810283a1e9933adedd2"


def test_rfc9369_appendix_a1_client_keys():
    key, iv, hp = quic.client_initial_keys(quic.V2, RFC_DCID)
    assert key.hex() == "8b1a0bc121284290a29e0971b5cd045d"
    assert iv.hex() == "91f73e2351d8fa91660e909f"
    assert hp.hex() == "45b95e15235d6f45a6b19cbcb0294ba9"


def udp_flows(path):
    """{udp.stream: (client datagrams, server datagrams)}; client = first sender."""
    out = subprocess.run(
        ["tshark", "-r", str(path), "-Y", "udp", "-T", "fields", "-E", "separator=|",
         "-e", "udp.stream", "-e", "ip.src", "-e", "ipv6.src", "-e", "udp.srcport",
         "-e", "udp.payload"], capture_output=True, text=True, check=False).stdout
    flows: OrderedDict = OrderedDict()
    for line in out.splitlines():
        st, a4, a6, sport, payload = line.split("|")
        f = flows.setdefault(st, ((a4 or a6, sport), [], []))
        f[1 if f[0] == (a4 or a6, sport) else 2].append(bytes.fromhex(payload))
    return {st: (c, s) for st, (_, c, s) in flows.items()}


def tshark_snis(path):
    out = subprocess.run(
        ["tshark", "-r", str(path), "-Y", "quic && tls.handshake.type == 1", "-T", "fields",
         "-e", "udp.stream", "-e", "tls.handshake.extensions_server_name"],
        capture_output=True, text=True, check=False).stdout
    return dict(line.split("\t") for line in out.splitlines())


def flow_hello(datagrams):
    """What the tracker does: keys from the first DCID, assemble CRYPTO, parse the hello."""
    asm = quic.CryptoAssembler()
    key_dcid = None
    for d in datagrams:
        r = quic.parse_initial(d, key_dcid)
        if not isinstance(r, quic.QuicInitial):
            continue
        key_dcid = key_dcid or r.dcid
        for off, data in r.crypto:
            asm.add(off, data)
        hello = tls.parse_handshake(asm.contiguous())
        if hello != tls.NEED_MORE:
            return hello
    return None


@pytest.mark.parametrize("name", QUIC_FILES)
def test_quic_sni_matches_tshark(name):
    path = REAL_PCAPS / name
    expected = tshark_snis(path)
    assert expected
    flows = udp_flows(path)
    for st, (client, server) in flows.items():
        hello = flow_hello(client)
        if st in expected:
            assert isinstance(hello, tls.ClientHello), (st, hello)
            assert hello.sni == expected[st]
        else:
            assert not isinstance(hello, tls.ClientHello), st
        # Server Initials opened with client keys must fail cleanly, never decode.
        for d in server:
            assert quic.parse_initial(d) in (quic.MALFORMED, quic.NOT_THIS)


def test_named_captures():
    for name, sni, version in [("quicv2-echo-loopback.pcap", "localhost", quic.V2),
                               ("quic-kyber-clienthello-multi-initial-ipv6.pcapng",
                                "encrypted-tbn0.gstatic.com", quic.V1),
                               ("quic-chromium-google-de-ipv6.pcap", "www.google.de", quic.V1)]:
        client = next(iter(udp_flows(REAL_PCAPS / name).values()))[0]
        assert flow_hello(client).sni == sni
        assert quic.parse_initial(client[0]).version == version


def test_kyber_hello_spans_initials_and_chromium_crypto_is_unordered():
    client = next(iter(udp_flows(REAL_PCAPS / "quic-kyber-clienthello-multi-initial-ipv6.pcapng")
                       .values()))[0]
    first = quic.parse_initial(client[0])
    assert tls.parse_handshake(b"".join(d for _, d in sorted(first.crypto))) == tls.NEED_MORE
    client = next(iter(udp_flows(REAL_PCAPS / "quic-chromium-google-de-ipv6.pcap")
                       .values()))[0]
    offsets = [o for o, _ in quic.parse_initial(client[0]).crypto]
    assert offsets != sorted(offsets) and len(offsets) > 1


def test_assembler_out_of_order_overlap_and_cap():
    a = quic.CryptoAssembler()
    a.add(6, b"ghij")
    a.add(2, b"cdef")
    assert a.contiguous() == b""
    a.add(0, b"abc")
    assert a.contiguous() == b"abcdefghij"
    a.add(4, b"XXXXXXk")                    # overlap: the first copy of a byte wins
    assert a.contiguous() == b"abcdefghijk"
    a.add(-5, b"zz")
    small = quic.CryptoAssembler(cap=8)
    small.add(0, b"0123456789")
    assert small.contiguous() == b"01234567" and small.overflow


def test_not_quic_and_malformed():
    assert quic.parse_initial(b"") == quic.NOT_THIS
    assert quic.parse_initial(b"\x40" + b"\x00" * 40) == quic.NOT_THIS          # short header
    assert quic.parse_initial(b"\xc0\xff\x00\x00\x1d" + b"\x00" * 40) == quic.NOT_THIS
    assert quic.parse_initial(b"\xe0\x00\x00\x00\x01" + b"\x00" * 40) == quic.NOT_THIS  # 0x2 Handshake
    assert quic.parse_initial(b"\xc0\x00\x00\x00\x01\x08" + b"\x00" * 40) == quic.MALFORMED
    client = next(iter(udp_flows(REAL_PCAPS / "quic-illustrated-loopback.pcap").values()))[0]
    flipped = bytearray(client[0])
    flipped[100] ^= 1                                   # ciphertext: the tag cannot match
    assert quic.parse_initial(bytes(flipped)) == quic.MALFORMED
    assert quic.parse_initial(client[0], key_dcid=b"\x01\x02") == quic.MALFORMED
