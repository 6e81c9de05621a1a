"""The audit events as pydantic models (ECS field names): the contract of SPEC §9.

`egress-auditor schema` prints their JSON Schema; the tests validate every line the JSONL
sink writes against them (extra fields forbidden), so the writer in `sinks/ecs.py` and this
description cannot drift apart.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Event(_M):
    kind: Literal["event", "alert"]
    category: list[Literal["network"]]
    action: Literal["flow", "violation", "dns", "finding"]
    type: list[Literal["connection", "allowed", "denied", "protocol", "indicator"]]
    start: datetime | None = None
    end: datetime | None = None
    duration: int | None = Field(None, description="nanoseconds")


class Observer(_M):
    hostname: str


class Endpoint(_M):
    ip: str
    port: int | None = None
    bytes: int | None = Field(None, description="IP-layer bytes as the IP headers state them")
    packets: int | None = None
    domain: str | None = None


class Network(_M):
    transport: str
    protocol: Literal["tls", "http", "dns", "quic"] | None = None
    direction: Literal["egress", "ingress"] | None = None


class TlsClient(_M):
    server_name: str


class Tls(_M):
    client: TlsClient


class Url(_M):
    domain: str


class Rule(_M):
    name: str
    ruleset: str | None = Field(None, description="the isolation mode the flow was judged in")


class DnsQuestion(_M):
    name: str
    type: str


class DnsAnswer(_M):
    name: str
    type: str
    data: str
    ttl: int


class Dns(_M):
    id: int
    type: Literal["answer"]
    response_code: str
    question: DnsQuestion | None = None
    answers: list[DnsAnswer]
    resolved_ip: list[str] | None = None
    header_flags: list[str] | None = None


class AuditorFields(_M):
    version: str
    verdict: Literal["allowed", "denied"] | None = None
    reason: str | None = None
    rule_type: str | None = None
    service_tag: str | None = None
    private_endpoint: str | None = None
    name_source: Literal["sni", "quic_sni", "http_host", "dns", "none"] | None = None
    dns_chain: list[str] | None = None
    ech: bool | None = None
    invalid_name: str | None = Field(None, description="an SNI/Host that is not a valid host "
                                     "name: it named nothing (kept as evidence, cut to 512 chars)")
    name_ambiguous: bool | None = Field(None, description="a retransmission disagreed with the "
                                        "bytes that named the flow: its SNI/Host was not trusted")
    solicited: bool | None = Field(None, description="dns: answers a query this client sent")
    severity: Literal["low", "medium", "high", "critical"] | None = None
    key: str | None = None
    evidence: dict[str, Any] | None = None


class _Common(_M):
    timestamp: datetime = Field(alias="@timestamp")
    event: Event
    observer: Observer
    egress_auditor: AuditorFields


class FlowEvent(_Common):
    """`flow` (at flow end) and `violation` (when a denial is decided, no final counts)."""
    source: Endpoint
    destination: Endpoint
    network: Network
    tls: Tls | None = None
    url: Url | None = None
    rule: Rule | None = None


class DnsEvent(_Common):
    source: Endpoint
    destination: Endpoint
    network: Network
    dns: Dns


class FindingEvent(_Common):
    rule: Rule
    source: Endpoint | None = None
    destination: Endpoint | None = None


AuditEvent = Union[FlowEvent, DnsEvent, FindingEvent]
_adapter: TypeAdapter = TypeAdapter(AuditEvent)

_BY_ACTION: dict[str, type[_Common]] = {"flow": FlowEvent, "violation": FlowEvent, "dns": DnsEvent, "finding": FindingEvent}


def validate(doc: dict) -> _Common:
    """Validate one emitted event against the model its `event.action` names."""
    action = doc.get("event", {}).get("action")
    model = _BY_ACTION.get(action)
    if model is None:
        raise ValueError(f"unknown event.action {action!r}")
    return model.model_validate(doc)


def json_schema() -> dict:
    schema = _adapter.json_schema(by_alias=True)
    schema["title"] = "egress-auditor audit event"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
