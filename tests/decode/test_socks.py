"""SOCKS client handshakes: each version and address type, every prefix waits, lies are
malformed, other protocols are not SOCKS. The bytes of real clients are in the differential
captures (curl through Dante and MicroSocks); these pin the edges."""
import pytest

from auditor.decode import socks
from auditor.decode.outcome import MALFORMED, NEED_MORE, NOT_THIS
from tests.hardening.crafted import hello, socks4a, socks5

SOCKS4 = b"\x04\x01\x01\xbb\x5d\xb8\xd8\x22job\x00"
V5_IPV4 = b"\x05\x02\x00\x02\x05\x01\x00\x01\x5d\xb8\xd8\x22\x01\xbb"
V5_IPV6 = b"\x05\x01\x00\x05\x01\x00\x04" + bytes(15) + b"\x01" + b"\x00\x50"

CASES = [
    (SOCKS4, (4, socks.CONNECT, "93.184.216.34", 443, False)),
    (socks4a(b"pypi.org"), (4, socks.CONNECT, "pypi.org", 443, True)),
    (socks5(b"pypi.org"), (5, socks.CONNECT, "pypi.org", 443, True)),
    (socks5(b"pypi.org", 8443, (b"lab", b"not-a-secret")), (5, socks.CONNECT, "pypi.org", 8443, True)),
    (V5_IPV4, (5, socks.CONNECT, "93.184.216.34", 443, False)),
    (V5_IPV6, (5, socks.CONNECT, "::1", 80, False)),
]


@pytest.mark.parametrize("wire,want", CASES)
def test_requests(wire, want):
    req = socks.parse_client(wire + hello(b"x.example"))
    assert isinstance(req, socks.SocksRequest)
    assert (req.version, req.command, req.host, req.port, req.domain) == want
    assert req.data_at == len(wire)          # the tunnel starts right after the request


@pytest.mark.parametrize("wire,want", CASES)
def test_every_prefix_needs_more(wire, want):
    for i in range(len(wire)):
        assert socks.parse_client(wire[:i]) is NEED_MORE, i


def test_credentials_are_not_kept():
    req = socks.parse_client(socks5(b"pypi.org", userpass=(b"lab", b"not-a-secret")))
    assert "not-a-secret" not in repr(req)


@pytest.mark.parametrize("wire", [
    b"\x05\x00",                                       # no method offered
    b"\x05\x01\x00\x01",                               # sub-negotiation not offered, no request
    b"\x05\x01\x00\x05\x09\x00\x03\x01a\x00\x50",      # unknown command
    b"\x05\x01\x00\x05\x01\x01\x03\x01a\x00\x50",      # reserved byte set
    b"\x05\x01\x00\x05\x01\x00\x07\x00\x50",           # unknown address type
    b"\x05\x01\x00\x05\x01\x00\x03\x00\x00\x50",       # empty domain
    b"\x05\x01\x02\x01\x00\x00",                       # RFC 1929 empty user name
    b"\x04\x01\x00\x50\x00\x00\x00\x01" + b"u" * 300,  # user id without its NUL
    b"\x04\x01\x00\x50\x00\x00\x00\x01\x00\x00",       # SOCKS4a empty domain
])
def test_malformed(wire):
    assert socks.parse_client(wire) is MALFORMED


@pytest.mark.parametrize("wire", [b"\x04\x09rest", hello(b"pypi.org"), b"GET / HTTP/1.1\r\n", b"\x00"])
def test_not_socks(wire):
    assert socks.parse_client(wire) is NOT_THIS
