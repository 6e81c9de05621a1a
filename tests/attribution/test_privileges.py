"""The capabilities the deployments grant are exactly what attribution needs: with the four
that deployments with attribution hold (the systemd unit's attribution drop-in, compose's
attribution override, the Kubernetes attribution component), the socket of another user's
process is found; with capture's two alone (every deployment's default, which therefore runs
--no-attribution) or one more, the kernel refuses and the auditor counts the refusal.

Runs the real `/proc` scan in a child under `setpriv` (util-linux) with a reduced bounding set,
against a real process of user `nobody` holding a listening socket. Root only."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                                reason="needs root and setpriv")

CHILD = textwrap.dedent("""
    import sys
    from auditor.attribution.procfs import SocketOwners
    owners = SocketOwners()
    owners.scan()
    print(owners.pid_of(int(sys.argv[1])) or 0, owners.denied)
""")


@pytest.fixture
def nobody_socket():
    """(pid, socket inode) of a process running as nobody that holds a listening socket."""
    code = ("import socket,sys,os,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen();"
            "print(os.stat(f'/proc/self/fd/{s.fileno()}').st_ino, flush=True); time.sleep(60)")
    proc = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                             sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        inode = int(proc.stdout.readline())
        yield proc.pid, inode
    finally:
        proc.kill()
        proc.wait()


def _scan_with(caps: list[str], inode: int) -> tuple[int, int]:
    bounding = "-all," + ",".join(f"+{c}" for c in caps)
    out = subprocess.run(["setpriv", f"--bounding-set={bounding}", "--inh-caps=-all",
                          sys.executable, "-c", CHILD, str(inode)], capture_output=True,
                         text=True, timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    pid, denied = out.stdout.split()
    return int(pid), int(denied)


def test_deployed_capabilities_find_another_users_socket(nobody_socket):
    pid, inode = nobody_socket
    found, _ = _scan_with(["net_raw", "net_admin", "sys_ptrace", "dac_read_search"], inode)
    assert found == pid


@pytest.mark.parametrize("caps", [["net_raw", "net_admin"], ["net_raw", "net_admin", "sys_ptrace"],
                                  ["net_raw", "net_admin", "dac_read_search"]])
def test_fewer_capabilities_are_refused_and_counted(nobody_socket, caps):
    _, inode = nobody_socket
    found, denied = _scan_with(caps, inode)
    assert found == 0 and denied >= 1
