"""Tuning: seeded and resumable studies, inner folds inside the training periods only, and the
calibration folds chosen by inner-fold Brier score (synthetic logic fixtures)."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from models.backtest import FoldSpec
from models.estimators import ModelInputError
from models.tuning import (
    CALIBRATION_FOLDS,
    best_trial,
    calibration_scores,
    incumbent,
    inner_folds,
    make_objective,
    make_study,
)

QUICK_SPACE = {"n_estimators": (10, 60), "num_leaves": (3, 31), "min_child_samples": (5, 60)}


def quick_space(trial: optuna.Trial) -> dict:
    return {name: trial.suggest_int(name, low, high) for name, (low, high) in QUICK_SPACE.items()}


def test_inner_folds_never_touch_the_test_period(synthetic_transitions):
    _, y, periods, groups = synthetic_transitions
    spec = FoldSpec(n_spatial=3)
    test_periods = spec.temporal(periods)[-1].test_periods
    for fold in inner_folds(periods, groups, y, spec, 3):
        assert not set(fold.train_periods) & set(test_periods)
        assert not set(getattr(fold, "test_periods", ()) or ()) & set(test_periods)


def test_transitions_of_one_period_are_a_named_error_not_an_index_error(synthetic_transitions):
    _, y, periods, groups = synthetic_transitions
    one = periods == periods.max()
    with pytest.raises(ModelInputError, match=rf"needs a temporal fold: .*got transitions as of {periods.max()} "):
        inner_folds(periods[one], groups[one], y[one], FoldSpec(n_spatial=3), 3)


def test_a_seeded_study_replays_and_a_resumed_one_continues(synthetic_transitions, tmp_path):
    X, y, periods, groups = synthetic_transitions
    objective = make_objective(X, y, periods, groups, FoldSpec(n_spatial=2), 2, 0, space=quick_space)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"

    first = make_study("a", storage, seed=0)
    first.optimize(objective, n_trials=3)
    first_params = [t.params for t in first.trials]
    replay = make_study("b", storage, seed=0)
    replay.optimize(objective, n_trials=3)
    assert first_params == [t.params for t in replay.trials]
    assert [t.value for t in first.trials] == [t.value for t in replay.trials]

    resumed = make_study("a", storage, seed=0)
    resumed.optimize(objective, n_trials=2)
    assert len(resumed.trials) == 5
    assert [t.params for t in resumed.trials[:3]] == first_params
    new = [t.params for t in resumed.trials[3:]]
    assert new != first_params[:2]  # re-seeded: the first trials are not replayed


def test_workers_sharing_a_study_sample_apart_and_one_alone_as_the_seeded_tpe():
    storage = optuna.storages.InMemoryStorage()
    first, second = make_study("shared", storage, seed=0), make_study("shared", storage, seed=0)
    asked = []
    for _ in range(3):  # two workers started together, their trials interleaved by the store
        for study in (first, second):
            trial = study.ask()
            asked.append(quick_space(trial))
            study.tell(trial, sum(asked[-1].values()) / 100)
    assert len({tuple(params.values()) for params in asked}) == 6  # no trial run twice

    alone = make_study("alone", storage, seed=0)
    plain = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    for study in (alone, plain):
        study.optimize(lambda trial: sum(quick_space(trial).values()) / 100, n_trials=12)
    assert [t.params for t in alone.trials] == [t.params for t in plain.trials]

    # resumed alone with a trial queued by a run killed before it ran it (a retrain's incumbent)
    for study in (alone, plain):
        study.enqueue_trial({"n_estimators": 30, "num_leaves": 7, "min_child_samples": 9})
    resumed = make_study("alone", storage, seed=0)
    plain.sampler = optuna.samplers.TPESampler(seed=len(plain.trials))
    for study in (resumed, plain):
        study.optimize(lambda trial: sum(quick_space(trial).values()) / 100, n_trials=4)
    assert [t.params for t in resumed.trials] == [t.params for t in plain.trials]


def _score(objective, params: dict) -> optuna.trial.FrozenTrial:
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(params)
    study.optimize(objective, n_trials=1)
    return study.trials[0]


def test_the_objective_averages_over_seeds(synthetic_transitions):
    X, y, periods, groups = synthetic_transitions
    spec, params = FoldSpec(n_spatial=2), {"n_estimators": 40, "num_leaves": 15, "min_child_samples": 5}

    def objective(seed, n_seeds):
        space = lambda trial: {**quick_space(trial), "subsample": 0.6, "colsample_bytree": 0.5}  # noqa: E731
        return make_objective(X, y, periods, groups, spec, 2, seed, space=space, n_seeds=n_seeds)

    one, other = _score(objective(0, 1), params).value, _score(objective(1, 1), params).value
    both = _score(objective(0, 2), params)
    assert one != other  # sampling rows and columns: the seed alone moves the score
    assert both.value == pytest.approx((one + other) / 2)
    assert both.user_attrs["ap_by_seed"] == pytest.approx([one, other], abs=1e-6)


def test_a_study_is_resumed_only_over_the_same_number_of_seeds(tmp_path):
    from pipelines.tune import TuneError, same_objective

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    features = ["a", "b"]
    study = make_study("s", storage, seed=0)
    same_objective(study, 3, features)  # a new study records its seeds
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    same_objective(make_study("s", storage, seed=0), 3, features)
    with pytest.raises(TuneError, match=r"tune.seeds must match study 's'.*3 seed\(s\); got 1"):
        same_objective(make_study("s", storage, seed=0), 1, features)
    old = make_study("old", storage, seed=0)  # scored before seeds were recorded: one seed
    old.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    with pytest.raises(TuneError, match="1 seed"):
        same_objective(make_study("old", storage, seed=0), 3, features)


def test_a_study_is_resumed_only_on_the_same_features(tmp_path):
    from pipelines.tune import TuneError, same_objective

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = make_study("s", storage, seed=0)
    same_objective(study, 1, ["b", "a"])
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    same_objective(make_study("s", storage, seed=0), 1, ["a", "b"])  # order does not matter
    with pytest.raises(TuneError, match=r"the panel lacks 1 \[b\] and adds 2 \[c, d\]. Start a new study"):
        same_objective(make_study("s", storage, seed=0), 1, ["a", "c", "d"])
    old = make_study("old", storage, seed=0)  # scored before features were recorded
    old.set_user_attr("seeds", 1)
    old.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    with pytest.raises(TuneError, match=r"study 'old' does not record the features its 1 trial\(s\)"):
        same_objective(make_study("old", storage, seed=0), 1, ["a"])
    empty = make_study("empty", storage, seed=0)  # created, never run: nothing to compare
    same_objective(empty, 1, ["a"])
    assert make_study("empty", storage, seed=0).user_attrs["features"] == ["a"]


def _toy(period: str, level: float, data: str | None = None):
    """A cheap objective standing in for one quarter's panel (``data`` when given): ``level`` is
    that data's AP level."""

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("period", period)
        if data is not None:
            trial.set_user_attr("data", data)
        return level - (trial.suggest_float("x", 0.0, 1.0) - 0.3) ** 2

    return objective


