"""A job on the node that talks through a proxy, or poses as one: SOCKS preambles to
servers that are no proxy, SOCKS targets that differ from the SNI sent after them, greetings
cut into one-byte segments, and cleartext HTTP/2 carrying DNS (DoH) or HPACK bombs. The
managed network's firewall sees a SOCKS flow as a TCP connection to the proxy with no SNI or
Host at its start, so no SOCKS flow is allowed by an FQDN rule (docs/hardening.md)."""
from __future__ import annotations

import base64

import dns.message
import dns.rrset
import hpack

from auditor.events import DnsAnswered, DnsQuery, FlowNamed
from auditor.telemetry import Layer, Table
from auditor.track import h2c
from tests.hardening.crafted import (H2_PREFACE, NODE, SERVER, Conn, detectors, flows_to, h2_frame,
                                     h2_request, hello, run, socks4a, socks5)
from tests.util import run as run_pipeline

DOH = "8.8.4.4"


def _flow(tmp_path, packets, server=SERVER) -> dict:
    (flow,) = flows_to(run(tmp_path, packets), server)
    return flow


# -- SOCKS -----------------------------------------------------------------------------------

def test_a_socks_flow_is_named_by_its_target_and_never_allowed_by_fqdn(tmp_path):
    c = Conn(dport=1080).handshake().send(socks5(b"pypi.org")).reply(b"\x05\x00")
    c.reply(b"\x05\x00\x00\x01" + bytes(6)).send(hello(b"pypi.org")).ack().close()
    flow = _flow(tmp_path, c.packets)
    ea = flow["egress_auditor"]
    assert (flow["destination"]["domain"], ea["name_source"]) == ("pypi.org", "socks")
    assert ea["socks"] == {"version": 5, "command": "connect", "target": "pypi.org", "target_port": 443}
    assert flow["tls"]["client"]["server_name"] == "pypi.org"
    assert (ea["verdict"], ea["reason"]) == ("denied", "fqdn_port_not_supported")


def test_a_socks_preamble_to_a_tls_port_does_not_pass_for_the_sni_behind_it(tmp_path):
    c = Conn(dport=443).handshake().send(socks5(b"pypi.org") + hello(b"pypi.org")).ack().close()
    ea = _flow(tmp_path, c.packets)["egress_auditor"]
    assert (ea["verdict"], ea["reason"], ea["name_source"]) == ("denied", "fqdn_needs_sni_or_host", "socks")
    plain = Conn(sport=40001).handshake().send(hello(b"pypi.org")).ack().close()
    assert _flow(tmp_path, plain.packets)["egress_auditor"]["verdict"] == "allowed"   # control


def test_the_socks_target_names_the_flow_not_the_sni_sent_through_it(tmp_path):
    c = Conn(dport=1080).handshake().send(socks4a(b"evil.example") + hello(b"pypi.org")).ack().close()
    flow = _flow(tmp_path, c.packets)
    assert flow["destination"]["domain"] == "evil.example"
    assert flow["tls"]["client"]["server_name"] == "pypi.org"           # kept as evidence
    assert flow["egress_auditor"]["socks"]["target"] == "evil.example"


def test_an_address_target_is_named_by_the_sni_inside(tmp_path):
    req = b"\x05\x01\x00\x05\x01\x00\x01\x5d\xb8\xd8\x22\x01\xbb"
    c = Conn(dport=1080).handshake().send(req + hello(b"files.example")).ack().close()
    flow = _flow(tmp_path, c.packets)
    assert (flow["destination"]["domain"], flow["egress_auditor"]["name_source"]) == ("files.example", "socks")
    assert flow["egress_auditor"]["socks"]["target"] == "93.184.216.34"


def test_a_handshake_in_one_byte_segments_names_the_flow_as_one_segment(tmp_path):
    wire = socks5(b"pypi.org", userpass=(b"u", b"p")) + hello(b"files.example")
    whole = Conn(dport=1080).handshake().send(wire).ack().close()
    split = Conn(dport=1080, sport=40002).handshake().send(wire, seg=1).ack().close()
    a, b = _flow(tmp_path, whole.packets), _flow(tmp_path, split.packets)
    for f in (a, b):
        assert f["destination"]["domain"] == "pypi.org"
        assert f["tls"]["client"]["server_name"] == "files.example"


