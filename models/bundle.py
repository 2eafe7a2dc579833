"""The one inference object that is saved, logged and served: feature lookup in a snapshot of the
county panel, the calibrated emergence model (booster and linear margin), the mode booster and the
drivers.

It is stored without pickles: boosters in LightGBM's text format, the sigmoid calibration as two
numbers in JSON, the emergence model's linear margin (if any) as its coefficients in JSON, the
panel snapshot as Parquet, everything else as JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import NamedTuple

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy.special import expit

from features.errors import shown
from features.panel import feature_sources, staleness_columns
from features.periods import QUARTERLY, PeriodError, frequency_of, label_of, parse_period
from features.taxonomy import MODES
from models.compiled import COMPILE_ROWS, CompiledForest, compile_or_none, default_cache_dir
from models.drivers import top_drivers
from models.estimators import LGBMEmergence, LGBMMode, ModelInputError
from models.margin import LinearMargin

FORMAT = 3  # bundle.json's layout: 2 adds the linear margin, 3 the mode model's own features; a newer
# format is refused, not misread (a bundle without mode features of its own is written as 2)
SMALL_REQUEST = 2000  # rows; below this LightGBM predicts on one thread (thread start-up dominates)
# and codes are checked row by row (cheaper than pandas' vectorised string methods for a few rows)
SNAPSHOT_IDS = ["county_code", "county_name", "province", "prefecture", "as_of"]
SNAPSHOT_STATUS = ["is_belt_known", "last_label_period"]
LABELLED_MODE = "mode"  # a belt's mode from its villages' products, where the panel has one
REQUEST_KEYS = ("county_code", "as_of")
PERIOD_LIMIT = 10**9  # an as_of beyond it is no period (and would wrap around as int64)
NAMED_ROWS = 20  # the bad rows of a request an error names; it counts the others
OUTPUT_COLUMNS = [
    "county_code", "county_name", "province", "prefecture", "as_of", "p_belt", "is_belt",
    "mode", *(f"p_{m}" for m in MODES), "top_drivers", "what_if", "in_sample", "last_belt",
]  # fmt: skip
MODE_NAMES = pd.array(list(MODES), dtype="str")
LOG_RATIO_LIMIT = 50.0  # a log ratio beyond this is a factor of e^50 (5e21) from the median county
# The values a what-if may give a feature, by the panel's naming conventions (features/panel.py,
# features/spatial.py, pipelines/build.py's platform_ features): (pattern matching the whole name,
# low, high, what the value is). The first match decides; a name none matches takes any finite number.
FEATURE_DOMAINS = (
    (r".+_share(_age_.+)?_rel", -1.0, 1.0, "a share minus the median county's"),
    (r".+_education_years_rel", -25.0, 25.0, "years of schooling minus the median county's"),
    (r".+_rel", -LOG_RATIO_LIMIT, LOG_RATIO_LIMIT, "a log ratio or a difference to the median county"),
    (r".+_share", 0.0, 1.0, "a share of a total"),
    (r"taobao_villages|taobao_towns", 0.0, np.inf, "a count", True),
    (r"platform_active_merchants", 0.0, np.inf, "a count, divided among a split county's successors"),
    (r"platform_gmv_annual_cny", 0.0, np.inf, "an amount in yuan"),
    (r"platform_gmv_growth_yoy", -1.0, np.inf, "a growth rate; -1 is all GMV lost"),
    (r"poverty_county", 0.0, 1.0, "the poverty-county flag", True),
    (r"centroid_lat", 3.0, 54.0, "degrees north, in China"),
    (r"centroid_lon", 73.0, 136.0, "degrees east, in China"),
    (r"dist_.+_km", 0.0, 20_040.0, "km along the Earth's surface, at most half its circumference"),
    (r"area_km2", 0.0, 9.6e6, "km², at most China's area"),
    (r"terrain_relief", 0.0, np.inf, "a relief index"),
)


class Domain(NamedTuple):
    """The values a what-if may give a feature: finite numbers from ``low`` to ``high``, whole
    numbers only when ``integral`` (counts, a 0/1 flag)."""

    low: float
    high: float
    what: str = ""
    integral: bool = False

    @property
    def expected(self) -> str:
        """The domain in words, for an error message."""
        if self.low == -np.inf and self.high == np.inf:
            return "a finite number"
        if self.integral and (self.low, self.high) == (0.0, 1.0):
            return f"0 or 1 ({self.what})"
        if self.high == np.inf:
            return f"a {'whole' if self.integral else 'finite'} number >= {self.low:g} ({self.what})"
        return f"a number from {self.low:g} to {self.high:g} ({self.what})"

    def holds(self, numbers: np.ndarray) -> np.ndarray:
        """Which of ``numbers`` lie in the domain."""
        inside = np.isfinite(numbers) & (numbers >= self.low) & (numbers <= self.high)
        return inside & (numbers == np.floor(numbers)) if self.integral else inside


class RowProblem(NamedTuple):
    """The rows of a request that one check found bad, and what is wrong with a row (the message
    after ``row N: ``, made only for the rows an error names)."""

    rows: np.ndarray
    describe: Callable[[int], str]


_NO_PROBLEM = RowProblem(np.zeros(0, dtype=np.int64), str)


def last_belts(snapshot: pd.DataFrame) -> np.ndarray:
    """For every snapshot row whose county is a candidate then (no belt, or of unknown status), the
    label of the newest labelled period before the row's in which the county was a belt (``"2015"``);
    ``""`` for the other rows. A county that left the rosters is ranked again as a candidate, but it
    would be a belt again, not a new one (on the public data, 12 belts of 2015 are in no roster of
    2016, 南浔区 among them).

    Parameters
    ----------
    snapshot : DataFrame
        ``county_code``, ``as_of``, ``is_belt_known`` and ``last_label_period`` per county and period.

    Returns
    -------
    ndarray of str
        One label per row of ``snapshot``, in its order.
    """
    order = np.lexsort((snapshot["as_of"].to_numpy(), snapshot["county_code"].to_numpy()))
    rows = snapshot.iloc[order]
    belt = rows["is_belt_known"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    county = rows["county_code"].to_numpy()
    period = rows["last_label_period"].where(belt).reset_index(drop=True)
    before = period.groupby(county).ffill().groupby(county).shift(1).to_numpy()  # rows before only
    found = ~belt & ~pd.isna(before)
    labels = np.full(len(rows), "", dtype=object)
    labels[found] = [label_of(int(p)) for p in before[found]]
    result = np.empty(len(rows), dtype=object)
    result[order] = labels
    return result


def bad_rows_message(problems: Sequence[RowProblem], limit: int = NAMED_ROWS) -> str | None:
    """One message naming the bad rows of a request, or None when no row is bad: a line
    ``row N: <what is wrong>`` per problem of the first ``limit`` bad rows, in row order (a row's
    problems in the order of ``problems``), then ``and K more bad rows`` when there are more."""
    found = [problem for problem in problems if len(problem.rows)]
    if not found:
        return None
    bad = np.unique(np.concatenate([problem.rows for problem in found]))
    named = bad[:limit]
    lines = sorted(
        (row, order, f"row {row}: {problem.describe(row)}")
        for order, problem in enumerate(found)
        for row in named[np.isin(named, problem.rows)].tolist()
    )
    more = len(bad) - len(named)
    ending = [f"and {more} more bad row{'s' if more > 1 else ''}"] if more else []
    return "\n".join([line for _, _, line in lines] + ending)


def _raise_bad_rows(problems: Sequence[RowProblem]) -> None:
    message = bad_rows_message(problems)
    if message is not None:
        raise ModelInputError(message)


@cache
def feature_domain(column: str) -> Domain:
    """The domain of feature ``column``, from :data:`FEATURE_DOMAINS` (any finite number when no
    pattern names it)."""
    for pattern, low, high, what, *integral in FEATURE_DOMAINS:
        if re.fullmatch(pattern, column):
            return Domain(low, high, what, *integral)
    return Domain(-np.inf, np.inf)


@dataclass
class ForecastBundle:
    """Everything needed to forecast a county from its code (and optional what-if values).

    Attributes
    ----------
    emergence : lgb.Booster
        The emergence booster (its raw score, plus the margin's, is the log-odds before calibration).
    calibration : tuple of float or None
        Sigmoid ``(a, b)``: ``p = 1 / (1 + exp(a * f + b))`` of the model's log-odds ``f`` (the
        booster's raw score, plus the margin's; what scikit-learn's calibration reads).
    mode : lgb.Booster
        The mode booster.
    mode_classes : list of str
        The modes the mode booster knows, in its output order.
    mode_weight : float
        The booster's weight in the mode probabilities, against ``mode_frequencies``
        (:class:`~models.estimators.LGBMMode`).
    mode_frequencies : list of float
        The modes' training frequencies, in :data:`MODES` order.
    features : list of str
        Feature columns, in the boosters' order.
    snapshot : DataFrame
        The panel's ids, status and features for every county and as-of year.
    meta : dict
        Default as-of year, horizon, target vintage, and anything for lineage.
    margin : LinearMargin or None
        The linear margin the emergence booster starts from (:mod:`models.margin`), or ``None``.
    mode_extra : list of str
        The mode booster's features after ``features``, its own (the platform's GMV shares by
        mode, :data:`features.panel.MODE_ONLY_FEATURES`), read from the snapshot: no what-if.
    compiled_cache : Path or None
        Where a batch of at least :data:`~models.compiled.COMPILE_ROWS` rows finds its boosters
        compiled to machine code (:mod:`models.compiled`), compiling them there the first time;
        ``None`` predicts every batch with LightGBM. Not saved with the bundle: a setting of the
        machine that loads it (the served model's ``model_config``).
    """

    emergence: lgb.Booster
    calibration: tuple[float, float] | None
    mode: lgb.Booster
    mode_classes: list[str]
    mode_weight: float
    mode_frequencies: list[float]
    features: list[str]
    snapshot: pd.DataFrame
    meta: dict
    margin: LinearMargin | None = None
    mode_extra: list[str] = field(default_factory=list)
    compiled_cache: Path | None = field(default_factory=default_cache_dir)

    @classmethod
    def from_models(cls, emergence: LGBMEmergence, mode: LGBMMode, panel: pd.DataFrame, meta: dict) -> ForecastBundle:
        """Take the fitted boosters and calibration out of the estimators."""
        features = list(emergence.feature_names_in_)
        mode_features = list(mode.feature_names_in_)
        if mode_features[: len(features)] != features:
            raise ModelInputError("the mode model's feature columns must start with the emergence model's")
        extra = mode_features[len(features) :]
        labelled = [LABELLED_MODE] if LABELLED_MODE in panel.columns else []
        ages = sorted(set(feature_sources(features, staleness_columns(panel)).values()))  # the drivers date stale data
        snapshot = panel[SNAPSHOT_IDS + SNAPSHOT_STATUS + labelled + features + extra + ages].reset_index(drop=True)
        return cls(
            emergence=emergence.booster_.booster_,
            calibration=_sigmoid_of(emergence),
            mode=mode.model_.booster_,
            mode_classes=[str(c) for c in mode.model_.classes_],
            mode_weight=float(mode.model_weight_),
            mode_frequencies=[float(f) for f in mode.frequencies_],
            features=features,
            snapshot=snapshot,
            meta=dict(meta),
            margin=emergence.margin_,
            mode_extra=extra,
        )

    def save(self, folder: Path) -> Path:
        """Write the bundle's files into ``folder`` (created)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.emergence.save_model(str(folder / "emergence.txt"))
        self.mode.save_model(str(folder / "mode.txt"))
        self.snapshot.to_parquet(folder / "panel_snapshot.parquet", index=False)
        spec = {
            "format": FORMAT if self.mode_extra else 2,  # readable by a beltcast of format 2 where it can be
            "calibration": self.calibration,
            "mode_classes": self.mode_classes,
            "mode_weight": self.mode_weight,
            "mode_frequencies": self.mode_frequencies,
            "features": self.features,
            **({"mode_extra": self.mode_extra} if self.mode_extra else {}),
            "linear_margin": self.margin.to_dict() if self.margin is not None else None,
            "meta": self.meta,
        }
        (folder / "bundle.json").write_text(json.dumps(spec, ensure_ascii=False, indent=2), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: Path) -> ForecastBundle:
        """Read a bundle written by :meth:`save`."""
        folder = Path(folder)
        spec = json.loads((folder / "bundle.json").read_text(encoding="utf-8"))
        version = spec.get("format", 1)  # bundles written before the format number: 1
        if type(version) is not int or not 1 <= version <= FORMAT:
            newer = type(version) is int and version > FORMAT
            raise ModelInputError(
                f"bundle.json format must be an integer from 1 to {FORMAT} (what this beltcast reads);"
                f" got {version!r}" + (": the model was saved by a newer beltcast" if newer else "")
            )
        calibration = tuple(spec["calibration"]) if spec["calibration"] else None
        return cls(
            emergence=lgb.Booster(model_file=str(folder / "emergence.txt")),
            calibration=calibration,
            mode=lgb.Booster(model_file=str(folder / "mode.txt")),
            mode_classes=spec["mode_classes"],
            # bundles written before the mode blend: the booster alone
            mode_weight=spec.get("mode_weight", 1.0),
            mode_frequencies=spec.get("mode_frequencies", [0.0] * len(MODES)),
            features=spec["features"],
            snapshot=pd.read_parquet(folder / "panel_snapshot.parquet"),
            meta=spec["meta"],
            # bundles written before the linear margin: the booster alone
            margin=LinearMargin.from_dict(spec["linear_margin"]) if spec.get("linear_margin") else None,
            mode_extra=spec.get("mode_extra", []),
        )

    @cached_property
    def default_as_of(self) -> int:
        return int(self.snapshot["as_of"].max())

    @cached_property
    def frequency(self) -> str:
        """``"annual"`` or ``"quarterly"``: the periods of the snapshot."""
        return frequency_of(self.default_as_of)

    @property
    def quarterly(self) -> bool:
        return self.frequency == QUARTERLY

    def forecast(self, request: pd.DataFrame, drivers: bool = True) -> pd.DataFrame:
        """Forecast every row of ``request``.

        Parameters
        ----------
        request : DataFrame
            ``county_code`` (6 digits), optional ``as_of`` (a period of the snapshot: a year
            such as 2020, or for a quarterly snapshot a quarter such as ``"2025Q3"``; default the
            newest), and optional feature columns whose non-missing values replace the panel's
            (a what-if forecast); each must lie in the feature's domain (:func:`feature_domain`;
            a further platform metric's by its kind).
        drivers : bool
            Compute ``top_drivers`` (the slower part).

        Returns
        -------
        DataFrame with :data:`OUTPUT_COLUMNS`, one row per request row, in order; ``as_of`` is the
        year, or for a quarterly snapshot the quarter's label (``"2025Q3"``); ``in_sample`` is
        true where the model was trained on what happened after ``as_of`` (:meth:`trained_on`). A request of no rows
        gives no rows, with the same columns and dtypes.
        """
        positions, values, what_if = self._checked(request)
        if not len(values):  # LightGBM cannot predict no rows; a batch of none is not an error
            return self._no_forecast(positions)
        modes = self.mode_proba(values, positions)
        columns = {name: array.take(positions) for name, array in self._id_arrays.items()}
        columns["p_belt"] = self._finite(self.p_belt(values), what_if)
        columns["is_belt"] = self._is_belt.take(positions)
        columns["mode"] = self._mode(positions, modes)
        columns.update({f"p_{mode}": modes[:, i] for i, mode in enumerate(MODES)})
        columns["top_drivers"] = self.drivers(values, positions) if drivers else np.full(len(values), "", dtype=object)
        columns["what_if"] = what_if
        columns["in_sample"] = self._in_sample.take(positions)
        columns["last_belt"] = self._last_belt.take(positions)
        # built in OUTPUT_COLUMNS order from arrays made for this call: no copy, no reordering (a
        # third of a single-county forecast's frame time); the snapshot's arrays were taken, not shared
        return pd.DataFrame(columns, copy=False)

    def _no_forecast(self, positions: np.ndarray) -> pd.DataFrame:
        """The forecast of no rows: :data:`OUTPUT_COLUMNS` with a forecast's dtypes, no booster run."""
        columns = {name: array.take(positions) for name, array in self._id_arrays.items()}
        columns.update(p_belt=np.zeros(0), is_belt=self._is_belt.take(positions), mode=MODE_NAMES.take(positions))
        columns.update({f"p_{mode}": np.zeros(0) for mode in MODES})
        columns.update(top_drivers=pd.array([], dtype="str"), what_if=pd.array([], dtype="str"))
        columns["in_sample"] = self._in_sample.take(positions)
        columns["last_belt"] = self._last_belt.take(positions)
        return pd.DataFrame(columns, columns=OUTPUT_COLUMNS)

    def request_problems(self, request: pd.DataFrame) -> list[RowProblem]:
        """The bad rows of ``request`` that :meth:`forecast` would name before it forecasts (all but
        values so large that no finite probability comes out), found without forecasting, for a
        caller that merges them with its own (:func:`bad_rows_message`). A problem of the whole
        request (an unknown column, no ``county_code``) raises :class:`ModelInputError`."""
        return self._inspected(request)[3]

    def _checked(self, request: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The snapshot row, feature values and what-if names (:meth:`_apply_overrides`) of every
        request row; one error names every bad row (:func:`bad_rows_message`)."""
        positions, values, what_if, problems = self._inspected(request)
        _raise_bad_rows(problems)
        return positions, values, what_if

    def _inspected(self, request: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[RowProblem]]:
        codes, years, problems = self._request_keys(request)
        named = np.concatenate([np.zeros(0, dtype=np.int64), *(problem.rows for problem in problems)])
        positions, missing = self._lookup(codes, years, named)
        values, what_if, outside = self._apply_overrides(positions, request)
        return positions, values, what_if, [*problems, missing, *outside]

    @staticmethod
    def _finite(p_belt: np.ndarray, what_if: np.ndarray) -> np.ndarray:
        """``p_belt``, or an error naming the rows whose what-if values leave no finite
        probability (values so large that the margin's terms overflow; the panel's never do)."""

        def describe(row: int) -> str:
            return (
                f"the what-if value(s) of {what_if[row] or 'no indicator'} are too large to forecast;"
                " expected values of the panel's order"
            )

        _raise_bad_rows([RowProblem(np.flatnonzero(np.isnan(p_belt)), describe)])
        return p_belt

    def _matrix(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Feature values as a float matrix in the boosters' column order."""
        return X if isinstance(X, np.ndarray) else X[self.features].to_numpy(dtype=float)

    @cached_property
    def _feature_matrix(self) -> np.ndarray:
        return self.snapshot[self.features].to_numpy(dtype=float)

    @cached_property
    def _mode_extra_matrix(self) -> np.ndarray:
        return self.snapshot[self.mode_extra].to_numpy(dtype=float)

    @cached_property
    def _id_arrays(self) -> dict:
        arrays = {name: self.snapshot[name].array for name in SNAPSHOT_IDS}
        if self.quarterly:
            labels = self.snapshot["as_of"].map(label_of)
            arrays["as_of"] = labels.astype(self.snapshot["county_code"].dtype).array
        return arrays

    def _mode(self, positions: np.ndarray, modes: np.ndarray) -> pd.arrays.StringArray:
        """The most likely mode, except for a belt whose mode is labelled (its villages' main
        products): that label. The ``p_*`` columns stay the model's."""
        predicted = MODE_NAMES.take(modes.argmax(axis=1))
        labelled = self._labelled_mode.take(positions)
        known = self._is_belt.take(positions).to_numpy(dtype=bool, na_value=False) & (labelled != "")
        return pd.array(np.where(known, labelled, predicted), dtype="str") if known.any() else predicted

    @cached_property
    def _labelled_mode(self) -> np.ndarray:
        """Each snapshot row's labelled mode, ``""`` where none (or a bundle written before the
        labels were kept)."""
        if LABELLED_MODE not in self.snapshot.columns:
            return np.full(len(self.snapshot), "", dtype=object)
        label = self.snapshot[LABELLED_MODE]
        return label.where(label.isin(MODES), "").to_numpy(dtype=object)

    def trained_on(self, as_of: int) -> int | None:
        """The newest labelled period of the snapshot when ``as_of`` (a period index) was a
        training transition, labelled itself and its outcome ``horizon`` periods later labelled
        too: a forecast as of it is an in-sample check, not a forecast. Else None."""
        labels = self.snapshot["last_label_period"]
        newest = labels.max()
        labelled = (labels[self.snapshot["as_of"] == as_of] == as_of).any()
        horizon = int(self.meta.get("horizon", 1))
        return int(newest) if labelled and pd.notna(newest) and as_of + horizon <= int(newest) else None

    @cached_property
    def _in_sample(self) -> np.ndarray:
        """Whether each snapshot row's period is one the model was trained on the outcome of."""
        periods = self.snapshot["as_of"]
        seen = [period for period in periods.unique() if self.trained_on(int(period)) is not None]
        return periods.isin(seen).to_numpy(dtype=bool)

    @cached_property
    def _last_belt(self) -> pd.api.extensions.ExtensionArray:
        return pd.array(last_belts(self.snapshot), dtype="str")

    @cached_property
    def _is_belt(self) -> pd.arrays.BooleanArray:
        return self.snapshot["is_belt_known"].astype("boolean").array

    def p_belt(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Calibrated probability of becoming a belt within the horizon."""
        values = self._matrix(X)
        raw = self.calibration is not None or self.margin is not None
        scores = self._predict(self.emergence, values, raw_score=raw)
        if not raw:
            return scores
        if self.margin is not None:
            scores = scores + self.margin.logit(values)
        if self.calibration is None:
            return expit(scores)
        a, b = self.calibration
        return expit(-(a * scores + b))

    def mode_proba(self, X: pd.DataFrame | np.ndarray, positions: np.ndarray | None = None) -> np.ndarray:
        """Probabilities of the four modes, in :data:`MODES` order: the booster's, weighted by
        ``mode_weight`` against the training frequencies (the booster is not run at weight 0).
        ``X`` holds :attr:`features`; the mode model's own (:attr:`mode_extra`) come from the
        snapshot's rows ``positions``, or from ``X`` when it is a frame that has them."""
        values = self._matrix(X)
        if self.mode_extra:
            if positions is not None:
                extra = self._mode_extra_matrix[positions]
            elif isinstance(X, pd.DataFrame) and set(self.mode_extra) <= set(X.columns):
                extra = X[self.mode_extra].to_numpy(dtype=float)
            else:
                raise ModelInputError(f"the mode model also needs {self.mode_extra}: give the snapshot's positions")
            values = np.hstack([values, extra])
        frequencies = np.asarray(self.mode_frequencies, dtype=float)
        if self.mode_weight == 0.0:
            return np.tile(frequencies, (len(values), 1))
        raw = self._predict(self.mode, values, raw_score=False)
        if raw.ndim == 1:
            raw = np.column_stack([1 - raw, raw])
        proba = np.zeros((len(raw), len(MODES)))
        for i, mode in enumerate(self.mode_classes):
            proba[:, MODES.index(mode)] = raw[:, i]
        return self.mode_weight * proba + (1.0 - self.mode_weight) * frequencies

    def _predict(self, booster: lgb.Booster, values: np.ndarray, raw_score: bool) -> np.ndarray:
        """LightGBM's prediction; for a large batch, the same prediction by the compiled booster."""
        if len(values) >= COMPILE_ROWS:
            compiled = self._compiled(booster, raw_score)
            if compiled is not None:
                return compiled.predict(values)
        return booster.predict(values, raw_score=raw_score, num_threads=_threads(len(values)))

    @cached_property
    def _compiled_forests(self) -> dict[tuple[int, bool, Path | None], CompiledForest | None]:
        return {}

    def _compiled(self, booster: lgb.Booster, raw_score: bool) -> CompiledForest | None:
        key = (id(booster), raw_score, self.compiled_cache)
        if key not in self._compiled_forests:
            self._compiled_forests[key] = compile_or_none(booster, raw_score, self.compiled_cache)
        return self._compiled_forests[key]

    def drivers(self, X: pd.DataFrame | np.ndarray, positions: np.ndarray | None = None) -> list[str]:
        """The three indicators that push each row's ``p_belt`` up most, in words.

        With ``positions`` (the snapshot rows of ``X``), a value older than its row's period is
        dated: ``"CO2 emissions +10 % against the median county in 1 year (2017 data)"``.
        """
        values = self._matrix(X)
        contrib = self.emergence.predict(values, pred_contrib=True, num_threads=_threads(len(values)))[:, :-1]
        if self.margin is not None:
            contrib = contrib + self.margin.terms(values)
        dated = None if positions is None else self._dated(positions, values)
        return top_drivers(contrib, values, self.features, dated=dated)

    @cached_property
    def _ages(self) -> np.ndarray | None:
        """Per snapshot row and feature, how old the feature's source data is (NaN for a feature of
        no dated source); ``None`` for bundles written before the snapshot kept staleness."""
        sources = feature_sources(self.features, staleness_columns(self.snapshot))
        if not sources:
            return None
        ages = np.full((len(self.snapshot), len(self.features)), np.nan)
        for j, feature in enumerate(self.features):
            if feature in sources:
                ages[:, j] = self.snapshot[sources[feature]].to_numpy(dtype=float)
        return ages

    def _dated(self, positions: np.ndarray, values: np.ndarray) -> np.ndarray | None:
        """Per cell, the period of a value older than its row's period (``None`` where current,
        where the request replaced the value, or where the bundle has no staleness)."""
        if self._ages is None:
            return None
        age = self._ages[positions]
        with np.errstate(invalid="ignore"):
            stale = (age > 0) & (values == self._feature_matrix[positions])  # a what-if value is the requester's
        rows, columns = np.nonzero(stale)
        periods = (self.snapshot["as_of"].to_numpy()[positions][rows] - age[rows, columns]).astype(int)
        labels = {period: label_of(int(period)) for period in np.unique(periods)}
        dated = np.full(values.shape, None, dtype=object)
        dated[rows, columns] = [labels[period] for period in periods]
        return dated

    def _request_keys(self, request: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[RowProblem]]:
        """County codes (as integers, -1 where bad) and as-of periods (the newest where bad) of the
        request rows, and the rows whose code or period is bad."""
        if not isinstance(request, pd.DataFrame):
            raise ModelInputError(f"request must be a DataFrame; got {type(request).__name__}")
        unknown = [c for c in request.columns if c not in REQUEST_KEYS and c not in self.features]
        if unknown:
            raise ModelInputError(f"request has unknown column(s) {unknown}; expected county_code, as_of or features")
        if not len(request):  # no rows: no column is needed (``{"dataframe_records": []}`` has none)
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), []
        if "county_code" not in request.columns:
            raise ModelInputError(f"request must have a county_code column; got columns {list(request.columns)}")
        codes, bad_codes = _codes(request["county_code"])
        years, bad_years = self._years(request)
        return codes, years, [bad_codes, bad_years]

    def _years(self, request: pd.DataFrame) -> tuple[np.ndarray, RowProblem]:
        if "as_of" not in request.columns:
            return np.full(len(request), self.default_as_of, dtype=np.int64), _NO_PROBLEM
        column = request["as_of"]
        if pd.api.types.is_signed_integer_dtype(column.dtype) and not column.hasnans:
            return column.to_numpy(dtype=np.int64), _NO_PROBLEM
        if pd.api.types.is_float_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
            return self._float_years(column.to_numpy(dtype=float, na_value=np.nan))
        years, problems = np.full(len(column), self.default_as_of, dtype=np.int64), {}
        for row, value in enumerate(column):
            try:
                years[row] = self._year(value)
            except ModelInputError as err:
                problems[row] = str(err)
        return years, RowProblem(np.array(list(problems), dtype=np.int64), problems.__getitem__)

    def _float_years(self, values: np.ndarray) -> tuple[np.ndarray, RowProblem]:
        values = np.where(np.isnan(values), self.default_as_of, values)
        fractional = values != np.floor(values)
        beyond = ~fractional & (np.abs(values) > PERIOD_LIMIT)  # would wrap around as int64

        def describe(row: int) -> str:
            if fractional[row]:
                return f"as_of must be {self._period_hint}; got {float(values[row])!r}"
            return self._period_message(repr(float(values[row])))

        bad = fractional | beyond
        years = np.where(bad, self.default_as_of, values).astype(np.int64)
        return years, RowProblem(np.flatnonzero(bad), describe)

    def _year(self, value: object) -> int:
        if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
            return self.default_as_of
        if isinstance(value, str):
            try:
                frequency, index = parse_period(value.strip().upper())
            except PeriodError:
                frequency, index = None, None
            if frequency != self.frequency:
                raise ModelInputError(f"as_of must be {self._period_hint}; got {shown(value)}")
            return index
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):  # of any size: no float()
            if abs(int(value)) > PERIOD_LIMIT:
                raise ModelInputError(self._period_message(repr(int(value))))
            return int(value)
        number = isinstance(value, (float, np.floating))
        if not number or not np.isfinite(value) or value != np.floor(value):
            raise ModelInputError(f"as_of must be {self._period_hint}; got {shown(value)}")
        if abs(value) > PERIOD_LIMIT:
            raise ModelInputError(self._period_message(repr(float(value))))
        return int(value)

    @property
    def _period_hint(self) -> str:
        return f"a quarter such as {label_of(self.default_as_of)!r}" if self.quarterly else "an integer year"

    @cached_property
    def _keys(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted (county_code, as_of) keys of the snapshot and the snapshot row of each."""
        keys = _key(self.snapshot["county_code"].astype(np.int64).to_numpy(), self.snapshot["as_of"].to_numpy())
        order = np.argsort(keys, kind="stable")
        return keys[order], order

    def _lookup(self, codes: np.ndarray, years: np.ndarray, named: np.ndarray) -> tuple[np.ndarray, RowProblem]:
        """Snapshot row of every request row (any row where there is none) and the rows of no
        county and period of the snapshot, but for the rows ``named`` bad already."""
        sorted_keys, order = self._keys
        first, last = self._period_range
        inside = (years >= first) & (years <= last)  # the keys hold a period only within 0..99999
        wanted = _key(codes, np.where(inside, years, last))
        found = np.searchsorted(sorted_keys, wanted).clip(max=len(sorted_keys) - 1)
        missing = ~inside | (sorted_keys[found] != wanted)
        missing[named] = False
        return order[found], RowProblem(np.flatnonzero(missing), lambda row: self._missing(codes, years, row))

    @cached_property
    def _period_range(self) -> tuple[int, int]:
        return int(self.snapshot["as_of"].min()), self.default_as_of

    def _missing(self, codes: np.ndarray, years: np.ndarray, row: int) -> str:
        """What is wrong with a request row of no county and period of the snapshot."""
        code, year = f"{codes[row]:06d}", int(years[row])
        if year not in self.snapshot["as_of"].to_numpy():
            given = label_of(year) if self.quarterly else str(year)  # a quarter's index only came from a label
            return self._period_message(given)
        return f"county_code {code!r} {self._not_a_county(code)}"

    def _not_a_county(self, code: str) -> str:
        vintage = self.meta.get("target_vintage")
        if vintage is None:
            return "is not a county of the panel"
        successors = self.meta.get("successors", {}).get(code)
        if successors:
            where = self._successors(successors, vintage)
            return f"is a code of another year, not of the panel's code list ({vintage}): {where}"
        return (
            f"is not a county of the panel, whose codes are those of {vintage}: check the code; a code of"
            f" another year (renamed, merged or split since) must be given as its {vintage} code"
        )

    def _successors(self, codes: list[str], vintage: int) -> str:
        newest = self.snapshot.loc[self.snapshot["as_of"] == self.default_as_of]
        names = dict(zip(newest["county_code"], newest["county_name"], strict=True))
        named = [f"{c} ({names[c]})" if c in names else c for c in codes]
        if len(named) == 1:
            return f"its area is {named[0]} in {vintage}; give that code"
        return f"its area is split among {', '.join(named)} in {vintage}; give those codes"

    def _period_message(self, given: str) -> str:
        first, last = self._period_range
        return f"as_of must be one of {label_of(first)}..{label_of(last)}; got {given}"

    def _domain(self, column: str) -> Domain:
        """The domain of a feature: a further platform metric's by its kind (``meta["further_metrics"]``:
        a count is a number >= 0, a rate any finite number), any other by :func:`feature_domain`."""
        kind = self.meta.get("further_metrics", {}).get(column)
        if kind == "count":
            return Domain(0.0, np.inf, "a count of the platform's, divided among a split county's successors")
        if kind == "rate":
            return Domain(-np.inf, np.inf)
        return feature_domain(column)

    def _apply_overrides(
        self, positions: np.ndarray, request: pd.DataFrame
    ) -> tuple[np.ndarray, np.ndarray, list[RowProblem]]:
        """The snapshot's feature values, with the request's non-missing indicator values in place,
        per row the names of the indicators replaced (``""`` when none), and per indicator the rows
        whose value is not a number of the feature's domain (:meth:`_domain`)."""
        X = self._feature_matrix[positions]  # fancy indexing copies: the snapshot is never changed
        applied = np.full(len(X), "", dtype=object)
        problems = []
        for column in (c for c in request.columns if c in self.features):
            given = request[column].reset_index(drop=True)
            try:
                values = pd.to_numeric(given, errors="coerce")
            except OverflowError:  # an integer beyond float64 in an object column
                values = pd.Series([_as_float(v) for v in given], dtype=float)
            numbers = values.to_numpy(dtype=float, na_value=np.nan)
            domain = self._domain(column)
            with np.errstate(invalid="ignore"):
                inside = domain.holds(numbers)
            bad = given.notna().to_numpy() & ~inside  # given, but no number of the domain
            problems.append(RowProblem(np.flatnonzero(bad), _outside(column, domain, given)))
            present = ~np.isnan(numbers)
            X[present, self.features.index(column)] = numbers[present]
            separator = np.where(applied[present] == "", "", ", ").astype(object)
            applied[present] = applied[present] + separator + column
        return X, applied, problems


def _outside(column: str, domain: Domain, given: pd.Series) -> Callable[[int], str]:
    """What is wrong with a row whose ``given`` value of ``column`` is outside its ``domain``."""

    def describe(row: int) -> str:
        return f"{column} must be {domain.expected}; got {shown(given.iloc[row])}"

    return describe


def _as_float(value: object) -> float:
    """``value`` as a float: ``inf`` beyond float64's range, NaN when it is not a number."""
    try:
        return float(value)
    except OverflowError:
        return float("inf")
    except (TypeError, ValueError):
        return float("nan")


def _threads(rows: int) -> int:
    """One thread for small requests, LightGBM's default (0: all cores) for batches."""
    return 1 if rows < SMALL_REQUEST else 0


def _codes(column: pd.Series) -> tuple[np.ndarray, RowProblem]:
    """Six-digit county codes as integers (-1 where bad) and the rows whose code is bad."""
    large = len(column) >= SMALL_REQUEST
    if large and pd.api.types.is_integer_dtype(column.dtype) and not column.hasnans:
        values = column.to_numpy(dtype=np.int64)
        values = np.where((values < 100000) | (values > 999999), -1, values)
    elif large and pd.api.types.is_string_dtype(column.dtype) and not isinstance(column.dtype, np.dtypes.ObjectDType):
        values = _text_codes(column.str.strip())
    else:
        values = np.array([_code(value) for value in column], dtype=np.int64)
    return values, RowProblem(np.flatnonzero(values < 0), lambda row: _bad_code(column.iloc[row]))


def _text_codes(text: pd.Series) -> np.ndarray:
    """Codes of a column of text as integers, -1 where a text is not 6 digits."""
    ok = text.str.fullmatch(r"[0-9]{6}").fillna(False).to_numpy(dtype=bool)
    if ok.all():
        return pc.cast(pa.array(text.array), pa.int64()).to_numpy()
    values = np.full(len(text), -1, dtype=np.int64)
    values[ok] = pc.cast(pa.array(text[ok].array), pa.int64()).to_numpy()
    return values


def _code(value: object) -> int:
    """``value`` as a county code's integer, -1 when it is none."""
    if isinstance(value, (list, tuple, np.ndarray, pd.Series)):  # a cell holding several codes
        return -1
    text = str(value).strip()
    if isinstance(value, float) and value.is_integer():
        text = str(int(value))
    return int(text) if len(text) == 6 and text.isascii() and text.isdigit() else -1


def _bad_code(value: object) -> str:
    if isinstance(value, (list, tuple, np.ndarray, pd.Series)):
        return (
            f"county_code must be one 6-digit code per row; got {type(value).__name__} of {len(value)} values"
            " (send a DataFrame, one row per county)"
        )
    given = "a missing value" if value is None or value is pd.NA or value != value else shown(value)
    return f"county_code must be 6 digits; got {given}"


def _key(codes: np.ndarray, periods: np.ndarray) -> np.ndarray:
    """One integer per (county code, period): periods are years or year*4+quarter, < 100000."""
    return np.asarray(codes, dtype=np.int64) * 100_000 + np.asarray(periods, dtype=np.int64)


def _sigmoid_of(model: LGBMEmergence) -> tuple[float, float] | None:
    if model.calibrated_ is None:
        return None
    calibrator = model.calibrated_.calibrated_classifiers_[0].calibrators[0]
    return float(calibrator.a_), float(calibrator.b_)
