"""``score --engine spark`` (mlflow.pyfunc.spark_udf on local Spark) against ``--engine pandas``,
on the real panel with the trained champion; one Spark session for the whole module."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from features.errors import Terminated
from models.served import signature
from pipelines import score, spark_engine
from pipelines.score import ScoreError
from pipelines.spark_engine import (
    _booleans,
    model_refusal,
    result_type,
    session_config,
    spark_master,
    spark_session,
)
from pipelines.tracking import model_uri
from tests.pipelines.jobs import beltcast

QUIET = Console(quiet=True)
# PySpark 4 warns that it does not fully support pandas 3; the comparisons below are the check
pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")


@pytest.fixture(scope="module")
def engines(champion_settings, tmp_path_factory) -> dict:
    """Score the champion with each engine; keep each engine's forecast (before ranking), the
    outputs, and the request the spark engine was given (a copy from before and itself after)."""
    pytest.importorskip("pyspark")  # a guard only: CI installs beltcast[spark], so this runs there
    folder = tmp_path_factory.mktemp("engines")
    seen = {"forecast": {}, "outputs": {}}
    rank, predict_with_spark = score.rank, spark_engine.predict_with_spark

    def spy_predict(uri: str, request: pd.DataFrame, model_config: dict | None = None) -> pd.DataFrame:
        seen["request_before"], seen["request_after"] = request.copy(), request
        return predict_with_spark(uri, request, model_config)

    for engine in ("spark", "pandas"):

        def spy_rank(forecast: pd.DataFrame, engine: str = engine) -> pd.DataFrame:
            seen["forecast"][engine] = forecast.copy()
            return rank(forecast)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(score, "rank", spy_rank)
            patch.setattr(spark_engine, "predict_with_spark", spy_predict)
            seen["outputs"][engine] = score.run(champion_settings, None, folder / f"{engine}.csv", engine, QUIET)
    return seen


@pytest.mark.realdata
@pytest.mark.slow
def test_spark_forecast_equals_the_pandas_forecast(engines):
    spark, pandas = engines["forecast"]["spark"], engines["forecast"]["pandas"]
    assert len(spark) == 2844
    assert list(spark.columns) == list(pandas.columns)
    assert spark["county_code"].tolist() == pandas["county_code"].tolist()
    assert np.abs(spark["p_belt"] - pandas["p_belt"]).max() <= 1e-9
    assert str(spark["is_belt"].dtype) == "boolean"
    assert spark["is_belt"].tolist() == pandas["is_belt"].astype("boolean").tolist()
    pd.testing.assert_frame_equal(
        spark.drop(columns="is_belt"), pandas.drop(columns="is_belt"), check_exact=False, rtol=0, atol=1e-9
    )


@pytest.mark.realdata
@pytest.mark.slow
def test_spark_scores_rank_like_pandas_scores(engines):
    outputs = engines["outputs"]
    spark, pandas = pd.read_parquet(outputs["spark"].parquet), pd.read_parquet(outputs["pandas"].parquet)
    assert outputs["spark"].version == outputs["pandas"].version == "1"
    assert outputs["spark"].as_of == outputs["pandas"].as_of == 2020
    assert len(spark) == len(pandas) == 2844
    assert spark["county_code"].tolist() == pandas["county_code"].tolist()
    assert np.abs(spark["p_belt"] - pandas["p_belt"]).max() <= 1e-9
    assert spark["mode"].tolist() == pandas["mode"].tolist()
    pd.testing.assert_series_equal(spark["rank"], pandas["rank"])
    caoxian = spark.set_index("county_code").loc["371721"]
    assert bool(caoxian["is_belt"]) and pd.isna(caoxian["rank"])


@pytest.mark.realdata
@pytest.mark.slow
def test_spark_engine_does_not_modify_its_request(engines):
    pd.testing.assert_frame_equal(engines["request_after"], engines["request_before"])
    assert list(engines["request_after"].columns) == ["county_code", "as_of"]


@pytest.mark.realdata
@pytest.mark.slow
def test_a_request_the_model_refuses_is_named_by_the_models_message(engines, champion_settings):
    pytest.importorskip("pyspark")
    uri = model_uri(champion_settings.mlflow.registered_model, 1)
    request = pd.DataFrame({"county_code": ["371721", "510124"], "as_of": [2020, 2020]})

    with pytest.raises(ScoreError) as refused:
        spark_engine.predict_with_spark(uri, request)

    message = str(refused.value)
    assert message.startswith("the model refused the request in a Spark worker: row 1: county_code '510124'")
    assert "Java" not in message and "\n" not in message


def test_the_models_message_is_taken_from_the_workers_traceback():
    worker = (
        "An exception was thrown from the Python worker. Please see the stack trace below.\n"
        'Traceback (most recent call last):\n  File "served.py", line 46, in predict\n'
        "mlflow.exceptions.MlflowException: row 0: viirs_mean_rel must be a number within -50..50; got inf\n"
    )
    assert model_refusal(RuntimeError(worker)) == "row 0: viirs_mean_rel must be a number within -50..50; got inf"
    assert model_refusal(RuntimeError("Java gateway process exited before sending its port number")) is None


@pytest.mark.parametrize("interruption", [Terminated, KeyboardInterrupt])
def test_an_interruption_while_spark_scores_is_raised_as_it_came(monkeypatch, interruption):
    """SIGTERM while a Spark job ran ended the command with status 1 and an error blaming Java and
    the master: pyspark's clean-up asked the JVM for the job's result, and the JVM's broken-pipe
    error replaced the interruption."""
    py4j = pytest.importorskip("py4j.protocol")

    def interrupted_job(spark, predict, request):
        try:
            raise interruption
        except KeyboardInterrupt:
            raise py4j.Py4JError("An error occurred while calling o88.getResult") from None

    monkeypatch.setattr(spark_engine, "output_schema", lambda uri: signature([]).outputs)
    monkeypatch.setattr(spark_engine, "spark_session", contextlib.nullcontext)
    monkeypatch.setattr(spark_engine.mlflow.pyfunc, "spark_udf", lambda *args, **kwargs: None)
    monkeypatch.setattr(spark_engine, "_score", interrupted_job)

    with pytest.raises(interruption) as raised:
        spark_engine.predict_with_spark("models:/county-belt/1", pd.DataFrame({"county_code": ["371721"]}))
    assert type(raised.value) is interruption


def test_a_spark_error_that_no_interruption_caused_is_a_score_error(monkeypatch):
    py4j = pytest.importorskip("py4j.protocol")

    def failed_job(spark, predict, request):
        try:
            raise ValueError("a worker's own failure")
        except ValueError:
            raise py4j.Py4JError("An error occurred while calling o88.getResult")  # noqa: B904

    monkeypatch.setattr(spark_engine, "output_schema", lambda uri: signature([]).outputs)
    monkeypatch.setattr(spark_engine, "spark_session", contextlib.nullcontext)
    monkeypatch.setattr(spark_engine.mlflow.pyfunc, "spark_udf", lambda *args, **kwargs: None)
    monkeypatch.setattr(spark_engine, "_score", failed_job)

    with pytest.raises(ScoreError, match="the spark engine failed on master"):
        spark_engine.predict_with_spark("models:/county-belt/1", pd.DataFrame({"county_code": ["371721"]}))


def test_result_type_is_the_output_signature_with_booleans_as_strings():
    assert result_type(signature([]).outputs) == (
        "county_code string, county_name string, province string, prefecture string, as_of long, "
        "p_belt double, is_belt string, mode string, p_national_brand double, p_cultural_heritage double, "
        "p_industrial_transformation double, p_local_specialty double, top_drivers string, what_if string, "
        "in_sample string, last_belt string, model_version string"
    )


def test_booleans_come_back_nullable():
    values = _booleans(pd.Series(["True", "<NA>", "False"], name="is_belt"))
    assert str(values.dtype) == "boolean"
    assert values.tolist() == [True, pd.NA, False]


def test_an_unexpected_boolean_text_is_an_error():
    with pytest.raises(
        ScoreError, match=r"is_belt from spark_udf must be one of \['<NA>', 'False', 'True'\]; got \['yes'\]"
    ):
        _booleans(pd.Series(["True", "yes"], name="is_belt"))


def test_master_is_the_argument_then_the_environment_then_local(monkeypatch):
    monkeypatch.delenv("BELTCAST_SPARK_MASTER", raising=False)
    assert spark_master() == "local[2]"
    monkeypatch.setenv("BELTCAST_SPARK_MASTER", "spark://cluster:7077")
    assert spark_master() == "spark://cluster:7077"
    assert spark_master("local[1]") == "local[1]"


def test_session_is_quiet_and_only_a_local_driver_gets_quick_start_jvm_options():
    local, cluster = session_config("local[2]"), session_config("spark://cluster:7077")
    assert local["spark.ui.enabled"] == cluster["spark.ui.enabled"] == "false"
    assert local["spark.log.level"] == cluster["spark.log.level"] == "ERROR"
    assert local["spark.driver.extraJavaOptions"] == "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
    assert "spark.driver.extraJavaOptions" not in cluster


def test_missing_pyspark_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    with (
        pytest.raises(ScoreError, match=r"engine 'spark' needs pyspark.*pip install -e '\.\[spark\]' in the checkout"),
        spark_session(),
    ):
        pass


@pytest.mark.realdata
@pytest.mark.slow
def test_spark_without_java_is_a_one_line_error_naming_the_engine(own_store):
    pytest.importorskip("pyspark")
    environment = {**os.environ, "JAVA_HOME": str(own_store.root / "no-java")}  # in a process of its own:
    # a JVM already started by this one would be reused
    done = subprocess.run(
        beltcast("score", own_store.config(), "--engine", "spark"), capture_output=True, text=True, timeout=600,
        env=environment,
    )  # fmt: skip

    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: the spark engine failed on master 'local[2]' ("), done.stderr[-3000:]
    assert lines[-1].endswith("--engine pandas scores without Spark")
    assert "Traceback" not in done.stderr
    assert not list(own_store.outputs.glob("scores_*"))  # nothing written