def _recut(records: bytes, size: int) -> bytes:
    """The same handshake bytes carried in TLS records of `size` bytes each."""
    hs, off = b"", 0
    while off < len(records):
        n = int.from_bytes(records[off + 3:off + 5], "big")
        hs, off = hs + records[off + 5:off + 5 + n], off + 5 + n
    return b"".join(b"\x16\x03\x01" + len(hs[i:i + size]).to_bytes(2, "big") + hs[i:i + size]
                    for i in range(0, len(hs), size))


def test_a_hello_in_one_byte_records_one_per_segment_is_named_as_one_record(tmp_path):
    """Each segment one 6-byte record: the prefix is walked once, not parsed again from its
    first byte at every segment (tls.RecordWalk), and the flow is named as by the plain hello,
    directly and through SOCKS."""
    name = b".".join([b"a" * 60] * 3) + b".files.example"
    plain = hello(name)
    tiny = _recut(plain, 1)
    assert len(tiny) == 6 * (len(plain) - 5) > 1500
    cases = [(443, b"", 40010), (1080, socks5(b"pypi.org"), 40011)]
    for dport, preamble, sport in cases:
        whole = Conn(dport=dport, sport=sport).handshake().send(preamble + plain).ack().close()
        split = Conn(dport=dport, sport=sport + 100).handshake().send(preamble)
        split.send(tiny, seg=6).ack().close()
        a, b = _flow(tmp_path, whole.packets), _flow(tmp_path, split.packets)
        assert b["tls"] == a["tls"] and b["tls"]["client"]["server_name"] == name.decode()
        assert b["destination"].get("domain") == a["destination"].get("domain")


def test_an_invalid_socks_domain_names_nothing_and_is_kept(tmp_path):
    c = Conn(dport=1080).handshake().send(socks5("ｐｙｐｉ.org".encode()) + hello(b"pypi.org")).ack().close()
    flow = _flow(tmp_path, c.packets)
    assert flow["destination"].get("domain") is None
    assert flow["egress_auditor"]["invalid_name"] == "ｐｙｐｉ.org"


def test_garbage_after_a_socks_first_byte_is_counted_malformed():
    c = Conn(dport=1080).handshake().send(b"\x05\x01\x00\x05\x01\x00\x09junk").ack().close()
    pipe, rec = run_pipeline(c.packets, node_networks=["10.0.0.0/8"])
    assert pipe.telemetry.malformed[Layer.SOCKS] == 1
    (named,) = rec.of(FlowNamed)
    assert named.flow.socks is None and named.flow.name_source == "none"


# -- cleartext HTTP/2: DoH -------------------------------------------------------------------

def _doh_post(name: str, split_body: bool = True) -> tuple[Conn, bytes]:
    query = dns.message.make_query(name, "A")
    query.id = 0
    wire = query.to_wire()
    enc = hpack.Encoder()
    req = h2_request(enc, [(":method", "POST"), (":scheme", "http"), (":authority", "dns.google"),
                           (":path", "/dns-query"), ("content-type", "application/dns-message")],
                     end_stream=False)
    half = len(wire) // 2 if split_body else len(wire)
    body = h2_frame(0, 0, 1, wire[:half]) + h2_frame(0, 1, 1, wire[half:])
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text(name + ".", 300, "IN", "A", "203.0.113.7"))
    senc = hpack.Encoder()
    answer = response.to_wire()
    reply = (h2_frame(4, 0, 0, b"") + h2_request(senc, [(":status", "200"),
             ("content-type", "application/dns-message")], end_stream=False)
             + h2_frame(0, 0, 1, answer[:10]) + h2_frame(0, 1, 1, answer[10:]))
    c = Conn(server=DOH, dport=80).handshake().send(H2_PREFACE + req).send(body, seg=7)
    return c, reply


