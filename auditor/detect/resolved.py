"""What `direct_ip` and `sni_unresolved` share: which public addresses a solicited DNS answer
has given (for any client of the node). Unsolicited answers do not count: an injected answer
must not make an address look resolved. Answers carried in a tunnel count only for flows in
that same tunnel (`Flow.name_scope`): a crafted inner answer cannot make the node's own
direct-IP egress look resolved."""
from __future__ import annotations

from auditor import addresses
from auditor.detect.base import Context, Detector, DetectorSettings
from auditor.events import DnsAnswered
from auditor.flow import Flow

PLATFORM = frozenset({"168.63.129.16", "169.254.169.254"})


class ResolvedAddresses(Detector):
    """Base of the detectors about flows to addresses no DNS answer gave."""

    def __init__(self, settings: DetectorSettings, context: Context) -> None:
        super().__init__(settings, context)
        self.exempt = PLATFORM | frozenset(context.dns_servers)
        self.answered = self.table()            # IP -> name a solicited answer gave for it

    def dns_answered(self, ev: DnsAnswered) -> None:
        if not ev.solicited:
            return
        scope = ev.flow.name_scope
        for ip, chain in ev.chains.items():
            self.answered.put((addresses.canonical(ip) or ip) + scope, chain[0] if chain else "")

    def unresolved(self, flow: Flow) -> str | None:
        """The flow's server address when it is public, not a platform or DNS address, and
        no solicited answer ever gave it; else None."""
        ip = addresses.canonical(flow.server_ip) or flow.server_ip
        if ip in self.exempt or not addresses.is_public(ip):
            return None
        key = ip + flow.name_scope
        if key in self.answered:
            self.answered.move_to_end(key)
            return None
        return ip
