"""`dns_tunneling`: data smuggled in DNS names (SPEC §8), keyed by registered domain.

Per querier and registered domain (eTLD+1), over a sliding window (default 5 min), any of:
- volume: >= `min_queries` queries whose subdomain (name minus the registered domain) is
  >= `long_subdomain` bytes, or has Shannon entropy >= `entropy_bits` over >=
  `entropy_min_length` bytes (dots excluded), among >= `min_distinct_names` distinct names;
- NULL: any query of type NULL (10), which no ordinary software asks for;
- TXT: >= `txt_min_queries` distinct TXT names with a subdomain >= `txt_long_name` bytes
  (MX and CNAME queries count as TXT: tunnels such as dnscat2 rotate through all three,
  because each carries arbitrary data back; `txt_qtypes`).
Lengths and entropy are over the name's wire bytes (escapes like `\\198` undone).

A query is counted when seen (`dns_query`); a response counts only when its query was not
seen (unsolicited and the name not yet counted), because captures taken behind a resolver
or with one direction filtered hold only one side. The first `MAX_QUESTIONS` questions of a
message count; each domain is judged once per message, after all of them. Reverse-lookup zones (`.arpa`,
`ip6.int`) never count for volume: their long nibble names are not data. Severity is high,
critical when two of the three conditions hold at the moment it fires.
"""
from __future__ import annotations

import math
import re
from array import array
from collections import Counter
from functools import lru_cache

from pydantic import Field

from auditor.detect.base import Context, Detector, DetectorSettings, Evidence, NameTable
from auditor.events import DnsAnswered, DnsQuery
from auditor.hostnames import MAX_CACHED_NAME, normalise, registered_domain

NULL = 10
DNS_PORT = 53
REVERSE = ("arpa", "ip6.int")
NAMES_PER_KEY = 64   # distinct recent names kept per (querier, domain)
# The names all keys may hold in all, whatever the key cap: unique names of ~1,000
# characters under thousands of domains held 20,000 x 64 of them (1.6 GB peak).
MAX_NAMES = 200_000
MAX_NAME_CHARS = 16 << 20
# Questions counted per message. Resolvers answer one (RFC 9619 makes QDCOUNT > 1 a format
# error), so data in the others reaches only a server the job talks to directly (which
# `dns_resolver_bypass` raises); a 48 kB query of 768 escape-laden 255-byte names cost
# ~100 ms to measure, name by name.
MAX_QUESTIONS = 16
_ESCAPE = re.compile(r"\\(\d{3}|.)")


class DnsTunnelingSettings(DetectorSettings):
    """`dns_tunneling` thresholds; why these values: docs/detectors.md."""
    min_queries: int = Field(25, ge=1, description="suspicious queries in the window")
    long_subdomain: int = Field(50, ge=1, description="subdomain bytes that make a query suspicious")
    entropy_bits: float = Field(3.5, ge=0, description="subdomain entropy (bits/byte) that makes it suspicious")
    entropy_min_length: int = Field(20, ge=1, description="entropy only judged over this many bytes")
    min_distinct_names: int = Field(15, ge=1, description="distinct suspicious names in the window")
    txt_long_name: int = Field(30, ge=1, description="subdomain bytes of a TXT query that count as long")
    txt_min_queries: int = Field(5, ge=1, description="distinct long TXT names in the window")
    txt_qtypes: list[int] = Field(default_factory=lambda: [16, 15, 5],
                                  description="query types judged like TXT (TXT, MX, CNAME carry data back)")
    ignore_domains: list[str] = Field(default_factory=list,
                                      description="registered domains never reported (e.g. AV reputation lookups)")


class _Recent:
    """Recent names under one (querier, registered domain), oldest first."""
    __slots__ = ("names", "chars", "times", "null")

    def __init__(self, min_queries: int):
        # name -> [last ts, queries, qtype, suspicious, long TXT, entropy, max label]
        self.names: dict[str, list] = {}
        self.chars = 0      # characters of the names held
        # The last `min_queries` suspicious query times, oldest first: a packed array (8 bytes
        # a time) rather than a deque, whose first block alone costs ~600 bytes a key; a flood
        # of unique names fills every one of the `max_keys` slots.
        self.times = array("d")
        self.null = False


