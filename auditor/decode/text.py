"""Bytes from the wire as text, one way for every decoder: ASCII as it is, anything else as
UTF-8 with undecodable bytes escaped (`\\xNN`), so a name is shown, never guessed at."""
from __future__ import annotations


def wire_text(b: bytes) -> str:
    try:
        return b.decode("ascii")
    except UnicodeDecodeError:
        return b.decode("utf-8", "backslashreplace")
