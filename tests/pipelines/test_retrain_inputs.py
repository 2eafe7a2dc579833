"""``beltcast retrain`` refuses a bad ``--period`` and a metrics file that cannot train, before any
step runs. The metrics files are SYNTHETIC (made-up values on two real county codes)."""

from __future__ import annotations

import shutil

import optuna
import pandas as pd
import pytest
from rich.console import Console

from features.errors import OutputPathError
from features.periods import PeriodError
from features.platform import PlatformMetrics, PlatformMetricsError
from pipelines import build, retrain, tune
from pipelines.config import DataSettings, MlflowSettings, PlatformSettings, Settings, TuneSettings
from tests.pipelines.test_build_platform_inputs import quarters, two_county_history, write_synthetic_metrics

QUIET = Console(quiet=True)


class StepsReached(Exception):
    """Raised in place of starting MLflow: the checks let the run through to its steps."""


def _stop(settings: Settings) -> None:
    raise StepsReached


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    """Settings on the two-county code history; the run stops where tracking would start."""
    monkeypatch.setattr(retrain, "load_history", lambda settings: two_county_history())
    monkeypatch.setattr(retrain, "history_cached", lambda settings: True)
    monkeypatch.setattr(retrain, "use_tracking", _stop)
    return Settings(
        data=DataSettings(cache_dir=tmp_path / "raw", features_dir=tmp_path / "features"),
        mlflow=MlflowSettings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"),
        tune=TuneSettings(storage=f"sqlite:///{tmp_path / 'optuna.db'}"),
    )


@pytest.fixture
def eleven_quarters(tmp_path):
    """SYNTHETIC metrics 2023Q1..2025Q3: 2024Q4..2025Q3 labelled, transitions in three quarters."""
    return write_synthetic_metrics(tmp_path / "platform_metrics_synthetic.csv", quarters("2023Q1", 11))


def test_a_first_retrain_syncs_the_code_lists_before_checking_the_file(settings, eleven_quarters, monkeypatch):
    # before, a retrain on a machine that had never synced stopped at "file is missing (run
    # `beltcast data sync`)", although the flow's first step is that sync
    calls = []
    monkeypatch.setattr(retrain, "history_cached", lambda settings: bool(calls))
    monkeypatch.setattr(retrain.sync, "run", lambda settings, mirror, console: calls.append("sync"))
    with pytest.raises(PlatformMetricsError, match="must cover 5 provinces"):  # the checks ran, after the sync
        retrain.run(settings, "2025Q3", eleven_quarters, QUIET)
    assert calls == ["sync"]
    with pytest.raises(PlatformMetricsError, match="must cover 5 provinces"):  # synced: not again before them
        retrain.run(settings, "2025Q3", eleven_quarters, QUIET)
    assert calls == ["sync"]


@pytest.mark.realdata
def test_code_lists_changed_since_the_sync_are_synced_again_before_the_checks_read_them(raw_dir, tmp_path):
    # the checks read a tampered result.csv as it was: "missing column(s)", not a file to sync again
    cache = tmp_path / "raw"
    shutil.copytree(raw_dir / "areacodes", cache / "areacodes")
    settings = Settings(data=DataSettings(cache_dir=cache))
    assert retrain.history_cached(settings)
    codes = cache / "areacodes" / "result.csv"
    codes.write_text(codes.read_text(encoding="utf-8").replace("代码", "代碼", 1), encoding="utf-8")
    assert not retrain.history_cached(settings)


