"""Capture files: classic pcap and pcapng, read into plain `Frame` tuples.

Owns: format sniffing (magic number, never the extension), both byte orders, micro/nanosecond
pcap, pcapng sections/interfaces/`if_tsresol`/`if_tsoffset`/EPB/SPB/OPB, and damage handling.
A file that is missing or not a capture raises `CaptureFileError` before anything is yielded; a
damaged capture yields every readable packet, then stops with ONE warning (file + offset).

Speed: the reader is on the hot path (budget well under 1 us/packet), so it reads large chunks
and unpacks record headers with precompiled `struct.Struct` straight from the buffer; with the
compiled core, classic records and runs of plain pcapng EPBs are walked in C (`cpcap`), and
everything unusual (other blocks, damage, odd resolutions) is still read here.
"""
from __future__ import annotations

import contextlib
import os
import struct
from typing import Generator, Iterator

from auditor import core
from auditor.decode.packet import LINKTYPES
from auditor.errors import CaptureFileError

__all__ = ["Frame", "CaptureFileError", "CaptureFile", "read_frames", "MAX_CAPLEN"]

# (ts, linktype: int, frame: bytes, wirelen: int) -- a plain tuple for speed. Capture files give
# `ts` as int nanoseconds since 1970, exact whatever the file's resolution (a float of seconds
# cannot hold nanoseconds: its step near 2025 is 238 ns); live sources give float seconds.
Frame = tuple

# Wireshark's WTAP_MAX_PACKET_SIZE_STANDARD: larger records are corruption, not packets.
MAX_CAPLEN = 262144
_MAX_BLOCK = MAX_CAPLEN + 65536     # pcapng blocks: a max packet plus generous options
_CHUNK = 1 << 20

# First 4 bytes as little-endian u32 -> (byte order, ns per fraction unit, candidate record-header sizes).
# The standard magic was also written by patched libpcaps with longer record headers
# (RedHat 6.1 "ss990417": 24, Nokia IPSO: 20), the "modified" magic by SuSE-era ones (24, 32);
# like Wireshark's wiretap we pick the first size whose first two record headers look sane.
_PCAP_MAGICS = {
    0xA1B2C3D4: ("<", 1000, (16, 24, 20)), 0xD4C3B2A1: (">", 1000, (16, 24, 20)),
    0xA1B23C4D: ("<", 1, (16,)), 0x4D3CB2A1: (">", 1, (16,)),
    0xA1B2CD34: ("<", 1000, (24, 32)), 0x34CDB2A1: (">", 1000, (24, 32)),
}
# What a timestamp may be: year 1 to 9999 (what ISO 8601 and datetime can show). pcapng's
# 64-bit counts and if_tsoffset can say anything; such a record is skipped, not fatal.
MIN_NS, MAX_NS = -62135596800 * 10**9, 253402300800 * 10**9
_SHB = 0x0A0D0D0A
_BOM = 0x1A2B3C4D


