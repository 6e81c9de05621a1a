"""Microsoft's Azure ML SDK v2 as the oracle for CLI v2 YAML.

`azure.ai.ml.load_workspace` is what `az ml workspace create/update --file` runs. For every CLI
v2 YAML in the project (examples, capture policies, test data including Microsoft's own samples)
and for a set of probes of the SDK's quirks, the SDK and our parser must agree on whether the
file is accepted, on the isolation mode, and on every rule's name, type, destination, ports and
protocol. The differences we keep on purpose are listed in `DELIBERATE` (each with its reason)
and recognised by the warning our parser prints for them; any other disagreement fails.

Oracle: azure-ai-ml 1.35.2 (pinned in the test extra of pyproject.toml).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import yaml

from auditor.policy.azure import (ACTION_IN_CLI_YAML, load_policy, load_policy_lenient,
                                  parse_port_ranges)
from auditor.policy.match import normalise_pattern
from auditor.policy.model import FqdnRule, PrivateEndpointRule, ServiceTagRule

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import azure.ai.ml as aiml
    from azure.ai.ml import load_workspace

ROOT = Path(__file__).resolve().parents[2]
SDK_VERSION = "1.35.2"

# Differences kept on purpose: (marker in our warnings, why we differ from the SDK).
DELIBERATE = {
    # The SDK refuses `action` inside a CLI YAML destination (no such field in its schema).
    # Dropping it would turn a Deny into an Allow, so we judge the rule as written, warn, and
    # `policy check` reports an error: Azure will never apply the file.
    "action": (ACTION_IN_CLI_YAML.split(":")[0], "judge a Deny as written; check errs"),
    # The SDK requires spark_enabled on private-endpoint destinations; Azure's REST API does
    # not, and false is its meaning when absent.
    "spark": ("az ml requires it", "take a missing spark_enabled as false, warn"),
    # The SDK refuses unknown keys inside a destination; our contract makes unknown keys
    # warnings everywhere (the rule still means what its known keys say).
    "unknown_dest_key": ("az ml rejects unknown keys in a destination", "warn, do not reject"),
}


def _project_yaml_files() -> list[Path]:
    """Every YAML file in the project that is a CLI v2 workspace file (or its managed_network
    mapping): examples, capture policies, test data."""
    out = []
    for base in ("examples", "pcaps", "tests"):
        for path in sorted((ROOT / base).rglob("*.y*ml")):
            if "excerpt" in path.name or path.suffix not in (".yaml", ".yml"):
                continue
            try:
                doc = yaml.safe_load(path.read_text())
            except yaml.YAMLError:
                continue
            if isinstance(doc, dict) and ("managed_network" in doc or "isolation_mode" in doc):
                out.append(path)
    return out


FILES = _project_yaml_files()

# Probes of the SDK's reading rules (each a complete workspace file).
_HEAD = "name: probe\nmanaged_network:\n  isolation_mode: {mode}\n  outbound_rules:\n"
PROBES = {
    "spark_enabled_string_true": _HEAD + (
        "  - name: pe\n    type: private_endpoint\n    destination:\n"
        "      service_resource_id: /subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/a\n"
        "      subresource_target: blob\n      spark_enabled: 'true'\n"),
    "spark_enabled_yes_off": _HEAD + (
        "  - name: pe\n    type: private_endpoint\n    destination:\n"
        "      service_resource_id: /subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/a\n"
        "      subresource_target: blob\n      spark_enabled: 'off'\n"),
    "spark_enabled_not_boolean": _HEAD + (
        "  - name: pe\n    type: private_endpoint\n    destination:\n"
        "      service_resource_id: /subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/a\n"
        "      subresource_target: blob\n      spark_enabled: maybe\n"),
    "user_written_category_and_status": _HEAD + (
        "  - {name: f, type: fqdn, destination: contoso.com, category: required, status: Active}\n"),
    "type_disagrees_with_shape": _HEAD + (
        "  - name: st\n    type: fqdn\n    destination: {service_tag: Storage, protocol: TCP, port_ranges: '443'}\n"),
    "camel_case_mode": _HEAD.replace("{mode}", "AllowOnlyApprovedOutbound") + (
        "  - {name: f, type: fqdn, destination: contoso.com}\n"),
    "ports_with_spaces": _HEAD + (
        "  - name: st\n    type: service_tag\n    destination: {service_tag: DataFactory, protocol: TCP, port_ranges: '80, 8080-8089'}\n"),
    "missing_rule_name": _HEAD + "  - {type: fqdn, destination: contoso.com}\n",
    "bad_mode": _HEAD.replace("{mode}", "allow_everything") + "  - {name: f, type: fqdn, destination: a.com}\n",
    "fqdn_destination_not_string": _HEAD + "  - {name: f, type: fqdn, destination: [a.com]}\n",
    "service_tag_missing_protocol": _HEAD + (
        "  - name: st\n    type: service_tag\n    destination: {service_tag: Storage, port_ranges: '443'}\n"),
}


def _sdk(path: Path, scratch: Path):
    """(accepted, workspace or error text); `name` supplied as `az ml workspace update --name` does."""
    doc = yaml.safe_load(path.read_text())
    params = [] if isinstance(doc, dict) and "name" in doc else [{"name": "from-the-command-line"}]
    if isinstance(doc, dict) and "managed_network" not in doc:      # our bare-mapping extension
        wrapped = scratch / f"{path.stem}.wrapped.yaml"
        wrapped.write_text(yaml.safe_dump({"name": "x", "managed_network": doc}))
        path, params = wrapped, []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return True, load_workspace(str(path), params_override=params)
    except Exception as exc:   # noqa: BLE001 - the SDK raises many types; all mean "rejected"
        return False, str(exc)


def _sdk_rules(ws) -> list[tuple]:
    out = []
    for r in ws.managed_network.outbound_rules or []:
        kind = type(r).__name__
        if kind == "FqdnDestination":
            out.append((r.name, "fqdn", normalise_pattern(r.destination)))
        elif kind == "ServiceTagDestination":
            out.append((r.name, "service_tag", r.service_tag, str(r.protocol).lower(),
                        parse_port_ranges(r.port_ranges), tuple(r.address_prefixes or ())))
        else:
            out.append((r.name, "private_endpoint", r.service_resource_id, r.subresource_target,
                        bool(r.spark_enabled)))
    return out


def _our_rules(policy) -> list[tuple]:
    out = []
    for r in policy.file_rules:
        if isinstance(r, FqdnRule):
            out.append((r.name, "fqdn", r.destination))
        elif isinstance(r, ServiceTagRule):
            out.append((r.name, "service_tag", r.service_tag, r.protocol, r.port_ranges,
                        r.address_prefixes))
        elif isinstance(r, PrivateEndpointRule):
            out.append((r.name, "private_endpoint", r.service_resource_id, r.subresource_target,
                        r.spark_enabled))
    return out


def _compare(path: Path, scratch: Path) -> None:
    ok, ws = _sdk(path, scratch)
    policy, problems = load_policy_lenient(path)
    errors = [p for p in problems if p.level == "error"]
    deliberate = [key for key, (marker, _) in DELIBERATE.items()
                  if any(marker in p.reason for p in problems)]
    if not ok:
        assert errors or deliberate, f"the SDK rejects {path.name} and we accept it: {ws[:400]}"
        return
    assert not errors, f"the SDK accepts {path.name}; we say {[str(e) for e in errors]}"
    sdk_mode = str(ws.managed_network.isolation_mode) if ws.managed_network else "Disabled"
    assert policy.isolation_mode.value.replace("_", "") == sdk_mode.lower(), path.name
    assert _our_rules(policy) == _sdk_rules(ws), path.name
    # The SDK drops a user-written category: every rule it loads is UserDefined; so are ours.
    assert all(r.category.value == "user_defined" for r in policy.file_rules), path.name


def test_oracle_is_the_pinned_sdk():
    assert aiml.__version__ == SDK_VERSION


def test_project_has_cli_yaml_files_including_microsofts():
    names = {p.name for p in FILES}
    assert len(FILES) >= 15
    assert {"azureml-examples-mvnet-allow-only-approved-outbound.yml",
            "docs-aml-how-to-managed-network.firewall-sku.yaml"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_project_yaml_agrees_with_the_sdk(path, tmp_path):
    _compare(path, tmp_path)


@pytest.mark.parametrize("name", sorted(PROBES))
def test_probe_agrees_with_the_sdk(name, tmp_path):
    path = tmp_path / f"{name}.yaml"
    path.write_text(PROBES[name].replace("{mode}", "allow_only_approved_outbound"))
    _compare(path, tmp_path)


def test_deliberate_differences_are_real(tmp_path):
    """Each listed difference is one the SDK really has (so the list cannot rot)."""
    files = {
        "action": _HEAD + ("  - name: st\n    type: service_tag\n    destination:\n"
                           "      {service_tag: Storage, protocol: TCP, port_ranges: '443', action: Deny}\n"),
        "spark": _HEAD + ("  - name: pe\n    type: private_endpoint\n    destination:\n"
                          "      service_resource_id: /subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/a\n"
                          "      subresource_target: blob\n"),
        "unknown_dest_key": _HEAD + ("  - name: st\n    type: service_tag\n    destination:\n"
                                     "      {service_tag: Storage, protocol: TCP, port_ranges: '443', colour: red}\n"),
    }
    assert set(files) == set(DELIBERATE)
    for key, text in files.items():
        path = tmp_path / f"{key}.yaml"
        path.write_text(text.replace("{mode}", "allow_only_approved_outbound"))
        ok, _ = _sdk(path, tmp_path)
        assert not ok, f"the SDK now accepts {key}: drop it from DELIBERATE"
        policy = load_policy(path)                # an audit reads it, and says why
        assert any(DELIBERATE[key][0] in w.reason for w in policy.warnings)
