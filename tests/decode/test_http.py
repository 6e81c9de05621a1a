"""HTTP request-head decoder: every Host in the real captures against tshark, edge cases."""
import subprocess
from pathlib import Path

import pytest

from auditor import hostnames
from auditor.decode import http

REAL_PCAPS = Path(__file__).resolve().parents[2] / "pcaps" / "real"
HTTP_FILES = ["http-connect-proxy-tls-ipv6-loopback.pcap", "http-ipv4-and-ipv6.pcapng",
              "http-sll-log4shell.pcap", "http-vlan120-host-with-port.pcap",
              "mixed-espn-browsing-dns-http.pcapng", "mixed-windows-host-dns-tls-http.pcap",
              "truncated-file-cut-mid-packet-http.pcap", "sll2-http-download-large.pcap"]


def tshark_requests(path):
    """(host, method, uri, request bytes) per request; reassembled PDU when tshark built one."""
    out = subprocess.run(
        ["tshark", "-r", str(path), "-Y", "http.request", "-T", "fields", "-E", "separator=/t",
         "-e", "http.host", "-e", "http.request.method", "-e", "http.request.uri",
         "-e", "tcp.reassembled.data", "-e", "tcp.payload"],
        capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        host, method, uri, reassembled, payload = line.split("\t")
        yield host, method, uri, bytes.fromhex((reassembled or payload).replace(":", ""))


@pytest.mark.parametrize("name", HTTP_FILES)
def test_host_matches_tshark(name):
    reqs = list(tshark_requests(REAL_PCAPS / name))
    assert reqs
    for host, method, uri, data in reqs:
        r = http.parse_request(data)
        assert isinstance(r, http.HttpRequest), (host, r, data[:80])
        assert (r.host or "") == host
        assert r.method == method and r.target == uri


def test_host_with_port_and_ipv6_literal():
    r = http.parse_request(b"GET / HTTP/1.1\r\nHost: [2001:db8:1:2::1000]:8080\r\n\r\n")
    assert r.host == "[2001:db8:1:2::1000]:8080"
    assert hostnames.http_host(r.host) == "2001:db8:1:2::1000"
    assert hostnames.http_host("192.168.28.253:8000") == "192.168.28.253"
    assert hostnames.http_host("Example.COM.") == "example.com"
    assert hostnames.http_host("2001:db8::1") is None      # a bare IPv6 needs brackets
    assert hostnames.http_host(None) is None


def test_connect_target():
    r = http.parse_request(b"CONNECT secure.newegg.com:443 HTTP/1.1\r\n"
                           b"Host: secure.newegg.com:443\r\n\r\n")
    assert (r.method, r.target, r.version) == ("CONNECT", "secure.newegg.com:443", "HTTP/1.1")
    assert hostnames.http_host(r.target) == "secure.newegg.com"


def test_header_name_case_and_first_host_wins():
    r = http.parse_request(b"PROPFIND /x HTTP/1.1\nhOsT:  a.example \nHost: b.example\n\n")
    assert r.host == "a.example" and r.method == "PROPFIND"
    assert http.parse_request(b"GET / HTTP/1.0\r\n\r\n").host is None


def test_need_more_not_http_malformed():
    assert http.parse_request(b"") == http.NOT_THIS
    assert http.parse_request(b"GE") == http.NEED_MORE
    assert http.parse_request(b"GET /index") == http.NEED_MORE
    assert http.parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n") == http.NEED_MORE
    assert http.parse_request(b"\x16\x03\x01\x02\x00") == http.NOT_THIS
    assert http.parse_request(b"HTTP/1.1 200 OK\r\n\r\n") == http.NOT_THIS
    assert http.parse_request(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") == http.NOT_THIS
    assert http.parse_request(b"GET / HTTP/1.1 junk\r\n\r\n") == http.MALFORMED
    assert http.parse_request(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n") == http.MALFORMED
    assert http.parse_request(b"GET / HTTP/1.1\r\nno colon\r\n\r\n") == http.MALFORMED
    big = b"GET / HTTP/1.1\r\n" + b"X-A: " + b"a" * (16 * 1024) + b"\r\n"
    assert http.parse_request(big) == http.MALFORMED
    assert http.parse_request(b"GET /" + b"a" * (16 * 1024)) == http.MALFORMED
