"""sni_mismatch: the SNI names a host DNS never resolved to this address, while DNS did
resolve other names to it."""
from tests.detect._helpers import CLIENT, detect, tcp_session, tls_hello
from tests.util import dns_answer, dns_query

RESOLVER = "168.63.129.16"
IP = "93.184.216.34"


def resolve(name, ip, qid, client=CLIENT, cname=None):
    return [dns_query(client, RESOLVER, name, qid, sport=30000 + qid),
            dns_answer(client, RESOLVER, name, ip, qid, sport=30000 + qid, cname=cname)]


def test_spoofed_allowlisted_sni_fires():
    pk = resolve("attacker.example.net", IP, 1) + tcp_session(CLIENT, IP, 40000, 443, tls_hello("management.azure.com"))
    found, _ = detect(pk, only="sni_mismatch")
    assert [(f.key, f.severity, f.destination_domain, f.evidence["resolved_names"]) for f in found] == [
        (IP, "medium", "management.azure.com", ["attacker.example.net"])]
    assert found[0].evidence["sni_resolved_elsewhere"] is False


def test_matching_sni_any_case_or_chain_name_or_same_site_does_not_fire():
    pk = resolve("www.contoso.com", IP, 1, cname="contoso.azureedge.net")
    pk += tcp_session(CLIENT, IP, 40000, 443, tls_hello("WWW.Contoso.com."))        # queried name
    pk += tcp_session(CLIENT, IP, 40001, 443, tls_hello("contoso.azureedge.net"))   # CNAME target
    pk += tcp_session(CLIENT, IP, 40002, 443, tls_hello("api.contoso.com"))         # same site
    assert detect(pk, only="sni_mismatch")[0] == []


def test_another_clients_resolution_counts():
    pk = resolve("attacker.example.net", IP, 1, client="10.0.0.9") + resolve("good.example.org", IP, 2, client="10.0.0.8")
    pk += tcp_session(CLIENT, IP, 40000, 443, tls_hello("good.example.org"))
    assert detect(pk, only="sni_mismatch")[0] == []


def test_address_dns_never_named_is_not_a_mismatch():
    assert detect(tcp_session(CLIENT, IP, 40000, 443, tls_hello("example.com")), only="sni_mismatch")[0] == []


def test_once_per_ip_per_window():
    pk = resolve("attacker.example.net", IP, 1)
    pk += tcp_session(CLIENT, IP, 40000, 443, tls_hello("a.example.org"))
    pk += tcp_session(CLIENT, IP, 40001, 443, tls_hello("b.example.org"))
    pk += [(2000.0 + i * 0.01, p) for i, p in enumerate(tcp_session(CLIENT, IP, 40002, 443, tls_hello("c.example.org")))]
    found, _ = detect(pk, only="sni_mismatch")
    assert [f.destination_domain for f in found] == ["a.example.org", "c.example.org"]


def test_state_is_capped_and_evictions_counted():
    pk = []
    for i in range(4):
        pk += resolve(f"h{i}.example.net", f"93.184.216.{10 + i}", i)
    # with 2 addresses kept, .10 is forgotten: nothing to contradict any more
    pk += tcp_session(CLIENT, "93.184.216.10", 40000, 443, tls_hello("other.example.org"))
    pk += tcp_session(CLIENT, "93.184.216.13", 40001, 443, tls_hello("other.example.org"))
    found, ev = detect(pk, only="sni_mismatch", detectors={"max_keys": 2})
    assert [f.key for f in found] == ["93.184.216.13"]
    assert ev["detector_state"] >= 2


PROXY = "198.51.100.8"


def _connect(host: str, sni: str, sport: int) -> list:
    head = f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode()
    return tcp_session(CLIENT, PROXY, sport, 3128, head + tls_hello(sni))


def test_through_an_http_connect_the_sni_is_compared_with_the_connect_target():
    # The proxy's own name is what DNS resolved; the SNI is meant for the CONNECT target,
    # so a matching pair is no mismatch, and one that differs is (fronting through a proxy).
    pk = resolve("proxy.corp.example", PROXY, 1)
    pk += _connect("pypi.org", "pypi.org", 40010)
    assert detect(pk, only="sni_mismatch")[0] == []
    pk += _connect("pypi.org", "evil.example", 40011)
    found, _ = detect(pk, only="sni_mismatch")
    assert [(f.key, f.destination_domain, f.evidence["connect_host"]) for f in found] == [
        (PROXY, "evil.example", "pypi.org")]


def test_what_the_tables_hold_is_bounded_in_names_and_characters():
    """Answers with long chains for many addresses: the names held stay within the budget,
    the least recently answered addresses out first (counted), the counts always equal what
    the tables hold, and a fresh resolution still decides."""
    import pytest
    from auditor.detect import sni_mismatch
    from tests.detect._helpers import build_detector
    long = "x" * 60 + "." + "y" * 60
    pk = []
    for i in range(60):
        pk += resolve(f"{i}.{long}.a{i}.example", f"198.51.100.{i + 1}", 1 + i, cname=f"{i}.{long}.cdn.example")
    for i in range(20):                      # one address named 40 times: past NAMES_PER_IP
        pk += resolve(f"n{i}.busy.example", "203.0.113.7", 200 + i, cname=f"c{i}.busy.example")
    pk += resolve("attacker.example.net", IP, 500)
    pk += tcp_session(CLIENT, IP, 40000, 443, tls_hello("management.azure.com"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sni_mismatch, "MAX_NAMES", 40)
        mp.setattr(sni_mismatch, "MAX_NAME_CHARS", 3_000)
        det, evictions = build_detector("sni_mismatch", pk)
    for table in (det.by_ip, det.resolved):
        held = [n for names in table.values() for n in names] if table is det.by_ip else list(table)
        assert table.names == len(held) <= 40 and table.chars == sum(map(len, held)) <= 3_000
    assert evictions["detector_state"] > 0 and det.fired == 1
    assert len(det.by_ip["203.0.113.7"]) == sni_mismatch.NAMES_PER_IP
