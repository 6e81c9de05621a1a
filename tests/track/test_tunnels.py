"""Tunnelled traffic through the real pipeline (scapy frames): the carrier and the inner flow
are both tracked, inner flows are scoped by their encapsulation (a crafted tunnel cannot
touch the node's own flows, DNS names or fragments), and malformed encapsulations are counted
under layer "tunnel" without losing the carrier."""
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import GRE, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN

from auditor.events import DnsQuery, FlowEnded
from auditor.telemetry import Layer
from tests.track.test_tracker import client_hello
from tests.util import dns_answer, dns_query, run, tcp_handshake

NODE, VTEP = "10.0.0.5", "52.160.10.20"
POD, WEB, EVIL = "10.244.1.7", "151.101.0.223", "203.0.113.66"
R = "168.63.129.16"


def vx(inner, vni=42, out=True, sport=40000, dport=4789):
    src, dst = (NODE, VTEP) if out else (VTEP, NODE)
    return Ether() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / VXLAN(vni=vni) / Ether() / inner


def flows(rec):
    return [e.flow for e in rec.of(FlowEnded)]


def test_vxlan_carrier_and_inner_flow_are_both_tracked():
    inner = tcp_handshake(POD, WEB, 41000)
    pkts = [vx(p, out=p[IP].src == POD) for p in inner]
    _, rec = run(pkts, node_networks=["10.0.0.0/16", "10.244.0.0/16"])
    by_transport = {f.transport: f for f in flows(rec)}
    outer, tcp = by_transport["udp"], by_transport["tcp"]
    assert (outer.client_ip, outer.server_ip, outer.server_port) == (NODE, VTEP, 4789)
    assert outer.tunnel is None and outer.egress          # judged like any other UDP egress
    assert (outer.c_packets, outer.c_bytes) == (2, 2 * (20 + 8 + 8 + 14 + 40))   # its own bytes
    assert (tcp.client_ip, tcp.server_ip, tcp.server_port) == (POD, WEB, 443)
    assert tcp.tunnel.kind == "vxlan" and tcp.tunnel.ident == 42
    assert (tcp.c_packets, tcp.s_packets) == (2, 1)
    assert tcp.c_bytes == 2 * 40 and tcp.egress           # inner IP bytes, inner addresses


def test_outer_addresses_are_oriented_to_the_client():
    """The first packet comes from the server side: the flow's client is the pod, and the
    recorded outer source is the pod's VTEP, not the first packet's outer source."""
    syn_ack = IP(src=WEB, dst=POD) / TCP(sport=443, dport=41000, flags="SA")
    _, rec = run([vx(syn_ack, out=False)], node_networks=["10.244.0.0/16"])
    (tcp,) = [f for f in flows(rec) if f.transport == "tcp"]
    assert tcp.client_ip == POD
    assert (tcp.tunnel.src, tcp.tunnel.dst) == (bytes([10, 0, 0, 5]), bytes([52, 160, 10, 20]))


def test_inner_flow_with_the_node_5tuple_does_not_touch_the_node_flow():
    """A crafted VXLAN packet carrying an RST with the 5-tuple of the node's real upload
    neither closes nor counts into that flow."""
    real = tcp_handshake(NODE, EVIL, 42000)
    forged = vx(IP(src=NODE, dst=EVIL) / TCP(sport=42000, dport=443, flags="R", seq=1001))
    _, rec = run([*real, forged, IP(src=NODE, dst=EVIL) / TCP(sport=42000, dport=443, flags="A",
                                                             seq=1001, ack=5001) / (b"x" * 100)])
    node = [f for f in flows(rec) if f.transport == "tcp" and f.tunnel is None]
    inner = [f for f in flows(rec) if f.transport == "tcp" and f.tunnel is not None]
    assert len(node) == 1 and not node[0].rst and node[0].c_packets == 3
    assert len(inner) == 1 and inner[0].rst


