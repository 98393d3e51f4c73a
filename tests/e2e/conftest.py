"""Fixtures of the end-to-end tests: a lab per test, always brought down, leftovers reported."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.labrun import LabRun


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabRun]:
    """A lab name and directory for one test; ``down`` runs at the end whatever happened."""
    run = LabRun(tmp_path)
    try:
        yield run
    finally:
        run.cli("down", check=False, timeout=120.0)
