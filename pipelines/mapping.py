"""A county map as inline SVG, drawn from the pre-projected ``tudigong`` TopoJSON (no JavaScript,
no network): each county a ``<path>`` filled by a value."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from features.errors import SourceFormatError
from pipelines.score import former

WIDTH_PX = 960.0
PALETTE = (
    "#f7fbff",
    "#deebf7",
    "#c6dbef",
    "#9ecae1",
    "#6baed6",
    "#4292c6",
    "#2171b5",
    "#08519c",
    "#08306b",
)
MISSING = "#e0e0e0"
BELT = "#e6891f"  # a county that is a belt already: its p_belt is not a forecast of a new belt
BELT_OUTLINE, TOP_OUTLINE = "#000000", "#d7301f"  # belts, and the candidates of the report's table, outlined
TOP_OUTLINED = 50  # the ranks outlined: the report's table


class TopoMap:
    """Decoded arcs of a TopoJSON topology, in SVG pixels (y down), and its objects."""

    def __init__(self, topology: dict, width: float = WIDTH_PX):
        if topology.get("type") != "Topology" or "arcs" not in topology:
            raise SourceFormatError(f"expected a TopoJSON Topology with arcs; got keys {sorted(topology)}")
        self.objects = topology["objects"]
        transform = topology.get("transform", {"scale": [1, 1], "translate": [0, 0]})
        absolute = [_absolute(arc, transform) for arc in topology["arcs"]]
        stacked = np.vstack(absolute)
        low, high = stacked.min(axis=0), stacked.max(axis=0)
        self.scale = width / float(high[0] - low[0])
        self.width = width
        self.height = float(high[1] - low[1]) * self.scale
        self.arcs = [self._to_pixels(arc, low, high) for arc in absolute]

    @classmethod
    def read(cls, path: Path) -> TopoMap:
        try:
            return cls(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as err:
            raise SourceFormatError(f"{path}: cannot be read as TopoJSON: {err}") from err

    def _to_pixels(self, arc: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        x = (arc[:, 0] - low[0]) * self.scale
        y = (high[1] - arc[:, 1]) * self.scale
        points = np.round(np.column_stack([x, y]), 1)
        keep = np.ones(len(points), dtype=bool)
        keep[1:] = np.any(np.abs(np.diff(points, axis=0)) >= 0.7, axis=1)
        keep[-1] = True
        return points[keep]

    def path(self, geometry: dict) -> str:
        """SVG path data of a (Multi)Polygon geometry."""
        polygons = geometry.get("arcs") or []
        if geometry.get("type") == "Polygon":
            polygons = [polygons]
        rings = [ring for polygon in polygons for ring in polygon]
        return "".join(self._ring(ring) for ring in rings)

    def _ring(self, arc_indexes: list[int]) -> str:
        parts = [self.arcs[i] if i >= 0 else self.arcs[~i][::-1] for i in arc_indexes]
        points = np.vstack(parts) if parts else np.empty((0, 2))
        if len(points) < 3:
            return ""
        coords = " ".join(f"{x:g},{y:g}" for x, y in points)
        return f"M{coords}Z"


def _absolute(arc: list[list[int]], transform: dict) -> np.ndarray:
    """Undo TopoJSON's delta encoding and quantisation: projected coordinates."""
    quantised = np.cumsum(np.asarray(arc, dtype=float)[:, :2], axis=0)
    return quantised * np.asarray(transform["scale"]) + np.asarray(transform["translate"])


def county_svg(
    topo: TopoMap, fills: dict[str, str], labels: dict[str, str], title: str, outlines: dict[str, str] | None = None
) -> str:
    """The county map: fill by ``fills`` (county code -> colour; others grey), ``<title>``
    tooltips by ``labels``; ``outlines`` (county code -> colour) drawn over the counties, so that
    they are told apart without colour too (in greyscale, on paper); province borders on top."""
    counties, outlined = [], []
    for geometry in topo.objects["county"]["geometries"]:
        code = str(geometry.get("properties", {}).get("CODE", ""))
        fill = fills.get(code, MISSING)
        name = str(geometry.get("properties", {}).get("NAME", "") or "")
        tip = html.escape(
            labels.get(code, f"{name} {code}: no forecast (not a county of the panel's code list)".lstrip())
        )
        path = topo.path(geometry)
        counties.append(f'<path d="{path}" fill="{fill}" data-code="{code}"><title>{tip}</title></path>')
        if outlines and code in outlines:
            outlined.append(f'<path d="{path}" fill="none" stroke="{outlines[code]}" stroke-width="0.7"/>')
    provinces = [
        f'<path d="{topo.path(g)}" fill="none" stroke="#555" stroke-width="0.6"/>'
        for g in topo.objects.get("province", {}).get("geometries", [])
    ]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {topo.width:.0f} {topo.height:.0f}" '
        f'role="img" aria-label="{html.escape(title)}" class="county-map">'
        f'<g stroke="#fff" stroke-width="0.15">{"".join(counties)}</g><g>{"".join(provinces)}</g>'
        f'<g pointer-events="none">{"".join(outlined)}</g></svg>'
    )


