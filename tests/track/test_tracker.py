"""The track stage on real frames: flows, initiators, byte counts, DNS attribution, spoofing."""
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.tls.handshake import TLSClientHello
from scapy.layers.tls.extensions import TLS_Ext_ServerName, ServerName
from scapy.layers.tls.record import TLS

from auditor.events import DnsAnswered, FlowEnded, FlowNamed
from tests.util import dns_answer, dns_query, run, tcp_handshake

C, S, R = "10.0.0.5", "93.184.216.34", "168.63.129.16"


def client_hello(sni):
    return bytes(TLS(msg=[TLSClientHello(ext=[TLS_Ext_ServerName(servernames=[ServerName(servername=sni)])])]))


def tls_flow(sport, sni=None, server=S):
    pkts = tcp_handshake(C, server, sport)
    if sni:
        pkts.append(IP(src=C, dst=server) / TCP(sport=sport, dport=443, flags="PA", seq=1001, ack=5001) / client_hello(sni))
    return pkts


def ended(rec):
    return [e.flow for e in rec.of(FlowEnded)]


def test_sni_names_the_flow_and_counts_ip_bytes():
    pkts = tls_flow(40000, "api.example.com")
    _, rec = run(pkts)
    (flow,) = ended(rec)
    assert (flow.client_ip, flow.server_ip, flow.server_port) == (C, S, 443)
    assert flow.domain == "api.example.com" and flow.name_source == "sni"
    assert flow.c_packets == 3 and flow.s_packets == 1
    assert flow.c_bytes == sum(len(p) for p in pkts if p[IP].src == C)
    assert flow.egress


def test_split_client_hello_is_reassembled():
    hello = client_hello("split.example.org")
    pkts = tcp_handshake(C, S, 40001)
    pkts.append(IP(src=C, dst=S) / TCP(sport=40001, dport=443, flags="A", seq=1001 + 40) / hello[40:])
    pkts.append(IP(src=C, dst=S) / TCP(sport=40001, dport=443, flags="A", seq=1001) / hello[:40])
    _, rec = run(pkts)
    assert ended(rec)[0].sni == "split.example.org"


def test_dns_answer_names_a_flow_without_sni():
    pkts = [dns_query(C, R, "files.example.net", 77), dns_answer(C, R, "files.example.net", S, 77)]
    pkts += tcp_handshake(C, S, 40002, dport=8443)
    _, rec = run(pkts)
    flow = [f for f in ended(rec) if f.server_port == 8443][0]
    assert flow.domain == "files.example.net" and flow.name_source == "dns"
    assert rec.of(DnsAnswered)[0].solicited


def test_cname_chain_names_the_queried_name():
    pkts = [dns_query(C, R, "www.example.com", 5),
            dns_answer(C, R, "www.example.com", S, 5, cname="edge.cdn.example.net")]
    pkts += tcp_handshake(C, S, 40003, dport=22)
    _, rec = run(pkts)
    flow = [f for f in ended(rec) if f.server_port == 22][0]
    assert flow.domain == "www.example.com"
    assert flow.dns_chain == ("www.example.com", "edge.cdn.example.net")


def test_unsolicited_wrong_id_and_wrong_server_answers_never_name_a_flow():
    pkts = [dns_answer(C, R, "unsolicited.example", S, 1),                 # no query at all
            dns_query(C, R, "real.example", 2),
            dns_answer(C, R, "spoofed-id.example", S, 3),                  # wrong transaction id
            dns_answer(C, "8.8.8.8", "spoofed-server.example", S, 2)]      # right id, wrong server
    pkts += tcp_handshake(C, S, 40004, dport=22)
    _, rec = run(pkts)
    flow = [f for f in ended(rec) if f.server_port == 22][0]
    assert flow.domain is None and flow.name_source == "none"
    assert [e.solicited for e in rec.of(DnsAnswered)] == [False, False, False]


def test_answer_after_query_timeout_is_not_trusted():
    pkts = [(1000.0, dns_query(C, R, "late.example", 9)), (1100.0, dns_answer(C, R, "late.example", S, 9))]
    pkts += [(1100.5, p) for p in tcp_handshake(C, S, 40005, dport=22)]
    _, rec = run(pkts)
    assert not rec.of(DnsAnswered)[0].solicited
    assert all(f.domain is None for f in ended(rec) if f.server_port == 22)


