"""Benchmark batch scoring: forecast throughput with and without drivers on 1M SYNTHETIC rows.

The models are the real ones: the emergence and mode models fitted on the REAL panel with the
parameters ``beltcast train`` would use (``mlruns/tuned_params.json`` if it exists, else the
defaults), through the same function as ``train`` (``pipelines.train.fit_final``); or, with
``--champion``, the registered champion of the configured MLflow store. The rows they score are
SYNTHETIC: a snapshot of ``--rows`` county-periods (made-up codes 100000.., ten as-of periods
each) whose feature values are drawn per column from the model's snapshot of the real panel, with
its share of missing values. The request names every row by ``county_code`` and ``as_of``, as ``beltcast
score`` and batch jobs do, so the figures include request validation, the snapshot look-up, both
models (the mode booster is run even where the trained mode model's weight is 0 and the bundle
skips it), and building the output frame.

Printed, for the same model and rows in one run:

- ``forecast(drivers=False)`` with compiled prediction (the default for batches of
  >= ``models.compiled.COMPILE_ROWS`` rows) and with LightGBM's own predictor
  (the bundle's ``compiled_cache`` None, as ``[scoring] compiled = false`` loads it), and the
  one-off compile time (cached per machine afterwards);
- ``forecast(drivers=True)``, on ``--driver-rows`` of the rows (all by default);
- ``rank`` + schema check + CSV and Parquet writing of the scored rows, as ``beltcast score``
  does after the forecast.

Target (issue: batch scoring): >= 200,000 rows/s without drivers on 2 cores.

Run from the project root (needs ``beltcast features build``)::

    .venv/bin/python bench/bench_scoring.py                       # 1M rows
    .venv/bin/python bench/bench_scoring.py --driver-rows 100000  # quicker drivers figure
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_models import _load, _rate, peak_rss_gb, print_machine, synthetic_features, timer

import models.compiled
from models.bundle import ForecastBundle
from pipelines.backtest import fold_spec, load_panel, tuned_params
from pipelines.config import load_settings
from pipelines.score import rank, write
from pipelines.train import bundle_meta, fit_final

ROOT = Path(__file__).resolve().parents[1]
PERIODS = 10
TARGET = 200_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None, help="beltcast TOML config (default: built-in)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--driver-rows", type=int, default=None, help="rows for the drivers figure (default: all)")
    parser.add_argument("--repeat", type=int, default=3, help="calls per fast figure (median)")
    parser.add_argument("--champion", action="store_true", help="bench the registered champion instead")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.rows < PERIODS or args.rows > PERIODS * 900_000:
        parser.error(f"--rows must be between {PERIODS} and {PERIODS * 900_000:,}; got {args.rows}")
    if args.driver_rows is not None and not 0 < args.driver_rows <= args.rows:
        parser.error(f"--driver-rows must be between 1 and --rows ({args.rows}); got {args.driver_rows}")
    return args


def real_bundle(settings, champion: bool) -> tuple[ForecastBundle, str]:
    """The champion's bundle, or models fitted on the real panel as ``train`` fits them."""
    panel = load_panel(settings)
    if champion:
        import mlflow.pyfunc

        from pipelines.tracking import CHAMPION, model_uri, use_tracking, version_by_alias

        client = use_tracking(settings)
        version = version_by_alias(client, settings.mlflow.registered_model, CHAMPION)
        if version is None:
            sys.exit("no champion in the configured store: run `beltcast train` and `beltcast promote`")
        model = mlflow.pyfunc.load_model(model_uri(settings.mlflow.registered_model, version.version))
        return model.unwrap_python_model().bundle, f"champion v{version.version}"
    params = tuned_params(settings) or {}
    emergence, mode = fit_final(panel, params, settings)
    bundle = ForecastBundle.from_models(emergence, mode, panel, bundle_meta(settings, fold_spec(settings)))
    source = str(settings.model.params_file) if params else "default parameters"
    return bundle, f"fitted on the REAL panel with {source}"


