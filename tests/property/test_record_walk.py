"""`tls.RecordWalk` lets the tracker skip parsing a growing client prefix only where the parse
is sure to say NEED_MORE. Checked on hellos cut into records of any size (down to one byte),
behind a tunnel preamble, with and without a byte broken anywhere (a record type, version or
length, the handshake header, the hello body), against both parsers, at every prefix a stream
of segments of any sizes reaches."""
from __future__ import annotations

from hypothesis import example, given, strategies as st

from auditor.decode import tls
from auditor.decode.outcome import NEED_MORE
from tests.property.test_app_decoders_props import hellos, records

PARSERS = {tls.parse_records, tls.py_parse_records}


# The value a broken byte is set to: any, or (mostly) one that turns a record type, version,
# length or the handshake type into something the walk must notice.
_value = st.sampled_from([0, 1, 2, 3, 4, 5, 0x15, 0x16, 0x17, 0x48, 0xFF]) | st.integers(0, 255)


@given(hellos(), st.integers(1, 80), st.binary(max_size=12),
       st.lists(st.integers(1, 50) | st.integers(1, 4), min_size=1, max_size=400),
       _value, st.integers(0, 10_000))
@example(b"\x01\x00\x00\x30" + bytes(48), 1, b"", [6] * 60, 0, 0)   # the one-byte-record flood
def test_the_walk_skips_only_need_more(hs, size, preamble, segments, value, anywhere):
    intact = records(hs, size)
    # Intact, then broken where the walk decides something (the first bytes; the header of
    # each of the first records and the handshake header inside it) and at one place anywhere.
    places = [None, *range(9), *(k * (size + 5) + j for k in range(1, 4) for j in range(9)),
              anywhere % len(intact)]
    for at in places:
        stream = bytearray(intact)
        if at is not None:
            if at >= len(stream) or stream[at] == value:
                continue
            stream[at] = value
        _walk_prefixes(preamble + bytes(stream), len(preamble), segments, intact=at is None)


def _walk_prefixes(stream: bytes, base: int, segments: list[int], intact: bool) -> None:
    walk = tls.RecordWalk(base)
    n = base
    for step in segments:
        n += step
        if n > len(stream) + 10:
            break
        prefix = stream[:n]
        answers = [p(prefix[base:]) for p in PARSERS]
        if walk.undecided(prefix):
            assert all(a is NEED_MORE for a in answers), (n, answers)
        elif intact and n >= base + 5:
            # an intact stream is parsed again only when the parse can answer
            assert all(a is not NEED_MORE for a in answers), (n, answers)


def test_a_hello_in_one_byte_records_is_walked_once():
    """The flood shape: each segment one 6-byte record of a 60,000-byte hello. The walk
    reaches each record once, so the total walked is the stream's length, not its square."""
    hs = b"\x01" + (60_000 - 4).to_bytes(3, "big") + bytes(60_000 - 4)
    stream = records(hs, 1)
    walk = tls.RecordWalk()
    visited = 0
    for n in range(6, 6 * 10_000, 6):
        before = walk.off
        assert walk.undecided(stream[:n])
        visited += walk.off - before
    assert visited == 6 * 10_000 - 6
