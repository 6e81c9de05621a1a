"""What /proc says: which process holds a socket, and who that process is.

The kernel has no socket -> process index, so (as `ss -p` and `lsof` do) the file descriptors
of every process are read once and the socket inodes remembered. A miss rescans, at most
`MAX_SCANS_PER_SECOND` times a second (misses wait for the next scan together), so a flood of
new flows cannot turn attribution into a busy loop; a socket gone by then is simply unknown.
"""
from __future__ import annotations

import os
import time
from collections import OrderedDict
from dataclasses import dataclass

from auditor.attribution import cgroup

MAX_SCANS_PER_SECOND = 5
MAX_PROCESSES = 4096


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    name: str | None
    executable: str | None
    uid: int | None
    cgroup: cgroup.CgroupIdentity


class SocketOwners:
    """socket inode -> pid, refreshed by rate-limited scans of /proc/*/fd."""

    def __init__(self, proc: str = "/proc", clock=time.monotonic) -> None:
        self.proc = proc
        self.clock = clock
        self._owner: dict[int, int] = {}
        self._last_scan = float("-inf")
        self.scans = 0
        self.denied = 0     # processes of the last scan whose sockets we may not read

    def pid_of(self, inode: int) -> int | None:
        pid = self._owner.get(inode)
        if pid is None and self.clock() - self._last_scan >= 1.0 / MAX_SCANS_PER_SECOND:
            self.scan()
            pid = self._owner.get(inode)
        return pid

    def due(self) -> float:
        """Seconds until the next scan is allowed."""
        return max(0.0, self._last_scan + 1.0 / MAX_SCANS_PER_SECOND - self.clock())

    def scan(self) -> None:
        self._last_scan = self.clock()
        self.scans += 1
        owner: dict[int, int] = {}
        denied = 0
        try:
            pids = [e.name for e in os.scandir(self.proc) if e.name.isdigit()]
        except OSError:
            return
        for pid in pids:
            fd_dir = f"{self.proc}/{pid}/fd"
            try:
                for entry in os.scandir(fd_dir):
                    try:
                        target = os.readlink(entry.path)
                    except PermissionError:
                        raise            # the whole process is unreadable, not this one fd
                    except OSError:
                        continue
                    if target.startswith("socket:["):
                        owner.setdefault(int(target[8:-1]), int(pid))
            except PermissionError:
                # Another user's process: reading its descriptors needs CAP_SYS_PTRACE and
                # CAP_DAC_READ_SEARCH (root without them is refused too).
                denied += 1
            except OSError:
                continue            # gone
        self._owner = owner
        self.denied = denied


class Processes:
    """pid -> ProcessInfo, LRU-capped; keyed with the start time so a reused pid is re-read."""

    def __init__(self, proc: str = "/proc") -> None:
        self.proc = proc
        self._cache: OrderedDict[tuple[int, str], ProcessInfo] = OrderedDict()

    def info(self, pid: int) -> ProcessInfo | None:
        base = f"{self.proc}/{pid}"
        try:
            with open(f"{base}/stat", "rb") as fh:
                start = fh.read().rsplit(b")", 1)[1].split()[19].decode()
        except (OSError, IndexError):
            return None
        key = (pid, start)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        info = ProcessInfo(pid, _read(f"{base}/comm"), _link(f"{base}/exe"), _uid(base),
                           cgroup.parse(_read(f"{base}/cgroup") or ""))
        self._cache[key] = info
        if len(self._cache) > MAX_PROCESSES:
            self._cache.popitem(last=False)
        return info


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return None


def _link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _uid(base: str) -> int | None:
    try:
        return os.stat(base).st_uid
    except OSError:
        return None
