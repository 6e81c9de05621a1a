"""Audit events as Elastic Common Schema documents (plain dicts, one JSON line each).

True to ECS's `ecs_flat.yml` (names, types, allowed values): `tests/sinks/test_ecs_conformance.py`
checks every field of every event of the scenario captures against the vendored copy. What
ECS has no field for lives under `egress_auditor.*` (declared in
`deploy/elasticsearch/egress_auditor-ecs-custom.yml`), and `tls.client.ja4` extends the `tls`
field set the way `tls.client.ja3` does (ECS 9.4 has no JA4 field).

Built by hand rather than through the pydantic models in `auditor.schema` because this runs
once per flow and per DNS response; the models describe exactly these shapes (the schema
command prints them, and the tests validate every emitted line against them).
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from auditor import __version__, hostnames
from auditor.addresses import text as ip_text
from auditor.decode import dns
from auditor.events import DnsAnswered, Finding
from auditor.flow import Flow
from auditor.hostnames import normalise, registered_domain
from auditor.sinks.identity import Ids, flow_community_id

ECS_VERSION = "9.4.0"
# Elastic's detection-rule convention: one number for severity and risk score per level.
SEVERITY = {"low": 21, "medium": 47, "high": 73, "critical": 99}
_ICMP = (1, 58)
_DATASETS = {a: f"egress_auditor.{a}" for a in ("flow", "violation", "dns", "finding")}
_SOCKS_COMMANDS = {1: "connect", 2: "bind", 3: "udp_associate"}


_SECOND: list = [None, ""]      # (whole second, its "YYYY-MM-DDTHH:MM:SS" text): one entry
_LAST: list = [None, ""]        # (timestamp, its text): start, end and @timestamp often agree


def _tunnel(encap) -> dict:
    """`egress_auditor.tunnel` of a flow found inside a tunnel (a `decode.tunnel.Encap`)."""
    out: dict[str, Any] = {"type": encap.kind}
    if encap.ident is not None:
        out["id"] = encap.ident
    hop = encap
    while hop is not None and hop.src is None:     # MPLS has no addresses: the IP around it
        hop = hop.parent
    if hop is not None:
        out["source_ip"], out["destination_ip"] = ip_text(hop.src), ip_text(hop.dst)
    out["depth"] = encap.depth
    out["layers"] = [h.kind for h in encap.chain()]
    return out


def iso(ts: float) -> str:
    """UTC ISO 8601 to the microsecond, rounded as `datetime.fromtimestamp` rounds; the date
    part is formatted once per second (events come in bursts within the same second)."""
    if ts == _LAST[0]:
        return _LAST[1]
    frac, whole = math.modf(ts)
    us = round(frac * 1e6)
    if us >= 1_000_000:
        whole, us = whole + 1, us - 1_000_000
    elif us < 0:
        whole, us = whole - 1, us + 1_000_000
    if whole != _SECOND[0]:
        _SECOND[1] = datetime.fromtimestamp(whole, timezone.utc).replace(tzinfo=None) \
            .isoformat(timespec="seconds")
        _SECOND[0] = whole
    text = f"{_SECOND[1]}.{us:06d}Z"
    _LAST[0], _LAST[1] = ts, text
    return text


class EcsFormatter:
    """Turns pipeline events into ECS documents for one run (its ids, observer, policy)."""

    def __init__(self, *, ids: Ids | None = None, observer: dict | None = None,
                 host: dict | None = None, cloud: dict | None = None,
                 ruleset: str | None = None, isolation_mode: str | None = None,
                 tool_observer: dict | None = None) -> None:
        self.ids = ids or Ids()
        self.observer = observer or {}
        self.host = host or {}
        self.cloud = cloud or None
        self.ruleset = ruleset
        self.isolation_mode = isolation_mode
        self.tool_observer = tool_observer or None

    # -- shared -------------------------------------------------------------------------
    def _base(self, ts: float, kind: str, action: str, category: list[str], etype: list[str]) -> dict:
        doc: dict[str, Any] = {
            "@timestamp": iso(ts),
            "ecs": {"version": ECS_VERSION},
            "event": {"id": self.ids.event(), "kind": kind, "category": category, "type": etype,
                      "action": action, "dataset": _DATASETS[action], "module": "egress_auditor"},
            "observer": self.observer,
        }
        if self.host:
            doc["host"] = self.host
        if self.cloud:
            doc["cloud"] = self.cloud
        return doc

    def _tool(self, doc: dict, extra: dict) -> dict:
        extra["version"] = __version__
        if self.tool_observer:
            extra["observer"] = self.tool_observer
        doc["egress_auditor"] = extra
        return doc

    @staticmethod
    def _endpoints(doc: dict, flow: Flow, with_counts: bool) -> None:
        icmp = flow.proto in _ICMP
        src: dict[str, Any] = {"ip": flow.client_ip}
        dst: dict[str, Any] = {"ip": flow.server_ip}
        if not icmp:
            src["port"], dst["port"] = flow.client_port, flow.server_port
        if with_counts:
            src["bytes"], src["packets"] = flow.c_bytes, flow.c_packets
            dst["bytes"], dst["packets"] = flow.s_bytes, flow.s_packets
        if flow.domain:
            dst["domain"] = flow.domain
            reg = registered_domain(normalise(flow.domain))
            if reg:
                dst["registered_domain"] = reg
        doc["source"], doc["destination"] = src, dst

    def _network(self, flow: Flow, protocol: str | None) -> dict:
        net: dict[str, Any] = {"transport": flow.transport, "iana_number": str(flow.proto),
                               "type": "ipv6" if ":" in flow.client_ip else "ipv4",
                               "direction": "egress" if flow.egress else "ingress",
                               "community_id": flow_community_id(flow)}
        if protocol:
            net["protocol"] = protocol
        return net

    # -- the four actions ---------------------------------------------------------------
    def flow(self, flow: Flow, action: str = "flow", ts: float | None = None) -> dict:
        """`flow` at flow end (final counts) or `violation` as soon as a denial is decided."""
        verdict = flow.verdict
        etype = ["connection"]
        if action == "flow":
            etype.append("end")
        if verdict is not None:
            etype.append("allowed" if verdict.allowed else "denied")
        doc = self._base(flow.last if ts is None else ts, "event" if action == "flow" else "alert",
                         action, ["network"], etype)
        ev = doc["event"]
        ev["start"] = iso(flow.start)
        if action == "flow":
            ev["end"] = doc["@timestamp"] if ts is None else iso(flow.last)
            ev["duration"] = (flow.last_ns - flow.start_ns if flow.last_ns is not None
                              and flow.start_ns is not None
                              else round((flow.last - flow.start) * 1e9))
        self._endpoints(doc, flow, with_counts=action == "flow")
        doc["network"] = self._network(flow, flow.app_protocol)
        server_name = flow.sni or flow.quic_sni
        if server_name or flow.ja4:
            client: dict[str, Any] = {}
            if server_name:
                client["server_name"] = server_name
            if flow.ja4:
                client["ja4"] = flow.ja4
            tls: dict[str, Any] = {"client": client}
            if flow.tls_version:
                tls["version"], tls["version_protocol"] = flow.tls_version, "tls"
            if flow.alpn:
                tls["next_protocol"] = flow.alpn[0].lower()
            doc["tls"] = tls
        host = hostnames.http_host(flow.http_host) if flow.http_host else None
        if host:
            doc["url"] = {"domain": host}
        extra: dict[str, Any] = {"name_source": flow.name_source, "flow_id": self.ids.flow(flow)}
        if flow.dns_chain:
            extra["dns_chain"] = list(flow.dns_chain)
        if flow.ech:
            extra["ech"] = True
        if flow.invalid_name:
            extra["invalid_name"] = flow.invalid_name[:512]
        if flow.ambiguous:
            extra["name_ambiguous"] = True
        if flow.midstream:
            extra["midstream"] = True
        if flow.socks is not None:
            req = flow.socks
            extra["socks"] = {"version": req.version, "command": _SOCKS_COMMANDS.get(req.command),
                              "target": req.host[:255], "target_port": req.port}
        if flow.proto in _ICMP and flow.icmp_type is not None:
            extra["icmp"] = {"type": flow.icmp_type, "code": flow.icmp_code}
        if flow.tunnel is not None:
            extra["tunnel"] = _tunnel(flow.tunnel)
        if verdict is not None:
            ev["reason"] = reason = verdict.reason.value
            doc["rule"] = {"ruleset": self.ruleset} if self.ruleset else {}
            if verdict.rule:
                doc["rule"]["name"] = verdict.rule
            if not doc["rule"]:
                del doc["rule"]
            extra["verdict"] = "allowed" if verdict.allowed else "denied"
            extra["reason"] = reason
            extra["rule_type"] = verdict.rule_type
            if self.isolation_mode:
                extra["isolation_mode"] = self.isolation_mode
            if verdict.service_tag:
                extra["service_tag"] = verdict.service_tag
            if verdict.private_endpoint:
                extra["private_endpoint"] = verdict.private_endpoint
        owner = flow.owner
        if owner is not None:
            owner.to_ecs(doc, extra)
        return self._tool(doc, extra)

    def dns(self, ev: DnsAnswered) -> dict:
        msg, flow = ev.message, ev.flow
        doc = self._base(ev.ts, "event", "dns", ["network"], ["protocol"])
        # ECS puts the querier (who receives the response) in `source`. It is the flow's
        # server when the flow is oriented the other way (a response seen first; a node's DNS
        # service answering a remote, whose flow the node end initiates): tshark's query and
        # response frames say who asked.
        querier = (flow.client_ip, flow.client_port)
        server = (flow.server_ip, flow.server_port)
        if not ev.to_client:
            querier, server = server, querier
        doc["source"] = {"ip": querier[0], "port": querier[1]}
        doc["destination"] = {"ip": server[0], "port": server[1]}
        doc["network"] = self._network(flow, "dns")
        d: dict[str, Any] = {"id": str(msg.id), "type": "answer",
                             "response_code": dns.rcode_name(msg.rcode)}
        if msg.questions:
            qname, qtype = msg.questions[0]
            question = {"name": qname, "type": dns.type_name(qtype)}
            reg = registered_domain(normalise(qname))
            if reg and reg != ".":
                question["registered_domain"] = reg
            d["question"] = question
        d["answers"] = [{"name": r.name, "type": dns.type_name(r.rtype), "data": r.data, "ttl": r.ttl}
                        for r in msg.answers]
        if ev.chains:
            d["resolved_ip"] = list(ev.chains)
        if msg.truncated:
            d["header_flags"] = ["TC"]
        doc["dns"] = d
        extra: dict[str, Any] = {"solicited": ev.solicited, "flow_id": self.ids.flow(flow)}
        if flow.tunnel is not None:
            extra["tunnel"] = _tunnel(flow.tunnel)
        return self._tool(doc, extra)

    def finding(self, f: Finding) -> dict:
        doc = self._base(f.ts, "alert", "finding", ["network", "intrusion_detection"], ["info"])
        score = SEVERITY.get(f.severity, 47)
        doc["event"]["severity"] = score
        doc["event"]["risk_score"] = float(score)
        doc["rule"] = {"name": f.detector, "ruleset": "egress-auditor detectors"}
        flow = f.flow
        src_ip = f.source_ip or (flow.client_ip if flow else None)
        dst_ip = f.destination_ip or (flow.server_ip if flow else None)
        dst_port = f.destination_port if f.destination_port is not None else (
            flow.server_port if flow else None)
        domain = f.destination_domain or (flow.domain if flow else None)
        if src_ip:
            doc["source"] = {"ip": src_ip}
        dest: dict[str, Any] = {k: v for k, v in (("ip", dst_ip), ("port", dst_port), ("domain", domain))
                                if v}
        if flow is not None and flow.proto in _ICMP:
            dest.pop("port", None)
        if domain:
            reg = registered_domain(normalise(domain))
            if reg:
                dest["registered_domain"] = reg
        if dest:
            doc["destination"] = dest
        extra: dict[str, Any] = {"severity": f.severity, "key": f.key, "key_kind": f.key_kind,
                                 "evidence": f.evidence}
        if flow is not None:
            doc["network"] = {"community_id": flow_community_id(flow)}
            extra["flow_id"] = self.ids.flow(flow)
        return self._tool(doc, extra)
