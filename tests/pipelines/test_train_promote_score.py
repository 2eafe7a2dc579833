"""train -> promote -> score on the real panel, with MLflow in a temporary SQLite store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from rich.console import Console

from features.errors import OutputPathError
from pipelines import promote, score, train
from pipelines.config import ModelSettings
from pipelines.manifest import sha256_of
from pipelines.promote import PromotionError
from pipelines.tracking import frame_hash, version_by_alias

pytestmark = [pytest.mark.realdata, pytest.mark.slow]
QUIET = Console(quiet=True)


@pytest.fixture(scope="module")
def client(champion_settings) -> MlflowClient:
    uri = champion_settings.mlflow.tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_first_model_becomes_champion_with_lineage(champion_settings, client):
    champion = version_by_alias(client, "county-belt", "champion")
    assert str(champion.version) == "1"
    assert champion.tags["promotion_decision"] == "promoted"
    assert champion.tags["promotion_reason"] == "first model: no champion yet"
    run = client.get_run(champion.run_id)
    for tag in (
        "git_sha",
        "data_manifest_sha256",
        "panel_sha256",
        "fold_spec",
        "seed",
        "version.lightgbm",
    ):
        assert tag in run.data.tags
    assert run.data.tags["fold_spec"] == champion.tags["fold_spec"]  # JSON on the run and on the version
    # what built the panel (features build's quality.json), which may be other code and data than train's
    assert run.data.tags["panel_built.git_sha"] == run.data.tags["git_sha"]
    assert run.data.tags["panel_built.data_manifest_sha256"] == run.data.tags["data_manifest_sha256"]
    assert json.loads(run.data.tags["fold_spec"])["horizon"] == 1
    assert "temporal.lightgbm.average_precision" in run.data.metrics
    assert run.data.metrics["temporal.lightgbm.n_positive"] == 49  # counts are metrics too
    assert run.data.metrics["mode.majority.n"] > 0
    assert 0.0 <= run.data.metrics["mode_model_weight"] <= 1.0
    assert champion.tags["panel_last_period"] == "2020"
    assert champion.tags["params_source"] == str(champion_settings.model.params_file.resolve())
    artifacts = {a.path for a in client.list_artifacts(champion.run_id, "backtest")}
    assert {
        "backtest/backtest.json",
        "backtest/pr_curve.png",
        "backtest/calibration_curve.png",
    } <= artifacts
    explanations = {a.path for a in client.list_artifacts(champion.run_id, "explanations")}
    assert {"explanations/shap_summary.png", "explanations/linear_margin.csv"} <= explanations


def test_backtest_json_keeps_the_contract(champion_settings, client, tmp_path):
    champion = version_by_alias(client, "county-belt", "champion")
    path = client.download_artifacts(champion.run_id, "backtest/backtest.json", str(tmp_path))
    report = json.loads(Path(path).read_text(encoding="utf-8"))
    emergence = report["emergence"]
    for models in (emergence["models"], emergence["spatial"]["models"]):
        assert {"lightgbm", "logistic", "spatial_neighbors"} <= set(models)
        for metrics in models.values():
            assert {"average_precision", "precision_at_50", "recall_at_100", "roc_auc", "brier"} <= set(metrics)
    assert {"lightgbm", "majority"} <= set(report["mode"]["models"])
    for comparisons, models in (
        (emergence["comparisons"], emergence["models"]),
        (emergence["spatial"]["comparisons"], emergence["spatial"]["models"]),
    ):
        assert set(comparisons) == set(models) - {"lightgbm"}
        diff = comparisons["spatial_neighbors"]
        ap = models["lightgbm"]["average_precision"] - models["spatial_neighbors"]["average_precision"]
        assert diff["average_precision_diff"] == pytest.approx(ap)
        if champion_settings.model.bootstrap:  # intervals only with resamples
            low, high = diff["precision_at_50_diff_ci"]
            assert low <= high and 0 <= diff["precision_at_50_diff_ahead"] <= 1
        else:
            assert "precision_at_50_diff" in diff and "precision_at_50_diff_ci" not in diff


def test_training_identical_inputs_registers_no_new_version(champion_settings, client, tmp_path):
    written = champion_settings.outputs.dir / "backtest.json"
    written.write_text('{"from": "another version"}', encoding="utf-8")  # as a later train would leave it
    outcome = train.run(champion_settings, QUIET)
    assert outcome.reused
    assert outcome.version == "1"
    assert len(client.search_model_versions("name = 'county-belt'")) == 1
    # the reused version's backtest again, naming the version and the run that trained it (the
    # outputs folder may hold another version's: the run's own artifact does not say which it is)
    restored = json.loads(written.read_text(encoding="utf-8"))
    assert restored.pop("model") == {"name": "county-belt", "version": "1", "run_id": outcome.run_id}
    logged = client.download_artifacts(outcome.run_id, "backtest/backtest.json", str(tmp_path))
    assert restored == json.loads(Path(logged).read_text(encoding="utf-8"))
    runs = client.search_runs(
        [client.get_experiment_by_name(champion_settings.mlflow.experiment).experiment_id],
        "tags.`train.reused` = 'true'",
    )
    assert len(runs) >= 1  # the reuse is a run too, naming the version and the run that trained it
    assert runs[0].data.tags["model_version"] == "1" and runs[0].data.tags["model_run_id"] == outcome.run_id
    assert runs[0].data.tags["panel_sha256"] and runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["params_source"] == str(champion_settings.model.params_file.resolve())
    trained = client.get_run(outcome.run_id).data.params
    assert trained["mode_year"] == str(champion_settings.model.mode_year) and "model_version" not in trained


def test_parameters_edited_after_tune_are_not_tagged_as_the_trial_s(tmp_path):
    from pipelines.backtest import params_digest
    from pipelines.config import Settings

    params = {"n_estimators": 110, "num_leaves": 32, "calibration_folds": 3}
    saved = {"study": "emergence", "storage": "sqlite:///mlruns/optuna.db", "best_trial": 19, "best_value": 0.3679,
             "params": params, "params_sha256": params_digest(params)}  # fmt: skip
    path = tmp_path / "tuned_params.json"
    settings = Settings(model=ModelSettings(params_file=path))

    path.write_text(json.dumps(saved), encoding="utf-8")
    tuned = train.params_source(settings, True)
    tuned_file = sha256_of(path)
    path.write_text(json.dumps({**saved, "params": {**params, "n_estimators": 100}}), encoding="utf-8")
    edited = train.params_source(settings, True)
    path.write_text(json.dumps({k: v for k, v in saved.items() if k != "params_sha256"}), encoding="utf-8")
    older = train.params_source(settings, True)  # a file of a tune that wrote no digest: taken at its word

    assert tuned["params_best_trial"] == "19" and tuned["params_storage"] == "sqlite:///mlruns/optuna.db"
    assert tuned["params_file_sha256"] == tuned_file
    assert "params_best_trial" not in edited and "params_best_value" not in edited
    assert edited["params_edited_from"] == "trial 19 of study 'emergence' (the file's parameters were changed since)"
    assert edited["params_file_sha256"] != tuned["params_file_sha256"]
    assert older["params_best_trial"] == "19" and "params_edited_from" not in older
    path.write_text(json.dumps({**saved, "best_trial": 0, "best_value": 0.0}), encoding="utf-8")
    first = train.params_source(settings, True)  # the first trial may be the best
    assert first["params_best_trial"] == "0" and first["params_best_value"] == "0.0"


def test_a_train_that_fails_after_its_backtest_leaves_the_outputs_as_they_were(
    champion_settings, monkeypatch, tmp_path
):
    """The backtest's files were written to the outputs folder before the model was fitted and
    registered: a train that failed on the way (a tracking server gone) left there the backtest of
    a model no version holds."""
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"params": {"n_estimators": 3, "num_leaves": 4}}), encoding="utf-8")
    changed = champion_settings.model_copy(
        update={"model": champion_settings.model.model_copy(update={"params_file": other})}
    )
    before = {p.name: p.read_bytes() for p in champion_settings.outputs.dir.iterdir() if p.is_file()}

    def gone(*args, **kwargs):
        raise ConnectionError("the tracking server went away")

    monkeypatch.setattr(train, "fit_final", gone)
    with pytest.raises(ConnectionError):
        train.run(changed, QUIET)
    after = {p.name: p.read_bytes() for p in champion_settings.outputs.dir.iterdir() if p.is_file()}
    assert {"backtest.json", "pr_curve.png", "calibration_curve.png"} <= set(before)
    assert after == before


def test_a_backtest_file_that_cannot_be_written_stops_train_before_it_registers(champion_settings, client, tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"params": {"n_estimators": 3, "num_leaves": 4}}), encoding="utf-8")
    (tmp_path / "outputs" / "backtest.json").mkdir(parents=True)  # a folder where the JSON goes
    blocked = champion_settings.model_copy(
        update={
            "model": champion_settings.model.model_copy(update={"params_file": other}),
            "outputs": champion_settings.outputs.model_copy(update={"dir": tmp_path / "outputs"}),
        }
    )
    versions = len(client.search_model_versions("name = 'county-belt'"))
    with pytest.raises(OutputPathError, match=r"backtest.json is a directory; expected a file path"):
        train.run(blocked, QUIET)
    assert len(client.search_model_versions("name = 'county-belt'")) == versions


def test_an_upgraded_fitting_library_is_another_training(champion_settings, monkeypatch):
    """Identical data, parameters and code fitted with another LightGBM may give another model:
    ``train`` said "reused (identical inputs)" after an upgrade."""
    from importlib import metadata

    from pipelines.backtest import fold_spec, load_panel

    panel, spec = load_panel(champion_settings), fold_spec(champion_settings)
    before = train.training_fingerprint(panel, {}, spec, champion_settings)
    installed = metadata.version

    def upgraded(library: str) -> str:
        return "99.0.0" if library == "lightgbm" else installed(library)

    monkeypatch.setattr(metadata, "version", upgraded)
    assert train.training_fingerprint(panel, {}, spec, champion_settings) != before
    monkeypatch.setattr(metadata, "version", installed)
    assert train.training_fingerprint(panel, {}, spec, champion_settings) == before


def test_a_worse_challenger_leaves_the_champion_and_says_why(champion_settings, client, tmp_path):
    worse_params = tmp_path / "worse.json"
    worse_params.write_text(json.dumps({"params": {"n_estimators": 1, "num_leaves": 2, "learning_rate": 0.01}}))
    model = ModelSettings(spatial_folds=2, bootstrap=0, params_file=worse_params)
    worse = champion_settings.model_copy(update={"model": model})
    outcome = train.run(worse, QUIET)
    decision = promote.run(worse, False, None, QUIET)
    assert not decision.promoted
    assert "AP" in decision.reason or "Brier" in decision.reason
    assert decision.figures["ap_tolerance"] == worse.promote.ap_tolerance  # the gate's setting, in the record
    assert str(version_by_alias(client, "county-belt", "champion").version) == "1"
    rejected = client.get_model_version("county-belt", outcome.version)
    assert rejected.tags["promotion_decision"] == "rejected"
    with pytest.raises(PromotionError, match="--force needs --reason"):
        promote.run(worse, True, None, QUIET)
    client.set_registered_model_alias("county-belt", "challenger", "1")


def test_a_champion_is_judged_with_its_own_seed_after_the_seed_changed(champion_settings, client):
    """With ``model.seed`` changed, the gate backtested the champion's parameters with the new
    seed: the challenger (the same parameters) was compared with itself, and passed."""
    champion = version_by_alias(client, "county-belt", "champion")
    reseeded = champion_settings.model_copy(
        update={"model": champion_settings.model.model_copy(update={"seed": champion_settings.model.seed + 1})}
    )
    try:
        challenger = train.run(reseeded, QUIET)
        decision = promote.run(reseeded, False, None, QUIET)

        assert decision.figures["source"] == "backtested again on the current panel: champion"
        assert decision.figures["champion_ap"] == float(champion.tags["average_precision"])
        assert decision.figures["champion_brier"] == float(champion.tags["brier"])
        tagged = client.get_model_version("county-belt", challenger.version).tags
        assert decision.figures["challenger_ap"] == float(tagged["average_precision"])
        assert decision.figures["champion_ap"] != decision.figures["challenger_ap"]  # the seeds' models differ
        refit_settings = promote.as_trained(reseeded, champion)
        assert refit_settings.model.seed == champion_settings.model.seed
        assert refit_settings.model.params_file == reseeded.model.params_file
    finally:
        client.set_registered_model_alias("county-belt", "champion", champion.version)
        client.set_registered_model_alias("county-belt", "challenger", champion.version)


def test_a_kept_champion_is_refitted_on_a_changed_panel(champion_settings, client, tmp_path):
    """A new quarter of data: the gate keeps the champion's parameters against a worse challenger,
    and the champion served is those parameters fitted on the new panel, not the old fit."""
    features = tmp_path / "features"
    shutil.copytree(champion_settings.data.features_dir, features)
    panel = pd.read_parquet(features / "panel.parquet")
    panel.loc[panel.index[0], "viirs_mean_rel"] += 0.5  # the panel has changed since version 1
    panel.to_parquet(features / "panel.parquet", index=False)
    worse_params = tmp_path / "worse.json"
    worse_params.write_text(json.dumps({"params": {"n_estimators": 1, "num_leaves": 2, "learning_rate": 0.01}}))
    changed = champion_settings.model_copy(
        update={
            "data": champion_settings.data.model_copy(update={"features_dir": features}),
            "model": ModelSettings(spatial_folds=2, bootstrap=0, params_file=worse_params),
        }
    )
    old = version_by_alias(client, "county-belt", "champion")
    try:
        challenger = train.run(changed, QUIET)
        decision = promote.run(changed, False, None, QUIET)
        assert not decision.promoted and decision.figures["source"] == "backtested again on the current panel: champion"
        refit = version_by_alias(client, "county-belt", "champion")
        assert decision.refit == str(refit.version) not in (str(old.version), challenger.version)
        assert refit.tags["refit_of"] == str(old.version)
        assert refit.tags["params_json"] == old.tags["params_json"]
        # where its parameters came from: the old version's, with that version's record of them
        old_run = client.get_run(old.run_id).data.tags
        refit_run = client.get_run(refit.run_id).data.tags
        assert refit_run["params_of_version"] == refit.tags["params_of_version"] == str(old.version)
        assert refit_run["params_source"] == refit.tags["params_source"] == old_run["params_source"]
        assert {k: v for k, v in refit_run.items() if k.startswith("params_") and k != "params_of_version"} == {
            k: v for k, v in old_run.items() if k.startswith("params_")
        }
        assert refit.tags["panel_sha256"] == frame_hash(panel) != old.tags["panel_sha256"]
        assert float(refit.tags["average_precision"]) == decision.figures["champion_ap"]
        assert str(version_by_alias(client, "county-belt", "challenger").version) == challenger.version
        rejected = client.get_model_version("county-belt", challenger.version).tags
        assert rejected["promotion_decision"] == "rejected"
        assert rejected["promotion_champion_now"] == decision.refit  # the champion kept, refitted
        assert rejected["promotion_champion_refit_of"] == str(old.version)
        backtest_json = changed.outputs.dir / "backtest.json"
        assert json.loads(backtest_json.read_text())["model"]["version"] == decision.refit  # the refit wrote it
        # the same train and promote again (a retrain re-run): train puts the rejected challenger's
        # backtest back, and the kept refit's promote its own, so the outputs end as the first time
        assert train.run(changed, QUIET).reused
        assert json.loads(backtest_json.read_text())["model"]["version"] == challenger.version
        again = promote.run(changed, False, None, QUIET)
        assert again.refit is None and again.figures["source"].startswith("version tags")
        assert str(version_by_alias(client, "county-belt", "champion").version) == decision.refit
        assert json.loads(backtest_json.read_text())["model"] == {
            "name": "county-belt", "version": decision.refit, "run_id": refit.run_id,
        }  # fmt: skip

        # features rebuilt, no train: the challenger is the champion, both fitted on the old panel
        for alias in ("champion", "challenger"):
            client.set_registered_model_alias("county-belt", alias, old.version)
        rebuilt = promote.run(changed, False, None, QUIET)
        assert rebuilt.refit == decision.refit  # the identical refit is found again, not retrained
        for alias in ("champion", "challenger"):
            assert str(version_by_alias(client, "county-belt", alias).version) == decision.refit
        settled = promote.run(changed, False, None, QUIET)
        assert settled.reason == "challenger is already the champion" and settled.refit is None
        assert promote.decision_tags(settled)["promotion_decision"] == "unchanged"  # not "rejected"
        # a promote that decides nothing leaves the version's record as it was, and is a run of its own
        assert client.get_model_version("county-belt", decision.refit).tags.get("promotion_reason") != settled.reason
        experiment = client.get_experiment_by_name(changed.mlflow.experiment).experiment_id
        last = client.search_runs([experiment], "tags.mlflow.runName = 'promote'", order_by=["start_time DESC"])[0]
        assert last.data.tags["promotion.reason"] == settled.reason
        assert last.data.tags["model_version"] == settled.challenger

        # a later decision on the rejected challenger leaves no tag of the earlier one behind
        client.set_registered_model_alias("county-belt", "challenger", challenger.version)
        forced = promote.run(changed, True, "the worse parameters, on purpose", QUIET)
        assert forced.promoted and forced.refit is None
        tags = client.get_model_version("county-belt", challenger.version).tags
        assert tags["promotion_decision"] == "promoted"
        assert "promotion_champion_now" not in tags and "promotion_champion_refit_of" not in tags
    finally:
        client.set_registered_model_alias("county-belt", "champion", old.version)
        client.set_registered_model_alias("county-belt", "challenger", old.version)


def test_score_writes_one_row_per_county_ranked(champion_settings, client, tmp_path):
    out = tmp_path / "scores.csv"
    outputs = score.run(champion_settings, None, out, "pandas", QUIET)
    scores = pd.read_csv(out, dtype={"county_code": str, "model_version": str})
    assert len(scores) == 2844
    assert scores["county_code"].is_unique
    assert list(scores.columns) == score.SCORE_COLUMNS
    assert not scores["in_sample"].any()  # as of 2020: a forecast
    caoxian = scores.set_index("county_code").loc["371721"]
    assert bool(caoxian["is_belt"]) and pd.isna(caoxian["rank"])
    # 南浔区 had 3 Taobao villages in 2015 and none in 2016: a candidate again, marked as a belt of 2015
    written = pd.read_parquet(outputs.parquet)
    returning = written[written["last_belt"] != ""].set_index("county_code")
    assert returning.loc["330503", "last_belt"] == "2015" and pd.notna(returning.loc["330503", "rank"])
    assert len(returning) == 12 and returning["rank"].notna().all()  # the 12 belts of 2015 in no roster of 2016
    # the mode model's weight is 0 on the public data: no candidate's mode is a forecast, and the file says so
    by_source = scores.groupby("mode_source")
    assert set(scores.loc[scores["rank"].notna(), "mode_source"]) == {"frequencies"}
    assert by_source.size()["label"] > 0 and scores.loc[scores["mode_source"] == "label", "is_belt"].all()
    quyang = scores.set_index("county_code").loc[
        "130634"
    ]  # 曲阳县, a belt of stone carving: its label, not the model's
    assert quyang["mode_source"] == "label" and quyang["mode"] == "cultural_heritage"
    candidates = scores.dropna(subset=["rank"])
    assert candidates["rank"].tolist() == list(range(1, len(candidates) + 1))  # the file starts with the short list
    assert scores["rank"].iloc[: len(candidates)].notna().all()
    assert candidates["p_belt"].is_monotonic_decreasing
    assert (scores["model_version"] == outputs.version).all()
    assert outputs.as_of == 2020
    pd.testing.assert_frame_equal(
        pd.read_parquet(outputs.parquet),
        score.SCORE_SCHEMA.validate(pd.read_parquet(outputs.parquet)),
    )
    experiment = client.get_experiment_by_name(champion_settings.mlflow.experiment).experiment_id
    run = client.search_runs([experiment], "attributes.run_name = 'score'", order_by=["attributes.start_time DESC"])[0]
    assert run.data.tags["model_version"] == outputs.version and run.data.params["as_of"] == "2020"
    assert run.data.metrics["counties"] == 2844 and run.data.metrics["candidates"] == len(candidates)
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "scores")}
    assert logged == {"scores/scores.csv", "scores/scores.parquet"}
    # the files on disk can be traced to the run that wrote them
    assert run.data.tags["output_csv"] == str(out.resolve())
    assert run.data.tags["output_parquet"] == str(outputs.parquet.resolve())
    assert run.data.tags["output_csv_sha256"] == sha256_of(out)
    assert run.data.tags["output_parquet_sha256"] == sha256_of(outputs.parquet)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".scores.csv.lock", "scores.csv", "scores.parquet"]
    assert out.read_bytes().startswith(b"county_code,")  # no byte-order mark unless asked for


def test_score_writes_a_byte_order_mark_for_excel_when_asked_and_reads_the_same(champion_settings, tmp_path):
    plain = score.run(champion_settings, 2016, tmp_path / "plain.csv", "pandas", QUIET)
    settings = champion_settings.model_copy(
        update={"outputs": champion_settings.outputs.model_copy(update={"csv_encoding": "utf-8-sig"})}
    )
    excel = score.run(settings, 2016, tmp_path / "excel.csv", "pandas", QUIET)
    assert excel.csv.read_bytes() == b"\xef\xbb\xbf" + plain.csv.read_bytes()
    assert "曹县" in excel.csv.read_text(encoding="utf-8-sig")
    pd.testing.assert_frame_equal(pd.read_csv(excel.csv, dtype=str), pd.read_csv(plain.csv, dtype=str))


def test_score_rejects_a_year_outside_the_model(champion_settings, tmp_path):
    with pytest.raises(score.ScoreError, match=r"as_of must be one of the model's periods 2013\.\.2020; got 2031"):
        score.run(champion_settings, 2031, tmp_path / "x.csv", "pandas", QUIET)
    assert not (tmp_path / "x.csv").exists()


def test_score_checks_its_default_output_folder_before_scoring(champion_settings, tmp_path, monkeypatch):
    blocker = tmp_path / "outputs"
    blocker.write_text("kept", encoding="utf-8")
    settings = champion_settings.model_copy(
        update={"outputs": champion_settings.outputs.model_copy(update={"dir": blocker})}
    )
    monkeypatch.setattr(score, "score", lambda *args: pytest.fail("scored before the output path was checked"))

    with pytest.raises(
        OutputPathError, match=rf"^outputs.dir: output {blocker}/scores_2020.csv: {blocker} is a file, not a folder"
    ):
        score.run(settings, None, None, "pandas", QUIET)
    assert blocker.read_text(encoding="utf-8") == "kept"
    from pipelines import report

    monkeypatch.setattr(report, "render", lambda *args: pytest.fail("rendered before the output path was checked"))
    with pytest.raises(OutputPathError, match=rf"^outputs.dir: output {blocker}/report_2020.html: {blocker} is a file"):
        report.run(settings, None, None, QUIET)
    assert blocker.read_text(encoding="utf-8") == "kept"


def test_a_training_year_is_named_an_in_sample_check(champion_settings, client, tmp_path):
    import mlflow.pyfunc

    champion = version_by_alias(client, "county-belt", "champion")
    model = mlflow.pyfunc.load_model(f"models:/county-belt/{champion.version}")
    seen = {year: score.trained_on_outcome(model, year) for year in (2013, 2014, 2015, 2016, 2020)}
    assert seen == {2013: None, 2014: 2016, 2015: 2016, 2016: None, 2020: None}  # 2013: no roster, no transition
    # and the files say so, for a job that reads them without the console
    trained = score.run(champion_settings, 2015, tmp_path / "s2015.csv", "pandas", QUIET)
    assert pd.read_parquet(trained.parquet)["in_sample"].all()
    assert pd.read_csv(trained.csv)["in_sample"].all()


def test_a_year_before_any_label_says_the_ranking_lacks_belt_exposure(champion_settings, tmp_path):
    console = Console(record=True, width=400)
    score.run(champion_settings, 2013, tmp_path / "s2013.csv", "pandas", console)
    text = " ".join(console.export_text().split())

    assert "score: 2844 counties have no belt label known as of 2013" in text
    assert "the belt-exposure indicators (belts and villages nearby, the nearest belt) are unknown too" in text
    # on the public data the mode model's weight is 0: the mode columns are no per-county forecast, and say so
    assert "score: the mode columns are the modes' training frequencies for every county" in text


def test_mode_source_tells_a_label_a_forecast_and_the_training_frequencies_apart():
    from types import SimpleNamespace

    # SYNTHETIC snapshot: a labelled belt, a belt without a label, a candidate
    snapshot = pd.DataFrame(
        {"county_code": ["000001", "000002", "000003"], "as_of": 2020, "mode": ["cultural_heritage", None, None]}
    )
    forecast = pd.DataFrame(
        {"county_code": ["000001", "000002", "000003"], "is_belt": pd.array([True, True, False], dtype="boolean")}
    )
    forecast.index = [7, 8, 9]  # the forecast's own index is kept
    weighted = score.mode_sources(forecast, SimpleNamespace(snapshot=snapshot, mode_weight=0.4), 2020)
    assert weighted.tolist() == ["label", "model", "model"] and weighted.index.tolist() == [7, 8, 9]
    unweighted = score.mode_sources(forecast, SimpleNamespace(snapshot=snapshot, mode_weight=0.0), 2020)
    assert unweighted.tolist() == ["label", "frequencies", "frequencies"]
    later = score.mode_sources(forecast, SimpleNamespace(snapshot=snapshot, mode_weight=0.0), 2021)
    assert later.tolist() == ["frequencies"] * 3  # no label known as of another period


def test_last_belt_names_the_newest_labelled_period_a_county_no_belt_now_was_one():
    # SYNTHETIC snapshot: labels of 2014, 2015, 2016, carried to 2017
    periods = [2013, 2014, 2015, 2016, 2017]
    status = {
        "000001": [None, True, True, False, False],  # left the roster in 2016
        "000002": [None, True, False, True, True],  # left, and came back: a belt now
        "000003": [None, False, False, False, False],  # never a belt
        "000004": [None, True, None, None, None],  # of unknown status after 2014: ranked, and a belt of 2014
        "000005": [None, True, False, False, False],  # a belt of 2014 only
    }
    label = {2013: None, 2014: 2014, 2015: 2015, 2016: 2016, 2017: 2016}
    snapshot = pd.DataFrame(
        [
            {"county_code": code, "as_of": year, "is_belt_known": known[i], "last_label_period": label[year]}
            for code, known in status.items()
            for i, year in enumerate(periods)
        ]
    )
    assert score.last_belt(snapshot, 2017).to_dict() == {
        "000001": "2015", "000002": "", "000003": "", "000004": "2014", "000005": "2014",
    }  # fmt: skip
    assert score.last_belt(snapshot, 2015).to_dict() == {
        "000001": "", "000002": "2014", "000003": "", "000004": "2014", "000005": "2014",
    }  # fmt: skip
    assert set(score.last_belt(snapshot, 2013)) == {""}  # nothing labelled before
