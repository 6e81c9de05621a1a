"""Cleartext HTTP/2 (h2c, prior knowledge) decoder: frames, header blocks, requests.

Owns turning one direction of an HTTP/2 connection into frames (RFC 9113 4.1) and header
blocks (HEADERS + CONTINUATION, RFC 9113 6.2/6.10) into header lists with the maintained
HPACK decoder (`hpack`, python-hyper), and saying what a request asks for. Pure apart from
the HPACK dynamic table each `HeaderBlocks` carries (one per direction, as RFC 7541 says).

Bounds, because the job chooses every byte (and, for a resolver of its own, the server's):
a frame longer than `MAX_FRAME` is malformed (the RFC 9113 default SETTINGS_MAX_FRAME_SIZE
is 16 KiB; we allow 64 KiB in case a peer raised it); a header block longer than
`MAX_BLOCK` or spread over more than `MAX_CONTINUATION` frames is malformed (the CONTINUATION
flood); the HPACK decoder refuses a dynamic-table size update above what the other side's
SETTINGS_HEADER_TABLE_SIZE allowed (4 KiB until it says otherwise, RFC 7541 4.2), and never
above `MAX_TABLE` (Chrome announces 64 KiB), and it stops as soon as the decoded header list
exceeds `MAX_HEADER_LIST` (the HPACK bomb: one large table entry referenced by one byte each
would otherwise inflate 16 KiB to gigabytes). Decoding time is linear in the block's bytes.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import NamedTuple

import hpack

from auditor.decode.outcome import DecodeError
from auditor.decode.text import wire_text as _text

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x4, 0x8, 0x20

MAX_FRAME = 1 << 16
MAX_BLOCK = 16 * 1024
MAX_CONTINUATION = 16
MAX_HEADER_LIST = 16 * 1024
HPACK_TABLE = 4096                        # RFC 7541's initial dynamic table size
MAX_TABLE = 1 << 16
HEADER_TABLE_SIZE = 0x1                   # the SETTINGS parameter (RFC 9113 6.5.2)
DOH_TYPE = "application/dns-message"      # RFC 8484 6
DOH_PATH = "/dns-query"                   # the RFC 8484 example path every public resolver uses


class Frame(NamedTuple):
    type: int
    flags: int
    stream: int
    payload: bytes


def split_frames(buf: bytes) -> tuple[list[Frame], int]:
    """The complete frames at the start of `buf` and how many bytes they used. A frame
    header announcing more than MAX_FRAME bytes raises DecodeError."""
    frames, off, n = [], 0, len(buf)
    while n - off >= 9:
        length = int.from_bytes(buf[off:off + 3], "big")
        if length > MAX_FRAME:
            raise DecodeError(f"HTTP/2 frame of {length} bytes")
        end = off + 9 + length
        if end > n:
            break
        stream = int.from_bytes(buf[off + 5:off + 9], "big") & 0x7FFFFFFF
        frames.append(Frame(buf[off + 3], buf[off + 4], stream, bytes(buf[off + 9:end])))
        off = end
    return frames, off


def settings(frame: Frame) -> dict[int, int]:
    """The parameters of a SETTINGS frame (empty for an ACK)."""
    data = frame.payload
    if frame.flags & 0x1:
        return {}
    if len(data) % 6:
        raise DecodeError("SETTINGS length not a multiple of 6")
    return {int.from_bytes(data[i:i + 2], "big"): int.from_bytes(data[i + 2:i + 6], "big")
            for i in range(0, len(data), 6)}


def unpad(frame: Frame) -> bytes:
    """A DATA or HEADERS payload without its padding (and HEADERS' priority fields)."""
    data, start = frame.payload, 0
    pad = 0
    if frame.flags & PADDED:
        pad = data[0]
        start = 1
    if frame.type == HEADERS and frame.flags & PRIORITY_FLAG:
        start += 5
    if start + pad > len(data):
        raise DecodeError("HTTP/2 padding longer than the frame")
    return data[start:len(data) - pad]


@dataclass(slots=True)
class Headers:
    """One decoded header block: the stream it opens or continues, and its fields."""
    stream: int
    fields: list[tuple[str, str]]
    end_stream: bool
    promise: bool = False           # a PUSH_PROMISE's request headers, not a request sent

    def get(self, name: str) -> str | None:
        for k, v in self.fields:
            if k == name:
                return v
        return None


class HeaderBlocks:
    """HEADERS/CONTINUATION frames of one direction in, decoded header lists out."""
    __slots__ = ("decoder", "_stream", "_block", "_frames", "_end_stream", "_promise")

    def __init__(self) -> None:
        self.decoder = hpack.Decoder(max_header_list_size=MAX_HEADER_LIST)
        self.decoder.max_allowed_table_size = HPACK_TABLE
        self._stream: int | None = None
        self._block = bytearray()
        self._frames = 0
        self._end_stream = self._promise = False

    def allow_table(self, size: int) -> None:
        """The peer whose headers this decodes was told it may use a table this large."""
        self.decoder.max_allowed_table_size = min(size, MAX_TABLE)

    @property
    def open(self) -> bool:
        """A header block has started and not ended: only CONTINUATION may follow."""
        return self._stream is not None

    def add(self, frame: Frame) -> Headers | None:
        """Feed a HEADERS, PUSH_PROMISE or CONTINUATION frame; the decoded block once it ends.
        Raises DecodeError on a frame out of sequence, an oversized block, or bad HPACK."""
        if frame.stream == 0:
            raise DecodeError("a header block on stream 0")
        if frame.type == CONTINUATION:
            if frame.stream != self._stream:
                raise DecodeError("CONTINUATION without its HEADERS")
            fragment = frame.payload
        elif self._stream is not None:
            raise DecodeError("a frame inside a header block")
        elif frame.type == PUSH_PROMISE:
            data = frame.payload
            start = 1 if frame.flags & PADDED else 0
            pad = data[0] if start else 0
            if start + 4 + pad > len(data):
                raise DecodeError("PUSH_PROMISE too short")
            fragment = data[start + 4:len(data) - pad]
            self._stream, self._end_stream, self._promise = frame.stream, False, True
        else:
            fragment = unpad(frame)
            self._stream, self._end_stream = frame.stream, bool(frame.flags & END_STREAM)
            self._promise = False
        self._frames += 1
        self._block += fragment
        if self._frames > MAX_CONTINUATION or len(self._block) > MAX_BLOCK:
            raise DecodeError("HTTP/2 header block too long")
        if not frame.flags & END_HEADERS:
            return None
        block, stream = bytes(self._block), self._stream
        self._block.clear()
        self._stream, self._frames = None, 0
        try:
            fields = self.decoder.decode(block, raw=True)
        except hpack.HPACKError as exc:
            raise DecodeError(f"HPACK: {exc}") from None
        return Headers(stream or 0, [(_text(bytes(k)).lower(), _text(bytes(v))) for k, v in fields],
                       self._end_stream, self._promise)


def authority(headers: Headers) -> str | None:
    """What names the request's target as an HTTP/1 Host would: `:authority`, else `host`
    (RFC 9113 8.3.1)."""
    return headers.get(":authority") or headers.get("host")


def is_doh(headers: Headers) -> bool:
    """Does this request ask for DNS over HTTPS (RFC 8484): the `/dns-query` path, a DNS
    message content type or accept, or a GET with a `dns=` query parameter?"""
    if doh_path(headers.get(":path") or ""):
        return True
    return any(DOH_TYPE in (headers.get(h) or "").lower() for h in ("content-type", "accept"))


def doh_path(path: str) -> bool:
    """The RFC 8484 path `/dns-query`, or a `dns=` query parameter (HTTP/1 targets too)."""
    return path.split("?", 1)[0] == DOH_PATH or dns_parameter(path) is not None


def dns_parameter(path: str) -> str | None:
    """The raw `dns=` query parameter of a request path, if any."""
    if "?" not in path:
        return None
    for part in path.split("?", 1)[1].split("&"):
        if part.startswith("dns="):
            return part[4:]
    return None


def doh_get_query(path: str) -> bytes | None:
    """The DNS query of a DoH GET (`?dns=` base64url without padding, RFC 8484 4.1)."""
    raw = dns_parameter(path)
    if not raw or len(raw) > 65535 * 4 // 3 + 4:
        return None
    try:
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        return None
