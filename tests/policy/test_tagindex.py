"""The prebuilt service-tags index: same answers as parsing the file, used only when it is
ours and matches the file, rebuilt (never an error) otherwise."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from auditor.policy import servicetags, tagindex
from auditor.policy.servicetags import ServiceTags

DOC = {"changeNumber": 5, "cloud": "Public", "values": [
    {"name": "AzureCloud", "id": "AzureCloud",
     "properties": {"region": "", "systemService": "", "addressPrefixes": ["20.0.0.0/8", "2603::/16"]}},
    {"name": "Storage", "id": "Storage",
     "properties": {"region": "", "systemService": "AzureStorage", "addressPrefixes": ["20.60.0.0/16"]}},
    {"name": "Storage.EastUS", "id": "Storage.EastUS",
     "properties": {"region": "eastus", "systemService": "AzureStorage", "addressPrefixes": ["20.60.1.0/24"]}},
]}


@pytest.fixture
def tags_file(tmp_path, monkeypatch):
    monkeypatch.setenv("EGRESS_AUDITOR_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "tags.json"
    path.write_text(json.dumps(DOC))
    servicetags._LOADED.clear()
    yield path
    servicetags._LOADED.clear()


def _index_files(tmp_path):
    return sorted(tmp_path.rglob("*.index"))


def _fresh(path):
    servicetags._LOADED.clear()
    return ServiceTags.load(path)


def test_the_bundled_file_from_its_index_answers_as_parsing_it():
    path = servicetags.default_path()
    parsed = ServiceTags._parse(path.read_bytes(), path, None, ())
    servicetags._LOADED.clear()
    ServiceTags.load()                            # builds the index if needed
    indexed = _fresh(None)
    rng = random.Random(7)
    for _ in range(50_000):
        if rng.random() < 0.5:
            ip = ".".join(str(rng.randrange(256)) for _ in range(4))
        else:
            ip = f"2603:10{rng.randrange(16):02x}:{rng.randrange(65536):x}::{rng.randrange(65536):x}"
        assert indexed.tags_for(ip) == parsed.tags_for(ip), ip
    assert (indexed._names, indexed.services, indexed.sizes, indexed.change_number, indexed.cloud) == \
        (parsed._names, parsed.services, parsed.sizes, parsed.change_number, parsed.cloud)


def test_built_once_then_read(tags_file, tmp_path):
    first = _fresh(tags_file)
    (index,) = _index_files(tmp_path)
    assert index.parent == tmp_path / "cache"     # $EGRESS_AUDITOR_CACHE_DIR comes first
    second = _fresh(tags_file)
    assert second.tags_for("20.60.1.5") == first.tags_for("20.60.1.5") == (
        "AzureCloud", "Storage", "Storage.EastUS")


def test_a_changed_file_or_setting_gets_its_own_index(tags_file, tmp_path):
    _fresh(tags_file)
    doc = dict(DOC, changeNumber=6)
    tags_file.write_text(json.dumps(doc))
    assert _fresh(tags_file).change_number == 6
    servicetags._LOADED.clear()
    vnet = ServiceTags.load(tags_file, virtual_network=["10.0.0.0/16"])
    assert "VirtualNetwork" in vnet.tags_for("10.0.1.1")
    assert len(_index_files(tmp_path)) == 3


@pytest.mark.parametrize("damage", ["truncate", "garbage", "other-source"])
def test_a_damaged_index_is_rebuilt_not_believed(tags_file, tmp_path, damage):
    _fresh(tags_file)
    (index,) = _index_files(tmp_path)
    blob = index.read_bytes()
    if damage == "truncate":
        index.write_bytes(blob[:-9])
    elif damage == "garbage":
        index.write_bytes(b"EATAGIX2" + os.urandom(200))
    else:   # a valid index of another file, renamed onto this one's name
        other = tmp_path / "other.json"
        other.write_text(json.dumps(dict(DOC, values=DOC["values"][:1])))
        _fresh(other)
        (stolen,) = [p for p in _index_files(tmp_path) if "other" in p.name]
        index.write_bytes(stolen.read_bytes())
    assert _fresh(tags_file).tags_for("20.60.1.5") == ("AzureCloud", "Storage", "Storage.EastUS")


def test_an_index_others_can_write_is_not_trusted(tags_file, tmp_path):
    """Service-tag membership decides verdicts: an index someone else could have written
    (group/world-writable) is ignored, and so is a forged one in that state."""
    _fresh(tags_file)
    (index,) = _index_files(tmp_path)
    digest = tagindex.key(tags_file.read_bytes(), ())
    forged = tagindex.dump(digest, starts={32: [0], 128: [0]}, labels={32: [("AzureCloud",)], 128: [()]},
                           names={"azurecloud": "AzureCloud"}, services={}, sizes={},
                           change_number=5, cloud="Public", notes=[])
    assert tagindex.parse(forged, digest) is not None            # a well-formed forgery
    index.write_bytes(forged)
    os.chmod(index, 0o666)
    assert _fresh(tags_file).tags_for("8.8.8.8") == ()           # the forgery would say AzureCloud
    # ...and the rebuilt index replaced it (ours, 0644). The trust boundary is the owner: the
    # same forgery written by this user with safe modes is believed (it could edit the tags too).
    assert not os.stat(index).st_mode & 0o022
    index.write_bytes(forged)
    assert _fresh(tags_file).tags_for("8.8.8.8") == ("AzureCloud",)


def test_nowhere_writable_still_works(tags_file, tmp_path, monkeypatch):
    monkeypatch.setattr(tagindex, "_dirs", lambda source: [tmp_path / "missing" / "x"])
    monkeypatch.setattr(tagindex, "_ours", lambda path: False)
    assert _fresh(tags_file).tags_for("20.60.1.5")


def test_a_cache_directory_keeps_only_the_newest_indexes_of_a_tags_file(tmp_path):
    import os
    from auditor.policy import tagindex
    source = tmp_path / "tags.json"
    source.write_text("{}")
    for i in range(tagindex.KEEP_PER_SOURCE + 3):
        path = tagindex.store(source, f"{i:016x}" + "0" * 48, b"x")
        os.utime(path, (1_000_000 + i, 1_000_000 + i))
    left = sorted(p.name for p in tmp_path.glob(".tags.json.*.index"))
    assert len(left) == tagindex.KEEP_PER_SOURCE
    assert tagindex._name(source, f"{tagindex.KEEP_PER_SOURCE + 2:016x}" + "0" * 48) in left


def test_the_bundled_tags_index_is_never_written_inside_the_package(tmp_path, monkeypatch):
    # A file pip did not install outlives `pip uninstall`; the leftover auditor/ directory then
    # shadows a later editable install as an empty namespace package (a newcomer running the
    # README's two commands in order hit exactly that).
    monkeypatch.delenv("EGRESS_AUDITOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    package = Path(servicetags.__file__).resolve().parents[1]
    before = sorted(package.rglob("*.index"))
    servicetags._LOADED.clear()
    tags = ServiceTags.load()
    servicetags._LOADED.clear()
    assert tags.tags_for("20.60.1.5")
    assert sorted(package.rglob("*.index")) == before
    assert list((tmp_path / "egress-auditor").glob("*.index"))     # kept in the user's cache
