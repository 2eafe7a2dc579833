"""The mode taxonomy: the shipped keyword file, its validation, and the tie rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import SourceFormatError
from features.sources.base import read_excel_sheet
from features.sources.taobao import read_taobao_villages
from features.taxonomy import (
    MODES,
    Keyword,
    ModeTaxonomy,
    county_modes,
    load_taxonomy,
    mode_counts,
    split_products,
)

HEADER = "keyword,mode,note\n"


@pytest.fixture(scope="module")
def shipped() -> ModeTaxonomy:
    return load_taxonomy()


@pytest.fixture
def tiny() -> ModeTaxonomy:
    return ModeTaxonomy(
        (
            Keyword("鞋", "industrial_transformation", ""),
            Keyword("跑步机", "national_brand", ""),
            Keyword("配件", "industrial_transformation", ""),
            Keyword("数码", "national_brand", ""),
            Keyword("茶", "cultural_heritage", ""),
            Keyword("茶叶", "local_specialty", ""),
        )
    )


def _write(tmp_path, rows: str):
    path = tmp_path / "taxonomy.csv"
    path.write_text(HEADER + rows, encoding="utf-8")
    return path


def test_modes_are_the_four_ids_in_a_fixed_order():
    assert MODES == (
        "national_brand",
        "cultural_heritage",
        "industrial_transformation",
        "local_specialty",
    )


def test_shipped_taxonomy_loads_with_every_mode(shipped):
    frame = shipped.to_frame()
    assert list(frame.columns) == ["keyword", "mode", "note"]
    assert set(frame["mode"]) == set(MODES)
    assert frame["keyword"].is_unique


@pytest.mark.realdata
def test_every_2014_product_maps_to_a_mode(raw_dir, shipped):
    path = raw_dir / "taobao_villages" / "taobao-village-list-2014.xlsx"
    products = read_excel_sheet(path, "Table 1", dtype=str)["主营产品"].dropna().str.strip()
    assert products.nunique() == 98
    unmapped = sorted(p for p in products.unique() if shipped.mode_of(p) is None)
    assert unmapped == []


@pytest.mark.parametrize(
    ("product", "mode"),
    [
        ("家具、竹制品", "industrial_transformation"),
        ("服装/鞋", "industrial_transformation"),
        ("笔记本电脑、手机", "national_brand"),
        ("数码配件、演出服饰", "national_brand"),
        ("青瓷、宝剑", "cultural_heritage"),
        ("坚果炒货", "local_specialty"),
        ("自行车及零配件", "industrial_transformation"),
        ("瓷砖", "industrial_transformation"),
        ("陶瓷", "cultural_heritage"),
        ("玉米", "local_specialty"),
    ],
)
def test_shipped_modes_of_roster_products(shipped, product, mode):
    assert shipped.mode_of(product) == mode


def test_longest_keyword_in_an_item_wins(tiny):
    assert tiny.mode_of("茶叶") == "local_specialty"
    assert tiny.mode_of("茶具") == "cultural_heritage"


def test_on_equal_length_the_keyword_starting_first_wins(tiny):
    assert tiny.mode_of("数码配件") == "national_brand"
    assert tiny.mode_of("配件数码") == "industrial_transformation"


def test_the_first_item_with_a_keyword_decides(tiny):
    assert tiny.mode_of("鞋、跑步机") == "industrial_transformation"
    assert tiny.mode_of("跑步机，鞋") == "national_brand"
    assert tiny.mode_of("竹制品/跑步机") == "national_brand"
    assert tiny.match("竹制品/跑步机").item == "跑步机"


def test_no_keyword_means_no_mode(tiny):
    assert tiny.mode_of("竹制品") is None
    assert tiny.mode_of("") is None


def test_a_product_must_be_a_string(tiny):
    with pytest.raises(TypeError, match=r"product must be a str; got float nan"):
        tiny.mode_of(np.nan)


def test_split_products_keeps_ji_and_he_inside_an_item():
    assert split_products(" 服装 / 鞋、自行车及零配件 ") == ["服装", "鞋", "自行车及零配件"]


def test_unknown_mode_is_an_error_naming_the_line(tmp_path):
    path = _write(tmp_path, "鞋,industrial_transformation,\n家具,furniture,\n")
    with pytest.raises(
        SourceFormatError,
        match=r"taxonomy\.csv line 3: mode must be one of \['national_brand', .*\]; "
        r"got 'furniture'",
    ):
        load_taxonomy(path)


def test_duplicate_keyword_is_an_error_naming_both_lines(tmp_path):
    path = _write(tmp_path, "鞋,industrial_transformation,\n茶叶,local_specialty,\n鞋,national_brand,\n")
    with pytest.raises(
        SourceFormatError,
        match=r"line 4: keyword '鞋' must be unique; it is already on line 2",
    ):
        load_taxonomy(path)


def test_empty_keyword_is_an_error_naming_the_line(tmp_path):
    path = _write(tmp_path, "鞋,industrial_transformation,\n  ,local_specialty,\n")
    with pytest.raises(SourceFormatError, match=r"line 3: keyword must be non-empty; got '  '"):
        load_taxonomy(path)


def test_keyword_holding_a_separator_is_an_error(tmp_path):
    path = _write(tmp_path, '"鞋、包",industrial_transformation,\n')
    with pytest.raises(SourceFormatError, match=r"line 2: keyword must not contain a product separator"):
        load_taxonomy(path)


def test_missing_column_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "taxonomy.csv"
    path.write_text("keyword,category\n鞋,industrial_transformation\n", encoding="utf-8")
    with pytest.raises(
        SourceFormatError,
        match=r"taxonomy\.csv: missing column\(s\) \['mode', 'note'\]; "
        r"found columns \['keyword', 'category'\]",
    ):
        load_taxonomy(path)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(SourceFormatError, match=r"nowhere\.csv: file is missing"):
        load_taxonomy(tmp_path / "nowhere.csv")


def _villages(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["county_code", "product"])


def test_county_mode_is_the_majority_with_share_over_villages_with_a_product(tiny):
    villages = _villages([("000001", "鞋"), ("000001", "鞋、跑步机"), ("000001", "跑步机"), ("000001", "竹制品")])
    modes = county_modes(villages, tiny)
    assert modes.to_dict("records") == [
        {
            "county_code": "000001",
            "mode": "industrial_transformation",
            "n_villages_with_mode": 2,
            "share": 0.5,
        }
    ]


def test_county_mode_ties_go_to_the_first_mode_in_modes(tiny):
    villages = _villages([("000002", "茶叶"), ("000002", "跑步机"), ("000003", "茶叶"), ("000003", "茶具")])
    modes = county_modes(villages, tiny).set_index("county_code")
    assert modes.loc["000002", "mode"] == "national_brand"
    assert modes.loc["000003", "mode"] == "cultural_heritage"
    assert modes["share"].tolist() == [0.5, 0.5]


def test_county_modes_skip_villages_without_county_or_product_and_keep_unmapped(tiny):
    villages = _villages([(None, "鞋"), ("000004", None), ("000004", "竹制品"), ("000005", "数码配件")])
    before = villages.copy()
    modes = county_modes(villages, tiny)
    pd.testing.assert_frame_equal(villages, before)
    assert modes["county_code"].tolist() == ["000004", "000005"]
    assert modes["mode"].isna().tolist() == [True, False]
    assert modes.loc[1, "mode"] == "national_brand"
    assert modes["n_villages_with_mode"].tolist() == [0, 1]
    assert mode_counts(modes).to_dict() == {
        "national_brand": 1,
        "cultural_heritage": 0,
        "industrial_transformation": 0,
        "local_specialty": 0,
        "unmapped": 1,
    }


def test_county_modes_need_products_of_one_year(tiny):
    villages = _villages([("000001", "鞋"), ("000001", "鞋")]).assign(year=[2014, 2015])
    with pytest.raises(ValueError, match=r"one year .*; got years \[2014, 2015\]"):
        county_modes(villages, tiny)


@pytest.mark.realdata
def test_mode_counts_of_the_2014_belts(raw_dir, code_history, shipped):
    villages = read_taobao_villages(raw_dir, code_history)
    modes = county_modes(villages, shipped)
    assert len(modes) == 80
    assert mode_counts(modes).to_dict() == {
        "national_brand": 10,
        "cultural_heritage": 7,
        "industrial_transformation": 60,
        "local_specialty": 3,
        "unmapped": 0,
    }
    caoxian = modes.set_index("county_code").loc["371721"]
    assert (caoxian["mode"], caoxian["n_villages_with_mode"]) == ("industrial_transformation", 4)
