"""``beltcast score``: the champion scores every county as of a year -> ranked CSV and Parquet.

The alias is resolved to one version first, and that pinned version is loaded, so a scored file
names exactly one model version even while ``train`` and ``promote`` move the aliases.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import mlflow.pyfunc
import pandas as pd
import pandera.pandas as pa
from mlflow.types import DataType
from rich.console import Console
from rich.table import Table

from features.errors import BeltcastError
from features.io import csv_writer, writable_target, write_together
from features.periods import QUARTERLY, PeriodError, frequency_of, label_of, parse_period
from features.taxonomy import MODES
from models.bundle import last_belts
from pipelines.config import Settings
from pipelines.manifest import sha256_of
from pipelines.terminal import printable
from pipelines.tracking import file_lock, load_pinned, lock_beside, model_uri, require_champion, start_run, use_tracking

SCORE_COLUMNS = [
    "county_code", "county_name", "province", "prefecture", "as_of", "p_belt", "rank", "is_belt",
    "mode", "mode_source", *(f"p_{m}" for m in MODES), "top_drivers", "model_version", "in_sample", "last_belt",
]  # fmt: skip
MODE_SOURCES = ("label", "model", "frequencies")  # what a row's mode is (:func:`mode_sources`)
NO_MODE = "not forecast"  # a row's mode where it is the training frequencies' (shown so in tables)

SCORE_SCHEMA = pa.DataFrameSchema(
    {
        "county_code": pa.Column(str, pa.Check.str_matches(r"^\d{6}$"), unique=True),
        "p_belt": pa.Column(float, pa.Check.in_range(0.0, 1.0)),
        "rank": pa.Column("Int64", pa.Check.ge(1), nullable=True),
        **{f"p_{m}": pa.Column(float, pa.Check.in_range(0.0, 1.0)) for m in MODES},
        "model_version": pa.Column(str),
        "in_sample": pa.Column(bool),
        "last_belt": pa.Column(str),
        "mode_source": pa.Column(str, pa.Check.isin(MODE_SOURCES)),
    },
)


class ScoreError(BeltcastError):
    """Scoring cannot run (no champion, or an as-of year the model does not cover)."""


@dataclass(frozen=True)
class ScoreOutputs:
    """The files written and the version that wrote them."""

    csv: Path
    parquet: Path
    version: str
    as_of: int


def run(settings: Settings, as_of: int | str | None, out: Path | None, engine: str, console: Console) -> ScoreOutputs:
    """Resolve the champion, score every county, rank, validate, write atomically."""
    if out is not None:
        check_out(out, settings)
    client = use_tracking(settings, existing=True)
    name = settings.mlflow.registered_model
    champion = require_champion(client, name, ScoreError)
    uri = model_uri(name, champion.version)
    with start_run("score", nested=mlflow.active_run() is not None):
        mlflow.set_tags({"model_uri": uri, "model_version": str(champion.version), "model_run_id": champion.run_id})
        config = settings.scoring.as_model_config()
        model = load_pinned(uri, ScoreError, config)
        year = as_of_period(as_of) if as_of is not None else default_as_of(model)
        mlflow.log_params({"as_of": label_of(year), "engine": engine})
        path = out or settings.outputs.dir / f"scores_{label_of(year)}.csv"
        if out is None:
            check_out(path, settings, "outputs.dir")  # before scoring, as --out is
        scores = score(model, uri, year, str(champion.version), engine, config)
        mlflow.set_tags({"output_csv": str(Path(path).resolve()), "output_parquet": str(parquet_of(path).resolve())})
        # two scores of one file take turns: no mixed pair, each logs its own
        with file_lock(lock_beside(path), of=path):
            outputs = write(scores, path, str(champion.version), year, settings.outputs.csv_encoding)
            log_outputs(scores, outputs)
    console.print(top_table(scores, 10))
    if model.unwrap_python_model().bundle.meta.get("synthetic_metrics"):
        console.print(
            f"score: SYNTHETIC DATA: {name} v{champion.version} was trained on platform metrics marked synthetic"
            " (is_synthetic); this ranking describes no real county's e-commerce"
        )
    if model.unwrap_python_model().bundle.mode_weight == 0.0:
        console.print(
            "score: the mode columns are the modes' training frequencies for every county (the mode model's weight"
            " is 0: it did not beat them in cross-validation), not a forecast of each county's mode; a belt with a"
            " labelled mode is given that label (the column mode_source says which)"
        )
    seen = trained_on_outcome(model, year)
    if seen is not None:
        console.print(
            f"score: as of {label_of(year)}, the model was trained on what happened next (it knows the labels up to"
            f" {label_of(seen)}): an in-sample check, not a forecast"
        )
    unknown = int(scores["is_belt"].isna().sum())
    if unknown:
        console.print(
            f"score: {unknown} counties have no belt label known as of {label_of(year)} (is_belt empty); they are"
            " ranked as candidates"
            + (
                "; with no label before it, the belt-exposure indicators (belts and villages nearby, the nearest"
                " belt) are unknown too, so this ranking rests on the other indicators alone"
                if unknown == len(scores)
                else ""
            )
        )
    console.print(
        printable(
            f"score: {len(scores)} counties as of {label_of(year)} by {name} v{champion.version} "
            f"-> {outputs.csv}, {outputs.parquet}"
        )
    )
    return outputs


def log_outputs(scores: pd.DataFrame, outputs: ScoreOutputs) -> None:
    """The scored files on the ``score`` run (a later score of the same period writes over the
    files in ``outputs/``; each run keeps its own copy), their sha256 as tags (``output_csv_sha256``,
    ``output_parquet_sha256``: which run wrote the file on disk), and counts of counties,
    candidates and belts."""
    candidates = int(scores["rank"].notna().sum())
    mlflow.set_tags({"output_csv_sha256": sha256_of(outputs.csv), "output_parquet_sha256": sha256_of(outputs.parquet)})
    mlflow.log_metrics({"counties": len(scores), "candidates": candidates, "belts": len(scores) - candidates})
    for path in (outputs.csv, outputs.parquet):
        mlflow.log_artifact(str(path), "scores")


def parquet_of(csv_path: Path) -> Path:
    """The Parquet twin of a scores CSV: the same stem, beside it."""
    return Path(csv_path).with_suffix(".parquet")


def check_out(out: Path, settings: Settings, option: str = "--out") -> None:
    """``--out`` names the CSV; its Parquet twin is written beside it under the same stem. Neither
    may be in a folder of files beltcast reads (:meth:`~pipelines.config.Settings.check_output`):
    ``--out data/features/panel.csv`` had replaced the panel with the scores' Parquet."""
    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise ScoreError(f"--out must be a .csv path (a .parquet of the same name is written beside it); got {out}")
    settings.check_output(out, option)
    settings.check_output(parquet_of(out), f"{option} (its Parquet beside it)")
    writable_target(out, option)
    writable_target(parquet_of(out), f"{option} (its Parquet beside it)")


