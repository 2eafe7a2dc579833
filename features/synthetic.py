"""SYNTHETIC quarterly platform metrics, for tests and demos only.

.. note:: :data:`NOTE` (README-ready)

   The platform metrics made here are **synthetic**: drawn from a seeded random generator, not
   measured on any platform. They describe no real county's e-commerce; only the county codes
   and the prefectures that group them are real. Every row carries ``is_synthetic = True`` and
   :func:`write_synthetic` only writes files whose name contains ``synthetic``.

The generator runs on the real county universe of the target vintage
(:meth:`CodeHistory.county_units`) and lays out its rows like a user's platform file
(:mod:`features.platform`): ``county_code``, ``period`` (``2025Q3``), ``category``,
``gmv_cny``, ``active_merchants``, ``is_synthetic``. Its shape is meant to be plausible, so that
the belt rule, the mode taxonomy and the spatial features have something to find:

* **clustered by prefecture**: each prefecture draws a level (a few are hubs) and a main
  product; a county's level is its prefecture's plus its own noise, and most counties sell their
  prefecture's main product, so belts and modes cluster in space;
* **a minority of large, growing counties**: annual GMV is log-normal in the county's level
  (median a few million CNY, the top few percent above 100 million) and so is annual growth
  (about 4 % for most, 20-40 % for the leaders);
* **seasonality** with a Q4 peak (Double 11, Double 12) and a Q1 trough (Spring Festival);
* **categories** from product strings the shipped taxonomy maps (:data:`PRODUCTS`), one to three
  per county, with shares fixed per county;
* **late entrants**: about one county in ten starts selling after the first quarter, so
  year-on-year growth is unknown for its early quarters;
* ``active_merchants`` is GMV over a county-specific revenue per merchant (about 150 thousand
  CNY a quarter), rounded.

The same arguments and seed give the same frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.codes import CodeHistory
from features.errors import BeltcastError
from features.io import write_csv
from features.periods import QUARTERLY, label, parse_period

NOTE = (
    "The platform metrics made by features.synthetic are SYNTHETIC: drawn from a seeded random "
    "generator, not measured on any platform. They describe no real county's e-commerce; only the "
    "county codes and their prefectures are real. Every row has is_synthetic = True."
)
PRODUCTS = ("化妆品", "家电", "汉服", "陶瓷", "茶具", "家具", "女装", "鞋", "玩具", "箱包", "茶叶", "水果", "坚果")
SEASON = np.array([0.85, 0.95, 0.90, 1.30])
HUB_SHARE, HUB_LIFT = 0.12, 2.0
LOG10_GMV_MEDIAN, LOG10_GMV_PER_LEVEL = 6.8, 0.75
GROWTH_BASE, GROWTH_PER_LEVEL, GROWTH_NOISE = 0.04, 0.11, 0.05
REVENUE_PER_MERCHANT = 1.5e5
LATE_ENTRY_SHARE = 0.1
MAIN_PRODUCT_SHARE = 0.75
CATEGORY_COUNTS, CATEGORY_COUNT_P = (1, 2, 3), (0.4, 0.4, 0.2)
CATEGORY_ALPHA = (4.0, 1.5, 1.0)
COLUMNS = ["county_code", "period", "category", "gmv_cny", "active_merchants", "is_synthetic"]


class SyntheticDataError(BeltcastError, ValueError):
    """Arguments of the synthetic generator are invalid, or a file would pass for real data."""


def synthetic_platform_metrics(
    history: CodeHistory,
    target: int = 2020,
    first: str = "2022Q1",
    last: str = "2025Q3",
    seed: int = 0,
    n_counties: int | None = None,
) -> pd.DataFrame:
    """SYNTHETIC quarterly platform metrics on the real county universe (see the module note).

    Parameters
    ----------
    history : CodeHistory
        County code records and yearly code lists; the counties are those of ``target``.
    target : int, default 2020
        The code vintage of the counties.
    first, last : str, default "2022Q1", "2025Q3"
        The first and last quarter, inclusive.
    seed : int, default 0
        Seed of the random generator; the same arguments give the same frame.
    n_counties : int, optional
        Keep a random sample of this many counties; default all.

    Returns
    -------
    DataFrame
        One row per county × quarter × category with :data:`COLUMNS`: ``county_code``,
        ``period`` (``"2025Q3"``), ``category``, ``gmv_cny`` (CNY, 2 decimals),
        ``active_merchants`` (int), ``is_synthetic`` (always True); sorted by code, period and
        category.
    """
    quarters = _quarters(first, last)
    rng = np.random.default_rng(seed)
    counties = _counties(history, target, n_counties, rng)
    profile = _profiles(counties, rng)
    categories = _categories(profile, rng)
    return _rows(profile, categories, quarters, rng)


def _quarters(first: str, last: str) -> np.ndarray:
    start, end = _quarter(first, "first"), _quarter(last, "last")
    if start > end:
        raise SyntheticDataError(f"first must not be after last; got first={first!r}, last={last!r}")
    return np.arange(start, end + 1)


def _quarter(value: str, name: str) -> int:
    kind, index = parse_period(value)
    if kind != QUARTERLY:
        raise SyntheticDataError(f"{name} must be a quarter like 2025Q3; got {value!r}")
    return index


def _counties(history: CodeHistory, target: int, n_counties: int | None, rng: np.random.Generator) -> pd.DataFrame:
    units = history.county_units(target)[["county_code", "prefecture_code"]]
    if n_counties is None:
        return units
    if not 1 <= n_counties <= len(units):
        raise SyntheticDataError(f"n_counties must be between 1 and {len(units)}; got {n_counties}")
    keep = np.sort(rng.choice(len(units), size=n_counties, replace=False))
    return units.iloc[keep].reset_index(drop=True)


def _profiles(counties: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Per county: level, annual GMV, annual growth, revenue per merchant, entry quarter offset
    and the prefecture's main product."""
    prefecture, index = np.unique(counties["prefecture_code"].to_numpy(), return_inverse=True)
    n_prefectures, n = len(prefecture), len(counties)
    prefecture_level = rng.normal(0.0, 1.0, n_prefectures) + HUB_LIFT * (rng.random(n_prefectures) < HUB_SHARE)
    prefecture_product = rng.integers(len(PRODUCTS), size=n_prefectures)
    level = 0.7 * prefecture_level[index] + 0.7 * rng.normal(0.0, 1.0, n)
    return counties.assign(
        level=level,
        annual_gmv=10 ** (LOG10_GMV_MEDIAN + LOG10_GMV_PER_LEVEL * level),
        growth=GROWTH_BASE + GROWTH_PER_LEVEL * np.clip(level, 0.0, None) + rng.normal(0.0, GROWTH_NOISE, n),
        revenue_per_merchant=REVENUE_PER_MERCHANT * rng.lognormal(0.0, 0.4, n),
        late_entry=rng.random(n) < LATE_ENTRY_SHARE,
        main_product=prefecture_product[index],
    )


