"""The quarterly retrain end to end on a SYNTHETIC platform-metrics fixture (seeded; not real data)."""

from __future__ import annotations

import json
import shutil

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from rich.console import Console

from features.errors import BeltcastError
from features.panel import MODE_ONLY_FEATURES, feature_columns
from features.periods import PeriodError
from features.platform import PlatformMetricsError
from features.synthetic import write_synthetic
from models.estimators import ModelInputError
from pipelines import build, retrain, train, tune
from pipelines.backtest import load_panel
from pipelines.config import (
    DataSettings,
    MlflowSettings,
    ModelSettings,
    OutputSettings,
    PlatformSettings,
    Settings,
    TuneSettings,
)
from pipelines.manifest import sha256_of
from pipelines.tracking import frame_hash, version_by_alias

pytestmark = [pytest.mark.realdata, pytest.mark.slow]
QUIET = Console(quiet=True)
QUICK = '{"params": {"n_estimators": 40, "learning_rate": 0.05, "num_leaves": 7, "min_child_samples": 20}}'


@pytest.fixture(scope="module")
def settings(raw_dir, code_history, tmp_path_factory) -> Settings:
    root = tmp_path_factory.mktemp("retrain")
    metrics = write_synthetic(  # a platform that covers 800 counties: the others' status is unknown
        root / "platform_metrics_synthetic.csv", code_history, first="2023Q1", last="2025Q3", seed=3, n_counties=800
    )
    (root / "params.json").write_text(QUICK)
    return Settings(
        data=DataSettings(cache_dir=raw_dir, features_dir=root / "features"),
        platform=PlatformSettings(metrics_file=metrics, retrain_trials=1, temporal_folds=1),
        model=ModelSettings(spatial_folds=2, bootstrap=0, params_file=root / "params.json"),
        tune=TuneSettings(storage=f"sqlite:///{root / 'optuna.db'}", inner_folds=2, seeds=1),
        outputs=OutputSettings(dir=root / "outputs"),
        mlflow=MlflowSettings(tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"),
    )


@pytest.fixture(scope="module")
def first(settings) -> retrain.RetrainSummary:
    return retrain.run(settings, "2025Q3", None, QUIET)


def _client(settings) -> MlflowClient:
    uri = settings.mlflow.tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_first_retrain_makes_a_champion_and_quarterly_outputs(first, settings):
    assert first.old_champion is None and first.new_champion == first.challenger == "1"
    scores = settings.outputs.dir / "scores_2025Q3.csv"
    assert scores.is_file() and (settings.outputs.dir / "report_2025Q3.html").is_file()
    assert "2025Q3" in scores.read_text(encoding="utf-8").splitlines()[1]
    client = _client(settings)
    parent = client.get_run(first.outputs["run"])
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert {run.info.run_name for run in children} == {"sync", "build", "tune", "train", "promote", "score", "report"}
    steps = {run.info.run_name: run for run in children}
    assert steps["sync"].data.tags["data_manifest_sha256"] and "files_verified" in steps["sync"].data.metrics
    assert steps["build"].data.metrics["panel_rows"] > 0
    assert "best_inner_fold_average_precision" in steps["tune"].data.metrics
    for name, artifact in (("build", "data/quality.json"), ("score", "scores/scores_2025Q3.csv"),
                           ("report", "report/report_2025Q3.html")):  # fmt: skip
        assert artifact in {a.path for a in client.list_artifacts(steps[name].info.run_id, artifact.split("/")[0])}
    assert steps["score"].data.tags["model_version"] == first.new_champion
    champion = version_by_alias(client, "county-belt", "champion")
    trained = client.get_run(champion.run_id)  # the retrain's train step, not a run nested in it
    assert trained.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert steps["build"].data.tags["panel_sha256"] == trained.data.tags["panel_sha256"]
    assert trained.data.tags["platform_metrics_sha256"] == sha256_of(settings.platform.metrics_file)
    assert parent.data.tags["retrain.metrics_sha256"] == trained.data.tags["platform_metrics_sha256"]
    assert parent.data.tags["retrain.metrics_file"] == str(settings.platform.metrics_file.resolve())
    assert champion.tags["platform_metrics_sha256"] == trained.data.tags["platform_metrics_sha256"]
    assert champion.tags["panel_last_period"] == "2025Q3"
    # the platform's belt rule, not the public rosters', on the run, the version and in the served model
    rule = build.belt_rule(settings.platform).describe()
    assert trained.data.tags["belt_rule"] == champion.tags["belt_rule"] == rule and "gmv" in rule
    mlflow.set_registry_uri(settings.mlflow.tracking_uri)
    bundle = mlflow.pyfunc.load_model(f"models:/county-belt/{champion.version}").unwrap_python_model().bundle
    meta = bundle.meta
    assert meta["belt_rule"] == [c.model_dump() for c in settings.platform.conditions]
    # what a county sells by mode is the mode model's, not the emergence model's
    assert bundle.mode_extra == list(MODE_ONLY_FEATURES)
    assert not set(MODE_ONLY_FEATURES) & set(bundle.features)
    assert meta["min_met"] == settings.platform.min_met
    assert trained.data.tags["params_source"] == champion.tags["params_source"]  # the run says it too
    # a file marked is_synthetic (the fixture's) makes a model, a report and a panel that say so
    assert champion.tags["platform_metrics_synthetic"] == trained.data.tags["platform_metrics_synthetic"] == "true"
    assert meta["synthetic_metrics"] is True
    assert json.loads((settings.data.features_dir / "quality.json").read_text())["platform_metrics"]["synthetic"]
    page = (settings.outputs.dir / "report_2025Q3.html").read_text(encoding="utf-8")
    assert page.count("SYNTHETIC DATA: this model was trained on platform metrics marked synthetic") == 2


def test_rerunning_the_period_reuses_work_and_adds_no_version(first, settings, monkeypatch):
    saved = json.loads(settings.model.params_file.read_text())

    def fitted_again(*args, **kwargs):
        raise AssertionError("the best trial's calibration was fitted again")

    monkeypatch.setattr(tune, "calibration_scores", fitted_again)  # the first run's are kept in the study
    second = retrain.run(settings, "2025Q3", None, QUIET)
    assert (
        json.loads(settings.model.params_file.read_text())["calibration_inner_brier"]
        == (saved["calibration_inner_brier"])
    )
    assert second.reused
    assert second.challenger == first.challenger
    assert second.new_champion == first.new_champion
    assert len(_client(settings).search_model_versions("name = 'county-belt'")) == 1


def test_a_bad_metrics_row_fails_before_training_and_touches_nothing(first, settings, tmp_path):
    bad = tmp_path / "platform_metrics_synthetic_bad.csv"
    shutil.copy(settings.platform.metrics_file, bad)
    lines = bad.read_text(encoding="utf-8").splitlines()
    fields = lines[5].split(",")
    fields[3] = "-5"  # gmv_cny of data row 5
    lines[5] = ",".join(fields)
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    scores = settings.outputs.dir / "scores_2025Q3.csv"
    before = scores.read_bytes()
    with pytest.raises(PlatformMetricsError, match=r"gmv_cny .*got '-5'.*data row 5"):
        retrain.run(settings, "2025Q3", bad, QUIET)
    client = _client(settings)
    assert str(version_by_alias(client, "county-belt", "champion").version) == first.new_champion
    assert scores.read_bytes() == before


def test_the_next_quarter_starts_from_the_last_best_and_serves_the_new_quarter(first, settings, code_history):
    """A quarter later: the study's first trial for 2025Q4 scores 2025Q3's best parameters again on
    the new panel, and the champion after the gate covers 2025Q4 (a champion kept by the gate is
    refitted on the new panel: ``test_a_kept_champion_is_refitted_on_a_changed_panel``)."""
    import optuna

    q4 = write_synthetic(
        settings.platform.metrics_file.with_name("platform_metrics_synthetic_q4.csv"),
        code_history, first="2023Q1", last="2025Q4", seed=3, n_counties=800,
    )  # fmt: skip
    q3_params = json.loads(settings.model.params_file.read_text(encoding="utf-8"))["params"]
    summary = retrain.run(settings, "2025Q4", q4, QUIET)
    study = optuna.load_study(study_name=tune.default_study(settings), storage=settings.tune.storage)
    first_q4 = next(t for t in study.trials if t.user_attrs.get("period") == "2025Q4")
    assert first_q4.user_attrs["incumbent"]
    assert first_q4.params == {k: v for k, v in q3_params.items() if k != "calibration_folds"}
    assert summary.old_champion == first.new_champion and summary.new_champion != first.new_champion
    champion = version_by_alias(_client(settings), "county-belt", "champion")
    assert champion.tags["panel_sha256"] == frame_hash(
        load_panel(retrain.with_metrics(settings, q4))
    )  # the file that built it
    # whichever way the gate goes, the champion serves 2025Q4: the challenger, or the kept champion's refit
    if summary.decision.startswith("kept champion"):
        assert f"refitted on the panel up to 2025Q4 as version {summary.new_champion}" in summary.decision
        assert champion.tags["refit_of"] == first.new_champion
    else:
        assert summary.decision.startswith("promoted") and str(champion.version) == summary.challenger
    assert champion.tags["panel_last_period"] == "2025Q4"
    scores = settings.outputs.dir / "scores_2025Q4.csv"
    assert "2025Q4" in scores.read_text(encoding="utf-8").splitlines()[1]


def test_an_older_period_is_refused_once_the_champion_is_newer(first, settings):
    """After 2025Q4 (the test above), retraining 2025Q3 would rebuild the panel up to 2025Q3 and
    refit the champion on it: the served model would no longer reach 2025Q4."""
    champion = version_by_alias(_client(settings), "county-belt", "champion")
    if champion.tags.get("panel_last_period") != "2025Q4":
        pytest.skip("needs the champion of 2025Q4 (test_the_next_quarter_...)")
    panel = (settings.data.features_dir / "panel.parquet").read_bytes()
    with pytest.raises(PeriodError, match=r"--period must not be before the champion's newest period, 2025Q4"):
        retrain.run(settings, "2025Q3", None, QUIET)
    assert version_by_alias(_client(settings), "county-belt", "champion").version == champion.version
    assert (settings.data.features_dir / "panel.parquet").read_bytes() == panel


def test_a_platform_row_of_no_county_is_reported_not_dropped_in_silence(first, settings, tmp_path):
    extra = tmp_path / "platform_metrics_synthetic_extra.csv"
    shutil.copy(settings.platform.metrics_file, extra)
    with extra.open("a", encoding="utf-8") as file:  # 儋州's code of before it became a prefecture city
        file.write("469003,2025Q3,家具,1000000.0,10,True\n")
    config = settings.model_copy(
        update={
            "platform": settings.platform.model_copy(update={"metrics_file": extra}),
            "data": settings.data.model_copy(update={"features_dir": tmp_path / "features"}),
        }
    )
    console = Console(record=True, width=200)
    outputs = build.run(config, console, until="2025Q3")
    unmatched = pd.read_csv(outputs.unmatched, dtype=str)
    row = unmatched[unmatched["source"] == "platform"]
    assert len(row) == 1 and row["county_code"].item() == "469003"
    notes = json.loads(outputs.quality.read_text(encoding="utf-8"))["platform_metrics"]
    assert notes["rows_unmatched"] == 1 and notes["target_counties"] == 800 and notes["target_counties_of"] == 2844
    text = " ".join(console.export_text().split())  # the console wraps long lines
    assert "unmatched platform: 1 row(s)" in text
    assert "800 of 2,844 counties" in text and "1 row(s) with no county, in unmatched.csv" in text


def test_further_platform_metrics_are_features_of_the_panel(settings, tmp_path):
    """SYNTHETIC further metrics (live orders, a count; a refund rate, intensive) added to the
    SYNTHETIC platform file become the panel's features platform_live_orders and platform_refund_rate."""
    metrics = pd.read_csv(settings.platform.metrics_file, dtype={"county_code": str})
    rng = np.random.default_rng(0)
    metrics["live_orders"] = rng.integers(0, 1000, len(metrics)).astype(float)
    metrics["refund_rate"] = rng.uniform(-0.1, 0.3, len(metrics))  # negative: refunds of earlier sales
    extended = tmp_path / "platform_metrics_synthetic_further.csv"
    metrics.to_csv(extended, index=False)
    config = settings.model_copy(
        update={
            "platform": settings.platform.model_copy(update={"metrics_file": extended, "intensive": ("refund_rate",)}),
            "data": settings.data.model_copy(update={"features_dir": tmp_path / "features"}),
        }
    )
    console = Console(record=True, width=200)
    outputs = build.run(config, console, until="2025Q3")
    panel = pd.read_parquet(outputs.panel)

    assert {"platform_live_orders", "platform_refund_rate"} <= set(feature_columns(panel))
    county = metrics["county_code"].iloc[0]
    rows = metrics[(metrics["county_code"] == county) & (metrics["period"] == "2025Q3")]
    row = panel[(panel["county_code"] == county) & (panel["as_of"] == 2025 * 4 + 2)].squeeze()
    assert row["platform_live_orders"] == rows["live_orders"].sum()
    weights = rows["gmv_cny"] / rows["gmv_cny"].sum()
    assert row["platform_refund_rate"] == pytest.approx((rows["refund_rate"] * weights).sum())
    assert panel["platform_refund_rate"].min() < 0
    notes = json.loads(outputs.quality.read_text(encoding="utf-8"))["platform_metrics"]
    assert notes["further_metrics"] == {"platform_live_orders": "count", "platform_refund_rate": "rate"}
    text = " ".join(console.export_text().split())
    assert (
        "platform features besides the belt rule's: platform_live_orders (count), platform_refund_rate (rate)" in text
    )

    # train needs the config the panel was built with: rates and counts are combined differently
    counted = config.model_copy(update={"platform": config.platform.model_copy(update={"intensive": ()})})
    with pytest.raises(BeltcastError, match=r"built with \[platform\] intensive = \['refund_rate'\].*config says \[\]"):
        load_panel(counted)

    # the served model knows their kinds: a what-if count may not be negative, a rate may
    store = config.model_copy(update={"mlflow": MlflowSettings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")})
    train.run(store, QUIET)
    bundle = mlflow.pyfunc.load_model("models:/county-belt/1").unwrap_python_model().bundle
    assert bundle.meta["further_metrics"] == {"platform_live_orders": "count", "platform_refund_rate": "rate"}
    what_if = bundle.forecast(pd.DataFrame({"county_code": [county], "platform_refund_rate": [-0.5]}))
    assert what_if["what_if"].item() == "platform_refund_rate"
    with pytest.raises(
        ModelInputError, match=r"platform_live_orders .*a finite number >= 0 \(a count of the platform's"
    ):
        bundle.forecast(pd.DataFrame({"county_code": [county], "platform_live_orders": [-5.5]}))
