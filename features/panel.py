"""The point-in-time county panel: one row per (county, as-of year).

First invariant: a feature of as-of year ``t`` uses only data dated ``<= t``. Every source is
joined as of ``t`` (its newest value dated on or before ``t``), with a ``staleness_<source>``
column giving how many years old that value is (for a source whose values are not all as old as
each other, :data:`PER_FEATURE_STALENESS`, also a ``staleness_<feature>`` per feature); static
geography (terrain, centroids, area) is the only exception, and is declared as such. Spatial
features use the belts known at ``t`` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa

from features.errors import SourceFormatError
from features.labels import BeltRule, emergence_target
from features.periods import ANNUAL, year_end
from features.platform import mode_share_names
from features.sources.base import SourceTable
from features.spatial import NeighbourIndex, haversine_to, national_total, seat_locations

ID_COLUMNS = ["county_code", "county_name", "province", "prefecture", "province_code",
              "prefecture_code", "as_of"]  # fmt: skip
LABEL_COLUMNS = ["is_belt", "last_label_period", "is_belt_known", "emerged", "mode"]
# A county's product mix by mode, from the platform's categories (features.platform.mode_gmv_shares):
# what it sells tells the mode it would follow, and is a feature of the mode model only (on
# SYNTHETIC metrics, where it carries no emergence signal, it cost the emergence model AP).
MODE_ONLY_FEATURES = tuple(f"platform_{name}" for name in mode_share_names())
# The age of the labels a row's belt exposure is computed from (as of 2020: the 2016 roster).
LABELS_STALENESS = "staleness_labels"
# Label sources whose own variables are dated by LABELS_STALENESS (SOURCE_PREFIXES["labels"]).
ROSTER_SOURCES = ("taobao",)
# Sources whose variables are not all as old as each other: each of their features has a
# staleness column of its own, ``staleness_<feature>``, beside the source's (its newest value's
# age). A prefecture's registered population stops in 2017 or 2018 (37 prefectures) while its
# GDP goes on, and a prefecture's GDP can have a gap its population has not.
PER_FEATURE_STALENESS = ("prefecture",)
GROWTH = {"viirs_mean": (1, 2), "co2_mt": (1, 2)}
YEAR_RELATIVE = ("pref_gdp_growth",)
RELATIVE_SUFFIX = "_rel"
LOG_EPS = 1e-3
# Levels whose distribution moves with the year or the census round, each replaced by the county's
# standing against that year's median county (:func:`with_relative_levels`): amounts as a log
# ratio, shares and averages as a difference. Every variable of LEVEL_SOURCES is one of them.
LEVEL_SOURCES = ("census", "tudigong")
LEVELS_LOG = ("viirs_mean", "co2_mt", "pref_gdp", "pref_gdp_per_capita", "pref_population",
              "census_population", "tudigong_ghsl_density")  # fmt: skip
LEVELS_DIFFERENCE = ("pref_secondary_share", "pref_tertiary_share")


@dataclass(frozen=True)
class PanelSpec:
    """How to build the panel.

    Attributes
    ----------
    periods : sequence of int
        As-of periods: years, or quarter indices (``features.periods``).
    rule : BeltRule
        The belt rule over the label metrics.
    label_source : str
        The source whose variables the rule reads (``taobao`` for the public data; ignored when
        the label metrics are passed to :func:`build_panel` directly, as for platform metrics).
    horizon : int
        Emergence horizon in periods.
    frequency : str
        ``annual`` or ``quarterly``; annual source values become known at the end of their year.
    static_sources : tuple of str
        Sources whose values do not change over time (joined to every as-of year).
    radii_km : tuple of int
        Radii of the neighbour shares.
    """

    periods: Sequence[int]
    rule: BeltRule
    label_source: str = "taobao"
    horizon: int = 1
    frequency: str = ANNUAL
    static_sources: tuple[str, ...] = ("terrain", "centroids")
    radii_km: tuple[int, ...] = (50, 100, 200)


def build_panel(
    sources: Sequence[SourceTable],
    units: pd.DataFrame,
    spec: PanelSpec,
    modes: pd.DataFrame | None = None,
    label_metrics: pd.DataFrame | None = None,
    period_long: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Join every source as of each period, add growth, spatial and label columns.

    Parameters
    ----------
    sources : sequence of SourceTable
        Harmonised long tables, one per source.
    units : DataFrame
        The target-vintage county universe (``CodeHistory.county_units(target)``).
    spec : PanelSpec
    modes : DataFrame, optional
        ``county_code``, ``mode`` (and ``as_of`` when the mode changes over time): a belt's
        development mode where known.
    label_metrics : DataFrame, optional
        Wide ``county_code``, ``period`` and the rule's metrics (platform metrics); default: the
        label source's variables.
    period_long : DataFrame, optional
        Further long rows already dated by period (``county_code, period, variable, value,
        source``), e.g. the platform's own metrics; joined as of each period like the rest.

    Returns
    -------
    DataFrame
        One row per county and as-of period: ids, features, staleness, labels.
    """
    long = pd.concat([s.long.assign(source=s.name) for s in sources], ignore_index=True)
    long = with_relative_levels(with_growth(long))
    long["period"] = [year_end(int(y), spec.frequency) for y in long["year"]]
    if period_long is not None:
        long = pd.concat([long, period_long.assign(year=-1)], ignore_index=True)
    if label_metrics is None:
        label_metrics = _label_metrics(long, spec)
    status = spec.rule.apply(label_metrics, "period")
    frame = _skeleton(units, spec.periods)
    frame = frame.merge(_as_of_values(long, spec), on=["county_code", "as_of"], how="left")
    frame = frame.merge(_label_columns(status, spec), on=["county_code", "as_of"], how="left")
    frame = frame.merge(_spatial(long, status, units, spec), on=["county_code", "as_of"], how="left")
    frame = frame.merge(_static_values(long, spec), on="county_code", how="left")
    frame = frame.merge(_geography(long, units), on="county_code", how="left")
    if modes is not None:
        keys = ["county_code", "as_of"] if "as_of" in modes else ["county_code"]
        frame = frame.merge(modes[[*keys, "mode"]], on=keys, how="left")
    else:
        frame["mode"] = pd.NA
    return validate_panel(_order(frame))


