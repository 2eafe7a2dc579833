"""Killing ``beltcast score`` while it writes over an existing output leaves the old file intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def _config(settings, path) -> None:
    path.write_text(
        f'[data]\ncache_dir = "{settings.data.cache_dir}"\nfeatures_dir = "{settings.data.features_dir}"\n'
        f'[mlflow]\ntracking_uri = "{settings.mlflow.tracking_uri}"\n'
    )


@pytest.mark.parametrize("delay_s", [0.5, 3.0, 6.0])
def test_sigkill_mid_score_leaves_old_or_complete_new_file(champion_settings, tmp_path, delay_s):
    config, out = tmp_path / "beltcast.toml", tmp_path / "scores.csv"
    _config(champion_settings, config)
    old = "county_code,p_belt\n371721,0.5\n"
    out.write_text(old)
    command = [sys.executable, "-m", "pipelines.cli", "score", "--config", str(config), "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay_s)
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    text = out.read_text()
    if text != old:  # the process finished its write before the kill: the new file is whole
        assert len(pd.read_csv(out, dtype={"county_code": str})) == 2844
