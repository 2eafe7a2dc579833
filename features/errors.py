"""Exceptions shared by every beltcast package.

Each message says what was wrong, where, what was expected and what came in.
"""

import json
from collections.abc import Iterator
from contextlib import contextmanager

_ending: list[bool] = []  # one entry per failing run being ended (ending_failed_run), this process


def shown(value: object) -> str:
    """A value as it came in, for a message, in at most 80 characters (a request's 50 MB county code
    was sent back whole): a numpy scalar as its Python value (``330503.5``, not
    ``np.float64(330503.5)``), an object or list (of a JSON request, a nested Parquet cell) as JSON,
    anything else as its repr (``'2025Q5'``)."""
    import numpy as np  # not at import: the command line loads this module before any job

    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, dict | list):
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except ValueError:  # a circular structure: only from a Python caller
            text = repr(value)
    else:
        text = repr(value)
    if len(text) <= 80:
        return text
    if isinstance(value, int):  # its size is what is wrong with it
        return f"{text[:30]}...{text[-10:]} ({len(text.lstrip('-'))} digits)"
    return text[:77] + "..."


class BeltcastError(Exception):
    """Base class of every error beltcast raises on purpose."""


class ConfigError(BeltcastError, ValueError):
    """A config file is missing, unreadable, or holds an invalid setting."""


class DataSyncError(BeltcastError):
    """A raw file could not be fetched, or its checksum does not match the manifest."""


class SourceFormatError(BeltcastError, ValueError):
    """A source file does not have the sheets, columns or values its reader expects."""


class CountyCodeError(BeltcastError, ValueError):
    """A county code is malformed or unknown in the vintage it claims."""


class OutputPathError(BeltcastError):
    """An output path is a directory, or cannot be created or written."""


def cause_of(err: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first of ``err`` and the errors it was raised from or while handling (``__cause__``,
    else ``__context__``) that is a ``kind``, or None."""
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, kind):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler or ``kill`` stopping a job), raised where the job is, so that the job
    ends as on Ctrl+C: its MLflow run ``FAILED`` with the reason, its files as they were."""


@contextmanager
def ending_failed_run() -> Iterator[None]:
    """Mark the block as the ending of a failing job's MLflow run: a SIGTERM arriving then is
    ignored (the job is ending already), so the run is still marked FAILED saying why."""
    _ending.append(True)
    try:
        yield
    finally:
        _ending.pop()


def ending_run() -> bool:
    """Whether a failing job's run is being ended (:func:`ending_failed_run`)."""
    return bool(_ending)
