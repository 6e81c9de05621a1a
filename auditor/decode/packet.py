"""L2-L4 decoding of one captured frame into a `Packet` (the hot path's front).

Two implementations give identical results: `cpacket.pyx`, compiled by `pip install .` when a
C compiler is there, and `pypacket.py`, the pure-Python reference that holds the decisions
(what is malformed where, how this differs from tshark). This module picks one at import and
everything else imports from here, so exactly one `Packet` class is in use in a process:
the compiled one unless it was not built or `EGRESS_AUDITOR_PURE_PYTHON=1` is set
(`auditor/core.py`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from auditor import core
from auditor.decode import pypacket
from auditor.decode.pypacket import (  # noqa: F401 - re-exported
    LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP, LINKTYPE_NFLOG, LINKTYPE_NULL, LINKTYPE_PPP, LINKTYPE_PPP_HDLC, LINKTYPE_RAW,
    LINKTYPES, TUNNEL_PORTS, ip_text, tunnel_port)

__all__ = [
    "Packet", "Fragment", "Tunnel", "decode", "decode_l4", "ip_text", "ipv4", "ipv6",
    "ethernet", "by_ethertype", "ppp", "set_tunnel_ports", "tunnel_port", "TUNNEL_PORTS",
    "LINKTYPES", "COMPILED",
    "LINKTYPE_NULL", "LINKTYPE_ETHERNET", "LINKTYPE_RAW", "LINKTYPE_LOOP",
    "LINKTYPE_LINUX_SLL", "LINKTYPE_IPV4", "LINKTYPE_IPV6", "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_PPP", "LINKTYPE_PPP_HDLC", "LINKTYPE_NFLOG",
]


_compiled = core.compiled("decode.cpacket")
COMPILED = _compiled is not None

if TYPE_CHECKING or _compiled is None:
    from auditor.decode.pypacket import (Fragment, Packet, Tunnel, by_ethertype, decode,
                                         decode_l4, ethernet, ipv4, ipv6, ppp)
else:
    Packet, Fragment, Tunnel = _compiled.Packet, _compiled.Fragment, _compiled.Tunnel
    decode, decode_l4 = _compiled.decode, _compiled.decode_l4
    ipv4, ipv6, ethernet = _compiled.ipv4, _compiled.ipv6, _compiled.ethernet
    by_ethertype, ppp = _compiled.by_ethertype, _compiled.ppp
    _compiled.set_tunnel_ports(TUNNEL_PORTS)


def set_tunnel_ports(vxlan: Iterable[int]) -> None:
    """The UDP ports read as VXLAN (settings `tunnels.vxlan_ports`); the others are fixed."""
    pypacket.set_tunnel_ports(vxlan)
    if _compiled is not None:
        _compiled.set_tunnel_ports(TUNNEL_PORTS)
