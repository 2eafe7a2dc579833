"""``beltcast tune`` reuses only trials scored on the same panel and settings: a period re-run on
a corrected panel or under another belt rule runs its trials again. The panel is SYNTHETIC (seeded
made-up counties with a learnable signal), not real data."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest
from rich.console import Console

from pipelines import tune
from pipelines.backtest import params_digest
from pipelines.config import (
    DataSettings,
    LabelSettings,
    MlflowSettings,
    ModelSettings,
    PublicConditionSettings,
    Settings,
    TuneSettings,
)
from pipelines.tracking import study_lock

STUDY = "scored-on"


def synthetic_panel(seed: int = 7, n: int = 300) -> pd.DataFrame:
    """3 origin years x ``n`` made-up counties in 6 provinces; ``emerged`` follows two features."""
    rng = np.random.default_rng(seed)
    frames = []
    for year in (2014, 2015, 2016):
        belts = rng.poisson(1.0, n).astype(float)
        manufacturing = rng.uniform(0, 0.5, n)
        logit = -3 + 0.8 * belts + 5 * manufacturing
        frames.append(
            pd.DataFrame(
                {
                    "county_code": [f"{100000 + i}" for i in range(n)],
                    "county_name": [f"county {i}" for i in range(n)],
                    "province": np.repeat([f"p{i}" for i in range(6)], n // 6),
                    "prefecture": "pf",
                    "province_code": np.repeat([f"{i}0000" for i in range(1, 7)], n // 6),
                    "prefecture_code": "000100",
                    "as_of": year,
                    "is_belt": False,
                    "emerged": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float),
                    "belts_within_100km_share": belts / 80,
                    "manufacturing_share": manufacturing,
                    "viirs_mean": rng.lognormal(0, 1, n),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def corrected_panel() -> pd.DataFrame:
    """The panel as a corrected file would give it: 30% of the labels differ, and the AP falls."""
    panel = synthetic_panel()
    flip = np.random.default_rng(0).random(len(panel)) < 0.3
    panel.loc[flip, "emerged"] = 1.0 - panel.loc[flip, "emerged"]
    return panel


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory) -> str:
    """One MLflow store for the module's tunes (creating one takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlruns') / 'mlflow.db'}"


@pytest.fixture
def settings(tmp_path, tracking_uri, monkeypatch) -> Settings:
    """Settings on the synthetic panel, each test with its own study store; the calibration folds,
    which these tests are not about, are not cross-fitted (it takes most of a tune's time)."""
    monkeypatch.setattr(tune, "calibration_scores", lambda *args: {3: 0.1})
    features = tmp_path / "features"
    features.mkdir()
    synthetic_panel().to_parquet(features / "panel.parquet")
    return Settings(
        data=DataSettings(cache_dir=tmp_path / "raw", features_dir=features),
        model=ModelSettings(spatial_folds=2, bootstrap=0, params_file=tmp_path / "tuned.json"),
        tune=TuneSettings(storage=f"sqlite:///{tmp_path / 'optuna.db'}", inner_folds=2, seeds=1),
        mlflow=MlflowSettings(tracking_uri=tracking_uri),
    )


def _trials(settings: Settings) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=STUDY, storage=settings.tune.storage).trials


def _run(settings: Settings, period: str | None, trials: int = 2) -> tuple[dict, str]:
    console = Console(record=True, width=400)
    best = tune.run(settings, trials, STUDY, console, period=period)
    return best, console.export_text()


def test_a_period_rerun_on_another_rule_or_panel_runs_its_trials_again(settings):
    _run(settings, "2015")
    first, _ = _run(settings, "2016")
    assert [t.user_attrs["period"] for t in _trials(settings)] == ["2015", "2015", "2016", "2016"]
    assert _run(settings, "2016")[0]["best_trial"] == first["best_trial"]  # the same data: nothing to run
    assert first["params_sha256"] == params_digest(first["params"])  # train tells an edited file by it
    assert len(_trials(settings)) == 4

    stricter = settings.model_copy(  # taobao_villages >= 3: the trials so far were scored on other labels
        update={"labels": LabelSettings(conditions=(PublicConditionSettings(metric="taobao_villages", threshold=3),))}
    )
    best, said = _run(stricter, "2016")
    trials = _trials(settings)
    new = trials[4:]
    assert [t.user_attrs["period"] for t in new] == ["2016", "2016"]
    assert new[0].user_attrs["data"] != trials[2].user_attrs["data"] == trials[3].user_attrs["data"]
    assert {t.user_attrs["data"] for t in new} == {new[0].user_attrs["data"]}
    assert new[0].user_attrs["incumbent"]  # the previous period's best, scored again on this data
    assert new[0].params == max(trials[:2], key=lambda t: t.value).params
    assert best["best_trial"] in [t.number for t in new]
    assert best["data"] == new[0].user_attrs["data"]
    assert (
        "2 trial(s) for 2016 of study 'scored-on' were scored on other data or settings (changed since the newest:"
        " the belt rule); they are not reused"
    ) in said

    corrected_panel().to_parquet(settings.data.features_dir / "panel.parquet")
    best, said = _run(stricter, "2016")
    corrected = _trials(settings)[6:]
    assert len(corrected) == 2 and best["best_trial"] in [t.number for t in corrected]
    assert best["best_value"] < max(t.value for t in _trials(settings)[:6] if t.value is not None)  # not mixed
    assert "changed since the newest: the panel)" in said
    assert _run(stricter, "2016")[0]["best_trial"] == best["best_trial"] and len(_trials(settings)) == 8


