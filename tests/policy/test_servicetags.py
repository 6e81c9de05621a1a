"""The real ServiceTags_Public file and the longest-prefix table."""
import random

import pytest
from hypothesis import given, strategies as st

from auditor.policy.model import PolicyError
from auditor.policy.servicetags import (PrefixTable, ServiceTags, normalise_region,
                                        parse_prefix)


def test_known_azure_ml_prefix(tags):
    # 20.42.0.240/28 is listed under AzureMachineLearning.EastUS in the 2025-11-09 file.
    found = tags.tags_for("20.42.0.241")
    assert "AzureMachineLearning.EastUS" in found
    assert "AzureMachineLearning" in found          # the global tag includes its regions
    assert "AzureMachineLearning.WestUS" not in found


def test_regional_vs_global(tags):
    found = tags.tags_for("40.71.10.209")            # MicrosoftContainerRegistry.EastUS /29
    assert "MicrosoftContainerRegistry.EastUS" in found
    assert "MicrosoftContainerRegistry" in found
    assert not any(t.startswith("MicrosoftContainerRegistry.West") for t in found)


def test_ipv6(tags):
    found = tags.tags_for("2603:1030:210:1::2c1")    # AzureMachineLearning.EastUS ::2c0/122
    assert "AzureMachineLearning.EastUS" in found
    assert tags.tags_for("2603:1030:210:1::2bf") != found


def test_address_in_no_tag(tags):
    assert tags.tags_for("8.8.8.8") == ()
    assert tags.tags_for("192.0.2.1") == ()
    assert tags.tags_for("not-an-ip") == ()


def test_virtual_network_setting(tags):
    assert tags.tags_for("10.0.3.4") == ("VirtualNetwork",)
    assert tags.tags_for("fd00:1::5") == ("VirtualNetwork",)
    assert "VirtualNetwork" not in tags.tags_for("10.1.0.1")


def test_front_door_first_party(tags):
    assert "AzureFrontDoor.FirstParty" in tags.tags_for("13.107.3.7")


@pytest.mark.parametrize("written,canonical", [
    ("MicrosoftContainerRegistry.eastus", "MicrosoftContainerRegistry.EastUS"),
    ("microsoftcontainerregistry.EastUS", "MicrosoftContainerRegistry.EastUS"),
    ("BatchNodeManagement.East US", "BatchNodeManagement.EastUS"),
    ("AzureCloud.francecentral", "AzureCloud.centralfrance"),   # file uses the internal name
    ("storage", "Storage"),
    ("VirtualNetwork", "VirtualNetwork"),
    ("NoSuchTag", None),
])
def test_resolve(tags, written, canonical):
    assert tags.resolve(written) == canonical


def test_normalise_region():
    assert normalise_region("East US 2") == "eastus2" == normalise_region("EastUS2")


def test_bad_files(tmp_path):
    bad = tmp_path / "tags.json"
    bad.write_text("{not json")
    with pytest.raises(PolicyError, match="tags.json: not a service tags JSON"):
        ServiceTags.load(bad)
    bad.write_text('{"values": [{"name": "X", "properties": {"addressPrefixes": ["1.2.3.999/8"]}}]}')
    with pytest.raises(PolicyError, match="tag 'X'"):
        ServiceTags.load(bad)
    with pytest.raises(PolicyError, match="cannot read"):
        ServiceTags.load(tmp_path / "missing.json")


# --- property: the interval table equals a linear scan over the prefixes ------------------
def _v4(n: int) -> str:
    return ".".join(str((n >> s) & 255) for s in (24, 16, 8, 0))


@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32),
                          st.sampled_from("ABCDE")), max_size=25),
       st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20))
def test_table_equals_scan(blocks, probes):
    parsed = [(*parse_prefix(f"{_v4(a)}/{n}"), label) for a, n, label in blocks]
    table = PrefixTable(parsed)
    # probe block edges too: that is where an interval table goes wrong
    probes = probes + [b[1] for b in parsed] + [b[2] for b in parsed] + \
        [b[2] + 1 for b in parsed if b[2] < 2**32 - 1]
    for ip in probes:
        expected = tuple(sorted({lab for _, first, last, lab in parsed if first <= ip <= last}))
        assert table.lookup(32, ip) == expected