TOY_SPACE = lambda trial: {"x": trial.suggest_float("x", 0.0, 1.0)}  # noqa: E731


def test_a_retrain_period_starts_from_the_previous_best_and_picks_among_its_own_trials(tmp_path):
    from pipelines.tune import enqueue_incumbent, tagged

    study = make_study("q", f"sqlite:///{tmp_path / 'optuna.db'}", seed=0)
    study.optimize(_toy("2024Q4", 9.0), n_trials=2)  # an older quarter whose data scored higher
    study.optimize(_toy("2025Q2", 1.0), n_trials=4)
    study.optimize(_toy("2025Q1", 5.0), n_trials=2)
    q2 = best_trial(study, "2025Q2")
    assert q2.value == max(t.value for t in study.trials if t.user_attrs["period"] == "2025Q2")
    assert best_trial(study).user_attrs["period"] == "2024Q4"
    assert incumbent(study, "2025Q3") == q2.params  # the newest earlier quarter, not the highest value
    assert incumbent(study, "2024Q4") is None and best_trial(study, "2025Q3") is None

    enqueue_incumbent(study, "2025Q3", space=TOY_SPACE)
    enqueue_incumbent(study, "2025Q3", space=TOY_SPACE)  # one already waiting (an interrupted run)
    assert len(study.get_trials(states=(optuna.trial.TrialState.WAITING,))) == 1
    study.optimize(tagged(_toy("2025Q3", 0.0), "2025Q3", "d"), n_trials=3)
    q3 = [t for t in study.trials if t.user_attrs["period"] == "2025Q3"]
    assert len(q3) == 3 and q3[0].params == q2.params and q3[0].user_attrs["incumbent"]
    assert not any(t.user_attrs.get("incumbent") for t in q3[1:])
    assert best_trial(study, "2025Q3") in q3  # lower values than every other quarter's, still chosen

    assert best_trial(study, "2025Q3").params["x"] < 0.5
    narrower = lambda trial: {"x": trial.suggest_float("x", 0.5, 1.0)}  # noqa: E731
    enqueue_incumbent(study, "2025Q4", space=narrower)  # 2025Q3's best lies outside: not re-scored
    assert not study.get_trials(states=(optuna.trial.TrialState.WAITING,))


