"""Benchmark the models: fit, backtest, predict and the forecast bundle's serving paths.

Fit, predict and the bundle run on SYNTHETIC rows of the real panel's shape: the feature columns
of ``data/features/panel.parquet``, each drawn independently from that column's empirical
distribution with its share of missing values, and a seeded SYNTHETIC 0/1 target (~2 % base rate)
that depends on a few features. The backtest runs on the real panel's transitions, then on
``--backtest-rows`` SYNTHETIC transitions (default: ``--rows``), whose origin years and provinces
are drawn with the real transitions' shares.

Run from the project root::

    .venv/bin/python bench/bench_models.py                      # 1M rows: about an hour
    .venv/bin/python bench/bench_models.py --rows 100000 --bundle-rows 10000    # ~7 min
    .venv/bin/python bench/bench_models.py --sections backtest --backtest-rows 0   # real panel: ~1 min
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
from scipy.special import expit

import models.bundle
from features.panel import feature_columns
from features.taxonomy import MODES
from models.backtest import FoldSpec, backtest_emergence
from models.bundle import SNAPSHOT_IDS, SNAPSHOT_STATUS, ForecastBundle
from models.catalog import emergence_models
from models.datasets import emergence_transitions
from models.estimators import LGBMEmergence, LGBMMode
from pipelines.config import ModelSettings

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("fit", "predict", "backtest", "bundle")
BASE_RATE = 0.02
# SYNTHETIC target: log-odds rise with these features' percentile ranks (missing -> median).
SIGNAL = {
    "belts_within_100km_share": 1.5,
    "villages_within_50km_share": 1.0,
    "census_manufacturing_share_rel": 1.0,
    "viirs_growth_1y_rel": 0.5,
    "dist_nearest_belt_km_rel": -1.5,
}
MODE_ROWS = 400
LIBRARIES = ("lightgbm", "scikit-learn", "numpy", "pandas", "scipy", "pyarrow")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panel", type=Path, default=ROOT / "data" / "features" / "panel.parquet")
    parser.add_argument("--rows", type=int, default=1_000_000, help="SYNTHETIC rows to fit on")
    parser.add_argument("--bundle-rows", type=int, default=100_000, help="SYNTHETIC rows for the bundle paths")
    parser.add_argument(
        "--backtest-rows",
        type=int,
        default=None,
        help="SYNTHETIC transitions of the backtest section (default: --rows; 0: the real panel only)",
    )
    parser.add_argument(
        "--n-boot",
        type=int,
        default=ModelSettings().bootstrap,
        help="bootstrap resamples of the backtest (default: the settings' default)",
    )
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)}",
    )
    parser.add_argument(
        "--uncalibrated",
        action="store_true",
        help="also fit calibration=None (n_jobs=2), to show the cost of the calibration",
    )
    parser.add_argument("--repeat", type=int, default=1, help="repeats of the predict timings")
    parser.add_argument("--seed", type=int, default=0, help="seed of the SYNTHETIC data")
    args = parser.parse_args(argv)
    _check(parser, args)
    args.sections = tuple(s.strip() for s in args.sections.split(","))
    return args


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not args.panel.is_file():
        parser.error(f"--panel {args.panel} does not exist; run `beltcast features build` first")
    if args.rows < 1_000:
        parser.error(f"--rows must be >= 1000; got {args.rows}")
    if not 1_000 <= args.bundle_rows <= min(args.rows, 800_000):
        parser.error(f"--bundle-rows must be within 1000..min(--rows, 800000); got {args.bundle_rows}")
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        parser.error(f"--sections must be among {list(SECTIONS)}; got {sorted(unknown)}")
    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1; got {args.repeat}")
    if args.backtest_rows is None:
        args.backtest_rows = args.rows
    if args.backtest_rows and not 1_000 <= args.backtest_rows <= args.rows:
        parser.error(f"--backtest-rows must be 0 or within 1000..--rows ({args.rows}); got {args.backtest_rows}")


def timer(func: Callable, repeat: int = 1) -> tuple[float, object]:
    """Median wall seconds of ``repeat`` calls of ``func()``, and the last result."""
    seconds, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def peak_rss_gb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (peak if sys.platform == "darwin" else peak * 1024) / 2**30


def synthetic_features(panel: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """SYNTHETIC rows: each feature drawn from the real column's values, with its missing share."""
    columns = feature_columns(panel)
    values = np.empty((n, len(columns)), dtype=float, order="F")
    for j, column in enumerate(columns):
        observed = panel[column].dropna().to_numpy(dtype=float)
        values[:, j] = observed[rng.integers(0, len(observed), n)]
        values[rng.random(n) < panel[column].isna().mean(), j] = np.nan
    return pd.DataFrame(values, columns=columns, copy=False)


