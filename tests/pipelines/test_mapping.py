"""The county map of a scores table (a SYNTHETIC two-county topology)."""

from __future__ import annotations

import pandas as pd

from pipelines.mapping import TopoMap, county_map_html

TOPOLOGY = {
    "type": "Topology",
    "arcs": [[[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], [[1, 0], [1, 0], [0, 1], [-1, 0], [0, -1]]],
    "objects": {
        "county": {
            "type": "GeometryCollection",
            "geometries": [
                {"type": "Polygon", "arcs": [[0]], "properties": {"CODE": "110101"}},
                {"type": "Polygon", "arcs": [[1]], "properties": {"CODE": "110102"}},
            ],
        }
    },
}


def _two_counties(p_belt: list[float], is_belt: list) -> pd.DataFrame:
    """A belt (no rank) and a candidate ranked 1."""
    return pd.DataFrame(
        {
            "county_code": ["110101", "110102"],
            "county_name": ["东城区", "西城区"],
            "prefecture": ["北京市", "北京市"],
            "province": ["北京市", "北京市"],
            "p_belt": p_belt,
            "rank": pd.array([pd.NA, 1], dtype="Int64"),
            "is_belt": pd.array(is_belt, dtype="boolean"),
        }
    )


def test_a_county_of_unknown_status_is_shown_with_its_rank():
    """Platform metrics cover some counties only: the others have no known status (NA)."""
    page = county_map_html(TopoMap(TOPOLOGY), _two_counties([0.4, 0.1], [True, pd.NA]))
    assert "东城区 110101 (北京市, 北京市) p_belt 0.40 · already a belt" in page
    assert "西城区 110102 (北京市, 北京市) p_belt 0.10 · rank 1" in page


def test_belts_have_a_colour_of_their_own_and_the_classes_are_of_the_candidates():
    """A belt's p_belt is not a forecast of a new belt: the belts, among the highest p_belt,
    would otherwise fill the darkest class and push the candidates into the paler ones."""
    from pipelines.mapping import BELT, PALETTE

    page = county_map_html(TopoMap(TOPOLOGY), _two_counties([0.9, 0.1], [True, False]))
    assert f'fill="{BELT}" data-code="110101"' in page
    assert f'fill="{PALETTE[-1]}" data-code="110102"' in page  # the only candidate, in the top class
    assert "already a belt" in page.split('class="legend"')[1]


def test_the_legend_spans_the_candidates_values_not_zero_to_one():
    from pipelines.mapping import legend, quantile_colour

    colour = quantile_colour([0.01, 0.02, 0.05, 0.2, 0.376])
    text = legend(colour)
    assert "0.010–" in text and "–0.376" in text and "1.000" not in text and "0.000" not in text


def test_the_legend_counts_the_areas_without_a_forecast_and_the_counties_without_a_shape():
    scores = _two_counties([0.9, 0.1], [True, False])
    scores.loc[0, "county_code"] = "110105"  # a county of the panel the map has no shape for

    page = county_map_html(TopoMap(TOPOLOGY), scores)
    legend = page.split('class="legend"')[1]

    assert "no forecast (1 areas of the map that are not counties of the panel's code list" in legend  # 110101
    assert "1 scored counties have no shape on the map" in legend


def test_belts_and_the_table_s_candidates_are_outlined_so_that_greyscale_tells_them_apart():
    # on paper or in greyscale the belts' orange and the paler blues looked alike (contrast 1.09)
    from pipelines.mapping import BELT_OUTLINE, TOP_OUTLINE

    page = county_map_html(TopoMap(TOPOLOGY), _two_counties([0.9, 0.1], [True, False]))
    outlines = page.split('<g pointer-events="none">')[1].split("</g>")[0]
    assert outlines.count(f'stroke="{BELT_OUTLINE}"') == 1 and outlines.count(f'stroke="{TOP_OUTLINE}"') == 1
    legend = page.split('class="legend"')[1]
    assert (
        "outlined in red: the 50 candidates ranked highest" in legend and f"border:2px solid {BELT_OUTLINE}" in legend
    )
