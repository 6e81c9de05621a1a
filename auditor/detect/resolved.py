"""Which public addresses a solicited DNS answer has given (for any client of the node): the
memory `direct_ip` and `sni_unresolved` share the shape of. Unsolicited answers do not count:
an injected answer must not make an address look resolved."""
from __future__ import annotations

from auditor import addresses
from auditor.detect.base import Capped
from auditor.events import DnsAnswered


class Resolved:
    def __init__(self, table: Capped) -> None:
        self.answered = table            # IP -> name a solicited answer gave for it

    def learn(self, ev: DnsAnswered) -> None:
        if not ev.solicited:
            return
        for ip, chain in ev.chains.items():
            self.answered.put(addresses.canonical(ip) or ip, chain[0] if chain else "")

    def __contains__(self, ip: str) -> bool:
        if ip in self.answered:
            self.answered.move_to_end(ip)
            return True
        return False
