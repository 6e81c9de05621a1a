"""Who opened a flow, as events carry it: ECS `process.*`, `user.id`, `container.*`, and the
Kubernetes pod UID under `egress_auditor.kubernetes.pod_uid`. An owner that could not be told
is `egress_auditor.attribution: unknown`, never a guess."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Owner:
    known: bool = False
    pid: int | None = None
    name: str | None = None
    executable: str | None = None
    uid: int | None = None
    container_id: str | None = None
    container_name: str | None = None
    image: str | None = None
    pod_uid: str | None = None

    def workload(self) -> str:
        """A short label for metrics and the summary: container name, else process name."""
        if not self.known:
            return "unknown"
        return (self.container_name or (self.container_id or "")[:12] or self.name or "unknown")[:64]

    def to_ecs(self, doc: dict[str, Any], extra: dict[str, Any]) -> None:
        extra["attribution"] = "known" if self.known else "unknown"
        if not self.known:
            return
        proc: dict[str, Any] = {"pid": self.pid}
        if self.name:
            proc["name"] = self.name
        if self.executable:
            proc["executable"] = self.executable
        doc["process"] = proc
        if self.uid is not None:
            doc["user"] = {"id": str(self.uid)}
        if self.container_id:
            container: dict[str, Any] = {"id": self.container_id}
            if self.container_name:
                container["name"] = self.container_name
            if self.image:
                container["image"] = {"name": self.image}
            doc["container"] = container
        if self.pod_uid:
            extra["kubernetes"] = {"pod_uid": self.pod_uid}


UNKNOWN = Owner(known=False)
