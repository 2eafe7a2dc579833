"""The MLflow pyfunc model: a thin wrapper around :class:`~models.bundle.ForecastBundle`.

Bad input raises ``MlflowException(INVALID_PARAMETER_VALUE)``, which the MLflow scoring server
answers with HTTP 400 and the message (naming the row and the field).
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types.schema import AnyType, ColSpec, Schema

from features.periods import label_of
from features.taxonomy import MODES
from models.bundle import ForecastBundle
from models.estimators import ModelInputError

BUNDLE_ARTIFACT = "bundle"


class CountyBeltModel(mlflow.pyfunc.PythonModel):
    """Forecast counties by code: ``p_belt``, ``is_belt``, ``mode``, mode probabilities,
    ``top_drivers``; indicator columns in the request make it a what-if forecast."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.bundle = ForecastBundle.load(Path(context.artifacts[BUNDLE_ARTIFACT]))

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext,
        model_input: pd.DataFrame,
        params: dict | None = None,
    ) -> pd.DataFrame:
        try:
            return self.bundle.forecast(model_input)
        except ModelInputError as err:
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from err


def signature(features: list[str], quarterly: bool = False) -> ModelSignature:
    """Input: ``county_code``, ``as_of`` and every feature; output: the forecast columns.
    ``as_of`` is a year (long), or for a quarterly model a quarter's label (string, ``"2025Q3"``).

    The input schema is looser than the model, on purpose, so that MLflow's scoring server lets
    two bad requests through to :meth:`ForecastBundle.forecast`, whose 400 names the row and the
    field: ``county_code`` is marked optional (the model refuses a request without it; MLflow's
    own message would list the whole schema), and an annual model's ``as_of`` is of any type (the
    model refuses 2020.7 and "2014x"; as a long, MLflow would turn 2020.7 into 2020 without a
    word, and as a double it would refuse the int64 years of a pandas frame).
    """
    period = "string" if quarterly else "long"
    inputs = [
        ColSpec("string", "county_code", required=False),
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
    ]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def input_example(bundle: ForecastBundle) -> pd.DataFrame:
    """One county of the bundle's newest period (曹县 when the snapshot has it)."""
    newest = bundle.snapshot.loc[bundle.snapshot["as_of"] == bundle.default_as_of, "county_code"]
    code = "371721" if (newest == "371721").any() else str(newest.min())
    as_of = label_of(bundle.default_as_of) if bundle.quarterly else bundle.default_as_of
    return pd.DataFrame({"county_code": [code], "as_of": [as_of]})
