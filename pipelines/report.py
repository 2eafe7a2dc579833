"""``beltcast report``: one self-contained HTML page for strategists (opens offline, no CDN).

Top candidates, a county map coloured by ``p_belt``, the backtest's figures against every
baseline (with LightGBM's paired differences), its PR and calibration curves, global feature
importance, the mode mix of the top candidates, the data and caveats, the model version and lineage.
"""

from __future__ import annotations

import base64
import html
import json
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient
from rich.console import Console

from features.io import writable_target, write_atomic
from features.panel import LABELS_STALENESS, PER_FEATURE_STALENESS, feature_sources, staleness_columns
from features.periods import QUARTERLY, frequency_of, label_of
from features.taxonomy import MODES
from models.drivers import feature_name
from models.plots import fold_words
from pipelines.backtest import same_ranking
from pipelines.config import Settings
from pipelines.mapping import TopoMap, county_map_html
from pipelines.score import NO_MODE, ScoreError, as_of_period, default_as_of, former, score, trained_on_outcome
from pipelines.terminal import printable
from pipelines.tracking import load_pinned, model_uri, require_champion, start_run, use_tracking

TOP_N = 50
FIGURES = {
    "pr_curve": "backtest/pr_curve.png",
    "calibration_curve": "backtest/calibration_curve.png",
    "feature_importance": "explanations/feature_importance.png",
    "shap_summary": "explanations/shap_summary.png",
}
FIGURE_CAPTIONS = {
    "pr_curve": "Precision–recall on the newest fold: going down each model's ranking, the share of the counties"
    " so far that became belts (precision) against the share of all new belts found (recall)",
    "calibration_curve": "Calibration on the newest fold: forecast probability against the share of counties"
    " that became belts, counties binned by forecast; on the dotted diagonal, a probability means what it says",
    "shap_summary": "What drives p_belt: one dot per county and indicator, how far the indicator moved the county's"
    " log-odds of becoming a belt (right: towards), coloured by the indicator's value",
    "feature_importance": "Where the trees split: total gain per indicator (not what drives p_belt; see the text)",
}
MODEL_WORDS = {
    "lightgbm": "the forecast on this page (gradient-boosted trees, probabilities calibrated)",
    "lightgbm_uncalibrated": "the same trees before calibration: the same ranking, other probabilities",
    "logistic": "logistic regression on the same indicators, the econometric baseline",
    "spatial_neighbors": "counties ranked by the belts within 100 km, then by the distance to the nearest belt",
    "prior": "every county given the base rate: what chance alone ranks",
}
BACKTEST_JSON = "backtest/backtest.json"
LINEAGE_TAGS = (
    "git_sha",
    "data_manifest_sha256",
    "panel_sha256",
    "fold_spec",
    "seed",
    "target_vintage",
)
SOURCE_NAMES = {
    "staleness_co2": "CO₂ emissions (CEADs)",
    "staleness_viirs": "Night lights (VIIRS)",
    "staleness_census": "Census",
    "staleness_tudigong": "2020 census shares (tudigong)",
    "staleness_prefecture": "Prefecture GDP and population",
    "staleness_poverty": "Poverty counties",
    "staleness_platform": "Platform metrics",
}
METRIC_WORDS = {
    "average_precision": "average precision",
    "precision_at_50": "precision at 50",
    "recall_at_100": "recall at 100",
    "roc_auc": "ROC-AUC",
    "brier": "Brier score",
}
RULE_METRIC_WORDS = {  # the belt rule's metrics (features.labels, features.platform.rule_metrics)
    "taobao_villages": "Taobao villages",
    "taobao_towns": "Taobao towns",
    "gmv_annual_cny": "GMV over four quarters (yuan)",
    "active_merchants": "active merchants",
    "gmv_growth_yoy": "GMV growth year on year",
}
OP_WORDS = {">=": "≥", "<=": "≤", ">": ">", "<": "<", "==": "="}
MODE_NAMES = {
    "national_brand": "平台+国货崛起 (domestic-brand rise)",
    "cultural_heritage": "平台+文化传承 (cultural heritage)",
    "industrial_transformation": "平台+产业转型 (industrial transformation)",
    "local_specialty": "平台+地方特色 (local specialty)",
}


@dataclass(frozen=True)
class ReportContext:
    """Everything the page shows."""

    name: str
    version: str
    run_id: str
    as_of: int
    scores: pd.DataFrame
    figures: dict[str, str]
    lineage: dict[str, str]
    metrics: dict[str, str]
    mode_weight: float | None = None
    backtest: dict = field(default_factory=dict)
    labels_of: int | None = None  # the newest labelled period known at ``as_of`` (None: no label known)
    horizon: int | None = None
    trained_up_to: int | None = None  # the newest label, when the outcome of ``as_of`` was trained on
    data_notes: list[str] = field(default_factory=list)
    synthetic: bool = False  # trained on platform metrics marked synthetic
    belt_rule: str = ""  # the belt rule in words (:func:`belt_rule_text`)
    gaps: list[tuple[str, list[str]]] = field(default_factory=list)  # (indicators, county codes) (:func:`gap_counties`)


SYNTHETIC_WARNING = (
    "SYNTHETIC DATA: this model was trained on platform metrics marked synthetic (is_synthetic), made up"
    " for tests and demonstrations; its ranking describes no real county's e-commerce."
)


