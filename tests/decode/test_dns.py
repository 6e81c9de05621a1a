"""DNS decoder: differential against dnspython and tshark on every real capture, hostile names."""
import subprocess
from collections import defaultdict
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.rrset
import pytest

from auditor.decode import dns as d

REAL_PCAPS = Path(__file__).resolve().parents[2] / "pcaps" / "real"
ALL_FILES = sorted(p.name for p in REAL_PCAPS.iterdir() if p.suffix != ".md")
OWN_TYPES = {1, 28, 2, 5, 12, 39, 15, 16, 6, 33}


def dns_payloads(path, tcp_too: bool = True) -> list[bytes]:
    """Every UDP/53 payload and every message of every TCP/53 stream direction."""
    out = subprocess.run(
        ["tshark", "-r", str(path), "-Y", "udp.port == 53 || tcp.port == 53", "-T", "fields",
         "-E", "separator=|", "-e", "udp.payload", "-e", "tcp.stream", "-e", "tcp.srcport",
         "-e", "tcp.seq", "-e", "tcp.payload"], capture_output=True, text=True,
        check=False).stdout
    msgs = []
    tcp: dict[tuple, dict[int, bytes]] = defaultdict(dict)
    for line in out.splitlines():
        udp, stream, sport, seq, payload = line.split("|")
        if udp:
            msgs.append(bytes.fromhex(udp))
        elif payload and tcp_too:
            tcp[(stream, sport)].setdefault(int(seq), bytes.fromhex(payload.replace(":", "")))
    for pieces in tcp.values():
        buf = b"".join(pieces[s] for s in sorted(pieces))
        got, used = d.split_tcp(buf)
        assert used == len(buf)
        msgs.extend(got)
    return msgs


def _strip(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True)


def expected_data(rd) -> str:
    """dnspython's text for an rdata, with our convention: no trailing dot on names."""
    t = rd.rdtype
    if t in (2, 5, 12, 39):
        return _strip(rd.target)
    if t == 15:
        return f"{rd.preference} {_strip(rd.exchange)}"
    if t == 6:
        return (f"{_strip(rd.mname)} {_strip(rd.rname)} {rd.serial} {rd.refresh} {rd.retry} "
                f"{rd.expire} {rd.minimum}")
    if t == 33 and rd.rdclass == 1:
        return f"{rd.priority} {rd.weight} {rd.port} {_strip(rd.target)}"
    return rd.to_text()


def assert_same_as_dnspython(payload: bytes, ours: d.DnsMessage) -> None:
    ref = dns.message.from_wire(payload, one_rr_per_rrset=True, ignore_trailing=True,
                                keyring=False)
    assert ours is not None
    assert ours.id == ref.id
    assert ours.is_response == bool(ref.flags & dns.flags.QR)
    assert ours.truncated == bool(ref.flags & dns.flags.TC)
    assert ours.opcode == (int(ref.flags) >> 11) & 0xF
    assert ours.rcode == int(ref.flags) & 0xF
    assert ours.questions == [(_strip(q.name), q.rdtype) for q in ref.question]
    theirs = [(_strip(rr.name), rr.rdtype, rr.ttl, expected_data(rd))
              for rr in ref.answer for rd in rr]
    assert [tuple(a) for a in ours.answers] == theirs


@pytest.mark.parametrize("name", ALL_FILES)
def test_every_message_matches_dnspython(name):
    checked = 0
    for payload in dns_payloads(REAL_PCAPS / name):
        ours = d.parse(payload)
        try:
            dns.message.from_wire(payload, one_rr_per_rrset=True, ignore_trailing=True,
                                  keyring=False)
        except Exception:  # noqa: BLE001 - dnspython refuses it: we must not crash either
            continue
        assert_same_as_dnspython(payload, ours)
        checked += 1
    if name.startswith(("dns", "dnstunnel")):
        assert checked > 0


@pytest.mark.parametrize("name", ["dns-udp-google-a-aaaa-mx.pcap", "dns-cname-chains-espn.pcap",
                                  "dns-pcapng-multi-interface.pcapng",
                                  "mixed-windows-host-dns-tls-http.pcap",
                                  "dns-edns-ecs-v4v6-udp-tcp.pcap", "quic-chrome-with-dns.pcap"])
