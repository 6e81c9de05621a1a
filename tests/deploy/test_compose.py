"""docker-compose.yml without a Docker engine: the compose-spec schema, Debian's
`docker-compose config -q`, and the choices issue #5 asks for (host-network sidecar with only
NET_RAW/NET_ADMIN and --no-attribution, read-only root, a demo profile, healthchecks
everywhere, loopback ports that agree with each other, mounts that exist). The opt-in
attribution override (examples/compose/attribution.override.yml) is merged by docker-compose
itself: it changes the live auditor by the host PID namespace, two capabilities and the flag
only."""
from __future__ import annotations

import json

import pytest
import yaml

from .helpers import COMPOSE, DOCKERFILE, PROMETHEUS_YML, ROOT, run, tool

ATTRIBUTION_OVERRIDE = ROOT / "examples" / "compose" / "attribution.override.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_spec_schema():
    r = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", COMPOSE, ATTRIBUTION_OVERRIDE)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("profile", ["live", "demo"])
def test_docker_compose_config(profile):
    r = run(tool("docker-compose"), "--project-directory", ROOT, "-f", COMPOSE, "--profile", profile,
            "config", "-q", cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def merged(*files) -> dict:
    """`docker-compose config` of the files, as compose merges them (profile live)."""
    argv = [a for f in files for a in ("-f", f)]
    r = run(tool("docker-compose"), "--project-directory", ROOT, *argv, "--profile", "live", "config", cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    config = yaml.safe_load(r.stdout)
    for svc in config["services"].values():         # merging files reorders the mounts
        svc["volumes"] = sorted(svc.get("volumes", []))
    return config


def test_the_attribution_override_adds_only_what_attribution_needs(compose):
    override = yaml.safe_load(ATTRIBUTION_OVERRIDE.read_text())
    assert list(override) == ["services"] and list(override["services"]) == ["auditor"]
    assert set(override["services"]["auditor"]) == {"pid", "cap_add", "command"}
    base, with_it = merged(COMPOSE), merged(COMPOSE, ATTRIBUTION_OVERRIDE)
    a, b = base["services"]["auditor"], with_it["services"]["auditor"]
    assert "pid" not in a and b["pid"] == "host"
    assert sorted(a["cap_add"]) == ["NET_ADMIN", "NET_RAW"]
    assert sorted(b["cap_add"]) == ["DAC_READ_SEARCH", "NET_ADMIN", "NET_RAW", "SYS_PTRACE"]   # merged, not replaced
    assert b["cap_drop"] == ["ALL"]
    # command is replaced whole: the base file's, less --no-attribution (kept in step)
    assert a["command"][-1] == "--no-attribution" and b["command"] == a["command"][:-1]
    assert {k: v for k, v in b.items() if k not in ("pid", "cap_add", "command")} == \
        {k: v for k, v in a.items() if k not in ("cap_add", "command")}
    assert {k: v for k, v in with_it["services"].items() if k != "auditor"} == \
        {k: v for k, v in base["services"].items() if k != "auditor"}
    assert with_it["volumes"] == base["volumes"]


def test_every_service_has_a_healthcheck(compose):
    for name, svc in compose["services"].items():
        test = svc.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), name


def test_live_auditor_is_a_least_privilege_host_network_sidecar(compose):
    a = compose["services"]["auditor"]
    assert a["profiles"] == ["live"]
    assert a["network_mode"] == "host"
    assert a["user"] == "root"
    assert a["cap_drop"] == ["ALL"]
    assert a["cap_add"] == ["NET_RAW", "NET_ADMIN"]                             # capture only
    assert a["command"][-1] == "--no-attribution" and "pid" not in a
    assert a["read_only"] is True and "/tmp" in a["tmpfs"]
    assert "no-new-privileges:true" in a["security_opt"]
    assert a["command"][0] == "run" and "--interface" in a["command"] and "--policy" in a["command"]
    assert any(v.endswith(":/var/log/egress-auditor") for v in a["volumes"])   # events on a volume


def test_auditors_use_the_image_built_from_the_dockerfile(compose):
    for name in ("auditor", "auditor-demo"):
        svc = compose["services"][name]
        assert svc["build"] == "." and (ROOT / svc["build"] / "Dockerfile") == DOCKERFILE
        assert svc["image"] == "${EGRESS_AUDITOR_IMAGE:-egress-auditor:local}"


def test_demo_profile_loops_over_the_bundled_pcaps_without_capabilities(compose):
    d = compose["services"]["auditor-demo"]
    assert d["profiles"] == ["demo"]
    assert d["cap_drop"] == ["ALL"] and "cap_add" not in d
    assert d["read_only"] is True
    assert d["entrypoint"] == ["sh", "/usr/local/bin/egress-auditor-demo"]
    assert "COPY deploy/demo-loop.sh /usr/local/bin/egress-auditor-demo" in DOCKERFILE.read_text()
    assert "--loop" in (ROOT / "deploy" / "demo-loop.sh").read_text()


def test_stack_runs_in_no_profile_and_listens_on_loopback(compose):
    for name in ("prometheus", "alertmanager", "grafana"):
        svc = compose["services"][name]
        assert "profiles" not in svc, name
        assert svc["network_mode"] == "host", name
        assert ":" in svc["image"] and not svc["image"].endswith(":latest"), f"{name}: pin the image"
    assert "--web.listen-address=127.0.0.1:9090" in compose["services"]["prometheus"]["command"]
    assert "--web.listen-address=127.0.0.1:9093" in compose["services"]["alertmanager"]["command"]
    assert compose["services"]["grafana"]["environment"]["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"
    for name in ("auditor", "auditor-demo"):
        assert compose["services"][name]["environment"]["EGRESS_AUDITOR_METRICS_LISTEN"] == "127.0.0.1:19807"


def test_ports_agree_across_the_configs(compose):
    prom = yaml.safe_load(PROMETHEUS_YML.read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "egress-auditor")
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:19807"]
    assert prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9093"]
    sources = yaml.safe_load((ROOT / "grafana/provisioning/datasources/egress-auditor.yaml").read_text())
    urls = {d["uid"]: d["url"] for d in sources["datasources"]}
    assert urls == {"prometheus": "http://127.0.0.1:9090", "alertmanager": "http://127.0.0.1:9093"}
    grafana = compose["services"]["grafana"]
    assert grafana["environment"]["GF_SERVER_HTTP_PORT"] == "3000"
    assert "127.0.0.1:3000" in json.dumps(grafana["healthcheck"]["test"])


def test_bind_mounts_exist_and_match_what_the_configs_expect(compose):
    targets = {}
    for name, svc in compose["services"].items():
        for vol in svc.get("volumes", []):
            src, dst = vol.split(":")[:2]
            if src.startswith("${"):
                src = src.split(":-", 1)[1].rstrip("}") if ":-" in src else None
            if src and src.startswith("./"):
                assert (ROOT / src).exists(), f"{name}: {src} does not exist"
                targets[dst] = src
    assert targets["/etc/prometheus/prometheus.yml"] == "./deploy/prometheus.yml"
    assert targets["/etc/prometheus/rules"] == "./grafana/prometheus/rules"
    assert targets["/etc/alertmanager/alertmanager.yml"] == "./deploy/alertmanager.yml"
    assert targets["/etc/grafana/provisioning"] == "./grafana/provisioning"
    assert targets["/etc/grafana/dashboards"] == "./grafana/dashboards"
    provider = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/egress-auditor.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"
    home = compose["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "grafana/dashboards" / home.rsplit("/", 1)[1]).is_file()
