"""The one validated configuration object, loaded from a TOML file.

Config flows one way: file -> :class:`Settings` -> job. Every section forbids unknown keys and
is frozen, so a typo in a key is an error rather than a silently ignored setting.
"""

from __future__ import annotations

import codecs
import difflib
import re
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from features.errors import ConfigError, OutputPathError

Year = Annotated[int, Field(ge=1981, le=2100)]
# The metrics a belt rule can name. Both sets are fixed by code, so a misspelt metric is an error
# when the config is read, not a rule that labels nothing. The config imports neither module (it
# stays free of pandas); tests keep these equal to what the code computes.
PUBLIC_LABEL_METRICS = ("taobao_villages", "taobao_towns")  # features.sources.taobao.read_taobao
PLATFORM_RULE_METRICS = ("gmv_annual_cny", "active_merchants", "gmv_growth_yoy")  # features.platform.RULE_METRICS


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_typed_as_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """``seed = true`` is a mistake, not 1: only a true/false setting takes true/false. A number
        given as text (``horizon = "1"``) or a whole number given as a fraction (``horizon = 1.0``)
        is refused as its type is: TOML says which a value is."""
        kinds = cls._kinds(info.field_name)
        if isinstance(value, bool) and bool not in kinds:
            raise ValueError("must be a number or text, not true/false")
        if bool in kinds and not isinstance(value, bool):
            raise ValueError("must be true or false (without quotes)")
        if isinstance(value, str) and kinds and kinds <= {int, float}:
            raise ValueError("must be a number, not text (write it without quotes)")
        if isinstance(value, float) and kinds == {int}:
            raise ValueError("must be a whole number (write it without a decimal point)")
        if isinstance(value, str) and Path in kinds and not value.strip():
            raise ValueError("must be a path (an empty one would mean the current folder)")
        return value

    @classmethod
    def _kinds(cls, name: str | None) -> set:
        """The types a field takes (``int | None``: ``{int}``)."""
        field = cls.model_fields.get(name) if name else None
        if field is None:
            return set()
        return set(typing.get_args(field.annotation)) - {type(None)} or {field.annotation}


class DataSettings(_Section):
    """Where raw files come from and where derived tables go.

    Attributes
    ----------
    cache_dir : Path
        Local cache of the verified raw files (``beltcast data sync`` fills it).
    mirror_dir : Path or None
        A local mirror of the raw files; ``None`` tries ``BELTCAST_DATA_MIRROR``, then
        ``../shared/data/raw``, then the upstream URLs.
    features_dir : Path
        Where ``features build`` writes the county panel and its quality summary.
    """

    cache_dir: Path = Path("data/raw")
    mirror_dir: Path | None = None
    features_dir: Path = Path("data/features")


class CodesSettings(_Section):
    """County code harmonisation.

    Attributes
    ----------
    target_vintage : int
        Every source is mapped to the county codes of this year before joining.
    first_year, last_year : int
        The years of the county master (the code lists read from ``areacodes``).
    """

    target_vintage: Year = 2020
    first_year: Year = 2009
    last_year: Year = 2024

    @model_validator(mode="after")
    def _years_in_order(self) -> CodesSettings:
        if not self.first_year <= self.target_vintage <= self.last_year:
            raise ValueError(
                f"target_vintage must lie within first_year..last_year "
                f"({self.first_year}..{self.last_year}); got {self.target_vintage}"
            )
        return self


class PanelSettings(_Section):
    """The as-of years of the county panel."""

    first_year: Year = 2013
    last_year: Year = 2020

    @model_validator(mode="after")
    def _years_in_order(self) -> PanelSettings:
        if self.first_year > self.last_year:
            raise ValueError(f"first_year must be <= last_year; got {self.first_year} > {self.last_year}")
        return self


class ConditionSettings(_Section):
    """One condition of the belt rule: ``metric op threshold``."""

    metric: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    op: Literal[">=", ">", "<=", "<"] = ">="
    threshold: float


class PublicConditionSettings(ConditionSettings):
    """A condition of the public belt rule: its metric is a variable of the Taobao rosters."""

    @field_validator("metric")
    @classmethod
    def _known(cls, metric: str) -> str:
        return _one_of(metric, PUBLIC_LABEL_METRICS, "a variable of the public label source (the Taobao rosters)")


class PlatformConditionSettings(ConditionSettings):
    """A condition of the platform's belt rule: its metric is one computed from the metrics file."""

    @field_validator("metric")
    @classmethod
    def _known(cls, metric: str) -> str:
        return _one_of(metric, PLATFORM_RULE_METRICS, "a metric computed from the platform metrics file")


