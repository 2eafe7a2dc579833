"""Killing ``beltcast score`` at random points while it writes over existing outputs leaves the
old files or whole new ones, never a partial file; a re-run completes."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from pipelines.tracking import lock_beside
from tests.pipelines.jobs import beltcast, kill_after, run_to_completion, spread_delays

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

KILLS = 4
OLD_CSV = "county_code,p_belt\n371721,0.5\n"


def _config(settings, path) -> None:
    path.write_text(
        f'[data]\ncache_dir = "{settings.data.cache_dir}"\nfeatures_dir = "{settings.data.features_dir}"\n'
        f'[mlflow]\ntracking_uri = "{settings.mlflow.tracking_uri}"\n'
    )


def _old_or_whole(csv, parquet, old_parquet: bytes) -> str:
    """``old`` or ``new``: each file is the old one or a whole new scored file."""
    states = []
    if csv.read_text() == OLD_CSV:
        states.append("old")
    else:
        frame = pd.read_csv(csv, dtype={"county_code": str, "model_version": str})
        assert len(frame) == 2844 and frame["model_version"].nunique() == 1
        states.append("new")
    if parquet.read_bytes() == old_parquet:
        states.append("old")
    else:
        assert len(pd.read_parquet(parquet)) == 2844
        states.append("new")
    return "/".join(states)


def test_sigkill_at_random_points_of_score_leaves_old_or_whole_new_files(champion_settings, tmp_path):
    config, csv = tmp_path / "beltcast.toml", tmp_path / "scores.csv"
    parquet = csv.with_suffix(".parquet")
    _config(champion_settings, config)
    command = beltcast("score", config, "--out", str(csv))
    duration = run_to_completion(command)
    outcomes = []
    for delay in spread_delays(random.Random(2020), duration, KILLS, start=0.05, stop=1.05):
        csv.write_text(OLD_CSV)
        pd.DataFrame({"county_code": ["371721"], "p_belt": [0.5]}).to_parquet(parquet)
        old_parquet = parquet.read_bytes()
        killed = kill_after(command, delay)
        outcomes.append(
            f"{delay:.2f} s: {'killed' if killed else 'finished'}, {_old_or_whole(csv, parquet, old_parquet)}"
        )
        left = [path.name for path in tmp_path.glob(".scores.*") if path.name != lock_beside(csv).name]
        assert not left or killed, left  # a finished run leaves no temporary file (the lock file stays)
    run_to_completion(command)
    assert _old_or_whole(csv, parquet, b"") == "new/new"
    assert not list(tmp_path.glob(".scores.*.part"))  # the re-run removed the killed runs' temporary files
    print(f"score (full run {duration:.1f} s) killed at: " + "; ".join(outcomes))
