"""The MLflow pyfunc model: a thin wrapper around :class:`~models.bundle.ForecastBundle`.

Bad input raises ``MlflowException(INVALID_PARAMETER_VALUE)``, which the MLflow scoring server
answers with HTTP 400 and the message (naming the row and the field).
"""

from __future__ import annotations

import re
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types.schema import AnyType, ColSpec, ParamSchema, ParamSpec, Schema

from features.periods import label_of
from features.taxonomy import MODES
from models.bundle import OUTPUT_COLUMNS, ForecastBundle
from models.compiled import default_cache_dir
from models.estimators import ModelInputError

BUNDLE_ARTIFACT = "bundle"
VERSION_KEY = "model_version"
COMPILED_KEY = "compiled"  # model_config: false predicts large batches with LightGBM, not compiled code
COMPILED_CACHE_KEY = "compiled_cache_dir"  # model_config: the folder of compiled boosters ("~" expanded)
MODEL_CONFIG = {COMPILED_KEY: True, COMPILED_CACHE_KEY: ""}  # logged with the model: the keys a load may set
SERVED_COLUMNS = [*OUTPUT_COLUMNS, VERSION_KEY]


def compiled_cache(config: dict) -> Path | None:
    """The folder of compiled boosters that ``config`` (a model_config) asks for, ``None`` for
    none (``compiled`` false); a :class:`ModelInputError` naming the key for a value of another type."""
    compiled = config.get(COMPILED_KEY, True)
    if not isinstance(compiled, bool):
        raise ModelInputError(f"model_config {COMPILED_KEY} must be true or false; got {compiled!r}")
    folder = config.get(COMPILED_CACHE_KEY)
    folder = "" if folder is None else folder
    if not isinstance(folder, str):
        raise ModelInputError(f"model_config {COMPILED_CACHE_KEY} must be a folder path (a string); got {folder!r}")
    if not compiled:
        return None
    return Path(folder).expanduser() if folder else default_cache_dir()


class CountyBeltModel(mlflow.pyfunc.PythonModel):
    """Forecast counties by code: ``p_belt``, ``is_belt``, ``mode``, mode probabilities,
    ``top_drivers``; indicator columns in the request make it a what-if forecast. The parameter
    ``drivers`` (default true) set to false leaves ``top_drivers`` empty, for batches that do not
    need them (the drivers take most of a large batch's time).

    Every row also says ``model_version``: the registered version the model is served as
    (:meth:`served_as`, which ``beltcast serve`` calls with the version it loaded), or ``""``
    when no one said (the model does not know under which version it was registered).

    Its ``model_config`` (``mlflow.pyfunc.load_model(uri, model_config={...})``, MLflow's
    ``MLFLOW_PYFUNC_INFERENCE_CONFIG`` or, served, ``SERVING_MODEL_CONFIG``) says how large
    batches are predicted: ``compiled`` (default true) and ``compiled_cache_dir`` (default ``""``,
    ``~/.cache/beltcast/compiled``), :attr:`ForecastBundle.compiled_cache`."""

    version = ""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.bundle = ForecastBundle.load(Path(context.artifacts[BUNDLE_ARTIFACT]))
        self.bundle.compiled_cache = compiled_cache(context.model_config or {})

    def served_as(self, version: str | int) -> None:
        """Say ``version`` (a registered version number) in every row's ``model_version`` from now on."""
        if isinstance(version, bool) or re.fullmatch(r"[0-9]+", str(version)) is None:
            raise ValueError(f"{VERSION_KEY} must be a registered version number such as '7'; got {version!r}")
        self.version = str(version)

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext,
        model_input: pd.DataFrame,
        params: dict | None = None,
    ) -> pd.DataFrame:
        drivers = True if params is None else params.get("drivers", True)
        try:
            if not isinstance(drivers, (bool, np.bool_)):
                raise ModelInputError(f"the parameter drivers must be true or false; got {drivers!r}")
            forecast = self.bundle.forecast(columnar(model_input), drivers=bool(drivers))
        except ModelInputError as err:
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from err
        forecast[VERSION_KEY] = pd.array(np.full(len(forecast), self.version, dtype=object), dtype="str")
        return forecast


def columnar(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with columns of values, as its sender meant it: MLflow reads a dict of lists whose
    columns are all of any type (``{"county_code": ["371721", "330503"]}``, in Python or as the
    ``inputs`` of a REST request) as one row holding the lists; that row becomes one row per value."""
    if len(frame) != 1 or not len(frame.columns):
        return frame
    cells = frame.iloc[0]
    if not all(isinstance(cell, (list, tuple, np.ndarray)) for cell in cells):
        return frame
    lengths = {column: len(cell) for column, cell in cells.items()}
    if len(set(lengths.values())) > 1:
        raise ModelInputError(f"the request's columns must be of one length; got lengths {lengths}")
    return pd.DataFrame({column: list(cell) for column, cell in cells.items()})


def signature(features: list[str], quarterly: bool = False) -> ModelSignature:
    """Input: ``county_code``, ``as_of`` and every feature; output: the forecast columns;
    parameter: ``drivers`` (boolean, default true). ``as_of`` is a year (long), or for a quarterly
    model a quarter's label (string, ``"2025Q3"``).

    The input schema is looser than the model, on purpose, so that the model's own checks name the
    row and the field: ``county_code`` is required but of any type (the model reads a code sent as
    a number, as ``pd.read_csv`` gives it, and refuses a code that is not 6 digits), and an annual
    model's ``as_of`` is of any type (the model refuses 2020.7 and "2014x"; as a long, MLflow
    would turn 2020.7 into 2020 without a word, and as a double it would refuse the int64 years of
    a pandas frame). ``county_code`` is required so that a frame whose columns are all misnamed is
    refused by MLflow ("Model is missing inputs ['county_code']"): MLflow drops the columns outside
    the signature before the model sees the frame, and a frame of no column would be a request of
    no rows.
    """
    period = "string" if quarterly else "long"
    inputs = [
        ColSpec(AnyType(), "county_code", required=True),
        ColSpec("string" if quarterly else AnyType(), "as_of", required=False),
    ]
    inputs += [ColSpec("double", name, required=False) for name in features]
    outputs = [
        ColSpec("string", "county_code"),
        ColSpec("string", "county_name"),
        ColSpec("string", "province"),
        ColSpec("string", "prefecture"),
        ColSpec(period, "as_of"),
        ColSpec("double", "p_belt"),
        ColSpec("boolean", "is_belt"),
        ColSpec("string", "mode"),
        *(ColSpec("double", f"p_{mode}") for mode in MODES),
        ColSpec("string", "top_drivers"),
        ColSpec("string", "what_if"),
        ColSpec("boolean", "in_sample"),
        ColSpec("string", "last_belt"),
        ColSpec("string", VERSION_KEY),
    ]
    params = ParamSchema([ParamSpec("drivers", "boolean", True)])
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs), params=params)


def input_example(bundle: ForecastBundle) -> pd.DataFrame:
    """One county of the bundle's newest period (曹县 when the snapshot has it)."""
    newest = bundle.snapshot.loc[bundle.snapshot["as_of"] == bundle.default_as_of, "county_code"]
    code = "371721" if (newest == "371721").any() else str(newest.min())
    as_of = label_of(bundle.default_as_of) if bundle.quarterly else bundle.default_as_of
    return pd.DataFrame({"county_code": [code], "as_of": [as_of]})
