"""`egress-auditor suggest`: the outbound rules the observed egress needs before the one-way
switch to `allow_only_approved_outbound`, as a CLI v2 workspace YAML ready for
`az ml workspace update --file`.

How: audit the captures as if approved-only with the current rules (the ordinary pipeline via
`auditor.api.audit`); every denied egress flow is a candidate. Candidates touched by a finding
are never suggested (listed with the reason). The rest become, in this order: a private
endpoint (a private-link-able Azure name: storage, Key Vault, registries ...), an FQDN rule
(TCP 443 with SNI / TCP 80 with Host), a service-tag rule (the most specific tag holding the
IP), or a line saying why nothing can allow it. The result is then re-judged with the
suggested policy, and any added rule that would let suspicious traffic through is dropped.
Rule shapes live in `suggest_rules.py`, the YAML and the summary in `suggest_yaml.py`.
"""
from __future__ import annotations

import ipaddress
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auditor.policy import endpoints
from auditor.policy.match import normalise_name, pattern_matches
from auditor.policy.model import FqdnRule, IsolationMode, Policy, PrivateEndpointRule
from auditor.suggest_rules import (BROAD_TAGS, NewRule, TagChooser, fqdn_rules, is_internal,
                                   pe_rules, st_rules, private_link_target, tag_sizes)

APPROVED = IsolationMode.ALLOW_ONLY_APPROVED_OUTBOUND.value



class SuggestError(Exception):
    """Bad input for `suggest`; the message is one line."""


@dataclass(frozen=True)
class Dest:
    """What the judge saw of one denied egress flow."""
    ip: str
    port: int
    transport: str
    name: str | None          # destination.domain
    name_source: str
    dns_chain: tuple[str, ...]

    @classmethod
    def from_event(cls, ev: dict) -> "Dest":
        d, ea = ev.get("destination", {}), ev.get("egress_auditor", {})
        return cls(d.get("ip", ""), int(d.get("port") or 0), ev.get("network", {}).get("transport", ""),
                   d.get("domain"), ea.get("name_source", "none"), tuple(ea.get("dns_chain") or ()))

    def label(self) -> str:
        where = f"{self.name} ({self.ip})" if self.name else self.ip
        proto = "quic" if self.transport == "udp" and self.port == 443 else self.transport
        return f"{where} {proto}/{self.port}" if self.port else f"{where} {proto}"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(normalise_name(n) for n in ((self.name,) if self.name else ())
                                   + self.dns_chain))


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
            out[r.type] += 1
        return out

    def fqdn_total(self) -> int:
        kept = sum(1 for r in self.policy.file_rules if isinstance(r, FqdnRule))
        return kept + self.by_type()["fqdn"]


# -- findings --------------------------------------------------------------------------------

def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


class _Implicated:
    """IPs, names and registered domains that a finding points at."""

    def __init__(self, findings: list[dict], registered) -> None:
        self.registered = registered
        self.ips: dict[str, set[str]] = defaultdict(set)
        self.names: dict[str, set[str]] = defaultdict(set)
        self.domains: dict[str, set[str]] = defaultdict(set)   # registered domains
        for f in findings:
            det = f.get("rule", {}).get("name", "finding")
            key = str(f.get("egress_auditor", {}).get("key", ""))
            dest = f.get("destination", {})
            if dest.get("ip"):
                self.ips[dest["ip"]].add(det)
            if _is_ip(key):
                self.ips[str(ipaddress.ip_address(key))].add(det)
            elif key and det == "dns_tunneling":
                self.domains[normalise_name(key)].add(det)
            elif key:
                self.names[normalise_name(key)].add(det)
            if dest.get("domain"):
                self.names[normalise_name(dest["domain"])].add(det)

    def why(self, d: Dest) -> set[str]:
        out = set(self.ips.get(d.ip, ()))
        for n in d.names:
            out |= self.names.get(n, set())
            out |= self.domains.get(self.registered(n), set())
        return out

    def covered_by(self, pattern: str) -> bool:
        """Would an FQDN pattern match a name (or domain) a finding points at?"""
        return any(pattern_matches(pattern, n) for n in list(self.names) + list(self.domains))


# -- the analysis ----------------------------------------------------------------------------

