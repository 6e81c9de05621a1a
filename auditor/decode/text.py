"""Bytes from the wire as text, one way for every decoder: ASCII as it is, anything else as
UTF-8 with undecodable bytes escaped (`\\xNN`), so a name is shown, never guessed at."""
from __future__ import annotations


def wire_text(b: bytes) -> str:
    try:
        return b.decode("ascii")
    except UnicodeDecodeError:
        return b.decode("utf-8", "backslashreplace")


# The longest text kept of a name read from the wire (TLS/QUIC SNI, HTTP Host, h2 :authority),
# and of an ALPN protocol. A valid name is far shorter (253 characters, a port, brackets), so
# a longer one names nothing anyway: it is kept as its first MAX_NAME_TEXT characters and "…",
# which no host name, port or address contains, so the cut never makes a name valid. A 64 kB
# SNI of 0xff bytes was kept as 256,000 characters of escapes in its flow, in every flow of a
# full table (and in every event of each).
MAX_NAME_TEXT = 320
MAX_PROTOCOL_TEXT = 64
MAX_PROTOCOLS = 8            # ALPN values kept (the events show the first)
CUT = "\u2026"


def clipped(text: str | None, limit: int = MAX_NAME_TEXT) -> str | None:
    """`text` if at most `limit` characters, else its first `limit` and "…"."""
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + CUT


def clipped_protocols(alpn: tuple[str, ...]) -> tuple[str, ...]:
    """The first MAX_PROTOCOLS ALPN values, each clipped: a hello can list 32,000 one-byte
    protocols, 2 MB of strings per flow."""
    if len(alpn) <= MAX_PROTOCOLS and all(len(p) <= MAX_PROTOCOL_TEXT for p in alpn):
        return alpn
    return tuple(clipped(p, MAX_PROTOCOL_TEXT) for p in alpn[:MAX_PROTOCOLS])  # type: ignore[misc]
