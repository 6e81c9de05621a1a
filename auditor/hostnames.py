"""Domain names: one normal form, strict reading of names that come from the wire, and the
registered domain (eTLD+1) from the bundled Public Suffix List.

Normal form (what the judge, the detectors and `suggest` compare): lower case, no trailing
dot, internationalised names as IDNA A-labels.

Names from packets are chosen by whoever sent them, so they are read *more* strictly than
a resolver would, never more loosely: an SNI or HTTP Host names a host only if it already is
ASCII letters/digits/hyphens (A-labels for IDNs), at most 253 bytes. Fullwidth letters, soft
hyphens, zero-width spaces, brackets around a name, a port that is not a number: such a name
names nothing (and is kept as evidence). Folding it (as IDNA 2003's NFKC mapping would,
turning fullwidth `ｐｙｐｉ.ｏｒｇ` into `pypi.org`) would let a sender pick which rule allows it.
"""
from __future__ import annotations

import re
from functools import lru_cache

from auditor import addresses

MAX_NAME = 253
# Names longer than a host name can be (escaped raw bytes from DNS, up to ~1,000 characters)
# never repeat: caches keyed by names leave them out.
MAX_CACHED_NAME = MAX_NAME + 3
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_PORT = re.compile(r"[0-9]{1,5}\Z")
_psl = None


def normalise(name: str | None) -> str:
    """Lower case, no trailing dot, A-labels ("" for None). For names people write (policy
    files) and DNS names; never raises (an undecodable name stays lower-cased)."""
    if not name:
        return ""
    name = name.rstrip(".").lower()
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            pass
    return name


def wire_host(raw: str | None) -> str | None:
    """The normal form of a host name read from the wire (TLS/QUIC SNI, the host part of an
    HTTP Host or CONNECT target), or None when it is not a strictly valid host name.
    IP literals are not host names here (RFC 6066 forbids them in SNI)."""
    if not raw or len(raw) > MAX_NAME + 1 or not raw.isascii():
        return None                 # (checked before the cache: a 60 kB SNI is never kept)
    return _wire_host(raw)


@lru_cache(maxsize=16384)
def _wire_host(raw: str) -> str | None:
    name = raw[:-1] if raw.endswith(".") else raw
    if not name or len(name) > MAX_NAME:
        return None
    name = name.lower()
    labels = name.split(".")
    for label in labels:
        if not _LDH_LABEL.match(label):
            return None
        if label.startswith("xn--") and not _punycode_ok(label):
            return None
    if labels[-1].isdigit():     # `1.2.3.4` and other all-numeric tails are not host names
        return None
    return name


def _punycode_ok(label: str) -> bool:
    try:
        decoded = label[4:].encode("ascii").decode("punycode")
    except (UnicodeError, ValueError):
        return False
    return bool(decoded) and not decoded.isascii()


def split_host_port(value: str | None) -> tuple[str, int | None] | None:
    """`host[:port]` or `[v6][:port]` (RFC 9110 Host, RFC 9112 authority-form) -> (host,
    port). None when the value is not of that shape: `[pypi.org]`, `pypi.org:evil`, spaces."""
    if not value or not value.isascii() or any(c in value for c in " \t\r\n/\\@?#"):
        return None
    port: int | None = None
    if value.startswith("["):
        close = value.find("]")
        if close < 0:
            return None
        host, rest = value[1:close], value[close + 1:]
        if addresses.parse(host) is None or ":" not in host:
            return None                      # brackets hold an IPv6 literal, nothing else
        host = addresses.canonical(host) or host
    else:
        host, colon, rest = value.partition(":")
        rest = colon + rest
        if not host:
            return None
    if rest:
        if not rest.startswith(":") or not _PORT.match(rest[1:]) or int(rest[1:]) > 65535:
            return None
        port = int(rest[1:])
    return host, port


def http_host(value: str | None) -> str | None:
    """The host an HTTP Host / CONNECT target names: a strict host name (normal form) or an
    IP literal (canonical); None when it names nothing."""
    parts = split_host_port(value)
    if parts is None:
        return None
    host = parts[0]
    if addresses.is_ip(host):
        return addresses.canonical(host)
    return wire_host(host)


def _list():
    global _psl
    if _psl is None:
        from publicsuffixlist import PublicSuffixList
        _psl = PublicSuffixList(_rules_with_a_labels(), accept_encoded_idn=False)
    return _psl


def _rules_with_a_labels() -> list[str]:
    """The bundled list's rules, each internationalised one followed by its A-label form.

    The library's own reading IDNA-encodes every one of ~10k rules (~25 ms, a tenth of a
    small replay's start-up); encoding an ASCII rule gives the rule itself, so only the few
    hundred non-ASCII rules need it. Same rule set (tests/test_hostnames.py holds the two equal).
    """
    from publicsuffixlist import PSLFILE
    out = []
    with open(PSLFILE, encoding="utf-8") as f:
        for line in f:
            rule = line.lower().split(" ")[0].rstrip()
            if not rule or rule.startswith("//"):
                continue
            out.append(rule)
            if not rule.isascii():
                bare = rule.lstrip("!")
                out.append(rule[:len(rule) - len(bare)] + bare.encode("idna").decode("ascii"))
    return out


def registered_domain(name: str) -> str:
    """eTLD+1 of a normal-form name; the name itself when it is a public suffix or a single
    label (so every name has a key). Cached, except names longer than a host name can be
    (escaped raw bytes from DNS), which never repeat and would hold ~1 kB each."""
    if len(name) > MAX_CACHED_NAME:
        return _registered_domain(name)
    return _cached_registered_domain(name)


def _registered_domain(name: str) -> str:
    if not name or name == ".":
        return ""
    try:
        return _list().privatesuffix(name) or name
    except Exception:  # noqa: BLE001 - the list library must not take the pipeline down
        return name


_cached_registered_domain = lru_cache(maxsize=8192)(_registered_domain)


@lru_cache(maxsize=8192)
def is_public_suffix(name: str) -> bool:
    """`com`, `co.uk`, `blob.core.windows.net`-style shared suffixes (PSL, private part too)."""
    try:
        return bool(name) and _list().publicsuffix(name) == name
    except Exception:  # noqa: BLE001
        return False


def matches_any(name: str, names: frozenset[str]) -> bool:
    """`name` equals one of `names` or is a subdomain of one (all in normal form). Walks the
    name's own suffixes, so the cost is its label count, not the list size."""
    while name:
        if name in names:
            return True
        dot = name.find(".")
        if dot < 0:
            return False
        name = name[dot + 1:]
    return False
