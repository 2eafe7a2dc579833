"""The command line refuses bad option values before any job runs, naming the option, the range
and the value given."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pipelines import backtest, cli, report, score, serve, tune


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["serve", "--workers", "0"], "Invalid value for '--workers': must be at least 1; got 0"),
        (["serve", "--port", "70000"], "Invalid value for '--port': must be within 1..65535; got 70000"),
        (["tune", "--trials", "0"], "Invalid value for '--trials': must be at least 1; got 0"),
        (
            ["report", "--out", "reports/"],
            "Invalid value for '--out': must be a file path, not a folder; got 'reports/'",
        ),
        (["score", "--out", "out/"], "Invalid value for '--out': must be a file path, not a folder; got 'out/'"),
        (["backtest", "--out", "b/"], "Invalid value for '--out': must be a file path, not a folder; got 'b/'"),
    ],
)
def test_a_bad_option_value_is_named_and_nothing_runs(monkeypatch, arguments, message):
    for job in (serve, tune, report, score, backtest):
        monkeypatch.setattr(job, "run", lambda *args: pytest.fail("a job ran with a bad option"))

    result = CliRunner().invoke(cli.app, arguments, terminal_width=200)

    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_the_help_states_the_ranges():
    result = CliRunner().invoke(cli.app, ["serve", "--help"], terminal_width=200)

    assert result.exit_code == 0
    assert "1..65535" in result.output and "at least 1" in result.output