@pytest.mark.parametrize("where", ["outputs", "features", "params"])
def test_an_output_that_cannot_be_written_is_refused_before_any_step(
    settings, eleven_quarters, tmp_path, where, monkeypatch
):
    # before, an outputs folder that could not be written stopped the flow at train, after build had
    # replaced the panel and tune the saved parameters
    from pipelines.config import ModelSettings, OutputSettings

    (tmp_path / "a_file").write_text("not a folder\n", encoding="utf-8")
    blocked = tmp_path / "a_file" / "under"
    settings = settings.model_copy(
        update={
            "outputs": OutputSettings(dir=blocked) if where == "outputs" else settings.outputs,
            "data": settings.data.model_copy(update={"features_dir": blocked})
            if where == "features"
            else settings.data,
            "model": ModelSettings(params_file=blocked / "p.json") if where == "params" else settings.model,
        }
    )
    read = []
    monkeypatch.setattr(retrain, "load_history", lambda settings: read.append("history") or two_county_history())
    with pytest.raises(OutputPathError, match=rf"{tmp_path / 'a_file'} is a file, not a folder"):
        retrain.run(settings, "2025Q3", eleven_quarters, QUIET)
    assert read == []  # refused before the file was read, let alone the panel built


@pytest.mark.parametrize("period", ["5000", "2205Q3", "1999Q4", "2025Q5", "Q3", ""])
def test_a_period_that_is_no_quarter_of_2000_to_2099_is_refused(settings, eleven_quarters, period):
    expected = (
        r"^--period must be a quarter like 2025Q3 \(or a year like 2025 for annual metrics\) in 2000\.\.2099; "
        rf"got '{period}'$"
    )
    with pytest.raises(PeriodError, match=expected):
        retrain.run(settings, period, eleven_quarters, QUIET)


@pytest.mark.parametrize(
    ("period", "error", "message"),
    [
        (  # the file stops before the period
            "2025Q4",
            PeriodError,
            r"^--period must not be after the last period of the metrics file {file}, 2025Q3 "
            r"\(the file must cover the period retrained for\); got '2025Q4'$",
        ),
        (  # a year for a quarterly file
            "2025",
            PeriodError,
            r"^--period must be a quarter like 2025Q3, as the periods of the quarterly metrics file .* "
            r"\(11 quarter\(s\), 2023Q1\.\.2025Q3\); got '2025'$",
        ),
        (  # rows after the period are named against the option
            "2025Q2",
            PlatformMetricsError,
            r"^period must not be after --period '2025Q2' \(no data from the future\); got '2025Q3' \(data row 11",
        ),
    ],
)
def test_a_period_the_file_does_not_end_at_is_refused(settings, eleven_quarters, period, error, message):
    with pytest.raises(error, match=message.replace("{file}", str(eleven_quarters))):
        retrain.run(settings, period, eleven_quarters, QUIET)


def test_a_file_that_labels_no_quarter_is_refused(settings, tmp_path):
    short = write_synthetic_metrics(tmp_path / "platform_metrics_synthetic_short.csv", quarters("2025Q1", 3))
    with pytest.raises(PlatformMetricsError, match=r"must label at least one quarter: .*got 3 quarter\(s\), 2025Q1"):
        retrain.run(settings, "2025Q3", short, QUIET)


def test_a_file_too_short_for_a_temporal_fold_is_refused(settings, tmp_path):
    nine = write_synthetic_metrics(tmp_path / "platform_metrics_synthetic_9q.csv", quarters("2023Q3", 9))
    with pytest.raises(
        PlatformMetricsError,
        match=r"platform metrics must give tune and the backtest a temporal fold: .* which takes 3 consecutive "
        r"labelled quarters, so 10 consecutive quarters of metrics with this rule \(gmv_growth_yoy needs 8\); got "
        r"transitions in 2025Q2 \(labelled: 2 quarter\(s\), 2025Q2\.\.2025Q3; metrics: 9 quarter\(s\), "
        r"2023Q3\.\.2025Q3\)$",
    ):
        retrain.run(settings, "2025Q3", nine, QUIET)


