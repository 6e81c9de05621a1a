"""What `suggest` keeps of a run: every egress flow as the judge saw it, every finding."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from auditor import addresses
from auditor.components import Component
from auditor.events import Finding, FlowEnded
from auditor.hostnames import normalise


@dataclass(frozen=True)
class Dest:
    """What the judge saw of one egress flow."""
    ip: str
    port: int
    transport: str
    name: str | None          # destination.domain
    name_source: str
    dns_chain: tuple[str, ...]
    dns_trusted: bool = True

    def label(self) -> str:
        where = f"{self.name} ({self.ip})" if self.name else self.ip
        proto = "quic" if self.transport == "udp" and self.port == 443 else self.transport
        return f"{where} {proto}/{self.port}" if self.port else f"{where} {proto}"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(normalise(n) for n in ((self.name,) if self.name else ())
                                   + self.dns_chain))


@dataclass(frozen=True)
class Seen:
    """One distinct (destination, verdict) pair."""
    dest: Dest
    allowed: bool
    reason: str
    rule: str | None


@dataclass(frozen=True)
class Flagged:
    """One finding, as far as `suggest` cares."""
    detector: str
    key: str
    severity: str
    ip: str | None
    domain: str | None
    key_kind: str = "ip"


class Observations(Component):
    name = "suggest"

    def __init__(self) -> None:
        self.seen: Counter[Seen] = Counter()
        self.flagged: list[Flagged] = []

    def flow_ended(self, ev: FlowEnded) -> None:
        f = ev.flow
        if not f.egress or f.verdict is None:
            return
        dest = Dest(f.server_ip, f.server_port, f.transport, f.domain, f.name_source, f.dns_chain,
                    f.dns_trusted)
        v = f.verdict
        self.seen[Seen(dest, v.allowed, v.reason.value, v.rule)] += 1

    def finding(self, ev: Finding) -> None:
        self.flagged.append(Flagged(ev.detector, str(ev.key), ev.severity, ev.destination_ip,
                                    ev.destination_domain, ev.key_kind))

    def denied(self) -> Counter[Dest]:
        out: Counter[Dest] = Counter()
        for s, n in self.seen.items():
            if not s.allowed:
                out[s.dest] += n
        return out


class Implicated:
    """IPs, names and registered domains that findings point at: each finding implicates its
    own key and nothing else (an `sni_mismatch` keyed by a fronting IP says nothing against
    the legitimate name it presented, so flows to that name stay suggestible)."""

    def __init__(self, flagged: list[Flagged], registered) -> None:
        self.registered = registered
        self.ips: dict[str, set[str]] = {}
        self.names: dict[str, set[str]] = {}
        self.domains: dict[str, set[str]] = {}   # registered domains
        for f in flagged:
            if f.key_kind == "ip" and addresses.is_ip(f.key):
                self.ips.setdefault(addresses.canonical(f.key) or f.key, set()).add(f.detector)
            elif f.key_kind == "flow" and f.ip:      # the flow's server: what the key names
                self.ips.setdefault(f.ip, set()).add(f.detector)
            elif f.key_kind == "domain":
                self.domains.setdefault(normalise(f.key), set()).add(f.detector)
            elif f.key_kind == "name":
                self.names.setdefault(normalise(f.key), set()).add(f.detector)

    def why(self, d: Dest) -> set[str]:
        return set(self.ips.get(d.ip, ())) | self.by_name(d)

    def by_name(self, d: Dest) -> set[str]:
        """Detectors whose key is one of the flow's names (or their registered domain)."""
        out: set[str] = set()
        for n in d.names:
            out |= self.names.get(n, set())
            out |= self.domains.get(self.registered(n), set())
        return out
