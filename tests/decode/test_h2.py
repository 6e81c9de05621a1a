"""Cleartext HTTP/2: frames, header blocks through HPACK, what a request asks for, and the
bounds that keep a hostile peer's header blocks small (HPACK bombs, CONTINUATION floods,
dynamic-table size updates)."""
import time

import hpack
import pytest

from auditor.decode import h2
from auditor.decode.outcome import DecodeError
from tests.hardening.crafted import h2_frame

REQ = [(":method", "GET"), (":scheme", "http"), (":authority", "dns.google"),
       (":path", "/dns-query?dns=AAABAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB")]


def frames_of(buf: bytes) -> list[h2.Frame]:
    frames, used = h2.split_frames(buf)
    assert used == len(buf)
    return frames


def test_split_frames_keeps_the_incomplete_tail():
    one = h2_frame(h2.SETTINGS, 0, 0, b"\x00\x01\x00\x01\x00\x00")
    frames, used = h2.split_frames(one + one[:5])
    assert [f.type for f in frames] == [h2.SETTINGS] and used == len(one)
    assert h2.settings(frames[0]) == {h2.HEADER_TABLE_SIZE: 65536}


def test_an_oversized_frame_is_malformed_before_its_bytes_arrive():
    with pytest.raises(DecodeError):
        h2.split_frames((h2.MAX_FRAME + 1).to_bytes(3, "big") + bytes(6))


def test_headers_with_padding_priority_and_continuation():
    block = hpack.Encoder().encode(REQ)
    head = b"\x03" + b"\x00\x00\x00\x00\x10" + block[:5] + b"pad"      # PADDED | PRIORITY
    wire = (h2_frame(h2.HEADERS, h2.PADDED | h2.PRIORITY_FLAG | h2.END_STREAM, 1, head)
            + h2_frame(h2.CONTINUATION, h2.END_HEADERS, 1, block[5:]))
    blocks = h2.HeaderBlocks()
    first, second = frames_of(wire)
    assert blocks.add(first) is None and blocks.open
    headers = blocks.add(second)
    assert headers.stream == 1 and headers.end_stream and not blocks.open
    assert h2.authority(headers) == "dns.google" and h2.is_doh(headers)
    assert h2.doh_get_query(headers.get(":path"))[:2] == b"\x00\x00"


def test_the_dynamic_table_carries_over_between_blocks():
    enc, blocks = hpack.Encoder(), h2.HeaderBlocks()
    for sid in (1, 3):
        (frame,) = frames_of(h2_frame(h2.HEADERS, h2.END_HEADERS, sid, enc.encode(
            [(":method", "POST"), (":authority", "resolver.example"), ("content-type", h2.DOH_TYPE)])))
        headers = blocks.add(frame)
        assert h2.authority(headers) == "resolver.example" and h2.is_doh(headers)


@pytest.mark.parametrize("headers,doh", [
    ([(":path", "/dns-query")], True),
    ([(":path", "/resolve?name=x&dns=AAAA")], True),
    ([(":path", "/"), ("accept", "Application/DNS-Message")], True),
    ([(":path", "/"), ("content-type", "application/dns-message")], True),
    ([(":path", "/dns-query-not")], False),
    ([(":path", "/?xdns=1")], False),
])
def test_is_doh(headers, doh):
    assert h2.is_doh(h2.Headers(1, headers, True)) is doh


def test_a_continuation_flood_is_malformed():
    blocks = h2.HeaderBlocks()
    blocks.add(frames_of(h2_frame(h2.HEADERS, 0, 1, b""))[0])
    with pytest.raises(DecodeError):
        for _ in range(h2.MAX_CONTINUATION + 1):
            blocks.add(frames_of(h2_frame(h2.CONTINUATION, 0, 1, b"\x82"))[0])


def test_an_interleaved_frame_or_foreign_continuation_is_malformed():
    blocks = h2.HeaderBlocks()
    blocks.add(frames_of(h2_frame(h2.HEADERS, 0, 1, b""))[0])
    with pytest.raises(DecodeError):
        blocks.add(frames_of(h2_frame(h2.CONTINUATION, h2.END_HEADERS, 3, b""))[0])
    with pytest.raises(DecodeError):
        h2.HeaderBlocks().add(frames_of(h2_frame(h2.CONTINUATION, h2.END_HEADERS, 1, b""))[0])


def test_a_table_size_update_above_what_was_allowed_is_malformed():
    update = bytes([0x20 | 0x1f]) + hpack.hpack.encode_integer(1 << 20, 5)[1:]   # size update: 1 MiB
    with pytest.raises(DecodeError):
        h2.HeaderBlocks().add(frames_of(h2_frame(h2.HEADERS, h2.END_HEADERS, 1, update))[0])
    blocks = h2.HeaderBlocks()
    blocks.allow_table(1 << 30)          # a peer announcing 1 GiB still gets MAX_TABLE
    assert blocks.decoder.max_allowed_table_size == h2.MAX_TABLE


def test_an_hpack_bomb_stops_at_the_header_list_cap_and_quickly():
    """One ~4 KiB table entry, then 16 KiB of one-byte references to it: 64 MiB if expanded."""
    big = hpack.Encoder().encode([("x-bomb", "b" * 4000)])      # literal with incremental indexing
    block = big + b"\xbe" * (h2.MAX_BLOCK - len(big) - 16)      # 0xbe: dynamic index 62
    blocks = h2.HeaderBlocks()
    start = time.perf_counter()
    with pytest.raises(DecodeError):
        blocks.add(frames_of(h2_frame(h2.HEADERS, h2.END_HEADERS, 1, block))[0])
    assert time.perf_counter() - start < 0.5
    assert blocks.decoder.header_table.maxsize <= h2.HPACK_TABLE


def test_an_oversized_block_is_malformed_without_decoding():
    with pytest.raises(DecodeError):
        h2.HeaderBlocks().add(frames_of(h2_frame(h2.HEADERS, h2.END_HEADERS, 1,
                                                 b"\x82" * (h2.MAX_BLOCK + 1)))[0])


def test_headers_on_stream_zero_are_malformed():
    with pytest.raises(DecodeError):
        h2.HeaderBlocks().add(frames_of(h2_frame(h2.HEADERS, h2.END_HEADERS, 0, b"\x82"))[0])
