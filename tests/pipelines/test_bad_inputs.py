"""Bad paths, files and settings given to the jobs: a clear error naming what was wrong, what was
expected and what came in, raised before any work, and nothing already written touched."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from features.codes import load_code_history
from features.errors import BeltcastError, DataSyncError, OutputPathError, SourceFormatError
from features.io import writable_target, write_atomic
from features.panel import ID_COLUMNS
from pipelines import backtest, build, promote, report, score, tune
from pipelines.backtest import check_params, load_panel, tuned_params
from pipelines.config import (
    DataSettings,
    MlflowSettings,
    ModelSettings,
    OutputSettings,
    PlatformSettings,
    Settings,
    TuneSettings,
)
from pipelines.promote import PromotionError
from pipelines.score import ScoreError
from pipelines.tracking import TrackingError, sqlite_file, use_tracking

QUIET = Console(quiet=True)


def test_an_output_path_that_is_a_directory_is_named(tmp_path):
    with pytest.raises(OutputPathError, match=f"output {tmp_path} is a directory; expected a file path"):
        write_atomic(tmp_path, lambda tmp: tmp.write_text("x"))


def test_an_output_path_under_a_file_is_named_and_the_file_kept(tmp_path):
    blocker = tmp_path / "scores.csv"
    blocker.write_text("kept", encoding="utf-8")
    with pytest.raises(
        OutputPathError, match=rf"output .*scores.csv/report.html: {re.escape(str(blocker))} is a file,"
    ):
        write_atomic(blocker / "report.html", lambda tmp: tmp.write_text("x"))
    with pytest.raises(OutputPathError, match=rf"{re.escape(str(blocker))} is a file, not a folder"):
        write_atomic(blocker / "deeper" / "report.html", lambda tmp: tmp.write_text("x"))
    assert blocker.read_text(encoding="utf-8") == "kept"


def test_backtest_refuses_a_directory_out_before_reading_the_panel(tmp_path):
    settings = Settings(data=DataSettings(features_dir=tmp_path / "no-panel-here"))
    with pytest.raises(OutputPathError, match=r"^--out: output .* is a directory"):  # not "panel ... does not exist"
        backtest.run(settings, tmp_path, QUIET)


def test_backtest_refuses_an_outputs_dir_under_a_file_before_reading_the_panel(tmp_path):
    blocker = tmp_path / "outputs"
    blocker.write_text("kept", encoding="utf-8")
    settings = Settings(
        data=DataSettings(features_dir=tmp_path / "no-panel-here"), outputs=OutputSettings(dir=blocker / "x")
    )
    with pytest.raises(OutputPathError, match=r"^outputs.dir: output .*backtest.json: .* is a file, not a folder"):
        backtest.run(settings, None, QUIET)
    assert blocker.read_text(encoding="utf-8") == "kept"


def test_a_job_failing_before_it_writes_leaves_no_folder_it_would_have_made(tmp_path):
    settings = Settings(
        data=DataSettings(features_dir=tmp_path / "no-panel-here"),
        mlflow=MlflowSettings(tracking_uri=f"sqlite:///{tmp_path / 'no-store.db'}"),
    )
    with pytest.raises(BeltcastError, match="panel"):
        backtest.run(settings, tmp_path / "new" / "deeper" / "backtest.json", QUIET)
    with pytest.raises(BeltcastError):  # no model store, no champion
        score.run(settings, None, tmp_path / "new" / "deeper" / "scores.csv", "pandas", QUIET)
    assert not (tmp_path / "new").exists()
    write_atomic(tmp_path / "new" / "deeper" / "x.txt", lambda tmp: tmp.write_text("x"))  # writing makes it
    assert (tmp_path / "new" / "deeper" / "x.txt").read_text() == "x"


def test_an_output_folder_that_cannot_be_made_is_refused_before_any_work(tmp_path):
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        with pytest.raises(
            OutputPathError, match=rf"its folder {re.escape(str(locked))} \(to create {re.escape(str(locked))}/new"
        ):
            writable_target(locked / "new" / "backtest.json")
        return
    with tempfile.TemporaryDirectory() as shared:  # root may write anywhere: the check runs as another user
        os.chmod(shared, 0o755)
        other = (
            "import os, sys; from pathlib import Path; from features.io import writable_target;"
            " os.setgid(65534); os.setuid(65534)\n"
            "try:\n    writable_target(Path(sys.argv[1]) / 'new' / 'backtest.json')\n"
            "except Exception as err:\n    print(f'{type(err).__name__}: {err}')"
        )
        refused = subprocess.run(
            [sys.executable, "-c", other, shared], capture_output=True, text=True, cwd=Path(__file__).parents[2]
        )
        assert refused.stdout.strip() == (
            f"OutputPathError: output {shared}/new/backtest.json: its folder {shared} (to create {shared}/new in)"
            " is not writable; expected a writable folder"
        ), refused.stderr[-500:]
        assert not (Path(shared) / "new").exists()


@pytest.mark.parametrize("name", ["scores.parquet", "scores", "scores.txt"])
def test_score_out_must_name_a_csv(tmp_path, name):
    settings = Settings(mlflow=MlflowSettings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"))
    with pytest.raises(ScoreError, match=f"--out must be a .csv path .*; got {tmp_path / name}"):
        score.run(settings, None, tmp_path / name, "pandas", QUIET)
    assert not (tmp_path / "mlflow.db").exists()  # refused before the store was opened


def _kept(tmp_path: Path) -> Settings:
    """Settings whose raw data, features and MLflow store are folders of ``tmp_path``, each holding a file."""
    for folder, name in (("raw/areacodes", "result.csv"), ("features", "panel.parquet"), ("mlruns", "mlflow.db")):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / name).write_text("kept", encoding="utf-8")
    return Settings(
        data=DataSettings(cache_dir=tmp_path / "raw", features_dir=tmp_path / "features"),
        model=ModelSettings(params_file=tmp_path / "mlruns" / "tuned_params.json"),
        mlflow=MlflowSettings(tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"),
    )


@pytest.mark.parametrize(
    ("out", "folder"),
    [
        (
            "features/panel.csv",
            r"features, the features folder \(\[data\] features_dir\) of the panel and its siblings",
        ),
        ("raw/areacodes/result.csv", r"raw, the raw-data folder \(\[data\] cache_dir\), whose files are checked"),
        ("mlruns/scores.csv", r"mlruns, the MLflow store's folder \(\[mlflow\] tracking_uri\)"),
        ("linked/scores.csv", r"features, the features folder"),  # a link into the folder is in it
    ],
)
def test_score_refuses_an_out_among_the_files_beltcast_reads_and_keeps_them(tmp_path, out, folder):
    # score --out data/features/panel.csv replaced the panel with the scores' Parquet beside the CSV,
    # and --out data/raw/areacodes/result.csv a sha-checked raw file
    settings = _kept(tmp_path)
    (tmp_path / "linked").symlink_to(tmp_path / "features", target_is_directory=True)
    with pytest.raises(
        OutputPathError, match=rf"^--out must be a path outside {tmp_path}/{folder}.*; got {tmp_path}/{out}$"
    ):
        score.run(settings, None, tmp_path / out, "pandas", QUIET)
    kept = [tmp_path / "raw" / "areacodes" / "result.csv", tmp_path / "features" / "panel.parquet"]
    assert [path.read_text(encoding="utf-8") for path in kept] == ["kept", "kept"]
    assert sorted(p.name for p in (tmp_path / "mlruns").iterdir()) == ["mlflow.db"]  # refused before the store opened


def test_backtest_and_report_refuse_an_out_among_the_files_beltcast_reads(tmp_path):
    settings = _kept(tmp_path)
    with pytest.raises(OutputPathError, match=rf"^--out must be a path outside {tmp_path}/features, the features"):
        backtest.run(settings, tmp_path / "features" / "quality.json", QUIET)  # not "panel ... cannot be read"
    with pytest.raises(OutputPathError, match=rf"^--out must be a path outside {tmp_path}/mlruns, the MLflow store"):
        report.run(settings, None, tmp_path / "mlruns" / "artifacts" / "report.html", QUIET)
    assert sorted(p.name for p in (tmp_path / "mlruns").iterdir()) == ["mlflow.db"]


def _model(tmp_path: Path, params_file: Path | None) -> Settings:
    model = ModelSettings() if params_file is None else ModelSettings(params_file=params_file)
    return Settings(model=model)


def test_a_configured_params_file_that_does_not_exist_is_an_error(tmp_path):
    missing = tmp_path / "tuned.json"
    with pytest.raises(BeltcastError, match=f"model.params_file {missing} does not exist"):
        tuned_params(_model(tmp_path, missing))


def test_the_default_params_file_written_out_in_a_config_is_still_the_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default mlruns/tuned_params.json does not exist here
    assert tuned_params(_model(tmp_path, Path("mlruns/tuned_params.json"))) is None


def test_without_a_configured_params_file_the_defaults_apply(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default mlruns/tuned_params.json does not exist here
    assert tuned_params(_model(tmp_path, None)) is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot be read \\(JSONDecodeError"),
        ('{"foo": 1}', "cannot be read \\(KeyError"),
        ('{"params": [1]}', "'params' must be an object; got \\[1\\]"),
        ('{"params": {"num_leaves": "abc"}}', "num_leaves must be an integer >= 2; got 'abc'"),
        ('{"params": {"subsample": 1.5}}', "subsample must be a finite number in \\(0, 1\\]; got 1.5"),
        ('{"params": {"n_estimators": true}}', "n_estimators must be an integer >= 1; got True"),
        ('{"params": {"learning_rate": NaN}}', "learning_rate must be a finite number > 0; got nan"),
        ('{"params": {"scale_pos_weight": Infinity}}', "scale_pos_weight must be a finite number > 0; got inf"),
        ('{"params": {"max_bin": 63}}', "unknown parameter 'max_bin'"),
        ('{"params": {"calibration": "platt"}}', "calibration must be 'sigmoid' or null; got 'platt'"),
        ('{"params": {"monotone_exposure": 1}}', "monotone_exposure must be true or false; got 1"),
    ],
)
def test_a_params_file_tune_would_not_write_is_named(tmp_path, content, message):
    path = tmp_path / "tuned.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(BeltcastError, match=f"model.params_file {path}.*{message}"):
        tuned_params(_model(tmp_path, path))


def test_tuned_parameters_pass_the_check():
    params = {"n_estimators": 60, "learning_rate": 0.0146, "num_leaves": 23, "min_child_samples": 15}
    params |= {"subsample": 0.6, "colsample_bytree": 0.56, "reg_lambda": 4.7, "scale_pos_weight": 1.3}
    params |= {"linear_margin_C": None, "calibration_folds": 10, "calibration": "sigmoid", "monotone_exposure": False}
    assert check_params(params, "here") == params


def test_a_panel_that_is_not_parquet_is_named(tmp_path):
    (tmp_path / "panel.parquet").write_bytes(b"PAR1 truncated")
    settings = Settings(data=DataSettings(features_dir=tmp_path))
    with pytest.raises(BeltcastError, match=r"panel .*panel.parquet cannot be read .*expected the Parquet file"):
        load_panel(settings)


def test_a_panel_without_the_label_columns_is_named(tmp_path):
    pd.DataFrame({"county_code": ["371721"], "as_of": [2020]}).to_parquet(tmp_path / "panel.parquet")
    settings = Settings(data=DataSettings(features_dir=tmp_path))
    with pytest.raises(BeltcastError, match=r"lacks column\(s\) \['county_name', .*'is_belt', 'emerged'\]"):
        load_panel(settings)


def _minimal_panel(folder: Path, *extra: str) -> None:
    columns = [*ID_COLUMNS, "is_belt", "emerged", *extra]
    pd.DataFrame({c: [1] for c in columns}).to_parquet(folder / "panel.parquet")


def test_a_platform_panel_read_without_the_platform_config_is_named(tmp_path):
    # a `beltcast train` or `promote` after `retrain --metrics FILE`, without that config: the
    # public rosters' labels and folds on a platform panel ended in a ValueError minutes in
    _minimal_panel(tmp_path, "platform_gmv_annual_cny")
    settings = Settings(data=DataSettings(features_dir=tmp_path))
    with pytest.raises(BeltcastError, match=r"built from platform metrics .* no \[platform\] metrics_file"):
        load_panel(settings)


def test_a_platform_panel_read_with_another_metrics_file_is_named(tmp_path):
    # `train --config` naming last quarter's file after a retrain on this quarter's: its lineage
    # would record one file while the panel was built from another
    built, other = tmp_path / "metrics_2025Q4_synthetic.csv", tmp_path / "metrics_2025Q3_synthetic.csv"
    built.write_text("county_code,period,gmv_cny,active_merchants\n371721,2025Q4,1,1\n", encoding="utf-8")
    other.write_text("county_code,period,gmv_cny,active_merchants\n371721,2025Q3,1,1\n", encoding="utf-8")
    _minimal_panel(tmp_path, "platform_gmv_annual_cny")
    record = {"platform_metrics": {"file": str(built), "sha256": hashlib.sha256(built.read_bytes()).hexdigest()}}
    (tmp_path / "quality.json").write_text(json.dumps(record), encoding="utf-8")

    def settings(metrics: Path) -> Settings:
        return Settings(data=DataSettings(features_dir=tmp_path), platform=PlatformSettings(metrics_file=metrics))

    with pytest.raises(
        BeltcastError,
        match=rf"was built from the platform metrics {re.escape(str(built))} \(sha256 [0-9a-f]{{12}}\), but the"
        rf" config's \[platform\] metrics_file is {re.escape(str(other))} \(sha256 [0-9a-f]{{12}}\); expected the same",
    ):
        load_panel(settings(other))
    copy = tmp_path / "copy.csv"
    copy.write_bytes(built.read_bytes())
    assert len(load_panel(settings(copy))) == 1  # the same content under another name


def test_a_public_panel_read_with_a_platform_config_is_named(tmp_path):
    _minimal_panel(tmp_path, "viirs_mean_rel")
    platform = PlatformSettings(metrics_file=tmp_path / "platform_metrics.csv")
    settings = Settings(data=DataSettings(features_dir=tmp_path), platform=platform)
    with pytest.raises(BeltcastError, match=r"built from the public rosters, but the config sets \[platform\]"):
        load_panel(settings)
    assert len(load_panel(Settings(data=DataSettings(features_dir=tmp_path)))) == 1


def test_an_unusable_tracking_uri_is_named(tmp_path):
    settings = Settings(mlflow=MlflowSettings(tracking_uri="bogus://x"))
    with pytest.raises(TrackingError, match=r"mlflow.tracking_uri = 'bogus://x'.*cannot be used"):
        use_tracking(settings)


def test_a_store_that_is_not_a_database_is_named_and_kept(tmp_path):
    database = tmp_path / "mlflow.db"
    database.write_bytes(b"not a database" * 100)
    with pytest.raises(TrackingError, match=f"'sqlite:///{database}'.*file is not a database"):
        use_tracking(Settings(mlflow=MlflowSettings(tracking_uri=f"sqlite:///{database}")))
    assert database.read_bytes() == b"not a database" * 100


def test_an_unusable_study_store_is_named(tmp_path):
    settings = Settings(tune=TuneSettings(storage="bogus:///x"))
    with pytest.raises(TrackingError, match=r"tune.storage = 'bogus:///x' cannot be opened"):
        tune.open_study(settings, None)


def test_the_code_history_before_a_sync_says_to_sync(tmp_path):
    with pytest.raises(SourceFormatError, match=r"result.csv: file is missing \(run `beltcast data sync`\)"):
        load_code_history(tmp_path / "areacodes", [2020])


@pytest.mark.parametrize(
    ("force", "reason", "message"),
    [
        (True, "   ", "--force needs --reason TEXT .*; got '   '"),
        (True, None, "--force needs --reason TEXT .*; got None"),
        (False, "it is better", "--reason is recorded only with --force .*; got 'it is better'"),
    ],
)
def test_promote_refuses_a_reason_that_says_nothing_or_is_not_used(tmp_path, force, reason, message):
    settings = Settings(mlflow=MlflowSettings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"))
    with pytest.raises(PromotionError, match=message):
        promote.run(settings, force, reason, QUIET)
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.realdata
@pytest.mark.slow
def test_a_champion_whose_files_are_gone_is_named_by_score(champion_settings, tmp_path):
    artifacts = Path(champion_settings.mlflow.tracking_uri.removeprefix("sqlite:///")).parent / "artifacts"
    kept = tmp_path / "scores.csv"
    kept.write_text("kept", encoding="utf-8")
    away = artifacts.rename(artifacts.with_name("artifacts.away"))  # the store's files, moved for a moment
    try:
        with pytest.raises(ScoreError, match=r"cannot load models:/county-belt/1 .*expected its artifacts"):
            score.run(champion_settings, None, kept, "pandas", QUIET)
    finally:
        away.rename(artifacts)
    assert kept.read_text(encoding="utf-8") == "kept"


@pytest.mark.realdata
def test_build_names_a_raw_file_cut_short_since_the_sync_and_writes_nothing(raw_dir, tmp_path):
    cache = tmp_path / "raw"
    shutil.copytree(raw_dir, cache)
    employment = cache / "tudigong" / "input" / "employment.csv"
    lines = employment.read_text(encoding="utf-8").splitlines(keepends=True)
    employment.write_text("".join(lines[: len(lines) // 2]), encoding="utf-8")  # still a well-formed CSV
    features = tmp_path / "features"
    settings = Settings(data=DataSettings(cache_dir=cache, features_dir=features))
    with pytest.raises(DataSyncError, match=rf"{employment}: sha256 mismatch, .*run `beltcast data sync`"):
        build.run(settings, QUIET)
    assert not features.exists() or not any(features.iterdir())


@pytest.mark.realdata
def test_build_names_a_changed_code_list_by_its_checksum_before_reading_it(raw_dir, tmp_path):
    # the code lists were read before the raw files were checked: a tampered result.csv came out as
    # "missing column(s) ['代码']", not as a file changed since the sync
    cache = tmp_path / "raw"
    shutil.copytree(raw_dir, cache)
    codes = cache / "areacodes" / "result.csv"
    codes.write_text(codes.read_text(encoding="utf-8").replace("代码", "代碼", 1), encoding="utf-8")
    settings = Settings(data=DataSettings(cache_dir=cache, features_dir=tmp_path / "features"))
    with pytest.raises(
        DataSyncError, match=rf"^the raw-data cache does not match the manifest: {codes}: sha256 mismatch"
    ):
        build.run(settings, QUIET)
    assert not (tmp_path / "features").exists()


@pytest.mark.parametrize(
    ("uri", "database"),
    [
        ("sqlite:///mlruns/mlflow.db?timeout=30", "mlruns/mlflow.db"),
        ("sqlite:///my%20dir/mlflow.db", "my dir/mlflow.db"),
        ("sqlite:////srv/mlflow.db", "/srv/mlflow.db"),
        ("sqlite://", None),
        ("http://mlflow.internal:5000", None),
        ("postgresql://user@host/mlflow", None),
    ],
)
def test_the_store_file_is_read_as_sqlalchemy_reads_it(uri, database):
    assert sqlite_file(uri) == (None if database is None else Path(database))


def test_a_store_given_with_a_query_is_found(tmp_path):
    use_tracking(Settings(mlflow=MlflowSettings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")))
    use_tracking(Settings(mlflow=MlflowSettings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}?timeout=30")), True)


def test_two_backtests_in_one_folder_keep_their_own_curves(tmp_path):
    rng = np.random.default_rng(0)  # SYNTHETIC predictions of one fold, logic only
    predictions = pd.DataFrame(
        {"fold": "temporal_2016", "model": "m", "y": rng.integers(0, 2, 200), "p": rng.random(200)}
    )
    result = SimpleNamespace(folds=[{"name": "temporal_2016", "kind": "temporal"}], predictions=predictions)

    default = backtest.write_plots(result, tmp_path / "backtest.json")
    named = backtest.write_plots(result, tmp_path / "a.json")

    assert [p.name for p in default] == ["pr_curve.png", "calibration_curve.png"]
    assert [p.name for p in named] == ["a_pr_curve.png", "a_calibration_curve.png"]
    assert all(p.is_file() for p in default + named)


def _fold_panel(folder: Path) -> None:
    """A SYNTHETIC panel of 6 provinces of 10 counties, labelled 2014 to 2016 (a logic fixture):
    two transitions, 2014→2015 and 2015→2016, and the 2014 belts' modes in 2 provinces."""
    rows = []
    for p in range(6):
        for c in range(10):
            code = f"{11 + p}{c + 1:04d}"
            for year in (2014, 2015, 2016):
                belt = c < (1, 3, 5)[year - 2014]
                emerged = None if belt or year == 2016 else float(c < (3, 5)[year - 2014])
                mode = ("industrial_transformation" if p < 2 else None) if c < 1 else None
                rows.append({
                    "county_code": code, "county_name": code, "province": str(p), "prefecture": str(p),
                    "province_code": f"{11 + p}0000", "prefecture_code": f"{11 + p}0100", "as_of": year,
                    "is_belt": belt, "emerged": emerged, "mode": mode, "x": float(c),
                })  # fmt: skip
    pd.DataFrame(rows).to_parquet(folder / "panel.parquet")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"labels": {"horizon": 2}},
            r"labels\.horizon = 2 leaves the panel no temporal fold: .* got transitions as of 2014, 2015 \(labelled"
            r" periods: 2014, 2015, 2016\)",
        ),
        (
            {"model": {"spatial_folds": 7}},
            r"model\.spatial_folds must be at most the number of provinces it can hold out, 6 in the training rows"
            r" of the newest temporal fold \(as of 2014\); got 7",
        ),
        ({"tune": {"inner_folds": 8}}, r"tune\.inner_folds must be at most the number of provinces .*; got 8"),
        (
            {"model": {"mode_year": 2019}},
            r"model\.mode_year must be a year whose belts have a known mode in 2 provinces at least .*: 2014, 2015,"
            r" 2016; got 2019",
        ),
    ],
)
def test_folds_the_panel_cannot_fill_are_named_before_any_work_and_nothing_is_written(tmp_path, section, message):
    # before, sklearn's "Cannot have number of splits n_splits=40 greater than the number of
    # groups" (or worse, a JSON of no temporal fold written beside the last backtest's curves)
    features = tmp_path / "features"
    features.mkdir()
    _fold_panel(features)
    settings = Settings.model_validate({"data": {"features_dir": str(features)}, **section})
    out = tmp_path / "backtest.json"
    out.write_text("the last backtest", encoding="utf-8")
    with pytest.raises(BeltcastError, match=message):
        backtest.run(settings, out, QUIET)
    if "mode_year" not in section.get("model", {}):  # tune fits no mode model
        with pytest.raises(BeltcastError, match=message):
            tune.run(settings, 1, None, QUIET)
    assert out.read_text(encoding="utf-8") == "the last backtest"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backtest.json", "features"]
    assert sorted(p.name for p in features.iterdir()) == ["panel.parquet"]


def test_folds_the_panel_can_fill_pass_the_check(tmp_path):
    _fold_panel(tmp_path)
    settings = Settings.model_validate(
        {"data": {"features_dir": str(tmp_path)}, "model": {"spatial_folds": 6, "mode_year": 2016}}
    )
    backtest.check_folds(load_panel(settings), settings)
