"""``beltcast score --engine spark``: the registered pyfunc scored through ``mlflow.pyfunc.spark_udf``.

The model runs inside Spark's Python workers (``env_manager="local"``: the workers use this
interpreter's packages; the model's own code travels in its ``code/`` folder). The result is the
same DataFrame the pandas engine returns: :data:`models.bundle.OUTPUT_COLUMNS`, same dtypes, one
row per request row, in order.

Spark runs locally (``local[2]``) unless ``BELTCAST_SPARK_MASTER`` names another master, e.g.
``spark://host:7077`` (its workers then need this project's environment installed).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import mlflow.pyfunc
import numpy as np
import pandas as pd

from features.taxonomy import MODES
from models.bundle import OUTPUT_COLUMNS
from pipelines.score import ScoreError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

MASTER_VARIABLE = "BELTCAST_SPARK_MASTER"
LOCAL_MASTER = "local[2]"
PYSPARK_PYTHON = "PYSPARK_PYTHON"
ROW = "__beltcast_row__"
FORECAST = "__beltcast_forecast__"
# is_belt travels as a string: spark_udf casts a BooleanType field with numpy, which cannot hold
# the missing is_belt of years before the first label (2013), so it comes back as a nullable boolean
RESULT_TYPE = ", ".join(
    [
        *(f"{name} string" for name in ("county_code", "county_name", "province", "prefecture")),
        "as_of long",
        "p_belt double",
        "is_belt string",
        "mode string",
        *(f"p_{mode} double" for mode in MODES),
        "top_drivers string",
        "what_if string",
    ]
)
BOOLEANS = {"True": True, "False": False, "<NA>": pd.NA}  # numpy's str() of a nullable boolean
SESSION_CONFIG = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "1g",
    "spark.sql.shuffle.partitions": "2",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.log.level": "ERROR",
}


def spark_master(master: str | None = None) -> str:
    """``master`` if given, else ``BELTCAST_SPARK_MASTER``, else ``local[2]``."""
    return master or os.environ.get(MASTER_VARIABLE) or LOCAL_MASTER


@contextmanager
def spark_session(master: str | None = None) -> Iterator[SparkSession]:
    """A quiet Spark session (no UI, 2 shuffle partitions, 1 GB driver), stopped on exit.

    Parameters
    ----------
    master : str, optional
        Spark master URL; default :func:`spark_master` (``BELTCAST_SPARK_MASTER`` or ``local[2]``).
    """
    SparkSession = _pyspark_session_class()
    master = spark_master(master)
    builder = SparkSession.builder.master(master).appName("beltcast-score")
    for key, value in SESSION_CONFIG.items():
        builder = builder.config(key, value)
    with _worker_python(master):
        spark = builder.getOrCreate()
    try:
        yield spark
    finally:
        spark.stop()


def predict_with_spark(model_uri: str, request: pd.DataFrame) -> pd.DataFrame:
    """Forecast every row of ``request`` with the model at ``model_uri`` through ``spark_udf``.

    Parameters
    ----------
    model_uri : str
        A pyfunc model URI, e.g. ``models:/county-belt/1``.
    request : DataFrame
        ``county_code``, optional ``as_of`` and optional indicator columns, as for the pandas
        engine's ``model.predict``.

    Returns
    -------
    DataFrame with :data:`~models.bundle.OUTPUT_COLUMNS`, one row per request row, in order.
    """
    with spark_session() as spark:
        predict = mlflow.pyfunc.spark_udf(spark, model_uri, result_type=RESULT_TYPE, env_manager="local")
        scored = _score(spark, predict, request)
    return _as_pandas_forecast(scored)


def _score(spark: SparkSession, predict, request: pd.DataFrame) -> pd.DataFrame:
    """Run the UDF over the request; the rows come back sorted by their request position."""
    from pyspark.sql import functions as F

    frame = spark.createDataFrame(request.assign(**{ROW: np.arange(len(request))}))
    inputs = F.struct(*(F.col(f"`{name}`") for name in request.columns))
    scored = frame.select(ROW, predict(inputs).alias(FORECAST)).select(ROW, f"{FORECAST}.*")
    return scored.toPandas().sort_values(ROW).reset_index(drop=True)


def _as_pandas_forecast(scored: pd.DataFrame) -> pd.DataFrame:
    """The pandas engine's columns and dtypes (its string dtype, int64, float64, nullable boolean)."""
    columns = {name: scored[name].to_numpy(dtype=object) for name in OUTPUT_COLUMNS}
    columns["as_of"] = scored["as_of"].to_numpy(dtype=np.int64)
    columns.update({name: scored[name].to_numpy(dtype=float) for name in ("p_belt", *(f"p_{m}" for m in MODES))})
    columns["is_belt"] = _booleans(scored["is_belt"])
    return pd.DataFrame(columns, columns=OUTPUT_COLUMNS)


def _booleans(texts: pd.Series) -> pd.arrays.BooleanArray:
    """``is_belt`` back from its string form; anything else is an error, never a silent NA."""
    unknown = sorted(set(texts) - BOOLEANS.keys())
    if unknown:
        raise ScoreError(f"is_belt from spark_udf must be one of {sorted(BOOLEANS)}; got {unknown}")
    return pd.array([BOOLEANS[text] for text in texts], dtype="boolean")


@contextmanager
def _worker_python(master: str) -> Iterator[None]:
    """A local master's Python workers run this interpreter (PySpark reads ``PYSPARK_PYTHON``, default
    ``python3`` from ``PATH``, once, when the session starts); a cluster's come from its own config."""
    if not master.startswith("local") or PYSPARK_PYTHON in os.environ:
        yield
        return
    os.environ[PYSPARK_PYTHON] = sys.executable
    try:
        yield
    finally:
        os.environ.pop(PYSPARK_PYTHON, None)


def _pyspark_session_class() -> type[SparkSession]:
    try:
        from pyspark.sql import SparkSession
    except ImportError as err:
        raise ScoreError("engine 'spark' needs pyspark, which is not installed; pip install beltcast[spark]") from err
    return SparkSession
