"""Helpers of the interruption and concurrency tests: beltcast jobs as separate processes, a
registry of a test's own (a relocated copy of a template store), and checks of that registry."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import mlflow.pyfunc
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from pipelines.config import Settings
from pipelines.manifest import ManifestEntry, sha256_of
from pipelines.sync import LOCK_NAME
from pipelines.tracking import model_uri, version_by_alias

NAME = "county-belt"
CAOXIAN = pd.DataFrame({"county_code": ["371721"], "as_of": [2020]})


def beltcast(verb: str, config: Path, *options: str) -> list[str]:
    """The command line of one beltcast verb (``"data sync"`` for a sub-command) with a config."""
    return [sys.executable, "-m", "pipelines.cli", *verb.split(), "--config", str(config), *options]


def run_to_completion(command: list[str], timeout_s: float = 900) -> float:
    """Run ``command`` to its end; return its wall time in seconds; fail the test, with the
    command's output, when it exits non-zero."""
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        pytest.fail(
            f"{' '.join(command[3:])} exited {done.returncode}\n"
            f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
        )
    return time.monotonic() - start


def kill_after(command: list[str], delay_s: float) -> bool:
    """Start ``command`` and SIGKILL it after ``delay_s`` seconds; True when it was killed,
    False when it finished first (it must then have succeeded)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        returncode = process.wait(timeout=delay_s)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        return True
    if returncode != 0:
        pytest.fail(f"{' '.join(command[3:])} exited {returncode} before the kill at {delay_s:.2f} s")
    return False


def kill_when(command: list[str], ready: Callable[[], bool], timeout_s: float = 300.0) -> bool:
    """Start ``command`` and SIGKILL it as soon as ``ready()`` holds (polled every millisecond);
    True when it was killed, False when it finished first (it must then have succeeded)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    while process.poll() is None:
        if ready() or time.monotonic() > deadline:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
            if not ready():
                pytest.fail(f"{' '.join(command[3:])} ran {timeout_s:.0f} s without reaching the kill point")
            return True
        time.sleep(0.001)
    if process.returncode != 0:
        pytest.fail(f"{' '.join(command[3:])} exited {process.returncode} before the kill point")
    return False


def spread_delays(
    rng: random.Random, duration_s: float, n: int, start: float = 0.05, stop: float = 0.95
) -> list[float]:
    """``n`` kill delays in random order, one drawn uniformly from each of ``n`` equal slices of
    ``start..stop`` times a job's measured duration, so the kills cover the whole job."""
    width = (stop - start) * duration_s / n
    delays = [rng.uniform(start * duration_s + i * width, start * duration_s + (i + 1) * width) for i in range(n)]
    rng.shuffle(delays)
    return delays


