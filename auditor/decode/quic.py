"""QUIC client Initial decoder: unprotect, decrypt and collect CRYPTO frames (v1 and v2).

Owns RFC 9001 section 5 (Initial secrets, header protection, AEAD) for QUIC v1 and the
RFC 9369 variant for QUIC v2 (other salt, `quicv2 ` labels, Initial type bits 0b01), the
frame walk of an Initial payload, and `CryptoAssembler`, which turns CRYPTO pieces (out of
order, overlapping, spread over packets) into the contiguous TLS handshake bytes that
`tls.parse_handshake` reads. Pure (a bounded key cache aside); a `Status` when there is no
Initial to read.
"""
from __future__ import annotations

from dataclasses import dataclass
import hashlib
import heapq
import hmac
from collections import OrderedDict


from auditor.decode.outcome import MALFORMED, NOT_THIS, UNDECODABLE, Status

V1 = 0x00000001
V2 = 0x6B3343CF
# version -> (initial salt, label prefix, long-header type bits of an Initial)
_VERSIONS = {
    V1: (bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"), b"quic ", 0),
    V2: (bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9"), b"quicv2 ", 1),
}
MAX_CRYPTO = 64 * 1024
KEY_CACHE_SIZE = 256


@dataclass(slots=True, repr=False)
class QuicInitial:
    """The decrypted content the auditor needs from one datagram's client Initial packets."""
    version: int
    dcid: bytes
    scid: bytes
    crypto: list[tuple[int, bytes]]

    def __repr__(self) -> str:
        return (f"QuicInitial(version=0x{self.version:08x}, dcid={self.dcid.hex()}, "
                f"scid={self.scid.hex()}, crypto={[(o, len(d)) for o, d in self.crypto]})")


def _expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    # HKDF-Expand-Label (RFC 8446 7.1) with an empty context; one HMAC block is enough.
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + b"\x00"
    return hmac.new(secret, info + b"\x01", hashlib.sha256).digest()[:length]


def client_initial_keys(version: int, dcid: bytes) -> tuple[bytes, bytes, bytes]:
    """(key, iv, hp) protecting the client's Initial packets (RFC 9001 5.2, RFC 9369 3.3)."""
    salt, prefix, _ = _VERSIONS[version]
    initial = hmac.new(salt, dcid, hashlib.sha256).digest()    # HKDF-Extract
    client = _expand_label(initial, b"client in", 32)
    return (_expand_label(client, prefix + b"key", 16), _expand_label(client, prefix + b"iv", 12),
            _expand_label(client, prefix + b"hp", 16))


_cache: OrderedDict = OrderedDict()
_crypto: tuple | None = None


def _primitives() -> tuple:
    """(AESGCM, Cipher, algorithms, modes, InvalidTag), imported on the first Initial: the
    library is ~11 ms and ~6 MB of a start-up whose capture may hold no QUIC at all."""
    global _crypto
    if _crypto is None:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        _crypto = (AESGCM, Cipher, algorithms, modes, InvalidTag)
    return _crypto


def _keys(version: int, dcid: bytes):
    """Cached (AEAD, iv, header-protection encryptor) for one (version, dcid): a client
    sends several Initials with the same DCID, and deriving costs 5 HMACs."""
    k = (version, dcid)
    hit = _cache.get(k)
    if hit is not None:
        _cache.move_to_end(k)
        return hit
    key, iv, hp = client_initial_keys(version, dcid)
    AESGCM, Cipher, algorithms, modes, _ = _primitives()
    hit = (AESGCM(key), iv, Cipher(algorithms.AES(hp), modes.ECB()).encryptor())
    _cache[k] = hit
    if len(_cache) > KEY_CACHE_SIZE:
        _cache.popitem(last=False)
    return hit


def _varint(buf: bytes, off: int, end: int) -> tuple[int, int]:
    """RFC 9000 16 variable-length integer at off -> (value, next offset)."""
    if off >= end:
        raise IndexError
    first = buf[off]
    n = 1 << (first >> 6)
    if off + n > end:
        raise IndexError
    v = first & 0x3F
    for i in range(off + 1, off + n):
        v = (v << 8) | buf[i]
    return v, off + n


def parse_initial(datagram: bytes, key_dcid: bytes | None = None) -> QuicInitial | Status:
    """Decrypt the client Initial packet(s) coalesced at the start of a UDP datagram.

    Keys come from `key_dcid` (the first DCID the client used in the flow) if given, else
    from this packet's DCID. Returns NOT_THIS unless the datagram starts with a v1/v2
    Initial; MALFORMED if lengths lie or no Initial decrypts (e.g. a server's Initial).
    """
    try:
        return _parse(bytes(datagram), key_dcid)
    except UNDECODABLE:
        return MALFORMED


def _parse(buf: bytes, key_dcid: bytes | None) -> QuicInitial | Status:
    n = len(buf)
    if n < 7 or not buf[0] & 0x80:
        return NOT_THIS                      # short header, or not QUIC at all
    version = int.from_bytes(buf[1:5], "big")
    spec = _VERSIONS.get(version)
    if spec is None or (buf[0] >> 4) & 3 != spec[2]:
        return NOT_THIS                      # other version / not an Initial
    first_dcid = first_scid = None
    crypto: list[tuple[int, bytes]] = []
    decrypted = 0
    off = 0
    while off < n and buf[off] & 0x80:       # coalesced long-header packets (RFC 9000 12.2)
        try:
            start = off
            if off + 6 > n or int.from_bytes(buf[off + 1:off + 5], "big") != version:
                break
            is_initial = (buf[off] >> 4) & 3 == spec[2]
            dl = buf[off + 5]
            if dl > 20 or off + 6 + dl + 1 > n:
                raise IndexError
            dcid = buf[off + 6:off + 6 + dl]
            off += 6 + dl
            sl = buf[off]
            if sl > 20 or off + 1 + sl > n:
                raise IndexError
            scid = buf[off + 1:off + 1 + sl]
            off += 1 + sl
            if is_initial:
                tlen, off = _varint(buf, off, n)
                off += tlen                  # skip the token
            plen, off = _varint(buf, off, n)
            pn_off = off
            off += plen
            if off > n or plen < 20:         # 4-byte pn sample offset + 16-byte sample
                raise IndexError
        except IndexError:
            if first_dcid is None:
                return MALFORMED
            break
        if first_dcid is None:
            first_dcid, first_scid = dcid, scid
        if not is_initial:
            continue                         # 0-RTT/Handshake: other keys, not ours to read
        plain = _decrypt(buf, start, pn_off, off, version, key_dcid or dcid)
        if plain is None:
            continue
        decrypted += 1
        if not _frames(plain, crypto):
            return MALFORMED
    if not decrypted or first_dcid is None or first_scid is None:
        return MALFORMED
    return QuicInitial(version, first_dcid, first_scid, crypto)


def _decrypt(buf: bytes, start: int, pn_off: int, end: int, version: int,
             dcid: bytes) -> bytes | None:
    """Remove header protection and AEAD-open one long-header packet (RFC 9001 5.3-5.4)."""
    aead, iv, hp = _keys(version, bytes(dcid))
    mask = hp.update(buf[pn_off + 4:pn_off + 20])
    first = buf[start] ^ (mask[0] & 0x0F)
    pn_len = (first & 3) + 1
    if pn_off + pn_len > end:
        return None
    pn = bytes(buf[pn_off + i] ^ mask[1 + i] for i in range(pn_len))
    header = bytes([first]) + buf[start + 1:pn_off] + pn
    # The truncated pn is the full pn for a flow's first packets; later Initials of a
    # stateless decoder could be off by a window, and then simply fail to open.
    nonce = (int.from_bytes(iv, "big") ^ int.from_bytes(pn, "big")).to_bytes(12, "big")
    try:
        return aead.decrypt(nonce, buf[pn_off + pn_len:end], header)
    except (_primitives()[4], ValueError):   # InvalidTag: not a client Initial under these keys
        return None


def _frames(p: bytes, crypto: list[tuple[int, bytes]]) -> bool:
    """Walk an Initial's frames (RFC 9000 12.4 allows only these); collect CRYPTO data.
    False if a frame's lengths run past the payload."""
    n = len(p)
    off = 0
    try:
        while off < n:
            ftype, off = _varint(p, off, n)
            if ftype == 0x00:                # PADDING: usually runs to the end
                while off < n and p[off] == 0:
                    off += 1
            elif ftype == 0x01:              # PING
                pass
            elif ftype in (0x02, 0x03):      # ACK, ACK_ECN
                _, off = _varint(p, off, n)  # largest acknowledged
                _, off = _varint(p, off, n)  # ack delay
                count, off = _varint(p, off, n)
                _, off = _varint(p, off, n)  # first range
                if count > n:
                    return False
                for _ in range(2 * count + (3 if ftype == 0x03 else 0)):
                    _, off = _varint(p, off, n)
            elif ftype == 0x06:              # CRYPTO
                coff, off = _varint(p, off, n)
                clen, off = _varint(p, off, n)
                if off + clen > n:
                    return False
                crypto.append((coff, p[off:off + clen]))
                off += clen
            elif ftype in (0x1C, 0x1D):      # CONNECTION_CLOSE
                _, off = _varint(p, off, n)
                if ftype == 0x1C:
                    _, off = _varint(p, off, n)
                rlen, off = _varint(p, off, n)
                off += rlen
                if off > n:
                    return False
            else:
                # Not allowed in an Initial; keep what was collected rather than lose the SNI.
                break
    except IndexError:
        return False
    return True


class CryptoAssembler:
    """Reassembles CRYPTO stream pieces into the contiguous bytes from offset 0.

    Pieces may come out of order, overlap or repeat; the first copy of a byte wins (RFC 9000
    2.2 says retransmitted data must be identical). Everything is capped at MAX_CRYPTO bytes
    and a bounded number of pending pieces, so hostile offsets cannot grow memory.
    """
    MAX_PENDING = 512

    def __init__(self, cap: int = MAX_CRYPTO):
        self._cap = cap
        self._data = bytearray()
        self._pending: dict[int, bytes] = {}
        self._offsets: list[int] = []      # the pending offsets, as a heap
        self.overflow = False

    def add(self, offset: int, data: bytes) -> None:
        if offset < 0 or not data:
            return
        end = offset + len(data)
        if end > self._cap:
            self.overflow = True
            if offset >= self._cap:
                return
            data = data[:self._cap - offset]
            end = self._cap
        if end <= len(self._data):
            return                         # nothing new
        if offset > len(self._data):
            if len(self._pending) >= self.MAX_PENDING:
                self.overflow = True
                return
            old = self._pending.get(offset)
            if old is None:
                heapq.heappush(self._offsets, offset)
            if old is None or len(old) < len(data):
                self._pending[offset] = bytes(data)
            return
        self._data += data[len(self._data) - offset:]
        self._drain()

    def _drain(self) -> None:
        # Pull in pending pieces, lowest offset first, while they touch the contiguous prefix.
        # A heap: a piece added in order costs a look at the lowest pending offset, where
        # sorting every pending offset at each add let 512 shuffled pieces beyond a gap make
        # each in-order byte cost 17 us instead of 0.3.
        offsets, pending = self._offsets, self._pending
        while offsets and offsets[0] <= len(self._data):
            off = heapq.heappop(offsets)
            piece = pending.pop(off)
            have = len(self._data)
            if off + len(piece) > have:
                self._data += piece[have - off:]

    def contiguous(self) -> bytes:
        return bytes(self._data)