def _one_of(metric: str, known: tuple[str, ...], what: str) -> str:
    if metric not in known:
        raise ValueError(f"must be {what}, one of {sorted(known)}")
    return metric


class LabelSettings(_Section):
    """The belt rule ("at least ``min_met`` of ``conditions``") and the emergence horizon.

    The public-data default: a county is a belt in a year when it has at least one Taobao
    village that year. Stricter variants: ``taobao_villages >= 3``, or ``taobao_towns >= 1``.
    A condition's metric must be one of :data:`PUBLIC_LABEL_METRICS`.
    """

    conditions: tuple[PublicConditionSettings, ...] = (
        PublicConditionSettings(metric="taobao_villages", op=">=", threshold=1),
    )
    min_met: int = Field(default=1, ge=1)
    horizon: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _k_of_n(self) -> LabelSettings:
        if not self.conditions:
            raise ValueError("conditions must hold at least one condition; got none")
        if self.min_met > len(self.conditions):
            raise ValueError(
                f"min_met must be <= the number of conditions ({len(self.conditions)}); got {self.min_met}"
            )
        return self


class ModelSettings(_Section):
    """Seeds, folds and where tuned parameters live."""

    seed: int = Field(default=0, ge=0, le=10**9)  # LightGBM takes a C int, and tune and the bootstrap add to it
    spatial_folds: int = Field(default=5, ge=2)
    bootstrap: int = Field(default=1000, ge=0)
    mode_year: Year = 2014
    params_file: Path = Path("mlruns/tuned_params.json")


class TuneSettings(_Section):
    """The Optuna study: resumable storage, name, trials per call, inner folds, and the LightGBM
    seeds each trial's inner-fold AP is averaged over (``model.seed`` onwards)."""

    storage: str = Field(default="sqlite:///mlruns/optuna.db", min_length=1)
    study: str = Field(default="emergence", min_length=1)
    trials: int = Field(default=30, ge=1)
    inner_folds: int = Field(default=4, ge=2)
    seeds: int = Field(default=3, ge=1, le=20)


class PromoteSettings(_Section):
    """The promotion gate: AP may be lower than the champion's by at most ``ap_tolerance``, and the
    Brier score higher by at most ``brier_tolerance`` times the champion's (a share: the Brier
    score's scale follows the base rate). Two seeds of the same parameters differ by about as
    much (on the public panel, ten seeds of the tuned parameters: AP 0.182 to 0.200, Brier
    0.01676 to 0.01701, 1.4 % of it), so a gate without room would decide on the seed."""

    ap_tolerance: float = Field(default=0.01, ge=0.0, le=1.0)
    brier_tolerance: float = Field(default=0.02, ge=0.0, le=1.0)


class ScoringSettings(_Section):
    """How the champion predicts large batches (``score``, ``report``, ``serve``, the Spark engine):
    ``compiled`` false predicts with LightGBM rather than the boosters compiled to machine code;
    ``compiled_cache_dir`` is where compiled boosters are kept. Unset, the model's defaults: on,
    in ``~/.cache/beltcast/compiled``. Passed as the model's ``model_config``."""

    compiled: bool | None = None
    compiled_cache_dir: Path | None = None

    def as_model_config(self) -> dict:
        """The keys set, as the served model's ``model_config`` takes them (empty when none is)."""
        config = {"compiled": self.compiled, "compiled_cache_dir": self.compiled_cache_dir}
        return {
            key: str(value) if isinstance(value, Path) else value for key, value in config.items() if value is not None
        }


class OutputSettings(_Section):
    """Where backtest reports, scores and the HTML report are written, and how the scores CSV is
    encoded: ``utf-8``, or ``utf-8-sig`` (UTF-8 with a byte-order mark, which Excel needs to show
    the Chinese names of a CSV opened by double-click; pandas reads either)."""

    dir: Path = Path("outputs")
    csv_encoding: Literal["utf-8", "utf-8-sig"] = "utf-8"