class DnsTunnelingEvidence(Evidence):
    reasons: list[str] = Field(description="null_query, volume, long_txt")
    client: str
    queries: int
    distinct_names: int
    suspicious_names: int
    sample_names: list[str]
    max_label_length: int
    mean_entropy: float
    qtypes: dict[str, int] = Field(description="query type number -> queries")
    window_seconds: float


class DnsTunneling(Detector):
    """Data smuggled in DNS names: long or high-entropy subdomains, NULL or long TXT queries."""
    name = "dns_tunneling"
    severities = ("high", "critical")
    key_kind = "domain"
    Settings = DnsTunnelingSettings
    Evidence = DnsTunnelingEvidence

    def __init__(self, settings: DnsTunnelingSettings, context: Context) -> None:
        super().__init__(settings, context)
        self.s = settings
        self.ignore = tuple(normalise(d) for d in settings.ignore_domains)
        self.txt_qtypes = frozenset(settings.txt_qtypes)
        # (querier, registered domain) -> _Recent
        self.keys = NameTable(self.max_keys, self._evicted, _weigh, MAX_NAMES, MAX_NAME_CHARS)

    def dns_query(self, ev: DnsQuery) -> None:
        flow = ev.flow
        self._message(ev, flow.client_ip if ev.from_client else flow.server_ip, seen_only=False)

    def dns_answered(self, ev: DnsAnswered) -> None:
        if ev.solicited:  # its query was counted already
            return
        flow = ev.flow
        self._message(ev, flow.client_ip if ev.to_client else flow.server_ip, seen_only=True)

    def _message(self, ev: DnsQuery | DnsAnswered, querier: str, seen_only: bool) -> None:
        """Count every question, then judge once each domain they touched: one message can
        carry thousands of questions (a 6-byte pointer each), and judging at every question
        walked the domain's recent names again each time."""
        touched: dict[str, tuple[_Recent, bool]] = {}   # domain -> (state, a NULL query now)
        for qname, qtype in ev.message.questions[:MAX_QUESTIONS]:
            counted = self._count(ev.ts, querier, normalise(qname), qtype, seen_only)
            if counted is not None:
                domain, recent = counted
                null_now = qtype == NULL or (domain in touched and touched[domain][1])
                touched[domain] = (recent, null_now)
        for domain, (recent, null_now) in touched.items():
            self._judge(ev.ts, querier, domain, recent, ev.flow, null_now)

    def _count(self, ts: float, querier: str, name: str, qtype: int,
               seen_only: bool) -> tuple[str, _Recent] | None:
        """Add one question to its (querier, domain) state; the domain and the state to judge,
        or None when nothing was counted."""
        s = self.s
        domain, sub, ent = _shape(name, s.entropy_min_length)
        if not domain or domain in self.ignore:
            return None
        reverse = name.endswith(REVERSE)
        suspicious = not reverse and (len(sub) >= s.long_subdomain or ent >= s.entropy_bits)
        long_txt = qtype in self.txt_qtypes and len(sub) >= s.txt_long_name
        key = (querier, domain)
        recent = self.keys.get(key)
        if recent is None:
            if not (suspicious or long_txt or qtype == NULL):
                return None  # state only for domains that ever looked odd
            recent = self.keys.touch(key, lambda: _Recent(s.min_queries))
        else:
            self.keys.move_to_end(key)
        names = recent.names
        entry = names.pop(name, None)
        if entry is not None and seen_only:
            names[name] = entry
            return None
        if entry is None:
            label = max((len(x) for x in sub.split(b".")), default=0)
            entry = [ts, 0, qtype, suspicious, long_txt, ent, label]
            recent.chars += len(name)
            self.keys.hold(len(name))
        entry[0] = ts
        entry[1] += 1
        names[name] = entry  # re-inserted: dict order is recency order
        horizon = ts - self.window
        while names:
            oldest = next(iter(names))
            if names[oldest][0] >= horizon and len(names) <= NAMES_PER_KEY:
                break
            del names[oldest]
            recent.chars -= len(oldest)
            self.keys.release(len(oldest))
        if suspicious:
            times = recent.times
            times.append(ts)
            if len(times) > s.min_queries:
                del times[0]
        recent.null = recent.null or qtype == NULL
        self.keys.trim()
        return domain, recent

    def _judge(self, ts, querier, domain, recent: _Recent, flow, null_now: bool) -> None:
        if self.quiet(domain, ts):      # fired within the window: the evidence would be dropped
            return
        s = self.s
        entries = recent.names.values()
        times = recent.times
        suspicious = [e for e in entries if e[3]]
        volume = (len(times) == s.min_queries and ts - times[0] <= self.window
                  and len(suspicious) >= s.min_distinct_names)
        txt = sum(1 for e in entries if e[4]) >= s.txt_min_queries
        reasons = [r for r, hit in (("null_query", null_now), ("volume", volume), ("long_txt", txt))
                   if hit]
        if not reasons:
            return
        if recent.null and "null_query" not in reasons:
            reasons.append("null_query")
        qtypes: dict[str, int] = {}
        for e in entries:
            qtypes[str(e[2])] = qtypes.get(str(e[2]), 0) + e[1]
        evidence = {
            "reasons": reasons,
            "client": querier,
            "queries": sum(e[1] for e in entries),
            "distinct_names": len(recent.names),
            "suspicious_names": len(suspicious),
            "sample_names": [n for n, e in recent.names.items() if e[3] or e[4] or e[2] == NULL][-3:],
            "max_label_length": max(e[6] for e in entries),
            "mean_entropy": round(sum(e[5] for e in suspicious) / len(suspicious), 2) if suspicious else 0.0,
            "qtypes": qtypes,
            "window_seconds": self.window,
        }
        severity = "critical" if len(reasons) >= 2 else "high"
        self.fire(ts, severity, domain, evidence, flow, source_ip=querier,
                  destination_ip=flow.server_ip if flow.client_ip == querier else flow.client_ip,
                  destination_port=DNS_PORT, destination_domain=domain)


