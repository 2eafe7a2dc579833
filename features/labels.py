"""Belt labels: an "at least K of these N conditions" rule over county metrics, and the
emergence target at a horizon.

A condition whose metric is unknown for a county-period (missing, or not yet computable, such as
year-on-year growth without four prior quarters) counts as **not met**. A period is labelled only
when at least one of the rule's metrics is observed in it; no label is invented for a period
without data.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from features.errors import BeltcastError

OPERATORS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


class LabelError(BeltcastError, ValueError):
    """A belt rule or the table it is applied to is invalid."""


@dataclass(frozen=True)
class Condition:
    """One condition of a belt rule, e.g. ``taobao_villages >= 1``."""

    metric: str
    op: str
    threshold: float

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise LabelError(
                f"condition op must be one of {sorted(OPERATORS)}; got {self.op!r} (metric {self.metric!r})"
            )

    def met(self, values: pd.Series) -> pd.Series:
        """True where met; False where not met or unknown."""
        return OPERATORS[self.op](values, self.threshold).fillna(False).astype(bool)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"


@dataclass(frozen=True)
class BeltRule:
    """A county is a belt in a period when at least ``min_met`` of ``conditions`` hold.

    Parameters
    ----------
    conditions : sequence of Condition
    min_met : int
        K in "at least K of N"; 1 <= K <= N.
    """

    conditions: tuple[Condition, ...]
    min_met: int

    def __post_init__(self) -> None:
        if not self.conditions:
            raise LabelError("belt rule needs at least one condition; got none")
        if not 1 <= self.min_met <= len(self.conditions):
            raise LabelError(
                f"min_met must be between 1 and the number of conditions ({len(self.conditions)}); got {self.min_met}"
            )

    @property
    def metrics(self) -> list[str]:
        return list(dict.fromkeys(condition.metric for condition in self.conditions))

    def require_metrics(self, available: Sequence[str], source: str) -> None:
        """Raise :class:`LabelError` unless every metric of the rule is one of ``available``.

        Parameters
        ----------
        available : sequence of str
            The metrics ``source`` provides.
        source : str
            What provides them, as the message names it (e.g. ``"the label source 'taobao'"``).
        """
        missing = [metric for metric in self.metrics if metric not in available]
        if missing:
            raise LabelError(
                f"belt rule metric must be one of the metrics of {source} {sorted(available)}; "
                f"got {missing[0]!r} (rule: {self.describe()})"
            )

    def describe(self) -> str:
        conditions = "; ".join(str(c) for c in self.conditions)
        return f"at least {self.min_met} of {len(self.conditions)}: {conditions}"

    def apply(self, metrics: pd.DataFrame, period: str = "year") -> pd.DataFrame:
        """Belt status per ``county_code`` and period.

        Parameters
        ----------
        metrics : DataFrame
            Wide: ``county_code``, ``period`` and one column per metric of the rule.
        period : str
            Name of the period column.

        Returns
        -------
        DataFrame
            ``county_code``, ``period``, ``n_met``, ``is_belt`` for every labelled period: those
            in which at least one rule metric is observed for some county.
        """
        _require(metrics, ["county_code", period, *self.metrics])
        observed = metrics[self.metrics].notna().any(axis=1)
        labelled_periods = set(metrics.loc[observed, period])
        frame = metrics[metrics[period].isin(labelled_periods)]
        n_met = sum(condition.met(frame[condition.metric]).astype(int) for condition in self.conditions)
        status = frame[["county_code", period]].assign(n_met=n_met, is_belt=n_met >= self.min_met)
        return status.reset_index(drop=True)


def emergence_target(status: pd.DataFrame, horizon: int = 1, period: str = "year") -> pd.DataFrame:
    """Among counties that are not belts at ``t``, whether each is a belt at ``t + horizon``.

    Parameters
    ----------
    status : DataFrame
        ``county_code``, ``period``, ``is_belt`` (from :meth:`BeltRule.apply`); periods are
        integers (years, or quarter indices).
    horizon : int
        Periods ahead, >= 1.

    Returns
    -------
    DataFrame
        ``county_code``, ``period`` (t), ``target_period`` (t + horizon), ``emerged`` (int 0/1):
        only for t where both t and t + horizon are labelled and the county is not a belt at t.
    """
    if horizon < 1:
        raise LabelError(f"horizon must be >= 1; got {horizon}")
    _require(status, ["county_code", period, "is_belt"])
    now = status[~status["is_belt"].astype(bool)][["county_code", period]]
    later = status[["county_code", period, "is_belt"]].rename(columns={period: "target_period"})
    now = now.assign(target_period=now[period] + horizon)
    target = now.merge(later, on=["county_code", "target_period"], how="inner")
    target["emerged"] = target.pop("is_belt").astype(int)
    return target.reset_index(drop=True)


def _require(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise LabelError(f"belt labels need column(s) {missing}; found {list(frame.columns)}")