class CaptureFile:
    """Iterate a capture file's frames; exposes `bytes_read`, `size` and `warnings`."""

    def __init__(self, path) -> None:
        self.path = os.fspath(path)
        self.name = os.path.basename(self.path)
        self.warnings: list[str] = []
        self.bytes_read = 0
        self.packets = 0
        self.bad_timestamps = 0     # records skipped: a timestamp no clock can show
        self._unsupported: set[int] = set()
        try:
            self._f = open(self.path, "rb")
            self.size = os.fstat(self._f.fileno()).st_size
            head = self._f.read(24)
        except OSError as e:
            raise CaptureFileError(f"{self.name}: cannot read: {e.strerror or e}") from None
        if len(head) < 4:
            self._f.close()
            raise CaptureFileError(f"{self.name}: not a capture file (only {len(head)} bytes)")
        magic = struct.unpack_from("<I", head)[0]
        if magic in _PCAP_MAGICS:
            if len(head) < 24:
                self._f.close()
                raise CaptureFileError(f"{self.name}: not a capture file (pcap header cut short)")
            self._kind = "pcap"
        elif magic == _SHB:
            if len(head) < 12 or struct.unpack_from("<I", head, 8)[0] not in (
                    _BOM, 0x4D3C2B1A):
                self._f.close()
                raise CaptureFileError(f"{self.name}: not a capture file (bad pcapng section header)")
            self._kind = "pcapng"
        else:
            self._f.close()
            raise CaptureFileError(f"{self.name}: not a capture file (unknown magic {magic:#010x})")
        self._head = head
        self.bytes_read = len(head)

    @property
    def kind(self) -> str:
        """"pcap" (classic) or "pcapng"."""
        return self._kind

    def __iter__(self) -> Iterator[Frame]:
        gen = self._pcap() if self._kind == "pcap" else self._pcapng()
        with self._reading():
            yield from gen

    def buffers(self) -> Generator[tuple[bytes, tuple], tuple[int, int, bool], None]:
        """A classic pcap file a buffer at a time, for a reader that walks the records itself
        (the compiled pipeline, which so builds no frame for a packet it only counts). Yields
        `(buf, layout)`: records start at buf[0], `records(buf, 0, *layout)` reads them. Send
        back what that returns, with the number of records instead of the list: the file's
        damage is then found and said exactly as when iterating it."""
        if self._kind != "pcap":
            raise ValueError(f"{self.name}: buffers() reads classic pcap only")
        with self._reading():
            yield from self._pcap_buffers()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """Damage found while reading ends the read with a warning, never an exception."""
        try:
            yield
        except OSError as e:        # I/O error mid-file: keep what we have, say where
            self._warn(f"read error at offset {self.bytes_read} ({e.strerror or e})")
        except (struct.error, ValueError, IndexError, OverflowError) as e:   # safety net
            self._warn(f"undecodable data near offset {self.bytes_read} ({e})")
        finally:
            self.close()

    def close(self) -> None:
        self._f.close()

    def _bad_timestamp(self, record: int, ts: float) -> None:
        self.bad_timestamps += 1
        if self.bad_timestamps == 1:
            self.warnings.append(f"{self.name}: packet {record}: timestamp out of range "
                                 f"({ts:.6g} s since 1970); such packets are skipped "
                                 "(counted as malformed layer=timestamp)")

    def _check_linktype(self, linktype: int) -> None:
        """Say once per file and link type that its frames will not be read (they are
        counted as malformed layer=linktype, never dropped silently)."""
        if linktype not in LINKTYPES and linktype not in self._unsupported:
            self._unsupported.add(linktype)
            self.warnings.append(f"{self.name}: link type {linktype} is not decoded; its "
                                 "packets are counted as malformed (layer=linktype)")

    def _warn(self, what: str) -> None:
        if not any("stopped after" in w for w in self.warnings):   # the first damage ends the read
            self.warnings.append(f"{self.name}: {what}; stopped after {self.packets} packets")

    # -- classic pcap -------------------------------------------------------------------
    def _pcap(self) -> Iterator[Frame]:
        buffers = self._pcap_buffers()
        try:
            buf, layout = next(buffers)
            while True:
                frames, pos, corrupt = records(buf, 0, *layout)
                yield from frames
                buf, layout = buffers.send((len(frames), pos, corrupt))
        except StopIteration:
            return
        finally:
            buffers.close()

    def _pcap_buffers(self) -> Generator[tuple[bytes, tuple], tuple[int, int, bool], None]:
        """`buffers()`, without the damage handling around it."""
        head = self._head
        order, scale, sizes = _PCAP_MAGICS[struct.unpack_from("<I", head)[0]]
        linktype = struct.unpack_from(order + "I", head, 20)[0] & 0xFFFF   # top bits: FCS info
        self._check_linktype(linktype)
        layout = (_record_header_size(self._f, order, sizes), order == "<", scale, linktype,
                  MAX_CAPLEN)
        read = self._f.read
        buf = b""
        base = 24         # file offset of buf[0]
        pos = 0
        count = 0
        try:
            while True:
                chunk = read(_CHUNK)
                if not chunk:
                    break
                self.bytes_read += len(chunk)
                buf = buf[pos:] + chunk if pos < len(buf) else chunk
                base += pos
                taken, pos, corrupt = yield buf, layout
                count += taken    # (`packets` is read only once the file is done)
                if corrupt:
                    self.packets = count
                    caplen = struct.unpack_from(order + "I", buf, pos + 8)[0]
                    self._warn(f"corrupt record header at offset {base + pos} "
                               f"(caplen {caplen} > {MAX_CAPLEN})")
                    return
            self.packets = count
            if pos < len(buf):
                self._warn(f"truncated record at offset {base + pos} "
                           f"({len(buf) - pos} of the record's bytes present)")
        finally:
            self.packets = count

    # -- pcapng ---------------------------------------------------------------------------
    def _pcapng(self) -> Iterator[Frame]:
        f = self._f
        f.seek(0)
        self.bytes_read = 0
        buf = b""
        base = 0
        pos = 0
        order = "<"
        u32 = struct.Struct("<I").unpack_from
        ifaces: list[tuple[int, int, int, int]] = []   # (linktype, ns = ticks * mul // div + off)
        last_ts = 0
        count = 0
        try:
            while True:
                if len(buf) - pos < 12:
                    chunk = f.read(_CHUNK)
                    self.bytes_read += len(chunk)
                    buf, base, pos = buf[pos:] + chunk, base + pos, 0
                    if len(buf) == 0:
                        return
                    if len(buf) < 12:
                        self.packets = count
                        self._warn(f"truncated block at offset {base}")
                        return
                btype = struct.unpack_from("<I", buf, pos)[0]
                if btype == _SHB:   # a new section may switch byte order; interfaces reset
                    bom = struct.unpack_from("<I", buf, pos + 8)[0]
                    if bom == _BOM:
                        order = "<"
                    elif bom == 0x4D3C2B1A:
                        order = ">"
                    else:
                        self.packets = count
                        self._warn(f"corrupt section header at offset {base + pos}")
                        return
                    u32 = struct.Struct(order + "I").unpack_from
                    ifaces = []
                else:
                    btype = u32(buf, pos)[0]
                    if btype == 6 and epbs is not None:   # the common run, compiled
                        frames, end = epbs(buf, pos, order == "<", ifaces, _MAX_BLOCK)
                        if frames:
                            pos = end
                            count += len(frames)
                            last_ts = frames[-1][0]
                            yield from frames
                            continue
                blen = u32(buf, pos + 4)[0]
                if blen < 12 or blen % 4 or blen > _MAX_BLOCK:
                    self.packets = count
                    self._warn(f"corrupt block header at offset {base + pos} "
                               f"(block length {blen})")
                    return
                while len(buf) - pos < blen:
                    chunk = f.read(max(_CHUNK, blen))
                    if not chunk:
                        self.packets = count
                        self._warn(f"truncated block at offset {base + pos} "
                                   f"({len(buf) - pos} of {blen} bytes present)")
                        return
                    self.bytes_read += len(chunk)
                    buf, base, pos = buf[pos:] + chunk, base + pos, 0
                if u32(buf, pos + blen - 4)[0] != blen:
                    self.packets = count
                    self._warn(f"corrupt block at offset {base + pos} (trailing length "
                               f"differs from {blen})")
                    return
                pkt = None
                if btype == 6 or btype == 2:     # enhanced / obsolete packet block
                    if btype == 6:
                        ifid, hi, lo, caplen, wirelen = struct.unpack_from(
                            order + "5I", buf, pos + 8)
                    else:
                        ifid, _drops, hi, lo, caplen, wirelen = struct.unpack_from(
                            order + "HH4I", buf, pos + 8)
                    if ifid >= len(ifaces) or caplen > blen - 32:
                        self.packets = count
                        self._warn(f"corrupt packet block at offset {base + pos} "
                                   f"(interface {ifid}, caplen {caplen})")
                        return
                    lt, mul, div, off_ns = ifaces[ifid]
                    ts = ((hi << 32) | lo) * mul // div + off_ns
                    if MIN_NS < ts < MAX_NS:
                        last_ts = ts
                        pkt = (last_ts, lt, buf[pos + 28:pos + 28 + caplen], wirelen)
                    else:
                        self._bad_timestamp(count + self.bad_timestamps + 1, ts / 1e9)
                elif btype == 3:                 # simple packet block: interface 0, no time
                    if not ifaces:
                        self.packets = count
                        self._warn(f"simple packet block before any interface at offset "
                                   f"{base + pos}")
                        return
                    wirelen = u32(buf, pos + 8)[0]
                    caplen = min(wirelen, blen - 16)
                    pkt = (last_ts, ifaces[0][0], buf[pos + 12:pos + 12 + caplen], wirelen)
                elif btype == 1:                 # interface description block
                    ifaces.append(_idb(buf, pos, blen, order))
                    self._check_linktype(ifaces[-1][0])
                pos += blen
                if pkt is not None:
                    yield pkt
                    count += 1
        finally:
            self.packets = count


