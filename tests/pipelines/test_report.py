"""The strategist's HTML report: content always checked; rendering checked when Chromium exists."""

from __future__ import annotations

import html
import re
import shutil
import subprocess

import pytest
from rich.console import Console

from pipelines import report

MODE_HTML = '<span lang="zh-Hans">平台+产业转型</span> (industrial transformation)'

pytestmark = [pytest.mark.realdata, pytest.mark.slow]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def page(champion_settings, tmp_path_factory):
    path = report.run(champion_settings, None, tmp_path_factory.mktemp("report") / "report.html", Console(quiet=True))
    return path, path.read_text(encoding="utf-8")


def test_report_has_the_table_the_map_and_the_curves(page):
    _, text = page
    assert text.count("<tr><td>") >= 50  # top 50 candidates (+ mode-mix rows)
    assert 'id="top-candidates"' in text and 'id="county-map"' in text
    assert len(re.findall(r'<path d="M[^"]+" fill="#[0-9a-f]{6}" data-code="\d{6}"', text)) >= 2800
    for figure in ("pr_curve", "calibration_curve", "feature_importance", "shap_summary"):
        caption = report.FIGURE_CAPTIONS[figure]  # a short alt text: a screen reader then reads the caption once
        assert (
            f'alt="{html.escape(caption.split(":")[0])} (chart; described below)" src="data:image/png;base64,' in text
        )
        assert f"<figcaption>{html.escape(caption)}</figcaption>" in text
    assert "models:/county-belt/1" in text
    caveats = text[text.index('id="data-caveats"') :]
    assert "The newest labels are of 2016" in caveats and "the newest data are of 2017" in caveats  # CO2 ends 2017
    assert re.search(r"No data, out of 2,844 counties: [^<]*CO2 emissions for \d+", caveats)  # CEADs lacks some
    named = re.search(r"<li>[^<:]*CO2 emissions: <span lang=\"zh-Hans\">([^<]+)</span></li>", caveats)  # by name
    count = re.search(r"CO2 emissions for (\d+)", caveats)
    assert named and len(named.group(1).split("; ")) == int(count.group(1))
    assert re.search(  # the grey of the map, by name: 东莞 is no county of the panel
        r"<summary>The map&#x27;s \d+ areas with no forecast \(grey\): [^<]*cities without counties \(东莞市 441900,"
        r" 中山市 442000, 儋州市 460400, 嘉峪关市 620200\)",
        caveats,
    )
    assert "data_manifest_sha256" in text
    for model in ("lightgbm", "logistic", "spatial_neighbors", "prior"):  # the backtest against the baselines
        assert re.search(rf"<tr><td>{model}</td><td>0\.\d{{3}}</td>", text)  # the tests run no bootstrap
    assert re.search(
        r"mode model(&#x27;|')s weight is 0:|weigh the mode model [01]\.\d\d", text
    )  # what the mode column rests on
    # words, not column names, for a strategist
    assert "Newest temporal fold (new belts of 2016)" in text and "temporal_2016" not in text
    assert re.search(
        r"LightGBM scored average precision 0\.\d{3}, precision at 50 0\.\d{3}, .* Brier score 0\.\d{4}", text
    )
    assert "A county counts as a belt in a year when Taobao villages ≥ 1." in caveats
    assert "<h1>E-commerce industrial belts: forecast as of 2020</h1>" in text  # 2020's outcome was not trained on
    guide = text[text.index("How to read these tables") : text.index('id="drivers"')]
    for model in ("lightgbm", "logistic", "spatial_neighbors", "prior"):  # every model of the tables in words
        assert f"<li><b>{model}</b>: " in guide
    assert re.search(r"<b>P@50</b>: of the 50 counties ranked highest, the share that became belts \(LightGBM", guide)
    top = text[text.index('id="top-candidates"') : text.index('id="by-province"')]
    if "mode model&#x27;s weight is 0" in text:  # then no county's mode is forecast, and the column says so
        assert "<td>not forecast</td>" in top and "(industrial transformation)</td>" not in top
        assert MODE_HTML in text[text.index('id="mode-mix"') :]
        assert "The mode column reads &quot;not forecast&quot;" in top and "mode column is the same" not in top
    else:
        assert MODE_HTML in top
    assert "<td>industrial_transformation</td>" not in top
    # every province's best candidates, for a strategist who covers a region
    provinces = text[text.index('id="by-province"') : text.index('id="county-map"')]
    assert provinces.count("<details>") >= 30
    assert re.search(r'<summary><span lang="zh-Hans">河北省</span>: \d+ candidates, best rank 1</summary>', provinces)
    # a belt of an earlier roster is marked wherever it is listed: in its province's table and on the map
    assert "<small>330503</small> (a belt in 2015)</td>" in provinces
    county_map = text[text.index('id="county-map"') : text.index('id="mode-mix"')]
    assert re.search(
        r"<title>南浔区 330503 \(湖州市, 浙江省\) p_belt 0\.\d\d · rank \d+ \(a belt in 2015\)</title>", county_map
    )
    assert re.search(r"<title>东莞市 441900: no forecast", county_map)  # the grey areas named too
    # folded sections print unfolded: a printed page keeps the province tables and the lists
    assert "@media print{" in text and "details::details-content{content-visibility:visible}" in text
    # read first: the period forecast, and how often the top was right; then a table a screen reader can follow
    first = text[text.index('id="read-first"') : text.index('id="top-candidates"')]
    assert "The forecast is of 2021: whether a county becomes a belt by then." in first
    assert "2021 is over: this page forecasts a period already past from labels of 2016" in first
    assert re.search(
        r"How often the top was right \(new belts of 2016\): \d+ of the top 25 and \d+ of the top 50", first
    )
    assert '<html lang="en">' in text and '<th scope="col">prefecture</th>' in top
    assert (
        '<span lang="zh-Hans">南浔区</span> <small>330503</small> (a belt in 2015)</td><td lang="zh-Hans">湖州市</td>'
        in top
    )
    assert "Top drivers are the (up to three) indicators that raise the county&#x27;s p_belt most" in top
    assert "南浔区 330503 (2015)" in top  # named under the table's lead
    # a belt of 2015 that is in no roster of 2016 is a candidate again, and marked so (南浔区 in the top 50)
    assert re.search(r"Marked &quot;a belt in ...&quot;: \d+ of them were belts in an earlier period", top)


