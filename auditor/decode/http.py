"""HTTP/1.x request-head decoder: method, target, version and Host from a client's bytes.

Owns recognising a cleartext HTTP request at the start of a TCP stream and reading its head
(request line + header fields, RFC 9112). Pure; a `Status` when there is no request. The body is never looked at.
`host` is the raw Host field value as sent (tshark's `http.host` keeps ":port" too);
`auditor.hostnames.http_host()` says which host, if any, it strictly names.
"""
from __future__ import annotations

from dataclasses import dataclass
from auditor.decode.outcome import MALFORMED, NEED_MORE, NOT_THIS, UNDECODABLE, Status
from auditor.decode.text import wire_text as _text

MAX_HEAD = 16 * 1024  # a request head larger than this is not something we wait for

# RFC 9110 methods, CONNECT, and the WebDAV/CalDAV/UPnP/cache ones seen in practice.
METHODS = frozenset(
    b"GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH "
    b"PROPFIND PROPPATCH MKCOL COPY MOVE LOCK UNLOCK SEARCH REPORT MKCALENDAR ACL "
    b"BIND UNBIND REBIND LINK UNLINK MKACTIVITY CHECKOUT CHECKIN MERGE UPDATE LABEL "
    b"VERSION-CONTROL BASELINE-CONTROL MKWORKSPACE ORDERPATCH UNCHECKOUT "
    b"M-SEARCH NOTIFY SUBSCRIBE UNSUBSCRIBE PURGE".split())
_LONGEST = max(len(m) for m in METHODS)
# Every proper prefix of a method: enough bytes to tell "could still be HTTP" apart.
_PREFIXES = frozenset(m[:i] for m in METHODS for i in range(1, len(m) + 1))


@dataclass(slots=True)
class HttpRequest:
    """The request line and Host of one HTTP/1.x request."""
    method: str
    target: str
    host: str | None
    version: str
    h2c_upgrade: bool = False       # `Upgrade: h2c` (RFC 7540 3.2): HTTP/2 follows a 101


def parse_request(buf: bytes) -> HttpRequest | Status:
    """Parse the head of an HTTP/1.x request at the start of `buf`."""
    try:
        return _parse(bytes(buf))
    except UNDECODABLE:
        return MALFORMED


def _parse(buf: bytes) -> HttpRequest | Status:
    sp = buf.find(b" ", 0, _LONGEST + 1)
    if sp < 0:
        head = buf[:_LONGEST + 1]
        return NEED_MORE if head and head in _PREFIXES else NOT_THIS
    method = buf[:sp]
    if method not in METHODS:
        return NOT_THIS
    eol = buf.find(b"\n", sp)
    if eol < 0:
        return NEED_MORE if len(buf) < MAX_HEAD else MALFORMED
    line = buf[sp + 1:eol].rstrip(b"\r")
    # request-line = method SP request-target SP HTTP-version (RFC 9112 3)
    tsp = line.rfind(b" ")
    if tsp <= 0:
        return MALFORMED
    target = line[:tsp]
    version = line[tsp + 1:]
    if (len(version) != 8 or not version.startswith(b"HTTP/") or version[6] != 0x2E
            or not version[5:6].isdigit() or not version[7:8].isdigit()
            or b" " in target or not target):
        return MALFORMED
    end = buf.find(b"\n\r\n", eol)
    end2 = buf.find(b"\n\n", eol)
    # The head ends at the first empty line, whether CRLF or bare LF (RFC 9112 2.2).
    cands = [e + 1 for e in (end, end2) if e >= 0]
    if not cands:
        if buf[eol + 1:eol + 3] in (b"\r\n", b"\n"):
            cands = [eol + 1]
        else:
            return NEED_MORE if len(buf) < MAX_HEAD else MALFORMED
    head_end = min(cands)
    if head_end > MAX_HEAD:
        return MALFORMED
    host, h2c_upgrade = None, False
    for raw in buf[eol + 1:head_end].split(b"\n"):
        raw = raw.rstrip(b"\r")
        if not raw:
            continue
        colon = raw.find(b":")
        if colon <= 0 or raw[colon - 1] in b" \t":
            return MALFORMED  # RFC 9112 5.1: no whitespace before the colon
        name = raw[:colon].lower()
        if host is None and name == b"host":
            host = _text(raw[colon + 1:].strip(b" \t"))
        elif name == b"upgrade":
            h2c_upgrade |= b"h2c" in (t.strip(b" \t").lower() for t in raw[colon + 1:].split(b","))
    return HttpRequest(method.decode("ascii"), _text(target), host, version.decode("ascii"),
                       h2c_upgrade)
