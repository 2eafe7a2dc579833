"""``beltcast score --engine spark``: the registered pyfunc scored through ``mlflow.pyfunc.spark_udf``.

The model runs inside Spark's Python workers (``env_manager="local"``: the workers use this
interpreter's packages; the model's own code travels in its ``code/`` folder). The result is the
DataFrame the pandas engine returns: the columns of the model's output signature (those of
:data:`models.served.SERVED_COLUMNS` for a model of this code) in order, pandas' string dtype,
int64, float64 and a nullable boolean ``is_belt``, one row per request row, in request order.

Spark runs locally (``local[2]``) unless ``BELTCAST_SPARK_MASTER`` names another master, e.g.
``spark://host:7077`` (its workers then need this project's environment installed).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models import get_model_info
from mlflow.types import DataType, Schema

from features import PYSPARK_PANDAS_3_WARNING
from features.errors import cause_of
from pipelines.score import ScoreError
from pipelines.tracking import first_line

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

MASTER_VARIABLE = "BELTCAST_SPARK_MASTER"
LOCAL_MASTER = "local[2]"
PYSPARK_PYTHON = "PYSPARK_PYTHON"
ROW = "__beltcast_row__"
FORECAST = "__beltcast_forecast__"
# rows per Spark task: each task's Python worker imports MLflow and loads the model (seconds), while
# the forecast itself takes about a second per 3,000 counties, so a whole panel year is one task
ROWS_PER_TASK = 100_000
# numpy's str() of a nullable boolean: spark_udf casts a boolean field with numpy, which cannot hold
# a missing is_belt (every county before the first label year), so booleans travel as these strings
BOOLEANS = {"True": True, "False": False, "<NA>": pd.NA}
SESSION_CONFIG = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "1g",
    "spark.sql.shuffle.partitions": "2",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.log.level": "ERROR",
    # the workers warn too, before they import beltcast (whose import silences it in the driver)
    "spark.executorEnv.PYTHONWARNINGS": f"ignore:{PYSPARK_PANDAS_3_WARNING}:FutureWarning",
}
# a local driver JVM lives for one short job: C1-only JIT and the serial collector halve its start-up
LOCAL_DRIVER_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def spark_master(master: str | None = None) -> str:
    """``master`` if given, else ``BELTCAST_SPARK_MASTER``, else ``local[2]``."""
    return master or os.environ.get(MASTER_VARIABLE) or LOCAL_MASTER


@contextmanager
def spark_session(master: str | None = None) -> Iterator[SparkSession]:
    """A quiet Spark session (no UI, 2 shuffle partitions, 1 GB driver), stopped on exit (a session
    already running in this process is the one ``getOrCreate`` returns, and is stopped too).

    Parameters
    ----------
    master : str, optional
        Spark master URL; default :func:`spark_master` (``BELTCAST_SPARK_MASTER`` or ``local[2]``).
    """
    SparkSession = _pyspark_session_class()
    master = spark_master(master)
    builder = SparkSession.builder.master(master).appName("beltcast-score")
    for key, value in session_config(master).items():
        builder = builder.config(key, value)
    with _worker_python(master):
        spark = builder.getOrCreate()
    try:
        yield spark
    finally:
        spark.stop()


def session_config(master: str) -> dict[str, str]:
    """:data:`SESSION_CONFIG`, plus quick-start JVM options for a local master (a cluster's driver
    keeps its own)."""
    if not master.startswith("local"):
        return dict(SESSION_CONFIG)
    return {**SESSION_CONFIG, "spark.driver.extraJavaOptions": LOCAL_DRIVER_JAVA_OPTIONS}


def predict_with_spark(model_uri: str, request: pd.DataFrame, model_config: dict | None = None) -> pd.DataFrame:
    """Forecast every row of ``request`` with the model at ``model_uri`` through ``spark_udf``.

    Parameters
    ----------
    model_uri : str
        A pyfunc model URI, e.g. ``models:/county-belt/1``.
    request : DataFrame
        ``county_code``, optional ``as_of`` and optional indicator columns, as for the pandas
        engine's ``model.predict``.
    model_config : dict, optional
        The model's ``model_config`` in the workers (``[scoring]``'s
        :meth:`~pipelines.config.ScoringSettings.as_model_config`).

    Returns
    -------
    DataFrame with the columns of the model's output signature, one row per request row, in order,
    with the pandas engine's dtypes.

    Raises
    ------
    ScoreError
        pyspark is not installed, the model has no output signature, or Spark fails (no Java, a
        master that cannot be reached, a failed job).
    KeyboardInterrupt
        Ctrl+C or SIGTERM (:class:`~features.errors.Terminated`) while Spark scores, as it came,
        not the error Spark's clean-up raised after it.
    """
    outputs = output_schema(model_uri)
    try:
        with spark_session() as spark:
            predict = mlflow.pyfunc.spark_udf(
                spark,
                model_uri,
                result_type=result_type(outputs),
                env_manager="local",
                model_config=model_config or None,
            )
            scored = _score(spark, predict, request)
    except Exception as err:
        if not _from_spark(err):
            raise
        stopped = interruption_behind(err)
        if stopped is not None:  # Ctrl+C or SIGTERM, to which Spark's clean-up answered with its own error
            raise stopped from None
        refused = model_refusal(err)
        if refused is not None:
            raise ScoreError(
                f"the model refused the request in a Spark worker: {refused} (a row number counts within the"
                " worker's batch of rows; the model's message names the code or the value)"
            ) from err
        raise ScoreError(
            f"the spark engine failed on master {spark_master()!r} ({type(err).__name__}: {first_line(err)});"
            f" expected Java 17 (JAVA_HOME or java on the PATH) and a reachable master ({MASTER_VARIABLE});"
            " --engine pandas scores without Spark"
        ) from err
    return _as_pandas_forecast(scored, outputs)


def interruption_behind(err: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl+C or SIGTERM (:class:`~features.errors.Terminated`) that ``err`` was raised while
    handling, if any: interrupted while it waits for a Spark job, pyspark asks the JVM for the
    job's result as it cleans up, and the JVM's error (a broken pipe) replaces the interruption."""
    return cause_of(err, KeyboardInterrupt)


