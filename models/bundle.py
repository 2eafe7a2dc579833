"""The one inference object that is saved, logged and served: feature lookup in a snapshot of the
county panel, the calibrated emergence booster, the mode booster and the drivers.

It is stored without pickles: boosters in LightGBM's text format, the sigmoid calibration as two
numbers in JSON, the panel snapshot as Parquet, everything else as JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit

from features.taxonomy import MODES
from models.drivers import top_drivers
from models.estimators import LGBMEmergence, LGBMMode, ModelInputError

SMALL_REQUEST = 2000  # rows; below this LightGBM predicts on one thread (thread start-up dominates)
SNAPSHOT_IDS = ["county_code", "county_name", "province", "prefecture", "as_of"]
SNAPSHOT_STATUS = ["is_belt_known", "last_label_period"]
REQUEST_KEYS = ("county_code", "as_of")
OUTPUT_COLUMNS = [
    "county_code", "county_name", "province", "prefecture", "as_of", "p_belt", "is_belt",
    "mode", *(f"p_{m}" for m in MODES), "top_drivers", "what_if",
]  # fmt: skip


@dataclass
class ForecastBundle:
    """Everything needed to forecast a county from its code (and optional what-if values).

    Attributes
    ----------
    emergence : lgb.Booster
        The emergence booster (its raw probability before calibration).
    calibration : tuple of float or None
        Sigmoid ``(a, b)``: ``p = 1 / (1 + exp(a * f + b))`` of the booster's raw score ``f``
        (its log-odds, which is what scikit-learn's calibration reads from LightGBM).
    mode : lgb.Booster
        The mode booster.
    mode_classes : list of str
        The modes the mode booster knows, in its output order.
    features : list of str
        Feature columns, in the boosters' order.
    snapshot : DataFrame
        The panel's ids, status and features for every county and as-of year.
    meta : dict
        Default as-of year, horizon, target vintage, and anything for lineage.
    """

    emergence: lgb.Booster
    calibration: tuple[float, float] | None
    mode: lgb.Booster
    mode_classes: list[str]
    features: list[str]
    snapshot: pd.DataFrame
    meta: dict

    @classmethod
    def from_models(cls, emergence: LGBMEmergence, mode: LGBMMode, panel: pd.DataFrame, meta: dict) -> ForecastBundle:
        """Take the fitted boosters and calibration out of the estimators."""
        features = list(emergence.feature_names_in_)
        if list(mode.feature_names_in_) != features:
            raise ModelInputError("the emergence and mode models must share their feature columns")
        snapshot = panel[SNAPSHOT_IDS + SNAPSHOT_STATUS + features].reset_index(drop=True)
        return cls(
            emergence=emergence.booster_.booster_,
            calibration=_sigmoid_of(emergence),
            mode=mode.model_.booster_,
            mode_classes=[str(c) for c in mode.model_.classes_],
            features=features,
            snapshot=snapshot,
            meta=dict(meta),
        )

    def save(self, folder: Path) -> Path:
        """Write the bundle's files into ``folder`` (created)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.emergence.save_model(str(folder / "emergence.txt"))
        self.mode.save_model(str(folder / "mode.txt"))
        self.snapshot.to_parquet(folder / "panel_snapshot.parquet", index=False)
        spec = {
            "calibration": self.calibration,
            "mode_classes": self.mode_classes,
            "features": self.features,
            "meta": self.meta,
        }
        (folder / "bundle.json").write_text(json.dumps(spec, ensure_ascii=False, indent=2), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: Path) -> ForecastBundle:
        """Read a bundle written by :meth:`save`."""
        folder = Path(folder)
        spec = json.loads((folder / "bundle.json").read_text(encoding="utf-8"))
        calibration = tuple(spec["calibration"]) if spec["calibration"] else None
        return cls(
            emergence=lgb.Booster(model_file=str(folder / "emergence.txt")),
            calibration=calibration,
            mode=lgb.Booster(model_file=str(folder / "mode.txt")),
            mode_classes=spec["mode_classes"],
            features=spec["features"],
            snapshot=pd.read_parquet(folder / "panel_snapshot.parquet"),
            meta=spec["meta"],
        )

    @property
    def default_as_of(self) -> int:
        return int(self.snapshot["as_of"].max())

    def forecast(self, request: pd.DataFrame, drivers: bool = True) -> pd.DataFrame:
        """Forecast every row of ``request``.

        Parameters
        ----------
        request : DataFrame
            ``county_code`` (6 digits), optional ``as_of`` (a year of the snapshot; default the
            newest), and optional feature columns whose non-missing values replace the panel's
            (a what-if forecast).
        drivers : bool
            Compute ``top_drivers`` (the slower part).

        Returns
        -------
        DataFrame with :data:`OUTPUT_COLUMNS`, one row per request row, in order.
        """
        positions = self._lookup(self._request_keys(request))
        values, what_if = self._apply_overrides(positions, request)
        modes = self.mode_proba(values)
        ids = self.snapshot.iloc[positions]
        columns = {name: ids[name].to_numpy() for name in SNAPSHOT_IDS}
        columns["p_belt"] = self.p_belt(values)
        columns["is_belt"] = ids["is_belt_known"].astype("boolean").array
        columns["mode"] = np.asarray(MODES, dtype=object)[modes.argmax(axis=1)]
        columns.update({f"p_{mode}": modes[:, i] for i, mode in enumerate(MODES)})
        columns["top_drivers"] = self.drivers(values) if drivers else [""] * len(values)
        columns["what_if"] = what_if
        return pd.DataFrame(columns, columns=OUTPUT_COLUMNS)

    def _matrix(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Feature values as a float matrix in the boosters' column order."""
        return X if isinstance(X, np.ndarray) else X[self.features].to_numpy(dtype=float)

    @cached_property
    def _feature_matrix(self) -> np.ndarray:
        return self.snapshot[self.features].to_numpy(dtype=float)

    def p_belt(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Calibrated probability of becoming a belt within the horizon."""
        values = self._matrix(X)
        threads = _threads(len(values))
        if self.calibration is None:
            return self.emergence.predict(values, num_threads=threads)
        a, b = self.calibration
        return expit(-(a * self.emergence.predict(values, raw_score=True, num_threads=threads) + b))

    def mode_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Probabilities of the four modes, in :data:`MODES` order."""
        raw = self.mode.predict(self._matrix(X), num_threads=_threads(len(X)))
        if raw.ndim == 1:
            raw = np.column_stack([1 - raw, raw])
        proba = np.zeros((len(raw), len(MODES)))
        for i, mode in enumerate(self.mode_classes):
            proba[:, MODES.index(mode)] = raw[:, i]
        return proba

    def drivers(self, X: pd.DataFrame | np.ndarray) -> list[str]:
        """The three indicators that push each row's ``p_belt`` up most, in words."""
        values = self._matrix(X)
        contrib = self.emergence.predict(values, pred_contrib=True, num_threads=_threads(len(values)))
        return top_drivers(contrib[:, :-1], values, self.features)

    def _request_keys(self, request: pd.DataFrame) -> pd.DataFrame:
        if not isinstance(request, pd.DataFrame):
            raise ModelInputError(f"request must be a DataFrame; got {type(request).__name__}")
        if "county_code" not in request.columns:
            raise ModelInputError(f"request must have a county_code column; got columns {list(request.columns)}")
        unknown = [c for c in request.columns if c not in REQUEST_KEYS and c not in self.features]
        if unknown:
            raise ModelInputError(f"request has unknown column(s) {unknown}; expected county_code, as_of or features")
        codes = [_code(value, i) for i, value in enumerate(request["county_code"])]
        years = self._years(request)
        return pd.DataFrame({"county_code": codes, "as_of": years})

    def _years(self, request: pd.DataFrame) -> list[int]:
        if "as_of" not in request.columns:
            return [self.default_as_of] * len(request)
        return [self._year(value, i) for i, value in enumerate(request["as_of"])]

    def _year(self, value: object, row: int) -> int:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return self.default_as_of
        if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)):
            raise ModelInputError(f"row {row}: as_of must be an integer year; got {value!r}")
        if float(value) != int(value):
            raise ModelInputError(f"row {row}: as_of must be an integer year; got {value!r}")
        return int(value)

    @cached_property
    def _positions(self) -> dict[tuple[str, int], int]:
        """(county_code, as_of) -> row of the snapshot, built once."""
        keys = zip(self.snapshot["county_code"], self.snapshot["as_of"].astype(int), strict=True)
        return {key: i for i, key in enumerate(keys)}

    def _lookup(self, keys: pd.DataFrame) -> np.ndarray:
        """Snapshot row of every request row; an unknown key is an error naming the row."""
        positions = [self._positions.get(key, -1) for key in zip(keys["county_code"], keys["as_of"], strict=True)]
        if -1 in positions:
            self._raise_missing(keys, positions.index(-1))
        return np.asarray(positions, dtype=int)

    def _raise_missing(self, keys: pd.DataFrame, row: int) -> None:
        code, year = keys.loc[row, "county_code"], keys.loc[row, "as_of"]
        years = sorted(self.snapshot["as_of"].unique())
        if year not in years:
            raise ModelInputError(f"row {row}: as_of must be one of {years[0]}..{years[-1]}; got {year}")
        raise ModelInputError(f"row {row}: county_code {code!r} is not a county of the panel")

    def _apply_overrides(self, positions: np.ndarray, request: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
        """The snapshot's feature values, with the request's non-missing indicator values in place."""
        X = self._feature_matrix[positions]  # fancy indexing copies: the snapshot is never changed
        applied = [[] for _ in range(len(X))]
        for column in (c for c in request.columns if c in self.features):
            given = request[column].reset_index(drop=True)
            values = pd.to_numeric(given, errors="coerce")
            bad = given.notna() & values.isna()
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise ModelInputError(f"row {row}: {column} must be a number; got {given.iloc[row]!r}")
            present = values.notna().to_numpy()
            X[present, self.features.index(column)] = values[present].to_numpy(dtype=float)
            for row in np.flatnonzero(present):
                applied[row].append(column)
        return X, [", ".join(names) for names in applied]


def _threads(rows: int) -> int:
    """One thread for small requests, LightGBM's default (0: all cores) for batches."""
    return 1 if rows < SMALL_REQUEST else 0


def _code(value: object, row: int) -> str:
    text = str(value).strip()
    if isinstance(value, float) and value.is_integer():
        text = str(int(value))
    if len(text) != 6 or not text.isdigit():
        raise ModelInputError(f"row {row}: county_code must be 6 digits; got {value!r}")
    return text


def _sigmoid_of(model: LGBMEmergence) -> tuple[float, float] | None:
    if model.calibrated_ is None:
        return None
    calibrator = model.calibrated_.calibrated_classifiers_[0].calibrators[0]
    return float(calibrator.a_), float(calibrator.b_)
