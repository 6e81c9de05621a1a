"""IP addresses: text and packed forms, canonical spelling, and which side of the node they are.

The one home for "is this address public / internal / loopback" and for CIDR sets, used by
the tracker (which flows are egress), the judge, the detectors and `suggest` alike. Lookups
are cached: the same few thousand addresses come up for every flow.
"""
from __future__ import annotations

import bisect
import ipaddress
import re
import socket
from functools import lru_cache
from typing import Iterable

IPV4_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
# Entries of each lookup cache: ordinary traffic needs a few thousand; a flood of unique
# addresses churns the LRU instead of growing it (~300 bytes an entry, ~2.5 MiB per cache).
ADDRESS_CACHE = 8192
# What an address literal can be spelt with before its zone (`%eth0`). A host name nearly
# always has another letter: it is then no address without the failed parses (and their
# exceptions, ~10 us) that `ipaddress` would take to say so, and a flood of unique names does
# not churn the address caches.
_ADDRESS_SPELLING = re.compile(r"[0-9A-Fa-f:.]+")


def text(packed: bytes) -> str:
    """Packed 4- or 16-byte address to its usual text form."""
    return socket.inet_ntop(socket.AF_INET if len(packed) == 4 else socket.AF_INET6, packed)


def parse(value: str) -> tuple[int, int] | None:
    """(family bits 32|128, integer) for an address string, None if it is not one."""
    try:
        return 32, int.from_bytes(socket.inet_pton(socket.AF_INET, value), "big")
    except (OSError, ValueError):   # ValueError: an embedded NUL
        pass
    address, percent, scope = value.partition("%")
    # a zone, if any, is one non-empty name (RFC 4007), and never holds a "/" (ipaddress
    # reads that as a prefix length)
    if percent and (not scope or "%" in scope or "/" in scope):
        return None
    try:
        return 128, int.from_bytes(socket.inet_pton(socket.AF_INET6, address), "big")
    except (OSError, ValueError):
        return None


def canonical(value: str) -> str | None:
    """The address in Python's canonical text form, or None if `value` is not an address."""
    try:
        socket.inet_pton(socket.AF_INET, value)   # dotted quad, no leading zeros: already
        return value                                # what ipaddress would print
    except (OSError, ValueError, TypeError):
        pass
    if not isinstance(value, str) or not _ADDRESS_SPELLING.fullmatch(value.partition("%")[0]):
        return None
    return _canonical(value)


@lru_cache(maxsize=ADDRESS_CACHE)
def _canonical(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def is_ip(value: str | None) -> bool:
    return value is not None and value != "" and canonical(value) is not None


@lru_cache(maxsize=ADDRESS_CACHE)
def _address(value: str):
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr


def _not_public_ranges(version: int) -> list[tuple[int, int]] | None:
    """Sorted (first, last) integer ranges that are not global unicast, taken from the
    stdlib's own tables so `is_public` agrees with `ipaddress` exactly; None where this
    Python's `ipaddress` has exceptions inside those tables (then `ipaddress` decides)."""
    constants = ipaddress._IPv4Constants if version == 4 else ipaddress._IPv6Constants  # type: ignore[attr-defined]
    if hasattr(constants, "_private_networks_exceptions"):
        return None
    nets = list(constants._private_networks)
    nets.append(ipaddress.ip_network("224.0.0.0/4" if version == 4 else "ff00::/8"))   # multicast
    if version == 4:
        nets.append(constants._public_network)          # 100.64.0.0/10, shared address space
    ranges = sorted((int(n.network_address), int(n.broadcast_address)) for n in nets)
    merged: list[tuple[int, int]] = []
    for lo, hi in ranges:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


_NOT_PUBLIC = {32: _not_public_ranges(4), 128: _not_public_ranges(6)}
_NOT_PUBLIC_STARTS = {bits: [lo for lo, _ in r] if r else [] for bits, r in _NOT_PUBLIC.items()}


def is_public(value: str) -> bool:
    """A globally routable unicast address (IPv4-mapped IPv6 judged as its IPv4). Integer
    ranges (one bisect) instead of `ipaddress` objects: a flood of unique addresses asks
    this once per flow."""
    parsed = parse(value)
    if parsed is None:
        return False
    bits, n = parsed
    if bits == 128 and n >> 32 == 0xFFFF:
        bits, n = 32, n & 0xFFFFFFFF                     # ::ffff:a.b.c.d is a.b.c.d
    ranges = _NOT_PUBLIC[bits]
    if ranges is None:
        addr = _address(value)
        return addr is not None and addr.is_global and not addr.is_multicast
    i = bisect.bisect_right(_NOT_PUBLIC_STARTS[bits], n) - 1
    return i < 0 or n > ranges[i][1]


def is_internal(value: str) -> bool:
    """Private, loopback, link-local, multicast, unspecified or broadcast: never the internet."""
    addr = _address(value)
    if addr is None:
        return False
    return (addr.is_private or addr.is_multicast or addr.is_link_local or addr.is_loopback
            or addr.is_unspecified or value == "255.255.255.255")


def is_loopback(value: str) -> bool:
    addr = _address(value)
    return addr is not None and addr.is_loopback


def is_loopback_packed(packed: bytes) -> bool:
    if len(packed) == 4:
        return packed[0] == 127
    return packed == b"\x00" * 15 + b"\x01"


class Networks:
    """A set of CIDR blocks; membership of packed (hot path) or text addresses."""

    def __init__(self, cidrs: Iterable[str]) -> None:
        nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
        self.cidrs = tuple(str(n) for n in nets)
        self._v4 = [(int(n.network_address), int(n.netmask)) for n in nets if n.version == 4]
        self._v6 = [(int(n.network_address), int(n.netmask)) for n in nets if n.version == 6]

    def __contains__(self, packed: bytes) -> bool:
        nets = self._v4 if len(packed) == 4 else self._v6
        addr = int.from_bytes(packed, "big")
        return any(addr & mask == net for net, mask in nets)

    def has_text(self, value: str) -> bool:
        parsed = parse(value)
        if parsed is None:
            return False
        bits, addr = parsed
        return any(addr & mask == net for net, mask in (self._v4 if bits == 32 else self._v6))