def run(settings: Settings, as_of: int | str | None, out: Path | None, console: Console) -> Path:
    """Score with the pinned champion, render the page, write it atomically, log it to a ``report``
    run tagged with the version it shows."""
    if out is not None:
        check_out(Path(out), settings)
    client = use_tracking(settings, existing=True)
    with start_run("report", nested=mlflow.active_run() is not None):
        context = gather(client, settings, as_of)
        mlflow.set_tags(
            {"model_uri": model_uri(context.name, context.version), "model_version": context.version,
             "model_run_id": context.run_id}
        )  # fmt: skip
        mlflow.log_param("as_of", label_of(context.as_of))
        topo = TopoMap.read(Path(settings.data.cache_dir) / "tudigong" / "counties-geo.topojson")
        path = Path(out or settings.outputs.dir / f"report_{label_of(context.as_of)}.html")
        if out is None:
            check_out(path, settings, "outputs.dir")  # named as the setting it came from
        page = render(context, topo)
        write_atomic(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
        mlflow.log_artifact(str(path), "report")
    console.print(printable(f"report: {context.name} v{context.version}, as of {label_of(context.as_of)} -> {path}"))
    return path


def check_out(out: Path, settings: Settings, option: str = "--out") -> None:
    """``--out`` names the HTML page: an ``.html`` path (another file of that name would be replaced)
    outside the folders of files beltcast reads (:meth:`~pipelines.config.Settings.check_output`)."""
    if out.suffix.lower() not in (".html", ".htm"):
        raise ScoreError(f"{option} must be an .html path (the report is one HTML page); got {out}")
    settings.check_output(out, option)
    writable_target(out, option)


def gather(client: MlflowClient, settings: Settings, as_of: int | str | None) -> ReportContext:
    """The champion's scores, figures, lineage and backtest metrics."""
    name = settings.mlflow.registered_model
    champion = require_champion(client, name, ScoreError)
    uri = model_uri(name, champion.version)
    model = load_pinned(uri, ScoreError, settings.scoring.as_model_config())
    year = as_of_period(as_of) if as_of is not None else default_as_of(model)
    scores = score(model, uri, year, str(champion.version), "pandas")
    run = client.get_run(champion.run_id)
    bundle = model.unwrap_python_model().bundle
    known = bundle.snapshot.loc[bundle.snapshot["as_of"] == year, "last_label_period"].dropna()
    labels_of = int(known.max()) if len(known) else None
    backtest = _backtest(client, champion.run_id)
    return ReportContext(
        name=name,
        version=str(champion.version),
        run_id=champion.run_id,
        as_of=year,
        scores=scores,
        figures=_figures(client, champion.run_id),
        lineage={tag: run.data.tags.get(tag, "") for tag in LINEAGE_TAGS},
        mode_weight=run.data.metrics.get("mode_model_weight"),
        backtest=backtest,
        labels_of=labels_of,
        data_notes=data_notes(bundle.snapshot, bundle.features, bundle.meta, year, labels_of, backtest),
        horizon=bundle.meta.get("horizon"),
        synthetic=bool(bundle.meta.get("synthetic_metrics")),
        belt_rule=belt_rule_text(bundle.meta, "quarter" if frequency_of(year) == QUARTERLY else "year"),
        gaps=gap_counties(bundle.snapshot[bundle.snapshot["as_of"] == year], bundle.features),
        trained_up_to=trained_on_outcome(model, year),
        metrics={
            k: v
            for k, v in champion.tags.items()
            if k
            in (
                "average_precision",
                "precision_at_50",
                "recall_at_100",
                "roc_auc",
                "brier",
                "newest_fold",
            )
        },
    )


def data_notes(
    snapshot: pd.DataFrame, features: list[str], meta: dict, as_of: int, labels_of: int | None, backtest: dict
) -> list[str]:
    """What the forecast rests on and where it is thin, from the model's own snapshot and backtest:
    the belt rule, how recent the labels are, how many new belts the newest fold tested, how old
    each source's data is at ``as_of`` and which indicators have gaps."""
    rows = snapshot[snapshot["as_of"] == as_of]
    unit = "quarter" if frequency_of(as_of) == QUARTERLY else "year"
    notes = [SYNTHETIC_WARNING] if meta.get("synthetic_metrics") else []
    if rule := belt_rule_text(meta, unit):
        notes.append(rule)
    if labels_of is not None and labels_of < as_of:
        villages = [f for f in features if f.startswith("villages_")]  # all 0 on a platform's panel
        nearby = "belts and Taobao villages" if villages and rows[villages].fillna(0).ne(0).any().any() else "belts"
        notes.append(
            f"The newest labels are of {label_of(labels_of)}: a county ranked here may have become a belt between"
            f" {label_of(labels_of)} and {label_of(as_of)} without this page knowing. The {nearby}"
            f" nearby are those of {label_of(labels_of)} too, and drivers from them say so."
        )
    newest = backtest.get("emergence", {}).get("models", {}).get("lightgbm", {})
    if "n_positive" in newest:
        notes.append(
            f"The newest backtest fold tested {newest['n']:,} counties, of which {newest['n_positive']} became belts:"
            " a few counties more or fewer found move its figures by several points, hence the intervals."
        )
    for source, columns in sorted(_dated_sources(features, rows).items()):
        if source != LABELS_STALENESS and (note := _age_note(source, rows[columns], as_of, unit)) is not None:
            notes.append(note)  # the labels' age is said above
    gaps = rows[features].isna().sum().sort_values(ascending=False, kind="stable")
    absent = [f for f, n in gaps.items() if n == len(rows)]
    if absent and len(rows):
        listed = ", ".join(map(feature_name, absent))
        notes.append(f"Not in the data as of {label_of(as_of)}, for any county: {listed}.")
    partial = [f for f, n in gaps.items() if 0 < n < len(rows)]
    if partial:
        notes.append(
            f"No data, out of {len(rows):,} counties: {'; '.join(_gap_entries(rows, partial))}. A gap is not filled"
            " in: the model's trees learned what it went with in the training years, so a driver may read \"no data"
            ' on ...".'
        )
    return notes


def belt_rule_text(meta: dict, unit: str) -> str:
    """The model's belt rule in words ("" when the model records none)."""
    rule = meta.get("belt_rule")
    if not rule:
        return ""
    conditions = [
        f"{RULE_METRIC_WORDS.get(c['metric'], c['metric'])} {OP_WORDS.get(c['op'], c['op'])} {_number(c['threshold'])}"
        for c in rule
    ]
    needed = meta.get("min_met", len(conditions))
    return (
        f"A county counts as a belt in a {unit} when {conditions[0]}." if len(conditions) == 1
        else f"A county counts as a belt in a {unit} when at least {needed} of these hold: {'; '.join(conditions)}."
    )  # fmt: skip


def _gap_entries(rows: pd.DataFrame, features: list[str]) -> list[str]:
    """Every feature with a gap, once, the features missing for the same counties together, the
    largest gaps first: ``prefecture GDP, ... for 32``; more than three features of one source as
    ``15 indicators from Census``."""
    return [f"{named} for {len(codes):,}" for named, codes in _gap_groups(rows, features)]


def gap_counties(rows: pd.DataFrame, features: list[str]) -> list[tuple[str, list[str]]]:
    """The counties of :func:`_gap_entries`' groups that lack some but not all counties' data: the
    indicators in words, and the county codes."""
    return [(named, codes) for named, codes in _gap_groups(rows, features) if 0 < len(codes) < len(rows)]


def _gap_groups(rows: pd.DataFrame, features: list[str]) -> list[tuple[str, list[str]]]:
    missing = rows[features].isna()
    together: dict[tuple, list[str]] = {}
    for feature in features:
        together.setdefault(tuple(missing.index[missing[feature]]), []).append(feature)
    sources = feature_sources(features, staleness_columns(rows))
    groups = []
    for counties, group in sorted(together.items(), key=lambda item: -len(item[0])):
        by_source: dict[str | None, list[str]] = {}
        for feature in group:
            by_source.setdefault(SOURCE_NAMES.get(sources.get(feature, "")), []).append(feature)
        parts = [
            f"{len(some)} indicators from {source}" if source and len(some) > 3 else ", ".join(map(feature_name, some))
            for source, some in by_source.items()
        ]
        codes = rows.loc[list(counties), "county_code"] if "county_code" in rows else list(counties)
        groups.append((", ".join(parts), [str(code) for code in codes]))
    return groups


def _dated_sources(features: list[str], rows: pd.DataFrame) -> dict[str, list[str]]:
    """The staleness columns of ``features`` by source (``staleness_prefecture``): the source's
    own column, or the columns of its features where each has one (:data:`PER_FEATURE_STALENESS`)."""
    columns = staleness_columns(rows)
    of_source = feature_sources(  # a model's snapshot keeps no column of a source dated feature by feature
        features,
        [c for c in columns if c.removeprefix("staleness_") not in features]
        + [f"staleness_{name}" for name in PER_FEATURE_STALENESS],
    )
    grouped: dict[str, list[str]] = {}
    for feature, column in feature_sources(features, columns).items():
        grouped.setdefault(of_source.get(feature, column), []).append(column)
    return {source: sorted(set(found)) for source, found in grouped.items()}


def _age_note(source: str, ages: pd.DataFrame, as_of: int, unit: str) -> str | None:
    """How old a source's data are as of ``as_of``: for most counties, and, by feature where its
    features are dated one by one, for the counties whose data are older; None when all are of
    ``as_of``."""
    if not ages.notna().any().any() or ages.max().max() <= 0:
        return None
    typical = int(ages.stack().median())
    said = (
        f"the newest data are of {label_of(as_of - typical)}, {typical} {unit}{'s' if typical > 1 else ''}"
        f" before {label_of(as_of)}" if typical > 0 else f"the data are of {label_of(as_of)} for most counties"
    )  # fmt: skip
    older = []
    for column in ages.columns:
        late = ages[column][ages[column] > typical]
        if len(late):
            oldest = label_of(as_of - int(late.max()))
            named = "" if column == source else f" {feature_name(column.removeprefix('staleness_'))}"
            older.append((-len(late), f"{named} for {len(late):,} counties (of {oldest} at the oldest)"))
    if older:
        by_feature = any(column != source for column in ages.columns)
        said += (", and older:" if by_feature else ", and older") + ";".join(text for _, text in sorted(older))
    name = SOURCE_NAMES.get(source) or feature_name(source.removeprefix("staleness_"))
    return f"{name[:1].upper()}{name[1:]}: {said}; drivers from them say so."


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def _figures(client: MlflowClient, run_id: str) -> dict[str, str]:
    """The run's PNG figures as base64 data URIs (embedded: the page needs no server)."""
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, artifact in FIGURES.items():
            try:
                local = Path(client.download_artifacts(run_id, artifact, tmp))
            except Exception:  # a run without that figure: the page says so
                continue
            figures[key] = "data:image/png;base64," + base64.b64encode(local.read_bytes()).decode()
    return figures


def _backtest(client: MlflowClient, run_id: str) -> dict:
    """The run's backtest JSON (empty for a run without one)."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(client.download_artifacts(run_id, BACKTEST_JSON, tmp))
        except Exception:  # a run without the file: the page says so
            return {}
        return json.loads(local.read_text(encoding="utf-8"))


def render(context: ReportContext, topo: TopoMap) -> str:
    """The whole page."""
    scores = context.scores
    top = scores.dropna(subset=["rank"]).sort_values("rank").head(TOP_N)
    sections = [
        _header(context),
        _section(
            "Top candidate counties",
            f"The {len(top)} counties most likely to become a belt within the horizon, among those not belts now. "
            + _mode_column_text(context.mode_weight)
            + DRIVERS_TEXT
            + _former_text(top),
            _table(top),
            "top-candidates",
        ),
        _section(
            "By province",
            f"The {BY_PROVINCE_N} candidates ranked highest in each province (ranks are national), for a"
            " strategist who covers a region; provinces in the order of their best-ranked candidate.",
            _by_province(scores),
            "by-province",
        ),
        _section(
            "Map",
            "Every candidate county coloured by p_belt (quantile classes of the candidates), the counties that are"
            " belts already in a colour of their own and outlined in black, the 50 candidates of the table outlined"
            " in red; hover for the county and its forecast.",
            county_map_html(topo, scores),
            "county-map",
        ),
        _section(
            "Mode mix of the top candidates" if context.mode_weight != 0 else "Mode mix",
            (
                "The development mode each top candidate would most likely follow. "
                if context.mode_weight != 0
                else "The modes' frequencies among the labelled belts: every county without a labelled mode is"
                " given them and the most frequent mode, so no county's own mode is forecast (a belt whose"
                " villages' products name a mode keeps that mode; the scores' mode_source column says which"
                " is which). "
            )
            + _mode_weight_text(context.mode_weight),
            _mode_mix(top) if context.mode_weight != 0 else _mode_frequencies(scores),
            "mode-mix",
        ),
        _section(
            "Backtest",
            _metrics_text(context.metrics, context.backtest),
            _baselines(context.backtest)
            + _images(context.figures, ("pr_curve", "calibration_curve"))
            + _mode_backtest(context.backtest, context.mode_weight),
            "backtest",
        ),
        _section(
            "What drives the forecast",
            "Contributions to the emergence model's log-odds on its training rows (the trees' SHAP values plus"
            " the linear margin's terms: the whole model, as in the drivers), and where the trees split (total"
            " gain). The trees start from the linear margin and fit only what it misses, so their gain does not"
            " rank what drives p_belt: the contributions do.",
            _images(context.figures, ("shap_summary", "feature_importance")),
            "drivers",
        ),
        _section(
            "Data and caveats",
            "What the forecast rests on, and where it is thin.",
            "<ul>"
            + "".join(f"<li>{html.escape(note)}</li>" for note in context.data_notes)
            + "</ul>"
            + _gap_lists(context.gaps, scores)
            + _no_forecast(topo, scores),
            "data-caveats",
        ),
        _section("Model and data lineage", "", _lineage(context), "lineage"),
    ]
    return _page(f"beltcast — belt {_page_kind(context)} as of {label_of(context.as_of)}", "".join(sections))


def _header(context: ReportContext) -> str:
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"<header><h1>E-commerce industrial belts: {_page_kind(context)} as of {label_of(context.as_of)}</h1>"
        f"<p>{context.name} version {html.escape(context.version)} · generated {generated}</p>"
        + (f'<p class="synthetic"><strong>{html.escape(SYNTHETIC_WARNING)}</strong></p>' if context.synthetic else "")
        + f"<p>{html.escape(_reading(context))}</p>"
        + _read_first(context, datetime.now(UTC).date())
        + "</header>"
    )


def _read_first(context: ReportContext, today: date) -> str:
    """What a strategist must know before acting on the ranking: the period forecast and whether it
    is already past, the belt rule, how often the top of the ranking was right in the backtest,
    and what the page cannot tell (modes, belt exposure without labels)."""
    as_of = context.as_of
    target = as_of + (context.horizon or 1)
    kind = "forecast" if context.trained_up_to is None else "in-sample check"
    points = [f"The {kind} is of {label_of(target)}: whether a county becomes a belt by then."]
    if period_end(target) < today and context.trained_up_to is None:
        labels = f" from labels of {label_of(context.labels_of)}" if context.labels_of is not None else ""
        points.append(
            f"{label_of(target)} is over: this page forecasts a period already past{labels}, with the data the"
            " model has. For a decision about the coming quarters, retrain it on recent platform metrics"
            " (beltcast retrain) and report again."
        )
    if context.belt_rule:
        points.append(context.belt_rule)
    newest = context.backtest.get("emergence", {}).get("models", {}).get("lightgbm", {})
    if {"precision_at_25", "precision_at_50", "base_rate"} <= set(newest):
        fold = fold_words(context.metrics.get("newest_fold", "?"))
        points.append(
            f"How often the top was right ({fold}): {round(newest['precision_at_25'] * 25)} of the top 25 and"
            f" {round(newest['precision_at_50'] * 50)} of the top 50 became belts, where"
            f" {newest['base_rate']:.1%} of the counties that were not belts did. Read the ranking as a short list"
            " to look into:"
            " counties a few places apart are interchangeable, and p_belt is shown to 2 decimals for that reason."
        )
    if context.labels_of is None:
        points.append(
            f"No belt label is known as of {label_of(as_of)}: the belt-exposure indicators (belts and villages"
            " nearby, the nearest belt) are unknown too, so this ranking rests on the other indicators alone."
        )
    if context.mode_weight == 0:
        points.append(
            "No mode is forecast for each county: the mode model did not predict modes better than their"
            f' frequencies among the labelled belts, so the mode column reads "{NO_MODE}" (see Mode mix).'
        )
    items = "".join(f"<li>{html.escape(point)}</li>" for point in points)
    return f'<div class="read-first"><h2 id="read-first">Read this first</h2><ul>{items}</ul></div>'


def period_end(index: int) -> date:
    """The last day of a period (a year, or a quarter)."""
    if frequency_of(index) == QUARTERLY:
        year, quarter = divmod(index, 4)
        return date(year, 3 * quarter + 3, 30 if quarter in (1, 2) else 31)
    return date(index, 12, 31)


def _page_kind(context: ReportContext) -> str:
    """A forecast, or, as of a period whose outcome the model was trained on, an in-sample check."""
    return "forecast" if context.trained_up_to is None else "in-sample check (not a forecast)"


def _reading(context: ReportContext) -> str:
    """What ``p_belt`` and the belt status mean on this page."""
    scores, as_of = context.scores, label_of(context.as_of)
    unit = "quarter" if frequency_of(context.as_of) == QUARTERLY else "year"
    horizon = context.horizon or 1
    candidates = int(scores["rank"].notna().sum())
    belts = int(scores["is_belt"].fillna(False).astype(bool).sum())
    unknown = int(scores["is_belt"].isna().sum())
    if context.labels_of is None:
        status = f"No belt label is known as of {as_of}, so every county is ranked as a candidate."
    else:
        status = (
            f"Belt status is by the newest labels known as of {as_of}, those of {label_of(context.labels_of)}:"
            f" {belts} counties were belts then and have no rank; {candidates} candidates are ranked"
            + (f", {unknown} of them of unknown status (no label for them)" if unknown else "")
            + "."
        )
    seen = (
        f" The model was trained on what happened after {as_of} (labels up to {label_of(context.trained_up_to)}):"
        " this page is an in-sample check, not a forecast."
        if context.trained_up_to is not None
        else ""
    )
    return (
        f"p_belt is the probability that a county becomes a belt within {horizon} {unit}{'s' * (horizon != 1)} of"
        f" {as_of}, calibrated"
        f" to the rate at which counties became belts in the {unit}s the model was trained on: where that rate"
        f" moves, p_belt is off in level, not in order, so read it as a ranking first. {status}{seen}"
    )


def _section(title: str, intro: str, body: str, anchor: str) -> str:
    lead = f"<p>{html.escape(intro)}</p>" if intro else ""
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{lead}{body}</section>'


def _table(top: pd.DataFrame) -> str:
    headers = ("rank", "county", "prefecture", "province", "p_belt", "mode", "top drivers")
    head = "".join(f'<th scope="col">{h}</th>' for h in headers)
    rows = "".join(
        f'<tr><td>{int(r.rank)}</td><td><span lang="zh-Hans">{html.escape(r.county_name)}</span>'
        f" <small>{r.county_code}</small>{html.escape(former(r.last_belt))}</td>"
        f'<td lang="zh-Hans">{html.escape(str(getattr(r, "prefecture", "") or ""))}</td>'
        f'<td lang="zh-Hans">{html.escape(r.province)}</td><td>{r.p_belt:.2f}</td>'
        f"<td>{html.escape(NO_MODE) if r.mode_source == 'frequencies' else _mode_html(r.mode)}</td>"
        f"<td>{html.escape(r.top_drivers)}</td></tr>"
        for r in top.itertuples()
    )
    caption = f"The {len(top)} candidates ranked highest, by p_belt"
    return (
        f'<table class="ranked"><caption>{caption}</caption><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
    )


CITIES_WITHOUT_COUNTIES = ("441900", "442000", "460400", "620200")  # 东莞, 中山, 儋州, 嘉峪关


def _gap_lists(gaps: list[tuple[str, list[str]]], scores: pd.DataFrame) -> str:
    """The counties that lack an indicator's data, by name, folded (the notes above give counts)."""
    if not gaps:
        return ""
    names = dict(zip(scores["county_code"].astype(str), scores["county_name"].astype(str), strict=True))
    items = "".join(
        f'<li>{html.escape(named)}: <span lang="zh-Hans">'
        + html.escape("; ".join(f"{names.get(code, '')} {code}".strip() for code in sorted(codes)))
        + "</span></li>"
        for named, codes in gaps
    )
    return f"<details><summary>The counties with no data, by indicator</summary><ul>{items}</ul></details>"


def _no_forecast(topo: TopoMap, scores: pd.DataFrame) -> str:
    """The map's areas (grey) that have no forecast, by name and code, folded: areas whose code is no
    county of the panel (the prefecture-level cities without counties, development zones and other
    areas of the map's 2021 divisions) and counties whose forecast could not be made."""
    forecast = set(scores.loc[scores["p_belt"].notna(), "county_code"].astype(str))
    areas = {
        str(g.get("properties", {}).get("CODE", "")): str(g.get("properties", {}).get("NAME", ""))
        for g in topo.objects["county"]["geometries"]
    }
    missing = sorted(code for code in areas if code not in forecast)
    if not missing:
        return ""
    cities = [f"{areas[code]} {code}" for code in missing if code in CITIES_WITHOUT_COUNTIES]
    named = "; ".join(f"{areas[code]} {code}" for code in missing)
    lead = (
        f"The map's {len(missing)} areas with no forecast (grey): areas whose code is no county of the panel"
        + (f", among them the prefecture-level cities without counties ({', '.join(cities)})" if cities else "")
        + ", development zones and other areas of the map's divisions, and any county whose forecast could not"
        " be made"
    )
    return f'<details><summary>{html.escape(lead)}</summary><p lang="zh-Hans">{html.escape(named)}</p></details>'


BY_PROVINCE_N = 10


def _by_province(scores: pd.DataFrame) -> str:
    """Each province's :data:`BY_PROVINCE_N` best-ranked candidates, in a ``<details>`` of its own."""
    candidates = scores.dropna(subset=["rank"]).sort_values("rank")
    blocks = []
    for province, rows in candidates.groupby("province", sort=False):
        head = "".join(f'<th scope="col">{h}</th>' for h in ("rank", "county", "prefecture", "p_belt"))
        body = "".join(
            f'<tr><td>{int(r.rank)}</td><td><span lang="zh-Hans">{html.escape(r.county_name)}</span>'
            f" <small>{r.county_code}</small>{html.escape(former(r.last_belt))}</td>"
            f'<td lang="zh-Hans">{html.escape(str(r.prefecture or ""))}</td>'
            f"<td>{r.p_belt:.2f}</td></tr>"
            for r in rows.head(BY_PROVINCE_N).itertuples()
        )
        blocks.append(
            f'<details><summary><span lang="zh-Hans">{html.escape(str(province))}</span>: {len(rows)} candidates,'
            f" best rank {int(rows['rank'].iloc[0])}</summary>"
            f'<table class="province"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></details>'
        )
    return "".join(blocks)


BAR_HEADER = '<th scope="col"><span class="sr">bar</span></th>'  # named for a screen reader, not shown


def _mode_html(mode: str) -> str:
    """A mode's name, its Chinese part marked as such (``<span lang="zh-Hans">平台+产业转型</span>
    (industrial transformation)``)."""
    name = MODE_NAMES.get(mode, mode)
    chinese, _, english = name.partition(" (")
    return f'<span lang="zh-Hans">{html.escape(chinese)}</span>' + (f" ({html.escape(english)}" if english else "")


def _mode_table(column: str, cells: dict[str, tuple[str, float]]) -> str:
    """One row per mode: its name, ``column``'s cell and a bar of the share (0..1) beside it."""
    rows = "".join(
        f"<tr><td>{_mode_html(mode)}</td><td>{text}</td>"
        f'<td><div class="bar" style="width:{300 * share:.0f}px"></div></td></tr>'
        for mode, (text, share) in cells.items()
    )
    head = f'<tr><th scope="col">mode</th><th scope="col">{column}</th>{BAR_HEADER}</tr>'
    return f'<table class="mode-mix"><thead>{head}</thead><tbody>{rows}</tbody></table>'


def _mode_mix(top: pd.DataFrame) -> str:
    counts = top["mode"].value_counts().reindex(list(MODES), fill_value=0)
    total = max(int(counts.sum()), 1)
    return _mode_table("top candidates", {mode: (str(n), n / total) for mode, n in counts.items()})


def _mode_frequencies(scores: pd.DataFrame) -> str:
    """The modes' probabilities every county is given when the mode model's weight is 0."""
    candidates = scores[scores["rank"].notna()]
    if candidates.empty or not all(f"p_{mode}" in scores for mode in MODES):
        return ""
    first = candidates.iloc[0]
    return _mode_table("frequency", {mode: (f"{first[f'p_{mode}']:.1%}", first[f"p_{mode}"]) for mode in MODES})


def _mode_weight_text(weight: float | None) -> str:
    if weight is None:
        return ""
    if weight == 0:
        return (
            "The mode model's weight is 0: in the cross-validation inside its training data, its features did "
            "not predict modes better than the modes' training frequencies (or there were too few belts or "
            "modes to try), so every county without a labelled mode gets those frequencies and the most frequent"
            " mode."
        )
    return f"Mode probabilities weigh the mode model {weight:.2f} against the modes' training frequencies."


DRIVERS_TEXT = (
    " Top drivers are the (up to three) indicators that raise the county's p_belt most (the trees' SHAP"
    " contributions, plus the linear margin's terms where the model has one), each with the county's value (most"
    ' of them against the median county of the period) and the period of any data older than it; "no data on'
    ' ..." is a gap the trees learned from. "Points" are percentage points of a share (manufacturing jobs +30'
    " points: a share of jobs in manufacturing 30 points above the median county's); a share of all belts in"
    " the same province or prefecture is the same for every county there, so it speaks for the place, not"
    " the county; CO2 emissions and night lights stand for industrial and economic activity."
)


def _former_text(top: pd.DataFrame) -> str:
    """Which of ``top`` were belts of an earlier roster, said once under the table's lead."""
    returning = top[top["last_belt"] != ""]
    if returning.empty:
        return ""
    named = ", ".join(f"{r.county_name} {r.county_code} ({r.last_belt})" for r in returning.itertuples())
    return (
        f' Marked "a belt in ...": {len(returning)} of them were belts in an earlier period and are not in the newest'
        f" labels ({named}); they are ranked as candidates again, and would be belts again, not new ones."
    )


def _mode_column_text(weight: float | None) -> str:
    if weight == 0:
        return (
            f'The mode column reads "{NO_MODE}": the mode model did not predict modes better than the modes\''
            " frequencies among the labelled belts (see Mode mix below), so no candidate's own mode is forecast."
        )
    return "The mode is the development mode the county would most likely follow."


def _metrics_text(metrics: dict[str, str], report: dict) -> str:
    """The newest temporal fold's headline figures, AP with its interval."""
    if not metrics:
        return "No backtest figures are stored with this version."
    fold = fold_words(metrics.get("newest_fold", "?"))
    interval = _interval(report.get("emergence", {}).get("models", {}).get("lightgbm", {}), "average_precision_ci")
    shown = ", ".join(
        f"{METRIC_WORDS.get(k, k)} {float(v):.{4 if k == 'brier' else 3}f}"
        + (interval if k == "average_precision" else "")
        for k, v in metrics.items()
        if k != "newest_fold"
    )
    return (
        f"Rolling-origin backtest. On the newest temporal fold ({fold}: trained on the transitions before it,"
        f" tested on its own, the one a strategist would have faced), LightGBM scored {shown} (90 % bootstrap"
        " interval in brackets). Read the intervals before the point values."
    )


def _baselines(report: dict) -> str:
    """Every model on the newest temporal fold and on the province hold-out, and LightGBM
    against each on the same resamples."""
    emergence = report.get("emergence", {})
    if not emergence.get("models"):
        return "<p>(no backtest table stored with this version)</p>"
    spatial = emergence.get("spatial", {})
    parts = [
        f"<h3>Newest temporal fold ({html.escape(fold_words(str(emergence.get('newest_fold', ''))))})</h3>",
        _fold_tables(emergence.get("models", {}), emergence.get("comparisons", {})),
    ]
    if spatial.get("models"):
        parts += [
            "<h3>Provinces held out</h3>",
            "<p>Whole provinces held out within the training years, in groups, one model per group: the model"
            " judged on places it has not seen. Ranking figures are computed within each group (P@50: the top 50"
            " of a group) and averaged. "
            + (
                f"LightGBM was tuned anew on each group's training provinces ({spatial['nested_tuning_trials']}"
                " trials).</p>"
                if spatial.get("nested_tuning_trials")
                else "The parameters were tuned on provinces held out within the same years, so this fold is not"
                " independent of the tuning; the newest temporal fold is.</p>"
            ),
            _fold_tables(spatial["models"], spatial.get("comparisons", {})),
        ]
    return "".join(parts) + _how_to_read(emergence)


def _how_to_read(emergence: dict) -> str:
    """What the backtest tables' models and figures mean, in words, with the newest fold's own numbers."""
    newest = emergence.get("models", {})
    ours = newest.get("lightgbm", {})
    example = ""
    if ours.get("precision_at_50") is not None:
        found = round(50 * float(ours["precision_at_50"]))
        example = f" (LightGBM's {float(ours['precision_at_50']):.2f}: {found} of its top 50 became belts)"
    base = ""
    if ours.get("n") and ours.get("n_positive") is not None:
        base = f" The newest fold's base rate is {int(ours['n_positive']) / int(ours['n']):.3f}: the AP of chance."
    models = "".join(
        f"<li><b>{name}</b>: {html.escape(MODEL_WORDS[name])}</li>" for name in MODEL_WORDS if name in newest
    )
    figures = (
        "<li><b>AP</b> (average precision): the precision of the ranking averaged over every new belt's place in it,"
        " 1 for all new belts on top; the figure that judges a short list." + base + "</li>"
        f"<li><b>P@50</b>: of the 50 counties ranked highest, the share that became belts{example}.</li>"
        "<li><b>R@100</b>: of the counties that became belts, the share ranked in the top 100.</li>"
        "<li><b>ROC-AUC</b>: the chance that a county that became a belt is ranked above one that did not"
        " (0.5: chance).</li>"
        "<li><b>Brier</b>: the mean squared gap between the probabilities and what happened (0 or 1);"
        " lower is better, and only calibrated probabilities do well.</li>"
    )
    return f'<h3>How to read these tables</h3><ul class="guide">{models}{figures}</ul>'


def _fold_tables(models: dict, comparisons: dict) -> str:
    """One fold's table of models, and of LightGBM's paired differences (a model that ranks the
    counties exactly as LightGBM does, e.g. its own uncalibrated scores on one fold, is named, not tabulated)."""
    clustered = any("average_precision_ci_clustered" in m for m in models.values())
    table = _grid(
        ("model", "AP [90 % interval]", *(["AP interval, provinces resampled"] if clustered else []), "P@50",
         "R@100", "ROC-AUC", "Brier"),
        [
            (
                name,
                _value(m, "average_precision") + _interval(m, "average_precision_ci"),
                *([_interval(m, "average_precision_ci_clustered").strip()] if clustered else []),
                _value(m, "precision_at_50", 2),
                _value(m, "recall_at_100"),
                _value(m, "roc_auc"),
                _value(m, "brier", 4),
            )
            for name, m in models.items()
        ],
    )  # fmt: skip
    same = [name for name, c in comparisons.items() if same_ranking(c)]
    shown = {name: c for name, c in comparisons.items() if name not in same}
    note = f"<p>{', '.join(same)}: the same ranking as LightGBM on this fold.</p>" if same else ""
    if not shown:
        return table + note
    note = (
        "<p>LightGBM against each other model on the same bootstrap resamples of the fold: the difference, "
        "its 90 % interval, and the share of resamples in which LightGBM is ahead. An interval that straddles "
        "zero means the two cannot be told apart on this fold.</p>"
    ) + note
    differences = _grid(
        ("LightGBM minus", "AP difference", "ahead", "P@50 difference", "ahead"),
        [
            (
                name,
                _value(c, "average_precision_diff", signed=True) + _interval(c, "average_precision_diff_ci", True),
                _share(c, "average_precision_diff_ahead"),
                _value(c, "precision_at_50_diff", 2, True) + _interval(c, "precision_at_50_diff_ci", True),
                _share(c, "precision_at_50_diff_ahead"),
            )
            for name, c in shown.items()
        ],
    )
    return table + note + differences


def _mode_backtest(report: dict, weight: float | None = None) -> str:
    """The mode model against the majority mode, by grouped cross-validation."""
    models = report.get("mode", {}).get("models", {})
    if not models:
        return ""
    served = (
        " The lightgbm row is the mode model as served; its weight is 0, so it gives the modes' training"
        " frequencies and repeats the majority's figures."
        if weight == 0
        else ""
    )
    table = _grid(
        ("mode model", "accuracy", "macro-F1", "log-loss", "belts"),
        [
            (name, _value(m, "accuracy"), _value(m, "macro_f1"), _value(m, "log_loss"), str(m.get("n", "–")))
            for name, m in models.items()
        ],
    )
    return (
        "<h3>Development mode</h3><p>The mode of the belts with a known mode, by cross-validation that holds"
        f" out whole provinces.{served}</p>" + table
    )


def _grid(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    head = "".join(f'<th scope="col">{html.escape(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="baselines"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _value(metrics: dict, key: str, digits: int = 3, signed: bool = False) -> str:
    value = metrics.get(key)
    return "–" if value is None else f"{value:{'+' if signed else ''}.{digits}f}"


def _interval(metrics: dict, key: str, signed: bool = False) -> str:
    bounds = metrics.get(key)
    if not bounds:
        return ""
    low, high = (f"{b:{'+' if signed else ''}.3f}" for b in bounds)
    return f" [{low}, {high}]"


def _share(metrics: dict, key: str) -> str:
    value = metrics.get(key)
    return "–" if value is None else f"{value:.0%}"


def _images(figures: dict[str, str], keys: tuple[str, ...]) -> str:
    parts = [
        f'<figure><img alt="{html.escape(FIGURE_CAPTIONS[key].split(":")[0])} (chart; described below)"'
        f' src="{figures[key]}"><figcaption>{html.escape(FIGURE_CAPTIONS[key])}</figcaption></figure>'
        if key in figures
        else f"<p>({html.escape(FIGURE_CAPTIONS[key].split(':')[0])}: not available for this run)</p>"
        for key in keys
    ]
    return '<div class="figures">' + "".join(parts) + "</div>"


def _lineage(context: ReportContext) -> str:
    rows = [("model", f"models:/{context.name}/{context.version}"), ("MLflow run", context.run_id)]
    rows += list(context.lineage.items())
    body = "".join(
        f'<tr><th scope="row">{html.escape(k)}</th><td><code>{html.escape(str(v))}</code></td></tr>' for k, v in rows
    )
    return f'<table class="lineage">{body}</table>'


STYLE = """
body{font-family:system-ui,"Noto Sans CJK SC","Source Han Sans SC","PingFang SC","Microsoft YaHei",sans-serif;
margin:2rem auto;max-width:1100px;color:#222}
:lang(zh-Hans){font-family:"Noto Sans CJK SC","Source Han Sans SC","PingFang SC","Microsoft YaHei",sans-serif}
.read-first{border:2px solid #b35806;padding:.2rem 1rem;margin:1rem 0}.read-first h2{margin-top:.6rem;border:0}
caption{text-align:left;font-weight:600;padding:.25rem 0}
h1{font-size:1.6rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9rem}
td,th{padding:.25rem .5rem;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
.ranked td:nth-child(5){text-align:right;font-variant-numeric:tabular-nums}
.county-map{width:100%;max-width:960px;height:auto}.legend{font-size:.8rem;margin:.5rem 0}
.swatch{display:inline-block;width:14px;height:10px;margin:0 3px 0 10px;border:1px solid #ccc}
.bar{background:#2171b5;height:10px}.figures{display:flex;flex-wrap:wrap;gap:1rem}
figure{margin:0}figure img{max-width:520px}code{font-size:.8rem;word-break:break-all}
@page{size:A4;margin:12mm}
details{margin:.2rem 0}summary{cursor:pointer}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%);white-space:nowrap}
@media print{body{margin:0;max-width:none;font-size:10pt}figure img{max-width:100%}tr{break-inside:avoid}
h2{break-after:avoid}details::details-content{content-visibility:visible}}
"""


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{body}</body></html>\n"
    )
