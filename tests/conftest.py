"""Shared test set-up: hypothesis profiles and paths to the bundled data."""
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
REAL_PCAPS = ROOT / "pcaps" / "real"
SERVICE_TAGS = ROOT / "auditor" / "data" / "servicetags" / "ServiceTags_Public_20251109.json"

# "dev" is quick for local edits; "ci" is what .ci/run uses (1,000 examples per parser: every CI
# run draws new ones, and the default suite must stay near six minutes); "long" is the
# hardening profile (>=100k examples), run by hand or behind -m slow.
settings.register_profile("dev", max_examples=200, deadline=None)
settings.register_profile("ci", max_examples=1000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=100_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(scope="session")
def real_pcaps() -> Path:
    return REAL_PCAPS


@pytest.fixture(scope="session")
def service_tags_file() -> Path:
    return SERVICE_TAGS
