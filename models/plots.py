"""Static PNG figures of a backtest: precision-recall and calibration curves, importance."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve

from features.io import write_atomic
from models.drivers import feature_name


def _figure(width: float, height: float) -> tuple[Figure, object]:
    """A figure outside pyplot (no global backend state), and its one axis."""
    figure = Figure(figsize=(width, height))
    return figure, figure.add_subplot()


# distinct line styles: models whose rankings coincide (a calibrated model and its own scores)
# draw the same curve, and the one drawn last must not hide the other
_STYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))


def fold_words(name: str) -> str:
    """A fold's name as a reader takes it: ``temporal_2016`` -> ``new belts of 2016``."""
    period = name.removeprefix("temporal_")
    return f"new belts of {period}" if period != name else name


def pr_curves(predictions: pd.DataFrame, fold: str, path: Path) -> Path:
    """Precision-recall curve of every model on one fold, written to ``path``."""
    return _save(pr_figure(predictions, fold), path)


def pr_figure(predictions: pd.DataFrame, fold: str) -> Figure:
    """The figure of :func:`pr_curves`."""
    figure, axis = _figure(6, 4.5)
    rows = predictions[predictions["fold"] == fold]
    for i, (model, group) in enumerate(rows.groupby("model", sort=True)):
        precision, recall, _ = precision_recall_curve(group["y"], group["p"])
        axis.step(recall, precision, where="post", label=model, linestyle=_STYLES[i % len(_STYLES)],
                  linewidth=2.2 - 0.25 * i)  # fmt: skip
    base = rows.groupby("model")["y"].mean().iloc[0] if len(rows) else 0
    axis.axhline(base, color="grey", linestyle=":", label=f"base rate {base:.3f}")
    axis.set(xlabel="recall", ylabel="precision", title=f"Precision-recall, {fold_words(fold)}", ylim=(0, 1.02))
    axis.legend(fontsize=8)
    return figure


def calibration_curves(predictions: pd.DataFrame, fold: str, path: Path, bins: int = 10) -> Path:
    """The reliability diagram of :func:`calibration_figure`, written to ``path``."""
    return _save(calibration_figure(predictions, fold, bins), path)


def calibration_figure(predictions: pd.DataFrame, fold: str, bins: int = 10) -> Figure:
    """Reliability diagram (quantile bins) of every model on one fold, on log-like axes (symlog,
    linear below 0.01) of the same scale, both cut at the largest value shown, with the diagonal
    ``observed = predicted`` drawn through the whole range."""
    figure, axis = _figure(6, 4.5)
    rows = predictions[predictions["fold"] == fold]
    top = 0.0
    for i, (model, group) in enumerate(rows.groupby("model", sort=True)):
        observed, predicted = calibration_curve(group["y"], group["p"], n_bins=bins, strategy="quantile")
        axis.plot(predicted, observed, marker="o", markersize=4, label=model, linestyle=_STYLES[i % len(_STYLES)])
        top = max(top, float(np.max(predicted, initial=0.0)), float(np.max(observed, initial=0.0)))
    limit = min(1.0, top * 1.15) if top > 0 else 1.0
    diagonal = np.linspace(0.0, limit, 200)
    axis.plot(diagonal, diagonal, color="grey", linestyle=":", label="observed = predicted")
    axis.set_xscale("symlog", linthresh=0.01)
    axis.set_yscale("symlog", linthresh=0.01)
    axis.set(xlim=(0, limit), ylim=(0, limit), xlabel="predicted probability", ylabel="observed frequency",
             title=f"Calibration, {fold_words(fold)} (quantile bins)")  # fmt: skip
    axis.legend(fontsize=8)
    return figure


def importance_bars(importance: pd.Series, path: Path, top: int = 20) -> Path:
    """Horizontal bars of the ``top`` features by gain."""
    head = importance.head(top)[::-1]
    figure, axis = _figure(8, 0.3 * len(head) + 1)
    axis.barh([feature_name(f) for f in head.index], head.to_numpy())
    axis.tick_params(axis="y", labelsize=8)
    axis.set(xlabel="total gain in the trees' splits", title="Tree split gain (LightGBM)")
    return _save(figure, path)


def _save(figure: Figure, path: Path) -> Path:
    return write_atomic(Path(path), png_writer(figure))


def png_writer(figure: Figure) -> Callable[[Path], None]:
    """A writer of ``figure`` as PNG to a path given later (for :func:`features.io.write_together`)."""
    figure.tight_layout()
    return lambda tmp: figure.savefig(tmp, format="png", dpi=110)


def shap_summary(contributions: pd.DataFrame, values: pd.DataFrame, path: Path, top: int = 15) -> Path:
    """A SHAP summary (beeswarm-style) of the model's contributions (LightGBM ``pred_contrib``,
    plus a linear margin's terms): per feature, each row's contribution, coloured by the
    feature's value rank."""
    order = contributions.abs().mean().sort_values(ascending=False).index[:top][::-1]
    figure, axis = _figure(9, 0.35 * len(order) + 1.2)
    for i, feature in enumerate(order):
        contribution = contributions[feature].to_numpy()
        colour = values[feature].rank(pct=True).fillna(0.5).to_numpy()
        jitter = (np.random.default_rng(i).random(len(contribution)) - 0.5) * 0.6
        axis.scatter(contribution, i + jitter, c=colour, cmap="coolwarm", s=4, alpha=0.6)
    axis.set_yticks(range(len(order)), labels=[feature_name(f) for f in order], fontsize=8)
    axis.axvline(0, color="grey", linewidth=0.8)
    axis.set(xlabel="contribution to the log-odds (trees' SHAP + linear terms)",
             title="What drives p_belt (colour: feature value, blue low, red high)")  # fmt: skip
    return _save(figure, path)
