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
def write(tmp_path):
    """write(text, name="policy.yaml") -> Path of a file holding `text`."""
    def _write(text: str, name: str = "policy.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path
    return _write
