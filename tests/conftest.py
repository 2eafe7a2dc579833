"""Shared fixtures: the synced public data and the county code history built from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.codes import CodeHistory, load_code_history
from pipelines.sync import SHARED_MIRROR, resolve_mirror, sync

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = PROJECT_ROOT / "data" / "raw"
TARGET_VINTAGE = 2020


@pytest.fixture(scope="session")
def raw_dir() -> Path:
    """The verified raw-data cache, synced once per session from the mirror (or upstream)."""
    mirror = resolve_mirror(None, None)
    if mirror is None and (PROJECT_ROOT / SHARED_MIRROR).is_dir():
        mirror = PROJECT_ROOT / SHARED_MIRROR
    report = sync(CACHE_DIR, mirror, show_progress=False)
    if report.failures:
        pytest.fail("raw data could not be synced: " + "; ".join(report.failures))
    return CACHE_DIR


@pytest.fixture(scope="session")
def code_history(raw_dir: Path) -> CodeHistory:
    """Code lists 2009-2024 and every county-level code record."""
    return load_code_history(raw_dir / "areacodes", range(2009, 2025))