def with_growth(long: pd.DataFrame) -> pd.DataFrame:
    """Add growth over 1 and 2 years for the series in :data:`GROWTH`, dated at the end, relative
    to the year's median county; :data:`YEAR_RELATIVE` growth becomes relative the same way.

    Growth is a log difference (``viirs_growth_1y_rel``: the county's log growth minus the median
    county's that year). What a year does to every county (an economic slowdown, a change in the
    night-light composites such as 2017's, 2020) is not a county's signal, and a model trained in
    one year cannot read growth measured in another: in 2015 nearly every county's CO2 growth
    was below the first quartile of 2014's. Relative growth keeps the county's standing.
    """
    parts = [long[~long["variable"].isin(YEAR_RELATIVE)]]
    for variable, lags in GROWTH.items():
        if (found := _by_year(long, variable)) is None:
            continue
        source, wide = found
        logged = _log(wide)
        for lag in lags:
            name = f"{variable.removesuffix('_mean').removesuffix('_mt')}_growth_{lag}y{RELATIVE_SUFFIX}"
            growth = _relative_to_year(logged - logged.shift(lag, axis=1))
            parts.append(growth.assign(variable=name, source=source))
    parts += [_relative(long, variable) for variable in YEAR_RELATIVE]
    return pd.concat(parts, ignore_index=True)


def with_relative_levels(long: pd.DataFrame) -> pd.DataFrame:
    """Replace each level that moves with the year (:data:`LEVELS_LOG`, :data:`LEVELS_DIFFERENCE`,
    every variable of :data:`LEVEL_SOURCES`) by ``<variable>_rel``, the county's standing against
    the median county of the same year: ``log(x) - median log(x)`` for amounts, ``x - median(x)``
    for shares and averages.

    A model trained in 2014 scores counties as of 2020, when the 2020 census has replaced the 2010
    one: in the median county, farming's share of jobs fell from 60 % to 26 % and the share of
    residents aged 65+ rose from 8.6 % to 13.9 %, and the median prefecture's tertiary share rose
    from 38 % to 49 %. A threshold learnt on the old values misreads nearly every county; the
    standing within the year does not move with the country.
    Call it after :func:`with_growth`, which needs the levels as they are. The median is over the
    counties with a value that year: a source that covers fewer counties in one year (prefecture
    population lacks Tibet and Qinghai in 2024) moves that year's median a little (at most 0.012
    in 2013-2020).
    """
    relative = long["variable"].isin(LEVELS_LOG + LEVELS_DIFFERENCE) | long["source"].isin(LEVEL_SOURCES)
    levels = long[relative]
    parts = [long[~relative]]
    parts += [_relative(levels, variable, variable in LEVELS_LOG) for variable in levels["variable"].unique()]
    return pd.concat(parts, ignore_index=True)


