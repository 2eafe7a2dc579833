"""``promote --rollback VERSION --reason TEXT``: champion back to a version as it was trained."""

from __future__ import annotations

import pytest
from rich.console import Console
from typer.testing import CliRunner

from pipelines import cli, promote
from pipelines.config import load_settings
from pipelines.promote import PromotionError
from tests.pipelines.jobs import NAME, alias_targets

pytestmark = pytest.mark.realdata
QUIET = Console(quiet=True)


def test_a_rollback_serves_the_version_as_trained_and_records_why(own_store):
    settings = load_settings(own_store.config())
    forced = promote.run(settings, True, "the 61-tree model first", QUIET)  # champion 1 -> 2
    assert forced.promoted and alias_targets(own_store, {})["champion"] == "2"
    before = len(own_store.client().search_model_versions(f"name = '{NAME}'"))

    decision = promote.rollback(settings, "1", "version 2 misranks a province", QUIET)

    assert decision.champion == "2" and decision.challenger == "1"
    assert alias_targets(own_store, {})["champion"] == "1"
    assert len(own_store.client().search_model_versions(f"name = '{NAME}'")) == before  # no refit
    tags = own_store.client().get_model_version(NAME, "1").tags
    assert tags["promotion_reason"] == "rollback: version 2 misranks a province"
    assert tags["promotion_compared_with"] == "2"


@pytest.mark.parametrize(
    ("version", "reason", "message"),
    [
        ("99", "why", r"--rollback must name a registered version of 'county-belt'; got '99'"),
        ("1", "  ", r"--rollback needs --reason TEXT saying why; got '  '"),
    ],
)
def test_a_bad_rollback_is_named_and_moves_nothing(own_store, version, reason, message):
    settings = load_settings(own_store.config())
    with pytest.raises(PromotionError, match=message):
        promote.rollback(settings, version, reason, QUIET)
    assert alias_targets(own_store, {})["champion"] == "1"


def test_rollback_with_force_is_refused(own_store):
    arguments = ["promote", "--config", str(own_store.config()), "--rollback", "1", "--force", "--reason", "x"]
    result = CliRunner().invoke(cli.app, arguments, terminal_width=200)
    assert result.exit_code == 1
    assert "error: --rollback takes no --force" in result.output
