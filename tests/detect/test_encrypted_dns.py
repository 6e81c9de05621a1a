"""encrypted_dns: DoT/DoQ on 853, DoH by name or by well-known resolver address."""
from tests.detect._helpers import CLIENT, detect, tcp_session, tls_hello, udp
from tests.util import dns_answer, dns_query

RESOLVER = "168.63.129.16"


def test_dot_on_tcp_853_fires():
    found, _ = detect(tcp_session(CLIENT, "185.228.168.9", 40000, 853, tls_hello("security-filter-dns.cleanbrowsing.org")),
                      only="encrypted_dns")
    assert [(f.key, f.severity, f.evidence["via"]) for f in found] == [("185.228.168.9", "high", "dot")]


def test_doq_on_udp_853_fires():
    found, _ = detect([udp(CLIENT, "94.140.14.140", 40000, 853)], only="encrypted_dns")
    assert [(f.key, f.evidence["via"]) for f in found] == [("94.140.14.140", "doq")]


def test_doh_by_sni_fires_and_other_sni_does_not():
    pk = (tcp_session(CLIENT, "104.16.248.249", 40000, 443, tls_hello("Mozilla.Cloudflare-DNS.com."))
          + tcp_session(CLIENT, "93.184.216.34", 40001, 443, tls_hello("example.com")))
    found, _ = detect(pk, only="encrypted_dns")
    assert [(f.key, f.evidence["via"], f.destination_domain) for f in found] == [
        ("104.16.248.249", "doh_name_sni", "mozilla.cloudflare-dns.com")]   # in normal form


def test_doh_reached_through_a_dns_name_fires():
    pk = [dns_query(CLIENT, RESOLVER, "dns.quad9.net", 1), dns_answer(CLIENT, RESOLVER, "dns.quad9.net", "9.9.9.10", 1)]
    pk += tcp_session(CLIENT, "9.9.9.10", 40000, 443, b"\x00" * 20)  # no SNI visible
    found, _ = detect(pk, only="encrypted_dns")
    assert [(f.key, f.evidence["via"]) for f in found] == [("9.9.9.10", "doh_name_dns")]


def test_well_known_resolver_address_on_443_fires_but_not_on_other_ports():
    pk = tcp_session(CLIENT, "1.1.1.1", 40000, 443, b"\x00" * 20) + tcp_session(CLIENT, "1.0.0.1", 40001, 22, b"SSH-2.0\r\n")
    found, _ = detect(pk, only="encrypted_dns")
    assert [(f.key, f.evidence["via"]) for f in found] == [("1.1.1.1", "doh_resolver_ip")]


def test_once_per_server_per_window():
    pk = [udp(CLIENT, "9.9.9.9", 40000 + i, 853) for i in range(5)] + [(2000.0, udp(CLIENT, "9.9.9.9", 41000, 853))]
    found, _ = detect(pk, only="encrypted_dns")
    assert [round(f.ts) for f in found] == [1000, 2000]


def test_fired_state_is_capped():
    pk = [udp(CLIENT, f"9.9.{i}.9", 40000 + i, 853) for i in range(5)]
    found, ev = detect(pk, only="encrypted_dns", detectors={"max_keys": 2})
    assert len(found) == 5 and ev["detector_state"] == 3