def _relative(long: pd.DataFrame, variable: str, logged: bool = False) -> pd.DataFrame | None:
    """Long rows of ``<variable>_rel``: ``variable`` (its log with ``logged``) minus each year's
    median county (None when ``variable`` is absent, which ``pd.concat`` skips)."""
    if (found := _by_year(long, variable)) is None:
        return None
    source, wide = found
    if logged:
        wide = _log(wide)
    return _relative_to_year(wide).assign(variable=variable + RELATIVE_SUFFIX, source=source)


def _log(values: pd.DataFrame | pd.Series) -> pd.DataFrame | pd.Series:
    """The log of an amount (negative values count as 0; :data:`LOG_EPS` keeps 0 finite)."""
    return np.log(values.clip(lower=0) + LOG_EPS)


def _by_year(long: pd.DataFrame, variable: str) -> tuple[str, pd.DataFrame] | None:
    """``variable``'s source and its county x year table (None when absent)."""
    series = long[long["variable"] == variable]
    if series.empty:
        return None
    return series["source"].iloc[0], series.pivot_table(index="county_code", columns="year", values="value")


def _relative_to_year(wide: pd.DataFrame) -> pd.DataFrame:
    """Long ``county_code, year, value`` of a county x year table minus each year's median; no
    rows for missing values (a county's newest known value is then the one joined as of a year)."""
    return (wide - wide.median(axis=0)).stack().dropna().rename("value").reset_index()


def _label_metrics(long: pd.DataFrame, spec: PanelSpec) -> pd.DataFrame:
    if spec.label_source not in set(long["source"]):
        raise SourceFormatError(
            f"panel needs the label source {spec.label_source!r}; got sources {sorted(set(long['source']))}"
        )
    label_long = long[long["source"] == spec.label_source]
    spec.rule.require_metrics(sorted(set(label_long["variable"])), f"the label source {spec.label_source!r}")
    metrics = label_long[label_long["variable"].isin(spec.rule.metrics)]
    wide = metrics.pivot_table(index=["county_code", "period"], columns="variable", values="value")
    wide = wide.reindex(columns=spec.rule.metrics).reset_index()  # in the rule's order; each is a variable (checked)
    wide.columns.name = None
    return wide


def _skeleton(units: pd.DataFrame, periods: Sequence[int]) -> pd.DataFrame:
    base = units[ID_COLUMNS[:-1]].drop_duplicates("county_code")
    return base.merge(pd.DataFrame({"as_of": list(periods)}), how="cross")


def _as_of_values(long: pd.DataFrame, spec: PanelSpec) -> pd.DataFrame:
    """Newest value dated <= t per county and variable, plus staleness per source."""
    static = long["source"].isin(spec.static_sources)
    parts = []
    for as_of in spec.periods:
        known = long[~static & (long["period"] <= as_of)].sort_values("period")
        newest = known.groupby(["county_code", "variable"], sort=False).tail(1)
        values = newest.pivot(index="county_code", columns="variable", values="value")
        age = as_of - newest.groupby(["county_code", "source"])["period"].max().unstack()
        age.columns = [f"staleness_{source}" for source in age.columns]
        own = newest[newest["source"].isin(PER_FEATURE_STALENESS)]
        own_age = as_of - own.pivot(index="county_code", columns="variable", values="period")
        own_age.columns = [f"staleness_{variable}" for variable in own_age.columns]
        parts.append(values.join(age, how="outer").join(own_age, how="outer").assign(as_of=as_of))
    dynamic = pd.concat(parts).rename_axis("county_code").reset_index()
    # the rosters' own variables (taobao_*) are dated by the labels' staleness; a platform's metrics
    # keep an age of their own, which differs by county where a county lacks the newest quarter
    if spec.label_source not in ROSTER_SOURCES:
        return dynamic
    return dynamic.drop(columns=[c for c in dynamic if c.startswith(f"staleness_{spec.label_source}")])


def _static_values(long: pd.DataFrame, spec: PanelSpec) -> pd.DataFrame:
    """Time-invariant geography (terrain, centroid, area), the same at every as-of year."""
    static = long[long["source"].isin(spec.static_sources)].sort_values("period")
    newest = static.groupby(["county_code", "variable"], sort=False).tail(1)
    wide = newest.pivot(index="county_code", columns="variable", values="value")
    return wide.rename_axis(columns=None).reset_index()


