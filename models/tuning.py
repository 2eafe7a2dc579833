"""Optuna tuning of the LightGBM emergence model on inner folds of the training periods.

The objective never sees the test fold: it is the mean average precision over inner folds cut
from the training rows of the newest temporal fold (temporal inner folds when those rows span
several periods, else provinces held out in turn), with the same fold spec as the backtest.

With a few dozen positives per fold, the average precision of one parameter set moves by several
points with LightGBM's seed alone (row and column sampling). A study that scores each trial with
one seed picks parameters that suit that seed, and its best value overstates what they do with
another. The objective therefore averages over ``n_seeds`` seeds, and records each seed's value.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import optuna
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss

from features.periods import label_of, parse_period
from models.backtest import Fold, FoldSpec, _fit_predict
from models.estimators import LGBMEmergence, ModelInputError, rarer_class_count

MAX_TREES = 150
MAX_LEAVES = 32
# None: the booster alone; a number: the booster starts from a logistic regression's log-odds with
# this inverse regularisation strength (models.margin)
LINEAR_MARGIN_C = (None, 0.01, 0.1, 1.0)
# parameters added to the search space after studies had begun, with the value that gives the
# model of before: a trial of an older study lacks them and means that value
ADDED_PARAMETERS = {"linear_margin_C": None}


def search_space(trial: optuna.Trial) -> dict:
    """The LightGBM hyper-parameters searched, as a function of the trial.

    The model's size is bounded by what scoring must sustain (200,000 rows/s without drivers,
    ``bench/bench_scoring.py``): prediction time grows with the number of trees, and 100 trees of
    about 27 leaves score about 317,000 rows/s compiled, 700 trees of 32 leaves 93,000. Hence at
    most :data:`MAX_TREES` trees of at most :data:`MAX_LEAVES` leaves, with learning rates high
    enough for few trees to fit. The trees may start from a linear margin (``linear_margin_C``):
    on the public data's inner folds, a logistic regression alone ranked new belts better than the
    booster alone."""
    return {
        "n_estimators": trial.suggest_int("n_estimators", 50, MAX_TREES, step=10),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 4, MAX_LEAVES),
        "min_child_samples": trial.suggest_int("min_child_samples", 5, 80),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.3, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 30.0, log=True),
        "scale_pos_weight": trial.suggest_float("scale_pos_weight", 1.0, 20.0, log=True),
        "linear_margin_C": trial.suggest_categorical("linear_margin_C", LINEAR_MARGIN_C),
    }


def inner_folds(periods: np.ndarray, groups: np.ndarray, y: np.ndarray, spec: FoldSpec, n_inner: int) -> list[Fold]:
    """Folds within the training rows of the newest temporal fold; an error saying what is
    missing when there is none (transitions of one period only)."""
    outer_folds = spec.temporal(periods)
    if not outer_folds:
        found = ", ".join(label_of(p) for p in sorted(set(np.asarray(periods).tolist()))) or "none"
        raise ModelInputError(
            f"tuning needs a temporal fold: emergence transitions in two periods at least {spec.horizon} apart,"
            f" to train on the earlier and test on the later; got transitions as of {found} (more periods of"
            " labels are needed)"
        )
    outer = outer_folds[-1]
    inside = np.isin(periods, outer.train_periods)
    temporal = spec.temporal(periods[inside])
    if temporal:
        return temporal
    return replace(spec, n_spatial=n_inner).spatial(periods[inside], groups[inside], y[inside])


def make_objective(
    X: pd.DataFrame,
    y: np.ndarray,
    periods: np.ndarray,
    groups: np.ndarray,
    spec: FoldSpec,
    n_inner: int = 4,
    seed: int = 0,
    space: Callable[[optuna.Trial], dict] = search_space,
    n_seeds: int = 1,
    folds: list[Fold] | None = None,
) -> Callable[[optuna.Trial], float]:
    """The objective: mean AP over the inner folds (``folds``, default :func:`inner_folds`) and
    the LightGBM seeds ``seed``, ..., ``seed + n_seeds - 1``; reports the running mean after each
    fold for pruning (a trial whose ``incumbent`` attribute is set, the reference of a retrain's
    period, is never pruned) and stores the mean AP of each seed in the trial's ``ap_by_seed``
    attribute."""
    folds = inner_folds(periods, groups, y, spec, n_inner) if folds is None else folds
    seeds = range(seed, seed + n_seeds)

    def objective(trial: optuna.Trial) -> float:
        params = space(trial)
        models = [LGBMEmergence(**params, calibration=None, random_state=s) for s in seeds]
        scores = np.zeros((len(folds), n_seeds))
        for step, fold in enumerate(folds):
            train, test = fold_rows(fold, periods, groups)
            for i, model in enumerate(models):
                p = _fit_predict(model, X, y, train, test)
                scores[step, i] = average_precision_score(y[test], p) if 0 < y[test].sum() < test.sum() else 0.0
            trial.report(float(scores[: step + 1].mean()), step)
            if not trial.user_attrs.get("incumbent") and trial.should_prune():
                raise optuna.TrialPruned()
        trial.set_user_attr("ap_by_seed", [round(float(v), 6) for v in scores.mean(axis=0)])
        return float(scores.mean())

    return objective


CALIBRATION_FOLDS = (3, 5, 10)


def calibration_scores(
    params: dict,
    X: pd.DataFrame,
    y: np.ndarray,
    periods: np.ndarray,
    groups: np.ndarray,
    spec: FoldSpec,
    n_inner: int = 4,
    seed: int = 0,
    candidates: tuple[int, ...] = CALIBRATION_FOLDS,
) -> dict[int, float]:
    """Mean Brier score over the inner folds (never the test fold) of the sigmoid-calibrated model
    with ``params``, for each number of cross-fitting folds of the calibration in ``candidates``.

    Fewer folds fit the calibration on scores of models trained on less data, whose scores spread
    differently from the final model's; more folds cost more fits. The tuning keeps the number
    with the lowest inner-fold Brier score. A number above the rows of the rarer class in some
    inner fold's training rows is not tried (the folds are stratified; it would be capped).
    """
    folds = inner_folds(periods, groups, y, spec, n_inner)
    rarest = min(rarer_class_count(y[fold_rows(fold, periods, groups)[0]]) for fold in folds)
    # more folds than the rarer class has rows would be capped to the same fit: not a candidate
    candidates = tuple(k for k in candidates if k <= rarest) or (min(candidates),)
    scores = {}
    for k in candidates:
        model = LGBMEmergence(**params, calibration="sigmoid", calibration_folds=k, random_state=seed)
        briers = []
        for fold in folds:
            train, test = fold_rows(fold, periods, groups)
            briers.append(brier_score_loss(y[test], _fit_predict(model, X, y, train, test)))
        scores[k] = float(np.mean(briers))
    return scores


def fold_rows(fold: Fold, periods: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Training and test rows of an inner or outer fold, as boolean masks over the transitions."""
    if fold.kind == "temporal":
        return np.isin(periods, fold.train_periods), np.isin(periods, fold.test_periods)
    in_years = np.isin(periods, fold.train_periods)
    held = np.isin(groups, fold.test_groups)
    return in_years & ~held, in_years & held


