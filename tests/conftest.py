"""Shared fixtures: the synced public data and the county code history built from it."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

from features.codes import CodeHistory, load_code_history
from pipelines.sync import SHARED_MIRROR, resolve_mirror, sync

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = PROJECT_ROOT / "data" / "raw"
TARGET_VINTAGE = 2020


@pytest.fixture(scope="session", autouse=True)
def sources_read_once_per_session():
    """The tests build about 16 panels in this process from the same raw files; each build would
    read and harmonise every public source again (about 14 s). The sources are read once per raw
    folder, target vintage, code-history years and raw-file state (path, size, modification time),
    and every build gets its own deep copy, so a build that changes its tables changes no other's.
    ``features build`` run as a job (a subprocess) reads its sources as in production."""
    from pipelines import build

    read = build.read_sources
    read_before: dict[tuple, list] = {}

    def read_sources(raw_dir: Path, history: CodeHistory, target: int) -> list:
        files = sorted(f for f in Path(raw_dir).rglob("*") if f.is_file())
        state = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
        key = (str(Path(raw_dir).resolve()), target, tuple(history.years), state)
        if key not in read_before:
            read_before[key] = read(raw_dir, history, target)
        return copy.deepcopy(read_before[key])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(build, "read_sources", read_sources)
        yield


@pytest.fixture(autouse=True)
def mlflow_request_limits_restored():
    """A job sets MLflow's request limits in the environment (``tracking.limit_requests``), as a
    command does for its process: each test's are undone after it."""
    names = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")
    kept = {name: os.environ.get(name) for name in names}
    yield
    for name, value in kept.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


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


QUICK_PARAMS = {
    "n_estimators": 60,
    "learning_rate": 0.05,
    "num_leaves": 7,
    "min_child_samples": 20,
    "linear_margin_C": 0.1,
}


@pytest.fixture(scope="session")
def built_settings(raw_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """Settings whose features dir holds a panel built once per session from the real data,
    whose MLflow store is a temporary SQLite file, and whose backtest is quick (2 spatial folds,
    no bootstrap, 60 trees): the real pipeline, scaled down for tests."""
    from rich.console import Console

    from features.io import write_json
    from pipelines import build
    from pipelines.config import (
        DataSettings,
        MlflowSettings,
        ModelSettings,
        OutputSettings,
        Settings,
        TuneSettings,
    )

    root = tmp_path_factory.mktemp("beltcast")
    params_file = root / "tuned_params.json"
    write_json({"params": QUICK_PARAMS}, params_file)
    settings = Settings(
        data=DataSettings(cache_dir=raw_dir, features_dir=root / "features"),
        model=ModelSettings(spatial_folds=2, bootstrap=0, params_file=params_file),
        tune=TuneSettings(storage=f"sqlite:///{root / 'optuna.db'}", trials=3, inner_folds=2, seeds=1),
        outputs=OutputSettings(dir=root / "outputs"),
        mlflow=MlflowSettings(tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"),
    )
    build.run(settings, Console(quiet=True))
    return settings


@pytest.fixture(scope="session")
def champion_settings(built_settings):
    """``built_settings`` after one ``train`` and one ``promote``: version 1 is the champion."""
    from rich.console import Console

    from pipelines import promote, train

    train.run(built_settings, Console(quiet=True))
    promote.run(built_settings, False, None, Console(quiet=True))
    return built_settings