def test_doh_over_h2c_is_decoded_as_dns_and_raised():
    c, reply = _doh_post("secret-data.exfil.example")
    c.ack().reply(reply[:20]).reply(reply[20:]).close()
    pipe, rec = run_pipeline(c.packets, node_networks=["10.0.0.0/8"])
    (query,) = rec.of(DnsQuery)
    assert query.message.questions[0][0] == "secret-data.exfil.example"
    (answer,) = rec.of(DnsAnswered)
    assert answer.solicited and "203.0.113.7" in answer.chains
    (named,) = rec.of(FlowNamed)
    assert (named.flow.domain, named.flow.name_source, named.flow.doh) == ("dns.google", "http_host", True)


def test_doh_get_is_raised_as_doh_request(tmp_path):
    query = dns.message.make_query("example.com", "A").to_wire()
    path = "/dns-query?dns=" + base64.urlsafe_b64encode(query).decode().rstrip("=")
    req = h2_request(hpack.Encoder(), [(":method", "GET"), (":scheme", "http"),
                                       (":authority", "doh.internal.example"), (":path", path)])
    c = Conn(server=SERVER, dport=80).handshake().send(H2_PREFACE + req).ack().close()
    report = run(tmp_path, c.packets)
    (f,) = [f for f in report.findings if f["rule"]["name"] == "encrypted_dns"]
    assert f["egress_auditor"]["evidence"]["via"] == "doh_request"


def test_hpack_bomb_and_continuation_flood_are_bounded():
    big = hpack.Encoder().encode([("x-bomb", "b" * 4000)])
    bomb = h2_frame(1, 0x4, 1, big + b"\xbe" * 12000)
    flood = h2_frame(1, 0, 3, b"") + b"".join(h2_frame(9, 0, 3, b"\xbe" * 1000) for _ in range(40))
    for sport, attack in ((40010, bomb), (40011, flood)):
        c = Conn(server=DOH, dport=80, sport=sport).handshake().send(H2_PREFACE + attack).ack().close()
        pipe, rec = run_pipeline(c.packets, node_networks=["10.0.0.0/8"])
        assert pipe.telemetry.malformed[Layer.HTTP] == 1
        assert pipe.tracker.budget.held == 0
        (named,) = rec.of(FlowNamed)
        assert named.flow.http_host is None


def test_a_body_larger_than_any_dns_message_is_dropped():
    enc = hpack.Encoder()
    req = h2_request(enc, [(":method", "POST"), (":authority", "dns.google"), (":path", "/dns-query")],
                     end_stream=False)
    body = b"".join(h2_frame(0, 0, 1, b"q" * 16000) for _ in range(5)) + h2_frame(0, 1, 1, b"")
    c = Conn(server=DOH, dport=80).handshake().send(H2_PREFACE + req + body).ack().close()
    pipe, rec = run_pipeline(c.packets, node_networks=["10.0.0.0/8"])
    assert rec.of(DnsQuery) == [] and pipe.telemetry.malformed[Layer.DNS] == 1


def test_a_connection_is_followed_for_at_most_max_bytes(monkeypatch):
    monkeypatch.setattr(h2c, "MAX_BYTES", 2000)
    enc = hpack.Encoder()
    req = h2_request(enc, [(":method", "GET"), (":authority", "example.org"), (":path", "/")])
    pings = b"".join(h2_frame(6, 0, 0, bytes(8)) for _ in range(200))
    c = Conn(server=SERVER, dport=80).handshake().send(H2_PREFACE + req).send(pings).ack().close()
    pipe, rec = run_pipeline(c.packets, node_networks=["10.0.0.0/8"])
    assert pipe.telemetry.evictions[Table.REASSEMBLY] == 1
    assert pipe.tracker.budget.held == 0
    assert rec.of(FlowNamed)[0].flow.http_host == "example.org"


