"""``score`` runs again and again while ``train`` and ``promote --force`` move the aliases in another
process: every scored file names exactly one registered version, and is that version's forecast.
Syncs into one cache at once take turns."""

from __future__ import annotations

import contextlib
import fcntl
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines import score
from pipelines.manifest import read_manifest
from pipelines.tracking import REGISTRY_LOCK, model_uri
from tests.pipelines.jobs import (
    NAME,
    Store,
    alias_targets,
    beltcast,
    cache_contents,
    load_version,
    run_to_completion,
    sync_config,
)

pytestmark = pytest.mark.realdata
COUNTIES = 2844


def _moves(store: Store) -> list[list[str]]:
    """Champion to the 61-tree challenger; a 62-tree model registered as the new challenger while
    ``score`` runs; champion to it."""
    promote = beltcast("promote", store.config(), "--force", "--reason", "concurrency test")
    return [promote, beltcast("train", store.config(trees=62)), promote]


def _run_all(commands: list[list[str]]) -> None:
    for command in commands:
        run_to_completion(command)


def _check_scored_file(csv: Path, store: Store, loaded: dict) -> str:
    """The one version a scored file names; it is registered, and its forecast is the file."""
    scores = pd.read_csv(csv, dtype={"county_code": str, "model_version": str})
    versions = scores["model_version"].unique().tolist()
    assert len(versions) == 1, f"{csv.name} names versions {versions}"
    version = versions[0]
    assert str(store.client().get_model_version(NAME, version).version) == version
    assert len(scores) == COUNTIES and scores["county_code"].is_unique
    assert scores["p_belt"].between(0.0, 1.0).all()
    belt = scores["is_belt"].fillna(False).astype(bool)
    assert scores["rank"].isna().equals(belt), f"{csv.name}: ranked rows are not exactly the non-belts"
    candidates = scores[~belt].sort_values("rank")
    assert candidates["rank"].tolist() == list(range(1, len(candidates) + 1))
    assert candidates["p_belt"].is_monotonic_decreasing
    if version not in loaded:
        loaded[version] = load_version(store, version)
    as_of = int(scores["as_of"].iloc[0])
    again = score.score(loaded[version], model_uri(NAME, version), as_of, version, "pandas")
    pd.testing.assert_frame_equal(pd.read_parquet(csv.with_suffix(".parquet")), again)
    np.testing.assert_allclose(scores["p_belt"], again["p_belt"], rtol=1e-12, atol=0)
    return version


def _score(store: Store, out: Path) -> Path:
    run_to_completion(beltcast("score", store.config(), "--out", str(out)))
    return out


@pytest.mark.slow
def test_every_scored_file_names_one_version_while_the_aliases_move(own_store, tmp_path):
    scored: list[Path] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        moving = pool.submit(_run_all, _moves(own_store))
        while not moving.done():
            scored.append(_score(own_store, tmp_path / f"scores_{len(scored)}.csv"))
        moving.result()
    scored.append(_score(own_store, tmp_path / "scores_after.csv"))  # begun after the last move
    loaded: dict = {}
    versions = [_check_scored_file(csv, own_store, loaded) for csv in scored]
    print(f"score: {len(scored)} files, versions {versions}")
    assert len(set(versions)) >= 2, f"the champion never moved under score: versions {versions}"
    assert versions[-1] == alias_targets(own_store, loaded)["champion"]


def test_syncs_into_one_cache_take_turns_and_fetch_each_file_once(raw_dir, tmp_path):
    entries = read_manifest()
    command = beltcast("data sync", sync_config(tmp_path / "cache"), "--mirror", str(raw_dir))
    syncs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    printed = [process.communicate(timeout=300)[0] for process in syncs]
    assert [process.returncode for process in syncs] == [0, 0, 0], printed
    fetched = sorted(int(re.search(r"(\d+)\s+fetched and verified", text).group(1)) for text in printed)
    assert fetched == [0, 0, len(entries)]
    assert cache_contents(tmp_path / "cache", entries) == (len(entries), 0)


def _at_once(commands: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Start every command at once; wait for all of them."""
    started = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    outputs = [process.communicate(timeout=900) for process in started]
    return [
        subprocess.CompletedProcess(c, p.returncode, o, e)
        for c, p, (o, e) in zip(commands, started, outputs, strict=True)
    ]


@pytest.mark.slow
def test_two_trains_of_the_same_inputs_at_once_register_one_version(own_store):
    before = len(own_store.client().search_model_versions(f"name = '{NAME}'"))
    done = _at_once([beltcast("train", own_store.config(trees=63))] * 2)

    assert [d.returncode for d in done] == [0, 0], [d.stderr[-2000:] for d in done]
    versions = own_store.client().search_model_versions(f"name = '{NAME}'")
    assert len(versions) == before + 1
    new = str(max(int(v.version) for v in versions))
    assert all(f"version {new}" in d.stdout for d in done), [d.stdout[-500:] for d in done]
    assert alias_targets(own_store, {})["challenger"] == new


def test_a_promote_waits_for_the_registry_while_another_job_holds_it(registry_template, own_store):
    """Promotes take turns (two at once had raced to write the same version tag, and one died on
    SQLite's UNIQUE constraint): while the registry lock is held, a promote does not decide."""
    lock_file = own_store.root / "mlruns" / REGISTRY_LOCK
    with open(lock_file, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        process = subprocess.Popen(beltcast("promote", own_store.config()), stdout=subprocess.PIPE, text=True)
        with contextlib.suppress(subprocess.TimeoutExpired):  # twice the template's promote, at least 20 s
            process.wait(timeout=max(2 * registry_template.promote_s, 20.0))
        assert process.poll() is None, "promote finished while the registry was locked"
        assert "promotion_decision" not in own_store.client().get_model_version(NAME, "2").tags
    output, _ = process.communicate(timeout=900)
    assert process.returncode == 0, output
    assert own_store.client().get_model_version(NAME, "2").tags["promotion_decision"] in {"promoted", "rejected"}


def test_a_retrains_trial_top_up_waits_for_the_study_store_held_by_another(tmp_path):
    """Two retrains of one period at once had both counted the same trials as missing and both
    added them: the count and the trials run under the study store's lock, one process at a time."""
    import sys

    from pipelines.tracking import STUDY_LOCK

    storage = f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}"
    script = (
        "from pipelines.config import Settings, TuneSettings\n"
        "from pipelines.tracking import study_lock\n"
        f"with study_lock(Settings(tune=TuneSettings(storage={storage!r}))):\n"
        "    print('counted', flush=True)\n"
    )
    (tmp_path / "mlruns").mkdir()
    with open(tmp_path / "mlruns" / STUDY_LOCK, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        assert process.poll() is None, "the other process went on while the study store was locked"
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0 and output == "counted\n"