def best_trial(
    study: optuna.Study, period: str | None = None, data: str | None = None
) -> optuna.trial.FrozenTrial | None:
    """The best completed trial; when given, only those run for ``period`` count, and only those
    scored on ``data`` (a trial's ``data`` attribute).

    Trials run for different periods, or scored on different data or settings, have values that
    are not comparable: a quarterly retrain picks among the trials of its own quarter scored on
    its own panel."""
    trials = [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if (period is None or t.user_attrs.get("period") == period)
        and (data is None or t.user_attrs.get("data") == data)
    ]
    return max(trials, key=lambda t: t.value, default=None)


def scored_alike(trial: optuna.trial.FrozenTrial) -> tuple[str | None, str | None]:
    """The period a trial was run for and the data it was scored on (``None`` when not recorded):
    trials share both, or their values are not comparable."""
    return trial.user_attrs.get("period"), trial.user_attrs.get("data")


class ComparableMedianPruner(optuna.pruners.BasePruner):
    """Optuna's median rule, with a trial compared only with the trials run for the same period
    and scored on the same data (:func:`scored_alike`): a quarter whose data score lower would
    otherwise see most of its trials pruned against the medians of easier quarters.

    Parameters
    ----------
    n_startup_trials : int
        Completed comparable trials needed before any trial is pruned.
    n_warmup_steps : int
        Inner folds reported before a trial can be pruned.
    """

    def __init__(self, n_startup_trials: int = 5, n_warmup_steps: int = 1) -> None:
        self._median = optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=n_warmup_steps)

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return self._median.prune(_Comparable(study, scored_alike(trial)), trial)


class _Comparable:
    """What the median rule reads of a study (its direction and trials), restricted to the trials
    scored alike ``tags``."""

    def __init__(self, study: optuna.Study, tags: tuple[str | None, str | None]) -> None:
        self.direction, self._study, self._tags = study.direction, study, tags

    def get_trials(
        self, deepcopy: bool = True, states: tuple[optuna.trial.TrialState, ...] | None = None
    ) -> list[optuna.trial.FrozenTrial]:
        trials = self._study.get_trials(deepcopy=deepcopy, states=states)
        return [t for t in trials if scored_alike(t) == self._tags]


