"""``beltcast retrain`` refuses a bad ``--period`` and a metrics file that cannot train, before any
step runs. The metrics files are SYNTHETIC (made-up values on two real county codes)."""

from __future__ import annotations

import optuna
import pytest
from rich.console import Console

from features.periods import PeriodError
from features.platform import PlatformMetricsError
from pipelines import retrain, tune
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
    monkeypatch.setattr(retrain, "use_tracking", _stop)
    return Settings(
        data=DataSettings(cache_dir=tmp_path / "raw", features_dir=tmp_path / "features"),
        mlflow=MlflowSettings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"),
    )


@pytest.fixture
def eleven_quarters(tmp_path):
    """SYNTHETIC metrics 2023Q1..2025Q3: 2024Q4..2025Q3 labelled, transitions in three quarters."""
    return write_synthetic_metrics(tmp_path / "platform_metrics_synthetic.csv", quarters("2023Q1", 11))


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
def test_a_file_that_covers_the_period_reaches_the_steps(settings, tmp_path, first, n):
    metrics = write_synthetic_metrics(tmp_path / "platform_metrics_synthetic.csv", quarters(first, n))
    with pytest.raises(StepsReached):
        retrain.run(settings, " 2025Q3", metrics, QUIET)


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
