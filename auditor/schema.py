"""The audit events as pydantic models (ECS field names): the event contract (docs/events.md).

`egress-auditor schema` prints their JSON Schema; the tests validate every line the JSONL
sink writes against them (extra fields forbidden), so the writer in `sinks/ecs.py` and this
description cannot drift apart. The Elasticsearch index template and the ECS custom-field
definition (`sinks/index_template.py`) are generated from these models too: a field's
Elasticsearch type is its `es` annotation, else follows from its Python type.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


def _es(kind: str, description: str | None = None) -> Any:
    return Field(None, description=description, json_schema_extra={"es": kind})


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Ecs(_M):
    version: str = Field(description="the ECS version the event follows")


class Event(_M):
    id: str = Field(description="unique per event (random run prefix, counter)")
    kind: Literal["event", "alert"]
    category: list[Literal["network", "intrusion_detection"]]
    action: Literal["flow", "violation", "dns", "finding"]
    type: list[Literal["connection", "end", "allowed", "denied", "protocol", "info"]]
    dataset: str = Field(description="egress_auditor.<action>")
    module: Literal["egress_auditor"]
    reason: str | None = Field(None, description="the verdict's reason (flow, violation)")
    severity: int | None = Field(None, description="finding: 21 low, 47 medium, 73 high, 99 critical")
    risk_score: float | None = Field(None, description="finding: same scale as severity")
    start: datetime | None = None
    end: datetime | None = None
    duration: int | None = Field(None, description="nanoseconds")


class Observer(_M):
    hostname: str
    name: str = Field(description="the node's name (Kubernetes: the downward API's node name)")
    product: Literal["egress-auditor"]
    vendor: str
    type: Literal["sensor"]
    version: str


class Host(_M):
    hostname: str
    name: str


class CloudInstance(_M):
    id: str


class Cloud(_M):
    provider: str | None = None
    region: str | None = None
    instance: CloudInstance | None = None


class Endpoint(_M):
    ip: str = Field(json_schema_extra={"es": "ip"})
    port: int | None = Field(None, description="absent on ICMP flows")
    bytes: int | None = Field(None, description="IP-layer bytes as the IP headers state them")
    packets: int | None = None
    domain: str | None = None
    registered_domain: str | None = Field(None, description="eTLD+1 from the Public Suffix List")


class Network(_M):
    transport: str | None = Field(None, description="tcp, udp, icmp, gre, ipv4 (IP-in-IP), ipv6 "
                                  "(IPv6-in-IP), or the IP protocol number")
    iana_number: str | None = None
    type: Literal["ipv4", "ipv6"] | None = None
    protocol: Literal["tls", "http", "dns", "quic"] | None = None
    direction: Literal["egress", "ingress"] | None = None
    community_id: str = Field(description="Community ID v1, seed 0")


class TlsClient(_M):
    server_name: str | None = None
    ja4: str | None = Field(None, description="JA4 fingerprint of the ClientHello (FoxIO's "
                            "specification); a custom field, as ECS 9.4 has none")


class Tls(_M):
    client: TlsClient
    version: str | None = Field(None, description="highest version the client offered, e.g. 1.3")
    version_protocol: Literal["tls"] | None = None
    next_protocol: str | None = Field(None, description="the first ALPN value, lower case")


class Url(_M):
    domain: str


class Rule(_M):
    name: str | None = Field(None, description="the policy rule that decided (absent when no rule "
                             "did: platform, isolation mode, no_matching_rule), or the detector")
    ruleset: str | None = Field(None, description="the policy's name (workspace, else file name); "
                                "`egress-auditor detectors` for findings")


class DnsQuestion(_M):
    name: str
    type: str
    registered_domain: str | None = None


class DnsAnswer(_M):
    name: str
    type: str
    data: str
    ttl: int


class Dns(_M):
    id: str = Field(description="the transaction id (a keyword in ECS)")
    type: Literal["answer"]
    response_code: str
    question: DnsQuestion | None = None
    answers: list[DnsAnswer]
    resolved_ip: list[str] | None = Field(None, json_schema_extra={"es": "ip"})
    header_flags: list[str] | None = None


class Process(_M):
    pid: int
    name: str | None = None
    executable: str | None = None


class User(_M):
    id: str


class ContainerImage(_M):
    name: str


class Container(_M):
    id: str
    name: str | None = None
    image: ContainerImage | None = None


class Icmp(_M):
    type: int = Field(description="ICMP type of the flow's first packet")
    code: int | None = Field(None, description="ICMP code of the flow's first packet")


class Socks(_M):
    version: int = Field(description="SOCKS version of the client's request (SOCKS4a is 4)")
    command: Literal["connect", "bind", "udp_associate"] = Field(description="what it asked for")
    target: str = Field(description="the host the client asked the proxy to reach: the domain "
                        "as sent (SOCKS4a, SOCKS5) or an address; cut to 255 chars. A claim of "
                        "the client's: the flow itself goes to the proxy")
    target_port: int = Field(description="the port it asked the proxy to reach")


class ToolObserver(_M):
    pod_name: str | None = Field(None, description="the auditor's own pod (downward API)")
    pod_namespace: str | None = Field(None, description="the auditor's own pod's namespace")
    node_name: str | None = Field(None, description="the node the auditor runs on")


class Kubernetes(_M):
    pod_uid: str | None = Field(None, description="the pod that opened the flow (from its cgroup)")


class Tunnel(_M):
    type: Literal["vxlan", "geneve", "teredo", "gre", "ip-in-ip", "ipv6-in-ip", "mpls"] = Field(
        description="the encapsulation that carries the flow (the innermost one)")
    id: int | None = Field(None, description="its VXLAN/Geneve VNI, GRE key (PPTP: call id) "
                           "or bottom MPLS label; absent when the header has none")
    source_ip: str | None = Field(None, description="outer source address (the client's "
                                  "side) of the nearest IP header around the flow",
                                  json_schema_extra={"es": "ip"})
    destination_ip: str | None = Field(None, description="outer destination address of that "
                                       "header", json_schema_extra={"es": "ip"})
    depth: int = Field(description="how many encapsulations are around the flow (1 = one)")
    layers: list[str] = Field(description="the encapsulation types, outermost first")


class AuditorFields(_M):
    version: str = Field(description="the egress-auditor version that wrote the event")
    flow_id: str | None = Field(None, description="the same on every event about one flow")
    verdict: Literal["allowed", "denied"] | None = Field(None, description="the policy's verdict")
    reason: str | None = Field(None, description="why: platform, isolation_disabled, "
                               "private_endpoint, internet_outbound, service_tag_deny, service_tag, "
                               "fqdn, fqdn_needs_sni_or_host, fqdn_port_not_supported, "
                               "storage_requires_private_endpoint, no_matching_rule")
    rule_type: str | None = Field(None, description="platform, mode, private_endpoint, "
                                  "service_tag, fqdn or none")
    isolation_mode: str | None = Field(None, description="the mode the flow was judged in")
    service_tag: str | None = Field(None, description="the service tag that matched")
    private_endpoint: str | None = Field(None, description="the private endpoint's resource id")
    name_source: Literal["sni", "quic_sni", "http_host", "socks", "dns", "none"] | None = Field(
        None, description="what named the flow (destination.domain); socks: the target a SOCKS "
        "client asked for (else the SNI sent through it), which no FQDN rule accepts")
    dns_chain: list[str] | None = Field(None, description="the DNS names that led the client to "
                                        "the address: queried name, then CNAME targets")
    ech: bool | None = Field(None, description="the ClientHello offered Encrypted Client Hello "
                             "(only the outer SNI is visible)")
    invalid_name: str | None = Field(None, description="an SNI/Host that is not a valid host "
                                     "name: it named nothing (kept as evidence, cut to 512 chars)")
    name_ambiguous: bool | None = Field(None, description="a retransmission disagreed with the "
                                        "bytes that named the flow: its SNI/Host was not trusted")
    midstream: bool | None = Field(None, description="the flow was already running at capture start")
    icmp: Icmp | None = None
    socks: Socks | None = None
    tunnel: Tunnel | None = Field(None, description="the flow was found inside a tunnel; its "
                                  "5-tuple is the inner one")
    solicited: bool | None = Field(None, description="dns: answers a query this client sent")
    attribution: Literal["known", "unknown"] | None = Field(
        None, description="live: whether the workload that opened the flow could be told")
    kubernetes: Kubernetes | None = None
    observer: ToolObserver | None = None
    severity: Literal["low", "medium", "high", "critical"] | None = Field(
        None, description="finding: the detector's severity")
    key: str | None = Field(None, description="finding: what it is about (fires once per key per window)")
    key_kind: Literal["ip", "name", "domain", "flow"] | None = Field(
        None, description="finding: what the key names")
    evidence: dict[str, Any] | None = Field(None, description="typed per detector (see "
                                            "`x-evidence`); flattened in the index",
                                            json_schema_extra={"es": "flattened"})


class _Common(_M):
    timestamp: datetime = Field(alias="@timestamp")
    ecs: Ecs
    event: Event
    observer: Observer
    host: Host | None = None
    cloud: Cloud | None = None
    egress_auditor: AuditorFields


class FlowEvent(_Common):
    """`flow` (at flow end) and `violation` (when a denial is decided, no final counts)."""
    source: Endpoint
    destination: Endpoint
    network: Network
    tls: Tls | None = None
    url: Url | None = None
    rule: Rule | None = None
    process: Process | None = None
    user: User | None = None
    container: Container | None = None


class DnsEvent(_Common):
    source: Endpoint
    destination: Endpoint
    network: Network
    dns: Dns


class FindingEvent(_Common):
    rule: Rule
    source: Endpoint | None = None
    destination: Endpoint | None = None
    network: Network | None = None


AuditEvent = Union[FlowEvent, DnsEvent, FindingEvent]
MODELS: tuple[type[_Common], ...] = (FlowEvent, DnsEvent, FindingEvent)
_adapter: TypeAdapter = TypeAdapter(AuditEvent)

_BY_ACTION: dict[str, type[_Common]] = {"flow": FlowEvent, "violation": FlowEvent,
                                        "dns": DnsEvent, "finding": FindingEvent}


def validate(doc: dict) -> _Common:
    """Validate one emitted event against the model its `event.action` names."""
    action = doc.get("event", {}).get("action")
    model = _BY_ACTION.get(action)
    if model is None:
        raise ValueError(f"unknown event.action {action!r}")
    return model.model_validate(doc)


def json_schema(evidence: dict[str, type[BaseModel]] | None = None) -> dict:
    """The JSON Schema of the events; `evidence` (detector name -> its evidence model) is
    described under `x-evidence` (`egress_auditor.evidence` is typed per detector)."""
    schema = _adapter.json_schema(by_alias=True)
    schema["title"] = "egress-auditor audit event"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    if evidence:
        schema["x-evidence"] = {name: model.model_json_schema() for name, model in evidence.items()}
    return schema
