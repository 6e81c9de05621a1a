"""deploy/kubernetes without a cluster: each kustomization is rendered by kubectl's own
kustomize (what `kubectl apply -k` runs), every built-in kind is validated by
kubernetes-validate against the OpenAPI schemas of a pinned Kubernetes version in strict
mode (unknown fields rejected), and the prometheus-operator kinds against the operator's
CRD schemas vendored in deploy/kubernetes/crds (SOURCES.md). Then the choices issue #15
asks for are checked, and the rendered ConfigMaps are fed to the auditor for real."""
from __future__ import annotations

import copy
import json
import os
import re
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from .helpers import DEMO_PCAPS, ROOT, run, tool

K8S_VERSION = "1.32.0"          # kubernetes-validate's schemas; the oldest minor AKS still supports
KUSTOMIZATIONS = {"base": ROOT / "deploy/kubernetes/base", "operator": ROOT / "deploy/kubernetes",
                  "azure-monitor": ROOT / "deploy/kubernetes/azure-monitor",
                  # the example overlay: deploy/kubernetes + the opt-in attribution component
                  "attribution": ROOT / "examples/kubernetes/attribution"}
ATTRIBUTION = ROOT / "deploy/kubernetes/components/attribution"
CRDS = ROOT / "deploy/kubernetes/crds"
CAPTURE_CAPS = ["NET_RAW", "NET_ADMIN"]                   # issue #15: NET_RAW/NET_ADMIN only
ATTRIBUTION_CAPS = CAPTURE_CAPS + ["SYS_PTRACE", "DAC_READ_SEARCH"]
BUILTIN_GROUPS = ("v1", "apps/v1", "networking.k8s.io/v1")
# Measured (README "Performance", docs/hardening.md): peak RSS of a full audit, and of the
# worst flood with every table at its default cap (240,000 DNS names: 234 MiB; the
# 600,000-flow SYN scan: 227 MiB).
STEADY_RSS, WORST_RSS = 92e6, 234 * 2**20


def _bytes(quantity: str) -> float:
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", quantity)
    return int(m.group(1)) * {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}[m.group(2)]


def render(name: str | Path) -> list[dict]:
    r = run(tool("kubectl"), "kustomize", KUSTOMIZATIONS.get(str(name), name))
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def relative(path: Path, start: Path) -> str:
    """kustomize takes no absolute path to a resource or component."""
    return os.path.relpath(path, start)


def pod_spec(docs: list[dict]) -> dict:
    [ds] = [d for d in docs if d["kind"] == "DaemonSet"]
    return ds["spec"]["template"]["spec"]


@pytest.fixture(scope="module", params=sorted(KUSTOMIZATIONS))
def rendered(request):
    return request.param, render(request.param)


@pytest.fixture(scope="module")
def operator():
    return {d["kind"]: d for d in render("operator")}


