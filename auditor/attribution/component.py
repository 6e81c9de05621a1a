"""The attribution component: each new egress TCP/UDP flow is looked up on a worker thread
(socket -> inode -> pid -> process, cgroup, container), so the capture loop never waits on
/proc. The result lands on `flow.owner` before the flow ends in practice (a flow ends at close
plus a linger, or after its idle timeout); a flow whose socket is gone by the time the worker
gets to it is `unknown`. The queue is bounded: past `max_pending` flows are counted in
`table_evictions_total{table="attribution"}` and left unknown."""
from __future__ import annotations

import queue
import sys
import threading
import time

from auditor.attribution.docker import DockerNames
from auditor.attribution.owner import UNKNOWN, Owner
from auditor.attribution.procfs import Processes, SocketOwners
from auditor.attribution.sockets import SockDiag
from auditor.components import Component
from auditor.events import FlowEnded, FlowStarted
from auditor.flow import Flow
from auditor.telemetry import Table, Telemetry

_STOP = object()
WAIT_BUDGET = 0.05      # seconds per second of capture loop the flow-end wait may take


class Attribution(Component):
    name = "attribution"

    def __init__(self, telemetry: Telemetry, *, max_pending: int = 10_000, proc: str = "/proc",
                 docker_socket: str = "/var/run/docker.sock") -> None:
        self.telemetry = telemetry
        self.max_pending = max_pending
        self.owners = SocketOwners(proc)
        self.processes = Processes(proc)
        self.docker = DockerNames(docker_socket)
        self.diag = SockDiag()
        self.queue: queue.Queue = queue.Queue()
        self._said_denied = False
        self.busy_seconds = 0.0           # worker time spent, for the cost per flow
        self._thread = threading.Thread(target=self._work, name="attribution", daemon=True)
        self._thread.start()
        self._budget, self._budget_at = WAIT_BUDGET, time.monotonic()

    def flow_started(self, ev: FlowStarted) -> None:
        flow = ev.flow
        if not flow.egress or flow.proto not in (6, 17):
            return
        if self.queue.qsize() >= self.max_pending:
            self.telemetry.evicted(Table.ATTRIBUTION)
            flow.owner = UNKNOWN
            return
        self.queue.put(flow)

    def flow_ended(self, ev: FlowEnded) -> None:
        """A flow ending before the worker got to it (shutdown, a short flow): wait a moment
        for its lookup, from a small budget (WAIT_BUDGET s per s), so a flood of short flows
        cannot stall capture; past the budget it stays unknown."""
        flow = ev.flow
        if flow.owner is not None or not flow.egress or flow.proto not in (6, 17):
            return
        now = time.monotonic()
        self._budget = min(1.0, self._budget + (now - self._budget_at) * WAIT_BUDGET)
        self._budget_at = now
        deadline = now + max(0.0, self._budget)
        while flow.owner is None and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.001)
        self._budget -= time.monotonic() - now
        if flow.owner is None:
            flow.owner = UNKNOWN

    @property
    def resolved(self) -> int:
        return self.telemetry.attributions["known"]

    @property
    def unknown(self) -> int:
        return self.telemetry.attributions["unknown"]

    def close(self) -> None:
        self.queue.put(_STOP)
        self._thread.join(10)
        self.diag.close()

    def _work(self) -> None:
        while True:
            flow = self.queue.get()
            if flow is _STOP:
                return
            start = time.perf_counter()
            try:
                flow.owner = self.lookup(flow)
            except Exception as exc:  # noqa: BLE001 - a bug here must not stop attribution
                flow.owner = UNKNOWN
                print(f"egress-auditor: attribution: {type(exc).__name__}: {exc}", file=sys.stderr)
            self.busy_seconds += time.perf_counter() - start
            self.telemetry.attributions["known" if flow.owner.known else "unknown"] += 1

    def lookup(self, flow: Flow) -> Owner:
        found = self.diag.lookup(flow.proto, flow.client_ip, flow.client_port, flow.server_ip,
                                 flow.server_port)
        if found is None:
            return UNKNOWN
        inode, uid = found
        pid = self.owners.pid_of(inode)
        if pid is None:
            time.sleep(self.owners.due())    # one more scan, when one is allowed
            pid = self.owners.pid_of(inode)
        if self.owners.denied and not self._said_denied:
            self._said_denied = True
            print(f"egress-auditor: attribution: the sockets of {self.owners.denied} processes "
                  "are not readable (other users' processes need CAP_SYS_PTRACE and "
                  "CAP_DAC_READ_SEARCH); their flows stay unattributed", file=sys.stderr)
        if pid is None:
            return UNKNOWN
        info = self.processes.info(pid)
        if info is None:
            return UNKNOWN
        owner = Owner(known=True, pid=pid, name=info.name, executable=info.executable,
                      uid=info.uid if info.uid is not None else uid,
                      container_id=info.cgroup.container_id, pod_uid=info.cgroup.pod_uid)
        if owner.container_id:
            owner.container_name, owner.image = self.docker.lookup(owner.container_id)
        return owner
