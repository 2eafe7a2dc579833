"""Importing beltcast says nothing about its dependencies' internals."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest


@pytest.mark.skipif(importlib.util.find_spec("pyspark") is None, reason="the warning needs pyspark installed")
@pytest.mark.parametrize("module", ["pipelines.score", "models.bundle", "features.panel", "pipelines.cli"])
def test_importing_a_module_prints_no_pyspark_pandas_warning(module):
    # pandera imports pyspark.pandas, which warns about pandas 3; beltcast never uses pyspark.pandas
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c", f"import {module}"], capture_output=True, text=True, check=True
    )
    assert "PySpark does not yet fully support pandas" not in done.stderr, done.stderr
