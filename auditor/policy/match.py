"""Azure Firewall FQDN matching: name normalisation and a matcher that is O(labels) per name.

Semantics (Azure Firewall application rules, as SPEC §6 states them):
* `*` may only be the left-most character; `*` alone matches every name.
* `*.contoso.com` matches any depth of subdomain (`a.b.contoso.com`) but not `contoso.com`.
* `*contoso.com` (no dot after the star) is a plain suffix: `contoso.com`, `xcontoso.com`.
* Case-insensitive, a trailing dot is ignored, internationalised names compare as A-labels
  (`auditor.hostnames.normalise`).
"""
from __future__ import annotations

import re
from typing import Generic, Iterable, TypeVar

from auditor.hostnames import normalise

T = TypeVar("T")

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
STORAGE_SUFFIXES = tuple(f".{s}.core.windows.net" for s in ("blob", "file", "queue", "table", "dfs"))


class PatternError(ValueError):
    """An FQDN pattern Azure Firewall would not accept."""


def normalise_pattern(pattern: str) -> str:
    """Normalise an FQDN rule destination and reject what Azure Firewall cannot express."""
    raw = pattern.strip()
    if not raw:
        raise PatternError("empty FQDN")
    if "://" in raw or "/" in raw or ":" in raw:
        raise PatternError(f"{pattern!r} is a URL or has a port; FQDN rules take a host name only")
    star = raw.startswith("*")
    body = raw[1:] if star else raw
    if "*" in body:
        raise PatternError(f"{pattern!r}: '*' is only allowed as the left-most character")
    if star and body == "":
        return "*"
    body = normalise(body[1:] if body.startswith(".") and star else body)
    for label in body.split("."):
        if not _LABEL.match(label):
            raise PatternError(f"{pattern!r} is not a valid host name (label {label!r})")
    if star:
        return ("*." if raw[1:2] == "." else "*") + body
    return body


def pattern_matches(pattern: str, name: str) -> bool:
    """Reference semantics for one normalised pattern against one normalised name."""
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return name.endswith(pattern[1:])
    if pattern.startswith("*"):
        return name.endswith(pattern[1:])
    return name == pattern


def is_storage_name(name: str) -> bool:
    """True for an Azure Storage data endpoint (`acct.blob.core.windows.net`, ...)."""
    return name.endswith(STORAGE_SUFFIXES)


def is_storage_pattern(pattern: str) -> bool:
    """True when a pattern only names Azure Storage endpoints (an approved-only error)."""
    body = pattern.lstrip("*")
    return any(body.endswith(s) or ("." + body.lstrip(".")) == s for s in STORAGE_SUFFIXES)


class FqdnMatcher(Generic[T]):
    """Exact-name dict + `*.suffix` dict walked label by label + the rare `*suffix` list.

    On several matches the most specific wins: exact, then the longest `*.` suffix, then
    `*suffix` patterns, then `*`. Among equal patterns the first added wins.
    """

    __slots__ = ("_exact", "_sub", "_loose", "_any")

    def __init__(self, items: Iterable[tuple[str, T]] = ()) -> None:
        self._exact: dict[str, T] = {}
        self._sub: dict[str, T] = {}           # "contoso.com" for "*.contoso.com"
        self._loose: list[tuple[str, T]] = []  # "contoso.com" for "*contoso.com"
        self._any: T | None = None
        for pattern, value in items:
            self.add(pattern, value)

    def add(self, pattern: str, value: T) -> None:
        if pattern == "*":
            if self._any is None:
                self._any = value
        elif pattern.startswith("*."):
            self._sub.setdefault(pattern[2:], value)
        elif pattern.startswith("*"):
            if all(p != pattern[1:] for p, _ in self._loose):
                self._loose.append((pattern[1:], value))
        else:
            self._exact.setdefault(pattern, value)

    def __bool__(self) -> bool:
        return bool(self._exact or self._sub or self._loose or self._any is not None)

    def match(self, name: str) -> T | None:
        """The value of the best pattern matching `name` (already normalised), else None."""
        hit = self._exact.get(name)
        if hit is not None:
            return hit
        if self._sub:
            sub = self._sub
            i = name.find(".")
            while i >= 0:                      # longest proper suffix first
                hit = sub.get(name[i + 1:])
                if hit is not None:
                    return hit
                i = name.find(".", i + 1)
        for suffix, value in self._loose:
            if name.endswith(suffix):
                return value
        return self._any