class PlatformSettings(_Section):
    """The platform's own metrics (county x period), which replace the public labels when given.

    The belt rule is "at least ``min_met`` of ``conditions``", 2 of 3 by default as in the report
    that defines these belts. **The default thresholds are placeholders**: set them to the values
    your platform uses. ``gmv_annual_cny`` sums the trailing four quarters; ``gmv_growth_yoy``
    compares them with the four quarters before (unknown, so not met, with less history).
    A condition's metric must be one of :data:`PLATFORM_RULE_METRICS`.

    Every period must have rows for at least ``min_coverage`` of the counties of the period before
    (0 turns the check off): an export cut short leaves its last quarter thin, which would label
    most counties as unknown and the rest as if they were the whole country.

    The file's further metric columns are features of the model (``platform_<name>``); those named
    in ``intensive`` are rates or means (``conversion_rate``), averaged where counts are added up
    (over categories, on a merge of counties) and allowed to be negative.
    """

    metrics_file: Path | None = None
    intensive: tuple[str, ...] = ()
    conditions: tuple[PlatformConditionSettings, ...] = (
        PlatformConditionSettings(metric="gmv_annual_cny", op=">=", threshold=1e8),
        PlatformConditionSettings(metric="active_merchants", op=">=", threshold=100),
        PlatformConditionSettings(metric="gmv_growth_yoy", op=">=", threshold=0.2),
    )
    min_met: int = Field(default=2, ge=1)
    horizon: int = Field(default=1, ge=1)
    temporal_folds: int = Field(default=4, ge=1)
    retrain_trials: int = Field(default=10, ge=0)
    min_coverage: float = Field(default=0.5, ge=0.0, le=1.0)

    @field_validator("intensive")
    @classmethod
    def _each_once(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"must name each further metric column once; got {repeated} more than once")
        return names

    @model_validator(mode="after")
    def _k_of_n(self) -> PlatformSettings:
        if self.min_met > len(self.conditions):
            raise ValueError(
                f"min_met must be <= the number of conditions ({len(self.conditions)}); got {self.min_met}"
            )
        return self


class MlflowSettings(_Section):
    """Experiment tracking and the model registry."""

    tracking_uri: str = Field(default="sqlite:///mlruns/mlflow.db", min_length=1)
    experiment: str = Field(default="beltcast", min_length=1)
    registered_model: str = Field(default="county-belt", max_length=200)
    # a tracking server that stops answering mid-job: MLflow's own defaults (7 retries, 120 s a
    # request) kept a job silent for over ten minutes; 5 retries ride out a restart of a minute
    request_retries: int = Field(default=5, ge=1, le=10)  # 0 would allow no redirect either
    request_timeout: int = Field(default=30, ge=1, le=600)

    @field_validator("registered_model")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        # a name MLflow's search filters and models:/NAME@ALIAS URIs take as it is
        if not re.fullmatch(r"\w[\w.-]*", name):
            raise ValueError("must be letters, digits, '_', '.' or '-' (no space, quote, slash or @)")
        return name


class Settings(_Section):
    """Every setting of beltcast, with documented defaults."""

    data: DataSettings = DataSettings()
    codes: CodesSettings = CodesSettings()
    panel: PanelSettings = PanelSettings()
    labels: LabelSettings = LabelSettings()
    model: ModelSettings = ModelSettings()
    tune: TuneSettings = TuneSettings()
    promote: PromoteSettings = PromoteSettings()
    platform: PlatformSettings = PlatformSettings()
    scoring: ScoringSettings = ScoringSettings()
    outputs: OutputSettings = OutputSettings()
    mlflow: MlflowSettings = MlflowSettings()

    @model_validator(mode="after")
    def _outputs_apart_from_inputs(self) -> Settings:
        """``model.params_file`` (``tune`` writes it) and ``outputs.dir`` lie outside the folders of
        :meth:`kept_paths`; the parameters may be the default's name in the store's own folder."""
        store = next((path for what, path in self.kept_paths() if what == STORE), None)
        owned = () if store is None else (store / ModelSettings().params_file.name,)
        try:
            self.check_output(self.model.params_file, "model.params_file", owned)
            self.check_output(self.outputs.dir, "outputs.dir")
        except OutputPathError as err:
            raise ValueError(str(err)) from err
        return self

    def kept_paths(self) -> list[tuple[str, Path]]:
        """The folders (and files) whose contents beltcast reads, each with what it is: the raw
        data (``[data] cache_dir``), the panel and its siblings (``[data] features_dir``) and the
        MLflow store's folder (a SQLite database's, ``mlruns`` by default, or a file store's). A
        store whose folder also holds the working folder or another of these (``sqlite:///mlflow.db``)
        keeps only its own files there: the database, its journals and its ``artifacts`` folder."""
        kept = [(RAW, self.data.cache_dir), (FEATURES, self.data.features_dir)]
        database, folder = _store_of(self.mlflow.tracking_uri)
        if folder is None:
            return kept
        others = [Path.cwd(), self.data.cache_dir, self.data.features_dir, self.outputs.dir]
        if not any(Path(other).resolve().is_relative_to(folder.resolve()) for other in others):
            return [*kept, (STORE, folder)]
        if database is None:
            return kept
        names = [database.name, *(database.name + end for end in ("-journal", "-wal", "-shm")), "artifacts"]
        return [*kept, *((STORE_FILE, folder / name) for name in names)]

    def check_output(self, path: Path, option: str, owned: tuple[Path, ...] = ()) -> Path:
        """``path`` when it lies outside :meth:`kept_paths`, or is one of the files ``owned`` there;
        an :class:`OutputPathError` naming ``option``, the path and the folder otherwise (``score
        --out data/features/panel.csv`` had replaced the panel, ``panel.parquet``, beside its CSV)."""
        resolved = Path(path).resolve()  # a link into a kept folder is in it
        if resolved in {Path(file).resolve() for file in owned}:
            return path
        for what, kept in self.kept_paths():
            if resolved.is_relative_to(Path(kept).resolve()):
                raise OutputPathError(f"{option} must be a path outside {kept}, {what}; got {path}")
        return path


