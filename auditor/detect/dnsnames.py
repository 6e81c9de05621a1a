"""Name arithmetic the DNS-aware detectors share: normal form, registered domain (eTLD+1
from the bundled Public Suffix List, loaded once), wire bytes of an escaped name, and
Shannon entropy.
"""
from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from functools import lru_cache

_ESCAPE = re.compile(r"\\(\d{3}|.)")
_psl = None


def normal(name: str | None) -> str:
    """Lower case, no trailing dot ("" for None)."""
    return name.rstrip(".").lower() if name else ""


def _list():
    global _psl
    if _psl is None:
        from publicsuffixlist import PublicSuffixList
        _psl = PublicSuffixList()
    return _psl


@lru_cache(maxsize=8192)
def registered_domain(name: str) -> str:
    """eTLD+1 of a normal-form name; the name itself when it is a public suffix or a
    single label (so every name has a key)."""
    if not name or name == ".":
        return ""
    try:
        return _list().privatesuffix(name) or name
    except Exception:  # noqa: BLE001 - the list library must not take the pipeline down
        return name


def wire(text: str) -> bytes:
    """The bytes an escaped name text stands for (`\\DDD` and `\\X` undone; dots kept)."""
    if "\\" not in text:
        return text.encode("ascii", "replace")
    return _ESCAPE.sub(lambda m: chr(int(m.group(1))) if len(m.group(1)) == 3 else m.group(1),
                       text).encode("latin-1", "replace")


def entropy(data: bytes) -> float:
    """Shannon entropy in bits per byte."""
    n = len(data)
    if not n:
        return 0.0
    return -sum(c / n * math.log2(c / n) for c in Counter(data).values())


@lru_cache(maxsize=65536)
def canonical_ip(text: str) -> str | None:
    """The address in Python's canonical text form, or None if `text` is not an address.
    Cached: detectors ask about the same few thousand addresses for every flow."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def is_ip(text: str | None) -> bool:
    return bool(text) and canonical_ip(text) is not None


def matches_any(name: str, names: frozenset[str]) -> bool:
    """`name` equals one of `names` or is a subdomain of one (all in normal form).
    Walks the name's own suffixes, so the cost is its label count, not the list size."""
    while name:
        if name in names:
            return True
        dot = name.find(".")
        if dot < 0:
            return False
        name = name[dot + 1:]
    return False
