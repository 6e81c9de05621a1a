"""dns_tunneling: volume, NULL and long-TXT triggers, once per window, response-only
captures, and capped state."""
import base64
import math
import os
from collections import Counter

import pytest
from hypothesis import example, given, strategies as st
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP

from auditor.detect.dns_tunnel import entropy, wire
from auditor.hostnames import registered_domain
from tests.detect._helpers import CLIENT, detect
from tests.util import dns_answer, dns_query

RESOLVER = "168.63.129.16"


def b32(n: int, i: int) -> str:
    return base64.b32encode(os.urandom(n) + i.to_bytes(4, "big")).decode().rstrip("=").lower()


def tunnel_queries(domain="t.example.org", count=30, qtype="A", chunk=40, start_id=1):
    out = []
    for i in range(count):
        label = b32(chunk, i)
        out.append(dns_query(CLIENT, RESOLVER, f"{label[:60]}.{label[60:] or 'x'}.{domain}", start_id + i,
                             sport=20000 + i, qtype=qtype))
    return out


def test_volume_of_long_high_entropy_names_fires_once():
    found, _ = detect(tunnel_queries(count=60), only="dns_tunneling")
    assert len(found) == 1
    f = found[0]
    assert f.key == "example.org" and f.severity == "high" and f.source_ip == CLIENT
    assert f.evidence["reasons"] == ["volume"]
    assert f.evidence["suspicious_names"] >= 15 and f.evidence["queries"] >= 25
    assert len(f.evidence["sample_names"]) <= 3 and f.evidence["mean_entropy"] >= 3.5


def test_below_volume_does_not_fire():
    assert detect(tunnel_queries(count=24), only="dns_tunneling")[0] == []


def test_repeating_one_long_name_is_not_a_tunnel():
    q = [dns_query(CLIENT, RESOLVER, "a" * 55 + ".cdn.example.org", i, sport=20000 + i) for i in range(40)]
    assert detect(q, only="dns_tunneling")[0] == []


def test_ordinary_browsing_names_do_not_fire():
    names = [f"www{i}.example{i % 3}.com" for i in range(100)] + ["login.microsoftonline.com"] * 20
    q = [dns_query(CLIENT, RESOLVER, n, i, sport=20000 + i) for i, n in enumerate(names)]
    assert detect(q, only="dns_tunneling")[0] == []


def test_reverse_lookups_are_not_volume():
    names = [".".join("0123456789abcdef"[(i + k) % 16] for k in range(32)) + ".ip6.arpa" for i in range(40)]
    q = [dns_query(CLIENT, RESOLVER, n, i, sport=20000 + i, qtype="PTR") for i, n in enumerate(names)]
    assert detect(q, only="dns_tunneling")[0] == []


def test_a_single_null_query_fires():
    found, _ = detect([dns_query(CLIENT, RESOLVER, "vaaaakardli.pirate.sea", 7, qtype="NULL")],
                      only="dns_tunneling")
    assert [(f.key, f.evidence["reasons"], f.evidence["qtypes"]) for f in found] == [
        ("pirate.sea", ["null_query"], {"10": 1})]


def test_long_txt_names_fire_and_short_ones_do_not():
    long_txt = tunnel_queries(count=5, qtype="TXT", chunk=20)  # 32+ byte subdomains
    found, _ = detect(long_txt, only="dns_tunneling")
    assert [f.evidence["reasons"] for f in found] == [["long_txt"]]
    short = [dns_query(CLIENT, RESOLVER, f"s{i}._domainkey.example.org", i, qtype="TXT") for i in range(10)]
    assert detect(short, only="dns_tunneling")[0] == []


def test_two_conditions_at_once_are_critical():
    q = tunnel_queries(count=24) + [dns_query(CLIENT, RESOLVER, b32(40, 99) + ".example.org", 999, qtype="NULL")]
    found, _ = detect(q, only="dns_tunneling")
    assert [(f.severity, sorted(f.evidence["reasons"])) for f in found] == [("critical", ["null_query", "volume"])]


def test_fires_again_after_the_window():
    first = tunnel_queries(count=30)
    later = [(2000.0 + i * 0.01, p) for i, p in enumerate(tunnel_queries(count=30, start_id=500))]
    found, _ = detect(first + later, only="dns_tunneling")
    assert [f.ts >= 2000 for f in found] == [False, True]


