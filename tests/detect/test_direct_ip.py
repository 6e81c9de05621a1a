"""direct_ip: unnamed egress to a public address no solicited DNS answer gave."""
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP

from tests.detect._helpers import CLIENT, detect, tcp_session, tls_hello, udp
from tests.util import dns_answer, dns_query

RESOLVER = "168.63.129.16"
SERVER = "93.184.216.34"


def test_unnamed_tcp_to_an_unresolved_public_ip_fires():
    found, _ = detect(tcp_session(CLIENT, SERVER, 40000, 8443, b"\x00\x01binary"), only="direct_ip")
    assert [(f.key, f.severity, f.destination_port, f.source_ip) for f in found] == [
        (SERVER, "medium", 8443, CLIENT)]
    assert found[0].evidence["name_source"] == "none"


def test_a_syn_that_never_got_an_answer_fires_at_flow_end():
    from scapy.layers.inet import TCP
    syn = IP(src=CLIENT, dst=SERVER) / TCP(sport=40000, dport=443, flags="S")
    found, _ = detect([syn], only="direct_ip")
    assert [f.key for f in found] == [SERVER]


def test_resolved_ip_does_not_fire_even_for_another_client():
    pk = [dns_query("10.0.0.9", RESOLVER, "example.com", 1), dns_answer("10.0.0.9", RESOLVER, "example.com", SERVER, 1)]
    pk += tcp_session(CLIENT, SERVER, 40000, 8443, b"\x00\x01binary")
    assert detect(pk, only="direct_ip")[0] == []


def test_unsolicited_answer_does_not_count_as_resolved():
    forged = IP(src=RESOLVER, dst=CLIENT) / UDP(sport=53, dport=33333) / DNS(
        id=77, qr=1, qd=DNSQR(qname="example.com"), an=DNSRR(rrname="example.com", rdata=SERVER))
    found, _ = detect([forged] + tcp_session(CLIENT, SERVER, 40000, 8443, b"\x00\x01"), only="direct_ip")
    assert [f.key for f in found] == [SERVER]


def test_sni_or_host_exempts_but_an_ip_literal_does_not():
    named = tcp_session(CLIENT, SERVER, 40000, 443, tls_hello("example.com"))
    host = tcp_session(CLIENT, "93.184.216.35", 40001, 80, b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
    literal = tcp_session(CLIENT, "93.184.216.36", 40002, 80, b"GET / HTTP/1.1\r\nHost: 93.184.216.36\r\n\r\n")
    found, _ = detect(named + host + literal, only="direct_ip")
    assert [(f.key, f.evidence.get("ip_literal_name")) for f in found] == [("93.184.216.36", "93.184.216.36")]


def test_private_platform_dns_and_icmp_are_exempt():
    from scapy.layers.inet import ICMP
    pk = (tcp_session(CLIENT, "10.1.2.3", 40000, 8443, b"\x00\x01")          # private
          + [udp(CLIENT, "168.63.129.16", 40001, 80), udp(CLIENT, "169.254.169.254", 40002, 80)]
          + [udp(CLIENT, "8.8.8.8", 40003, 53, bytes(DNS(id=1, qd=DNSQR(qname="a.com"))))]
          + [IP(src=CLIENT, dst=SERVER) / ICMP()])
    assert detect(pk, only="direct_ip")[0] == []


def test_ingress_is_not_judged():
    assert detect(tcp_session(SERVER, CLIENT, 40000, 22, b"SSH-2.0-x\r\n"), only="direct_ip")[0] == []


def test_once_per_ip_per_window():
    pk = tcp_session(CLIENT, SERVER, 40000, 8443, b"\x00\x01") + tcp_session(CLIENT, SERVER, 40001, 8443, b"\x00\x01")
    later = [(2000.0 + i * 0.01, p) for i, p in enumerate(tcp_session(CLIENT, SERVER, 40002, 8443, b"\x00\x01"))]
    found, _ = detect(pk + later, only="direct_ip")
    assert [round(f.ts) for f in found] == [1000, 2000]


def test_answered_set_is_capped_and_evictions_counted():
    pk = []
    for i in range(5):
        ip = f"93.184.216.{10 + i}"
        pk += [dns_query("10.0.0.9", RESOLVER, f"h{i}.example.com", i, sport=30000 + i),
               dns_answer("10.0.0.9", RESOLVER, f"h{i}.example.com", ip, i, sport=30000 + i)]
    # Another client connects (so its own DNS cache does not name the flow): .10 was pushed
    # out of the 3-entry table and now looks direct, .14 is still known.
    pk += tcp_session(CLIENT, "93.184.216.10", 40000, 8443, b"\x00\x01", isn=1)
    pk += tcp_session(CLIENT, "93.184.216.14", 40001, 8443, b"\x00\x01", isn=1)
    found, ev = detect(pk, only="direct_ip", detectors={"max_keys": 3})
    assert [f.key for f in found] == ["93.184.216.10"]
    assert ev["detector_state"] >= 2
