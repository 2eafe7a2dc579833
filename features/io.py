"""Atomic writes: a file is written to a temporary name beside it, flushed to disk, then renamed
over the target, so a reader sees the old file or the new one, never a partial one, after a kill
or a power cut alike."""

from __future__ import annotations

import errno
import glob
import json
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from features.errors import OutputPathError


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target``.

    The temporary name carries the writer's process id (``.NAME.<pid>.XXXX.part``), so the
    temporary files of a writer that was killed are recognised and deleted by the next write of
    the same target, while those of writers still running are left alone.
    """
    target = writable_target(target)
    _make_folder(target)
    try:
        _remove_dead_leftovers(target)
        handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{os.getpid()}.", suffix=".part")
    except OSError as err:
        raise _cannot_write(target, err) from err
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        try:
            os.chmod(tmp, mode_of(target))  # mkstemp makes 0600
            os.replace(tmp, target)  # its data is on disk already (_write); the folder's entry next
        except OSError as err:
            raise _cannot_write(target, err) from err
    finally:
        tmp.unlink(missing_ok=True)


def mode_of(target: Path) -> int:
    """The permission bits a new file replacing ``target`` takes: those of the file there (a
    ``chmod 600`` output stays private when written again), else the usual ones (:func:`usual_file_mode`)."""
    try:
        return target.stat().st_mode & 0o777
    except OSError:  # no file there yet
        return usual_file_mode()


def durable_replace(source: Path | str, target: Path | str) -> None:
    """Rename ``source`` over ``target`` once ``source``'s data is on disk, then write the folder's
    entry to disk: without the first flush, a power cut can keep the rename and lose the data (an
    empty or partial file where the old one was)."""
    _flush(Path(source))
    os.replace(source, target)
    _sync_folder(Path(target).parent)


CANNOT_SYNC = {errno.EINVAL, errno.ENOTSUP, errno.ENOSYS}  # a file system that cannot sync a file: no failure


def _flush(path: Path) -> None:
    with open(path, "rb") as file:
        try:
            os.fsync(file.fileno())
        except OSError as err:  # a full disk or an I/O error is one; a file system without sync is not
            if err.errno not in CANNOT_SYNC:
                raise


def _sync_folder(folder: Path) -> None:
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:  # a folder this user cannot open: its entry reaches the disk with the system's writeback
        return
    try:
        os.fsync(handle)
    except OSError:  # some file systems cannot sync a folder; the file is in place already, and whole
        pass
    finally:
        os.close(handle)


def writable_target(target: Path, field: str = "") -> Path:
    """``target`` as a path a file can be written to; a clear :class:`OutputPathError` otherwise,
    naming ``field`` (the option or setting the path came from, ``--out`` or ``outputs.dir``) first.

    Jobs call it on an output path before they compute. It creates nothing: the folders a
    missing parent needs are made when the file is written (:func:`atomic_path`), so a job that
    fails before it writes leaves no empty folder behind. A missing folder is writable when its
    nearest existing ancestor is a folder this user may create folders in."""
    target = Path(target)
    named = f"{field}: output" if field else "output"
    if target.is_dir():
        raise OutputPathError(f"{named} {target} is a directory; expected a file path")
    existing = next((folder for folder in target.absolute().parents if folder.exists()), None)
    if existing is not None and not existing.is_dir():
        raise OutputPathError(f"{named} {target}: {existing} is a file, not a folder; expected a file path in a folder")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        missing = "" if existing == target.absolute().parent else f" (to create {target.parent} in)"
        raise OutputPathError(
            f"{named} {target}: its folder {existing}{missing} is not writable; expected a writable folder"
        )
    return target


def _make_folder(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _cannot_write(target, err) from err


def _cannot_write(target: Path, err: OSError) -> OutputPathError:
    return OutputPathError(
        f"cannot write output {target}: {err.strerror or err}; expected a file path in a writable folder"
    )


def _remove_dead_leftovers(target: Path) -> None:
    for leftover in target.parent.glob(f"{glob.escape('.' + target.name)}.*.part"):
        pid = leftover.name.removeprefix(f".{target.name}.").split(".", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            leftover.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def usual_file_mode() -> int:
    """The mode ``open`` gives a new file under the process's umask (``mkstemp`` gives 0600)."""
    current = os.umask(0)
    os.umask(current)
    return 0o666 & ~current