def test_parameters_are_checked_against_the_search_space():
    from models.tuning import completed, search_space, within

    inside = {"n_estimators": 150, "learning_rate": 0.08, "num_leaves": 27, "min_child_samples": 38,
              "subsample": 0.86, "colsample_bytree": 0.83, "reg_lambda": 0.008, "scale_pos_weight": 1.29,
              "linear_margin_C": None}  # fmt: skip
    assert within(search_space, inside)
    assert within(search_space, {**inside, "linear_margin_C": 0.1})
    assert not within(search_space, {**inside, "linear_margin_C": 0.5})  # not a choice
    older = {k: v for k, v in inside.items() if k != "linear_margin_C"}  # a trial from before the margin
    assert not within(search_space, older)
    assert completed(search_space, older) == inside  # it means the model without a margin
    assert completed(TOY_SPACE, {"x": 0.3}) == {"x": 0.3}  # a space without the added parameter
    assert not within(search_space, {**inside, "n_estimators": 700})  # beyond MAX_TREES
    assert not within(search_space, {**inside, "n_estimators": 145})  # off the step of 10
    assert not within(search_space, {k: v for k, v in inside.items() if k != "num_leaves"})
    assert not within(search_space, {**inside, "max_depth": 3})


def test_the_incumbent_trial_is_never_pruned(synthetic_transitions):
    X, y, periods, groups = synthetic_transitions
    objective = make_objective(X, y, periods, groups, FoldSpec(n_spatial=2), 2, 0, space=quick_space)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.1))
    params = {"n_estimators": 20, "num_leaves": 5, "min_child_samples": 10}
    study.enqueue_trial(params, user_attrs={"incumbent": True})
    study.enqueue_trial(params)
    study.optimize(objective, n_trials=2)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED]


def test_calibration_folds_beyond_the_rarer_class_are_not_tried(synthetic_transitions):
    X, y, periods, groups = synthetic_transitions
    belts_2014 = np.concatenate(  # a platform with few belts: 2 in each province
        [np.flatnonzero((periods == 2014) & (y == 1) & (groups == g))[:2] for g in np.unique(groups)]
    )
    keep = np.flatnonzero(((periods == 2014) & (y == 0)) | (periods == 2015))
    keep = np.sort(np.r_[keep, belts_2014])
    params = {"n_estimators": 20, "num_leaves": 5}
    scores = calibration_scores(params, X.iloc[keep], y[keep], periods[keep], groups[keep], FoldSpec(), 2, 0)
    assert 3 in scores and 10 not in scores


def test_calibration_scores_cover_every_candidate_and_differ(synthetic_transitions):
    X, y, periods, groups = synthetic_transitions
    scores = calibration_scores({"n_estimators": 20, "num_leaves": 5}, X, y, periods, groups, FoldSpec(), 2, 0)
    assert list(scores) == list(CALIBRATION_FOLDS)
    assert all(0.0 < v < 0.25 for v in scores.values())
    assert len(set(scores.values())) > 1