def test_tls_through_a_resolved_socks_proxy_is_no_sni_mismatch(tmp_path):
    from tests.hardening.crafted import dns_pair
    c = Conn(dport=1080).handshake().send(socks5(b"pypi.org") + hello(b"pypi.org")).ack().close()
    report = run(tmp_path, [*dns_pair("proxy.corp.example", SERVER), *c.packets])
    assert "sni_mismatch" not in detectors(report)
    (flow,) = flows_to(report, SERVER)
    assert flow["egress_auditor"]["dns_chain"] == ["proxy.corp.example"]


def test_header_block_bytes_are_capped_per_connection(monkeypatch):
    """HPACK is the costly part: many small requests stop being read after MAX_HEADER_BYTES."""
    monkeypatch.setattr(h2c, "MAX_HEADER_BYTES", 3000)
    enc = hpack.Encoder()
    reqs = b"".join(h2_request(enc, [(":method", "GET"), (":authority", "example.org"),
                                     (":path", f"/{'x' * 100}{i}")], stream=2 * i + 1)
                    for i in range(100))
    c = Conn(server=SERVER, dport=80).handshake().send(H2_PREFACE + reqs).ack().close()
    pipe, rec = run_pipeline(c.packets, node_networks=["10.0.0.0/8"])
    assert pipe.telemetry.evictions[Table.REASSEMBLY] == 1 and pipe.tracker.budget.held == 0
    assert rec.of(FlowNamed)[0].flow.http_host == "example.org"


def test_doh_after_an_innocent_first_request_is_still_raised(tmp_path):
    enc = hpack.Encoder()
    first = h2_request(enc, [(":method", "GET"), (":authority", "www.example.org"), (":path", "/")])
    query = dns.message.make_query("example.com", "A").to_wire()
    path = "/q?dns=" + base64.urlsafe_b64encode(query).decode().rstrip("=")
    second = h2_request(enc, [(":method", "GET"), (":authority", "www.example.org"), (":path", path)],
                        stream=3)
    c = Conn(server=SERVER, dport=80).handshake().send(H2_PREFACE + first).ack().send(second).ack().close()
    (f,) = [f for f in run(tmp_path, c.packets).findings if f["rule"]["name"] == "encrypted_dns"]
    assert f["egress_auditor"]["evidence"]["via"] == "doh_request"


def test_doh_over_http1_is_raised_by_its_path(tmp_path):
    c = Conn(server=SERVER, dport=80).handshake().send(
        b"GET /dns-query?dns=AAABAAABAAAAAAAAB2V4YW1wbGUDY29tAAABAAE HTTP/1.1\r\nHost: r.example\r\n\r\n")
    (f,) = [f for f in run(tmp_path, c.ack().close().packets).findings if f["rule"]["name"] == "encrypted_dns"]
    assert f["egress_auditor"]["evidence"]["via"] == "doh_request"


# -- HTTP CONNECT ----------------------------------------------------------------------------

def test_an_http_connect_on_443_does_not_pass_for_the_sni_sent_through_it(tmp_path):
    """The firewall sees a plaintext CONNECT at the start of the stream (no SNI there); the
    ClientHello after it goes through the proxy unseen. So the flow is named by the CONNECT's
    Host, never allowed by the allowed SNI behind it; the SNI is kept as evidence."""
    connect = b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n"
    c = Conn(dport=443).handshake().send(connect + hello(b"pypi.org")).ack().close()
    flow = _flow(tmp_path, c.packets)
    ea = flow["egress_auditor"]
    assert (flow["destination"]["domain"], ea["name_source"]) == ("evil.example", "http_host")
    assert flow["tls"]["client"]["server_name"] == "pypi.org"
    assert ea["verdict"] == "denied"
    # Even a CONNECT to the allowed name itself: no SNI at the start of a port-443 stream.
    c = Conn(dport=443, sport=40001).handshake().send(
        b"CONNECT pypi.org:443 HTTP/1.1\r\nHost: pypi.org:443\r\n\r\n" + hello(b"pypi.org")).ack().close()
    ea = _flow(tmp_path, c.packets)["egress_auditor"]
    assert (ea["verdict"], ea["reason"]) == ("denied", "fqdn_needs_sni_or_host")


