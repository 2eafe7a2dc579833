"""Ranking and probability metrics for a short list, with bootstrap intervals."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator, Mapping, Sequence

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
# Resamples x rows held at once by the bootstrap (float64: 160 MB): the resamples are drawn and
# judged in blocks of this many cells, so a fold of 500,000 rows needs no 4 GB matrix per model.
RESAMPLE_CELLS = 20_000_000


def precision_at(y: np.ndarray, score: np.ndarray, k: int) -> float:
    """Share of belts among the ``k`` highest scores. Scores tied across the cut-off count with
    the part of them that fits, at their share of belts (the expected precision when ties are
    broken at random): a constant score has the base rate, whatever the order of the rows."""
    y = np.asarray(y)
    if not len(y):
        return float("nan")
    return float(weighted_precision_at(y, np.asarray(score, dtype=float), np.ones((1, len(y))), k)[0])


def recall_at(y: np.ndarray, score: np.ndarray, k: int) -> float:
    """Share of all belts found among the ``k`` highest scores (ties as :func:`precision_at`)."""
    y = np.asarray(y)
    positives = y.sum()
    if positives == 0:
        return float("nan")
    return float(precision_at(y, score, k) * min(k, len(y)) / positives)


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
    y, p = np.asarray(y, dtype=int), _probabilities(p)
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
    top = result.get("precision_at_50", precision_at(y, p, 50))
    result["lift_at_50"] = top / base_rate if base_rate > 0 else float("nan")  # no belt: no lift
    if n_boot and two_classes:
        result["average_precision_ci"] = bootstrap_ap(y, p, n_boot, seed)
    return result


def bootstrap_ap(y: np.ndarray, p: np.ndarray, n_boot: int, seed: int) -> list[float]:
    """A 90 % percentile bootstrap interval of average precision.

    Many resamples at once: each is a vector of multiplicities over the rows, and the weighted AP
    of every resample of a block is computed from one sort of the scores (ties grouped as
    scikit-learn does)."""
    draws = [weighted_average_precision(y, p, block) for block in _resamples(len(y), n_boot, seed)]
    return _interval(np.concatenate(draws))


def clustered_ap_interval(y: np.ndarray, p: np.ndarray, clusters: np.ndarray, n_boot: int, seed: int) -> list[float]:
    """A 90 % percentile bootstrap interval of average precision that resamples whole clusters
    (the provinces of the rows) with replacement: counties of one province move together, and a
    row bootstrap, which treats them as independent, gives too narrow an interval."""
    y, p = np.asarray(y, dtype=int), _probabilities(p)
    codes, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    rng = np.random.default_rng(seed)
    size = max(1, RESAMPLE_CELLS // max(len(y), 1))
    draws = []
    for start in range(0, n_boot, size):
        counts = rng.multinomial(len(codes), np.full(len(codes), 1 / len(codes)), size=min(size, n_boot - start))
        draws.append(weighted_average_precision(y, p, counts[:, inverse].astype(float)))
    return _interval(np.concatenate(draws)) if draws else []


def _resamples(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """``n_boot`` bootstrap resamples of ``n`` rows, as multiplicities (resamples x rows), in
    blocks of at most :data:`RESAMPLE_CELLS` cells. One generator draws them in turn, so the
    resamples do not depend on the block size."""
    rng = np.random.default_rng(seed)
    size = max(1, RESAMPLE_CELLS // max(n, 1))
    for start in range(0, n_boot, size):
        yield rng.multinomial(n, np.full(n, 1 / n), size=min(size, n_boot - start)).astype(float)


def _interval(values: np.ndarray) -> list[float]:
    return [float(np.nanpercentile(values, 5)), float(np.nanpercentile(values, 95))]


def _probabilities(p: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(p, dtype=float), 1e-9, 1 - 1e-9)


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


def judge(
    y: np.ndarray,
    scores: Mapping[str, np.ndarray],
    reference: str | None,
    k: int = 50,
    n_boot: int = 1000,
    seed: int = 0,
    clusters: np.ndarray | None = None,
) -> tuple[dict[str, dict], dict[str, dict]]:
    """Every model's metrics, and ``reference`` against each other model, on one set of resamples.
    With ``clusters`` (each row's province), each model's AP also gets
    ``average_precision_ci_clustered``, the interval of :func:`clustered_ap_interval`.

    Each model's average precision and precision at ``k`` are computed once per resample and serve
    both its own AP interval (as :func:`emergence_metrics` gives it with the same ``seed``) and
    every paired difference it is part of.

    Returns
    -------
    (dict, dict)
        :func:`emergence_metrics` per model; :func:`paired_difference` of ``reference`` minus each
        other model (empty when ``reference`` is None or not among ``scores``).
    """
    y = np.asarray(y, dtype=int)
    metrics = {name: emergence_metrics(y, p, n_boot=0) for name, p in scores.items()}
    draws = _all_draws(y, scores, n_boot, seed, k)
    for name, d in draws.items():
        if d.shape[1] > 1:
            metrics[name]["average_precision_ci"] = _interval(d[0, 1:])
            if clusters is not None and len(np.unique(clusters)) > 1:
                interval = clustered_ap_interval(y, scores[name], clusters, n_boot, seed)
                metrics[name]["average_precision_ci_clustered"] = interval
    comparisons = {}
    if reference in draws:
        comparisons = {name: _difference(draws[reference], d, k) for name, d in draws.items() if name != reference}
    return metrics, comparisons


RANKING_METRICS = ("average_precision", "roc_auc", *(f"{m}_at_{k}" for k in TOP_KS for m in ("precision", "recall")),
                   "lift_at_50")  # fmt: skip


def judge_by_part(
    y: np.ndarray,
    scores: Mapping[str, np.ndarray],
    parts: np.ndarray,
    reference: str | None,
    k: int = 50,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[dict[str, dict], dict[str, dict]]:
    """:func:`judge` for predictions made by several models, one per part of the rows (the groups
    of provinces held out in turn): each part's scores are on the scale of its own model, so the
    ranking metrics are computed within each part and averaged over the parts (pooled, a constant
    score would rank one part above another); the Brier score, log-loss and counts are over all
    rows. The bootstrap resamples the rows within each part, and a resample's value is the mean of
    the parts' values, for the AP interval and the paired differences alike. ``average_precision
    _by_part`` lists the parts' APs."""
    y, parts = np.asarray(y, dtype=int), np.asarray(parts)
    masks = [parts == part for part in np.unique(parts)]
    metrics = {name: emergence_metrics(y, p, n_boot=0) for name, p in scores.items()}
    within = [{name: emergence_metrics(y[m], p[m], n_boot=0) for name, p in scores.items()} for m in masks]
    draws: dict[str, list[np.ndarray]] = {name: [] for name in scores}
    for i, mask in enumerate(masks):
        for name, d in _all_draws(y[mask], {n: p[mask] for n, p in scores.items()}, n_boot, seed + i, k).items():
            draws[name].append(np.repeat(d, 1 + n_boot, axis=1) if d.shape[1] == 1 else d)  # one class: no resample
    for name, entry in metrics.items():
        for key in RANKING_METRICS:
            values = np.array([part[name][key] for part in within])
            entry[key] = float(np.nanmean(values)) if not np.isnan(values).all() else float("nan")
        entry["average_precision_by_part"] = [float(part[name]["average_precision"]) for part in within]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample of a part without a belt: NaN
        mean_draws = {name: np.nanmean(np.stack(d), axis=0) for name, d in draws.items()}
    for name, d in mean_draws.items():
        if n_boot and d.shape[1] > 1:
            metrics[name]["average_precision_ci"] = _interval(d[0, 1:])
    comparisons = {}
    if reference in mean_draws:
        comparisons = {
            name: _difference(mean_draws[reference], d, k) for name, d in mean_draws.items() if name != reference
        }
    return metrics, comparisons


def paired_difference(
    y: np.ndarray, p: np.ndarray, q: np.ndarray, k: int = 50, n_boot: int = 1000, seed: int = 0
) -> dict[str, float | list[float]]:
    """How much the scores ``p`` beat the scores ``q`` on the same rows, with paired intervals.

    Both score vectors are judged on the same bootstrap resamples of the rows, so the interval is
    of the difference itself: two overlapping single-model intervals do not say whether one model
    is ahead, the paired interval does.

    Parameters
    ----------
    y : array of 0/1
    p, q : array of float
        Scores of the model and of the model it is compared with.
    k : int
        Cut-off of the short list for the precision difference.
    n_boot : int
        Bootstrap resamples (0: point differences only).
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    dict
        ``average_precision_diff`` and ``precision_at_{k}_diff`` (p minus q), and with resamples
        their ``_ci`` (90 % percentile interval) and ``_ahead`` (share of resamples in which p is
        strictly ahead).
    """
    y = np.asarray(y, dtype=int)
    draws = _all_draws(y, {"p": p, "q": q}, n_boot, seed, k)
    return _difference(draws["p"], draws["q"], k)


def _all_draws(y: np.ndarray, scores: Mapping[str, np.ndarray], n_boot: int, seed: int, k: int) -> dict:
    """:func:`_draws` of every model: column 0 the fold itself (unit weights), then one column per
    resample when there are two classes; every model is judged on the same resamples."""
    scores = {name: _probabilities(p) for name, p in scores.items()}
    blocks = [np.ones((1, len(y)))]
    if n_boot and 0 < y.sum() < len(y):
        blocks = itertools.chain(blocks, _resamples(len(y), n_boot, seed))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in scores}
    for weights in blocks:
        for name, p in scores.items():
            parts[name].append(_draws(y, p, weights, k))
    return {name: np.concatenate(part, axis=1) for name, part in parts.items()}