@pytest.mark.slow
@pytest.mark.realdata
def test_the_tuned_parameters_carry_the_calibration_folds_of_the_lowest_brier(built_settings, tmp_path):
    import json

    from rich.console import Console

    from pipelines import tune
    from pipelines.config import ModelSettings, TuneSettings

    settings = built_settings.model_copy(
        update={
            "model": ModelSettings(spatial_folds=2, bootstrap=0, params_file=tmp_path / "tuned.json"),
            "tune": TuneSettings(storage=f"sqlite:///{tmp_path / 'optuna.db'}", trials=2, inner_folds=2, seeds=1),
        }
    )
    tune.run(settings, 2, "calibration-check", Console(quiet=True))
    saved = json.loads((tmp_path / "tuned.json").read_text())
    briers = {int(k): v for k, v in saved["calibration_inner_brier"].items()}
    assert saved["params"]["calibration_folds"] == min(briers, key=briers.get)
    assert set(briers) == set(CALIBRATION_FOLDS)
    # a scratch study replacing them says whose parameters `train` loses, and where they are kept
    console = Console(record=True, width=400)
    tune.run(settings, 1, "scratch", console)
    assert json.loads((tmp_path / "tuned.json").read_text())["study"] == "scratch"
    assert json.loads((tmp_path / "tuned.calibration-check.json").read_text()) == saved
    assert f"study 'calibration-check' that `train` would have used; those are kept in {tmp_path}" in (
        console.export_text()
    )
    # the same study name in another store (a mistyped journal path) is another study too
    scratch = json.loads((tmp_path / "tuned.json").read_text())
    assert scratch["storage"] == f"sqlite:///{tmp_path / 'optuna.db'}"
    elsewhere = settings.model_copy(
        update={"tune": settings.tune.model_copy(update={"storage": f"journal:{tmp_path}/typo/j"})}
    )
    console = Console(record=True, width=400)
    tune.run(elsewhere, 1, "scratch", console)
    assert json.loads((tmp_path / "tuned.json").read_text())["storage"] == f"journal:{tmp_path}/typo/j"
    [copy] = tmp_path.glob("tuned.scratch.*.json")
    assert json.loads(copy.read_text()) == scratch
    assert (
        f"study 'scratch' in sqlite:///{tmp_path / 'optuna.db'} that `train` would have used; those are kept in {copy}"
        in (console.export_text())
    )
    tune.run(elsewhere, 1, "scratch", Console(quiet=True))  # the same study again: nothing more kept
    assert len(list(tmp_path.glob("tuned.*.json"))) == 2


@pytest.mark.parametrize("k", CALIBRATION_FOLDS)
def test_every_candidate_fits(synthetic_transitions, k):
    from models.estimators import LGBMEmergence

    X, y, _, _ = synthetic_transitions
    model = LGBMEmergence(n_estimators=10, calibration_folds=k).fit(X, y)
    assert np.isfinite(model.predict_proba(X)).all()


def _finished(study: optuna.Study, period: str, data: str, value: float) -> None:
    """A trial of ``period`` scored on ``data`` that reported ``value`` after each of 2 inner folds."""
    trial = study.ask()
    trial.set_user_attr("period", period)
    trial.set_user_attr("data", data)
    for step in range(2):
        trial.report(value, step)
    study.tell(trial, value)


def _pruned(study: optuna.Study, period: str | None, data: str | None, value: float, steps: int = 2) -> bool:
    trial = study.ask()
    for key, tag in (("period", period), ("data", data)):
        if tag is not None:
            trial.set_user_attr(key, tag)
    for step in range(steps):
        trial.report(value, step)
    return trial.should_prune()


def test_the_pruner_compares_a_trial_with_trials_of_its_period_and_data_only(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = make_study("q", storage, seed=0)
    for value in (0.50, 0.52, 0.48, 0.55, 0.51, 0.49):  # an easier quarter
        _finished(study, "2025Q3", "a", value)
    study = make_study("q", storage, seed=0)  # resumed: Optuna does not store the pruner
    assert not _pruned(study, "2025Q4", "b", 0.30)  # no trial of its own yet: never pruned
    for value in (0.30, 0.34, 0.28, 0.36, 0.32):
        _finished(study, "2025Q4", "b", value)
    assert not _pruned(study, "2025Q4", "b", 0.33)  # above 2025Q4's median (0.32), below 2025Q3's (0.505)
    assert _pruned(study, "2025Q4", "b", 0.31)
    assert not _pruned(study, "2025Q4", "b", 0.01, steps=1)  # the first fold is a warm-up
    assert not _pruned(study, "2025Q4", "c", 0.01)  # a corrected file: no trial scored on it yet
    assert not _pruned(study, None, None, 0.01)  # nor of a trial that records neither
    assert _pruned(study, "2025Q3", "a", 0.45)


def test_the_incumbent_is_the_previous_periods_best_on_the_data_it_was_last_tuned_on(tmp_path):
    study = make_study("q", f"sqlite:///{tmp_path / 'optuna.db'}", seed=0)
    study.optimize(_toy("2025Q3", 9.0, "old rule"), n_trials=3)
    study.optimize(_toy("2025Q3", 1.0, "new rule"), n_trials=3)  # re-run under a new rule
    rerun = max(study.trials[3:], key=lambda t: t.value)
    assert incumbent(study, "2025Q4") == rerun.params  # not those of the old rule's higher values
    assert best_trial(study, "2025Q3", "new rule") == rerun and best_trial(study, "2025Q3").number < 3