def test_spread_beyond_the_window_does_not_fire():
    q = [(1000.0 + i * 20.0, p) for i, p in enumerate(tunnel_queries(count=30))]  # 25 take 480 s
    assert detect(q, only="dns_tunneling")[0] == []


def test_unanswered_responses_count_when_the_query_was_not_seen():
    responses = []
    for i in range(30):
        name = f"{b32(40, i)}.example.org"
        responses.append(IP(src=RESOLVER, dst=CLIENT) / UDP(sport=53, dport=20000 + i) / DNS(
            id=i, qr=1, qd=DNSQR(qname=name), an=DNSRR(rrname=name, rdata="192.0.2.1")))
    found, _ = detect(responses, only="dns_tunneling")
    assert [(f.key, f.source_ip) for f in found] == [("example.org", CLIENT)]


def test_answered_queries_count_once():
    pk = []
    for i in range(20):  # 20 answered queries: 20, not 40, even though 40 messages carry names
        name = f"{b32(40, i)}.example.org"
        pk += [dns_query(CLIENT, RESOLVER, name, i, sport=20000 + i),
               dns_answer(CLIENT, RESOLVER, name, "192.0.2.1", i, sport=20000 + i)]
    assert detect(pk, only="dns_tunneling")[0] == []


def test_ignore_domains():
    assert detect(tunnel_queries(count=40), only="dns_tunneling",
                  detectors={"dns_tunneling": {"ignore_domains": ["example.org"]}})[0] == []


def test_state_is_capped_and_evictions_counted():
    q = [dns_query(CLIENT, RESOLVER, f"{b32(40, i)}.d{i}.org", i, sport=20000 + i) for i in range(10)]
    found, ev = detect(q, only="dns_tunneling", detectors={"max_keys": 4})
    assert found == [] and ev["detector_state"] == 6


@pytest.mark.parametrize("text,expected", [("a\\198b", b"a\xc6b"), ("a\\.b", b"a.b"), ("plain", b"plain")])
def test_wire_undoes_escapes(text, expected):
    assert wire(text) == expected


def test_name_helpers():
    assert registered_domain("x.y.hsc.fr") == "hsc.fr"
    assert registered_domain("acct.blob.core.windows.net") == "acct.blob.core.windows.net"
    assert registered_domain("com") == "com"
    assert entropy(b"aaaa") == 0 and round(entropy(b"abcd"), 3) == 2.0


@given(st.binary(max_size=5000) | st.text("ab0123456789xyz-", max_size=3000).map(str.encode))
@example(b"\x00" * 2048)           # a count just past the table
@example(bytes(range(256)) * 9)
def test_entropy_is_shannons_definition(data):
    # entropy() uses log2(n) - sum(c log2 c) / n with a table of c log2 c; the definition
    # sums -p log2 p. Same within float error, and inside its bounds.
    n = len(data)
    h = entropy(data)
    if not n:
        assert h == 0.0
        return
    definition = -sum(c / n * math.log2(c / n) for c in Counter(data).values())
    assert abs(h - definition) < 1e-9
    assert 0.0 <= h <= math.log2(min(n, 256)) + 1e-9


def test_mx_and_cname_count_like_txt_but_srv_does_not():
    mx = tunnel_queries(count=3, qtype="MX", chunk=20) + tunnel_queries(count=2, qtype="CNAME", chunk=20, start_id=50)
    assert [f.evidence["reasons"] for f in detect(mx, only="dns_tunneling")[0]] == [["long_txt"]]
    guid = "05b5292b-34b8-4fb7-85a3-8beef5fd{:04d}"
    srv = [dns_query(CLIENT, RESOLVER, f"_ldap._tcp.{guid.format(i)}.domains._msdcs.corp.example.com", i,
                     sport=20000 + i, qtype="SRV") for i in range(10)]
    assert detect(srv, only="dns_tunneling")[0] == []


def _one_message(names, qtype="A"):
    qd = [DNSQR(qname=n, qtype=t) for n, t in names]
    return IP(src=CLIENT, dst=RESOLVER) / UDP(sport=20500, dport=53) / DNS(id=77, rd=1, qd=qd)


