"""A compact, prebuilt copy of a parsed service-tags file, so start-up does not re-parse ~4 MB
of JSON and ~96k prefixes on every run (0.5 s before; ~10 ms from the index).

The index is keyed by the SHA-256 of the tags file and the `virtual_network` prefixes: a new
download or another setting builds a new one. It is kept in `$EGRESS_AUDITOR_CACHE_DIR` when
set (the Docker image builds it there), else next to the tags file when that directory is
writable, else in the user's cache directory (`$XDG_CACHE_HOME/egress-auditor`,
`~/.cache/egress-auditor`). Never next to the file bundled in the package: a file pip did not
install outlives `pip uninstall`, and the leftover `auditor/` directory then shadows a later
(editable) install of the package as an empty namespace package.

It decides verdicts, so it is only trusted if it is ours: a regular file owned by this user,
not writable by group or others, in a directory with the same properties; a version, the
source hash and the array lengths are checked, and anything off means "rebuild", never an
error. The format is plain data (a JSON header and `array` bytes): nothing in it is executed.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from array import array
from pathlib import Path
from typing import Iterable, Sequence

MAGIC = b"EATAGIX2"
MAX_INDEX_BYTES = 64 * 1024 * 1024


def key(raw: bytes, virtual_network: Iterable[str]) -> str:
    h = hashlib.sha256(raw)
    h.update(b"\0" + "\0".join(virtual_network).encode())
    return h.hexdigest()


_PACKAGE = Path(__file__).resolve().parents[1]


def _dirs(source: Path) -> list[Path]:
    parent = source.parent
    out = [] if parent.resolve().is_relative_to(_PACKAGE) else [parent]
    env = os.environ.get("EGRESS_AUDITOR_CACHE_DIR")
    if env:
        out.insert(0, Path(env))
    xdg = os.environ.get("XDG_CACHE_HOME")
    out.append(Path(xdg) / "egress-auditor" if xdg else Path.home() / ".cache" / "egress-auditor")
    return out


def _name(source: Path, digest: str) -> str:
    return f".{source.name}.{digest[:16]}.index"


def _ours(path: Path) -> bool:
    try:
        st = path.lstat()
    except OSError:
        return False
    return st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def find(source: Path, digest: str) -> bytes | None:
    """The bytes of a trusted index for this source, or None."""
    for d in _dirs(source):
        path = d / _name(source, digest)
        if not (_ours(d) and _ours(path) and stat.S_ISREG(path.lstat().st_mode)):
            continue
        try:
            if path.stat().st_size > MAX_INDEX_BYTES:
                continue
            return path.read_bytes()
        except OSError:
            continue
    return None


KEEP_PER_SOURCE = 4     # indexes kept per tags file (one per virtual_network setting)


def _prune(d: Path, source: Path) -> None:
    """Keep the newest few indexes of one tags file: each setting of virtual_network makes
    its own, and a long-lived cache directory must not fill with them."""
    mine = [p for p in d.glob(f".{source.name}.*.index") if _ours(p)]
    mine.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in mine[KEEP_PER_SOURCE:]:
        try:
            old.unlink()
        except OSError:
            pass


def store(source: Path, digest: str, blob: bytes) -> Path | None:
    """Write the index where it can be kept (atomically); None when nowhere is writable."""
    for d in _dirs(source):
        try:
            if d != source.parent:
                d.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not _ours(d):
                continue
            fd, tmp = tempfile.mkstemp(dir=d, prefix=".tagindex-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(blob)
                os.chmod(tmp, 0o644)
                final = d / _name(source, digest)
                os.replace(tmp, final)
                _prune(d, source)
                return final
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError:
            continue
    return None


def dump(digest: str, *, starts: dict[int, Sequence[int]], labels: dict[int, list[tuple[str, ...]]],
         **fields: object) -> bytes:
    """The index bytes for a built table (`PrefixTable` starts/labels per address family) and
    the plain-data `fields` that go with it (names, services, sizes, change number ...)."""
    ids: dict[tuple[str, ...], int] = {}
    arrays: list[bytes] = []
    lengths: dict[str, int] = {}
    for bits in (32, 128):
        idx = array("I", (ids.setdefault(lab, len(ids)) for lab in labels[bits]))
        lengths[f"v{bits}"] = len(starts[bits])
        if bits == 32:
            arrays.append(array("I", starts[bits]).tobytes())
        else:
            arrays.append(array("Q", (s >> 64 for s in starts[bits])).tobytes())
            arrays.append(array("Q", (s & (2**64 - 1) for s in starts[bits])).tobytes())
        arrays.append(idx.tobytes())
    table = [list(lab) for lab in sorted(ids, key=ids.__getitem__)]
    header = json.dumps({**fields, "source": digest, "labels": table, "lengths": lengths},
                        separators=(",", ":")).encode()
    return MAGIC + len(header).to_bytes(8, "little") + header + b"".join(arrays)


def parse(blob: bytes, digest: str) -> dict | None:
    """The header and the tables of an index, or None when it is not a valid index for
    `digest` (wrong magic, version, source, or lengths)."""
    try:
        if not blob.startswith(MAGIC):
            return None
        n = int.from_bytes(blob[8:16], "little")
        header = json.loads(blob[16:16 + n])
        if header.get("source") != digest:
            return None
        pos = 16 + n
        n4, n6 = header["lengths"]["v32"], header["lengths"]["v128"]

        def take(code: str, count: int) -> array:
            nonlocal pos
            arr = array(code)
            size = arr.itemsize * count
            arr.frombytes(blob[pos:pos + size])
            if len(arr) != count:
                raise ValueError("truncated")
            pos += size
            return arr

        s4, i4 = take("I", n4), take("I", n4)
        hi, lo = take("Q", n6), take("Q", n6)
        i6 = take("I", n6)
        if pos != len(blob):
            return None
        labels = [tuple(lab) for lab in header["labels"]]
        interned = {lab: lab for lab in labels}
        labels = [interned[lab] for lab in labels]
        # IPv4 starts stay an array (4 bytes each, not a 36-byte int in a list: ~2 MB less
        # for the public cloud's file; bisect reads either). IPv6 starts need 128-bit ints.
        header["starts"] = {32: s4, 128: [(h << 64) | l for h, l in zip(hi, lo)]}
        header["label_lists"] = {32: [labels[i] for i in i4], 128: [labels[i] for i in i6]}
        return header
    except (ValueError, KeyError, TypeError, IndexError):
        return None
