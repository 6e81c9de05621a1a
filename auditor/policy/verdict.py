"""The SPEC §6 judge: one verdict per egress flow, first matching step wins. No I/O.

Everything is compiled in `__init__` so `judge()` costs one bisect per IP and a walk over the
labels of each name, whatever the number of rules. Nothing is cached per call.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from auditor import addresses
from auditor.hostnames import normalise

from . import builtin
from .endpoints import rule_names
from .match import FqdnMatcher, is_storage_name
from .model import (FqdnRule, IsolationMode, Policy, PrivateEndpointRule, ServiceTagRule)
from .servicetags import PrefixTable, ServiceTags, parse_address, parse_prefix


class Reason(str, enum.Enum):
    """Why a flow was allowed or denied, in the order the steps are tried; `explain` is the
    sentence `policy explain` and `suggest` print for it."""
    PLATFORM = ("platform", "Azure platform endpoint (DNS, wire server 168.63.129.16, IMDS): "
                "always allowed.")
    ISOLATION_DISABLED = ("isolation_disabled", "isolation_mode is disabled: outbound traffic is "
                          "not restricted.")
    PRIVATE_ENDPOINT = ("private_endpoint", "the name resolves to a private endpoint of the "
                        "managed network.")
    INTERNET_OUTBOUND = ("internet_outbound", "allow_internet_outbound: all internet outbound "
                         "traffic is allowed.")
    SERVICE_TAG_DENY = ("service_tag_deny", "a service-tag rule with action Deny matches this "
                        "address and port.")
    SERVICE_TAG = ("service_tag", "the address is in a service tag (or address prefix) an "
                   "outbound rule allows.")
    FQDN = ("fqdn", "an FQDN outbound rule matches the TLS SNI / HTTP Host.")
    FQDN_NEEDS_SNI_OR_HOST = ("fqdn_needs_sni_or_host", "a rule matches the name only through "
                              "DNS; Azure Firewall needs the TLS SNI (443) or HTTP Host (80) to "
                              "match.")
    FQDN_PORT_NOT_SUPPORTED = ("fqdn_port_not_supported", "FQDN rules only apply to TCP 80 and "
                               "443 (not QUIC/UDP, not other ports).")
    STORAGE_REQUIRES_PRIVATE_ENDPOINT = ("storage_requires_private_endpoint", "Azure Storage "
                                         "cannot be reached through FQDN rules in approved-only "
                                         "mode; add a private endpoint rule.")
    NO_MATCHING_RULE = ("no_matching_rule", "no outbound rule allows it.")

    def __new__(cls, value: str, explain: str) -> "Reason":
        member = str.__new__(cls, value)
        member._value_ = value
        member.explain = explain
        return member

    def __str__(self) -> str:
        return self.value

    explain: str


REASONS = tuple(r.value for r in Reason)


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    reason: Reason
    rule: str | None = None
    rule_type: str = "none"            # platform|mode|private_endpoint|service_tag|fqdn|none
    service_tag: str | None = None
    private_endpoint: str | None = None


_PLATFORM = Verdict(True, Reason.PLATFORM, None, "platform")
_DISABLED = Verdict(True, Reason.ISOLATION_DISABLED, None, "mode")
_INTERNET = Verdict(True, Reason.INTERNET_OUTBOUND, None, "mode")
_NO_MATCH = Verdict(False, Reason.NO_MATCHING_RULE)
_ADDR_LABEL = "\x00rule:"   # labels of `address_prefixes` rules; cannot collide with a tag name


def _port_ok(rule: ServiceTagRule, port: int, transport: str) -> bool:
    if rule.protocol != "*" and rule.protocol != transport:
        return False
    if not rule.port_ranges or transport == "icmp":
        return True
    return any(r.lo <= port <= r.hi for r in rule.port_ranges)


class Judge:
    """Decides flows for one policy (optionally judged as if in `as_mode`)."""

    def __init__(self, policy: Policy, service_tags: ServiceTags, *,
                 dns_servers=builtin.DEFAULT_DNS_SERVERS, include=(), as_mode=None) -> None:
        self.policy = policy
        self.mode = IsolationMode(as_mode) if as_mode else policy.isolation_mode
        self.rules = builtin.effective_rules(policy, self.mode, tuple(include))
        self._tags = service_tags
        self._platform = frozenset(builtin.PLATFORM_IPS)
        self._dns = frozenset(addresses.canonical(ip) or ip for ip in dns_servers)
        self._compile()

    def _compile(self) -> None:
        # Private endpoints: every name the endpoint answers to (explicit + derived, with the
        # privatelink CNAME forms) -> rule.
        self._pe: FqdnMatcher[PrivateEndpointRule] = FqdnMatcher()
        for rule in self.rules:
            if isinstance(rule, PrivateEndpointRule):
                for name in rule_names(rule, region=self.policy.location,
                                       workspace_id=self.policy.workspace_id):
                    self._pe.add(name, rule)
        # Service tags: tag label -> rules; address-prefix rules get their own small table.
        self._by_label: dict[str, list[ServiceTagRule]] = {}
        blocks = []
        for rule in self.rules:
            if not isinstance(rule, ServiceTagRule):
                continue
            if rule.address_prefixes:
                label = _ADDR_LABEL + rule.name
                blocks += [(*parse_prefix(p), label) for p in rule.address_prefixes]
            else:
                resolved = self._tags.resolve(rule.service_tag or "")
                if resolved is None:
                    continue            # not in the tags file: matches nothing (policy check errs)
                label = resolved
            self._by_label.setdefault(label, []).append(rule)
        self._addr = PrefixTable(blocks) if blocks else None
        self._fqdn: FqdnMatcher[FqdnRule] = FqdnMatcher(
            (r.destination, r) for r in self.rules if isinstance(r, FqdnRule))

    # -- the steps -------------------------------------------------------------------------
    def judge(self, ip: str, port: int, transport: str, name: str | None, name_source: str,
              dns_names: tuple[str, ...] = (), dns_trusted: bool = True) -> Verdict:
        """`dns_names`: the DNS chain that led the client to `ip`; `dns_trusted`: it came from
        a configured resolver. Only a trusted chain to a non-public address reaches the
        private-endpoint step: an answer from a resolver the job chose, or a public address,
        never makes a flow a private-endpoint flow."""
        if transport == "ipv6-icmp":
            transport = "icmp"      # the managed network's rules name one ICMP for both
        # 1. platform endpoints
        if ip in self._platform or (ip in self._dns and port == 53 and transport != "icmp"):
            return _PLATFORM
        mode = self.mode
        # 2. isolation disabled
        if mode is IsolationMode.DISABLED:
            return _DISABLED
        # 3. private endpoint reached through one of its names
        if self._pe and dns_names and dns_trusted and not (ip and addresses.is_public(ip)):
            for dn in dns_names:
                pe = self._pe.match(normalise(dn))
                if pe is not None:
                    return Verdict(True, Reason.PRIVATE_ENDPOINT, pe.name, "private_endpoint",
                                   None, pe.service_resource_id)
        # 4. internet outbound
        if mode is IsolationMode.ALLOW_INTERNET_OUTBOUND:
            return _INTERNET
        # 5./6. service tags (deny first, then allow)
        verdict = self._service_tags(ip, port, transport)
        if verdict is not None:
            return verdict
        # 7. FQDN rules
        if self._fqdn:
            verdict = self._fqdn_step(port, transport, name, name_source, dns_names)
            if verdict is not None:
                return verdict
        return _NO_MATCH

    def _service_tags(self, ip: str, port: int, transport: str) -> Verdict | None:
        if not ip or not self._by_label:
            return None
        parsed = parse_address(ip)
        if parsed is None:
            return None
        labels = self._tags.tags_for_int(*parsed)
        if self._addr is not None:
            labels = labels + self._addr.lookup(*parsed)
        allow: tuple[ServiceTagRule, str | None] | None = None
        by_label = self._by_label
        for label in labels:
            for rule in by_label.get(label, ()):
                if not _port_ok(rule, port, transport):
                    continue
                shown = rule.service_tag if label.startswith(_ADDR_LABEL) else label
                if rule.action == "deny":
                    return Verdict(False, Reason.SERVICE_TAG_DENY, rule.name, "service_tag", shown)
                if allow is None:
                    allow = (rule, shown)
        if allow is not None:
            return Verdict(True, Reason.SERVICE_TAG, allow[0].name, "service_tag", allow[1])
        return None

    def _fqdn_step(self, port: int, transport: str, name: str | None, name_source: str,
                   dns_names: tuple[str, ...]) -> Verdict | None:
        web = transport == "tcp" and port in (80, 443)
        presented = None
        if web and name and ((port == 443 and name_source == "sni")
                             or (port == 80 and name_source == "http_host")):
            presented = normalise(name)
        if presented is not None:
            rule = self._fqdn.match(presented)
            if rule is not None:
                if is_storage_name(presented):
                    return Verdict(False, Reason.STORAGE_REQUIRES_PRIVATE_ENDPOINT, rule.name, "fqdn")
                return Verdict(True, Reason.FQDN, rule.name, "fqdn")
            return None          # the firewall sees this name and no rule names it
        # No usable SNI/Host: does any name we know for the flow match a rule?
        candidates = dns_names + ((name,) if name else ())
        for cand in candidates:
            norm = normalise(cand)
            rule = self._fqdn.match(norm)
            if rule is None:
                continue
            if not web:
                return Verdict(False, Reason.FQDN_PORT_NOT_SUPPORTED, rule.name, "fqdn")
            if is_storage_name(norm):
                return Verdict(False, Reason.STORAGE_REQUIRES_PRIVATE_ENDPOINT, rule.name, "fqdn")
            return Verdict(False, Reason.FQDN_NEEDS_SNI_OR_HOST, rule.name, "fqdn")
        return None
