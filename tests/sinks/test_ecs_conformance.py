"""The audit events are true ECS: every field of every event of the scenario captures (and of
some real third-party ones) is checked against Elastic's own `ecs_flat.yml` (ECS 9.4.0,
vendored in tests/data/ecs with its source): the name exists, the value fits the field's type,
allowed values hold, event.type fits each event.category. Fields ECS has no place for are
under `egress_auditor.*` or declared custom (`tls.client.ja4`) in the shipped custom-field
definition. The shipped Elasticsearch template maps every field with a compatible type, and
the committed template files are what the generator writes today."""
from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from auditor import schema
from auditor.sinks import index_template

ROOT = Path(__file__).resolve().parents[2]
ECS = yaml.safe_load((ROOT / "tests/data/ecs/ecs_flat-9.4.0.yml").read_text())
SCEN = ROOT / "pcaps/scenarios"
REAL = ROOT / "pcaps/real"
CAPTURES = [*sorted(SCEN.glob("*.pcap")), REAL / "tls13-curl-with-dns.pcap",
            REAL / "quic-chrome-with-dns.pcap", REAL / "dnstunnel-dnscat2.pcap",
            REAL / "http-ipv4-and-ipv6.pcapng",
            ROOT / "pcaps/tunnels/tunnel-nested-6in4-gre-vxlan.pcap",
            ROOT / "pcaps/tunnels/tunnel-vxlan8472-dns-tls-http.pcap"]


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ecs") / "events.jsonl"
    # One replay of every capture in turn (start-up once, not per file).
    subprocess.run([sys.executable, "-m", "auditor", "replay", *map(str, CAPTURES), "--policy",
                    str(SCEN / "policy.yaml"), "--node-network", "10.0.0.0/8",
                    "--node-network", "192.168.0.0/16", "--node-network", "172.16.0.0/12",
                    "--events", str(out), "--quiet"], check=True, cwd=ROOT, timeout=300,
                   stderr=subprocess.DEVNULL)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert {d["event"]["action"] for d in lines} == {"flow", "violation", "dns", "finding"}
    return lines


def flatten(doc: dict, prefix: str = "") -> dict[str, object]:
    """ECS field name -> value (lists of objects contribute their members' fields)."""
    out: dict[str, object] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, list) and not value:
            continue                                # an empty list has no type to check
        if isinstance(value, dict) and name != "egress_auditor.evidence":
            out.update(flatten(value, name + "."))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                for k, v in flatten(item, name + ".").items():
                    out.setdefault(k, v)
        else:
            out[name] = value
    return out


def fits(ecs_type: str, value: object) -> bool:
    values = value if isinstance(value, list) else [value]
    for v in values:
        if ecs_type in ("keyword", "constant_keyword", "wildcard", "match_only_text", "text"):
            ok = isinstance(v, str)
        elif ecs_type in ("long", "integer", "short", "byte", "unsigned_long"):
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif ecs_type in ("float", "double", "scaled_float", "half_float"):
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        elif ecs_type == "boolean":
            ok = isinstance(v, bool)
        elif ecs_type == "date":
            ok = isinstance(v, str) and bool(datetime.fromisoformat(v.replace("Z", "+00:00")))
        elif ecs_type == "ip":
            ok = isinstance(v, str) and bool(ipaddress.ip_address(v))
        else:
            ok = False
        if not ok:
            return False
    return True


def test_every_field_is_an_ecs_field_of_the_right_type(docs):
    custom = index_template.CUSTOM_ECS_FIELDS
    problems = set()
    for doc in docs:
        for name, value in flatten(doc).items():
            if name.startswith("egress_auditor.") or name in custom:
                continue
            spec = ECS.get(name)
            if spec is None:
                problems.add(f"{name}: not an ECS field")
            elif spec["level"] not in ("core", "extended"):
                problems.add(f"{name}: level {spec['level']}")
            elif not fits(spec["type"], value):
                problems.add(f"{name}: {value!r} does not fit ECS type {spec['type']}")
            elif "allowed_values" in spec:
                allowed = {a["name"] for a in spec["allowed_values"]}
                bad = {v for v in (value if isinstance(value, list) else [value]) if v not in allowed}
                if bad:
                    problems.add(f"{name}: {sorted(bad)} not among ECS's allowed values")
    assert not problems, "\n".join(sorted(problems))


def test_event_types_are_expected_for_each_category(docs):
    expected = {a["name"]: set(a.get("expected_event_types", []))
                for a in ECS["event.category"]["allowed_values"]}
    for doc in docs:
        ev = doc["event"]
        for category in ev["category"]:
            assert set(ev["type"]) <= expected[category], (category, ev["type"])
        assert ev["kind"] in ("event", "alert") and doc["ecs"]["version"] == "9.4.0"