def test_answers_match_tshark(name):
    path = REAL_PCAPS / name
    out = subprocess.run(
        ["tshark", "-r", str(path), "-Y", "dns.flags.response == 1 && !tcp", "-T", "fields",
         "-e", "dns.qry.name", "-e", "dns.a", "-e", "dns.aaaa", "-e", "dns.cname"],
        capture_output=True, text=True, check=False).stdout.splitlines()
    responses = [m for m in map(d.parse, dns_payloads(path, tcp_too=False))
                 if m and m.is_response]
    assert len(responses) == len(out)
    for m, line in zip(responses, out):
        qname, a, aaaa, cname = line.split("\t")
        assert m.questions[0][0] == qname
        for rtype, field in ((1, a), (28, aaaa), (5, cname)):
            ours = [r.data for r in m.answers if r.rtype == rtype]
            theirs = field.split(",") if field else []
            # tshark lists the records of every section, answers first; we keep answers only
            # (glue in the additional section must not name a flow).
            assert theirs[:len(ours)] == ours
            if name != "dns-edns-ecs-v4v6-udp-tcp.pcap":
                assert theirs == ours


def test_resolved_chain_espn():
    chains = {}
    for m in map(d.parse, dns_payloads(REAL_PCAPS / "dns-cname-chains-espn.pcap")):
        if m and m.is_response:
            chains.update(d.resolved_chain(m))
    assert chains["72.21.91.8"] == ("cdn.optimizely.com", "wac.946A.edgecastcdn.net",
                                    "gp1.wac.v2cdn.net")
    assert chains["68.71.212.158"] == ("www.espn.com", "redir.espn.gns.go.com")


def test_resolved_chain_apple_three_hops():
    chains = {}
    for m in map(d.parse, dns_payloads(REAL_PCAPS / "dns-pcapng-multi-interface.pcapng")):
        if m and m.is_response:
            chains.update(d.resolved_chain(m))
    assert chains["23.194.101.24"] == ("www.apple.com", "www-apple-com.v.aaplimg.com",
                                       "www.apple.com.edgekey.net",
                                       "e6858.dsce9.akamaiedge.net")
    assert chains["142.251.181.138"] == ("google.com",)
    assert chains["2607:f8b0:4023:2007::66"] == ("google.com",)


def _msg(answers, qname="www.example.com", tc=False):
    m = dns.message.make_response(dns.message.make_query(qname, "A"))
    if tc:
        m.flags |= dns.flags.TC
    for rr in answers:
        m.answer.append(dns.rrset.from_text(*rr))
    return m.to_wire()


def test_resolved_chain_loops_case_and_unrelated_owner():
    wire = _msg([("www.example.com.", 60, "IN", "CNAME", "B.example.net."),
                 ("b.EXAMPLE.net.", 60, "IN", "CNAME", "www.example.com."),
                 ("b.example.net.", 60, "IN", "A", "192.0.2.1"),
                 ("evil.example.", 60, "IN", "A", "192.0.2.66")])
    chain = d.resolved_chain(d.parse(wire))
    assert chain == {"192.0.2.1": ("www.example.com", "B.example.net")}
    long_chain = [(f"n{i}.example.", 60, "IN", "CNAME", f"n{i + 1}.example.") for i in range(30)]
    m = d.parse(_msg(long_chain + [("n30.example.", 60, "IN", "A", "192.0.2.9")], "n0.example"))
    assert d.resolved_chain(m) == {}              # beyond MAX_CHAIN hops: not attributed
    query = d.parse(dns.message.make_query("a.example", "A").to_wire())
    assert d.resolved_chain(query) == {}


def _header(qd=1, an=0, flags=0x8180):
    return bytes.fromhex("1234") + flags.to_bytes(2, "big") + qd.to_bytes(2, "big") + \
        an.to_bytes(2, "big") + b"\x00\x00\x00\x00"


def test_hostile_names_are_none():
    q = b"\x00\x01\x00\x01"
    assert d.parse(_header() + b"\xc0\x0c" + q) is d.MALFORMED                     # self pointer
    assert d.parse(_header() + b"\x01a\xc0\x0c" + q) is d.MALFORMED                # loop back to start
    assert d.parse(_header() + b"\xc0\x40" + q) is d.MALFORMED                     # past the end
    assert d.parse(_header() + b"\x01a\xc0\x14" + q + b"\xc0\x0e") is d.MALFORMED     # forward loop
    long_name = b"".join(b"\x3f" + b"a" * 63 for _ in range(5)) + b"\x00"  # 320 chars
    assert d.parse(_header() + long_name + q) is d.MALFORMED
    labels = b"\x01a" * 200 + b"\x00"                                        # 200 labels
    assert d.parse(_header() + labels + q) is d.MALFORMED
    assert d.parse(_header() + b"\x40abc\x00" + q) is d.MALFORMED                  # label type 0x40
    ok = _header(an=1) + b"\x01a\x00" + q + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04"
    assert d.parse(ok + b"\x01\x02\x03\x04").answers[0].data == "1.2.3.4"
    assert d.parse(ok + b"\x01\x02") is d.MALFORMED                                # truncated RR
    assert d.parse(b"\x00" * 11) is d.MALFORMED
    # 20 pointer hops: a chain of pointers kept in an unknown RR's rdata, then an owner
    # name pointing at its end. dnspython stops at 16 hops; so do we.
    msg = _header(an=2) + b"\x00" + q + b"\x00\x03\xe7\x00\x01\x00\x00\x00\x3c\x00\x28"
    for i in range(20):
        msg += (0xC000 | (len(msg) - 2 if i else 12)).to_bytes(2, "big")
    bad = msg + (0xC000 | (len(msg) - 2)).to_bytes(2, "big") + b"\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x00"
    assert d.parse(bad) is d.MALFORMED


