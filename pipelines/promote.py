"""``beltcast promote``: challenger vs champion on the same backtest; ``champion`` moves only when
the gate says the challenger is not worse beyond the seed's noise.

The gate: the challenger's average precision is not lower than the champion's by more than
``promote.ap_tolerance``, and its Brier score is not higher than the champion's by more than the
share ``promote.brier_tolerance`` of it (room for the seed's noise). Both figures come from the same fold
spec on the same panel: a version backtested on the current panel with the current folds gives
its stored tags; any other is backtested again now, its parameters fitted on the current panel
with the seed it was trained with (its ``seed`` tag), as the champion's refit is.
``champion`` always points to a whole registered version and is moved last, so a crash never
leaves the registry without a champion.

The champion always ends fitted on the current panel. When the panel has changed since the
winner was trained (a new quarter of data, rebuilt features) the gate has judged the winner's
parameters refitted on the current panel; that refit is what gets served: ``promote`` trains it
as a new version (tagged ``refit_of``) before moving any alias, then points ``champion`` at it
(and ``challenger`` too when the winner was the challenger). Otherwise a kept champion would go
on serving its old panel, which does not cover the new period. A failed refit moves nothing.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, replace

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from rich.console import Console

from features.errors import BeltcastError
from features.periods import frequency_of, label_of
from models.backtest import backtest_emergence
from models.catalog import emergence_models
from models.datasets import emergence_transitions
from pipelines import train
from pipelines.backtest import check_folds, fold_spec, load_panel
from pipelines.config import Settings
from pipelines.terminal import printable
from pipelines.tracking import (
    CHALLENGER,
    CHAMPION,
    LAST_PERIOD_TAG,
    first_line,
    frame_hash,
    last_period,
    registry_lock,
    start_run,
    use_tracking,
    version_by_alias,
)

TAGS = "version tags (same panel, same folds)"


class PromotionError(BeltcastError):
    """Promotion cannot proceed (no challenger, or a forced promotion without a reason)."""


@dataclass(frozen=True)
class Decision:
    """The outcome of the gate, with the figures it compared."""

    promoted: bool
    reason: str
    challenger: str
    champion: str | None
    figures: dict
    refit: str | None = None


def run(settings: Settings, force: bool, reason: str | None, console: Console) -> Decision:
    """Compare, decide, move the alias if warranted, record the decision as tags; refit the
    champion on the current panel if it was trained on another."""
    if force and not (reason or "").strip():
        raise PromotionError(f"--force needs --reason TEXT saying why the gate is overridden; got {reason!r}")
    if reason is not None and not force:
        raise PromotionError(f"--reason is recorded only with --force (the gate decides otherwise); got {reason!r}")
    client = use_tracking(settings, existing=True)
    with registry_lock(settings):  # promotes take turns: each decides on the aliases the last one left
        with start_run("promote", nested=mlflow.active_run() is not None):
            decision = _promote(client, settings, force, reason, console)
            _log_decision(decision)
        return decision


def rollback(settings: Settings, version: str, reason: str | None, console: Console) -> Decision:
    """Point ``champion`` at ``version`` as it was trained: no gate, no refit (the current panel
    may be what went wrong); the decision is recorded on the version and in a ``promote`` run.
    The version serves the periods of its own panel only."""
    if not (reason or "").strip():
        raise PromotionError(f"--rollback needs --reason TEXT saying why; got {reason!r}")
    client = use_tracking(settings, existing=True)
    name = settings.mlflow.registered_model
    with registry_lock(settings), start_run("promote", nested=mlflow.active_run() is not None):
        try:
            target = client.get_model_version(name, str(version))
        except MlflowException as err:
            raise PromotionError(
                f"--rollback must name a registered version of {name!r}; got {version!r} ({first_line(err)})"
            ) from err
        champion = version_by_alias(client, name, CHAMPION)
        decision = Decision(
            True, f"rollback: {reason}", str(target.version), None if champion is None else str(champion.version), {}
        )
        record(client, name, decision)
        client.set_registered_model_alias(name, CHAMPION, str(target.version))
        _log_decision(decision)
    reaches = target.tags.get(LAST_PERIOD_TAG)
    console.print(
        printable(
            f"promote: {name} champion -> version {target.version} as trained (was {decision.champion or 'none'});"
            f" it forecasts up to {reaches or 'the newest period of its own panel'}"
        )
    )
    return decision


def _promote(client: MlflowClient, settings: Settings, force: bool, reason: str | None, console: Console) -> Decision:
    name = settings.mlflow.registered_model
    challenger = version_by_alias(client, name, CHALLENGER)
    if challenger is None:
        raise PromotionError(f"registered model {name!r} has no {CHALLENGER!r} version; run `beltcast train`")
    champion = version_by_alias(client, name, CHAMPION)
    panel = load_panel(settings)
    check_folds(panel, settings)
    not_behind(champion, panel)
    panel_sha256 = frame_hash(panel)
    decision = decide(settings, challenger, champion, force, reason, panel, panel_sha256)
    winner = challenger if decision.promoted else champion
    served = str(winner.version)
    if not _fitted_on(winner, panel_sha256):
        served = refit(settings, winner, console)
        decision = replace(decision, refit=served)
    elif (
        not decision.promoted
        and winner.tags.get("refit_of")
        and train.restore_backtest(client, settings, served, winner.run_id, console, "promote")
    ):  # a kept champion that is a refit on this panel: the outputs' backtest stays its own, as the
        # promote that refitted it left it, not the rejected challenger's that train put back
        console.print(
            printable(
                f"promote: {settings.outputs.dir / 'backtest.json'} and its curves are again those of"
                f" version {served}, the champion kept"
            )
        )
    if decision.challenger != decision.champion or decision.refit is not None:
        record(client, name, decision)  # "already the champion", and nothing refitted: the record stays
    if str(winner.version) == str(challenger.version) and served != str(challenger.version):
        # the challenger's refit stands for it, so that the next promote finds it is the champion
        client.set_registered_model_alias(name, CHALLENGER, served)
    if champion is None or served != str(champion.version):
        client.set_registered_model_alias(name, CHAMPION, served)
    _print(console, name, decision)
    return decision


def not_behind(champion, panel: pd.DataFrame) -> None:
    """Refuse a panel that ends before the champion's: whatever won would be (re)fitted on it and
    served, and the forecast would no longer reach the champion's newest period."""
    newest, ends = last_period(champion), int(panel["as_of"].max())
    if newest is not None and frequency_of(newest) == frequency_of(ends) and ends < newest:
        raise PromotionError(
            f"the panel ends at {label_of(ends)}, before the champion's newest period {label_of(newest)}"
            f" (version {champion.version}); expected a panel up to {label_of(newest)} at least: build it"
            " again (`beltcast features build`, or `beltcast retrain --period` that period)"
        )