def synthetic_bundle(model: ForecastBundle, rows: int, seed: int) -> ForecastBundle:
    """``model``'s boosters over a SYNTHETIC snapshot of ``rows`` county-periods, drawn from the
    features its own snapshot knows."""
    panel = model.snapshot
    rng = np.random.default_rng(seed)
    X = synthetic_features(panel, rows, rng)[model.features]
    counties = -(-rows // PERIODS)
    newest = int(panel["as_of"].max())
    index = np.arange(rows)
    ids = pd.DataFrame(
        {
            "county_code": pd.array((100_000 + index % counties).astype(str), dtype="str"),
            "county_name": pd.array([f"synthetic county {i}" for i in index % counties], dtype="str"),
            "province": "synthetic province",
            "prefecture": "synthetic prefecture",
            "as_of": newest - index // counties,
            "is_belt_known": pd.array(rng.random(rows) < 0.02, dtype="boolean"),
            "last_label_period": pd.array(np.full(rows, newest), dtype="Int64"),
        }
    )
    snapshot = pd.concat([ids, X.reset_index(drop=True)], axis=1)
    return dataclasses.replace(model, snapshot=snapshot)


def describe(bundle: ForecastBundle) -> str:
    emergence, mode = bundle.emergence.dump_model(), bundle.mode.dump_model()
    leaves = np.mean([t["num_leaves"] for t in emergence["tree_info"]])
    return (
        f"emergence {len(emergence['tree_info'])} trees (mean {leaves:.1f} leaves)"
        + (" from a linear margin, " if bundle.margin is not None else ", ")
        + f"mode {len(mode['tree_info'])} trees ({mode['num_class']} classes) at weight {bundle.mode_weight:.2f}"
        + (" (not run)" if bundle.mode_weight == 0 else "")
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    print_machine()
    settings = load_settings(args.config)
    model, source = real_bundle(settings, args.champion)
    bundle = synthetic_bundle(model, args.rows, args.seed)
    request = bundle.snapshot[["county_code", "as_of"]].copy()
    n = len(request)
    print(f"\nmodels: {source}; {describe(bundle)}")
    print(f"rows: {n:,} SYNTHETIC county-periods (seed {args.seed}), {len(bundle.features)} features")

    cache = Path(tempfile.mkdtemp(prefix="beltcast-bench-compiled-"))
    bundle.compiled_cache = cache
    try:
        bench_forecast(bundle, request, args)
        bench_writing(bundle, request)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - start:.0f} s; peak RSS {peak_rss_gb():.2f} GB; load average {_load()}")


def bench_forecast(bundle: ForecastBundle, request: pd.DataFrame, args: argparse.Namespace) -> None:
    n = len(request)
    print(f"\n== forecast of {n:,} SYNTHETIC rows (median of {args.repeat}) ==")
    shipped = bundle
    if bundle.mode_weight == 0:  # the target must hold for a bundle whose mode model is used
        print("  mode weight 0: timed with the mode booster run (weight 1); the bundle as trained skips it")
        bundle = dataclasses.replace(bundle, mode_weight=1.0)
    compiled = models.compiled.available() and n >= models.compiled.COMPILE_ROWS
    if n < models.compiled.COMPILE_ROWS:
        print(f"  {n:,} rows < COMPILE_ROWS ({models.compiled.COMPILE_ROWS:,}): LightGBM predicts, nothing is compiled")
    if compiled:
        start = time.perf_counter()
        bundle.forecast(request.head(models.compiled.COMPILE_ROWS), drivers=False)
        print(f"  one-off compile of the boosters used (cached per machine): {time.perf_counter() - start:.1f} s")
        fast, out = timer(lambda: bundle.forecast(request, drivers=False), args.repeat)
        _rate("forecast(drivers=False), compiled", fast, n)
        if shipped is not bundle:
            shipped_time = timer(lambda: shipped.forecast(request, drivers=False), args.repeat)[0]
            _rate("  as trained (mode booster not run)", shipped_time, n)
    else:
        print("  no compiled prediction (lleaves missing or a small batch)")
    plain_bundle = dataclasses.replace(bundle, compiled_cache=None)
    plain, plain_out = timer(lambda: plain_bundle.forecast(request, drivers=False), args.repeat)
    _rate("forecast(drivers=False), LightGBM", plain, n)
    if compiled:
        diff = np.abs(out["p_belt"].to_numpy() - plain_out["p_belt"].to_numpy()).max()
        print(f"  compiled / LightGBM speed: {plain / fast:.2f}x; max |p_belt difference| {diff:.1e}")
        best = fast
    else:
        best = plain
    verdict = "PASS" if n / best >= TARGET else "FAIL"
    print(f"  target >= {TARGET:,} rows/s without drivers: {verdict} ({n / best / TARGET:.0%} of the target)")

    m = args.driver_rows or n
    subset = request.head(m)
    with_drivers, _ = timer(lambda: bundle.forecast(subset, drivers=True), 1)
    _rate(f"forecast(drivers=True) on {m:,} rows", with_drivers, m)
    print(f"  drivers cost {(with_drivers / m) / (best / n):.0f}x the time per row of the forecast without them")


def bench_writing(bundle: ForecastBundle, request: pd.DataFrame) -> None:
    """Rank, check and write one as-of period (county codes are unique within a period only)."""
    newest = request[request["as_of"] == request["as_of"].max()]
    n = len(newest)
    forecast = bundle.forecast(newest, drivers=False).assign(model_version="bench")
    ranked_s, ranked = timer(lambda: rank(forecast), 1)
    print(f"\n== after the forecast, as `beltcast score` does, on the {n:,} rows of the newest period ==")
    _rate("rank + schema check", ranked_s, n)
    with tempfile.TemporaryDirectory() as tmp:
        write_s, _ = timer(lambda: write(ranked, Path(tmp) / "scores.csv", "bench", 0), 1)
    _rate("CSV + Parquet, atomic", write_s, n)


if __name__ == "__main__":
    main()