_REC = {True: struct.Struct("<IIII").unpack_from, False: struct.Struct(">IIII").unpack_from}


def py_records(buf: bytes, pos: int, rsize: int, little: bool, scale: int, linktype: int,
               max_caplen: int) -> tuple[list[Frame], int, bool]:
    """The whole records in buf from pos: (frames, where the first record not read starts,
    whether that record is corrupt: caplen > max_caplen). The pure-Python twin of
    `cpcap.records` (compiled when a C compiler was there at install)."""
    unpack = _REC[little]
    out: list[Frame] = []
    append = out.append
    n = len(buf)
    while pos + rsize <= n:
        sec, frac, caplen, wirelen = unpack(buf, pos)
        if caplen > max_caplen:
            return out, pos, True
        start = pos + rsize
        end = start + caplen
        if end > n:
            break
        append((sec * 1_000_000_000 + frac * scale, linktype, buf[start:end], wirelen))
        pos = end
    return out, pos, False


_compiled = core.compiled("sources.cpcap")
records = py_records if _compiled is None else _compiled.records
# pcapng: runs of plain enhanced packet blocks read in C (`cpcap.epbs`); `_pcapng` reads
# every block itself without it, and is what the compiled walk is tested against.
epbs = None if _compiled is None else _compiled.epbs