def test_tunnelled_dns_answer_does_not_name_the_node_flows():
    """An inner DNS answer 'pypi.org is EVIL' to the node's own address must not name the
    node's direct connection to EVIL (it would turn a direct-IP upload into an FQDN one)."""
    fake = [vx(dns_query(NODE, R, "pypi.org", 7)), vx(dns_answer(NODE, R, "pypi.org", EVIL, 7), out=False)]
    real = tcp_handshake(NODE, EVIL, 42001)
    _, rec = run([*fake, *real])
    (node,) = [f for f in flows(rec) if f.transport == "tcp"]
    assert node.domain is None and node.name_source == "none"


def test_dns_inside_one_tunnel_names_flows_in_that_tunnel():
    pkts = [dns_query(POD, "10.0.0.10", "pypi.org", 8), dns_answer(POD, "10.0.0.10", "pypi.org", WEB, 8),
            *tcp_handshake(POD, WEB, 41001)]
    _, rec = run([vx(p, out=p[IP].src == POD) for p in pkts])
    (tcp,) = [f for f in flows(rec) if f.transport == "tcp"]
    assert tcp.domain == "pypi.org" and tcp.name_source == "dns"
    assert not tcp.dns_trusted              # no tunnelled answer comes from a trusted resolver


def test_sni_inside_gre_and_the_gre_flow_is_kept():
    hello = IP(src=POD, dst=WEB) / TCP(sport=41002, dport=443, flags="PA", seq=1001, ack=5001) / client_hello("pypi.org")
    pkts = [Ether() / IP(src=NODE, dst=VTEP) / GRE(key_present=1, key=9) / p
            for p in [*tcp_handshake(POD, WEB, 41002), hello] if p[IP].src == POD]
    _, rec = run(pkts)
    got = {f.transport: f for f in flows(rec)}
    assert got["gre"].server_ip == VTEP and got["gre"].proto == 47
    assert got["tcp"].sni == "pypi.org" and got["tcp"].tunnel.ident == 9


def test_mpls_stack_has_no_carrier_flow():
    pkt = Ether(type=0x8847) / MPLS(label=16, s=0) / MPLS(label=300, s=1) / IP(src=POD, dst=WEB) / UDP(
        sport=5000, dport=5001)
    _, rec = run([pkt])
    (f,) = flows(rec)
    assert f.transport == "udp" and f.tunnel.kind == "mpls" and f.tunnel.ident == 300


def test_ipv6_in_ipv4_transport_keyword():
    pkt = Ether() / IP(src=NODE, dst=VTEP) / IPv6(src="2001:db8::1", dst="2a04:4e42::1") / UDP(sport=1, dport=2)
    _, rec = run([pkt])
    assert sorted(f.transport for f in flows(rec)) == ["ipv6", "udp"]


def test_truncated_vxlan_counts_tunnel_and_keeps_the_carrier():
    pkt = Ether() / IP(src=NODE, dst=VTEP) / UDP(sport=40000, dport=4789) / b"\x08\x00\x00"
    pipe, rec = run([pkt])
    assert pipe.telemetry.malformed[Layer.TUNNEL] == 1
    (outer,) = flows(rec)
    assert outer.server_port == 4789 and outer.c_packets == 1


def test_vxlan_port_set_comes_from_settings():
    inner = IP(src=POD, dst=WEB) / UDP(sport=5000, dport=5001)
    pkt = vx(inner, dport=9999)
    _, rec = run([pkt], vxlan_ports=[9999])
    assert sorted(f.transport for f in flows(rec)) == ["udp", "udp"]
    _, rec = run([vx(inner, dport=8472)], vxlan_ports=[9999])
    assert len(flows(rec)) == 1         # 8472 is no longer read as VXLAN
    _, rec = run([vx(inner, dport=8472)])
    assert len(flows(rec)) == 2         # default: 4789 and 8472


def test_fragments_inside_a_tunnel_do_not_join_the_node_datagram():
    """Two halves of a node datagram; a crafted inner fragment with the same id and
    addresses cannot complete or overwrite it."""
    big = IP(src=NODE, dst=EVIL, id=77) / UDP(sport=5000, dport=5001) / (b"A" * 64)
    frag1 = IP(src=NODE, dst=EVIL, id=77, flags="MF", frag=0, proto=17) / bytes(big)[20:20 + 32]
    frag2 = IP(src=NODE, dst=EVIL, id=77, frag=4, proto=17) / bytes(big)[20 + 32:]
    forged = vx(IP(src=NODE, dst=EVIL, id=77, frag=4, proto=17) / (b"B" * 40))
    _, rec = run([frag1, forged, frag2])
    node = [f for f in flows(rec) if f.transport == "udp" and f.tunnel is None and f.server_port == 5001]
    assert len(node) == 1 and node[0].c_packets == 2