@pytest.mark.parametrize(("first", "n"), [("2023Q1", 11), ("2023Q2", 10)])
def test_a_file_that_covers_the_period_reaches_the_steps(settings, tmp_path, first, n, monkeypatch):
    # two counties cannot fill the folds or train modes (tested below): only the periods are at stake here
    monkeypatch.setattr(retrain, "check_learnable", lambda *args: None)
    monkeypatch.setattr(retrain, "check_modes", lambda *args: None)
    metrics = write_synthetic_metrics(tmp_path / "platform_metrics_synthetic.csv", quarters(first, n))
    with pytest.raises(StepsReached):
        retrain.run(settings, " 2025Q3", metrics, QUIET)


RULE_FEATURES = ["platform_active_merchants", "platform_gmv_annual_cny", "platform_gmv_growth_yoy"]


@pytest.mark.parametrize(
    ("extra", "seeds", "message"),
    [
        ("live_orders", 3, r"panel features must match those study 'platform' was scored on; the panel"
         r" made from platform.metrics_file = '.*platform_metrics_synthetic.*\.csv' adds 1 \[platform_live_orders\]\."
         r" Start a new study \(beltcast tune"),
        (None, 1, r"tune\.seeds must match study 'platform', whose trials were scored over 1 seed\(s\); got 3\."),
    ],
)  # fmt: skip
def test_a_file_or_config_the_study_was_not_scored_on_is_refused_before_any_step(
    settings, tmp_path, monkeypatch, extra, seeds, message
):
    """A further metric added to the file (as the README invites) had passed the checks; the
    retrain then rebuilt the panel and failed in tune, leaving a panel of another file than the
    champion's."""
    monkeypatch.setattr(retrain, "check_learnable", lambda *args: None)
    monkeypatch.setattr(retrain, "check_modes", lambda *args: None)
    study = optuna.create_study(study_name="platform", storage=settings.tune.storage)
    study.set_user_attr("features", sorted(["census_population_rel", *RULE_FEATURES]))
    study.set_user_attr("seeds", seeds)
    metrics = write_synthetic_metrics(tmp_path / "platform_metrics_synthetic.csv", quarters("2023Q1", 11))
    if extra is not None:
        frame = pd.read_csv(metrics, dtype=str)
        frame.assign(**{extra: "5"}).to_csv(metrics, index=False)

    with pytest.raises(tune.TuneError, match=message):
        retrain.run(settings.model_copy(update={"tune": TuneSettings(storage=settings.tune.storage, seeds=3)}),
                    "2025Q3", metrics, QUIET)  # fmt: skip
    assert not (tmp_path / "features").exists()  # no step ran


def test_a_study_of_trials_recording_no_seeds_or_features_is_refused_before_any_step(settings, tmp_path, monkeypatch):
    # a study from before seeds and features were recorded: tune counts 1 seed and cannot resume it
    monkeypatch.setattr(retrain, "check_learnable", lambda *args: None)
    monkeypatch.setattr(retrain, "check_modes", lambda *args: None)
    study = optuna.create_study(study_name="platform", storage=settings.tune.storage)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    metrics = write_synthetic_metrics(tmp_path / "platform_metrics_synthetic.csv", quarters("2023Q1", 11))

    with pytest.raises(tune.TuneError, match=r"tune\.seeds must match study 'platform', whose trials were scored"
                       r" over 1 seed\(s\); got 3"):  # fmt: skip
        retrain.run(settings, "2025Q3", metrics, QUIET)
    with pytest.raises(tune.TuneError, match=r"study 'platform' does not record the features its 1 trial\(s\)"):
        retrain.run(settings.model_copy(update={"tune": TuneSettings(storage=settings.tune.storage, seeds=1)}),
                    "2025Q3", metrics, QUIET)  # fmt: skip
    assert not (tmp_path / "features").exists()


