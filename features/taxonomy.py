"""Development modes of belts, from their main products, through a keyword taxonomy kept as data.

The taxonomy (``features/mode_taxonomy.csv``: ``keyword, mode, note``) maps product keywords to
the four modes of :data:`MODES`. It is data so it can be reviewed and edited without touching
code; :func:`load_taxonomy` validates it.

Rules
-----
* **One product string** (:meth:`ModeTaxonomy.mode_of`). The string is split into items
  at the separators of :data:`PRODUCT_SEPARATORS` (``家具、竹制品`` -> 家具, 竹制品;
  ``服装/鞋`` -> 服装, 鞋); ``及`` and ``和`` do not split (``自行车及零配件`` is one
  product). Items are read in the order written, which is the order of importance in the
  rosters, and the **first item that contains a keyword** decides. Within that item the
  **longest** keyword contained wins (``摩托车配件`` -> 摩托车, not 配件); on equal length
  the keyword that starts **earliest** in the item wins (``数码配件`` -> 数码, ``汽车配件``
  -> 汽车); keywords are unique, so no two tie on both. A string with no keyword has
  no mode (``None``). (Letting the longest keyword of the whole string win instead would
  let a secondary product outvote the first-listed main one: ``鞋、跑步机`` would follow
  跑步机.)
* **One county** (:func:`county_modes`). Each village with a product votes for the mode of its
  product string; the county's mode is the mode with most votes. Ties go to the mode listed
  first in :data:`MODES` (a fixed precedence, so the result never depends on row order).
  ``share`` is the winning votes over the county's villages that have a product (villages whose
  product maps to no mode count in the denominator). A county whose products all map to no
  mode has a missing mode (counted as ``unmapped`` by :func:`mode_counts`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.errors import SourceFormatError
from features.sources.base import read_csv_checked, require_columns

MODES = ("national_brand", "cultural_heritage", "industrial_transformation", "local_specialty")
UNMAPPED = "unmapped"
TAXONOMY_COLUMNS = ["keyword", "mode", "note"]
PRODUCT_SEPARATORS = "、/／,，;；|｜+＋ \u3000"
DEFAULT_PATH = Path(__file__).with_name("mode_taxonomy.csv")
_SPLIT = re.compile("[" + re.escape(PRODUCT_SEPARATORS) + "]+")


@dataclass(frozen=True)
class Keyword:
    """One row of the taxonomy: a keyword, its mode and a reviewer's note."""

    keyword: str
    mode: str
    note: str


@dataclass(frozen=True)
class KeywordMatch:
    """The keyword that decided a product string's mode, and the item it was found in."""

    keyword: str
    mode: str
    item: str


@dataclass(frozen=True)
class ModeTaxonomy:
    """Product keywords and their modes, in file order; build it with :func:`load_taxonomy`.

    Attributes
    ----------
    keywords : tuple of Keyword
        The validated rows of the taxonomy file.
    source : str
        Where the rows came from (the file path), for messages.
    """

    keywords: tuple[Keyword, ...]
    source: str = "<memory>"

    def match(self, product: str) -> KeywordMatch | None:
        """The keyword that decides ``product``'s mode (see the module rules), or None."""
        if not isinstance(product, str):
            raise TypeError(f"product must be a str; got {type(product).__name__} {product!r}")
        for item in split_products(product):
            found = self._best_in_item(item)
            if found is not None:
                return KeywordMatch(found.keyword, found.mode, item)
        return None

    def mode_of(self, product: str) -> str | None:
        """The mode of a product string (one of :data:`MODES`), or None if no keyword matches.

        Parameters
        ----------
        product : str
            A main-product string as written in a roster, e.g. ``'家具、竹制品'``.

        Returns
        -------
        str or None
            The mode of the first item containing a keyword; within it the longest keyword,
            then the one starting earliest in the item.
        """
        found = self.match(product)
        return found.mode if found else None

    def to_frame(self) -> pd.DataFrame:
        """The taxonomy as a ``keyword, mode, note`` table."""
        return pd.DataFrame([(k.keyword, k.mode, k.note) for k in self.keywords], columns=TAXONOMY_COLUMNS)

    def _best_in_item(self, item: str) -> Keyword | None:
        hits = [(k, item.find(k.keyword)) for k in self.keywords if k.keyword in item]
        if not hits:
            return None
        return min(hits, key=lambda hit: (-len(hit[0].keyword), hit[1]))[0]


def split_products(product: str) -> list[str]:
    """The items of a product string, in the order written, blanks dropped."""
    return [item.strip() for item in _SPLIT.split(product) if item.strip()]