def refit(settings: Settings, version, console: Console) -> str:
    """Train ``version``'s parameters on the current panel (no alias moved); the new version's
    number. An identical refit already registered (same panel, parameters, seed, folds and code)
    is reused."""
    console.print(
        f"promote: version {version.version} was trained on another panel; "
        "its parameters are refitted on the current one, and the refit is served"
    )
    tags = {"refit_of": str(version.version), **provenance(version)}
    outcome = train.run(as_trained(settings, version), console, params=_params(version), alias=None, tags=tags)
    return outcome.version


def provenance(version: ModelVersion) -> dict[str, str]:
    """Where a version's parameters came from, for the run and version of its refit: the
    ``params_*`` tags of the run that trained it (file, sha256, study, store, trial, quarter), and
    ``params_of_version``, that version (only the latter when its run is gone)."""
    try:
        tags = MlflowClient().get_run(version.run_id).data.tags
    except MlflowException:  # a run deleted from the store: the version still says whose they are
        tags = {}
    copied = {key: value for key, value in tags.items() if key.startswith("params_") and key != "params_json"}
    return {**copied, "params_of_version": str(version.version)}


def as_trained(settings: Settings, version) -> Settings:
    """``settings`` with the seed ``version`` was trained with (its ``seed`` tag): a version is
    judged and refitted as it was trained, whatever seed the config has now (a changed seed would
    judge the champion as the challenger's twin)."""
    seed = _seed(settings, version)
    if seed == settings.model.seed:
        return settings
    return settings.model_copy(update={"model": settings.model.model_copy(update={"seed": seed})})