def synthetic_target(X: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """A SYNTHETIC 0/1 target at about :data:`BASE_RATE`, driven by the :data:`SIGNAL` features."""
    missing = [c for c in SIGNAL if c not in X.columns]
    if missing:
        raise KeyError(f"the panel lacks the SYNTHETIC signal column(s) {missing}")
    score = sum(weight * (X[c].rank(pct=True).fillna(0.5).to_numpy() - 0.5) for c, weight in SIGNAL.items())
    logit = 3.0 * score
    return (rng.random(len(X)) < expit(logit + _intercept(logit))).astype(int)


def _intercept(logit: np.ndarray) -> float:
    """The intercept giving a mean probability of :data:`BASE_RATE` (bisection)."""
    low, high = -20.0, 5.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if expit(logit + middle).mean() < BASE_RATE else (low, middle)
    return (low + high) / 2


def synthetic_snapshot(X: pd.DataFrame, as_of: int) -> pd.DataFrame:
    """A SYNTHETIC panel-like frame for the bundle: made-up ids and status plus ``X``."""
    n = len(X)
    known = {
        "county_code": [str(100_000 + i) for i in range(n)],
        "county_name": [f"synthetic county {i}" for i in range(n)],
        "province": ["synthetic province"] * n,
        "prefecture": ["synthetic prefecture"] * n,
        "as_of": [as_of] * n,
        "is_belt_known": pd.array([False] * n, dtype="boolean"),
        "last_label_period": pd.array([as_of] * n, dtype="Int64"),
    }
    wanted = SNAPSHOT_IDS + SNAPSHOT_STATUS
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise KeyError(f"no SYNTHETIC values for the bundle's snapshot column(s) {unknown}")
    ids = pd.DataFrame({c: known[c] for c in wanted})
    return pd.concat([ids, X.reset_index(drop=True)], axis=1)


def print_machine() -> None:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "n/a"
    print(f"machine: {platform.platform()}; cpu_count={os.cpu_count()}; usable cores={affinity}")
    print(f"python {platform.python_version()}; load average {_load()}")
    print("libraries: " + "; ".join(f"{lib} {_version(lib)}" for lib in LIBRARIES))


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _version(lib: str) -> str:
    try:
        return metadata.version(lib)
    except metadata.PackageNotFoundError:
        return "not installed"


def _rate(name: str, seconds: float, rows: int) -> None:
    print(f"  {name:<40} {seconds:8.2f} s   {rows / seconds:12,.0f} rows/s")


def bench_fit(X: pd.DataFrame, y: np.ndarray, uncalibrated: bool) -> dict[str, LGBMEmergence]:
    """Fit LGBMEmergence with its defaults (sigmoid, n_jobs=1), with n_jobs=2, with n_jobs=2 and
    the linear margin the tuned public-data model uses (and uncalibrated)."""
    print(f"\n== fit LGBMEmergence on {len(X):,} SYNTHETIC rows x {X.shape[1]} features ==")
    variants = {
        "default (n_jobs=1)": LGBMEmergence(),
        "n_jobs=2": LGBMEmergence(n_jobs=2),
        "n_jobs=2, linear_margin_C=0.1": LGBMEmergence(n_jobs=2, linear_margin_C=0.1),
    }
    if uncalibrated:
        variants["n_jobs=2, calibration=None"] = LGBMEmergence(n_jobs=2, calibration=None)
    seconds = {}
    for name, model in variants.items():
        seconds[name], _ = timer(lambda model=model: model.fit(X, y))
        _rate(name, seconds[name], len(X))
    one, two = seconds["default (n_jobs=1)"], seconds["n_jobs=2"]
    print(f"  speed-up n_jobs=2 over n_jobs=1: {one / two:.2f}x (ideal on 2 idle cores: 2x)")
    margin = seconds["n_jobs=2, linear_margin_C=0.1"]
    print(f"  cost of the linear margin (n_jobs=2): {margin / two:.2f}x a fit without it")
    if uncalibrated:
        raw = seconds["n_jobs=2, calibration=None"]
        print(f"  cost of the sigmoid cross-fitting (n_jobs=2): {two / raw:.2f}x an uncalibrated fit")
    return variants


def bench_predict(models: dict[str, LGBMEmergence], X: pd.DataFrame, repeat: int) -> None:
    print(f"\n== LGBMEmergence.predict_proba on {len(X):,} SYNTHETIC rows (median of {repeat}) ==")
    for name, model in models.items():
        seconds, _ = timer(lambda model=model: model.predict_proba(X), repeat)
        _rate(f"fitted with {name}", seconds, len(X))


def bench_backtest(panel: pd.DataFrame, n_boot: int) -> None:
    data = emergence_transitions(panel)
    spec = FoldSpec()
    print(
        f"\n== backtest_emergence, emergence_models(), FoldSpec() on the REAL panel's "
        f"transitions ({_folds(data.y, data.periods, data.groups, spec)}) =="
    )
    seconds = {}
    for boot in dict.fromkeys((n_boot, 0)):
        seconds[boot], _ = timer(
            lambda boot=boot: backtest_emergence(
                emergence_models(), data.X, data.y, data.periods, data.groups, spec, boot
            )
        )
        print(f"  n_boot={boot:<5} {seconds[boot]:8.2f} s")
    if n_boot:
        share = (seconds[n_boot] - seconds[0]) / seconds[n_boot]
        print(f"  bootstrap share of the backtest with n_boot={n_boot}: {share:.0%}")


def bench_backtest_synthetic(
    panel: pd.DataFrame, X: pd.DataFrame, y: np.ndarray, rng: np.random.Generator, n_boot: int
) -> None:
    """The same backtest on SYNTHETIC transitions: origin years and provinces drawn with the real
    transitions' shares, so the folds are cut as on the panel."""
    real = emergence_transitions(panel)
    periods = rng.choice(real.periods, len(X))
    groups = rng.choice(real.groups, len(X))
    spec = FoldSpec()
    print(
        f"\n== backtest_emergence, emergence_models(), FoldSpec() on SYNTHETIC transitions "
        f"({_folds(y, periods, groups, spec)}; origin years and provinces drawn with the real shares) =="
    )
    seconds, _ = timer(lambda: backtest_emergence(emergence_models(), X, y, periods, groups, spec, n_boot))
    _rate(f"n_boot={n_boot}", seconds, len(X))


def _folds(y: np.ndarray, periods: np.ndarray, groups: np.ndarray, spec: FoldSpec) -> str:
    temporal = spec.temporal(periods)
    spatial = spec.spatial(periods, groups, y)
    return (
        f"{len(y):,} rows, {int(y.sum()):,} positives; {len(temporal)} temporal fold(s) testing "
        f"{sum(int(np.isin(periods, f.test_periods).sum()) for f in temporal):,} rows + {len(spatial)} spatial folds"
    )


def bench_bundle(
    emergence: LGBMEmergence, X: pd.DataFrame, panel: pd.DataFrame, rng: np.random.Generator, repeat: int
) -> None:
    """The bundle's serving paths; drivers split into pred_contrib and top_drivers formatting."""
    # weight 1: the booster is timed (on random SYNTHETIC modes the cross-validated weight is 0)
    mode = LGBMMode(model_weight=1.0).fit(X.iloc[:MODE_ROWS], rng.choice(MODES, MODE_ROWS))
    as_of = int(panel["as_of"].max())
    snapshot = synthetic_snapshot(X, as_of)
    bundle = ForecastBundle.from_models(emergence, mode, snapshot, meta={})
    n = len(X)
    print(
        f"\n== ForecastBundle on {n:,} SYNTHETIC rows (emergence: the default fit above; "
        f"mode: LGBMMode on {MODE_ROWS} SYNTHETIC rows; median of {repeat}) =="
    )
    request = bundle.snapshot[["county_code", "as_of"]]
    p_belt, _ = timer(lambda: bundle.p_belt(X), repeat)
    _rate("p_belt(X)", p_belt, n)
    _rate("mode_proba(X)", timer(lambda: bundle.mode_proba(X), repeat)[0], n)
    forecast, _ = timer(lambda: bundle.forecast(request, drivers=False), repeat)
    _rate("forecast(request, drivers=False)", forecast, n)
    formatting: list[float] = []
    with mock.patch.object(models.bundle, "top_drivers", _timed(models.bundle.top_drivers, formatting)):
        drivers, _ = timer(lambda: bundle.drivers(X))
    _rate("drivers(X)", drivers, n)
    _rate("  of which contributions (the rest)", drivers - formatting[0], n)
    _rate("  of which top_drivers formatting", formatting[0], n)
    print(f"  drivers(X) / p_belt(X): {drivers / p_belt:.0f}x the time")


def _timed(func: Callable, record: list[float]) -> Callable:
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            record.append(time.perf_counter() - start)

    return wrapper


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    print_machine()
    panel = pd.read_parquet(args.panel)
    if "backtest" in args.sections:
        bench_backtest(panel, args.n_boot)
    if {"fit", "predict", "bundle"} & set(args.sections) or ("backtest" in args.sections and args.backtest_rows):
        bench_synthetic(panel, args)
    print(f"\ntotal {time.perf_counter() - start:.0f} s; peak RSS {peak_rss_gb():.2f} GB; load average {_load()}")


def bench_synthetic(panel: pd.DataFrame, args: argparse.Namespace) -> None:
    """Fit, predict, bundle and the backtest's SYNTHETIC part on the SYNTHETIC rows."""
    rng = np.random.default_rng(args.seed)
    X = synthetic_features(panel, args.rows, rng)
    y = synthetic_target(X, rng)
    print(
        f"\nSYNTHETIC data (seed {args.seed}): {len(X):,} rows x {X.shape[1]} feature columns of "
        f"{args.panel.name}, drawn per column; SYNTHETIC target base rate {y.mean():.2%}"
    )
    if "backtest" in args.sections and args.backtest_rows:
        rows = slice(0, args.backtest_rows)
        bench_backtest_synthetic(panel, X.iloc[rows], y[rows], np.random.default_rng(args.seed + 1), args.n_boot)
    if not {"fit", "predict", "bundle"} & set(args.sections):
        return
    if "fit" in args.sections:
        fitted = bench_fit(X, y, args.uncalibrated)
    else:
        print("\n(fit section skipped: fitting the default LGBMEmergence, untimed)")
        fitted = {"default (n_jobs=1)": LGBMEmergence().fit(X, y)}
    if "predict" in args.sections:
        bench_predict(fitted, X, args.repeat)
    if "bundle" in args.sections:
        bundle_rows = X.iloc[: args.bundle_rows]
        bench_bundle(fitted["default (n_jobs=1)"], bundle_rows, panel, rng, max(args.repeat, 3))


if __name__ == "__main__":
    main()
