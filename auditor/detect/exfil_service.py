"""`exfil_service`: a destination on the shipped list of exfiltration-prone services (paste
sites, anonymous file drops, tunnelling services, request catchers, out-of-band testing
domains), keyed by registered domain.

Judged on every name the node uses for a destination: a flow's name (SNI, QUIC SNI, HTTP Host,
DNS), every name of the DNS chain that led to it, and every DNS query (out-of-band testing
services exfiltrate in the query itself: `<data>.oast.fun` never needs a connection). The list
is `auditor/data/exfil_services.tsv`, each entry with its source and licence; `suggest` never
proposes an FQDN rule for a listed service. Severity high.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field

from auditor.detect.base import Context, Detector, DetectorSettings, Evidence
from auditor.events import DnsQuery, FlowNamed
from auditor.hostnames import normalise, registered_domain

LIST = Path(__file__).resolve().parent.parent / "data" / "exfil_services.tsv"


@lru_cache(maxsize=1)
def services() -> dict[str, str]:
    """suffix -> category, from the shipped list."""
    out: dict[str, str] = {}
    for line in LIST.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            suffix, category, _source = line.split("\t")
            out[normalise(suffix)] = category
    return out


def category(name: str | None, extra: dict[str, str] | None = None) -> tuple[str, str] | None:
    """(listed suffix, category) when `name` is a listed service or below one."""
    table = services() if not extra else {**services(), **extra}
    n = normalise(name)
    while n:
        hit = table.get(n)
        if hit is not None:
            return n, hit
        dot = n.find(".")
        if dot < 0:
            return None
        n = n[dot + 1:]
    return None


class ExfilServiceSettings(DetectorSettings):
    extra_domains: list[str] = Field(default_factory=list, description="more suffixes to treat "
                                     "as exfiltration-prone (category 'site')")
    ignore_domains: list[str] = Field(default_factory=list, description="listed suffixes this "
                                      "workspace uses on purpose")


class ExfilServiceEvidence(Evidence):
    name: str
    listed: str = Field(description="the list entry it falls under")
    category: str = Field(description="paste, file_drop, tunnel, request_catcher, oob, site")
    via: str = Field(description="sni, quic_sni, http_host, dns, dns_chain, dns_query")
    client: str
    client_bytes: int | None = None


class ExfilService(Detector):
    """A destination on the shipped list of exfiltration-prone services."""
    name = "exfil_service"
    severities = ("high",)
    key_kind = "domain"
    Settings = ExfilServiceSettings
    Evidence = ExfilServiceEvidence

    def __init__(self, settings: ExfilServiceSettings, context: Context) -> None:
        super().__init__(settings, context)
        self.extra = {normalise(d): "site" for d in settings.extra_domains}
        self.ignore = frozenset(normalise(d) for d in settings.ignore_domains)

    def _match(self, name: str | None) -> tuple[str, str] | None:
        hit = category(name, self.extra)
        return None if hit is None or hit[0] in self.ignore else hit

    def flow_named(self, ev: FlowNamed) -> None:
        flow = ev.flow
        if not flow.egress:
            return
        for name, via in ((flow.domain, flow.name_source), *((n, "dns_chain") for n in flow.dns_chain)):
            hit = self._match(name)
            if hit:
                key = registered_domain(normalise(name))
                self.fire(flow.last, "high", key, {"name": normalise(name), "listed": hit[0],
                                                   "category": hit[1], "via": via,
                                                   "client": flow.client_ip,
                                                   "client_bytes": flow.c_bytes}, flow)
                return

    def dns_query(self, ev: DnsQuery) -> None:
        if not ev.from_client:      # a remote asked the node's DNS service: not the node's lookup
            return
        flow = ev.flow
        for qname, _qtype in ev.message.questions:
            hit = self._match(qname)
            if hit:
                key = registered_domain(normalise(qname))
                self.fire(ev.ts, "high", key, {"name": normalise(qname), "listed": hit[0],
                                               "category": hit[1], "via": "dns_query",
                                               "client": flow.client_ip}, flow,
                          destination_domain=normalise(qname))
                return
