"""Synthetic logic fixtures for the models (seeded; not real data)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


@pytest.fixture
def synthetic_transitions() -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """A synthetic panel of 3 origin years x 600 counties in 6 provinces with a learnable signal."""
    rng = np.random.default_rng(7)
    n, years = 600, [2014, 2015, 2016]
    frames, ys = [], []
    for year in years:
        belts = rng.poisson(1.0, n).astype(float)
        distance = np.log(rng.uniform(5, 800, n))
        X = pd.DataFrame(
            {
                "belts_within_100km_share": belts / 80,
                "dist_nearest_belt_km_rel": distance - np.median(distance),
                "manufacturing_share": rng.uniform(0, 0.5, n),
                "viirs_mean": np.where(rng.random(n) < 0.1, np.nan, rng.lognormal(0, 1, n)),
            }
        )
        logit = -4 + 0.8 * belts + 5 * X["manufacturing_share"]
        ys.append((rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int))
        frames.append(X.assign(as_of=year, province=np.repeat([f"p{i}" for i in range(6)], n // 6)))
    panel = pd.concat(frames, ignore_index=True)
    y = np.concatenate(ys)
    return (
        panel.drop(columns=["as_of", "province"]),
        y,
        panel["as_of"].to_numpy(),
        panel["province"].to_numpy(),
    )
