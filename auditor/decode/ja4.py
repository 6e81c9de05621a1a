"""JA4, the TLS client fingerprint of FoxIO's published specification (technical_details/JA4.md
in FoxIO-LLC/ja4; JA4 itself is BSD 3-Clause, this is our own implementation of the text).

`a_b_c`: a = transport (t TCP, q QUIC), TLS version (highest non-GREASE supported_versions
value, else the ClientHello's legacy version), d/i (SNI extension present or not), cipher
count and extension count (2 digits each, GREASE excluded, capped at 99) and the first and
last character of the first ALPN value (00 without one; when either end is not an ASCII
letter or digit, the first and last characters of the value's hex form, as the spec says);
b = first 12 hex digits of SHA-256 over the sorted cipher list; c = the same over the
sorted extension list without SNI and ALPN, then `_` and the signature algorithms in wire
order. GREASE values are ignored everywhere. FoxIO's own code differs from the text only
for non-alphanumeric or one-byte ALPN values (docs/events.md says which we follow: the text).
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Callable

from auditor.decode.tls import ClientHello

_VERSIONS = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3",
             0x0002: "s2", 0xFEFF: "d1", 0xFEFD: "d2", 0xFEFC: "d3"}
_SNI, _ALPN = 0x0000, 0x0010


def is_grease(value: int) -> bool:
    return value & 0x0F0F == 0x0A0A and value >> 8 == value & 0xFF


def _hash12(items: list[str]) -> str:
    return hashlib.sha256(",".join(items).encode()).hexdigest()[:12] if items else "000000000000"


def _alpn(first: bytes) -> str:
    if not first:
        return "00"
    if _alnum(first[0]) and _alnum(first[-1]):
        return chr(first[0]) + chr(first[-1])
    hexed = first.hex()
    return hexed[0] + hexed[-1]


def _alnum(byte: int) -> bool:
    return 0x30 <= byte <= 0x39 or 0x41 <= byte <= 0x5A or 0x61 <= byte <= 0x7A


def ja4(hello: ClientHello, transport: str = "t") -> str:
    """The JA4 fingerprint of a ClientHello seen over TCP (`t`) or QUIC (`q`)."""
    ciphers = [c for c in hello.ciphers if not is_grease(c)]
    extensions = [e for e in hello.extensions if not is_grease(e)]
    versions = [v for v in hello.supported_versions if not is_grease(v)]
    version = _VERSIONS.get(max(versions) if versions else hello.version, "00")
    sni = "d" if _SNI in extensions else "i"
    a = (f"{transport}{version}{sni}{min(len(ciphers), 99):02d}{min(len(extensions), 99):02d}"
         f"{_alpn(hello.alpn_first)}")
    b = _hash12(sorted(f"{c:04x}" for c in ciphers))
    rest = sorted(f"{e:04x}" for e in extensions if e not in (_SNI, _ALPN))
    sigalgs = [f"{s:04x}" for s in hello.signature_algorithms if not is_grease(s)]
    if rest:
        text = ",".join(rest) + ("_" + ",".join(sigalgs) if sigalgs else "")
        c = hashlib.sha256(text.encode()).hexdigest()[:12]
    else:
        c = "000000000000"
    return f"{a}_{b}_{c}"


# A node runs a handful of TLS stacks, so the same few hellos come up for nearly every flow;
# a fingerprint costs ~17 us to compute and ~0.3 us to look up.
FINGERPRINT_CACHE = 512
# A hello listing more values than this (ciphers, extensions, signature algorithms and
# versions together; a browser's lists ~60) is fingerprinted but not kept, so the cache
# stays within FINGERPRINT_CACHE x this many values whatever clients send.
MAX_CACHED_VALUES = 128


class Fingerprints:
    """`ja4` with a capped cache keyed by everything JA4 reads from the hello (so a hit is
    the fingerprint the hello would get anyway). Oldest out first when full; each eviction
    is reported through `on_evict` (`table_evictions_total{table="fingerprints"}`), so a
    job sending ever-new hellos shows up there and costs one lookup per hello."""

    def __init__(self, on_evict: Callable[[int], None] | None = None,
                 max_entries: int = FINGERPRINT_CACHE) -> None:
        # OrderedDict: a plain dict pays a scan of deleted slots to find its oldest entry
        self._known: OrderedDict[tuple, str] = OrderedDict()
        self._on_evict = on_evict
        self.max_entries = max_entries

    def __len__(self) -> int:
        return len(self._known)

    def ja4(self, hello: ClientHello, transport: str = "t") -> str:
        key = (transport, hello.version, hello.alpn_first, hello.ciphers, hello.extensions,
               hello.supported_versions, hello.signature_algorithms)
        known = self._known
        fingerprint = known.get(key)
        if fingerprint is not None:
            return fingerprint
        fingerprint = ja4(hello, transport)
        if (len(hello.ciphers) + len(hello.extensions) + len(hello.supported_versions)
                + len(hello.signature_algorithms) <= MAX_CACHED_VALUES):   # (ALPN: <= 255 bytes)
            if len(known) >= self.max_entries:
                known.popitem(last=False)
                if self._on_evict is not None:
                    self._on_evict(1)
            known[key] = fingerprint
        return fingerprint


def tls_version(hello: ClientHello) -> str | None:
    """ECS `tls.version` ("1.3") of the highest version the client offers."""
    versions = [v for v in hello.supported_versions if not is_grease(v)]
    v = max(versions) if versions else hello.version
    return {0x0304: "1.3", 0x0303: "1.2", 0x0302: "1.1", 0x0301: "1.0", 0x0300: "3.0"}.get(v)