def strict(schema: dict) -> dict:
    """A CRD's structural schema as the API server applies it with field validation Strict
    (kubectl's default): an object with declared properties takes no other field."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(schema)
    return schema


def crd_schemas() -> dict[str, dict]:
    """kind -> strict JSON Schema of its served version, from the vendored CRDs."""
    out = {}
    for f in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(f.read_text())
        [version] = [v for v in crd["spec"]["versions"] if v["served"]]
        out[crd["spec"]["names"]["kind"]] = strict(version["schema"]["openAPIV3Schema"])
    return out


def validate_builtin(docs: list[dict], tmp_path: Path) -> None:
    f = tmp_path / "builtin.yaml"
    f.write_text(yaml.safe_dump_all(docs))
    r = run(tool("kubernetes-validate"), "-k", K8S_VERSION, "--strict", f)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count(f"passed for resource") == len(docs), r.stdout
    assert f"against version {K8S_VERSION.rsplit('.', 1)[0]}" in r.stdout


def validate_custom(doc: dict) -> None:
    schemas = crd_schemas()
    group = doc["apiVersion"].split("/")[0]
    assert group in ("monitoring.coreos.com", "azmonitoring.coreos.com"), doc["apiVersion"]
    jsonschema.Draft7Validator(schemas[doc["kind"]]).validate(doc)


def test_every_rendered_object_is_valid(rendered, tmp_path):
    name, docs = rendered
    builtin = [d for d in docs if d["apiVersion"] in BUILTIN_GROUPS]
    custom = [d for d in docs if d["apiVersion"] not in BUILTIN_GROUPS]
    validate_builtin(builtin, tmp_path)
    for d in custom:
        validate_custom(d)
    assert {d["kind"] for d in custom} == {"base": set(), "operator": {"ServiceMonitor", "PrometheusRule"},
                                           "azure-monitor": {"ServiceMonitor"},
                                           "attribution": {"ServiceMonitor", "PrometheusRule"}}[name]
    assert all(d["metadata"].get("namespace") == "egress-auditor" for d in docs if d["kind"] != "Namespace")


def test_the_validators_reject_what_an_api_server_would(operator, tmp_path):
    """Neither check is vacuous: a misspelt field fails each."""
    bad = copy.deepcopy(operator["DaemonSet"])
    bad["spec"]["template"]["spec"]["hostNetwrok"] = True
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(bad))
    r = run(tool("kubernetes-validate"), "-k", K8S_VERSION, "--strict", f)
    assert r.returncode != 0 and "hostNetwrok" in r.stdout + r.stderr
    bad = copy.deepcopy(operator["ServiceMonitor"])
    bad["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(jsonschema.ValidationError, match="intervall"):
        validate_custom(bad)
    bad = copy.deepcopy(operator["PrometheusRule"])
    bad["spec"]["groups"][0]["rules"][0]["for"] = "ten minutes"
    with pytest.raises(jsonschema.ValidationError):
        validate_custom(bad)


def test_vendored_crds_name_their_source_version_and_licence():
    sources = (CRDS / "SOURCES.md").read_text()
    assert "Apache License 2.0" in sources and "github.com/prometheus-operator/prometheus-operator" in sources
    for f in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(f.read_text())
        version = crd["metadata"]["annotations"]["operator.prometheus.io/version"]
        row = next(line for line in sources.splitlines() if line.startswith(f"| `{f.name}`"))
        assert version in row and re.search(r"`[0-9a-f]{40}`", row), f.name
        assert "description" not in json.dumps(crd), f"{f.name}: descriptions are said to be removed"


def test_daemonset_is_a_least_privilege_host_capture(operator):
    ds = operator["DaemonSet"]["spec"]["template"]["spec"]
    [c] = ds["containers"]
    assert ds["hostNetwork"] is True and "hostPID" not in ds      # capture only: no other process read
    assert ds["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert ds["automountServiceAccountToken"] is False
    sc = c["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"], "add": CAPTURE_CAPS}
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert ds["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {t["key"] for t in ds["tolerations"]} >= {"nvidia.com/gpu", "sku"}
    assert ds["nodeSelector"] == {"kubernetes.io/os": "linux"}
    limits, requests = c["resources"]["limits"], c["resources"]["requests"]
    assert _bytes(requests["memory"]) >= STEADY_RSS * 1.2
    assert WORST_RSS * 1.25 <= _bytes(limits["memory"]) <= WORST_RSS * 2.5
    assert c["image"].startswith("egress-auditor:") and not c["image"].endswith(":latest")
    namespace = operator["Namespace"]["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "privileged"


@pytest.mark.parametrize("name", ["base", "operator", "azure-monitor"])
def test_every_default_is_capture_only(name):
    """What `kubectl apply -k` of each shipped kustomization runs: NET_RAW and NET_ADMIN
    exactly, no host PID namespace, attribution off."""
    ds = pod_spec(render(name))
    [c] = ds["containers"]
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": CAPTURE_CAPS}
    assert "hostPID" not in ds and "shareProcessNamespace" not in ds
    assert c["args"].count("--no-attribution") == 1
    assert "hostPath" not in json.dumps(ds["volumes"])           # nor the node's /proc by a mount


def test_the_attribution_overlay_adds_exactly_its_three_privileges():
    ds = pod_spec(render("attribution"))
    [c] = ds["containers"]
    assert ds["hostPID"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ATTRIBUTION_CAPS}
    assert "--no-attribution" not in c["args"]
    # Nothing else differs from the default it builds on.
    default = copy.deepcopy(pod_spec(render("operator")))
    default["hostPID"] = True
    [dc] = default["containers"]
    dc["securityContext"]["capabilities"]["add"] = ATTRIBUTION_CAPS
    dc["args"].remove("--no-attribution")
    assert ds == default
    # Every other object is the same as without the component.
    others = [d for d in render("attribution") if d["kind"] != "DaemonSet"]
    assert others == [d for d in render("operator") if d["kind"] != "DaemonSet"]


@pytest.mark.parametrize("variant", ["deploy/kubernetes/base", "deploy/kubernetes/azure-monitor"])
def test_the_attribution_component_fits_every_variant(variant, tmp_path):
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [relative(ROOT / variant, tmp_path)], "components": [relative(ATTRIBUTION, tmp_path)]}))
    ds = pod_spec(render(tmp_path))
    [c] = ds["containers"]
    assert ds["hostPID"] is True and "--no-attribution" not in c["args"]
    assert c["securityContext"]["capabilities"]["add"] == ATTRIBUTION_CAPS
    component = yaml.safe_load((ATTRIBUTION / "kustomization.yaml").read_text())
    assert component["kind"] == "Component" and component["apiVersion"] == "kustomize.config.k8s.io/v1alpha1"


def test_the_attribution_component_refuses_a_daemonset_of_another_shape(tmp_path):
    """It removes --no-attribution by position: moved, the build fails rather than dropping
    another argument."""
    base = tmp_path / "base"
    base.mkdir()
    ds = next(d for d in render("base") if d["kind"] == "DaemonSet")
    args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
    args.insert(0, args.pop(args.index("--no-attribution")))
    (base / "ds.yaml").write_text(yaml.safe_dump(ds))
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": ["base/ds.yaml"], "components": [relative(ATTRIBUTION, tmp_path)]}))
    r = run(tool("kubectl"), "kustomize", tmp_path)
    assert r.returncode != 0 and "test failed" in r.stderr, r.stderr


def test_daemonset_command_env_and_mounts_fit_together(operator):
    ds = operator["DaemonSet"]["spec"]["template"]["spec"]
    [c] = ds["containers"]
    args = c["args"]
    assert args[0] == "run" and args[args.index("--events") + 1] == "-"
    assert args[args.index("--policy") + 1] == "/etc/egress-auditor/policy.yaml"
    assert args[args.index("--config") + 1] == "/etc/egress-auditor/auditor.yaml"
    env = {e["name"]: e for e in c["env"]}
    assert args[args.index("--interface") + 1] == "$(CAPTURE_INTERFACE)"
    ref = env["CAPTURE_INTERFACE"]["valueFrom"]["configMapKeyRef"]
    settings = next(d for d in render("operator") if d["kind"] == "ConfigMap" and d["metadata"]["name"] == ref["name"])
    assert settings["data"][ref["key"]] == "eth0"
    # downward API: the auditor's own identity for observer.* (read by the package)
    assert {n: env[n]["valueFrom"]["fieldRef"]["fieldPath"] for n in env if n.startswith("EGRESS_AUDITOR_OBSERVER_")} == {
        "EGRESS_AUDITOR_OBSERVER_POD_NAME": "metadata.name",
        "EGRESS_AUDITOR_OBSERVER_POD_NAMESPACE": "metadata.namespace",
        "EGRESS_AUDITOR_OBSERVER_NODE_NAME": "spec.nodeName"}
    assert env["EGRESS_AUDITOR_METRICS_LISTEN"]["value"] == "$(NODE_IP):19807"
    assert env["NODE_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    names = [e["name"] for e in c["env"]]
    assert names.index("NODE_IP") < names.index("EGRESS_AUDITOR_METRICS_LISTEN")   # $(VAR) needs it defined first
    [port] = c["ports"]
    assert port == {"name": "metrics", "containerPort": 19807, "protocol": "TCP"}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["config"]["mountPath"] == "/etc/egress-auditor" and mounts["config"]["readOnly"] is True
    assert mounts["tmp"]["mountPath"] == "/tmp"
    sources = next(v for v in ds["volumes"] if v["name"] == "config")["projected"]["sources"]
    configmaps = {d["metadata"]["name"] for d in render("operator") if d["kind"] == "ConfigMap"}
    assert {s["configMap"]["name"] for s in sources} == configmaps


def test_service_monitor_and_network_policy_reach_the_pods(operator):
    pod_labels = operator["DaemonSet"]["spec"]["template"]["metadata"]["labels"]
    svc = operator["Service"]
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    sm = operator["ServiceMonitor"]["spec"]
    assert sm["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert [e["port"] for e in sm["endpoints"]] == [p["name"] for p in svc["spec"]["ports"]]
    # job = the Service's name (no jobLabel): what the alert rules select
    assert "jobLabel" not in sm and svc["metadata"]["name"] == "egress-auditor"
    assert 'job="egress-auditor"' in operator["PrometheusRule"]["spec"]["groups"][0]["rules"][0]["expr"]
    np = operator["NetworkPolicy"]["spec"]
    assert np["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert set(np["policyTypes"]) == {"Ingress", "Egress"} and np["egress"] == []
    assert [p["port"] for rule in np["ingress"] for p in rule["ports"]] == [19807]


def test_azure_monitor_variant_uses_the_addon_group_and_its_agent():
    docs = {d["kind"]: d for d in render("azure-monitor")}
    assert docs["ServiceMonitor"]["apiVersion"] == "azmonitoring.coreos.com/v1"
    peer = docs["NetworkPolicy"]["spec"]["ingress"][0]["from"][0]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kube-system"}
    assert peer["podSelector"]["matchLabels"] == {"rsName": "ama-metrics"}


def test_the_rendered_configmaps_are_what_the_auditor_accepts(operator, tmp_path):
    files = {}
    for d in render("operator"):
        if d["kind"] == "ConfigMap":
            for key, text in d["data"].items():
                (tmp_path / key).write_text(text)
                files[key] = tmp_path / key
    assert {"policy.yaml", "auditor.yaml"} <= set(files)
    r = run(sys.executable, "-m", "auditor", "policy", "check", files["policy.yaml"])
    assert r.returncode == 0, r.stdout + r.stderr
    r = run(sys.executable, "-m", "auditor", "replay", *DEMO_PCAPS, "--config", files["auditor.yaml"],
            "--policy", files["policy.yaml"], "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
