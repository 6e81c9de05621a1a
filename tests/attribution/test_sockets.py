"""`SockDiag.lookup` against the real kernel: the inode of a TCP connection, a connected UDP
socket and an unconnected one (a DNS client, QUIC), over IPv4 and IPv6, found by one netlink
request each; a host holding thousands of UDP sockets is not dumped per flow."""
from __future__ import annotations

import os
import socket

import pytest

from auditor.attribution import sockets
from auditor.attribution.sockets import SockDiag


@pytest.fixture
def diag():
    try:
        d = SockDiag(clock=lambda: 0.0)        # time stands still: the dump allowance is one
    except OSError as exc:
        pytest.skip(f"no sock_diag netlink here: {exc}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        try:
            listed = d._request(socket.AF_INET, 17, 0, 0, bytes(16), bytes(16), dump=True)
        except OSError:
            listed = []
        if not any(inode == _inode(probe) for inode, *_ in listed):
            d.close()
            pytest.skip("this kernel lists no UDP sockets over sock_diag (no udp_diag)")
    yield d
    d.close()


def _inode(s: socket.socket) -> int:
    return os.fstat(s.fileno()).st_ino


@pytest.mark.parametrize("family, local, remote", [(socket.AF_INET, "127.0.0.1", "127.0.0.2"),
                                                   (socket.AF_INET6, "::1", "::1")])
def test_udp_sockets_connected_or_not_are_found_without_a_dump(diag, family, local, remote):
    crowd = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(300)]
    unconnected = socket.socket(family, socket.SOCK_DGRAM)
    connected = socket.socket(family, socket.SOCK_DGRAM)
    try:
        for s in crowd:
            s.bind((local, 0))
        unconnected.bind((local, 0))
        unconnected.sendto(b"q", (remote, 53))
        connected.connect((remote, 53))
        for s in (unconnected, connected):
            port = s.getsockname()[1]
            assert diag.lookup(17, local, port, remote, 53) == (_inode(s), os.getuid())
        assert diag.dumps == 0
    finally:
        for s in (*crowd, unconnected, connected):
            s.close()


def test_a_tcp_connection_is_found(diag):
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    try:
        lport, rport = client.getsockname()[1], server.getsockname()[1]
        assert diag.lookup(6, "127.0.0.1", lport, "127.0.0.1", rport) == (_inode(client), os.getuid())
    finally:
        client.close()
        server.close()


def test_udp_sockets_never_found_cost_at_most_the_dump_allowance(diag):
    """A flood of flows whose socket is gone (or was never the node's) dumps the host's UDP
    sockets at most MAX_UDP_DUMPS_PER_SECOND times a second, however many flows ask."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    assert all(diag.lookup(17, "127.0.0.1", free, "127.0.0.2", 53) is None for _ in range(200))
    assert diag.dumps == 1
    later = [0.0]
    diag.clock = lambda: later[0]
    later[0] = 1.0 / sockets.MAX_UDP_DUMPS_PER_SECOND
    assert diag.lookup(17, "127.0.0.1", free, "127.0.0.2", 53) is None and diag.dumps == 2
