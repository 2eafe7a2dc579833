"""Atomic writes: a failure part-way leaves the previous file exactly as it was."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from features.io import atomic_path, write_csv, write_json, write_parquet


def test_a_writer_failing_midway_leaves_the_old_file(tmp_path):
    target = tmp_path / "scores.csv"
    target.write_text("old\n")

    def half_then_crash(tmp):
        tmp.write_text("new but incomplete")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"), atomic_path(target) as tmp:
        half_then_crash(tmp)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv"]


def test_writes_replace_whole_files_with_the_usual_mode(tmp_path):
    frame = pd.DataFrame({"county_code": ["371721"], "p_belt": [0.25]})
    csv = write_csv(frame, tmp_path / "a.csv")
    parquet = write_parquet(frame, tmp_path / "a.parquet")
    json_path = write_json({"曹县": 1}, tmp_path / "a.json")
    assert csv.read_text(encoding="utf-8") == "county_code,p_belt\n371721,0.25\n"
    pd.testing.assert_frame_equal(pd.read_parquet(parquet), frame)
    assert json_path.read_text(encoding="utf-8") == '{\n  "曹县": 1\n}\n'
    umask = os.umask(0)
    os.umask(umask)
    assert csv.stat().st_mode & 0o777 == 0o666 & ~umask
