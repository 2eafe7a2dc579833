"""SIGKILL ``train``, ``promote`` and ``data sync`` at seeded random points of their run: the registry
keeps a champion that loads, files are old or new (never partial), the cache verifies, and running
the job again completes. (``score`` is killed in ``test_score_interrupted.py``.)"""

from __future__ import annotations

import json
import random
from pathlib import Path, PurePosixPath

import pytest

from pipelines.manifest import read_manifest
from pipelines.sync import LOCK_NAME, sync
from tests.pipelines.jobs import (
    NAME,
    Store,
    alias_targets,
    beltcast,
    cache_contents,
    kill_after,
    kill_when,
    run_to_completion,
    spread_delays,
    sync_config,
)

pytestmark = pytest.mark.realdata
PNG_START, PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"
MID_COPY_KILLS, MAX_SYNC_KILLS = 2, 10


def _report(job: str, duration_s: float, delays: list[float], outcomes: list[str]) -> None:
    """One line per test (shown with ``pytest -s``): each delay and what the kill found."""
    found = "; ".join(f"{d:.2f} s {o}" for d, o in zip(delays, outcomes, strict=True))
    print(f"{job} (a whole run {duration_s:.1f} s): {found}")


# data sync ----------------------------------------------------------------------------------------


def _kill_sync_then_rerun(cache: Path, mirror: Path, files: int, entries: list) -> tuple[bool, int, int]:
    """Kill a sync into a fresh ``cache`` once ``files`` manifest files are in it; check the cache;
    sync it again to the end and check every file verifies and no temporary file is left. Returns
    what the kill left: (killed, files verified, temporary files)."""
    command = beltcast("data sync", sync_config(cache), "--mirror", str(mirror))
    killed = kill_when(command, lambda: sum((cache / e.path).exists() for e in entries) >= files)
    held, temporary = cache_contents(cache, entries)
    run_to_completion(command)
    assert cache_contents(cache, entries) == (len(entries), 0)
    return killed, held, temporary


@pytest.mark.slow
def test_sigkill_mid_sync_leaves_verified_files_and_a_rerun_completes(raw_dir, tmp_path):
    """The copying is the last ~0.1-0.2 s of a sub-second run, too short to hit with a timer on a
    busy machine: each sync is killed as soon as a seeded random number of files is in its cache,
    until two kills have landed mid-copy (some files there, not all)."""
    entries = read_manifest()
    rng, targets, found = random.Random(2014), [], []
    while sum(k and 0 < h < len(entries) for k, h, _ in found) < MID_COPY_KILLS and len(found) < MAX_SYNC_KILLS:
        targets.append(rng.randint(1, len(entries) - 1))
        found.append(_kill_sync_then_rerun(tmp_path / f"cache{len(found)}", raw_dir, targets[-1], entries))
    print(
        "data sync: "
        + "; ".join(f"kill at {n} files: {'killed' if k else 'finished'}, {h} verified, {t} temporary"
                    for n, (k, h, t) in zip(targets, found, strict=True))
    )  # fmt: skip
    assert len(found) < MAX_SYNC_KILLS, f"fewer than {MID_COPY_KILLS} of {MAX_SYNC_KILLS} kills landed mid-copy"


def test_a_sync_removes_the_temporary_files_of_a_killed_sync(raw_dir, tmp_path):
    entry = read_manifest()[0]
    cache = tmp_path / "cache"
    leftover = cache / PurePosixPath(entry.path).parent / f".{PurePosixPath(entry.path).name}.k1ll3d.part"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a file")
    report = sync(cache, raw_dir, [entry], show_progress=False)
    assert report.fetched == [entry.path] and not report.failures
    assert not leftover.exists()
    assert sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file()) == [LOCK_NAME, entry.path]


# train --------------------------------------------------------------------------------------------


def _outputs_are_whole(outputs: Path) -> None:
    """The backtest JSON parses and both curves are complete PNG files."""
    json.loads((outputs / "backtest.json").read_text(encoding="utf-8"))
    for png in ("pr_curve.png", "calibration_curve.png"):
        data = (outputs / png).read_bytes()
        assert data.startswith(PNG_START) and data.endswith(PNG_END), f"{png} is not a whole PNG"


def _registry_state(store: Store) -> str:
    """The versions registered and the runs left RUNNING by killed processes."""
    client = store.client()
    versions = len(client.search_model_versions(f"name = '{NAME}'"))
    running = len(client.search_runs([client.get_experiment_by_name("beltcast").experiment_id], "status = 'RUNNING'"))
    return f"{versions} versions, {running} runs left RUNNING"


@pytest.mark.slow
def test_sigkill_mid_train_keeps_the_champion_and_a_rerun_completes(registry_template, own_store):
    loaded: dict = {}
    before = alias_targets(own_store, loaded)
    command = beltcast("train", own_store.config(trees=62))
    delays = spread_delays(random.Random(2015), registry_template.train_s, 3, start=0.1, stop=1.0)
    found = []
    for delay in delays:  # each run starts on what the run killed before it left behind
        killed = kill_after(command, delay)
        after = alias_targets(own_store, loaded)
        assert after["champion"] == before["champion"]
        _outputs_are_whole(own_store.outputs)
        found.append(
            f"{'killed' if killed else 'finished'}, challenger v{after['challenger']}, {_registry_state(own_store)}"
        )
    run_to_completion(command)
    _report("train", registry_template.train_s, delays, found)
    after = alias_targets(own_store, loaded)
    assert after["champion"] == before["champion"]
    challenger = own_store.client().get_model_version(NAME, after["challenger"])
    assert json.loads(challenger.tags["params_json"])["n_estimators"] == 62 and "fingerprint" in challenger.tags
    versions = own_store.client().search_model_versions(f"name = '{NAME}'")
    assert all("fingerprint" in v.tags for v in versions)  # no version without its tags
    _outputs_are_whole(own_store.outputs)
    assert _registry_state(own_store).endswith(" 0 runs left RUNNING")  # the re-run closed the killed runs
    assert not list(own_store.outputs.glob(".*.part"))  # and removed their temporary files


# promote ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_mid_forced_promote_keeps_one_champion_and_a_rerun_completes(registry_template, own_store):
    loaded: dict = {}
    old = alias_targets(own_store, loaded)
    new = {"champion": old["challenger"], "challenger": old["challenger"]}
    command = beltcast("promote", own_store.config(), "--force", "--reason", "interruption test")
    delays = spread_delays(random.Random(2016), registry_template.promote_s, 3, start=0.3, stop=1.05)
    found = []
    for delay in delays:
        own_store.client().set_registered_model_alias(NAME, "champion", old["champion"])
        killed = kill_after(command, delay)
        champion = alias_targets(own_store, loaded)["champion"]
        assert champion in {old["champion"], old["challenger"]}
        found.append(f"{'killed' if killed else 'finished'}, champion v{champion}")
        run_to_completion(command)
        assert alias_targets(own_store, loaded) == new
    _report("promote", registry_template.promote_s, delays, found)