def _seed(settings: Settings, version) -> int:
    """A version's ``seed`` tag, or the configured seed for a version that has none."""
    recorded = version.tags.get("seed", "")
    return int(recorded) if recorded.lstrip("-").isdigit() else settings.model.seed


def _params(version) -> dict:
    """The LightGBM parameters a version was trained with."""
    if "params_json" not in version.tags:
        raise PromotionError(
            f"version {version.version} has no params_json tag, so it cannot be fitted again on the "
            "current panel; train it again, or promote with --force --reason"
        )
    return json.loads(version.tags["params_json"])


def _fitted_on(version, panel_sha256: str) -> bool:
    return version.tags.get("panel_sha256") == panel_sha256


def decide(
    settings: Settings,
    challenger,
    champion,
    force: bool,
    reason: str | None,
    panel: pd.DataFrame,
    panel_sha256: str,
) -> Decision:
    """Apply the gate (or the forced override) on ``panel`` (whose hash is ``panel_sha256``)."""
    if champion is None:
        return Decision(True, "first model: no champion yet", str(challenger.version), None, {})
    if champion.version == challenger.version:
        return Decision(
            False,
            "challenger is already the champion",
            str(challenger.version),
            str(champion.version),
            {},
        )
    if force:
        try:
            figures = compare(settings, challenger, champion, panel, panel_sha256)
        except PromotionError:  # a champion that cannot be judged again is overridden all the same
            figures = {}
        return Decision(True, f"forced: {reason}", str(challenger.version), str(champion.version), figures)
    gate = settings.promote
    figures = {
        **compare(settings, challenger, champion, panel, panel_sha256),
        "ap_tolerance": gate.ap_tolerance,
        "brier_tolerance": gate.brier_tolerance,
    }
    ap_floor = figures["champion_ap"] - gate.ap_tolerance
    brier_ceiling = figures["champion_brier"] * (1.0 + gate.brier_tolerance)
    ap_ok, brier_ok = figures["challenger_ap"] >= ap_floor, figures["challenger_brier"] <= brier_ceiling
    reasons = []
    if not ap_ok:
        reasons.append(
            f"AP {figures['challenger_ap']:.4f} < {ap_floor:.4f}"
            f" (champion {figures['champion_ap']:.4f} - {gate.ap_tolerance:g})"
        )
    if not brier_ok:
        reasons.append(
            f"Brier {figures['challenger_brier']:.5f} > {brier_ceiling:.5f}"
            f" (champion {figures['champion_brier']:.5f} + {gate.brier_tolerance * 100:g}%)"
        )
    why = "; ".join(reasons) or "AP and Brier within tolerance of the champion's"
    return Decision(ap_ok and brier_ok, why, str(challenger.version), str(champion.version), figures)