def test_table_random_large():
    rng = random.Random(7)
    blocks = []
    for i in range(2000):
        n = rng.randint(8, 32)
        a = rng.getrandbits(32) >> (32 - n) << (32 - n)
        blocks.append((*parse_prefix(f"{_v4(a)}/{n}"), f"T{i % 50}"))
    table = PrefixTable(blocks)
    for _ in range(500):
        ip = rng.getrandbits(32)
        expected = tuple(sorted({lab for _, f, l, lab in blocks if f <= ip <= l}))
        assert table.lookup(32, ip) == expected


# -- the `az network list-service-tags` format and freshness -----------------------------------
import json as _json
import time as _time
from pathlib import Path as _Path

from auditor.policy import servicetags as _st

_DATA = _Path(__file__).resolve().parents[1] / "data" / "servicetags"
_DAY = 86400


def test_az_list_service_tags_output_is_read():
    tags = ServiceTags.load(_DATA / "az-network-list-service-tags.rest-example.json")
    assert tags.change_number == "63" and tags.cloud == "Public"
    assert "ServiceBus.EastUS2" in tags and tags.tags_for("40.74.146.81")
    assert tags.services["AppService"] == "AzureAppService"
    # `az` makes one GET and never follows nextLink: say the file is one page.
    assert any("nextLink" in n for n in tags.notes)


def test_empty_az_response_is_a_clear_error(tmp_path):
    path = tmp_path / "tags.json"
    path.write_text('{"nextLink": ""}')        # what az printed in Azure/azure-cli#27349
    with pytest.raises(PolicyError, match="empty `az network list-service-tags` response"):
        ServiceTags.load(path)
    path.write_text('{"changeNumber": 1, "cloud": "Public", "values": []}')
    with pytest.raises(PolicyError, match="lists no tags"):
        ServiceTags.load(path)


def test_age_from_the_file_name(tags):
    published = tags.published
    assert tags.published_exact and published == _st.published_date("ServiceTags_Public_20251109.json")
    assert tags.staleness(published + 30 * _DAY) is None
    warning = tags.staleness(published + 31 * _DAY)
    assert warning.startswith("service tags ServiceTags_Public_20251109.json is 31 days old (published 2025-11-09)")
    assert "details.aspx?id=56519" in warning and "list-service-tags" in warning


def test_age_bound_from_the_change_number(tmp_path):
    """No date in the name: a Public file whose change number is not above the bundled
    file's was published on or before 2025-11-09."""
    doc = {"changeNumber": 300, "cloud": "Public", "values": [
        {"name": "AzureCloud", "id": "AzureCloud", "properties": {"addressPrefixes": ["20.0.0.0/8"]}}]}
    path = tmp_path / "tags.json"
    path.write_text(_json.dumps(doc))
    tags = ServiceTags.load(path)
    assert not tags.published_exact
    assert "at least" in tags.staleness(_time.time()) and "published on or before 2025-11-09" in tags.staleness(_time.time())
    doc["changeNumber"] = 10_000               # newer than anything known: age unknown, no warning
    path.write_text(_json.dumps(doc))
    assert ServiceTags.load(path).published is None and ServiceTags.load(path).staleness(_time.time()) is None


def test_metrics_expose_change_number_cloud_and_age(tmp_path):
    from auditor.sinks.collector import registry_for
    from auditor.sinks.metrics import Metrics
    from auditor.telemetry import Telemetry
    from prometheus_client import generate_latest
    tags = ServiceTags.load()
    metrics = Metrics(8, [])
    metrics.set_service_tags(tags.change_number, tags.cloud, tags.published)
    text = generate_latest(registry_for(metrics, Telemetry(), process=False)).decode()
    assert 'egress_auditor_service_tags_info{change_number="376",cloud="Public"} 1.0' in text
    age = next(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("egress_auditor_service_tags_age_seconds "))
    assert age > 380 * _DAY