# -- cleartext HTTP/2 after an HTTP/1.1 Upgrade ------------------------------------------------

_UPGRADE = (b"GET / HTTP/1.1\r\nHost: www.example.org\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")


def test_doh_after_an_h2c_upgrade_is_decoded_as_with_prior_knowledge():
    """An innocent HTTP/1.1 request asking `Upgrade: h2c`, the server's 101, then DoH over
    HTTP/2: the DNS inside is read (it was not: only prior knowledge was followed)."""
    query = dns.message.make_query("secret-data.exfil.example", "A")
    query.id = 0
    req = h2_request(hpack.Encoder(), [(":method", "POST"), (":scheme", "http"),
                                       (":authority", "www.example.org"), (":path", "/dns-query"),
                                       ("content-type", "application/dns-message")],
                     stream=3, end_stream=False) + h2_frame(0, 1, 3, query.to_wire())
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text("secret-data.exfil.example.", 300, "IN", "A", "203.0.113.7"))
    reply = (b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
             + h2_frame(4, 0, 0, b"") + h2_request(hpack.Encoder(), [(":status", "200"),
             ("content-type", "application/dns-message")], stream=3, end_stream=False)
             + h2_frame(0, 1, 3, response.to_wire()))
    c = Conn(server=DOH, dport=80).handshake().send(_UPGRADE).ack().reply(reply[:40])
    c.send(H2_PREFACE + req).reply(reply[40:]).close()
    pipe, rec = run_pipeline(c.packets, node_networks=["10.0.0.0/8"])
    (q,) = rec.of(DnsQuery)
    assert q.message.questions[0][0] == "secret-data.exfil.example"
    (answer,) = rec.of(DnsAnswered)
    assert answer.solicited and "203.0.113.7" in answer.chains
    (named,) = rec.of(FlowNamed)
    assert (named.flow.domain, named.flow.name_source, named.flow.doh) == ("www.example.org", "http_host", True)
    assert sum(pipe.telemetry.malformed.values()) == 0 and pipe.tracker.budget.held == 0


def test_a_refused_h2c_upgrade_is_no_malformed_http():
    c = Conn(server=SERVER, dport=80).handshake().send(_UPGRADE).ack()
    c.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").send(
        b"GET /next HTTP/1.1\r\nHost: www.example.org\r\n\r\n").ack().close()
    pipe, rec = run_pipeline(c.packets, node_networks=["10.0.0.0/8"])
    assert sum(pipe.telemetry.malformed.values()) == 0 and pipe.tracker.budget.held == 0
    assert rec.of(FlowNamed)[0].flow.domain == "www.example.org"


def test_an_upgrade_request_that_dies_before_the_server_cannot_name_the_flow(tmp_path):
    """Following HTTP/2 after the upgrade must not stop the watch on the head that named the
    flow: the insertion trick (an allowed Host with a TTL that dies, then the real one)."""
    fake, real = (_UPGRADE.replace(b"www.example.org", host) for host in (b"pypi.org", b"evil.org"))
    _assert_insertion_trick_fails(tmp_path, fake, real)


def test_an_h2c_request_that_dies_before_the_server_cannot_name_the_flow(tmp_path):
    """Prior knowledge: an :authority of an allowed name sent with a TTL that dies, then the
    real one at the same sequence numbers. The h2c reader consumes frames as it reads them,
    so the bytes that named the flow are kept apart and compared until the server has them."""
    def request(host: str) -> bytes:
        return H2_PREFACE + h2_request(hpack.Encoder(), [(":method", "GET"), (":scheme", "http"),
                                                         (":authority", host), (":path", "/")])
    _assert_insertion_trick_fails(tmp_path, request("pypi.org"), request("evil.org"))