# -- a UDP tunnel's carrier is keyed by the tunnel port (the other port is entropy) -------

def _udp_carriers(rec):
    return sorted((f for f in flows(rec) if f.transport == "udp" and f.tunnel is None),
                  key=lambda f: (f.client_ip, f.server_ip))


def test_one_carrier_per_direction_whatever_the_entropy_ports():
    """Linux hashes each inner flow into its own outer source port (RFC 7348 section 5): ten
    inner flows are still one carrier each way, with every packet and byte, not twenty."""
    pkts = []
    for i in range(10):
        hs = tcp_handshake(POD, WEB, 41000 + i)
        pkts += [vx(p, out=p[IP].src == POD, sport=50000 + 7 * i + (p[IP].src != POD))
                 for p in hs]
    _, rec = run(pkts, node_networks=["10.0.0.0/16", "10.244.0.0/16"])
    out, back = sorted(_udp_carriers(rec), key=lambda f: f.client_ip != NODE)
    assert (out.client_ip, out.server_ip, out.server_port) == (NODE, VTEP, 4789)
    assert out.client_port == 50000 and out.egress            # the first real source port
    assert (out.c_packets, out.s_packets) == (20, 0)
    # The remote VTEP sending to the node's port 4789 is its client: inbound, not egress to
    # the remote's random source port.
    assert (back.client_ip, back.server_ip, back.server_port) == (VTEP, NODE, 4789)
    assert not back.egress and (back.c_packets, back.s_packets) == (10, 0)
    assert len([f for f in flows(rec) if f.transport == "tcp"]) == 10


def test_an_answer_from_the_tunnel_port_joins_its_carrier():
    """Teredo-style: the client sends to the server's 3544 and is answered from it."""
    inner = IPv6(src="2001:0:4136:e378:8000:63bf:3fff:fdd2", dst="2001:db8::1") / UDP(
        sport=1, dport=2)
    teredo = [IP(src=NODE, dst=VTEP) / UDP(sport=40001, dport=3544) / inner,
              IP(src=VTEP, dst=NODE) / UDP(sport=3544, dport=40001) / inner,
              IP(src=NODE, dst=VTEP) / UDP(sport=40002, dport=3544) / inner]
    _, rec = run(teredo, node_networks=["10.0.0.0/16"])
    (carrier,) = _udp_carriers(rec)
    assert (carrier.client_ip, carrier.client_port, carrier.server_port) == (NODE, 40001, 3544)
    assert (carrier.c_packets, carrier.s_packets) == (2, 1) and carrier.egress


def test_a_forged_datagram_to_the_node_tunnel_port_cannot_hide_an_upload():
    """A job forges EVIL:50000 -> node:4789 (an inbound carrier, not egress), then uploads
    from the node's port 4789 to EVIL:50000. Those sends are not answers on the inbound
    flow: they are an egress flow of their own, to the real port, with every byte."""
    forged = Ether() / IP(src=EVIL, dst=NODE) / UDP(sport=50000, dport=4789) / VXLAN(vni=1) / \
        Ether() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1, dport=2)
    upload = [Ether() / IP(src=NODE, dst=EVIL) / UDP(sport=4789, dport=50000) / VXLAN(vni=1) /
              Ether() / IP(src="192.0.2.2", dst="192.0.2.1") / UDP(sport=2, dport=1) /
              (b"x" * 1000) for _ in range(5)]
    _, rec = run([forged, *upload], node_networks=["10.0.0.0/16"])
    carriers = _udp_carriers(rec)
    inbound = [f for f in carriers if f.client_ip == EVIL]
    egress = [f for f in carriers if f.client_ip == NODE]
    assert len(inbound) == 1 and not inbound[0].egress and inbound[0].s_packets == 0
    assert len(egress) == 1 and egress[0].egress
    assert (egress[0].server_ip, egress[0].server_port) == (EVIL, 50000)
    assert egress[0].c_packets == 5 and egress[0].c_bytes == 5 * len(upload[0][IP])


