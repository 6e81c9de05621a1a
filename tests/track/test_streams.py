from hypothesis import given, strategies as st

from auditor.track.streams import StreamPrefix


def test_in_order_and_retransmission():
    s = StreamPrefix(isn=99)
    assert s.add(100, b"hello ")
    assert not s.add(100, b"hello ")          # pure retransmission adds nothing
    assert s.add(103, b"lo world")            # overlap: only the new part is kept
    assert bytes(s.data) == b"hello world"


def test_out_of_order_is_pulled_in():
    s = StreamPrefix(isn=0)
    assert not s.add(6, b"world")
    assert s.add(1, b"hello")
    assert bytes(s.data) == b"helloworld"


def test_sequence_wraparound():
    s = StreamPrefix(isn=(1 << 32) - 3)
    s.add((1 << 32) - 2, b"ab")
    s.add(0, b"cd")
    assert bytes(s.data) == b"abcd"


def test_cap_marks_overflow():
    s = StreamPrefix(cap=4, isn=0)
    s.add(1, b"abcdef")
    assert bytes(s.data) == b"abcd" and s.overflowed


@given(st.binary(min_size=1, max_size=300), st.lists(st.tuples(st.integers(0, 299), st.integers(1, 40)), max_size=40),
       st.integers(0, (1 << 32) - 1))
def test_any_segmentation_reassembles_a_prefix(data, cuts, isn):
    """Whatever order and overlap segments arrive in, the buffer is always a prefix of the stream,
    and it is the whole stream once every byte was delivered in some segment."""
    s = StreamPrefix(isn=isn)
    base = (isn + 1) % (1 << 32)
    for start, length in cuts:
        if start < len(data):
            s.add((base + start) % (1 << 32), data[start:start + length])
            assert data.startswith(bytes(s.data))
    s.add(base, data)
    assert bytes(s.data) == data
