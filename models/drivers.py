"""Indicators in words a strategist reads: "4.6% of all belts within 100 km", "manufacturing jobs
+5.2 points against the median county".

``top_drivers`` names, per county, the three features that push ``p_belt`` up most (largest
positive contribution to the log-odds: LightGBM's ``pred_contrib``, plus the feature's terms in
the linear margin when the model has one), each written with its value.
"""

from __future__ import annotations

import re

import numpy as np

from features.panel import LEVELS_LOG, RELATIVE_SUFFIX

TEMPLATES = {
    "dist_nearest_belt_km_rel": "nearest belt at {ratio} the median county's distance",
    "dist_prefecture_seat_km": "{value:.0f} km from the prefecture seat",
    "dist_capital_km": "{value:.0f} km from the provincial capital",
    "belts_same_prefecture_share": "{value:.1%} of all belts in the same prefecture",
    "belts_same_province_share": "{value:.1%} of all belts in the same province",
    "taobao_villages": "{value:.0f} Taobao villages",
    "taobao_towns": "{value:.0f} Taobao towns",
    "viirs_growth_1y_rel": "night lights {signed_pct} against the median county in 1 year",
    "viirs_growth_2y_rel": "night lights {signed_pct} against the median county in 2 years",
    "co2_growth_1y_rel": "CO2 emissions {signed_pct} against the median county in 1 year",
    "co2_growth_2y_rel": "CO2 emissions {signed_pct} against the median county in 2 years",
    "poverty_county": "{poverty}",
    "terrain_relief": "terrain relief {value:.2f}",
    "centroid_lon": "longitude {value:.1f}° E",
    "centroid_lat": "latitude {value:.1f}° N",
    "area_km2": "area {value:,.0f} km²",
    "pref_gdp_growth_rel": "prefecture GDP growth {signed_points} against the median county's prefecture's",
    "platform_gmv_annual_cny": "GMV {value:,.0f} yuan over four quarters",
    "platform_active_merchants": "{value:,.0f} active merchants",
    "platform_gmv_growth_yoy": "GMV {value:+.0%} year on year",
}
# Levels against the year's median county (features.panel.with_relative_levels), by their base name.
LEVEL_NAMES = {
    "viirs_mean": "night-light radiance",
    "co2_mt": "CO2 emissions",
    "pref_gdp": "prefecture GDP",
    "pref_gdp_per_capita": "prefecture GDP per head",
    "pref_population": "prefecture population",
    "census_population": "population",
    "tudigong_ghsl_density": "population density (GHSL)",
    "census_education_years": "schooling",
    "tudigong_education_years": "schooling",
    "census_household_size": "household size",
    "dist_nearest_belt_km": "distance to the nearest belt",  # relative in features.spatial
}
LEVEL_UNITS = {
    "census_education_years": "years",
    "tudigong_education_years": "years",
    "census_household_size": "persons",
}
WORDS = {
    "manufacturing": "manufacturing jobs",
    "wholesale retail": "retail jobs",
    "agriculture": "farm jobs",
    "transport": "transport jobs",
    "it": "IT jobs",
    "sales": "sales jobs",
    "urban": "urban residents",
    "migrant": "residents registered elsewhere",
    "interprovincial migrant": "residents from other provinces",
    "car": "households with a car",
    "share age 0 14": "residents aged 0-14",
    "share age 15 64": "residents aged 15-64",
    "share age 65p": "residents aged 65+",
    "pref secondary": "prefecture's industry share of GDP",
    "pref tertiary": "prefecture's services share of GDP",
    "ghsl urban": "residents in urban clusters (GHSL)",
}
# What a feature outside LEVEL_NAMES is about, in words: "no data on <name>", chart labels.
FEATURE_NAMES = {
    "dist_prefecture_seat_km": "distance to the prefecture seat",
    "dist_capital_km": "distance to the provincial capital",
    "belts_same_prefecture_share": "belts in the same prefecture",
    "belts_same_province_share": "belts in the same province",
    "taobao_villages": "Taobao villages",
    "taobao_towns": "Taobao towns",
    "viirs_growth_1y": "night-light growth over 1 year",
    "viirs_growth_2y": "night-light growth over 2 years",
    "co2_growth_1y": "CO2 growth over 1 year",
    "co2_growth_2y": "CO2 growth over 2 years",
    "poverty_county": "poverty-county status",
    "terrain_relief": "terrain relief",
    "centroid_lon": "longitude",
    "centroid_lat": "latitude",
    "area_km2": "area",
    "pref_gdp_growth": "prefecture GDP growth",
    "platform_gmv_annual_cny": "GMV",
    "platform_active_merchants": "active merchants",
    "platform_gmv_growth_yoy": "GMV growth",
}
WITHIN = re.compile(r"^(belts|villages)_within_(\d+)km_share$")
STALENESS = re.compile(r"^staleness_(\w+)$")