def test_plain_tune_picks_among_the_trials_scored_on_this_panel(settings):
    first, said = _run(settings, None, trials=3)
    assert "were scored on other data" not in said
    corrected_panel().to_parquet(settings.data.features_dir / "panel.parquet")
    best, said = _run(settings, None, trials=2)
    assert len(_trials(settings)) == 5  # resumed, not refused
    assert best["best_trial"] in (3, 4) and best["best_value"] < first["best_value"]
    assert (
        "3 trial(s) of study 'scored-on' were scored on other data or settings (changed since the newest: the"
        " panel); they are not reused"
    ) in said


def test_the_tune_run_records_what_it_chose(settings):
    from mlflow.tracking import MlflowClient

    best, _ = _run(settings, None, trials=2)
    client = MlflowClient(tracking_uri=settings.mlflow.tracking_uri)
    runs = client.search_runs(
        [client.get_experiment_by_name(settings.mlflow.experiment).experiment_id],
        "attributes.run_name = 'tune'", order_by=["attributes.start_time DESC"], max_results=1,
    )  # fmt: skip
    run = runs[0].data
    assert run.metrics["best_inner_fold_average_precision"] == pytest.approx(best["best_value"])
    assert run.metrics["best_trial"] == best["best_trial"]
    assert run.params["best.num_leaves"] == str(best["params"]["num_leaves"])
    assert run.params["best.calibration_folds"] == "3"
    assert run.tags["optuna.study"] == STUDY and run.tags["optuna.data"] == best["data"]
    saved = [a.path for a in client.list_artifacts(runs[0].info.run_id, "tune")]
    assert saved == ["tune/tuned.json"]


def test_trials_from_before_tune_recorded_their_data_are_not_reused(settings):
    from models.tuning import search_space

    study = optuna.create_study(study_name=STUDY, storage=settings.tune.storage, direction="maximize")
    study.set_user_attr("seeds", 1)
    study.set_user_attr("features", sorted(["belts_within_100km_share", "manufacturing_share", "viirs_mean"]))
    study.optimize(lambda trial: (search_space(trial), 0.99)[1], n_trials=1)  # a value no trial here reaches
    best, said = _run(settings, None, trials=1)
    assert best["best_trial"] == 1 and best["best_value"] < 0.99
    assert (
        "1 trial(s) of study 'scored-on' were scored on other data or settings (changed since the newest: not" in said
    )


@pytest.mark.parametrize("error", [KeyboardInterrupt, ValueError])
def test_a_trial_stopped_by_ctrl_c_is_not_reported_with_a_traceback(error):
    import logging

    from pipelines.tune import quiet_interrupts

    class Records(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    quiet_interrupts()
    quiet_interrupts()  # installed once
    assert (
        sum(type(f).__name__ == "InterruptedTrials" for f in logging.getLogger(tune.OPTUNA_TRIAL_LOGGER).filters) == 1
    )
    seen = Records()
    logging.getLogger("optuna").addHandler(seen)

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0.0, 1.0)
        raise error("stop")

    try:
        with pytest.raises(error):
            optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0)).optimize(objective, n_trials=1)
    finally:
        logging.getLogger("optuna").removeHandler(seen)
    reported = [r.getMessage() for r in seen.records]
    if error is KeyboardInterrupt:  # the job prints `error: interrupted`, nothing more
        assert not [m for m in reported if "failed" in m]
    else:  # another failure keeps Optuna's report, traceback included
        assert reported[0].startswith("Trial 0 failed with parameters") and seen.records[0].exc_info
        assert reported[1] == "Trial 0 failed with value None."


def test_a_study_in_a_journal_file_resumes_as_one_in_a_database(settings, tmp_path):
    journal = tmp_path / "shared" / "optuna.journal"
    in_journal = settings.model_copy(
        update={"tune": settings.tune.model_copy(update={"storage": f"journal://{journal}"})}
    )  # journal:///abs/path, as sqlite:/// URLs are written

    first, _ = _run(in_journal, None, trials=2)
    again, _ = _run(in_journal, None, trials=1)

    storage = tune.study_storage(f"journal:{journal}")
    trials = optuna.load_study(study_name=STUDY, storage=storage).trials
    assert [t.number for t in trials] == [0, 1, 2] and journal.stat().st_size > 0
    with study_lock(in_journal):  # two retrains of one machine count a period's missing trials in turn
        assert (journal.parent / ".study.lock").exists()
    assert again["best_value"] >= first["best_value"]
    assert not (tmp_path / "optuna.db").exists()