def _record_header_size(f, order: str, sizes: tuple[int, ...]) -> int:
    """Record-header size of this pcap variant, judged by wiretap's sanity checks."""
    if len(sizes) == 1:
        return sizes[0]
    peek = f.read(MAX_CAPLEN + 64)
    f.seek(24)
    unpack = struct.Struct(order + "II").unpack_from
    for size in sizes:
        pos, sane = 0, True
        for _ in range(2):
            if pos + size > len(peek):
                break            # end of file (or of the peek): nothing contradicts this size
            caplen, wirelen = unpack(peek, pos + 8)
            if caplen > MAX_CAPLEN or caplen > wirelen or wirelen > 128 << 20:
                sane = False
                break
            pos += size + caplen
        if sane:
            return size
    return sizes[0]


def _idb(buf: bytes, pos: int, blen: int, order: str) -> tuple[int, int, int, int]:
    """(linktype, mul, div, offset ns) from an IDB's options: a timestamp of `ticks` units
    is `ticks * mul // div + offset` nanoseconds (exact for every if_tsresol)."""
    linktype = struct.unpack_from(order + "H", buf, pos + 8)[0]
    mul, div, off_ns = 1000, 1, 0           # default resolution: microseconds
    p, end = pos + 16, pos + blen - 4
    opt = struct.Struct(order + "HH").unpack_from
    while p + 4 <= end:
        code, length = opt(buf, p)
        if code == 0:
            break
        if code == 9 and length >= 1:            # if_tsresol: 10^-n, or 2^-n if top bit set
            v = buf[p + 4]
            if v & 0x80:
                mul, div = 10**9, 2 ** (v & 0x7F)
            elif v <= 9:
                mul, div = 10 ** (9 - v), 1
            else:
                mul, div = 1, 10 ** (v - 9)
        elif code == 14 and length >= 8 and p + 12 <= end:   # if_tsoffset, seconds
            off_ns = struct.unpack_from(order + "q", buf, p + 4)[0] * 10**9
        p += 4 + ((length + 3) & ~3)
    return linktype, mul, div, off_ns


def read_frames(path) -> Iterator[Frame]:
    """Frames of a capture file; raises `CaptureFileError` now (not lazily) if it is not one."""
    return iter(CaptureFile(path))
