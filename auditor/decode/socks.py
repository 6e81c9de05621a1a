"""SOCKS client-handshake decoder: what a client asked a SOCKS proxy to connect to.

Owns reading, from the first bytes a client sent on a TCP stream, a SOCKS4 / SOCKS4a request
(the domain after the user id when the address is 0.0.0.x, x != 0) or a SOCKS5 exchange
(RFC 1928 greeting, the RFC 1929 username/password sub-negotiation when the greeting offered
it, then the request). Pure; a `Status` when there is no request. Only client bytes are read:
the job chooses them all, so the result is a claim (what it asked for), never proof that a
proxy is there or granted it. Credentials are skipped, never kept.

`data_at` is where the bytes the client sent through the tunnel begin (a TLS ClientHello,
typically), so the caller can read them as it reads an HTTP CONNECT tunnel.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from auditor.decode.outcome import MALFORMED, NEED_MORE, NOT_THIS, UNDECODABLE, DecodeError, Status
from auditor.decode.text import wire_text as _text

CONNECT, BIND, UDP_ASSOCIATE = 1, 2, 3
USERPASS = 0x02          # RFC 1928 method: username/password (RFC 1929)
MAX_FIELD = 255          # SOCKS4 user id / SOCKS4a domain: no real client sends longer


@dataclass(slots=True, frozen=True)
class SocksRequest:
    """One SOCKS request. `host` is the domain as sent (SOCKS4a, SOCKS5 ATYP 3) or the
    address as text; `domain` says which."""
    version: int            # 4 or 5 (SOCKS4a is 4 with a domain)
    command: int            # CONNECT, BIND, UDP_ASSOCIATE
    host: str
    port: int
    domain: bool
    data_at: int            # offset of the first tunnelled byte in the client stream


def parse_client(buf: bytes) -> SocksRequest | Status:
    """Parse a SOCKS client handshake at the start of `buf`."""
    try:
        buf = bytes(buf)
        if not buf:
            return NEED_MORE
        if buf[0] == 4:
            return _socks4(buf)
        if buf[0] == 5:
            return _socks5(buf)
        return NOT_THIS
    except UNDECODABLE:
        return MALFORMED


def _need(buf: bytes, end: int) -> None:
    """Signal a prefix (raised as _Short, answered NEED_MORE)."""
    if len(buf) < end:
        raise _Short


class _Short(Exception):
    """The handshake is cut short: wait for more bytes."""


def _socks4(buf: bytes) -> SocksRequest | Status:
    # VN=4 CD DSTPORT(2) DSTIP(4) USERID NUL [DOMAIN NUL] (SOCKS4, SOCKS4a)
    if len(buf) >= 2 and buf[1] not in (CONNECT, BIND):
        return NOT_THIS
    try:
        _need(buf, 8)
        port = int.from_bytes(buf[2:4], "big")
        ip = buf[4:8]
        user_end = _nul(buf, 8)
        if ip[:3] == b"\0\0\0" and ip[3]:           # SOCKS4a: the proxy resolves the name
            host_end = _nul(buf, user_end + 1)
            host = _text(buf[user_end + 1:host_end])
            if not host:
                raise DecodeError("SOCKS4a with an empty domain")
            return SocksRequest(4, buf[1], host, port, True, host_end + 1)
    except _Short:
        return NEED_MORE
    return SocksRequest(4, buf[1], str(ipaddress.IPv4Address(ip)), port, False, user_end + 1)


def _nul(buf: bytes, start: int) -> int:
    end = buf.find(b"\0", start, start + MAX_FIELD + 1)
    if end < 0:
        if len(buf) <= start + MAX_FIELD:
            raise _Short
        raise DecodeError("SOCKS4 field without its NUL")
    return end


def _socks5(buf: bytes) -> SocksRequest | Status:
    try:
        # greeting: VER=5 NMETHODS METHODS...
        _need(buf, 2)
        n = buf[1]
        if n == 0:
            raise DecodeError("SOCKS5 greeting offers no method")
        _need(buf, 2 + n)
        methods = buf[2:2 + n]
        off = 2 + n
        _need(buf, off + 1)
        if buf[off] == 1 and USERPASS in methods:
            # RFC 1929: VER=1 ULEN UNAME PLEN PASSWD (skipped, not kept)
            _need(buf, off + 2)
            ulen = buf[off + 1]
            _need(buf, off + 3 + ulen)
            plen = buf[off + 2 + ulen]
            if ulen == 0:
                raise DecodeError("RFC 1929 empty user name")
            off += 3 + ulen + plen
            _need(buf, off + 1)
        if buf[off] != 5:
            raise DecodeError("no SOCKS5 request after the greeting")
        # request: VER=5 CMD RSV=0 ATYP DST.ADDR DST.PORT
        _need(buf, off + 4)
        cmd, rsv, atyp = buf[off + 1], buf[off + 2], buf[off + 3]
        if cmd not in (CONNECT, BIND, UDP_ASSOCIATE) or rsv != 0:
            raise DecodeError("SOCKS5 request with a bad command or reserved byte")
        addr = off + 4
        if atyp == 1:
            end = addr + 4
            _need(buf, end + 2)
            host, domain = str(ipaddress.IPv4Address(buf[addr:end])), False
        elif atyp == 4:
            end = addr + 16
            _need(buf, end + 2)
            host, domain = str(ipaddress.IPv6Address(buf[addr:end])), False
        elif atyp == 3:
            _need(buf, addr + 1)
            end = addr + 1 + buf[addr]
            _need(buf, end + 2)
            host, domain = _text(buf[addr + 1:end]), True
            if not host:
                raise DecodeError("SOCKS5 empty domain")
        else:
            raise DecodeError("SOCKS5 unknown address type")
        port = int.from_bytes(buf[end:end + 2], "big")
        return SocksRequest(5, cmd, host, port, domain, end + 2)
    except _Short:
        return NEED_MORE
