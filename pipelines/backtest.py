"""``beltcast backtest``: every model and baseline through the same rolling-origin folds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from features.errors import BeltcastError
from features.io import write_json
from models.backtest import BacktestResult, FoldSpec, backtest_emergence, backtest_mode
from models.catalog import emergence_models, mode_models
from models.datasets import emergence_transitions, mode_rows
from models.plots import calibration_curves, pr_curves
from pipelines.config import Settings

SHOWN = ("average_precision", "precision_at_50", "recall_at_100", "roc_auc", "brier")


def run(settings: Settings, out: Path | None, console: Console) -> dict:
    """Backtest, write the JSON contract and the curves, print the comparison table."""
    panel = load_panel(settings)
    report, _ = evaluate(panel, settings, fold_spec(settings), out, console)
    return report


def evaluate(
    panel: pd.DataFrame,
    settings: Settings,
    spec: FoldSpec,
    out: Path | None,
    console: Console,
    params: dict | None = None,
) -> tuple[dict, list[Path]]:
    """The backtest of every model on ``panel``: JSON contract and curves written, table printed.

    ``params`` are LightGBM's (default: the tuned ones). Returns the contract and the paths
    written (JSON first), for ``train`` to log."""
    result = emergence_backtest(panel, settings, spec, params)
    report = contract(result, mode_backtest(panel, settings), spec)
    out = Path(out or settings.outputs.dir / "backtest.json")
    written = [write_json(report, out), *write_plots(result, out.parent)]
    console.print(comparison_table(report))
    if report["emergence"]["comparisons"]:
        console.print(difference_table(report))
    console.print(f"backtest -> {', '.join(str(p) for p in written)}")
    return report, written


def load_panel(settings: Settings) -> pd.DataFrame:
    """The panel written by ``features build``."""
    path = settings.data.features_dir / "panel.parquet"
    if not path.is_file():
        raise BeltcastError(f"panel {path} does not exist; run `beltcast features build` first")
    return pd.read_parquet(path)


def fold_spec(settings: Settings) -> FoldSpec:
    """The one fold spec of backtest, tune and promote."""
    if is_platform(settings):
        return FoldSpec(
            horizon=settings.platform.horizon,
            n_spatial=settings.model.spatial_folds,
            seed=settings.model.seed,
            max_temporal=settings.platform.temporal_folds,
        )
    return FoldSpec(horizon=settings.labels.horizon, n_spatial=settings.model.spatial_folds, seed=settings.model.seed)


def is_platform(settings: Settings) -> bool:
    """Labels from the platform's own metrics (rather than the public rosters)."""
    return settings.platform.metrics_file is not None


def mode_period(settings: Settings) -> int | None:
    """The period whose belts train the mode model (public: the roster with products)."""
    return None if is_platform(settings) else settings.model.mode_year


def tuned_params(settings: Settings) -> dict | None:
    """Parameters saved by ``beltcast tune``, if any."""
    path = settings.model.params_file
    return json.loads(path.read_text(encoding="utf-8"))["params"] if path.is_file() else None


def emergence_backtest(
    panel: pd.DataFrame, settings: Settings, spec: FoldSpec, params: dict | None = None
) -> BacktestResult:
    """Every emergence model (LightGBM with ``params``, default the tuned ones) through the folds."""
    data = emergence_transitions(panel)
    models = emergence_models(tuned_params(settings) if params is None else params, settings.model.seed)
    return backtest_emergence(models, data.X, data.y, data.periods, data.groups, spec, settings.model.bootstrap)


def mode_backtest(panel: pd.DataFrame, settings: Settings) -> dict:
    """Mode models by grouped cross-validation over provinces."""
    rows = mode_rows(panel, mode_period(settings))
    return backtest_mode(mode_models(settings.model.seed), rows.X, rows.y, rows.groups)


def contract(result: BacktestResult, mode: dict, spec: FoldSpec) -> dict:
    """The backtest JSON contract of DESIGN.md."""
    temporal = [f for f in result.folds if f["kind"] == "temporal"]
    spatial = next((f for f in result.folds if f["kind"] == "spatial"), None)
    return {
        "emergence": {
            "fold_spec": spec.to_dict(),
            "newest_fold": temporal[-1]["name"] if temporal else None,
            "folds": result.folds,
            "models": result.metrics("temporal") if temporal else {},
            "comparisons": temporal[-1].get("comparisons", {}) if temporal else {},
            "spatial": {
                "models": spatial["models"] if spatial else {},
                "comparisons": spatial.get("comparisons", {}) if spatial else {},
            },
        },
        "mode": {"models": mode},
    }


def write_plots(result: BacktestResult, folder: Path) -> list[Path]:
    """PR and calibration curves of the newest temporal fold."""
    newest = [f["name"] for f in result.folds if f["kind"] == "temporal"][-1]
    return [
        pr_curves(result.predictions, newest, folder / "pr_curve.png"),
        calibration_curves(result.predictions, newest, folder / "calibration_curve.png"),
    ]


def comparison_table(report: dict) -> Table:
    """Models x metrics, newest temporal fold and province hold-out."""
    table = Table(title=f"Emergence backtest ({report['emergence']['newest_fold']} and province hold-out)")
    table.add_column("model")
    table.add_column("fold")
    for metric in SHOWN:
        table.add_column(metric.replace("average_precision", "AP (90% CI)"), justify="right")
    for fold, models in (
        ("temporal", report["emergence"]["models"]),
        ("provinces", report["emergence"]["spatial"]["models"]),
    ):
        for name, metrics in models.items():
            table.add_row(name, fold, *(_cell(metrics, m) for m in SHOWN))
    for name, metrics in report["mode"]["models"].items():
        table.add_row(
            f"mode:{name}",
            "provinces",
            f"acc {metrics['accuracy']:.3f}",
            f"F1 {metrics['macro_f1']:.3f}",
            "",
            "",
            "",
        )
    return table


def difference_table(report: dict) -> Table:
    """LightGBM minus each other model on the same bootstrap resamples: the difference, its 90 %
    interval and the share of resamples in which LightGBM is ahead."""
    table = Table(title="LightGBM minus each model, paired bootstrap (90% CI; share of resamples ahead)")
    for column in ("compared with", "fold", "AP difference", "ahead", "P@50 difference", "ahead"):
        table.add_column(column, justify="left" if column in ("compared with", "fold") else "right")
    emergence = report["emergence"]
    for fold, comparisons in (
        ("temporal", emergence["comparisons"]),
        ("provinces", emergence["spatial"]["comparisons"]),
    ):
        for name, diff in comparisons.items():
            cells = []
            for metric in ("average_precision_diff", "precision_at_50_diff"):
                low, high = diff.get(f"{metric}_ci", (np.nan, np.nan))
                cells += [
                    f"{diff[metric]:+.3f} [{low:+.3f}, {high:+.3f}]",
                    f"{diff.get(f'{metric}_ahead', np.nan):.0%}",
                ]
            table.add_row(name, fold, *cells)
    return table


def _cell(metrics: dict, metric: str) -> str:
    value = metrics.get(metric, np.nan)
    if metric == "average_precision" and "average_precision_ci" in metrics:
        low, high = metrics["average_precision_ci"]
        return f"{value:.3f} [{low:.3f}, {high:.3f}]"
    return f"{value:.3f}"
