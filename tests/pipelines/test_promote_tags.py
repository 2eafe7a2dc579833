"""A decision recorded on a version replaces the tags of an earlier decision on it."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from pipelines.promote import Decision, record


def test_a_later_decision_deletes_the_refit_tags_it_does_not_set(tmp_path):
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.create_registered_model("m")
    for _ in range(3):
        client.create_model_version("m", source=str(tmp_path))
    tagged = {
        "promotion_champion_now": "3",
        "promotion_champion_refit_of": "1",
        "promotion_served_refit": "3",  # an earlier release's name of promotion_champion_now
    }
    for key, value in tagged.items():
        client.set_model_version_tag("m", "2", key, value)

    record(client, "m", Decision(True, "forced: a reason", "2", "1", {}))

    tags = client.get_model_version("m", "2").tags
    assert not set(tagged) & set(tags)
    assert tags["promotion_decision"] == "promoted"

    record(client, "m", Decision(False, "AP behind", "2", "1", {}, refit="3"))

    tags = client.get_model_version("m", "2").tags
    assert (tags["promotion_champion_now"], tags["promotion_champion_refit_of"]) == ("3", "1")