def _label_columns(status: pd.DataFrame, spec: PanelSpec) -> pd.DataFrame:
    labelled = sorted(status["period"].unique())
    target = emergence_target(status, spec.horizon, "period")
    rows = []
    for as_of in spec.periods:
        known_periods = [p for p in labelled if p <= as_of]
        last = known_periods[-1] if known_periods else None
        frame = pd.DataFrame({"county_code": status["county_code"].unique(), "as_of": as_of})
        frame["last_label_period"] = last
        rows.append(frame)
    frame = pd.concat(rows, ignore_index=True)
    now = status.rename(columns={"period": "as_of"})[["county_code", "as_of", "is_belt"]]
    known = status.rename(columns={"period": "last_label_period", "is_belt": "is_belt_known"})
    frame = frame.merge(now, on=["county_code", "as_of"], how="left")
    frame = frame.merge(known[["county_code", "last_label_period", "is_belt_known"]],
                        on=["county_code", "last_label_period"], how="left")  # fmt: skip
    emerged = target.rename(columns={"period": "as_of"})[["county_code", "as_of", "emerged"]]
    frame = frame.merge(emerged, on=["county_code", "as_of"], how="left")
    frame["is_belt"] = frame["is_belt"].astype("boolean")
    frame["is_belt_known"] = frame["is_belt_known"].astype("boolean")
    frame["last_label_period"] = frame["last_label_period"].astype("Int64")
    frame["emerged"] = frame["emerged"].astype("Int64")
    return frame