@pytest.mark.parametrize("storage", ["journal:", "journal://", "journal:///srv/"])
def test_a_journal_store_names_its_file(storage):
    with pytest.raises(
        tune.TrackingError, match=rf"tune.storage = '{storage}' names no journal file; expected journal:PATH"
    ):
        tune.study_storage(storage)


@pytest.mark.parametrize("store", ["sqlite", "journal"])
def test_a_trial_left_running_by_a_killed_tune_of_this_machine_is_marked_failed(settings, tmp_path, store):
    """A tune killed by SIGKILL left its trial RUNNING in the study for ever (in a database and in
    a journal file alike); the next tune of the machine marks it failed, and only it."""
    import os
    import socket
    import subprocess
    import sys

    from pipelines.tracking import HOST_TAG, PID_TAG

    if store == "journal":
        journal = tmp_path / "optuna.journal"
        settings = settings.model_copy(
            update={"tune": settings.tune.model_copy(update={"storage": f"journal:{journal}"})}
        )
    _run(settings, None, trials=1)
    study = optuna.load_study(study_name=STUDY, storage=tune.study_storage(settings.tune.storage))
    host = socket.gethostname()
    assert study.trials[0].user_attrs[HOST_TAG] == host and study.trials[0].user_attrs[PID_TAG] == str(os.getpid())
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owners = {
        "killed": (host, gone.stdout.strip()),
        "alive": (host, str(os.getpid())),
        "elsewhere": ("other-host", "1"),
    }
    running = {}
    for name, (on, pid) in owners.items():
        trial = study.ask()
        trial.set_user_attr(HOST_TAG, on)
        trial.set_user_attr(PID_TAG, pid)
        running[name] = trial.number
    from_before = study.ask().number  # a trial that names no process

    _, said = _run(settings, None, trials=1)

    states = {t.number: t.state.name for t in _trials_in(settings)}
    assert states[running["killed"]] == "FAIL"
    assert [states[running[n]] for n in ("alive", "elsewhere")] + [states[from_before]] == ["RUNNING"] * 3
    assert list(states.values()).count("COMPLETE") == 2
    assert f"tune: trial(s) [{running['killed']}] of study '{STUDY}', left running by a tune of this machine" in said


def _trials_in(settings: Settings) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=STUDY, storage=tune.study_storage(settings.tune.storage)).trials


def test_a_worker_that_ended_first_is_brought_up_to_the_study_s_best_by_a_tune_of_no_trial(settings, tmp_path):
    # two workers of one study with their own parameters files: the one that ended first kept the
    # best of its time; a tune of 0 trials saves the study's best without adding any
    import json

    stale = _run(settings, None, trials=2)[0]["best_trial"]
    other = settings.model_copy(
        update={"model": settings.model.model_copy(update={"params_file": tmp_path / "o.json"})}
    )
    _run(other, None, trials=3)
    best = max((t for t in _trials(settings) if t.value is not None), key=lambda t: t.value)

    assert stale != best.number  # the other worker found a better one
    again, said = _run(settings, None, trials=0)

    assert len(_trials(settings)) == 5  # none added
    assert again["best_trial"] == best.number
    assert json.loads(settings.model.params_file.read_text())["best_trial"] == best.number
    assert "5 trial(s) in all" in said
    assert {".o.json.lock", ".tuned.json.lock"} <= {p.name for p in tmp_path.glob(".*.lock")}  # saved in turn


def test_a_tune_of_no_trial_of_a_study_that_is_not_there_is_refused_and_creates_none(settings):
    # a mistyped --study with --trials 0 must not leave an empty study behind
    with pytest.raises(tune.TuneError) as refused:
        tune.run(settings, 0, "scored-onn", Console(record=True))
    assert "--study must name a study" in str(refused.value) and "got 'scored-onn'" in str(refused.value)
    assert "it has no study yet" in str(refused.value)
    assert not settings.model.params_file.exists()

    _run(settings, None, trials=1)
    with pytest.raises(tune.TuneError, match="'scored-onn', and the studies there are 'scored-on'"):
        tune.run(settings, 0, "scored-onn", Console(record=True))
    assert optuna.get_all_study_names(tune.study_storage(settings.tune.storage)) == [STUDY]


def test_a_study_name_that_looks_like_markup_is_printed_as_it_came(settings):
    # "[/x]" stopped tune with rich's MarkupError once its trials had run
    console = Console(record=True, width=400)
    tune.run(settings, 1, "[/x]", console)
    assert "tune: study '[/x]', 1 trial(s) in all" in console.export_text()
