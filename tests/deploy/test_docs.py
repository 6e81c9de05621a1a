"""docs/deploy.md and docs/runbooks.md as a reader uses them: every link into them from the
deploy files resolves to a heading, the Kubernetes overlay the walk-through tells the
reader to write renders with kubectl's kustomize into what it promises, and the commands that
turn attribution on for compose and compute instances name the files that do it."""
from __future__ import annotations

import re
import shutil

import yaml

from .helpers import ROOT, run, tool

DOCS = ROOT / "docs"


def anchors(markdown: str) -> set[str]:
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#{1,6} (.+)$", markdown, re.M)}


def test_every_link_to_a_section_of_the_deploy_docs_resolves():
    targets = {name: anchors((DOCS / name).read_text()) for name in ("deploy.md", "runbooks.md", "hardening.md")}
    files = [*DOCS.glob("*.md"), ROOT / "README.md", *(ROOT / "deploy").rglob("*"), *(ROOT / "examples").rglob("*"),
             ROOT / "Dockerfile", ROOT / "docker-compose.yml"]
    seen = 0
    for f in files:
        if not f.is_file() or f.suffix in (".pcap",):
            continue
        for doc, anchor in re.findall(r"\b(deploy\.md|runbooks\.md|hardening\.md)#([\w-]+)", f.read_text(errors="replace")):
            seen += 1
            assert anchor in targets[doc], f"{f.relative_to(ROOT)}: {doc}#{anchor} is not a heading"
    assert seen > 20


def test_the_walk_through_covers_the_issue():
    text = (DOCS / "deploy.md").read_text()
    for heading in ("Kubernetes", "Compute instances", "Where no sidecar can run", "Fleet view", "Offline install",
                    "What is verified here"):
        assert re.search(rf"^## {heading}$", text, re.M), heading
    assert "Managed online endpoints" in text and "serverless compute" in text and "replay" in text
    assert "**Not verified here, and why:**" in text


def test_the_documented_overlay_renders(tmp_path):
    text = (DOCS / "deploy.md").read_text()
    overlay = re.search(r"```yaml\n# my-cluster/kustomization.yaml\n(.*?)```", text, re.S).group(1)
    shutil.copytree(ROOT / "deploy" / "kubernetes", tmp_path / "egress-auditor" / "deploy" / "kubernetes")
    mine = tmp_path / "my-cluster"
    mine.mkdir()
    (mine / "kustomization.yaml").write_text(overlay)
    (mine / "workspace.yml").write_text((ROOT / "examples/policies/managed-network-only.yaml").read_text())
    r = run(tool("kubectl"), "kustomize", mine)
    assert r.returncode == 0, r.stderr
    docs = {(d["kind"], d["metadata"]["name"].rsplit("-", 1)[0] if d["kind"] == "ConfigMap" else d["metadata"]["name"]): d
            for d in yaml.safe_load_all(r.stdout)}
    policy = docs[("ConfigMap", "egress-auditor-policy")]
    assert policy["data"]["policy.yaml"] == (mine / "workspace.yml").read_text()
    ds = docs[("DaemonSet", "egress-auditor")]["spec"]["template"]["spec"]
    assert ds["containers"][0]["image"] == "contosoreg.azurecr.io/egress-auditor@sha256:" + "0" * 64
    [source] = [s for s in ds["volumes"][0]["projected"]["sources"] if s["configMap"]["name"].startswith("egress-auditor-policy")]
    assert source["configMap"]["name"] == policy["metadata"]["name"]          # the pods follow the new hash
    assert ("PrometheusRule", "egress-auditor") in docs


def test_the_documented_attribution_component_renders(tmp_path):
    """The walk-through's overlay with the attribution snippet added: the component's three
    privileges, and attribution no longer turned off."""
    text = (DOCS / "deploy.md").read_text()
    overlay = re.search(r"```yaml\n# my-cluster/kustomization.yaml\n(.*?)```", text, re.S).group(1)
    snippet = re.search(r"```yaml\n(components:\n.*?)```", text, re.S).group(1)
    shutil.copytree(ROOT / "deploy" / "kubernetes", tmp_path / "egress-auditor" / "deploy" / "kubernetes")
    mine = tmp_path / "my-cluster"
    mine.mkdir()
    (mine / "kustomization.yaml").write_text(overlay + snippet)
    (mine / "workspace.yml").write_text((ROOT / "examples/policies/managed-network-only.yaml").read_text())
    r = run(tool("kubectl"), "kustomize", mine)
    assert r.returncode == 0, r.stderr
    [ds] = [d for d in yaml.safe_load_all(r.stdout) if d and d["kind"] == "DaemonSet"]
    spec = ds["spec"]["template"]["spec"]
    [c] = spec["containers"]
    assert spec["hostPID"] is True and "--no-attribution" not in c["args"]
    assert c["securityContext"]["capabilities"]["add"] == ["NET_RAW", "NET_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH"]
    assert c["image"] == "contosoreg.azurecr.io/egress-auditor@sha256:" + "0" * 64


def test_the_documented_attribution_switches_name_the_shipped_files():
    """Compose: the override file the command adds; compute instances: the drop-in copied to
    where the setup script's --attribution puts it (and systemd reads drop-ins)."""
    text = (DOCS / "deploy.md").read_text()
    [override] = re.findall(r"docker compose -f docker-compose\.yml -f (\S+) --profile live up -d", text)
    assert override == "examples/compose/attribution.override.yml" and (ROOT / override).is_file()
    assert f"COMPOSE_FILE=docker-compose.yml:{override}" in text
    src, dst = re.search(r"install -D -m 0644 (\S+) \\\n\s+(\S+)\n", text).groups()
    assert src == "deploy/systemd/egress-auditor.service.d/attribution.conf" and (ROOT / src).is_file()
    assert dst == "/etc/systemd/system/egress-auditor.service.d/attribution.conf"
    setup = (ROOT / "deploy" / "azureml" / "setup-compute-instance.sh").read_text()
    assert 'dropin="$ROOT/etc/systemd/system/$UNIT.d"' in setup and "UNIT=egress-auditor.service" in setup
    assert 'install -m 0644 "$HERE/../systemd/$UNIT.d/attribution.conf" "$dropin/attribution.conf"' in setup
    assert "`--attribution`" in text