def compare(settings: Settings, challenger, champion, panel: pd.DataFrame, panel_sha256: str) -> dict:
    """AP and Brier of both versions on the same backtest of ``panel``."""
    spec = fold_spec(settings)
    current = {
        "panel_sha256": panel_sha256,
        "fold_spec": json.dumps(spec.to_dict(), sort_keys=True),
    }
    if all(_same_backtest(v, current) for v in (challenger, champion)):
        return {**_tagged("challenger", challenger), **_tagged("champion", champion), "source": TAGS}
    data = emergence_transitions(panel)
    figures, again = {}, []
    for role, version in (("challenger", challenger), ("champion", champion)):
        if _same_backtest(version, current):  # typically the challenger, just trained
            figures.update(_tagged(role, version))
            continue
        again.append(role)
        model = {"lightgbm": emergence_models(_params(version), _seed(settings, version))["lightgbm"]}
        result = backtest_emergence(model, data.X, data.y, data.periods, data.groups, spec, n_boot=0)
        metrics = result.metrics("temporal")["lightgbm"]
        # at the precision of the version tags, so that equal parameters compare equal
        figures[f"{role}_ap"], figures[f"{role}_brier"] = (
            float(f"{metrics['average_precision']:.10g}"),
            float(f"{metrics['brier']:.10g}"),
        )
    figures["source"] = f"backtested again on the current panel: {' and '.join(again)}"
    return figures


def _tagged(role: str, version) -> dict[str, float]:
    return {f"{role}_ap": float(version.tags["average_precision"]), f"{role}_brier": float(version.tags["brier"])}


def _same_backtest(version, current: dict) -> bool:
    run_panel = version.tags.get("panel_sha256")
    return run_panel == current["panel_sha256"] and version.tags.get("fold_spec") == current["fold_spec"]


def _log_decision(decision: Decision) -> None:
    """The decision as the active ``promote`` run's tags (``promotion.decision``, ``.reason``, ...,
    and ``model_version``, the challenger decided on) and ``promotion.json``."""
    tags = {f"promotion.{key.removeprefix('promotion_')}": value for key, value in decision_tags(decision).items()}
    mlflow.set_tags({**tags, "model_version": decision.challenger})
    mlflow.log_dict(dataclasses.asdict(decision), "promotion.json")


REFIT_TAGS = ("promotion_champion_now", "promotion_champion_refit_of")  # set only when the champion is a refit
FORMER_TAGS = ("promotion_served_refit",)  # an earlier release's name of promotion_champion_now: always deleted


def decision_tags(decision: Decision) -> dict[str, str]:
    """The decision and its figures as tag values."""
    tags = {
        "promotion_decision": _verdict(decision),
        "promotion_reason": decision.reason,
        "promotion_compared_with": decision.champion or "none",
        "promotion_figures": json.dumps(decision.figures, sort_keys=True),
    }
    if decision.refit is not None:  # the champion is now a refit: of the challenger, or of the champion kept
        tags["promotion_champion_now"] = decision.refit
        tags["promotion_champion_refit_of"] = decision.challenger if decision.promoted else decision.champion
    return tags


def _verdict(decision: Decision) -> str:
    """``promoted``, ``rejected``, or ``unchanged`` when the challenger was the champion already."""
    if decision.promoted:
        return "promoted"
    return "unchanged" if decision.challenger == decision.champion else "rejected"


def record(client: MlflowClient, name: str, decision: Decision) -> None:
    """Store the decision and its figures as tags of the challenger version (the latest decision
    on it, so a tag of an earlier decision that this one does not set is deleted; every decision is
    also the ``promote`` run's, in ``promotion.json``)."""
    tags = decision_tags(decision)
    earlier = client.get_model_version(name, decision.challenger).tags
    for key in (*REFIT_TAGS, *FORMER_TAGS):
        if key in earlier and key not in tags:
            client.delete_model_version_tag(name, decision.challenger, key)
    for key, value in tags.items():
        client.set_model_version_tag(name, decision.challenger, key, value)


def _print(console: Console, name: str, decision: Decision) -> None:
    verdict = "promoted to champion" if decision.promoted else "NOT promoted; champion stays"
    console.print(printable(f"promote: {name} version {decision.challenger} {verdict} ({decision.reason})"))
    if decision.refit is not None:
        winner = decision.challenger if decision.promoted else decision.champion
        console.print(f"promote: champion -> version {decision.refit} (version {winner} refitted on the current panel)")
    if decision.figures:
        console.print(printable(f"promote: figures {decision.figures}"), highlight=False)
