"""dns_resolver_bypass: DNS to a server that is not a configured resolver."""
from scapy.layers.inet import IP, TCP

from tests.detect._helpers import CLIENT, detect
from tests.util import dns_query


def test_query_to_another_resolver_fires_once_per_server():
    pk = [dns_query(CLIENT, "8.8.8.8", "a.example.com", 1), dns_query(CLIENT, "8.8.8.8", "b.example.com", 2),
          dns_query(CLIENT, "1.1.1.1", "c.example.com", 3)]
    found, _ = detect(pk, only="dns_resolver_bypass")
    assert [(f.key, f.severity, f.evidence["first_query"]) for f in found] == [
        ("8.8.8.8", "medium", "a.example.com"), ("1.1.1.1", "medium", "c.example.com")]


def test_configured_and_loopback_resolvers_do_not_fire():
    pk = [dns_query(CLIENT, "168.63.129.16", "a.example.com", 1), dns_query(CLIENT, "10.0.0.2", "b.example.com", 2),
          dns_query("127.0.0.1", "127.0.0.53", "c.example.com", 3)]
    found, _ = detect(pk, only="dns_resolver_bypass", dns_servers=["168.63.129.16", "10.0.0.2"],
                      node_networks=["10.0.0.0/8", "127.0.0.0/8"])
    assert found == []


def test_tcp_53_without_a_query_fires_at_flow_end():
    found, _ = detect([IP(src=CLIENT, dst="9.9.9.9") / TCP(sport=40000, dport=53, flags="S")],
                      only="dns_resolver_bypass")
    assert [(f.key, f.evidence["transport"], f.evidence.get("first_query")) for f in found] == [("9.9.9.9", "tcp", None)]


def test_refires_after_the_window():
    pk = [dns_query(CLIENT, "8.8.8.8", "a.example.com", 1), (1200.0, dns_query(CLIENT, "8.8.8.8", "b.example.com", 2)),
          (1400.0, dns_query(CLIENT, "8.8.8.8", "c.example.com", 3))]
    found, _ = detect(pk, only="dns_resolver_bypass")
    assert [f.evidence["first_query"] for f in found] == ["a.example.com", "c.example.com"]


def test_fired_state_is_capped():
    pk = [dns_query(CLIENT, f"8.8.{i}.8", "a.example.com", i, sport=30000 + i) for i in range(6)]
    found, ev = detect(pk, only="dns_resolver_bypass", detectors={"max_keys": 2})
    assert len(found) == 6 and ev["detector_state"] == 4