def test_sends_from_the_tunnel_port_stay_per_port():
    """From the node's tunnel port to two ports of one host: two flows, each judged on its
    own port (no aggregation on the remote side, which the sender chooses)."""
    pkts = [IP(src=NODE, dst=EVIL) / UDP(sport=4789, dport=port) / VXLAN(vni=1) / Ether() /
            IP(src="192.0.2.2", dst="192.0.2.1") / UDP(sport=2, dport=1)
            for port in (50000, 60000)]
    _, rec = run(pkts, node_networks=["10.0.0.0/16"])
    assert sorted(f.server_port for f in _udp_carriers(rec)) == [50000, 60000]


def test_carrier_community_id_is_the_first_conversation():
    from auditor.sinks.identity import community_id, flow_community_id
    import socket
    pkts = [vx(IP(src=POD, dst=WEB) / UDP(sport=5, dport=6), sport=port) for port in (50001, 50002)]
    _, rec = run(pkts, node_networks=["10.0.0.0/16", "10.244.0.0/16"])
    (carrier,) = _udp_carriers(rec)
    want = community_id(17, socket.inet_aton(NODE), socket.inet_aton(VTEP), 50001, 4789)
    assert flow_community_id(carrier) == want and carrier.c_packets == 2


def test_the_summary_says_tunnelled_bytes_are_counted_twice_and_never_drops_a_carrier():
    import io

    from auditor.sinks.summary import Summary
    from auditor.telemetry import Telemetry
    tel = Telemetry()
    summary = Summary(tel)
    inner = tcp_handshake(POD, WEB, 41000) + [IP(src=POD, dst=WEB) / TCP(sport=41000, dport=443, flags="PA",
                                                                        seq=1001) / (b"x" * 900)]
    # Junk to the tunnel port opens to nothing: its bytes must stay in the totals (an upload
    # dressed as VXLAN must not vanish from what the operator reads).
    junk = Ether() / IP(src=NODE, dst=EVIL) / UDP(sport=40001, dport=4789) / (b"\xff" * 8 + b"\x00" * 1200)
    _, rec = run([vx(p) for p in inner] + [junk], components=[summary],
                 node_networks=["10.0.0.0/16", "10.244.0.0/16"])
    ended = [f for f in flows(rec) if f.egress]
    by_kind = {(f.carrier, f.tunnel is not None): f for f in ended}
    assert set(by_kind) == {(True, False), (False, True)} and len(ended) == 3   # 2 carriers, 1 inner
    assert summary.egress_bytes == sum(f.c_bytes for f in ended)
    assert summary.carriers == 2 and summary.tunnelled == 1
    assert summary.tunnelled_bytes == by_kind[False, True].c_bytes
    out = io.StringIO()
    summary.render(out)
    assert "2 carriers sent" in out.getvalue() and "1 flow inside tunnels sent" in out.getvalue()


def test_a_low_or_tunnel_source_port_does_not_hide_the_inner_packet():
    """The receiving VTEP decapsulates by destination port whatever the source port, so a
    sender must not hide the inner upload by picking a source port below the tunnel port
    (53, 1000 -> 8472: tshark's lower-port rule) or another tunnel port (Teredo's 3544 ->
    4789 would be opened as Teredo and show nothing; VXLAN's 4789 -> Geneve's 6081)."""
    from scapy.contrib.geneve import GENEVE
    peer = "10.0.0.6"                   # a node of the cluster: it forwards what it decaps
    for sport, dport in ((1000, 8472), (53, 8472), (3544, 4789), (4789, 6081)):
        header = GENEVE(vni=1, proto=0x0800) if dport == 6081 else VXLAN(vni=1) / Ether()
        pkts = [Ether() / IP(src=NODE, dst=peer) / UDP(sport=sport, dport=dport) / header / p
                for p in tcp_handshake(POD, EVIL, 41000) if p[IP].src == POD]
        _, rec = run(pkts, node_networks=["10.0.0.0/16", "10.244.0.0/16"])
        tcp = [f for f in flows(rec) if f.transport == "tcp"]
        assert len(tcp) == 1, (sport, dport)
        assert (tcp[0].client_ip, tcp[0].server_ip, tcp[0].c_packets) == (POD, EVIL, 2)
        assert tcp[0].egress and tcp[0].tunnel.kind == ("geneve" if dport == 6081 else "vxlan")
        (carrier,) = _udp_carriers(rec)
        assert (carrier.client_port, carrier.server_port, carrier.c_packets) == (sport, dport, 2)


