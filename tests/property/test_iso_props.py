"""`ecs.iso` (date part cached per second) prints exactly what datetime prints."""
from datetime import datetime, timezone

from hypothesis import given, strategies as st

from auditor.sinks.ecs import iso


def reference(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="microseconds") \
        .replace("+00:00", "Z")


@given(st.floats(min_value=-62135596800.0 + 86400, max_value=253402300799.0, allow_nan=False))
def test_iso_equals_datetime(ts):
    assert iso(ts) == reference(ts)


@given(st.integers(0, 4_000_000_000), st.integers(0, 999_999_999))
def test_iso_near_second_boundaries(sec, ns):
    for ts in (sec + ns / 1e9, sec + 0.9999995, sec + 0.0000005, sec - 1e-7):
        assert iso(ts) == reference(ts)
