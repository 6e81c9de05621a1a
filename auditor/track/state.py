"""The tracker's private per-flow state: what it holds to read a flow's first bytes.

Hangs off `Flow.track_state`, created only when a flow needs it (a SYN's sequence number, a
payload to reassemble, a QUIC handshake in progress) and dropped as soon as the flow is
named, so a flood of flows that never carry a payload costs no buffers.
"""
from __future__ import annotations

from typing import Any

from auditor.flow import Flow


class TrackState:
    __slots__ = ("client_isn", "server_isn", "client_stream", "server_stream", "quic",
                 "tunnel_at", "watch", "h2", "hello_walk")

    def __init__(self) -> None:
        # The SYN's sequence numbers: a stream buffer starts at ISN + 1 once payload arrives.
        self.client_isn: int | None = None
        self.server_isn: int | None = None
        self.client_stream: Any = None
        self.server_stream: Any = None
        self.quic: Any = None
        self.tunnel_at = 0      # after an HTTP CONNECT: where the tunnelled bytes start
        # After naming: the client bytes that named the flow, kept (frozen) until the server
        # acknowledges them, so a retransmission that says otherwise is noticed.
        self.watch: Any = None
        # A cleartext HTTP/2 connection being followed (track.h2c.H2Conn): it owns the
        # client stream from the preface on, and a server stream.
        self.h2: Any = None
        # A ClientHello still incomplete (decode.tls.RecordWalk): parsed again only when the
        # bytes since could complete or break it.
        self.hello_walk: Any = None

    def release(self) -> None:
        """Give every buffered byte back to the reassembly budget."""
        for stream in (self.client_stream, self.server_stream, self.watch):
            if stream is not None:
                stream.release()
        if self.h2 is not None:
            self.h2.release()
        self.client_stream = self.server_stream = self.watch = self.h2 = None


def state(flow: Flow) -> TrackState:
    """The flow's tracker state, created on first use."""
    st = flow.track_state
    if st is None:
        st = flow.track_state = TrackState()
    return st
