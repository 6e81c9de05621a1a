"""Live capture from a network interface, yielding the same `Frame` tuples as capture files.

Owns: the AF_PACKET socket (opened through scapy's Linux socket layer, which also compiles
and attaches the kernel BPF filter with libpcap), reads with kernel timestamps and original
lengths — from a TPACKET_V3 ring (`ring.py`) when the kernel grants one, else one `recvmsg`
per packet —, poll-based waiting so the caller can run timers and notice shutdown, and the
kernel's drop counters. Needs root or CAP_NET_RAW.
"""
from __future__ import annotations

import logging
import select
import socket
import struct
import time
from typing import Iterator

from auditor.errors import CaptureSetupError, NeedsPrivileges
from auditor.sources.pcap import Frame
from auditor.sources.ring import RING_BYTES, RxRing

__all__ = ["LiveCapture"]

SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_AUXDATA = 8
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
_AUXDATA = struct.Struct("IIIHHHH")     # tpacket_auxdata: status, len, snaplen, mac, net, tci, tpid
_STATS = struct.Struct("II")            # tpacket_stats: packets, drops
_TIMESPEC = struct.Struct("ll")
# Kernel receive buffer. scapy leaves 64 KiB (128 KiB charged), which a burst of a few
# loopback segments (large skbs, each seen twice on lo) already overflows while Python is
# busy: the kernel then drops and counts it. 32 MiB rides out bursts on a busy node.
RCVBUF = 32 << 20
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)

# ARPHRD_* of the interface -> link type of what a SOCK_RAW packet socket returns.
_ARPHRD_LINKTYPE = {
    1: 1,         # ARPHRD_ETHER -> LINKTYPE_ETHERNET
    772: 1,       # ARPHRD_LOOPBACK: Linux gives lo a zeroed Ethernet header
    0xFFFE: 101,  # ARPHRD_NONE (tun, wireguard): bare IP
    519: 101,     # ARPHRD_RAWIP
    768: 101,     # ARPHRD_TUNNEL (ipip)
    769: 101,     # ARPHRD_TUNNEL6
    776: 101,     # ARPHRD_SIT
}


def _grow_rcvbuf(sock: socket.socket, size: int) -> None:
    """Raise the receive buffer: past net.core.rmem_max with CAP_NET_ADMIN, else up to it."""
    for opt in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, size)
            return
        except OSError:
            continue


