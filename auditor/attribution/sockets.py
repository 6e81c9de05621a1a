"""The local socket of a flow, from the kernel's sock_diag netlink interface (the one `ss`
uses): one request per flow, answered with the socket's inode and owner uid.

A UDP socket is looked up as the receiver of a datagram from the flow's remote end (the
kernel's udp_diag takes the request's source as the sender: "swapped for historical
reasons"), which finds connected and unconnected sockets (DNS clients, QUIC) alike in one
request. Dumping every UDP socket of the host is only a fallback, at most
`MAX_UDP_DUMPS_PER_SECOND`: a job holding thousands of sockets made each dump cost
milliseconds of the attribution thread, per flow.

Only sockets in this process's network namespace are visible: the node's own sockets when the
sidecar runs in the host network (compose `network_mode: host`, a hostNetwork DaemonSet, a
systemd unit); a pod with a network namespace of its own is reached through its veth, and its
sockets are not found here (its flows are then `unknown`).
"""
from __future__ import annotations

import errno
import socket
import struct
import time

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
ALL_STATES = 0xFFFFFFFF
_NOCOOKIE = 0xFFFFFFFF
_HDR = struct.Struct("=IHHII")                   # nlmsghdr
_REQ = struct.Struct("=BBBxI")                   # inet_diag_req_v2 head (before the sockid)
_PORTS = struct.Struct(">HH")                    # inet_diag_sockid: ports in network order,
_ADDRS = struct.Struct("=16s16sIII")             # then src, dst, interface, cookie[2]
_ID_SIZE = _PORTS.size + _ADDRS.size
_MSG = struct.Struct("=BBBB")                    # inet_diag_msg head
_TAIL = struct.Struct("=IIIII")                  # expires, rqueue, wqueue, uid, inode
MAX_UDP_DUMPS_PER_SECOND = 4


def _packed(ip: str) -> tuple[int, bytes]:
    if ":" in ip:
        return socket.AF_INET6, socket.inet_pton(socket.AF_INET6, ip)
    return socket.AF_INET, socket.inet_pton(socket.AF_INET, ip).ljust(16, b"\0")


class SockDiag:
    """A netlink socket for inet_diag queries (needs no privilege to see one's own host's
    sockets; inodes of other users' sockets need CAP_NET_ADMIN or root on some kernels)."""

    def __init__(self, clock=time.monotonic) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
        self.sock.settimeout(1.0)
        self._seq = 0
        self.clock = clock
        self.dumps = 0
        self._last_dump = float("-inf")

    def close(self) -> None:
        self.sock.close()

    def _request(self, family: int, proto: int, sport: int, dport: int, src: bytes, dst: bytes,
                 dump: bool) -> list[tuple[int, int, int, bytes, bytes]]:
        self._seq += 1
        body = (_REQ.pack(family, proto, 0, ALL_STATES) + _PORTS.pack(sport, dport)
                + _ADDRS.pack(src, dst, 0, _NOCOOKIE, _NOCOOKIE))
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else 0)
        self.sock.send(_HDR.pack(_HDR.size + len(body), SOCK_DIAG_BY_FAMILY, flags, self._seq, 0) + body)
        out: list[tuple[int, int, int, bytes, bytes]] = []
        while True:
            data = self.sock.recv(1 << 16)
            off = 0
            while off + _HDR.size <= len(data):
                length, mtype, _flags, seq, _pid = _HDR.unpack_from(data, off)
                if length < _HDR.size:
                    return out
                if mtype == NLMSG_DONE or mtype == NLMSG_ERROR:
                    return out
                msg = off + _HDR.size
                if mtype == SOCK_DIAG_BY_FAMILY and seq == self._seq:
                    lsport, _ldport = _PORTS.unpack_from(data, msg + 4)
                    lsrc, ldst, _if, _c1, _c2 = _ADDRS.unpack_from(data, msg + 4 + _PORTS.size)
                    _e, _r, _w, uid, inode = _TAIL.unpack_from(data, msg + 4 + _ID_SIZE)
                    out.append((inode, uid, lsport, lsrc, ldst))
                off += (length + 3) & ~3
            if not dump:
                return out

    def lookup(self, proto: int, local_ip: str, local_port: int, remote_ip: str,
               remote_port: int) -> tuple[int, int] | None:
        """(inode, uid) of the local socket of this 5-tuple, or None when it is gone."""
        family, src = _packed(local_ip)
        _, dst = _packed(remote_ip)
        udp = proto == socket.IPPROTO_UDP
        try:
            if udp:     # as the receiver of a datagram from the remote end (module docstring)
                found = self._request(family, proto, remote_port, local_port, dst, src, dump=False)
            else:
                found = self._request(family, proto, local_port, remote_port, src, dst, dump=False)
            if found and found[0][0]:
                return found[0][0], found[0][1]
            now = self.clock()
            if udp and now - self._last_dump >= 1.0 / MAX_UDP_DUMPS_PER_SECOND:
                self._last_dump = now
                self.dumps += 1
                for inode, uid, sport, lsrc, _ldst in self._request(family, proto, 0, 0, bytes(16),
                                                                   bytes(16), dump=True):
                    if sport == local_port and inode and lsrc in (src, bytes(16)):
                        return inode, uid
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.EAGAIN) and not isinstance(exc, TimeoutError):
                raise
        return None