def test_report_is_self_contained(page):
    _, text = page
    assert not re.search(r'(src|href)="(https?:)?//', text)  # nothing fetched from a network
    assert "<script" not in text


def test_report_is_logged_to_a_report_run_naming_the_version(page, champion_settings):
    from mlflow.tracking import MlflowClient

    from pipelines.tracking import version_by_alias

    uri = champion_settings.mlflow.tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = version_by_alias(client, "county-belt", "champion")
    experiment = client.get_experiment_by_name(champion_settings.mlflow.experiment).experiment_id
    runs = client.search_runs([experiment], "attributes.run_name = 'report'")
    logged = [
        r for r in runs if "report/report.html" in {a.path for a in client.list_artifacts(r.info.run_id, "report")}
    ]
    assert len(logged) == 1
    tags = logged[0].data.tags
    assert tags["model_version"] == str(champion.version) and tags["model_run_id"] == champion.run_id
    assert logged[0].data.params["as_of"] == "2020"
    assert not client.list_artifacts(champion.run_id, "report")  # the training run stays as trained


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (CI installs it)")
def test_report_renders_in_headless_chromium_without_console_errors(page, tmp_path):
    path, _ = page
    png = tmp_path / "report.png"
    result = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
         "--v=0", "--window-size=1200,3000", f"--screenshot={png}", path.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert png.stat().st_size > 50_000
    console_errors = [line for line in result.stderr.splitlines() if "CONSOLE" in line and "ERROR" in line.upper()]
    assert not console_errors