class LiveCapture:
    """Frames from a live interface; `frames()` yields None when a poll interval passes idle,
    and at least once a poll interval while packets flow (the caller's timers run then).
    `ring_bytes=0` reads with `recvmsg` instead of the ring; `ring_error` says why the ring
    was not used when it was asked for (None when it is in use)."""

    def __init__(self, interface: str, bpf: str | None = None, snaplen: int = 65535,
                 ring_bytes: int = RING_BYTES) -> None:
        self.interface = interface
        self.snaplen = snaplen
        self._ring: RxRing | None = None
        self.ring_error: str | None = None
        self._received = 0
        self._dropped = 0
        quiet = logging.getLogger("scapy.runtime")
        level = quiet.level
        try:
            from scapy.arch.linux import L2ListenSocket   # heavy import: only when capturing
            # scapy warns it cannot map lo to a scapy layer class; we never build layers.
            quiet.setLevel(logging.ERROR)
            self._sock = L2ListenSocket(iface=interface, filter=bpf, promisc=False)
        except PermissionError as e:
            raise NeedsPrivileges(f"{interface}: cannot capture ({e.strerror}; needs root or "
                                  f"CAP_NET_RAW)") from None
        except Exception as e:   # scapy raises its own types for bad names and bad filters
            raise CaptureSetupError(f"{interface}: cannot capture: {e}") from None
        finally:
            quiet.setLevel(level)
        self._raw: socket.socket = self._sock.ins
        _grow_rcvbuf(self._raw, RCVBUF)
        # scapy's socket hears every interface from its creation, with a 0-byte buffer until
        # the filter is attached: what arrived in that window was dropped and counted, yet it
        # is not traffic the filter asked for. Reading the counters resets them.
        self._raw.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size)
        # scapy enables PACKET_AUXDATA (VLAN tag, original length) and SO_TIMESTAMPNS.
        hatype = self._raw.getsockname()[3]
        if hatype not in _ARPHRD_LINKTYPE:
            self.close()
            raise CaptureSetupError(f"{interface}: unsupported interface type (ARPHRD {hatype})")
        self.linktype = _ARPHRD_LINKTYPE[hatype]
        # lo shows each packet twice: once outgoing, once incoming; keep the incoming copy.
        self._skip_outgoing = hatype == 772
        self._ancsize = socket.CMSG_SPACE(_AUXDATA.size) + socket.CMSG_SPACE(16)
        if ring_bytes:
            try:
                self._ring = RxRing(self._raw, ring_bytes)
            except OSError as e:   # an old kernel, or no memory for it: one recvmsg per packet
                self.ring_error = e.strerror or str(e)

    @property
    def reader(self) -> str:
        return f"TPACKET_V3 ring of {self._ring.size >> 20} MiB" if self._ring else "recvmsg"

    def frames(self, poll_interval: float = 0.5) -> Iterator[Frame | None]:
        """Frames as they arrive; None after `poll_interval` seconds without one, and once
        `poll_interval` has passed since the last None while they keep arriving."""
        if self._ring is not None:
            return self._ring_frames(self._ring, poll_interval)
        return self._recv_frames(poll_interval)

    def _ring_frames(self, ring: RxRing, poll_interval: float) -> Iterator[Frame | None]:
        linktype = self.linktype
        skip_out = self._skip_outgoing
        poller = select.poll()
        poller.register(self._raw.fileno(), select.POLLIN)
        timeout_ms = max(1, int(poll_interval * 1000))
        monotonic = time.monotonic
        beat = monotonic() + poll_interval
        try:
            while True:
                if not ring.ready():
                    if not poller.poll(timeout_ms):
                        beat = monotonic() + poll_interval
                        yield None
                    continue
                for ts_ns, data, wirelen in ring.block(skip_out):
                    yield (ts_ns, linktype, data, wirelen)
                if monotonic() >= beat:     # once per block: cheap, and blocks are short
                    beat = monotonic() + poll_interval
                    yield None
        except ValueError:                  # the ring was closed under us: end of capture
            return

    def _recv_frames(self, poll_interval: float) -> Iterator[Frame | None]:
        raw = self._raw
        fd = raw.fileno()
        recvmsg = raw.recvmsg
        snaplen = self.snaplen
        ancsize = self._ancsize
        linktype = self.linktype
        skip_out = self._skip_outgoing
        outgoing = socket.PACKET_OUTGOING
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        timeout_ms = max(1, int(poll_interval * 1000))
        monotonic = time.monotonic
        beat = monotonic() + poll_interval
        drained = 0
        while True:
            if not poller.poll(timeout_ms):
                beat = monotonic() + poll_interval
                yield None
                continue
            while True:   # drain what is queued without polling again
                drained += 1
                if drained & 255 == 0 and monotonic() >= beat:
                    beat = monotonic() + poll_interval
                    yield None
                try:
                    data, anc, _flags, addr = recvmsg(snaplen, ancsize, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                except OSError:
                    if raw.fileno() < 0:   # closed under us: end of capture
                        return
                    raise
                if skip_out and addr[2] == outgoing:
                    continue
                ts = None
                wirelen = len(data)
                for level, ctype, cdata in anc:
                    if level == SOL_PACKET and ctype == PACKET_AUXDATA and \
                            len(cdata) >= _AUXDATA.size:
                        status, wirelen, _snap, _mac, _net, tci, tpid = _AUXDATA.unpack_from(
                            cdata)
                        if tci or status & TP_STATUS_VLAN_VALID:
                            # The kernel strips the 802.1Q tag into auxdata; put it back.
                            if not status & TP_STATUS_VLAN_TPID_VALID:
                                tpid = 0x8100
                            data = data[:12] + struct.pack("!HH", tpid, tci) + data[12:]
                            wirelen += 4
                    elif level == socket.SOL_SOCKET and len(cdata) >= _TIMESPEC.size:
                        sec, nsec = _TIMESPEC.unpack_from(cdata)
                        ts = sec + nsec * 1e-9
                yield (ts if ts is not None else time.time(), linktype, data, wirelen)

    def __iter__(self) -> Iterator[Frame | None]:
        return self.frames()

    def stats(self) -> tuple[int, int]:
        """(received, dropped) since open; the kernel resets its counters on each read."""
        try:
            raw = self._raw.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size)
        except OSError:
            return self._received, self._dropped
        packets, drops = _STATS.unpack(raw)
        self._received += packets   # the kernel's "packets" already includes the drops
        self._dropped += drops
        return self._received, self._dropped

    def close(self) -> None:
        if self._ring is not None:
            self._ring.close()
        self._sock.close()

    def __enter__(self) -> "LiveCapture":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