def model_refusal(err: BaseException) -> str | None:
    """The model's own message when ``err`` is a Python worker's failure on a request the model
    refused (MLflow's ``MlflowException`` in the worker's traceback, which Spark wraps in a
    ``PythonException`` that names only the worker); None for any other failure."""
    found = None
    for line in str(err).splitlines():
        _, marker, message = line.partition("MlflowException: ")
        if marker and message.strip():
            found = message.strip()
    return found


def _from_spark(err: BaseException) -> bool:
    """Whether ``err`` is Spark's (pyspark's, or the JVM's through py4j)."""
    return any(kind.__module__.split(".")[0] in ("pyspark", "py4j") for kind in type(err).__mro__)


def output_schema(model_uri: str) -> Schema:
    """The output columns and types of the model's logged signature."""
    signature = get_model_info(model_uri).signature
    if signature is None or signature.outputs is None:
        raise ScoreError(f"the spark engine needs a model with an output signature; {model_uri} has none")
    return signature.outputs


def result_type(outputs: Schema) -> str:
    """The UDF's struct as Spark DDL (``county_code string, as_of long, ...``); booleans as strings."""
    return ", ".join(f"{column.name} {_spark_type(column.type)}" for column in outputs.inputs)


def _score(spark: SparkSession, predict, request: pd.DataFrame) -> pd.DataFrame:
    """Run the UDF over the request; the rows come back sorted by their request position."""
    from pyspark.sql import functions as F

    frame = spark.createDataFrame(request.assign(**{ROW: np.arange(len(request))}))
    frame = frame.coalesce(max(1, math.ceil(len(request) / ROWS_PER_TASK)))
    inputs = F.struct(*(F.col(f"`{name}`") for name in request.columns))
    scored = frame.select(ROW, predict(inputs).alias(FORECAST)).select(ROW, f"{FORECAST}.*")
    return scored.toPandas().sort_values(ROW).reset_index(drop=True)


def _as_pandas_forecast(scored: pd.DataFrame, outputs: Schema) -> pd.DataFrame:
    """The columns as the pandas engine builds them: strings from object arrays (pandas' string
    dtype), int64, float64, and booleans as a nullable boolean."""
    columns = {column.name: _values(scored[column.name], column.type) for column in outputs.inputs}
    return pd.DataFrame(columns, columns=outputs.input_names())


def _spark_type(kind: DataType) -> str:
    return "string" if kind == DataType.boolean else kind.name


def _values(values: pd.Series, kind: DataType) -> np.ndarray | pd.api.extensions.ExtensionArray:
    if kind == DataType.boolean:
        return _booleans(values)
    return values.to_numpy(dtype=object if kind == DataType.string else kind.to_numpy())


def _booleans(texts: pd.Series) -> pd.api.extensions.ExtensionArray:
    """A boolean column back from its string form; anything else is an error, never a silent NA."""
    unknown = sorted(set(texts) - BOOLEANS.keys())
    if unknown:
        raise ScoreError(f"{texts.name} from spark_udf must be one of {sorted(BOOLEANS)}; got {unknown}")
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
        raise ScoreError(
            "engine 'spark' needs pyspark, which is not installed; pip install -e '.[spark]' in the checkout"
        ) from err
    return SparkSession