def _load_tags(settings, region: str | None):
    from auditor.policy.servicetags import ServiceTags, default_path
    from auditor.policy import PolicyError
    path = Path(settings.service_tags) if settings.service_tags else default_path()
    try:
        doc = json.loads(path.read_bytes())
        values = doc["values"]
        tags = ServiceTags.from_values(values, region=region, path=str(path),
                                       virtual_network=settings.virtual_network)
    except OSError as exc:
        raise SuggestError(f"{path}: cannot read service tags: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError):
        raise SuggestError(f"{path}: not a service tags JSON file") from None
    except PolicyError as exc:
        raise SuggestError(str(exc)) from None
    return tags, tag_sizes(values)


def suggest(pcaps: list[Path], settings) -> Suggestion:
    """Audit `pcaps` as if approved-only with `settings.policy` and build the suggestion."""
    from auditor.api import audit
    from auditor.detect.dnsnames import registered_domain
    from auditor.policy import PolicyError, load_policy
    from auditor.policy.loader import read_document

    if settings.policy is None:
        raise SuggestError("suggest needs --policy: the workspace's current managed-network policy")
    try:
        policy = load_policy(settings.policy, region=settings.region)
        raw, _, _ = read_document(settings.policy)
    except PolicyError as exc:
        raise SuggestError(str(exc)) from None
    region = settings.region or policy.location
    tags, sizes = _load_tags(settings, region)
    shadow = settings.model_copy(update={"as_mode": APPROVED, "dns_events": False, "events": None})
    try:
        report = audit(pcaps, shadow)
    except ValueError as exc:
        raise SuggestError(str(exc)) from None

    implicated = _Implicated(report.findings, registered_domain)
    flows = [(Dest.from_event(f), {**f["egress_auditor"], "rule": f.get("rule", {}).get("name")})
             for f in report.flows]
    counts = Counter(d.label() for d, ea in flows if ea.get("verdict") == "denied")
    denied = sorted({d: ea for d, ea in flows if ea.get("verdict") == "denied"}.items(),
                    key=lambda x: (x[0].label(), x[0].ip))
    sug = Suggestion(policy, raw, [str(p) for p in pcaps], len(flows), sum(counts.values()), [],
                     defaultdict(set), {}, [], counts=counts,
                     findings=sorted({(f["rule"]["name"], str(f["egress_auditor"].get("key")),
                                       f["egress_auditor"].get("severity", "")) for f in report.findings}))
    chooser = TagChooser(tags, sizes)
    fqdn: dict[str, set[str]] = defaultdict(set)
    pe: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    st: dict[tuple[str, str], tuple[set[int], set[str]]] = {}
    suspicious_names: set[str] = set()
    existing = {n: r.name for r in policy.file_rules if isinstance(r, PrivateEndpointRule)
                for n in endpoints.derive_fqdns(r.service_resource_id, r.subresource_target,
                                                region=region, workspace_id=policy.workspace_id)
                + tuple(r.fqdns)}
    for d, ea in denied:
        label = d.label()
        why = implicated.why(d)
        if why:
            sug.suspicious[label] |= why
            suspicious_names.update(d.names)
            continue
        if ea.get("reason") == "service_tag_deny":
            sug.breaks[label] = f"denied by your own Deny rule {_rule_of(ea)!r}"
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
        web = d.transport == "tcp" and d.port in (80, 443)
        if web and d.name and ((d.port == 443 and d.name_source == "sni")
                               or (d.port == 80 and d.name_source == "http_host")):
            fqdn[normalise_name(d.name)].add(label)
            continue
        if d.transport == "udp" and d.port == 443 and d.name:
            fqdn[normalise_name(d.name)].add(label)
            sug.breaks[label] = ("QUIC: FQDN rules only see TCP 80/443; clients must fall back to "
                                 "TCP (the FQDN rule covers the fallback)")
            continue
        if is_internal(d.ip):
            sug.breaks[label] = ("internal address: in Azure only the VNet (required VirtualNetwork "
                                 "rule) reaches it; set `virtual_network`")
            continue
        tag = chooser.choose(d.ip)
        if tag:
            proto = d.transport if d.transport in ("tcp", "udp", "icmp") else "*"
            ports, labels = st.setdefault((tag, proto), (set(), set()))
            if d.port and proto in ("tcp", "udp"):
                ports.add(d.port)
            labels.add(label)
            continue
        broad = any(t.split(".")[0].lower() in BROAD_TAGS for t in tags.tags_for(d.ip))
        tail = " (only in AzureCloud: too broad to allow)" if broad else ""
        if web and d.name:
            sug.breaks[label] = ("named only by DNS, no TLS SNI / HTTP Host: an FQDN rule cannot "
                                 f"allow it, and its IP is in no specific service tag{tail}")
        elif d.name:
            sug.breaks[label] = f"FQDN rules only support TCP 80/443; its IP is in no specific service tag{tail}"
        else:
            sug.breaks[label] = f"unnamed destination in no specific service tag: not expressible{tail}"

    taken = {r.name.lower() for r in policy.file_rules}
    sug.rules = (fqdn_rules(fqdn, implicated, suspicious_names, registered_domain, taken)
                 + pe_rules(pe, taken) + st_rules(st, taken))
    _verify(sug, flows, implicated, tags, settings)
    return sug


def _rule_of(ea: dict) -> str:
    return ea.get("rule") or ea.get("reason", "")


_STILL = {
    "fqdn_needs_sni_or_host": "some flows carry no TLS SNI / HTTP Host (named only by DNS, or no "
                              "payload): the FQDN rule cannot allow those",
    "fqdn_port_not_supported": "FQDN rules only support TCP 80/443",
}


def _verify(sug: Suggestion, flows, implicated: _Implicated, tags, settings) -> None:
    """Re-judge every denied flow with the suggested policy: drop any added rule that lets a
    suspicious flow through, and record non-suspicious flows that would still be denied."""
    from auditor.policy.verdict import Judge
    from auditor.suggest_yaml import suggested_policy
    denied = {d for d, ea in flows if ea.get("verdict") == "denied"}
    for _ in range(len(sug.rules) + 1):
        policy = suggested_policy(sug)
        judge = Judge(policy, tags, dns_servers=tuple(settings.dns_servers),
                      include=tuple(settings.include))
        added = {r.name: r for r in sug.rules}
        culprits = {}
        for d in sorted(denied, key=Dest.label):
            v = judge.judge(d.ip, d.port, d.transport, d.name, d.name_source, d.dns_chain)
            if v.allowed and implicated.why(d) and v.rule in added:
                culprits.setdefault(v.rule, d)
        if not culprits:
            break
        for name, d in sorted(culprits.items()):
            sug.notes.append(f"dropped rule {name}: it would also allow {d.label()} "
                             f"({', '.join(sorted(implicated.why(d)))})")
        sug.rules = [r for r in sug.rules if r.name not in culprits]
    still: dict[str, str] = {}
    for d in sorted(denied, key=Dest.label):
        if not implicated.why(d):
            v = judge.judge(d.ip, d.port, d.transport, d.name, d.name_source, d.dns_chain)
            if not v.allowed:
                still.setdefault(d.label(), _STILL.get(v.reason, f"still denied ({v.reason})"))
    for label in set(sug.breaks) - set(still):
        del sug.breaks[label]
    for label, why in still.items():
        sug.breaks.setdefault(label, why)
    for d, ea in flows:
        why = implicated.why(d)
        if why and ea.get("verdict") == "allowed" and ea.get("reason") != "platform":
            sug.notes.append(f"{d.label()} ({', '.join(sorted(why))}) is already allowed by "
                             f"{_rule_of(ea)} in your current rules")
    sug.notes = list(dict.fromkeys(sug.notes))


def main(args) -> int:
    """`egress-auditor suggest`: YAML on stdout (or --output), summary on stderr."""
    import sys
    from auditor import settings as settings_mod
    from auditor.cli import EXIT_OK, BadInput
    from auditor.suggest_yaml import render, summary
    if args.policy is None:
        raise BadInput("suggest needs --policy: the workspace's current managed-network policy")
    try:
        settings = settings_mod.load(args.config, policy=args.policy, service_tags=args.service_tags,
                                     region=args.region, node_networks=args.node_network)
        sug = suggest(args.pcaps, settings)
    except (settings_mod.ConfigError, SuggestError) as exc:
        raise BadInput(str(exc)) from None
    text = render(sug)
    if args.output:
        try:
            args.output.write_text(text)
        except OSError as exc:
            raise BadInput(f"{args.output}: cannot write: {exc.strerror or exc}") from None
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    sys.stderr.write(summary(sug))
    return EXIT_OK
