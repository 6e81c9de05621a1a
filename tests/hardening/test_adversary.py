"""A compromised job on the node, with CAP_NET_RAW, tries to get data out unseen: each test
replays the crafted capture of one trick (built in `crafted.py`) and asserts the auditor is
not fooled. Every one of these passed the trick through on the release before this file.
docs/hardening.md ("Threat model") says what each guarantees and what cannot be seen."""
from __future__ import annotations

from scapy.layers.inet import IP, UDP
from scapy.packet import Raw

from tests.hardening.crafted import (AZURE_DNS, NODE, SERVER, Conn, detectors, dns_pair,
                                     flows_to, hello, run)

SMALL_BULK = {"bulk_upload": {"min_bytes": 200_000}}
UPLOAD = b"u" * 300_000


# -- evasion: every byte the node sends is judged --------------------------------------------

def test_a_forged_synack_before_the_handshake_does_not_turn_the_upload_into_ingress(tmp_path):
    c = Conn()
    forged = c._c("SA", ttl=1)            # node -> server, dies on the first hop
    c.packets.append(forged)
    c.handshake().send(hello(b"evil.example")).ack().send(UPLOAD).ack().close()
    report = run(tmp_path, c.packets, detectors=SMALL_BULK)
    (flow,) = flows_to(report, SERVER)
    assert flow["source"]["ip"] == NODE and flow["network"]["direction"] == "egress"
    assert flow["source"]["bytes"] > 300_000
    assert flow["egress_auditor"]["verdict"] == "denied"
    assert any(v["destination"]["ip"] == SERVER for v in report.violations)
    assert "bulk_upload" in detectors(report)


def test_udp_first_seen_from_the_remote_is_still_judged_with_the_node_bytes(tmp_path):
    first = IP(src=SERVER, dst=NODE) / UDP(sport=4444, dport=5555) / Raw(b"hi")
    upload = [IP(src=NODE, dst=SERVER) / UDP(sport=5555, dport=4444) / Raw(b"x" * 1000)
              for _ in range(50)]
    report = run(tmp_path, [first, *upload])
    (flow,) = flows_to(report, SERVER)
    assert flow["source"]["ip"] == NODE and flow["source"]["bytes"] >= 50 * 1000
    assert flow["egress_auditor"]["verdict"] == "denied"


def test_a_clienthello_that_dies_before_the_server_cannot_name_the_flow(tmp_path):
    c = Conn().handshake()
    seq = c.cseq
    c.send(hello(b"pypi.org"), ttl=1, advance=False)      # allowed name, never reaches the server
    c.resend_at(seq, hello(b"evil.org"))                    # same length, what the server gets
    c.cseq += len(hello(b"evil.org"))
    c.ack().send(b"secret" * 100).close()
    report = run(tmp_path, c.packets)
    (flow,) = flows_to(report, SERVER)
    assert flow["egress_auditor"]["verdict"] == "denied", flow
    assert "conflicting_retransmission" in detectors(report)


def test_the_conflict_is_caught_when_the_real_copy_comes_late(tmp_path):
    c = Conn().handshake()
    seq = c.cseq
    c.send(hello(b"pypi.org"), ttl=1, advance=False)
    c.send(b"x" * 10, advance=False)          # noise the server never acks
    c.resend_at(seq, hello(b"evil.org"))
    c.cseq += len(hello(b"evil.org"))
    c.ack().close()
    report = run(tmp_path, c.packets)
    assert [f["egress_auditor"]["verdict"] for f in flows_to(report, SERVER)] == ["denied"]
    assert any(v["destination"]["ip"] == SERVER for v in report.violations)


def test_overlapping_fragments_that_disagree_are_dropped_and_raised(tmp_path):
    datagram = IP(src=NODE, dst=SERVER, id=77) / UDP(sport=5000, dport=6000) / Raw(b"A" * 64)
    frag1, frag2 = datagram.copy(), datagram.copy()
    raw = bytes(datagram[UDP])
    frag1[IP].flags, frag1[IP].frag = "MF", 0
    frag1[IP].remove_payload()
    frag1 = frag1 / Raw(raw[:32])
    second = IP(src=NODE, dst=SERVER, id=77, frag=4, proto=17) / Raw(raw[32:])
    liar = IP(src=NODE, dst=SERVER, id=77, frag=2, flags="MF", proto=17) / Raw(b"B" * 24)
    report = run(tmp_path, [frag1, liar, second])
    assert "conflicting_retransmission" in detectors(report)
    assert flows_to(report, SERVER) == []          # the datagram was dropped, as Linux does


# -- names stricter than the wire, not looser -------------------------------------------------

def _sni_verdict(tmp_path, sni: bytes) -> dict:
    c = Conn().handshake().send(hello(sni)).ack().close()
    (flow,) = flows_to(run(tmp_path, c.packets), SERVER)
    return flow


def test_fullwidth_soft_hyphen_and_zero_width_snis_name_nothing(tmp_path):
    for sni in ("ｐｙｐｉ.org", "py\u00adpi.org", "py\u200bpi.org", "pypi.org\u3002"):
        flow = _sni_verdict(tmp_path, sni.encode("utf-8"))
        assert flow["egress_auditor"]["verdict"] == "denied", sni
        assert flow["destination"].get("domain") != "pypi.org"
    assert _sni_verdict(tmp_path, b"PyPI.org")["egress_auditor"]["verdict"] == "allowed"