def test_every_event_has_a_unique_id_and_flow_events_share_the_community_id(docs):
    ids = [d["event"]["id"] for d in docs]
    assert len(ids) == len(set(ids))
    by_flow: dict[str, set[str]] = {}
    for d in docs:
        fid = d["egress_auditor"].get("flow_id")
        if fid and "network" in d:
            by_flow.setdefault(fid, set()).add(d["network"]["community_id"])
    assert by_flow and all(len(cids) == 1 for cids in by_flow.values())
    violations = [d for d in docs if d["event"]["action"] == "violation"]
    flows = {d["egress_auditor"]["flow_id"] for d in docs if d["event"]["action"] == "flow"}
    assert violations and all(v["egress_auditor"]["flow_id"] in flows for v in violations)


def test_findings_rules_and_icmp_as_ecs_says(docs):
    for d in docs:
        ev = d["event"]
        if ev["action"] == "finding":
            assert ev["kind"] == "alert" and ev["category"] == ["network", "intrusion_detection"]
            assert ev["type"] == ["info"] and isinstance(ev["severity"], int)
        if ev["action"] in ("flow", "violation"):
            assert d.get("rule", {}).get("name") != "no_matching_rule"
            if d["egress_auditor"].get("reason") == "no_matching_rule":
                assert "name" not in d.get("rule", {})
            if d["network"]["transport"] == "icmp":
                assert "port" not in d["source"] and "port" not in d["destination"]
        if ev["action"] == "dns":
            assert d["network"]["direction"] in ("egress", "ingress")
            assert isinstance(d["dns"]["id"], str)


def test_the_index_template_maps_every_field_compatibly(docs):
    mapped = index_template.flat_types()
    for doc in docs:
        for name, value in flatten(doc).items():
            assert name in mapped, f"{name} is not in the index template"
            if mapped[name] != "flattened":
                assert fits(mapped[name], value), (name, mapped[name], value)
    for name, es_type in mapped.items():     # ECS fields are mapped with ECS's own types
        spec = ECS.get(name)
        if spec is not None:
            assert es_type == spec["type"] or (spec["type"] == "object" and es_type == "flattened"), \
                (name, es_type, spec["type"])


def test_shipped_template_files_are_current():
    shipped = json.loads((ROOT / "deploy/elasticsearch/egress-auditor-template.json").read_text())
    assert shipped == index_template.index_template()
    custom = yaml.safe_load((ROOT / "deploy/elasticsearch/egress_auditor-ecs-custom.yml").read_text())
    assert custom == index_template.ecs_custom_fields()
    assert {f["level"] for s in custom for f in s["fields"]} == {"custom"}


def test_every_emitted_line_validates_against_the_models(docs):
    for d in docs:
        schema.validate(d)


def test_tunnelled_flows_carry_their_encapsulation(docs):
    """Golden: the depth-3 capture (IPv6-in-IPv4, GRE key 99, VXLAN VNI 5001) gives the TLS
    flow inside with every hop, and each carrier as a flow of its own with its transport."""
    flows = [d for d in docs if d["event"]["action"] == "flow"]
    dns = [d for d in docs if d["event"]["action"] == "dns" and "tunnel" in d["egress_auditor"]]
    assert {d["egress_auditor"]["tunnel"]["type"] for d in dns} == {"vxlan"}
    inner = [d for d in flows if d.get("tls", {}).get("client", {}).get("server_name") == "pypi.org"
             and d["egress_auditor"].get("tunnel", {}).get("depth") == 3]
    assert len(inner) == 1
    assert inner[0]["egress_auditor"]["tunnel"] == {
        "type": "vxlan", "id": 5001, "source_ip": "192.168.50.1", "destination_ip": "192.168.50.2",
        "depth": 3, "layers": ["ipv6-in-ip", "gre", "vxlan"]}
    assert (inner[0]["source"]["ip"], inner[0]["destination"]["ip"]) == ("10.244.1.7", "151.101.0.223")
    carriers = {(d["network"]["transport"], d["destination"]["ip"],
                 tuple(d["egress_auditor"].get("tunnel", {}).get("layers", ())))
                for d in flows if d["destination"]["ip"] in ("52.160.10.20", "fd00:2::9",
                                                             "192.168.50.2")}
    # (the GRE carrier between fd00:1::4 and fd00:2::9 is not egress for these node networks)
    assert carriers >= {("ipv6", "52.160.10.20", ()), ("udp", "192.168.50.2", ("ipv6-in-ip", "gre"))}
