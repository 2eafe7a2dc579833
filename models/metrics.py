"""Ranking and probability metrics for a short list, with bootstrap intervals."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    roc_auc_score,
)

TOP_KS = (25, 50, 100)


def precision_at(y: np.ndarray, score: np.ndarray, k: int) -> float:
    """Share of belts among the ``k`` highest scores (ties broken by order, stable)."""
    top = np.argsort(-score, kind="stable")[:k]
    return float(np.mean(y[top])) if len(top) else float("nan")


def recall_at(y: np.ndarray, score: np.ndarray, k: int) -> float:
    """Share of all belts found among the ``k`` highest scores."""
    positives = y.sum()
    if positives == 0:
        return float("nan")
    top = np.argsort(-score, kind="stable")[:k]
    return float(y[top].sum() / positives)


def emergence_metrics(
    y: np.ndarray, p: np.ndarray, ks: Sequence[int] = TOP_KS, n_boot: int = 1000, seed: int = 0
) -> dict[str, float]:
    """Every emergence metric of one fold.

    Parameters
    ----------
    y : array of 0/1
        Whether each county became a belt.
    p : array of float
        Predicted probability.
    ks : sequence of int
        Cut-offs of the short list.
    n_boot : int
        Bootstrap resamples for the average-precision interval (0 to skip).
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    dict
        ``average_precision`` (+ ``_ci`` [5 %, 95 %]), ``roc_auc``, ``precision_at_k``,
        ``recall_at_k``, ``lift_at_50``, ``brier``, ``log_loss``, ``base_rate``, ``n``,
        ``n_positive``.
    """
    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(p, dtype=float), 1e-9, 1 - 1e-9)
    base_rate = float(y.mean()) if len(y) else float("nan")
    two_classes = 0 < y.sum() < len(y)
    result = {
        "n": len(y),
        "n_positive": int(y.sum()),
        "base_rate": base_rate,
        "average_precision": float(average_precision_score(y, p)) if two_classes else float("nan"),
        "roc_auc": float(roc_auc_score(y, p)) if two_classes else float("nan"),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
    }
    for k in ks:
        result[f"precision_at_{k}"] = precision_at(y, p, k)
        result[f"recall_at_{k}"] = recall_at(y, p, k)
    result["lift_at_50"] = result.get("precision_at_50", precision_at(y, p, 50)) / base_rate
    if n_boot and two_classes:
        result["average_precision_ci"] = bootstrap_ap(y, p, n_boot, seed)
    return result


def bootstrap_ap(y: np.ndarray, p: np.ndarray, n_boot: int, seed: int) -> list[float]:
    """A 90 % percentile bootstrap interval of average precision.

    All resamples at once: each is a vector of multiplicities over the rows, and the weighted AP of
    every resample is computed from one sort of the scores (ties grouped as scikit-learn does)."""
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(len(y), np.full(len(y), 1 / len(y)), size=n_boot).astype(float)
    values = weighted_average_precision(y, p, weights)
    return [float(np.nanpercentile(values, 5)), float(np.nanpercentile(values, 95))]


def weighted_average_precision(y: np.ndarray, p: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average precision under each row of ``weights`` (resamples x rows); NaN without positives.

    Equals ``average_precision_score(y, p, sample_weight=w)`` for every row ``w``."""
    order = np.argsort(-p, kind="mergesort")
    sorted_p, sorted_y = p[order], y[order].astype(float)
    starts = np.flatnonzero(np.r_[True, sorted_p[1:] != sorted_p[:-1]])
    w = weights[:, order]
    tp = np.cumsum(np.add.reduceat(w * sorted_y, starts, axis=1), axis=1)
    fp = np.cumsum(np.add.reduceat(w * (1 - sorted_y), starts, axis=1), axis=1)
    total = tp[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp)
        recall = tp / total
    gain = np.diff(np.concatenate([np.zeros((len(w), 1)), recall], axis=1), axis=1)
    ap = np.nansum(gain * precision, axis=1)
    return np.where(total[:, 0] > 0, ap, np.nan)


def mode_metrics(y: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """Accuracy, macro-F1 and log-loss of mode predictions."""
    y = np.asarray(y)
    predicted = np.asarray(classes)[np.argmax(proba, axis=1)]
    clipped = np.clip(proba, 1e-9, 1.0)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    order = np.argsort(np.asarray(classes))  # log_loss reads columns in sorted label order
    return {
        "n": len(y),
        "accuracy": float(accuracy_score(y, predicted)),
        "macro_f1": float(f1_score(y, predicted, labels=list(classes), average="macro", zero_division=0)),
        "log_loss": float(log_loss(y, clipped[:, order], labels=sorted(classes))),
    }