def _weigh(_key: tuple[str, str], recent: _Recent) -> tuple[int, int]:
    return len(recent.names), recent.chars


def wire(text: str) -> bytes:
    """The bytes an escaped name text stands for (`\\DDD` and `\\X` undone; dots kept)."""
    if "\\" not in text:
        return text.encode("ascii", "replace")
    return _ESCAPE.sub(lambda m: chr(int(m.group(1))) if len(m.group(1)) == 3 else m.group(1),
                       text).encode("latin-1", "replace")


# c * log2(c) for the counts a name's bytes can reach: -sum(p * log2(p)) over p = c / n is
# log2(n) - sum(c * log2(c)) / n, and a table lookup per distinct byte is cheaper than a
# division and a logarithm (5.7 -> 3.7 us per name; every new name of a flood is measured).
_C_LOG2_C = [0.0] + [c * math.log2(c) for c in range(1, 2049)]


def entropy(data: bytes) -> float:
    """Shannon entropy in bits per byte."""
    n = len(data)
    if not n:
        return 0.0
    counts = Counter(data).values()
    if n < len(_C_LOG2_C):
        weighted = sum(map(_C_LOG2_C.__getitem__, counts))
    else:
        weighted = sum(c * math.log2(c) for c in counts)
    return max(0.0, math.log2(n) - weighted / n)


def _shape(name: str, entropy_min_length: int) -> tuple[str, bytes, float]:
    """(registered domain, subdomain wire bytes, entropy of the subdomain without dots).
    Cached: ordinary traffic asks for the same names over and over; a tunnel's unique names
    only cycle through the cache. A name longer than a host name can be (escaped raw bytes,
    up to ~1,000 characters) is never one that repeats, and is not kept."""
    if len(name) > MAX_CACHED_NAME:
        return _measure(name, entropy_min_length)
    return _cached_shape(name, entropy_min_length)


def _measure(name: str, entropy_min_length: int) -> tuple[str, bytes, float]:
    domain = registered_domain(name)
    sub = wire(name[:-len(domain)].rstrip(".")) if domain and name != domain else b""
    flat = sub.replace(b".", b"")
    return domain, sub, entropy(flat) if len(flat) >= entropy_min_length else 0.0


_cached_shape = lru_cache(maxsize=16384)(_measure)