def describe(feature: str, value: float) -> str:
    """One indicator and its value in plain words."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return f"no data on {feature_name(feature)}"
    if WITHIN.match(feature):
        return f"{value:.1%} of all {feature_name(feature)}"
    if match := STALENESS.match(feature):
        return f"{match.group(1)} data {value:.0f} years old"
    if feature in TEMPLATES:
        signed_pct = f"{np.expm1(np.clip(value, -10, 10)) * 100:+.0f} %"
        poverty = "on the national poverty-county list" if value >= 0.5 else "not on the national poverty-county list"
        signed_points = f"{value * 100:+.1f} points"
        words = {"signed_pct": signed_pct, "signed_points": signed_points, "poverty": poverty, "ratio": _ratio(value)}
        return TEMPLATES[feature].format(value=value, **words)
    if feature.endswith(RELATIVE_SUFFIX):
        return _relative_level(feature.removesuffix(RELATIVE_SUFFIX), value)
    if feature.endswith("_share"):
        return f"{_label(feature)} {value * 100:.0f} %"
    return f"{_label(feature)} {value:,.0f}" if abs(value) >= 1000 else f"{_label(feature)} {value:.3g}"


def feature_name(feature: str) -> str:
    """What a feature is about, in words: for "no data on ..." (a missing value is a gap in a
    source, and the model's trees may still have learned something from it, so it can be a
    driver) and for the labels of the explanation charts. Distinct for distinct features."""
    base = feature.removesuffix(RELATIVE_SUFFIX)
    if match := WITHIN.match(feature):
        noun = "belts" if match.group(1) == "belts" else "Taobao villages"
        return f"{noun} within {match.group(2)} km"
    name = FEATURE_NAMES.get(base) or LEVEL_NAMES.get(base) or _label(base)
    return f"{name} (2020 census shares)" if base.startswith("tudigong_") else name


def _relative_level(level: str, value: float) -> str:
    """A level against the median county: a ratio for amounts (log ratios), points for shares."""
    name = LEVEL_NAMES.get(level, _label(level))
    # a prefecture's figure is compared with the median county's prefecture's, not with a county's
    median = "the median county's prefecture" if level.startswith("pref_") else "the median county"
    if level in LEVELS_LOG:
        return f"{name} {_ratio(value)} {median}'s"
    if level.endswith("_share") or "_share_" in level:
        return f"{name} {value * 100:+.1f} points against {median}"
    unit = LEVEL_UNITS.get(level)
    amount = f"{value:+.1f}" if abs(value) >= 1 else f"{value:+.2g}"  # "-1.0 years", not "-1 years"
    return f"{name} {amount}{' ' + unit if unit else ''} against the median county"


def _ratio(log_ratio: float) -> str:
    """A log ratio as "2.3x", or "0.0022x" below 1."""
    ratio = np.exp(np.clip(log_ratio, -20, 20))
    return f"{ratio:{'.2g' if ratio < 1 else '.1f'}}x"


def _label(feature: str) -> str:
    words = feature.removeprefix("census_").removeprefix("tudigong_").removesuffix("_share")
    words = words.replace("_", " ")
    return WORDS.get(words, words)


def top_drivers(
    contrib: np.ndarray,
    numbers: np.ndarray,
    names: list[str],
    k: int = 3,
    dated: np.ndarray | None = None,
) -> list[str]:
    """Per row, the ``k`` features with the largest positive contribution, described; joined by
    ``"; "``. A row with fewer positive contributions lists only those.

    Parameters
    ----------
    contrib : array (rows, features)
        Contributions to the log-odds (LightGBM ``pred_contrib`` without its bias column, plus
        the linear margin's terms).
    numbers : array (rows, features)
        The feature values.
    names : list of str
        Feature names, in column order.
    k : int, default 3
        How many drivers per row, at most.
    dated : array (rows, features) of object, optional
        Where a value is older than the row's period, the period of its data (``"2017"``),
        written after it as ``"(2017 data)"``; ``None`` (or an empty cell) where it is current.
    """
    order = np.argsort(-contrib, axis=1, kind="stable")[:, :k]
    out = []
    for i, top in enumerate(order):
        positive = [j for j in top if contrib[i, j] > 0]
        out.append("; ".join(_with_date(names[j], float(numbers[i, j]), dated, i, j) for j in positive))
    return out


def _with_date(feature: str, value: float, dated: np.ndarray | None, i: int, j: int) -> str:
    words = describe(feature, value)
    period = None if dated is None or np.isnan(value) else dated[i, j]
    return f"{words} ({period} data)" if period else words
