"""The models every backtest compares, by name (the names of the backtest JSON contract)."""

from __future__ import annotations

from sklearn.base import BaseEstimator

from models.estimators import (
    LGBMEmergence,
    LGBMMode,
    LogisticBaseline,
    MajorityMode,
    PriorBaseline,
    SpatialNeighborsBaseline,
)


def emergence_models(params: dict | None = None, seed: int = 0) -> dict[str, BaseEstimator]:
    """``lightgbm`` (calibrated, with ``params``), its uncalibrated twin, and the baselines."""
    params = dict(params or {})
    params.pop("calibration", None)
    return {
        "lightgbm": LGBMEmergence(**params, random_state=seed),
        "lightgbm_uncalibrated": LGBMEmergence(**params, calibration=None, random_state=seed),
        "logistic": LogisticBaseline(),
        "spatial_neighbors": SpatialNeighborsBaseline(),
        "prior": PriorBaseline(),
    }


def mode_models(seed: int = 0) -> dict[str, BaseEstimator]:
    """``lightgbm`` (multiclass) and the ``majority`` baseline."""
    return {"lightgbm": LGBMMode(random_state=seed), "majority": MajorityMode()}