def _assert_insertion_trick_fails(tmp_path, fake: bytes, real: bytes) -> None:
    """`fake` sent with a TTL that dies before the server, then `real` at the same sequence
    numbers: the flow is judged by neither copy's name alone (denied, and the conflict found)."""
    c = Conn(dport=80).handshake()
    seq = c.cseq
    c.send(fake, ttl=1, advance=False)
    c.resend_at(seq, real)
    c.cseq += len(real)
    c.ack().close()
    report = run(tmp_path, c.packets)
    (flow,) = flows_to(report, SERVER)
    assert flow["egress_auditor"]["verdict"] == "denied", flow
    assert "conflicting_retransmission" in detectors(report)


def test_doh_bodies_in_progress_are_charged_to_the_reassembly_budget():
    """32 DoH bodies of up to 64 KiB per connection, never ended, over many connections:
    held within `max_reassembly_bytes` (they escaped it: 10 MB held by 10 such connections, 14 kB counted),
    the overflow counted as a reassembly eviction, and all given back at the end."""
    from tests.util import Recorder, frames, pipeline_for
    from auditor.settings import Settings
    packets = []
    for n in range(3):
        enc, data = hpack.Encoder(), H2_PREFACE
        for sid in range(1, 8, 2):
            data += h2_request(enc, [(":method", "POST"), (":authority", "dns.google"),
                                     (":path", "/dns-query")], stream=sid, end_stream=False)
            data += h2_frame(0, 0, sid, b"q" * 16000)
        packets += Conn(server=DOH, dport=80, sport=41000 + n).handshake().send(data).packets
    # 256 KiB: three connections' HPACK tables (32 KiB each) and some of their bodies.
    pipe = pipeline_for([Recorder()], Settings(node_networks=["10.0.0.0/8"],
                                               max_reassembly_bytes=1 << 18))
    pipe.feed(frames(packets))
    bodies = sum(len(b) for f in pipe.tracker.flows if f.track_state and f.track_state.h2
                 for b in f.track_state.h2.bodies.values())
    assert 0 < bodies <= pipe.tracker.budget.held <= 1 << 18
    assert pipe.telemetry.evictions[Table.REASSEMBLY] > 0
    pipe.close()
    assert pipe.tracker.budget.held == 0


def test_hpack_tables_are_charged_to_the_reassembly_budget():
    """Connections whose peer allows 64 KiB HPACK tables, filled with empty entries (~135 KB
    of objects each for ~6.5 kB of traffic): only as many are followed as the shared budget
    holds, the rest are not followed (counted as reassembly evictions), and every byte is
    given back when the flows end."""
    from tests.util import Recorder, frames, pipeline_for
    from auditor.decode import h2
    from auditor.settings import Settings
    from auditor.track import h2c
    big = h2_frame(h2.SETTINGS, 0, 0, (h2.HEADER_TABLE_SIZE).to_bytes(2, "big") + (1 << 16).to_bytes(4, "big"))
    packets = []
    for n in range(40):
        c = Conn(server=DOH, dport=80, sport=42000 + n).handshake()
        c.send(H2_PREFACE + h2_frame(h2.SETTINGS, 0, 0, b""))
        c.reply(big)                # the server lets the client's encoder use 64 KiB
        enc = hpack.Encoder()
        enc.header_table_size = 1 << 16
        c.send(h2_request(enc, [(":method", "GET"), (":authority", "dns.google"), (":path", "/x")]
, stream=1))
        packets += c.packets
    limit = 4 << 20                 # room for 15 connections: (64 + 4) KiB x TABLE_COST each
    pipe = pipeline_for([Recorder()], Settings(node_networks=["10.0.0.0/8"], max_reassembly_bytes=limit))
    pipe.feed(frames(packets))
    followed = [f for f in pipe.tracker.flows if f.track_state and f.track_state.h2
                and not f.track_state.h2.done]
    per_conn = h2c.TABLE_COST * ((1 << 16) + h2.HPACK_TABLE)
    assert 0 < len(followed) <= limit // per_conn < 40
    assert pipe.tracker.budget.held <= limit
    assert pipe.telemetry.evictions[Table.REASSEMBLY] > 0
    pipe.close()
    assert pipe.tracker.budget.held == 0
