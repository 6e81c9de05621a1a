"""The kernel's TPACKET_V3 receive ring on an AF_PACKET socket: packets are read from shared
memory a block at a time instead of one `recvmsg` system call each.

The kernel fills fixed-size blocks with packets back to back and hands a block to us when it
is full or `RETIRE_MS` after its first packet; we read every packet in it, then give the block
back. While we are busy the kernel goes on filling the free blocks; when none is free it drops
and counts, as it does when a socket buffer is full (`PACKET_STATISTICS`, read by the caller).

Layouts (linux/if_packet.h): a block starts with `tpacket_block_desc` (status, packet count,
offset of the first packet); each packet with `tpacket3_hdr` (offset of the next, time,
captured and original length, status, MAC offset, VLAN tag), followed by its `sockaddr_ll`.
"""
from __future__ import annotations

import mmap
import socket
import struct
from typing import Iterator

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_VERSION = 10
TPACKET_V3 = 2
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40

# What the kernel can hold while Python is busy (~22,000 full-size frames, far more small
# ones). Resident memory, inside the deployments' limits (384 MiB); `run --ring-mib`.
RING_BYTES = 32 << 20
BLOCK_SIZE = 1 << 20        # a multiple of the page size; holds ~700 full-size frames
RETIRE_MS = 10              # a block with a packet in it is ours after this long at most

_REQ3 = struct.Struct("7I")     # block size, block count, frame size, frame count, tov, priv, feature
_BLOCK = struct.Struct("8xIII")     # (version, offset_to_priv) status, packets, first packet offset
_PKT = struct.Struct("IIIIIIH2x4xIH")   # next, sec, nsec, snaplen, len, status, mac, rxhash, tci, tpid
_SLL_PKTTYPE = 48 + 10          # sockaddr_ll after the 48-byte header: family, proto, ifindex, hatype, pkttype
_HDR_LEN = 48 + 20
_VLAN = struct.Struct("!HH")


class RxRing:
    """A TPACKET_V3 ring of `size` bytes on `sock` (raises OSError when the kernel refuses)."""

    def __init__(self, sock: socket.socket, size: int) -> None:
        blocks = max(2, size // BLOCK_SIZE)
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        # Frame size and count only bound the kernel's checks in V3 (packets are packed).
        frame = 1 << 11
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING,
                        _REQ3.pack(BLOCK_SIZE, blocks, frame, BLOCK_SIZE // frame * blocks,
                                   RETIRE_MS, 0, 0))
        self.blocks = blocks
        self.size = blocks * BLOCK_SIZE
        self._map = mmap.mmap(sock.fileno(), self.size, mmap.MAP_SHARED,
                              mmap.PROT_READ | mmap.PROT_WRITE)
        self._next = 0

    def ready(self) -> bool:
        """The kernel has handed us the next block."""
        return self._map[self._next * BLOCK_SIZE + 8] & TP_STATUS_USER != 0

    def block(self, skip_outgoing: bool) -> Iterator[tuple[int, bytes, int]]:
        """(time in ns, frame bytes, original length) of every packet of the next block, then
        the block goes back to the kernel. Call only when `ready()`."""
        m = self._map
        base = self._next * BLOCK_SIZE
        try:
            _status, count, off = _BLOCK.unpack_from(m, base)
            pos = base + off
            end = base + BLOCK_SIZE
            unpack = _PKT.unpack_from
            for _ in range(count):
                if pos + _HDR_LEN > end:    # a count or offset the kernel would never write
                    break
                nxt, sec, nsec, snap, wirelen, status, mac, tci, tpid = unpack(m, pos)
                if not (skip_outgoing and m[pos + _SLL_PKTTYPE] == socket.PACKET_OUTGOING):
                    start = pos + mac
                    data = m[start:min(start + snap, end)]
                    if status & TP_STATUS_VLAN_VALID or tci:
                        # The kernel strips the 802.1Q tag into the header; put it back.
                        if not status & TP_STATUS_VLAN_TPID_VALID:
                            tpid = 0x8100
                        data = data[:12] + _VLAN.pack(tpid, tci) + data[12:]
                        wirelen += 4
                    yield sec * 1_000_000_000 + nsec, data, wirelen
                if not nxt:
                    break
                pos += nxt
        finally:
            m[base + 8:base + 12] = b"\0\0\0\0"        # TP_STATUS_KERNEL: the block is theirs again
            self._next = (self._next + 1) % self.blocks

    def close(self) -> None:
        self._map.close()
