"""The validated config object and its errors."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import typer
from pydantic import ValidationError

from features.errors import BeltcastError, ConfigError
from features.platform import RULE_METRICS, PlatformMetrics, rule_metrics
from pipelines.cli import _fail
from pipelines.config import PLATFORM_RULE_METRICS, PlatformConditionSettings, Settings, load_settings


def test_defaults_are_documented_values():
    settings = load_settings(None)
    assert settings.codes.target_vintage == 2020
    assert settings.mlflow.tracking_uri == "sqlite:///mlruns/mlflow.db"
    assert settings.mlflow.registered_model == "county-belt"
    assert settings.data.cache_dir == Path("data/raw")


def test_a_file_overrides_only_what_it_names(tmp_path):
    path = tmp_path / "beltcast.toml"
    path.write_text('[codes]\ntarget_vintage = 2016\n[data]\ncache_dir = "/tmp/cache"\n')
    settings = load_settings(path)
    assert settings.codes.target_vintage == 2016
    assert settings.data.cache_dir == Path("/tmp/cache")
    assert settings.panel == Settings().panel


def test_a_wrong_type_names_the_key_and_the_value(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[codes]\ntarget_vintage = "twenty"\n')
    with pytest.raises(ConfigError, match=r"codes\.target_vintage: must be a number, not text .*got 'twenty'"):
        load_settings(path)


TEXT = r"must be a number, not text \(write it without quotes\)"
FRACTION = r"must be a whole number \(write it without a decimal point\)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[platform]\nhorizon = "1"\n', rf"platform\.horizon: {TEXT}; got '1'"),
        ("[tune]\ntrials = 3.0\n", rf"tune\.trials: {FRACTION}; got 3\.0"),
        ('[[platform.conditions]]\nmetric = "gmv_annual_cny"\nop = ">="\nthreshold = "1e8"\n',
         rf"platform\.conditions\[0\]\.threshold: {TEXT}; got '1e8'"),
    ],
)  # fmt: skip
def test_a_number_written_as_text_or_a_whole_number_as_a_fraction_is_refused(tmp_path, text, message):
    # pydantic read "1" as 1 and 3.0 as 3, where the README promises that a wrong type names the key
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_settings(path)


def test_a_whole_number_for_a_fraction_is_read():
    settings = Settings.model_validate({"promote": {"ap_tolerance": 0}, "model": {"bootstrap": 0}})
    assert settings.promote.ap_tolerance == 0.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[model]\nseed = true\n", r"model\.seed: must be a number or text, not true/false; got True"),
        (
            '[[labels.conditions]]\nmetric = "taobao_villages"\nop = ">="\nthreshold = inf\n',
            r"labels\.conditions\[0\]\.threshold: Input should be a finite number; got inf",
        ),
        ('[tune]\nstudy = ""\n', r"tune\.study: String should have at least 1 character; got ''"),
        (
            '[outputs]\ncsv_encoding = "gbk"\n',
            r"outputs\.csv_encoding: Input should be 'utf-8' or 'utf-8-sig'; got 'gbk'",
        ),
        ('[mlflow]\nexperiment = ""\n', r"mlflow\.experiment: String should have at least 1 character; got ''"),
        ('[scoring]\ncompiled = "no"\n', r"scoring\.compiled: must be true or false \(without quotes\); got 'no'"),
        ("[scoring]\ncompiled = 0\n", r"scoring\.compiled: must be true or false \(without quotes\); got 0"),
        (
            "[scoring]\ncompiled_cache_dir = true\n",
            r"scoring\.compiled_cache_dir: must be a number or text, .*; got True",
        ),
        ("[model]\nseed = -1\n", r"model\.seed: Input should be greater than or equal to 0; got -1"),
        (
            '[model]\nparams_file = ""\n',
            r"model\.params_file: must be a path \(an empty one would mean the current folder\); got ''",
        ),
        ('[outputs]\ndir = " "\n', r"outputs\.dir: must be a path .*; got ' '"),
        ('[data]\nmirror_dir = ""\n', r"data\.mirror_dir: must be a path .*; got ''"),
        (
            "[model]\nseed = 4294967296\n",
            r"model\.seed: Input should be less than or equal to 1000000000; got 4294967296",
        ),
        (
            '[mlflow]\nregistered_model = "o\'brien"\n',
            r"mlflow\.registered_model: must be letters, digits, '_', '\.' or '-' \(no space, quote, slash or @\);"
            r" got \"o'brien\"",
        ),
        ('[mlflow]\nregistered_model = "belts@v2"\n', r"mlflow\.registered_model: must be letters, .*; got 'belts@v2'"),
        (
            '[platform]\nintensive = ["refund_rate", "refund_rate"]\n',
            r"platform\.intensive: .*must name each further metric column once; got \['refund_rate'\] more than once",
        ),
    ],
)
def test_a_value_of_the_right_type_but_no_sense_names_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_settings(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[model]\nparams_file = "data/raw/areacodes/result.csv"\n',
            r"model\.params_file must be a path outside data/raw, the raw-data folder \(\[data\] cache_dir\),"
            r" whose files are checked against their sha256; got data/raw/areacodes/result\.csv$",
        ),
        ('[model]\nparams_file = "data/features/panel.parquet"\n', r"outside data/features, the features folder"),
        ('[model]\nparams_file = "mlruns/mlflow.db"\n', r"outside mlruns, the MLflow store's folder"),
        ('[model]\nparams_file = "mlruns/artifacts/tuned_params.json"\n', r"outside mlruns, the MLflow store's"),
        ('[outputs]\ndir = "data/features/outputs"\n', r": outputs\.dir must be a path outside data/features, the"),
        ('[mlflow]\ntracking_uri = "sqlite:///mlflow.db"\n[model]\nparams_file = "mlflow.db"\n',
         r"model\.params_file must be a path outside mlflow\.db, a file of the MLflow store"),
    ],
)  # fmt: skip
def test_a_configured_output_among_the_files_beltcast_reads_is_refused_naming_the_key(tmp_path, text, message):
    # tune --trials 0 with params_file = "data/raw/areacodes/result.csv" replaced a raw file with JSON
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_settings(path)


@pytest.mark.parametrize(
    "text",
    [
        "",  # params_file mlruns/tuned_params.json, in the store's folder mlruns: the default
        '[model]\nparams_file = "mlruns/demo/tuned_params.json"\n'  # the README's demo
        '[mlflow]\ntracking_uri = "sqlite:///mlruns/demo/mlflow.db"\n',
        '[mlflow]\ntracking_uri = "sqlite:///mlflow.db"\n[model]\nparams_file = "tuned_params.json"\n',
        '[mlflow]\ntracking_uri = "http://mlflow.internal:5000"\n[model]\nparams_file = "mlruns/x.json"\n',
    ],
)
def test_the_default_layout_and_a_store_beside_the_project_keep_their_parameters(tmp_path, text):
    path = tmp_path / "beltcast.toml"
    path.write_text(text, encoding="utf-8")
    settings = load_settings(path)
    settings.check_output(settings.outputs.dir / "scores_2020.csv", "--out")


def test_a_config_path_that_is_a_directory_says_so(tmp_path):
    with pytest.raises(ConfigError, match=rf"config file {tmp_path} is a directory; expected a TOML file"):
        load_settings(tmp_path)


def test_an_unknown_key_is_an_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[mlflow]\ntracking_url = 'x'\n")
    with pytest.raises(ConfigError, match=r"mlflow\.tracking_url: Extra inputs are not permitted"):
        load_settings(path)


def test_a_target_outside_the_code_years_is_an_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[codes]\ntarget_vintage = 2030\n")
    with pytest.raises(ConfigError, match="target_vintage must lie within"):
        load_settings(path)


def test_a_config_saved_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "notepad.toml"
    path.write_bytes("\ufeff[model]\nseed = 7\n".encode())
    assert load_settings(path).model.seed == 7


def test_broken_toml_and_missing_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[codes\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "absent.toml")


def test_settings_are_frozen():
    with pytest.raises(ValueError, match="frozen"):
        Settings().codes.target_vintage = 2016  # type: ignore[misc]


def test_an_error_prints_its_brackets_as_text(capsys):
    # "[tune]" and a list of names are text in an error message, not console markup
    with pytest.raises(typer.Exit):
        _fail(str(BeltcastError("the panel lacks 1 [belts_within_50km]; study = NAME under [tune]")))
    assert "lacks 1 [belts_within_50km]; study = NAME under [tune]" in capsys.readouterr().err


def test_a_misspelt_label_metric_names_the_condition_the_metrics_and_the_value(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text('[[labels.conditions]]\nmetric = "taobao_vilages"\nop = ">="\nthreshold = 1\n')
    with pytest.raises(
        ConfigError,
        match=r"invalid setting\(s\): labels\.conditions\[0\]\.metric: must be a variable of the public label source "
        r"\(the Taobao "
        r"rosters\), one of \['taobao_towns', 'taobao_villages'\]; got 'taobao_vilages'$",
    ):
        load_settings(path)


def test_a_misspelt_platform_metric_names_the_condition_the_metrics_and_the_value(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text(
        "[platform]\nmin_met = 1\n"
        '[[platform.conditions]]\nmetric = "gmv_annual_cny"\nthreshold = 1e8\n'
        '[[platform.conditions]]\nmetric = "gmv_annual"\nthreshold = 1e8\n'
    )
    with pytest.raises(
        ConfigError,
        match=r"invalid setting\(s\): platform\.conditions\[1\]\.metric: must be a metric computed from the platform "
        r"metrics file, "
        r"one of \['active_merchants', 'gmv_annual_cny', 'gmv_growth_yoy'\]; got 'gmv_annual'$",
    ):
        load_settings(path)


def test_a_condition_built_in_code_is_checked_too():
    with pytest.raises(ValidationError, match="must be a metric computed from the platform metrics file"):
        PlatformConditionSettings(metric="gmv_annual", threshold=1e8)


def test_the_configs_platform_metrics_are_those_the_code_computes():
    synthetic = pd.DataFrame({"county_code": ["371721"], "period": [8100], "category": [None], "gmv_cny": [1.0],
                              "active_merchants": [1.0]})  # fmt: skip
    computed = rule_metrics(PlatformMetrics(synthetic, "quarterly")).columns[2:]
    assert PLATFORM_RULE_METRICS == tuple(RULE_METRICS) == tuple(computed)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[platfrom]\nmin_met = 1\n", r"platfrom: Extra inputs are not permitted \(did you mean 'platform'\?\); got"),
        ("[model]\nsed = 1\n", r"model\.sed: Extra inputs are not permitted \(did you mean 'seed'\?\); got 1$"),
        (
            "[[labels.conditions]]\nmetric = 'taobao_villages'\nthresold = 1\nthreshold = 1\n",
            r"labels\.conditions\[0\]\.thresold: Extra inputs are not permitted \(did you mean 'threshold'\?\)",
        ),
        ("[labels]\nmin_met = 2\n", r"labels: min_met must be <= the number of conditions \(1\); got 2$"),
    ],
)
def test_a_misspelt_key_is_given_the_nearest_and_our_own_message_says_got_once(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_settings(path)


def test_a_config_saved_as_gbk_names_the_line(tmp_path):
    path = tmp_path / "gbk.toml"
    path.write_bytes("[model]\nseed = 1  # 随机种子\n".encode("gbk"))
    with pytest.raises(
        ConfigError,
        match=r"must be UTF-8 encoded \(re-save it as UTF-8; .*\); got a byte UTF-8 cannot"
        r" read on line 2$",
    ):
        load_settings(path)


def test_a_gbk_line_is_counted_after_a_byte_order_mark(tmp_path):
    path = tmp_path / "bom_gbk.toml"
    path.write_bytes(b"\xef\xbb\xbf[model]\n\n\n# " + "中文".encode("gbk") + b"\n")
    with pytest.raises(ConfigError, match=r"cannot read on line 4$"):
        load_settings(path)


def test_the_readme_s_defaults_are_the_defaults_and_name_every_key(tmp_path):
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("\n## Configuration\n", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "defaults.toml").write_text(block, encoding="utf-8")

    assert load_settings(tmp_path / "defaults.toml") == load_settings(None)
    for section, field in Settings.model_fields.items():  # each key set, commented out, or a table
        text = re.split(rf"^\[{section}\]", block, maxsplit=1, flags=re.M)[1].split("\n[", 1)[0]
        shown = {*re.findall(r"^#? ?(\w+) =", text, re.M), *re.findall(rf"\[\[{section}\.(\w+)\]\]", block)}
        assert set(field.annotation.model_fields) - shown == set(), section