def write_atomic(target: Path, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` and move the result over ``target``."""
    with atomic_path(target) as tmp:
        _write(writer, tmp, Path(target))
    _sync_folder(Path(target).parent)
    return Path(target)


def write_together(writers: dict[Path, Callable[[Path], Any]]) -> list[Path]:
    """Write every target to its temporary name first, then rename them one after the other, so
    files that belong together (a CSV and its Parquet) are replaced within microseconds of each
    other; if a write fails, none of the targets is touched. A SIGTERM or Ctrl+C during the
    renames is handled after them (:func:`signals_deferred`), so it never falls between two."""
    with ExitStack() as stack:
        temporaries = {target: stack.enter_context(atomic_path(target)) for target in writers}
        for target, writer in writers.items():
            _write(writer, temporaries[target], Path(target))
        renames = stack.pop_all()
    with signals_deferred():  # a SIGTERM or Ctrl+C between two renames would leave a mixed pair
        renames.close()
    for folder in dict.fromkeys(Path(target).absolute().parent for target in writers):
        _sync_folder(folder)
    return list(writers)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the block: one that comes meanwhile is handled as it would
    have been (its handler called, or its default action taken) once the block has ended, SIGTERM
    first (a scheduler's stop outranks a Ctrl+C). Only the main thread handles signals; elsewhere
    the block runs as it is, and so is a signal whose handler was not set from Python."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: set[int] = set()
    previous = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    previous = {number: handler for number, handler in previous.items() if handler is not None}
    for number in previous:
        signal.signal(number, lambda signum, frame: held.add(signum))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in (n for n in previous if n in held):  # SIGTERM, then SIGINT
            if callable(previous[number]):
                previous[number](number, None)
            elif previous[number] == signal.SIG_DFL:
                signal.raise_signal(number)


def _write(writer: Callable[[Path], Any], tmp: Path, target: Path) -> None:
    """``writer(tmp)``; a failed write (a full disk, a lost mount) is an :class:`OutputPathError`
    naming ``target``, whose previous file stays as it was. The written data is flushed to disk
    before the rename, as :func:`durable_replace` does, outside the renames of :func:`write_together`."""
    try:
        writer(tmp)
        _flush(tmp)
    except OSError as err:
        raise _cannot_write(target, err) from err


def write_parquet(frame: pd.DataFrame, target: Path) -> Path:
    """Write ``frame`` to Parquet atomically."""
    return write_atomic(target, lambda tmp: frame.to_parquet(tmp, index=False))


def write_csv(frame: pd.DataFrame, target: Path) -> Path:
    """Write ``frame`` to UTF-8 CSV atomically (its text cells made :func:`spreadsheet_safe`)."""
    return write_atomic(target, csv_writer(frame))


def csv_writer(frame: pd.DataFrame, encoding: str = "utf-8") -> Callable[[Path], None]:
    """A writer of ``frame`` as CSV to a path given later (for :func:`write_atomic` and
    :func:`write_together`), its text cells made :func:`spreadsheet_safe`: every CSV beltcast
    writes goes through it."""

    def write(tmp: Path) -> None:
        safe = spreadsheet_safe(frame)
        safe.to_csv(tmp, index=False, encoding=encoding, lineterminator="\r\n" if _holds_cr(safe) else "\n")

    return write


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet reads a cell starting so as a formula


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``'`` before every text cell that starts with ``=``, ``+``, ``-``, ``@``, a
    tab or a carriage return, as OWASP advises against CSV injection: Excel and WPS then show
    ``=HYPERLINK(...)`` from a metrics file as text instead of running it. Only columns of text are
    changed (a negative number stays a number); ``frame`` itself is not."""
    safe = frame
    for i in (i for i, dtype in enumerate(frame.dtypes) if _of_text(dtype)):
        column = frame.iloc[:, i]
        formula = [isinstance(value, str) and value.startswith(FORMULA_STARTS) for value in column]
        if any(formula):
            safe = frame.copy() if safe is frame else safe
            quoted = column.astype(object)  # its other cells as they are: a number stays a number
            quoted[formula] = "'" + quoted[formula]
            safe.isetitem(i, quoted)
    return safe


def _holds_cr(frame: pd.DataFrame) -> bool:
    """Whether a text cell holds a carriage return: Python's csv module quotes a cell for the
    characters of the line end only, and a spreadsheet starts a new row at a CR outside quotes."""
    text = (frame.iloc[:, i] for i, dtype in enumerate(frame.dtypes) if _of_text(dtype))
    return any(isinstance(value, str) and "\r" in value for column in text for value in column)


def _of_text(dtype: Any) -> bool:
    return (
        pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
    )


def write_json(payload: Any, target: Path) -> Path:
    """Write ``payload`` as indented UTF-8 JSON atomically."""
    text = json_text(payload)
    return write_atomic(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def json_text(payload: Any) -> str:
    """``payload`` as the JSON text :func:`write_json` writes (indented, keys sorted, UTF-8 kept)."""
    return json.dumps(payload, ensure_ascii=False, indent=2, sort_keys=True, default=str) + "\n"