def test_syn_after_close_starts_a_new_flow_like_tshark():
    first = tls_flow(40006, "one.example")
    close = [IP(src=C, dst=S) / TCP(sport=40006, dport=443, flags="FA", seq=2000, ack=6000),
             IP(src=S, dst=C) / TCP(sport=443, dport=40006, flags="FA", seq=6000, ack=2001)]
    again = tls_flow(40006, "two.example")
    _, rec = run(first + close + again)
    assert [f.domain for f in ended(rec)] == ["one.example", "two.example"]


def test_syn_sent_reset_of_a_stale_ack_does_not_end_the_connection():
    """mixed-windows-host-dns-tls-http.pcap, tcp.port==59621: the SYN is answered by a bare
    ACK (stale state), the client resets it with SEQ = that ACK (RFC 9293 3.10.7.3), stays in
    SYN-SENT and retransmits the same SYN: one connection, named by its SNI (tshark: one
    tcp.stream). A RST with SEQ = ISN + 1 is an abort and ends the flow."""
    syn = IP(src=C, dst=S) / TCP(sport=40010, dport=443, flags="S", seq=1000)
    stale = [syn, IP(src=S, dst=C) / TCP(sport=443, dport=40010, flags="A", seq=77, ack=555555),
             IP(src=C, dst=S) / TCP(sport=40010, dport=443, flags="R", seq=555555)]
    _, rec = run(stale + tls_flow(40010, "one.example"))
    (flow,) = ended(rec)
    assert flow.domain == "one.example" and flow.name_source == "sni"
    assert (flow.c_packets, flow.s_packets) == (5, 2)
    abort = [syn, IP(src=C, dst=S) / TCP(sport=40010, dport=443, flags="R", seq=1001)]
    _, rec = run(abort + tls_flow(40010, "two.example"))
    assert [f.domain for f in ended(rec)] == [None, "two.example"]


def test_fragmented_datagram_flow_starts_at_its_first_fragment():
    """dns-edns-ecs-v4v6-udp-tcp.pcap frames 53+54: the flow's first packet is the first
    fragment (tshark's first frame of the conversation), not the one that completes it."""
    from scapy.layers.inet import fragment
    first, last = fragment(IP(src=S, dst=C, id=9) / UDP(sport=53, dport=40011) / (b"x" * 2000),
                           fragsize=1480)
    _, rec = run([(1000.0, first), (1000.5, last)])
    (flow,) = ended(rec)
    assert (flow.start, flow.last, flow.s_packets + flow.c_packets) == (1000.0, 1000.5, 2)


def test_initiator_is_syn_sender_even_when_capture_starts_at_synack():
    pkts = [IP(src=S, dst=C) / TCP(sport=443, dport=40007, flags="SA", seq=1, ack=2),
            IP(src=C, dst=S) / TCP(sport=40007, dport=443, flags="A", seq=2, ack=2)]
    _, rec = run(pkts)
    (flow,) = ended(rec)
    assert (flow.client_ip, flow.client_port) == (C, 40007)


def test_idle_udp_flow_ends_and_table_cap_evicts_and_counts():
    pkts = [(1000.0, IP(src=C, dst=S) / UDP(sport=5000 + i, dport=9999) / b"x") for i in range(40)]
    pkts.append((2000.0, IP(src=C, dst=S) / UDP(sport=1, dport=9999) / b"late"))
    pipe, rec = run(pkts, max_flows=16)
    reasons = [e.reason for e in rec.of(FlowEnded)]
    assert reasons.count("evicted") == 24
    assert pipe.telemetry.evictions["flows"] == 24
    assert reasons.count("idle") == 16          # the survivors time out when the late packet comes
    assert len(reasons) == 41                   # every flow ends exactly once