def test_a_study_store_without_its_driver_is_left_to_tune(settings, tmp_path, monkeypatch):
    monkeypatch.setattr(retrain, "check_learnable", lambda *args: None)
    monkeypatch.setattr(retrain, "check_modes", lambda *args: None)
    metrics = write_synthetic_metrics(tmp_path / "platform_metrics_synthetic.csv", quarters("2023Q1", 11))

    def no_driver(**kwargs):
        raise ImportError("no module named psycopg2")

    monkeypatch.setattr(tune.optuna, "load_study", no_driver)
    remote = settings.model_copy(update={"tune": TuneSettings(storage="postgresql://u@db.example/optuna")})
    with pytest.raises(StepsReached):  # tune names the store it cannot open, as a one-line error
        retrain.run(remote, "2025Q3", metrics, QUIET)


def test_the_study_check_passes_a_file_the_study_was_scored_on_and_creates_no_store(settings, tmp_path, monkeypatch):
    monkeypatch.setattr(retrain, "check_learnable", lambda *args: None)
    monkeypatch.setattr(retrain, "check_modes", lambda *args: None)
    metrics = write_synthetic_metrics(tmp_path / "platform_metrics_synthetic.csv", quarters("2023Q1", 11))
    with pytest.raises(StepsReached):  # no store yet
        retrain.run(settings, "2025Q3", metrics, QUIET)
    assert not (tmp_path / "optuna.db").exists()

    study = optuna.create_study(study_name="platform", storage=settings.tune.storage)
    study.set_user_attr("features", sorted(["census_population_rel", *RULE_FEATURES]))
    study.set_user_attr("seeds", settings.tune.seeds)
    with pytest.raises(StepsReached):
        retrain.run(settings, "2025Q3", metrics, QUIET)


def test_a_platform_panel_is_tuned_in_its_own_study_unless_the_config_names_one(tmp_path):
    metrics, storage = tmp_path / "platform_metrics_synthetic.csv", f"sqlite:///{tmp_path / 'optuna.db'}"
    public = Settings(tune=TuneSettings(storage=storage))
    platform = Settings(platform=PlatformSettings(metrics_file=metrics), tune=TuneSettings(storage=storage))
    named = Settings(platform=PlatformSettings(metrics_file=metrics), tune=TuneSettings(storage=storage, study="q"))
    features = ["census_population_rel", "platform_gmv_annual_cny"]
    # the public study's features differ from a platform panel's: it could not be resumed on one
    assert [tune.default_study(s, features) for s in (public, platform, named)] == ["emergence", "platform", "q"]
    # a store whose retrains ran in the default study keeps resuming it
    optuna.create_study(study_name="emergence", storage=storage).set_user_attr("features", sorted(features))
    assert tune.default_study(platform, features) == "emergence"
    assert tune.default_study(platform, ["census_population_rel"]) == "platform"


Q0 = 2025 * 4  # 2025Q1 as a quarter index


def _rule_metrics(provinces: range, new_belts: set[str], per_province: int = 10) -> pd.DataFrame:
    """SYNTHETIC rule metrics of ``per_province`` counties in each province over 2025Q1..2025Q3:
    the counties of ``new_belts`` are belts from 2025Q2 on (2 of 3 conditions), the others never."""
    rows = []
    for province in provinces:
        for j in range(per_province):
            code = f"{province}{j + 1:04d}"
            for t in range(3):
                belt = code in new_belts and t >= 1
                rows.append((code, Q0 + t, 2e8 if belt else 1e6, 200.0 if belt else 10.0, 0.5 if belt else 0.0))
    return pd.DataFrame(rows, columns=["county_code", "period", "gmv_annual_cny", "active_merchants", "gmv_growth_yoy"])


def _platform_settings() -> Settings:
    return Settings(platform=PlatformSettings(metrics_file="platform_metrics_synthetic.csv"))


def _new_belts(provinces: range, per_province: int) -> set[str]:
    return {f"{p}{j + 1:04d}" for p in provinces for j in range(per_province)}


def test_enough_new_belts_in_enough_provinces_can_be_learned():
    settings = _platform_settings()
    labels = _rule_metrics(range(11, 17), _new_belts(range(11, 17), 2))
    retrain.check_learnable(settings, labels, build.belt_rule(settings.platform))