def _draws(y: np.ndarray, p: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    """Average precision (row 0) and precision at ``k`` (row 1) under each row of ``weights``."""
    return np.stack([weighted_average_precision(y, p, weights), weighted_precision_at(y, p, weights, k)])


def _difference(a: np.ndarray, b: np.ndarray, k: int) -> dict[str, float | list[float]]:
    """``a`` minus ``b`` (draws of :func:`_draws`): the fold's value, and over the resamples the
    interval and the share strictly ahead."""
    result = {}
    for row, name in enumerate(("average_precision_diff", f"precision_at_{k}_diff")):
        diff = a[row] - b[row]
        result[name] = float(diff[0])
        resampled = diff[1:][~np.isnan(diff[1:])]
        if len(resampled):
            result[f"{name}_ci"] = _interval(resampled)
            result[f"{name}_ahead"] = float(np.mean(resampled > 0))
    return result


def weighted_precision_at(y: np.ndarray, score: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    """Precision among the ``k`` highest scores of each resample (a row of ``weights`` gives each
    row's multiplicity); equals :func:`precision_at` for unit weights.

    Rows are taken by score, descending, until their multiplicities add up to ``k``; a group of
    tied scores that crosses ``k`` counts with the part that fits, at the group's share of belts."""
    order = np.argsort(-score, kind="stable")
    sorted_score = score[order]
    ends = np.flatnonzero(np.r_[sorted_score[1:] != sorted_score[:-1], True]) + 1  # tie groups' ends
    # only the leading rows can be taken: widen the prefix until every resample has k rows in it
    width = min(len(order), max(4 * k, 256))
    while True:
        width = int(ends[np.searchsorted(ends, width)])  # a tie group is read whole
        w = weights[:, order[:width]]
        total = w.sum(axis=1)
        if width == len(order) or (total >= k).all():
            break
        width = min(len(order), 4 * width)
    starts = np.r_[0, ends[ends < width]]
    group_weight = np.add.reduceat(w, starts, axis=1)
    group_belts = np.add.reduceat(w * y[order[:width]].astype(float), starts, axis=1)
    before = np.cumsum(group_weight, axis=1) - group_weight
    taken = np.clip(k - before, 0, group_weight)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(group_weight > 0, group_belts / group_weight, 0.0)
    # a prefix short of all rows holds k in every resample, so k rows are taken from each
    size = np.minimum(k, total) if width == len(order) else np.full(len(w), float(k))
    return (taken * share).sum(axis=1) / size
