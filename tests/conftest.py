"""Shared test fixtures.

Real data is read from ``$T2M_SHARED_DATA`` (default ``<repo>/../shared/data``); tests that need it skip
with the reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("T2M_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "chebi20" / "test.txt").is_file():
        pytest.skip(f"shared ChEBI-20 data not found at {path} (set T2M_SHARED_DATA to the folder holding chebi20/)")
    return path