def test_truncated_tc_keeps_complete_answers():
    wire = _msg([("www.example.com.", 60, "IN", "A", "192.0.2.1"),
                 ("www.example.com.", 60, "IN", "A", "192.0.2.2")], tc=True)
    m = d.parse(wire[:-3])
    assert m.truncated and [a.data for a in m.answers] == ["192.0.2.1"]
    notc = bytearray(wire[:-3])
    notc[2] &= ~0x02
    assert d.parse(bytes(notc)) is d.MALFORMED


def test_names_escape_like_dnspython_and_fallback_types():
    wire = _msg([("we\\.ird\\032x\\255.example.com.", 60, "IN", "TXT", '"a\\"b" "\\200"'),
                 ("www.example.com.", 60, "IN", "CAA", '0 issue "ca.example"'),
                 ("www.example.com.", 60, "IN", "TYPE999", "\\# 2 abcd"),
                 ("www.example.com.", 60, "IN", "HTTPS", '1 . alpn="h2"')])
    ours = d.parse(wire)
    assert_same_as_dnspython(wire, ours)
    assert ours.answers[0].name == "we\\.ird\\032x\\255.example.com"
    assert ours.answers[2].data == "\\# 2 abcd"


def test_bad_rdata_length_is_generic_not_fatal():
    wire = _header(an=1) + b"\x01a\x00\x00\x01\x00\x01" + \
        b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x05\x01\x02\x03\x04\x05"
    assert d.parse(wire).answers[0].data == "\\# 5 0102030405"


def test_split_tcp():
    a = _msg([("www.example.com.", 60, "IN", "A", "192.0.2.1")])
    b = _msg([])
    stream = len(a).to_bytes(2, "big") + a + len(b).to_bytes(2, "big") + b
    assert d.split_tcp(stream) == ([a, b], len(stream))
    assert d.split_tcp(stream[:-1]) == ([a], 2 + len(a))
    assert d.split_tcp(b"\x00") == ([], 0)
    assert d.split_tcp(b"\x00\x00" + stream) == ([a, b], len(stream) + 2)


def test_names():
    assert d.type_name(1) == "A" and d.type_name(65) == "HTTPS"
    assert d.type_name(65535) == "TYPE65535" and d.type_name(-1) == "TYPE-1"
    assert d.rcode_name(3) == "NXDOMAIN" and d.rcode_name(0) == "NOERROR"
    assert d.rcode_name(13) == "RCODE13"
    import dns.rcode
    for _ in range(2):      # the second time from the memo: still dnspython's names
        for rcode in range(4096):
            text = dns.rcode.to_text(rcode)
            assert d.rcode_name(rcode) == (f"RCODE{rcode}" if text.isdigit() else text)
    assert d.rcode_name(4096) == "RCODE4096" and d.rcode_name(-1) == "RCODE-1"
    root = _header(an=1) + b"\x00\x00\x02\x00\x01" + b"\x00\x00\x02\x00\x01\x00\x00\x00\x3c" \
        b"\x00\x01\x00"
    m = d.parse(root)
    assert m.questions == [(".", 2)] and m.answers[0] == (".", 2, 60, ".")


def test_forward_pointers_are_followed_as_tshark_does():
    """dnspython refuses a pointer to a later offset; tshark and resolvers follow it. Here the
    question's name points forward at a name spelled out in the answer's rdata."""
    q = b"\x00\x01\x00\x01"
    later = b"\x03www\x07example\x03com\x00"
    rr = b"\xc0\x0c\x00\x10\x00\x01\x00\x00\x00\x3c" + (len(later) + 1).to_bytes(2, "big") + \
        len(later).to_bytes(1, "big") + later                     # a TXT holding the name's bytes
    msg = _header(an=1) + b"\xc0\x1f" + q + rr                    # 0x1f: where `later` starts
    m = d.parse(msg)
    assert m.questions == [("www.example.com", 1)] and m.answers[0].name == "www.example.com"
    with pytest.raises(dns.name.BadPointer):      # the reference library refuses it
        dns.message.from_wire(msg)
