"""The SPEC §6 judge: one verdict per egress flow, first matching step wins. No I/O.

Everything is compiled in `__init__` so `judge()` costs one bisect per IP and a walk over the
labels of each name, whatever the number of rules. Nothing is cached per call.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import builtin
from .endpoints import derive_fqdns, privatelink_forms
from .match import FqdnMatcher, is_storage_name, normalise_name
from .model import (FqdnRule, IsolationMode, Policy, PrivateEndpointRule, ServiceTagRule)
from .servicetags import PrefixTable, ServiceTags, parse_address, parse_prefix

REASONS = ("platform", "isolation_disabled", "private_endpoint", "internet_outbound",
           "service_tag_deny", "service_tag", "fqdn", "fqdn_needs_sni_or_host",
           "fqdn_port_not_supported", "storage_requires_private_endpoint", "no_matching_rule")


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    reason: str
    rule: str | None = None
    rule_type: str = "none"            # platform|mode|private_endpoint|service_tag|fqdn|none
    service_tag: str | None = None
    private_endpoint: str | None = None


_PLATFORM = Verdict(True, "platform", None, "platform")
_DISABLED = Verdict(True, "isolation_disabled", None, "mode")
_INTERNET = Verdict(True, "internet_outbound", None, "mode")
_NO_MATCH = Verdict(False, "no_matching_rule")
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
        self.rules = builtin.effective_rules(policy.file_rules, self.mode, policy.location,
                                             tuple(include))
        self._tags = service_tags
        self._platform = frozenset(builtin.PLATFORM_IPS)
        self._dns = frozenset(self._canon(ip) for ip in dns_servers)
        self._compile()

    @staticmethod
    def _canon(ip: str) -> str:
        import ipaddress
        try:
            return str(ipaddress.ip_address(ip))
        except ValueError:
            return ip

    def _compile(self) -> None:
        # Private endpoints: every name the endpoint answers to (explicit + derived, with the
        # privatelink CNAME forms) -> rule.
        self._pe: FqdnMatcher[PrivateEndpointRule] = FqdnMatcher()
        for rule in self.rules:
            if isinstance(rule, PrivateEndpointRule):
                names = derive_fqdns(rule.service_resource_id, rule.subresource_target,
                                     region=self.policy.location,
                                     workspace_id=self.policy.workspace_id)
                for fq in rule.fqdns:
                    names += privatelink_forms(fq) if "*" not in fq else (fq,)
                for name in names:
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
                label = self._tags.resolve(rule.service_tag or "")
                if label is None:
                    continue            # not in the tags file: matches nothing (policy check errs)
            self._by_label.setdefault(label, []).append(rule)
        self._addr = PrefixTable(blocks) if blocks else None
        self._fqdn: FqdnMatcher[FqdnRule] = FqdnMatcher(
            (r.destination, r) for r in self.rules if isinstance(r, FqdnRule))

    # -- the steps -------------------------------------------------------------------------
    def judge(self, ip: str, port: int, transport: str, name: str | None, name_source: str,
              dns_names: tuple[str, ...] = ()) -> Verdict:
        # 1. platform endpoints
        if ip in self._platform or (ip in self._dns and port == 53 and transport != "icmp"):
            return _PLATFORM
        mode = self.mode
        # 2. isolation disabled
        if mode is IsolationMode.DISABLED:
            return _DISABLED
        # 3. private endpoint reached through one of its names
        if self._pe and dns_names:
            for dn in dns_names:
                pe = self._pe.match(normalise_name(dn))
                if pe is not None:
                    return Verdict(True, "private_endpoint", pe.name, "private_endpoint",
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
        allow: tuple[ServiceTagRule, str] | None = None
        by_label = self._by_label
        for label in labels:
            for rule in by_label.get(label, ()):
                if not _port_ok(rule, port, transport):
                    continue
                shown = rule.service_tag if label.startswith(_ADDR_LABEL) else label
                if rule.action == "deny":
                    return Verdict(False, "service_tag_deny", rule.name, "service_tag", shown)
                if allow is None:
                    allow = (rule, shown)
        if allow is not None:
            return Verdict(True, "service_tag", allow[0].name, "service_tag", allow[1])
        return None

    def _fqdn_step(self, port: int, transport: str, name: str | None, name_source: str,
                   dns_names: tuple[str, ...]) -> Verdict | None:
        web = transport == "tcp" and port in (80, 443)
        presented = None
        if web and name and ((port == 443 and name_source == "sni")
                             or (port == 80 and name_source == "http_host")):
            presented = normalise_name(name)
        if presented is not None:
            rule = self._fqdn.match(presented)
            if rule is not None:
                if is_storage_name(presented):
                    return Verdict(False, "storage_requires_private_endpoint", rule.name, "fqdn")
                return Verdict(True, "fqdn", rule.name, "fqdn")
            return None          # the firewall sees this name and no rule names it
        # No usable SNI/Host: does any name we know for the flow match a rule?
        candidates = dns_names + ((name,) if name else ())
        for cand in candidates:
            norm = normalise_name(cand)
            rule = self._fqdn.match(norm)
            if rule is None:
                continue
            if not web:
                return Verdict(False, "fqdn_port_not_supported", rule.name, "fqdn")
            if is_storage_name(norm):
                return Verdict(False, "storage_requires_private_endpoint", rule.name, "fqdn")
            return Verdict(False, "fqdn_needs_sni_or_host", rule.name, "fqdn")
        return None
