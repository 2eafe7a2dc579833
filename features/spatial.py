"""Spatial features from county centroids: neighbours within a radius, distances.

Every feature here is computed from the belts and villages known at the as-of period only; the
caller passes exactly those.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

EARTH_RADIUS_KM = 6371.0088


def haversine_matrix(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Great-circle distances (km) between every pair of points given in degrees."""
    lon_r, lat_r = np.radians(lon), np.radians(lat)
    dlat = lat_r[:, None] - lat_r[None, :]
    dlon = lon_r[:, None] - lon_r[None, :]
    a = np.sin(dlat / 2) ** 2 + np.cos(lat_r)[:, None] * np.cos(lat_r)[None, :] * np.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def haversine_to(lon: np.ndarray, lat: np.ndarray, lon0: np.ndarray, lat0: np.ndarray) -> np.ndarray:
    """Great-circle distance (km) from each point to its own reference point."""
    lon_r, lat_r, lon0_r, lat0_r = map(np.radians, (lon, lat, lon0, lat0))
    a = np.sin((lat_r - lat0_r) / 2) ** 2 + np.cos(lat_r) * np.cos(lat0_r) * np.sin((lon_r - lon0_r) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


class NeighbourIndex:
    """Pairwise distances among counties with known centroids, computed once.

    Parameters
    ----------
    centroids : DataFrame
        ``county_code``, ``lon``, ``lat``.
    radii_km : sequence of int
        Radii of the "within" shares.
    """

    def __init__(self, centroids: pd.DataFrame, radii_km: Sequence[int] = (50, 100, 200)):
        self.codes = centroids["county_code"].to_numpy()
        self.radii_km = tuple(radii_km)
        distance = haversine_matrix(centroids["lon"].to_numpy(), centroids["lat"].to_numpy())
        np.fill_diagonal(distance, np.inf)
        self.distance = distance
        self._within = {r: (distance <= r).astype(np.float32) for r in self.radii_km}

    def features(self, belt: pd.Series, villages: pd.Series) -> pd.DataFrame:
        """Neighbour features for one period, comparable across periods as belts multiply.

        A model trained on one year scores counties of a later one, when there are more belts:
        80 in the 2014 roster, 217 in 2016. A count of belts nearby would put most counties of the
        later year beyond what the model saw; the counts are therefore shares of the period's
        totals (the panel makes the distance relative to the median county's as well).

        Parameters
        ----------
        belt : Series
            County code -> 1 if a belt known at the period, else 0 (others count as 0).
        villages : Series
            County code -> Taobao villages known at the period.

        Returns
        -------
        DataFrame indexed by county code: ``belts_within_{r}km_share`` and
        ``villages_within_{r}km_share`` for each radius, the belts (villages) of other counties
        within ``r`` km as a share of the national total known at the period (counties without a
        centroid count in the total, not as neighbours); and ``dist_nearest_belt_km``, to the
        nearest belt of another county (NaN while no belt is known).
        """
        b = belt.reindex(self.codes).fillna(0).to_numpy(dtype=np.float32)
        v = villages.reindex(self.codes).fillna(0).to_numpy(dtype=np.float32)
        columns = {}
        for r in self.radii_km:  # whole counts, exact in float32; divided in float64
            columns[f"belts_within_{r}km_share"] = (self._within[r] @ b).astype(float) / national_total(belt)
            columns[f"villages_within_{r}km_share"] = (self._within[r] @ v).astype(float) / national_total(villages)
        masked = np.where(b[None, :] > 0, self.distance, np.inf)
        nearest = masked.min(axis=1)
        columns["dist_nearest_belt_km"] = np.where(np.isfinite(nearest), nearest, np.nan)
        return pd.DataFrame(columns, index=pd.Index(self.codes, name="county_code"))


def national_total(counts: pd.Series) -> float:
    """A national total as a share's denominator (1 when nothing is known yet)."""
    return max(float(counts.sum()), 1.0)


def seat_locations(centroids: pd.DataFrame, units: pd.DataFrame) -> pd.DataFrame:
    """Approximate seats of each prefecture and provincial capital.

    A prefecture's seat is approximated by the area-weighted centroid of its urban districts
    (units named ``…区``), or of all its units when it has none. A province's capital is its
    ``xx01`` prefecture (true of every province); a municipality's is its own seat.

    Returns
    -------
    DataFrame
        Per county: ``county_code``, ``pref_seat_lon/lat``, ``capital_lon/lat``.
    """
    frame = units.merge(centroids, on="county_code", how="inner")
    district = frame["county_name"].str.endswith("区")
    seats = _weighted_centroid(frame[district], "prefecture_code")
    fallback = _weighted_centroid(frame, "prefecture_code")
    seats = seats.combine_first(fallback)
    capital_pref = units["province_code"].str[:2] + "0100"
    capital_pref = capital_pref.where(capital_pref.isin(seats.index), units["province_code"])
    result = pd.DataFrame({"county_code": units["county_code"].to_numpy()})
    pref_seat = seats.reindex(units["prefecture_code"]).to_numpy()
    capital = seats.reindex(capital_pref).to_numpy()
    result[["pref_seat_lon", "pref_seat_lat"]] = pref_seat
    result[["capital_lon", "capital_lat"]] = capital
    return result


def _weighted_centroid(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    weight = frame["area_km2"].fillna(1.0)
    grouped = frame.assign(w=weight, wlon=frame["lon"] * weight, wlat=frame["lat"] * weight)
    sums = grouped.groupby(by)[["w", "wlon", "wlat"]].sum()
    return pd.DataFrame({"lon": sums["wlon"] / sums["w"], "lat": sums["wlat"] / sums["w"]})
