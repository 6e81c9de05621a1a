"""Fixtures for the policy tests: the real service tags (loaded once) and a policy writer."""
from pathlib import Path

import pytest

from auditor.policy.servicetags import ServiceTags

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"


@pytest.fixture(scope="session")
def tags(service_tags_file) -> ServiceTags:
    return ServiceTags.load(service_tags_file, region="eastus",
                            virtual_network=("10.0.0.0/16", "fd00:1::/64"))


@pytest.fixture
def write(tmp_path, monkeypatch):
    """write(text, name="policy.yaml") -> relative Path (cwd is tmp_path), so messages read
    exactly `policy.yaml:14: ...`."""
    monkeypatch.chdir(tmp_path)

    def _write(text: str, name: str = "policy.yaml") -> Path:
        Path(name).write_text(text)
        return Path(name)
    return _write
