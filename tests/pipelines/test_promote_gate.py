"""The gate's rule on two versions backtested on the same panel and folds (their stored tags)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest

from pipelines.backtest import fold_spec
from pipelines.config import Settings
from pipelines.promote import TAGS, decide

PANEL = "a" * 64


def _version(number: str, ap: float, brier: float, settings: Settings) -> SimpleNamespace:
    """A registered version as the gate reads it: backtested on ``PANEL`` with the current folds."""
    folds = json.dumps(fold_spec(settings).to_dict(), sort_keys=True)
    tags = {"average_precision": str(ap), "brier": str(brier), "panel_sha256": PANEL, "fold_spec": folds}
    return SimpleNamespace(version=number, tags=tags)


def _decide(settings: Settings, challenger: tuple[float, float], champion: tuple[float, float]):
    return decide(
        settings,
        _version("2", *challenger, settings),
        _version("1", *champion, settings),
        False,
        None,
        pd.DataFrame(),
        PANEL,
    )


@pytest.mark.parametrize(
    ("challenger", "promoted", "named"),
    [
        ((0.190, 0.01680), True, None),  # Brier 0.6 % higher: seed noise, within 2 %
        ((0.190, 0.01700), True, None),  # 1.8 % higher
        ((0.190, 0.01710), False, "Brier 0.01710 > 0.01703 (champion 0.01670 + 2%)"),  # 2.4 % higher
        ((0.175, 0.01600), False, "AP 0.1750 < 0.1800 (champion 0.1900 - 0.01)"),
    ],
)
def test_the_gate_leaves_room_for_the_seed_in_brier_as_in_ap(challenger, promoted, named):
    settings = Settings.model_validate({})
    decision = _decide(settings, challenger, (0.190, 0.01670))
    assert decision.promoted is promoted
    assert decision.figures["source"] == TAGS
    assert (decision.figures["ap_tolerance"], decision.figures["brier_tolerance"]) == (0.01, 0.02)
    if named:
        assert named in decision.reason
    else:
        assert decision.reason == "AP and Brier within tolerance of the champion's"


def test_a_gate_without_room_rejects_any_higher_brier():
    strict = Settings.model_validate({"promote": {"brier_tolerance": 0}})
    decision = _decide(strict, (0.200, 0.01680), (0.190, 0.01670))
    assert not decision.promoted
    assert decision.reason == "Brier 0.01680 > 0.01670 (champion 0.01670 + 0%)"
    assert _decide(strict, (0.200, 0.01670), (0.190, 0.01670)).promoted


@pytest.mark.parametrize(
    ("value", "expected"),
    [(-0.01, "greater than or equal to 0"), (1.5, "less than or equal to 1"), ("0.02", "must be a number")],
)
def test_a_brier_tolerance_out_of_range_or_not_a_number_is_refused_naming_the_key(value, expected):
    assert Settings.model_validate({"promote": {"brier_tolerance": 0.05}}).promote.brier_tolerance == 0.05
    with pytest.raises(ValueError, match=rf"promote\.brier_tolerance\n.*{expected}"):
        Settings.model_validate({"promote": {"brier_tolerance": value}})