def _categories(profile: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """One row per county and category: ``county`` (position in ``profile``), ``category``, ``share``."""
    rows = []
    counts = rng.choice(CATEGORY_COUNTS, size=len(profile), p=CATEGORY_COUNT_P)
    for county, (main, count) in enumerate(zip(profile["main_product"], counts, strict=True)):
        first = main if rng.random() < MAIN_PRODUCT_SHARE else rng.integers(len(PRODUCTS))
        others = rng.permutation([p for p in range(len(PRODUCTS)) if p != first])[: count - 1]
        shares = rng.dirichlet(CATEGORY_ALPHA[:count]) if count > 1 else np.ones(1)
        rows.extend((county, PRODUCTS[p], share) for p, share in zip([first, *others], shares, strict=True))
    return pd.DataFrame(rows, columns=["county", "category", "share"])


def _rows(
    profile: pd.DataFrame, categories: pd.DataFrame, quarters: np.ndarray, rng: np.random.Generator
) -> pd.DataFrame:
    entry = rng.integers(0, len(quarters), size=len(profile)) * profile["late_entry"].to_numpy()
    grid = categories.merge(pd.DataFrame({"step": np.arange(len(quarters))}), how="cross")
    grid = grid[grid["step"].to_numpy() >= entry[grid["county"].to_numpy()]]
    county = profile.iloc[grid["county"].to_numpy()]
    quarter = quarters[grid["step"].to_numpy()]
    trend = (1.0 + county["growth"].to_numpy()) ** (grid["step"].to_numpy() / 4)
    noise = rng.lognormal(0.0, 0.08, len(grid))
    gmv = county["annual_gmv"].to_numpy() / 4 * trend * SEASON[quarter % 4] * grid["share"].to_numpy() * noise
    merchants = np.rint(gmv / county["revenue_per_merchant"].to_numpy()).astype(int)
    frame = pd.DataFrame(
        {
            "county_code": county["county_code"].to_numpy(),
            "period": [label(int(q), QUARTERLY) for q in quarter],
            "category": grid["category"].to_numpy(),
            "gmv_cny": np.round(gmv, 2),
            "active_merchants": merchants,
            "is_synthetic": True,
        }
    )
    return frame.sort_values(["county_code", "period", "category"]).reset_index(drop=True)[COLUMNS]


def write_synthetic(
    path: Path | str,
    history: CodeHistory,
    target: int = 2020,
    first: str = "2022Q1",
    last: str = "2025Q3",
    seed: int = 0,
    n_counties: int | None = None,
) -> Path:
    """Write :func:`synthetic_platform_metrics` to a UTF-8 CSV whose name says it is synthetic.

    Parameters
    ----------
    path : path-like
        A ``.csv`` file whose name contains ``synthetic`` (e.g. ``platform_synthetic.csv``), so
        that the file is never mistaken for real data.
    history, target, first, last, seed, n_counties
        As for :func:`synthetic_platform_metrics`.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    SyntheticDataError
        If the file name lacks ``synthetic`` or the suffix is not ``.csv``.
    """
    path = Path(path)
    if "synthetic" not in path.name.lower():
        raise SyntheticDataError(
            f"file name must contain 'synthetic' so the data is never taken for real; got {path.name!r}"
        )
    if path.suffix.lower() != ".csv":
        raise SyntheticDataError(f"file must be a .csv; got {path.name!r}")
    frame = synthetic_platform_metrics(history, target, first, last, seed, n_counties)
    return write_csv(frame, path)