def test_an_answer_to_a_node_flow_from_a_tunnel_port_is_no_tunnel():
    """A resolver that picked source port 4789 (random-port resolvers use 1024-65535) gets
    its answer on it: read as DNS on the node's flow, not opened as VXLAN."""
    for port in (3544, 4789):
        pkts = [dns_query(NODE, R, "pypi.org", 7, sport=port),
                dns_answer(NODE, R, "pypi.org", WEB, 7, sport=port), *tcp_handshake(NODE, WEB, 42002)]
        pipe, rec = run(pkts, node_networks=["10.0.0.0/16"])
        udp, tcp = sorted(flows(rec), key=lambda f: f.transport != "udp")   # and nothing inside
        assert (udp.client_port, udp.c_packets, udp.s_packets) == (port, 1, 1)
        assert (tcp.domain, tcp.name_source) == ("pypi.org", "dns")
        assert sum(pipe.telemetry.malformed.values()) == 0


def test_a_forged_query_from_the_peer_does_not_hide_what_the_node_sends_to_its_tunnel_port():
    """The job forges peer:8472 -> node:53 first, so that its VXLAN datagram node:53 ->
    peer:8472 would look like the answer: what the node sends to a tunnel port is opened."""
    peer = "10.0.0.6"
    forged = IP(src=peer, dst=NODE) / UDP(sport=8472, dport=53) / (b"\0" * 12)
    inner = IP(src=POD, dst=EVIL) / TCP(sport=41000, dport=443, flags="S")
    upload = Ether() / IP(src=NODE, dst=peer) / UDP(sport=53, dport=8472) / VXLAN(vni=1) / Ether() / inner
    _, rec = run([forged, upload], node_networks=["10.0.0.0/16", "10.244.0.0/16"])
    (tcp,) = [f for f in flows(rec) if f.transport == "tcp"]
    assert (tcp.client_ip, tcp.server_ip) == (POD, EVIL) and tcp.egress


def test_a_first_datagram_from_port_53_does_not_make_the_carrier_dns():
    """The carrier's client port is the first datagram's entropy port: one sent from port 53
    must not make every later VXLAN datagram of the carrier parsed as DNS (a malformed-DNS
    count per packet, fake queries, and no fast path)."""
    peer = "10.0.0.6"
    pkts = [Ether() / IP(src=NODE, dst=peer) / UDP(sport=sport, dport=8472) / VXLAN(vni=1) / Ether() /
            IP(src=POD, dst="10.244.2.8") / UDP(sport=1000, dport=2000) / (b"x" * 40)
            for sport in (53, 50001, 50002, 50003)]
    pipe, rec = run(pkts, node_networks=["10.0.0.0/16", "10.244.0.0/16"])
    (carrier,) = _udp_carriers(rec)
    assert (carrier.client_port, carrier.c_packets) == (53, 4) and carrier.app_protocol != "dns"
    assert pipe.telemetry.malformed[Layer.DNS] == 0 and rec.of(DnsQuery) == []


def test_an_ethernet_pseudowire_behind_its_control_word_is_opened():
    # MPLS has no carrier flow: what a pseudowire carries must be read, or it is invisible.
    pkt = Ether(type=0x8847) / MPLS(label=299, s=1) / b"\x00\x00\x00\x01" / Ether() / IP(
        src=POD, dst=EVIL) / TCP(sport=40000, dport=443, flags="S")
    _, rec = run([pkt], node_networks=["10.244.0.0/16"])
    (f,) = flows(rec)
    assert (f.server_ip, f.server_port, f.tunnel.kind, f.tunnel.ident) == (EVIL, 443, "mpls", 299)