RAW = "the raw-data folder ([data] cache_dir), whose files are checked against their sha256"
FEATURES = "the features folder ([data] features_dir) of the panel and its siblings"
STORE = "the MLflow store's folder ([mlflow] tracking_uri)"
STORE_FILE = "a file of the MLflow store ([mlflow] tracking_uri)"


def _store_of(tracking_uri: str) -> tuple[Path | None, Path | None]:
    """The database file and the folder of a local MLflow store: a SQLite database and its folder,
    or no file and a file store's folder; ``(None, None)`` for a tracking server or a database
    elsewhere."""
    if tracking_uri.startswith("sqlite:"):
        from sqlalchemy.engine import make_url  # not at import: the command line loads this module first
        from sqlalchemy.exc import ArgumentError

        try:
            database = make_url(tracking_uri).database
        except ArgumentError:
            return None, None
        return (None, None) if database in (None, "", ":memory:") else (Path(database), Path(database).parent)
    scheme, _, rest = tracking_uri.partition(":")
    if not rest or len(scheme) == 1:  # a path (on Windows, C:)
        return None, Path(tracking_uri)
    if scheme == "file":
        return None, Path(unquote(urlsplit(tracking_uri).path))
    return None, None


def load_settings(path: Path | None = None) -> Settings:
    """Read and validate a TOML config file; ``None`` gives the defaults.

    Raises
    ------
    ConfigError
        The file is missing, is not valid TOML, or a key is unknown or of the wrong type;
        the message names the key, what was expected and what came in.
    """
    if path is None:
        return Settings()
    raw = _read_toml(Path(path))
    try:
        return Settings.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_describe(err, path)) from err


def _read_toml(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory; expected a TOML file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # Notepad may start it with a byte-order mark
    except UnicodeDecodeError as err:  # err.start counts from after a byte-order mark
        offset = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
        line = data[: offset + err.start].count(b"\n") + 1
        raise ConfigError(
            f"config file {path} must be UTF-8 encoded (re-save it as UTF-8; a Chinese comment saved as GBK is the"
            f" usual cause); got a byte UTF-8 cannot read on line {line}"
        ) from err
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from err


def _describe(err: ValidationError, path: Path) -> str:
    """One line (a job's error is one line on stderr): every invalid setting, ``; `` between them."""
    problems = []
    for problem in err.errors():
        message = problem["msg"].removeprefix("Value error, ")  # our own checks' messages stand alone
        if problem["type"] == "extra_forbidden":
            message += _nearest_key(problem["loc"])
        given = "" if "; got " in message else f"; got {problem.get('input')!r}"  # ours may say what came in
        where = f"{_key(problem['loc'])}: " if problem["loc"] else ""  # a check of several sections names its keys
        problems.append(f"{where}{message}{given}")
    return f"config file {path} has {err.error_count()} invalid setting(s): " + " | ".join(problems)


def _nearest_key(loc: tuple[str | int, ...]) -> str:
    """`` (did you mean 'platform'?)`` for an unknown key near a known one of its section."""
    model: Any = Settings
    for part in loc[:-1]:
        if isinstance(part, int):  # an element of a list of settings: its model is the list's
            continue
        field = model.model_fields.get(part)
        if field is None:
            return ""
        kinds = [kind for kind in (field.annotation, *typing.get_args(field.annotation)) if isinstance(kind, type)]
        model = next((kind for kind in kinds if issubclass(kind, BaseModel)), None)
        if model is None:
            return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _key(loc: tuple[str | int, ...]) -> str:
    """``("labels", "conditions", 0, "metric")`` -> ``labels.conditions[0].metric``."""
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    return key or "(top level)"
