"""Training sets cut from the panel (SYNTHETIC panel rows, logic only)."""

from __future__ import annotations

import pandas as pd

from models.datasets import mode_rows


def _panel() -> pd.DataFrame:
    """Two periods of four counties; a platform's categories give every county a mode, belt or not."""
    return pd.DataFrame(
        {
            "county_code": ["110001", "110002", "110003", "110004"] * 2,
            "as_of": [8100] * 4 + [8101] * 4,
            "province_code": ["11", "11", "12", "12"] * 2,
            "is_belt": [True, False, None, True, True, True, False, False],
            "mode": ["local_specialty", "national_brand", "cultural_heritage", None] * 2,
            "emerged": [None] * 8,
            "feature_a": range(8),
        }
    )


def test_the_mode_model_learns_from_belts_only():
    rows = mode_rows(_panel(), None)  # the newest period with a belt of known mode: 8101

    assert rows.y.tolist() == ["local_specialty", "national_brand"]
    assert rows.X["feature_a"].tolist() == [4.0, 5.0]
    assert rows.groups.tolist() == ["11", "11"]


def test_a_given_period_keeps_its_belts_of_known_mode():
    rows = mode_rows(_panel(), 8100)

    assert rows.y.tolist() == ["local_specialty"]  # 110002 is no belt, 110003 unknown, 110004 no mode
