"""Property tests for the proxy and cleartext HTTP/2 readers (decode.socks, decode.h2,
track.h2c): on noise and on mutated valid handshakes they answer a result or a `Status` (or,
inside, raise only the decode error and truncation errors); a handshake cut into two
segments at any offset names the flow exactly as one segment does; and what a followed h2c
connection holds stays under its caps whatever the peer sends."""
import socket

import hpack
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.decode import h2, socks
from auditor.decode.outcome import UNDECODABLE, Status
from auditor.decode.packet import Packet
from auditor.events import FlowNamed
from auditor.settings import Settings
from auditor.track import h2c
from tests.hardening.crafted import H2_PREFACE, h2_frame, h2_request, hello, socks4a, socks5
from tests.util import Recorder, pipeline_for

CLIENT, SERVER = socket.inet_aton("10.0.0.5"), socket.inet_aton("93.184.216.34")
ISN = 1000
host = st.from_regex(r"[a-z0-9]{1,12}(\.[a-z0-9]{1,12}){0,3}\.[a-z]{2,6}", fullmatch=True)


@st.composite
def socks_handshakes(draw):
    name = draw(host).encode()
    kind = draw(st.sampled_from(["v4", "v4a", "v5", "v5auth", "v5ip"]))
    port = draw(st.integers(1, 65535))
    if kind == "v4":
        return b"\x04\x01" + port.to_bytes(2, "big") + bytes([93, 184, 216, 34]) + b"id\x00"
    if kind == "v4a":
        return socks4a(name, port, draw(st.binary(max_size=20).filter(lambda b: b"\0" not in b)))
    if kind == "v5ip":
        return b"\x05\x01\x00\x05\x01\x00\x01" + bytes([93, 184, 216, 34]) + port.to_bytes(2, "big")
    auth = (draw(st.binary(min_size=1, max_size=30)), draw(st.binary(max_size=30))) if kind == "v5auth" else None
    return socks5(name, port, auth)


def _packet(seq: int, payload: bytes, flags: int = 0x18) -> Packet:
    return Packet(ts=1.0, version=4, src=CLIENT, dst=SERVER, proto=6, sport=40000, dport=1080,
                  ip_len=40 + len(payload), tcp_flags=flags, seq=seq, payload=payload)


def name_of(segments: list[bytes]):
    """Run the client's segments through the real tracker; the flow as it was named."""
    rec = Recorder()
    pipe = pipeline_for([rec], Settings(node_networks=["10.0.0.0/8"]))
    pipe.tracker.packet(_packet(ISN, b"", 0x02))            # SYN: streams start at ISN + 1
    seq = ISN + 1
    for seg in segments:
        pipe.tracker.packet(_packet(seq, seg))
        seq += len(seg)
    pipe.close()
    (named,) = rec.of(FlowNamed)
    f = named.flow
    return f.domain, f.name_source, f.sni, f.http_host, f.socks, pipe


def _mutate(data, wire: bytes) -> bytes:
    b = bytearray(wire)
    for _ in range(data.draw(st.integers(1, 4))):
        if b:
            b[data.draw(st.integers(0, len(b) - 1))] = data.draw(st.integers(0, 255))
    return bytes(b[:data.draw(st.integers(0, len(b)))])


# -- SOCKS -----------------------------------------------------------------------------------

@given(st.binary(max_size=600))
def test_socks_noise_answers_a_request_or_a_status(buf):
    out = socks.parse_client(buf)
    assert isinstance(out, (socks.SocksRequest, Status))
    if isinstance(out, socks.SocksRequest):
        assert out.data_at <= len(buf) and 0 <= out.port <= 65535


@given(st.data(), socks_handshakes())
def test_mutated_socks_never_raises(data, wire):
    out = socks.parse_client(_mutate(data, wire))
    assert isinstance(out, (socks.SocksRequest, Status))


@settings(max_examples=8, deadline=None)
@given(socks_handshakes(), host)
def test_socks_split_at_every_offset_names_as_one_segment(wire, sni):
    data = wire + hello(sni.encode())
    whole = name_of([data])[:5]
    assert whole[1] == "socks" and whole[2] == sni
    for cut in range(1, len(data)):
        assert name_of([data[:cut], data[cut:]])[:5] == whole, cut


# -- HTTP/2 ----------------------------------------------------------------------------------

frames = st.builds(lambda t, f, s, p: h2_frame(t, f, s, p), st.integers(0, 12), st.integers(0, 255),
                   st.integers(0, 5), st.binary(max_size=200))


@given(st.lists(frames, max_size=12))
def test_header_blocks_raise_only_the_decode_error(wire):
    blocks = h2.HeaderBlocks()
    try:
        parsed, _used = h2.split_frames(b"".join(wire))
        for frame in parsed:
            if frame.type in (h2.HEADERS, h2.CONTINUATION, h2.PUSH_PROMISE):
                blocks.add(frame)
            elif frame.type == h2.DATA:
                h2.unpad(frame)
            elif frame.type == h2.SETTINGS:
                h2.settings(frame)
    except UNDECODABLE:
        pass


@settings(max_examples=8, deadline=None)
@given(host, st.integers(1, 65535))
def test_h2c_split_at_every_offset_names_as_one_segment(name, port):
    enc = hpack.Encoder()
    data = H2_PREFACE + h2_request(enc, [(":method", "GET"), (":scheme", "http"),
                                         (":authority", f"{name}:{port}"), (":path", "/")])
    whole = name_of([data])[:4]
    assert whole[0] == name and whole[1] == "http_host"
    for cut in range(1, len(data)):
        assert name_of([data[:cut], data[cut:]])[:4] == whole, cut


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=3000) | frames, max_size=30))
def test_a_followed_connection_stays_under_its_caps(chunks):
    """Whatever follows the preface, both directions hold at most BUFFER bytes, the tracker
    raises nothing, and every byte goes back to the budget when the flow ends."""
    rec = Recorder()
    pipe = pipeline_for([rec], Settings(node_networks=["10.0.0.0/8"]))
    tr = pipe.tracker
    tr.packet(_packet(ISN, b"", 0x02))
    seq = ISN + 1
    for chunk in [H2_PREFACE, *chunks]:
        tr.packet(_packet(seq, chunk))
        seq += len(chunk)
        flow = next(iter(tr.flows._table.values()))
        conn = flow.track_state.h2 if flow.track_state is not None else None
        if conn is not None:
            assert conn.client.held <= h2c.BUFFER and conn.server.held <= h2c.BUFFER
            assert len(conn.bodies) <= h2c.MAX_STREAMS
            assert sum(map(len, conn.bodies.values())) <= h2c.MAX_STREAMS * (h2c.MAX_BODY + h2.MAX_FRAME)
    pipe.close()
    assert tr.budget.held == 0