def as_of_period(as_of: int | str) -> int:
    """``2020`` or ``"2025Q3"`` as a period index."""
    try:
        return parse_period(as_of)[1]
    except PeriodError as err:
        raise ScoreError(f"--as-of {err}") from err


def trained_on_outcome(model: mlflow.pyfunc.PyFuncModel, as_of: int) -> int | None:
    """The newest labelled period of the model's panel when ``as_of`` was a training transition
    (labelled itself, and its outcome ``horizon`` periods later labelled too); else None."""
    return model.unwrap_python_model().bundle.trained_on(as_of)


def default_as_of(model: mlflow.pyfunc.PyFuncModel) -> int:
    """The newest year the model's panel snapshot covers."""
    return model.unwrap_python_model().bundle.default_as_of


def counties(model: mlflow.pyfunc.PyFuncModel, as_of: int) -> pd.DataFrame:
    """One request row per county of the snapshot as of ``as_of``."""
    snapshot = model.unwrap_python_model().bundle.snapshot
    years = sorted(snapshot["as_of"].unique())
    if as_of not in years:
        raise ScoreError(
            f"as_of must be one of the model's periods {label_of(years[0])}..{label_of(years[-1])}; "
            f"got {label_of(as_of)}"
        )
    codes = snapshot.loc[snapshot["as_of"] == as_of, "county_code"].sort_values()
    return pd.DataFrame({"county_code": codes.to_numpy(), "as_of": request_period(model, as_of)})


def request_period(model: mlflow.pyfunc.PyFuncModel, as_of: int) -> int | str:
    """``as_of`` as the model's signature takes it: a quarter's label where it is a string (quarterly
    models), else the period index (years; quarterly models logged before labels were taken)."""
    schema = model.metadata.get_input_schema()
    kind = next((c.type for c in (schema.inputs if schema else []) if c.name == "as_of"), None)
    return label_of(as_of) if kind == DataType.string else as_of


