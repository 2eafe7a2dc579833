"""The validated config object and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from features.errors import BeltcastError, ConfigError
from pipelines.cli import _fail
from pipelines.config import Settings, load_settings


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
    with pytest.raises(ConfigError, match=r"codes\.target_vintage: .*integer.*got 'twenty'"):
        load_settings(path)


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
        _fail(BeltcastError("the panel lacks 1 [belts_within_50km]; study = NAME under [tune]"))
    assert "lacks 1 [belts_within_50km]; study = NAME under [tune]" in capsys.readouterr().out
