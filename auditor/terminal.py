"""Text meant for a terminal: names from the wire shown, never obeyed.

An SNI, Host or DNS name is chosen by whoever sent the packet; printed raw, `ESC[8m` would
hide what follows it and CR/LF would forge lines (a fake `findings none`). Every such text is
passed through `printable`, which shows control and other non-printable characters as
`\\xNN` / `\\uNNNN` escapes (and the backslash itself as `\\\\`, so an escape cannot be faked).
"""
from __future__ import annotations


def printable(text: object) -> str:
    s = str(text)
    if s.isprintable() and "\\" not in s:
        return s
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch.isprintable() and ch != "\u00ad":
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}")
    return "".join(out)