def test_one_message_of_many_questions_counts_its_first_ones_and_is_judged_once():
    """A query may carry many questions (resolvers answer one; a tunnel straight to its
    server need not care): the first MAX_QUESTIONS count, the domain is judged once per
    message, so two such messages make a volume tunnel and the finding holds both."""
    from auditor.detect.dns_tunnel import MAX_QUESTIONS
    names = [(f"{b32(40, i)[:60]}.t.example.org", "A") for i in range(40)]
    found, _ = detect([_one_message(names)], only="dns_tunneling")
    assert found == []                       # 16 counted: below 25 queries
    found, _ = detect([_one_message(names[:20]), _one_message(names[20:])], only="dns_tunneling")
    (f,) = found
    assert f.evidence["reasons"] == ["volume"]
    assert f.evidence["queries"] == f.evidence["distinct_names"] == 2 * MAX_QUESTIONS
    with_null = names[20:23] + [("x.t.example.org", "NULL")] + names[23:]   # NULL in the 16
    (f,) = detect([_one_message(names[:20]), _one_message(with_null)], only="dns_tunneling")[0]
    assert f.severity == "critical" and set(f.evidence["reasons"]) == {"null_query", "volume"}


def test_what_the_keys_hold_is_bounded_in_names_and_characters():
    """Many domains, each with long unique names: the names held stay within the budget,
    least recently active keys out first, counted as detector_state evictions; the counts
    always equal what the keys hold."""
    from auditor.detect import dns_tunnel
    queries = [dns_query(CLIENT, RESOLVER, f"{b32(40, i)[:60]}.{b32(30, i)[:50]}.d{d}.example", 1 + d * 10 + i,
                         sport=20000 + d * 10 + i) for d in range(40) for i in range(5)]
    queries += [dns_query(CLIENT, RESOLVER, f"{b32(20, i)[:30]}.big.example", 9000 + i, sport=30000 + i)
                for i in range(80)]                      # one key past NAMES_PER_KEY
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dns_tunnel, "MAX_NAMES", 100)
        mp.setattr(dns_tunnel, "MAX_NAME_CHARS", 8_000)
        from tests.detect._helpers import build_detector
        det, evictions = build_detector("dns_tunneling", queries)
    keys = det.keys
    assert keys.names == sum(len(r.names) for r in keys.values()) <= 100
    assert keys.chars == sum(len(n) for r in keys.values() for n in r.names) <= 8_000
    assert evictions.get("detector_state", 0) > 0 and len(keys) < 40
    assert len(keys[(CLIENT, "big.example")].names) == dns_tunnel.NAMES_PER_KEY


def test_a_key_that_fired_builds_no_evidence_again_within_the_window():
    """Once a domain fired, the queries after it within the window are counted, and no
    evidence is built for a finding `fire` would drop."""
    from auditor.detect import dns_tunnel
    fired = []
    real = dns_tunnel.DnsTunneling.fire

    def counting(self, ts, *args, **kwargs):
        fired.append(ts)
        return real(self, ts, *args, **kwargs)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dns_tunnel.DnsTunneling, "fire", counting)
        found, _ = detect(tunnel_queries(count=60), only="dns_tunneling")
    assert len(found) == 1 and len(fired) == 1


def test_names_longer_than_a_host_name_are_measured_alike_and_not_kept():
    """Escaped raw bytes make DNS names of ~1,000 characters that never repeat: measured as
    a cached name would be, and kept by neither the shape nor the registered-domain cache."""
    from auditor import hostnames
    from auditor.detect import dns_tunnel
    long = "\\255" * 100 + "." + "x" * 60 + ".evil.example.com"
    before = (dns_tunnel._cached_shape.cache_info().currsize,
              hostnames._cached_registered_domain.cache_info().currsize)
    assert dns_tunnel._shape(long, 20) == dns_tunnel._measure(long, 20)
    assert dns_tunnel._shape(long, 20)[0] == hostnames.registered_domain(long) == "example.com"
    assert (dns_tunnel._cached_shape.cache_info().currsize,
            hostnames._cached_registered_domain.cache_info().currsize) == before