def _spatial(long: pd.DataFrame, status: pd.DataFrame, units: pd.DataFrame, spec: PanelSpec) -> pd.DataFrame:
    """Belt exposure from the belts and villages known at each as-of year, relative to them: shares
    of the national totals and the nearest belt's distance against the median county's."""
    centroids = _centroids(long)
    index = None if centroids.empty else NeighbourIndex(centroids, spec.radii_km)
    villages = long[long["variable"] == "taobao_villages"]
    labelled = sorted(status["period"].unique())
    parts = []
    for as_of in spec.periods:
        known = [p for p in labelled if p <= as_of]
        if not known:
            continue
        belt = status[status["period"] == known[-1]].set_index("county_code")["is_belt"].astype(int)
        count = villages[villages["period"] == known[-1]].set_index("county_code")["value"]
        features = _same_area_belts(belt, units)
        if index is not None:
            features = features.merge(index.features(belt, count).reset_index(), on="county_code", how="left")
            distance = _log(features.pop("dist_nearest_belt_km"))  # NaN while no belt is known
            features["dist_nearest_belt_km_rel"] = distance - distance.median()
        parts.append(features.assign(as_of=as_of, **{LABELS_STALENESS: as_of - known[-1]}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["county_code", "as_of"])


def _same_area_belts(belt: pd.Series, units: pd.DataFrame) -> pd.DataFrame:
    """Belts of the other counties of the same prefecture and province, as shares of the national
    total known at the period (comparable across periods, as the neighbour features)."""
    frame = units[["county_code", "prefecture_code", "province_code"]].copy()
    frame["b"] = frame["county_code"].map(belt).fillna(0)
    total = national_total(belt)
    names = {"prefecture_code": "belts_same_prefecture_share", "province_code": "belts_same_province_share"}
    for level, name in names.items():
        frame[name] = (frame.groupby(level)["b"].transform("sum") - frame["b"]) / total
    return frame[["county_code", *names.values()]]


def _centroids(long: pd.DataFrame) -> pd.DataFrame:
    wanted = {"centroid_lon": "lon", "centroid_lat": "lat", "area_km2": "area_km2"}
    rows = long[long["variable"].isin(wanted)]
    if rows.empty:
        return pd.DataFrame(columns=["county_code", "lon", "lat", "area_km2"])
    wide = rows.pivot_table(index="county_code", columns="variable", values="value").rename(columns=wanted)
    return wide.dropna(subset=["lon", "lat"]).reset_index()


def _geography(long: pd.DataFrame, units: pd.DataFrame) -> pd.DataFrame:
    """Distance to the prefecture seat and to the provincial capital (static)."""
    centroids = _centroids(long)
    if centroids.empty:
        return pd.DataFrame(columns=["county_code"])
    seats = seat_locations(centroids, units).merge(centroids, on="county_code", how="inner")
    return pd.DataFrame(
        {
            "county_code": seats["county_code"],
            "dist_prefecture_seat_km": haversine_to(seats["lon"], seats["lat"],
                                                    seats["pref_seat_lon"], seats["pref_seat_lat"]),
            "dist_capital_km": haversine_to(seats["lon"], seats["lat"],
                                            seats["capital_lon"], seats["capital_lat"]),
        }
    )  # fmt: skip


def _order(frame: pd.DataFrame) -> pd.DataFrame:
    labels = [c for c in LABEL_COLUMNS if c in frame]
    features = sorted(c for c in frame if c not in ID_COLUMNS and c not in labels)
    ordered = frame[ID_COLUMNS + features + labels]
    return ordered.sort_values(["as_of", "county_code"]).reset_index(drop=True)


def feature_columns(panel: pd.DataFrame) -> list[str]:
    """The emergence model's feature columns (and the first of the mode model's): neither ids,
    labels, staleness nor the mode model's own (:data:`MODE_ONLY_FEATURES`).

    Staleness columns stay in the panel for transparency but are not model features: for sources
    with fixed release years they only encode the as-of year (census 2010 is 4 years old exactly
    in 2014), which would let a model learn the period rather than the county.
    """
    return [
        c
        for c in panel.columns
        if c not in ID_COLUMNS and c not in LABEL_COLUMNS and not c.startswith("staleness_")
        and c not in MODE_ONLY_FEATURES
    ]  # fmt: skip


def mode_feature_columns(panel: pd.DataFrame) -> list[str]:
    """The mode model's feature columns: :func:`feature_columns`, then the panel's
    :data:`MODE_ONLY_FEATURES`."""
    return feature_columns(panel) + [c for c in MODE_ONLY_FEATURES if c in panel.columns]


def staleness_columns(panel: pd.DataFrame) -> list[str]:
    """Years since the newest value of each source (and of each feature of
    :data:`PER_FEATURE_STALENESS`), per row."""
    return [c for c in panel.columns if c.startswith("staleness_")]


# A source whose features are not named "<source>_...": the prefixes they carry. The belt
# exposure and the label source's counts (Taobao villages and towns) are as old as the labels.
SOURCE_PREFIXES = {
    "prefecture": ("pref_",),
    "labels": ("belts_", "villages_", "dist_nearest_belt_", "taobao_"),
}


def feature_sources(features: Sequence[str], staleness: Sequence[str]) -> dict[str, str]:
    """The staleness column of each feature that comes from a dated source.

    A feature with a staleness column of its own (``staleness_pref_population_rel``,
    :data:`PER_FEATURE_STALENESS`) has that one; any other belongs to the source whose name (or
    :data:`SOURCE_PREFIXES` entry) starts its name: ``co2_growth_1y_rel`` to ``staleness_co2``,
    ``pref_gdp_rel`` to ``staleness_prefecture`` in a panel without per-feature columns,
    ``belts_within_100km_share`` to ``staleness_labels``. Features of no dated source (geography)
    have none.
    """
    own = {f"staleness_{feature}" for feature in features} & set(staleness)
    sources = {column: column.removeprefix("staleness_") for column in staleness if column not in own}
    prefixes = {column: SOURCE_PREFIXES.get(source, (source + "_",)) for column, source in sources.items()}
    found = {}
    for feature in features:
        if f"staleness_{feature}" in own:
            found[feature] = f"staleness_{feature}"
        elif matching := [column for column, starts in prefixes.items() if feature.startswith(starts)]:
            found[feature] = matching[-1]
    return found


def validate_panel(panel: pd.DataFrame) -> pd.DataFrame:
    """Check the panel before it is written: keys unique, codes well formed, features numeric."""
    schema = pa.DataFrameSchema(
        {
            "county_code": pa.Column(str, pa.Check.str_matches(r"^\d{6}$")),
            "as_of": pa.Column(int),
            **{
                c: pa.Column(float, nullable=True, coerce=True)
                for c in mode_feature_columns(panel) + staleness_columns(panel)
            },
        },
        unique=["county_code", "as_of"],
    )
    try:
        return schema.validate(panel)
    except (pa.errors.SchemaError, pa.errors.SchemaErrors) as err:
        raise SourceFormatError(f"county panel fails validation before writing: {err}") from err
