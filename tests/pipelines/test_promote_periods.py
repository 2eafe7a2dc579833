"""The gate never serves a model that reaches less far than the champion (logic only, no store)."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from features.periods import parse_period
from pipelines.promote import PromotionError, not_behind


def _panel(*labels: str) -> pd.DataFrame:
    return pd.DataFrame({"as_of": [parse_period(label)[1] for label in labels]})


def _champion(last: str | None) -> SimpleNamespace:
    return SimpleNamespace(version="4", tags={} if last is None else {"panel_last_period": last})


def test_a_panel_ending_before_the_champion_is_refused():
    with pytest.raises(
        PromotionError, match=r"the panel ends at 2025Q3, before the champion's newest period 2025Q4 \(version 4\)"
    ):
        not_behind(_champion("2025Q4"), _panel("2025Q2", "2025Q3"))


@pytest.mark.parametrize(
    ("last", "panel"),
    [
        ("2025Q4", ("2025Q3", "2025Q4")),  # the same period: a re-run
        ("2025Q3", ("2025Q3", "2025Q4")),  # a newer panel: the next quarter
        (None, ("2025Q2",)),  # a champion registered before versions recorded their period
        ("2020", ("2025Q1",)),  # the public annual model, then platform quarters
        ("2025Q4", ("2014", "2020")),  # and back: another frequency is no older panel
    ],
)
def test_a_panel_reaching_the_champion_s_period_passes(last, panel):
    not_behind(_champion(last), _panel(*panel))


def test_no_champion_passes():
    not_behind(None, _panel("2014"))
