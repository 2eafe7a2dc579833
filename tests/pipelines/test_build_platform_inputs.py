"""``features build`` with platform metrics too short to label any period: a clear error before the
public sources are read and before anything is written. Every metrics file here is SYNTHETIC
(made-up values on two real county codes), small and seeded by hand; it describes no real county."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from rich.console import Console

from features.codes import CodeHistory, CodeRecord
from features.labels import BeltRule, Condition, LabelError
from features.platform import PlatformMetrics, PlatformMetricsError, read_platform_metrics
from features.sources.base import SourceTable
from pipelines import build
from pipelines.config import DataSettings, PlatformSettings, Settings

QUIET = Console(quiet=True)
RULE = build.belt_rule(PlatformSettings())  # the default 2 of 3, placeholder thresholds
SYNTHETIC_CODES = ("371721", "330782")  # real codes, made-up metrics


def two_county_history() -> CodeHistory:
    """曹县 and 义乌市 with their prefectures and provinces, unchanged, in the 2020 code list."""
    records = [CodeRecord("371721", "曹县", 2009, 10_000, ()), CodeRecord("330782", "义乌市", 2009, 10_000, ())]
    codes = {"370000": "山东省", "371700": "菏泽市", "371721": "曹县", "330000": "浙江省", "330700": "金华市",
             "330782": "义乌市"}  # fmt: skip
    return CodeHistory(records, {2020: pd.DataFrame({"code": list(codes), "name": list(codes.values())})})


def quarters(first: str, n: int) -> list[str]:
    year, quarter = int(first[:4]), int(first[-1]) - 1
    return [f"{year + (quarter + i) // 4}Q{(quarter + i) % 4 + 1}" for i in range(n)]


def synthetic_metrics(periods: list[str]) -> PlatformMetrics:
    """SYNTHETIC quarterly metrics: every county sells in every period of ``periods``."""
    rows = [(code, int(p[:4]) * 4 + int(p[-1]) - 1, None, 1e6 * (i + 1), 10.0)
            for code in SYNTHETIC_CODES for i, p in enumerate(periods)]  # fmt: skip
    return PlatformMetrics(pd.DataFrame(rows, columns=["county_code", "period", "category", "gmv_cny",
                                                       "active_merchants"]), "quarterly")  # fmt: skip


def write_synthetic_metrics(path, periods: list[str]):
    """The same SYNTHETIC metrics as a CSV file marked ``is_synthetic``."""
    lines = ["county_code,period,gmv_cny,active_merchants,is_synthetic"]
    lines += [f"{code},{p},{1e6 * (i + 1)},10,true" for code in SYNTHETIC_CODES for i, p in enumerate(periods)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_three_quarters_label_nothing_and_the_error_says_why():
    with pytest.raises(
        PlatformMetricsError,
        match=r"^metrics_synthetic\.csv: platform metrics must label at least one quarter: a quarter t is "
        r"labelled once every metric of the belt rule \(gmv_annual_cny, active_merchants, gmv_growth_yoy\) is "
        r"known for some county in t, and gmv_growth_yoy needs 8 consecutive quarters of a county \(t-7\.\.t\); "
        r"got 3 quarter\(s\), 2025Q1\.\.2025Q3, none with every metric known$",
    ):
        build.platform_labels(synthetic_metrics(quarters("2025Q1", 3)), RULE, "metrics_synthetic.csv")


def test_seven_quarters_label_nothing_and_eight_label_their_last():
    with pytest.raises(PlatformMetricsError, match=r"got 7 quarter\(s\), 2023Q4\.\.2025Q2"):
        build.platform_labels(synthetic_metrics(quarters("2023Q4", 7)), RULE, "metrics_synthetic.csv")
    labels = build.platform_labels(synthetic_metrics(quarters("2023Q4", 8)), RULE, "metrics_synthetic.csv")
    assert sorted(labels["period"].unique()) == [2025 * 4 + 2]  # 2025Q3


def test_a_quarter_missing_from_the_whole_file_is_refused_naming_it():
    # an export that lost 2025Q2: 2025Q3 would go unlabelled, its panel rows carrying 2025Q1's metrics
    periods = [p for p in quarters("2023Q1", 11) if p != "2025Q2"]
    with pytest.raises(
        PlatformMetricsError,
        match=r"^metrics_synthetic\.csv: period must run without a gap from the file's first, 2023Q1, to its last,"
        r" 2025Q3: every quarter needs rows \(a county may lack some, the whole file may not\); got no row of"
        r" 2025Q2 \(1 quarter\(s\)\)$",
    ):
        build.platform_labels(synthetic_metrics(periods), RULE, "metrics_synthetic.csv")
    # one county's gap is its own: the other county labels the quarters
    metrics = synthetic_metrics(quarters("2023Q1", 11))
    one_gap = metrics.frame.drop(metrics.frame.index[(metrics.frame["county_code"] == "371721")][9])
    labels = build.platform_labels(PlatformMetrics(one_gap, "quarterly"), RULE, "metrics_synthetic.csv")
    assert sorted(labels["period"].unique()) == [2024 * 4 + 3, 2025 * 4, 2025 * 4 + 1, 2025 * 4 + 2]


def test_a_quarter_of_far_fewer_counties_than_the_one_before_is_refused_naming_both():
    # an export cut short: its last quarter would label most counties unknown
    metrics = synthetic_metrics(quarters("2023Q1", 11))
    frame = metrics.frame
    cut = frame.drop(frame.index[(frame["county_code"] == "371721") & (frame["period"] == 2025 * 4 + 2)])
    thin = PlatformMetrics(cut, "quarterly")
    with pytest.raises(
        PlatformMetricsError,
        match=r"^metrics_synthetic\.csv: every quarter must have rows for at least 60% of the counties of the quarter"
        r" before \(\[platform\] min_coverage\); got 2025Q3 with rows for 1 counties against 2 in 2025Q2: an export"
        r" cut short\?",
    ):
        build.platform_labels(thin, RULE, "metrics_synthetic.csv", min_coverage=0.6)
    assert not build.platform_labels(thin, RULE, "metrics_synthetic.csv", min_coverage=0.5).empty  # half is enough
    assert not build.platform_labels(thin, RULE, "metrics_synthetic.csv", min_coverage=0).empty


def test_a_rule_without_growth_needs_four_quarters():
    rule = BeltRule((Condition("gmv_annual_cny", ">=", 1e8), Condition("active_merchants", ">=", 100)), 1)
    with pytest.raises(PlatformMetricsError, match=r"gmv_annual_cny needs 4 consecutive quarters of a county"):
        build.platform_labels(synthetic_metrics(quarters("2025Q1", 3)), rule, "metrics_synthetic.csv")


def test_annual_metrics_need_two_years_for_growth():
    frame = pd.DataFrame({"county_code": ["371721"], "period": [2025], "category": [None], "gmv_cny": [1e8],
                          "active_merchants": [10.0]})  # fmt: skip
    with pytest.raises(PlatformMetricsError, match=r"at least one year: .* needs 2 consecutive years of a county "
                       r"\(t-1\.\.t\); got 1 year\(s\), 2025\.\.2025"):  # fmt: skip
        build.platform_labels(PlatformMetrics(frame, "annual"), RULE, "metrics_synthetic.csv")


def test_a_rule_metric_the_platform_does_not_compute_is_an_error_not_a_key_error():
    rule = BeltRule((Condition("gmv_annual", ">=", 1e8),), 1)
    with pytest.raises(LabelError, match=r"one of the metrics of the platform metrics file .*; got 'gmv_annual'"):
        build.platform_labels(synthetic_metrics(quarters("2023Q1", 11)), rule, "metrics_synthetic.csv")


@pytest.mark.realdata
def test_build_fails_before_reading_the_sources_and_keeps_the_panel(raw_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(build, "load_history", lambda settings: two_county_history())
    monkeypatch.setattr(build, "read_sources", lambda *args: pytest.fail("the public sources were read"))
    metrics = write_synthetic_metrics(tmp_path / "platform_metrics_synthetic.csv", quarters("2025Q1", 3))
    features = tmp_path / "features"
    features.mkdir()
    (features / "panel.parquet").write_bytes(b"the good panel")
    settings = Settings(
        data=DataSettings(cache_dir=raw_dir, features_dir=features),  # verified first, as every build's
        platform=PlatformSettings(metrics_file=metrics),
    )
    with pytest.raises(PlatformMetricsError, match=r"must label at least one quarter: .*got 3 quarter\(s\)"):
        build.run(settings, QUIET)
    assert (features / "panel.parquet").read_bytes() == b"the good panel"
    assert sorted(p.name for p in features.iterdir()) == ["panel.parquet"]


def test_the_categories_of_no_mode_are_named_the_largest_first():
    unmapped = {f"杂项{i}": 0.3 / (i + 1) for i in range(12)}
    note = build.unmapped_note(unmapped)
    assert note.startswith(
        "categories that map to no mode (12, share of categorised GMV): 杂项0 (30.0%), 杂项1 (15.0%),"
    )
    assert "杂项9 (3.0%) and 2 more; their GMV names no county's mode: add keywords for them to" in note


def test_categories_of_no_mode_print_as_text_not_as_markup_or_escape_sequences():
    # a category [/x] stopped the build with a MarkupError after its outputs were written; [link=...]
    # was a link, and an escape sequence reached the terminal
    console = Console(file=io.StringIO(), force_terminal=True, color_system="truecolor", width=400)
    categories = {"[/x]": 0.5, "[link=https://evil.example]click[/link]": 0.3, "\x1b[2J茶叶": 0.2}
    platform = {"rows_read": 3, "periods": ["2025Q1", "2025Q3"], "target_counties": 2, "target_counties_of": 2,
                "codes_resolved_to_another_year": [], "rows_unmatched": 0, "further_metrics": {},
                "unmapped_categories": categories}  # fmt: skip
    build._print_platform(console, platform)
    printed = console.file.getvalue()
    assert "[/x] (50.0%), [link=https://evil.example]click[/link] (30.0%), \\x1b[2J茶叶 (20.0%); their" in printed
    assert "\x1b" not in printed


def test_unmatched_rows_are_written_for_spreadsheets_with_text_as_text_and_numbers_as_numbers(tmp_path):
    # a category of =HYPERLINK(...) in a row of no county ran as a formula in unmatched.csv opened in
    # Excel or WPS; the reader strips a leading tab, and the cell is made safe either way
    path = tmp_path / "platform_metrics_synthetic.csv"
    path.write_text(
        "county_code,period,category,gmv_cny,active_merchants,refund_rate\n371721,2025Q1,女装,5,1,0.1\n"
        '441900,2025Q1,"=HYPERLINK(""https://evil.example"",""x"")",5,1,-0.5\n441900,2025Q1,"\t=1+1",7,2,-2\n'
        "441900,2025Q1,-2+3,7,2,0\n",
        encoding="utf-8",
    )
    metrics = read_platform_metrics(path, two_county_history(), intensive=["refund_rate"])
    panel = pd.DataFrame({"county_code": ["371721"], "as_of": [2025 * 4]})
    outputs = build.write_outputs(
        tmp_path / "features", panel, {}, [SourceTable("platform", pd.DataFrame(), metrics.unmatched, {})]
    )
    written = pd.read_csv(outputs.unmatched, dtype=str, keep_default_na=False)
    assert written["category"].tolist() == ['\'=HYPERLINK("https://evil.example","x")', "'=1+1", "'-2+3"]
    assert written["refund_rate"].tolist() == ["-0.5", "-2.0", "0.0"] and written["row"].tolist() == ["2", "3", "4"]
    assert written["county_code"].tolist() == ["441900"] * 3 and set(written["source"]) == {"platform"}
