"""Training sets cut from the county panel: emergence transitions and belts with a known mode."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.panel import feature_columns, mode_feature_columns


@dataclass(frozen=True)
class Transitions:
    """Rows of counties that are not belts at ``as_of``, with whether they became one."""

    X: pd.DataFrame
    y: np.ndarray
    periods: np.ndarray
    groups: np.ndarray
    ids: pd.DataFrame


def emergence_transitions(panel: pd.DataFrame, group_column: str = "province_code") -> Transitions:
    """Rows with a defined emergence target (not a belt at ``t``, labelled at ``t + h``)."""
    rows = panel[panel["emerged"].notna()].reset_index(drop=True)
    return Transitions(
        X=rows[feature_columns(panel)].astype(float),
        y=rows["emerged"].astype(int).to_numpy(),
        periods=rows["as_of"].astype(int).to_numpy(),
        groups=rows[group_column].astype(str).to_numpy(),
        ids=rows[["county_code", "county_name", "province", "as_of"]],
    )


@dataclass(frozen=True)
class ModeRows:
    """Belts with a known mode, their features as of the mode's year, and their province."""

    X: pd.DataFrame
    y: np.ndarray
    groups: np.ndarray


def mode_rows(panel: pd.DataFrame, as_of: int | None, group_column: str = "province_code") -> ModeRows:
    """Belts at ``as_of`` whose mode is known, with the features of that period (``None``: the
    newest period with known modes)."""
    known = panel[panel["mode"].notna() & panel["is_belt"].fillna(False).astype(bool)]
    if as_of is None:
        as_of = int(known["as_of"].max()) if len(known) else int(panel["as_of"].max())
    rows = known[known["as_of"] == as_of].reset_index(drop=True)  # belts only: a platform gives every county a mode
    return ModeRows(
        X=rows[mode_feature_columns(panel)].astype(float),
        y=rows["mode"].astype(str).to_numpy(dtype=object),
        groups=rows[group_column].astype(str).to_numpy(),
    )
