"""From observations to a `Suggestion`: which rules to add, what stays denied, what is left out.

Every denied egress flow (judged as if approved-only with the current rules) is a candidate.
Candidates a finding implicates are never suggested (listed with the reason). The rest become,
in this order: a private endpoint (a private-link-able Azure name: storage, Key Vault,
registries ...), an FQDN rule (TCP 443 with SNI / TCP 80 with Host), a service-tag rule (the
most specific tag holding the IP), or a line saying why nothing can allow it. The result is
then re-judged in memory with the suggested rules and the same service tags, and any added
rule that would let suspicious traffic through is dropped.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from auditor import addresses
from auditor.hostnames import normalise, registered_domain, wire_host
from auditor.policy import endpoints
from auditor.policy.builtin import effective_rules
from auditor.policy.model import FqdnRule, IsolationMode, Policy, PrivateEndpointRule
from auditor.policy.servicetags import ServiceTags
from auditor.policy.verdict import Judge, Reason
from auditor.suggest.observe import Dest, Implicated, Observations
from auditor.suggest.rules import (BROAD_TAGS, NewRule, choose_tag, fqdn_rules, pe_rules,
                                   private_link_target, st_rules)

APPROVED = IsolationMode.ALLOW_ONLY_APPROVED_OUTBOUND


@dataclass
class Suggestion:
    policy: Policy
    raw: Any
    captures: list[str]
    flows: int
    denied: int
    rules: list[NewRule]
    suspicious: dict[str, set[str]]       # flow label -> detectors (never suggested)
    breaks: dict[str, str]                # flow label -> why it stays denied / breaks
    notes: list[str]
    counts: Counter = field(default_factory=Counter)        # flow label -> denied flows
    findings: list[tuple[str, str, str]] = field(default_factory=list)  # detector, key, severity

    def flows_of(self, labels) -> int:
        return sum(self.counts.get(x, 1) for x in labels)

    def by_type(self) -> dict[str, int]:
        out = {"fqdn": 0, "service_tag": 0, "private_endpoint": 0}
        for r in self.rules:
            if r.active:
                out[r.type] += 1
        return out

    def fqdn_total(self) -> int:
        kept = sum(1 for r in self.policy.file_rules if isinstance(r, FqdnRule))
        return kept + self.by_type()["fqdn"]

    def suggested_policy(self) -> Policy:
        """The current file rules plus the added ones, approved-only, as the engine reads them."""
        file_rules = tuple(self.policy.file_rules) + tuple(r.rule for r in self.rules if r.active)
        shadow = self.policy.model_copy(update={"file_rules": file_rules})
        return shadow.model_copy(update={"isolation_mode": APPROVED,
                                         "rules": effective_rules(shadow, APPROVED)})


def plan(obs: Observations, policy: Policy, raw: Any, tags: ServiceTags, captures: list[str],
         settings) -> Suggestion:
    implicated = Implicated(obs.flagged, registered_domain)
    denied = obs.denied()
    counts = Counter({d.label(): 0 for d in denied})
    for d, n in denied.items():
        counts[d.label()] += n
    sug = Suggestion(policy, raw, captures, sum(obs.seen.values()), sum(denied.values()), [],
                     defaultdict(set), {}, [], counts=counts,
                     findings=sorted({(f.detector, f.key, f.severity) for f in obs.flagged}))
    reasons = {s.dest: s for s in obs.seen if not s.allowed}
    fqdn: dict[str, set[str]] = defaultdict(set)
    pe: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    st: dict[tuple[str, str], tuple[set[int], set[str]]] = {}
    suspicious_names: set[str] = set()
    existing = {n: r.name for r in policy.file_rules if isinstance(r, PrivateEndpointRule)
                for n in endpoints.rule_names(r, region=policy.location,
                                              workspace_id=policy.workspace_id)}
    for d in sorted(denied, key=lambda d: (d.label(), d.ip)):
        label = d.label()
        why = implicated.why(d)
        if d.name and wire_host(d.name) is None and not addresses.is_ip(d.name):
            why = why | {"not a valid host name"}   # never a rule: it came from the wire
        if why:
            sug.suspicious[label] |= why
            suspicious_names.update(n for n in d.names if wire_host(n))
            continue
        seen = reasons[d]
        if seen.reason == Reason.SERVICE_TAG_DENY.value:
            sug.breaks[label] = f"denied by your own Deny rule {seen.rule or seen.reason!r}"
            continue
        have = next((existing[n] for n in d.names if n in existing), None)
        if have:
            sug.breaks[label] = (f"private endpoint rule {have!r} exists, but this flow reached it "
                                 "without resolving its name (no DNS lookup seen)")
            continue
        target = next((t for n in d.names if (t := private_link_target(n))), None)
        if target:
            pe[target].add(label)
            if not d.dns_chain:
                sug.breaks[label] = ("reached without a DNS lookup: only clients that resolve the "
                                     "name reach the private endpoint")
            continue
        _classify(sug, d, label, tags, fqdn, st)
    taken = {r.name.lower() for r in policy.file_rules}
    sug.rules = (fqdn_rules(fqdn, implicated, suspicious_names, registered_domain, taken)
                 + pe_rules(pe, taken) + st_rules(st, taken))
    _verify(sug, obs, implicated, tags, settings)
    return sug


def _classify(sug: Suggestion, d: Dest, label: str, tags: ServiceTags, fqdn, st) -> None:
    """An FQDN rule, a service-tag rule, or why neither can allow `d`."""
    web = d.transport == "tcp" and d.port in (80, 443)
    if web and d.name and ((d.port == 443 and d.name_source == "sni")
                           or (d.port == 80 and d.name_source == "http_host")):
        fqdn[normalise(d.name)].add(label)
        return
    if d.transport == "udp" and d.port == 443 and d.name:
        fqdn[normalise(d.name)].add(label)
        sug.breaks[label] = ("QUIC: FQDN rules only see TCP 80/443; clients must fall back to "
                             "TCP (the FQDN rule covers the fallback)")
        return
    if addresses.is_internal(d.ip):
        sug.breaks[label] = ("internal address: in Azure only the VNet (required VirtualNetwork "
                             "rule) reaches it; set `virtual_network`")
        return
    tag = choose_tag(tags, d.ip)
    if tag:
        proto = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "ipv6-icmp": "icmp"}.get(d.transport, "*")
        ports, labels = st.setdefault((tag, proto), (set(), set()))
        if d.port and proto in ("tcp", "udp"):
            ports.add(d.port)
        labels.add(label)
        return
    broad = any(t.split(".")[0].lower() in BROAD_TAGS for t in tags.tags_for(d.ip))
    tail = " (only in AzureCloud: too broad to allow)" if broad else ""
    if web and d.name:
        sug.breaks[label] = ("named only by DNS, no TLS SNI / HTTP Host: an FQDN rule cannot "
                             f"allow it, and its IP is in no specific service tag{tail}")
    elif d.name:
        sug.breaks[label] = f"FQDN rules only support TCP 80/443; its IP is in no specific service tag{tail}"
    else:
        sug.breaks[label] = f"unnamed destination in no specific service tag: not expressible{tail}"


_STILL = {
    Reason.FQDN_NEEDS_SNI_OR_HOST: "some flows carry no TLS SNI / HTTP Host (named only by DNS, "
                                   "or no payload): the FQDN rule cannot allow those",
    Reason.FQDN_PORT_NOT_SUPPORTED: "FQDN rules only support TCP 80/443",
}


def _verify(sug: Suggestion, obs: Observations, implicated: Implicated, tags: ServiceTags,
            settings) -> None:
    """Re-judge every denied flow with the suggested policy: drop any added rule that lets a
    suspicious flow through, and record non-suspicious flows that would still be denied."""
    denied = sorted(obs.denied(), key=Dest.label)

    def judge_with_suggestion() -> Judge:
        return Judge(sug.suggested_policy(), tags, dns_servers=tuple(settings.dns_servers),
                     include=tuple(settings.include))

    judge = judge_with_suggestion()
    for _ in range(len(sug.rules) + 1):
        added = {r.name: r for r in sug.rules}
        culprits: dict[str, Dest] = {}
        for d in denied:
            v = judge.judge(d.ip, d.port, d.transport, d.name, d.name_source, d.dns_chain,
                            d.dns_trusted)
            if not (v.allowed and v.rule in added and implicated.why(d)):
                continue
            if added[v.rule].type == "fqdn" and not implicated.by_name(d):
                # Only the address is suspect, and an FQDN rule allows a name at any address:
                # dropping it would break the name's real traffic and stop nothing.
                sug.notes.append(f"{v.rule} also allows {d.label()} ({', '.join(sorted(implicated.why(d)))}):"
                                 " an FQDN rule cannot pin addresses; watch that finding")
                continue
            culprits.setdefault(v.rule, d)
        if not culprits:
            break
        for name, d in sorted(culprits.items()):
            sug.notes.append(f"dropped rule {name}: it would also allow {d.label()} "
                             f"({', '.join(sorted(implicated.why(d)))})")
        sug.rules = [r for r in sug.rules if r.name not in culprits]
        judge = judge_with_suggestion()
    still: dict[str, str] = {}
    for d in denied:
        if not implicated.why(d):
            v = judge.judge(d.ip, d.port, d.transport, d.name, d.name_source, d.dns_chain,
                            d.dns_trusted)
            if not v.allowed:
                still.setdefault(d.label(), _STILL.get(v.reason, f"still denied ({v.reason.value})"))
    for label in set(sug.breaks) - set(still):
        del sug.breaks[label]
    for label, why in still.items():
        sug.breaks.setdefault(label, why)
    for s in sorted(obs.seen, key=lambda s: s.dest.label()):
        dets = implicated.why(s.dest)
        if dets and s.allowed and s.reason != Reason.PLATFORM.value:
            sug.notes.append(f"{s.dest.label()} ({', '.join(sorted(dets))}) is already allowed by "
                             f"{s.rule or s.reason} in your current rules")
    sug.notes = list(dict.fromkeys(sug.notes))
