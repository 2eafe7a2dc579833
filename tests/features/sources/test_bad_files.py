"""Every reader, given a corrupted, truncated, wrongly encoded or empty copy of its file, fails with
a clear SourceFormatError naming the file, and writes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from features.errors import SourceFormatError
from features.sources import census, centroids, co2, poverty, prefecture, taobao, terrain, viirs

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

CASES = [
    (census.read_census, "census/census_county_2010_v1.xlsx"),
    (census.read_tudigong, "tudigong/input/employment.csv"),
    (centroids.read_centroids, "county_centroids/county_centroids_cnmaps_1.1.2.csv"),
    (co2.read_co2, "ceads_county_co2/co2.xlsx"),
    (poverty.read_poverty, "poverty_counties/poverty_counties_832_with_exit_year.xlsx"),
    (prefecture.read_prefecture, "prefecture_panel/prefecture_gdp_sectors_2000_2023.xlsx"),
    (taobao.read_taobao, "taobao_villages/taobao-village-list-2015.xlsx"),
    (terrain.read_terrain, "terrain_relief/county_terrain_relief.xlsx"),
    (viirs.read_viirs, "viirs_county/viirs_2013_2020.dta"),
]


def _damage(data: bytes, kind: str, suffix: str) -> bytes:
    if kind == "empty":
        return b""
    if kind == "truncated":
        return data[: len(data) // 3]
    if kind == "corrupted":
        middle = len(data) // 2
        return data[:middle] + bytes(range(256)) * 8 + data[middle + 2048 :]
    # wrongly encoded: text re-encoded as GB18030; binary formats get bytes that are not the format
    if suffix == ".csv":
        return data.decode("utf-8-sig").encode("gb18030")
    return "这不是一个文件".encode("gb18030") * 100


@pytest.fixture(scope="module")
def pristine(raw_dir, tmp_path_factory) -> Path:
    """A private copy of the cache, so damaging a file never touches the real one."""
    copy = tmp_path_factory.mktemp("raw")
    shutil.copytree(raw_dir, copy, dirs_exist_ok=True)
    return copy


@pytest.mark.parametrize("kind", ["corrupted", "truncated", "encoding", "empty"])
@pytest.mark.parametrize(("reader", "relative"), CASES, ids=[c[1].split("/")[-1] for c in CASES])
def test_a_damaged_file_fails_clearly(pristine, code_history, reader, relative, kind, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(pristine, raw, symlinks=True)
    target = raw / relative
    target.write_bytes(_damage(target.read_bytes(), kind, target.suffix))
    before = sorted(p.relative_to(raw) for p in raw.rglob("*"))
    with pytest.raises(SourceFormatError, match=target.name):
        reader(raw, code_history, 2020)
    assert sorted(p.relative_to(raw) for p in raw.rglob("*")) == before