def test_http_hosts_that_are_not_host_port_name_nothing(tmp_path):
    for host in (b"[pypi.org]", b"pypi.org:evil", b"pypi.org :80", b"pypi.org:80:80"):
        c = Conn(dport=80).handshake().send(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n").ack().close()
        (flow,) = flows_to(run(tmp_path, c.packets), SERVER)
        assert flow["egress_auditor"]["verdict"] == "denied", host
    c = Conn(dport=80).handshake().send(b"GET / HTTP/1.1\r\nHost: pypi.org:80\r\n\r\n").ack().close()
    assert flows_to(run(tmp_path, c.packets), SERVER)[0]["egress_auditor"]["verdict"] == "allowed"


def test_a_clienthello_on_a_tcp_fast_open_syn_is_read(tmp_path):
    c = Conn()
    c.handshake(syn_payload=hello(b"pypi.org"))
    c.ack().close()
    (flow,) = flows_to(run(tmp_path, c.packets), SERVER)
    assert flow["tls"]["client"]["server_name"] == "pypi.org"
    assert flow["egress_auditor"]["verdict"] == "allowed"


# -- private endpoints only through the platform resolver -------------------------------------

def _blob_upload(tmp_path, resolver: str, answer_ip: str):
    name = "mlstorage.blob.core.windows.net"
    c = Conn(server=answer_ip).handshake().send(hello(name.encode())).ack().send(UPLOAD).ack().close()
    report = run(tmp_path, dns_pair(name, answer_ip, server=resolver) + c.packets,
                 detectors=SMALL_BULK)
    (flow,) = flows_to(report, answer_ip)
    return flow, report


def test_an_answer_from_a_resolver_the_job_chose_is_no_private_endpoint(tmp_path):
    flow, report = _blob_upload(tmp_path, "8.8.8.8", "10.9.9.9")
    assert flow["egress_auditor"]["reason"] != "private_endpoint"
    assert {"dns_resolver_bypass", "bulk_upload"} <= detectors(report)


def test_a_public_address_is_never_a_private_endpoint(tmp_path):
    flow, report = _blob_upload(tmp_path, AZURE_DNS, "20.60.1.1")
    assert flow["egress_auditor"]["reason"] != "private_endpoint"
    assert "bulk_upload" in detectors(report)
    flow, report = _blob_upload(tmp_path, AZURE_DNS, "10.1.1.5")    # the real thing is still one
    assert flow["egress_auditor"]["reason"] == "private_endpoint"
    assert "bulk_upload" not in detectors(report)


# -- detectors an attacker cannot sidestep ----------------------------------------------------

def test_bulk_upload_counts_per_ip_across_names_and_connections(tmp_path):
    packets = []
    for i in range(10):
        c = Conn(sport=41000 + i).handshake().send(hello(f"n{i}.example{i}.com".encode()))
        packets += c.ack().send(b"u" * 30_000).ack().close().packets
    report = run(tmp_path, packets, detectors=SMALL_BULK)
    (f,) = [f for f in report.findings if f["rule"]["name"] == "bulk_upload"]
    assert f["egress_auditor"]["key"] == SERVER


def test_bulk_upload_counts_per_registered_domain_across_addresses(tmp_path):
    packets = []
    for i in range(10):
        c = Conn(server=f"93.184.216.{40 + i}", sport=41000 + i).handshake()
        packets += c.send(hello(f"s{i}.drop.example".encode())).ack().send(b"u" * 30_000).ack().close().packets
    report = run(tmp_path, packets, detectors=SMALL_BULK)
    assert [f["egress_auditor"]["key"] for f in report.findings
            if f["rule"]["name"] == "bulk_upload"] == ["drop.example"]


def test_a_name_presented_to_an_address_no_dns_answer_gave_is_a_finding(tmp_path):
    c = Conn().handshake().send(hello(b"pypi.org")).ack().close()
    report = run(tmp_path, dns_pair("pypi.org", "151.101.0.223") + c.packets)
    assert "sni_unresolved" in detectors(report)
    c = Conn(server="151.101.0.223").handshake().send(hello(b"pypi.org")).ack().close()
    assert "sni_unresolved" not in detectors(run(tmp_path, dns_pair("pypi.org", "151.101.0.223") + c.packets))


def test_udp_from_local_port_53_to_a_public_address_is_direct_ip(tmp_path):
    pk = [IP(src=NODE, dst=SERVER) / UDP(sport=53, dport=40000) / Raw(b"x" * 200) for _ in range(5)]
    assert "direct_ip" in detectors(run(tmp_path, pk))


def test_exfiltration_prone_services_are_a_finding(tmp_path):
    for name in (b"transfer.sh", b"abc.trycloudflare.com", b"webhook.site"):
        c = Conn().handshake().send(hello(name)).ack().close()
        report = run(tmp_path, dns_pair(name.decode(), SERVER) + c.packets)
        (f,) = [f for f in report.findings if f["rule"]["name"] == "exfil_service"]
        assert f["egress_auditor"]["severity"] == "high"
    # out-of-band testing services exfiltrate in the DNS query itself
    report = run(tmp_path, dns_pair("ZGF0YQ.c0ffee.oast.fun", SERVER))
    assert [f["egress_auditor"]["key"] for f in report.findings
            if f["rule"]["name"] == "exfil_service"] == ["oast.fun"]