def load_taxonomy(path: Path | str | None = None) -> ModeTaxonomy:
    """Read and validate a keyword taxonomy.

    Parameters
    ----------
    path : path-like, optional
        A CSV with columns ``keyword, mode, note``; default the shipped
        ``features/mode_taxonomy.csv``.

    Returns
    -------
    ModeTaxonomy

    Raises
    ------
    SourceFormatError
        If the file is missing or lacks a column, or a row has an empty keyword, a keyword
        holding a product separator, a keyword already listed, or a mode not in :data:`MODES`;
        the message names the file and the line.
    """
    path = Path(path) if path is not None else DEFAULT_PATH
    frame = read_csv_checked(path, dtype=str, keep_default_na=False, encoding="utf-8")
    require_columns(frame, TAXONOMY_COLUMNS, path)
    seen: dict[str, int] = {}
    keywords = []
    for number, row in enumerate(frame[TAXONOMY_COLUMNS].itertuples(index=False), start=2):
        keyword = _checked_row(row, f"{path} line {number}", seen)
        seen[keyword] = number
        keywords.append(Keyword(keyword, row.mode.strip(), row.note.strip()))
    return ModeTaxonomy(tuple(keywords), source=str(path))


def _checked_row(row: tuple, where: str, seen: dict[str, int]) -> str:
    keyword = row.keyword.strip()
    if not keyword:
        raise SourceFormatError(f"{where}: keyword must be non-empty; got {row.keyword!r}")
    if split_products(keyword) != [keyword]:
        raise SourceFormatError(
            f"{where}: keyword must not contain a product separator ({PRODUCT_SEPARATORS!r}); got {keyword!r}"
        )
    if keyword in seen:
        raise SourceFormatError(f"{where}: keyword {keyword!r} must be unique; it is already on line {seen[keyword]}")
    if row.mode.strip() not in MODES:
        raise SourceFormatError(f"{where}: mode must be one of {list(MODES)}; got {row.mode!r}")
    return keyword


def county_modes(villages: pd.DataFrame, taxonomy: ModeTaxonomy) -> pd.DataFrame:
    """Each county's development mode: the mode of most of its villages' products.

    Parameters
    ----------
    villages : DataFrame
        One row per village with ``county_code`` and ``product`` (as from
        :func:`features.sources.taobao.read_taobao_villages`). Rows without a county code (the
        unmatched villages, reported by the reader) or without a product are left out. If a
        ``year`` column is present, the rows with a product must all be of one year.
    taxonomy : ModeTaxonomy
        The keyword taxonomy.

    Returns
    -------
    DataFrame
        One row per county with a product: ``county_code``, ``mode`` (missing when no product
        of the county maps to a mode), ``n_villages_with_mode`` (votes for the winning mode) and
        ``share`` (those votes over the county's villages with a product). Ties go to the mode
        listed first in :data:`MODES`. The input is not modified.
    """
    require_columns(villages, ["county_code", "product"], Path("<villages>"))
    rows = villages.dropna(subset=["county_code", "product"])
    _check_one_year(rows)
    votes = _votes(rows, taxonomy)
    winner = votes.idxmax(axis=1).where(votes.max(axis=1) > 0)
    table = pd.DataFrame(
        {
            "county_code": votes.index,
            "mode": winner.astype("str").to_numpy(),
            "n_villages_with_mode": votes.max(axis=1).to_numpy(),
            "share": (votes.max(axis=1) / rows.groupby("county_code").size()).to_numpy(),
        }
    )
    return table.reset_index(drop=True)


def _check_one_year(rows: pd.DataFrame) -> None:
    if "year" in rows and rows["year"].nunique() > 1:
        raise ValueError(
            "villages must hold products of one year (select a roster year first); "
            f"got years {sorted(rows['year'].unique().tolist())}"
        )


def _votes(rows: pd.DataFrame, taxonomy: ModeTaxonomy) -> pd.DataFrame:
    """Villages per county (rows, sorted) and mode (columns in :data:`MODES` order)."""
    modes = rows["product"].map(taxonomy.mode_of)
    counties = sorted(rows["county_code"].unique())
    counts = modes.groupby(rows["county_code"]).value_counts()
    votes = counts.unstack(fill_value=0) if not counts.empty else pd.DataFrame()
    return votes.reindex(index=counties, columns=list(MODES), fill_value=0)


def mode_counts(modes: pd.DataFrame) -> pd.Series:
    """Counties per mode, for the build to print.

    Parameters
    ----------
    modes : DataFrame
        The output of :func:`county_modes` (uses its ``mode`` column).

    Returns
    -------
    Series
        Named ``n_counties``, indexed by :data:`MODES` then ``"unmapped"`` (counties whose
        products map to no mode), zeros included.
    """
    require_columns(modes, ["mode"], Path("<county modes>"))
    labels = modes["mode"].astype(object).where(modes["mode"].notna(), UNMAPPED)
    counts = labels.value_counts().reindex([*MODES, UNMAPPED], fill_value=0)
    return counts.astype(int).rename("n_counties").rename_axis("mode")