def score(
    model: mlflow.pyfunc.PyFuncModel, uri: str, as_of: int, version: str, engine: str, model_config: dict | None = None
) -> pd.DataFrame:
    """Forecast every county and rank the ones that are not belts now (the Spark engine loads the
    model again in its workers, with ``model_config``)."""
    request = counties(model, as_of)
    if engine == "spark":
        from pipelines.spark_engine import predict_with_spark

        forecast = predict_with_spark(uri, request, model_config)
    elif engine == "pandas":
        forecast = model.predict(request)
    else:
        raise ScoreError(f"engine must be 'pandas' or 'spark'; got {engine!r}")
    # scored as of a training transition, the file is an in-sample check: a job reading it can tell
    in_sample = trained_on_outcome(model, as_of) is not None
    if "last_belt" not in forecast.columns:  # a champion logged before the forecast had it
        before = last_belt(model.unwrap_python_model().bundle.snapshot, as_of)
        forecast = forecast.assign(last_belt=forecast["county_code"].map(before).fillna("").astype(str))
    sources = mode_sources(forecast, model.unwrap_python_model().bundle, as_of)
    ranked = rank(forecast.assign(model_version=version, in_sample=in_sample, mode_source=sources))
    if frequency_of(as_of) == QUARTERLY:
        ranked["as_of"] = label_of(as_of)
    return ranked


def last_belt(snapshot: pd.DataFrame, as_of: int) -> pd.Series:
    """By county code, :func:`models.bundle.last_belts` as of ``as_of``: the newest labelled period
    before it in which a candidate of ``as_of`` was a belt (``"2015"``), else ``""``. Read from the
    snapshot, so that a champion logged before the forecast had the column is scored with it too."""
    now = (snapshot["as_of"] == as_of).to_numpy()
    return pd.Series(last_belts(snapshot)[now], index=snapshot["county_code"].to_numpy()[now], dtype=object)


def mode_sources(forecast: pd.DataFrame, bundle, as_of: int) -> pd.Series:
    """What each row's ``mode`` is: ``label``, a belt's mode from its villages' products (the
    ``p_*`` columns stay the model's); ``frequencies``, the most frequent mode of the training
    belts, given to every county when the mode model's weight is 0 (no county's own mode is
    forecast); else ``model``, the mode model's forecast. A job filtering the file by mode can tell
    a forecast from a default."""
    snapshot = bundle.snapshot
    now = snapshot[snapshot["as_of"] == as_of]
    labels = now.set_index("county_code")["mode"] if "mode" in now.columns else pd.Series(dtype=object)
    labelled = forecast["is_belt"].fillna(False).astype(bool) & forecast["county_code"].map(labels).isin(MODES)
    default = "frequencies" if float(bundle.mode_weight) == 0.0 else "model"
    return labelled.map({True: "label", False: default}).astype(str)


def rank(forecast: pd.DataFrame) -> pd.DataFrame:
    """``rank`` 1 = the most likely new belt among counties not belts now (ties: county code).
    Rows in rank order, then the belts (no rank) by ``p_belt``: a file opened by hand starts with
    the short list."""
    frame = forecast.sort_values(["p_belt", "county_code"], ascending=[False, True]).reset_index(drop=True)
    candidate = ~frame["is_belt"].fillna(False).astype(bool)
    frame["rank"] = pd.Series(pd.NA, index=frame.index, dtype="Int64")
    frame.loc[candidate, "rank"] = range(1, int(candidate.sum()) + 1)
    frame = pd.concat([frame[candidate], frame[~candidate]], ignore_index=True)
    return SCORE_SCHEMA.validate(frame[SCORE_COLUMNS])


def write(scores: pd.DataFrame, csv_path: Path, version: str, as_of: int, encoding: str = "utf-8") -> ScoreOutputs:
    """CSV (``encoding``: ``utf-8``, or ``utf-8-sig`` for Excel) and Parquet beside it: both written
    to temporary names, then renamed one after the other, SIGTERM and Ctrl+C held back meanwhile
    (only a SIGKILL can fall between the two renames; no kill leaves a partial file)."""
    csv_path = Path(csv_path)
    parquet_path = parquet_of(csv_path)
    write_together(
        {
            parquet_path: lambda tmp: scores.to_parquet(tmp, index=False),
            csv_path: csv_writer(scores, encoding),
        }
    )
    return ScoreOutputs(csv_path, parquet_path, version, as_of)


def former(last_belt: str) -> str:
    """`` (a belt in 2015)`` after a candidate's name when it was a belt before, else ``""``."""
    return f" (a belt in {last_belt})" if last_belt else ""


def top_table(scores: pd.DataFrame, n: int) -> Table:
    """The top ``n`` candidate counties."""
    table = Table(title=f"Top {n} candidate counties (not belts now), as of {scores['as_of'].iloc[0]}")
    for column in ("rank", "county", "province", "p_belt", "mode", "top drivers"):
        table.add_column(column)
    for row in scores.dropna(subset=["rank"]).sort_values("rank").head(n).itertuples():
        mode = NO_MODE if row.mode_source == "frequencies" else row.mode
        cells = (str(row.rank), f"{row.county_name} {row.county_code}{former(row.last_belt)}", row.province,
                 f"{row.p_belt:.3f}", mode, row.top_drivers)  # fmt: skip
        table.add_row(*map(printable, cells))  # a cell is markup to rich
    return table