def within(space: Callable[[optuna.Trial], dict], params: dict) -> bool:
    """Whether ``params`` name exactly the parameters of ``space`` and lie inside its ranges (and
    steps): parameters from a study begun under another search space may not."""
    trial = optuna.trial.FixedTrial(params)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FixedTrial warns about, and accepts, values out of range
            space(trial)
    except ValueError:  # a parameter of the space is missing
        return False
    if set(params) != set(trial.distributions):
        return False
    for name, distribution in trial.distributions.items():
        value = params[name]
        if isinstance(distribution, optuna.distributions.CategoricalDistribution):
            if value not in distribution.choices:
                return False
            continue
        if not distribution.low <= value <= distribution.high:
            return False
        step = getattr(distribution, "step", None)
        if step is not None and not np.isclose(
            (value - distribution.low) / step, round((value - distribution.low) / step)
        ):
            return False
    return True


def completed(space: Callable[[optuna.Trial], dict], params: dict) -> dict:
    """``params`` with the :data:`ADDED_PARAMETERS` they lack, if that puts them inside ``space``
    (a trial from before a parameter was added), else as they are."""
    filled = {**{k: v for k, v in ADDED_PARAMETERS.items() if k not in params}, **params}
    return filled if filled != params and within(space, filled) else params


def incumbent(study: optuna.Study, period: str) -> dict | None:
    """The parameters of the best trial of the newest period before ``period`` (``None`` if no
    trial was run for an earlier period), among the trials of that period scored on the data of
    its newest trial (its last retrain, when it was retrained on corrected data or another rule):
    a retrain scores them again on the new panel first."""
    current = parse_period(period)[1]
    earlier = [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if (label := t.user_attrs.get("period")) is not None and parse_period(label)[1] < current
    ]
    if not earlier:
        return None
    newest = max(earlier, key=lambda t: (parse_period(t.user_attrs["period"])[1], t.number))
    return max((t for t in earlier if scored_alike(t) == scored_alike(newest)), key=lambda t: t.value).params


def nested_params(
    X: pd.DataFrame,
    y: np.ndarray,
    periods: np.ndarray,
    groups: np.ndarray,
    spec: FoldSpec,
    n_trials: int,
    n_inner: int = 4,
    seed: int = 0,
    n_seeds: int = 1,
) -> dict:
    """The best parameters of a study of ``n_trials`` run on these rows alone (an outer fold's
    training rows), with ``n_inner`` groups of provinces held out in turn as its inner folds: the
    search of ``beltcast tune``, so that the fold's held-out rows are judged by a model whose
    parameters were chosen without them. In memory, seeded, silent."""
    folds = replace(spec, n_spatial=n_inner).spatial(periods, groups, y)
    if not folds:
        raise ModelInputError(
            f"nested tuning needs at least 2 groups of provinces with both classes in the fold's training rows;"
            f" got {len(np.unique(groups))} group(s), {int(np.sum(y))} positive row(s)"
        )
    objective = make_objective(X, y, periods, groups, spec, n_inner, seed, n_seeds=n_seeds, folds=folds)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = make_study("nested", None, seed)
        study.optimize(objective, n_trials=n_trials)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return dict(study.best_trial.params)


class SharedStudySampler(optuna.samplers.BaseSampler):
    """A seeded TPE sampler for a study that other workers may share (``beltcast tune`` started
    on several machines, or twice on one, against one study store).

    Alone, a worker's trials are numbered in turn from the trials it found, and it samples as a
    ``TPESampler(seed=seed + trials found)`` does: a fresh study replays identically for a seed and
    a resumed one does not repeat its first trials. When the store hands it a trial number it did
    not expect, another worker took the ones between, and seeing the same trials it would sample
    the same parameters as that worker: the TPE sampler is then seeded anew with ``seed`` + the
    trial's number, which the store gives to one worker only. A trial queued before the worker
    started (a lower number) is run as it would be alone."""

    def __init__(self, seed: int, next_number: int = 0) -> None:
        self._seed = seed
        self._next = next_number
        self._tpe = optuna.samplers.TPESampler(seed=seed + next_number)

    def infer_relative_search_space(self, study, trial):
        return self._tpe.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._tpe.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._tpe.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        if trial.number > self._next:  # another worker took the numbers between
            self._tpe = optuna.samplers.TPESampler(seed=self._seed + trial.number)
        # a lower number is a trial queued before this worker started (enqueue_trial): not another's
        self._next = max(self._next, trial.number + 1)
        self._tpe.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._tpe.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._tpe.reseed_rng()


def make_study(name: str, storage: str | optuna.storages.BaseStorage | None, seed: int) -> optuna.Study:
    """A resumable study with a seeded TPE sampler (:class:`SharedStudySampler`) and a median
    pruner over comparable trials (:class:`ComparableMedianPruner`), set explicitly: Optuna stores
    neither, so a resumed study gets them here too.

    On resume the sampler is seeded with ``seed + trials so far``, so new trials do not repeat
    the first ones while a fresh study with the same seed still replays identically; workers
    sharing the study sample apart.
    """
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="maximize",
        sampler=SharedStudySampler(seed),
        pruner=ComparableMedianPruner(n_startup_trials=5, n_warmup_steps=1),
        load_if_exists=True,
    )
    if study.trials:
        study.sampler = SharedStudySampler(seed, next_number=len(study.trials))
    return study