def quantile_colour(values: list[float]) -> Callable[[float], str]:
    """A colour scale by quantiles of ``values`` (skewed probabilities stay readable); its
    ``edges`` are the class bounds between, its ``span`` the lowest and highest value."""
    finite = np.asarray([v for v in values if v is not None and np.isfinite(v)])
    edges = np.quantile(finite, np.linspace(0, 1, len(PALETTE) + 1)[1:-1]) if len(finite) else np.array([])

    def colour(value: float) -> str:
        return PALETTE[int(np.searchsorted(edges, value, side="right"))]

    colour.edges = edges  # type: ignore[attr-defined]
    colour.span = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)  # type: ignore[attr-defined]
    return colour


def legend(colour: Callable[[float], str], unscored: int | None = None, unmapped: int = 0) -> str:
    """An HTML legend of the quantile scale (from the lowest value mapped to the highest), belts
    and the areas without a forecast (``unscored``: how many, when known), and how many scored
    counties have no shape on the map (``unmapped``)."""
    edges = list(getattr(colour, "edges", []))
    low, high = getattr(colour, "span", (0.0, 1.0))
    bounds = [low, *edges, high]
    cells = [
        f'<span class="swatch" style="background:{PALETTE[i]}"></span>{bounds[i]:.3f}–{bounds[i + 1]:.3f}'
        for i in range(len(PALETTE))
    ]
    cells.append(
        f'<span class="swatch" style="background:{BELT};border:2px solid {BELT_OUTLINE}"></span>already a belt'
    )
    cells.append(
        f'<span class="swatch" style="background:#fff;border:2px solid {TOP_OUTLINE}"></span>'
        f"outlined in red: the {TOP_OUTLINED} candidates ranked highest"
    )
    missing = "no forecast"
    if unscored:
        missing += (
            f" ({unscored:,} areas of the map that are not counties of the panel's code list: development zones,"
            " and prefecture cities without counties such as 东莞 and 中山)"
        )
    cells.append(f'<span class="swatch" style="background:{MISSING}"></span>{missing}')
    if unmapped:
        cells.append(f"<span>{unmapped:,} scored counties have no shape on the map</span>")
    return '<div class="legend">' + " ".join(cells) + "</div>"


def shown_p(p: float) -> str:
    """``p_belt`` as the page shows it, to 2 decimals (``< 0.01`` below 0.005, not a 0)."""
    return "no forecast" if pd.isna(p) else ("< 0.01" if p < 0.005 else f"{p:.2f}")


def county_map_html(topo: TopoMap, scores) -> str:
    """The ``p_belt`` map of a scores table, with its legend: candidates (counties with a rank)
    coloured by quantile classes of the candidates' ``p_belt``, belts in a colour of their own."""
    belt = (
        scores["rank"].isna().to_numpy()
    )  # a county without a rank is a belt already (one of unknown status is ranked)
    p_belt = scores["p_belt"].astype(float).to_numpy()
    codes = scores["county_code"].astype(str).to_numpy()
    colour = quantile_colour(list(p_belt[~belt]))
    fills = {
        code: BELT if is_belt else (MISSING if np.isnan(p) else colour(p))
        for code, p, is_belt in zip(codes, p_belt, belt, strict=True)
    }
    labels = {  # names repeat (鼓楼区 in 福州 and 南京...): the code and prefecture tell them apart
        row.county_code: f"{row.county_name} {row.county_code} ({row.prefecture}, {row.province})"
        + f" p_belt {shown_p(row.p_belt)}"
        + (
            " · already a belt"
            if pd.isna(row.rank)
            else f" · rank {int(row.rank)}{former(getattr(row, 'last_belt', ''))}"
        )
        for row in scores.itertuples()
    }
    shapes = {str(g.get("properties", {}).get("CODE", "")) for g in topo.objects["county"]["geometries"]}
    unscored = len(shapes - set(fills)) + sum(1 for code in shapes & set(fills) if fills[code] == MISSING)
    unmapped = len(set(fills) - shapes)
    top = scores["rank"].le(TOP_OUTLINED).fillna(False).to_numpy(dtype=bool)
    outlines = {code: BELT_OUTLINE for code in codes[belt]} | {code: TOP_OUTLINE for code in codes[top]}
    return county_svg(topo, fills, labels, "County map of p_belt", outlines) + legend(colour, unscored, unmapped)