def test_flows_share_the_addresses_they_repeat_and_answers_find_them_by_reversed_key():
    # One index (client key) serves both directions: each server's SYN-ACK must land on its
    # own flow, and the node address is held once for all flows (~100 bytes a flow).
    servers = [f"93.184.{i // 200}.{i % 200 + 1}" for i in range(300)]
    pkts = []
    for i, s in enumerate(servers):     # a SYN-ACK (the tracker) and an ACK (the fast path)
        pkts += tcp_handshake(C, s, 20000 + i)
        pkts.append(IP(src=s, dst=C) / TCP(sport=443, dport=20000 + i, flags="A", seq=5001, ack=1001))
    _, rec = run(pkts)
    flows = ended(rec)
    assert len(flows) == 300
    assert all((f.c_packets, f.s_packets, f.server_seen) == (2, 2, True) for f in flows)
    assert sorted(f.server_ip for f in flows) == sorted(servers)
    assert len({id(f.client_ip) for f in flows}) == 1
    assert len({id(f.key[1]) for f in flows}) == 1


def test_flow_named_once_per_flow():
    _, rec = run(tls_flow(40008, "x.example") + tls_flow(40009))
    assert len(rec.of(FlowNamed)) == 2


def test_ingress_flow_is_not_egress():
    pkts = tcp_handshake("203.0.113.9", C, 50000, dport=22)
    _, rec = run(pkts)
    assert not ended(rec)[0].egress


def test_loopback_and_self_traffic_is_not_egress_unless_judge_loopback():
    from tests.util import dns_answer, dns_query
    pk = [dns_query("127.0.0.1", "127.0.0.53", "pypi.org", 5),
          dns_answer("127.0.0.1", "127.0.0.53", "pypi.org", "151.101.0.223", 5),
          *tcp_handshake("10.0.0.5", "10.0.0.5", 40000, 8080),        # the node to itself
          *tcp_handshake("10.0.0.5", "151.101.0.223", 40001, 443)]
    _, rec = run(pk, node_networks=["10.0.0.0/8", "127.0.0.0/8"])
    egress = {(e.flow.server_ip, e.flow.server_port) for e in rec.of(FlowEnded) if e.flow.egress}
    assert egress == {("151.101.0.223", 443)}
    _, rec = run(pk, node_networks=["10.0.0.0/8", "127.0.0.0/8"], judge_loopback=True)
    egress = {(e.flow.server_ip, e.flow.server_port) for e in rec.of(FlowEnded) if e.flow.egress}
    assert egress == {("127.0.0.53", 53), ("10.0.0.5", 8080), ("151.101.0.223", 443)}


def test_https_record_address_hints_name_flows_like_a_records():
    """Browsers connect to an HTTPS record's ipv4hint/ipv6hint without an A lookup (RFC 9460):
    a hint on the queried name's chain names the flow; a hint for another owner does not."""
    import dns.message
    import dns.rrset
    from scapy.layers.inet import IP, UDP
    from scapy.packet import Raw
    q = dns.message.make_query("svc.example.org", "HTTPS")
    q.id = 91
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("svc.example.org.", 300, "IN", "HTTPS",
                                        f'1 . alpn="h2" ipv4hint="{S}"'))
    r.answer.append(dns.rrset.from_text("other.example.", 300, "IN", "HTTPS",
                                        '1 . ipv4hint="198.51.100.77"'))
    pkts = [IP(src=C, dst=R) / UDP(sport=33334, dport=53) / Raw(q.to_wire()),
            IP(src=R, dst=C) / UDP(sport=53, dport=33334) / Raw(r.to_wire())]
    pkts += tcp_handshake(C, S, 40010, dport=8443)
    pkts += tcp_handshake(C, "198.51.100.77", 40011, dport=8443)
    _, rec = run(pkts)
    by_server = {f.server_ip: f for f in ended(rec) if f.server_port == 8443}
    assert by_server[S].domain == "svc.example.org" and by_server[S].name_source == "dns"
    assert by_server["198.51.100.77"].domain is None


def test_icmpv6_is_ipv6_icmp_and_judged_as_icmp():
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
    from auditor.sinks.ecs import EcsFormatter
    _, rec = run([IPv6(src="2001:db8::5", dst="2001:db8:ffff::1") / ICMPv6EchoRequest()],
                 node_networks=["2001:db8::/64"])
    (flow,) = ended(rec)
    assert flow.transport == "ipv6-icmp" and flow.proto == 58
    doc = EcsFormatter().flow(flow)
    assert doc["network"]["transport"] == "ipv6-icmp" and doc["network"]["iana_number"] == "58"
    assert "port" not in doc["destination"]
