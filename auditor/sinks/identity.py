"""Identifiers that tie events together: the Community ID of a flow, per-flow and per-event
ids, and who observed it (the observer, host and cloud fields every event carries).

Community ID v1 (corelight/community-id-spec), seed 0: SHA-1 over seed, both packed addresses,
protocol, a zero byte and both ports (ICMP type and the counterpart type, or type and code for
one-way messages), endpoints ordered so that either direction gives the same id; base64, with
the `1:` prefix. The same string identifies the flow in Zeek, Suricata, Elastic Agent and
Arkime logs of the same traffic.
"""
from __future__ import annotations

import base64
import hashlib
import itertools
import os
import socket
import struct

from auditor import __version__
from auditor.flow import Flow

_PORT_PROTOS = frozenset((1, 6, 17, 58, 132))
_ICMP4_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMP6_PAIRS = {128: 129, 129: 128, 130: 131, 131: 130, 133: 134, 134: 133, 135: 136, 136: 135,
                139: 140, 140: 139, 144: 145, 145: 144}


def community_id(proto: int, src: bytes, dst: bytes, sport: int, dport: int, seed: int = 0) -> str:
    """Community ID v1 of one flow tuple (for ICMP, `sport`/`dport` are type/code)."""
    one_way = False
    if proto in (1, 58):
        pairs = _ICMP4_PAIRS if proto == 1 else _ICMP6_PAIRS
        if sport in pairs:
            dport = pairs[sport]
        else:
            one_way = True
    if not one_way and (src > dst or (src == dst and sport > dport)):
        src, dst, sport, dport = dst, src, dport, sport
    data = struct.pack("!H", seed) + src + dst + bytes((proto, 0))
    if proto in _PORT_PROTOS:
        data += struct.pack("!HH", sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode()


def flow_community_id(flow: Flow) -> str:
    """The flow's Community ID (client -> server), computed once."""
    cid = flow.community_id
    if cid is None:
        proto, c, _, s, _ = flow.key[:5]
        # The record's ports, not the key's: a tunnel carrier's key has no client port (the
        # first conversation's Community ID is the one given).
        cp, sp = flow.client_port, flow.server_port
        if not isinstance(c, bytes):      # a record built by hand: text addresses
            c, s = socket.inet_pton(_family(c), c), socket.inet_pton(_family(s), s)
        if proto in (1, 58):
            cp, sp = flow.icmp_type or 0, flow.icmp_code or 0
        cid = flow.community_id = community_id(proto, c, s, cp, sp)
    return cid


def _family(text: str) -> int:
    return socket.AF_INET6 if ":" in text else socket.AF_INET


class Ids:
    """Unique ids for one run: `<run>-<n>` where `<run>` is random, so ids stay unique in an
    events file appended to by many runs."""

    def __init__(self) -> None:
        self.run = os.urandom(6).hex()
        self._events = itertools.count(1)
        self._flows = itertools.count(1)

    def event(self) -> str:
        return f"{self.run}-{next(self._events):x}"

    def flow(self, flow: Flow) -> str:
        if flow.flow_id is None:
            flow.flow_id = f"{self.run}-f{next(self._flows):x}"
        return flow.flow_id


PRODUCT = {"product": "egress-auditor", "vendor": "egress-auditor", "type": "sensor",
           "version": __version__}
