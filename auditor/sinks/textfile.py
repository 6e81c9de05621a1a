"""The final metrics as a node_exporter textfile (`replay --metrics-file`).

Written atomically (a temporary file in the same directory, then renamed over the target),
as the textfile collector expects. The target must be a regular file or not exist yet: a
symlink, FIFO or device at that path is refused, never replaced by a regular file (as root,
`--metrics-file /dev/full` or a planted symlink would otherwise clobber something else).
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from auditor.errors import OutputError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


def check(path: Path) -> None:
    """Refuse an unusable target before any work is done (OutputError, one line)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise OutputError(f"{path}: cannot write metrics: {exc.strerror or exc}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = ("a symlink" if stat.S_ISLNK(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                else "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file")
        raise OutputError(f"{path}: cannot write metrics: it is {kind}; give a regular file path")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{path}: cannot write metrics: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: cannot write metrics: directory {parent} is not writable")


def write(path: Path, registry: CollectorRegistry) -> None:
    check(path)
    from prometheus_client import generate_latest  # noqa: PLC0415 - only when metrics are written
    data = generate_latest(registry)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise OutputError(f"{path}: cannot write metrics: {exc.strerror or exc}") from None
