"""Boosters compiled to machine code for large batches.

LightGBM walks its trees node by node for every row; for a batch of a million rows that is the
whole cost of scoring. `lleaves <https://github.com/siboehm/lleaves>`_ compiles a LightGBM text
model with LLVM into one native function, which gives the same predictions (to ~1e-14) several
times faster. Compiling takes seconds to a minute, so it pays only for large batches, and the
compiled object is cached per machine: the file is keyed by the model text, the prediction kind,
the lleaves and llvmlite versions and the host CPU, written to a temporary name and renamed, and
read back only if its SHA-256 matches the one recorded beside it.

The cache folder is the caller's (the bundle's ``compiled_cache``, default
:func:`default_cache_dir`, ``~/.cache/beltcast/compiled``); no folder turns compiled prediction
off. If lleaves is missing or compiling fails, prediction falls back to LightGBM with a warning,
so scoring never depends on the compiler.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from importlib import metadata
from pathlib import Path

import lightgbm as lgb
import numpy as np

from features.io import durable_replace, write_atomic

COMPILE_ROWS = 100_000  # rows; smaller batches are predicted by LightGBM itself


class CompiledForest:
    """A LightGBM booster compiled to native code (raw scores or probabilities).

    Parameters
    ----------
    booster : lgb.Booster
        The booster to compile.
    raw_score : bool
        Compile the raw score (log-odds) instead of the probability.
    cache_dir : Path
        Where compiled objects are kept (created).
    """

    def __init__(self, booster: lgb.Booster, raw_score: bool, cache_dir: Path):
        import lleaves  # optional at import time of this module: checked by `available`

        self.raw_score = raw_score
        text = booster.model_to_string()
        folder = Path(cache_dir)
        folder.mkdir(parents=True, exist_ok=True)
        key = _key(text, raw_score)
        self.path = folder / f"{key}.o"
        model_file = folder / f"{key}.txt"
        if not model_file.exists():
            _write_text(model_file, text)
        self.model = lleaves.Model(model_file=str(model_file))
        if _verified(self.path):
            self.model.compile(cache=str(self.path), raw_score=raw_score)
        else:
            self._compile_into_cache(raw_score)

    def _compile_into_cache(self, raw_score: bool) -> None:
        handle, name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".part")
        os.close(handle)
        os.unlink(name)  # lleaves writes the object file only if the path does not exist
        try:
            self.model.compile(cache=name, raw_score=raw_score)
            digest = _sha256(Path(name))
            durable_replace(name, self.path)
            _write_text(self.path.with_suffix(".sha256"), digest)
        finally:
            Path(name).unlink(missing_ok=True)

    def predict(self, values: np.ndarray) -> np.ndarray:
        """Predictions of ``values`` (float64, rows x features) on all cores."""
        data = np.ascontiguousarray(values, dtype=np.float64)
        return self.model.predict(data, n_jobs=_cores())


def available() -> bool:
    """lleaves (the compiler) imports."""
    try:
        import lleaves  # noqa: F401
    except ImportError:
        return False
    return True


def compile_or_none(booster: lgb.Booster, raw_score: bool, cache_dir: Path | None) -> CompiledForest | None:
    """The compiled booster, cached in ``cache_dir``; ``None`` when compiled prediction is off (no
    ``cache_dir``) or lleaves is missing, and (with a warning) when it cannot be compiled here."""
    if cache_dir is None or not available():
        return None
    try:
        return CompiledForest(booster, raw_score, cache_dir)
    except Exception as err:  # any compiler failure: LightGBM still predicts correctly
        warnings.warn(f"compiled prediction is off, LightGBM predicts instead: {err}", RuntimeWarning, stacklevel=2)
        return None


def default_cache_dir() -> Path:
    """``~/.cache/beltcast/compiled``: the cache of compiled boosters unless a caller names another."""
    return Path.home() / ".cache" / "beltcast" / "compiled"


def _key(text: str, raw_score: bool) -> str:
    import llvmlite.binding as llvm

    versions = f"{metadata.version('lleaves')}-{metadata.version('llvmlite')}-{llvm.get_host_cpu_name()}"
    digest = hashlib.sha256(f"{versions}\n{raw_score}\n{text}".encode()).hexdigest()[:24]
    return f"{digest}-{'raw' if raw_score else 'proba'}"


def _verified(path: Path) -> bool:
    checksum = path.with_suffix(".sha256")
    if not (path.exists() and checksum.exists()):
        return False
    if _sha256(path) == checksum.read_text().strip():
        return True
    path.unlink(missing_ok=True)  # damaged: compile again
    return False


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_text(target: Path, text: str) -> None:
    write_atomic(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