@dataclass(frozen=True)
class Store:
    """The MLflow store and outputs folder of one test, below ``root``; the panel and the quick
    parameters are those of the session's ``built_settings``."""

    root: Path
    built: Settings

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlruns' / 'mlflow.db'}"

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    def config(self, trees: int = 60) -> Path:
        """A TOML config file for this store whose parameters are the quick ones of the session
        with ``n_estimators = trees``: another tree count is another model (``train`` registers a
        new version) on the same folds (``promote`` compares the versions' stored metrics)."""
        params = json.loads(self.built.model.params_file.read_text(encoding="utf-8"))["params"]
        params_file = self.root / f"params_{trees}_trees.json"
        params_file.write_text(json.dumps({"params": {**params, "n_estimators": trees}}), encoding="utf-8")
        path = self.root / f"beltcast_{trees}_trees.toml"
        path.write_text(
            f"[data]\ncache_dir = {_quoted(self.built.data.cache_dir)}\n"
            f"features_dir = {_quoted(self.built.data.features_dir)}\n"
            f"[model]\nspatial_folds = {self.built.model.spatial_folds}\n"
            f"bootstrap = {self.built.model.bootstrap}\nparams_file = {_quoted(params_file)}\n"
            f"[outputs]\ndir = {_quoted(self.outputs)}\n"
            f"[mlflow]\ntracking_uri = {_quoted(self.tracking_uri)}\n",
            encoding="utf-8",
        )
        return path

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def copy_to(self, root: Path) -> Store:
        """A copy of this store's ``mlruns/`` and ``outputs/`` below ``root``, with every absolute
        artifact location repointed at the copy, so nothing done to the copy touches this store."""
        shutil.copytree(self.root / "mlruns", root / "mlruns")
        if self.outputs.is_dir():
            shutil.copytree(self.outputs, root / "outputs")
        old, new = f"{self.root / 'mlruns'}/", f"{root / 'mlruns'}/"
        with closing(sqlite3.connect(root / "mlruns" / "mlflow.db")) as db, db:
            for table, column in _text_columns(db):
                db.execute(
                    f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) WHERE instr("{column}", ?) > 0',
                    (old, new, old),
                )
        for mlmodel in (root / "mlruns").rglob("MLmodel"):
            mlmodel.write_text(mlmodel.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")
        stale = [str(p) for p in (root / "mlruns").rglob("*") if p.is_file() and old.encode() in p.read_bytes()]
        if stale:
            raise RuntimeError(f"the copy of {self.root} still names it in {stale}")
        return Store(root, self.built)


def _quoted(value: object) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def _text_columns(db: sqlite3.Connection) -> Iterator[tuple[str, str]]:
    tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        for _, column, kind, *_ in db.execute(f'PRAGMA table_info("{table}")'):
            if any(word in kind.upper() for word in ("CHAR", "TEXT")):
                yield table, column


@contextmanager
def tracking(store: Store) -> Iterator[MlflowClient]:
    """Point this process's MLflow at ``store`` for a block, then back where it was."""
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(store.tracking_uri)
    mlflow.set_registry_uri(store.tracking_uri)
    try:
        yield store.client()
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])


def load_version(store: Store, version: str) -> mlflow.pyfunc.PyFuncModel:
    """``models:/county-belt/VERSION`` of ``store``, loaded; it must forecast 曹县 (371721)."""
    with tracking(store):
        model = mlflow.pyfunc.load_model(model_uri(NAME, version))
    p_belt = float(model.predict(CAOXIAN)["p_belt"].iloc[0])
    if not 0.0 <= p_belt <= 1.0:
        pytest.fail(f"version {version} forecasts p_belt {p_belt} for 371721; expected 0..1")
    return model


def alias_targets(store: Store, loaded: dict) -> dict[str, str]:
    """Each alias of ``county-belt`` and the version it points at; every such version must load.
    ``loaded`` caches models by version: a version's artifacts are written once, by the ``train``
    that registered it, so one load per version and test is enough."""
    client = store.client()
    targets = {}
    for alias in ("champion", "challenger"):
        version = version_by_alias(client, NAME, alias)
        if version is not None:
            targets[alias] = str(version.version)
            if targets[alias] not in loaded:
                loaded[targets[alias]] = load_version(store, targets[alias])
    return targets


def sync_config(cache: Path) -> Path:
    """A TOML config file beside ``cache`` naming it as the cache."""
    config = cache.with_suffix(".toml")
    config.write_text(f"[data]\ncache_dir = {json.dumps(str(cache))}\n", encoding="utf-8")
    return config


def _is_temporary(relative: str, entries: dict[str, str]) -> bool:
    """``folder/.NAME.XXXX.part``: the temporary name ``sync`` gives a manifest file it fetches."""
    path = PurePosixPath(relative)
    if not (path.name.startswith(".") and path.name.endswith(".part")):
        return False
    return path.with_name(path.name[1:].rsplit(".", 2)[0]).as_posix() in entries


def cache_contents(cache: Path, entries: list[ManifestEntry]) -> tuple[int, int]:
    """How many manifest files the cache holds, and how many temporary files; every file named
    like a manifest file must verify, and nothing else but the lock may be there."""
    expected = {e.path: e.sha256 for e in entries}
    held, temporary = 0, 0
    for path in sorted(p for p in cache.rglob("*") if p.is_file()):
        relative = path.relative_to(cache).as_posix()
        if relative in expected:
            assert sha256_of(path) == expected[relative], f"{relative} is in the cache but does not verify"
            held += 1
        elif _is_temporary(relative, expected):
            temporary += 1
        else:
            assert relative == LOCK_NAME, f"unexpected file {relative} in the cache"
    return held, temporary