@pytest.mark.parametrize(
    ("provinces", "new_belts", "message"),
    [
        (range(11, 14), _new_belts(range(11, 14), 2),
         r"must cover 5 provinces at least in the training rows of the newest temporal fold \(2025Q1\): the province"
         r" hold-out holds out 5 groups of provinces and tune 4; got 3 province\(s\)$"),
        (range(11, 17), {"110001"},
         r"must give every training set of tune and the backtest 2 new belts and 2 counties that stay none at least;"
         r" got 1 new belt\(s\) and 59 that stay none in the training rows of the newest temporal fold \(2025Q1\)"
         r" \(60 transitions of 6 province\(s\) in all\)$"),
        (range(11, 17), _new_belts(range(11, 12), 3),  # every new belt in one province
         r"got 0 new belt\(s\) and 40 that stay none in the training rows of the province hold-out without \['110000'"),
    ],
)  # fmt: skip
def test_a_file_whose_folds_cannot_be_learned_is_refused_before_any_step(provinces, new_belts, message):
    settings = _platform_settings()
    labels = _rule_metrics(provinces, new_belts)
    with pytest.raises(PlatformMetricsError, match=message):
        retrain.check_learnable(settings, labels, build.belt_rule(settings.platform))


@pytest.mark.parametrize(
    ("categories", "message"),
    [
        (None, r"got no belt of a known mode: the file has no 'category' values$"),
        (["apparel", "tea leaves"], r"got no belt of a known mode: 2 of its 2 categories map to no mode,"
                                    r" e\.g\. \['apparel', 'tea leaves'\]$"),
    ],
)  # fmt: skip
def test_a_file_without_modes_for_its_belts_is_refused_before_any_step(categories, message):
    settings = _platform_settings()
    labels = _rule_metrics(range(11, 17), _new_belts(range(11, 17), 2))
    frame = labels[["county_code", "period"]].assign(gmv_cny=1e6, active_merchants=10.0)
    frame["category"] = None if categories is None else [categories[i % 2] for i in range(len(frame))]
    metrics = PlatformMetrics(frame, "quarterly")
    rule = build.belt_rule(settings.platform)
    with pytest.raises(PlatformMetricsError, match=r"platform_metrics_synthetic\.csv: platform metrics must give"
                                                   r" belts whose 'category' maps to a mode .*" + message):  # fmt: skip
        retrain.check_modes(metrics, labels, rule, settings.platform.metrics_file)
    frame["category"] = "女装"  # a garment: industrial transformation
    retrain.check_modes(PlatformMetrics(frame, "quarterly"), labels, rule, settings.platform.metrics_file)


def test_belts_of_a_known_mode_must_span_two_provinces_in_the_newest_such_period():
    """The mode model trains on the newest period with belts of a known mode: provinces of earlier
    periods do not make its grouped cross-validation possible."""
    settings = _platform_settings()
    labels = _rule_metrics(range(11, 17), _new_belts(range(11, 13), 2))
    dropped = labels["county_code"].str.startswith("12") & (labels["period"] == Q0 + 2)  # 2025Q3: belts no more
    labels.loc[dropped, ["gmv_annual_cny", "active_merchants", "gmv_growth_yoy"]] = [1e6, 10.0, 0.0]
    frame = labels[["county_code", "period"]].assign(gmv_cny=1e6, active_merchants=10.0, category="女装")
    with pytest.raises(
        PlatformMetricsError,
        match=r"in the newest period that has such belts \(the mode model's training rows\); got 1 province\(s\)"
        r" with such a belt in 2025Q3: those of 2025Q2, in 2 provinces, are not the newest$",
    ):
        retrain.check_modes(PlatformMetrics(frame, "quarterly"), labels, build.belt_rule(settings.platform), "f.csv")
