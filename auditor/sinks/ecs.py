"""Audit events as Elastic Common Schema documents (plain dicts, one JSON line each).

Built by hand rather than through the pydantic models in `auditor.schema` because this runs
once per flow and per DNS response; the models describe exactly these shapes (the schema
command prints them, and the tests validate every emitted line against them).
"""
from __future__ import annotations

import socket
from datetime import datetime, timezone

from auditor import __version__, hostnames
from auditor.decode import dns
from auditor.events import DnsAnswered, Finding
from auditor.flow import Flow

HOSTNAME = socket.gethostname()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _base(ts: float, kind: str, action: str) -> dict:
    return {
        "@timestamp": iso(ts),
        "event": {"kind": kind, "category": ["network"], "action": action},
        "observer": {"hostname": HOSTNAME},
    }


def _tail(doc: dict, extra: dict) -> dict:
    extra["version"] = __version__
    doc["egress_auditor"] = extra
    return doc


def flow_event(flow: Flow, action: str = "flow", ts: float | None = None, ruleset: str | None = None) -> dict:
    """`flow` at flow end (final counts) or `violation` as soon as a denial is decided."""
    verdict = flow.verdict
    doc = _base(flow.last if ts is None else ts, "event" if action == "flow" else "alert", action)
    ev = doc["event"]
    ev["type"] = ["connection"] + ([] if verdict is None else ["allowed" if verdict.allowed else "denied"])
    ev["start"] = iso(flow.start)
    if action == "flow":
        ev["end"] = iso(flow.last)
        ev["duration"] = int((flow.last - flow.start) * 1e9)
    doc["source"] = {"ip": flow.client_ip, "port": flow.client_port,
                     "bytes": flow.c_bytes, "packets": flow.c_packets}
    dest = {"ip": flow.server_ip, "port": flow.server_port,
            "bytes": flow.s_bytes, "packets": flow.s_packets}
    if action != "flow":  # a violation is raised mid-flow: its counts are not final
        for d in (doc["source"], dest):
            del d["bytes"], d["packets"]
    if flow.domain:
        dest["domain"] = flow.domain
    doc["destination"] = dest
    net = {"transport": flow.transport, "direction": "egress" if flow.egress else "ingress"}
    if flow.app_protocol:
        net["protocol"] = flow.app_protocol
    doc["network"] = net
    server_name = flow.sni or flow.quic_sni
    if server_name:
        doc["tls"] = {"client": {"server_name": server_name}}
    host = hostnames.http_host(flow.http_host) if flow.http_host else None
    if host:
        doc["url"] = {"domain": host}
    extra: dict = {"name_source": flow.name_source}
    if flow.dns_chain:
        extra["dns_chain"] = list(flow.dns_chain)
    if flow.ech:
        extra["ech"] = True
    if flow.invalid_name:
        extra["invalid_name"] = flow.invalid_name[:512]
    if flow.ambiguous:
        extra["name_ambiguous"] = True
    if verdict is not None:
        doc["rule"] = {"name": verdict.rule or verdict.reason}
        if ruleset:
            doc["rule"]["ruleset"] = ruleset
        extra["verdict"] = "allowed" if verdict.allowed else "denied"
        extra["reason"] = verdict.reason
        extra["rule_type"] = verdict.rule_type
        if verdict.service_tag:
            extra["service_tag"] = verdict.service_tag
        if verdict.private_endpoint:
            extra["private_endpoint"] = verdict.private_endpoint
    return _tail(doc, extra)


def dns_event(ev: DnsAnswered) -> dict:
    msg, flow = ev.message, ev.flow
    doc = _base(ev.ts, "event", "dns")
    doc["event"]["type"] = ["protocol"]
    # The response travels server -> client; ECS puts the querier in `source`.
    doc["source"] = {"ip": flow.client_ip, "port": flow.client_port}
    doc["destination"] = {"ip": flow.server_ip, "port": flow.server_port}
    doc["network"] = {"transport": flow.transport, "protocol": "dns"}
    d = {"id": msg.id, "type": "answer", "response_code": dns.rcode_name(msg.rcode)}
    if msg.questions:
        qname, qtype = msg.questions[0]
        d["question"] = {"name": qname, "type": dns.type_name(qtype)}
    d["answers"] = [{"name": r.name, "type": dns.type_name(r.rtype), "data": r.data, "ttl": r.ttl}
                    for r in msg.answers]
    if ev.chains:
        d["resolved_ip"] = list(ev.chains)
    if msg.truncated:
        d["header_flags"] = ["TC"]
    doc["dns"] = d
    return _tail(doc, {"solicited": ev.solicited})


def finding_event(f: Finding) -> dict:
    doc = _base(f.ts, "alert", "finding")
    doc["event"]["type"] = ["indicator"]
    doc["rule"] = {"name": f.detector}
    flow = f.flow
    src_ip = f.source_ip or (flow.client_ip if flow else None)
    dst_ip = f.destination_ip or (flow.server_ip if flow else None)
    dst_port = f.destination_port or (flow.server_port if flow else None)
    domain = f.destination_domain or (flow.domain if flow else None)
    if src_ip:
        doc["source"] = {"ip": src_ip}
    dest = {k: v for k, v in (("ip", dst_ip), ("port", dst_port), ("domain", domain)) if v}
    if dest:
        doc["destination"] = dest
    return _tail(doc, {"severity": f.severity, "key": f.key, "evidence": f.evidence})
